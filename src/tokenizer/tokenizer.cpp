// Tokenizer: vocabulary set-up (token attributes, special tokens, defaults) following llama.cpp's
// llama_vocab::impl::load for GGUF data and Hugging Face's rules for tokenizer.json data; special-token
// partitioning; the three algorithms; token_to_piece and detokenize.
#include "vireo/tokenizer/tokenizer.h"

#include <algorithm>
#include <optional>
#include <queue>
#include <set>

#include "tokenizer/pre_tokenizer.h"
#include "tokenizer/token_index.h"
#include "tokenizer/unicode.h"
#include "vireo/core/error.h"
#include "vireo/core/utf8.h"

namespace vireo {
namespace {

// llama.cpp's token attributes (llama_token_attr).
enum Attr : uint32_t {
  kUnknown = 1u << 0,
  kUnused = 1u << 1,
  kNormal = 1u << 2,
  kControl = 1u << 3,
  kUserDefined = 1u << 4,
  kByte = 1u << 5,
  kLstrip = 1u << 7,
  kRstrip = 1u << 8,
};

const char* const kSpaceMarker = "\xE2\x96\x81";  // U+2581, SentencePiece's visible space

// GPT-2's byte <-> printable code point mapping: printable Latin-1 bytes map to themselves, the other
// 68 bytes to U+0100.. in byte order.
struct ByteUnicode {
  uint32_t cp_of_byte[256];
  std::string utf8_of_byte[256];
  ByteUnicode() {
    uint32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      cp_of_byte[b] = printable ? static_cast<uint32_t>(b) : next++;
      unicode::append_utf8(utf8_of_byte[b], cp_of_byte[b]);
    }
  }
  // The byte a code point stands for, or -1.
  int byte_of(uint32_t cp) const {
    if (cp < 256) {
      const bool printable = (cp >= 0x21 && cp <= 0x7E) || (cp >= 0xA1 && cp <= 0xAC) || (cp >= 0xAE);
      if (printable) return static_cast<int>(cp);
      return -1;
    }
    for (int b = 0; b < 256; ++b) {
      if (cp_of_byte[b] == cp) return b;
    }
    return -1;
  }
};
const ByteUnicode& byte_unicode() {
  static const ByteUnicode t;
  return t;
}

void replace_all(std::string& s, std::string_view from, std::string_view to) {
  std::string out;
  out.reserve(s.size());
  size_t pos = 0;
  for (size_t hit; (hit = s.find(from, pos)) != std::string::npos; pos = hit + from.size()) {
    out.append(s, pos, hit - pos);
    out.append(to);
  }
  out.append(s, pos, std::string::npos);
  s.swap(out);
}

bool c_isspace(char c) { return c == ' ' || (c >= '\t' && c <= '\r'); }

// A piece of the input after special-token partitioning: raw text [offset, offset+length) or a token.
struct Fragment {
  int32_t token = -1;
  size_t offset = 0, length = 0;
};

// llama.cpp's detokenize clean-up (clean_up_tokenization_spaces), applied in place with the same three
// passes, including its quirks. `keep`, when given, records which input bytes survive.
void clean_up_spaces(std::string& text) {
  auto pass = [&](auto&& body) {
    const size_t n = text.size();
    size_t total = n ? 1 : 0;
    body(n, total);
    text.resize(total);
  };
  pass([&](size_t n, size_t& total) {  // " ?", " !", " .", " ,"
    for (size_t i = 1; i < n; ++i) {
      const char x = text[i];
      if (text[i - 1] == ' ' && (x == '?' || x == '!' || x == '.' || x == ',')) --total;
      text[total++] = x;
    }
  });
  pass([&](size_t n, size_t& total) {  // " ' " -> "'"
    for (size_t i = 1; i < n; ++i) {
      const char x = text[i];
      if (x == '\'' && i + 1 < n && text[i - 1] == ' ' && text[i + 1] == ' ') {
        --total;
        text[++i] = '\0';
      }
      text[total++] = x;
    }
  });
  pass([&](size_t n, size_t& total) {  // " 's", " 'm", " 're", " 've"
    for (size_t i = 1; i < n; ++i) {
      const char x = text[i];
      if (text[i - 1] == ' ' && x == '\'' && i + 1 < n) {
        const char x1 = text[i + 1];
        if (x1 == 's' || x1 == 'm') {
          --total;
        } else if (x1 != 't' && x1 != 'd' && i + 2 < n) {
          const char x2 = text[i + 2];
          if ((x1 == 'r' && x2 == 'e') || (x1 == 'v' && x2 == 'e')) --total;
        }
      }
      text[total++] = x;
    }
  });
}

// Token texts llama.cpp looks for when the file names no such token (llama_vocab::impl::load).
const std::vector<std::vector<std::string>>& auto_detected_classes() {
  static const std::vector<std::vector<std::string>> c = {
      /*eot*/ {"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|end_of_text|>", "<EOT>",
               "_<EOT>", "[EOT]", "<\xEF\xBD\x9C" "end\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>", "<end_of_utterance>"},
      /*eom*/ {"<|eom_id|>"},
      /*fim_pre*/ {"<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<\xEF\xBD\x9C" "fim\xE2\x96\x81" "begin\xEF\xBD\x9C>", "<PRE>",
                   "\xE2\x96\x81<PRE>", "<|code_prefix|>", "<|prefix|>"},
      /*fim_suf*/ {"<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<\xEF\xBD\x9C" "fim\xE2\x96\x81hole\xEF\xBD\x9C>", "<SUF>",
                   "\xE2\x96\x81<SUF>", "<|code_suffix|>", "<|suffix|>"},
      /*fim_mid*/ {"<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<\xEF\xBD\x9C" "fim\xE2\x96\x81" "end\xEF\xBD\x9C>", "<MID>",
                   "\xE2\x96\x81<MID>", "<|code_middle|>", "<|middle|>"},
      /*fim_pad*/ {"<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"},
      /*fim_rep*/ {"<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"},
      /*fim_sep*/ {"<|file_sep|>"},
  };
  return c;
}
enum AutoClass { kEot, kEom, kFimPre, kFimSuf, kFimMid, kFimPad, kFimRep, kFimSep };

const std::set<std::string>& eog_texts() {
  static const std::set<std::string> s = {
      "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>", "<end_of_turn>",
      "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]", "<|end_of_text|>",
      "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>",
      "<\xEF\xBD\x9C" "end\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>", "[e~["};
  return s;
}

std::string lower_ascii(std::string s) {
  for (char& c : s) c = static_cast<char>(c >= 'A' && c <= 'Z' ? c + 32 : c);
  return s;
}

}  // namespace

