#include "vireo/kernels/cuda/gemv.h"

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdlib>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#include "dequant.cuh"
#include "device_util.cuh"
#include "vireo/core/error_types.h"
#include "vireo/core/quant_blocks.h"
#include "vireo/kernels/ref/quant.h"

namespace vireo::cuda {
namespace {

constexpr int kWarp = 32;
constexpr int kRowsPerBlock = 8;  // warps per CTA (F16: one row each)
static_assert(kMaxGemvSegments == 3, "segment_of_unit picks among three segments");

template <int T>
__device__ __forceinline__ void warp_sum_store(float (&acc)[T], float* y, int ldy, int row, int lane) {
#pragma unroll
  for (int t = 0; t < T; ++t) {
    float v = acc[t];
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    if (lane == 0) y[t * ldy + row] = v;
  }
}

// Several matrices of one type and width times the same activations in one launch (q/k/v,
// gate/up): the CTAs are dealt out to the segments in order.
struct Segment {
  const void* levels;
  const void* scales;
  float* y;
  int rows;
  int ldy;
};
struct Job {
  Segment seg[kMaxGemvSegments];
  int cta_end[kMaxGemvSegments];  // cumulative CTAs per segment
  int n;
};

// The rows one warp computes: R consecutive rows of its CTA's segment (clamped copies of the last
// row past the end, computed and never stored).
template <int R>
struct WarpRows {
  Segment sg;
  int lane, row0, rr[R];
};
template <int R>
__device__ __forceinline__ bool warp_rows(const Job& job, WarpRows<R>& w) {
  int cta = blockIdx.x;
  w.sg = segment_of_unit(job.seg, job.cta_end, job.n, cta);
  w.lane = threadIdx.x % kWarp;
  w.row0 = (cta * kRowsPerBlock + static_cast<int>(threadIdx.x) / kWarp) * R;
  if (w.row0 >= w.sg.rows) return false;
#pragma unroll
  for (int r = 0; r < R; ++r) w.rr[r] = min(w.row0 + r, w.sg.rows - 1);
  return true;
}
// The start of a gemv that loads nothing before the wait on the kernel before (see launch()):
// the warp's rows, then the wait. The others split the two around their first loads
// (preloaded_loop).
template <int R>
__device__ __forceinline__ bool gemv_start(const Job& job, WarpRows<R>& w) {
  const bool live = warp_rows(job, w);
  kernel_prologue();
  return live;
}
template <int T, int R>
__device__ __forceinline__ void store_rows(float (&acc)[R][T], const WarpRows<R>& w) {
#pragma unroll
  for (int r = 0; r < R; ++r) {
    if (w.row0 + r < w.sg.rows) warp_sum_store<T>(acc[r], w.sg.y, w.sg.ldy, w.row0 + r, w.lane);
  }
}

// Activations of the quantized products: Q8_0 blocks as llama.cpp's reference makes them
// (d = amax / 127 rounded to F16, q = round(x / d)), kept as int8 levels, F32 scales and the
// block sums d * sum(q) (for Q4_0's offset of 8). One warp per block of 32.
__global__ void quantize_x_q8(const float* __restrict__ x, int64_t ldx, int nb, int8_t* __restrict__ xq,
                              float* __restrict__ xd, float* __restrict__ xs, int n_blocks) {
  kernel_prologue();
  const int blk = blockIdx.x * (blockDim.x / kWarp) + threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  if (blk >= n_blocks) return;
  const float v = x[static_cast<int64_t>(blk / nb) * ldx + static_cast<int64_t>(blk % nb) * 32 + lane];
  quantize_block_q8(v, static_cast<size_t>(blk), lane, xq, xd, xs);
}

// Each warp computes R rows, so every activation block it loads serves R rows; the R rows'
// 16-byte weight loads are issued together, before any use. Products are integer dot
// products of 4 bytes at a time (dp4a).
constexpr int kRowsPerWarp = 4;

// 16 bytes of weights. A decode step streams every weight once, so they are marked first to leave
// L2, which then keeps the activations and the KV cache that are read again soon (1.00-1.07x for
// one sequence on H100s, 1.03x for four). Not for gemv_q8_0, nor Q4_K and Q6_K from 3 tokens:
// their lanes read 32 bytes in two loads, and the second can find the first's sectors evicted
// (Q8_0, one sequence: 0.84x; Q4_K_M, 8 sequences: 0.95x). gemv_q8_0_halves reads whole sectors.
template <bool kEvictFirst = true>
__device__ __forceinline__ uint4 weight16(const uint4* p) {
  if constexpr (!kEvictFirst) return __ldg(p);
  uint64_t policy;
  asm("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;" : "=l"(policy));
  uint4 v;
  asm("ld.global.nc.L1::no_allocate.L2::cache_hint.v4.u32 {%0, %1, %2, %3}, [%4], %5;"
      : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
      : "l"(p), "l"(policy));
  return v;
}

// A lane's loop over its blocks of a row, b = lane, lane + 32, ... < n: body(b, load(b)). The
// first P loads are issued before the wait on the kernel before (weights are written once, at
// load), so they stream while that kernel finishes; the rest U loads at a time. Returns false,
// after the wait, for a warp with no rows. Each kernel's P and U were measured on an H100
// (Q4_0: 4 and 4 against 2 and 2, 1.01-1.04x one sequence; Q8_0 keeps 2 and 2). Q4_K and Q6_K
// preload nothing from 3 tokens, where their 4 rows a warp hold up to 255 registers (with 4
// preloaded, Q4_K_M ran 8 sequences at 0.79x).
template <int P, int U, class W, class Load, class Body>
__device__ __forceinline__ bool preloaded_loop(bool live, int lane, int n, Load load, Body body) {
  if constexpr (P == 0) {
    kernel_prologue();
    if (!live) return false;
#pragma unroll U
    for (int b = lane; b < n; b += kWarp) body(b, load(b));
  } else {
    W first[P];
    if (live) {
#pragma unroll
      for (int p = 0; p < P; ++p) {
        if (lane + p * kWarp < n) first[p] = load(lane + p * kWarp);
      }
    }
    kernel_prologue();
    if (!live) return false;
#pragma unroll
    for (int p = 0; p < P; ++p) {
      if (lane + p * kWarp < n) body(lane + p * kWarp, first[p]);
    }
#pragma unroll U
    for (int b = lane + P * kWarp; b < n; b += kWarp) body(b, load(b));
  }
  return true;
}

// R rows' weights of one block: 16 bytes of levels (N of them) and a scale each.
template <int R, int N>
struct BlockWeights {
  uint4 q[R][N];
  float d[R];
};

// Q4_0: element j of a block is d * (q_j - 8); byte i holds q_i (low nibble) and q_{i+16} (high).
// Levels are split with one AND per 4 elements and multiplied as bytes.
template <int T, int R>
__global__ void __launch_bounds__(kWarp* kRowsPerBlock) gemv_q4_0(const __grid_constant__ Job job, const int8_t* __restrict__ xq,
                                                                 const float* __restrict__ xd, const float* __restrict__ xs, int nb) {
  WarpRows<R> wr;
  const bool live = warp_rows(job, wr);
  const auto* levels = static_cast<const uint4*>(wr.sg.levels);
  const auto* scales = static_cast<const __half*>(wr.sg.scales);
  const int(&rr)[R] = wr.rr;
  using W = BlockWeights<R, 1>;
  const auto load = [&](int b) {
    W w;
#pragma unroll
    for (int r = 0; r < R; ++r) {
      w.q[r][0] = weight16(levels + static_cast<size_t>(rr[r]) * nb + b);
      w.d[r] = __half2float(scales[static_cast<size_t>(rr[r]) * nb + b]);
    }
    return w;
  };
  float acc[R][T] = {};
  const auto body = [&](int b, const W& wb) {
#pragma unroll
    for (int t = 0; t < T; ++t) {
      const uint4* xp = reinterpret_cast<const uint4*>(xq + (static_cast<size_t>(t) * nb + b) * 32);
      const uint4 x0 = __ldg(xp), x1 = __ldg(xp + 1);
      const float dx = __ldg(xd + static_cast<size_t>(t) * nb + b), sx = __ldg(xs + static_cast<size_t>(t) * nb + b);
      const int xw[8] = {static_cast<int>(x0.x), static_cast<int>(x0.y), static_cast<int>(x0.z), static_cast<int>(x0.w),
                         static_cast<int>(x1.x), static_cast<int>(x1.y), static_cast<int>(x1.z), static_cast<int>(x1.w)};
#pragma unroll
      for (int r = 0; r < R; ++r) {
        const uint4 q = wb.q[r][0];
        const uint32_t w[4] = {q.x, q.y, q.z, q.w};
        int dot = 0;
#pragma unroll
        for (int k = 0; k < 4; ++k) {
          dot = __dp4a(static_cast<int>(w[k] & 0x0F0F0F0Fu), xw[k], dot);
          dot = __dp4a(static_cast<int>((w[k] >> 4) & 0x0F0F0F0Fu), xw[4 + k], dot);
        }
        acc[r][t] += wb.d[r] * (dx * static_cast<float>(dot) - 8.0f * sx);
      }
    }
  };
  if (preloaded_loop<4, 4, W>(live, wr.lane, nb, load, body)) store_rows<T, R>(acc, wr);
}

// Q8_0: element j is d * q_j, q signed bytes.
template <int T, int R>
__global__ void __launch_bounds__(kWarp* kRowsPerBlock) gemv_q8_0(const __grid_constant__ Job job, const int8_t* __restrict__ xq,
                                                                 const float* __restrict__ xd, const float* __restrict__ xs, int nb) {
  WarpRows<R> wr;
  const bool live = warp_rows(job, wr);
  const auto* levels = static_cast<const uint4*>(wr.sg.levels);
  const auto* scales = static_cast<const __half*>(wr.sg.scales);
  const int(&rr)[R] = wr.rr;
  using W = BlockWeights<R, 2>;
  const auto load = [&](int b) {
    W w;
#pragma unroll
    for (int r = 0; r < R; ++r) {
      w.q[r][0] = __ldg(levels + (static_cast<size_t>(rr[r]) * nb + b) * 2);
      w.q[r][1] = __ldg(levels + (static_cast<size_t>(rr[r]) * nb + b) * 2 + 1);
      w.d[r] = __half2float(scales[static_cast<size_t>(rr[r]) * nb + b]);
    }
    return w;
  };
  float acc[R][T] = {};
  const auto body = [&](int b, const W& wb) {
#pragma unroll
    for (int t = 0; t < T; ++t) {
      const uint4* xp = reinterpret_cast<const uint4*>(xq + (static_cast<size_t>(t) * nb + b) * 32);
      const uint4 x0 = __ldg(xp), x1 = __ldg(xp + 1);
      const float dx = __ldg(xd + static_cast<size_t>(t) * nb + b);
      const int xw[8] = {static_cast<int>(x0.x), static_cast<int>(x0.y), static_cast<int>(x0.z), static_cast<int>(x0.w),
                         static_cast<int>(x1.x), static_cast<int>(x1.y), static_cast<int>(x1.z), static_cast<int>(x1.w)};
#pragma unroll
      for (int r = 0; r < R; ++r) {
        const uint4 q0 = wb.q[r][0], q1 = wb.q[r][1];
        const int w[8] = {static_cast<int>(q0.x), static_cast<int>(q0.y), static_cast<int>(q0.z), static_cast<int>(q0.w),
                          static_cast<int>(q1.x), static_cast<int>(q1.y), static_cast<int>(q1.z), static_cast<int>(q1.w)};
        int dot = 0;
#pragma unroll
        for (int k = 0; k < 8; ++k) dot = __dp4a(w[k], xw[k], dot);
        acc[r][t] += wb.d[r] * dx * static_cast<float>(dot);
      }
    }
  };
  if (preloaded_loop<2, 2, W>(live, wr.lane, nb, load, body)) store_rows<T, R>(acc, wr);
}

// Q8_0 for one or two tokens, by half blocks: lane l loads the 16 bytes of half block l of a run of
// 32, so that each load instruction of a warp reads 512 contiguous bytes (whole sectors) and can
// mark them to leave L2 first (gemv_q8_0's two loads of a lane each take half of every sector, and
// the second finds them in L2 only if they stayed). A block's two halves are two lanes' terms of
// the row's sum, each scaled by d * dx. Four half blocks a lane before the wait, then four at a
// time. On an H100, Llama-3-8B Q8_0: one sequence 1.037x gemv_q8_0, two 1.078x (8 loads before
// the wait, or 8 at a time, or without the L2 hint: 1.007-1.016x); four sequences (4 rows a warp)
// 0.93x, so gemv_q8_0 keeps them.
template <int T, int R>
__global__ void __launch_bounds__(kWarp* kRowsPerBlock) gemv_q8_0_halves(const __grid_constant__ Job job, const int8_t* __restrict__ xq,
                                                                        const float* __restrict__ xd, int nb) {
  WarpRows<R> wr;
  const bool live = warp_rows(job, wr);
  const auto* levels = static_cast<const uint4*>(wr.sg.levels);
  const auto* scales = static_cast<const __half*>(wr.sg.scales);
  const int(&rr)[R] = wr.rr;
  using W = BlockWeights<R, 1>;
  // (Through one helper with gemv_q4_0's load, this kernel ran 0.98x: Q8_0, one sequence, H100.)
  const auto load = [&](int hb) {
    W w;
#pragma unroll
    for (int r = 0; r < R; ++r) {
      w.q[r][0] = weight16(levels + static_cast<size_t>(rr[r]) * nb * 2 + hb);
      w.d[r] = __half2float(scales[static_cast<size_t>(rr[r]) * nb + hb / 2]);
    }
    return w;
  };
  float acc[R][T] = {};
  const auto body = [&](int hb, const W& wb) {
    const int b = hb / 2;
#pragma unroll
    for (int t = 0; t < T; ++t) {
      const uint4 x0 = __ldg(reinterpret_cast<const uint4*>(xq + (static_cast<size_t>(t) * nb + b) * 32) + hb % 2);
      const float dx = __ldg(xd + static_cast<size_t>(t) * nb + b);
      const int xw[4] = {static_cast<int>(x0.x), static_cast<int>(x0.y), static_cast<int>(x0.z), static_cast<int>(x0.w)};
#pragma unroll
      for (int r = 0; r < R; ++r) {
        const uint4 q0 = wb.q[r][0];
        const int w[4] = {static_cast<int>(q0.x), static_cast<int>(q0.y), static_cast<int>(q0.z), static_cast<int>(q0.w)};
        int dot = 0;
#pragma unroll
        for (int k = 0; k < 4; ++k) dot = __dp4a(w[k], xw[k], dot);
        acc[r][t] += wb.d[r] * dx * static_cast<float>(dot);
      }
    }
  };
  if (preloaded_loop<4, 4, W>(live, wr.lane, 2 * nb, load, body)) store_rows<T, R>(acc, wr);
}

// Q6_K for one or two tokens by 16-byte pieces of ql: a lane takes ql bytes 16c.. 16c + 15 of a
// half block (c of 4), whose low nibbles are 16 elements of group c / 2 and whose high nibbles
// the same 16 of group c / 2 + 2, with the 16 bytes of qh over them (shared by two lanes) and
// the half's 8 scales: 40 bytes a lane where gemv_q6_k's lanes read 64 (ql and qh, each again by
// other lanes), and each load of a warp reads whole sectors of ql. On an H100: Llama-3-8B Q4_K_M
// one sequence 1.046x gemv_q6_k, two 1.043x; Q4_0 (its Q6_K output head) 1.028x.
template <int T, int R>
__global__ void __launch_bounds__(kWarp* kRowsPerBlock) gemv_q6_k_pieces(const __grid_constant__ Job job, const int8_t* __restrict__ xq,
                                                                        const float* __restrict__ xd, int nb) {
  WarpRows<R> wr;
  const bool live = warp_rows(job, wr);
  const auto* w = static_cast<const uint8_t*>(wr.sg.levels);
  const auto* wd = static_cast<const __half*>(wr.sg.scales);
  const int(&rr)[R] = wr.rr;
  struct W {
    uint4 l[R], h[R];
    uint2 sc[R];
    float d[R];
  };
  const auto load = [&](int it) {
    const int b = it / 8, hh = (it % 8) / 4, c = it % 4;
    W v;
#pragma unroll
    for (int r = 0; r < R; ++r) {
      const uint8_t* blk = w + (static_cast<int64_t>(rr[r]) * nb + b) * kQ6Bytes;
      v.l[r] = weight16(reinterpret_cast<const uint4*>(blk + 64 * hh + 16 * c));
      v.h[r] = __ldg(reinterpret_cast<const uint4*>(blk + 128 + 32 * hh + 16 * (c % 2)));
      v.sc[r] = __ldg(reinterpret_cast<const uint2*>(blk + 192 + 8 * hh));
      v.d[r] = __half2float(wd[static_cast<int64_t>(rr[r]) * nb + b]);
    }
    return v;
  };
  float acc[R][T] = {};
  const int n_items = nb * 8;
  const auto body = [&](int it, const W& v) {
    const int b = it / 8, hh = (it % 8) / 4, c = it % 4, q = c / 2, s = c % 2;
#pragma unroll
    for (int t = 0; t < T; ++t) {
      const int xb = t * nb * 8 + b * 8 + hh * 4 + q;  // group q's activation block; group q + 2's is xb + 2
      const uint4 a = __ldg(reinterpret_cast<const uint4*>(xq + static_cast<int64_t>(xb) * 32 + 16 * s));
      const uint4 e = __ldg(reinterpret_cast<const uint4*>(xq + static_cast<int64_t>(xb + 2) * 32 + 16 * s));
      const int xa[4] = {int(a.x), int(a.y), int(a.z), int(a.w)}, xe[4] = {int(e.x), int(e.y), int(e.z), int(e.w)};
      int sum_a = 0, sum_e = 0;
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        sum_a = __dp4a(0x01010101, xa[j], sum_a);
        sum_e = __dp4a(0x01010101, xe[j], sum_e);
      }
      const float dxa = __ldg(xd + xb), dxe = __ldg(xd + xb + 2);
#pragma unroll
      for (int r = 0; r < R; ++r) {
        const uint32_t lw[4] = {v.l[r].x, v.l[r].y, v.l[r].z, v.l[r].w}, hw[4] = {v.h[r].x, v.h[r].y, v.h[r].z, v.h[r].w};
        int dot_a = 0, dot_e = 0;
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          const uint32_t lo = (lw[j] & 0x0F0F0F0Fu) | (((hw[j] >> (2 * q)) & 0x03030303u) << 4);
          const uint32_t hi = ((lw[j] >> 4) & 0x0F0F0F0Fu) | (((hw[j] >> (2 * q + 4)) & 0x03030303u) << 4);
          dot_a = __dp4a(static_cast<int>(lo), xa[j], dot_a);
          dot_e = __dp4a(static_cast<int>(hi), xe[j], dot_e);
        }
        // Group G's scale for these 16 elements is byte 2G + s of the half's 8: groups q and q + 2
        // take the same byte of the first and the second word.
        const int shift = 8 * (2 * q + s);
        const int sc_a = static_cast<int8_t>(v.sc[r].x >> shift), sc_e = static_cast<int8_t>(v.sc[r].y >> shift);
        acc[r][t] += v.d[r] * (dxa * static_cast<float>(sc_a * (dot_a - 32 * sum_a)) + dxe * static_cast<float>(sc_e * (dot_e - 32 * sum_e)));
      }
    }
  };
  if (preloaded_loop<4, 2, W>(live, wr.lane, n_items, load, body)) store_rows<T, R>(acc, wr);
}

