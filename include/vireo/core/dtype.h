// Element and quantized-block types. The numeric ids are GGML's (so GGUF files map 1:1);
// vireo-only formats take ids from 1000 up. Append-only: never renumber.
#pragma once
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace vireo {

enum class DType : uint32_t {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q4_1 = 3,
  Q5_0 = 6,
  Q5_1 = 7,
  Q8_0 = 8,
  Q8_1 = 9,
  Q2_K = 10,
  Q3_K = 11,
  Q4_K = 12,
  Q5_K = 13,
  Q6_K = 14,
  Q8_K = 15,
  I8 = 24,
  I16 = 25,
  I32 = 26,
  I64 = 27,
  F64 = 28,
  BF16 = 30,
  // vireo-only: MLX affine group quantization (packed uint32 words + per-group scale/bias).
  MLX_Q4 = 1000,
  MLX_Q8 = 1001,
};

struct DTypeTraits {
  DType type;
  std::string_view name;   // as llama.cpp prints it: "f16", "q4_0", "q4_K", ...
  uint32_t block_elems;    // elements per block (1 for plain types)
  uint32_t block_bytes;    // bytes per block
  bool is_quantized;
};

// Traits of a type vireo can store and dequantize; nullopt for unknown or unsupported ids.
std::optional<DTypeTraits> dtype_traits(DType t);
// Name of any GGML type id, also ones vireo does not support ("iq2_xxs"), or "unknown".
std::string_view ggml_type_name(uint32_t id);
// Parses "f16", "Q4_K", "q8_0", "bf16" (case-insensitive). nullopt when unknown.
std::optional<DType> dtype_from_name(std::string_view name);

// Bytes of a row of n elements; n must be a multiple of the block size (checked by callers).
inline constexpr uint64_t QK_K = 256;

}  // namespace vireo
