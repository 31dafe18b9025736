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

// Four 8x8 F16 matrices from shared memory, each thread's register i holding row g, columns
// 2*t4 and 2*t4 + 1 of matrix i (an mma B operand when rows are tokens and columns k).
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* row) {
  const auto s = static_cast<unsigned>(__cvta_generic_to_shared(row));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n" : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(s));
}

__device__ __forceinline__ uint32_t h2_bits(__half2 h) { return *reinterpret_cast<uint32_t*>(&h); }
__device__ __forceinline__ __half2 bits_h2(uint32_t u) { return *reinterpret_cast<__half2*>(&u); }
// (a & mask) | bits as one LOP3: written in C++ with both constants immediate, it compiles to two.
__device__ __forceinline__ uint32_t and_or(uint32_t a, uint32_t mask, uint32_t bits) {
  uint32_t d;
  asm("lop3.b32 %0, %1, %2, %3, 0xEA;\n" : "=r"(d) : "r"(a), "r"(mask), "r"(bits));
  return d;
}

// Weights become F16 in registers, one block of 32 at a time, as two k16 mma operands. Within a
// block the order of k is free as long as weights and activations agree: a thread's word of
// levels holds 4 elements (4j..4j+3 of a run of 16) and it feeds them as the pairs (4j, 4j+2), at
// k16 positions 2j and 2j+1, and (4j+1, 4j+3), at 8+2j and 9+2j: position p holds element 2p
// below 8 and 2(p-8)+1 from 8. The activations are stored in that order: each run of 16 as its
// even elements, then its odd ones (see convert_x).
// Levels l in bytes b0 and b2 (or b1 and b3) become the half2 1024 + l; subtracting the offset is
// exact, and the product with the block's scale is one F16 rounding, as cuBLAS's F16 path had.
// Q4_0: a word's low nibbles are elements j..j+3 of the block, its high nibbles j+16..j+19.
// High nibbles stay in place: 1024 + 16 l, and (1024 + 16 l) / 16 - 72 = l - 8, exactly, in one fma.
__device__ __forceinline__ void q4_pairs(uint32_t w, __half2 d, uint32_t& lo02, uint32_t& lo13, uint32_t& hi02, uint32_t& hi13) {
  const __half2 off = __half2half2(__ushort_as_half(0x6408));  // 1032 = 1024 + 8
  const __half2 sixteenth = __half2half2(__ushort_as_half(0x2C00)), off_hi = __half2half2(__ushort_as_half(0xD480));  // 1/16, -72
  const uint32_t w8 = w >> 8;
  lo02 = h2_bits(__hmul2(__hsub2(bits_h2(and_or(w, 0x000F000Fu, 0x64006400u)), off), d));
  lo13 = h2_bits(__hmul2(__hsub2(bits_h2(and_or(w8, 0x000F000Fu, 0x64006400u)), off), d));
  hi02 = h2_bits(__hmul2(__hfma2(bits_h2(and_or(w, 0x00F000F0u, 0x64006400u)), sixteenth, off_hi), d));
  hi13 = h2_bits(__hmul2(__hfma2(bits_h2(and_or(w8, 0x00F000F0u, 0x64006400u)), sixteenth, off_hi), d));
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

template <WFmt F>
constexpr bool kBlock32 = F == WFmt::Q4_0 || F == WFmt::Q8_0;
// A stage's row of weights in shared memory, padded so that the 8 rows one fragment load touches
// start in distinct banks (4-byte loads: a row's bytes mod 128 in {16, 48, 80, 112}).
template <WFmt F>
constexpr int kRowA = kStageRowBytes<F> + (kBlock32<F> ? 16 : 0);
static_assert(kRowA<WFmt::Q4_0> % 32 == 16 && kRowA<WFmt::Q8_0> % 32 == 16 && kRowA<WFmt::Q4_K> % 32 == 16 && kRowA<WFmt::Q6_K> % 32 == 16,
              "fragment loads of 8 rows fall in distinct banks");
constexpr int kKB = 4;  // quant blocks of 32 per stage (a row's scales of one stage: one 8-byte copy)

template <class C, WFmt F>
struct Tile {
  static constexpr int kThreads = C::WM * C::WN * 32, KB = C::KB;
  static constexpr int kRows = C::WM * C::TM * 16, kTokens = C::WN * C::TN * 8;
  // Activation rows 16 mod 128 bytes apart: the 8 rows of an ldmatrix fall in distinct banks.
  static constexpr int kRowB = C::KB * 64 + 16;
  static constexpr int kA = kRows * kRowA<F>, kAs = kBlock32<F> ? kRows * C::KB * 2 : 0, kB = kTokens * kRowB;
  static constexpr int kStageBytes = kA + kAs + kB;
  static constexpr int kSmem = C::S * kStageBytes;
  static_assert(kA % 16 == 0 && kAs % 16 == 0 && kB % 16 == 0, "stage parts stay 16-byte aligned");
  static_assert(C::KB == kKB, "stages of 4 quant blocks");
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

// The CTA's share of a launch: its matrix (a segment), its tile of rows and tokens, its run of
// stages (split products, gridDim.z > 1, each take one) and where its results go.
struct CtaWork {
  const uint8_t* wl;
  const __half* ws;
  float* y;
  int64_t ldy;
  int rows, row0, tok0, first, n_stages;
};
template <int kRows, int kTokens, int KB>
__device__ __forceinline__ CtaWork cta_work(const QJob& job, int nb, float* part, int64_t split_stride, int stages_per_split) {
  int tile = blockIdx.x;
  const QSegment& sg = segment_of_unit(job.seg, job.tile_end, job.n_seg, tile);
  CtaWork w;
  w.wl = sg.levels;
  w.ws = sg.scales;
  w.rows = sg.rows;
  w.row0 = tile * kRows;
  w.tok0 = blockIdx.y * kTokens;
  w.first = blockIdx.z * stages_per_split;
  w.n_stages = min(nb / KB - w.first, stages_per_split);
  w.y = part != nullptr ? part + blockIdx.z * split_stride + sg.row_base : sg.y;
  w.ldy = part != nullptr ? job.total_rows : sg.ldy;
  return w;
}

// ---- the weights' side, shared by both kernels ----
// Weights: levels [rows][nb][16 or 32 B] and F16 scales [rows][nb] (upload_matrix's split
// layout). A CTA's tile is kRows rows from row0; rows past the end read the last row (computed,
// never stored).

// Starts a tile's weights of this split (stages first.. first + n_stages) towards L2 while the
// kernel before finishes (see launch()): each row's run is contiguous, one thread a row.
template <WFmt F, int kRows, int kThreads>
__device__ __forceinline__ void prefetch_tile(const uint8_t* wl, const __half* ws, int row0, int rows, int nb, int first, int n_stages, int tid) {
  for (int r = tid; r < kRows && n_stages > 0; r += kThreads) {
    const size_t gr = static_cast<size_t>(min(row0 + r, rows - 1));
    if constexpr (kBlock32<F>) {
      constexpr int kLevelBytes = kStageRowBytes<F> / kKB;
      const size_t b0 = gr * nb + static_cast<size_t>(first) * kKB;
      prefetch_l2(wl + b0 * kLevelBytes, static_cast<int64_t>(n_stages) * kKB * kLevelBytes, 0, 1);
      prefetch_l2(ws + b0, static_cast<int64_t>(n_stages) * kKB * 2, 0, 1);
    } else {
      constexpr int kRecord = F == WFmt::Q4_K ? 144 : 208;
      const size_t blk0 = gr * (nb / 8) + first / 2, blks = (first + n_stages + 1) / 2 - first / 2;
      prefetch_l2(wl + blk0 * kRecord, static_cast<int64_t>(blks * kRecord), 0, 1);
    }
  }
}

// A thread's copies of each stage's weights into shared memory: levels to sa (rows of kRowA),
// Q4_0 / Q8_0 scales to sas (4 a row). The rows and pieces are the same every stage (worked out
// once, here); a stage only moves along the width.
template <WFmt F, int kRows, int kThreads>
struct WeightCopies {
  static_assert(kRows <= kThreads, "one thread a row's scales");
  // Q4_0 / Q8_0: row tid / kChunks + j * kStep, 16-byte piece tid % kChunks.
  static constexpr int kChunks = kStageRowBytes<F> / 16;
  static constexpr int kN = kBlock32<F> ? kRows * kChunks / kThreads : 1;
  static_assert(!kBlock32<F> || (kThreads % kChunks == 0 && kRows * kChunks % kThreads == 0), "whole copies a thread");
  size_t off[kN];     // bytes into the levels at stage 0
  size_t scale_off;   // scales (a half each) of this thread's row at stage 0
  int dst;            // bytes into sa of the first piece
  int tid, row0, rows, nb;

  __device__ WeightCopies(int tid_, int row0_, int rows_, int nb_) : tid(tid_), row0(row0_), rows(rows_), nb(nb_) {
    if constexpr (kBlock32<F>) {
      constexpr int kStep = kThreads / kChunks, kLevelBytes = kStageRowBytes<F> / kKB;
      const int c = tid % kChunks;
#pragma unroll
      for (int j = 0; j < kN; ++j) off[j] = static_cast<size_t>(min(row0 + tid / kChunks + j * kStep, rows - 1)) * nb * kLevelBytes + c * 16;
      dst = (tid / kChunks) * kRowA<F> + c * 16;
      scale_off = static_cast<size_t>(min(row0 + tid, rows - 1)) * nb;
    }
  }

  __device__ __forceinline__ void issue(uint8_t* sa, uint8_t* sas, const uint8_t* wl, const __half* ws, int stage) const {
    if constexpr (kBlock32<F>) {
      constexpr int kStep = kThreads / kChunks, kLevelBytes = kStageRowBytes<F> / kKB;
      const size_t b0 = static_cast<size_t>(stage) * kKB;
#pragma unroll
      for (int j = 0; j < kN; ++j) cp_async16(sa + dst + j * kStep * kRowA<F>, wl + off[j] + b0 * kLevelBytes);
      if (kRows == kThreads || tid < kRows) cp_async8(sas + tid * kKB * 2, ws + scale_off + b0);
    } else {
      // Super-blocks of 256: this stage is half h of block sb of each row.
      const int nbk = nb / 8, sb = stage / 2, h = stage % 2;
      constexpr int kPieces = F == WFmt::Q4_K ? 5 : 8, kTotal = kRows * kPieces;
#pragma unroll
      for (int j = 0; j < (kTotal + kThreads - 1) / kThreads; ++j) {
        const int i = tid + j * kThreads;
        if (kTotal % kThreads != 0 && i >= kTotal) break;
        const int r = i / kPieces, p = i % kPieces, gr = min(row0 + r, rows - 1);
        const size_t blk = static_cast<size_t>(gr) * nbk + sb;
        uint8_t* to = sa + r * kRowA<F>;
        if constexpr (F == WFmt::Q4_K) {  // [d, dmin, scales 12 | qs 128] -> qs half, head
          const uint8_t* rec = wl + blk * 144;
          if (p < 4) cp_async16(to + p * 16, rec + 16 + 64 * h + p * 16);
          else cp_async16(to + 64, rec);
        } else {  // [ql 128 | qh 64 | scales 16] -> ql half, qh half, scales half, d pair
          const uint8_t* rec = wl + blk * 208;
          if (p < 4) cp_async16(to + p * 16, rec + 64 * h + p * 16);
          else if (p < 6) cp_async16(to + 64 + (p - 4) * 16, rec + 128 + 32 * h + (p - 4) * 16);
          else if (p == 6) cp_async8(to + 96, rec + 192 + 8 * h);
          else cp_async4(to + 104, ws + (blk & ~size_t{1}));
        }
      }
    }
  }
};

// A thread's copies of each stage's activations (F16 [n][nb * 32]): token tid / 16 + j * kStep,
// 16-byte piece tid % 16 of the stage's 128 k, to byte dst + j * kDstStep of the stage's part.
template <int kTokens, int kThreads, int kDstStep>
struct ActivationCopies {
  static constexpr int kStep = kThreads / 16, kN = kTokens * 16 / kThreads;
  static_assert(kThreads % 16 == 0 && kTokens * 16 % kThreads == 0, "whole copies a thread");
  uint32_t off[kN];  // halves into x at stage 0
  int dst;
  __device__ ActivationCopies(int tid, int tok0, int n, int nb, int dst_) : dst(dst_) {
#pragma unroll
    for (int j = 0; j < kN; ++j) off[j] = static_cast<uint32_t>(min(tok0 + tid / 16 + j * kStep, n - 1)) * nb * 32 + (tid % 16) * 8;
  }
  __device__ __forceinline__ void issue(uint8_t* sb, const __half* x, int stage) const {
#pragma unroll
    for (int j = 0; j < kN; ++j) cp_async16(sb + dst + j * kDstStep, x + off[j] + static_cast<size_t>(stage) * kKB * 32);
  }
};

// Q4_0 / Q8_0: the stored bytes of quant block kb for rows r and r + 8 (this thread's words of
// levels and the two scales), read from shared memory apart from their conversion so that the
// wgmma kernel can read a block's while it converts the block before.
template <WFmt F>
struct RawBlock {
  uint32_t w[F == WFmt::Q8_0 ? 4 : 2];
  __half d[2];
};
template <WFmt F>
__device__ __forceinline__ RawBlock<F> raw_block(const uint8_t* sa, const uint8_t* sas_bytes, int r, int kb, int t4) {
  static_assert(kBlock32<F>, "blocks of 32");
  const auto* sas = reinterpret_cast<const __half*>(sas_bytes);
  RawBlock<F> b;
  b.d[0] = sas[r * kKB + kb];
  b.d[1] = sas[(r + 8) * kKB + kb];
  if constexpr (F == WFmt::Q4_0) {
    b.w[0] = *reinterpret_cast<const uint32_t*>(sa + r * kRowA<F> + kb * 16 + 4 * t4);
    b.w[1] = *reinterpret_cast<const uint32_t*>(sa + (r + 8) * kRowA<F> + kb * 16 + 4 * t4);
  } else {
    const uint8_t* p0 = sa + r * kRowA<F> + kb * 32 + 4 * t4;
    const uint8_t* p1 = p0 + 8 * kRowA<F>;
    b.w[0] = *reinterpret_cast<const uint32_t*>(p0);
    b.w[1] = *reinterpret_cast<const uint32_t*>(p1);
    b.w[2] = *reinterpret_cast<const uint32_t*>(p0 + 16);
    b.w[3] = *reinterpret_cast<const uint32_t*>(p1 + 16);
  }
  return b;
}
// The block's A operands from those bytes (see weight_fragments).
template <WFmt F>
__device__ __forceinline__ void block32_fragments(const RawBlock<F>& b, uint32_t (&a)[2][4]) {
  const __half2 d0 = __half2half2(b.d[0]), d1 = __half2half2(b.d[1]);
  if constexpr (F == WFmt::Q4_0) {
    q4_pairs(b.w[0], d0, a[0][0], a[0][2], a[1][0], a[1][2]);
    q4_pairs(b.w[1], d1, a[0][1], a[0][3], a[1][1], a[1][3]);
  } else {
    q8_pairs(b.w[0], d0, a[0][0], a[0][2]);
    q8_pairs(b.w[1], d1, a[0][1], a[0][3]);
    q8_pairs(b.w[2], d0, a[1][0], a[1][2]);
    q8_pairs(b.w[3], d1, a[1][1], a[1][3]);
  }
}

// The A operands of quant block kb of a stage for the 16 tile rows r.. r + 15 (r a multiple of
// 16 plus this lane's g): the block's two k16 halves in the register layout of mma.m16n8k16 (and
// of each warp's 16 rows of a wgmma), rows r + g (regs 0, 2) and r + g + 8 (regs 1, 3); this
// thread's elements 4*t4.. and 16 + 4*t4...
template <WFmt F>
__device__ __forceinline__ void weight_fragments(const uint8_t* sa, const uint8_t* sas_bytes, int r, int kb, int stage, int row0, int rows, int nb,
                                                 int t4, uint32_t (&a)[2][4]) {
  if constexpr (F == WFmt::Q4_K) {
    const int j = (stage % 2) * 4 + kb;  // sub-block of the super-block
#pragma unroll
    for (int half = 0; half < 2; ++half) {  // rows r and r + 8
      const uint8_t* row = sa + (r + 8 * half) * kRowA<F>;
      const uint8_t* head = row + 64;
      int sc, m;
      scale_min_k4(j, head + 4, sc, m);
      const float d = __half2float(*reinterpret_cast<const __half*>(head));
      const float dmin = __half2float(*reinterpret_cast<const __half*>(head + 2));
      const __half2 scale = __float2half2_rn(d * static_cast<float>(sc)), neg_min = __float2half2_rn(-dmin * static_cast<float>(m));
      const int shift = 4 * (kb & 1);
      const uint32_t lo = (*reinterpret_cast<const uint32_t*>(row + 32 * (kb >> 1) + 4 * t4) >> shift) & 0x0F0F0F0Fu;
      const uint32_t hi = (*reinterpret_cast<const uint32_t*>(row + 32 * (kb >> 1) + 16 + 4 * t4) >> shift) & 0x0F0F0F0Fu;
      q4k_pairs(lo, scale, neg_min, a[0][half], a[0][half + 2]);
      q4k_pairs(hi, scale, neg_min, a[1][half], a[1][half + 2]);
    }
  } else if constexpr (F == WFmt::Q6_K) {
    const int nbk = nb / 8, sb = stage / 2;
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const uint8_t* row = sa + (r + 8 * half) * kRowA<F>;
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
      q6_pairs(lo, ds_lo, a[0][half], a[0][half + 2]);
      q6_pairs(hi, ds_hi, a[1][half], a[1][half + 2]);
    }
  } else {
    block32_fragments<F>(raw_block<F>(sa, sas_bytes, r, kb, t4), a);
  }
}

// Writes a thread's results of one 16-row x 8-token mma tile (C fragment: acc 0/1 row r,
// tokens t and t + 1; acc 2/3 row r + 8), skipping rows and tokens past the ends.
__device__ __forceinline__ void store_fragment(float* y, int64_t ldy, int r, int t, int rows, int n, const float* acc) {
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int ri = r + (i >= 2 ? 8 : 0), ti = t + (i & 1);
    if (ri < rows && ti < n) y[static_cast<int64_t>(ti) * ldy + ri] = acc[i];
  }
}