// F16: 8 halves per 16-byte load; R rows a warp share each load of x. P and U: see preloaded_loop.
template <int T, int R, int P = 4, int U = 4>
__global__ void __launch_bounds__(kWarp* kRowsPerBlock) gemv_f16(const __grid_constant__ Job job, const float* __restrict__ x, int n8,
                                                                int ldx) {
  WarpRows<R> wr;
  const bool live = warp_rows(job, wr);
  const auto* levels = static_cast<const uint4*>(wr.sg.levels);
  const int(&rr)[R] = wr.rr;
  struct W {
    uint4 q[R];
  };
  float acc[R][T] = {};
  const auto load = [&](int c) {
    W w;
#pragma unroll
    for (int r = 0; r < R; ++r) w.q[r] = weight16(levels + static_cast<size_t>(rr[r]) * n8 + c);
    return w;
  };
  const auto body = [&](int c, const W& w) {
    float wv[R][8];
#pragma unroll
    for (int r = 0; r < R; ++r) {
      const __half2* h = reinterpret_cast<const __half2*>(&w.q[r]);
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const float2 f = __half22float2(h[i]);
        wv[r][2 * i] = f.x, wv[r][2 * i + 1] = f.y;
      }
    }
#pragma unroll
    for (int t = 0; t < T; ++t) {
      const float4* xp = reinterpret_cast<const float4*>(x + static_cast<size_t>(t) * ldx + c * 8);
      const float4 a = __ldg(xp), b = __ldg(xp + 1);
#pragma unroll
      for (int r = 0; r < R; ++r) {
        acc[r][t] += wv[r][0] * a.x + wv[r][1] * a.y + wv[r][2] * a.z + wv[r][3] * a.w + wv[r][4] * b.x + wv[r][5] * b.y +
                     wv[r][6] * b.z + wv[r][7] * b.w;
      }
    }
  };
  if (preloaded_loop<P, U, W>(live, wr.lane, n8, load, body)) store_rows<T, R>(acc, wr);
}

