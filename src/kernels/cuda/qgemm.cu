#include "vireo/kernels/cuda/qgemm.h"

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdlib>
#include <span>
#include <string>

#include "dequant.cuh"
#include "device_util.cuh"
#include "vireo/core/error_types.h"

namespace vireo::cuda {
namespace {

// A CTA walks the shared width in stages of KB quant blocks (KB * 32 columns), S stages in
// flight through cp.async, and computes a tile of weight rows x tokens. Its WM x WN warps each
// own TM x TN mma tiles of 16 rows x 8 tokens.
template <int WM_, int WN_, int TM_, int TN_, int KB_, int S_, int MIN_CTAS = 1>
struct Config {
  static constexpr int WM = WM_, WN = WN_, TM = TM_, TN = TN_, KB = KB_, S = S_;
  static constexpr int kMinCtas = MIN_CTAS;  // resident per SM (caps registers to fit)
};
constexpr int kMinStageCols = 128;  // KB = 4

__device__ __forceinline__ void cp_async16(void* smem, const void* gmem) {
  const auto s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(s), "l"(gmem));
}
__device__ __forceinline__ void cp_async8(void* smem, const void* gmem) {
  const auto s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.ca.shared.global [%0], [%1], 8;\n" ::"r"(s), "l"(gmem));
}
__device__ __forceinline__ void cp_async4(void* smem, const void* gmem) {
  const auto s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4;\n" ::"r"(s), "l"(gmem));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

// acc += a (16x16, row) * b (16x8, col), F16 in, F32 accumulated.
__device__ __forceinline__ void mma_f16(const uint32_t (&a)[4], uint32_t b0, uint32_t b1, float (&acc)[4]) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(acc[0]), "+f"(acc[1]), "+f"(acc[2]), "+f"(acc[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ uint32_t h2_bits(__half2 h) { return *reinterpret_cast<uint32_t*>(&h); }
__device__ __forceinline__ __half2 bits_h2(uint32_t u) { return *reinterpret_cast<__half2*>(&u); }

// Weights become F16 in registers, one block of 32 at a time, as two k16 mma operands. Within a
// block the order of k is free as long as weights and activations agree: a thread's word of
// levels holds 4 elements (k..k+3) and it feeds them as the pairs (k, k+2) and (k+1, k+3), so
// the activations are stored with each run of 4 as x0 x2 x1 x3 (see convert_x).
// Levels l in bytes b0 and b2 (or b1 and b3) become the half2 1024 + l; subtracting the offset is
// exact, and the product with the block's scale is one F16 rounding, as cuBLAS's F16 path had.
// Q4_0: a word's low nibbles are elements j..j+3 of the block, its high nibbles j+16..j+19.
__device__ __forceinline__ void q4_pairs(uint32_t w, __half2 d, uint32_t& lo02, uint32_t& lo13, uint32_t& hi02, uint32_t& hi13) {
  const __half2 off = __half2half2(__ushort_as_half(0x6408));  // 1032 = 1024 + 8
  lo02 = h2_bits(__hmul2(__hsub2(bits_h2((w & 0x000F000Fu) | 0x64006400u), off), d));
  lo13 = h2_bits(__hmul2(__hsub2(bits_h2(((w >> 8) & 0x000F000Fu) | 0x64006400u), off), d));
  hi02 = h2_bits(__hmul2(__hsub2(bits_h2(((w >> 4) & 0x000F000Fu) | 0x64006400u), off), d));
  hi13 = h2_bits(__hmul2(__hsub2(bits_h2(((w >> 12) & 0x000F000Fu) | 0x64006400u), off), d));
}
// Q8_0: signed bytes; flipping the sign bit gives l + 128 as an unsigned byte.
__device__ __forceinline__ void q8_pairs(uint32_t w, __half2 d, uint32_t& p02, uint32_t& p13) {
  const __half2 off = __half2half2(__ushort_as_half(0x6480));  // 1152 = 1024 + 128
  const uint32_t u = w ^ 0x80808080u;
  p02 = h2_bits(__hmul2(__hsub2(bits_h2(__byte_perm(u, 0x64646464u, 0x4240)), off), d));
  p13 = h2_bits(__hmul2(__hsub2(bits_h2(__byte_perm(u, 0x64646464u, 0x4341)), off), d));
}

// 6-bit (Q6_K) or 4-bit (Q4_K) levels l in a word's bytes, as the pairs (b0, b2) and (b1, b3) of
// half2 values (l - offset) * scale: Q6_K (offset 32, one scale for the word)...
__device__ __forceinline__ void q6_pairs(uint32_t q, __half2 d, uint32_t& p02, uint32_t& p13) {
  const __half2 off = __half2half2(__ushort_as_half(0x6420));  // 1056 = 1024 + 32
  p02 = h2_bits(__hmul2(__hsub2(bits_h2(__byte_perm(q, 0x64646464u, 0x4240)), off), d));
  p13 = h2_bits(__hmul2(__hsub2(bits_h2(__byte_perm(q, 0x64646464u, 0x4341)), off), d));
}
// ... and Q4_K (l * scale - min).
__device__ __forceinline__ void q4k_pairs(uint32_t q, __half2 scale, __half2 neg_min, uint32_t& p02, uint32_t& p13) {
  const __half2 off = __half2half2(__ushort_as_half(0x6400));  // 1024
  p02 = h2_bits(__hfma2(__hsub2(bits_h2(__byte_perm(q, 0x64646464u, 0x4240)), off), scale, neg_min));
  p13 = h2_bits(__hfma2(__hsub2(bits_h2(__byte_perm(q, 0x64646464u, 0x4341)), off), scale, neg_min));
}

// The weight formats qgemm reads, and what one row of a stage (128 columns) keeps in shared
// memory: Q4_0 / Q8_0 their 4 blocks' levels (scales apart); Q4_K half a block's levels, then the
// block's 16-byte head (d, dmin, scale codes); Q6_K half a block's ql, qh and scales, then the
// pair of d values that holds the block's (d is kept apart from the records, see upload_matrix).
enum class WFmt { Q4_0, Q8_0, Q4_K, Q6_K };
template <WFmt F>
constexpr int kStageRowBytes = F == WFmt::Q4_0 ? 64 : F == WFmt::Q8_0 ? 128 : F == WFmt::Q4_K ? 80 : 112;

template <class C, WFmt F>
struct Tile {
  static constexpr int kThreads = C::WM * C::WN * 32;
  static constexpr int kRows = C::WM * C::TM * 16, kTokens = C::WN * C::TN * 8;
  static constexpr bool kBlock32 = F == WFmt::Q4_0 || F == WFmt::Q8_0;
  // Shared-memory rows are padded so that the rows one fragment load touches start in distinct
  // banks (4-byte loads of levels: a row's bytes mod 128 in {16, 48, 80, 112}; 8-byte loads of
  // activations: +32).
  static constexpr int kRowA = kStageRowBytes<F> + (kBlock32 ? 16 : 0), kRowB = C::KB * 64 + 32;
  static_assert(kRowA % 32 == 16, "fragment loads of 8 rows fall in distinct banks");
  static constexpr int kA = kRows * kRowA, kAs = kBlock32 ? kRows * C::KB * 2 : 0, kB = kTokens * kRowB;
  static constexpr int kStageBytes = kA + kAs + kB;
  static constexpr int kSmem = C::S * kStageBytes;
  static_assert(kA % 16 == 0 && kAs % 16 == 0 && kB % 16 == 0, "stage parts stay 16-byte aligned");
  static_assert(C::KB == 4, "a row's scales of one stage are one 8-byte copy");
};

// Up to kMaxQGemmSegments matrices of one type and width times the same activations in one
// launch (q/k/v, gate/up): their row tiles are dealt out to the CTAs in order. Split products
// write partial sums to `part` [split][token][row over all segments], added by reduce_splits.
struct QSegment {
  const uint8_t* levels;
  const __half* scales;
  float* y;
  int64_t ldy;
  int rows, row_base;  // row_base: the segment's first row among all segments' rows
};
struct QJob {
  QSegment seg[kMaxQGemmSegments];
  int tile_end[kMaxQGemmSegments];  // cumulative row tiles per segment
  int n_seg, total_rows;
};
static_assert(kMaxQGemmSegments == 3, "segment_of_unit picks among three segments");

// Weights: levels [rows][nb][16 or 32 B] and F16 scales [rows][nb] (upload_matrix's split
// layout); activations: F16 [n][nb * 32], each run of 4 stored as x0 x2 x1 x3.
template <class C, WFmt F>
__global__ void __launch_bounds__(C::WM* C::WN * 32, C::kMinCtas) qgemm_kernel(const __grid_constant__ QJob job, const __half* __restrict__ x,
                                                                  int n, int nb, float* __restrict__ part, int64_t split_stride,
                                                                  int stages_per_split) {
  using L = Tile<C, F>;
  constexpr bool Q4 = F == WFmt::Q4_0;
  constexpr int WM = C::WM, TM = C::TM, TN = C::TN, KB = C::KB, kStages = C::S;
  extern __shared__ __align__(16) uint8_t smem[];
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, g = lane / 4, t4 = lane % 4;
  const int wm = warp % WM, wn = warp / WM;
  int tile = blockIdx.x;
  const QSegment& sg = segment_of_unit(job.seg, job.tile_end, job.n_seg, tile);
  const uint8_t* __restrict__ wl = sg.levels;
  const __half* __restrict__ ws = sg.scales;
  const int rows = sg.rows;
  const int row0 = tile * L::kRows, tok0 = blockIdx.y * L::kTokens;
  // Split products (gridDim.z > 1) each take a run of stages.
  const int first = blockIdx.z * stages_per_split;
  const int n_stages = min(nb / KB - first, stages_per_split);
  float* __restrict__ y = part != nullptr ? part + blockIdx.z * split_stride + sg.row_base : sg.y;
  const int64_t ldy = part != nullptr ? job.total_rows : sg.ldy;
  // The CTA's weights start towards L2 while the kernel before finishes (see launch()): each
  // row's run of this split is contiguous, one thread a row.
  for (int r = tid; r < L::kRows && n_stages > 0; r += L::kThreads) {
    const size_t gr = static_cast<size_t>(min(row0 + r, rows - 1));
    if constexpr (L::kBlock32) {
      constexpr int kLevelBytes = kStageRowBytes<F> / KB;
      const size_t b0 = gr * nb + static_cast<size_t>(first) * KB;
      prefetch_l2(wl + b0 * kLevelBytes, static_cast<int64_t>(n_stages) * KB * kLevelBytes, 0, 1);
      prefetch_l2(ws + b0, static_cast<int64_t>(n_stages) * KB * 2, 0, 1);
    } else {
      constexpr int kRecord = F == WFmt::Q4_K ? 144 : 208;
      const size_t blk0 = gr * (nb / 8) + first / 2, blks = (first + n_stages + 1) / 2 - first / 2;
      prefetch_l2(wl + blk0 * kRecord, static_cast<int64_t>(blks * kRecord), 0, 1);
    }
  }
  kernel_prologue();

  auto load_stage = [&](int k, int slot) {
    uint8_t* sa = smem + slot * L::kStageBytes;
    uint8_t* sas = sa + L::kA;
    uint8_t* sb = sas + L::kAs;
    const int b0 = (first + k) * KB;
    // Rows past the end read the last row (computed, never stored).
    if constexpr (L::kBlock32) {
      constexpr int kLevelBytes = kStageRowBytes<F> / KB, kChunksA = kStageRowBytes<F> / 16;
      for (int i = tid; i < L::kRows * kChunksA; i += L::kThreads) {
        const int r = i / kChunksA, c = i % kChunksA, gr = min(row0 + r, rows - 1);
        cp_async16(sa + r * L::kRowA + c * 16, wl + (static_cast<size_t>(gr) * nb + b0) * kLevelBytes + c * 16);
      }
      for (int r = tid; r < L::kRows; r += L::kThreads) {
        const int gr = min(row0 + r, rows - 1);
        cp_async8(sas + r * KB * 2, ws + static_cast<size_t>(gr) * nb + b0);
      }
    } else {
      // Super-blocks of 256: this stage is half h of block sb of each row.
      const int nbk = nb / 8, sb = (first + k) / 2, h = (first + k) % 2;
      constexpr int kPieces = F == WFmt::Q4_K ? 5 : 8;
      for (int i = tid; i < L::kRows * kPieces; i += L::kThreads) {
        const int r = i / kPieces, p = i % kPieces, gr = min(row0 + r, rows - 1);
        const size_t blk = static_cast<size_t>(gr) * nbk + sb;
        uint8_t* dst = sa + r * L::kRowA;
        if constexpr (F == WFmt::Q4_K) {  // [d, dmin, scales 12 | qs 128] -> qs half, head
          const uint8_t* rec = wl + blk * 144;
          if (p < 4) cp_async16(dst + p * 16, rec + 16 + 64 * h + p * 16);
          else cp_async16(dst + 64, rec);
        } else {  // [ql 128 | qh 64 | scales 16] -> ql half, qh half, scales half, d pair
          const uint8_t* rec = wl + blk * 208;
          if (p < 4) cp_async16(dst + p * 16, rec + 64 * h + p * 16);
          else if (p < 6) cp_async16(dst + 64 + (p - 4) * 16, rec + 128 + 32 * h + (p - 4) * 16);
          else if (p == 6) cp_async8(dst + 96, rec + 192 + 8 * h);
          else cp_async4(dst + 104, ws + (blk & ~size_t{1}));
        }
      }
    }
    constexpr int kChunksB = KB * 64 / 16;
    for (int i = tid; i < L::kTokens * kChunksB; i += L::kThreads) {
      const int t = i / kChunksB, c = i % kChunksB, gt = min(tok0 + t, n - 1);
      cp_async16(sb + t * L::kRowB + c * 16, x + (static_cast<size_t>(gt) * nb + b0) * 32 + c * 8);
    }
  };

  float acc[TM][TN][4] = {};
  auto compute_stage = [&](int slot, int k) {
    const uint8_t* sa = smem + slot * L::kStageBytes;
    const auto* sas = reinterpret_cast<const __half*>(sa + L::kA);
    const uint8_t* sb = sa + L::kA + L::kAs;
#pragma unroll
    for (int kb = 0; kb < KB; ++kb) {
      // A operands of the block's two k16 halves for rows r (regs 0, 2) and r + 8 (regs 1, 3):
      // this thread's elements 4*t4.. and 16 + 4*t4...
      uint32_t a[TM][2][4];
#pragma unroll
      for (int tm = 0; tm < TM; ++tm) {
        const int r = wm * TM * 16 + tm * 16 + g;
        if constexpr (F == WFmt::Q4_K) {
          const int j = ((first + k) % 2) * 4 + kb;  // sub-block of the super-block
#pragma unroll
          for (int half = 0; half < 2; ++half) {  // rows r and r + 8
            const uint8_t* row = sa + (r + 8 * half) * L::kRowA;
            const uint8_t* head = row + 64;
            int sc, m;
            scale_min_k4(j, head + 4, sc, m);
            const float d = __half2float(*reinterpret_cast<const __half*>(head));
            const float dmin = __half2float(*reinterpret_cast<const __half*>(head + 2));
            const __half2 scale = __float2half2_rn(d * static_cast<float>(sc)), neg_min = __float2half2_rn(-dmin * static_cast<float>(m));
            const int shift = 4 * (kb & 1);
            const uint32_t lo = (*reinterpret_cast<const uint32_t*>(row + 32 * (kb >> 1) + 4 * t4) >> shift) & 0x0F0F0F0Fu;
            const uint32_t hi = (*reinterpret_cast<const uint32_t*>(row + 32 * (kb >> 1) + 16 + 4 * t4) >> shift) & 0x0F0F0F0Fu;
            q4k_pairs(lo, scale, neg_min, a[tm][0][half], a[tm][0][half + 2]);
            q4k_pairs(hi, scale, neg_min, a[tm][1][half], a[tm][1][half + 2]);
          }
        } else if constexpr (F == WFmt::Q6_K) {
          const int nbk = nb / 8, sb = (first + k) / 2;
#pragma unroll
          for (int half = 0; half < 2; ++half) {
            const uint8_t* row = sa + (r + 8 * half) * L::kRowA;
            const size_t blk = static_cast<size_t>(min(row0 + r + 8 * half, rows - 1)) * nbk + sb;
            const float d = __half2float(reinterpret_cast<const __half*>(row + 104)[blk & 1]);
            const auto* scales = reinterpret_cast<const int8_t*>(row + 96);
            const __half2 ds_lo = __float2half2_rn(d * static_cast<float>(scales[2 * kb]));
            const __half2 ds_hi = __float2half2_rn(d * static_cast<float>(scales[2 * kb + 1]));
            const int lshift = 4 * (kb >> 1), hshift = 2 * kb;
            const uint32_t lo = ((*reinterpret_cast<const uint32_t*>(row + 32 * (kb & 1) + 4 * t4) >> lshift) & 0x0F0F0F0Fu) |
                                (((*reinterpret_cast<const uint32_t*>(row + 64 + 4 * t4) >> hshift) & 0x03030303u) << 4);
            const uint32_t hi = ((*reinterpret_cast<const uint32_t*>(row + 32 * (kb & 1) + 16 + 4 * t4) >> lshift) & 0x0F0F0F0Fu) |
                                (((*reinterpret_cast<const uint32_t*>(row + 64 + 16 + 4 * t4) >> hshift) & 0x03030303u) << 4);
            q6_pairs(lo, ds_lo, a[tm][0][half], a[tm][0][half + 2]);
            q6_pairs(hi, ds_hi, a[tm][1][half], a[tm][1][half + 2]);
          }
        } else if constexpr (Q4) {
          const __half2 d0 = __half2half2(sas[r * KB + kb]), d1 = __half2half2(sas[(r + 8) * KB + kb]);
          const uint32_t w0 = *reinterpret_cast<const uint32_t*>(sa + r * L::kRowA + kb * 16 + 4 * t4);
          const uint32_t w1 = *reinterpret_cast<const uint32_t*>(sa + (r + 8) * L::kRowA + kb * 16 + 4 * t4);
          q4_pairs(w0, d0, a[tm][0][0], a[tm][0][2], a[tm][1][0], a[tm][1][2]);
          q4_pairs(w1, d1, a[tm][0][1], a[tm][0][3], a[tm][1][1], a[tm][1][3]);
        } else {
          const __half2 d0 = __half2half2(sas[r * KB + kb]), d1 = __half2half2(sas[(r + 8) * KB + kb]);
          const uint8_t* p0 = sa + r * L::kRowA + kb * 32 + 4 * t4;
          const uint8_t* p1 = p0 + 8 * L::kRowA;
          q8_pairs(*reinterpret_cast<const uint32_t*>(p0), d0, a[tm][0][0], a[tm][0][2]);
          q8_pairs(*reinterpret_cast<const uint32_t*>(p1), d1, a[tm][0][1], a[tm][0][3]);
          q8_pairs(*reinterpret_cast<const uint32_t*>(p0 + 16), d0, a[tm][1][0], a[tm][1][2]);
          q8_pairs(*reinterpret_cast<const uint32_t*>(p1 + 16), d1, a[tm][1][1], a[tm][1][3]);
        }
      }
#pragma unroll
      for (int tn = 0; tn < TN; ++tn) {
        const uint8_t* pb = sb + (wn * TN * 8 + tn * 8 + g) * L::kRowB + kb * 64 + 8 * t4;
        const uint2 lo = *reinterpret_cast<const uint2*>(pb), hi = *reinterpret_cast<const uint2*>(pb + 32);
#pragma unroll
        for (int tm = 0; tm < TM; ++tm) {
          mma_f16(a[tm][0], lo.x, lo.y, acc[tm][tn]);
          mma_f16(a[tm][1], hi.x, hi.y, acc[tm][tn]);
        }
      }
    }
  };

#pragma unroll
  for (int s = 0; s < kStages - 1; ++s) {
    if (s < n_stages) load_stage(s, s);
    cp_async_commit();
  }
  for (int k = 0; k < n_stages; ++k) {
    cp_async_wait<kStages - 2>();
    __syncthreads();  // stage k landed for every thread; slot (k-1) % kStages is free again
    const int next = k + kStages - 1;
    if (next < n_stages) load_stage(next, next % kStages);
    cp_async_commit();
    compute_stage(k % kStages, k);
  }

  // C fragment: acc 0/1 row g, tokens 2*t4 and 2*t4+1; acc 2/3 row g+8.
#pragma unroll
  for (int tm = 0; tm < TM; ++tm) {
#pragma unroll
    for (int tn = 0; tn < TN; ++tn) {
      const int r = row0 + wm * TM * 16 + tm * 16 + g, t = tok0 + wn * TN * 8 + tn * 8 + 2 * t4;
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int ri = r + (i >= 2 ? 8 : 0), ti = t + (i & 1);
        if (ri < rows && ti < n) y[static_cast<int64_t>(ti) * ldy + ri] = acc[tm][tn][i];
      }
    }
  }
}

// x (F32, [n][ldx]) to F16 with each run of 4 as x0 x2 x1 x3; one thread per run.
__global__ void convert_x(const float* __restrict__ x, int64_t ldx, int n, int64_t cols, __half* __restrict__ out) {
  kernel_prologue();
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x, runs = cols / 4;
  if (i >= runs * n) return;
  const int64_t t = i / runs, c = (i % runs) * 4;
  const float4 v = *reinterpret_cast<const float4*>(x + t * ldx + c);
  __half2* o = reinterpret_cast<__half2*>(out + t * cols + c);
  o[0] = __floats2half2_rn(v.x, v.z);
  o[1] = __floats2half2_rn(v.y, v.w);
}

__global__ void reduce_splits(const __grid_constant__ QJob job, const float* __restrict__ part, int splits, int64_t count) {
  kernel_prologue();
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= count) return;
  float sum = 0;
  for (int s = 0; s < splits; ++s) sum += part[s * count + i];
  const int64_t t = i / job.total_rows;
  const int r = static_cast<int>(i % job.total_rows);
  const QSegment& sg = r >= job.seg[2].row_base && job.n_seg > 2 ? job.seg[2] : r >= job.seg[1].row_base && job.n_seg > 1 ? job.seg[1] : job.seg[0];
  sg.y[t * sg.ldy + (r - sg.row_base)] = sum;
}

struct Run {
  std::span<const QGemmOutput> outs;
  int n;
  QGemmWorkspace& ws;
  int splits;  // 0: chosen by the grid's size
  cudaStream_t st;
};

template <class C, WFmt F>
void launch_config(const Run& run) {
  using L = Tile<C, F>;
  auto* kernel = qgemm_kernel<C, F>;
  static const bool configured = [&] {  // over 48 KiB of shared memory needs opting in, once per kernel
    check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, L::kSmem), "qgemm smem");
    return true;
  }();
  (void)configured;
  QJob job{};
  job.n_seg = static_cast<int>(run.outs.size());
  int tiles = 0;
  for (int i = 0; i < job.n_seg; ++i) {
    const QGemmOutput& o = run.outs[i];
    job.seg[i] = QSegment{static_cast<const uint8_t*>(o.w->levels), static_cast<const __half*>(o.w->scales), o.y, o.ldy,
                          static_cast<int>(o.w->rows), job.total_rows};
    job.total_rows += static_cast<int>(o.w->rows);
    tiles += static_cast<int>((o.w->rows + L::kRows - 1) / L::kRows);
    job.tile_end[i] = tiles;
  }
  const int n = run.n, nb = static_cast<int>(run.outs[0].w->cols / 32), n_stages = nb / C::KB;
  dim3 grid(static_cast<unsigned>(tiles), static_cast<unsigned>((n + L::kTokens - 1) / L::kTokens));
  // Few CTAs (few rows and tokens) leave SMs idle and each CTA's stages serial: split the width.
  int splits = run.splits;
  if (splits <= 0) {  // measured on an H100: split only grids under one wave, to about 1.5 waves
    const int ctas = static_cast<int>(grid.x * grid.y);
    splits = ctas >= sm_count() ? 1 : std::max(1, std::min((3 * sm_count() / 2 + ctas - 1) / ctas, n_stages / 4));
  }
  splits = std::clamp(splits, 1, n_stages);
  const int per_split = (n_stages + splits - 1) / splits;
  splits = (n_stages + per_split - 1) / per_split;  // none empty
  grid.z = static_cast<unsigned>(splits);
  const int64_t count = static_cast<int64_t>(n) * job.total_rows;
  float* part = nullptr;
  if (splits > 1) {
    run.ws.ensure_partial(static_cast<size_t>(count) * splits);
    part = run.ws.partial;
  }
  launch(kernel, grid, L::kThreads, L::kSmem, run.st, job, static_cast<const __half*>(run.ws.x16), n, nb, part, count, per_split);
  if (splits > 1) launch(reduce_splits, static_cast<unsigned>((count + 255) / 256), 256, 0, run.st, job, part, splits, count);
}