// ---- Ampere and newer: mma.sync ----
// Activations: F16 [n][nb * 32], each run of 16 stored as its even elements, then its odd ones
// (convert_x), so that mma position p of a k16 step holds the element weight_fragments put there.
template <class C, WFmt F>
__global__ void __launch_bounds__(C::WM* C::WN * 32, C::kMinCtas) qgemm_kernel(const __grid_constant__ QJob job, const __half* __restrict__ x,
                                                                  int n, int nb, float* __restrict__ part, int64_t split_stride,
                                                                  int stages_per_split) {
  using L = Tile<C, F>;
  constexpr int WM = C::WM, TM = C::TM, TN = C::TN, KB = C::KB, kStages = C::S;
  extern __shared__ __align__(16) uint8_t smem[];
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, g = lane / 4, t4 = lane % 4;
  const int wm = warp % WM, wn = warp / WM;
  const CtaWork cw = cta_work<L::kRows, L::kTokens, KB>(job, nb, part, split_stride, stages_per_split);
  prefetch_tile<F, L::kRows, L::kThreads>(cw.wl, cw.ws, cw.row0, cw.rows, nb, cw.first, cw.n_stages, tid);
  kernel_prologue();

  const WeightCopies<F, L::kRows, L::kThreads> wcopies(tid, cw.row0, cw.rows, nb);
  const ActivationCopies<L::kTokens, L::kThreads, (L::kThreads / 16) * L::kRowB> xcopies(tid, cw.tok0, n, nb, (tid / 16) * L::kRowB + (tid % 16) * 16);
  auto load_stage = [&](int k, int slot) {
    uint8_t* sa = smem + slot * L::kStageBytes;
    wcopies.issue(sa, sa + L::kA, cw.wl, cw.ws, cw.first + k);
    xcopies.issue(sa + L::kA + L::kAs, x, cw.first + k);
  };

  float acc[TM][TN][4] = {};
  auto compute_stage = [&](int slot, int k) {
    const uint8_t* sa = smem + slot * L::kStageBytes;
    const uint8_t* sb = sa + L::kA + L::kAs;
#pragma unroll
    for (int kb = 0; kb < KB; ++kb) {
      uint32_t a[TM][2][4];
#pragma unroll
      for (int tm = 0; tm < TM; ++tm) weight_fragments<F>(sa, sa + L::kA, wm * TM * 16 + tm * 16 + g, kb, cw.first + k, cw.row0, cw.rows, nb, t4, a[tm]);
#pragma unroll
      for (int tn = 0; tn < TN; ++tn) {
        // B operands of the block's two k16 halves for 8 tokens: four 8x8 matrices (k 0-7, 8-15,
        // 16-23, 24-31), lane l naming row l % 8 of matrix l / 8.
        uint32_t b[4];
        ldmatrix_x4(b, sb + (wn * TN * 8 + tn * 8 + lane % 8) * L::kRowB + kb * 64 + (lane / 8) * 16);
#pragma unroll
        for (int tm = 0; tm < TM; ++tm) {
          mma_f16(a[tm][0], b[0], b[1], acc[tm][tn]);
          mma_f16(a[tm][1], b[2], b[3], acc[tm][tn]);
        }
      }
    }
  };

#pragma unroll
  for (int s = 0; s < kStages - 1; ++s) {
    if (s < cw.n_stages) load_stage(s, s);
    cp_async_commit();
  }
  for (int k = 0; k < cw.n_stages; ++k) {
    cp_async_wait<kStages - 2>();
    __syncthreads();  // stage k landed for every thread; slot (k-1) % kStages is free again
    const int next = k + kStages - 1;
    if (next < cw.n_stages) load_stage(next, next % kStages);
    cp_async_commit();
    compute_stage(k % kStages, k);
  }

#pragma unroll
  for (int tm = 0; tm < TM; ++tm) {
#pragma unroll
    for (int tn = 0; tn < TN; ++tn) {
      store_fragment(cw.y, cw.ldy, cw.row0 + wm * TM * 16 + tm * 16 + g, cw.tok0 + wn * TN * 8 + tn * 8 + 2 * t4, cw.rows, n, acc[tm][tn]);
    }
  }
}