// What a Q4_K block's 16-byte head (words: d and dmin, then the 12 bytes of 6-bit scale and min
// codes) gives the sub-blocks 2g and 2g + 1.
struct Q4kPair {
  float d, dmin;
  int s0, m0, s1, m1;
};
__device__ __forceinline__ Q4kPair q4k_pair(uint32_t hd, uint32_t lo, uint32_t hi, uint32_t x, int g) {
  const uint8_t codes[12] = {uint8_t(lo), uint8_t(lo >> 8), uint8_t(lo >> 16), uint8_t(lo >> 24), uint8_t(hi), uint8_t(hi >> 8),
                             uint8_t(hi >> 16), uint8_t(hi >> 24), uint8_t(x), uint8_t(x >> 8), uint8_t(x >> 16), uint8_t(x >> 24)};
  Q4kPair k;
  scale_min_k4(2 * g, codes, k.s0, k.m0);
  scale_min_k4(2 * g + 1, codes, k.s1, k.m1);
  k.d = __half2float(__ushort_as_half(static_cast<unsigned short>(hd & 0xFFFF)));
  k.dmin = __half2float(__ushort_as_half(static_cast<unsigned short>(hd >> 16)));
  return k;
}

// Q4_K with Q8_0-rounded activations, in integers: a lane takes one pair of 32-element
// sub-blocks (32 bytes of levels, low nibbles for the first, high for the second), so
// sum(w*x) = d*sc*dx*sum(q*xq) - dmin*m*sx per sub-block (sx = dx*sum(xq), kept with x).
template <int T, int R>
__global__ void __launch_bounds__(kWarp* kRowsPerBlock) gemv_q4_k(const __grid_constant__ Job job, const int8_t* __restrict__ xq,
                                                                 const float* __restrict__ xd, const float* __restrict__ xs, int nb,
                                                                 int64_t row_bytes) {
  WarpRows<R> wr;
  const bool live = warp_rows(job, wr);
  const auto* w = static_cast<const uint8_t*>(wr.sg.levels);
  const int(&rr)[R] = wr.rr;
  struct W {
    uint4 q0[R], q1[R];
    uint32_t hd[R], sc_lo[R], sc_hi[R], sc_x[R];
  };
  const auto load = [&](int it) {
    const int b = it / 4, g = it % 4;
    W v;
#pragma unroll
    for (int r = 0; r < R; ++r) {
      const uint8_t* blk = w + static_cast<int64_t>(rr[r]) * row_bytes + static_cast<int64_t>(b) * 144;
      const uint4* qp = reinterpret_cast<const uint4*>(blk + 16 + 32 * g);
      v.q0[r] = weight16<(T <= 2)>(qp);
      v.q1[r] = weight16<(T <= 2)>(qp + 1);
      const uint32_t* wp = reinterpret_cast<const uint32_t*>(blk);
      v.hd[r] = __ldg(wp);
      v.sc_lo[r] = __ldg(wp + 1);
      v.sc_hi[r] = __ldg(wp + 2);
      v.sc_x[r] = __ldg(wp + 3);
    }
    return v;
  };
  float acc[R][T] = {};
  const int n_items = nb * 4, nb32 = nb * 8;
  const auto body = [&](int it, const W& v) {
    const int b = it / 4, g = it % 4;
    const auto &q0 = v.q0, &q1 = v.q1;
    const auto &hd = v.hd, &sc_lo = v.sc_lo, &sc_hi = v.sc_hi, &sc_x = v.sc_x;
#pragma unroll
    for (int t = 0; t < T; ++t) {
      const int blk0 = t * nb32 + b * 8 + 2 * g;  // activation blocks of the two sub-blocks
      const uint4* xp = reinterpret_cast<const uint4*>(xq + static_cast<int64_t>(blk0) * 32);
      const uint4 a0 = __ldg(xp), a1 = __ldg(xp + 1), b0 = __ldg(xp + 2), b1 = __ldg(xp + 3);
      const int xa[8] = {int(a0.x), int(a0.y), int(a0.z), int(a0.w), int(a1.x), int(a1.y), int(a1.z), int(a1.w)};
      const int xb[8] = {int(b0.x), int(b0.y), int(b0.z), int(b0.w), int(b1.x), int(b1.y), int(b1.z), int(b1.w)};
      const float dx0 = __ldg(xd + blk0), dx1 = __ldg(xd + blk0 + 1), sx0 = __ldg(xs + blk0), sx1 = __ldg(xs + blk0 + 1);
#pragma unroll
      for (int r = 0; r < R; ++r) {
        const uint32_t wv[8] = {q0[r].x, q0[r].y, q0[r].z, q0[r].w, q1[r].x, q1[r].y, q1[r].z, q1[r].w};
        int dot0 = 0, dot1 = 0;
#pragma unroll
        for (int k = 0; k < 8; ++k) {
          dot0 = __dp4a(static_cast<int>(wv[k] & 0x0F0F0F0Fu), xa[k], dot0);
          dot1 = __dp4a(static_cast<int>((wv[k] >> 4) & 0x0F0F0F0Fu), xb[k], dot1);
        }
        const Q4kPair k = q4k_pair(hd[r], sc_lo[r], sc_hi[r], sc_x[r], g);
        acc[r][t] += k.d * (k.s0 * dx0 * static_cast<float>(dot0) + k.s1 * dx1 * static_cast<float>(dot1)) - k.dmin * (k.m0 * sx0 + k.m1 * sx1);
      }
    }
  };
  if (preloaded_loop<T <= 2 ? 4 : 0, T <= 2 ? 2 : 1, W>(live, wr.lane, n_items, load, body)) store_rows<T, R>(acc, wr);
}

