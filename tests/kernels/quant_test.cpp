// Tests of the dtype table, the block layouts, fp16/bf16 conversion and the scalar reference
// (de)quantizers: hand-built blocks with values worked out from the format definitions,
// quantize->dequantize round trips on fresh random data, golden hashes of llama.cpp's own
// output, and error handling.
#include "vireo/kernels/ref/quant.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "vireo/core/dtype.h"
#include "vireo/core/error.h"
#include "vireo/core/quant_blocks.h"

namespace vireo {
namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();

uint32_t bits_of(float f) { return std::bit_cast<uint32_t>(f); }

std::vector<float> dequant(DType t, const std::vector<uint8_t>& bytes, int64_t n) {
  std::vector<float> out(n, kNaN);  // poison: every element must be written
  ref::dequantize_row(t, bytes.data(), out.data(), n);
  return out;
}

template <typename Block>
std::vector<uint8_t> bytes_of(const Block& b) {
  std::vector<uint8_t> out(sizeof(Block));
  std::memcpy(out.data(), &b, sizeof(Block));
  return out;
}

// ---------------------------------------------------------------- dtype table

TEST(DTypeTraits, BlockSizesMatchGgml) {
  struct Expect {
    DType t;
    const char* name;
    uint32_t elems, bytes;
    bool quantized;
  };
  const Expect table[] = {
      {DType::F32, "f32", 1, 4, false},      {DType::F16, "f16", 1, 2, false},
      {DType::BF16, "bf16", 1, 2, false},    {DType::F64, "f64", 1, 8, false},
      {DType::I8, "i8", 1, 1, false},        {DType::I32, "i32", 1, 4, false},
      {DType::Q4_0, "q4_0", 32, 18, true},   {DType::Q4_1, "q4_1", 32, 20, true},
      {DType::Q5_0, "q5_0", 32, 22, true},   {DType::Q5_1, "q5_1", 32, 24, true},
      {DType::Q8_0, "q8_0", 32, 34, true},   {DType::Q2_K, "q2_K", 256, 84, true},
      {DType::Q3_K, "q3_K", 256, 110, true}, {DType::Q4_K, "q4_K", 256, 144, true},
      {DType::Q5_K, "q5_K", 256, 176, true}, {DType::Q6_K, "q6_K", 256, 210, true},
      {DType::Q8_K, "q8_K", 256, 292, true}, {DType::MLX_Q4, "mlx_q4", 8, 4, true},
      {DType::MLX_Q8, "mlx_q8", 4, 4, true},
  };
  for (const Expect& e : table) {
    SCOPED_TRACE(e.name);
    const auto traits = dtype_traits(e.t);
    ASSERT_TRUE(traits.has_value());
    EXPECT_EQ(traits->type, e.t);
    EXPECT_EQ(traits->name, e.name);
    EXPECT_EQ(traits->block_elems, e.elems);
    EXPECT_EQ(traits->block_bytes, e.bytes);
    EXPECT_EQ(traits->is_quantized, e.quantized);
    EXPECT_EQ(dtype_from_name(e.name), e.t);
  }
}

TEST(DTypeTraits, UnsupportedIdsHaveNoTraits) {
  EXPECT_FALSE(dtype_traits(DType::Q8_1).has_value());
  EXPECT_FALSE(dtype_traits(static_cast<DType>(16)).has_value());  // iq2_xxs
  EXPECT_FALSE(dtype_traits(static_cast<DType>(4)).has_value());   // removed q4_2
  EXPECT_FALSE(dtype_traits(static_cast<DType>(999)).has_value());
}

TEST(DTypeNames, GgmlSpellings) {
  EXPECT_EQ(ggml_type_name(0), "f32");
  EXPECT_EQ(ggml_type_name(1), "f16");
  EXPECT_EQ(ggml_type_name(12), "q4_K");
  EXPECT_EQ(ggml_type_name(16), "iq2_xxs");
  EXPECT_EQ(ggml_type_name(19), "iq1_s");
  EXPECT_EQ(ggml_type_name(23), "iq4_xs");
  EXPECT_EQ(ggml_type_name(29), "iq1_m");
  EXPECT_EQ(ggml_type_name(30), "bf16");
  EXPECT_EQ(ggml_type_name(34), "tq1_0");
  EXPECT_EQ(ggml_type_name(35), "tq2_0");
  EXPECT_EQ(ggml_type_name(39), "mxfp4");
  EXPECT_EQ(ggml_type_name(1000), "mlx_q4");
  EXPECT_EQ(ggml_type_name(43), "unknown");
  EXPECT_EQ(ggml_type_name(0xffffffffu), "unknown");
  for (uint32_t id = 0; id < 40; ++id) {
    EXPECT_NE(ggml_type_name(id), "unknown") << "id " << id;
    // Types with traits use the same spelling in both tables.
    if (const auto traits = dtype_traits(static_cast<DType>(id))) {
      EXPECT_EQ(traits->name, ggml_type_name(id));
    }
  }
}

TEST(DTypeNames, ParseIsCaseInsensitive) {
  EXPECT_EQ(dtype_from_name("Q4_K"), DType::Q4_K);
  EXPECT_EQ(dtype_from_name("q4_k"), DType::Q4_K);
  EXPECT_EQ(dtype_from_name("F16"), DType::F16);
  EXPECT_EQ(dtype_from_name("bf16"), DType::BF16);
  EXPECT_EQ(dtype_from_name("MLX_Q8"), DType::MLX_Q8);
  EXPECT_FALSE(dtype_from_name("iq2_xxs").has_value());  // named, but not supported
  EXPECT_FALSE(dtype_from_name("q4").has_value());
  EXPECT_FALSE(dtype_from_name("").has_value());
  EXPECT_FALSE(dtype_from_name("q4_K ").has_value());
}

// ---------------------------------------------------------------- fp16 / bf16

TEST(QuantFp16, ExactValuesAndSpecials) {
  EXPECT_EQ(fp32_to_fp16(0.0f), 0x0000);
  EXPECT_EQ(fp32_to_fp16(-0.0f), 0x8000);
  EXPECT_EQ(fp32_to_fp16(1.0f), 0x3c00);
  EXPECT_EQ(fp32_to_fp16(-2.0f), 0xc000);
  EXPECT_EQ(fp32_to_fp16(0.5f), 0x3800);
  EXPECT_EQ(fp32_to_fp16(65504.0f), 0x7bff);  // largest finite half
  EXPECT_EQ(fp32_to_fp16(kInf), 0x7c00);
  EXPECT_EQ(fp32_to_fp16(-kInf), 0xfc00);
  EXPECT_EQ(fp32_to_fp16(1e10f), 0x7c00);
  EXPECT_EQ(fp32_to_fp16(std::ldexp(1.0f, -14)), 0x0400);     // smallest normal
  EXPECT_EQ(fp32_to_fp16(std::ldexp(1.0f, -24)), 0x0001);     // smallest subnormal
  EXPECT_EQ(fp32_to_fp16(std::ldexp(1023.0f, -24)), 0x03ff);  // largest subnormal
  EXPECT_EQ(fp32_to_fp16(-std::ldexp(3.0f, -24)), 0x8003);
  EXPECT_EQ(fp32_to_fp16(std::numeric_limits<float>::denorm_min()), 0x0000);

  const uint16_t nan = fp32_to_fp16(kNaN);
  EXPECT_EQ(nan & 0x7c00, 0x7c00);
  EXPECT_NE(nan & 0x03ff, 0);
  // A NaN whose payload lives only in the low bits must not collapse into inf.
  EXPECT_NE(fp32_to_fp16(std::bit_cast<float>(0x7f800001u)) & 0x03ff, 0);

  EXPECT_EQ(fp16_to_fp32(0x3c00), 1.0f);
  EXPECT_EQ(fp16_to_fp32(0xc000), -2.0f);
  EXPECT_EQ(fp16_to_fp32(0x7bff), 65504.0f);
  EXPECT_EQ(fp16_to_fp32(0x0001), std::ldexp(1.0f, -24));
  EXPECT_EQ(fp16_to_fp32(0x03ff), std::ldexp(1023.0f, -24));
  EXPECT_EQ(fp16_to_fp32(0x0400), std::ldexp(1.0f, -14));
  EXPECT_EQ(bits_of(fp16_to_fp32(0x8000)), 0x80000000u);
  EXPECT_EQ(fp16_to_fp32(0x7c00), kInf);
  EXPECT_EQ(fp16_to_fp32(0xfc00), -kInf);
  EXPECT_TRUE(std::isnan(fp16_to_fp32(0x7e00)));
  EXPECT_TRUE(std::isnan(fp16_to_fp32(0x7c01)));
  EXPECT_TRUE(std::isnan(fp16_to_fp32(0xfc01)));
}

TEST(QuantFp16, RoundsToNearestEven) {
  const float ulp1 = std::ldexp(1.0f, -10);                      // spacing of halves in [1, 2)
  EXPECT_EQ(fp32_to_fp16(1.0f + ulp1 / 2), 0x3c00);              // tie -> even (down)
  EXPECT_EQ(fp32_to_fp16(1.0f + 3 * ulp1 / 2), 0x3c02);          // tie -> even (up)
  EXPECT_EQ(fp32_to_fp16(1.0f + ulp1 / 2 + ulp1 / 64), 0x3c01);  // just above the tie
  EXPECT_EQ(fp32_to_fp16(1.0f + ulp1 / 2 - ulp1 / 64), 0x3c00);  // just below
  EXPECT_EQ(fp32_to_fp16(2.0f - ulp1 / 4), 0x4000);              // carries into the exponent
  EXPECT_EQ(fp32_to_fp16(65519.0f), 0x7bff);                     // below the overflow tie
  EXPECT_EQ(fp32_to_fp16(65520.0f), 0x7c00);                     // tie with inf -> inf
  EXPECT_EQ(fp32_to_fp16(std::ldexp(1.0f, -25)), 0x0000);        // tie between 0 and 2^-24
  EXPECT_EQ(fp32_to_fp16(std::ldexp(1.5f, -25)), 0x0001);
  EXPECT_EQ(fp32_to_fp16(std::ldexp(3.0f, -25)), 0x0002);     // 1.5 units: tie -> even
  EXPECT_EQ(fp32_to_fp16(std::ldexp(5.0f, -25)), 0x0002);     // 2.5 units: tie -> even
  EXPECT_EQ(fp32_to_fp16(std::ldexp(2047.0f, -25)), 0x0400);  // subnormal rounds up to normal
}

TEST(QuantFp16, EveryHalfRoundTrips) {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const float f = fp16_to_fp32(static_cast<uint16_t>(h));
    if (std::isnan(f)) {
      EXPECT_TRUE((h & 0x7c00) == 0x7c00 && (h & 0x3ff) != 0);
      EXPECT_TRUE(std::isnan(fp16_to_fp32(fp32_to_fp16(f))));
      continue;
    }
    ASSERT_EQ(fp32_to_fp16(f), h) << std::hex << h;
  }
}