template <WFmt F>
void launch_tile(QGemmTile tile, const Run& run) {
  if (tile == QGemmTile::Auto) {
    static const int forced = [] {  // VIREO_CUDA_QGEMM_TILE: a QGemmTile's number, for tuning
      const char* e = std::getenv("VIREO_CUDA_QGEMM_TILE");
      return e != nullptr ? std::atoi(e) : 0;
    }();
    const int n = run.n;
    // Measured best on an H100 (Llama-3-8B shapes): 17 to 32 rows 128 x 32 tiles (twice the
    // speed of 128 x 64 ones, half of whose columns would be padding), then 128 x 64 up to 128.
    tile = n <= 16 ? QGemmTile::R32xT32 : n <= 32 ? QGemmTile::R128xT32W8 : QGemmTile::R128xT64W8;
    if (forced > 0 && n > 16) tile = static_cast<QGemmTile>(forced);
  }
  switch (tile) {
    case QGemmTile::R32xT32: launch_config<Config<2, 1, 1, 4, 4, 4>, F>(run); break;
    case QGemmTile::R64xT64: launch_config<Config<2, 2, 2, 4, 4, 4>, F>(run); break;
    case QGemmTile::R128xT64: launch_config<Config<4, 1, 2, 8, 4, 4>, F>(run); break;
    case QGemmTile::R64xT128: launch_config<Config<2, 2, 2, 8, 4, 3>, F>(run); break;
    case QGemmTile::R128xT64W8: launch_config<Config<8, 1, 1, 8, 4, 3, 2>, F>(run); break;
    case QGemmTile::R128xT64W8Square: launch_config<Config<4, 2, 2, 4, 4, 3, 2>, F>(run); break;
    case QGemmTile::R64xT64S3: launch_config<Config<2, 2, 2, 4, 4, 3, 3>, F>(run); break;
    case QGemmTile::R128xT32W8: launch_config<Config<8, 1, 1, 4, 4, 3, 2>, F>(run); break;
    default: launch_config<Config<4, 2, 2, 8, 4, 3>, F>(run); break;
  }
}

