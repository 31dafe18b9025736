// Normalisation of extracted documents: valid UTF-8 in NFC, one space between words, words that a
// PDF hyphenated at a line end joined again, and running headers, footers and page numbers removed.
#include <utf8proc.h>

#include <algorithm>
#include <cstdlib>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "vireo/core/utf8.h"
#include "vireo/documents/chunk.h"

namespace vireo {

namespace {

constexpr char32_t kReplacement = 0xFFFD;
constexpr char32_t kSoftHyphen = 0x00AD;

// Decodes the code point at `i` of valid UTF-8 (sanitised before) and advances `i`.
char32_t next_code_point(std::string_view s, size_t& i) {
  const auto c = static_cast<unsigned char>(s[i]);
  auto continuation = [&](size_t k) { return static_cast<char32_t>(static_cast<unsigned char>(s[i + k]) & 0x3F); };
  char32_t cp;
  if (c < 0x80) {
    cp = c;
    i += 1;
  } else if (c < 0xE0) {
    cp = (static_cast<char32_t>(c & 0x1F) << 6) | continuation(1);
    i += 2;
  } else if (c < 0xF0) {
    cp = (static_cast<char32_t>(c & 0x0F) << 12) | (continuation(1) << 6) | continuation(2);
    i += 3;
  } else {
    cp = (static_cast<char32_t>(c & 0x07) << 18) | (continuation(1) << 12) | (continuation(2) << 6) | continuation(3);
    i += 4;
  }
  return cp;
}

// Every ill-formed byte becomes U+FFFD, so that utf8proc (and everything after it) sees valid UTF-8.
std::string sanitise_utf8(std::string text) {
  if (is_valid_utf8(text)) return text;
  std::string out;
  out.reserve(text.size() + 16);
  size_t i = 0;
  while (i < text.size()) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c < 0x80) {
      out += static_cast<char>(c);
      ++i;
      continue;
    }
    utf8proc_int32_t cp = 0;
    const auto n = utf8proc_iterate(reinterpret_cast<const utf8proc_uint8_t*>(text.data() + i),
                                    static_cast<utf8proc_ssize_t>(text.size() - i), &cp);
    if (n > 0) {
      out.append(text, i, static_cast<size_t>(n));
      i += static_cast<size_t>(n);
    } else {
      append_utf8(out, kReplacement);
      ++i;
    }
  }
  return out;
}

// True when `cp` might change under NFC or make its neighbours change: a combining mark, a
// character that composes with the one before it (including Hangul vowel and final jamo), or one
// with a canonical decomposition (singletons and exclusions never survive NFC; other precomposed
// letters are flagged too, at some cost in speed only). Checked against utf8proc over all of
// Unicode: everything else is NFC_Quick_Check=Yes with combining class 0. Below U+0300 nothing is.
bool may_change_under_nfc(char32_t cp) {
  if (cp < 0x300) return false;
  if (cp >= 0x1100 && cp <= 0x11FF) return true;
  const utf8proc_property_t* p = utf8proc_get_property(static_cast<utf8proc_int32_t>(cp));
  const bool composes_with_previous = p->comb_index != UINT16_MAX && (p->comb_index & 0x8000) != 0;
  const bool canonical_decomposition = p->decomp_seqindex != UINT16_MAX && p->decomp_type == 0;
  return p->combining_class != 0 || composes_with_previous || canonical_decomposition;
}

std::string nfc_of(std::string_view segment) {
  utf8proc_uint8_t* mapped = nullptr;
  const auto n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(segment.data()),
                              static_cast<utf8proc_ssize_t>(segment.size()), &mapped,
                              static_cast<utf8proc_option_t>(UTF8PROC_COMPOSE | UTF8PROC_STABLE));
  if (n < 0) return std::string(segment);  // only on allocation failure, the input being valid
  std::string out(reinterpret_cast<const char*>(mapped), static_cast<size_t>(n));
  std::free(mapped);
  return out;
}

