// AVX2 matmul kernels over the interleaved layouts of pack_avx512.cpp (the same packed bytes as
// the AVX-512 kernels read), and the activation quantizers they use. Compiled for AVX2 whatever
// the build's -march; only called when the CPU has it (cpu_features.cpp). No AVX-512 here.
//
// A 512-bit register of the AVX-512 kernels (16 rows) is two 256-bit halves: rows 0-7 and 8-15
// of a group. Without VNNI, a 4-byte dot product is vpmaddubsw (u8 x i8 -> int16 pair sums) then
// vpmaddwd (int16 pairs -> int32). Pair sums of small levels add up in int16 over several chunks
// before one vpmaddwd, and the K-quants fold their sub-block scales into that vpmaddwd, so a whole
// super-block stays exact in int32 and is scaled once in float.
//
// Activation levels are in [-127, 127] (both quantizers below keep them there), which the
// int16 bounds below rely on.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "vireo/core/error.h"
#include "vireo/core/quant_blocks.h"
#include "vireo/kernels/cpu/matmul.h"

// Everything below is compiled for these instruction sets (the caller checks the CPU first).
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c,bmi,bmi2"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c,bmi,bmi2")
#endif
#include <immintrin.h>

namespace vireo::cpu::avx2 {
namespace {

constexpr int64_t G = kRowGroup;
constexpr int64_t kHalf = kRowGroup / 2;  // rows per 256-bit register

inline __m256i load256(const uint8_t* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }
inline __m128i load128(const uint8_t* p) { return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p)); }
inline __m256 load_f16x8(const uint8_t* p) { return _mm256_cvtph_ps(load128(p)); }

inline __m256i bcast32(const void* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm256_set1_epi32(v);
}

// The activation sums a and b as one int16 pair per 32-bit lane (a vpmaddwd operand).
inline __m256i bcast_pair16(int32_t a, int32_t b) {
  return _mm256_set1_epi32(static_cast<int32_t>((static_cast<uint32_t>(a) & 0xffffu) | (static_cast<uint32_t>(b) << 16)));
}

// Stores one half's 8 outputs of a token (fewer, or none, in the last group of a matrix).
inline void store_half(float* y, __m256 v, int64_t valid) {
  if (valid >= kHalf) {
    _mm256_storeu_ps(y, v);
  } else if (valid > 0) {
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    _mm256_maskstore_ps(y, _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int32_t>(valid)), lane), v);
  }
}

// Σ over N 4-byte chunks of unsigned levels (<= kMaxLevel) times activation levels, each row's
// sum times its int16 factor in `row_scale` (both halves of a lane; ones for a plain sum).
// vpmaddubsw pair sums add up in int16 over kRun chunks: kRun * 2 * 127 * kMaxLevel <= 32767.
template <int kMaxLevel, int N>
inline __m256i dot_chunks(const __m256i* q, const int8_t* x, __m256i row_scale) {
  constexpr int kRun = 32767 / (2 * 127 * kMaxLevel);
  static_assert(kRun >= 1);
  __m256i sum = _mm256_setzero_si256();
  for (int j0 = 0; j0 < N; j0 += kRun) {
    __m256i pairs = _mm256_maddubs_epi16(q[j0], bcast32(x + 4 * j0));
    for (int j = j0 + 1; j < std::min(N, j0 + kRun); ++j) {
      pairs = _mm256_add_epi16(pairs, _mm256_maddubs_epi16(q[j], bcast32(x + 4 * j)));
    }
    sum = _mm256_add_epi32(sum, _mm256_madd_epi16(pairs, row_scale));
  }
  return sum;
}

inline __m256i ones16() { return _mm256_set1_epi16(1); }

// ---------------------------------------------------------------- level decoding (one half)

// 4 loads of nibbles, 64 bytes apart (this half's 32 bytes of each) -> 8 chunks of levels 0..15:
// q[i] lane r holds elements 4i..4i+3 of row r (low nibbles), q[4+i] elements 16+4i.. (high).
inline void unpack_nibbles(const uint8_t* qs, __m256i q[8]) {
  const __m256i m4 = _mm256_set1_epi8(0x0f);
  for (int i = 0; i < 4; ++i) {
    const __m256i v = load256(qs + 64 * i);
    q[i] = _mm256_and_si256(v, m4);
    q[4 + i] = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
  }
}

