#include "tokenizer/pre_tokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <algorithm>
#include <map>

#include "tokenizer/unicode.h"
#include "vireo/core/error.h"
#include "vireo/core/utf8.h"

namespace vireo::tok {
namespace {

using unicode::flags;
constexpr uint32_t kOutOfRange = 0xFFFFFFFF;
constexpr uint16_t kWsLetterNumber = unicode::kWhitespace | unicode::kLetter | unicode::kNumber;

// The patterns llama.cpp recognises and splits with hand-written code (unicode_regex_split_custom).
const char* const kGpt2Pattern = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)";
const char* const kGpt2PatternHf =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
const char* const kLlama3PatternHf =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|"
    "\\s+(?!\\S)|\\s+";
const char* const kLlama3Pattern =
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}"
    "\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const char* const kQwen2PatternHf =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|"
    "\\s+(?!\\S)|\\s+";
const char* const kQwen2Pattern =
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}"
    "]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

// A view of one fragment [begin, end) of the code points; positions outside read as "nothing".
struct Window {
  const std::vector<uint32_t>& cps;
  size_t begin, end;
  uint32_t cp(size_t pos) const { return pos >= begin && pos < end ? cps[pos] : kOutOfRange; }
  uint16_t fl(size_t pos) const { return pos >= begin && pos < end ? flags(cps[pos]) : 0; }
};

// Emits word lengths as the splitter advances (the running end always equals `pos` between tokens).
struct Emitter {
  std::vector<uint32_t>& out;
  size_t prev;
  size_t add(size_t end) {
    const size_t len = end - prev;
    if (len > 0) out.push_back(static_cast<uint32_t>(len));
    prev = end;
    return len;
  }
};

// GPT-2: 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
void split_gpt2(const Window& w, std::vector<uint32_t>& out) {
  Emitter em{out, w.begin};
  for (size_t pos = w.begin; pos < w.end;) {
    const uint32_t cp = w.cp(pos);
    const uint16_t f = w.fl(pos);
    if (cp == '\'' && pos + 1 < w.end) {
      const uint32_t n1 = w.cp(pos + 1);
      if (n1 == 's' || n1 == 't' || n1 == 'm' || n1 == 'd') {
        pos += em.add(pos + 2);
        continue;
      }
      if (pos + 2 < w.end) {
        const uint32_t n2 = w.cp(pos + 2);
        if ((n1 == 'r' && n2 == 'e') || (n1 == 'v' && n2 == 'e') || (n1 == 'l' && n2 == 'l')) {
          pos += em.add(pos + 3);
          continue;
        }
      }
    }
    uint16_t f2 = cp == ' ' ? w.fl(pos + 1) : f;
    if (f2 & unicode::kLetter) {
      pos += cp == ' ';
      while (f2 & unicode::kLetter) f2 = w.fl(++pos);
      em.add(pos);
      continue;
    }
    if (f2 & unicode::kNumber) {
      pos += cp == ' ';
      while (f2 & unicode::kNumber) f2 = w.fl(++pos);
      em.add(pos);
      continue;
    }
    if (!(f2 & kWsLetterNumber) && f2) {
      pos += cp == ' ';
      while (!(f2 & kWsLetterNumber) && f2) f2 = w.fl(++pos);
      em.add(pos);
      continue;
    }
    size_t n_ws = 0;
    while (w.fl(pos + n_ws) & unicode::kWhitespace) ++n_ws;
    if (n_ws > 1 && w.cp(pos + n_ws) != kOutOfRange) {  // \s+(?!\S): leave the last one for the word
      pos += n_ws - 1;
      em.add(pos);
      continue;
    }
    if (n_ws > 0) {
      pos += n_ws;
      em.add(pos);
      continue;
    }
    em.add(++pos);
  }
}

