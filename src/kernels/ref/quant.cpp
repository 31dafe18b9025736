// Scalar reference (de)quantization. The quantizers follow the algorithms of llama.cpp's
// quantize_row_*_ref in their order of float operations, because the goal is byte-identical
// output: a reordered sum changes a rounding, which changes a level, which changes the file.
#include "vireo/kernels/ref/quant.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <limits>

#include "vireo/core/error.h"
#include "vireo/core/quant_blocks.h"

namespace vireo::ref {
namespace {

std::string_view name_of(DType t) {
  const auto traits = dtype_traits(t);
  return traits ? traits->name : ggml_type_name(static_cast<uint32_t>(t));
}

// Number of blocks in n elements of t, after checking that t has traits and n fits them.
int64_t block_count(DType t, int64_t n, const char* caller) {
  const auto traits = dtype_traits(t);
  if (!traits) {
    fail(ErrorCode::Unsupported, "{}: type {} (id {}) is not supported", caller, name_of(t),
         static_cast<uint32_t>(t));
  }
  if (n < 0 || n % traits->block_elems != 0) {
    fail(ErrorCode::InvalidArgument, "{}: {} needs a row length that is a multiple of {}, got {}",
         caller, traits->name, traits->block_elems, n);
  }
  return n / traits->block_elems;
}

// Round half to even, as llama.cpp's nearest_int (a magic-number add) does for the values that
// occur here; lrint does the same under the default rounding mode.
int nearest_int(float x) { return static_cast<int>(std::lrint(x)); }

// The element of largest magnitude, with its sign: symmetric formats map it onto their most
// negative level, which gains one level of range over using +amax.
float signed_absmax(const float* x, int n) {
  float amax = 0.0f;
  float max = 0.0f;
  for (int i = 0; i < n; ++i) {
    if (std::fabs(x[i]) > amax) {
      amax = std::fabs(x[i]);
      max = x[i];
    }
  }
  return max;
}

// ---- element placement: the layouts of quant_blocks.h, written once for both directions ----

// 32-element blocks: element e < 16 in the low nibble of byte e, e >= 16 in the high nibble of
// byte e - 16.
int get_nibble32(const uint8_t* qs, int e) { return e < 16 ? qs[e] & 0xf : qs[e - 16] >> 4; }
void put_nibble32(uint8_t* qs, int e, int q) {
  if (e < 16) {
    qs[e] |= static_cast<uint8_t>(q & 0xf);
  } else {
    qs[e - 16] |= static_cast<uint8_t>((q & 0xf) << 4);
  }
}

// Bit e of a 32-bit little-endian mask stored as bytes (q5_0/q5_1 qh).
int get_bit32(const uint8_t* bytes, int e) { return (bytes[e / 8] >> (e % 8)) & 1; }
void put_bit32(uint8_t* bytes, int e, int bit) {
  bytes[e / 8] |= static_cast<uint8_t>((bit & 1) << (e % 8));
}

// q2_K and q3_K low bits: each 128-element half uses 32 bytes, four 2-bit fields per byte.
int crumb_byte(int e) { return 32 * (e / 128) + e % 32; }
int crumb_shift(int e) { return 2 * ((e % 128) / 32); }
int get_crumb(const uint8_t* qs, int e) { return (qs[crumb_byte(e)] >> crumb_shift(e)) & 3; }
void put_crumb(uint8_t* qs, int e, int q) {
  qs[crumb_byte(e)] |= static_cast<uint8_t>((q & 3) << crumb_shift(e));
}

// q3_K hmask and q5_K qh: bit e/32 of byte e%32.
int get_high_bit(const uint8_t* mask, int e) { return (mask[e % 32] >> (e / 32)) & 1; }
void put_high_bit(uint8_t* mask, int e, int bit) {
  mask[e % 32] |= static_cast<uint8_t>((bit & 1) << (e / 32));
}

// q4_K and q5_K low nibbles: each 64-element chunk uses 32 bytes, low half then high half.
int get_nibble_k(const uint8_t* qs, int e) {
  const uint8_t byte = qs[32 * (e / 64) + e % 32];
  return (e % 64) < 32 ? byte & 0xf : byte >> 4;
}
void put_nibble_k(uint8_t* qs, int e, int q) {
  const int shift = (e % 64) < 32 ? 0 : 4;
  qs[32 * (e / 64) + e % 32] |= static_cast<uint8_t>((q & 0xf) << shift);
}

// q6_K: e = 128*h + 32*k + l. Low nibble in ql (quarters k and k+2 share a byte), top two
// bits in qh (all four quarters share a byte).
int get_q6(const block_q6_K& b, int e) {
  const int h = e / 128, k = (e % 128) / 32, l = e % 32;
  const uint8_t lo_byte = b.ql[64 * h + 32 * (k & 1) + l];
  const int lo = k < 2 ? lo_byte & 0xf : lo_byte >> 4;
  const int hi = (b.qh[32 * h + l] >> (2 * k)) & 3;
  return lo | (hi << 4);
}
void put_q6(block_q6_K& b, int e, int q) {
  const int h = e / 128, k = (e % 128) / 32, l = e % 32;
  b.ql[64 * h + 32 * (k & 1) + l] |= static_cast<uint8_t>((q & 0xf) << (k < 2 ? 0 : 4));
  b.qh[32 * h + l] |= static_cast<uint8_t>(((q >> 4) & 3) << (2 * k));
}

// Inverse of q3_K_scale: stores the 6-bit code of sub-block s.
void put_q3_K_scale(uint8_t* scales, int s, int code) {
  scales[s % 8] |= static_cast<uint8_t>((code & 0xf) << (s < 8 ? 0 : 4));
  scales[8 + s % 4] |= static_cast<uint8_t>(((code >> 4) & 3) << (2 * (s / 4)));
}

// Inverse of unpack_scale_min_k4.
void pack_scale_min_k4(uint8_t* scales, int j, int sc, int m) {
  if (j < 4) {
    scales[j] |= static_cast<uint8_t>(sc & 63);
    scales[j + 4] |= static_cast<uint8_t>(m & 63);
  } else {
    scales[j + 4] |= static_cast<uint8_t>((sc & 0xf) | ((m & 0xf) << 4));
    scales[j - 4] |= static_cast<uint8_t>((sc >> 4) << 6);
    scales[j] |= static_cast<uint8_t>((m >> 4) << 6);
  }
}

// ---- dequantization ----

void dequant_q4_0(const block_q4_0* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += QK4_0) {
    const float d = fp16_to_fp32(b[i].d);
    for (int e = 0; e < QK4_0; ++e) y[e] = static_cast<float>(get_nibble32(b[i].qs, e) - 8) * d;
  }
}

void dequant_q4_1(const block_q4_1* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += QK4_1) {
    const float d = fp16_to_fp32(b[i].d);
    const float m = fp16_to_fp32(b[i].m);
    for (int e = 0; e < QK4_1; ++e) y[e] = static_cast<float>(get_nibble32(b[i].qs, e)) * d + m;
  }
}