// Adds 16 to each byte of q whose byte in `src` has the bit that `bit` holds in that byte.
inline __m256i add16_where(__m256i q, __m256i src, __m256i bit) {
  const __m256i set = _mm256_cmpeq_epi8(_mm256_and_si256(src, bit), bit);
  return _mm256_add_epi8(q, _mm256_and_si256(set, _mm256_set1_epi8(16)));
}

// q5_0 / q5_1: this half's 8 words of fifth bits (bit k of a row's word: element k).
inline void add_fifth_bits(const uint8_t* qh_ptr, __m256i q[8]) {
  const __m256i qh = load256(qh_ptr);
  // shuffle_epi8 indexes within 16-byte lanes: each row's word sits at byte 0, 4, 8 or 12.
  const __m256i word_base = _mm256_set_epi32(0x0c0c0c0c, 0x08080808, 0x04040404, 0, 0x0c0c0c0c, 0x08080808,
                                             0x04040404, 0);
  for (int j = 0; j < 8; ++j) {
    // Chunk j covers elements 4j..4j+3: bits 4j..4j+3 of the row's word, all in its byte j/2.
    const __m256i bytes = _mm256_shuffle_epi8(qh, _mm256_add_epi8(word_base, _mm256_set1_epi8(static_cast<char>(j / 2))));
    q[j] = add16_where(q[j], bytes, _mm256_set1_epi32(static_cast<int32_t>(0x08040201u << (4 * (j % 2)))));
  }
}

// q4_K / q5_K: sub-block s, this half's rows: the low nibbles of pair s / 2 for even s, the high
// ones for odd s.
template <bool kFive>
inline void unpack_k_sub(const uint8_t* blk, int s, int64_t h, __m256i q[8]) {
  const __m256i m4 = _mm256_set1_epi8(0x0f);
  for (int i = 0; i < 8; ++i) {
    const __m256i v = load256(blk + 320 + 512 * (s / 2) + 64 * i + 32 * h);
    q[i] = _mm256_and_si256(s % 2 == 0 ? v : _mm256_srli_epi16(v, 4), m4);
    if constexpr (kFive) {
      // Bit s of each qh byte. A compare rather than shifts: shifts share ports 0 and 1 with
      // vpmaddubsw.
      q[i] = add16_where(q[i], load256(blk + 2368 + 64 * i + 32 * h), _mm256_set1_epi8(static_cast<char>(1 << s)));
    }
  }
}

// q6_K: the 4 chunks (16 elements) of one sub-block unit, this half's rows, levels 0..63.
inline void unpack_q6_unit(const uint8_t* unit, __m256i q[4]) {
  const __m256i m4 = _mm256_set1_epi8(0x0f), m2 = _mm256_set1_epi8(0x30);
  const __m256i va = load256(unit), vb = load256(unit + 64), vh = load256(unit + 128);
  q[0] = _mm256_or_si256(_mm256_and_si256(va, m4), _mm256_and_si256(_mm256_slli_epi16(vh, 4), m2));
  q[1] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(va, 4), m4), _mm256_and_si256(_mm256_slli_epi16(vh, 2), m2));
  q[2] = _mm256_or_si256(_mm256_and_si256(vb, m4), _mm256_and_si256(vh, m2));
  q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(vb, 4), m4), _mm256_and_si256(_mm256_srli_epi16(vh, 2), m2));
}

// A tile is one group of 16 weight rows times T tokens. With one token (decode) both halves of
// each block are done together, so the weights stream from memory in a single pass; with more,
// one half (8 rows) after the other over the whole group (the second pass reads it from cache),
// so that T accumulators and one block's levels fit the 16 registers.
// per_block(b, h, acc) adds block b of half h to the T accumulators of that half.
template <int T, typename PerBlock>
inline void over_halves(int64_t nb, float* y, int64_t ldy, int64_t valid, PerBlock per_block) {
  constexpr int64_t kPerPass = T == 1 ? 2 : 1;
  for (int64_t h0 = 0; h0 < 2 && valid > kHalf * h0; h0 += kPerPass) {
    __m256 acc[kPerPass][T];
    for (auto& half : acc) {
      for (auto& v : half) v = _mm256_setzero_ps();
    }
    for (int64_t b = 0; b < nb; ++b) {
      for (int64_t k = 0; k < kPerPass; ++k) per_block(b, h0 + k, acc[k]);
    }
    for (int64_t k = 0; k < kPerPass; ++k) {
      for (int t = 0; t < T; ++t) store_half(y + t * ldy + kHalf * (h0 + k), acc[k][t], valid - kHalf * (h0 + k));
    }
  }
}