TEST(QuantFp16, MidpointsBetweenNeighboursRoundToEven) {
  // For each pair of adjacent finite positive halves, the fp32 midpoint must go to the even one.
  for (uint16_t h = 0; h < 0x7bff; ++h) {
    const float lo = fp16_to_fp32(h), hi = fp16_to_fp32(static_cast<uint16_t>(h + 1));
    const float mid = lo + (hi - lo) / 2;  // exact: fp32 has 13 more mantissa bits
    const uint16_t even = (h & 1) ? static_cast<uint16_t>(h + 1) : h;
    ASSERT_EQ(fp32_to_fp16(mid), even) << std::hex << h;
    ASSERT_EQ(fp32_to_fp16(-mid), even | 0x8000) << std::hex << h;
  }
}

TEST(QuantBf16, ConversionEdgeCases) {
  EXPECT_EQ(fp32_to_bf16(1.0f), 0x3f80);
  EXPECT_EQ(fp32_to_bf16(-0.0f), 0x8000);
  EXPECT_EQ(fp32_to_bf16(kInf), 0x7f80);
  EXPECT_EQ(fp32_to_bf16(-kInf), 0xff80);
  EXPECT_EQ(fp32_to_bf16(std::bit_cast<float>(0x3f808000u)), 0x3f80);  // tie -> even (down)
  EXPECT_EQ(fp32_to_bf16(std::bit_cast<float>(0x3f818000u)), 0x3f82);  // tie -> even (up)
  EXPECT_EQ(fp32_to_bf16(std::bit_cast<float>(0x3f808001u)), 0x3f81);
  EXPECT_EQ(fp32_to_bf16(std::numeric_limits<float>::max()), 0x7f80);  // rounds to inf
  EXPECT_EQ(fp32_to_bf16(std::bit_cast<float>(0x00018000u)), 0x0002);  // subnormals kept
  // NaNs stay NaN, even when the payload is only in the dropped low bits.
  EXPECT_TRUE(std::isnan(bf16_to_fp32(fp32_to_bf16(kNaN))));
  EXPECT_TRUE(std::isnan(bf16_to_fp32(fp32_to_bf16(std::bit_cast<float>(0x7f800001u)))));
  EXPECT_TRUE(std::isnan(bf16_to_fp32(fp32_to_bf16(std::bit_cast<float>(0xff800001u)))));
  for (uint32_t b = 0; b < 0x10000; ++b) {
    const float f = bf16_to_fp32(static_cast<uint16_t>(b));
    EXPECT_EQ(bits_of(f), b << 16);
    if (!std::isnan(f)) {
      ASSERT_EQ(fp32_to_bf16(f), b);
    }
  }
}

