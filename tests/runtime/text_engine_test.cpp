// The text layer over the generator: stop strings never leak a partial match, the engine's text is
// the tokenizer's decoding of its ids, the CLI's `run --json` agrees with the library, and a
// prompt that does not fit is a clear error.
#include "vireo/runtime/text_engine.h"

#include <gtest/gtest.h>

#include <fstream>

#include <nlohmann/json.hpp>

#include "test_util.h"
#include "vireo/core/error.h"

namespace vireo {
namespace {

std::string feed_all(StopStrings& s, const std::vector<std::string>& pieces) {
  std::string out;
  for (const auto& p : pieces) out += s.feed(p);
  return out + s.flush();
}

TEST(StopStrings, HoldsBackPrefixesAndCutsAtTheMatch) {
  StopStrings s({"\n\nUser:", "END"});
  EXPECT_EQ(s.feed("Hello"), "Hello");
  EXPECT_EQ(s.feed(" world\n"), " world");  // "\n" may start "\n\nUser:"
  EXPECT_EQ(s.feed("\nUs"), "");
  EXPECT_EQ(s.feed("er: more"), "");
  EXPECT_TRUE(s.stopped());
  EXPECT_EQ(s.matched(), "\n\nUser:");
  EXPECT_EQ(s.flush(), "");
}

TEST(StopStrings, FalseStartsAreReleased) {
  StopStrings s({"END"});
  EXPECT_EQ(feed_all(s, {"the EN", "D", "IN"}), "the ");
  StopStrings t({"END"});
  EXPECT_EQ(feed_all(t, {"the EN", "Q of it"}), "the ENQ of it");
  EXPECT_FALSE(t.stopped());
  StopStrings u({"END"});
  EXPECT_EQ(feed_all(u, {"ends with EN"}), "ends with EN");  // a held prefix is released at the end
}

TEST(StopStrings, EarliestOfSeveralMatchesWins) {
  StopStrings s({"cd", "b"});
  EXPECT_EQ(s.feed("abcd"), "a");
  EXPECT_EQ(s.matched(), "b");
  StopStrings none({});
  EXPECT_EQ(feed_all(none, {"a", "b"}), "ab");
}

class StoriesEngine : public testing::Test {
 protected:
  void SetUp() override {
    VIREO_REQUIRE_SHARED(path, "models/stories260K.gguf");
    path_ = path;
    engine = std::make_unique<TextEngine>(path_, EngineOptions{.n_threads = 2});
  }
  std::string path_;
  std::unique_ptr<TextEngine> engine;
};

TEST_F(StoriesEngine, TextIsTheDecodingOfTheIdsAndStopStringsCut) {
  TextGenerateOptions o;
  o.gen.max_tokens = 60;
  const auto prompt = engine->tokenize("Once upon a time");
  std::string streamed;
  const TextResult r = engine->generate(prompt, o, [&](const std::string& t) {
    streamed += t;
    return true;
  });
  EXPECT_EQ(r.tokens.size(), 60u);
  EXPECT_EQ(r.finish, "length");
  EXPECT_EQ(streamed, r.text);
  EXPECT_EQ(r.text, engine->tokenizer().decode(r.tokens));
  ASSERT_NE(r.text.find(" girl"), std::string::npos) << r.text;

  o.stop = {" girl"};
  const TextResult cut = engine->generate(prompt, o);
  EXPECT_EQ(cut.finish, "stop");
  EXPECT_EQ(cut.text, r.text.substr(0, r.text.find(" girl")));
  EXPECT_LT(cut.tokens.size(), r.tokens.size());
}

TEST_F(StoriesEngine, PromptLongerThanTheContextIsAClearError) {
  std::string text;
  for (int i = 0; i < 600; ++i) text += "hi ";
  try {
    engine->generate(engine->tokenize(text), {});
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::InvalidArgument);
    EXPECT_NE(std::string(e.what()).find("but the context holds 512"), std::string::npos) << e.what();
  }
  EXPECT_THROW(engine->render_chat(nlohmann::json::array({{{"role", "user"}, {"content", "hi"}}})), Error);
}

TEST_F(StoriesEngine, CliRunJsonMatchesTheLibrary) {
  TextGenerateOptions o;
  o.gen.max_tokens = 24;
  const TextResult r = engine->generate(engine->tokenize("The cat"), o);
  const auto [rc, out] = test::run_vireo("run " + path_ + " -p 'The cat' -n 24 --temp 0 -t 2 --json");
  ASSERT_EQ(rc, 0) << out;
  const auto j = nlohmann::json::parse(out);
  EXPECT_EQ(j["prompt_ids"].get<std::vector<int32_t>>(), r.prompt_tokens);
  EXPECT_EQ(j["ids"].get<std::vector<int32_t>>(), r.tokens);
  EXPECT_EQ(j["text"], r.text);
  EXPECT_EQ(j["finish_reason"], "length");
  EXPECT_GT(j["timings"]["decode_tokens_per_s"].get<double>(), 0.0);

  // Sampling with a seed is reproducible; a banned token never appears.
  const std::string sampled = "run " + path_ + " -p 'The cat' -n 40 --temp 1 --top-k 20 -s 7 -l 13-inf --json";
  const auto a = test::run_vireo(sampled), b = test::run_vireo(sampled);
  ASSERT_EQ(a.first, 0) << a.second;
  EXPECT_EQ(nlohmann::json::parse(a.second)["ids"], nlohmann::json::parse(b.second)["ids"]);
  for (int32_t id : nlohmann::json::parse(a.second)["ids"].get<std::vector<int32_t>>()) EXPECT_NE(id, 13);

  const auto bad = test::run_vireo("run " + path_ + " --prompt-ids 1,99999 -n 2");
  EXPECT_EQ(bad.first, 1);
  EXPECT_NE(bad.second.find("token id 99999 is outside the vocabulary"), std::string::npos) << bad.second;
}

TEST_F(StoriesEngine, DeviceCpuRunsOnTheCpuBackendFromTheLibraryAndTheCli) {
  TextEngine cpu(path_, EngineOptions{.device = "cpu", .n_threads = 2});
  EXPECT_EQ(cpu.backend().name().rfind("cpu", 0), 0u) << cpu.backend().name();
  TextGenerateOptions o;
  o.gen.max_tokens = 8;
  const TextResult r = cpu.generate(cpu.tokenize("The cat"), o);
  const auto [rc, out] = test::run_vireo("run " + path_ + " -p 'The cat' -n 8 --temp 0 -t 2 --device cpu --json");
  ASSERT_EQ(rc, 0) << out;
  EXPECT_EQ(nlohmann::json::parse(out)["ids"].get<std::vector<int32_t>>(), r.tokens);

  try {
    TextEngine bad(path_, EngineOptions{.device = "bogus"});
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("bogus"), std::string::npos) << e.what();
  }
}