// ---------------------------------------------------------------- 32-element block types

template <DType TYPE>
struct Block32;

template <>
struct Block32<DType::Q4_0> {
  static constexpr int64_t kBytes = 288;
  static constexpr int kOffset = 8, kMaxLevel = 15;
  static constexpr bool kMin = false;
  static void levels(const uint8_t* b, int64_t h, __m256i q[8]) { unpack_nibbles(b + 32 + 32 * h, q); }
};
template <>
struct Block32<DType::Q4_1> {
  static constexpr int64_t kBytes = 320;
  static constexpr int kOffset = 0, kMaxLevel = 15;
  static constexpr bool kMin = true;
  static void levels(const uint8_t* b, int64_t h, __m256i q[8]) { unpack_nibbles(b + 64 + 32 * h, q); }
};
template <>
struct Block32<DType::Q5_0> {
  static constexpr int64_t kBytes = 352;
  static constexpr int kOffset = 16, kMaxLevel = 31;
  static constexpr bool kMin = false;
  static void levels(const uint8_t* b, int64_t h, __m256i q[8]) {
    unpack_nibbles(b + 96 + 32 * h, q);
    add_fifth_bits(b + 32 + 32 * h, q);
  }
};
template <>
struct Block32<DType::Q5_1> {
  static constexpr int64_t kBytes = 384;
  static constexpr int kOffset = 0, kMaxLevel = 31;
  static constexpr bool kMin = true;
  static void levels(const uint8_t* b, int64_t h, __m256i q[8]) {
    unpack_nibbles(b + 128 + 32 * h, q);
    add_fifth_bits(b + 64 + 32 * h, q);
  }
};
// Stored as unsigned q + 128, whose pair sums (2 * 255 * 127) overflow int16: the kernel takes
// the signed levels back and multiplies |q| by the activations with q's sign.
template <>
struct Block32<DType::Q8_0> {
  static constexpr int64_t kBytes = 544;
  static constexpr int kOffset = 0;
  static constexpr bool kMin = false;
  static void levels(const uint8_t* b, int64_t h, __m256i q[8]) {
    for (int j = 0; j < 8; ++j) q[j] = _mm256_xor_si256(load256(b + 32 + 64 * j + 32 * h), _mm256_set1_epi8(-128));
  }
};

template <DType TYPE>
inline __m256i dot_block32(const __m256i q[8], const int8_t* x) {
  if constexpr (TYPE == DType::Q8_0) {
    // |q| * ±x pair sums reach 2 * 128 * 127: only one chunk fits in int16.
    __m256i sum = _mm256_setzero_si256();
    for (int j = 0; j < 8; ++j) {
      const __m256i pairs = _mm256_maddubs_epi16(_mm256_abs_epi8(q[j]), _mm256_sign_epi8(bcast32(x + 4 * j), q[j]));
      sum = _mm256_add_epi32(sum, _mm256_madd_epi16(pairs, ones16()));
    }
    return sum;
  } else {
    return dot_chunks<Block32<TYPE>::kMaxLevel, 8>(q, x, ones16());
  }
}

template <DType TYPE, int T>
void tile_block32(const uint8_t* group, const Activations& a, int64_t t0, float* y, int64_t ldy, int64_t valid) {
  using B = Block32<TYPE>;
  const int64_t cols = a.cols, nb = cols / 32;
  const int8_t* xq = a.q.as<int8_t>() + t0 * cols;
  const float* xd = a.d.as<float>() + t0 * nb;
  const int32_t* xs = a.s32.as<int32_t>() + t0 * nb;
  over_halves<T>(nb, y, ldy, valid, [&](int64_t b, int64_t h, __m256(&acc)[T]) {
    const uint8_t* blk = group + b * B::kBytes;
    const __m256 wd = load_f16x8(blk + 16 * h);
    __m256i q[8];
    B::levels(blk, h, q);
    for (int t = 0; t < T; ++t) {
      __m256i dot = dot_block32<TYPE>(q, xq + t * cols + b * 32);
      const int32_t sum = xs[t * nb + b];
      if constexpr (B::kOffset != 0) dot = _mm256_sub_epi32(dot, _mm256_set1_epi32(B::kOffset * sum));
      const float dx = xd[t * nb + b];
      acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), _mm256_mul_ps(wd, _mm256_set1_ps(dx)), acc[t]);
      if constexpr (B::kMin) {
        acc[t] = _mm256_fmadd_ps(load_f16x8(blk + 32 + 16 * h), _mm256_set1_ps(dx * static_cast<float>(sum)), acc[t]);
      }
    }
  });
}