// ---- Hopper (sm_90a): warpgroup products (wgmma) ----
// WG warpgroups (two or four), each MS x 64 weight rows, times N (16, 32 or 64) tokens. The weights go to the
// tensor cores from registers, dequantized as for mma.sync (each warp's 16 rows of a wgmma take
// the layout of an m16n8k16 A operand); the activations from shared memory, where a stage holds 2
// chunks of N tokens x 64 halves in the 128-byte swizzle that the wgmma descriptor names.
template <int MS_, int S_, int MIN_CTAS, int N_, int WG_ = 2>
struct WgConfig {
  static constexpr int MS = MS_, S = S_, kMinCtas = MIN_CTAS, N = N_, WG = WG_;
  static_assert(N == 16 || N == 32 || N == 64, "wgmma_64xNx16 shapes");
};
constexpr int kMaxDynamicSmem = 227 * 1024;  // a CTA's on sm_90

template <class C, WFmt F>
struct WgTile {
  static constexpr int kThreads = 128 * C::WG, kRows = C::WG * C::MS * 64, kTokens = C::N, KB = kKB;
  static constexpr int kChunkB = kTokens * 128;  // 64 k of every token
  static constexpr int kB = 2 * kChunkB, kA = kRows * kRowA<F>, kAs = kBlock32<F> ? kRows * KB * 2 : 0;
  static constexpr int kStageBytes = (kB + kA + kAs + 1023) / 1024 * 1024;  // swizzled chunks start 1024-aligned
  static constexpr int kSmem = C::S * kStageBytes + 1024;                   // + aligning the dynamic base
};

