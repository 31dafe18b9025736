// The tokenizer.ggml.* keys of a GGUF file -> TokenizerData. Works on any architecture and on
// vocab-only files. Flags the file leaves out stay unset: the Tokenizer applies llama.cpp's
// per-family defaults (which depend on the pre-tokenizer).
#include <cmath>
#include <filesystem>
#include <limits>

#include "vireo/core/error.h"
#include "vireo/formats/gguf.h"
#include "vireo/formats/model.h"

namespace vireo {

TokenizerData read_gguf_tokenizer(const gguf::File& f) {
  TokenizerData tok;
  const std::string model = f.get_string("tokenizer.ggml.model", "");
  if (model == "llama") tok.kind = TokenizerKind::SentencePiece;
  else if (model == "gpt2") tok.kind = TokenizerKind::BytePairEncoding;
  else if (model == "bert") tok.kind = TokenizerKind::WordPiece;
  else if (model == "t5") tok.kind = TokenizerKind::Unigram;
  else if (model.empty() || model == "none" || model == "no_vocab") tok.kind = TokenizerKind::None;
  else fail(ErrorCode::Unsupported, "{}: tokenizer model '{}' is not supported (llama, gpt2, bert, t5)", f.path(), model);
  tok.pre = f.get_string("tokenizer.ggml.pre", "");
  tok.tokens = f.get_strings("tokenizer.ggml.tokens");
  const size_t n = tok.tokens.size();
  const auto scores = f.get_numbers("tokenizer.ggml.scores");
  for (size_t i = 0; i < scores.size(); ++i) {
    if (!(std::fabs(scores[i]) <= std::numeric_limits<float>::max())) {  // also catches NaN
      fail(ErrorCode::InvalidFile, "{}: tokenizer.ggml.scores[{}] is {} (expected a finite float)", f.path(), i,
           scores[i]);
    }
    tok.scores.push_back(static_cast<float>(scores[i]));
  }
  const auto types = f.get_numbers("tokenizer.ggml.token_type");
  for (size_t i = 0; i < types.size(); ++i) {
    const double t = types[i];
    if (!(t >= 0 && t <= 64 && t == std::floor(t))) {
      fail(ErrorCode::InvalidFile, "{}: tokenizer.ggml.token_type[{}] is {} (expected a small non-negative integer)",
           f.path(), i, t);
    }
    tok.token_types.push_back(static_cast<int32_t>(t));
  }
  if (!tok.scores.empty() && tok.scores.size() != n) {
    fail(ErrorCode::InvalidFile, "{}: tokenizer.ggml.scores has {} entries but there are {} tokens", f.path(),
         tok.scores.size(), n);
  }
  if (!tok.token_types.empty() && tok.token_types.size() != n) {
    fail(ErrorCode::InvalidFile, "{}: tokenizer.ggml.token_type has {} entries but there are {} tokens", f.path(),
         tok.token_types.size(), n);
  }
  if (f.has("tokenizer.ggml.merges")) tok.merges = f.get_strings("tokenizer.ggml.merges");
  auto id = [&](const char* key) -> int32_t {
    if (!f.has(key)) return -1;
    const uint64_t v = f.get_uint(key, 0);
    // llama.cpp quietly ignores an out-of-range id; a file that names a token it lacks is broken.
    if (v >= n) fail(ErrorCode::InvalidFile, "{}: {} is {} but the vocabulary has {} tokens", f.path(), key, v, n);
    return static_cast<int32_t>(v);
  };
  tok.bos_id = id("tokenizer.ggml.bos_token_id");
  tok.eos_id = id("tokenizer.ggml.eos_token_id");
  tok.unk_id = id("tokenizer.ggml.unknown_token_id");
  tok.pad_id = id("tokenizer.ggml.padding_token_id");
  tok.sep_id = id("tokenizer.ggml.seperator_token_id");  // sic: the key llama.cpp writes
  tok.cls_id = id("tokenizer.ggml.cls_token_id");
  tok.eot_id = id("tokenizer.ggml.eot_token_id");
  tok.eom_id = id("tokenizer.ggml.eom_token_id");
  tok.mask_id = id("tokenizer.ggml.mask_token_id");
  auto opt_bool = [&](const char* key) -> std::optional<bool> {
    if (!f.has(key)) return std::nullopt;
    return f.get_bool(key, false);
  };
  tok.add_bos = opt_bool("tokenizer.ggml.add_bos_token");
  tok.add_eos = opt_bool("tokenizer.ggml.add_eos_token");
  tok.add_sep = opt_bool("tokenizer.ggml.add_sep_token");
  tok.add_space_prefix = opt_bool("tokenizer.ggml.add_space_prefix");
  tok.lowercase = opt_bool("tokenizer.ggml.normalizer.lowercase");
  tok.strip_accents = opt_bool("tokenizer.ggml.normalizer.strip_accents");
  tok.model_name = f.get_string("general.name", "");
  tok.chat_template = f.get_string("tokenizer.chat_template", "");
  return tok;
}

TokenizerData load_gguf_tokenizer(const std::string& path) { return read_gguf_tokenizer(gguf::File::open(path)); }

TokenizerData load_tokenizer(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec) || path.ends_with(".json")) return load_tokenizer_json(path);
  return load_gguf_tokenizer(path);
}

}  // namespace vireo