struct Tokenizer::Impl {
  TokenizerKind kind = TokenizerKind::None;
  bool hf = false;  // tokenizer.json semantics (vs llama.cpp's for GGUF)

  // Vocabulary, then "virtual" strings past n_vocab: BPE merge parts and results that are not tokens.
  int32_t n_vocab = 0;
  tok::StringTable strings;
  std::vector<float> scores;
  std::vector<uint32_t> attrs;
  tok::StringIndex index;
  size_t max_token_len = 0;
  tok::StringTable pieces;  // token_to_piece(id, special = true)

  int32_t bos = -1, eos = -1, eot = -1, eom = -1, unk = -1, sep = -1, pad = -1, mask = -1;
  bool add_bos = false, add_eos = false, add_sep = false, add_space_prefix = false;
  bool ignore_merges = false, clean_spaces = false, byte_fallback = false;
  bool lowercase = true, strip_accents = true;
  bool nfc = false, prefix_space = false;
  std::set<int32_t> eog;
  std::vector<int32_t> special;  // partition order: longest text first (llama.cpp); by id for HF

  // BPE
  std::optional<tok::PreTokenizer> pre;
  tok::MergeIndex merges;
  int32_t byte_symbol[256];  // the symbol id each raw byte starts as (its GPT-2 character's id)

  int32_t find(std::string_view s) const {
    const int32_t id = index.find(s);
    return id < n_vocab ? id : -1;
  }
  int32_t intern(std::string_view s) {  // id of s, adding a virtual string when s is not a token
    int32_t id = index.find(s);
    if (id >= 0) return id;
    strings.push_back(s);
    id = static_cast<int32_t>(strings.size() - 1);
    index.insert(id);
    return id;
  }

  void partition(std::string_view text, bool parse_special, std::vector<Fragment>& out) const;
  void encode_bpe(std::string_view text, std::vector<int32_t>& out) const;
  void encode_spm(std::string_view text, std::vector<int32_t>& out) const;
  void encode_wpm(std::string_view text, std::vector<int32_t>& out) const;
  int32_t spm_byte_token(uint8_t b) const;
  std::string piece_of(int32_t id) const;
};

namespace {

void check_id(const char* what, int32_t id, int32_t n) {
  if (id >= n) fail(ErrorCode::InvalidFile, "tokenizer: {} id {} is outside the vocabulary of {} tokens", what, id, n);
}

}  // namespace