void dequant_q5_0(const block_q5_0* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += QK5_0) {
    const float d = fp16_to_fp32(b[i].d);
    for (int e = 0; e < QK5_0; ++e) {
      const int q = get_nibble32(b[i].qs, e) | (get_bit32(b[i].qh, e) << 4);
      y[e] = static_cast<float>(q - 16) * d;
    }
  }
}

void dequant_q5_1(const block_q5_1* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += QK5_1) {
    const float d = fp16_to_fp32(b[i].d);
    const float m = fp16_to_fp32(b[i].m);
    for (int e = 0; e < QK5_1; ++e) {
      const int q = get_nibble32(b[i].qs, e) | (get_bit32(b[i].qh, e) << 4);
      y[e] = static_cast<float>(q) * d + m;
    }
  }
}

void dequant_q8_0(const block_q8_0* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += QK8_0) {
    const float d = fp16_to_fp32(b[i].d);
    for (int e = 0; e < QK8_0; ++e) y[e] = static_cast<float>(b[i].qs[e]) * d;
  }
}

void dequant_q2_K(const block_q2_K* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += QK_K) {
    const float d = fp16_to_fp32(b[i].d);
    const float dmin = fp16_to_fp32(b[i].dmin);
    for (int e = 0; e < static_cast<int>(QK_K); ++e) {
      const uint8_t code = b[i].scales[e / 16];
      const float scale = d * static_cast<float>(code & 0xf);
      const float min = dmin * static_cast<float>(code >> 4);
      y[e] = scale * static_cast<float>(get_crumb(b[i].qs, e)) - min;
    }
  }
}

void dequant_q3_K(const block_q3_K* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += QK_K) {
    const float d = fp16_to_fp32(b[i].d);
    for (int e = 0; e < static_cast<int>(QK_K); ++e) {
      const float scale = d * static_cast<float>(q3_K_scale(b[i].scales, e / 16));
      // The stored high bit is the level's bit 2: set means q in 4..7, i.e. q-4 in 0..3.
      const int q = get_crumb(b[i].qs, e) - (get_high_bit(b[i].hmask, e) ? 0 : 4);
      y[e] = scale * static_cast<float>(q);
    }
  }
}

void dequant_q4_K(const block_q4_K* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += QK_K) {
    const float d = fp16_to_fp32(b[i].d);
    const float dmin = fp16_to_fp32(b[i].dmin);
    for (int e = 0; e < static_cast<int>(QK_K); ++e) {
      uint8_t sc, m;
      unpack_scale_min_k4(e / 32, b[i].scales, sc, m);
      const float scale = d * static_cast<float>(sc);
      const float min = dmin * static_cast<float>(m);
      y[e] = scale * static_cast<float>(get_nibble_k(b[i].qs, e)) - min;
    }
  }
}