// Q4_K for two tokens by halves of gemv_q4_k's items: a lane takes 16 bytes of levels (the same
// 16 elements of two sub-blocks), so that each load instruction of a warp reads whole sectors; the
// sub-blocks' minimum terms come once, from the lane of the first half. On an H100, Llama-3-8B
// Q4_K_M: two sequences 1.08x gemv_q4_k, but one 0.90x (and 4 loads a time or 8 before the wait:
// no better), so one token stays with gemv_q4_k.
template <int T, int R>
__global__ void __launch_bounds__(kWarp* kRowsPerBlock) gemv_q4_k_halves(const __grid_constant__ Job job, const int8_t* __restrict__ xq,
                                                                        const float* __restrict__ xd, const float* __restrict__ xs, int nb,
                                                                        int64_t row_bytes) {
  WarpRows<R> wr;
  const bool live = warp_rows(job, wr);
  const auto* w = static_cast<const uint8_t*>(wr.sg.levels);
  const int(&rr)[R] = wr.rr;
  struct W {
    uint4 q[R], head[R];
  };
  const auto load = [&](int it) {
    const int b = it / 8, g = (it % 8) / 2, h = it % 2;
    W v;
#pragma unroll
    for (int r = 0; r < R; ++r) {
      const uint8_t* blk = w + static_cast<int64_t>(rr[r]) * row_bytes + static_cast<int64_t>(b) * 144;
      v.q[r] = weight16(reinterpret_cast<const uint4*>(blk + 16 + 32 * g + 16 * h));
      v.head[r] = __ldg(reinterpret_cast<const uint4*>(blk));
    }
    return v;
  };
  float acc[R][T] = {};
  const int n_items = nb * 8, nb32 = nb * 8;
  const auto body = [&](int it, const W& v) {
    const int b = it / 8, g = (it % 8) / 2, h = it % 2;
#pragma unroll
    for (int t = 0; t < T; ++t) {
      const int blk0 = t * nb32 + b * 8 + 2 * g;  // activation blocks of the two sub-blocks
      const uint4 a = __ldg(reinterpret_cast<const uint4*>(xq + static_cast<int64_t>(blk0) * 32 + 16 * h));
      const uint4 c = __ldg(reinterpret_cast<const uint4*>(xq + static_cast<int64_t>(blk0 + 1) * 32 + 16 * h));
      const int xa[4] = {int(a.x), int(a.y), int(a.z), int(a.w)};
      const int xb[4] = {int(c.x), int(c.y), int(c.z), int(c.w)};
      const float dx0 = __ldg(xd + blk0), dx1 = __ldg(xd + blk0 + 1);
      const float sx0 = h == 0 ? __ldg(xs + blk0) : 0.0f, sx1 = h == 0 ? __ldg(xs + blk0 + 1) : 0.0f;
#pragma unroll
      for (int r = 0; r < R; ++r) {
        const uint32_t wv[4] = {v.q[r].x, v.q[r].y, v.q[r].z, v.q[r].w};
        int dot0 = 0, dot1 = 0;
#pragma unroll
        for (int k = 0; k < 4; ++k) {
          dot0 = __dp4a(static_cast<int>(wv[k] & 0x0F0F0F0Fu), xa[k], dot0);
          dot1 = __dp4a(static_cast<int>((wv[k] >> 4) & 0x0F0F0F0Fu), xb[k], dot1);
        }
        const Q4kPair k = q4k_pair(v.head[r].x, v.head[r].y, v.head[r].z, v.head[r].w, g);
        acc[r][t] += k.d * (k.s0 * dx0 * static_cast<float>(dot0) + k.s1 * dx1 * static_cast<float>(dot1)) - k.dmin * (k.m0 * sx0 + k.m1 * sx1);
      }
    }
  };
  if (preloaded_loop<4, 2, W>(live, wr.lane, n_items, load, body)) store_rows<T, R>(acc, wr);
}

