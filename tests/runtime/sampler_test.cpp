// The sampler's steps, each on hand-made logits whose outcome is known.
#include "vireo/runtime/sampler.h"

#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <vector>

#include "vireo/core/error.h"

namespace vireo {
namespace {

// How often each token is drawn in `n` samples.
std::map<int32_t, int> histogram(SamplingParams p, const std::vector<float>& logits, const std::vector<int32_t>& history,
                                 int n) {
  Sampler s(p);
  std::map<int32_t, int> h;
  for (int i = 0; i < n; ++i) {
    std::vector<float> l = logits;
    ++h[s.sample(l, history)];
  }
  return h;
}

TEST(Sampler, GreedyPicksTheLargestLogitFirstOnTies) {
  Sampler s({});
  std::vector<float> l = {0.1f, 3.0f, -2.0f, 3.0f};
  EXPECT_EQ(s.sample(l, {}), 1);
}

TEST(Sampler, LogitBiasCanBanOrForceATokens) {
  SamplingParams p;
  p.logit_bias = {{1, -INFINITY}, {2, 10.0f}};
  Sampler s(p);
  std::vector<float> l = {0.0f, 5.0f, 0.0f};
  EXPECT_EQ(s.sample(l, {}), 2);
  p.logit_bias = {{7, 1.0f}};
  Sampler bad(p);
  EXPECT_THROW(bad.sample(l, {}), Error);
}

TEST(Sampler, PenaltiesFollowLlamaCpp) {
  SamplingParams p;
  p.repetition_penalty = 2.0f;
  p.frequency_penalty = 0.5f;
  p.presence_penalty = 0.25f;
  Sampler s(p);
  std::vector<float> l = {4.0f, -1.0f, 3.0f};
  const std::vector<int32_t> history = {0, 0, 1};
  s.sample(l, history);
  EXPECT_FLOAT_EQ(l[0], 4.0f / 2 - 2 * 0.5f - 0.25f);  // positive: divided
  EXPECT_FLOAT_EQ(l[1], -1.0f * 2 - 0.5f - 0.25f);     // negative: multiplied
  EXPECT_FLOAT_EQ(l[2], 3.0f);                         // unseen
}

TEST(Sampler, PenaltyWindowLooksOnlyAtRecentTokens) {
  SamplingParams p;
  p.presence_penalty = 1.0f;
  p.penalty_last_n = 2;
  Sampler s(p);
  std::vector<float> l = {0.0f, 0.0f, 0.0f};
  s.sample(l, std::vector<int32_t>{0, 1, 2});
  EXPECT_EQ(l[0], 0.0f);
  EXPECT_EQ(l[1], -1.0f);
  EXPECT_EQ(l[2], -1.0f);
}

TEST(Sampler, TopKKeepsOnlyTheKBest) {
  SamplingParams p;
  p.temperature = 1.0f;
  p.top_k = 2;
  const auto h = histogram(p, {1.0f, 3.0f, 2.9f, 0.5f}, {}, 2000);
  EXPECT_EQ(h.count(0), 0u);
  EXPECT_EQ(h.count(3), 0u);
  EXPECT_GT(h.at(1), 0);
  EXPECT_GT(h.at(2), 0);
}

TEST(Sampler, TopPKeepsTheSmallestSetAboveP) {
  // Probabilities 0.5, 0.3, 0.2 (log weights): top_p 0.75 keeps the first two.
  SamplingParams p;
  p.temperature = 1.0f;
  p.top_p = 0.75f;
  const std::vector<float> l = {std::log(0.5f), std::log(0.3f), std::log(0.2f)};
  const auto h = histogram(p, l, {}, 4000);
  EXPECT_EQ(h.count(2), 0u);
  EXPECT_NEAR(h.at(0) / 4000.0, 0.5 / 0.8, 0.04);
}

TEST(Sampler, MinPDropsTokensFarBelowTheBest) {
  SamplingParams p;
  p.temperature = 1.0f;
  p.min_p = 0.5f;
  const std::vector<float> l = {std::log(0.5f), std::log(0.3f), std::log(0.2f)};  // 0.2 < 0.5 * 0.5
  const auto h = histogram(p, l, {}, 2000);
  EXPECT_EQ(h.count(2), 0u);
  EXPECT_GT(h.at(1), 0);
}

TEST(Sampler, TemperatureSharpensOrFlattens) {
  SamplingParams p;
  const std::vector<float> l = {0.0f, std::log(3.0f)};  // p = 0.25, 0.75 at temperature 1
  p.temperature = 1.0f;
  EXPECT_NEAR(histogram(p, l, {}, 8000).at(1) / 8000.0, 0.75, 0.03);
  p.temperature = 0.5f;  // p1 = 9 / 10
  EXPECT_NEAR(histogram(p, l, {}, 8000).at(1) / 8000.0, 0.9, 0.02);
}

TEST(Sampler, SameSeedSameDraws) {
  SamplingParams p;
  p.temperature = 1.5f;
  p.seed = 42;
  std::vector<float> l(100);
  for (size_t i = 0; i < l.size(); ++i) l[i] = std::sin(static_cast<float>(i));
  Sampler a(p), b(p);
  for (int i = 0; i < 50; ++i) {
    std::vector<float> la = l, lb = l;
    EXPECT_EQ(a.sample(la, {}), b.sample(lb, {}));
  }
}

TEST(Sampler, RejectsBadParameters) {
  SamplingParams p;
  p.top_p = 0.0f;
  EXPECT_THROW(Sampler{p}, Error);
  p = {};
  p.min_p = 2.0f;
  EXPECT_THROW(Sampler{p}, Error);
  p = {};
  p.top_k = -1;
  EXPECT_THROW(Sampler{p}, Error);
}

}  // namespace
}  // namespace vireo
