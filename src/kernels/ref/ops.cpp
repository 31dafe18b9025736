#include "vireo/kernels/ref/ops.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "vireo/core/error.h"
#include "vireo/core/quant_blocks.h"
#include "vireo/kernels/ref/quant.h"

namespace vireo::ref {

DType dot_type(DType t) {
  switch (t) {
    case DType::F32: return DType::F32;
    case DType::F16: return DType::F16;
    // BF16 widens to F32 exactly; rounding the activations to BF16 too (as llama.cpp does) would
    // throw away 16 bits of them for no speed on a memory-bound product.
    case DType::BF16: return DType::F32;
    case DType::Q4_0:
    case DType::Q4_1:
    case DType::Q5_0:
    case DType::Q5_1:
    case DType::Q8_0: return DType::Q8_0;
    case DType::Q2_K:
    case DType::Q3_K:
    case DType::Q4_K:
    case DType::Q5_K:
    case DType::Q6_K: return DType::Q8_K;
    default: {
      const auto traits = dtype_traits(t);
      fail(ErrorCode::Unsupported, "matmul: weights of type {} are not supported",
           traits ? traits->name : std::string_view("unknown"));
    }
  }
}

std::vector<float> round_activations(DType weight_type, const float* x, int64_t n) {
  const DType dt = dot_type(weight_type);
  std::vector<float> out(static_cast<size_t>(n));
  if (dt == DType::F32) {
    std::copy(x, x + n, out.begin());
    return out;
  }
  std::vector<uint8_t> q(row_bytes(dt, n));
  quantize_row(dt, x, q.data(), n);
  dequantize_row(dt, q.data(), out.data(), n);
  return out;
}

void matmul(DType type, const void* w, int64_t rows, int64_t cols, const float* x, int64_t n, float* y) {
  const size_t rb = row_bytes(type, cols);
  std::vector<float> wrow(static_cast<size_t>(cols));
  std::vector<std::vector<float>> xs;
  xs.reserve(static_cast<size_t>(n));
  for (int64_t t = 0; t < n; ++t) xs.push_back(round_activations(type, x + t * cols, cols));
  for (int64_t r = 0; r < rows; ++r) {
    dequantize_row(type, static_cast<const uint8_t*>(w) + r * rb, wrow.data(), cols);
    for (int64_t t = 0; t < n; ++t) {
      double sum = 0;
      for (int64_t c = 0; c < cols; ++c) sum += static_cast<double>(wrow[c]) * xs[t][c];
      y[t * rows + r] = static_cast<float>(sum);
    }
  }
}

void get_rows(DType type, const void* table, int64_t cols, const int32_t* ids, int64_t n, float* out) {
  const size_t rb = row_bytes(type, cols);
  for (int64_t i = 0; i < n; ++i) {
    dequantize_row(type, static_cast<const uint8_t*>(table) + static_cast<size_t>(ids[i]) * rb, out + i * cols, cols);
  }
}

void rms_norm(const float* x, const float* weight, float eps, int64_t n, int64_t d, float* out) {
  for (int64_t i = 0; i < n; ++i) {
    const float* xi = x + i * d;
    double ss = 0;
    for (int64_t j = 0; j < d; ++j) ss += static_cast<double>(xi[j]) * xi[j];
    const double inv = 1.0 / std::sqrt(ss / d + eps);
    for (int64_t j = 0; j < d; ++j) out[i * d + j] = static_cast<float>(xi[j] * inv * weight[j]);
  }
}

void layer_norm(const float* x, const float* weight, const float* bias, float eps, int64_t n, int64_t d, float* out) {
  for (int64_t i = 0; i < n; ++i) {
    const float* xi = x + i * d;
    double mean = 0;
    for (int64_t j = 0; j < d; ++j) mean += xi[j];
    mean /= d;
    double var = 0;
    for (int64_t j = 0; j < d; ++j) var += (xi[j] - mean) * (xi[j] - mean);
    var /= d;
    const double inv = 1.0 / std::sqrt(var + eps);
    for (int64_t j = 0; j < d; ++j) out[i * d + j] = static_cast<float>((xi[j] - mean) * inv * weight[j] + bias[j]);
  }
}

void softmax(const float* x, int64_t n, int64_t d, float* out) {
  for (int64_t i = 0; i < n; ++i) {
    const float* xi = x + i * d;
    const double mx = *std::max_element(xi, xi + d);
    double sum = 0;
    std::vector<double> e(static_cast<size_t>(d));
    for (int64_t j = 0; j < d; ++j) sum += e[j] = std::exp(xi[j] - mx);
    for (int64_t j = 0; j < d; ++j) out[i * d + j] = static_cast<float>(e[j] / sum);
  }
}

void argmax(const float* x, int64_t n, int64_t d, int32_t* out) {
  for (int64_t i = 0; i < n; ++i) {
    const float* xi = x + i * d;
    int64_t best = 0;
    for (int64_t j = 1; j < d; ++j) {
      if (xi[j] > xi[best]) best = j;
    }
    out[i] = static_cast<int32_t>(best);
  }
}

void l2_normalize(const float* x, int64_t n, int64_t d, float* out) {
  for (int64_t i = 0; i < n; ++i) {
    const float* xi = x + i * d;
    double ss = 0;
    for (int64_t j = 0; j < d; ++j) ss += static_cast<double>(xi[j]) * xi[j];
    const double inv = 1.0 / std::max(std::sqrt(ss), 1e-12);
    for (int64_t j = 0; j < d; ++j) out[i * d + j] = static_cast<float>(xi[j] * inv);
  }
}

void mean_rows(const float* x, int64_t d, const int32_t* ranges, int64_t n_seq, float* out) {
  for (int64_t s = 0; s < n_seq; ++s) {
    const int32_t begin = ranges[2 * s], count = ranges[2 * s + 1];
    for (int64_t j = 0; j < d; ++j) {
      double sum = 0;
      for (int32_t r = begin; r < begin + count; ++r) sum += x[r * d + j];
      out[s * d + j] = count > 0 ? static_cast<float>(sum / count) : 0.0f;
    }
  }
}

void add(const float* a, const float* b, int64_t n, float* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = a[i] + b[i];
}

void mul(const float* a, const float* b, int64_t n, float* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = a[i] * b[i];
}

void silu_mul(const float* gate, const float* up, int64_t n, float* out) {
  for (int64_t i = 0; i < n; ++i) {
    const double g = gate[i];
    out[i] = static_cast<float>(g / (1.0 + std::exp(-g)) * up[i]);
  }
}

void gelu(const float* x, int64_t n, float* out) {
  constexpr double kSqrt2OverPi = 0.79788456080286535588;
  for (int64_t i = 0; i < n; ++i) {
    const double v = x[i];
    out[i] = static_cast<float>(0.5 * v * (1.0 + std::tanh(kSqrt2OverPi * v * (1.0 + 0.044715 * v * v))));
  }
}

void rope_cos_sin(int32_t pos, float theta, int n_dims, const float* freq_factors, float freq_scale, float* cs) {
  // Built by repeated multiplication in float, as llama.cpp does, so angles agree to the ulp.
  const float theta_scale = std::pow(theta, -2.0f / static_cast<float>(n_dims));
  float angle = static_cast<float>(pos);
  for (int i = 0; i < n_dims / 2; ++i) {
    const float ff = freq_factors != nullptr ? freq_factors[i] : 1.0f;
    const float a = freq_scale * (angle / ff);
    cs[2 * i] = std::cos(a);
    cs[2 * i + 1] = std::sin(a);
    angle *= theta_scale;
  }
}

void rope(float* x, const int32_t* positions, int64_t n, int n_heads, int head_dim, RopeStyle style, float theta,
          int n_dims, const float* freq_factors, float freq_scale) {
  if (style == RopeStyle::None) return;
  std::vector<float> cs(static_cast<size_t>(n_dims));
  const int half = n_dims / 2;
  for (int64_t t = 0; t < n; ++t) {
    rope_cos_sin(positions[t], theta, n_dims, freq_factors, freq_scale, cs.data());
    for (int h = 0; h < n_heads; ++h) {
      float* v = x + (t * n_heads + h) * head_dim;
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
}

void attention(const float* q, const void* k, const void* v, DType kv_type, const int32_t* ranges, int64_t n,
               int n_head, int n_head_kv, int head_dim, float scale, float* out, const KvPages& pages) {
  const int64_t kv_dim = int64_t{n_head_kv} * head_dim;
  const int group = n_head / n_head_kv;
  auto load = [&](const void* base, int64_t key, int64_t j) -> double {
    const int64_t idx = pages.row(key) * kv_dim + j;
    if (kv_type == DType::F16) return fp16_to_fp32(static_cast<const uint16_t*>(base)[idx]);
    if (kv_type == DType::Q8_0) {
      const block_q8_0& b = static_cast<const block_q8_0*>(base)[idx / QK8_0];
      return static_cast<double>(fp16_to_fp32(b.d)) * b.qs[idx % QK8_0];
    }
    return static_cast<const float*>(base)[idx];
  };
  for (int64_t i = 0; i < n; ++i) {
    const int32_t begin = ranges[2 * i], count = ranges[2 * i + 1];
    for (int h = 0; h < n_head; ++h) {
      const float* qh = q + (i * n_head + h) * head_dim;
      const int64_t kv_off = int64_t{h / group} * head_dim;
      std::vector<double> s(static_cast<size_t>(count));
      double mx = -std::numeric_limits<double>::infinity();
      for (int32_t c = 0; c < count; ++c) {
        double dot = 0;
        for (int d = 0; d < head_dim; ++d) dot += qh[d] * load(k, begin + c, kv_off + d);
        s[c] = dot * scale;
        mx = std::max(mx, s[c]);
      }
      double sum = 0;
      for (auto& e : s) sum += e = std::exp(e - mx);
      float* o = out + (i * n_head + h) * head_dim;
      for (int d = 0; d < head_dim; ++d) {
        double acc = 0;
        for (int32_t c = 0; c < count; ++c) acc += s[c] * load(v, begin + c, kv_off + d);
        o[d] = count > 0 ? static_cast<float>(acc / sum) : 0.0f;
      }
    }
  }
}

}  // namespace vireo::ref
