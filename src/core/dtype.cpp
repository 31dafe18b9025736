#include "vireo/core/dtype.h"

#include <array>

#include "vireo/core/quant_blocks.h"

namespace vireo {
namespace {

// Types vireo stores and dequantizes. Block sizes come from the layouts themselves so the two
// cannot drift apart.
constexpr DTypeTraits kTraits[] = {
    {DType::F32, "f32", 1, 4, false},
    {DType::F16, "f16", 1, 2, false},
    {DType::BF16, "bf16", 1, 2, false},
    {DType::F64, "f64", 1, 8, false},
    {DType::I8, "i8", 1, 1, false},
    {DType::I16, "i16", 1, 2, false},
    {DType::I32, "i32", 1, 4, false},
    {DType::I64, "i64", 1, 8, false},
    {DType::Q4_0, "q4_0", QK4_0, sizeof(block_q4_0), true},
    {DType::Q4_1, "q4_1", QK4_1, sizeof(block_q4_1), true},
    {DType::Q5_0, "q5_0", QK5_0, sizeof(block_q5_0), true},
    {DType::Q5_1, "q5_1", QK5_1, sizeof(block_q5_1), true},
    {DType::Q8_0, "q8_0", QK8_0, sizeof(block_q8_0), true},
    {DType::Q2_K, "q2_K", QK_K, sizeof(block_q2_K), true},
    {DType::Q3_K, "q3_K", QK_K, sizeof(block_q3_K), true},
    {DType::Q4_K, "q4_K", QK_K, sizeof(block_q4_K), true},
    {DType::Q5_K, "q5_K", QK_K, sizeof(block_q5_K), true},
    {DType::Q6_K, "q6_K", QK_K, sizeof(block_q6_K), true},
    {DType::Q8_K, "q8_K", QK_K, sizeof(block_q8_K), true},
    // MLX packs levels into little-endian uint32 words; scales and biases live in separate
    // tensors, so a "block" here is one word.
    {DType::MLX_Q4, "mlx_q4", 8, 4, true},
    {DType::MLX_Q8, "mlx_q8", 4, 4, true},
};

// Every GGML type id, spelled as llama.cpp prints it. Ids whose support llama.cpp removed keep
// their historical names so that error messages about old files still say what they hold.
// clang-format off
constexpr std::array<std::string_view, 43> kGgmlNames = {
    "f32", "f16", "q4_0", "q4_1", "q4_2", "q4_3", "q5_0", "q5_1",                   //  0..7
    "q8_0", "q8_1", "q2_K", "q3_K", "q4_K", "q5_K", "q6_K", "q8_K",                 //  8..15
    "iq2_xxs", "iq2_xs", "iq3_xxs", "iq1_s", "iq4_nl", "iq3_s", "iq2_s", "iq4_xs",  // 16..23
    "i8", "i16", "i32", "i64", "f64", "iq1_m", "bf16", "q4_0_4_4",                  // 24..31
    "q4_0_4_8", "q4_0_8_8", "tq1_0", "tq2_0",                                       // 32..35
    "iq4_nl_4_4", "iq4_nl_4_8", "iq4_nl_8_8", "mxfp4",                              // 36..39
    "nvfp4", "q1_0", "q2_0",                                                        // 40..42
};
// clang-format on

constexpr char ascii_lower(char c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

bool equals_ignore_case(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (ascii_lower(a[i]) != ascii_lower(b[i])) return false;
  }
  return true;
}

}  // namespace

std::optional<DTypeTraits> dtype_traits(DType t) {
  for (const DTypeTraits& traits : kTraits) {
    if (traits.type == t) return traits;
  }
  return std::nullopt;
}

std::string_view ggml_type_name(uint32_t id) {
  if (id < kGgmlNames.size()) return kGgmlNames[id];
  if (id == static_cast<uint32_t>(DType::MLX_Q4)) return "mlx_q4";
  if (id == static_cast<uint32_t>(DType::MLX_Q8)) return "mlx_q8";
  return "unknown";
}

std::optional<DType> dtype_from_name(std::string_view name) {
  for (const DTypeTraits& traits : kTraits) {
    if (equals_ignore_case(traits.name, name)) return traits.type;
  }
  return std::nullopt;
}

}  // namespace vireo
