#include "vireo/runtime/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <unordered_map>

#include "vireo/core/error.h"
#include "vireo/kernels/ref/sample.h"

namespace vireo {

Sampler::Sampler(SamplingParams params) : params_(std::move(params)), rng_(params_.seed) {
  const SamplingParams& p = params_;
  if (!(p.top_p > 0.0f && p.top_p <= 1.0f)) fail(ErrorCode::InvalidArgument, "top_p must be in (0, 1], got {}", p.top_p);
  if (!(p.min_p >= 0.0f && p.min_p <= 1.0f)) fail(ErrorCode::InvalidArgument, "min_p must be in [0, 1], got {}", p.min_p);
  if (p.top_k < 0) fail(ErrorCode::InvalidArgument, "top_k must be >= 0, got {}", p.top_k);
  if (!(p.repetition_penalty > 0.0f)) fail(ErrorCode::InvalidArgument, "repetition_penalty must be > 0");
  if (!std::isfinite(p.temperature)) fail(ErrorCode::InvalidArgument, "temperature must be finite");
}

int32_t Sampler::sample(std::span<float> logits, std::span<const int32_t> history) {
  const SamplingParams& p = params_;
  const auto n_vocab = static_cast<int32_t>(logits.size());
  if (n_vocab == 0) fail(ErrorCode::InvalidArgument, "sample: no logits");
  for (const auto& [token, bias] : p.logit_bias) {
    if (token < 0 || token >= n_vocab) fail(ErrorCode::InvalidArgument, "logit_bias: token {} is outside the vocabulary", token);
    logits[token] += bias;
  }

  if (p.repetition_penalty != 1.0f || p.presence_penalty != 0.0f || p.frequency_penalty != 0.0f) {
    const size_t window = p.penalty_last_n < 0 ? history.size() : std::min<size_t>(history.size(), p.penalty_last_n);
    std::unordered_map<int32_t, int> counts;
    for (size_t i = history.size() - window; i < history.size(); ++i) ++counts[history[i]];
    for (const auto& [token, count] : counts) {
      if (token < 0 || token >= n_vocab) continue;
      float& l = logits[token];
      l = l > 0 ? l / p.repetition_penalty : l * p.repetition_penalty;
      l -= static_cast<float>(count) * p.frequency_penalty + p.presence_penalty;
    }
  }

  return ref::draw_token(logits.data(), n_vocab, draw_params());
}

bool Sampler::backend_can_draw() const {
  const SamplingParams& p = params_;
  return p.logit_bias.empty() && p.repetition_penalty == 1.0f && p.presence_penalty == 0.0f && p.frequency_penalty == 0.0f;
}

DrawParams Sampler::draw_params() {
  const SamplingParams& p = params_;
  DrawParams d;
  d.temperature = p.temperature;
  d.top_k = static_cast<float>(p.top_k);
  d.top_p = p.top_p;
  d.min_p = p.min_p;
  d.u = p.temperature > 0.0f ? next_uniform() : 0.0f;
  return d;
}

std::vector<DrawParams> backend_draws(std::span<Sampler* const> rows) {
  const bool any_draw = std::any_of(rows.begin(), rows.end(), [](const Sampler* s) { return s != nullptr && s->params().temperature > 0.0f; });
  std::vector<DrawParams> draws;
  if (!any_draw) return draws;
  draws.reserve(rows.size());
  for (Sampler* s : rows) draws.push_back(s != nullptr ? s->draw_params() : DrawParams{});
  return draws;
}

float Sampler::next_uniform() {
  // 24 random bits: every float in [0, 1) that a step of 2^-24 reaches, never 1.
  return static_cast<float>(rng_() >> 40) * 0x1p-24f;
}

}  // namespace vireo