// ---------------------------------------------------------------- hand-built blocks

TEST(QuantDequant, Q4_0) {
  block_q4_0 b{};
  b.d = fp32_to_fp16(0.5f);
  for (int j = 0; j < 16; ++j) b.qs[j] = static_cast<uint8_t>(j | (15 - j) << 4);
  // x = 0.5 * (q - 8); low nibbles give elements 0..15, high nibbles 16..31.
  const std::vector<float> expected = {-4,  -3.5, -3,   -2.5, -2,   -1.5, -1,   -0.5, 0,    0.5, 1,
                                       1.5, 2,    2.5,  3,    3.5,  3.5,  3,    2.5,  2,    1.5, 1,
                                       0.5, 0,    -0.5, -1,   -1.5, -2,   -2.5, -3,   -3.5, -4};
  EXPECT_EQ(dequant(DType::Q4_0, bytes_of(b), 32), expected);
}

TEST(QuantDequant, Q4_1) {
  block_q4_1 b{};
  b.d = fp32_to_fp16(0.25f);
  b.m = fp32_to_fp16(-1.0f);
  for (int j = 0; j < 16; ++j) b.qs[j] = static_cast<uint8_t>(j | (15 - j) << 4);
  const auto y = dequant(DType::Q4_1, bytes_of(b), 32);
  EXPECT_EQ(y[0], -1.0f);
  EXPECT_EQ(y[15], 2.75f);
  EXPECT_EQ(y[16], 2.75f);
  EXPECT_EQ(y[20], 1.75f);
  EXPECT_EQ(y[31], -1.0f);
  for (int e = 0; e < 32; ++e) EXPECT_EQ(y[e], 0.25f * (e < 16 ? e : 31 - e) - 1.0f) << e;
}

// 5th bits of q5_0/q5_1 below: qh = 0xF0F0F00F little-endian, so elements 0-3, 12-15, 20-23
// and 28-31 have bit 4 set.
constexpr uint8_t kQh5[4] = {0x0f, 0xf0, 0xf0, 0xf0};
int q5_level(int e) {
  const int low = e < 16 ? e : 31 - e;
  const bool high = e < 4 || (e >= 12 && e < 16) || (e >= 20 && e < 24) || e >= 28;
  return low + (high ? 16 : 0);
}

TEST(QuantDequant, Q5_0) {
  block_q5_0 b{};
  b.d = fp32_to_fp16(0.125f);
  std::memcpy(b.qh, kQh5, 4);
  for (int j = 0; j < 16; ++j) b.qs[j] = static_cast<uint8_t>(j | (15 - j) << 4);
  const auto y = dequant(DType::Q5_0, bytes_of(b), 32);
  EXPECT_EQ(y[0], 0.0f);      // q = 0 + 16
  EXPECT_EQ(y[4], -1.5f);     // q = 4
  EXPECT_EQ(y[15], 1.875f);   // q = 15 + 16
  EXPECT_EQ(y[16], -0.125f);  // q = 15
  EXPECT_EQ(y[31], 0.0f);     // q = 0 + 16
  for (int e = 0; e < 32; ++e) EXPECT_EQ(y[e], 0.125f * (q5_level(e) - 16)) << e;
}

TEST(QuantDequant, Q5_1) {
  block_q5_1 b{};
  b.d = fp32_to_fp16(0.5f);
  b.m = fp32_to_fp16(-8.0f);
  std::memcpy(b.qh, kQh5, 4);
  for (int j = 0; j < 16; ++j) b.qs[j] = static_cast<uint8_t>(j | (15 - j) << 4);
  const auto y = dequant(DType::Q5_1, bytes_of(b), 32);
  EXPECT_EQ(y[0], 0.0f);
  EXPECT_EQ(y[4], -6.0f);
  EXPECT_EQ(y[15], 7.5f);
  for (int e = 0; e < 32; ++e) EXPECT_EQ(y[e], 0.5f * q5_level(e) - 8.0f) << e;
}

TEST(QuantDequant, Q8_0) {
  block_q8_0 b{};
  b.d = fp32_to_fp16(0.125f);
  for (int j = 0; j < 32; ++j) b.qs[j] = static_cast<int8_t>(8 * j - 128);
  const auto y = dequant(DType::Q8_0, bytes_of(b), 32);
  for (int e = 0; e < 32; ++e) EXPECT_EQ(y[e], static_cast<float>(e - 16)) << e;
}