// Q6_K (split layout) with Q8_0-rounded activations: a lane takes one 32-element activation
// block; its levels are 6-bit (4 low bits in ql, 2 high in qh), offset by 32, with one scale per
// 16 elements: sum((q-32)*xq) = dot(q, xq) - 32*sum(xq), all in integers.
template <int T, int R>
__global__ void __launch_bounds__(kWarp* kRowsPerBlock) gemv_q6_k(const __grid_constant__ Job job, const int8_t* __restrict__ xq,
                                                                 const float* __restrict__ xd, int nb) {
  WarpRows<R> wr;
  const bool live = warp_rows(job, wr);
  const auto* w = static_cast<const uint8_t*>(wr.sg.levels);
  const auto* wd = static_cast<const __half*>(wr.sg.scales);
  const int(&rr)[R] = wr.rr;
  struct W {
    uint4 l0[R], l1[R], h0[R], h1[R];
    uint32_t scw[R];
    float d[R];
  };
  const auto load = [&](int it) {
    const int b = it / 8, hh = (it % 8) / 4, k = it % 4;
    W v;
#pragma unroll
    for (int r = 0; r < R; ++r) {
      const uint8_t* blk = w + (static_cast<int64_t>(rr[r]) * nb + b) * kQ6Bytes;
      const uint4* lp = reinterpret_cast<const uint4*>(blk + 64 * hh + 32 * (k & 1));
      const uint4* hp = reinterpret_cast<const uint4*>(blk + 128 + 32 * hh);
      v.l0[r] = weight16<(T <= 2)>(lp);
      v.l1[r] = weight16<(T <= 2)>(lp + 1);
      v.h0[r] = weight16<(T <= 2)>(hp);
      v.h1[r] = weight16<(T <= 2)>(hp + 1);
      v.scw[r] = __ldg(reinterpret_cast<const unsigned short*>(blk + 192 + 8 * hh + 2 * k));  // the two scales of this block
      v.d[r] = __half2float(wd[static_cast<int64_t>(rr[r]) * nb + b]);
    }
    return v;
  };
  float acc[R][T] = {};
  const int n_items = nb * 8;
  const auto body = [&](int it, const W& v) {
    const int b = it / 8, hh = (it % 8) / 4, k = it % 4;
    const auto &l0 = v.l0, &l1 = v.l1, &h0 = v.h0, &h1 = v.h1;
    const auto& scw = v.scw;
    const auto& d = v.d;
#pragma unroll
    for (int t = 0; t < T; ++t) {
      const int xb = t * nb * 8 + b * 8 + hh * 4 + k;
      const uint4* xp = reinterpret_cast<const uint4*>(xq + static_cast<int64_t>(xb) * 32);
      const uint4 a0 = __ldg(xp), a1 = __ldg(xp + 1);
      const int xa[8] = {int(a0.x), int(a0.y), int(a0.z), int(a0.w), int(a1.x), int(a1.y), int(a1.z), int(a1.w)};
      int sum_a = 0, sum_b = 0;
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        sum_a = __dp4a(0x01010101, xa[j], sum_a);
        sum_b = __dp4a(0x01010101, xa[4 + j], sum_b);
      }
      const float dx = __ldg(xd + xb);
#pragma unroll
      for (int r = 0; r < R; ++r) {
        const uint32_t lw[8] = {l0[r].x, l0[r].y, l0[r].z, l0[r].w, l1[r].x, l1[r].y, l1[r].z, l1[r].w};
        const uint32_t hw[8] = {h0[r].x, h0[r].y, h0[r].z, h0[r].w, h1[r].x, h1[r].y, h1[r].z, h1[r].w};
        int dot_a = 0, dot_b = 0;
#pragma unroll
        for (int j = 0; j < 8; ++j) {
          const uint32_t lo = (k < 2 ? lw[j] : lw[j] >> 4) & 0x0F0F0F0Fu;
          const uint32_t hi = ((hw[j] >> (2 * k)) & 0x03030303u) << 4;
          if (j < 4) {
            dot_a = __dp4a(static_cast<int>(lo | hi), xa[j], dot_a);
          } else {
            dot_b = __dp4a(static_cast<int>(lo | hi), xa[j], dot_b);
          }
        }
        const int sc_a = static_cast<int8_t>(scw[r] & 0xFF), sc_b = static_cast<int8_t>(scw[r] >> 8);
        acc[r][t] += d[r] * dx * static_cast<float>(sc_a * (dot_a - 32 * sum_a) + sc_b * (dot_b - 32 * sum_b));
      }
    }
  };
  if (preloaded_loop<T <= 2 ? 4 : 0, T <= 2 ? 2 : 1, W>(live, wr.lane, n_items, load, body)) store_rows<T, R>(acc, wr);
}