std::unique_ptr<Tokenizer> Tokenizer::create(const TokenizerData& d) {
  auto impl = std::make_unique<Impl>();
  Impl& t = *impl;
  t.kind = d.kind;
  if (d.kind != TokenizerKind::SentencePiece && d.kind != TokenizerKind::BytePairEncoding &&
      d.kind != TokenizerKind::WordPiece) {
    fail(ErrorCode::Unsupported, "tokenizer kind '{}' is not supported (SentencePiece, BPE and WordPiece are)",
         tokenizer_kind_name(d.kind));
  }
  if (!d.unsupported.empty()) fail(ErrorCode::Unsupported, "{}", d.unsupported);
  if (d.tokens.empty()) fail(ErrorCode::InvalidFile, "tokenizer: the vocabulary is empty");
  if (d.tokens.size() > 0x7FFFFFF0u) fail(ErrorCode::InvalidFile, "tokenizer: {} tokens is too many", d.tokens.size());
  t.hf = !d.added_tokens.empty() || !d.split_regexes.empty() || d.byte_level;
  const int32_t n = static_cast<int32_t>(d.tokens.size());
  t.n_vocab = n;

  // Vocabulary. llama.cpp renames empty entries so that every token has a distinct, non-empty text.
  size_t vocab_chars = 0;
  for (const std::string& tkn : d.tokens) vocab_chars += tkn.size();
  t.strings.reserve(d.tokens.size() + d.merges.size() / 4 + 1024, vocab_chars + vocab_chars / 4);
  for (int32_t i = 0; i < n; ++i) {
    t.strings.push_back(d.tokens[i].empty() && !t.hf ? fmt::format("[EMPTY_{}]", i) : d.tokens[i]);
    t.max_token_len = std::max(t.max_token_len, t.strings[i].size());
  }
  t.scores.assign(n, 0.0f);
  if (!d.scores.empty()) {
    if (d.scores.size() < d.tokens.size()) {
      fail(ErrorCode::InvalidFile, "tokenizer: {} scores for {} tokens", d.scores.size(), d.tokens.size());
    }
    std::copy_n(d.scores.begin(), n, t.scores.begin());
  }
  t.index.build(&t.strings, d.tokens.size() + d.merges.size() / 4 + 1024);
  for (int32_t i = 0; i < n; ++i) t.index.insert(i);

  // Token attributes: GGUF token types as llama.cpp maps them; tokenizer.json added tokens.
  t.attrs.assign(n, kNormal);
  if (!t.hf && !d.token_types.empty()) {
    if (d.token_types.size() < d.tokens.size()) {
      fail(ErrorCode::InvalidFile, "tokenizer: {} token types for {} tokens", d.token_types.size(), d.tokens.size());
    }
    for (int32_t i = 0; i < n; ++i) {
      switch (d.token_types[i]) {
        case 1: t.attrs[i] = kNormal; break;
        case 2: t.attrs[i] = kUnknown; break;
        case 3: t.attrs[i] = kControl; break;
        case 4: t.attrs[i] = kUserDefined; break;
        case 5: t.attrs[i] = kUnused; break;
        case 6: t.attrs[i] = kByte; break;
        default: t.attrs[i] = 0; break;  // undefined
      }
    }
  }
  for (const auto& a : d.added_tokens) {
    if (a.id < 0 || a.id >= n) fail(ErrorCode::InvalidFile, "tokenizer: added token id {} is outside the vocabulary of {}", a.id, n);
    t.attrs[a.id] = uint32_t{a.special ? kControl : kUserDefined} | (a.lstrip ? uint32_t{kLstrip} : 0u) |
                    (a.rstrip ? uint32_t{kRstrip} : 0u);
  }

  // Special ids; llama.cpp's per-kind defaults stand in where a GGUF file names none.
  for (auto [what, id] : {std::pair{"bos", d.bos_id}, {"eos", d.eos_id}, {"unk", d.unk_id}, {"sep", d.sep_id},
                          {"pad", d.pad_id}, {"cls", d.cls_id}, {"eot", d.eot_id}, {"eom", d.eom_id}, {"mask", d.mask_id}}) {
    check_id(what, id, n);
  }
  t.bos = d.bos_id;
  t.eos = d.eos_id;
  t.unk = d.unk_id;
  t.sep = d.sep_id;
  t.pad = d.pad_id;
  t.eot = d.eot_id;
  t.eom = d.eom_id;
  t.mask = d.mask_id;
  auto dflt = [n](int32_t& id, int32_t v) {
    if (id < 0 && v < n) id = v;
  };
  const tok::PreConfig* pre_config = nullptr;
  if (d.kind == TokenizerKind::BytePairEncoding && !t.hf) {
    const std::string pre = d.pre.empty() ? "default" : d.pre;
    pre_config = tok::find_pre_config(pre);
    if (!pre_config) {
      fail(ErrorCode::Unsupported, "tokenizer: unknown pre-tokenizer '{}' (tokenizer.ggml.pre); known: {}", pre,
           tok::known_pre_names());
    }
  }
  if (!t.hf) {
    switch (d.kind) {
      case TokenizerKind::SentencePiece:
        dflt(t.bos, 1), dflt(t.eos, 2), dflt(t.unk, 0);
        break;
      case TokenizerKind::WordPiece:
        if (t.bos < 0) t.bos = d.cls_id;
        dflt(t.bos, 101), dflt(t.unk, 100), dflt(t.sep, 102), dflt(t.pad, 0), dflt(t.mask, 103);
        break;
      default:
        if (!pre_config->no_bos_token) dflt(t.bos, 11);
        dflt(t.eos, 11);
        break;
    }
    if (pre_config && pre_config->no_bos_token && d.bos_id < 0) t.bos = -1;
  } else if (t.bos < 0 && d.kind == TokenizerKind::WordPiece) {
    t.bos = d.cls_id;
  }

  // Flags.
  // llama.cpp's defaults where a GGUF file is silent: SentencePiece and WordPiece add BOS (CLS), BPE only
  // for the families whose pre-tokenizer says so (Llama 3, ...); Hugging Face files say it explicitly.
  const bool default_bos = !t.hf && (d.kind == TokenizerKind::SentencePiece || d.kind == TokenizerKind::WordPiece ||
                                     (d.kind == TokenizerKind::BytePairEncoding && pre_config && pre_config->add_bos));
  t.add_bos = d.add_bos.value_or(default_bos);
  t.add_eos = d.add_eos.value_or(!t.hf && d.kind == TokenizerKind::Unigram);
  t.add_space_prefix = d.add_space_prefix.value_or(d.kind == TokenizerKind::SentencePiece);
  t.add_sep = d.add_sep.value_or(d.kind == TokenizerKind::WordPiece || (pre_config && pre_config->add_sep));
  t.lowercase = d.lowercase.value_or(true);
  t.strip_accents = d.strip_accents.value_or(t.lowercase);
  t.ignore_merges = d.ignore_merges.value_or(pre_config && pre_config->ignore_merges);
  t.clean_spaces = d.clean_spaces.value_or(pre_config ? pre_config->clean_spaces : d.kind == TokenizerKind::WordPiece);
  t.byte_fallback = d.byte_fallback;
  t.nfc = d.normalizer == "NFC";
  if (!d.normalizer.empty() && !t.nfc) {
    fail(ErrorCode::Unsupported, "tokenizer: normalizer '{}' is not supported (NFC is)", d.normalizer);
  }
  t.prefix_space = d.byte_level_prefix_space;

  // llama.cpp's text-based detection of end-of-turn, FIM and end-of-generation tokens; each detected
  // token becomes a control token. (llama.cpp takes the first match in hash order when a vocabulary has
  // several candidates for one role; vireo takes the lowest id.)
  if (!t.hf) {
    std::vector<int32_t> by_class(auto_detected_classes().size(), -1);
    by_class[kEot] = t.eot;
    by_class[kEom] = t.eom;
    for (size_t c = 0; c < by_class.size(); ++c) {
      if (by_class[c] >= 0) continue;
      for (const std::string& text : auto_detected_classes()[c]) {
        const int32_t id = t.find(text);
        if (id >= 0 && (by_class[c] < 0 || id < by_class[c])) by_class[c] = id;
      }
      if (by_class[c] >= 0) t.attrs[by_class[c]] |= kControl;
    }
    t.eot = by_class[kEot];
    t.eom = by_class[kEom];
    for (int32_t i = 0; i < n; ++i) {
      if ((t.attrs[i] & kControl) && t.strings[i].find("unused") != std::string::npos) t.attrs[i] |= kUnused;
    }
    for (AutoClass c : {kFimPad, kFimRep, kFimSep}) {
      if (by_class[c] >= 0) t.eog.insert(by_class[c]);
    }
  }
  for (const std::string& text : eog_texts()) {
    // Every vocabulary entry with that text (llama.cpp walks its text -> id map: the last duplicate).
    const int32_t id = t.find(text);
    if (id < 0) continue;
    t.eog.insert(id);
    if (!t.hf) t.attrs[id] |= kControl;
  }
  if (!t.hf) {
    for (const char* text : {"<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"}) {
      if (const int32_t id = t.find(text); id >= 0) t.attrs[id] = kUserDefined;  // gpt-oss: always rendered
    }
  }
  for (int32_t id : {t.eos, t.eot, t.eom}) {
    if (id >= 0) t.eog.insert(id);
  }
  if (!t.hf) {
    auto has = [&](const char* text, int32_t* id_out = nullptr) {
      for (int32_t id : t.eog) {
        if (t.strings[id] == text) {
          if (id_out) *id_out = id;
          return true;
        }
      }
      return false;
    };
    int32_t end_id = -1, s_id = -1;
    if (has("<|end|>", &end_id) &&
        ((has("<|return|>") && has("<|call|>")) || (has("<|calls|>") && has("<|flush|>")))) {
      t.eog.erase(end_id);
      t.attrs[end_id] = kUserDefined;
    }
    if (has("<|tool_response>") && has("</s>", &s_id)) {
      t.eog.erase(s_id);
      t.attrs[s_id] = kNormal;
    }
  }

  // Tokens matched in the text before anything else.
  for (int32_t i = 0; i < n; ++i) {
    if (t.attrs[i] & (kControl | kUserDefined | kUnknown)) t.special.push_back(i);
  }
  if (!t.hf) {
    std::stable_sort(t.special.begin(), t.special.end(),
                     [&](int32_t a, int32_t b) { return t.strings[a].size() > t.strings[b].size(); });
    // Per-model attributes llama.cpp sets by name (after building the list above).
    const std::string name = lower_ascii(d.model_name);
    auto set_attr = [&](const char* text, uint32_t attr, bool on) {
      if (const int32_t id = t.find(text); id >= 0) t.attrs[id] = on ? (t.attrs[id] | attr) : (t.attrs[id] & ~attr);
    };
    if (d.pre.find("jina-v2-de") != std::string::npos || d.pre.find("jina-v2-es") != std::string::npos ||
        d.pre.find("jina-v2-code") != std::string::npos) {
      set_attr("<mask>", kLstrip, true);
    } else if (name.find("phi-3") != std::string::npos || name.find("phi3") != std::string::npos) {
      for (int32_t id : t.special) t.attrs[id] |= kRstrip;
      set_attr("</s>", kRstrip, true);
      for (const char* text : {"<unk>", "<s>", "<|endoftext|>"}) set_attr(text, kRstrip, false);
    } else if (name.find("modern-bert") != std::string::npos) {
      set_attr("[MASK]", kLstrip, true);
    }
  }

  // BPE: pre-tokenizer and merges.
  if (d.kind == TokenizerKind::BytePairEncoding) {
    if (t.hf) {
      if (!d.byte_level) fail(ErrorCode::Unsupported, "tokenizer.json: only byte-level BPE is supported (no ByteLevel pre-tokenizer)");
      std::vector<std::string> regexes = d.split_regexes;
      if (d.byte_level_regex) {
        regexes.push_back("'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+");
      }
      t.pre.emplace(regexes, tok::PreTokenizer::Dialect::HuggingFace);
    } else {
      t.pre.emplace(pre_config->regexes, tok::PreTokenizer::Dialect::LlamaCpp);
    }
    if (d.merges.empty()) fail(ErrorCode::InvalidFile, "tokenizer: BPE vocabulary without merges");
    t.merges.reserve(d.merges.size());
    for (size_t r = 0; r < d.merges.size(); ++r) {
      const std::string& m = d.merges[r];
      const size_t sp = m.find(' ', 1);  // llama.cpp splits at the first space after the first byte
      std::string left, right;
      if (sp != std::string::npos) {
        left = m.substr(0, sp);
        right = m.substr(sp + 1);
      }
      if (left.empty() || right.empty()) continue;  // can never match a symbol
      const int32_t l = t.intern(left), rr = t.intern(right), merged = t.intern(left + right);
      t.merges.insert(l, rr, {static_cast<int32_t>(r), merged});
    }
    for (int b = 0; b < 256; ++b) t.byte_symbol[b] = t.intern(byte_unicode().utf8_of_byte[b]);
  }

  // token_to_piece cache (special = true), as llama.cpp builds it.
  t.pieces.reserve(n, vocab_chars);
  for (int32_t i = 0; i < n; ++i) t.pieces.push_back(t.piece_of(i));
  t.pieces.shrink_to_fit();
  t.strings.shrink_to_fit();
  return std::unique_ptr<Tokenizer>(new Tokenizer(std::move(impl)));
}

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::~Tokenizer() = default;