// NFC of valid UTF-8. Only the stretches that may change go through utf8proc: each runs from the
// last stable character before a changeable one (which may be the first of a composition, the "e"
// of "e" + U+0301) to the next stable character, before which nothing can compose or reorder.
std::string to_nfc(std::string text) {
  std::string out;
  size_t copied = 0;             // text[0, copied) is in `out` already
  size_t last_stable_start = 0;  // where the last stable character begins
  size_t i = 0;
  while (i < text.size()) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c < 0xCC) {  // ASCII, continuation bytes, and leads of code points below U+0300
      if ((c & 0xC0) != 0x80) last_stable_start = i;
      ++i;
      continue;
    }
    const size_t start = i;
    if (!may_change_under_nfc(next_code_point(text, i))) {
      last_stable_start = start;
      continue;
    }
    size_t end = i;
    while (end < text.size()) {
      size_t next = end;
      if (!may_change_under_nfc(next_code_point(text, next))) break;
      end = next;
    }
    const size_t segment_start = std::max(last_stable_start, copied);
    out.append(text, copied, segment_start - copied);
    out += nfc_of(std::string_view(text).substr(segment_start, end - segment_start));
    copied = i = last_stable_start = end;
  }
  if (copied == 0) return text;
  out.append(text, copied, std::string::npos);
  return out;
}

bool is_newline(char32_t cp) {
  return cp == '\n' || cp == 0x2028 || cp == 0x2029;
}

// Horizontal and vertical whitespace that collapses to a single space in running text.
bool is_collapsible_space(char32_t cp) {
  switch (cp) {
    case ' ':
    case '\t':
    case '\n':
    case '\r':
    case '\f':
    case '\v':
    case 0x00A0:
    case 0x1680:
    case 0x202F:
    case 0x205F:
    case 0x3000:
    case 0x2028:
    case 0x2029: return true;
    default: return cp >= 0x2000 && cp <= 0x200A;
  }
}

bool is_letter(char32_t cp) {
  if (cp < 0x80) return (cp | 0x20) >= 'a' && (cp | 0x20) <= 'z';
  const auto cat = utf8proc_category(static_cast<utf8proc_int32_t>(cp));
  return cat >= UTF8PROC_CATEGORY_LU && cat <= UTF8PROC_CATEGORY_LO;
}

bool is_lowercase_letter(char32_t cp) {
  if (cp < 0x80) return cp >= 'a' && cp <= 'z';
  return utf8proc_category(static_cast<utf8proc_int32_t>(cp)) == UTF8PROC_CATEGORY_LL;
}

bool is_hyphen(char32_t cp) {
  return cp == '-' || cp == 0x2010;
}

// Collapses whitespace runs to one space and trims; removes soft hyphens; joins a word hyphenated
// across a line end ("inter-\nnational" -> "international") when the continuation is lowercase.
// Otherwise a hyphen at a line end stays and the line break goes ("Jean-\nPaul" -> "Jean-Paul",
// "10-\n12" -> "10-12"): it is most likely part of the word.
std::string clean_running_text(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  bool pending_space = false;          // a whitespace run waits to be written before the next character
  bool pending_newline = false;        // ... and it contained a line break
  char32_t last = 0, before_last = 0;  // the last two characters written
  size_t last_start = 0;               // byte offset in `out` where `last` begins
  size_t i = 0;
  while (i < text.size()) {
    const size_t start = i;
    const auto c = static_cast<unsigned char>(text[i]);
    if (c > ' ' && c < 0x7F && !pending_space) {  // the common case: a run of visible ASCII
      size_t end = i + 1;
      while (end < text.size() && static_cast<unsigned char>(text[end]) > ' ' &&
             static_cast<unsigned char>(text[end]) < 0x7F) {
        ++end;
      }
      before_last = end - i >= 2 ? static_cast<char32_t>(text[end - 2]) : last;
      last = static_cast<char32_t>(text[end - 1]);
      last_start = out.size() + (end - 1 - i);
      out.append(text, i, end - i);
      i = end;
      continue;
    }
    const char32_t cp = next_code_point(text, i);
    if (cp == kSoftHyphen) continue;
    if (is_collapsible_space(cp)) {
      if (!out.empty()) pending_space = true;
      pending_newline = pending_newline || is_newline(cp) || cp == '\r';
      continue;
    }
    if (pending_space) {
      const bool hyphen_at_line_end = pending_newline && is_hyphen(last) && before_last != 0 &&
                                      (is_letter(before_last) || (before_last >= '0' && before_last <= '9'));
      if (hyphen_at_line_end) {
        if (is_letter(before_last) && is_lowercase_letter(cp)) out.resize(last_start);
      } else {
        out += ' ';
        before_last = last;
        last = ' ';
      }
    }
    pending_space = pending_newline = false;
    before_last = last;
    last = cp;
    last_start = out.size();
    out.append(text, start, i - start);
  }
  return out;
}