#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define VIREO_QGEMM_WGMMA_CODE 1
__device__ __forceinline__ uint32_t smem_u32(const void* p) { return static_cast<uint32_t>(__cvta_generic_to_shared(p)); }
// Shared-memory matrix descriptor: K-major rows of 128 bytes in the 128-byte swizzle, 8-row groups
// 1024 bytes apart (the leading offset is unused in this mode).
__device__ __forceinline__ uint64_t sw128_desc(uint32_t saddr) {
  return static_cast<uint64_t>((saddr & 0x3FFFFu) >> 4) | (uint64_t{1} << 16) | (uint64_t{1024 >> 4} << 32) | (uint64_t{1} << 62);
}
__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void wgmma_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}
// The compiler sees a wgmma read its registers when it is issued; these keep them (and the
// accumulators) in place until the wait that ends the asynchronous read.
__device__ __forceinline__ void hold(uint32_t (&a)[2][4]) {
#pragma unroll
  for (int h = 0; h < 2; ++h)
    for (int i = 0; i < 4; ++i) asm volatile("" : "+r"(a[h][i])::"memory");
}
template <int N>
__device__ __forceinline__ void hold(float (&d)[N]) {
#pragma unroll
  for (int i = 0; i < N; ++i) asm volatile("" : "+f"(d[i])::"memory");
}
// d (64 rows x N tokens, F32) = a (64 x 16, F16, registers) * b (16 x N, F16, descriptor), plus
// d when `accumulate`. (Starting the sum this way, not from zeros written by other instructions,
// keeps the compiler from serializing the products: see qgemm_wgmma_kernel.)
__device__ __forceinline__ void wgmma_64xNx16(float (&d)[8], const uint32_t (&a)[4], uint64_t b, int accumulate) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %13, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n16k16.f32.f16.f16 "
      "{%0, %1, %2, %3, %4, %5, %6, %7}, {%8, %9, %10, %11}, %12, p, 1, 1, 0;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(accumulate));
}
__device__ __forceinline__ void wgmma_64xNx16(float (&d)[16], const uint32_t (&a)[4], uint64_t b, int accumulate) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %21, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n32k16.f32.f16.f16 "
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15}, "
      "{%16, %17, %18, %19}, %20, p, 1, 1, 0;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]),
        "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(accumulate));
}
__device__ __forceinline__ void wgmma_64xNx16(float (&d)[32], const uint32_t (&a)[4], uint64_t b, int accumulate) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n64k16.f32.f16.f16 "
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
      "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, "
      "{%32, %33, %34, %35}, %36, p, 1, 1, 0;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]),
        "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]),
        "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]),
        "+f"(d[31])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(accumulate));
}
#endif

