// Byte layouts of GGML's quantized blocks (as stored in GGUF files) and the fp16/bf16 conversions
// they use. The layouts are a file format: fields, order and sizes must never change.
//
// Notation: a block of QK elements holds small integer levels q and one or more fp16 scales;
// "sub-block" means a run of 16 or 32 elements inside a 256-element K-quant super-block that
// shares a 4..8-bit scale (and min) code, itself multiplied by the block's fp16 d (and dmin).
#pragma once
#include <bit>
#include <cstdint>

#include "vireo/core/dtype.h"

namespace vireo {

// ---- fp16 / bf16 <-> fp32 (round to nearest, ties to even; NaN stays NaN, inf stays inf) ----

constexpr float fp16_to_fp32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0x1f) {  // inf, or NaN: widen the payload and make it quiet, as F16C does
    bits = sign | 0x7f800000u | (mant << 13) | (mant != 0 ? 0x400000u : 0u);
  } else if (exp != 0) {  // normal: rebias the exponent 15 -> 127
    bits = sign | ((exp + 112) << 23) | (mant << 13);
  } else if (mant == 0) {  // signed zero
    bits = sign;
  } else {  // subnormal mant * 2^-24: renormalise, since every fp16 subnormal is an fp32 normal
    uint32_t e = 113;
    while ((mant & 0x400u) == 0) {
      mant <<= 1;
      --e;
    }
    bits = sign | (e << 23) | ((mant & 0x3ffu) << 13);
  }
  return std::bit_cast<float>(bits);
}

constexpr uint16_t fp32_to_fp16(float f) {
  const uint32_t x = std::bit_cast<uint32_t>(f);
  const uint32_t sign = (x >> 16) & 0x8000u;
  const uint32_t ax = x & 0x7fffffffu;
  if (ax > 0x7f800000u) {  // NaN: keep the top payload bits and force quiet so it cannot become inf
    return static_cast<uint16_t>(sign | 0x7e00u | ((ax >> 13) & 0x3ffu));
  }
  if (ax >= 0x477ff000u) {  // >= 65520 (halfway past 65504, the largest half) rounds to inf
    return static_cast<uint16_t>(sign | 0x7c00u);
  }
  if (ax >= 0x38800000u) {  // >= 2^-14: normal half. Rebias, then round the 13 dropped bits;
    // a carry out of the mantissa correctly bumps the exponent.
    const uint32_t rounded = ax - 0x38000000u + 0xfffu + ((ax >> 13) & 1u);
    return static_cast<uint16_t>(sign | (rounded >> 13));
  }
  // Subnormal half (units of 2^-24) or zero. fp32 subnormals are far below half the smallest
  // half subnormal, so they round to zero.
  const uint32_t exp = ax >> 23;
  if (exp < 102) return static_cast<uint16_t>(sign);   // < 2^-25: below the rounding midpoint
  const uint32_t mant = (ax & 0x7fffffu) | 0x800000u;  // value = mant * 2^(exp-150)
  const uint32_t shift = 126 - exp;                    // to units of 2^-24; 14..24 here
  uint32_t q = mant >> shift;
  const uint32_t rem = mant & ((1u << shift) - 1);
  const uint32_t half = 1u << (shift - 1);
  if (rem > half || (rem == half && (q & 1u))) ++q;  // may carry into the smallest normal: fine
  return static_cast<uint16_t>(sign | q);
}

constexpr float bf16_to_fp32(uint16_t b) {
  return std::bit_cast<float>(static_cast<uint32_t>(b) << 16);
}