// Any other type: each lane reads eight elements at a time through dequant8. TY names the type
// to compile a specialised loop for (Q5_K), or -1 for any.
template <int T, int TY>
__global__ void __launch_bounds__(kWarp* kRowsPerBlock) gemv_generic(const __grid_constant__ Job job, WeightView w,
                                                                    const float* __restrict__ x, int64_t ldx) {
  if constexpr (TY >= 0) w.type = static_cast<DType>(TY);
  WarpRows<1> wr;
  if (!gemv_start(job, wr)) return;
  w.levels = static_cast<const uint8_t*>(wr.sg.levels);
  w.scales = static_cast<const __half*>(wr.sg.scales);
  const int row = wr.row0, lane = wr.lane;
  float acc[1][T] = {};
#pragma unroll 4
  for (int64_t c = lane * 8; c < w.cols; c += kWarp * 8) {
    float wv[8];
    dequant8(w, row, c, wv);  // rows are padded to whole runs of 8 (zeros past cols)
    const int live = w.cols - c < 8 ? static_cast<int>(w.cols - c) : 8;
#pragma unroll
    for (int t = 0; t < T; ++t) {
      const float* xp = x + t * ldx + c;
      float a = 0;
      if (live == 8) {
#pragma unroll
        for (int i = 0; i < 8; ++i) a += wv[i] * __ldg(xp + i);
      } else {
        for (int i = 0; i < live; ++i) a += wv[i] * __ldg(xp + i);
      }
      acc[0][t] += a;
    }
  }
  store_rows<T, 1>(acc, wr);
}

WeightView view_of(const DeviceMatrix& m) {
  return WeightView{m.type, static_cast<const uint8_t*>(m.levels), static_cast<const __half*>(m.scales), m.cols,
                    static_cast<int64_t>(m.row_bytes)};
}

// Deals the segments' rows out to CTAs of `rows_per_cta` rows each.
Job make_job(std::span<const GemvOutput> outs, int rows_per_cta, unsigned& grid) {
  Job job{};
  job.n = static_cast<int>(outs.size());
  int ctas = 0;
  for (int i = 0; i < job.n; ++i) {
    const DeviceMatrix& m = *outs[i].w;
    job.seg[i] = Segment{m.levels, m.scales, outs[i].y, static_cast<int>(m.rows), static_cast<int>(outs[i].ldy)};
    ctas += static_cast<int>((m.rows + rows_per_cta - 1) / rows_per_cta);
    job.cta_end[i] = ctas;
  }
  grid = static_cast<unsigned>(ctas);
  return job;
}

template <int T, int R>
void launch_integer(std::span<const GemvOutput> outs, const QuantizedActivations* qx, cudaStream_t st) {
  const DeviceMatrix& m = *outs[0].w;
  const int cols = static_cast<int>(m.cols), nb = cols / 32;
  unsigned grid = 0;
  const Job job = make_job(outs, kRowsPerBlock * R, grid);
  const dim3 block(kWarp * kRowsPerBlock);
  if constexpr (T == 2) {
    if (m.type == DType::Q4_K) {
      launch(gemv_q4_k_halves<T, R>, grid, block, 0, st, job, qx->q, qx->d, qx->s, cols / 256, static_cast<int64_t>(m.row_bytes));
      return;
    }
  }
  if constexpr (T <= 2) {
    if (m.type == DType::Q6_K) {
      launch(gemv_q6_k_pieces<T, R>, grid, block, 0, st, job, qx->q, qx->d, cols / 256);
      return;
    }
    if (m.type == DType::Q8_0) {
      launch(gemv_q8_0_halves<T, R>, grid, block, 0, st, job, qx->q, qx->d, nb);
      return;
    }
  }
  if (m.type == DType::Q4_K) {
    launch(gemv_q4_k<T, R>, grid, block, 0, st, job, qx->q, qx->d, qx->s, cols / 256, static_cast<int64_t>(m.row_bytes));
  } else if (m.type == DType::Q6_K) {
    launch(gemv_q6_k<T, R>, grid, block, 0, st, job, qx->q, qx->d, cols / 256);
  } else if (m.type == DType::Q4_0) {
    launch(gemv_q4_0<T, R>, grid, block, 0, st, job, qx->q, qx->d, qx->s, nb);
  } else {
    launch(gemv_q8_0<T, R>, grid, block, 0, st, job, qx->q, qx->d, qx->s, nb);
  }
}

