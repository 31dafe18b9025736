// Decode products on the GPU for Llama-3-8B's matrix shapes: achieved GB/s of weight reads and
// the fraction of the device's own copy bandwidth. (Built only with CUDA; needs a GPU to run.)
#if defined(VIREO_HAS_CUDA)
#include <benchmark/benchmark.h>

#include <random>
#include <vector>

#include <chrono>

#include "vireo/backend/backend.h"
#include "vireo/kernels/cuda/gemv.h"
#include "vireo/kernels/ref/quant.h"

namespace {

using vireo::DType;

void BM_CudaGemv(benchmark::State& state, DType type, int64_t rows, int64_t cols) {
  if (!vireo::cuda::device_available()) {
    state.SkipWithError("no CUDA device");
    return;
  }
  const int tokens = static_cast<int>(state.range(0));
  const size_t rb = vireo::ref::row_bytes(type, cols);
  std::vector<uint8_t> w(rb * static_cast<size_t>(rows));
  std::vector<float> row(static_cast<size_t>(cols));
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (auto& v : row) v = u(rng);
  for (int64_t r = 0; r < rows; ++r) vireo::ref::quantize_row(type, row.data(), w.data() + r * rb, cols);
  auto m = vireo::cuda::upload_matrix(type, w.data(), rows, cols);
  float* x = vireo::cuda::device_alloc_floats(static_cast<size_t>(tokens * cols));
  float* y = vireo::cuda::device_alloc_floats(static_cast<size_t>(tokens * rows));
  static const double copy = vireo::cuda::copy_bandwidth_gb_s(size_t{1} << 30, 20);
  double ms = 0;
  for (auto _ : state) {
    ms = vireo::cuda::time_gemv_ms(m, x, y, tokens, 200);
    state.SetIterationTime(ms / 1e3);
  }
  const double gbs = static_cast<double>(m.bytes) / (ms * 1e-3) / 1e9;
  state.counters["GB/s"] = gbs;
  state.counters["of_copy"] = gbs / copy;
  state.counters["copy_GB/s"] = copy;
  state.SetLabel(vireo::cuda::device_name());
  vireo::cuda::device_free(x);
  vireo::cuda::device_free(y);
  vireo::cuda::free_matrix(m);
}

#define SHAPES(T, NAME)                                                                                         \
  BENCHMARK_CAPTURE(BM_CudaGemv, NAME##_4096x4096, T, 4096, 4096)->Arg(1)->Arg(8)->UseManualTime()->Iterations(3); \
  BENCHMARK_CAPTURE(BM_CudaGemv, NAME##_14336x4096, T, 14336, 4096)->Arg(1)->Arg(8)->UseManualTime()->Iterations(3); \
  BENCHMARK_CAPTURE(BM_CudaGemv, NAME##_4096x14336, T, 4096, 14336)->Arg(1)->Arg(8)->UseManualTime()->Iterations(3); \
  BENCHMARK_CAPTURE(BM_CudaGemv, NAME##_128256x4096, T, 128256, 4096)->Arg(1)->UseManualTime()->Iterations(3);
SHAPES(DType::Q4_0, q4_0)
SHAPES(DType::Q8_0, q8_0)
SHAPES(DType::F16, f16)
SHAPES(DType::Q4_K, q4_K)
SHAPES(DType::Q6_K, q6_K)

// Decode attention through the CUDA backend, Llama-3-8B heads (32 query, 8 KV, size 128), one
// query row over `count` keys of an 8192-cell F16 cache: wall time per call, launches included.
void BM_CudaDecodeAttention(benchmark::State& state) {
  if (!vireo::cuda::device_available()) {
    state.SkipWithError("no CUDA device");
    return;
  }
  auto be = vireo::create_cuda_backend(0);
  const int64_t cells = 8192, count = state.range(0);
  const int n_head = 32, n_head_kv = 8, hd = 128;
  vireo::Buffer q = be->alloc(DType::F32, 1, n_head * hd), out = be->alloc(DType::F32, 1, n_head * hd);
  vireo::Buffer k = be->alloc(DType::F16, cells, n_head_kv * hd), v = be->alloc(DType::F16, cells, n_head_kv * hd);
  vireo::Buffer ranges = be->alloc(DType::I32, 1, 2);
  std::vector<float> qh(static_cast<size_t>(n_head * hd), 0.1f);
  std::vector<uint16_t> kh(static_cast<size_t>(cells * n_head_kv * hd), 0x2e66);  // 0.1 in F16
  const int32_t r[2] = {0, static_cast<int32_t>(count)};
  be->upload(q, qh.data());
  be->upload(k, kh.data());
  be->upload(v, kh.data());
  be->upload(ranges, r);
  vireo::AttentionParams p;
  p.n_head = n_head;
  p.n_head_kv = n_head_kv;
  p.head_dim = hd;
  p.scale = 0.088f;
  constexpr int kCalls = 200;
  for (auto _ : state) {
    be->attention(q, k, v, ranges, p, out);
    be->synchronize();
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < kCalls; ++i) be->attention(q, k, v, ranges, p, out);
    be->synchronize();
    state.SetIterationTime(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / kCalls);
  }
}
BENCHMARK(BM_CudaDecodeAttention)->Arg(16)->Arg(128)->Arg(1024)->Arg(4096)->UseManualTime()->Iterations(3)->Unit(benchmark::kMicrosecond);

}  // namespace
#endif
