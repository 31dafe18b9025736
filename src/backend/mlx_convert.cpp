#include "backend/mlx_convert.h"

#include <cstring>

#include "vireo/core/error.h"
#include "vireo/core/quant_blocks.h"
#include "vireo/kernels/ref/quant.h"

namespace vireo {

DType convert_mlx(const Tensor& t, std::vector<uint8_t>& out) {
  const int bits = t.type == DType::MLX_Q4 ? 4 : t.type == DType::MLX_Q8 ? 8 : 0;
  if (bits == 0)
    fail(ErrorCode::Unsupported, "{}: MLX weights of type {} are not supported", t.name, static_cast<int>(t.type));
  const auto rows = static_cast<int64_t>(t.rows()), cols = static_cast<int64_t>(t.cols());
  const int64_t G = t.mlx_group_size, n_groups = cols / G;
  auto param = [&](const uint8_t* base, int64_t i) {
    uint16_t h;
    std::memcpy(&h, base + 2 * i, 2);
    return t.mlx_scale_type == DType::BF16 ? bf16_to_fp32(h) : t.mlx_scale_type == DType::F16 ? fp16_to_fp32(h) : 0.0f;
  };
  auto param_f32 = [&](const uint8_t* base, int64_t i) {
    float f;
    std::memcpy(&f, base + 4 * i, 4);
    return f;
  };
  std::vector<float> scales(static_cast<size_t>(rows * n_groups)), biases(scales.size());
  for (size_t i = 0; i < scales.size(); ++i) {
    const bool f32 = t.mlx_scale_type == DType::F32;
    scales[i] = f32 ? param_f32(t.mlx_scales, static_cast<int64_t>(i)) : param(t.mlx_scales, static_cast<int64_t>(i));
    biases[i] = f32 ? param_f32(t.mlx_biases, static_cast<int64_t>(i)) : param(t.mlx_biases, static_cast<int64_t>(i));
  }
  const auto* packed = reinterpret_cast<const uint32_t*>(t.data);
  const int64_t words_per_row = cols * bits / 32;
  bool exact_f16 = bits == 4;
  for (size_t i = 0; i < scales.size() && exact_f16; ++i) {
    exact_f16 =
        fp16_to_fp32(fp32_to_fp16(scales[i])) == scales[i] && fp16_to_fp32(fp32_to_fp16(biases[i])) == biases[i];
  }
  if (exact_f16) {
    const size_t row_bytes = ref::row_bytes(DType::Q4_1, cols);
    out.assign(static_cast<size_t>(rows) * row_bytes, 0);
    for (int64_t r = 0; r < rows; ++r) {
      auto* blocks = reinterpret_cast<block_q4_1*>(out.data() + static_cast<size_t>(r) * row_bytes);
      const uint32_t* words = packed + r * words_per_row;
      for (int64_t b = 0; b < cols / 32; ++b) {
        const int64_t g = r * n_groups + b * 32 / G;
        blocks[b].d = fp32_to_fp16(scales[static_cast<size_t>(g)]);
        blocks[b].m = fp32_to_fp16(biases[static_cast<size_t>(g)]);
        auto level = [&](int64_t k) { return (words[(b * 32 + k) / 8] >> (4 * ((b * 32 + k) % 8))) & 15u; };
        for (int j = 0; j < 16; ++j) blocks[b].qs[j] = static_cast<uint8_t>(level(j) | (level(j + 16) << 4));
      }
    }
    return DType::Q4_1;
  }
  out.assign(static_cast<size_t>(rows * cols) * sizeof(float), 0);
  auto* dst = reinterpret_cast<float*>(out.data());
  for (int64_t r = 0; r < rows; ++r) {
    ref::dequantize_mlx_row(bits, static_cast<int>(G), packed + r * words_per_row, scales.data() + r * n_groups,
                            biases.data() + r * n_groups, dst + r * cols, cols);
  }
  return DType::F32;
}

}  // namespace vireo
