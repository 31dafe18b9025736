// The tensor-core products of quantized weights (qgemm) against a double-precision dot of the
// reference dequantization and the activations, for every tile shape and split, with rows and
// tokens that leave partial tiles, one token, and outputs wider than the matrix (ldy > rows).
// qgemm multiplies in F16 (each weight and activation rounded once), accumulating in F32. The H
// tiles run Hopper's warpgroup kernels on a device of compute capability 9.0 (the mma.sync ones
// elsewhere); the test records which ran.
// Skipped where vireo was built without CUDA or no GPU is present.
#include <gtest/gtest.h>

#if defined(VIREO_HAS_CUDA)
#include <cmath>
#include <random>
#include <vector>

#include "vireo/core/error_types.h"
#include "vireo/kernels/cuda/qgemm.h"
#include "vireo/kernels/ref/ops.h"
#include "vireo/kernels/ref/quant.h"

namespace vireo {
namespace {

struct Case {
  DType type;
  int64_t rows, cols;
  int tokens;
  cuda::QGemmTile tile;
  int splits = 0;
};

TEST(CudaQGemm, MatchesTheReferenceForEveryTile) {
  if (!cuda::device_available()) GTEST_SKIP() << "no CUDA device";
  RecordProperty("wgmma", cuda::qgemm_uses_wgmma() ? "yes" : "no");
  using T = cuda::QGemmTile;
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<Case> cases;
  for (DType type : {DType::Q4_0, DType::Q8_0, DType::Q4_K, DType::Q6_K}) {
    const bool k_quant = type == DType::Q4_K || type == DType::Q6_K;  // whole blocks of 256
    for (T tile : {T::Auto, T::R32xT32, T::R64xT64, T::R128xT64, T::R64xT128, T::R128xT128, T::R128xT64W8, T::R128xT64W8Square,
                   T::R64xT64S3, T::R128xT32W8, T::H128xT64, T::H256xT64, T::H128xT32, T::H128xT16, T::H128xT64S6, T::H256xT64S5,
                   T::H256xT64W4}) {
      if (!k_quant) {
        cases.push_back({type, 37, 128, 9, tile});  // one stage
        cases.push_back({type, 45, 896, 17, tile});
      }
      cases.push_back({type, 300, 1024, 65, tile});
      cases.push_back({type, 129, 4352, 1, tile});
    }
    cases.push_back({type, 257, 4096, 300, T::Auto});
    cases.push_back({type, 64, 14336, 33, T::Auto});
    cases.push_back({type, 4000, 2048, 64, T::Auto});  // on an H100 or H200: 128-row tiles, one CTA an SM, 4 splits
    // Split widths: even and uneven runs of stages (K-quant splits starting mid-block), one stage
    // each, more splits than stages.
    for (int splits : {1, 2, 3, 7, 64}) {
      cases.push_back({type, 100, 1792, 40, T::R64xT64, splits});
      cases.push_back({type, 300, 1792, 70, T::H128xT64, splits});
      cases.push_back({type, 300, 1792, 64, T::H128xT64S6, splits});
      cases.push_back({type, 520, 1792, 50, T::H256xT64S5, splits});
      cases.push_back({type, 520, 1792, 61, T::H256xT64W4, splits});
    }
    if (!k_quant) cases.push_back({type, 45, 896, 70, T::R64xT64, 5});
    if (type == DType::Q6_K) cases.push_back({type, 3, 256, 5, T::R32xT32});  // odd count of d values: read in pairs
  }
  for (const Case& c : cases) {
    SCOPED_TRACE(testing::Message() << static_cast<int>(c.type) << " " << c.rows << "x" << c.cols << " tokens " << c.tokens << " tile "
                                    << static_cast<int>(c.tile) << " splits " << c.splits);
    const size_t rb = ref::row_bytes(c.type, c.cols);
    std::vector<uint8_t> w(rb * static_cast<size_t>(c.rows));
    std::vector<float> row(static_cast<size_t>(c.cols)), deq(static_cast<size_t>(c.rows * c.cols));
    for (int64_t r = 0; r < c.rows; ++r) {
      for (auto& v : row) v = u(rng);
      ref::quantize_row(c.type, row.data(), w.data() + r * rb, c.cols);
      ref::dequantize_row(c.type, w.data() + r * rb, deq.data() + r * c.cols, c.cols);
    }
    std::vector<float> x(static_cast<size_t>(c.tokens * c.cols));
    for (auto& v : x) v = u(rng);
    auto m = cuda::upload_matrix(c.type, w.data(), c.rows, c.cols);
    ASSERT_TRUE(cuda::qgemm_supports(m));
    const int64_t ldy = c.rows + 5;
    float* dx = cuda::device_alloc_floats(x.size());
    float* dy = cuda::device_alloc_floats(static_cast<size_t>(c.tokens * ldy));
    cuda::copy_to_device(dx, x.data(), x.size());
    std::vector<float> y(static_cast<size_t>(c.tokens * ldy), -7.0f);
    cuda::copy_to_device(dy, y.data(), y.size());  // the gaps past each row must stay as they are
    cuda::QGemmWorkspace ws;
    cuda::qgemm_load_x(dx, c.cols, c.tokens, c.cols, ws, nullptr);
    cuda::qgemm(m, c.tokens, dy, ldy, ws, nullptr, {c.tile, c.splits});
    cuda::copy_to_host(y.data(), dy, y.size());
    int bad = 0;
    for (int t = 0; t < c.tokens; ++t) {
      for (int64_t r = 0; r < ldy; ++r) {
        const double got = y[static_cast<size_t>(t * ldy + r)];
        if (r >= c.rows) {
          if (got != -7.0 && bad++ < 5) ADD_FAILURE() << "token " << t << " wrote past the matrix at column " << r;
          continue;
        }
        double want = 0, mag = 0;
        for (int64_t k = 0; k < c.cols; ++k) {
          const double p = double{deq[static_cast<size_t>(r * c.cols + k)]} * x[static_cast<size_t>(t * c.cols + k)];
          want += p;
          mag += std::abs(p);
        }
        // Each product carries up to two F16 roundings (2^-11 each); K-quant weights three or four
        // (sub-block scale, min and the weight itself).
        const double tol = c.type == DType::Q4_K || c.type == DType::Q6_K ? 3e-3 : 1e-3;
        if (std::abs(got - want) > tol * mag + 1e-5 && bad++ < 5) {
          ADD_FAILURE() << "token " << t << " row " << r << ": got " << got << ", want " << want;
        }
      }
    }
    cuda::device_free(dx);
    cuda::device_free(dy);
    cuda::free_matrix(m);
  }
}

// q/k/v and gate/up take one launch: its results must be exactly those of one launch per matrix
// with the same split of the width, and close to them with the splits it picks itself.
TEST(CudaQGemm, SeveralMatricesInOneLaunchEqualOneLaunchEach) {
  if (!cuda::device_available()) GTEST_SKIP() << "no CUDA device";
  using T = cuda::QGemmTile;
  std::mt19937 rng(11);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  const int64_t cols = 1024;
  const int tokens = 40;
  for (DType type : {DType::Q4_0, DType::Q4_K}) {
    const int64_t rows[3] = {300, 64, 129};
    std::vector<cuda::DeviceMatrix> ms;
    for (int64_t r : rows) {
      const size_t rb = ref::row_bytes(type, cols);
      std::vector<uint8_t> w(rb * static_cast<size_t>(r));
      std::vector<float> row(static_cast<size_t>(cols));
      for (int64_t i = 0; i < r; ++i) {
        for (auto& v : row) v = u(rng);
        ref::quantize_row(type, row.data(), w.data() + i * rb, cols);
      }
      ms.push_back(cuda::upload_matrix(type, w.data(), r, cols));
    }
    std::vector<float> x(static_cast<size_t>(tokens * cols));
    for (auto& v : x) v = u(rng);
    float* dx = cuda::device_alloc_floats(x.size());
    cuda::copy_to_device(dx, x.data(), x.size());
    cuda::QGemmWorkspace ws;
    cuda::qgemm_load_x(dx, cols, tokens, cols, ws, nullptr);
    for (T tile : {T::R32xT32, T::R128xT64W8, T::H128xT64, T::H128xT32, T::H128xT16, T::H128xT64S6, T::H256xT64S5, T::H256xT64W4}) {
      for (int splits : {1, 3, 0}) {
        SCOPED_TRACE(testing::Message() << static_cast<int>(type) << " tile " << static_cast<int>(tile) << " splits " << splits);
        std::vector<float*> one(3), multi(3);
        std::vector<cuda::QGemmOutput> outs;
        for (int i = 0; i < 3; ++i) {
          const int64_t ldy = rows[i] + 3;
          const std::vector<float> fill(static_cast<size_t>(tokens * ldy), -7.0f);
          one[i] = cuda::device_alloc_floats(fill.size());
          multi[i] = cuda::device_alloc_floats(fill.size());
          cuda::copy_to_device(one[i], fill.data(), fill.size());
          cuda::copy_to_device(multi[i], fill.data(), fill.size());
          cuda::qgemm(ms[i], tokens, one[i], ldy, ws, nullptr, {tile, splits});
          outs.push_back({&ms[i], multi[i], ldy});
        }
        cuda::qgemm_multi(outs, tokens, ws, nullptr, {tile, splits});
        for (int i = 0; i < 3; ++i) {
          const int64_t ldy = rows[i] + 3;
          std::vector<float> a(static_cast<size_t>(tokens * ldy)), b(a.size());
          cuda::copy_to_host(a.data(), one[i], a.size());
          cuda::copy_to_host(b.data(), multi[i], b.size());
          int bad = 0;
          for (size_t k = 0; k < a.size(); ++k) {
            const bool ok = splits > 0 ? a[k] == b[k] : std::abs(a[k] - b[k]) <= 1e-4f * (1.0f + std::abs(a[k]));
            if (!ok && bad++ < 5) ADD_FAILURE() << "matrix " << i << " token " << k / ldy << " row " << k % ldy << ": " << b[k] << " vs " << a[k];
          }
          cuda::device_free(one[i]);
          cuda::device_free(multi[i]);
        }
      }
    }
    cuda::device_free(dx);
    for (auto& m : ms) cuda::free_matrix(m);
  }
}

TEST(CudaQGemm, RefusesWhatItCannotMultiply) {
  if (!cuda::device_available()) GTEST_SKIP() << "no CUDA device";
  std::vector<float> row(256, 0.5f);
  std::vector<uint8_t> w(ref::row_bytes(DType::Q5_K, 256));
  ref::quantize_row(DType::Q5_K, row.data(), w.data(), 256);
  auto k = cuda::upload_matrix(DType::Q5_K, w.data(), 1, 256);
  EXPECT_FALSE(cuda::qgemm_supports(k));
  cuda::QGemmWorkspace ws;
  EXPECT_THROW(cuda::qgemm(k, 1, nullptr, 1, ws, nullptr), Error);
  cuda::free_matrix(k);
  std::vector<uint8_t> q(ref::row_bytes(DType::Q8_0, 64));  // 64 columns: not a whole run of 128
  std::vector<float> r64(64, 0.25f);
  ref::quantize_row(DType::Q8_0, r64.data(), q.data(), 64);
  auto narrow = cuda::upload_matrix(DType::Q8_0, q.data(), 1, 64);
  EXPECT_FALSE(cuda::qgemm_supports(narrow));
  cuda::free_matrix(narrow);
}

}  // namespace
}  // namespace vireo
#endif
