// ref::draw_token (the CPU draw, and the definition of every backend's `sample` op) against the
// plainly written oracle, and the CPU backend's op.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "draw_oracle.h"
#include "vireo/backend/backend.h"
#include "vireo/core/error.h"
#include "vireo/kernels/ref/sample.h"

namespace vireo {
namespace {

std::vector<float> normal_logits(size_t n, std::mt19937& rng, float sd) {
  std::normal_distribution<float> d(0.0f, sd);
  std::vector<float> l(n);
  for (auto& x : l) x = d(rng);
  return l;
}

// Every setting the draw has, alone and together.
std::vector<DrawParams> settings() {
  return {
      {0.0f, 0, 1.0f, 0.0f, 0},     {1.0f, 0, 1.0f, 0.0f, 0},    {0.7f, 0, 1.0f, 0.0f, 0},     {1.3f, 40, 1.0f, 0.0f, 0},
      {1.0f, 0, 0.9f, 0.0f, 0},     {1.0f, 0, 1.0f, 0.05f, 0},   {0.8f, 40, 0.95f, 0.05f, 0},  {1.0f, 1, 1.0f, 0.0f, 0},
      {2.0f, 0, 0.3f, 0.0f, 0},     {1.0f, 5000, 0.99f, 0.0f, 0},
  };
}

TEST(DrawToken, AgreesWithTheOracleOnEverySetting) {
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> uniform(0.0f, 1.0f);
  int compared = 0, at_edges = 0;
  for (size_t n : {1u, 7u, 255u, 257u, 1000u, 32003u}) {
    for (float sd : {0.5f, 3.0f}) {
      const auto l = normal_logits(n, rng, sd);
      for (DrawParams p : settings()) {
        for (int draw = 0; draw < 40; ++draw) {
          p.u = uniform(rng);
          const test::OracleDraw want = test::oracle_draw(l, p);
          const int32_t got = ref::draw_token(l.data(), static_cast<int64_t>(n), p);
          ++compared;
          if (got != want.token) {
            // Float sums may differ from double ones right at the edge between two tokens.
            ++at_edges;
            EXPECT_LT(want.margin, 1e-5) << "n " << n << " T " << p.temperature << " k " << p.top_k << " p " << p.top_p << " min_p "
                                         << p.min_p << " u " << p.u << ": " << got << " vs " << want.token;
          }
        }
      }
    }
  }
  EXPECT_LE(at_edges, compared / 1000);
}

TEST(DrawToken, GreedyTakesTheFirstLargestAndTopKKeepsEveryTie) {
  const std::vector<float> l = {1.0f, 3.0f, 2.0f, 3.0f, 2.0f};
  EXPECT_EQ(ref::draw_token(l.data(), 5, DrawParams{}), 1);
  // top_k 2: the 2nd largest is 3 (a tie), so only ids 1 and 3 stay, whatever u is.
  for (float u : {0.0f, 0.3f, 0.6f, 0.999f}) {
    const int32_t t = ref::draw_token(l.data(), 5, DrawParams{1.0f, 2, 1.0f, 0.0f, u});
    EXPECT_TRUE(t == 1 || t == 3) << u;
  }
  // top_k 3: the 3rd largest is 2, tied: ids 2 and 4 stay with 1 and 3.
  int low = 0;
  for (int i = 0; i < 100; ++i) low += ref::draw_token(l.data(), 5, DrawParams{1.0f, 3, 1.0f, 0.0f, i / 100.0f}) % 2 == 0;
  EXPECT_GT(low, 0);
}

TEST(DrawToken, BannedTokensAreNeverDrawnAndAllBannedIsAnError) {
  std::vector<float> l(300, -INFINITY);
  l[17] = 0.5f;
  l[250] = 0.4f;
  for (float u : {0.0f, 0.5f, 0.99999f}) {
    const int32_t t = ref::draw_token(l.data(), 300, DrawParams{1.0f, 0, 1.0f, 0.0f, u});
    EXPECT_TRUE(t == 17 || t == 250);
  }
  std::vector<float> none(10, -INFINITY);
  EXPECT_THROW(ref::draw_token(none.data(), 10, DrawParams{1.0f, 0, 1.0f, 0.0f, 0.5f}), Error);
}

TEST(CpuBackend, SampleOpDrawsEachRowWithItsParams) {
  CpuBackendOptions o;
  o.n_threads = 2;
  auto be = create_cpu_backend(o);
  std::mt19937 rng(3);
  const int64_t rows = 6, n = 5000;
  std::vector<float> l(static_cast<size_t>(rows * n));
  for (auto& x : l) x = std::normal_distribution<float>(0.0f, 2.0f)(rng);
  std::fill(l.begin() + 5 * n, l.end(), -INFINITY);  // the last row: nothing to draw
  std::vector<DrawParams> params = {{0.0f, 0, 1.0f, 0.0f, 0.0f},  {1.0f, 0, 1.0f, 0.0f, 0.25f}, {0.5f, 10, 1.0f, 0.0f, 0.5f},
                                    {1.0f, 0, 0.8f, 0.1f, 0.75f}, {1.0f, 0, 1.0f, 0.0f, 0.999f}, {1.0f, 0, 1.0f, 0.0f, 0.5f}};
  Buffer x = be->alloc(DType::F32, rows, n), pb = be->alloc(DType::F32, rows, 5), out = be->alloc(DType::I32, rows, 1);
  be->upload(x, l.data());
  be->upload(pb, params.data());
  be->sample(x, pb, out);
  std::vector<int32_t> got(static_cast<size_t>(rows));
  be->download(out, got.data());
  for (int64_t r = 0; r + 1 < rows; ++r) {
    EXPECT_EQ(got[static_cast<size_t>(r)], ref::draw_token(l.data() + r * n, n, params[static_cast<size_t>(r)])) << r;
  }
  EXPECT_EQ(got[5], -1);
}

}  // namespace
}  // namespace vireo
