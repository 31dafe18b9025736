// Throughput of the scalar reference (de)quantizers: the baseline the fast kernels are measured
// against. Run: build/vireo_microbench --benchmark_filter=Dequant
#include <benchmark/benchmark.h>

#include <random>
#include <vector>

#include "vireo/kernels/ref/quant.h"

namespace {

using vireo::DType;

constexpr int64_t kRow = 4096;

void BM_DequantizeRow(benchmark::State& state, DType type) {
  std::mt19937 rng(1);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> src(kRow), dst(kRow);
  for (auto& x : src) x = dist(rng);
  std::vector<uint8_t> q(vireo::ref::row_bytes(type, kRow));
  vireo::ref::quantize_row(type, src.data(), q.data(), kRow);
  for (auto _ : state) {
    vireo::ref::dequantize_row(type, q.data(), dst.data(), kRow);
    benchmark::DoNotOptimize(dst.data());
  }
  state.SetItemsProcessed(state.iterations() * kRow);
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(q.size()));
}

void BM_QuantizeRow(benchmark::State& state, DType type) {
  std::mt19937 rng(2);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> src(kRow);
  for (auto& x : src) x = dist(rng);
  std::vector<uint8_t> q(vireo::ref::row_bytes(type, kRow));
  for (auto _ : state) {
    vireo::ref::quantize_row(type, src.data(), q.data(), kRow);
    benchmark::DoNotOptimize(q.data());
  }
  state.SetItemsProcessed(state.iterations() * kRow);
}

#define VIREO_QUANT_BENCH(T)                                             \
  BENCHMARK_CAPTURE(BM_DequantizeRow, T, DType::T);                      \
  BENCHMARK_CAPTURE(BM_QuantizeRow, T, DType::T)

VIREO_QUANT_BENCH(F16);
VIREO_QUANT_BENCH(BF16);
VIREO_QUANT_BENCH(Q8_0);
VIREO_QUANT_BENCH(Q4_0);
VIREO_QUANT_BENCH(Q4_K);
VIREO_QUANT_BENCH(Q5_K);
VIREO_QUANT_BENCH(Q6_K);

}  // namespace