TEST(QuantDequant, Q2_K) {
  block_q2_K b{};
  b.d = fp32_to_fp16(0.5f);
  b.dmin = fp32_to_fp16(0.25f);
  for (int s = 0; s < 16; ++s) b.scales[s] = static_cast<uint8_t>(s | (15 - s) << 4);
  for (int i = 0; i < 64; ++i) b.qs[i] = static_cast<uint8_t>(i);
  const auto y = dequant(DType::Q2_K, bytes_of(b), 256);
  // Sub-block s has scale 0.5*s and min 0.25*(15-s).
  EXPECT_EQ(y[0], -3.75f);    // s 0, q 0
  EXPECT_EQ(y[37], -2.25f);   // s 2, byte 5 = 0b101 at shift 2 -> q 1
  EXPECT_EQ(y[200], 11.25f);  // s 12, byte 40 = 0b101000 at shift 4 -> q 2
  EXPECT_EQ(y[63], 1.5f);     // s 3, byte 31 = 0b11111 at shift 2 -> q 3: 0.5*3*3 - 0.25*12
  EXPECT_EQ(y[255], 0.0f);    // s 15, byte 63 at shift 6 -> q 0, min 0
  for (int e = 0; e < 256; ++e) {
    const int s = e / 16;
    const int byte = 32 * (e / 128) + e % 32;
    const int q = (byte >> (2 * ((e % 128) / 32))) & 3;
    EXPECT_EQ(y[e], 0.5f * s * q - 0.25f * (15 - s)) << e;
  }
}

TEST(QuantDequant, Q3_K_UniformScale) {
  block_q3_K b{};
  b.d = fp32_to_fp16(0.5f);
  // Every 6-bit code is 33 (scale +1): low nibble 1 in each nibble of bytes 0..7, high bits
  // 0b10 in each crumb of bytes 8..11.
  for (int i = 0; i < 8; ++i) b.scales[i] = 0x11;
  for (int i = 8; i < 12; ++i) b.scales[i] = 0xaa;
  for (int i = 0; i < 64; ++i) b.qs[i] = 0xe4;     // crumbs 0,1,2,3 at shifts 0,2,4,6
  for (int i = 0; i < 32; ++i) b.hmask[i] = 0x0f;  // high bit set for elements 0..127
  const auto y = dequant(DType::Q3_K, bytes_of(b), 256);
  EXPECT_EQ(y[0], 0.0f);
  EXPECT_EQ(y[40], 0.5f);
  EXPECT_EQ(y[127], 1.5f);
  EXPECT_EQ(y[128], -2.0f);  // high bit clear: q - 4
  EXPECT_EQ(y[255], -0.5f);
}

TEST(QuantDequant, Q3_K_DistinctScales) {
  block_q3_K b{};
  b.d = fp32_to_fp16(0.5f);
  int code[16];
  for (int s = 0; s < 16; ++s) {
    code[s] = 4 * s;  // scales -32, -28, ..., 28
    b.scales[s % 8] |= static_cast<uint8_t>((code[s] & 15) << (s < 8 ? 0 : 4));
    b.scales[8 + s % 4] |= static_cast<uint8_t>((code[s] >> 4) << (2 * (s / 4)));
  }
  for (int i = 0; i < 64; ++i) b.qs[i] = static_cast<uint8_t>(i * 37 + 11);
  for (int i = 0; i < 32; ++i) b.hmask[i] = static_cast<uint8_t>(i * 73 + 5);
  const auto y = dequant(DType::Q3_K, bytes_of(b), 256);
  for (int e = 0; e < 256; ++e) {
    const int low = (b.qs[32 * (e / 128) + e % 32] >> (2 * ((e % 128) / 32))) & 3;
    const int high = (b.hmask[e % 32] >> (e / 32)) & 1;
    EXPECT_EQ(q3_K_scale(b.scales, e / 16), code[e / 16] - 32);
    EXPECT_EQ(y[e], 0.5f * (code[e / 16] - 32) * (low - (high ? 0 : 4))) << e;
  }
}

// Packs 6-bit scale/min codes of q4_K/q5_K by the rule of the format, independently of the
// library's packer.
void pack_k4_codes(uint8_t* scales, const int* sc, const int* m) {
  for (int j = 0; j < 8; ++j) {
    if (j < 4) {
      scales[j] |= static_cast<uint8_t>(sc[j]);
      scales[j + 4] |= static_cast<uint8_t>(m[j]);
    } else {
      scales[j + 4] = static_cast<uint8_t>((sc[j] & 15) | (m[j] & 15) << 4);
      scales[j - 4] |= static_cast<uint8_t>((sc[j] >> 4) << 6);
      scales[j] |= static_cast<uint8_t>((m[j] >> 4) << 6);
    }
  }
}

TEST(QuantDequant, Q4_K) {
  block_q4_K b{};
  b.d = fp32_to_fp16(0.5f);
  b.dmin = fp32_to_fp16(0.25f);
  int sc[8], m[8];
  for (int j = 0; j < 8; ++j) {
    sc[j] = 10 + 7 * j;  // 10..59
    m[j] = 63 - 5 * j;   // 63..28
  }
  pack_k4_codes(b.scales, sc, m);
  for (int j = 0; j < 8; ++j) {
    uint8_t s, mm;
    unpack_scale_min_k4(j, b.scales, s, mm);
    EXPECT_EQ(s, sc[j]);
    EXPECT_EQ(mm, m[j]);
  }
  for (int i = 0; i < 128; ++i) b.qs[i] = static_cast<uint8_t>(i);
  const auto y = dequant(DType::Q4_K, bytes_of(b), 256);
  EXPECT_EQ(y[0], -15.75f);   // q 0, min 0.25*63
  EXPECT_EQ(y[33], -14.5f);   // byte 1 high nibble = 0, min 0.25*58
  EXPECT_EQ(y[100], 19.0f);   // byte 36 = 0x24 high nibble 2: 0.5*31*2 - 0.25*48
  EXPECT_EQ(y[255], 199.5f);  // byte 127 = 0x7f high nibble 7: 0.5*59*7 - 0.25*28
  for (int e = 0; e < 256; ++e) {
    const uint8_t byte = b.qs[32 * (e / 64) + e % 32];
    const int q = (e % 64) < 32 ? byte & 15 : byte >> 4;
    EXPECT_EQ(y[e], 0.5f * sc[e / 32] * q - 0.25f * m[e / 32]) << e;
  }
}