bool is_blank(std::string_view s) {
  return std::all_of(s.begin(), s.end(),
                     [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; });
}

// --- Running headers, footers and page numbers ---

// How a header or footer is compared across pages: lowercase, digit runs as '#', so that
// "Page 3 of 10" and "Page 4 of 10" are the same line.
std::string edge_key(std::string_view text) {
  std::string key;
  key.reserve(text.size());
  size_t i = 0;
  bool in_digits = false;
  while (i < text.size()) {
    const char32_t cp = next_code_point(text, i);
    const bool digit = cp < 0x80 ? (cp >= '0' && cp <= '9')
                                 : utf8proc_category(static_cast<utf8proc_int32_t>(cp)) == UTF8PROC_CATEGORY_ND;
    if (digit) {
      if (!in_digits) key += '#';
      in_digits = true;
      continue;
    }
    in_digits = false;
    append_utf8(key, static_cast<char32_t>(utf8proc_tolower(static_cast<utf8proc_int32_t>(cp))));
  }
  return key;
}

bool is_roman_numeral(std::string_view s) {
  // i..cccxcix, in lowercase (the caller lowercases); d and m are left out because words like
  // "mix" or "dim" would pass, and front matter never runs to 500 pages.
  if (s.empty() || s.size() > 9) return false;
  static constexpr std::string_view kHundreds[] = {"", "c", "cc", "ccc"};
  static constexpr std::string_view kTens[] = {"", "x", "xx", "xxx", "xl", "l", "lx", "lxx", "lxxx", "xc"};
  static constexpr std::string_view kOnes[] = {"", "i", "ii", "iii", "iv", "v", "vi", "vii", "viii", "ix"};
  for (int h = 3; h >= 0; --h) {
    if (!s.starts_with(kHundreds[h])) continue;
    const std::string_view after_h = s.substr(kHundreds[h].size());
    for (int t = 9; t >= 0; --t) {
      if (!after_h.starts_with(kTens[t])) continue;
      const std::string_view after_t = after_h.substr(kTens[t].size());
      for (int o = 9; o >= 0; --o) {
        if (after_t == kOnes[o]) return true;
      }
    }
  }
  return false;
}

// Consumes a page number (digits or a roman numeral) at the front of `s`.
bool take_number(std::string_view& s) {
  size_t n = 0;
  while (n < s.size() && s[n] >= '0' && s[n] <= '9') ++n;
  if (n > 0 && n <= 5) {
    s.remove_prefix(n);
    return true;
  }
  if (n > 0) return false;
  while (n < s.size() && std::string_view("ivxlc").find(s[n]) != std::string_view::npos) ++n;
  if (n == 0 || !is_roman_numeral(s.substr(0, n))) return false;
  s.remove_prefix(n);
  return true;
}

void skip_spaces(std::string_view& s) {
  while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
}

bool take_word(std::string_view& s, std::string_view word) {
  if (!s.starts_with(word)) return false;
  s.remove_prefix(word.size());
  return true;
}

