#include "tokenizer/unicode.h"

#include <algorithm>
#include <array>
#include <memory>

#include "tokenizer/unicode_data.h"

namespace vireo::unicode {
namespace ud = vireo::unicode_data;

namespace {

constexpr uint32_t kMaxCodepoint = 0x110000;
constexpr uint32_t kBlock = 256;

// Two-level table (block index per 256 code points, deduplicated blocks): O(1) flags in ~100 KB.
struct FlagTable {
  std::vector<uint16_t> block_of;  // [kMaxCodepoint / kBlock]
  std::vector<uint16_t> blocks;    // [n_unique_blocks * kBlock]

  FlagTable() {
    std::vector<uint16_t> all(kMaxCodepoint);
    for (uint32_t r = 0; r < ud::kFlagRunsCount; ++r) {
      const uint32_t end = r + 1 < ud::kFlagRunsCount ? ud::kFlagRuns[r + 1].first : kMaxCodepoint;
      std::fill(all.begin() + ud::kFlagRuns[r].first, all.begin() + end, ud::kFlagRuns[r].flags);
    }
    block_of.resize(kMaxCodepoint / kBlock);
    for (uint32_t b = 0; b < kMaxCodepoint / kBlock; ++b) {
      const uint16_t* src = all.data() + b * kBlock;
      uint32_t found = UINT32_MAX;
      for (uint32_t u = 0; u * kBlock < blocks.size(); ++u) {
        if (std::equal(src, src + kBlock, blocks.data() + u * kBlock)) {
          found = u;
          break;
        }
      }
      if (found == UINT32_MAX) {
        found = static_cast<uint32_t>(blocks.size() / kBlock);
        blocks.insert(blocks.end(), src, src + kBlock);
      }
      block_of[b] = static_cast<uint16_t>(found);
    }
  }
};

const FlagTable& flag_table() {
  static const FlagTable table;
  return table;
}

constexpr uint32_t kHangulS = 0xAC00, kHangulL = 0x1100, kHangulV = 0x1161, kHangulT = 0x11A7;
constexpr uint32_t kHangulLCount = 19, kHangulVCount = 21, kHangulTCount = 28;
constexpr uint32_t kHangulN = kHangulVCount * kHangulTCount, kHangulSCount = kHangulLCount * kHangulN;

uint8_t combining_class(uint32_t cp) {
  if (cp < 0x300) return 0;
  const auto* end = ud::kCombiningClass + ud::kCombiningClassCount;
  const auto* it = std::upper_bound(ud::kCombiningClass, end, cp,
                                    [](uint32_t c, const ud::CccRun& r) { return c < r.first; });
  return (it - 1)->ccc;
}

void decompose(uint32_t cp, std::vector<uint32_t>& out) {
  if (cp >= kHangulS && cp < kHangulS + kHangulSCount) {
    const uint32_t s = cp - kHangulS;
    out.push_back(kHangulL + s / kHangulN);
    out.push_back(kHangulV + (s % kHangulN) / kHangulTCount);
    if (s % kHangulTCount != 0) out.push_back(kHangulT + s % kHangulTCount);
    return;
  }
  const auto* end = ud::kDecompositions + ud::kDecompositionsCount;
  const auto* it = std::lower_bound(ud::kDecompositions, end, cp,
                                    [](const ud::Decomposition& d, uint32_t c) { return d.cp < c; });
  if (it == end || it->cp != cp) {
    out.push_back(cp);
    return;
  }
  decompose(it->first, out);
  if (it->second != 0) decompose(it->second, out);
}

uint32_t compose_pair(uint32_t a, uint32_t b) {
  if (a >= kHangulL && a < kHangulL + kHangulLCount && b >= kHangulV && b < kHangulV + kHangulVCount) {
    return kHangulS + ((a - kHangulL) * kHangulVCount + (b - kHangulV)) * kHangulTCount;
  }
  if (a >= kHangulS && a < kHangulS + kHangulSCount && (a - kHangulS) % kHangulTCount == 0 && b > kHangulT &&
      b < kHangulT + kHangulTCount) {
    return a + (b - kHangulT);
  }
  const auto* end = ud::kCompositions + ud::kCompositionsCount;
  const auto* it = std::lower_bound(ud::kCompositions, end, std::make_pair(a, b),
                                    [](const ud::Composition& c, const std::pair<uint32_t, uint32_t>& k) {
                                      return c.first < k.first || (c.first == k.first && c.second < k.second);
                                    });
  return (it != end && it->first == a && it->second == b) ? it->composite : 0;
}

}  // namespace

uint16_t flags(uint32_t cp) {
  if (cp >= kMaxCodepoint) return kUndefined;
  const FlagTable& t = flag_table();
  return t.blocks[t.block_of[cp / kBlock] * kBlock + cp % kBlock];
}

uint32_t to_lower(uint32_t cp) {
  if (cp < 0x80) return (cp >= 'A' && cp <= 'Z') ? cp + 32 : cp;
  const auto* end = ud::kLowercase + ud::kLowercaseCount;
  const auto* it = std::lower_bound(ud::kLowercase, end, cp,
                                    [](const ud::CodepointPair& p, uint32_t c) { return p.from < c; });
  return (it != end && it->from == cp) ? it->to : cp;
}

uint32_t nfd_first(uint32_t cp) {
  if (cp < 0xC0) return cp;
  const auto* end = ud::kNfdFirst + ud::kNfdFirstCount;
  const auto* it = std::upper_bound(ud::kNfdFirst, end, cp,
                                    [](uint32_t c, const ud::NfdRun& r) { return c < r.first; });
  if (it == ud::kNfdFirst) return cp;
  --it;
  return (cp >= it->first && cp <= it->last) ? it->nfd : cp;
}

void decode_utf8(std::string_view s, std::vector<uint32_t>& out) {
  const size_t n = s.size();
  const auto* p = reinterpret_cast<const uint8_t*>(s.data());
  size_t i = 0;
  auto cont = [&](size_t k) { return (p[k] & 0xC0) == 0x80; };
  while (i < n) {
    const uint8_t c = p[i];
    if (c < 0x80) {
      out.push_back(c);
      i += 1;
    } else if (!(c & 0x40)) {
      out.push_back(0xFFFD);
      i += 1;
    } else if (!(c & 0x20)) {
      if (i + 1 < n && cont(i + 1)) {
        out.push_back(((c & 0x1Fu) << 6) | (p[i + 1] & 0x3Fu));
        i += 2;
      } else {
        out.push_back(0xFFFD);
        i += 1;
      }
    } else if (!(c & 0x10)) {
      if (i + 2 < n && cont(i + 1) && cont(i + 2)) {
        out.push_back(((c & 0x0Fu) << 12) | ((p[i + 1] & 0x3Fu) << 6) | (p[i + 2] & 0x3Fu));
        i += 3;
      } else {
        out.push_back(0xFFFD);
        i += 1;
      }
    } else if (!(c & 0x08)) {
      if (i + 3 < n && cont(i + 1) && cont(i + 2) && cont(i + 3)) {
        out.push_back(((c & 0x07u) << 18) | ((p[i + 1] & 0x3Fu) << 12) | ((p[i + 2] & 0x3Fu) << 6) |
                      (p[i + 3] & 0x3Fu));
        i += 4;
      } else {
        out.push_back(0xFFFD);
        i += 1;
      }
    } else {
      out.push_back(0xFFFD);
      i += 1;
    }
  }
}

namespace {
// Well-formed UTF-8 (Unicode table 3-7): how many bytes follow `lead`, and the allowed range of the
// second byte; 0 for a byte that cannot start a character.
int expected_tail(uint8_t lead, uint8_t* lo, uint8_t* hi) {
  *lo = 0x80;
  *hi = 0xBF;
  if (lead >= 0xC2 && lead <= 0xDF) return 1;
  if (lead == 0xE0) { *lo = 0xA0; return 2; }
  if ((lead >= 0xE1 && lead <= 0xEC) || lead == 0xEE || lead == 0xEF) return 2;
  if (lead == 0xED) { *hi = 0x9F; return 2; }
  if (lead == 0xF0) { *lo = 0x90; return 3; }
  if (lead >= 0xF1 && lead <= 0xF3) return 3;
  if (lead == 0xF4) { *hi = 0x8F; return 3; }
  return 0;
}

// Length of the maximal well-formed prefix of the character starting at i (0 when the lead byte is
// invalid), and whether it is complete.
size_t scan_char(const uint8_t* p, size_t n, size_t i, bool* complete) {
  const uint8_t c = p[i];
  if (c < 0x80) {
    *complete = true;
    return 1;
  }
  uint8_t lo, hi;
  const int tail = expected_tail(c, &lo, &hi);
  if (tail == 0) {
    *complete = false;
    return 0;
  }
  size_t k = 1;
  for (; k <= static_cast<size_t>(tail); ++k) {
    if (i + k >= n) {
      *complete = false;
      return k;
    }
    const uint8_t b = p[i + k];
    const uint8_t l = k == 1 ? lo : 0x80, h = k == 1 ? hi : 0xBF;
    if (b < l || b > h) {
      *complete = false;
      return k;
    }
  }
  *complete = true;
  return k;
}
}  // namespace

size_t valid_utf8_prefix(std::string_view s, bool* incomplete_tail) {
  const auto* p = reinterpret_cast<const uint8_t*>(s.data());
  const size_t n = s.size();
  size_t i = 0;
  *incomplete_tail = false;
  while (i < n) {
    bool complete;
    const size_t len = scan_char(p, n, i, &complete);
    if (!complete) {
      *incomplete_tail = len > 0 && i + len == n;  // ran out of bytes, not into a bad one
      return i;
    }
    i += len;
  }
  return i;
}

size_t incomplete_tail_start(std::string_view s) {
  const auto* p = reinterpret_cast<const uint8_t*>(s.data());
  const size_t n = s.size();
  for (size_t back = 1; back <= 3 && back <= n; ++back) {
    const size_t i = n - back;
    if ((p[i] & 0xC0) == 0x80) continue;  // a continuation byte: look further back for the lead
    bool complete;
    const size_t len = scan_char(p, n, i, &complete);
    return (!complete && len > 0 && i + len == n) ? i : n;
  }
  return n;
}

std::string sanitize_utf8(std::string_view s) {
  const auto* p = reinterpret_cast<const uint8_t*>(s.data());
  const size_t n = s.size();
  std::string out;
  out.reserve(n);
  size_t i = 0;
  while (i < n) {
    bool complete;
    const size_t len = scan_char(p, n, i, &complete);
    if (complete) {
      out.append(s.substr(i, len));
      i += len;
    } else {
      out += "\xEF\xBF\xBD";
      i += std::max<size_t>(len, 1);
    }
  }
  return out;
}

std::string nfc(std::string_view utf8) {
  if (std::all_of(utf8.begin(), utf8.end(), [](char c) { return static_cast<uint8_t>(c) < 0x80; })) {
    return std::string(utf8);
  }
  std::vector<uint32_t> cps, d;
  decode_utf8(utf8, cps);
  d.reserve(cps.size() + 8);
  for (uint32_t cp : cps) decompose(cp, d);
  // Canonical ordering: stable-sort each run of non-starters by combining class.
  for (size_t i = 0; i < d.size();) {
    if (combining_class(d[i]) == 0) {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < d.size() && combining_class(d[j]) != 0) ++j;
    std::stable_sort(d.begin() + i, d.begin() + j,
                     [](uint32_t a, uint32_t b) { return combining_class(a) < combining_class(b); });
    i = j;
  }
  // Canonical composition.
  std::vector<uint32_t> out;
  out.reserve(d.size());
  size_t starter = SIZE_MAX;
  int last_ccc = -1;
  for (uint32_t cp : d) {
    const int ccc = combining_class(cp);
    // Not blocked: nothing in between, or everything in between has a lower combining class.
    if (starter != SIZE_MAX && (last_ccc < ccc || last_ccc == 0)) {
      if (const uint32_t c = compose_pair(out[starter], cp); c != 0) {
        out[starter] = c;
        continue;
      }
    }
    if (ccc == 0) {
      starter = out.size();
      last_ccc = 0;
    } else {
      last_ccc = ccc;
    }
    out.push_back(cp);
  }
  std::string s;
  s.reserve(utf8.size());
  for (uint32_t cp : out) append_utf8(s, cp > 0x10FFFF ? 0xFFFD : cp);
  return s;
}

}  // namespace vireo::unicode
