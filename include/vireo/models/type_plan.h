// Which type each tensor gets for a llama.cpp-style file type ("q4_k_m", "q8_0", ...): the mixes
// follow llama.cpp's rules, so files written by `vireo synth` and `vireo quantize` match its own.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "vireo/core/dtype.h"

namespace vireo {

struct TypePlan {
  DType base;                    // big matrices
  DType embd;                    // token_embd
  DType output;                  // output.weight
  DType more_bits = DType::F32;  // attn_v / ffn_down on the layers llama.cpp favours (K mixes)
  uint32_t file_type;            // general.file_type (llama_ftype)
};

// "f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "q2_k", "q3_k_m", "q4_k_s",
// "q4_k_m", "q5_k_m", "q6_k"; anything else throws InvalidArgument listing these.
std::vector<std::string> file_type_names();
TypePlan plan_for(const std::string& file_type);

// llama.cpp's rule for which layers of a K-quant mix get more bits.
bool use_more_bits(uint32_t layer, uint32_t n_layer);

// K-quants need rows of 256; llama.cpp falls back to these legacy types otherwise.
DType fit_row(DType t, uint64_t row);

}  // namespace vireo