TEST(QuantDequant, Q5_K) {
  block_q5_K b{};
  b.d = fp32_to_fp16(0.5f);
  b.dmin = fp32_to_fp16(0.25f);
  int sc[8], m[8];
  for (int j = 0; j < 8; ++j) {
    sc[j] = 10 + 7 * j;
    m[j] = 63 - 5 * j;
  }
  pack_k4_codes(b.scales, sc, m);
  for (int i = 0; i < 128; ++i) b.qs[i] = static_cast<uint8_t>(i);
  for (int i = 0; i < 32; ++i) b.qh[i] = (i % 2 == 0) ? 0xff : 0x00;
  const auto y = dequant(DType::Q5_K, bytes_of(b), 256);
  EXPECT_EQ(y[100], 267.0f);  // q = 2 + 16 (qh[4] even): 0.5*31*18 - 12
  EXPECT_EQ(y[255], 199.5f);  // qh[31] odd: no high bit
  for (int e = 0; e < 256; ++e) {
    const uint8_t byte = b.qs[32 * (e / 64) + e % 32];
    const int q = ((e % 64) < 32 ? byte & 15 : byte >> 4) + ((e % 32) % 2 == 0 ? 16 : 0);
    EXPECT_EQ(y[e], 0.5f * sc[e / 32] * q - 0.25f * m[e / 32]) << e;
  }
}

TEST(QuantDequant, Q6_K) {
  block_q6_K b{};
  b.d = fp32_to_fp16(0.25f);
  for (int s = 0; s < 16; ++s) b.scales[s] = static_cast<int8_t>(s - 8);
  for (int i = 0; i < 128; ++i) b.ql[i] = static_cast<uint8_t>(i);
  for (int i = 0; i < 64; ++i) b.qh[i] = static_cast<uint8_t>(i * 5);
  const auto y = dequant(DType::Q6_K, bytes_of(b), 256);
  EXPECT_EQ(y[0], 64.0f);     // q 0: 0.25 * -8 * -32
  EXPECT_EQ(y[70], 16.0f);    // ql[6] high nibble 0, qh[6] = 30 >> 4 & 3 = 1: q 16, scale -4
  EXPECT_EQ(y[200], -28.0f);  // ql[72] = 0x48 high nibble 4, qh[40] = 200 >> 4 & 3 = 0: q 4
  for (int e = 0; e < 256; ++e) {
    const int h = e / 128, k = (e % 128) / 32, l = e % 32;
    const uint8_t lo_byte = b.ql[64 * h + 32 * (k % 2) + l];
    const int lo = k < 2 ? lo_byte & 15 : lo_byte >> 4;
    const int hi = (b.qh[32 * h + l] >> (2 * k)) & 3;
    EXPECT_EQ(y[e], 0.25f * (e / 16 - 8) * ((lo | hi << 4) - 32)) << e;
  }
}

TEST(QuantDequant, Q8_K) {
  block_q8_K b{};
  b.d = 0.5f;
  for (int e = 0; e < 256; ++e) b.qs[e] = static_cast<int8_t>(e - 128);
  const auto y = dequant(DType::Q8_K, bytes_of(b), 256);
  for (int e = 0; e < 256; ++e) EXPECT_EQ(y[e], 0.5f * (e - 128)) << e;
}

TEST(QuantDequant, PlainTypes) {
  const std::vector<uint16_t> halves = {0x3c00, 0xc000, 0x7bff, 0x0001};
  std::vector<uint8_t> bytes(halves.size() * 2);
  std::memcpy(bytes.data(), halves.data(), bytes.size());
  EXPECT_EQ(dequant(DType::F16, bytes, 4),
            (std::vector<float>{1.0f, -2.0f, 65504.0f, std::ldexp(1.0f, -24)}));
  const std::vector<uint16_t> bf = {0x3f80, 0xc040};
  std::memcpy(bytes.data(), bf.data(), 4);
  EXPECT_EQ(dequant(DType::BF16, bytes, 2), (std::vector<float>{1.0f, -3.0f}));
  const std::vector<int32_t> ints = {-7, 0, 123456};
  bytes.resize(12);
  std::memcpy(bytes.data(), ints.data(), 12);
  EXPECT_EQ(dequant(DType::I32, bytes, 3), (std::vector<float>{-7.0f, 0.0f, 123456.0f}));
  // Rows may start at odd addresses inside a file.
  std::vector<uint8_t> odd(1 + 8);
  const float f[2] = {1.5f, -0.25f};
  std::memcpy(odd.data() + 1, f, 8);
  float out[2] = {kNaN, kNaN};
  ref::dequantize_row(DType::F32, odd.data() + 1, out, 2);
  EXPECT_EQ(out[0], 1.5f);
  EXPECT_EQ(out[1], -0.25f);
}

// ---------------------------------------------------------------- round trips

// Relative RMSE (rms error / rms value) bounds for N(0, 1) data, kept together. "mean" is the
// measured mean over hundreds of seeds; the bound holds for rows of 31+ blocks, where the
// spread is a few percent. Rows of 1-3 blocks vary much more and get kSmallRowSlack.
struct RoundTripCase {
  DType type;
  double max_rel_rmse;
};
const RoundTripCase kRoundTrip[] = {
    {DType::F32, 0.0},      // exact
    {DType::F16, 0.00025},  // mean 0.00021
    {DType::BF16, 0.0020},  // mean 0.00166
    {DType::Q8_0, 0.0065},  // mean 0.00535
    {DType::Q8_K, 0.0080},  // mean 0.00697
    {DType::Q6_K, 0.021},   // mean 0.0177
    {DType::Q5_0, 0.050},   // mean 0.0426
    {DType::Q5_1, 0.044},   // mean 0.0378
    {DType::Q5_K, 0.042},   // mean 0.0361
    {DType::Q4_0, 0.099},   // mean 0.0857
    {DType::Q4_1, 0.090},   // mean 0.0781
    {DType::Q4_K, 0.082},   // mean 0.0713
    {DType::Q3_K, 0.174},   // mean 0.1508
    {DType::Q2_K, 0.341},   // mean 0.2964
};
// Worst of thousands of single 32-element blocks was 1.79x the mean (q4_0).
constexpr double kSmallRowSlack = 1.8;

double relative_rmse(const std::vector<float>& x, const std::vector<float>& y) {
  double err = 0, ref = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    err += (static_cast<double>(x[i]) - y[i]) * (static_cast<double>(x[i]) - y[i]);
    ref += static_cast<double>(x[i]) * x[i];
  }
  return std::sqrt(err / ref);
}

std::vector<float> normal_data(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> x(n);
  for (float& v : x) v = dist(rng);
  return x;
}