// Llama 3 (max_digits 3) and Qwen 2 (max_digits 1):
// (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
void split_llama3(const Window& w, size_t max_digits, std::vector<uint32_t>& out) {
  Emitter em{out, w.begin};
  for (size_t pos = w.begin; pos < w.end;) {
    const uint32_t cp = w.cp(pos);
    const uint16_t f = w.fl(pos);
    if (cp == '\'' && pos + 1 < w.end) {
      const uint32_t n1 = unicode::to_lower(w.cp(pos + 1));
      if (n1 == 's' || n1 == 't' || n1 == 'm' || n1 == 'd') {
        pos += em.add(pos + 2);
        continue;
      }
      if (pos + 2 < w.end) {
        const uint32_t n2 = unicode::to_lower(w.cp(pos + 2));
        if ((n1 == 'r' && n2 == 'e') || (n1 == 'v' && n2 == 'e') || (n1 == 'l' && n2 == 'l')) {
          pos += em.add(pos + 3);
          continue;
        }
      }
    }
    if (!(cp == '\r' || cp == '\n' || (f & unicode::kNumber))) {
      if ((f & unicode::kLetter) || (w.fl(pos + 1) & unicode::kLetter)) {
        ++pos;
        while (w.fl(pos) & unicode::kLetter) ++pos;
        em.add(pos);
        continue;
      }
    }
    if (f & unicode::kNumber) {
      size_t start = pos;
      while (w.fl(pos) & unicode::kNumber) {
        if (++pos - start >= max_digits) {
          em.add(pos);
          start = pos;
        }
      }
      em.add(pos);
      continue;
    }
    uint16_t f2 = cp == ' ' ? w.fl(pos + 1) : f;
    if (!(f2 & kWsLetterNumber) && f) {  // llama.cpp tests the flags of cp here, not of the next one
      pos += cp == ' ';
      while (!(f2 & kWsLetterNumber) && f2) f2 = w.fl(++pos);
      for (uint32_t c = w.cp(pos); c == '\r' || c == '\n'; c = w.cp(++pos)) {
      }
      em.add(pos);
      continue;
    }
    size_t n_ws = 0, last_newline_end = 0;
    while (w.fl(pos + n_ws) & unicode::kWhitespace) {
      const uint32_t c = w.cp(pos + n_ws);
      if (c == '\r' || c == '\n') last_newline_end = pos + n_ws + 1;
      ++n_ws;
    }
    if (last_newline_end > 0) {  // \s*[\r\n]+
      pos = last_newline_end;
      em.add(pos);
      continue;
    }
    if (n_ws > 1 && w.cp(pos + n_ws) != kOutOfRange) {
      pos += n_ws - 1;
      em.add(pos);
      continue;
    }
    if (n_ws > 0) {
      pos += n_ws;
      em.add(pos);
      continue;
    }
    em.add(++pos);
  }
}

// The byte llama.cpp's collapsed text uses for each \p{..} category, and the ASCII members the
// collapsed regex adds beside it.
struct CategoryCollapse {
  uint16_t flag;
  char byte;
  const char* ascii;
};
constexpr CategoryCollapse kCollapse[] = {
    {unicode::kNumber, '\xD1', "0-9"},
    {unicode::kLetter, '\xD2', "A-Za-z"},
    {unicode::kPunctuation, '\xD3', "!-#%-*,-/:-;?-@\\[-\\]_\\{\\}"},
    {unicode::kMark, '\xD4', ""},
    {unicode::kSymbol, '\xD5', "\\$\\+<->^`\\|\\~"},
};
const std::map<std::string, uint16_t>& category_names() {
  static const std::map<std::string, uint16_t> m = {
      {"\\p{N}", unicode::kNumber},  {"\\p{L}", unicode::kLetter},  {"\\p{P}", unicode::kPunctuation},
      {"\\p{M}", unicode::kMark},    {"\\p{S}", unicode::kSymbol},  {"\\p{Lu}", unicode::kLetter},
      {"\\p{Ll}", unicode::kLetter}, {"\\p{Lt}", unicode::kLetter}, {"\\p{Lm}", unicode::kLetter},
      {"\\p{Lo}", unicode::kLetter}};
  return m;
}

bool uses_categories(const std::string& re) {
  for (const auto& [name, flag] : category_names()) {
    if (re.find(name) != std::string::npos) return true;
  }
  return false;
}

char collapsed_byte(uint32_t cp) {
  if (cp < 128) return static_cast<char>(cp);
  const uint16_t f = flags(cp);
  if (f & unicode::kWhitespace) return '\x0B';
  for (const auto& c : kCollapse) {
    if ((f & unicode::kCategoryMask) == c.flag) return c.byte;
  }
  return '\xD0';
}

