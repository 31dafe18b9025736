// UTF-8 helpers shared by the file readers and (later) the tokenizers.
#pragma once
#include <string>
#include <string_view>

namespace vireo {

// True when `s` is well-formed UTF-8 (no overlongs, no surrogates, nothing past U+10FFFF).
bool is_valid_utf8(std::string_view s);
// A printable, length-limited rendering of untrusted bytes for error messages.
std::string quote_for_error(std::string_view s, size_t max_len = 64);

}  // namespace vireo