// VIREO_CUDA_GEMV_WARP_ROWS: rows a warp of the gemv kernels takes, forced (1, 2 or 4; 0: by
// type and tokens, see launch_gemv).
int forced_warp_rows() {
  static const int rows = [] {
    const char* e = std::getenv("VIREO_CUDA_GEMV_WARP_ROWS");
    return e != nullptr ? std::atoi(e) : 0;
  }();
  return rows;
}

template <int T>
void launch_gemv(std::span<const GemvOutput> outs, const float* x, int64_t ldx, const QuantizedActivations* qx, cudaStream_t st) {
  const DeviceMatrix& m = *outs[0].w;
  const int cols = static_cast<int>(m.cols);
  const dim3 block(kWarp * kRowsPerBlock);
  unsigned grid = 0;
  if (m.type == DType::F16 && cols % 8 == 0 && ldx % 4 == 0) {
    // 2 rows a warp from 3 tokens (1.36x 1 row for 4 tokens on an H100; even for 1).
    const int rows = forced_warp_rows() == 1 || (forced_warp_rows() == 0 && T <= 2) ? 1 : 2;
    const Job job = make_job(outs, kRowsPerBlock * rows, grid);
    if (rows == 2) {
      launch(gemv_f16<T, 2>, grid, block, 0, st, job, x, cols / 8, static_cast<int>(ldx));
    } else {
      // One token: 8 loads of a row before the wait, then 4 at a time (H100, Llama-3-8B F16, one
      // sequence: 1.025x 4 and 4; 8 and 8: 1.016x; 12 or 16 before the wait: 0.90-0.94x).
      if constexpr (T == 1) {
        launch(gemv_f16<T, 1, 8, 4>, grid, block, 0, st, job, x, cols / 8, static_cast<int>(ldx));
      } else {
        launch(gemv_f16<T, 1>, grid, block, 0, st, job, x, cols / 8, static_cast<int>(ldx));
      }
    }
    return;
  }
  if (!uses_q8_activations(m.type)) {
    const Job job = make_job(outs, kRowsPerBlock, grid);
    switch (m.type) {
      case DType::Q5_K: launch(gemv_generic<T, static_cast<int>(DType::Q5_K)>, grid, block, 0, st, job, view_of(m), x, ldx); break;
      default: launch(gemv_generic<T, -1>, grid, block, 0, st, job, view_of(m), x, ldx); break;
    }
    return;
  }
  if (qx == nullptr || qx->n_tokens < T || qx->cols != m.cols) {
    throw Error(ErrorCode::InvalidArgument, "cuda gemv: activations were not quantized for this product");
  }
  // Rows per warp: more rows share each activation load, but hold more registers (4 rows: 80, so
  // three CTAs an SM). For one or two tokens, where the weights' stream is all, 2 rows measured
  // fastest on an H100 for Q4_0 (1.06x 4 rows for big matrices and 1 row for small ones) and
  // Q4_K_M (1.05x 1 row); Q8_0, twice the bytes a block, 1 row (1.06x 2 rows).
  const int forced_rows = forced_warp_rows();
  if (forced_rows == 1 || (forced_rows == 0 && T <= 2 && m.type == DType::Q8_0)) return launch_integer<T, 1>(outs, qx, st);
  if (forced_rows == 2 || (forced_rows != 4 && T <= 2)) return launch_integer<T, 2>(outs, qx, st);
  launch_integer<T, kRowsPerWarp>(outs, qx, st);
}

QuantizedActivations g_x;  // scratch of the default-stream convenience gemv

}  // namespace

bool device_available() {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}

std::string device_name(int device) {
  cudaDeviceProp p{};
  if (cudaGetDeviceProperties(&p, device) != cudaSuccess) return "none";
  return p.name;
}

bool uses_q8_activations(DType type) {
  return type == DType::Q4_0 || type == DType::Q8_0 || type == DType::Q4_K || type == DType::Q6_K;
}

bool supports_type(DType type) {
  switch (type) {
    case DType::F32: case DType::F16: case DType::BF16: case DType::Q4_0: case DType::Q4_1: case DType::Q5_0:
    case DType::Q5_1: case DType::Q8_0: case DType::Q4_K: case DType::Q5_K: case DType::Q6_K:
      return true;
    default:
      return false;
  }
}

DeviceMatrix upload_matrix(DType type, const void* host_rows, int64_t rows, int64_t cols) {
  if (!supports_type(type)) {
    throw Error(ErrorCode::Unsupported, "cuda: weight type " + std::to_string(static_cast<int>(type)) + " is not supported");
  }
  DeviceMatrix m;
  m.type = type;
  m.rows = rows;
  m.cols = cols;
  const auto* src = static_cast<const uint8_t*>(host_rows);
  if (type == DType::Q6_K) {  // split: 208-byte records (ql, qh, scales) and the d values
    m.row_bytes = ref::row_bytes(type, cols);
    const int64_t nb = cols / 256;
    std::vector<uint8_t> records(static_cast<size_t>(rows * nb) * kQ6Bytes);
    std::vector<uint16_t> ds(static_cast<size_t>(rows * nb));
    for (int64_t i = 0; i < rows * nb; ++i) {
      const uint8_t* b = src + static_cast<size_t>(i) * sizeof(block_q6_K);
      std::memcpy(records.data() + static_cast<size_t>(i) * kQ6Bytes, b, kQ6Bytes);  // ql, qh, scales lead the block
      std::memcpy(&ds[static_cast<size_t>(i)], b + kQ6Bytes, 2);
    }
    m.bytes = records.size() + ds.size() * 2;
    check(cudaMalloc(&m.levels, records.size()), "malloc");
    check(cudaMalloc(&m.scales, ds.size() * 2 + 4), "malloc");  // qgemm reads d in aligned pairs
    check(cudaMemcpy(m.levels, records.data(), records.size(), cudaMemcpyHostToDevice), "upload");
    check(cudaMemcpy(m.scales, ds.data(), ds.size() * 2, cudaMemcpyHostToDevice), "upload");
    return m;
  }
  if (type != DType::Q4_0 && type != DType::Q8_0) {
    const size_t file_row = ref::row_bytes(type, cols);  // checks whole blocks
    m.row_bytes = file_row;
    if (cols % 8 != 0) {  // plain types: rows padded with zeros to whole runs of 8 (aligned reads)
      m.row_bytes = ref::row_bytes(type, (cols + 7) / 8 * 8);
    }
    m.bytes = file_row * static_cast<size_t>(rows);
    check(cudaMalloc(&m.levels, m.row_bytes * static_cast<size_t>(rows)), "malloc");
    if (m.row_bytes == file_row) {
      check(cudaMemcpy(m.levels, src, m.bytes, cudaMemcpyHostToDevice), "upload");
    } else {
      check(cudaMemset(m.levels, 0, m.row_bytes * static_cast<size_t>(rows)), "memset");
      check(cudaMemcpy2D(m.levels, m.row_bytes, src, file_row, file_row, static_cast<size_t>(rows), cudaMemcpyHostToDevice), "upload");
    }
    return m;
  }
  m.row_bytes = ref::row_bytes(type, cols);
  const int64_t nb = cols / 32;
  const size_t lv = type == DType::Q4_0 ? 16 : 32, blk = type == DType::Q4_0 ? sizeof(block_q4_0) : sizeof(block_q8_0);
  std::vector<uint8_t> levels(static_cast<size_t>(rows * nb) * lv);
  std::vector<uint16_t> scales(static_cast<size_t>(rows * nb));
  for (int64_t i = 0; i < rows * nb; ++i) {
    const uint8_t* b = src + static_cast<size_t>(i) * blk;
    std::memcpy(&scales[static_cast<size_t>(i)], b, 2);  // d is the first field of both blocks
    std::memcpy(levels.data() + static_cast<size_t>(i) * lv, b + 2, lv);
  }
  m.bytes = levels.size() + scales.size() * 2;
  check(cudaMalloc(&m.levels, levels.size()), "malloc");
  check(cudaMalloc(&m.scales, scales.size() * 2), "malloc");
  check(cudaMemcpy(m.levels, levels.data(), levels.size(), cudaMemcpyHostToDevice), "upload");
  check(cudaMemcpy(m.scales, scales.data(), scales.size() * 2, cudaMemcpyHostToDevice), "upload");
  return m;
}