TEST(QuantRoundTrip, RmseWithinTablePerType) {
  std::random_device rd;  // fresh data every run; the seed is printed on failure
  for (const RoundTripCase& c : kRoundTrip) {
    const uint32_t block = dtype_traits(c.type)->block_elems;
    const int blocks_per_case[] = {1, 3, 31, 33, 64};
    const std::string name(dtype_traits(c.type)->name);
    double rmse_long_row = 0;
    for (int blocks : blocks_per_case) {
      const int64_t n = static_cast<int64_t>(blocks) * (block == 1 ? 32 : block);
      const uint32_t seed = rd();
      SCOPED_TRACE(name + " n=" + std::to_string(n) + " seed=" + std::to_string(seed));
      const auto x = normal_data(n, seed);
      const size_t nbytes = ref::row_bytes(c.type, n);
      // Two destinations poisoned differently: equal results prove every byte was written.
      std::vector<uint8_t> q0(nbytes, 0x00), q1(nbytes, 0xff);
      ref::quantize_row(c.type, x.data(), q0.data(), n);
      ref::quantize_row(c.type, x.data(), q1.data(), n);
      ASSERT_EQ(q0, q1);
      const auto y = dequant(c.type, q0, n);
      for (int64_t i = 0; i < n; ++i) ASSERT_TRUE(std::isfinite(y[i])) << i;
      const double rmse = relative_rmse(x, y);
      EXPECT_LE(rmse, c.max_rel_rmse * (blocks < 31 ? kSmallRowSlack : 1.0));
      if (blocks == 64) rmse_long_row = rmse;
    }
    std::printf("  %-5s relative rmse %.5f over 64 blocks (bound %.5f)\n", name.c_str(),
                rmse_long_row, c.max_rel_rmse);
  }
}

TEST(QuantRoundTrip, SpecialBlocks) {
  // All-zero, constant, all-positive, tiny and huge-range blocks must stay finite and close.
  for (const RoundTripCase& c : kRoundTrip) {
    const uint32_t block = std::max<uint32_t>(dtype_traits(c.type)->block_elems, 32);
    const std::string name(dtype_traits(c.type)->name);
    SCOPED_TRACE(name);
    std::vector<std::vector<float>> inputs;
    inputs.emplace_back(block, 0.0f);
    inputs.emplace_back(block, 0.75f);
    inputs.emplace_back(block, -3.0f);
    auto positive = normal_data(block, 7);
    for (float& v : positive) v = std::fabs(v) + 1.0f;
    inputs.push_back(positive);
    auto tiny = normal_data(block, 8);
    for (float& v : tiny) v *= 1e-3f;
    inputs.push_back(tiny);
    auto outlier = normal_data(block, 9);
    outlier[5] = 60.0f;
    inputs.push_back(outlier);
    for (const auto& x : inputs) {
      std::vector<uint8_t> q(ref::row_bytes(c.type, block), 0xcd);
      ref::quantize_row(c.type, x.data(), q.data(), block);
      const auto y = dequant(c.type, q, block);
      double max_abs = 0, err2 = 0;
      for (float v : x) max_abs = std::max<double>(max_abs, std::fabs(v));
      for (size_t i = 0; i < x.size(); ++i) {
        ASSERT_TRUE(std::isfinite(y[i]));
        if (max_abs == 0) {
          ASSERT_EQ(y[i], 0.0f) << i;
        }
        err2 += (static_cast<double>(x[i]) - y[i]) * (static_cast<double>(x[i]) - y[i]);
      }
      // Measured against the block's largest magnitude, which sets the step of every format
      // here (rms would punish blocks whose outlier swamps the rest).
      if (max_abs > 0) {
        EXPECT_LE(std::sqrt(err2 / x.size()) / max_abs, c.max_rel_rmse + 1e-6);
      }
    }
  }
}

TEST(QuantRoundTrip, QuantizeIsIdempotent) {
  // Dequantized values are on the grid: quantizing them again must not move them far.
  for (const RoundTripCase& c : kRoundTrip) {
    const int64_t n = 4 * 256;
    const auto x = normal_data(n, 1234);
    std::vector<uint8_t> q(ref::row_bytes(c.type, n));
    ref::quantize_row(c.type, x.data(), q.data(), n);
    const auto y = dequant(c.type, q, n);
    ref::quantize_row(c.type, y.data(), q.data(), n);
    const auto z = dequant(c.type, q, n);
    EXPECT_LE(relative_rmse(y, z), c.max_rel_rmse / 2) << dtype_traits(c.type)->name;
  }
}

// ---------------------------------------------------------------- golden output of llama.cpp

// Input the whole world can reproduce: a 64-bit LCG and exact float arithmetic (std::
// distributions differ between standard libraries). Roughly normal, with an all-positive
// block (elements 256..511) and a few outliers.
std::vector<float> golden_input(int64_t n) {
  std::vector<float> x(n);
  uint64_t state = 0x853c49e6748fea9bULL;
  const auto uniform = [&] {
    state = state * 6364136223846793005ULL + 1442695040888963407ULL;
    return static_cast<float>(state >> 40) * (1.0f / 16777216.0f);  // 24 bits: exact
  };
  for (int64_t i = 0; i < n; ++i) {
    x[i] = (uniform() + uniform() + uniform() + uniform() - 2.0f) * 1.5f;
    if (i >= 256 && i < 512) x[i] = std::fabs(x[i]);
    if (i % 397 == 13) x[i] *= 16.0f;
  }
  return x;
}

uint64_t fnv1a(const std::vector<uint8_t>& bytes) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (uint8_t b : bytes) {
    h ^= b;
    h *= 0x100000001b3ULL;
  }
  return h;
}