// ---------------------------------------------------------------------------------------------------
// Special tokens

void Tokenizer::Impl::partition(std::string_view text, bool parse_special, std::vector<Fragment>& out) const {
  out.clear();
  if (text.empty()) return;
  out.push_back({-1, 0, text.size()});
  auto usable = [&](int32_t id) { return parse_special || !(attrs[id] & (kControl | kUnknown)); };
  if (hf) {
    // Hugging Face: leftmost match, longest at that position, over all usable added tokens at once.
    std::vector<int32_t> cands;
    for (int32_t id : special) {
      if (usable(id) && !strings[id].empty()) cands.push_back(id);
    }
    if (cands.empty()) return;
    out.clear();
    size_t start = 0, i = 0;
    while (i < text.size()) {
      int32_t best = -1;
      for (int32_t id : cands) {
        const std::string_view s = strings[id];
        if (text.compare(i, s.size(), s) == 0 && (best < 0 || s.size() > strings[best].size())) best = id;
      }
      if (best < 0) {
        ++i;
        continue;
      }
      size_t left_end = i;
      if (attrs[best] & kLstrip) {
        while (left_end > start && unicode::is_whitespace(static_cast<uint8_t>(text[left_end - 1]))) --left_end;
      }
      if (left_end > start) out.push_back({-1, start, left_end - start});
      out.push_back({best, 0, 0});
      i += strings[best].size();
      if (attrs[best] & kRstrip) {
        while (i < text.size() && unicode::is_whitespace(static_cast<uint8_t>(text[i]))) ++i;
      }
      start = i;
    }
    if (start < text.size()) out.push_back({-1, start, text.size() - start});
    return;
  }
  // llama.cpp: each special token in turn (longest first) splits every remaining text fragment at all
  // of its occurrences; lstrip/rstrip drop ASCII whitespace beside it.
  std::vector<Fragment> next;
  for (int32_t id : special) {
    if (!usable(id)) continue;
    const std::string_view s = strings[id];
    bool any = false;
    for (const Fragment& f : out) {
      if (f.token < 0 && f.length >= s.size() && text.substr(f.offset, f.length).find(s) != std::string_view::npos) {
        any = true;
        break;
      }
    }
    if (!any) continue;
    next.clear();
    for (const Fragment& f : out) {
      if (f.token >= 0) {
        next.push_back(f);
        continue;
      }
      size_t base = f.offset, len = f.length;
      while (true) {
        const size_t hit = text.substr(0, base + len).find(s, base);
        if (hit == std::string_view::npos) {
          next.push_back({-1, base, len});
          break;
        }
        if (hit > base) {
          size_t left_len = hit - base;
          if (attrs[id] & kLstrip) {
            while (left_len > 0 && c_isspace(text[base + left_len - 1])) --left_len;
          }
          if (left_len > 0) next.push_back({-1, base, left_len});
        }
        next.push_back({id, 0, 0});
        if (hit + s.size() < base + len) {
          size_t right = hit + s.size(), right_len = len - ((hit - base) + s.size());
          if (attrs[id] & kRstrip) {
            while (right_len > 0 && c_isspace(text[right])) ++right, --right_len;
          }
          base = right;
          len = right_len;
          if (len == 0) break;
        } else {
          break;
        }
      }
    }
    out.swap(next);
  }
}

