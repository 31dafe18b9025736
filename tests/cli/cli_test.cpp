// The vireo command end to end: tokenize, detokenize and template on real shared files.
#include <gtest/gtest.h>

#include <array>
#include <cstdio>

#include <nlohmann/json.hpp>

#include "reference_engine.h"
#include "test_util.h"

namespace vireo {
namespace {

using test::run_vireo;

TEST(Cli, TokenizeAndDetokenizeRoundTrip) {
  VIREO_REQUIRE_SHARED(vocab, "vocab/ggml-vocab-llama-bpe.gguf");
  const auto [status, out] = run_vireo("tokenize --json " + test::shell_quote(vocab) + " 'Hello world'");
  ASSERT_EQ(status, 0) << out;
  const auto j = nlohmann::json::parse(out);
  EXPECT_EQ(j["ids"], nlohmann::json({128000, 9906, 1917}));  // BOS, "Hello", " world"
  const auto [s2, text] = run_vireo("detokenize --remove-special " + test::shell_quote(vocab) + " 128000,9906,1917");
  ASSERT_EQ(s2, 0) << text;
  EXPECT_EQ(text, "Hello world\n");
  const auto [s3, bad] = run_vireo("detokenize " + test::shell_quote(vocab) + " 9999999");
  EXPECT_EQ(s3, 1);
  EXPECT_NE(bad.find("not a token id"), std::string::npos) << bad;
}

TEST(Cli, TemplateRendersAConversation) {
  VIREO_REQUIRE_SHARED(vocab, "vocab/ggml-vocab-qwen2.gguf");
  VIREO_REQUIRE_SHARED(tmpl, "templates/Qwen-Qwen2.5-7B-Instruct.jinja");
  test::TempDir dir;
  std::FILE* f = std::fopen(dir.file("m.json").c_str(), "w");
  std::fputs(R"([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}])", f);
  std::fclose(f);
  const auto [status, out] = run_vireo("template " + test::shell_quote(vocab) + " --messages " + dir.file("m.json") +
                                       " --chat-template-file " + test::shell_quote(tmpl));
  ASSERT_EQ(status, 0) << out;
  EXPECT_EQ(out, "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
}

TEST(Cli, EveryCommandHasHelp) {
  for (const char* cmd : {"info", "synth", "tokenize", "detokenize", "template"}) {
    const auto [status, out] = run_vireo(std::string(cmd) + " --help");
    EXPECT_EQ(status, 0) << cmd << ": " << out;
    EXPECT_NE(out.find("Usage"), std::string::npos) << cmd;
  }
}

// The flag is checked as the command line is parsed (before any model loads, and before --help
// prints), so no GPU and no model file are needed here.
TEST(Cli, DeviceFlagAcceptsDeviceNamesAndRejectsOthersClearly) {
  for (const char* device : {"auto", "cpu", "cuda", "cuda:0", "cuda:12"}) {
    const auto [status, out] = run_vireo(std::string("run --device ") + device + " --help");
    EXPECT_EQ(status, 0) << device << ": " << out;
  }
  for (const char* cmd : {"run", "score", "embed", "serve", "bench", "ingest", "search", "classify", "ask", "eval-retrieval"}) {
    const auto [status, out] = run_vireo(std::string(cmd) + " --device bogus --help");
    EXPECT_NE(status, 0) << cmd;
    EXPECT_NE(out.find("'bogus' is not a device: give cpu, cuda, cuda:N or auto"), std::string::npos) << cmd << ": " << out;
  }
  for (const char* device : {"cuda:", "cuda:x", "CPU", "cuda:1x"}) {
    const auto [status, out] = run_vireo(std::string("embed --device '") + device + "' --help");
    EXPECT_NE(status, 0) << device;
    EXPECT_NE(out.find("is not a device"), std::string::npos) << device << ": " << out;
  }
}

}  // namespace
}  // namespace vireo