TEST_F(StoriesEngine, CliChatRendersEveryTurnWithTheTemplate) {
  test::TempDir dir;
  const std::string tpl = dir.file("chat.jinja");
  std::ofstream(tpl) << "{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}"
                        "{% if add_generation_prompt %}assistant:{% endif %}";
  std::ofstream(dir.file("turns.txt")) << "Lily went to the park.\n\nShe saw a dog.\n/exit\nnever read\n";
  const auto [rc, out] = test::run_vireo("run " + path_ + " --chat --chat-template-file " + tpl +
                                         " --system 'Tell a story.' -n 12 --temp 0 --json < " + dir.file("turns.txt"));
  ASSERT_EQ(rc, 0) << out;
  const auto j = nlohmann::json::parse(out);
  ASSERT_EQ(j["turns"].size(), 2u) << out;  // the empty line is skipped, /exit ends
  const std::string first = "system: Tell a story.\nuser: Lily went to the park.\nassistant:";
  EXPECT_EQ(j["turns"][0]["prompt_ids"].get<std::vector<int32_t>>(), engine->tokenize(first, false));
  // The reply comes back as an assistant message, rendered by the template's loop.
  const std::string second_rendered = "system: Tell a story.\nuser: Lily went to the park.\nassistant: " +
                                      j["turns"][0]["text"].get<std::string>() + "\nuser: She saw a dog.\nassistant:";
  EXPECT_EQ(j["turns"][1]["prompt_ids"].get<std::vector<int32_t>>(), engine->tokenize(second_rendered, false));
}

}  // namespace
}  // namespace vireo