// ---------------------------------------------------------------- K-quants (256-element super-blocks)

// 8 unsigned bytes (one per row) as the int16 pair (v, v) in each row's lane.
inline __m256i row_scales16(const uint8_t* p) {
  // Byte r of the 8 to bytes 0 and 2 of lane r; index -128 writes a zero byte.
  const __m256i idx = _mm256_setr_epi8(0, -128, 0, -128, 1, -128, 1, -128, 2, -128, 2, -128, 3, -128, 3, -128, 4, -128,
                                       4, -128, 5, -128, 5, -128, 6, -128, 6, -128, 7, -128, 7, -128);
  return _mm256_shuffle_epi8(_mm256_broadcastq_epi64(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))), idx);
}

template <bool kFive, int T>
void tile_q4_K(const uint8_t* group, const Activations& a, int64_t t0, float* y, int64_t ldy, int64_t valid) {
  constexpr int64_t kBytes = kFive ? 2880 : 2368;
  const int64_t cols = a.cols, nb = cols / static_cast<int64_t>(QK_K);
  const int8_t* xq = a.q.as<int8_t>() + t0 * cols;
  const float* xd = a.d.as<float>() + t0 * nb;
  const int32_t* xs = a.s32.as<int32_t>() + t0 * (cols / 32);
  over_halves<T>(nb, y, ldy, valid, [&](int64_t b, int64_t h, __m256(&acc)[T]) {
    const uint8_t* blk = group + b * kBytes;
    // Σ_s sc_s · dot_s per token, exact: at most 8 · 63 · 32 · 31 · 127 in magnitude.
    __m256i scaled[T];
    for (int t = 0; t < T; ++t) scaled[t] = _mm256_setzero_si256();
    // Unrolled: constant offsets instead of address arithmetic competing with the vector ports.
#pragma GCC unroll 8
    for (int s = 0; s < 8; ++s) {
      const __m256i sc = row_scales16(blk + 64 + 16 * s + 8 * h);
      __m256i q[8];
      unpack_k_sub<kFive>(blk, s, h, q);
      for (int t = 0; t < T; ++t) {
        scaled[t] = _mm256_add_epi32(scaled[t], dot_chunks<kFive ? 31 : 15, 8>(q, xq + t * cols + b * 256 + 32 * s, sc));
      }
    }
    // Mins: Σ_s m_s · (sum of the token's levels in sub-block s), min pairs times sum pairs.
    __m256i mins[4];
    for (int p = 0; p < 4; ++p) mins[p] = _mm256_cvtepu8_epi16(load128(blk + 192 + 32 * p + 16 * h));
    const __m256 wd = load_f16x8(blk + 16 * h), wdmin = load_f16x8(blk + 32 + 16 * h);
    for (int t = 0; t < T; ++t) {
      const int32_t* s = xs + t * (cols / 32) + b * 8;
      __m256i msum = _mm256_setzero_si256();
      for (int p = 0; p < 4; ++p) msum = _mm256_add_epi32(msum, _mm256_madd_epi16(mins[p], bcast_pair16(s[2 * p], s[2 * p + 1])));
      const __m256 dx = _mm256_set1_ps(xd[t * nb + b]);
      acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(scaled[t]), _mm256_mul_ps(wd, dx), acc[t]);
      acc[t] = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(msum), _mm256_mul_ps(wdmin, dx), acc[t]);
    }
  });
}

