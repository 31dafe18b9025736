// Code point properties and UTF-8 handling with llama.cpp's exact semantics (its unicode.cpp), plus the
// NFC normalization Hugging Face tokenizers apply.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "vireo/core/utf8.h"

namespace vireo::unicode {

enum Flag : uint16_t {
  kUndefined = 0x0001,   // Cn
  kNumber = 0x0002,      // \p{N}
  kLetter = 0x0004,      // \p{L}
  kSeparator = 0x0008,   // \p{Z}
  kMark = 0x0010,        // \p{M}
  kPunctuation = 0x0020, // \p{P}
  kSymbol = 0x0040,      // \p{S}
  kControl = 0x0080,     // \p{C} (Cc, Cf, Co, Cs)
  kCategoryMask = 0x00FF,
  kWhitespace = 0x0100,  // llama.cpp's \s
};

// Flags of a code point; kUndefined for anything past U+10FFFF.
uint16_t flags(uint32_t cp);
inline bool is_whitespace(uint32_t cp) { return flags(cp) & kWhitespace; }
// UnicodeData simple lowercase mapping (cp itself when none).
uint32_t to_lower(uint32_t cp);
// First code point of the canonical decomposition: what llama.cpp's WordPiece accent stripping keeps.
uint32_t nfd_first(uint32_t cp);

// Length of the UTF-8 sequence a lead byte announces (1 for continuation bytes), as llama.cpp reads it.
inline size_t utf8_len(uint8_t lead) {
  static constexpr uint8_t kLen[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
  return kLen[lead >> 4];
}

// llama.cpp's lenient decoder: overlong forms, surrogates and values up to 0x1FFFFF decode as they are;
// a byte that starts no complete sequence becomes U+FFFD and decoding resumes at the next byte.
void decode_utf8(std::string_view s, std::vector<uint32_t>& out);
// Appends cp as UTF-8 (surrogates too, as llama.cpp does); cp must be <= 0x10FFFF.
using ::vireo::append_utf8;  // core/utf8.h
// Length of the longest prefix of s that is well-formed UTF-8 except for a possibly incomplete final
// character, and whether that tail is incomplete (could still be completed by more bytes).
size_t valid_utf8_prefix(std::string_view s, bool* incomplete_tail);
// Where a trailing, still-completable UTF-8 sequence starts (s.size() when there is none).
size_t incomplete_tail_start(std::string_view s);
// Replaces every ill-formed subsequence with U+FFFD (WHATWG/Unicode "maximal subpart" rule, as
// TextDecoder and JavaScript strings do).
std::string sanitize_utf8(std::string_view s);

// Unicode NFC (canonical decomposition, canonical ordering, canonical composition).
std::string nfc(std::string_view utf8);

}  // namespace vireo::unicode
