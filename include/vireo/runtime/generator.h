// Text generation on token ids: prefill the prompt (in chunks), then decode one token per step
// until a stop token, the token limit or the caller says stop. Several prompts can be decoded
// together, one forward per step carrying one token of every live sequence.
#pragma once
#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "vireo/models/language_model.h"
#include "vireo/runtime/kv_cache.h"
#include "vireo/runtime/sampler.h"

namespace vireo {

enum class StopReason { MaxTokens, StopToken, Callback };
const char* stop_reason_name(StopReason r);

struct GenerateOptions {
  int32_t max_tokens = 128;
  SamplingParams sampling;
  std::vector<int32_t> stop_tokens;  // generation ends after emitting one of these
  int32_t prefill_chunk = 512;       // prompt tokens per forward
};

struct Timings {
  int64_t prompt_tokens = 0;
  double prefill_ms = 0;         // prompt forwards and the first token's sampling
  int64_t decode_tokens = 0;     // tokens produced by single-token forwards (all but the first)
  double decode_ms = 0;
  double prefill_tokens_per_s() const { return prefill_ms > 0 ? 1000.0 * prompt_tokens / prefill_ms : 0; }
  double decode_tokens_per_s() const { return decode_ms > 0 ? 1000.0 * decode_tokens / decode_ms : 0; }
};

struct GenerateResult {
  std::vector<int32_t> tokens;  // generated tokens, including the stop token when one ended it
  StopReason stop = StopReason::MaxTokens;
  Timings timings;
};

// Called with each new token; return false to stop.
using TokenCallback = std::function<bool(int32_t token)>;

class Generator {
 public:
  Generator(LanguageModel& model, KvCache& cache) : model_(model), cache_(cache) {}

  // One sequence from an empty state (it uses, then frees, its own cells of the cache).
  GenerateResult generate(std::span<const int32_t> prompt, const GenerateOptions& options,
                          const TokenCallback& on_token = {});

  // Several sequences decoded in one batch per step; same options for all (each sampler is
  // seeded with seed + index).
  std::vector<GenerateResult> generate_batch(const std::vector<std::vector<int32_t>>& prompts,
                                             const GenerateOptions& options);

  // Teacher-forced: the logits after every token, [tokens.size(), n_vocab] row-major.
  std::vector<float> score(std::span<const int32_t> tokens, int32_t chunk = 512);

 private:
  LanguageModel& model_;
  KvCache& cache_;
};

}  // namespace vireo