// llama.cpp's rewrite of a pattern for the collapsed text: \p{X} -> [<byte><ASCII members>].
std::string collapse_regex(const std::string& re) {
  std::string out;
  bool inside = false;
  for (size_t i = 0; i < re.size(); ++i) {
    if (re[i] == '[' && (i == 0 || re[i - 1] != '\\')) {
      out += '[';
      inside = true;
      continue;
    }
    if (inside && re[i] == ']' && re[i - 1] != '\\') {
      out += ']';
      inside = false;
      continue;
    }
    if (re[i] == '\\' && i + 3 < re.size() && re[i + 1] == 'p' && re[i + 2] == '{') {
      const size_t close = re.find('}', i + 3);
      if (close != std::string::npos && close <= i + 10) {
        auto it = category_names().find(re.substr(i, close - i + 1));
        if (it != category_names().end()) {
          const auto& c = *std::find_if(std::begin(kCollapse), std::end(kCollapse),
                                        [&](const CategoryCollapse& x) { return x.flag == it->second; });
          if (!inside) out += '[';
          out += c.byte;
          out += c.ascii;
          if (!inside) out += ']';
          i = close;
          continue;
        }
      }
    }
    out += re[i];
  }
  return out;
}

// The text forms a split works on, built once per call and only when a step needs them.
struct Texts {
  std::string collapsed;         // one byte per code point
  std::string wide;              // UTF-8; non-ASCII whitespace as \v; ill-formed code points as U+FFFF
  std::string unicode;           // UTF-8 with ill-formed code points as U+FFFD
  std::vector<uint32_t> wide_off, unicode_off;  // byte offset of each code point (size n + 1)
};

}  // namespace

struct PreTokenizer::Step {
  enum class Kind { Gpt2, Llama3, Qwen2, Collapsed, Wide, Unicode } kind;
  pcre2_code* code = nullptr;
  ~Step() {
    if (code) pcre2_code_free(code);
  }
};

namespace {

pcre2_code* compile(const std::string& pattern, uint32_t options, const std::string& shown) {
  int err = 0;
  PCRE2_SIZE err_off = 0;
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                                   options | PCRE2_DOLLAR_ENDONLY, &err, &err_off, nullptr);
  if (!code) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(err, msg, sizeof msg);
    fail(ErrorCode::InvalidFile, "pre-tokenizer regex {} does not compile at offset {}: {}", quote_for_error(shown, 120),
         err_off, reinterpret_cast<const char*>(msg));
  }
  pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);  // best effort: the interpreter is the fallback
  return code;
}

// std::regex_iterator over [begin, end) of `subject`, as llama.cpp's unicode_regex_split_stl uses it:
// unmatched stretches between matches become words too. Offsets are in subject units; `to_cp` maps
// them to code point positions.
template <typename ToCp>
void regex_split(const pcre2_code* code, const char* subject, size_t begin, size_t end, ToCp to_cp,
                 pcre2_match_data* md, bool utf, std::vector<uint32_t>& out) {
  const auto* s = reinterpret_cast<PCRE2_SPTR>(subject + begin);
  const size_t len = end - begin;
  size_t word_start = 0, search = 0;
  auto emit = [&](size_t a, size_t b) {
    if (b > a) out.push_back(static_cast<uint32_t>(to_cp(begin + b) - to_cp(begin + a)));
  };
  auto next_char = [&](size_t at) {
    ++at;
    if (utf) {
      while (at < len && (s[at] & 0xC0) == 0x80) ++at;
    }
    return at;
  };
  while (search <= len) {
    int rc = pcre2_match(code, s, len, search, 0, md, nullptr);
    if (rc < 0) break;
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
    size_t m0 = ov[0], m1 = ov[1];
    if (m0 == m1) {
      // An empty match still ends the unmatched stretch before it; then a non-empty match must start
      // right here, or the search moves one character on.
      emit(word_start, m0);
      word_start = m0;
      rc = pcre2_match(code, s, len, m0, PCRE2_NOTEMPTY_ATSTART | PCRE2_ANCHORED, md, nullptr);
      if (rc < 0) {
        if (m0 >= len) break;
        search = next_char(m0);
        continue;
      }
      ov = pcre2_get_ovector_pointer(md);
      m0 = ov[0];
      m1 = ov[1];
    }
    emit(word_start, m0);
    emit(m0, m1);
    word_start = search = m1;
  }
  emit(word_start, len);
}

}  // namespace

