// Decode products on the GPU for Llama-3-8B's matrix shapes: achieved GB/s of weight reads and
// the fraction of the device's own copy bandwidth. (Built only with CUDA; needs a GPU to run.)
#if defined(VIREO_HAS_CUDA)
#include <benchmark/benchmark.h>

#include <random>
#include <vector>

#include <chrono>
#include <cstdlib>

#include "vireo/backend/backend.h"
#include "vireo/kernels/cuda/gemv.h"
#include "vireo/kernels/cuda/qgemm.h"
#include "vireo/kernels/ref/quant.h"

namespace {

using vireo::DType;

// rows x cols of `type` from uniform values in [-1, 1]: one random row repeated (fast for the large
// shapes), or every row drawn afresh.
std::vector<uint8_t> quantized_matrix(DType type, int64_t rows, int64_t cols, unsigned seed, bool fresh_rows) {
  const size_t rb = vireo::ref::row_bytes(type, cols);
  std::vector<uint8_t> w(rb * static_cast<size_t>(rows));
  std::vector<float> row(static_cast<size_t>(cols));
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (int64_t r = 0; r < rows; ++r) {
    if (r == 0 || fresh_rows) {
      for (auto& v : row) v = u(rng);
    }
    vireo::ref::quantize_row(type, row.data(), w.data() + r * rb, cols);
  }
  return w;
}

std::vector<float> random_floats(size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = u(rng);
  return v;
}

void BM_CudaGemv(benchmark::State& state, DType type, int64_t rows, int64_t cols) {
  if (!vireo::cuda::device_available()) {
    state.SkipWithError("no CUDA device");
    return;
  }
  const int tokens = static_cast<int>(state.range(0));
  const auto w = quantized_matrix(type, rows, cols, 1, false);
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

// Batched decode attention through the CUDA backend, Llama-3-8B heads: `rows` sequences of `keys`
// keys each, in a paged F16 cache of 16-cell blocks (each sequence's blocks in order, as a fresh
// cache lays them out). Reports the cache's read rate.
void BM_CudaBatchedDecodeAttention(benchmark::State& state) {
  if (!vireo::cuda::device_available()) {
    state.SkipWithError("no CUDA device");
    return;
  }
  auto be = vireo::create_cuda_backend(0);
  const int64_t rows = state.range(0), keys = state.range(1), cells = rows * keys, block = 16;
  const int n_head = 32, n_head_kv = 8, hd = 128;
  vireo::Buffer q = be->alloc(DType::F32, rows, n_head * hd), out = be->alloc(DType::F32, rows, n_head * hd);
  vireo::Buffer k = be->alloc(DType::F16, cells, n_head_kv * hd), v = be->alloc(DType::F16, cells, n_head_kv * hd);
  vireo::Buffer ranges = be->alloc(DType::I32, rows, 2), blocks = be->alloc(DType::I32, cells / block, 1);
  std::vector<float> qh(static_cast<size_t>(rows * n_head * hd), 0.1f);
  std::vector<uint16_t> kh(static_cast<size_t>(cells * n_head_kv * hd), 0x2e66);  // 0.1 in F16
  std::vector<int32_t> r, b(static_cast<size_t>(cells / block));
  for (int64_t i = 0; i < rows; ++i) r.insert(r.end(), {static_cast<int32_t>(i * keys), static_cast<int32_t>(keys)});
  for (size_t i = 0; i < b.size(); ++i) b[i] = static_cast<int32_t>(i);
  be->upload(q, qh.data());
  be->upload(k, kh.data());
  be->upload(v, kh.data());
  be->upload(ranges, r.data());
  be->upload(blocks, b.data());
  vireo::AttentionParams p;
  p.n_head = n_head;
  p.n_head_kv = n_head_kv;
  p.head_dim = hd;
  p.scale = 0.088f;
  p.max_keys = keys;
  p.kv_block_size = static_cast<int>(block);
  constexpr int kCalls = 50;
  for (auto _ : state) {
    be->attention(q, k, v, ranges, blocks, p, out);
    be->synchronize();
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < kCalls; ++i) be->attention(q, k, v, ranges, blocks, p, out);
    be->synchronize();
    state.SetIterationTime(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / kCalls);
  }
  const double bytes = 2.0 * static_cast<double>(cells) * n_head_kv * hd * 2;
  state.counters["GB/s"] = benchmark::Counter(bytes * static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_CudaBatchedDecodeAttention)
    ->Args({16, 1024})
    ->Args({64, 1024})
    ->Args({64, 4096})
    ->UseManualTime()
    ->Iterations(3)
    ->Unit(benchmark::kMicrosecond);

// Products of many rows through the CUDA backend (batched decode, prefill chunks), Llama-3-8B
// shapes: the tensor-core qgemm (arg 1) against dequantizing to F16 for cuBLAS (arg 0), in the
// same run. Reports weight GB/s and TOPS.
void BM_CudaBatchedMatmul(benchmark::State& state, DType type, int64_t rows, int64_t cols) {
  if (!vireo::cuda::device_available()) {
    state.SkipWithError("no CUDA device");
    return;
  }
  const int64_t n = state.range(0);
  const bool qgemm = state.range(1) != 0;
  setenv("VIREO_CUDA_QGEMM_ROWS", qgemm ? "100000" : "0", 1);  // read when the backend starts
  auto be = vireo::create_cuda_backend(0);
  const auto w = quantized_matrix(type, rows, cols, 3, true);
  vireo::Tensor t;
  t.name = "w";
  t.type = type;
  t.shape = {static_cast<uint64_t>(rows), static_cast<uint64_t>(cols)};
  t.data = w.data();
  t.nbytes = w.size();
  auto wp = be->prepare(t, vireo::WeightUse::Matmul);
  vireo::Buffer x = be->alloc(DType::F32, n, cols), y = be->alloc(DType::F32, n, rows);
  const auto xh = random_floats(static_cast<size_t>(n * cols), 5);
  be->upload(x, xh.data());
  constexpr int kCalls = 50;
  double sec = 0;
  for (auto _ : state) {
    be->matmul(x, *wp, y);
    be->synchronize();
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < kCalls; ++i) be->matmul(x, *wp, y);
    be->synchronize();
    sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / kCalls;
    state.SetIterationTime(sec);
  }
  state.counters["TOPS"] = 2.0 * static_cast<double>(rows * cols * n) / sec * 1e-12;
  state.counters["weight_GB/s"] = static_cast<double>(w.size()) / sec * 1e-9;
  state.SetLabel(qgemm ? "qgemm" : "dequantize + cuBLAS");
}
#define BATCHED(T, NAME)                                                                                                 \
  BENCHMARK_CAPTURE(BM_CudaBatchedMatmul, NAME##_4096x4096, T, 4096, 4096)                                               \
      ->ArgsProduct({{64, 128, 256, 512}, {0, 1}})->UseManualTime()->Iterations(2)->Unit(benchmark::kMicrosecond);       \
  BENCHMARK_CAPTURE(BM_CudaBatchedMatmul, NAME##_14336x4096, T, 14336, 4096)                                             \
      ->ArgsProduct({{64, 256, 512}, {0, 1}})->UseManualTime()->Iterations(2)->Unit(benchmark::kMicrosecond);                    \
  BENCHMARK_CAPTURE(BM_CudaBatchedMatmul, NAME##_4096x14336, T, 4096, 14336)                                             \
      ->ArgsProduct({{64, 256, 512}, {0, 1}})->UseManualTime()->Iterations(2)->Unit(benchmark::kMicrosecond);

// The qgemm kernel alone, by tile shape (arg 1: QGemmTile) and split count (arg 2; 0 = chosen),
// for choosing Auto's picks.
void BM_CudaQGemmTile(benchmark::State& state, DType type, int64_t rows, int64_t cols) {
  if (!vireo::cuda::device_available()) {
    state.SkipWithError("no CUDA device");
    return;
  }
  const int n = static_cast<int>(state.range(0));
  const vireo::cuda::QGemmOptions opt{static_cast<vireo::cuda::QGemmTile>(state.range(1)), static_cast<int>(state.range(2))};
  const auto w = quantized_matrix(type, rows, cols, 4, false);
  auto m = vireo::cuda::upload_matrix(type, w.data(), rows, cols);
  float* x = vireo::cuda::device_alloc_floats(static_cast<size_t>(n * cols));
  float* y = vireo::cuda::device_alloc_floats(static_cast<size_t>(n * rows));
  const auto xh = random_floats(static_cast<size_t>(n * cols), 6);
  vireo::cuda::copy_to_device(x, xh.data(), xh.size());
  double ms = 0;
  for (auto _ : state) {
    ms = vireo::cuda::time_qgemm_ms(m, x, y, n, 50, opt);
    state.SetIterationTime(ms / 1e3);
  }
  state.counters["TOPS"] = 2.0 * static_cast<double>(rows * cols * n) / (ms * 1e-3) * 1e-12;
  state.counters["weight_GB/s"] = static_cast<double>(m.bytes) / (ms * 1e-3) * 1e-9;
  vireo::cuda::device_free(x);
  vireo::cuda::device_free(y);
  vireo::cuda::free_matrix(m);
}
#define TILES(T, NAME, R, C)                                                                                    \
  BENCHMARK_CAPTURE(BM_CudaQGemmTile, NAME##_##R##x##C, T, R, C)                                                \
      ->ArgsProduct({{16, 32, 64, 128}, {1, 2, 3, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}, {0, 1, 2, 4}})->UseManualTime()->Iterations(2)->Unit(benchmark::kMicrosecond);
TILES(DType::Q4_0, q4_0, 4096, 4096)
TILES(DType::Q4_0, q4_0, 14336, 4096)
TILES(DType::Q4_0, q4_0, 4096, 14336)
// The products of a batched decode step of 64 sequences as launched (q/k/v together, gate and up
// together), by warpgroup tile of 64 tokens and split count.
#define DECODE_TILES(R, C)                                                                               \
  BENCHMARK_CAPTURE(BM_CudaQGemmTile, q4_0_step_##R##x##C, DType::Q4_0, R, C)                            \
      ->ArgsProduct({{64}, {10, 11, 14, 15, 16}, {0, 1, 2, 3, 4, 5, 6, 8}})->UseManualTime()->Iterations(2)->Unit(benchmark::kMicrosecond);
DECODE_TILES(6144, 4096)
DECODE_TILES(4096, 4096)
DECODE_TILES(28672, 4096)
DECODE_TILES(4096, 14336)
// Auto (tile 0) against the 128 x 64 warpgroup tile with its own splits (10), every type.
#define DECODE_AUTO(T, NAME, R, C)                                                                       \
  BENCHMARK_CAPTURE(BM_CudaQGemmTile, NAME##_auto_##R##x##C, T, R, C)                                    \
      ->ArgsProduct({{64}, {0, 10}, {0}})->UseManualTime()->Iterations(2)->Unit(benchmark::kMicrosecond);
#define DECODE_AUTO_TYPE(T, NAME) \
  DECODE_AUTO(T, NAME, 6144, 4096) DECODE_AUTO(T, NAME, 4096, 4096) DECODE_AUTO(T, NAME, 28672, 4096) DECODE_AUTO(T, NAME, 4096, 14336)
DECODE_AUTO_TYPE(DType::Q4_0, q4_0)
DECODE_AUTO_TYPE(DType::Q8_0, q8_0)
DECODE_AUTO_TYPE(DType::Q4_K, q4_K)
DECODE_AUTO_TYPE(DType::Q6_K, q6_K)
DECODE_AUTO(DType::Q6_K, q6_K, 128256, 4096)

BATCHED(DType::Q4_0, q4_0)
BATCHED(DType::Q8_0, q8_0)
BATCHED(DType::Q4_K, q4_K)
BATCHED(DType::Q6_K, q6_K)
// The output head of Llama 3 (Q6_K in Q4_0 and Q4_K_M files), for batched decode.
BENCHMARK_CAPTURE(BM_CudaBatchedMatmul, q6_K_128256x4096, DType::Q6_K, 128256, 4096)
    ->ArgsProduct({{64, 128}, {0, 1}})->UseManualTime()->Iterations(2)->Unit(benchmark::kMicrosecond);

}  // namespace
#endif
