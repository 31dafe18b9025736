#include "vireo/runtime/sampler.h"

#include <algorithm>
#include <cmath>
#include <bit>
#include <limits>
#include <unordered_map>

#include "vireo/core/error.h"

namespace vireo {
namespace {

// exp(x) for x <= 0 to about 2 ulp, written so the compiler vectorises the loop that calls it:
// x = n*ln2 + r, exp(r) by a degree-6 polynomial, 2^n put into the exponent bits.
inline float exp_nonpositive(float x) {
  x = x < -87.0f ? -87.0f : x;  // below this the weight is 0 in any float sum that matters
  const float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;  // round to nearest, branch-free
  const float r = x - n * 0.693145751953125f - n * 1.428606765330187045e-06f;
  float p = 1.0f / 720;
  p = p * r + 1.0f / 120;
  p = p * r + 1.0f / 24;
  p = p * r + 1.0f / 6;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  return p * std::bit_cast<float>(static_cast<int32_t>(n + 127.0f) << 23);
}

}  // namespace

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

  const bool truncating = (p.top_k > 0 && p.top_k < n_vocab) || p.top_p < 1.0f || p.min_p > 0.0f;
  if (!truncating) {  // a draw from the whole distribution: two linear passes, no sorting
    const float max = *std::max_element(logits.begin(), logits.end());
    if (!(max > -std::numeric_limits<float>::infinity())) fail(ErrorCode::InvalidArgument, "sample: every token is banned");
    weights_.resize(logits.size());
    const float inv_t = 1.0f / p.temperature;
    constexpr float kBanned = -std::numeric_limits<float>::infinity();
    for (size_t i = 0; i < logits.size(); ++i) {
      // Branch-free, so the loop vectorises; a banned token's weight is 0.
      weights_[i] = exp_nonpositive((logits[i] - max) * inv_t) * static_cast<float>(logits[i] > kBanned);
    }
    // Sums of blocks of 256, so the draw walks blocks, then one block.
    constexpr size_t kBlock = 256;
    const size_t n = weights_.size(), n_blocks = (n + kBlock - 1) / kBlock;
    block_sums_.resize(n_blocks);
    double z = 0;
    for (size_t b = 0; b < n_blocks; ++b) {
      const size_t end = std::min(n, (b + 1) * kBlock);
      double acc[4] = {0, 0, 0, 0};
      size_t i = b * kBlock;
      for (; i + 4 <= end; i += 4) {
        for (size_t k = 0; k < 4; ++k) acc[k] += weights_[i + k];
      }
      for (; i < end; ++i) acc[0] += weights_[i];
      block_sums_[b] = (acc[0] + acc[1]) + (acc[2] + acc[3]);
      z += block_sums_[b];
    }
    double target = std::uniform_real_distribution<double>(0.0, z)(rng_);
    for (size_t b = 0; b < n_blocks; ++b) {
      if (target >= block_sums_[b] && b + 1 < n_blocks) {
        target -= block_sums_[b];
        continue;
      }
      size_t last = n;  // the last token with weight in the block, for rounding at its end
      for (size_t i = b * kBlock; i < std::min(n, (b + 1) * kBlock); ++i) {
        if (weights_[i] <= 0) continue;
        last = i;
        if (target < weights_[i]) return static_cast<int32_t>(i);
        target -= weights_[i];
      }
      if (last < n) return static_cast<int32_t>(last);
    }
    return static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
  }

  // Candidates: every token not banned. Sorting 100k+ of them would cost more than a decode step,
  // so only the best-first prefix that top-k / top-p / min-p keep is ever sorted.
  candidates_.clear();
  float max = -std::numeric_limits<float>::infinity();
  for (int32_t i = 0; i < n_vocab; ++i) {
    if (logits[i] > -std::numeric_limits<float>::infinity()) {
      candidates_.push_back({logits[i], i});
      max = std::max(max, logits[i]);
    }
  }
  if (candidates_.empty()) fail(ErrorCode::InvalidArgument, "sample: every token is banned");
  auto by_logit = [](const auto& a, const auto& b) { return a.first > b.first || (a.first == b.first && a.second < b.second); };
  auto sort_prefix = [&](size_t k) {
    std::partial_sort(candidates_.begin(), candidates_.begin() + static_cast<ptrdiff_t>(k), candidates_.end(), by_logit);
  };
  size_t sorted = 0;  // candidates_[0, sorted) are the best, in order
  if (p.top_k > 0 && static_cast<size_t>(p.top_k) < candidates_.size()) {
    sort_prefix(static_cast<size_t>(p.top_k));
    candidates_.resize(static_cast<size_t>(p.top_k));
    sorted = candidates_.size();
  }
  if (p.top_p < 1.0f) {
    // Probabilities at temperature 1 over all candidates; the kept prefix is usually short, so
    // sort a growing prefix until it holds top_p of the mass.
    double z = 0;
    for (const auto& c : candidates_) z += std::exp(static_cast<double>(c.first - max));
    for (size_t k = std::min<size_t>(64, candidates_.size());; k = std::min(candidates_.size(), k * 8)) {
      if (k > sorted) sort_prefix(k), sorted = k;
      double cum = 0;
      size_t keep = 0;
      while (keep < k && cum < p.top_p) cum += std::exp(static_cast<double>(candidates_[keep++].first - max)) / z;
      if (cum >= p.top_p || k == candidates_.size()) {
        candidates_.resize(std::max<size_t>(keep, 1));
        sorted = candidates_.size();
        break;
      }
    }
  }
  if (p.min_p > 0.0f) {
    // Keep p >= min_p * p_max, i.e. exp(logit - max) >= min_p: the top token always passes.
    auto passes = [&](const std::pair<float, int32_t>& c) { return std::exp(static_cast<double>(c.first - max)) >= p.min_p; };
    const auto kept = std::partition(candidates_.begin(), candidates_.end(), passes);
    candidates_.erase(kept, candidates_.end());
    std::sort(candidates_.begin(), candidates_.end(), by_logit);
  }
  probs_.resize(candidates_.size());
  for (size_t i = 0; i < candidates_.size(); ++i) probs_[i] = std::exp(static_cast<double>(candidates_[i].first - max) / p.temperature);
  std::discrete_distribution<size_t> dist(probs_.begin(), probs_.end());
  return candidates_[dist(rng_)].second;
}

}  // namespace vireo