// ---------------------------------------------------------------------------------------------------
// BPE (llm_tokenizer_bpe_session)

namespace {

struct Symbol {
  int32_t id;
  int32_t prev, next;
  uint32_t begin, len;  // bytes of the word this symbol covers
};

struct Bigram {
  int32_t rank;
  int32_t left;
  int32_t left_id, right_id;
  bool operator<(const Bigram& o) const {  // the priority queue pops the lowest rank, then leftmost
    return rank > o.rank || (rank == o.rank && left > o.left);
  }
};

}  // namespace

void Tokenizer::Impl::encode_bpe(std::string_view text, std::vector<int32_t>& out) const {
  std::string input;
  std::string_view src = text;
  if (hf) {
    input = unicode::sanitize_utf8(text);
    if (nfc) input = unicode::nfc(input);
    if (prefix_space && (input.empty() || input[0] != ' ')) input.insert(input.begin(), ' ');
    src = input;
  }
  std::vector<uint32_t> cps;
  cps.reserve(src.size());
  unicode::decode_utf8(src, cps);
  std::vector<uint32_t> lengths;
  pre->split(cps, lengths);

  const ByteUnicode& bu = byte_unicode();
  std::string word, encoded;
  std::vector<Symbol> symbols;
  std::priority_queue<Bigram> queue;
  size_t cp_pos = 0;
  for (uint32_t wl : lengths) {
    // The word's bytes: its code points re-encoded (so ill-formed input arrives as U+FFFD).
    word.clear();
    for (uint32_t k = 0; k < wl; ++k) {
      const uint32_t cp = cps[cp_pos + k];
      unicode::append_utf8(word, cp > 0x10FFFF ? 0xFFFD : cp);  // llama.cpp would throw here
    }
    cp_pos += wl;
    if (word.empty()) continue;
    if (ignore_merges) {
      encoded.clear();
      for (unsigned char b : word) encoded += bu.utf8_of_byte[b];
      if (const int32_t id = find(encoded); id >= 0) {
        out.push_back(id);
        continue;
      }
    }
    symbols.clear();
    for (uint32_t i = 0; i < word.size(); ++i) {
      const int32_t last = static_cast<int32_t>(word.size()) - 1;
      symbols.push_back({byte_symbol[static_cast<uint8_t>(word[i])], static_cast<int32_t>(i) - 1,
                         static_cast<int32_t>(i) == last ? -1 : static_cast<int32_t>(i) + 1, i, 1});
    }
    auto add_bigram = [&](int32_t left, int32_t right) {
      if (left < 0 || right < 0) return;
      if (const auto* m = merges.find(symbols[left].id, symbols[right].id)) {
        queue.push({m->rank, left, symbols[left].id, symbols[right].id});
      }
    };
    for (int32_t i = 1; i < static_cast<int32_t>(symbols.size()); ++i) add_bigram(i - 1, i);
    while (!queue.empty()) {
      const Bigram bg = queue.top();
      queue.pop();
      Symbol& l = symbols[bg.left];
      if (l.len == 0 || l.next < 0) continue;
      Symbol& r = symbols[l.next];
      if (l.id != bg.left_id || r.id != bg.right_id) continue;  // outdated
      l.id = merges.find(l.id, r.id)->merged;
      l.len += r.len;
      r.len = 0;
      l.next = r.next;
      if (r.next >= 0) symbols[r.next].prev = bg.left;
      add_bigram(l.prev, bg.left);
      add_bigram(bg.left, l.next);
    }
    for (int32_t i = 0; i >= 0; i = symbols[i].next) {
      const Symbol& s = symbols[i];
      if (s.id >= 0 && s.id < n_vocab) {
        out.push_back(s.id);
        continue;
      }
      // Not a token: llama.cpp looks up each byte of the piece's (byte-encoded) text on its own.
      encoded.clear();
      for (uint32_t k = 0; k < s.len; ++k) encoded += bu.utf8_of_byte[static_cast<uint8_t>(word[s.begin + k])];
      for (char c : encoded) {
        if (const int32_t id = find(std::string_view(&c, 1)); id >= 0) out.push_back(id);
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------------
// SentencePiece (llm_tokenizer_spm_session)

int32_t Tokenizer::Impl::spm_byte_token(uint8_t b) const {
  static const char* hex = "0123456789ABCDEF";
  const char buf[6] = {'<', '0', 'x', hex[b >> 4], hex[b & 15], '>'};
  if (const int32_t id = find(std::string_view(buf, 6)); id >= 0) return id;
  const char c = static_cast<char>(b);
  if (const int32_t id = find(std::string_view(&c, 1)); id >= 0) return id;
  return unk;  // llama.cpp throws here; vireo falls back to the unknown token
}

namespace {
struct SpmBigram {
  float score;
  int32_t left, right;
  size_t size;
  bool operator<(const SpmBigram& o) const {  // highest score first, then leftmost
    return score < o.score || (score == o.score && left > o.left);
  }
};
}  // namespace

void Tokenizer::Impl::encode_spm(std::string_view text, std::vector<int32_t>& out) const {
  std::vector<Symbol> symbols;
  for (size_t off = 0; off < text.size();) {
    const size_t len = std::min(unicode::utf8_len(static_cast<uint8_t>(text[off])), text.size() - off);
    const int32_t i = static_cast<int32_t>(symbols.size());
    symbols.push_back({0, i - 1, off + len == text.size() ? -1 : i + 1, static_cast<uint32_t>(off),
                       static_cast<uint32_t>(len)});
    off += len;
  }
  std::priority_queue<SpmBigram> queue;
  auto try_add = [&](int32_t left, int32_t right) {
    if (left < 0 || right < 0) return;
    const size_t size = symbols[left].len + symbols[right].len;
    const int32_t id = find(text.substr(symbols[left].begin, size));
    if (id < 0) return;
    queue.push({scores[id], left, right, size});
  };
  for (int32_t i = 1; i < static_cast<int32_t>(symbols.size()); ++i) try_add(i - 1, i);
  while (!queue.empty()) {
    const SpmBigram bg = queue.top();
    queue.pop();
    Symbol& l = symbols[bg.left];
    Symbol& r = symbols[bg.right];
    if (l.len == 0 || r.len == 0 || l.len + r.len != bg.size) continue;
    l.len += r.len;
    r.len = 0;
    l.next = r.next;
    if (r.next >= 0) symbols[r.next].prev = bg.left;
    try_add(l.prev, bg.left);
    try_add(bg.left, l.next);
  }
  if (symbols.empty()) return;
  for (int32_t i = 0; i >= 0; i = symbols[i].next) {
    const Symbol& s = symbols[i];
    const std::string_view piece = text.substr(s.begin, s.len);
    if (const int32_t id = find(piece); id >= 0) {
      out.push_back(id);
      continue;
    }
    for (char c : piece) {  // byte fallback
      if (const int32_t id = spm_byte_token(static_cast<uint8_t>(c)); id >= 0) out.push_back(id);
    }
  }
}

// ---------------------------------------------------------------------------------------------------
// WordPiece (llm_tokenizer_wpm_session)

namespace {
bool is_chinese_char(uint32_t cp) {
  return (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0x3400 && cp <= 0x4DBF) || (cp >= 0x20000 && cp <= 0x2A6DF) ||
         (cp >= 0x2A700 && cp <= 0x2B73F) || (cp >= 0x2B740 && cp <= 0x2B81F) ||
         (cp >= 0x2B920 && cp <= 0x2CEAF) ||  // sic: 0x2B920, as Hugging Face's Rust code has it
         (cp >= 0xF900 && cp <= 0xFAFF) || (cp >= 0x2F800 && cp <= 0x2FA1F);
}
}  // namespace

void Tokenizer::Impl::encode_wpm(std::string_view text, std::vector<int32_t>& out) const {
  std::vector<uint32_t> cps;
  unicode::decode_utf8(text, cps);
  std::vector<std::string> words(1);
  for (uint32_t cp : cps) {
    if (strip_accents) cp = unicode::nfd_first(cp);
    const uint16_t f = unicode::flags(cp);
    if (f & unicode::kWhitespace) {
      if (!words.back().empty()) words.emplace_back();
      continue;
    }
    if (cp == 0 || cp == 0xFFFD || (f & unicode::kControl)) continue;
    if (strip_accents && (f & unicode::kMark)) continue;
    std::string s;
    const uint32_t c = lowercase ? unicode::to_lower(cp) : cp;
    unicode::append_utf8(s, c > 0x10FFFF ? 0xFFFD : c);
    if ((f & unicode::kPunctuation) || (cp < 0x7F && (f & unicode::kSymbol)) || is_chinese_char(cp)) {
      if (!words.back().empty()) words.emplace_back();
      words.back() = s;
      words.emplace_back();
    } else {
      words.back() += s;
    }
  }
  for (const std::string& w : words) {
    if (w.empty()) continue;
    const std::string word = kSpaceMarker + w;  // word-initial pieces carry the marker in the vocabulary
    const size_t n = word.size(), start_size = out.size();
    for (size_t i = 0; i < n; ++i) {
      bool matched = false;
      for (size_t j = std::min(n, i + max_token_len + 1); j > i; --j) {
        if (const int32_t id = find(std::string_view(word).substr(i, j - i)); id >= 0) {
          out.push_back(id);
          matched = true;
          i = j - 1;
          break;
        }
      }
      if (!matched) {  // the whole word is unknown
        out.resize(start_size);
        break;
      }
    }
    if (out.size() == start_size) out.push_back(unk);
  }
}

// ---------------------------------------------------------------------------------------------------
// Encode

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special, bool parse_special) const {
  const Impl& t = *impl_;
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 4);
  std::vector<Fragment> frags;
  t.partition(text, parse_special, frags);
  switch (t.kind) {
    case TokenizerKind::SentencePiece: {
      if (add_special && t.add_bos && t.bos >= 0) out.push_back(t.bos);
      bool prev_special = true;  // a space prefix goes before the first text and after each special token
      std::string piece;
      for (const Fragment& f : frags) {
        if (f.token >= 0) {
          out.push_back(f.token);
          prev_special = true;
          continue;
        }
        piece.clear();
        if (t.add_space_prefix && prev_special) piece.push_back(' ');
        piece.append(text.substr(f.offset, f.length));
        replace_all(piece, " ", kSpaceMarker);
        t.encode_spm(piece, out);
        prev_special = false;
      }
      if (add_special && t.add_eos && t.eos >= 0) out.push_back(t.eos);
      break;
    }
    case TokenizerKind::BytePairEncoding: {
      if (add_special && t.add_bos && t.bos >= 0) out.push_back(t.bos);
      for (const Fragment& f : frags) {
        if (f.token >= 0) out.push_back(f.token);
        else t.encode_bpe(text.substr(f.offset, f.length), out);
      }
      if (add_special && t.add_eos && t.eos >= 0) out.push_back(t.eos);
      break;
    }
    case TokenizerKind::WordPiece: {
      if (add_special && t.bos >= 0) out.push_back(t.bos);
      for (const Fragment& f : frags) {
        if (f.token >= 0) out.push_back(f.token);
        else t.encode_wpm(text.substr(f.offset, f.length), out);
      }
      if (add_special && t.sep >= 0) out.push_back(t.sep);
      break;
    }
    default:
      break;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------
// Decode

std::string Tokenizer::Impl::piece_of(int32_t id) const {
  const std::string_view text = strings[id];
  const uint32_t a = attrs[id];
  if (a & (kUnknown | kControl | kUserDefined)) return std::string(text);
  if (a & kNormal) {
    if (kind == TokenizerKind::BytePairEncoding) {
      // GPT-2 byte-level characters back to bytes; llama.cpp marks characters outside the mapping.
      std::vector<uint32_t> cps;
      unicode::decode_utf8(text, cps);
      std::string out;
      for (uint32_t cp : cps) {
        const int b = byte_unicode().byte_of(cp);
        if (b >= 0) {
          out.push_back(static_cast<char>(b));
        } else {
          std::string utf8;
          unicode::append_utf8(utf8, cp > 0x10FFFF ? 0xFFFD : cp);
          out += "[UNK_BYTE_0x";
          for (unsigned char c : utf8) out += fmt::format("{:02x}", c);
          out.append(text);
          out += "]";
        }
      }
      return out;
    }
    std::string out(text);
    replace_all(out, kSpaceMarker, " ");
    return out;
  }
  if (a & kByte) {
    if (text.size() >= 5) {
      const std::string hex(text.substr(3, 2));
      return std::string(1, static_cast<char>(std::strtol(hex.c_str(), nullptr, 16)));
    }
    return "";
  }
  return "";
}

std::string Tokenizer::token_to_piece(int32_t id, bool special) const {
  const Impl& t = *impl_;
  if (id < 0 || id >= t.n_vocab) fail(ErrorCode::InvalidArgument, "token id {} is outside the vocabulary of {}", id, t.n_vocab);
  if (!special && (t.attrs[id] & (kUnknown | kControl))) return "";
  return std::string(t.pieces[id]);
}

std::string Tokenizer::decode(std::span<const int32_t> ids, bool remove_special, bool unparse_special) const {
  const Impl& t = *impl_;
  bool remove_space = t.add_space_prefix;
  if (remove_special && t.add_bos && !ids.empty() && ids.front() == t.bos) {
    remove_space = false;
    ids = ids.subspan(1);
  }
  if (remove_special && t.add_eos && !ids.empty() && ids.back() == t.eos) ids = ids.subspan(0, ids.size() - 1);
  // A removed BOS keeps the SentencePiece leading space, as llama.cpp does.
  return decode_window(ids, remove_space, unparse_special);
}

int32_t Tokenizer::n_vocab() const { return impl_->n_vocab; }
TokenizerKind Tokenizer::kind() const { return impl_->kind; }
int32_t Tokenizer::bos_id() const { return impl_->bos; }
int32_t Tokenizer::eos_id() const { return impl_->kind == TokenizerKind::WordPiece ? impl_->sep : impl_->eos; }
int32_t Tokenizer::eot_id() const { return impl_->eot; }
bool Tokenizer::add_bos() const { return impl_->add_bos; }
bool Tokenizer::add_eos() const { return impl_->add_eos; }
bool Tokenizer::is_eog(int32_t id) const { return impl_->eog.count(id) > 0; }
bool Tokenizer::is_control(int32_t id) const {
  return id >= 0 && id < impl_->n_vocab && (impl_->attrs[id] & (kControl | kUnknown));
}
std::string_view Tokenizer::token_text(int32_t id) const {
  if (id < 0 || id >= impl_->n_vocab) {
    fail(ErrorCode::InvalidArgument, "token id {} is outside the vocabulary of {}", id, impl_->n_vocab);
  }
  return impl_->strings[id];
}
int32_t Tokenizer::token_id(std::string_view text) const { return impl_->find(text); }

// ---------------------------------------------------------------------------------------------------
// StreamDecoder

std::string Tokenizer::decode_window(std::span<const int32_t> ids, bool first, bool unparse_special) const {
  // decode() without remove_special; the SentencePiece leading space goes only at the very start.
  const Impl& t = *impl_;
  bool remove_space = first && t.add_space_prefix;
  std::string out;
  for (int32_t id : ids) {
    std::string piece = token_to_piece(id, unparse_special);
    if (remove_space && !piece.empty() && piece[0] == ' ') piece.erase(0, 1);
    remove_space = false;
    out += piece;
  }
  if (t.clean_spaces) clean_up_spaces(out);
  return out;
}

StreamDecoder::StreamDecoder(const Tokenizer& tokenizer, bool unparse_special)
    : tok_(tokenizer), unparse_special_(unparse_special) {}

std::string StreamDecoder::push(int32_t id) {
  ids_.push_back(id);
  const std::string full = tok_.decode_window(ids_, first_, unparse_special_);
  // The end of the text may still change: an unfinished UTF-8 character, or (with clean-up) a space or
  // apostrophe among the last bytes that the next bytes could remove. That tail waits.
  size_t stable = full.size();
  if (tok_.impl_->clean_spaces) {
    for (size_t k = 1; k <= 4 && k <= full.size(); ++k) {
      const char c = full[full.size() - k];
      if (c == ' ' || c == '\'') stable = full.size() - k;
    }
  }
  stable = unicode::incomplete_tail_start(std::string_view(full).substr(0, stable));
  std::string out;
  if (stable > emitted_) out = unicode::sanitize_utf8(std::string_view(full).substr(emitted_, stable - emitted_));
  emitted_ = std::max(emitted_, stable);
  // Bound the work per token: once everything is out, start a fresh window (no clean-up rule reaches
  // back past a byte that is neither a space nor an apostrophe).
  if (emitted_ == full.size() && full.size() > 256) {
    ids_.clear();
    emitted_ = 0;
    first_ = false;
  }
  return out;
}

std::string StreamDecoder::flush() {
  const std::string full = tok_.decode_window(ids_, first_, unparse_special_);
  std::string out = full.size() > emitted_ ? unicode::sanitize_utf8(std::string_view(full).substr(emitted_)) : "";
  if (!ids_.empty()) first_ = false;
  ids_.clear();
  emitted_ = 0;
  return out;
}

}  // namespace vireo