template <class C, WFmt F>
__global__ void __launch_bounds__(128 * C::WG, C::kMinCtas) qgemm_wgmma_kernel(const __grid_constant__ QJob job, const __half* __restrict__ x, int n,
                                                                       int nb, float* __restrict__ part, int64_t split_stride,
                                                                       int stages_per_split) {
#if defined(VIREO_QGEMM_WGMMA_CODE)
  using L = WgTile<C, F>;
  constexpr int MS = C::MS, KB = L::KB, kStages = C::S;
  extern __shared__ __align__(16) uint8_t smem_raw[];
  uint8_t* smem = smem_raw + ((1024 - (smem_u32(smem_raw) & 1023u)) & 1023u);
  const int tid = threadIdx.x, lane = tid % 32, g = lane / 4, t4 = lane % 4;
  const int wg = tid / 128, w4 = (tid / 32) % 4;
  const CtaWork cw = cta_work<L::kRows, L::kTokens, KB>(job, nb, part, split_stride, stages_per_split);
  prefetch_tile<F, L::kRows, L::kThreads>(cw.wl, cw.ws, cw.row0, cw.rows, nb, cw.first, cw.n_stages, tid);
  kernel_prologue();

  const WeightCopies<F, L::kRows, L::kThreads> wcopies(tid, cw.row0, cw.rows, nb);
  // Activations: token t's 16-byte piece c of 64 k goes to piece c ^ (t % 8) of its 128-byte row
  // (the tokens a thread copies are 16 apart: the same t % 8).
  const int xt = tid / 16, xc = tid % 16;
  const ActivationCopies<L::kTokens, L::kThreads, (L::kThreads / 16) * 128> xcopies(tid, cw.tok0, n, nb,
                                                                                     (xc / 8) * L::kChunkB + xt * 128 + (((xc % 8) ^ (xt % 8)) * 16));
  static_assert((L::kThreads / 16) % 8 == 0, "a thread's tokens share their swizzle");
  auto load_stage = [&](int k, int slot) {
    uint8_t* sb = smem + slot * L::kStageBytes;
    uint8_t* sa = sb + L::kB;
    xcopies.issue(sb, x, cw.first + k);
    wcopies.issue(sa, sa + L::kA, cw.wl, cw.ws, cw.first + k);
  };

  // The products run asynchronously, up to KB wgmma groups (one a quant block) in flight: block
  // kb's fragments go to a[kb], once the group that read them a stage before is retired
  // (wait<KB - 1>). By the end of stage k - 1 every group of stage k - 2 is retired, so the copies
  // run S - 2 stages ahead, into stage k - 2's slot. The accumulators are written by wgmma only
  // (the first product does not add), else the compiler would wait for each product before the next.
  if (cw.n_stages <= 0) {  // an empty split: its partial sums are zeros
#pragma unroll
    for (int ms = 0; ms < MS; ++ms) {
      const float zeros[4] = {};
      for (int j = 0; j < L::kTokens / 8; ++j) store_fragment(cw.y, cw.ldy, cw.row0 + (wg * MS + ms) * 64 + w4 * 16 + g, cw.tok0 + j * 8 + 2 * t4, cw.rows, n, zeros);
    }
    return;
  }
  float acc[MS][L::kTokens / 2];
  uint32_t a[KB][MS][2][4];
  auto compute_stage = [&](int slot, int k) {
    const uint8_t* sb = smem + slot * L::kStageBytes;
    const uint8_t* sa = sb + L::kB;
    // The descriptor's address field is the byte address / 16 (the stage lies well inside it):
    // a k16 step's descriptor is the stage's plus its offset / 16.
    const uint64_t desc0 = sw128_desc(smem_u32(sb));
    auto row_of = [&](int ms) { return (wg * MS + ms) * 64 + w4 * 16 + g; };
    // Q4_0 / Q8_0: block kb + 1's bytes are read from shared memory while block kb converts.
    RawBlock<F> raw[MS];
    if constexpr (kBlock32<F>) {
#pragma unroll
      for (int ms = 0; ms < MS; ++ms) raw[ms] = raw_block<F>(sa, sa + L::kA, row_of(ms), 0, t4);
    }
#pragma unroll
    for (int kb = 0; kb < KB; ++kb) {
      RawBlock<F> next[MS];
      if constexpr (kBlock32<F>) {
        if (kb + 1 < KB) {
#pragma unroll
          for (int ms = 0; ms < MS; ++ms) next[ms] = raw_block<F>(sa, sa + L::kA, row_of(ms), kb + 1, t4);
        }
      }
      wgmma_wait<KB - 1>();
#pragma unroll
      for (int ms = 0; ms < MS; ++ms) {
        hold(a[kb][ms]);
        if constexpr (kBlock32<F>) block32_fragments<F>(raw[ms], a[kb][ms]);
        else weight_fragments<F>(sa, sa + L::kA, row_of(ms), kb, cw.first + k, cw.row0, cw.rows, nb, t4, a[kb][ms]);
      }
      wgmma_fence();  // this block's fragments (and the accumulators) are written
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int s = 2 * kb + h;  // k16 step of the stage: chunk s / 4, 32 bytes a step within it
        const uint64_t desc = desc0 + static_cast<uint64_t>(((s / 4) * L::kChunkB + (s % 4) * 32) >> 4);
#pragma unroll
        for (int ms = 0; ms < MS; ++ms) wgmma_64xNx16(acc[ms], a[kb][ms][h], desc, k > 0 || s > 0);
      }
      wgmma_commit();
      if constexpr (kBlock32<F>) {
        if (kb + 1 < KB) {
#pragma unroll
          for (int ms = 0; ms < MS; ++ms) raw[ms] = next[ms];
        }
      }
    }
  };
  static_assert(kStages >= 3, "copies run S - 2 stages ahead");