// FNV-1a of quantize_row_<type>_ref(golden_input(4096)) from llama.cpp's libggml-base
// (npm node-llama-cpp 3.22.1). Equal hashes mean byte-identical files.
TEST(QuantGolden, MatchesLlamaCppReferenceQuantizers) {
  struct Golden {
    DType type;
    uint64_t hash;
  };
  const Golden golden[] = {
      {DType::Q4_0, 0x7ac7f61879f691feULL}, {DType::Q4_1, 0xcdf0aa5f1d914722ULL},
      {DType::Q5_0, 0xbce111d1ed853b05ULL}, {DType::Q5_1, 0xeb4684a8b9602983ULL},
      {DType::Q8_0, 0xe86aebf347a6db46ULL}, {DType::Q2_K, 0x82c182389e3962b1ULL},
      {DType::Q3_K, 0x77d2cdc0a5950327ULL}, {DType::Q4_K, 0x51ab3e170a0f067dULL},
      {DType::Q5_K, 0x7cd2ee703849b6beULL}, {DType::Q6_K, 0xae442fb8fae9e56dULL},
      {DType::Q8_K, 0xed68c7ff73fcad4eULL},
  };
  const int64_t n = 4096;
  const auto x = golden_input(n);
  for (const Golden& g : golden) {
    std::vector<uint8_t> q(ref::row_bytes(g.type, n));
    ref::quantize_row(g.type, x.data(), q.data(), n);
    EXPECT_EQ(fnv1a(q), g.hash) << dtype_traits(g.type)->name << " hash 0x" << std::hex << fnv1a(q);
  }
}

// ---------------------------------------------------------------- errors

template <typename F>
void expect_error(F&& f, ErrorCode code, const std::vector<std::string>& mentions) {
  try {
    f();
    ADD_FAILURE() << "no vireo::Error thrown";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), code) << e.what();
    for (const std::string& m : mentions)
      EXPECT_NE(std::string(e.what()).find(m), std::string::npos) << e.what();
  }
}

TEST(QuantErrors, UnsupportedTypesThrow) {
  float buf[512] = {};
  uint8_t out[4096] = {};
  expect_error([&] { ref::dequantize_row(static_cast<DType>(16), out, buf, 256); },
               ErrorCode::Unsupported, {"iq2_xxs"});
  expect_error([&] { ref::quantize_row(DType::Q8_1, buf, out, 32); }, ErrorCode::Unsupported,
               {"q8_1"});
  expect_error([&] { ref::quantize_row(DType::I32, buf, out, 32); }, ErrorCode::Unsupported,
               {"i32"});
  expect_error([&] { ref::dequantize_row(DType::MLX_Q4, out, buf, 64); }, ErrorCode::Unsupported,
               {"mlx_q4", "dequantize_mlx_row"});
  expect_error([&] { ref::row_bytes(static_cast<DType>(777), 32); }, ErrorCode::Unsupported,
               {"777"});
  EXPECT_FALSE(ref::can_dequantize(DType::Q8_1));
  EXPECT_TRUE(ref::can_dequantize(DType::Q6_K));
  EXPECT_FALSE(ref::can_quantize(DType::I8));
  EXPECT_TRUE(ref::can_quantize(DType::Q3_K));
}

TEST(QuantErrors, CapabilitiesMatchDispatch) {
  std::vector<uint32_t> ids;
  for (uint32_t id = 0; id < 64; ++id) ids.push_back(id);
  ids.push_back(static_cast<uint32_t>(DType::MLX_Q4));
  ids.push_back(static_cast<uint32_t>(DType::MLX_Q8));
  const std::vector<float> zeros(256, 0.0f);
  std::vector<uint8_t> bytes(2048, 0);
  std::vector<float> out(256);
  for (uint32_t id : ids) {
    const auto t = static_cast<DType>(id);
    SCOPED_TRACE(std::string(ggml_type_name(id)) + " id " + std::to_string(id));
    const int64_t n = 256;  // a whole number of blocks of every type
    bool dequantized = true, quantized = true;
    try {
      ref::dequantize_row(t, bytes.data(), out.data(), n);
    } catch (const Error&) {
      dequantized = false;
    }
    try {
      ref::quantize_row(t, zeros.data(), bytes.data(), n);
    } catch (const Error&) {
      quantized = false;
    }
    EXPECT_EQ(dequantized, ref::can_dequantize(t));
    EXPECT_EQ(quantized, ref::can_quantize(t));
    if (ref::can_quantize(t)) {
      EXPECT_TRUE(ref::can_dequantize(t));  // what we write, we can read
    }
  }
}

TEST(QuantErrors, BadLengthsThrow) {
  float buf[512] = {};
  uint8_t out[4096] = {};
  expect_error([&] { ref::dequantize_row(DType::Q4_K, out, buf, 100); }, ErrorCode::InvalidArgument,
               {"q4_K", "256", "100"});
  expect_error([&] { ref::quantize_row(DType::Q4_0, buf, out, 33); }, ErrorCode::InvalidArgument,
               {"q4_0", "32", "33"});
  expect_error([&] { ref::row_bytes(DType::Q8_0, -32); }, ErrorCode::InvalidArgument, {"q8_0"});
  EXPECT_EQ(ref::row_bytes(DType::Q4_K, 512), 288u);
  EXPECT_EQ(ref::row_bytes(DType::Q4_0, 64), 36u);
  EXPECT_EQ(ref::row_bytes(DType::F16, 3), 6u);
  EXPECT_EQ(ref::row_bytes(DType::MLX_Q4, 64), 32u);
  EXPECT_EQ(ref::row_bytes(DType::MLX_Q8, 64), 64u);
  EXPECT_EQ(ref::row_bytes(DType::Q6_K, 0), 0u);
}

// ---------------------------------------------------------------- MLX affine

TEST(QuantMlx, DequantizeHandBuilt4Bit) {
  // Two groups of 32: levels 0..15 twice per group, element k of a word in bits 4k..4k+3.
  std::vector<uint32_t> packed;
  for (int w = 0; w < 8; ++w) packed.push_back(w % 2 == 0 ? 0x76543210u : 0xfedcba98u);
  const float scales[2] = {0.5f, -0.25f};
  const float biases[2] = {-2.0f, 3.0f};
  std::vector<float> y(64, kNaN);
  ref::dequantize_mlx_row(4, 32, packed.data(), scales, biases, y.data(), 64);
  EXPECT_EQ(y[0], -2.0f);
  EXPECT_EQ(y[1], -1.5f);
  EXPECT_EQ(y[15], 5.5f);
  EXPECT_EQ(y[32], 3.0f);
  EXPECT_EQ(y[47], -0.75f);
  for (int i = 0; i < 64; ++i) {
    const int q = i % 16;
    EXPECT_EQ(y[i], i < 32 ? 0.5f * q - 2.0f : -0.25f * q + 3.0f) << i;
  }
}

