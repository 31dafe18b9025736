// Text <-> token ids, exactly as llama.cpp does it for GGUF vocabularies (llama_tokenize,
// llama_token_to_piece, llama_detokenize) and as Hugging Face tokenizers do for tokenizer.json:
// byte-level BPE with each family's pre-tokenizer, SentencePiece (BPE by score with byte fallback),
// and WordPiece. A Tokenizer is immutable after create() and safe to use from many threads.
#pragma once
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "vireo/formats/model.h"

namespace vireo {

class Tokenizer {
 public:
  // Throws vireo::Error for data it cannot tokenize with (an unknown pre-tokenizer, which the message
  // lists the known ones beside; a missing merges list; ids out of range...).
  static std::unique_ptr<Tokenizer> create(const TokenizerData& data);
  ~Tokenizer();
  Tokenizer(const Tokenizer&) = delete;
  Tokenizer& operator=(const Tokenizer&) = delete;

  // add_special: BOS/EOS as the vocabulary says (CLS/SEP for WordPiece). parse_special: text such as
  // "<|eot_id|>" becomes that control token; user-defined (non-special added) tokens always do.
  // Invalid UTF-8 never throws: it is handled as llama.cpp handles it.
  std::vector<int32_t> encode(std::string_view text, bool add_special, bool parse_special) const;

  // One token's text: SentencePiece "▁" -> " ", byte tokens <0xAB> -> that byte, GPT-2 byte-level
  // characters -> bytes. Control and unknown tokens give "" unless `special`. May be partial UTF-8.
  std::string token_to_piece(int32_t id, bool special = true) const;

  // llama_detokenize: the pieces joined, the SentencePiece leading space removed, clean-up of
  // " ," and the like where the family asks for it. remove_special drops a leading BOS and trailing EOS
  // that add_special would have added; unparse_special renders control tokens as their text.
  std::string decode(std::span<const int32_t> ids, bool remove_special = false, bool unparse_special = true) const;

  int32_t n_vocab() const;
  TokenizerKind kind() const;
  int32_t bos_id() const;  // -1 when none (CLS for WordPiece)
  int32_t eos_id() const;  // -1 when none (SEP for WordPiece)
  int32_t eot_id() const;
  bool add_bos() const;
  bool add_eos() const;
  bool is_eog(int32_t id) const;      // ends generation (EOS, EOT, <|im_end|>, ...)
  bool is_control(int32_t id) const;  // control or unknown-type: not rendered unless asked
  std::string_view token_text(int32_t id) const;  // the raw vocabulary entry
  int32_t token_id(std::string_view text) const;    // -1 when not in the vocabulary

  struct Impl;

 private:
  friend class StreamDecoder;
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  std::string decode_window(std::span<const int32_t> ids, bool first, bool unparse_special) const;
  std::unique_ptr<Impl> impl_;
};

// Turns a stream of ids into text without ever emitting part of a UTF-8 character: bytes of an
// unfinished character wait for the next token. The concatenated output equals decode() of all ids
// (with remove_special = false), except that invalid bytes that can never complete become U+FFFD.
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tokenizer, bool unparse_special = true);
  std::string push(int32_t id);
  std::string flush();  // what is still held back (an incomplete character becomes U+FFFD)

 private:
  const Tokenizer& tok_;
  bool unparse_special_;
  bool first_ = true;
  std::vector<int32_t> ids_;  // tokens of the current window (clean-up needs their context)
  size_t emitted_ = 0;        // bytes of the window's text already returned
};

}  // namespace vireo