QGemmWorkspace g_ws;  // of time_qgemm_ms

}  // namespace

void QGemmWorkspace::ensure_partial(size_t floats) {
  if (floats <= partial_capacity) return;
  cudaFree(partial);
  partial = nullptr, partial_capacity = 0;
  check(cudaMalloc(&partial, floats * sizeof(float)), "malloc");
  partial_capacity = floats;
}

QGemmWorkspace::~QGemmWorkspace() {
  cudaFree(partial);
  cudaFree(x16);
}

bool qgemm_supports(const DeviceMatrix& w) {
  const bool type = w.type == DType::Q4_0 || w.type == DType::Q8_0 || w.type == DType::Q4_K || w.type == DType::Q6_K;
  return type && w.cols % kMinStageCols == 0 && w.rows > 0;
}

void qgemm_load_x(const float* x, int64_t ldx, int n_tokens, int64_t cols, QGemmWorkspace& ws, Stream s) {
  if (cols % kMinStageCols != 0 || ldx % 4 != 0) {
    throw Error(ErrorCode::InvalidArgument, "cuda qgemm: activations of " + std::to_string(cols) + " columns are not whole runs of 128");
  }
  const size_t halves = static_cast<size_t>(n_tokens) * static_cast<size_t>(cols);
  if (halves > ws.x16_capacity) {
    cudaFree(ws.x16);
    ws.x16 = nullptr, ws.x16_capacity = 0;
    check(cudaMalloc(&ws.x16, halves * 2), "malloc");
    ws.x16_capacity = halves;
  }
  ws.n_tokens = n_tokens;
  ws.cols = cols;
  const int64_t runs = static_cast<int64_t>(n_tokens) * (cols / 4);
  if (runs == 0) return;
  launch(convert_x, static_cast<unsigned>((runs + 255) / 256), 256, 0, static_cast<cudaStream_t>(s), x, ldx, n_tokens, cols,
                                                                                                static_cast<__half*>(ws.x16));
  check(cudaGetLastError(), "qgemm convert launch");
}