// "12", "Page 3", "Page 3 of 10", "p. 4", "3 / 10", "- 4 -", "[iv]": nothing but a page number.
bool is_page_number(std::string_view text) {
  if (text.size() > 40) return false;
  std::string lower(text);
  for (char& c : lower) c = static_cast<char>((c >= 'A' && c <= 'Z') ? c + 32 : c);
  // Decorations around the number: ASCII dashes and brackets, en and em dashes.
  std::string bare;
  for (size_t i = 0; i < lower.size();) {
    if (lower.compare(i, 3, "\u2013") == 0 || lower.compare(i, 3, "\u2014") == 0) {
      bare += ' ';
      i += 3;
      continue;
    }
    const char c = lower[i++];
    bare += (c == '-' || c == '(' || c == ')' || c == '[' || c == ']' || c == '|') ? ' ' : c;
  }
  std::string_view s = bare;
  skip_spaces(s);
  if (take_word(s, "page") || take_word(s, "pg.") || take_word(s, "pg") || take_word(s, "p.")) skip_spaces(s);
  if (!take_number(s)) return false;
  skip_spaces(s);
  if (take_word(s, "of") || take_word(s, "/")) {
    skip_spaces(s);
    if (!take_number(s)) return false;
    skip_spaces(s);
  }
  return s.empty();
}

// Running headers and footers are a line or two; longer blocks are never taken for one.
constexpr size_t kMaxRunningLineBytes = 300;

bool may_be_running_line(const Block& b) {
  return b.kind != BlockKind::Code && b.kind != BlockKind::TableRow && b.text.size() <= kMaxRunningLineBytes;
}

// Indices of a page's first two and last two blocks.
std::vector<size_t> edge_positions(const Page& page) {
  std::vector<size_t> out;
  const size_t n = page.blocks.size();
  for (size_t i = 0; i < n; ++i) {
    if (i < 2 || i + 2 >= n) out.push_back(i);
  }
  return out;
}

void remove_running_lines(ExtractedDocument& doc) {
  const size_t pages = doc.pages.size();
  if (pages < 2) return;
  std::unordered_set<std::string> repeated;
  if (pages >= 3) {
    std::unordered_map<std::string, int> pages_with_key;
    for (const Page& page : doc.pages) {
      std::unordered_set<std::string> keys_here;
      for (size_t i : edge_positions(page)) {
        if (may_be_running_line(page.blocks[i])) keys_here.insert(edge_key(page.blocks[i].text));
      }
      for (const std::string& k : keys_here) ++pages_with_key[k];
    }
    for (const auto& [key, count] : pages_with_key) {
      if (count >= 3 && static_cast<size_t>(count) * 2 >= pages) repeated.insert(key);
    }
  }
  for (Page& page : doc.pages) {
    std::vector<bool> drop(page.blocks.size(), false);
    if (!repeated.empty()) {
      for (size_t i : edge_positions(page)) {
        const Block& b = page.blocks[i];
        drop[i] = may_be_running_line(b) && repeated.contains(edge_key(b.text));
      }
    }
    // Then a lone page number at what is now the top or the bottom of the page.
    size_t first = 0;
    while (first < drop.size() && drop[first]) ++first;
    if (first < drop.size() && may_be_running_line(page.blocks[first]) && is_page_number(page.blocks[first].text)) {
      drop[first] = true;
    }
    size_t last = drop.size();
    while (last > 0 && drop[last - 1]) --last;
    if (last > 0 && may_be_running_line(page.blocks[last - 1]) && is_page_number(page.blocks[last - 1].text)) {
      drop[last - 1] = true;
    }
    size_t kept = 0;
    for (size_t i = 0; i < page.blocks.size(); ++i) {
      if (drop[i]) continue;
      if (kept != i) page.blocks[kept] = std::move(page.blocks[i]);
      ++kept;
    }
    page.blocks.resize(kept);
  }
}

}  // namespace

void normalise_document(ExtractedDocument& doc) {
  for (Page& page : doc.pages) {
    for (Block& block : page.blocks) {
      block.text = to_nfc(sanitise_utf8(std::move(block.text)));
      if (block.kind != BlockKind::Code) block.text = clean_running_text(block.text);
    }
    std::erase_if(page.blocks, [](const Block& b) { return is_blank(b.text); });
  }
  remove_running_lines(doc);
}

}  // namespace vireo