#pragma unroll
  for (int s = 0; s < kStages - 2; ++s) {
    if (s < cw.n_stages) load_stage(s, s);
    cp_async_commit();
  }
  for (int k = 0; k < cw.n_stages; ++k) {
    cp_async_wait<kStages - 3>();
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");  // copies seen by the tensor cores' reads
    __syncthreads();
    const int next = k + kStages - 2;
    if (next < cw.n_stages) load_stage(next, next % kStages);
    cp_async_commit();
    compute_stage(k % kStages, k);
  }
  wgmma_wait<0>();
#pragma unroll
  for (int ms = 0; ms < MS; ++ms) {
#pragma unroll
    for (int kb = 0; kb < KB; ++kb) hold(a[kb][ms]);
    hold(acc[ms]);
  }

  // Accumulator layout: per 8 tokens j, the C fragment of an m16n8 tile of this warp's 16 rows.
#pragma unroll
  for (int ms = 0; ms < MS; ++ms) {
#pragma unroll
    for (int j = 0; j < L::kTokens / 8; ++j) {
      store_fragment(cw.y, cw.ldy, cw.row0 + (wg * MS + ms) * 64 + w4 * 16 + g, cw.tok0 + j * 8 + 2 * t4, cw.rows, n, &acc[ms][4 * j]);
    }
  }
#else
  __trap();  // launched only where an sm_90a image exists (wgmma_available)
#endif
}

