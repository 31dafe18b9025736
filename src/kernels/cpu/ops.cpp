// Portable CPU kernels of the non-matmul ops. Float accumulation in several partial sums (the
// compiler vectorises them); references with double accumulation are in kernels/ref/ops.cpp.
#include "vireo/kernels/cpu/ops.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "vireo/core/quant_blocks.h"
#include "vireo/kernels/ref/quant.h"

namespace vireo::cpu {
namespace {

// Σ x[i]*y[i] in eight partial sums.
inline float dot8(const float* x, const float* y, int64_t n) {
  float part[8] = {};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int k = 0; k < 8; ++k) part[k] += x[i + k] * y[i + k];
  }
  for (; i < n; ++i) part[i % 8] += x[i] * y[i];
  return ((part[0] + part[1]) + (part[2] + part[3])) + ((part[4] + part[5]) + (part[6] + part[7]));
}

inline float sum8(const float* x, int64_t n, bool squares) {
  float part[8] = {};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int k = 0; k < 8; ++k) part[k] += squares ? x[i + k] * x[i + k] : x[i + k];
  }
  for (; i < n; ++i) part[i % 8] += squares ? x[i] * x[i] : x[i];
  return ((part[0] + part[1]) + (part[2] + part[3])) + ((part[4] + part[5]) + (part[6] + part[7]));
}

}  // namespace

void rms_norm_row(const float* x, const float* weight, float eps, int64_t d, float* out) {
  const float mean_sq = sum8(x, d, true) / static_cast<float>(d);
  const float inv = 1.0f / std::sqrt(mean_sq + eps);
  for (int64_t j = 0; j < d; ++j) out[j] = x[j] * inv * weight[j];
}

void layer_norm_row(const float* x, const float* weight, const float* bias, float eps, int64_t d, float* out) {
  const float mean = sum8(x, d, false) / static_cast<float>(d);
  float part[8] = {};
  for (int64_t j = 0; j < d; ++j) part[j % 8] += (x[j] - mean) * (x[j] - mean);
  const float var = (((part[0] + part[1]) + (part[2] + part[3])) + ((part[4] + part[5]) + (part[6] + part[7]))) /
                    static_cast<float>(d);
  const float inv = 1.0f / std::sqrt(var + eps);
  for (int64_t j = 0; j < d; ++j) out[j] = (x[j] - mean) * inv * weight[j] + bias[j];
}

void softmax_row(const float* x, int64_t d, float* out) {
  const float mx = *std::max_element(x, x + d);
  double sum = 0;
  for (int64_t j = 0; j < d; ++j) sum += out[j] = std::exp(x[j] - mx);
  const auto inv = static_cast<float>(1.0 / sum);
  for (int64_t j = 0; j < d; ++j) out[j] *= inv;
}

int32_t argmax_row(const float* x, int64_t d) {
  int64_t best = 0;
  for (int64_t j = 1; j < d; ++j) {
    if (x[j] > x[best]) best = j;
  }
  return static_cast<int32_t>(best);
}

void l2_normalize_row(const float* x, int64_t d, float* out) {
  const float norm = std::sqrt(sum8(x, d, true));
  const float inv = 1.0f / std::max(norm, 1e-12f);
  for (int64_t j = 0; j < d; ++j) out[j] = x[j] * inv;
}

void add(const float* a, const float* b, int64_t n, float* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = a[i] + b[i];
}

void mul(const float* a, const float* b, int64_t n, float* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = a[i] * b[i];
}

void silu_mul(const float* gate, const float* up, int64_t n, float* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
}

void gelu(const float* x, int64_t n, float* out) {
  constexpr float kSqrt2OverPi = 0.79788456080286535588f;
  for (int64_t i = 0; i < n; ++i) {
    const float v = x[i];
    out[i] = 0.5f * v * (1.0f + std::tanh(kSqrt2OverPi * v * (1.0f + 0.044715f * v * v)));
  }
}

void f32_to_f16(const float* x, int64_t n, uint16_t* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = fp32_to_fp16(x[i]);
}

void rope_row(float* x, const float* cs, int n_heads, int head_dim, int n_dims, RopeStyle style) {
  const int half = n_dims / 2;
  for (int h = 0; h < n_heads; ++h) {
    float* v = x + static_cast<int64_t>(h) * head_dim;
    for (int i = 0; i < half; ++i) {
      const int i0 = style == RopeStyle::Normal ? 2 * i : i;
      const int i1 = style == RopeStyle::Normal ? 2 * i + 1 : i + half;
      const float c = cs[2 * i], s = cs[2 * i + 1];
      const float x0 = v[i0], x1 = v[i1];
      v[i0] = x0 * c - x1 * s;
      v[i1] = x0 * s + x1 * c;
    }
  }
}

void attention_heads(const float* q, int n_q, const void* k, const void* v, DType kv_type, int64_t kv_stride,
                     int kv_head, int head_dim, int32_t begin, int32_t count, const KvPages& pages, float scale,
                     float* scratch, float* out, Isa isa) {
  if (uses_avx512(isa)) {
    return avx512::attention_heads(q, n_q, k, v, kv_type, kv_stride, kv_head, head_dim, begin, count, pages, scale,
                                   scratch, out);
  }
  const int64_t off = int64_t{kv_head} * head_dim;
  std::vector<float> row(static_cast<size_t>(head_dim));
  auto load_row = [&](const void* base, int64_t key) -> const float* {
    const int64_t cell = pages.row(key);
    if (kv_type == DType::F32) return static_cast<const float*>(base) + cell * kv_stride + off;
    if (kv_type == DType::Q8_0) {
      ref::dequantize_row(DType::Q8_0, static_cast<const block_q8_0*>(base) + (cell * kv_stride + off) / QK8_0, row.data(), head_dim);
      return row.data();
    }
    const uint16_t* src = static_cast<const uint16_t*>(base) + cell * kv_stride + off;
    for (int d = 0; d < head_dim; ++d) row[d] = fp16_to_fp32(src[d]);
    return row.data();
  };
  for (int h = 0; h < n_q; ++h) {
    const float* qh = q + static_cast<int64_t>(h) * head_dim;
    float* o = out + static_cast<int64_t>(h) * head_dim;
    float mx = -std::numeric_limits<float>::infinity();
    for (int32_t c = 0; c < count; ++c) {
      scratch[c] = dot8(qh, load_row(k, begin + c), head_dim) * scale;
      mx = std::max(mx, scratch[c]);
    }
    float sum = 0;
    for (int32_t c = 0; c < count; ++c) sum += scratch[c] = std::exp(scratch[c] - mx);
    std::fill(o, o + head_dim, 0.0f);
    for (int32_t c = 0; c < count; ++c) {
      const float* vr = load_row(v, begin + c);
      const float p = scratch[c];
      for (int d = 0; d < head_dim; ++d) o[d] += p * vr[d];
    }
    const float inv = count > 0 ? 1.0f / sum : 0.0f;
    for (int d = 0; d < head_dim; ++d) o[d] *= inv;
  }
}

}  // namespace vireo::cpu
