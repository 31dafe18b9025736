// Quality assessment of extracted text: how much of each page is garbage (broken encodings, control
// characters, symbol soup from a failed extraction), whether OCR was unsure, and whether the words
// look like words at all.
#include <utf8proc.h>

#include <array>
#include <cmath>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "vireo/documents/chunk.h"

namespace vireo {

namespace {

constexpr double kMaxGarbageRatio = 0.10;
constexpr double kMinOcrConfidence = 50.0;
constexpr double kMinWordLikeShare = 0.5;
constexpr int kMinWordsForWordCheck = 20;

// Decodes the code point at `i` and advances; an ill-formed byte reads as U+FFFD.
char32_t next_code_point(std::string_view s, size_t& i) {
  const auto c = static_cast<unsigned char>(s[i]);
  if (c < 0x80) {
    ++i;
    return c;
  }
  utf8proc_int32_t cp = 0;
  const auto n = utf8proc_iterate(reinterpret_cast<const utf8proc_uint8_t*>(s.data() + i),
                                  static_cast<utf8proc_ssize_t>(s.size() - i), &cp);
  if (n <= 0) {
    ++i;
    return 0xFFFD;
  }
  i += static_cast<size_t>(n);
  return static_cast<char32_t>(cp);
}

enum class CharClass { Space, Alnum, Garbage, Other };

CharClass classify(char32_t cp) {
  if (cp < 0x80) {
    if (cp == ' ' || cp == '\t' || cp == '\n' || cp == '\r' || cp == '\f' || cp == '\v') return CharClass::Space;
    if ((cp >= '0' && cp <= '9') || ((cp | 0x20) >= 'a' && (cp | 0x20) <= 'z')) return CharClass::Alnum;
    return cp < 0x20 || cp == 0x7F ? CharClass::Garbage : CharClass::Other;
  }
  if (cp == 0xFFFD) return CharClass::Garbage;
  switch (utf8proc_category(static_cast<utf8proc_int32_t>(cp))) {
    case UTF8PROC_CATEGORY_CN:  // unassigned
    case UTF8PROC_CATEGORY_CO:  // private use: unmapped glyphs of an embedded font
    case UTF8PROC_CATEGORY_CC:  // C1 controls
    case UTF8PROC_CATEGORY_CS: return CharClass::Garbage;
    case UTF8PROC_CATEGORY_LU:
    case UTF8PROC_CATEGORY_LL:
    case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO:
    case UTF8PROC_CATEGORY_MN:
    case UTF8PROC_CATEGORY_MC:
    case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_NL:
    case UTF8PROC_CATEGORY_NO: return CharClass::Alnum;
    case UTF8PROC_CATEGORY_ZS:
    case UTF8PROC_CATEGORY_ZL:
    case UTF8PROC_CATEGORY_ZP: return CharClass::Space;
    default: return CharClass::Other;
  }
}

bool is_letter(char32_t cp) {
  if (cp < 0x80) return (cp | 0x20) >= 'a' && (cp | 0x20) <= 'z';
  const auto cat = utf8proc_category(static_cast<utf8proc_int32_t>(cp));
  return (cat >= UTF8PROC_CATEGORY_LU && cat <= UTF8PROC_CATEGORY_LO) || cat == UTF8PROC_CATEGORY_MN ||
         cat == UTF8PROC_CATEGORY_MC;
}

bool is_digit(char32_t cp) {
  return cp < 0x80 ? (cp >= '0' && cp <= '9')
                   : utf8proc_category(static_cast<utf8proc_int32_t>(cp)) == UTF8PROC_CATEGORY_ND;
}

// A vowel, or any letter beyond basic Latin: accented vowels are common, and for other scripts the
// vowel test means nothing, so they pass.
bool has_vowel_like(char32_t cp) {
  if (cp >= 0xC0) return true;
  switch (cp | 0x20) {
    case 'a':
    case 'e':
    case 'i':
    case 'o':
    case 'u':
    case 'y': return true;
    default: return false;
  }
}

bool is_word_punct(char32_t cp) {
  switch (cp) {
    case '.':
    case ',':
    case ';':
    case ':':
    case '!':
    case '?':
    case '"':
    case '\'':
    case '(':
    case ')':
    case '[':
    case ']':
    case '{':
    case '}':
    case '<':
    case '>':
    case '*':
    case '_':
    case '`':
    case 0x2018:
    case 0x2019:
    case 0x201C:
    case 0x201D:
    case 0x00AB:
    case 0x00BB:
    case 0x2026: return true;
    default: return false;
  }
}

// One part of a word between hyphens or slashes: a number ("3.14", "1,000", "12:30") or letters
// (apostrophes allowed inside) with at least two letters and a vowel.
template <typename Char>
bool part_is_word_like(std::basic_string_view<Char> part) {
  if (part.empty()) return true;
  bool digits = true, any_digit = false;
  int letters = 0;
  bool letters_only = true, vowel = false;
  for (const Char ch : part) {
    const auto cp = static_cast<char32_t>(ch);
    if (is_digit(cp)) {
      any_digit = true;
      letters_only = false;
    } else if (cp == '.' || cp == ',' || cp == ':') {
      letters_only = false;
    } else {
      digits = false;
      if (is_letter(cp)) {
        ++letters;
        vowel = vowel || has_vowel_like(cp);
      } else if (cp != '\'' && cp != 0x2019) {
        letters_only = false;
      }
    }
  }
  if (digits && any_digit) return true;
  return letters_only && letters >= 2 && vowel;
}

// A whitespace-separated token, surrounding punctuation stripped: does it look like a word?
// Returns -1 when nothing is left to judge (pure punctuation). Char is char for ASCII tokens
// (no decoding needed) and char32_t otherwise.
template <typename Char>
int token_is_word_like(std::basic_string_view<Char> token) {
  while (!token.empty() && is_word_punct(static_cast<char32_t>(token.front()))) token.remove_prefix(1);
  while (!token.empty() && is_word_punct(static_cast<char32_t>(token.back()))) token.remove_suffix(1);
  bool any_alnum = false;
  for (const Char ch : token)
    any_alnum = any_alnum || is_letter(static_cast<char32_t>(ch)) || is_digit(static_cast<char32_t>(ch));
  if (!any_alnum) return -1;
  size_t start = 0;
  for (size_t i = 0; i <= token.size(); ++i) {
    if (i == token.size() || token[i] == '-' || token[i] == '/' || static_cast<char32_t>(token[i]) == 0x2010) {
      if (!part_is_word_like(token.substr(start, i - start))) return 0;
      start = i + 1;
    }
  }
  return 1;
}

int judge_token(std::string_view token, bool ascii) {
  if (ascii) return token_is_word_like(token);
  std::u32string decoded;
  for (size_t i = 0; i < token.size();) decoded += next_code_point(token, i);
  return token_is_word_like(std::u32string_view(decoded));
}

struct PageCounts {
  int64_t characters = 0;  // code points other than whitespace
  int64_t garbage = 0;
  int64_t alnum = 0;
  int words = 0;      // judged words: the first kMaxJudgedWords of a page make a fair sample
  int word_like = 0;
};

constexpr int kMaxJudgedWords = 4000;

// Symbol soup: a line of at least 10 visible characters of which under a quarter are letters or
// digits and at least 4 different symbols appear ("@#%&*{~^" from a font without a usable ToUnicode
// map). Its symbols count as garbage. Code blocks are exempt (code and ASCII art look like that),
// and so are rules of one or two repeated characters ("-----", ". . . .", "--+--").
struct LineState {
  int visible = 0;
  int alnum = 0;
  int symbols = 0;  // visible, neither alphanumeric nor already garbage
  std::array<char32_t, 4> distinct{};
  int distinct_count = 0;