PreTokenizer::PreTokenizer(const std::vector<std::string>& regexes, Dialect dialect) {
  for (const std::string& re : regexes) {
    auto step = std::make_unique<Step>();
    if (re == kGpt2Pattern || re == kGpt2PatternHf) {
      step->kind = Step::Kind::Gpt2;
    } else if (re == kLlama3Pattern || re == kLlama3PatternHf) {
      step->kind = Step::Kind::Llama3;
    } else if (re == kQwen2Pattern || (dialect == Dialect::HuggingFace && re == kQwen2PatternHf)) {
      step->kind = Step::Kind::Qwen2;
    } else if (dialect == Dialect::HuggingFace) {
      step->kind = Step::Kind::Unicode;
      step->code = compile(re, PCRE2_UTF | PCRE2_UCP, re);
    } else if (uses_categories(re)) {
      if (std::any_of(re.begin(), re.end(), [](char c) { return static_cast<uint8_t>(c) >= 0x80; })) {
        fail(ErrorCode::Unsupported, "pre-tokenizer regex {} mixes \\p{{..}} classes and non-ASCII characters",
             quote_for_error(re, 120));
      }
      step->kind = Step::Kind::Collapsed;
      step->code = compile(collapse_regex(re), 0, re);
      needs_collapsed_ = true;
    } else {
      step->kind = Step::Kind::Wide;
      step->code = compile(re, PCRE2_UTF, re);
      needs_wide_ = true;
    }
    steps_.push_back(std::move(step));
  }
}

PreTokenizer::~PreTokenizer() = default;
PreTokenizer::PreTokenizer(PreTokenizer&&) noexcept = default;

void PreTokenizer::split(const std::vector<uint32_t>& cps, std::vector<uint32_t>& lengths) const {
  std::vector<uint32_t> cur{static_cast<uint32_t>(cps.size())}, next;
  if (cps.empty()) return;
  Texts t;
  bool have_unicode = false;
  if (needs_collapsed_) {
    t.collapsed.resize(cps.size());
    for (size_t i = 0; i < cps.size(); ++i) t.collapsed[i] = collapsed_byte(cps[i]);
  }
  auto build = [&](std::string& text, std::vector<uint32_t>& off, bool wide) {
    off.resize(cps.size() + 1);
    for (size_t i = 0; i < cps.size(); ++i) {
      off[i] = static_cast<uint32_t>(text.size());
      uint32_t cp = cps[i];
      const bool ill_formed = cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF);
      if (wide) {
        // std::wregex's \s knows only ASCII whitespace, so llama.cpp maps the rest to \v first.
        if (ill_formed) cp = 0xFFFF;  // outside every class llama.cpp's wide patterns list
        else if (cp > 0x7F && unicode::is_whitespace(cp)) cp = 0x0B;
      } else if (ill_formed) {
        cp = 0xFFFD;
      }
      unicode::append_utf8(text, cp);
    }
    off[cps.size()] = static_cast<uint32_t>(text.size());
  };
  if (needs_wide_) build(t.wide, t.wide_off, true);

  pcre2_match_data* md = nullptr;
  for (const auto& step : steps_) {
    next.clear();
    size_t start = 0;
    if (step->code && !md) md = pcre2_match_data_create(4, nullptr);
    for (uint32_t frag : cur) {
      const size_t end = start + frag;
      switch (step->kind) {
        case Step::Kind::Gpt2:
          split_gpt2(Window{cps, start, end}, next);
          break;
        case Step::Kind::Llama3:
          split_llama3(Window{cps, start, end}, 3, next);
          break;
        case Step::Kind::Qwen2:
          split_llama3(Window{cps, start, end}, 1, next);
          break;
        case Step::Kind::Collapsed:
          regex_split(step->code, t.collapsed.data(), start, end, [](size_t b) { return b; }, md, false, next);
          break;
        case Step::Kind::Wide:
        case Step::Kind::Unicode: {
          const bool wide = step->kind == Step::Kind::Wide;
          if (!wide && !have_unicode) {
            build(t.unicode, t.unicode_off, false);
            have_unicode = true;
          }
          const std::string& text = wide ? t.wide : t.unicode;
          const std::vector<uint32_t>& off = wide ? t.wide_off : t.unicode_off;
          auto to_cp = [&](size_t byte) {
            return static_cast<size_t>(std::lower_bound(off.begin(), off.end(), byte) - off.begin());
          };
          regex_split(step->code, text.data(), off[start], off[end], to_cp, md, true, next);
          break;
        }
      }
      start = end;
    }
    std::swap(cur, next);
  }
  if (md) pcre2_match_data_free(md);
  lengths.insert(lengths.end(), cur.begin(), cur.end());
}

