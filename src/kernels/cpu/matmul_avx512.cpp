// AVX-512 (+VNNI) matmul kernels over the interleaved layouts of pack_avx512.cpp, and the
// activation quantizers they read. Compiled for AVX-512 whatever the build's -march; only called
// when the CPU has it (cpu_features.cpp).
//
// A tile is one group of 16 weight rows times T tokens: accumulators hold 16 rows' partial sums
// in one register per token. Quantized types multiply unsigned weight levels by signed
// activation levels with vpdpbusd (16 lanes x 4 products per instruction); a weight type with an
// offset (q4_0: q - 8) subtracts offset * sum(activation levels) per block, and the block's
// scales are applied once per block in float.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "vireo/core/error.h"
#include "vireo/core/quant_blocks.h"
#include "vireo/kernels/cpu/matmul.h"

// Everything below is compiled for these instruction sets (the caller checks the CPU first).
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c,bmi,bmi2"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c,bmi,bmi2")
#pragma GCC diagnostic push
// GCC 12 flags the intentionally undefined registers of some AVX-512 intrinsics.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

#include "vireo/kernels/cpu/avx512_levels.h"

namespace vireo::cpu::avx512 {
namespace {

using namespace avx512_levels;

constexpr int64_t G = kRowGroup;

inline __m512i bcast32(const int8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm512_set1_epi32(v);
}

// Decode (one or two tokens) is a pure stream of weight bytes: asking for the lines a little
// ahead keeps more misses in flight than the hardware prefetcher alone (measured +8-15% on 2
// cores: Q8_0 23 -> 27 GiB/s of a 27.5 GiB/s streaming read). More tokens are compute-bound.
constexpr int64_t kPrefetchAhead = 1536;
template <int T>
inline void prefetch_ahead(const uint8_t* p, int64_t bytes) {
  if constexpr (T <= 2) {
    for (int64_t o = 0; o < bytes; o += 64) _mm_prefetch(reinterpret_cast<const char*>(p + kPrefetchAhead + o), _MM_HINT_T0);
  }
}

// Stores a tile's 16 outputs of one token (fewer in the last group of a matrix).
inline void store_rows(float* y, __m512 v, int64_t valid) {
  if (valid >= G) {
    _mm512_storeu_ps(y, v);
  } else {
    _mm512_mask_storeu_ps(y, static_cast<__mmask16>((1u << valid) - 1), v);
  }
}

// ---------------------------------------------------------------- 32-element block types

template <DType TYPE>
struct Block32;

template <>
struct Block32<DType::Q4_0> {
  static constexpr int64_t kBytes = 288;
  static constexpr int kOffset = 8;
  static constexpr bool kMin = false;
  static void levels(const uint8_t* b, __m512i q[8]) { unpack_nibbles(b + 32, q); }
};
template <>
struct Block32<DType::Q4_1> {
  static constexpr int64_t kBytes = 320;
  static constexpr int kOffset = 0;
  static constexpr bool kMin = true;
  static void levels(const uint8_t* b, __m512i q[8]) { unpack_nibbles(b + 64, q); }
};
template <>
struct Block32<DType::Q5_0> {
  static constexpr int64_t kBytes = 352;
  static constexpr int kOffset = 16;
  static constexpr bool kMin = false;
  static void levels(const uint8_t* b, __m512i q[8]) {
    unpack_nibbles(b + 96, q);
    add_fifth_bits(b + 32, q);
  }
};
template <>
struct Block32<DType::Q5_1> {
  static constexpr int64_t kBytes = 384;
  static constexpr int kOffset = 0;
  static constexpr bool kMin = true;
  static void levels(const uint8_t* b, __m512i q[8]) {
    unpack_nibbles(b + 128, q);
    add_fifth_bits(b + 64, q);
  }
};
template <>
struct Block32<DType::Q8_0> {
  static constexpr int64_t kBytes = 544;
  static constexpr int kOffset = 128;
  static constexpr bool kMin = false;
  static void levels(const uint8_t* b, __m512i q[8]) {
    for (int j = 0; j < 8; ++j) q[j] = load512(b + 32 + 64 * j);
  }
};

// Σ over a 32-element block of level products for one token: two chains so the adds overlap.
inline __m512i dot_block32(const __m512i q[8], const int8_t* x) {
  __m512i a0 = _mm512_setzero_si512(), a1 = _mm512_setzero_si512();
  for (int j = 0; j < 8; j += 2) {
    a0 = _mm512_dpbusd_epi32(a0, q[j], bcast32(x + 4 * j));
    a1 = _mm512_dpbusd_epi32(a1, q[j + 1], bcast32(x + 4 * j + 4));
  }
  return _mm512_add_epi32(a0, a1);
}

template <DType TYPE, int T>
void tile_block32(const uint8_t* group, const Activations& a, int64_t t0, float* y, int64_t ldy, int64_t valid) {
  using B = Block32<TYPE>;
  const int64_t cols = a.cols, nb = cols / 32;
  const int8_t* xq = a.q.as<int8_t>() + t0 * cols;
  const float* xd = a.d.as<float>() + t0 * nb;
  const int32_t* xs = a.s32.as<int32_t>() + t0 * nb;
  __m512 acc[T];
  for (int t = 0; t < T; ++t) acc[t] = _mm512_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* blk = group + b * B::kBytes;
    prefetch_ahead<T>(blk, B::kBytes);
    const __m512 wd = load_f16x16(blk);
    __m512i q[8];
    B::levels(blk, q);
    for (int t = 0; t < T; ++t) {
      __m512i dot = dot_block32(q, xq + t * cols + b * 32);
      const int32_t sum = xs[t * nb + b];
      if constexpr (B::kOffset != 0) dot = _mm512_sub_epi32(dot, _mm512_set1_epi32(B::kOffset * sum));
      const float dx = xd[t * nb + b];
      acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_mul_ps(wd, _mm512_set1_ps(dx)), acc[t]);
      if constexpr (B::kMin) {
        acc[t] = _mm512_fmadd_ps(load_f16x16(blk + 32), _mm512_set1_ps(dx * static_cast<float>(sum)), acc[t]);
      }
    }
  }
  for (int t = 0; t < T; ++t) store_rows(y + t * ldy, acc[t], valid);
}