void dequant_q5_K(const block_q5_K* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += QK_K) {
    const float d = fp16_to_fp32(b[i].d);
    const float dmin = fp16_to_fp32(b[i].dmin);
    for (int e = 0; e < static_cast<int>(QK_K); ++e) {
      uint8_t sc, m;
      unpack_scale_min_k4(e / 32, b[i].scales, sc, m);
      const float scale = d * static_cast<float>(sc);
      const float min = dmin * static_cast<float>(m);
      const int q = get_nibble_k(b[i].qs, e) + 16 * get_high_bit(b[i].qh, e);
      y[e] = scale * static_cast<float>(q) - min;
    }
  }
}

void dequant_q6_K(const block_q6_K* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += QK_K) {
    const float d = fp16_to_fp32(b[i].d);
    for (int e = 0; e < static_cast<int>(QK_K); ++e) {
      y[e] = d * static_cast<float>(b[i].scales[e / 16]) * static_cast<float>(get_q6(b[i], e) - 32);
    }
  }
}

void dequant_q8_K(const block_q8_K* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += QK_K) {
    for (int e = 0; e < static_cast<int>(QK_K); ++e) y[e] = static_cast<float>(b[i].qs[e]) * b[i].d;
  }
}

// Plain element types; memcpy because rows inside a file need not be aligned.
template <typename T, typename Convert>
void dequant_plain(const void* src, float* y, int64_t n, Convert convert) {
  const auto* bytes = static_cast<const uint8_t*>(src);
  for (int64_t i = 0; i < n; ++i) {
    T v;
    std::memcpy(&v, bytes + i * sizeof(T), sizeof(T));
    y[i] = convert(v);
  }
}

template <typename T, typename Convert>
void quant_plain(const float* x, void* dst, int64_t n, Convert convert) {
  auto* bytes = static_cast<uint8_t*>(dst);
  for (int64_t i = 0; i < n; ++i) {
    const T v = convert(x[i]);
    std::memcpy(bytes + i * sizeof(T), &v, sizeof(T));
  }
}

// ---- 32-element block quantizers ----

void quant_q4_0(const float* x, block_q4_0* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += QK4_0) {
    const float d = signed_absmax(x, QK4_0) / -8;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    block_q4_0 b{};
    b.d = fp32_to_fp16(d);
    for (int e = 0; e < QK4_0; ++e) {
      // x*id lies in [-8, 8]; +8.5 and truncation round half up onto the levels 0..15.
      put_nibble32(b.qs, e, std::min(15, static_cast<int>(x[e] * id + 8.5f)));
    }
    y[i] = b;
  }
}

void quant_q4_1(const float* x, block_q4_1* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += QK4_1) {
    const auto [lo, hi] = std::minmax_element(x, x + QK4_1);
    const float min = *lo;
    const float d = (*hi - min) / 15;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    block_q4_1 b{};
    b.d = fp32_to_fp16(d);
    b.m = fp32_to_fp16(min);
    for (int e = 0; e < QK4_1; ++e) {
      put_nibble32(b.qs, e, std::min(15, static_cast<int>((x[e] - min) * id + 0.5f)));
    }
    y[i] = b;
  }
}

void quant_q5_0(const float* x, block_q5_0* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += QK5_0) {
    const float d = signed_absmax(x, QK5_0) / -16;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    block_q5_0 b{};
    b.d = fp32_to_fp16(d);
    for (int e = 0; e < QK5_0; ++e) {
      const int q = std::min(31, static_cast<int>(x[e] * id + 16.5f));
      put_nibble32(b.qs, e, q);
      put_bit32(b.qh, e, q >> 4);
    }
    y[i] = b;
  }
}

void quant_q5_1(const float* x, block_q5_1* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += QK5_1) {
    const auto [lo, hi] = std::minmax_element(x, x + QK5_1);
    const float min = *lo;
    const float d = (*hi - min) / 31;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    block_q5_1 b{};
    b.d = fp32_to_fp16(d);
    b.m = fp32_to_fp16(min);
    for (int e = 0; e < QK5_1; ++e) {
      const int q = std::min(31, static_cast<int>((x[e] - min) * id + 0.5f));
      put_nibble32(b.qs, e, q);
      put_bit32(b.qh, e, q >> 4);
    }
    y[i] = b;
  }
}

void quant_q8_0(const float* x, block_q8_0* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += QK8_0) {
    float amax = 0.0f;
    for (int e = 0; e < QK8_0; ++e) amax = std::max(amax, std::fabs(x[e]));
    const float d = amax / 127;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[i].d = fp32_to_fp16(d);
    // roundf (half away from zero), not nearest_int: this is what llama.cpp writes for q8_0.
    for (int e = 0; e < QK8_0; ++e) y[i].qs[e] = static_cast<int8_t>(std::round(x[e] * id));
  }
}

// ---- K-quant helpers: searches for good sub-block scales ----

// Blocks whose largest magnitude is below this are stored as all zeros.
constexpr float kGroupMaxEps = 1e-15f;

