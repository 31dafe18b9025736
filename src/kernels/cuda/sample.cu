// Sampling where the logits are: one block per row draws its token as ref::draw_token defines it,
// so a step copies a few ids to the host instead of n_vocab floats per sequence. The top-k and
// top-p thresholds are found by radix selection over the logits' bits (no sort): four passes of
// 8 bits each, from the top, keeping the digit where the count (or mass) from the top reaches
// the goal.
#include <cuda_runtime.h>

#include <cfloat>
#include <cstdint>
#include <cub/block/block_reduce.cuh>
#include <cub/block/block_scan.cuh>

#include "device_util.cuh"
#include "vireo/kernels/cuda/ops.h"

namespace vireo::cuda {
namespace {

constexpr int kThreads = 1024;
constexpr int kBins = 256;

// Float bits -> an unsigned key in the same order (negative values flipped), and back.
__device__ __forceinline__ uint32_t order_key(float f) {
  const uint32_t b = __float_as_uint(f);
  return b ^ ((b >> 31) != 0 ? 0xffffffffu : 0x80000000u);
}
__device__ __forceinline__ float key_value(uint32_t k) { return __uint_as_float((k & 0x80000000u) != 0 ? k ^ 0x80000000u : ~k); }
// Kept: at or above the floor and not banned (NaN fails both).
__device__ __forceinline__ bool kept(float v, float floor) { return v >= floor && v > -INFINITY; }

struct Best {
  float value;
  int index;
};
struct FirstLargest {  // the largest value, the lowest index among equals
  __device__ Best operator()(const Best& a, const Best& b) const {
    return b.value > a.value || (b.value == a.value && b.index < a.index) ? b : a;
  }
};

struct SampleShared {
  union {
    cub::BlockReduce<Best, kThreads>::TempStorage best;
    cub::BlockReduce<float, kThreads>::TempStorage sum;
    cub::BlockScan<float, kThreads>::TempStorage scan;
  } cub;
  float hist[kBins];
  float inclusive[kThreads];
  Best best;
  float value;
  uint32_t prefix;
  float goal;
  int last_thread, written;
};

// The largest key K such that the kept values with key >= K weigh at least `goal` (weight 1 each:
// K is the goal-th largest value; exp(v - max): the top-p threshold). If rounding keeps the goal
// out of reach, every kept value stays.
template <bool kMass>
__device__ float select_from_top(const float* xr, int64_t n, float floor, float max, float goal, SampleShared& sh) {
  uint32_t prefix = 0, mask = 0;
  for (int shift = 24; shift >= 0; shift -= 8) {
    for (int b = threadIdx.x; b < kBins; b += kThreads) sh.hist[b] = 0;
    __syncthreads();
    for (int64_t i = threadIdx.x; i < n; i += kThreads) {
      const float v = xr[i];
      if (!kept(v, floor)) continue;
      const uint32_t key = order_key(v);
      if ((key & mask) == prefix) atomicAdd(&sh.hist[(key >> shift) & (kBins - 1)], kMass ? __expf(v - max) : 1.0f);
    }
    __syncthreads();
    if (threadIdx.x == 0) {
      float above = 0;  // weight of the bins above the chosen one
      int digit = -1, lowest = 0;
      for (int b = kBins - 1; b >= 0; --b) {
        const float h = sh.hist[b];
        if (h <= 0) continue;
        lowest = b;
        if (above + h >= goal) {
          digit = b;
          break;
        }
        above += h;
      }
      if (digit < 0) {  // out of reach: the lowest bin, and on down
        digit = lowest;
        above -= sh.hist[lowest];
      }
      sh.prefix = prefix | (static_cast<uint32_t>(digit) << shift);
      sh.goal = goal - above;
    }
    __syncthreads();
    prefix = sh.prefix;
    goal = sh.goal;
    mask |= static_cast<uint32_t>(kBins - 1) << shift;
  }
  return key_value(prefix);
}

__global__ void __launch_bounds__(kThreads) sample_kernel(const float* x, int64_t ldx, int64_t n, const float* params, int32_t* out) {
  kernel_prologue();
  __shared__ SampleShared sh;
  const float* xr = x + static_cast<int64_t>(blockIdx.x) * ldx;
  const float* p = params + static_cast<int64_t>(blockIdx.x) * 5;
  const float temperature = p[0], top_k = p[1], top_p = p[2], min_p = p[3], u = p[4];

  Best best{-INFINITY, INT_MAX};
  for (int64_t i = threadIdx.x; i < n; i += kThreads) {
    const float v = xr[i];
    if (v > best.value) best = Best{v, static_cast<int>(i)};  // a thread sees its indices in order
  }
  best = cub::BlockReduce<Best, kThreads>(sh.cub.best).Reduce(best, FirstLargest{});
  if (threadIdx.x == 0) sh.best = best;
  __syncthreads();
  best = sh.best;
  if (!(best.value > -INFINITY)) {  // every logit banned
    if (threadIdx.x == 0) out[blockIdx.x] = -1;
    return;
  }
  if (!(temperature > 0.0f)) {
    if (threadIdx.x == 0) out[blockIdx.x] = best.index;
    return;
  }
  const float max = best.value;

  float floor = -INFINITY;
  if (top_k >= 1.0f && top_k < static_cast<float>(n)) floor = select_from_top<false>(xr, n, floor, max, floorf(top_k), sh);
  if (top_p < 1.0f) {
    float z = 0;
    for (int64_t i = threadIdx.x; i < n; i += kThreads) {
      const float v = xr[i];
      if (kept(v, floor)) z += __expf(v - max);
    }
    z = cub::BlockReduce<float, kThreads>(sh.cub.sum).Sum(z);
    if (threadIdx.x == 0) sh.value = z;
    __syncthreads();
    z = sh.value;
    floor = fmaxf(floor, select_from_top<true>(xr, n, floor, max, top_p * z, sh));
  }
  if (min_p > 0.0f) floor = fmaxf(floor, max + logf(min_p));

  // The draw: each thread sums the weights of a contiguous run of ids, the runs laid end to end
  // in id order; the thread whose run holds u * Z walks it.
  const float inv_t = 1.0f / temperature;
  const int64_t run = (n + kThreads - 1) / kThreads;
  const int64_t begin = static_cast<int64_t>(threadIdx.x) * run < n ? static_cast<int64_t>(threadIdx.x) * run : n;
  const int64_t end = begin + run < n ? begin + run : n;
  float s = 0;
  for (int64_t i = begin; i < end; ++i) {
    const float v = xr[i];
    if (kept(v, floor)) s += __expf((v - max) * inv_t);
  }
  float incl = 0;
  cub::BlockScan<float, kThreads>(sh.cub.scan).InclusiveSum(s, incl);
  sh.inclusive[threadIdx.x] = incl;
  if (threadIdx.x == 0) sh.last_thread = -1, sh.written = 0;
  __syncthreads();
  if (s > 0) atomicMax(&sh.last_thread, static_cast<int>(threadIdx.x));
  __syncthreads();
  const float total = sh.inclusive[kThreads - 1];
  const float goal = fminf(fmaxf(u, 0.0f), 1.0f) * total;
  const float before = threadIdx.x == 0 ? 0.0f : sh.inclusive[threadIdx.x - 1];
  const bool last = static_cast<int>(threadIdx.x) == sh.last_thread;
  // Runs meet end to end, so one thread owns the goal; if float rounding of the scan leaves a
  // gap, the last run with weight takes it.
  const bool owner = s > 0 && goal >= before && (goal < incl || last);
  if (owner) sh.written = 1;
  __syncthreads();
  if (owner || (last && sh.written == 0)) {
    float left = owner ? goal - before : INFINITY;
    int64_t pick = -1;
    for (int64_t i = begin; i < end; ++i) {
      const float v = xr[i];
      if (!kept(v, floor)) continue;
      const float w = __expf((v - max) * inv_t);
      if (w <= 0) continue;
      pick = i;
      if (left < w) break;
      left -= w;
    }
    out[blockIdx.x] = static_cast<int32_t>(pick);
  }
}

}  // namespace

void sample(const float* x, int64_t ldx, int64_t rows, int64_t cols, const float* params, int32_t* out, Stream s) {
  if (rows == 0) return;
  launch(sample_kernel, static_cast<unsigned>(rows), kThreads, 0, static_cast<cudaStream_t>(s), x, ldx, cols, params, out);
  check(cudaGetLastError(), "sample");
}

}  // namespace vireo::cuda
