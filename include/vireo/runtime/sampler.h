// Turns a row of logits into the next token. The steps run in llama.cpp's order: logit bias,
// repetition / presence / frequency penalties, top-k, top-p, min-p, temperature, then a seeded
// draw. Temperature <= 0 is greedy (argmax after bias and penalties).
#pragma once
#include <cstdint>
#include <random>
#include <span>
#include <utility>
#include <vector>

#include "vireo/kernels/ref/sample.h"

namespace vireo {

struct SamplingParams {
  float temperature = 0.0f;     // <= 0: greedy
  int32_t top_k = 0;            // 0: off
  float top_p = 1.0f;           // 1: off
  float min_p = 0.0f;           // 0: off; keep tokens with p >= min_p * p_max
  float repetition_penalty = 1.0f;  // 1: off; divides positive logits of seen tokens, multiplies negative ones
  float presence_penalty = 0.0f;    // subtracted once from every seen token
  float frequency_penalty = 0.0f;   // subtracted per occurrence
  int32_t penalty_last_n = 64;      // how much history the penalties look at; -1: all
  std::vector<std::pair<int32_t, float>> logit_bias;  // added to the token's logit (-inf bans it)
  uint64_t seed = 0;
};

class Sampler {
 public:
  explicit Sampler(SamplingParams params);
  const SamplingParams& params() const { return params_; }
  // Picks a token; `logits` (n_vocab values) is modified. `history`: the tokens so far.
  int32_t sample(std::span<float> logits, std::span<const int32_t> history);
  // Whether the logits need no edit before the draw (no bias, no penalties): then a backend's
  // `sample` op can draw where the logits are, with next_uniform() as u.
  bool backend_can_draw() const;
  // The draw's parameters for a backend's `sample` op; takes one uniform from the seeded stream
  // (when the temperature is above 0), as sample() would.
  DrawParams draw_params();

 private:
  float next_uniform();
  SamplingParams params_;
  std::mt19937_64 rng_;
};

// The draws of a step's output rows for a backend's `sample` op, one per row (nullptr: a row
// whose token is not drawn there, or an argmax). Empty, so the backend takes every row's argmax
// (the cheaper op), when no drawn row has a temperature above 0.
std::vector<DrawParams> backend_draws(std::span<Sampler* const> rows);

}  // namespace vireo