template <int T>
void tile_q6_K(const uint8_t* group, const Activations& a, int64_t t0, float* y, int64_t ldy, int64_t valid) {
  constexpr int64_t kBytes = 3360;
  const int64_t cols = a.cols, nb = cols / static_cast<int64_t>(QK_K);
  const int8_t* xq = a.q.as<int8_t>() + t0 * cols;
  const float* xd = a.d.as<float>() + t0 * nb;
  const int16_t* xs16 = a.s16.as<int16_t>() + t0 * (cols / 16);
  // Scale pairs (even, odd sub-block) as int16 -> the even or odd one in both halves of a lane.
  const __m256i dup_even = _mm256_setr_epi8(0, 1, 0, 1, 4, 5, 4, 5, 8, 9, 8, 9, 12, 13, 12, 13, 0, 1, 0, 1, 4, 5, 4, 5,
                                            8, 9, 8, 9, 12, 13, 12, 13);
  const __m256i dup_odd = _mm256_add_epi8(dup_even, _mm256_set1_epi8(2));
  over_halves<T>(nb, y, ldy, valid, [&](int64_t b, int64_t h, __m256(&acc)[T]) {
    const uint8_t* blk = group + b * kBytes;
    // Σ_u sc_u · (dot_u - 32 · sum_u) per token (levels are q - 32), exact: at most
    // 16 · 128 · 16 · 63 · 127 in magnitude.
    __m256i scaled[T];
    for (int t = 0; t < T; ++t) scaled[t] = _mm256_setzero_si256();
#pragma GCC unroll 8
    for (int pp = 0; pp < 8; ++pp) {
      const __m256i pairs = _mm256_cvtepi8_epi16(load128(blk + 32 + 32 * pp + 16 * h));
      const __m256i sc[2] = {_mm256_shuffle_epi8(pairs, dup_even), _mm256_shuffle_epi8(pairs, dup_odd)};
      for (int k = 0; k < 2; ++k) {
        const int u = 2 * pp + k;
        __m256i q[4];
        unpack_q6_unit(blk + 288 + 192 * u + 32 * h, q);
        for (int t = 0; t < T; ++t) {
          scaled[t] = _mm256_add_epi32(scaled[t], dot_chunks<63, 4>(q, xq + t * cols + b * 256 + 16 * u, sc[k]));
        }
      }
      // 32 · (sc_even · sum_even + sc_odd · sum_odd): the token's two int16 sums are adjacent.
      const __m256i pairs32 = _mm256_slli_epi16(pairs, 5);
      for (int t = 0; t < T; ++t) {
        scaled[t] = _mm256_sub_epi32(scaled[t], _mm256_madd_epi16(pairs32, bcast32(xs16 + t * (cols / 16) + b * 16 + 2 * pp)));
      }
    }
    const __m256 wd = load_f16x8(blk + 16 * h);
    for (int t = 0; t < T; ++t) {
      acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(scaled[t]), _mm256_mul_ps(wd, _mm256_set1_ps(xd[t * nb + b])), acc[t]);
    }
  });
}

// ---------------------------------------------------------------- float types

// Column c of half h: 8 rows' values as floats.
template <DType TYPE>
inline __m256 load_weights8(const uint8_t* group, int64_t c, int64_t h) {
  const int64_t i = c * G + kHalf * h;
  if constexpr (TYPE == DType::F32) {
    return _mm256_loadu_ps(reinterpret_cast<const float*>(group) + i);
  } else if constexpr (TYPE == DType::F16) {
    return load_f16x8(group + i * 2);
  } else {  // BF16: the top half of an f32
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(load128(group + i * 2)), 16));
  }
}

// U independent accumulators per token and half hide the FMA latency when T is small. Both
// halves in one pass: a float group is too big for L1, and one pass reads each line once.
template <DType TYPE, int T>
void tile_float(const uint8_t* group, const Activations& a, int64_t t0, float* y, int64_t ldy, int64_t valid) {
  constexpr int U = T >= 3 ? 1 : (T == 1 ? 4 : 2);
  const int64_t cols = a.cols;
  const float* x = a.f.as<float>() + t0 * cols;
  __m256 acc[T][2][U];
  for (int t = 0; t < T; ++t) {
    for (int u = 0; u < U; ++u) acc[t][0][u] = acc[t][1][u] = _mm256_setzero_ps();
  }
  auto step = [&](int64_t c, int u) {
    const __m256 w0 = load_weights8<TYPE>(group, c, 0), w1 = load_weights8<TYPE>(group, c, 1);
    for (int t = 0; t < T; ++t) {
      const __m256 xb = _mm256_set1_ps(x[t * cols + c]);
      acc[t][0][u] = _mm256_fmadd_ps(w0, xb, acc[t][0][u]);
      acc[t][1][u] = _mm256_fmadd_ps(w1, xb, acc[t][1][u]);
    }
  };
  int64_t c = 0;
  for (; c + U <= cols; c += U) {
    for (int u = 0; u < U; ++u) step(c + u, u);
  }
  for (; c < cols; ++c) step(c, 0);
  for (int t = 0; t < T; ++t) {
    for (int64_t h = 0; h < 2; ++h) {
      __m256 sum = acc[t][h][0];
      for (int u = 1; u < U; ++u) sum = _mm256_add_ps(sum, acc[t][h][u]);
      store_half(y + t * ldy + kHalf * h, sum, valid - kHalf * h);
    }
  }
}

