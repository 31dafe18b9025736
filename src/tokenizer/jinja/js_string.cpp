#include "tokenizer/jinja/js_string.h"

#include <algorithm>
#include <cmath>

#include "tokenizer/jinja/unicode_case.h"

namespace vireo::jinja {
namespace {

constexpr uint32_t kReplacement = 0xFFFD;

bool is_high_surrogate(uint32_t cp) {
  return cp >= 0xD800 && cp <= 0xDBFF;
}
bool is_low_surrogate(uint32_t cp) {
  return cp >= 0xDC00 && cp <= 0xDFFF;
}

// The code point that ends at s[end] (exclusive), with its start; s is sanitized WTF-8.
uint32_t decode_before(std::string_view s, size_t end, size_t& start) {
  start = end - 1;
  while (start > 0 && (static_cast<unsigned char>(s[start]) & 0xC0) == 0x80 && end - start < 4) --start;
  size_t i = start;
  return decode_cp(s, i);
}

// Case mapping of one code point through the run/multi tables; appends the result.
void map_case(std::string& out, uint32_t cp, const unicode_tables::CaseRun* runs, size_t run_count,
              const unicode_tables::CaseMulti* multi, size_t multi_count) {
  if (cp < 0x80 && runs == unicode_tables::kUpperRuns) {
    out += static_cast<char>(cp >= 'a' && cp <= 'z' ? cp - 32 : cp);
    return;
  }
  if (cp < 0x80) {
    out += static_cast<char>(cp >= 'A' && cp <= 'Z' ? cp + 32 : cp);
    return;
  }
  const auto* m = std::lower_bound(multi, multi + multi_count, cp,
                                   [](const unicode_tables::CaseMulti& e, uint32_t c) { return e.cp < c; });
  if (m != multi + multi_count && m->cp == cp) {
    for (uint32_t t : m->to) {
      if (t != 0) append_utf8(out, t);
    }
    return;
  }
  const auto* r = std::upper_bound(runs, runs + run_count, cp,
                                   [](uint32_t c, const unicode_tables::CaseRun& e) { return c < e.first; });
  if (r != runs) {
    --r;
    if (cp <= r->last && (cp - r->first) % r->stride == 0) {
      append_utf8(out, static_cast<uint32_t>(static_cast<int64_t>(cp) + r->delta));
      return;
    }
  }
  append_utf8(out, cp);
}

bool has_case_mapping(uint32_t cp) {
  std::string a, b;
  map_case(a, cp, unicode_tables::kUpperRuns, unicode_tables::kUpperRunCount, unicode_tables::kUpperMulti,
           unicode_tables::kUpperMultiCount);
  map_case(b, cp, unicode_tables::kLowerRuns, unicode_tables::kLowerRunCount, unicode_tables::kLowerMulti,
           unicode_tables::kLowerMultiCount);
  std::string self;
  append_utf8(self, cp);
  return a != self || b != self;
}

// An approximation of Unicode's Case_Ignorable, enough for the final-sigma rule.
bool is_case_ignorable(uint32_t cp) {
  return cp == '\'' || cp == '.' || cp == ':' || cp == '^' || cp == '`' || cp == 0xA8 || cp == 0xAD || cp == 0xAF ||
         cp == 0xB4 || cp == 0xB7 || cp == 0xB8 || (cp >= 0x2B0 && cp <= 0x36F) || cp == 0x2018 || cp == 0x2019 ||
         cp == 0x200B || cp == 0x200C || cp == 0x200D;
}

}  // namespace

std::string sanitize_utf8(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  size_t i = 0;
  const size_t n = s.size();
  while (i < n) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      out += static_cast<char>(c);
      ++i;
      continue;
    }
    // WHATWG: the lead byte fixes the length and the allowed range of the second byte.
    size_t need;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) {
      need = 1;
    } else if (c >= 0xE0 && c <= 0xEF) {
      need = 2;
      if (c == 0xE0) lo = 0xA0;
      if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      need = 3;
      if (c == 0xF0) lo = 0x90;
      if (c == 0xF4) hi = 0x8F;
    } else {
      append_utf8(out, kReplacement);
      ++i;
      continue;
    }
    size_t k = 1;
    for (; k <= need && i + k < n; ++k) {
      const auto cc = static_cast<unsigned char>(s[i + k]);
      if (cc < lo || cc > hi) break;
      lo = 0x80;
      hi = 0xBF;
    }
    if (k == need + 1) {
      out.append(s.substr(i, k));
      i += k;
    } else {
      append_utf8(out, kReplacement);
      i += k;  // the maximal subpart; the offending byte starts the next round
    }
  }
  return out;
}

