// Pre-tokenization: splitting text into the words that BPE then encodes one by one.
//
// For GGUF vocabularies this reproduces llama.cpp's unicode_regex_split: its hand-written splitters for
// the GPT-2, Llama 3 and Qwen 2 patterns, and for any other pattern its std::regex fallback, which runs
// on a "collapsed" text (each non-ASCII code point replaced by one byte standing for its category) or,
// for patterns without \p{..}, on the code points with non-ASCII whitespace mapped to \v. vireo runs
// those fallbacks with PCRE2 on the same representations, so every quirk carries over.
// For tokenizer.json, patterns llama.cpp knows use the same splitters; others run with full Unicode
// semantics (PCRE2 UTF + UCP).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace vireo::tok {

class PreTokenizer {
 public:
  enum class Dialect { LlamaCpp, HuggingFace };
  // Throws vireo::Error when a pattern does not compile.
  PreTokenizer(const std::vector<std::string>& regexes, Dialect dialect);
  ~PreTokenizer();
  PreTokenizer(PreTokenizer&&) noexcept;

  // Splits `cps` (one fragment, decoded as llama.cpp decodes) into consecutive words; appends each
  // word's length in code points. Lengths sum to cps.size().
  void split(const std::vector<uint32_t>& cps, std::vector<uint32_t>& lengths) const;

  struct Step;

 private:
  std::vector<std::unique_ptr<Step>> steps_;
  bool needs_collapsed_ = false, needs_wide_ = false;
};

// What llama.cpp sets up for a tokenizer.ggml.pre name.
struct PreConfig {
  std::vector<std::string> regexes;
  bool ignore_merges = false;
  bool clean_spaces = true;
  bool add_bos = false;
  bool add_sep = false;
  bool no_bos_token = false;  // chatglm: the BOS id is cleared
};
// nullptr for a name llama.cpp (as vireo knows it) does not have.
const PreConfig* find_pre_config(const std::string& name);
// The known names, comma-separated, for error messages.
std::string known_pre_names();

}  // namespace vireo::tok