// ---------------------------------------------------------------- dispatch

using TileFn = void (*)(const uint8_t*, const Activations&, int64_t, float*, int64_t, int64_t);

template <int T>
TileFn tile_for(DType type) {
  switch (type) {
    case DType::F32: return tile_float<DType::F32, T>;
    case DType::F16: return tile_float<DType::F16, T>;
    case DType::BF16: return tile_float<DType::BF16, T>;
    case DType::Q4_0: return tile_block32<DType::Q4_0, T>;
    case DType::Q4_1: return tile_block32<DType::Q4_1, T>;
    case DType::Q5_0: return tile_block32<DType::Q5_0, T>;
    case DType::Q5_1: return tile_block32<DType::Q5_1, T>;
    case DType::Q8_0: return tile_block32<DType::Q8_0, T>;
    case DType::Q4_K: return tile_q4_K<false, T>;
    case DType::Q5_K: return tile_q4_K<true, T>;
    case DType::Q6_K: return tile_q6_K<T>;
    default: return nullptr;
  }
}

// Tokens per tile: each token's float accumulator (and int32 sum with the K-quants) beside a
// half's 8 level registers fit the 16 registers.
constexpr int kMaxTokens = 4;

TileFn tile_fn(DType type, int tokens) {
  switch (tokens) {
    case 1: return tile_for<1>(type);
    case 2: return tile_for<2>(type);
    case 3: return tile_for<3>(type);
    default: return tile_for<4>(type);
  }
}

// ---------------------------------------------------------------- activation quantizers

inline __m256 abs_ps(__m256 v) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), v); }

inline float hmax(__m256 v) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  return _mm_cvtss_f32(_mm_max_ss(m, _mm_movehdup_ps(m)));
}

inline int32_t hsum(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
  return _mm_cvtsi128_si32(_mm_add_epi32(s, _mm_shuffle_epi32(s, 1)));
}

// 32 int32 levels in [-128, 127] (four registers, in order) -> 32 int8, in order.
inline void store_levels32(int8_t* q, const __m256i v[4]) {
  // The packs work within 128-bit lanes: 4-byte groups come out as 0 2 4 6 | 1 3 5 7.
  const __m256i b = _mm256_packs_epi16(_mm256_packs_epi32(v[0], v[1]), _mm256_packs_epi32(v[2], v[3]));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(q), _mm256_permutevar8x32_epi32(b, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)));
}

// Rounds half away from zero (C's roundf), as the reference q8_0 quantizer does.
inline __m256 round_half_away(__m256 v) {
  const __m256 nearest = _mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m256 trunc = _mm256_round_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
  const __m256 tie = _mm256_cmp_ps(abs_ps(_mm256_sub_ps(v, trunc)), _mm256_set1_ps(0.5f), _CMP_EQ_OQ);
  const __m256 away = _mm256_add_ps(trunc, _mm256_or_ps(_mm256_set1_ps(1.0f), _mm256_and_ps(v, _mm256_set1_ps(-0.0f))));
  return _mm256_blendv_ps(nearest, away, tie);
}