std::string to_well_formed_utf8(std::string s) {
  if (s.find('\xED') == std::string::npos) return s;
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    const size_t start = i;
    const uint32_t cp = decode_cp(s, i);
    if (cp >= 0xD800 && cp <= 0xDFFF) {
      append_utf8(out, kReplacement);
    } else {
      out.append(s, start, i - start);
    }
  }
  return out;
}

uint32_t decode_cp(std::string_view s, size_t& i) {
  const auto c = static_cast<unsigned char>(s[i]);
  if (c < 0x80) {
    ++i;
    return c;
  }
  size_t len = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
  if (len == 1 || i + len > s.size()) {  // cannot happen on sanitized text; be total anyway
    ++i;
    return kReplacement;
  }
  uint32_t cp = c & (0x7F >> len);
  for (size_t k = 1; k < len; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
  i += len;
  return cp;
}

void js_append(std::string& out, std::string_view s) {
  // A high surrogate is ED A0..AF xx; a low one ED B0..BF xx.
  if (out.size() >= 3 && s.size() >= 3 && static_cast<unsigned char>(out[out.size() - 3]) == 0xED &&
      static_cast<unsigned char>(s[0]) == 0xED) {
    size_t i = out.size() - 3, j = 0;
    const uint32_t hi = decode_cp(out, i), lo = decode_cp(s, j);
    if (is_high_surrogate(hi) && is_low_surrogate(lo)) {
      out.resize(out.size() - 3);
      append_utf8(out, 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00));
      out.append(s.substr(3));
      return;
    }
  }
  out.append(s);
}

size_t js_length(std::string_view s) {
  size_t units = 0;
  for (size_t i = 0; i < s.size();) units += decode_cp(s, i) >= 0x10000 ? 2 : 1;
  return units;
}

std::optional<std::string> js_at(std::string_view s, double index) {
  const double len = static_cast<double>(js_length(s));
  double k = std::isnan(index) ? 0 : std::trunc(index);
  if (k < 0) k += len;
  if (!(k >= 0 && k < len)) return std::nullopt;
  const auto target = static_cast<size_t>(k);
  size_t unit = 0;
  for (size_t i = 0; i < s.size();) {
    const size_t start = i;
    const uint32_t cp = decode_cp(s, i);
    if (cp < 0x10000) {
      if (unit == target) return std::string(s.substr(start, i - start));
      ++unit;
      continue;
    }
    std::string half;
    if (unit == target) {
      append_utf8(half, 0xD800 + ((cp - 0x10000) >> 10));
      return half;
    }
    if (unit + 1 == target) {
      append_utf8(half, 0xDC00 + ((cp - 0x10000) & 0x3FF));
      return half;
    }
    unit += 2;
  }
  return std::nullopt;
}

std::vector<std::string> js_code_points(std::string_view s) {
  std::vector<std::string> out;
  for (size_t i = 0; i < s.size();) {
    const size_t start = i;
    decode_cp(s, i);
    out.emplace_back(s.substr(start, i - start));
  }
  return out;
}

std::string js_first_unit(std::string_view s) {
  if (s.empty()) return {};
  auto at = js_at(s, 0);
  return at ? *at : std::string();
}

std::string js_after_first_unit(std::string_view s) {
  if (s.empty()) return {};
  size_t i = 0;
  const uint32_t cp = decode_cp(s, i);
  if (cp < 0x10000) return std::string(s.substr(i));
  std::string out;
  append_utf8(out, 0xDC00 + ((cp - 0x10000) & 0x3FF));
  out.append(s.substr(i));
  return out;
}

