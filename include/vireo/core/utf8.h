// UTF-8 helpers shared by the file readers, the tokenizers and the document stages.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>

namespace vireo {

// Appends code point `cp` as UTF-8 (surrogates too: the template engine's JavaScript strings need
// them; callers that must not emit them check first).
void append_utf8(std::string& out, uint32_t cp);
// True when `s` is well-formed UTF-8 (no overlongs, no surrogates, nothing past U+10FFFF).
bool is_valid_utf8(std::string_view s);
// A printable, length-limited rendering of untrusted bytes for error messages.
std::string quote_for_error(std::string_view s, size_t max_len = 64);
// At most `max_bytes` of `s`, cut before a character's continuation bytes, with `ellipsis` added
// when something was cut.
std::string utf8_truncate(std::string_view s, size_t max_bytes, std::string_view ellipsis = "…");

}  // namespace vireo
