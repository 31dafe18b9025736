// Speed of the CPU matmul kernels and of whole forward passes.
//
//   build/vireo_microbench --benchmark_filter=MatmulKernel     one thread, weights in cache
//   build/vireo_microbench --benchmark_filter=MatmulBackend    all threads, weights streamed from memory
//   VIREO_BENCH_MODEL=m.gguf build/vireo_microbench --benchmark_filter='Decode|Prefill'
//
// Counters: bytes_per_second counts weight bytes read; FLOP/s counts 2·rows·cols per token;
// tok/s for the model benchmarks (prefill: 128 prompt tokens; decode: one token after 128).
// VIREO_BENCH_THREADS sets the thread count (default: one per core); VIREO_BENCH_ISA caps the
// backend benchmarks' instruction set (avx2, avx512, ...; default: the best the CPU has).
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "vireo/backend/backend.h"
#include "vireo/kernels/cpu/matmul.h"
#include "vireo/kernels/ref/quant.h"
#include "vireo/models/language_model.h"
#include "vireo/runtime/kv_cache.h"

namespace {

using vireo::DType;

unsigned bench_threads() {
  const char* env = std::getenv("VIREO_BENCH_THREADS");
  return env != nullptr ? static_cast<unsigned>(std::atoi(env)) : 0;
}

// The backend benchmarks' instruction-set cap ("avx2", "avx512", ...; unset: the best).
std::string bench_isa() {
  const char* env = std::getenv("VIREO_BENCH_ISA");
  return env != nullptr ? env : "";
}

std::vector<uint8_t> random_matrix(DType type, int64_t rows, int64_t cols, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 0.05f);
  const size_t rb = vireo::ref::row_bytes(type, cols);
  std::vector<uint8_t> bytes(rb * static_cast<size_t>(rows));
  std::vector<float> row(static_cast<size_t>(cols));
  for (int64_t r = 0; r < rows; ++r) {
    for (auto& x : row) x = dist(rng);
    vireo::ref::quantize_row(type, row.data(), bytes.data() + r * rb, cols);
  }
  return bytes;
}

std::vector<float> random_acts(int64_t n, int64_t cols) {
  std::mt19937 rng(9);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(n * cols));
  for (auto& v : x) v = dist(rng);
  return x;
}

// One thread, one matrix (4096 x 4096) that stays in cache: the kernel's compute speed.
void BM_MatmulKernel(benchmark::State& state, DType type) {
  const int64_t rows = 4096, cols = 4096, n = state.range(0);
  const auto bytes = random_matrix(type, rows, cols, 1);
  const auto isa = vireo::cpu::best_isa();
  const vireo::cpu::PackedMatrix m = vireo::cpu::pack_matrix(type, bytes.data(), rows, cols, isa);
  const auto x = random_acts(n, cols);
  vireo::cpu::Activations a;
  vireo::cpu::prepare_activations(m, n, a);
  std::vector<float> y(static_cast<size_t>(n * rows));
  for (auto _ : state) {
    vireo::cpu::quantize_activations(x.data(), cols, 0, n, a, isa);
    vireo::cpu::matmul_rows(m, a, 0, rows, y.data(), rows);
    benchmark::DoNotOptimize(y.data());
  }
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(m.bytes()));
  state.counters["FLOP/s"] = benchmark::Counter(2.0 * rows * cols * n * state.iterations(), benchmark::Counter::kIsRate);
  state.SetLabel(vireo::cpu::isa_name(isa));
}

// All threads through the backend, cycling over 256 MiB or more of weights so they come from
// memory as in a real decode step.
void BM_MatmulBackend(benchmark::State& state, DType type) {
  const int64_t rows = 2048, cols = 8192, n = state.range(0);
  auto be = vireo::create_cpu_backend({.n_threads = bench_threads(), .isa = bench_isa()});
  const size_t one = vireo::ref::row_bytes(type, cols) * rows;
  const size_t copies = std::max<size_t>(2, (size_t{256} << 20) / one + 1);
  const auto bytes = random_matrix(type, rows, cols, 2);
  std::vector<vireo::WeightPtr> ws;
  for (size_t i = 0; i < copies; ++i) {
    vireo::Tensor t;
    t.name = "w";
    t.type = type;
    t.shape = {static_cast<uint64_t>(rows), static_cast<uint64_t>(cols)};
    t.data = bytes.data();
    t.nbytes = bytes.size();
    ws.push_back(be->prepare(t, vireo::WeightUse::Matmul));  // each packed into its own memory
  }
  const auto x = random_acts(n, cols);
  vireo::Buffer xb = be->alloc(DType::F32, n, cols), yb = be->alloc(DType::F32, n, rows);
  be->upload(xb, x.data());
  size_t i = 0;
  for (auto _ : state) {
    be->matmul(xb, *ws[i++ % copies], yb);
  }
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(one));
  state.counters["FLOP/s"] = benchmark::Counter(2.0 * rows * cols * n * state.iterations(), benchmark::Counter::kIsRate);
  state.SetLabel(be->name());
}