void quantize_q8_0(const float* x, int64_t cols, int8_t* q, float* d, int32_t* s32) {
  for (int64_t b = 0; b < cols / 32; ++b) {
    __m256 v[4];
    for (int k = 0; k < 4; ++k) v[k] = _mm256_loadu_ps(x + 32 * b + 8 * k);
    const float amax = hmax(_mm256_max_ps(_mm256_max_ps(abs_ps(v[0]), abs_ps(v[1])), _mm256_max_ps(abs_ps(v[2]), abs_ps(v[3]))));
    const float scale = amax / 127;
    const __m256 inv = _mm256_set1_ps(scale != 0.0f ? 1.0f / scale : 0.0f);
    __m256i qi[4];
    for (int k = 0; k < 4; ++k) qi[k] = _mm256_cvtps_epi32(round_half_away(_mm256_mul_ps(v[k], inv)));
    store_levels32(q + 32 * b, qi);
    s32[b] = hsum(_mm256_add_epi32(_mm256_add_epi32(qi[0], qi[1]), _mm256_add_epi32(qi[2], qi[3])));
    d[b] = fp16_to_fp32(fp32_to_fp16(scale));  // the scale as the q8_0 block stores it
  }
}

void quantize_q8_K(const float* x, int64_t cols, int8_t* q, float* d, int32_t* s32, int16_t* s16) {
  for (int64_t b = 0; b < cols / static_cast<int64_t>(QK_K); ++b) {
    const float* xb = x + 256 * b;
    int8_t* qb = q + 256 * b;
    __m256 vmax = _mm256_setzero_ps();
    for (int i = 0; i < 32; ++i) vmax = _mm256_max_ps(vmax, abs_ps(_mm256_loadu_ps(xb + 8 * i)));
    const float amax = hmax(vmax);
    if (amax == 0.0f) {
      std::memset(qb, 0, 256);
      d[b] = 0.0f;
      std::fill(s16 + 16 * b, s16 + 16 * b + 16, int16_t{0});
      std::fill(s32 + 8 * b, s32 + 8 * b + 8, 0);
      continue;
    }
    // The first element of largest magnitude keeps its sign (see the reference quantizer).
    float max = 0.0f;
    for (int i = 0; i < 256; ++i) {
      if (std::fabs(xb[i]) == amax) {
        max = xb[i];
        break;
      }
    }
    const float iscale = -127.0f / max;
    const __m256 vs = _mm256_set1_ps(iscale);
    for (int i = 0; i < 8; ++i) {
      __m256i qi[4];
      for (int k = 0; k < 4; ++k) {
        const __m256 r = _mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(xb + 32 * i + 8 * k), vs),
                                         _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        qi[k] = _mm256_min_epi32(_mm256_cvtps_epi32(r), _mm256_set1_epi32(127));
      }
      store_levels32(qb + 32 * i, qi);
      s16[16 * b + 2 * i] = static_cast<int16_t>(hsum(_mm256_add_epi32(qi[0], qi[1])));
      s16[16 * b + 2 * i + 1] = static_cast<int16_t>(hsum(_mm256_add_epi32(qi[2], qi[3])));
      s32[8 * b + i] = s16[16 * b + 2 * i] + s16[16 * b + 2 * i + 1];
    }
    d[b] = 1 / iscale;
  }
}

}  // namespace

bool has_kernel(DType type) { return tile_for<1>(type) != nullptr; }

void quantize_levels(const float* x, int64_t cols, DType dot_type, int8_t* q, float* d, int32_t* s32, int16_t* s16) {
  if (dot_type == DType::Q8_0) {
    quantize_q8_0(x, cols, q, d, s32);
  } else {
    quantize_q8_K(x, cols, q, d, s32, s16);
  }
}

void matmul_groups(const PackedMatrix& w, const Activations& a, int64_t g0, int64_t g1, int64_t t_begin, int64_t t_end,
                   float* y, int64_t ldy) {
  VIREO_CHECK(tile_fn(w.type, 1) != nullptr);
  for (int64_t g = g0; g < g1; ++g) {
    const uint8_t* group = w.data + static_cast<size_t>(g) * w.group_bytes;
    const int64_t row0 = g * G;
    const int64_t valid = std::min(G, w.rows - row0);
    // All tokens against this group while its weights are in cache.
    for (int64_t t0 = t_begin; t0 < t_end; t0 += kMaxTokens) {
      const int tokens = static_cast<int>(std::min<int64_t>(kMaxTokens, t_end - t0));
      tile_fn(w.type, tokens)(group, a, t0, y + t0 * ldy + row0, ldy, valid);
    }
  }
}

}  // namespace vireo::cpu::avx2

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