bool js_is_space(uint32_t cp) {
  switch (cp) {
    case 0x09:
    case 0x0A:
    case 0x0B:
    case 0x0C:
    case 0x0D:
    case 0x20:
    case 0xA0:
    case 0x1680:
    case 0x2028:
    case 0x2029:
    case 0x202F:
    case 0x205F:
    case 0x3000:
    case 0xFEFF: return true;
    default: return cp >= 0x2000 && cp <= 0x200A;
  }
}

size_t js_space_len(std::string_view s, size_t i) {
  if (i >= s.size()) return 0;
  const auto c = static_cast<unsigned char>(s[i]);
  if (c < 0x80) return js_is_space(c) ? 1 : 0;
  if (c != 0xC2 && c != 0xE1 && c != 0xE2 && c != 0xE3 && c != 0xEF) return 0;  // lead bytes of the set
  size_t j = i;
  const uint32_t cp = decode_cp(s, j);
  return js_is_space(cp) ? j - i : 0;
}

size_t js_space_len_before(std::string_view s, size_t end) {
  if (end == 0) return 0;
  const auto c = static_cast<unsigned char>(s[end - 1]);
  if (c < 0x80) return js_is_space(c) ? 1 : 0;
  size_t start;
  const uint32_t cp = decode_before(s, end, start);
  return js_is_space(cp) ? end - start : 0;
}

std::string_view js_trim_start(std::string_view s) {
  size_t i = 0;
  while (size_t n = js_space_len(s, i)) i += n;
  return s.substr(i);
}

std::string_view js_trim_end(std::string_view s) {
  size_t end = s.size();
  while (size_t n = js_space_len_before(s, end)) end -= n;
  return s.substr(0, end);
}

std::string_view js_trim(std::string_view s) {
  return js_trim_end(js_trim_start(s));
}

std::string js_to_upper(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    map_case(out, decode_cp(s, i), unicode_tables::kUpperRuns, unicode_tables::kUpperRunCount,
             unicode_tables::kUpperMulti, unicode_tables::kUpperMultiCount);
  }
  return out;
}

std::string js_to_lower(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    const size_t start = i;
    const uint32_t cp = decode_cp(s, i);
    if (cp == 0x3A3) {
      // Final sigma: a capital sigma after a cased letter and not before one lowers to U+03C2.
      bool cased_before = false, cased_after = false;
      for (size_t end = start; end > 0;) {
        size_t b;
        const uint32_t prev = decode_before(s, end, b);
        end = b;
        if (is_case_ignorable(prev)) continue;
        cased_before = has_case_mapping(prev);
        break;
      }
      for (size_t j = i; j < s.size();) {
        const uint32_t next = decode_cp(s, j);
        if (is_case_ignorable(next)) continue;
        cased_after = has_case_mapping(next);
        break;
      }
      append_utf8(out, cased_before && !cased_after ? 0x3C2 : 0x3C3);
      continue;
    }
    map_case(out, cp, unicode_tables::kLowerRuns, unicode_tables::kLowerRunCount, unicode_tables::kLowerMulti,
             unicode_tables::kLowerMultiCount);
  }
  return out;
}

size_t js_find(std::string_view hay, std::string_view needle, size_t from) {
  if (from > hay.size()) return std::string_view::npos;
  // Short needles: the library search is fast and at worst O(n * 16).
  if (needle.size() <= 16) return hay.find(needle, from);
  // Long needles: Knuth-Morris-Pratt, linear even on hostile input ("aaa...ab" in "aaaa...").
  std::vector<size_t> fail(needle.size(), 0);
  for (size_t i = 1, k = 0; i < needle.size(); ++i) {
    while (k > 0 && needle[i] != needle[k]) k = fail[k - 1];
    if (needle[i] == needle[k]) ++k;
    fail[i] = k;
  }
  for (size_t i = from, k = 0; i < hay.size(); ++i) {
    while (k > 0 && hay[i] != needle[k]) k = fail[k - 1];
    if (hay[i] == needle[k]) ++k;
    if (k == needle.size()) return i + 1 - k;
  }
  return std::string_view::npos;
}