// Fits x ~ scale * L - offset with levels L in 0..nmax and offset >= 0 (the min is clamped to
// <= 0 so that zero stays representable). Starts from the min/max grid, then tries nstep+1
// level grids of (nmax + rmin + rdelta*k) steps over [min, max]; for each grid the scale and
// offset are refit by weighted least squares and kept if the weighted error (absolute with
// use_mad, else squared) drops. This is llama.cpp's make_qkx2_quants. Returns the scale and
// stores the offset (minus the min) in *offset.
float fit_scale_min(int n, int nmax, const float* x, const float* w, uint8_t* L, float* offset,
                    float rmin, float rdelta, int nstep, bool use_mad) {
  float min = x[0], max = x[0];
  float sum_w = w[0];
  float sum_x = sum_w * x[0];
  for (int i = 1; i < n; ++i) {
    min = std::min(min, x[i]);
    max = std::max(max, x[i]);
    sum_w += w[i];
    sum_x += w[i] * x[i];
  }
  if (min > 0) min = 0;
  if (max == min) {
    std::fill(L, L + n, uint8_t{0});
    *offset = -min;
    return 0.0f;
  }
  const auto error_of = [&](float diff) { return use_mad ? std::fabs(diff) : diff * diff; };

  float iscale = static_cast<float>(nmax) / (max - min);
  float scale = 1 / iscale;
  float best_error = 0;
  for (int i = 0; i < n; ++i) {
    L[i] = static_cast<uint8_t>(std::clamp(nearest_int(iscale * (x[i] - min)), 0, nmax));
    best_error += w[i] * error_of(scale * L[i] + min - x[i]);
  }
  if (nstep < 1) {
    *offset = -min;
    return scale;
  }
  uint8_t trial[32];
  for (int step = 0; step <= nstep; ++step) {
    iscale = (rmin + rdelta * step + nmax) / (max - min);
    float sum_l = 0, sum_l2 = 0, sum_xl = 0;
    for (int i = 0; i < n; ++i) {
      const int l = std::clamp(nearest_int(iscale * (x[i] - min)), 0, nmax);
      trial[i] = static_cast<uint8_t>(l);
      sum_l += w[i] * l;
      sum_l2 += w[i] * l * l;
      sum_xl += w[i] * l * x[i];
    }
    const float det = sum_w * sum_l2 - sum_l * sum_l;
    if (!(det > 0)) continue;  // also skips NaN, as llama.cpp's `if (D > 0)` does
    float this_scale = (sum_w * sum_xl - sum_x * sum_l) / det;
    float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / det;
    if (this_min > 0) {  // a positive min would lose zero: refit the scale alone
      this_min = 0;
      this_scale = sum_xl / sum_l2;
    }
    float error = 0;
    for (int i = 0; i < n; ++i) error += w[i] * error_of(this_scale * trial[i] + this_min - x[i]);
    if (error < best_error) {
      std::copy(trial, trial + n, L);
      best_error = error;
      scale = this_scale;
      min = this_min;
    }
  }
  *offset = -min;
  return scale;
}

// Symmetric fit x ~ scale * (L - nmax), L in 0..2*nmax-1, minimising the x^2-weighted squared
// error over 19 candidate scales around -nmax/max (llama.cpp's make_qx_quants, rmse_type 1).
float fit_scale_symmetric(int n, int nmax, const float* x, int8_t* L) {
  const float max = signed_absmax(x, n);
  if (std::fabs(max) < kGroupMaxEps) {
    std::fill(L, L + n, int8_t{0});
    return 0.0f;
  }
  // Levels for one candidate inverse scale, and the two sums its least-squares scale needs.
  const auto try_iscale = [&](float iscale, int8_t* levels, float& sumlx, float& suml2) {
    sumlx = suml2 = 0;
    for (int i = 0; i < n; ++i) {
      const int l = std::clamp(nearest_int(iscale * x[i]), -nmax, nmax - 1);
      if (levels) levels[i] = static_cast<int8_t>(l + nmax);
      const float w = x[i] * x[i];
      sumlx += w * x[i] * l;
      suml2 += w * l * l;
    }
  };
  float sumlx, suml2;
  try_iscale(-nmax / max, L, sumlx, suml2);
  float scale = suml2 != 0 ? sumlx / suml2 : 0.0f;
  float best = scale * sumlx;
  for (int step = -9; step <= 9; ++step) {
    if (step == 0) continue;
    const float iscale = -(nmax + 0.1f * step) / max;
    try_iscale(iscale, nullptr, sumlx, suml2);
    // Compares sumlx^2/suml2 (the error reduction) without dividing.
    if (suml2 > 0 && sumlx * sumlx > best * suml2) {
      try_iscale(iscale, L, sumlx, suml2);
      scale = sumlx / suml2;
      best = scale * sumlx;
    }
  }
  return scale;
}