// ---------------------------------------------------------------- K-quants (256-element super-blocks)

// The sum of 32-element sums 2p and 2p+1 of token activations as an int16 pair (for vpdpwssd).
inline __m512i bcast_pair16(const int32_t* s32, int p) {
  const uint32_t v = (static_cast<uint32_t>(s32[2 * p]) & 0xffffu) | (static_cast<uint32_t>(s32[2 * p + 1]) << 16);
  return _mm512_set1_epi32(static_cast<int32_t>(v));
}

template <bool kFive, int T>
void tile_q4_K(const uint8_t* group, const Activations& a, int64_t t0, float* y, int64_t ldy, int64_t valid) {
  constexpr int64_t kBytes = kFive ? 2880 : 2368;
  const int64_t cols = a.cols, nb = cols / static_cast<int64_t>(QK_K);
  const int8_t* xq = a.q.as<int8_t>() + t0 * cols;
  const float* xd = a.d.as<float>() + t0 * nb;
  const int32_t* xs = a.s32.as<int32_t>() + t0 * (cols / 32);
  __m512 acc[T];
  for (int t = 0; t < T; ++t) acc[t] = _mm512_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* blk = group + b * kBytes;
    prefetch_ahead<T>(blk, kBytes);
    __m512 sub_sum[T];  // Σ_s sc_s · dot_s for each token
    for (int t = 0; t < T; ++t) sub_sum[t] = _mm512_setzero_ps();
    for (int p = 0; p < 4; ++p) {
      const __m512 sc_lo = _mm512_cvtepi32_ps(
          _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + 64 + 16 * (2 * p)))));
      const __m512 sc_hi = _mm512_cvtepi32_ps(
          _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + 64 + 16 * (2 * p + 1)))));
      __m512i lo[8], hi[8];
      unpack_k_pair(blk, p, kFive, lo, hi);
      for (int t = 0; t < T; ++t) {
        const int8_t* x = xq + t * cols + b * 256 + 64 * p;
        const __m512i d_lo = dot_block32(lo, x);
        const __m512i d_hi = dot_block32(hi, x + 32);
        sub_sum[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d_lo), sc_lo, sub_sum[t]);
        sub_sum[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d_hi), sc_hi, sub_sum[t]);
      }
    }
    // Mins: Σ_s m_s · (sum of the token's levels in sub-block s), as int16 pairs.
    __m512i mins[4];
    for (int p = 0; p < 4; ++p) mins[p] = _mm512_cvtepu8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + 192 + 32 * p)));
    const __m512 wd = load_f16x16(blk), wdmin = load_f16x16(blk + 32);
    for (int t = 0; t < T; ++t) {
      const int32_t* s = xs + t * (cols / 32) + b * 8;
      __m512i msum = _mm512_setzero_si512();
      for (int p = 0; p < 4; ++p) msum = _mm512_dpwssd_epi32(msum, mins[p], bcast_pair16(s, p));
      const __m512 dx = _mm512_set1_ps(xd[t * nb + b]);
      acc[t] = _mm512_fmadd_ps(sub_sum[t], _mm512_mul_ps(wd, dx), acc[t]);
      acc[t] = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(msum), _mm512_mul_ps(wdmin, dx), acc[t]);
    }
  }
  for (int t = 0; t < T; ++t) store_rows(y + t * ldy, acc[t], valid);
}