// ---------------------------------------------------------------------------------------------------
// llama.cpp's pre-tokenizer table (llm_tokenizer_bpe and llama_vocab::impl::load), by name.

namespace {

const std::vector<std::string> kDefaultRegexes = {"[\\p{P}\\$\\+<=>\\^~\\|]+", kGpt2Pattern, "\\p{N}+", "[0-9][0-9][0-9]"};
const std::vector<std::string> kGpt2Regexes = {kGpt2Pattern};
const std::vector<std::string> kLlama3Regexes = {kLlama3Pattern};
const std::vector<std::string> kQwen2Regexes = {kQwen2Pattern};
const std::vector<std::string> kStarcoderRegexes = {"\\p{N}", kGpt2Pattern};
const std::vector<std::string> kBloomRegexes = {" ?[^(\\s|.,!?…。，、।۔،)]+"};
const std::vector<std::string> kGpt4oRegexes = {
    "[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))*((?=[\\p{L}])([^A-Z]))+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL]"
    "[lL]|'[dD])?|[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))+((?=[\\p{L}])([^A-Z]))*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|"
    "'[mM]|'[lL][lL]|'[dD])?|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"};

struct Entry {
  std::vector<std::string> names;
  PreConfig config;
};

const std::vector<Entry>& table() {
  static const std::vector<Entry> t = [] {
    std::vector<Entry> e;
    auto add = [&](std::vector<std::string> names, std::vector<std::string> regexes, bool clean_spaces = true) {
      PreConfig c;
      c.regexes = std::move(regexes);
      c.clean_spaces = clean_spaces;
      e.push_back({std::move(names), std::move(c)});
      return &e.back().config;
    };
    add({"default"}, kDefaultRegexes);
    auto* llama3 = add({"llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2",
                        "jina-v5-nano"},
                       kLlama3Regexes);
    llama3->ignore_merges = true;
    llama3->add_bos = true;
    add({"dbrx", "smaug-bpe"}, kLlama3Regexes);
    add({"deepseek-llm"},
        {"[\r\n]",
         "\\s?[A-Za-z\u00B5\u00C0-\u00D6\u00D8-\u00F6\u00F8-\u01BA\u01BC-\u01BF\u01C4-\u0293\u0295-\u02AF"
         "\u0370-\u0373\u0376\u0377\u037B-\u037D\u037F\u0386\u0388-\u038A\u038C\u038E-\u03A1\u03A3-\u03F5"
         "\u03F7-\u0481\u048A-\u052F\u0531-\u0556\u10A0-\u10C5\u13A0-\u13F5\u13F8-\u13FD\u1C90-\u1CBA\u1CBD-"
         "\u1CBF\u1D00-\u1D2B\u1D6B-\u1D77\u1D79-\u1D9A\u1E00-\u1F15\u1F18-\u1F1D\u1F20-\u1F45\u1F48-\u1F4D"
         "\u1F50-\u1F57\u1F59\u1F5B\u1F5D\u1F5F-\u1F7D\u1F80-\u1FB4\u1FB6-\u1FBC\u1FBE\u1FC2-\u1FC4\u1FC6-"
         "\u1FCC\u1FD0-\u1FD3\u1FD6-\u1FDB\u1FE0-\u1FEC\u1FF2-\u1FF4\u1FF6-\u1FFC\u2102\u2107\u210A-\u2113"
         "\u2115\u2119-\u211D\u2124\u2126\u2128\u212A-\u212D\u212F-\u2134\u2139\u213C-\u213F\u2145-\u2149"
         "\u214E\u2183\u2184\u2C00-\u2C7B\u2C7E-\u2CE4\u2CEB-\u2CEE\u2CF2\u2CF3\uA640-\uA66D\uA680-\uA69B"
         "\uA722-\uA76F\uA771-\uA787\uA78B-\uA78E\uAB70-\uABBF\uFB00-\uFB06\uFB13-\uFB17\uFF21-\uFF3A\uFF41-"
         "\uFF5A\U00010400-\U0001044F\U000104B0-\U000104D3\U000104D8-\U000104FB\U00010C80-\U00010CB2\U00010CC0"
         "-\U00010CF2\U000118A0-\U000118DF\U0001E900-\U0001E943]+",
         "\\s?[!-/:-~！-／：-～‘-‟　-。]+", "\\s+$", "[一-龥ࠀ-一가-퟿]+", "\\p{N}+"},
        false);
    add({"deepseek-coder"}, {"[\r\n]", "\\s?\\p{L}+", "\\s?\\p{P}+", "[一-龥ࠀ-一가-퟿]+", "\\p{N}"}, false);
    add({"deepseek-v3"},
        {"\\p{N}{1,3}", "[一-龥぀-ゟ゠-ヿ]+",
         "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| "
         "?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+"},
        false);
    add({"falcon"}, {"[\\p{P}\\$\\+<=>\\^~\\|`]+", kGpt2Pattern, "[0-9][0-9][0-9]"});
    add({"starcoder", "refact", "codeshell", "exaone", "minerva-7b", "mellum2"}, kStarcoderRegexes);
    add({"command-r", "smollm"}, kStarcoderRegexes, false);
    add({"gpt-2", "phi-2", "jina-es", "jina-de", "gigachat", "jina-v2-es", "jina-v2-de", "a.x-4.0", "mellum",
         "modern-bert", "mpt", "olmo", "jais", "exaone4"},
        kGpt2Regexes);
    add({"trillion", "granite-docling"}, kGpt2Regexes, false);
    add({"jina-v1-en", "jina-v2-code", "roberta-bpe"}, kGpt2Regexes)->add_sep = true;
    add({"qwen2", "deepseek-r1-qwen", "kormo", "f2llmv2", "hunyuan", "solar-open", "grok-2"}, kQwen2Regexes, false);
    add({"stablelm2", "megrez"}, kQwen2Regexes);
    add({"poro-chat"}, kBloomRegexes, false);
    add({"bloom", "gpt3-finnish"}, kBloomRegexes);
    add({"viking"}, {kBloomRegexes[0], "\\p{N}"}, false);
    add({"glm4", "chatglm-bpe"}, kLlama3Regexes)->no_bos_token = true;
    auto* tekken = add({"tekken"},
                       {"[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))*((?=[\\p{L}])([^A-Z]))+|[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])("
                        "[^a-z]))+((?=[\\p{L}])([^A-Z]))*|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
                       false);
    tekken->ignore_merges = true;
    tekken->add_bos = true;
    add({"gpt-4o", "llama4", "kanana2", "talkie", "minimax-m2"}, kGpt4oRegexes, false);
    add({"chameleon"},
        {"<sentinel:[0-9]+>", "(IMGIMG)((A|B|C|D|E|F|G|H|I){1,4})Z", "([\\t\\n]|    |  )", "\\p{N}",
         "[\\p{P}!-/:-@\\[-`{-~]", kGpt2Pattern},
        false)
        ->add_bos = true;
    add({"seed-coder"},
        {"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1}| "
         "?[^\\s\\p{L}\\p{N}\\r\\n]+|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
        false);
    add({"bailingmoe", "bailingmoe2", "llada-moe"},
        {"'(?:[sSdDmMtT]|[lL][lL]|[vV][eE]|[rR][eE])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
         "\\s*[\\r\\n]|\\s+(?!\\S)|\\s+"},
        false);
    add({"ufakzeka"},
        {"[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}, false);
    auto* minicpm = add({"minicpm5"},
                        {"\\p{N}{1,3}",
                         "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}+| "
                         "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"});
    minicpm->ignore_merges = true;
    return e;
  }();
  return t;
}

}  // namespace

const PreConfig* find_pre_config(const std::string& name) {
  for (const auto& e : table()) {
    if (std::find(e.names.begin(), e.names.end(), name) != e.names.end()) return &e.config;
  }
  return nullptr;
}

std::string known_pre_names() {
  std::vector<std::string> names;
  for (const auto& e : table()) names.insert(names.end(), e.names.begin(), e.names.end());
  std::sort(names.begin(), names.end());
  std::string out;
  for (const auto& n : names) out += (out.empty() ? "" : ", ") + n;
  return out;
}

}  // namespace vireo::tok