// q3_K's sub-block fit (llama.cpp's make_q3_quants with do_rmse): start from the levels of
// -nmax/max, then up to 5 passes of moving single levels to their best value given the
// others, keeping a move only when it improves the x^2-weighted fit. L in 0..2*nmax-1.
float fit_scale_q3(int n, int nmax, const float* x, int8_t* L) {
  const float max = signed_absmax(x, n);
  if (std::fabs(max) < kGroupMaxEps) {
    std::fill(L, L + n, int8_t{0});
    return 0.0f;
  }
  const float iscale = -nmax / max;
  float sumlx = 0, suml2 = 0;
  for (int i = 0; i < n; ++i) {
    const int l = std::clamp(nearest_int(iscale * x[i]), -nmax, nmax - 1);
    L[i] = static_cast<int8_t>(l);
    const float w = x[i] * x[i];
    sumlx += w * x[i] * l;
    suml2 += w * l * l;
  }
  for (int pass = 0; pass < 5; ++pass) {
    int changed = 0;
    for (int i = 0; i < n; ++i) {
      const float w = x[i] * x[i];
      float slx = sumlx - w * x[i] * L[i];
      if (!(slx > 0)) continue;
      float sl2 = suml2 - w * L[i] * L[i];
      const int l = std::clamp(nearest_int(x[i] * sl2 / slx), -nmax, nmax - 1);
      if (l == L[i]) continue;
      slx += w * x[i] * l;
      sl2 += w * l * l;
      if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2) {
        L[i] = static_cast<int8_t>(l);
        sumlx = slx;
        suml2 = sl2;
        ++changed;
      }
    }
    if (changed == 0) break;
  }
  for (int i = 0; i < n; ++i) L[i] = static_cast<int8_t>(L[i] + nmax);
  return suml2 > 0 ? sumlx / suml2 : 0.0f;
}

// ---- K-quant quantizers ----

void quant_q2_K(const float* x, block_q2_K* y, int64_t nb) {
  constexpr int kSub = 16, kNumSub = QK_K / kSub;
  constexpr float kCodeMax = 15.0f;  // 4-bit scale and min codes
  for (int64_t i = 0; i < nb; ++i, x += QK_K) {
    uint8_t L[QK_K];
    float scales[kNumSub], mins[kNumSub], weights[kSub];
    float max_scale = 0, max_min = 0;  // scales and mins are >= 0 here
    for (int s = 0; s < kNumSub; ++s) {
      for (int l = 0; l < kSub; ++l) weights[l] = std::fabs(x[kSub * s + l]);
      scales[s] = fit_scale_min(kSub, 3, x + kSub * s, weights, L + kSub * s, &mins[s], -0.5f, 0.1f,
                                15, true);
      max_scale = std::max(max_scale, scales[s]);
      max_min = std::max(max_min, mins[s]);
    }
    block_q2_K b{};
    if (max_scale > 0) {
      const float iscale = kCodeMax / max_scale;
      for (int s = 0; s < kNumSub; ++s)
        b.scales[s] = static_cast<uint8_t>(nearest_int(iscale * scales[s]));
      b.d = fp32_to_fp16(max_scale / kCodeMax);
    }
    if (max_min > 0) {
      const float iscale = kCodeMax / max_min;
      for (int s = 0; s < kNumSub; ++s)
        b.scales[s] |= static_cast<uint8_t>(nearest_int(iscale * mins[s]) << 4);
      b.dmin = fp32_to_fp16(max_min / kCodeMax);
    }
    // Re-pick levels against the scales as stored (rounded codes, fp16 d).
    for (int s = 0; s < kNumSub; ++s) {
      const float d = fp16_to_fp32(b.d) * static_cast<float>(b.scales[s] & 0xf);
      if (d == 0) continue;
      const float dm = fp16_to_fp32(b.dmin) * static_cast<float>(b.scales[s] >> 4);
      for (int l = 0; l < kSub; ++l) {
        L[kSub * s + l] =
            static_cast<uint8_t>(std::clamp(nearest_int((x[kSub * s + l] + dm) / d), 0, 3));
      }
    }
    for (int e = 0; e < static_cast<int>(QK_K); ++e) put_crumb(b.qs, e, L[e]);
    y[i] = b;
  }
}

void quant_q3_K(const float* x, block_q3_K* y, int64_t nb) {
  constexpr int kSub = 16, kNumSub = QK_K / kSub;
  for (int64_t i = 0; i < nb; ++i, x += QK_K) {
    int8_t L[QK_K];
    float scales[kNumSub];
    float max_scale = 0, amax = 0;  // signed scale of largest magnitude
    for (int s = 0; s < kNumSub; ++s) {
      scales[s] = fit_scale_q3(kSub, 4, x + kSub * s, L + kSub * s);
      if (std::fabs(scales[s]) > amax) {
        amax = std::fabs(scales[s]);
        max_scale = scales[s];
      }
    }
    block_q3_K b{};
    if (max_scale != 0) {
      const float iscale = -32.0f / max_scale;
      for (int s = 0; s < kNumSub; ++s) {
        put_q3_K_scale(b.scales, s, std::clamp(nearest_int(iscale * scales[s]), -32, 31) + 32);
      }
      b.d = fp32_to_fp16(1 / iscale);
    }
    for (int s = 0; s < kNumSub; ++s) {
      const float d = fp16_to_fp32(b.d) * static_cast<float>(q3_K_scale(b.scales, s));
      if (d == 0) continue;
      for (int l = 0; l < kSub; ++l) {
        L[kSub * s + l] =
            static_cast<int8_t>(std::clamp(nearest_int(x[kSub * s + l] / d), -4, 3) + 4);
      }
    }
    for (int e = 0; e < static_cast<int>(QK_K); ++e) {
      put_crumb(b.qs, e, L[e] & 3);
      put_high_bit(b.hmask, e, L[e] >> 2);
    }
    y[i] = b;
  }
}