  void add_symbol(char32_t cp) {
    ++symbols;
    for (int k = 0; k < distinct_count; ++k) {
      if (distinct[static_cast<size_t>(k)] == cp) return;
    }
    if (distinct_count < 4) distinct[static_cast<size_t>(distinct_count++)] = cp;
  }
  int soup_garbage() const {
    const bool soup = visible >= 10 && alnum * 4 < visible && distinct_count >= 4;
    return soup ? symbols : 0;
  }
};

void count_block(const Block& block, PageCounts& counts) {
  const std::string_view text = block.text;
  const bool check_soup = block.kind != BlockKind::Code;
  LineState line;
  size_t token_start = 0;
  bool in_token = false, token_ascii = true;
  auto end_token = [&](size_t end) {
    if (!in_token) return;
    in_token = false;
    if (counts.words >= kMaxJudgedWords) return;
    // Tokens of absurd length are garbage anyway; judging a prefix bounds the work.
    const int verdict = judge_token(text.substr(token_start, std::min<size_t>(end - token_start, 256)), token_ascii);
    if (verdict >= 0) {
      ++counts.words;
      counts.word_like += verdict;
    }
  };
  auto end_line = [&] {
    if (check_soup) counts.garbage += line.soup_garbage();
    line = LineState{};
  };
  size_t i = 0;
  while (i < text.size()) {
    const size_t start = i;
    const auto byte = static_cast<unsigned char>(text[i]);
    const char32_t cp = byte < 0x80 ? (++i, byte) : next_code_point(text, i);
    const CharClass cls = classify(cp);
    if (cls == CharClass::Space) {
      end_token(start);
      if (cp == '\n' || cp == 0x2028 || cp == 0x2029) end_line();
      continue;
    }
    if (!in_token) {
      in_token = true;
      token_ascii = true;
      token_start = start;
    }
    token_ascii = token_ascii && byte < 0x80;
    ++counts.characters;
    ++line.visible;
    if (cls == CharClass::Alnum) {
      ++counts.alnum;
      ++line.alnum;
    } else if (cls == CharClass::Garbage) {
      ++counts.garbage;
    } else {
      line.add_symbol(cp);
    }
  }
  end_token(text.size());
  end_line();
}

}  // namespace

QualityReport assess_quality(ExtractedDocument& doc) {
  QualityReport report;
  report.pages = static_cast<int>(doc.pages.size());
  int64_t all_characters = 0, all_garbage = 0;
  double ocr_sum = 0.0;
  int ocr_pages = 0;
  std::vector<std::string> examples;  // "p. 3: garbage 31%" for the document's note

  for (Page& page : doc.pages) {
    PageCounts counts;
    for (const Block& block : page.blocks) count_block(block, counts);
    all_characters += counts.characters;
    all_garbage += counts.garbage;

    page.garbage_ratio =
        counts.characters > 0 ? static_cast<double>(counts.garbage) / static_cast<double>(counts.characters) : 0.0;
    page.empty = counts.alnum == 0;
    page.low_quality = false;
    std::vector<std::string> reasons;
    if (page.empty) reasons.emplace_back("empty page");
    if (page.garbage_ratio > kMaxGarbageRatio) {
      reasons.push_back(fmt::format("garbage {}%", static_cast<int>(std::lround(page.garbage_ratio * 100))));
    }
    if (page.ocr && page.ocr_confidence >= 0.0) {
      ocr_sum += page.ocr_confidence;
      ++ocr_pages;
      if (page.ocr_confidence < kMinOcrConfidence) {
        reasons.push_back(fmt::format("OCR confidence {}", static_cast<int>(std::lround(page.ocr_confidence))));
      }
    }
    if (!page.empty && counts.words >= kMinWordsForWordCheck) {
      const double share = static_cast<double>(counts.word_like) / counts.words;
      if (share < kMinWordLikeShare) {
        reasons.push_back(fmt::format("few real words {}%", static_cast<int>(std::lround(share * 100))));
      }
    }
    page.quality_note.clear();
    for (const std::string& r : reasons) page.quality_note += (page.quality_note.empty() ? "" : ", ") + r;

    // Empty pages (blank or separator pages are common) carry their note but are counted in
    // empty_pages only; low_quality_pages counts pages with text that is unreliable.
    if (page.empty) {
      ++report.empty_pages;
      page.low_quality = true;
    } else if (!reasons.empty()) {
      page.low_quality = true;
      ++report.low_quality_pages;
      if (examples.size() < 3) examples.push_back(fmt::format("p. {}: {}", page.number, page.quality_note));
    }
  }

  report.garbage_ratio =
      all_characters > 0 ? static_cast<double>(all_garbage) / static_cast<double>(all_characters) : 0.0;
  report.ocr_confidence = ocr_pages > 0 ? ocr_sum / ocr_pages : -1.0;

  const int with_text = report.pages - report.empty_pages;
  if (report.pages == 0) {
    report.low_quality = true;
    report.note = "no pages";
  } else if (with_text == 0) {
    report.low_quality = true;
    report.note = ocr_pages > 0 ? "no text on any page (OCR found none)" : "no text on any page";
  } else {
    report.low_quality = report.low_quality_pages * 2 > with_text;
    if (report.low_quality_pages > 0) {
      report.note = fmt::format("{} of {} pages with text are low quality ({}{})", report.low_quality_pages, with_text,
                                fmt::join(examples, "; "),
                                report.low_quality_pages > static_cast<int>(examples.size()) ? "; ..." : "");
    }
    if (report.empty_pages > 0) {
      report.note += fmt::format("{}{} empty page{}", report.note.empty() ? "" : "; ", report.empty_pages,
                                 report.empty_pages == 1 ? "" : "s");
    }
  }
  return report;
}

}  // namespace vireo