// x (F32, [n][ldx]) to F16, each run of 16 as its even elements, then its odd ones; one thread a run.
__global__ void convert_x(const float* __restrict__ x, int64_t ldx, int n, int64_t cols, __half* __restrict__ out) {
  kernel_prologue();
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x, runs = cols / 16;
  if (i >= runs * n) return;
  const int64_t t = i / runs, c = (i % runs) * 16;
  const auto* v = reinterpret_cast<const float4*>(x + t * ldx + c);
  const float4 v0 = v[0], v1 = v[1], v2 = v[2], v3 = v[3];
  uint4 even, odd;
  even.x = h2_bits(__floats2half2_rn(v0.x, v0.z)), even.y = h2_bits(__floats2half2_rn(v1.x, v1.z));
  even.z = h2_bits(__floats2half2_rn(v2.x, v2.z)), even.w = h2_bits(__floats2half2_rn(v3.x, v3.z));
  odd.x = h2_bits(__floats2half2_rn(v0.y, v0.w)), odd.y = h2_bits(__floats2half2_rn(v1.y, v1.w));
  odd.z = h2_bits(__floats2half2_rn(v2.y, v2.w)), odd.w = h2_bits(__floats2half2_rn(v3.y, v3.w));
  auto* o = reinterpret_cast<uint4*>(out + t * cols + c);
  o[0] = even;
  o[1] = odd;
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
  QGemmSums* deferred;  // non-null: leave a split product's sums for the next op
};

// Launches `kernel` (tiles of L::kRows x L::kTokens, stages of L::KB blocks) over the run's
// matrices, splitting the width when the grid is under a wave.
template <class L, class Kernel>
void launch_tiles(const Run& run, Kernel kernel) {
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
  const int n = run.n, nb = static_cast<int>(run.outs[0].w->cols / 32), n_stages = nb / L::KB;
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
  if (splits == 1) return;  // (qgemm_multi has already cleared *run.deferred)
  if (run.deferred != nullptr) {
    *run.deferred = QGemmSums{part, splits, count, job.total_rows};
    return;
  }
  launch(reduce_splits, static_cast<unsigned>((count + 255) / 256), 256, 0, run.st, job, part, splits, count);
}

template <class C, WFmt F>
void launch_config(const Run& run) {
  launch_tiles<Tile<C, F>>(run, qgemm_kernel<C, F>);
}
template <class C, WFmt F>
void launch_wgmma(const Run& run) {
  static_assert(WgTile<C, F>::kSmem <= kMaxDynamicSmem, "the tile's stages fit in a CTA's shared memory");
  launch_tiles<WgTile<C, F>>(run, qgemm_wgmma_kernel<C, F>);
}

// Whether the warpgroup kernels run here: the build has an sm_90a image and the device is of
// compute capability 9.0 (VIREO_CUDA_WGMMA=0 turns them off, for comparisons).
bool wgmma_available() {
#if defined(VIREO_CUDA_WGMMA)
  static const bool on = [] {
    if (const char* e = std::getenv("VIREO_CUDA_WGMMA"); e != nullptr && std::string(e) == "0") return false;
    int dev = 0, major = 0, minor = 0;
    cudaGetDevice(&dev);
    cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev);
    cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev);
    return major == 9 && minor == 0;
  }();
  return on;
#else
  return false;
#endif
}

// Row tiles of kRows over a launch's matrices.
int row_tiles(const Run& run, int rows_per_tile) {
  int tiles = 0;
  for (const QGemmOutput& o : run.outs) tiles += static_cast<int>((o.w->rows + rows_per_tile - 1) / rows_per_tile);
  return tiles;
}