#define VIREO_MATMUL_BENCH(TYPE)                                                                   \
  BENCHMARK_CAPTURE(BM_MatmulKernel, TYPE, DType::TYPE)->Arg(1)->Arg(8)->Arg(32)->Arg(128);        \
  BENCHMARK_CAPTURE(BM_MatmulBackend, TYPE, DType::TYPE)->Arg(1)->Arg(128)->UseRealTime();

VIREO_MATMUL_BENCH(F32)
VIREO_MATMUL_BENCH(F16)
VIREO_MATMUL_BENCH(BF16)
VIREO_MATMUL_BENCH(Q8_0)
VIREO_MATMUL_BENCH(Q4_0)
VIREO_MATMUL_BENCH(Q4_1)
VIREO_MATMUL_BENCH(Q5_0)
VIREO_MATMUL_BENCH(Q4_K)
VIREO_MATMUL_BENCH(Q5_K)
VIREO_MATMUL_BENCH(Q6_K)

// ---- whole model (VIREO_BENCH_MODEL) ----

struct ModelFixture {
  std::shared_ptr<vireo::Model> model;
  std::unique_ptr<vireo::Backend> backend;
  std::unique_ptr<vireo::LanguageModel> lm;
  std::unique_ptr<vireo::KvCache> cache;
};

ModelFixture* model_fixture() {
  static std::unique_ptr<ModelFixture> f;
  if (!f) {
    const char* path = std::getenv("VIREO_BENCH_MODEL");
    if (path == nullptr) return nullptr;
    f = std::make_unique<ModelFixture>();
    f->model = std::make_shared<vireo::Model>(vireo::load_model(path));
    f->backend = vireo::create_cpu_backend({.n_threads = bench_threads(), .isa = bench_isa()});
    f->lm = vireo::create_decoder(f->model, *f->backend);
    f->cache = std::make_unique<vireo::KvCache>(*f->lm, 1024);
  }
  return f.get();
}

std::vector<int32_t> prompt_ids(int64_t n, uint32_t n_vocab) {
  std::vector<int32_t> ids;
  for (int64_t i = 0; i < n; ++i) ids.push_back(static_cast<int32_t>(3 + (i * 7919) % (std::min<uint32_t>(n_vocab, 32000) - 3)));
  return ids;
}

// Prefill of 128 tokens into an empty sequence, logits of the last one (as llama-bench pp128).
void BM_Prefill(benchmark::State& state) {
  ModelFixture* f = model_fixture();
  if (f == nullptr) return state.SkipWithError("set VIREO_BENCH_MODEL to a GGUF file");
  const int64_t n = state.range(0);
  const auto ids = prompt_ids(n, f->lm->config().n_vocab);
  for (auto _ : state) {
    const vireo::SeqId seq = f->cache->add_sequence(static_cast<int32_t>(n));
    vireo::ForwardBatch batch;
    f->cache->append(batch, seq, ids, true);
    benchmark::DoNotOptimize(f->lm->forward(batch, f->cache->buffers()).data());
    f->cache->remove_sequence(seq);
  }
  state.counters["tok/s"] = benchmark::Counter(static_cast<double>(n * state.iterations()), benchmark::Counter::kIsRate);
  state.SetLabel(f->backend->name());
}
BENCHMARK(BM_Prefill)->Arg(128)->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(5.0);

// One decode step at position 128 (as llama-bench tg: the cost per generated token).
void BM_Decode(benchmark::State& state) {
  ModelFixture* f = model_fixture();
  if (f == nullptr) return state.SkipWithError("set VIREO_BENCH_MODEL to a GGUF file");
  const auto ids = prompt_ids(128, f->lm->config().n_vocab);
  const vireo::SeqId seq = f->cache->add_sequence(1024);
  vireo::ForwardBatch prefill;
  f->cache->append(prefill, seq, ids, true);
  f->lm->forward(prefill, f->cache->buffers());
  const int32_t token[1] = {ids.back()};
  for (auto _ : state) {
    f->cache->truncate(seq, 128);
    vireo::ForwardBatch batch;
    f->cache->append(batch, seq, token, true);
    benchmark::DoNotOptimize(f->lm->forward(batch, f->cache->buffers()).data());
  }
  f->cache->remove_sequence(seq);
  state.counters["tok/s"] = benchmark::Counter(static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
  state.counters["weight GB/s"] =
      benchmark::Counter(static_cast<double>(f->lm->weight_bytes()) * state.iterations(), benchmark::Counter::kIsRate);
  state.SetLabel(f->backend->name());
}
BENCHMARK(BM_Decode)->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(5.0);

}  // namespace