template <int T>
void tile_q6_K(const uint8_t* group, const Activations& a, int64_t t0, float* y, int64_t ldy, int64_t valid) {
  constexpr int64_t kBytes = 3360;
  const int64_t cols = a.cols, nb = cols / static_cast<int64_t>(QK_K);
  const int8_t* xq = a.q.as<int8_t>() + t0 * cols;
  const float* xd = a.d.as<float>() + t0 * nb;
  const int16_t* xs16 = a.s16.as<int16_t>() + t0 * (cols / 16);
  __m512 acc[T];
  for (int t = 0; t < T; ++t) acc[t] = _mm512_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* blk = group + b * kBytes;
    prefetch_ahead<T>(blk, kBytes);
    __m512 sub_sum[T];
    for (int t = 0; t < T; ++t) sub_sum[t] = _mm512_setzero_ps();
    for (int pp = 0; pp < 8; ++pp) {
      __m512i sc_even, sc_odd;
      q6_scale_pair(blk, pp, sc_even, sc_odd);
      const __m512 sc[2] = {_mm512_cvtepi32_ps(sc_even), _mm512_cvtepi32_ps(sc_odd)};
      for (int h = 0; h < 2; ++h) {
        const int u = 2 * pp + h;
        __m512i q[4];
        unpack_q6_unit(blk + 288 + 192 * u, q);
        for (int t = 0; t < T; ++t) {
          const int8_t* x = xq + t * cols + b * 256 + 16 * u;
          __m512i d0 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), q[0], bcast32(x));
          __m512i d1 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), q[1], bcast32(x + 4));
          d0 = _mm512_dpbusd_epi32(d0, q[2], bcast32(x + 8));
          d1 = _mm512_dpbusd_epi32(d1, q[3], bcast32(x + 12));
          // Levels are q - 32: subtract 32 · (sum of this sub-block's activation levels).
          const __m512i dot = _mm512_sub_epi32(_mm512_add_epi32(d0, d1),
                                               _mm512_set1_epi32(32 * xs16[t * (cols / 16) + b * 16 + u]));
          sub_sum[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), sc[h], sub_sum[t]);
        }
      }
    }
    const __m512 wd = load_f16x16(blk);
    for (int t = 0; t < T; ++t) {
      acc[t] = _mm512_fmadd_ps(sub_sum[t], _mm512_mul_ps(wd, _mm512_set1_ps(xd[t * nb + b])), acc[t]);
    }
  }
  for (int t = 0; t < T; ++t) store_rows(y + t * ldy, acc[t], valid);
}

