// AVX-512 kernels of the hot non-matmul ops: attention over the F16 KV cache, the F16
// conversion that writes the cache, and SwiGLU.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

#include "vireo/core/quant_blocks.h"
#include "vireo/kernels/cpu/ops.h"

// Everything below is compiled for these instruction sets (the caller checks the CPU first).
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")
#pragma GCC diagnostic push
// GCC 12 flags the intentionally undefined registers of some AVX-512 intrinsics.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

namespace vireo::cpu::avx512 {
namespace {

// e^x to about 2 ulp: x = n·ln2 + r with |r| <= ln2/2, a degree-6 polynomial for e^r, then
// scalef by 2^n (which also gives 0 and inf at the ends of the range).
inline __m512 exp_ps(__m512 x) {
  x = _mm512_max_ps(x, _mm512_set1_ps(-104.0f));
  x = _mm512_min_ps(x, _mm512_set1_ps(89.0f));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
  return _mm512_scalef_ps(p, n);
}

inline __mmask16 tail_mask(int64_t n) { return n >= 16 ? 0xffff : static_cast<__mmask16>((1u << n) - 1); }

// Row of `dim` K or V values as floats, 16 at a time (masked past the end).
inline __m512 load_kv(const void* base, DType type, int64_t idx, __mmask16 m) {
  if (type == DType::F16) {
    const auto* p = static_cast<const uint16_t*>(base) + idx;
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p));
  }
  if (type == DType::Q8_0) {  // idx is a multiple of 16: the 16 values lie in one block
    const auto* b = static_cast<const block_q8_0*>(base) + idx / QK8_0;
    const __m128i q = _mm_maskz_loadu_epi8(m, b->qs + idx % QK8_0);
    return _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q)), _mm512_set1_ps(_cvtsh_ss(b->d)));
  }
  return _mm512_maskz_loadu_ps(m, static_cast<const float*>(base) + idx);
}

}  // namespace

void attention_heads(const float* q, int n_q, const void* k, const void* v, DType kv_type, int64_t kv_stride,
                     int kv_head, int head_dim, int32_t begin, int32_t count, const KvPages& pages, float scale,
                     float* scratch, float* out) {
  if (n_q > 16) {  // more query heads per KV head than the per-head arrays hold: split the group
    for (int h0 = 0; h0 < n_q; h0 += 16) {
      attention_heads(q + static_cast<int64_t>(h0) * head_dim, std::min(16, n_q - h0), k, v, kv_type, kv_stride,
                      kv_head, head_dim, begin, count, pages, scale, scratch, out + static_cast<int64_t>(h0) * head_dim);
    }
    return;
  }
  const int chunks = (head_dim + 15) / 16;
  const int64_t off = int64_t{kv_head} * head_dim;
  // Scores: each K row is converted once and dotted with every query head of the group.
  float mx[16];
  std::fill(mx, mx + 16, -std::numeric_limits<float>::infinity());
  constexpr int kMaxHeld = 8;  // heads up to 128 wide: the K row stays in registers
  __m512 kr[kMaxHeld];
  for (int32_t c = 0; c < count; ++c) {
    const int64_t row = pages.row(int64_t{begin} + c) * kv_stride + off;
    const bool held = chunks <= kMaxHeld;
    if (held) {
      for (int j = 0; j < chunks; ++j) kr[j] = load_kv(k, kv_type, row + 16 * j, tail_mask(head_dim - 16 * j));
    }
    for (int h = 0; h < n_q; ++h) {
      const float* qh = q + static_cast<int64_t>(h) * head_dim;
      __m512 acc = _mm512_setzero_ps();
      for (int j = 0; j < chunks; ++j) {
        const __mmask16 m = tail_mask(head_dim - 16 * j);
        const __m512 kj = held ? kr[j] : load_kv(k, kv_type, row + 16 * j, m);
        acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, qh + 16 * j), kj, acc);
      }
      const float s = _mm512_reduce_add_ps(acc) * scale;
      scratch[static_cast<int64_t>(h) * count + c] = s;
      mx[h] = std::max(mx[h], s);
    }
  }
  // Softmax numerators and their sums.
  float inv_sum[16];
  for (int h = 0; h < n_q; ++h) {
    float* s = scratch + static_cast<int64_t>(h) * count;
    const __m512 vmax = _mm512_set1_ps(mx[h]);
    __m512 vsum = _mm512_setzero_ps();
    for (int32_t c = 0; c < count; c += 16) {
      const __mmask16 m = tail_mask(count - c);
      const __m512 e = exp_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, s + c), vmax));
      _mm512_mask_storeu_ps(s + c, m, e);
      vsum = _mm512_add_ps(vsum, _mm512_maskz_mov_ps(m, e));
    }
    const float sum = _mm512_reduce_add_ps(vsum);
    inv_sum[h] = count > 0 ? 1.0f / sum : 0.0f;
  }
  // Weighted sum of V rows, each converted once for the whole group.
  __m512 acc[16][4];
  const int n_acc = std::min(chunks, 4);
  for (int base = 0; base < chunks; base += n_acc) {  // head_dim > 64: 64 dims at a time
    const int nc = std::min(n_acc, chunks - base);
    for (int h = 0; h < n_q; ++h) {
      for (int j = 0; j < nc; ++j) acc[h][j] = _mm512_setzero_ps();
    }
    for (int32_t c = 0; c < count; ++c) {
      const int64_t row = pages.row(int64_t{begin} + c) * kv_stride + off;
      __m512 vr[4];
      for (int j = 0; j < nc; ++j) vr[j] = load_kv(v, kv_type, row + 16 * (base + j), tail_mask(head_dim - 16 * (base + j)));
      for (int h = 0; h < n_q; ++h) {
        const __m512 p = _mm512_set1_ps(scratch[static_cast<int64_t>(h) * count + c]);
        for (int j = 0; j < nc; ++j) acc[h][j] = _mm512_fmadd_ps(p, vr[j], acc[h][j]);
      }
    }
    for (int h = 0; h < n_q; ++h) {
      float* o = out + static_cast<int64_t>(h) * head_dim;
      for (int j = 0; j < nc; ++j) {
        const int dj = 16 * (base + j);
        _mm512_mask_storeu_ps(o + dj, tail_mask(head_dim - dj), _mm512_mul_ps(acc[h][j], _mm512_set1_ps(inv_sum[h])));
      }
    }
  }
}

void f32_to_f16(const float* x, int64_t n, uint16_t* out) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i),
                        _mm512_cvtps_ph(_mm512_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  }
  if (i < n) {
    const __mmask16 m = tail_mask(n - i);
    _mm256_mask_storeu_epi16(out + i, m,
                             _mm512_cvtps_ph(_mm512_maskz_loadu_ps(m, x + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  }
}

void silu_mul(const float* gate, const float* up, int64_t n, float* out) {
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = tail_mask(n - i);
    const __m512 g = _mm512_maskz_loadu_ps(m, gate + i);
    const __m512 e = exp_ps(_mm512_sub_ps(_mm512_setzero_ps(), g));
    const __m512 s = _mm512_div_ps(g, _mm512_add_ps(_mm512_set1_ps(1.0f), e));
    _mm512_mask_storeu_ps(out + i, m, _mm512_mul_ps(s, _mm512_maskz_loadu_ps(m, up + i)));
  }
}

}  // namespace vireo::cpu::avx512

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC diagnostic pop
#pragma GCC pop_options
#endif