// q4_K and q5_K share everything but the level count and the search grid.
template <typename Block, int kNmax>
void quant_k_scale_min(const float* x, Block* y, int64_t nb, float rmin, int nstep) {
  constexpr int kSub = 32, kNumSub = QK_K / kSub;
  for (int64_t i = 0; i < nb; ++i, x += QK_K) {
    uint8_t L[QK_K];
    float scales[kNumSub], mins[kNumSub], weights[kSub];
    float max_scale = 0, max_min = 0;
    for (int s = 0; s < kNumSub; ++s) {
      const float* xs = x + kSub * s;
      float sum_x2 = 0;
      for (int l = 0; l < kSub; ++l) sum_x2 += xs[l] * xs[l];
      // Weight by magnitude plus the sub-block's rms: large values matter more, small ones
      // still count.
      const float av_x = std::sqrt(sum_x2 / kSub);
      for (int l = 0; l < kSub; ++l) weights[l] = av_x + std::fabs(xs[l]);
      scales[s] =
          fit_scale_min(kSub, kNmax, xs, weights, L + kSub * s, &mins[s], rmin, 0.1f, nstep, false);
      max_scale = std::max(max_scale, scales[s]);
      max_min = std::max(max_min, mins[s]);
    }
    const float inv_scale = max_scale > 0 ? 63.0f / max_scale : 0.0f;
    const float inv_min = max_min > 0 ? 63.0f / max_min : 0.0f;
    Block b{};
    for (int s = 0; s < kNumSub; ++s) {
      // llama.cpp narrows to uint8_t before clamping; keep that so codes match.
      const uint8_t sc =
          std::min<uint8_t>(63, static_cast<uint8_t>(nearest_int(inv_scale * scales[s])));
      const uint8_t m = std::min<uint8_t>(63, static_cast<uint8_t>(nearest_int(inv_min * mins[s])));
      pack_scale_min_k4(b.scales, s, sc, m);
    }
    b.d = fp32_to_fp16(max_scale / 63.0f);
    b.dmin = fp32_to_fp16(max_min / 63.0f);
    for (int s = 0; s < kNumSub; ++s) {
      uint8_t sc, m;
      unpack_scale_min_k4(s, b.scales, sc, m);
      const float d = fp16_to_fp32(b.d) * static_cast<float>(sc);
      if (d == 0) continue;
      const float dm = fp16_to_fp32(b.dmin) * static_cast<float>(m);
      for (int l = 0; l < kSub; ++l) {
        L[kSub * s + l] =
            static_cast<uint8_t>(std::clamp(nearest_int((x[kSub * s + l] + dm) / d), 0, kNmax));
      }
    }
    for (int e = 0; e < static_cast<int>(QK_K); ++e) {
      put_nibble_k(b.qs, e, L[e]);
      if constexpr (kNmax == 31) put_high_bit(b.qh, e, L[e] >> 4);
    }
    y[i] = b;
  }
}

void quant_q6_K(const float* x, block_q6_K* y, int64_t nb) {
  constexpr int kSub = 16, kNumSub = QK_K / kSub;
  for (int64_t i = 0; i < nb; ++i, x += QK_K) {
    int8_t L[QK_K];
    float scales[kNumSub];
    float max_scale = 0, max_abs_scale = 0;
    for (int s = 0; s < kNumSub; ++s) {
      scales[s] = fit_scale_symmetric(kSub, 32, x + kSub * s, L + kSub * s);
      if (std::fabs(scales[s]) > max_abs_scale) {
        max_abs_scale = std::fabs(scales[s]);
        max_scale = scales[s];
      }
    }
    block_q6_K b{};
    if (max_abs_scale < kGroupMaxEps) {  // all (near) zero: an all-zero block
      y[i] = b;
      continue;
    }
    // The sub-scale of largest magnitude becomes code -128, the full int8 range.
    const float iscale = -128.0f / max_scale;
    b.d = fp32_to_fp16(1 / iscale);
    for (int s = 0; s < kNumSub; ++s) {
      b.scales[s] = static_cast<int8_t>(std::min(127, nearest_int(iscale * scales[s])));
    }
    for (int s = 0; s < kNumSub; ++s) {
      const float d = fp16_to_fp32(b.d) * static_cast<float>(b.scales[s]);
      if (d == 0) continue;
      for (int l = 0; l < kSub; ++l) {
        L[kSub * s + l] =
            static_cast<int8_t>(std::clamp(nearest_int(x[kSub * s + l] / d), -32, 31) + 32);
      }
    }
    for (int e = 0; e < static_cast<int>(QK_K); ++e) put_q6(b, e, L[e]);
    y[i] = b;
  }
}

