// The KV cache's bookkeeping and the generator's loop on a small synthetic model: prefill in any
// chunking gives the same result, several sequences in one batch decode exactly as alone, stop
// tokens and callbacks end generation.
#include "vireo/runtime/generator.h"

#include <gtest/gtest.h>

#include <algorithm>
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

TEST_F(TinyModel, KvCacheHandsOutBlocksWhereverTheyAreFree) {
  EXPECT_EQ(cache->free_cells(), 256);
  const SeqId a = cache->add_sequence(100), b = cache->add_sequence(100), c = cache->add_sequence(32);
  EXPECT_EQ(cache->blocks(a).size(), 7u);  // 100 cells: 7 blocks of 16
  EXPECT_EQ(cache->free_cells(), 0);
  EXPECT_THROW(cache->add_sequence(1), Error);
  cache->remove_sequence(a);
  cache->remove_sequence(c);
  // 144 free cells in two runs that are not adjacent: one sequence takes them all.
  const SeqId d = cache->add_sequence(144);
  std::vector<int32_t> got(cache->blocks(d).begin(), cache->blocks(d).end());
  std::sort(got.begin(), got.end());
  EXPECT_EQ(got, (std::vector<int32_t>{0, 1, 2, 3, 4, 5, 6, 14, 15}));
  EXPECT_FALSE(cache->resize(d, 145));  // no block left: nothing changes
  EXPECT_EQ(cache->capacity(d), 144);
  EXPECT_TRUE(cache->resize(d, 16));
  EXPECT_EQ(cache->free_cells(), 128);
  EXPECT_TRUE(cache->resize(b, 228));  // grows into the blocks d gave back
  EXPECT_EQ(cache->free_cells(), 0);
  cache->remove_sequence(b);
  cache->remove_sequence(d);
  EXPECT_EQ(cache->free_cells(), 256);
  EXPECT_THROW(cache->remove_sequence(c), Error);
  EXPECT_EQ(cache->bytes(), 2u * 2 * 256 * 2 * 64 * sizeof(uint16_t));  // K+V, layers, cells, kv_dim
}

TEST_F(TinyModel, AppendLaysOutPositionsCellsRangesAndTables) {
  const SeqId a = cache->add_sequence(10), b = cache->add_sequence(20);
  ForwardBatch batch;
  cache->append(batch, a, std::vector<int32_t>{5, 6}, true);
  cache->append(batch, b, std::vector<int32_t>{7}, true);
  cache->append(batch, a, std::vector<int32_t>{8}, false);  // a's table is already in the batch
  EXPECT_EQ(batch.positions, (std::vector<int32_t>{0, 1, 0, 2}));
  EXPECT_EQ(batch.kv_block_size, KvCache::kBlockSize);
  EXPECT_EQ(batch.kv_blocks, (std::vector<int32_t>{0, 1, 2}));  // a: block 0; b: blocks 1, 2
  EXPECT_EQ(batch.kv_cells, (std::vector<int32_t>{0, 1, 16, 2}));
  EXPECT_EQ(batch.kv_ranges, (std::vector<int32_t>{0, 1, 0, 2, 16, 1, 0, 3}));
  EXPECT_EQ(batch.output_rows, (std::vector<int32_t>{1, 2}));
  EXPECT_EQ(cache->length(a), 3);
  EXPECT_THROW(cache->append(batch, a, std::vector<int32_t>(8, 1), false), Error);  // over capacity
}

// A cache whose free blocks are scattered decodes exactly as an empty one.
TEST_F(TinyModel, ScatteredBlocksDecodeAsContiguousOnes) {
  const std::vector<std::vector<int32_t>> prompts = {{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17}, {100, 50, 25}};
  GenerateOptions o;
  o.max_tokens = 40;
  const auto fresh = gen->generate_batch(prompts, o);
  std::vector<SeqId> holders;
  for (int i = 0; i < 16; ++i) holders.push_back(cache->add_sequence(16));
  for (int i = 0; i < 16; i += 2) cache->remove_sequence(holders[static_cast<size_t>(i)]);  // half the blocks, scattered
  const auto scattered = gen->generate_batch(prompts, o);
  for (size_t s = 0; s < prompts.size(); ++s) EXPECT_EQ(scattered[s].tokens, fresh[s].tokens) << "sequence " << s;
  for (int i = 1; i < 16; i += 2) cache->remove_sequence(holders[static_cast<size_t>(i)]);
  EXPECT_EQ(cache->free_cells(), 256);
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
  EXPECT_EQ(cache->free_cells(), 256);  // every sequence was freed
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
  EXPECT_EQ(cache->free_cells(), 256);
  o.max_tokens = 4;
  EXPECT_EQ(gen->generate(std::vector<int32_t>{1, 2}, o).tokens.size(), 4u);  // still works
}

}  // namespace
}  // namespace vireo
