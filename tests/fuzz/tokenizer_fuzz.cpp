// libFuzzer entry point for the tokenizers (built with -DVIREO_FUZZ=ON). The first byte picks one of
// a few small in-memory vocabularies (byte-level BPE with several llama.cpp pre-tokenizers,
// SentencePiece with byte fallback, WordPiece); the rest is text, encoded with and without special
// tokens, then decoded in one go and streamed. Only vireo::Error may escape; invalid UTF-8 out of
// the StreamDecoder, a token id out of range, or any other exception is a finding (it aborts).
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "vireo/core/error.h"
#include "vireo/core/utf8.h"
#include "vireo/tokenizer/tokenizer.h"

namespace {

using vireo::TokenizerData;
using vireo::TokenizerKind;

[[noreturn]] void broken(const char* what) {
  std::fprintf(stderr, "tokenizer_fuzz: invariant broken: %s\n", what);
  std::abort();
}

// GPT-2's printable stand-ins for the 256 bytes, so every byte has a token.
std::vector<std::string> byte_level_alphabet() {
  std::vector<std::string> out;
  uint32_t next = 256;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    const uint32_t cp = printable ? static_cast<uint32_t>(b) : next++;
    std::string s;
    if (cp < 0x80) s += static_cast<char>(cp);
    else {
      s += static_cast<char>(0xC0 | (cp >> 6));
      s += static_cast<char>(0x80 | (cp & 0x3F));
    }
    out.push_back(s);
  }
  return out;
}

TokenizerData bpe(const char* pre) {
  TokenizerData d;
  d.kind = TokenizerKind::BytePairEncoding;
  d.pre = pre;
  d.tokens = byte_level_alphabet();
  for (const char* t : {"he", "ll", "hell", "hello", "\xC4\xA0t", "\xC4\xA0th", "\xC4\xA0the", "in", "ing", "12", "123",
                        "\xC4\xA0\xC4\xA0"}) {
    d.tokens.push_back(t);
  }
  d.merges = {"h e", "l l", "he ll", "hell o", "\xC4\xA0 t", "\xC4\xA0t h", "\xC4\xA0th e", "i n", "in g", "1 2", "12 3",
              "\xC4\xA0 \xC4\xA0", "x y"};  // the last merge's parts and result are not tokens
  for (const char* t : {"<|begin_of_text|>", "<|eot_id|>", "<|im_end|>", "<tool>"}) d.tokens.push_back(t);
  d.token_types.assign(d.tokens.size(), 1);
  d.token_types[d.tokens.size() - 4] = d.token_types[d.tokens.size() - 3] = d.token_types[d.tokens.size() - 2] = 3;
  d.token_types.back() = 4;  // user-defined: always matched
  d.bos_id = static_cast<int32_t>(d.tokens.size() - 4);
  d.eos_id = static_cast<int32_t>(d.tokens.size() - 3);
  d.add_bos = true;
  return d;
}

TokenizerData spm() {
  TokenizerData d;
  d.kind = TokenizerKind::SentencePiece;
  d.tokens = {"<unk>", "<s>", "</s>"};
  d.token_types = {2, 3, 3};
  for (int b = 0; b < 256; ++b) {
    char buf[8];
    std::snprintf(buf, sizeof buf, "<0x%02X>", b);
    d.tokens.push_back(buf);
    d.token_types.push_back(6);
  }
  for (const char* t : {"\xE2\x96\x81", "\xE2\x96\x81t", "\xE2\x96\x81th", "\xE2\x96\x81the", "h", "e", "t", "l", "o",
                        "he", "ll", "hello", "\xE2\x96\x81hello", "\xC3\xA9", "\xE4\xB8\xAD"}) {
    d.tokens.push_back(t);
    d.token_types.push_back(1);
  }
  d.scores.assign(d.tokens.size(), 0.0f);
  for (size_t i = 259; i < d.scores.size(); ++i) d.scores[i] = -static_cast<float>(i % 7);
  d.bos_id = 1;
  d.eos_id = 2;
  d.unk_id = 0;
  d.add_bos = true;
  return d;
}

TokenizerData wpm() {
  TokenizerData d;
  d.kind = TokenizerKind::WordPiece;
  d.tokens = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "\xE2\x96\x81hello", "\xE2\x96\x81the", "ing", "s",
              "\xE2\x96\x81" "a", "\xE2\x96\x81,", "\xE2\x96\x81" "e", "\xE2\x96\x81\xE4\xB8\xAD"};
  d.token_types = {3, 3, 3, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1};
  d.unk_id = 1;
  d.cls_id = 2;
  d.sep_id = 3;
  d.pad_id = 0;
  d.mask_id = 4;
  return d;
}

const std::vector<std::unique_ptr<vireo::Tokenizer>>& tokenizers() {
  static const auto all = [] {
    std::vector<std::unique_ptr<vireo::Tokenizer>> v;
    for (const char* pre : {"llama-bpe", "qwen2", "gpt-2", "default", "deepseek-llm", "deepseek-coder", "falcon",
                            "starcoder", "bloom", "gpt-4o"}) {
      v.push_back(vireo::Tokenizer::create(bpe(pre)));
    }
    v.push_back(vireo::Tokenizer::create(spm()));
    v.push_back(vireo::Tokenizer::create(wpm()));
    return v;
  }();
  return all;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const auto& all = tokenizers();
  const vireo::Tokenizer& tok = *all[data[0] % all.size()];
  const std::string text(reinterpret_cast<const char*>(data + 1), size - 1);
  try {
    for (int mode = 0; mode < 4; ++mode) {
      const auto ids = tok.encode(text, mode & 1, mode & 2);
      for (int32_t id : ids) {
        if (id < 0 || id >= tok.n_vocab()) broken("encode produced an id outside the vocabulary");
      }
      const std::string decoded = tok.decode(ids, mode & 1, mode & 2);
      vireo::StreamDecoder stream(tok);
      std::string streamed;
      for (int32_t id : ids) {
        const std::string chunk = stream.push(id);
        if (!vireo::is_valid_utf8(chunk)) broken("StreamDecoder emitted invalid UTF-8");
        streamed += chunk;
      }
      const std::string rest = stream.flush();
      if (!vireo::is_valid_utf8(rest)) broken("StreamDecoder flushed invalid UTF-8");
      streamed += rest;
      if (vireo::is_valid_utf8(decoded) && streamed != tok.decode(ids)) broken("stream differs from decode");
    }
  } catch (const vireo::Error&) {
  }
  return 0;
}
