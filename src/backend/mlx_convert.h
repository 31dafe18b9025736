// MLX affine group-quantized weights (scale * q + bias per group) re-expressed in a type the
// kernels of every backend know, with the same values: 4-bit groups become Q4_1 blocks (d = scale,
// m = bias) when both fit F16 exactly, anything else F32.
#pragma once
#include <cstdint>
#include <vector>

#include "vireo/core/dtype.h"
#include "vireo/formats/model.h"

namespace vireo {

// Writes the converted rows to `out` and returns their type.
DType convert_mlx(const Tensor& t, std::vector<uint8_t>& out);

}  // namespace vireo
