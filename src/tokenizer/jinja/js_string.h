// String primitives with JavaScript semantics, on UTF-8 text.
//
// The reference implementation of the template language (@huggingface/jinja) is JavaScript, so
// lengths, indexing, whitespace, case mapping and ordering follow JS strings (UTF-16 code units),
// not bytes or code points. vireo keeps strings in UTF-8; a lone UTF-16 surrogate (which JS
// strings can hold, e.g. from "\ud83d" or from indexing into an emoji) is stored WTF-8 style as the
// 3-byte encoding of U+D800..U+DFFF, and js_append() joins a high and a low half the way JS
// concatenation does.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "vireo/core/utf8.h"

namespace vireo::jinja {

// Decodes bytes as the WHATWG UTF-8 decoder (Node's readFileSync(..., "utf8")) does: each
// maximal invalid subpart becomes U+FFFD.
std::string sanitize_utf8(std::string_view bytes);

// Encodes a string for the outside world: each lone surrogate becomes U+FFFD, as a JavaScript
// string written out as UTF-8 (TextEncoder, Buffer) does.
std::string to_well_formed_utf8(std::string s);

// Decodes the code point at s[i] (s is sanitized UTF-8/WTF-8) and advances i past it.
uint32_t decode_cp(std::string_view s, size_t& i);

// out += s, joining a trailing high surrogate of out with a leading low surrogate of s.
void js_append(std::string& out, std::string_view s);

// String.prototype.length: UTF-16 code units.
size_t js_length(std::string_view s);
// String.prototype.at(index) (negative counts from the end); nullopt when out of range.
std::optional<std::string> js_at(std::string_view s, double index);
// Array.from(s): one string per code point (lone surrogates stand alone).
std::vector<std::string> js_code_points(std::string_view s);
// String.prototype.charAt(0) and slice(1), on code units.
std::string js_first_unit(std::string_view s);
std::string js_after_first_unit(std::string_view s);

// The JS whitespace set (/\s/: WhiteSpace and LineTerminator).
bool js_is_space(uint32_t cp);
// Byte length of the JS whitespace character at s[i], or 0.
size_t js_space_len(std::string_view s, size_t i);
// Byte length of the JS whitespace character that ends just before s[end], or 0.
size_t js_space_len_before(std::string_view s, size_t end);
std::string_view js_trim_start(std::string_view s);
std::string_view js_trim_end(std::string_view s);
std::string_view js_trim(std::string_view s);

std::string js_to_upper(std::string_view s);
std::string js_to_lower(std::string_view s);

// The first occurrence of `needle` in `hay` at or after `from` (npos when none), in linear time.
size_t js_find(std::string_view hay, std::string_view needle, size_t from = 0);

// a < b as JS compares strings (by UTF-16 code unit): -1, 0 or 1.
int js_compare(std::string_view a, std::string_view b);
// An approximation of a.localeCompare(b) (ICU root collation) good for ASCII keys.
int js_locale_compare(std::string_view a, std::string_view b);

// JSON.stringify(s).
std::string js_json_quote(std::string_view s);
// Replaces every UTF-16 code unit in [0x7f, 0xffff] with \uXXXX (tojson's ensure_ascii).
std::string js_ascii_escape(std::string_view json);

}  // namespace vireo::jinja
