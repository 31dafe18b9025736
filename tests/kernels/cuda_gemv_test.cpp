// The CUDA decode products against a double-precision dot of the reference dequantization (and
// the reference rounding of the activations), on
// fresh random inputs and awkward sizes (rows not a multiple of the CTA's 8, one block per row,
// the widest Llama-3-8B row). Skipped where vireo was built without CUDA or no GPU is present.
#include <gtest/gtest.h>

#if defined(VIREO_HAS_CUDA)
#include <cmath>
#include <random>
#include <vector>

#include "vireo/kernels/cuda/gemv.h"
#include "vireo/kernels/ref/ops.h"
#include "vireo/kernels/ref/quant.h"

namespace vireo {
namespace {

struct Case {
  DType type;
  int64_t rows, cols;
  int tokens;
};

TEST(CudaGemv, MatchesTheReferenceOnAwkwardSizes) {
  if (!cuda::device_available()) GTEST_SKIP() << "no CUDA device";
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (const Case& c : {Case{DType::Q4_0, 37, 64, 1}, Case{DType::Q4_0, 4096, 4096, 1}, Case{DType::Q4_0, 1000, 14336, 3},
                        Case{DType::Q4_0, 9, 32, 8}, Case{DType::Q8_0, 37, 64, 1}, Case{DType::Q8_0, 1000, 14336, 2},
                        Case{DType::Q8_0, 4099, 4096, 8}, Case{DType::F16, 37, 72, 1}, Case{DType::F16, 1000, 4096, 5},
                        Case{DType::F16, 8, 8, 8}}) {
    SCOPED_TRACE(testing::Message() << static_cast<int>(c.type) << " " << c.rows << "x" << c.cols << " tokens " << c.tokens);
    const size_t rb = ref::row_bytes(c.type, c.cols);
    std::vector<uint8_t> w(rb * static_cast<size_t>(c.rows));
    std::vector<float> row(static_cast<size_t>(c.cols));
    std::vector<std::vector<float>> deq(static_cast<size_t>(c.rows));
    for (int64_t r = 0; r < c.rows; ++r) {
      for (auto& v : row) v = u(rng);
      ref::quantize_row(c.type, row.data(), w.data() + r * rb, c.cols);
      deq[static_cast<size_t>(r)].resize(static_cast<size_t>(c.cols));
      ref::dequantize_row(c.type, w.data() + r * rb, deq[static_cast<size_t>(r)].data(), c.cols);
    }
    std::vector<float> x(static_cast<size_t>(c.tokens * c.cols));
    for (auto& v : x) v = u(rng);
    // What the products multiply: quantized weights take x rounded to Q8_0 blocks.
    std::vector<float> xr = x;
    if (c.type != DType::F16) {
      for (int t = 0; t < c.tokens; ++t) {
        const auto r = ref::round_activations(c.type, x.data() + t * c.cols, c.cols);
        std::copy(r.begin(), r.end(), xr.begin() + t * c.cols);
      }
    }
    auto m = cuda::upload_matrix(c.type, w.data(), c.rows, c.cols);
    float* dx = cuda::device_alloc_floats(x.size());
    float* dy = cuda::device_alloc_floats(static_cast<size_t>(c.tokens * c.rows));
    cuda::copy_to_device(dx, x.data(), x.size());
    cuda::gemv(m, dx, dy, c.tokens);
    std::vector<float> y(static_cast<size_t>(c.tokens * c.rows));
    cuda::copy_to_host(y.data(), dy, y.size());
    int bad = 0;
    for (int t = 0; t < c.tokens; ++t) {
      for (int64_t r = 0; r < c.rows; ++r) {
        double want = 0, mag = 0;
        for (int64_t k = 0; k < c.cols; ++k) {
          const double p = double{deq[static_cast<size_t>(r)][static_cast<size_t>(k)]} * xr[static_cast<size_t>(t * c.cols + k)];
          want += p;
          mag += std::abs(p);
        }
        const double got = y[static_cast<size_t>(t * c.rows + r)];
        if (std::abs(got - want) > 2e-5 * mag + 1e-6 && bad++ < 5) {
          ADD_FAILURE() << "token " << t << " row " << r << ": got " << got << ", want " << want;
        }
      }
    }
    cuda::device_free(dx);
    cuda::device_free(dy);
    cuda::free_matrix(m);
  }
}

}  // namespace
}  // namespace vireo
#endif