void quant_q8_K(const float* x, block_q8_K* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += QK_K) {
    block_q8_K b{};
    const float max = signed_absmax(x, QK_K);
    if (max != 0) {
      // -127 rather than -128 keeps levels symmetric, which llama.cpp's SIMD dot products need.
      const float iscale = -127.0f / max;
      for (int e = 0; e < static_cast<int>(QK_K); ++e) {
        b.qs[e] = static_cast<int8_t>(std::min(127, nearest_int(iscale * x[e])));
      }
      for (int s = 0; s < static_cast<int>(QK_K / 16); ++s) {
        int sum = 0;
        for (int l = 0; l < 16; ++l) sum += b.qs[16 * s + l];
        b.bsums[s] = static_cast<int16_t>(sum);
      }
      b.d = 1 / iscale;
    }
    y[i] = b;
  }
}

// ---- MLX ----

void check_mlx(int bits, int group_size, int64_t n, const char* caller) {
  if (bits != 2 && bits != 4 && bits != 8) {
    fail(ErrorCode::Unsupported,
         "{}: MLX affine quantization with {} bits is not supported (2, 4 or 8)", caller, bits);
  }
  if (group_size != 32 && group_size != 64 && group_size != 128) {
    fail(ErrorCode::Unsupported, "{}: MLX group size {} is not supported (32, 64 or 128)", caller,
         group_size);
  }
  if (n < 0 || n % group_size != 0) {
    fail(ErrorCode::InvalidArgument,
         "{}: mlx_q{} needs a row length that is a multiple of the group size {}, got {}", caller,
         bits, group_size, n);
  }
}

// What each direction handles; must agree with the switches of dequantize_row and
// quantize_row (a test checks).
constexpr std::array kDequantizable = {
    DType::F32,  DType::F16,  DType::BF16, DType::F64,  DType::I8,   DType::I16,  DType::I32,
    DType::I64,  DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1, DType::Q8_0, DType::Q2_K,
    DType::Q3_K, DType::Q4_K, DType::Q5_K, DType::Q6_K, DType::Q8_K,
};
constexpr std::array kQuantizable = {
    DType::F32,  DType::F16,  DType::BF16, DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1,
    DType::Q8_0, DType::Q2_K, DType::Q3_K, DType::Q4_K, DType::Q5_K, DType::Q6_K, DType::Q8_K,
};

}  // namespace

size_t row_bytes(DType t, int64_t n) {
  const int64_t blocks = block_count(t, n, "row_bytes");
  return static_cast<size_t>(blocks) * dtype_traits(t)->block_bytes;
}

bool can_dequantize(DType t) {
  return std::ranges::find(kDequantizable, t) != kDequantizable.end();
}

bool can_quantize(DType t) { return std::ranges::find(kQuantizable, t) != kQuantizable.end(); }

void dequantize_row(DType t, const void* src, float* dst, int64_t n) {
  const int64_t nb = block_count(t, n, "dequantize_row");
  const auto to_float = [](auto v) { return static_cast<float>(v); };
  switch (t) {
    case DType::F32:
      return dequant_plain<float>(src, dst, n, to_float);
    case DType::F16:
      return dequant_plain<uint16_t>(src, dst, n, fp16_to_fp32);
    case DType::BF16:
      return dequant_plain<uint16_t>(src, dst, n, bf16_to_fp32);
    case DType::F64:
      return dequant_plain<double>(src, dst, n, to_float);
    case DType::I8:
      return dequant_plain<int8_t>(src, dst, n, to_float);
    case DType::I16:
      return dequant_plain<int16_t>(src, dst, n, to_float);
    case DType::I32:
      return dequant_plain<int32_t>(src, dst, n, to_float);
    case DType::I64:
      return dequant_plain<int64_t>(src, dst, n, to_float);
    case DType::Q4_0:
      return dequant_q4_0(static_cast<const block_q4_0*>(src), dst, nb);
    case DType::Q4_1:
      return dequant_q4_1(static_cast<const block_q4_1*>(src), dst, nb);
    case DType::Q5_0:
      return dequant_q5_0(static_cast<const block_q5_0*>(src), dst, nb);
    case DType::Q5_1:
      return dequant_q5_1(static_cast<const block_q5_1*>(src), dst, nb);
    case DType::Q8_0:
      return dequant_q8_0(static_cast<const block_q8_0*>(src), dst, nb);
    case DType::Q2_K:
      return dequant_q2_K(static_cast<const block_q2_K*>(src), dst, nb);
    case DType::Q3_K:
      return dequant_q3_K(static_cast<const block_q3_K*>(src), dst, nb);
    case DType::Q4_K:
      return dequant_q4_K(static_cast<const block_q4_K*>(src), dst, nb);
    case DType::Q5_K:
      return dequant_q5_K(static_cast<const block_q5_K*>(src), dst, nb);
    case DType::Q6_K:
      return dequant_q6_K(static_cast<const block_q6_K*>(src), dst, nb);
    case DType::Q8_K:
      return dequant_q8_K(static_cast<const block_q8_K*>(src), dst, nb);
    case DType::MLX_Q4:
    case DType::MLX_Q8:
      fail(ErrorCode::Unsupported,
           "dequantize_row: {} keeps its scales and biases apart; use dequantize_mlx_row",
           name_of(t));
    default:
      fail(ErrorCode::Unsupported, "dequantize_row: type {} cannot be dequantized", name_of(t));
  }
}

