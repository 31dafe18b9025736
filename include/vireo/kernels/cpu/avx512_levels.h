// Decoding of the interleaved weight layouts (see pack_avx512.cpp) into registers of levels,
// shared by the AVX-512 and AMX kernels. Internal: include only inside a translation unit
// compiled for AVX-512 (after `#pragma GCC target(...)` and <immintrin.h>).
#pragma once
#include <cstdint>

namespace vireo::cpu::avx512_levels {

inline __m512 load_f16x16(const uint8_t* p) {
  return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}
inline __m512i load512(const uint8_t* p) { return _mm512_loadu_si512(p); }

// 4 x 64 bytes of nibbles -> 8 registers: q[j] lane r holds the levels of elements 4j..4j+3 of
// row r (low nibbles are elements 0..15, high nibbles 16..31).
inline void unpack_nibbles(const uint8_t* qs, __m512i q[8]) {
  const __m512i m4 = _mm512_set1_epi8(0x0f);
  for (int i = 0; i < 4; ++i) {
    const __m512i v = load512(qs + 64 * i);
    q[i] = _mm512_and_si512(v, m4);
    q[4 + i] = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
  }
}

// q5_0 / q5_1: adds 16 to the levels whose fifth bit is set; bit k of a row's 32-bit word is
// element k's.
inline void add_fifth_bits(const uint8_t* qh_ptr, __m512i q[8]) {
  const __m512i qh = load512(qh_ptr);
  const __m512i sixteen = _mm512_set1_epi8(16);
  // shuffle_epi8 indexes within 16-byte lanes: each row's word sits at byte 0, 4, 8 or 12.
  const __m512i word_base = _mm512_set_epi32(0x0c0c0c0c, 0x08080808, 0x04040404, 0, 0x0c0c0c0c, 0x08080808,
                                             0x04040404, 0, 0x0c0c0c0c, 0x08080808, 0x04040404, 0,
                                             0x0c0c0c0c, 0x08080808, 0x04040404, 0);
  for (int j = 0; j < 8; ++j) {
    // Chunk j covers elements 4j..4j+3: bits 4j..4j+3 of the row's word, all in its byte j/2.
    const __m512i idx = _mm512_add_epi8(word_base, _mm512_set1_epi8(static_cast<char>(j / 2)));
    const __m512i bytes = _mm512_shuffle_epi8(qh, idx);
    const __m512i bits = _mm512_set1_epi32(static_cast<int32_t>(0x08040201u << (4 * (j % 2))));
    q[j] = _mm512_mask_add_epi8(q[j], _mm512_test_epi8_mask(bytes, bits), q[j], sixteen);
  }
}

// q4_K / q5_K: sub-blocks 2p (lo) and 2p+1 (hi) of a 16-row super-block group, levels 0..15
// (0..31 with the fifth bits of q5_K).
inline void unpack_k_pair(const uint8_t* blk, int p, bool five, __m512i lo[8], __m512i hi[8]) {
  const __m512i m4 = _mm512_set1_epi8(0x0f);
  const __m512i sixteen = _mm512_set1_epi8(16);
  for (int i = 0; i < 8; ++i) {
    const __m512i v = load512(blk + 320 + 512 * p + 64 * i);
    lo[i] = _mm512_and_si512(v, m4);
    hi[i] = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
    if (five) {
      const __m512i qh = load512(blk + 2368 + 64 * i);
      lo[i] = _mm512_mask_add_epi8(lo[i], _mm512_test_epi8_mask(qh, _mm512_set1_epi8(static_cast<char>(1 << (2 * p)))),
                                   lo[i], sixteen);
      hi[i] = _mm512_mask_add_epi8(hi[i], _mm512_test_epi8_mask(qh, _mm512_set1_epi8(static_cast<char>(2 << (2 * p)))),
                                   hi[i], sixteen);
    }
  }
}

// q6_K: the 4 chunks (16 elements) of one sub-block unit, levels 0..63.
inline void unpack_q6_unit(const uint8_t* unit, __m512i q[4]) {
  const __m512i m4 = _mm512_set1_epi8(0x0f), m2 = _mm512_set1_epi8(0x30);
  const __m512i va = load512(unit), vb = load512(unit + 64), vh = load512(unit + 128);
  q[0] = _mm512_or_si512(_mm512_and_si512(va, m4), _mm512_and_si512(_mm512_slli_epi16(vh, 4), m2));
  q[1] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(va, 4), m4), _mm512_and_si512(_mm512_slli_epi16(vh, 2), m2));
  q[2] = _mm512_or_si512(_mm512_and_si512(vb, m4), _mm512_and_si512(vh, m2));
  q[3] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(vb, 4), m4), _mm512_and_si512(_mm512_srli_epi16(vh, 2), m2));
}

// q6_K scales of sub-blocks 2pp and 2pp+1 (int8 [8][16][2]) as two vectors of 16 int32.
inline void q6_scale_pair(const uint8_t* blk, int pp, __m512i& even, __m512i& odd) {
  const __m512i pairs = _mm512_cvtepi8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + 32 + 32 * pp)));
  even = _mm512_srai_epi32(_mm512_slli_epi32(pairs, 16), 16);
  odd = _mm512_srai_epi32(pairs, 16);
}

}  // namespace vireo::cpu::avx512_levels