void qgemm_multi(std::span<const QGemmOutput> outs, int n_tokens, QGemmWorkspace& ws, Stream s, QGemmOptions opt) {
  if (outs.empty() || outs.size() > static_cast<size_t>(kMaxQGemmSegments)) {
    throw Error(ErrorCode::InvalidArgument, "cuda qgemm: 1 to 3 matrices per launch");
  }
  const DeviceMatrix& w = *outs[0].w;
  for (const auto& o : outs) {
    if (!qgemm_supports(*o.w)) {
      throw Error(ErrorCode::InvalidArgument, "cuda qgemm: weights must be Q4_0, Q8_0, Q4_K or Q6_K with whole runs of 128 columns");
    }
    if (o.w->type != w.type || o.w->cols != w.cols) throw Error(ErrorCode::InvalidArgument, "cuda qgemm: matrices of one launch must share type and width");
  }
  if (ws.cols != w.cols || ws.n_tokens < n_tokens) {
    throw Error(ErrorCode::InvalidArgument, "cuda qgemm: activations were not loaded for this product (qgemm_load_x)");
  }
  if (n_tokens <= 0) return;
  const Run run{outs, n_tokens, ws, opt.splits, static_cast<cudaStream_t>(s)};
  switch (w.type) {
    case DType::Q4_0: launch_tile<WFmt::Q4_0>(opt.tile, run); break;
    case DType::Q8_0: launch_tile<WFmt::Q8_0>(opt.tile, run); break;
    case DType::Q4_K: launch_tile<WFmt::Q4_K>(opt.tile, run); break;
    default: launch_tile<WFmt::Q6_K>(opt.tile, run); break;
  }
  check(cudaGetLastError(), "qgemm launch");
}

void qgemm(const DeviceMatrix& w, int n_tokens, float* y, int64_t ldy, QGemmWorkspace& ws, Stream s, QGemmOptions opt) {
  const QGemmOutput out{&w, y, ldy};
  qgemm_multi({&out, 1}, n_tokens, ws, s, opt);
}

double time_qgemm_ms(const DeviceMatrix& w, const float* x, float* y, int n_tokens, int iters, QGemmOptions opt) {
  qgemm_load_x(x, w.cols, n_tokens, w.cols, g_ws, nullptr);
  return device_ms(iters, [&] { qgemm(w, n_tokens, y, w.rows, g_ws, nullptr, opt); }) / iters;
}

}  // namespace vireo::cuda