void free_matrix(DeviceMatrix& m) {
  cudaFree(m.levels);
  cudaFree(m.scales);
  m = {};
}

float* device_alloc_floats(size_t n) {
  void* p = nullptr;
  check(cudaMalloc(&p, n * sizeof(float)), "malloc");
  return static_cast<float*>(p);
}
void device_free(void* p) { cudaFree(p); }
void copy_to_device(float* dst, const float* src, size_t n) { check(cudaMemcpy(dst, src, n * 4, cudaMemcpyHostToDevice), "copy"); }
void copy_to_host(float* dst, const float* src, size_t n) { check(cudaMemcpy(dst, src, n * 4, cudaMemcpyDeviceToHost), "copy"); }

void QuantizedActivations::ensure(size_t blocks) {
  if (blocks <= capacity) return;
  cudaFree(q);
  cudaFree(d);
  cudaFree(s);
  q = nullptr, d = nullptr, s = nullptr, capacity = 0;
  check(cudaMalloc(&q, blocks * 32), "malloc");
  check(cudaMalloc(&d, blocks * sizeof(float)), "malloc");
  check(cudaMalloc(&s, blocks * sizeof(float)), "malloc");
  capacity = blocks;
}

QuantizedActivations::~QuantizedActivations() {
  cudaFree(q);
  cudaFree(d);
  cudaFree(s);
}

void quantize_activations(const float* x, int64_t ldx, int n_tokens, int64_t cols, QuantizedActivations& qx, Stream s) {
  if (cols % 32 != 0) throw Error(ErrorCode::InvalidArgument, "cuda: activations of " + std::to_string(cols) + " columns are not whole blocks");
  const int nb = static_cast<int>(cols / 32);
  const size_t n_blocks = static_cast<size_t>(n_tokens) * nb;
  qx.ensure(n_blocks);
  qx.n_tokens = n_tokens;
  qx.cols = cols;
  launch(quantize_x_q8, static_cast<unsigned>((n_blocks + 7) / 8), 256, 0, static_cast<cudaStream_t>(s), x, ldx, nb, qx.q, qx.d, qx.s,
                                                                                                    static_cast<int>(n_blocks));
  check(cudaGetLastError(), "quantize launch");
}

void gemv_multi(std::span<const GemvOutput> outs, const float* x, int64_t ldx, const QuantizedActivations* qx, int n_tokens,
                Stream s) {
  if (outs.empty() || outs.size() > static_cast<size_t>(kMaxGemvSegments)) {
    throw Error(ErrorCode::InvalidArgument, "cuda gemv: 1 to 3 matrices per launch");
  }
  for (const auto& o : outs) {
    if (o.w->type != outs[0].w->type || o.w->cols != outs[0].w->cols || o.w->row_bytes != outs[0].w->row_bytes) {
      throw Error(ErrorCode::InvalidArgument, "cuda gemv: matrices of one launch must share type and width");
    }
  }
  const auto st = static_cast<cudaStream_t>(s);
  switch (n_tokens) {
    case 1: launch_gemv<1>(outs, x, ldx, qx, st); break;
    case 2: launch_gemv<2>(outs, x, ldx, qx, st); break;
    case 3: launch_gemv<3>(outs, x, ldx, qx, st); break;
    case 4: launch_gemv<4>(outs, x, ldx, qx, st); break;
    case 5: launch_gemv<5>(outs, x, ldx, qx, st); break;
    case 6: launch_gemv<6>(outs, x, ldx, qx, st); break;
    case 7: launch_gemv<7>(outs, x, ldx, qx, st); break;
    case 8: launch_gemv<8>(outs, x, ldx, qx, st); break;
    default: throw Error(ErrorCode::InvalidArgument, "cuda gemv: 1 to 8 tokens, got " + std::to_string(n_tokens));
  }
  check(cudaGetLastError(), "gemv launch");
}

void gemv(const DeviceMatrix& m, const float* x, int64_t ldx, const QuantizedActivations* qx, int n_tokens, float* y,
          int64_t ldy, Stream s) {
  const GemvOutput out{&m, y, ldy};
  gemv_multi({&out, 1}, x, ldx, qx, n_tokens, s);
}

void gemv(const DeviceMatrix& m, const float* x, float* y, int n_tokens) {
  const QuantizedActivations* qx = nullptr;
  if (uses_q8_activations(m.type)) {
    quantize_activations(x, m.cols, n_tokens, m.cols, g_x, nullptr);
    qx = &g_x;
  }
  gemv(m, x, m.cols, qx, n_tokens, y, m.rows, nullptr);
}

double time_gemv_ms(const DeviceMatrix& m, const float* x, float* y, int n_tokens, int iters) {
  return device_ms(iters, [&] { gemv(m, x, y, n_tokens); }) / iters;
}

double copy_bandwidth_gb_s(size_t bytes, int iters) {
  void *src = nullptr, *dst = nullptr;
  check(cudaMalloc(&src, bytes), "malloc");
  check(cudaMalloc(&dst, bytes), "malloc");
  cudaMemset(src, 1, bytes);
  const double ms = device_ms(iters, [&] { cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToDevice); });
  cudaFree(src);
  cudaFree(dst);
  return 2.0 * static_cast<double>(bytes) * iters / (ms * 1e-3) / 1e9;
}

}  // namespace vireo::cuda