int js_compare(std::string_view a, std::string_view b) {
  size_t i = 0, j = 0;
  while (i < a.size() && j < b.size()) {
    const uint32_t x = decode_cp(a, i), y = decode_cp(b, j);
    if (x == y) continue;
    // Compare as UTF-16: a supplementary code point starts with a surrogate (0xD800..0xDBFF).
    const uint32_t ux = x >= 0x10000 ? 0xD800 + ((x - 0x10000) >> 10) : x;
    const uint32_t uy = y >= 0x10000 ? 0xD800 + ((y - 0x10000) >> 10) : y;
    if (ux != uy) return ux < uy ? -1 : 1;
    return x < y ? -1 : 1;  // same high surrogate: the low ones order as the code points do
  }
  if (i < a.size()) return 1;
  if (j < b.size()) return -1;
  return 0;
}

int js_locale_compare(std::string_view a, std::string_view b) {
  // ICU root collation of printable ASCII, lowest first; letters share a primary weight per case pair.
  static constexpr std::string_view kOrder =
      " _-,;:!?.'\"()[]{}@*/\\&#%`^+<=>|~$0123456789aAbBcCdDeEfFgGhHiIjJkKlLmMnNoOpPqQrRsStTuUvVwWxXyYzZ";
  auto primary = [](uint32_t cp) -> int64_t {
    if (cp < 0x20 || cp == 0x7F) return -1;  // ignorable
    if (cp < 0x80) {
      const uint32_t folded = cp >= 'A' && cp <= 'Z' ? cp + 32 : cp;
      return static_cast<int64_t>(kOrder.find(static_cast<char>(folded)));
    }
    return 1000 + static_cast<int64_t>(cp);
  };
  auto keys = [&](std::string_view s, std::vector<int64_t>& prim, std::vector<int>& tert) {
    for (size_t i = 0; i < s.size();) {
      const uint32_t cp = decode_cp(s, i);
      const int64_t p = primary(cp);
      if (p < 0) continue;
      prim.push_back(p);
      tert.push_back(cp >= 'A' && cp <= 'Z' ? 1 : 0);
    }
  };
  std::vector<int64_t> pa, pb;
  std::vector<int> ta, tb;
  keys(a, pa, ta);
  keys(b, pb, tb);
  if (pa != pb) return std::lexicographical_compare(pa.begin(), pa.end(), pb.begin(), pb.end()) ? -1 : 1;
  if (ta != tb) return std::lexicographical_compare(ta.begin(), ta.end(), tb.begin(), tb.end()) ? -1 : 1;
  return 0;
}

std::string js_json_quote(std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(s.size() + 2);
  out += '"';
  for (size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x80) {
      const size_t start = i;
      const uint32_t cp = decode_cp(s, i);
      if (cp >= 0xD800 && cp <= 0xDFFF) {  // well-formed JSON.stringify escapes lone surrogates
        out += "\\u";
        for (int shift = 12; shift >= 0; shift -= 4) out += kHex[(cp >> shift) & 0xF];
      } else {
        out.append(s.substr(start, i - start));
      }
      continue;
    }
    ++i;
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          out += "\\u00";
          out += kHex[c >> 4];
          out += kHex[c & 0xF];
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  out += '"';
  return out;
}

std::string js_ascii_escape(std::string_view json) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(json.size());
  auto escape_unit = [&](uint32_t unit) {
    out += "\\u";
    for (int shift = 12; shift >= 0; shift -= 4) out += kHex[(unit >> shift) & 0xF];
  };
  for (size_t i = 0; i < json.size();) {
    const uint32_t cp = decode_cp(json, i);
    if (cp < 0x7F) {
      out += static_cast<char>(cp);
    } else if (cp < 0x10000) {
      escape_unit(cp);
    } else {
      escape_unit(0xD800 + ((cp - 0x10000) >> 10));
      escape_unit(0xDC00 + ((cp - 0x10000) & 0x3FF));
    }
  }
  return out;
}

}  // namespace vireo::jinja
