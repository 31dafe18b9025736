// Loading real and synthetic models into ModelConfig, and `vireo info` on them.
#include "vireo/formats/model.h"

#include <gtest/gtest.h>

#include <array>
#include <cstdio>

#include <nlohmann/json.hpp>

#include "reference_engine.h"
#include "test_util.h"
#include "vireo/core/error.h"
#include "vireo/formats/gguf.h"
#include "vireo/models/synth.h"

namespace vireo {
namespace {

using test::run_vireo;

TEST(ModelLoad, Stories260KConfig) {
  VIREO_REQUIRE_SHARED(path, "models/stories260K.gguf");
  const Model m = load_model(path);
  const ModelConfig& c = m.config;
  EXPECT_EQ(c.arch_name, "llama");
  EXPECT_EQ(c.n_layer, 5u);
  EXPECT_EQ(c.n_embd, 64u);
  EXPECT_EQ(c.n_head, 8u);
  EXPECT_EQ(c.n_head_kv, 4u);
  EXPECT_EQ(c.head_dim, 8u);
  EXPECT_EQ(c.n_ff, 172u);
  EXPECT_EQ(c.n_ctx_train, 512u);
  EXPECT_EQ(c.n_vocab, 512u);
  EXPECT_EQ(c.rope.style, RopeStyle::Normal);
  EXPECT_EQ(m.tokenizer.kind, TokenizerKind::SentencePiece);
  EXPECT_EQ(m.tokenizer.tokens.size(), 512u);
  EXPECT_EQ(m.tokenizer.scores.size(), 512u);
  EXPECT_EQ(m.n_params(), 292800u);  // as llama.cpp counts them
  EXPECT_EQ(m.get("blk.0.attn_k.weight").shape, (std::vector<uint64_t>{32, 64}));
  EXPECT_EQ(m.get("blk.0.ffn_down.weight").shape, (std::vector<uint64_t>{64, 172}));
}

TEST(ModelLoad, InfoJsonOnStories260K) {
  VIREO_REQUIRE_SHARED(path, "models/stories260K.gguf");
  const auto [status, out] = run_vireo("info --json " + test::shell_quote(path));
  ASSERT_EQ(status, 0) << out;
  const auto j = nlohmann::json::parse(out);
  EXPECT_EQ(j["arch"], "llama");
  EXPECT_EQ(j["n_layer"], 5);
  EXPECT_EQ(j["n_embd"], 64);
  EXPECT_EQ(j["n_head"], 8);
  EXPECT_EQ(j["n_head_kv"], 4);
  EXPECT_EQ(j["n_ff"], 172);
  EXPECT_EQ(j["n_ctx_train"], 512);
  EXPECT_EQ(j["tokenizer"]["kind"], "sentencepiece");
  EXPECT_EQ(j["tokenizer"]["n_tokens"], 512);
  EXPECT_EQ(j["n_params"], 292800);
  EXPECT_EQ(j["tensor_types"]["f32"]["count"], 48);
  // 5 layers x 512 positions x 4 KV heads x 8 dims x (K and V) x 2 bytes
  EXPECT_EQ(j["memory"]["kv_cache_bytes"], 5 * 512 * 4 * 8 * 2 * 2);
}

TEST(ModelLoad, InfoOnVocabOnlyFiles) {
  VIREO_REQUIRE_SHARED(path, "vocab/ggml-vocab-qwen2.gguf");
  const Model m = load_model(path);
  EXPECT_EQ(m.tokenizer.kind, TokenizerKind::BytePairEncoding);
  EXPECT_EQ(m.tokenizer.pre, "qwen2");
  EXPECT_GT(m.tokenizer.merges.size(), 100000u);
  EXPECT_TRUE(m.weights.empty());
  const auto [status, out] = run_vireo("info " + test::shell_quote(path));
  EXPECT_EQ(status, 0) << out;
}

TEST(ModelLoad, InfoReportsErrorsReadably) {
  test::TempDir dir;
  test::write_bytes(dir.file("bad.gguf"), {'G', 'G', 'U', 'F', 9, 0, 0, 0});
  const auto [status, out] = run_vireo("info " + dir.file("bad.gguf"));
  EXPECT_EQ(status, 1);
  EXPECT_NE(out.find("vireo: error:"), std::string::npos) << out;
  EXPECT_NE(out.find("version 9"), std::string::npos) << out;
  const auto [status2, out2] = run_vireo("info " + dir.file("missing.gguf"));
  EXPECT_EQ(status2, 1);
  EXPECT_NE(out2.find("does not exist"), std::string::npos) << out2;
}

TEST(ModelLoad, MissingTensorIsNamed) {
  // A synthetic model with its last layer's ffn_down renamed: the loader names what is missing.
  test::TempDir dir;
  SynthOptions o;
  synthesize_model(o, dir.file("m.gguf"));
  auto f = gguf::File::open(dir.file("m.gguf"));
  gguf::Writer w;
  for (const auto& [k, v] : f.metadata()) w.set(k, v);
  for (const auto& t : f.tensors()) {
    const std::string name = t.name == "blk.1.ffn_down.weight" ? "blk.1.ffn_down.weigh" : t.name;
    const uint8_t* src = t.data;
    w.add_tensor(name, t.type, t.ne, [src](uint8_t* dst, uint64_t n) { std::memcpy(dst, src, n); });
  }
  w.write(dir.file("broken.gguf"));
  try {
    load_model(dir.file("broken.gguf"));
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::NotFound);
    EXPECT_NE(std::string(e.what()).find("blk.1.ffn_down.weight"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace vireo
