// Model conversion: re-quantize a float GGUF to a llama.cpp file type (Q8_0, Q4_0, Q4_K_M, ...),
// or a float safetensors model (Hugging Face folder) to MLX affine 4/8-bit in MLX's layout.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "vireo/core/dtype.h"

namespace vireo {

struct QuantizeOptions {
  std::string type;              // a file type of file_type_names(), or "mlx-q4" / "mlx-q8"
  uint32_t mlx_group_size = 64;  // MLX only: 32, 64 or 128
  bool allow_requantize = false; // GGUF input that is already quantized
  unsigned threads = 0;
};

struct QuantizedTensor {
  std::string name;
  std::vector<uint64_t> shape;  // outermost first
  std::string from, to;         // type names
  uint64_t bytes_in = 0, bytes_out = 0;
};

struct QuantizeResult {
  std::string format;  // "gguf" or "mlx"
  std::vector<QuantizedTensor> tensors;
  uint64_t bytes_in = 0, bytes_out = 0;
};

// Plans the conversion and, unless dry_run, writes `out` (a GGUF file, or for MLX a folder with
// config.json, model.safetensors and the tokenizer files). Written atomically.
QuantizeResult quantize_model(const std::string& in, const std::string& out, const QuantizeOptions& options,
                              bool dry_run, const std::function<void(size_t, size_t)>& progress = {});

}  // namespace vireo
