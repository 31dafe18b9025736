#include "vireo/models/type_plan.h"

#include "vireo/core/error.h"
#include "vireo/core/quant_blocks.h"

namespace vireo {

std::vector<std::string> file_type_names() {
  return {"f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "q2_k", "q3_k_m", "q4_k_s", "q4_k_m", "q5_k_m", "q6_k"};
}

TypePlan plan_for(const std::string& t) {
  if (t == "f32") return {DType::F32, DType::F32, DType::F32, DType::F32, 0};
  if (t == "f16") return {DType::F16, DType::F16, DType::F16, DType::F16, 1};
  if (t == "bf16") return {DType::BF16, DType::BF16, DType::BF16, DType::BF16, 32};
  if (t == "q8_0") return {DType::Q8_0, DType::Q8_0, DType::Q8_0, DType::Q8_0, 7};
  if (t == "q4_0") return {DType::Q4_0, DType::Q4_0, DType::Q6_K, DType::Q4_0, 2};
  if (t == "q4_1") return {DType::Q4_1, DType::Q4_1, DType::Q6_K, DType::Q4_1, 3};
  if (t == "q5_0") return {DType::Q5_0, DType::Q5_0, DType::Q6_K, DType::Q5_0, 8};
  if (t == "q5_1") return {DType::Q5_1, DType::Q5_1, DType::Q6_K, DType::Q5_1, 9};
  if (t == "q2_k") return {DType::Q2_K, DType::Q2_K, DType::Q6_K, DType::Q3_K, 10};
  if (t == "q3_k_m") return {DType::Q3_K, DType::Q3_K, DType::Q6_K, DType::Q4_K, 12};
  if (t == "q4_k_s") return {DType::Q4_K, DType::Q4_K, DType::Q6_K, DType::Q4_K, 14};
  if (t == "q4_k_m") return {DType::Q4_K, DType::Q4_K, DType::Q6_K, DType::Q6_K, 15};
  if (t == "q5_k_m") return {DType::Q5_K, DType::Q5_K, DType::Q6_K, DType::Q6_K, 17};
  if (t == "q6_k") return {DType::Q6_K, DType::Q6_K, DType::Q6_K, DType::Q6_K, 18};
  std::string all;
  for (const auto& s : file_type_names()) all += (all.empty() ? "" : ", ") + s;
  fail(ErrorCode::InvalidArgument, "unknown weight type '{}' (choose one of: {})", t, all);
}

bool use_more_bits(uint32_t layer, uint32_t n_layer) {
  return layer < n_layer / 8 || layer >= 7 * n_layer / 8 || (layer - n_layer / 8) % 3 == 2;
}

DType fit_row(DType t, uint64_t row) {
  if (row % QK_K == 0) return t;
  switch (t) {
    case DType::Q2_K: case DType::Q3_K: case DType::Q4_K: return DType::Q5_0;
    case DType::Q5_K: return DType::Q5_1;
    case DType::Q6_K: return DType::Q8_0;
    default: return t;
  }
}

}  // namespace vireo
