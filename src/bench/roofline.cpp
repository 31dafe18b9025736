#include "vireo/bench/roofline.h"

#include <algorithm>

#include <fmt/format.h>

namespace vireo {

ModelCost model_cost(const ModelConfig& c, double weight_bytes, DType weights, DType kv_type) {
  ModelCost m;
  m.weight_bytes = weight_bytes;
  const double E = c.n_embd, F = c.n_ff, L = c.n_layer;
  const double q = double(c.n_head) * c.head_dim, kv = double(c.n_head_kv) * c.head_dim;
  const double ffn = c.family == ArchFamily::Bert ? 2 * E * F : 3 * E * F;
  m.matmul_params = L * (E * q + 2 * E * kv + q * E + ffn) + double(c.n_vocab) * E;
  const double kv_elem = kv_type == DType::F32 ? 4 : kv_type == DType::Q8_0 ? 34.0 / 32 : 2;
  m.kv_bytes_per_pos = L * 2 * kv * kv_elem;
  m.attn_flops_per_pos = L * 4 * q;  // q.k and p.v
  m.quantized = weights != DType::F32 && weights != DType::F16 && weights != DType::BF16;
  m.four_bit = weights == DType::Q4_0 || weights == DType::Q4_1 || weights == DType::Q4_K || weights == DType::MLX_Q4;
  return m;
}

Roofline analyze(const ModelCost& c, const HardwarePeaks& p, int n_prompt, int n_gen, int depth, int batch,
                 double tokens_per_s) {
  Roofline r;
  batch = std::max(batch, 1);
  // Tokens processed per pass over the weights, and the mean context each token attends to.
  double per_pass = 1, mean_ctx = depth;
  if (n_prompt > 0) {
    per_pass = n_prompt;
    mean_ctx = depth + (n_prompt + 1) / 2.0;
  } else {
    per_pass = batch;
    mean_ctx = depth + (n_gen + 1) / 2.0;
  }
  // Prefill reads each sequence's KV once per pass (in cache for the pass); decode reads it per token.
  const double kv_read = n_prompt > 0 ? c.kv_bytes_per_pos * mean_ctx / per_pass : c.kv_bytes_per_pos * mean_ctx;
  r.bytes_per_token = c.weight_bytes / per_pass + kv_read + c.kv_bytes_per_pos;
  r.flops_per_token = 2 * c.matmul_params + c.attn_flops_per_pos * mean_ctx;
  r.achieved_gb_s = r.bytes_per_token * tokens_per_s / 1e9;
  r.achieved_tflops = r.flops_per_token * tokens_per_s / 1e12;
  r.intensity = r.flops_per_token / r.bytes_per_token;
  const double peak_compute = c.quantized ? p.int8_tops : p.float_tflops;
  const double memory_roof = r.intensity * p.mem_gb_s / 1e3;  // TFLOP/s
  r.attainable_tflops = std::min(peak_compute, memory_roof);
  r.fraction = r.attainable_tflops > 0 ? r.achieved_tflops / r.attainable_tflops : 0;
  r.bandwidth_fraction = p.mem_gb_s > 0 ? r.achieved_gb_s / p.mem_gb_s : 0;
  r.compute_fraction = peak_compute > 0 ? r.achieved_tflops / peak_compute : 0;
  r.bound = memory_roof < peak_compute ? "memory" : "compute";
  const bool decode = n_prompt == 0;
  const bool gpu = p.device.rfind("cuda", 0) == 0;
  if (r.fraction < 0.3) {
    r.verdict = "under-utilised";
    if (gpu) {
      r.advice = fmt::format(
          "{} reaches {:.0f}% of the {} roof: the time goes to small kernels and the gaps between them, not to the "
          "weight reads; {}",
          decode ? "decode" : "prefill", 100 * r.fraction, r.bound,
          decode ? "larger batches of sequences use the GPU better" : "a longer prompt chunk should help");
    } else {
      r.advice = fmt::format(
          "{} reaches {:.0f}% of the {} roof: the time goes to overheads (threads waiting, small ops); {}",
          decode ? "decode" : "prefill", 100 * r.fraction, r.bound,
          decode ? "fewer threads or larger batches of sequences use the machine better"
                 : "a longer prompt chunk or more threads should help");
    }
  } else if (r.bound == "memory") {
    r.verdict = "memory-bound";
    r.advice = fmt::format("{} reads {:.2f} GB per token and reaches {:.0f}% of the measured bandwidth ({:.1f} GB/s): {}",
                           decode ? "decode" : "prefill", r.bytes_per_token / 1e9, 100 * r.bandwidth_fraction, p.mem_gb_s,
                           c.four_bit ? "batch requests to reuse each weight read for several tokens"
                                      : "batch requests or use a 4-bit type to read fewer bytes per token");
  } else {
    r.verdict = "compute-bound";
    r.advice = fmt::format("{} runs {:.2f} TOP/s, {:.0f}% of the measured matrix peak: {}", decode ? "decode" : "prefill",
                           r.achieved_tflops, 100 * r.compute_fraction,
                           c.quantized ? "only faster matrix units (or fewer parameters) go further"
                                       : "a quantized type uses the integer units, which are faster");
  }
  return r;
}

}  // namespace vireo
