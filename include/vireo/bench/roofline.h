// Where a measured speed sits against the machine's roofline, and what to do about it.
#pragma once
#include <string>

#include "vireo/bench/probe.h"
#include "vireo/formats/model.h"

namespace vireo {

// What one token costs a model, as the engine runs it.
struct ModelCost {
  double weight_bytes = 0;    // read by one forward pass
  double matmul_params = 0;   // weight elements multiplied per token
  double kv_bytes_per_pos = 0;  // K and V bytes of one position, all layers
  double attn_flops_per_pos = 0;  // attention flops per (token, cached position)
  bool quantized = false;     // int8 dot products (else float)
  bool four_bit = false;
};
ModelCost model_cost(const ModelConfig& c, double weight_bytes, DType weights, DType kv_type);

struct Roofline {
  double bytes_per_token = 0, flops_per_token = 0;
  double achieved_gb_s = 0, achieved_tflops = 0;
  double intensity = 0;          // flops per byte
  double attainable_tflops = 0;  // min(peak compute, intensity * bandwidth)
  double fraction = 0;           // achieved / attainable
  double bandwidth_fraction = 0, compute_fraction = 0;
  std::string bound;    // "memory" or "compute": which roof is lower at this intensity
  std::string verdict;  // "memory-bound", "compute-bound", "under-utilised"
  std::string advice;
};

// A test of n_prompt prefill tokens or n_gen decoded tokens (batch sequences at a time) at
// context depth `depth`, run at `tokens_per_s` (all sequences together).
Roofline analyze(const ModelCost& cost, const HardwarePeaks& peaks, int n_prompt, int n_gen, int depth, int batch,
                 double tokens_per_s);

}  // namespace vireo