// ---------------------------------------------------------------- float types

template <DType TYPE>
inline __m512 load_weights16(const uint8_t* group, int64_t c) {
  if constexpr (TYPE == DType::F32) {
    return _mm512_loadu_ps(reinterpret_cast<const float*>(group) + c * G);
  } else if constexpr (TYPE == DType::F16) {
    return load_f16x16(group + c * G * 2);
  } else {  // BF16: the top half of an f32
    const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(group + c * G * 2));
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
  }
}

// U independent accumulators per token hide the FMA latency when T is small.
template <DType TYPE, int T>
void tile_float(const uint8_t* group, const Activations& a, int64_t t0, float* y, int64_t ldy, int64_t valid) {
  constexpr int U = T >= 4 ? 1 : (T == 1 ? 4 : 2);
  const int64_t cols = a.cols;
  const float* x = a.f.as<float>() + t0 * cols;
  __m512 acc[T][U];
  for (int t = 0; t < T; ++t) {
    for (int u = 0; u < U; ++u) acc[t][u] = _mm512_setzero_ps();
  }
  int64_t c = 0;
  constexpr int64_t kColBytes = (TYPE == DType::F32 ? 4 : 2) * G;
  for (; c + U <= cols; c += U) {
    prefetch_ahead<T>(group + c * kColBytes, U * kColBytes);
    for (int u = 0; u < U; ++u) {
      const __m512 w = load_weights16<TYPE>(group, c + u);
      for (int t = 0; t < T; ++t) acc[t][u] = _mm512_fmadd_ps(w, _mm512_set1_ps(x[t * cols + c + u]), acc[t][u]);
    }
  }
  for (; c < cols; ++c) {
    const __m512 w = load_weights16<TYPE>(group, c);
    for (int t = 0; t < T; ++t) acc[t][0] = _mm512_fmadd_ps(w, _mm512_set1_ps(x[t * cols + c]), acc[t][0]);
  }
  for (int t = 0; t < T; ++t) {
    __m512 s = acc[t][0];
    for (int u = 1; u < U; ++u) s = _mm512_add_ps(s, acc[t][u]);
    store_rows(y + t * ldy, s, valid);
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

// Tokens per tile: K-quant tiles keep 16 level registers live, so fewer tokens fit.
int max_tokens(DType type) {
  switch (type) {
    case DType::Q4_K:
    case DType::Q5_K:
    case DType::Q6_K: return 4;
    default: return 8;
  }
}

TileFn tile_fn(DType type, int tokens) {
  switch (tokens) {
    case 1: return tile_for<1>(type);
    case 2: return tile_for<2>(type);
    case 3: return tile_for<3>(type);
    case 4: return tile_for<4>(type);
    case 5: return tile_for<5>(type);
    case 6: return tile_for<6>(type);
    case 7: return tile_for<7>(type);
    default: return tile_for<8>(type);
  }
}

// ---------------------------------------------------------------- activation quantizers

inline float hmax(__m512 v) { return _mm512_reduce_max_ps(v); }

// Rounds half away from zero (C's roundf), as the reference q8_0 quantizer does.
inline __m512 round_half_away(__m512 v) {
  const __m512 nearest = _mm512_roundscale_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m512 trunc = _mm512_roundscale_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
  const __m512 frac = _mm512_abs_ps(_mm512_sub_ps(v, trunc));
  const __mmask16 tie = _mm512_cmp_ps_mask(frac, _mm512_set1_ps(0.5f), _CMP_EQ_OQ);
  const __m512 away = _mm512_add_ps(trunc, _mm512_or_ps(_mm512_set1_ps(1.0f), _mm512_and_ps(v, _mm512_set1_ps(-0.0f))));
  return _mm512_mask_blend_ps(tie, nearest, away);
}

void quantize_q8_0(const float* x, int64_t cols, int8_t* q, float* d, int32_t* s32) {
  for (int64_t b = 0; b < cols / 32; ++b) {
    const __m512 v0 = _mm512_loadu_ps(x + 32 * b), v1 = _mm512_loadu_ps(x + 32 * b + 16);
    const float amax = hmax(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
    const float scale = amax / 127;
    const float inv = scale != 0.0f ? 1.0f / scale : 0.0f;
    const __m512 vi = _mm512_set1_ps(inv);
    const __m512i q0 = _mm512_cvtps_epi32(round_half_away(_mm512_mul_ps(v0, vi)));
    const __m512i q1 = _mm512_cvtps_epi32(round_half_away(_mm512_mul_ps(v1, vi)));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(q + 32 * b), _mm512_cvtepi32_epi8(q0));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(q + 32 * b + 16), _mm512_cvtepi32_epi8(q1));
    s32[b] = _mm512_reduce_add_epi32(_mm512_add_epi32(q0, q1));
    d[b] = fp16_to_fp32(fp32_to_fp16(scale));  // the scale as the q8_0 block stores it
  }
}

void quantize_q8_K(const float* x, int64_t cols, int8_t* q, float* d, int32_t* s32, int16_t* s16) {
  for (int64_t b = 0; b < cols / static_cast<int64_t>(QK_K); ++b) {
    const float* xb = x + 256 * b;
    __m512 vmax = _mm512_setzero_ps();
    for (int i = 0; i < 16; ++i) vmax = _mm512_max_ps(vmax, _mm512_abs_ps(_mm512_loadu_ps(xb + 16 * i)));
    const float amax = hmax(vmax);
    int8_t* qb = q + 256 * b;
    if (amax == 0.0f) {
      std::memset(qb, 0, 256);
      d[b] = 0.0f;
      for (int s = 0; s < 16; ++s) s16[16 * b + s] = 0;
      for (int s = 0; s < 8; ++s) s32[8 * b + s] = 0;
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
    const __m512 vs = _mm512_set1_ps(iscale);
    for (int i = 0; i < 16; ++i) {
      const __m512 r = _mm512_roundscale_ps(_mm512_mul_ps(_mm512_loadu_ps(xb + 16 * i), vs),
                                            _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      const __m512i qi = _mm512_min_epi32(_mm512_cvtps_epi32(r), _mm512_set1_epi32(127));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(qb + 16 * i), _mm512_cvtepi32_epi8(qi));
      s16[16 * b + i] = static_cast<int16_t>(_mm512_reduce_add_epi32(qi));
    }
    for (int s = 0; s < 8; ++s) s32[8 * b + s] = s16[16 * b + 2 * s] + s16[16 * b + 2 * s + 1];
    d[b] = 1 / iscale;
  }
}

}  // namespace

void quantize_levels(const float* x, int64_t cols, DType dot_type, int8_t* q, float* d, int32_t* s32, int16_t* s16) {
  if (dot_type == DType::Q8_0) {
    quantize_q8_0(x, cols, q, d, s32);
  } else {
    quantize_q8_K(x, cols, q, d, s32, s16);
  }
}

void matmul_groups(const PackedMatrix& w, const Activations& a, int64_t g0, int64_t g1, int64_t t_begin, int64_t t_end,
                   float* y, int64_t ldy) {
  const int tmax = max_tokens(w.type);
  VIREO_CHECK(tile_fn(w.type, 1) != nullptr);
  for (int64_t g = g0; g < g1; ++g) {
    const uint8_t* group = w.data + static_cast<size_t>(g) * w.group_bytes;
    const int64_t row0 = g * G;
    const int64_t valid = std::min(G, w.rows - row0);
    // All tokens against this group while its weights are in cache.
    for (int64_t t0 = t_begin; t0 < t_end; t0 += tmax) {
      const int tokens = static_cast<int>(std::min<int64_t>(tmax, t_end - t0));
      tile_fn(w.type, tokens)(group, a, t0, y + t0 * ldy + row0, ldy, valid);
    }
  }
}

}  // namespace vireo::cpu::avx512

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC diagnostic pop
#pragma GCC pop_options
#endif