TEST(QuantMlx, DequantizeHandBuilt8Bit) {
  std::vector<uint32_t> packed(8, 0x04030201u);  // levels 1, 2, 3, 4 repeating
  packed[7] = 0xff00807fu;                       // 127, 128, 0, 255
  const float scale = 0.5f, bias = -1.0f;
  std::vector<float> y(32, kNaN);
  ref::dequantize_mlx_row(8, 32, packed.data(), &scale, &bias, y.data(), 32);
  EXPECT_EQ(y[0], -0.5f);
  EXPECT_EQ(y[3], 1.0f);
  EXPECT_EQ(y[28], 62.5f);
  EXPECT_EQ(y[29], 63.0f);
  EXPECT_EQ(y[30], -1.0f);
  EXPECT_EQ(y[31], 126.5f);
}

TEST(QuantMlx, QuantizeAnchorsTheLargerEdge) {
  // max dominates: edge 2 is level 0, scale negative: (2 - (-1)) / 15 = 0.2 -> -0.2, and
  // 2 / -0.2 = -10 exactly, so zero is level 10.
  std::vector<float> x(32, 1.0f);
  x[0] = 2.0f;
  x[1] = -1.0f;
  x[2] = 0.0f;
  uint32_t packed[4];
  float scale = kNaN, bias = kNaN;
  ref::quantize_mlx_row(4, 32, x.data(), packed, &scale, &bias, 32);
  EXPECT_EQ(bias, 2.0f);
  EXPECT_EQ(scale, -0.2f);
  EXPECT_EQ(packed[0] & 0xfff, 0xaf0u);    // levels 0, 15, 10
  EXPECT_EQ((packed[0] >> 12) & 0xf, 5u);  // 1.0 -> (1 - 2) / -0.2 = 5
  std::vector<float> y(32, kNaN);
  ref::dequantize_mlx_row(4, 32, packed, &scale, &bias, y.data(), 32);
  EXPECT_EQ(y[0], 2.0f);
  EXPECT_EQ(y[2], 0.0f);
  EXPECT_EQ(y[3], 1.0f);
  EXPECT_NEAR(y[1], -1.0f, 1e-6f);

  // min dominates: edge -4 is level 0, scale 5/15 nudged to -4 / -12.
  std::fill(x.begin(), x.end(), 0.0f);
  x[0] = -4.0f;
  x[1] = 1.0f;
  ref::quantize_mlx_row(4, 32, x.data(), packed, &scale, &bias, 32);
  EXPECT_EQ(bias, -4.0f);
  EXPECT_EQ(scale, -4.0f / -12.0f);
  EXPECT_EQ(packed[0] & 0xfff, 0xcf0u);  // levels 0, 15, 12
  ref::dequantize_mlx_row(4, 32, packed, &scale, &bias, y.data(), 32);
  EXPECT_EQ(y[0], -4.0f);
  EXPECT_EQ(y[2], 0.0f);  // zero is exact
}

TEST(QuantMlx, ConstantAndZeroGroups) {
  for (float c : {0.0f, 0.7f, -3.5f}) {
    std::vector<float> x(64, c);
    uint32_t packed[8];
    float scale = kNaN, bias = kNaN;
    ref::quantize_mlx_row(4, 64, x.data(), packed, &scale, &bias, 64);
    std::vector<float> y(64, kNaN);
    ref::dequantize_mlx_row(4, 64, packed, &scale, &bias, y.data(), 64);
    for (float v : y) EXPECT_EQ(v, c);
    EXPECT_TRUE(std::isfinite(scale));
  }
}

TEST(QuantMlx, RoundTripRmse) {
  struct Case {
    int bits, group;
    double bound;
  };
  // Bounds for 33 groups of N(0, 1); measured means 4-bit 0.081 / 0.091 / 0.100 (groups of
  // 32 / 64 / 128), 8-bit 0.0048 / 0.0054 / 0.0059, 2-bit (g64) 0.394.
  const Case cases[] = {{4, 32, 0.093},  {4, 64, 0.105},   {4, 128, 0.115}, {8, 32, 0.0055},
                        {8, 64, 0.0062}, {8, 128, 0.0068}, {2, 64, 0.46}};
  std::random_device rd;
  for (const Case& c : cases) {
    for (int groups : {1, 3, 33}) {
      const int64_t n = static_cast<int64_t>(groups) * c.group;
      const uint32_t seed = rd();
      SCOPED_TRACE("bits=" + std::to_string(c.bits) + " group=" + std::to_string(c.group) +
                   " n=" + std::to_string(n) + " seed=" + std::to_string(seed));
      const auto x = normal_data(n, seed);
      std::vector<uint32_t> packed(n * c.bits / 32, 0xdeadbeefu);
      std::vector<float> scales(groups, kNaN), biases(groups, kNaN);
      ref::quantize_mlx_row(c.bits, c.group, x.data(), packed.data(), scales.data(), biases.data(),
                            n);
      std::vector<float> y(n, kNaN);
      ref::dequantize_mlx_row(c.bits, c.group, packed.data(), scales.data(), biases.data(),
                              y.data(), n);
      for (int64_t i = 0; i < n; ++i) ASSERT_TRUE(std::isfinite(y[i])) << i;
      EXPECT_LE(relative_rmse(x, y), c.bound * (groups < 31 ? kSmallRowSlack : 1.0));
      // Each group's extremes are reproduced: the anchored edge exactly, the other closely.
      for (int g = 0; g < groups; ++g) {
        const auto first = x.begin() + g * c.group, last = first + c.group;
        const float lo = *std::min_element(first, last), hi = *std::max_element(first, last);
        EXPECT_EQ(biases[g], std::fabs(lo) > std::fabs(hi) ? lo : hi);
      }
    }
  }
}

TEST(QuantMlx, BadParametersThrow) {
  uint32_t packed[64] = {};
  float scales[4] = {}, biases[4] = {}, y[256] = {};
  expect_error([&] { ref::dequantize_mlx_row(3, 64, packed, scales, biases, y, 64); },
               ErrorCode::Unsupported, {"3 bits"});
  expect_error([&] { ref::quantize_mlx_row(4, 16, y, packed, scales, biases, 64); },
               ErrorCode::Unsupported, {"16"});
  expect_error([&] { ref::quantize_mlx_row(4, 32, y, packed, scales, biases, 48); },
               ErrorCode::InvalidArgument, {"48", "32"});
}

}  // namespace
}  // namespace vireo