void quantize_row(DType t, const float* src, void* dst, int64_t n) {
  const int64_t nb = block_count(t, n, "quantize_row");
  switch (t) {
    case DType::F32:
      return quant_plain<float>(src, dst, n, [](float v) { return v; });
    case DType::F16:
      return quant_plain<uint16_t>(src, dst, n, fp32_to_fp16);
    case DType::BF16:
      return quant_plain<uint16_t>(src, dst, n, fp32_to_bf16);
    case DType::Q4_0:
      return quant_q4_0(src, static_cast<block_q4_0*>(dst), nb);
    case DType::Q4_1:
      return quant_q4_1(src, static_cast<block_q4_1*>(dst), nb);
    case DType::Q5_0:
      return quant_q5_0(src, static_cast<block_q5_0*>(dst), nb);
    case DType::Q5_1:
      return quant_q5_1(src, static_cast<block_q5_1*>(dst), nb);
    case DType::Q8_0:
      return quant_q8_0(src, static_cast<block_q8_0*>(dst), nb);
    case DType::Q2_K:
      return quant_q2_K(src, static_cast<block_q2_K*>(dst), nb);
    case DType::Q3_K:
      return quant_q3_K(src, static_cast<block_q3_K*>(dst), nb);
    case DType::Q4_K:
      return quant_k_scale_min<block_q4_K, 15>(src, static_cast<block_q4_K*>(dst), nb, -1.0f, 20);
    case DType::Q5_K:
      return quant_k_scale_min<block_q5_K, 31>(src, static_cast<block_q5_K*>(dst), nb, -0.5f, 15);
    case DType::Q6_K:
      return quant_q6_K(src, static_cast<block_q6_K*>(dst), nb);
    case DType::Q8_K:
      return quant_q8_K(src, static_cast<block_q8_K*>(dst), nb);
    default:
      fail(ErrorCode::Unsupported, "quantize_row: quantizing to {} is not supported", name_of(t));
  }
}

void dequantize_mlx_row(int bits, int group_size, const uint32_t* packed, const float* scales,
                        const float* biases, float* dst, int64_t n) {
  check_mlx(bits, group_size, n, "dequantize_mlx_row");
  const int per_word = 32 / bits;
  const uint32_t mask = (1u << bits) - 1;  // bits < 32, so no overflow
  for (int64_t i = 0; i < n; ++i) {
    const uint32_t q = (packed[i / per_word] >> (bits * (i % per_word))) & mask;
    const int64_t g = i / group_size;
    dst[i] = scales[g] * static_cast<float>(q) + biases[g];
  }
}

void quantize_mlx_row(int bits, int group_size, const float* src, uint32_t* packed, float* scales,
                      float* biases, int64_t n) {
  check_mlx(bits, group_size, n, "quantize_mlx_row");
  const float n_bins = static_cast<float>((1 << bits) - 1);
  constexpr float kEps = 1e-7f;  // MLX's floor on the scale, so a constant group divides safely
  const int per_word = 32 / bits;
  std::fill(packed, packed + n / per_word, 0u);
  for (int64_t g = 0; g < n / group_size; ++g) {
    const float* x = src + g * group_size;
    float w_min = std::numeric_limits<float>::infinity();
    float w_max = -w_min;
    for (int j = 0; j < group_size; ++j) {
      w_max = std::max(w_max, x[j]);
      w_min = std::min(w_min, x[j]);
    }
    // Anchor on the edge of larger magnitude: it becomes level 0 (so the scale is negative
    // when that edge is the max), and the scale is adjusted so the edge is an exact multiple
    // of it, which puts zero on a level as well.
    const bool min_is_edge = std::fabs(w_min) > std::fabs(w_max);
    float scale = std::max((w_max - w_min) / n_bins, kEps);
    if (!min_is_edge) scale = -scale;
    const float edge = min_is_edge ? w_min : w_max;
    const float q0 = std::rint(edge / scale);
    float bias = 0;
    if (q0 != 0) {
      scale = edge / q0;
      bias = edge;
    }
    for (int j = 0; j < group_size; ++j) {
      float q = std::rint((x[j] - bias) / scale);
      q = std::isnan(q) ? 0.0f : std::clamp(q, 0.0f, n_bins);  // NaN input: level 0, no UB
      const int64_t i = g * group_size + j;
      packed[i / per_word] |= static_cast<uint32_t>(q) << (bits * (i % per_word));
    }
    scales[g] = scale;
    biases[g] = bias;
  }
}

}  // namespace vireo::ref