template <WFmt F>
void launch_tile(QGemmTile tile, const Run& run_in) {
  Run run = run_in;
  if (tile == QGemmTile::Auto) {
    static const int forced = [] {  // VIREO_CUDA_QGEMM_TILE: a QGemmTile's number, for tuning
      const char* e = std::getenv("VIREO_CUDA_QGEMM_TILE");
      return e != nullptr ? std::atoi(e) : 0;
    }();
    const int n = run.n;
    // Measured best on an H100 (Llama-3-8B shapes): 17 to 32 rows 128 x 32 tiles (twice the
    // speed of 128 x 64 ones, half of whose columns would be padding), then 128 x 64 up to 128;
    // on Hopper the warpgroup tiles of as many tokens (10-13% faster than mma.sync at 32 and 64).
    if (wgmma_available()) tile = n <= 16 ? QGemmTile::H128xT16 : n <= 32 ? QGemmTile::H128xT32 : QGemmTile::H128xT64;
    else tile = n <= 16 ? QGemmTile::R32xT32 : n <= 32 ? QGemmTile::R128xT32W8 : QGemmTile::R128xT64W8;
    if (wgmma_available() && n > 32 && n <= 64 && run.splits <= 0) {
      // One CTA an SM with a deeper pipeline beats two when one wave of them about fills the GPU.
      // Measured on an H100, 64 tokens, against 128 x 64 tiles with their own splits:
      // - 4096 x 4096 and 4096 x 14336 in 128-row tiles, 4 splits: Q4_0 0.87x and 0.91x the time,
      //   Q8_0 0.67x and 0.84x, Q4_K 0.88x and 1.00x, Q6_K 0.75x and 0.84x;
      // - gate and up (28672 x 4096) in 256-row tiles, unsplit: Q4_0 0.95x, but Q4_K 1.14x and
      //   Q8_0 (four stages of 256 rows fit) 1.01x, so Q4_0 only;
      // - q/k/v (6144 x 4096) fill neither well.
      const int sms = sm_count(), n_stages = static_cast<int>(run.outs[0].w->cols / (kKB * 32));
      const int t128 = row_tiles(run, 128), t256 = row_tiles(run, 256);
      const int s128 = std::min(sms / t128, n_stages / 4);
      if (s128 >= 2 && 10 * t128 * s128 >= 9 * sms) {
        tile = QGemmTile::H128xT64S6;
        run.splits = s128;
      } else if (F == WFmt::Q4_0 && t256 <= sms && 100 * t256 >= 84 * sms) {
        tile = QGemmTile::H256xT64S5;
        run.splits = 1;
      } else if (F == WFmt::Q6_K && t256 >= 2 * sms) {
        // Many waves of Q6_K (Llama 3's output head, 128256 x 4096): 256-row tiles in four
        // warpgroups, 381 against 429 µs. Smaller Q6_K products and the other types were as fast
        // or slower so (gate/up Q4_0 50.6 against 50.2 µs; Q6_K 4096 x 14336 80 against 51).
        tile = QGemmTile::H256xT64W4;
      }
    }
    if (forced > 0 && n > 16) tile = static_cast<QGemmTile>(forced);
  }
  if (!wgmma_available()) {
    if (tile == QGemmTile::H128xT64 || tile == QGemmTile::H256xT64 || tile == QGemmTile::H128xT64S6 || tile == QGemmTile::H256xT64S5 ||
        tile == QGemmTile::H256xT64W4) {
      tile = QGemmTile::R128xT64W8;
    }
    if (tile == QGemmTile::H128xT32) tile = QGemmTile::R128xT32W8;
    if (tile == QGemmTile::H128xT16) tile = QGemmTile::R32xT32;
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
    case QGemmTile::H128xT64: launch_wgmma<WgConfig<1, 4, 2, 64>, F>(run); break;
    case QGemmTile::H256xT64: launch_wgmma<WgConfig<2, 4, 1, 64>, F>(run); break;
    case QGemmTile::H128xT32: launch_wgmma<WgConfig<1, 4, 2, 32>, F>(run); break;
    case QGemmTile::H128xT16: launch_wgmma<WgConfig<1, 4, 2, 16>, F>(run); break;
    case QGemmTile::H128xT64S6: launch_wgmma<WgConfig<1, 6, 1, 64>, F>(run); break;
    case QGemmTile::H256xT64S5:  // Q8_0's stages are too large for five of 256 rows
      if constexpr (F == WFmt::Q8_0) launch_wgmma<WgConfig<2, 4, 1, 64>, F>(run);
      else launch_wgmma<WgConfig<2, 5, 1, 64>, F>(run);
      break;
    case QGemmTile::H256xT64W4:
      if constexpr (F == WFmt::Q8_0) launch_wgmma<WgConfig<1, 4, 1, 64, 4>, F>(run);
      else launch_wgmma<WgConfig<1, 5, 1, 64, 4>, F>(run);
      break;
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

bool qgemm_uses_wgmma() { return wgmma_available(); }

bool qgemm_supports(const DeviceMatrix& w) {
  const bool type = w.type == DType::Q4_0 || w.type == DType::Q8_0 || w.type == DType::Q4_K || w.type == DType::Q6_K;
  return type && w.cols % kMinStageCols == 0 && w.rows > 0;
}

void* qgemm_x_target(QGemmWorkspace& ws, int n_tokens, int64_t cols) {
  if (cols % kMinStageCols != 0) {
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
  return ws.x16;
}

void qgemm_write_x(const float* x, int64_t ldx, int n_tokens, int64_t cols, void* x16, Stream s) {
  if (cols % 16 != 0 || ldx % 4 != 0) throw Error(ErrorCode::InvalidArgument, "cuda qgemm: activations must be whole runs of 16, 16-byte aligned");
  const int64_t runs = static_cast<int64_t>(n_tokens) * (cols / 16);
  if (runs == 0) return;
  launch(convert_x, static_cast<unsigned>((runs + 255) / 256), 256, 0, static_cast<cudaStream_t>(s), x, ldx, n_tokens, cols,
         static_cast<__half*>(x16));
  check(cudaGetLastError(), "qgemm convert launch");
}

void qgemm_load_x(const float* x, int64_t ldx, int n_tokens, int64_t cols, QGemmWorkspace& ws, Stream s) {
  qgemm_write_x(x, ldx, n_tokens, cols, qgemm_x_target(ws, n_tokens, cols), s);
}

void qgemm_add_sums(const QGemmSums& sums, int n_tokens, std::span<const QGemmSumsOut> outs, Stream s) {
  if (sums.splits <= 1) return;
  if (outs.empty() || outs.size() > static_cast<size_t>(kMaxQGemmSegments)) throw Error(ErrorCode::InvalidArgument, "cuda qgemm: 1 to 3 outputs of split sums");
  QJob job{};
  job.n_seg = static_cast<int>(outs.size());
  for (int i = 0; i < job.n_seg; ++i) {
    job.seg[i] = QSegment{nullptr, nullptr, outs[i].y, outs[i].ldy, static_cast<int>(outs[i].rows), job.total_rows};
    job.total_rows += static_cast<int>(outs[i].rows);
  }
  const int64_t count = static_cast<int64_t>(n_tokens) * job.total_rows;
  if (job.total_rows != sums.ld || count != sums.stride) throw Error(ErrorCode::InvalidArgument, "cuda qgemm: split sums of another shape");
  launch(reduce_splits, static_cast<unsigned>((count + 255) / 256), 256, 0, static_cast<cudaStream_t>(s), job, sums.part, sums.splits,
         count);
  check(cudaGetLastError(), "qgemm sums launch");
}

void qgemm_multi(std::span<const QGemmOutput> outs, int n_tokens, QGemmWorkspace& ws, Stream s, QGemmOptions opt, QGemmSums* deferred) {
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
  if (deferred != nullptr) *deferred = {};
  if (n_tokens <= 0) return;
  const Run run{outs, n_tokens, ws, opt.splits, static_cast<cudaStream_t>(s), deferred};
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
