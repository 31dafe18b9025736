// The KV cache's bookkeeping and the generator's loop on a small synthetic model: prefill in any
// chunking gives the same result, several sequences in one batch decode exactly as alone, stop
// tokens and callbacks end generation.
#include "vireo/runtime/generator.h"

#include <gtest/gtest.h>

#include <cmath>

#include "test_util.h"
#include "vireo/backend/backend.h"
#include "vireo/core/error.h"
#include "vireo/models/synth.h"

namespace vireo {
namespace {

class TinyModel : public testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new test::TempDir();
    SynthOptions o;
    o.preset = "tiny";
    o.type = "q8_0";
    synthesize_model(o, dir_->file("tiny.gguf"));
    model_ = std::make_shared<Model>(load_model(dir_->file("tiny.gguf")));
  }
  static void TearDownTestSuite() {
    model_.reset();
    delete dir_;
  }
  void SetUp() override {
    backend = create_cpu_backend({.n_threads = 2});
    lm = create_decoder(model_, *backend);
    cache = std::make_unique<KvCache>(*lm, 256);
    gen = std::make_unique<Generator>(*lm, *cache);
  }
  static test::TempDir* dir_;
  static std::shared_ptr<Model> model_;
  std::unique_ptr<Backend> backend;
  std::unique_ptr<LanguageModel> lm;
  std::unique_ptr<KvCache> cache;
  std::unique_ptr<Generator> gen;
};
test::TempDir* TinyModel::dir_ = nullptr;
std::shared_ptr<Model> TinyModel::model_;

TEST_F(TinyModel, KvCacheAllocatesAndMergesRuns) {
  EXPECT_EQ(cache->largest_free_run(), 256);
  const SeqId a = cache->add_sequence(100), b = cache->add_sequence(100), c = cache->add_sequence(56);
  EXPECT_EQ(cache->largest_free_run(), 0);
  EXPECT_THROW(cache->add_sequence(1), Error);
  cache->remove_sequence(b);
  EXPECT_EQ(cache->largest_free_run(), 100);
  cache->remove_sequence(a);
  EXPECT_EQ(cache->largest_free_run(), 200);  // merged with its neighbour
  cache->remove_sequence(c);
  EXPECT_EQ(cache->largest_free_run(), 256);
  EXPECT_THROW(cache->remove_sequence(c), Error);
  EXPECT_EQ(cache->bytes(), 2u * 2 * 256 * 2 * 64 * sizeof(uint16_t));  // K+V, layers, cells, kv_dim
}

TEST_F(TinyModel, AppendLaysOutPositionsCellsAndRanges) {
  const SeqId a = cache->add_sequence(10), b = cache->add_sequence(10);
  ForwardBatch batch;
  cache->append(batch, a, std::vector<int32_t>{5, 6}, true);
  cache->append(batch, b, std::vector<int32_t>{7}, true);
  EXPECT_EQ(batch.positions, (std::vector<int32_t>{0, 1, 0}));
  EXPECT_EQ(batch.kv_cells, (std::vector<int32_t>{0, 1, 10}));
  EXPECT_EQ(batch.kv_ranges, (std::vector<int32_t>{0, 1, 0, 2, 10, 1}));
  EXPECT_EQ(batch.output_rows, (std::vector<int32_t>{1, 2}));
  EXPECT_EQ(cache->length(a), 2);
  EXPECT_THROW(cache->append(batch, a, std::vector<int32_t>(9, 1), false), Error);  // over capacity
}

TEST_F(TinyModel, ChunkedPrefillEqualsOneBatchAndDecodeEqualsScore) {
  std::vector<int32_t> prompt;
  for (int i = 0; i < 40; ++i) prompt.push_back((i * 37) % 270);
  GenerateOptions o;
  o.max_tokens = 20;
  const auto whole = gen->generate(prompt, o);
  o.prefill_chunk = 7;
  const auto chunked = gen->generate(prompt, o);
  EXPECT_EQ(whole.tokens, chunked.tokens);
  EXPECT_EQ(whole.timings.prompt_tokens, 40);
  EXPECT_EQ(whole.timings.decode_tokens, 19);

  // Teacher-forcing the generated text reproduces each greedy choice.
  std::vector<int32_t> all = prompt;
  all.insert(all.end(), whole.tokens.begin(), whole.tokens.end() - 1);
  const std::vector<float> logits = gen->score(all);
  const size_t V = lm->config().n_vocab;
  for (size_t i = 0; i < whole.tokens.size(); ++i) {
    const float* row = logits.data() + (prompt.size() - 1 + i) * V;
    EXPECT_EQ(std::max_element(row, row + V) - row, whole.tokens[i]) << "token " << i;
  }
  EXPECT_EQ(cache->largest_free_run(), 256);  // every sequence was freed
}

TEST_F(TinyModel, BatchedSequencesDecodeAsIfAlone) {
  const std::vector<std::vector<int32_t>> prompts = {{1, 2, 3}, {100, 50, 25, 12, 6, 3}, {270}, {9, 9, 9, 9}};
  GenerateOptions o;
  o.max_tokens = 16;
  const auto together = gen->generate_batch(prompts, o);
  ASSERT_EQ(together.size(), prompts.size());
  for (size_t s = 0; s < prompts.size(); ++s) {
    const auto alone = gen->generate(prompts[s], o);
    EXPECT_EQ(together[s].tokens, alone.tokens) << "sequence " << s;
  }
  // Sampled: every sequence gets its own seeded stream.
  o.sampling.temperature = 1.0f;
  o.sampling.seed = 5;
  const auto a = gen->generate_batch(prompts, o), b = gen->generate_batch(prompts, o);
  for (size_t s = 0; s < prompts.size(); ++s) EXPECT_EQ(a[s].tokens, b[s].tokens);
}

TEST_F(TinyModel, StopTokensAndCallbacksEndGeneration) {
  const std::vector<int32_t> prompt = {1, 2, 3};
  GenerateOptions o;
  o.max_tokens = 10;
  const auto free_run = gen->generate(prompt, o);
  ASSERT_GE(free_run.tokens.size(), 3u);
  o.stop_tokens = {free_run.tokens[2]};
  const auto stopped = gen->generate(prompt, o);
  EXPECT_EQ(stopped.stop, StopReason::StopToken);
  EXPECT_EQ(stopped.tokens.back(), free_run.tokens[2]);
  EXPECT_LE(stopped.tokens.size(), 3u);

  o.stop_tokens.clear();
  int seen = 0;
  const auto cut = gen->generate(prompt, o, [&](int32_t) { return ++seen < 4; });
  EXPECT_EQ(cut.stop, StopReason::Callback);
  EXPECT_EQ(cut.tokens.size(), 4u);
}

TEST_F(TinyModel, BadInputIsRejectedWithoutDamage) {
  GenerateOptions o;
  EXPECT_THROW(gen->generate(std::vector<int32_t>{}, o), Error);
  EXPECT_THROW(gen->generate(std::vector<int32_t>{1, 99999}, o), Error);  // outside the vocabulary
  o.max_tokens = 1000;
  EXPECT_THROW(gen->generate(std::vector<int32_t>{1}, o), Error);  // more than the cache holds
  EXPECT_EQ(cache->largest_free_run(), 256);
  o.max_tokens = 4;
  EXPECT_EQ(gen->generate(std::vector<int32_t>{1, 2}, o).tokens.size(), 4u);  // still works
}

}  // namespace
}  // namespace vireo
