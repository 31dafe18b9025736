// Scalar reference (de)quantization: the oracle every fast kernel is tested against.
// Plain loops, written for clarity; speed does not matter here.
//
// GGML formats (quantize_row) reproduce llama.cpp's reference quantizers (quantize_row_*_ref),
// so a row quantized here is the row llama.cpp would write, bit for bit, and dequantizes to the
// same values in any GGML-compatible engine.
//
// All functions throw vireo::Error: ErrorCode::Unsupported for a type (or MLX bits / group
// size) they do not handle, ErrorCode::InvalidArgument when n is negative or not a multiple of
// the type's block (or group) size. The message names the type and the sizes involved.
#pragma once
#include <cstddef>
#include <cstdint>

#include "vireo/core/dtype.h"

namespace vireo::ref {

// Bytes occupied by n elements of t (for MLX types: the packed words only).
size_t row_bytes(DType t, int64_t n);

// Whether dequantize_row / quantize_row handle t.
bool can_dequantize(DType t);
bool can_quantize(DType t);

// src holds row_bytes(t, n) bytes; writes n floats. Handles F32, F16, BF16, F64, I8..I64 (plain
// conversion), Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_K.
void dequantize_row(DType t, const void* src, float* dst, int64_t n);

// Writes row_bytes(t, n) bytes. Handles F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K,
// Q3_K, Q4_K, Q5_K, Q6_K, Q8_K.
void quantize_row(DType t, const float* src, void* dst, int64_t n);

// MLX affine group quantization: element i of group g is scales[g] * q_i + biases[g]; the
// levels q are packed `32 / bits` to a uint32 word, element k of a word in bits
// [bits*k, bits*k + bits). bits: 2, 4 or 8; group_size: 32, 64 or 128; n a multiple of it.
// packed holds n * bits / 32 words; scales and biases n / group_size floats each.
void dequantize_mlx_row(int bits, int group_size, const uint32_t* packed, const float* scales,
                        const float* biases, float* dst, int64_t n);

// The inverse, as mlx.core.quantize (mode "affine") computes it for float32 input: the group's
// edge of larger magnitude becomes level 0 exactly (the bias), and the scale is nudged so that
// zero falls on a level too when the group spans it.
void quantize_mlx_row(int bits, int group_size, const float* src, uint32_t* packed, float* scales,
                      float* biases, int64_t n);

}  // namespace vireo::ref
