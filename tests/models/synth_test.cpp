// vireo synth: files load in vireo with the preset's exact shapes, and load and run in llama.cpp.
#include "vireo/models/synth.h"

#include <gtest/gtest.h>

#include "reference_engine.h"
#include "test_util.h"
#include "vireo/core/error.h"
#include "vireo/formats/gguf.h"
#include "vireo/formats/model.h"

namespace vireo {
namespace {

TEST(Synth, EveryPresetHasItsRealShapes) {
  // Spot checks against the published configs.
  const auto& l8 = find_synth_preset("llama3-8b").config;
  EXPECT_EQ(l8.n_vocab, 128256u);
  EXPECT_EQ(l8.n_ff, 14336u);
  EXPECT_EQ(l8.n_head_kv, 8u);
  const auto& q3 = find_synth_preset("qwen3-0.6b").config;
  EXPECT_EQ(q3.head_dim, 128u);
  EXPECT_TRUE(q3.qk_norm);
  EXPECT_TRUE(q3.tied_embeddings);
  EXPECT_TRUE(find_synth_preset("qwen2.5-0.5b").config.qkv_bias);
  EXPECT_EQ(find_synth_preset("llama3.2-1b").config.rope.scaling, RopeScaling::Llama3);
  EXPECT_THROW(find_synth_preset("gpt5"), Error);
}

TEST(Synth, SameSeedSameBytesAnyThreadCount) {
  test::TempDir dir;
  SynthOptions o;
  o.preset = "tiny";
  o.type = "q4_k_m";
  o.threads = 1;
  synthesize_model(o, dir.file("a.gguf"));
  o.threads = 3;
  synthesize_model(o, dir.file("b.gguf"));
  o.seed = 7;
  synthesize_model(o, dir.file("c.gguf"));
  const MappedFile a(dir.file("a.gguf")), b(dir.file("b.gguf")), c(dir.file("c.gguf"));
  ASSERT_EQ(a.size(), b.size());
  EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size()), 0);
  EXPECT_NE(std::memcmp(a.data(), c.data(), a.size()), 0);
}

TEST(Synth, RejectsUnknownTypeListingChoices) {
  test::TempDir dir;
  SynthOptions o;
  o.type = "q3_xs";
  try {
    synthesize_model(o, dir.file("x.gguf"));
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("q4_k_m"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(std::filesystem::exists(dir.file("x.gguf")));
}

TEST(Synth, CopiesATokenizerFromAVocabFile) {
  VIREO_REQUIRE_SHARED(vocab, "vocab/ggml-vocab-llama-bpe.gguf");
  test::TempDir dir;
  SynthOptions o;
  o.preset = "llama3.2-1b";
  o.n_layer = 1;
  o.type = "q8_0";
  o.vocab_path = vocab;
  synthesize_model(o, dir.file("m.gguf"));
  const Model m = load_model(dir.file("m.gguf"));
  EXPECT_EQ(m.tokenizer.tokens.size(), 128256u);
  EXPECT_EQ(m.tokenizer.pre, "llama-bpe");
  EXPECT_EQ(m.get("token_embd.weight").shape, (std::vector<uint64_t>{128256, 2048}));
}

struct Case {
  std::string preset, type;
  friend void PrintTo(const Case& c, std::ostream* os) { *os << c.preset << " " << c.type; }
};
std::string case_name(const testing::TestParamInfo<Case>& info) {
  std::string s = info.param.preset + "_" + info.param.type;
  for (auto& c : s) {
    if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
  }
  return s;
}

std::vector<Case> all_cases() {
  std::vector<Case> cases;
  for (const auto& p : synth_presets()) {
    for (const char* t : {"f16", "bf16", "q8_0", "q4_0", "q4_k_m"}) cases.push_back({p.name, t});
  }
  return cases;
}

// One layer and a small vocabulary keep every layer's exact shape at a size CI can afford;
// scripts/check-synth-llamacpp.sh runs the full vocabularies.
class SynthInLlamaCpp : public testing::TestWithParam<Case> {};

TEST_P(SynthInLlamaCpp, LoadsInVireoAndRunsInLlamaCpp) {
  const Case& c = GetParam();
  test::TempDir dir;
  SynthOptions o;
  o.preset = c.preset;
  o.type = c.type;
  o.n_layer = 1;
  o.vocab_size = c.preset == "tiny" ? 0 : 1024;
  const std::string path = dir.file("m.gguf");
  const SynthResult r = synthesize_model(o, path);

  const Model m = load_model(path);
  const ModelConfig& want = find_synth_preset(c.preset).config;
  EXPECT_EQ(m.config.n_embd, want.n_embd);
  EXPECT_EQ(m.config.n_head, want.n_head);
  EXPECT_EQ(m.config.n_head_kv, want.n_head_kv);
  EXPECT_EQ(m.config.head_dim, want.head_dim);
  EXPECT_EQ(m.config.n_ff, want.n_ff);
  EXPECT_EQ(m.config.qkv_bias, want.qkv_bias);
  EXPECT_EQ(m.config.qk_norm, want.qk_norm);
  EXPECT_EQ(m.config.tied_embeddings, want.tied_embeddings);
  EXPECT_EQ(m.config.rope.scaling, want.rope.scaling);
  EXPECT_EQ(m.n_params(), r.n_params);

  VIREO_REQUIRE_LLAMA_REF();
  const auto info = test::run_llama_ref({"info", path, "--threads", "1"});
  ASSERT_FALSE(info.contains("error")) << info.dump();
  EXPECT_EQ(info["n_embd"].get<uint64_t>(), m.config.n_embd);
  EXPECT_EQ(info["n_vocab"].get<uint64_t>(), m.config.n_vocab);
  EXPECT_EQ(info["n_params"].get<uint64_t>(), m.n_params());
  if (m.config.family == ArchFamily::Bert) {
    const auto e = test::run_llama_ref({"embed", path, "--text", "hello world"});
    ASSERT_FALSE(e.contains("error")) << e.dump();
    EXPECT_EQ(e["n"].get<uint64_t>(), m.config.n_embd);
    EXPECT_TRUE(e["finite"].get<bool>());
  } else {
    const auto g = test::run_llama_ref({"generate", path, "--prompt", "Once upon a time", "--n", "8", "--ignore-eog"});
    ASSERT_FALSE(g.contains("error")) << g.dump();
    EXPECT_EQ(g["tokens"].size(), 8u) << g.dump();
  }
}

INSTANTIATE_TEST_SUITE_P(AllPresetsAndTypes, SynthInLlamaCpp, testing::ValuesIn(all_cases()), case_name);

}  // namespace
}  // namespace vireo
