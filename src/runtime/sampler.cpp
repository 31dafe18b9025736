#include "vireo/runtime/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <unordered_map>

#include "vireo/core/error.h"

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

  if (p.temperature <= 0.0f) {
    return static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
  }

  // Candidates, best first.
  candidates_.clear();
  for (int32_t i = 0; i < n_vocab; ++i) {
    if (logits[i] > -std::numeric_limits<float>::infinity()) candidates_.push_back({logits[i], i});
  }
  if (candidates_.empty()) fail(ErrorCode::InvalidArgument, "sample: every token is banned");
  auto by_logit = [](const auto& a, const auto& b) { return a.first > b.first || (a.first == b.first && a.second < b.second); };
  if (p.top_k > 0 && static_cast<size_t>(p.top_k) < candidates_.size()) {
    std::partial_sort(candidates_.begin(), candidates_.begin() + p.top_k, candidates_.end(), by_logit);
    candidates_.resize(static_cast<size_t>(p.top_k));
  } else {
    std::sort(candidates_.begin(), candidates_.end(), by_logit);
  }

  // Probabilities before temperature, for top-p and min-p.
  auto probabilities = [&](float temperature) {
    std::vector<double> probs(candidates_.size());
    const double max = candidates_.front().first;
    double sum = 0;
    for (size_t i = 0; i < candidates_.size(); ++i) sum += probs[i] = std::exp((candidates_[i].first - max) / temperature);
    for (auto& x : probs) x /= sum;
    return probs;
  };
  if (p.top_p < 1.0f) {
    const std::vector<double> probs = probabilities(1.0f);
    double cum = 0;
    size_t keep = 0;
    while (keep < probs.size()) {
      cum += probs[keep++];
      if (cum >= p.top_p) break;
    }
    candidates_.resize(std::max<size_t>(keep, 1));
  }
  if (p.min_p > 0.0f) {
    const std::vector<double> probs = probabilities(1.0f);
    size_t keep = 1;
    while (keep < probs.size() && probs[keep] >= p.min_p * probs[0]) ++keep;
    candidates_.resize(keep);
  }
  const std::vector<double> probs = probabilities(p.temperature);
  std::discrete_distribution<size_t> dist(probs.begin(), probs.end());
  return candidates_[dist(rng_)].second;
}

}  // namespace vireo