constexpr uint16_t fp32_to_bf16(float f) {
  const uint32_t x = std::bit_cast<uint32_t>(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) {  // NaN: truncating could clear every payload bit
    return static_cast<uint16_t>((x >> 16) | 0x40u);
  }
  return static_cast<uint16_t>((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

// ---- block layouts ----

inline constexpr int QK4_0 = 32;
inline constexpr int QK4_1 = 32;
inline constexpr int QK5_0 = 32;
inline constexpr int QK5_1 = 32;
inline constexpr int QK8_0 = 32;
inline constexpr int K_SCALE_SIZE = 12;  // packed 6-bit scale and min codes of q4_K / q5_K

#pragma pack(push, 1)  // blocks sit back to back in files, at any byte offset

// x = d * (q - 8), q in 0..15. Element j < 16 is the low nibble of qs[j], j >= 16 the high
// nibble of qs[j - 16].
struct block_q4_0 {
  uint16_t d;  // fp16
  uint8_t qs[QK4_0 / 2];
};

// x = d * q + m, q in 0..15, nibbles as q4_0.
struct block_q4_1 {
  uint16_t d;  // fp16
  uint16_t m;  // fp16
  uint8_t qs[QK4_1 / 2];
};

// x = d * (q - 16), q in 0..31: low 4 bits as q4_0, bit 4 of element j is bit j of qh.
struct block_q5_0 {
  uint16_t d;     // fp16
  uint8_t qh[4];  // little-endian uint32 of 5th bits
  uint8_t qs[QK5_0 / 2];
};

// x = d * q + m, q in 0..31, bits as q5_0.
struct block_q5_1 {
  uint16_t d;  // fp16
  uint16_t m;  // fp16
  uint8_t qh[4];
  uint8_t qs[QK5_1 / 2];
};

// x = d * q, q in -128..127.
struct block_q8_0 {
  uint16_t d;  // fp16
  int8_t qs[QK8_0];
};

// 16 sub-blocks of 16: x = d * (scales[s] & 15) * q - dmin * (scales[s] >> 4), q in 0..3.
// Element e's 2 bits: byte qs[32*(e/128) + e%32], shift 2*((e%128)/32).
struct block_q2_K {
  uint8_t scales[QK_K / 16];
  uint8_t qs[QK_K / 4];
  uint16_t d;     // fp16
  uint16_t dmin;  // fp16
};

// 16 sub-blocks of 16: x = d * (sc - 32) * (q - 4), q in 0..7, sc a 6-bit code. The low 2
// bits of q are placed as in q2_K; the high bit is bit e/32 of hmask[e%32]. Code s has its
// low 4 bits in scales[s%8] (low nibble for s < 8, high nibble otherwise) and its high 2 bits
// in scales[8 + s%4] at shift 2*(s/4).
struct block_q3_K {
  uint8_t hmask[QK_K / 8];
  uint8_t qs[QK_K / 4];
  uint8_t scales[12];
  uint16_t d;  // fp16
};

// 8 sub-blocks of 32: x = d * sc * q - dmin * m, q in 0..15, sc and m 6-bit codes (see
// unpack_scale_min_k4). Element e: byte qs[32*(e/64) + e%32], high nibble when e%64 >= 32.
struct block_q4_K {
  uint16_t d;     // fp16
  uint16_t dmin;  // fp16
  uint8_t scales[K_SCALE_SIZE];
  uint8_t qs[QK_K / 2];
};

// As q4_K with q in 0..31; bit 4 of element e is bit e/32 of qh[e%32].
struct block_q5_K {
  uint16_t d;     // fp16
  uint16_t dmin;  // fp16
  uint8_t scales[K_SCALE_SIZE];
  uint8_t qh[QK_K / 8];
  uint8_t qs[QK_K / 2];
};

// 16 sub-blocks of 16: x = d * scales[s] * (q - 32), q in 0..63. Element e = 128*h + 32*k + l
// (k in 0..3, l in 0..31): low 4 bits in ql[64*h + 32*(k&1) + l] (high nibble when k >= 2),
// high 2 bits in qh[32*h + l] at shift 2*k.
struct block_q6_K {
  uint8_t ql[QK_K / 2];
  uint8_t qh[QK_K / 4];
  int8_t scales[QK_K / 16];
  uint16_t d;  // fp16
};

// x = d * q. Intermediate format for dot products; bsums[s] = sum of qs over sub-block s of 16.
struct block_q8_K {
  float d;
  int8_t qs[QK_K];
  int16_t bsums[QK_K / 16];
};

#pragma pack(pop)

static_assert(sizeof(block_q4_0) == 18);
static_assert(sizeof(block_q4_1) == 20);
static_assert(sizeof(block_q5_0) == 22);
static_assert(sizeof(block_q5_1) == 24);
static_assert(sizeof(block_q8_0) == 34);
static_assert(sizeof(block_q2_K) == 84);
static_assert(sizeof(block_q3_K) == 110);
static_assert(sizeof(block_q4_K) == 144);
static_assert(sizeof(block_q5_K) == 176);
static_assert(sizeof(block_q6_K) == 210);
static_assert(sizeof(block_q8_K) == 292);

// 6-bit scale and min codes of sub-block j (0..7) of q4_K / q5_K. Codes 0..3 sit whole in
// bytes 0..3 (scales) and 4..7 (mins); codes 4..7 keep their low nibbles in bytes 8..11 and
// their top 2 bits in the spare high bits of bytes 0..7.
constexpr void unpack_scale_min_k4(int j, const uint8_t* scales, uint8_t& sc, uint8_t& m) {
  if (j < 4) {
    sc = scales[j] & 63;
    m = scales[j + 4] & 63;
  } else {
    sc = static_cast<uint8_t>((scales[j + 4] & 0xf) | ((scales[j - 4] >> 6) << 4));
    m = static_cast<uint8_t>((scales[j + 4] >> 4) | ((scales[j] >> 6) << 4));
  }
}

// Signed scale of sub-block s (0..15) of q3_K: the 6-bit code minus 32.
constexpr int q3_K_scale(const uint8_t* scales, int s) {
  const int low = s < 8 ? (scales[s] & 0xf) : (scales[s - 8] >> 4);
  const int high = (scales[8 + s % 4] >> (2 * (s / 4))) & 3;
  return (low | (high << 4)) - 32;
}

}  // namespace vireo
