// Number formatting and parsing with JavaScript semantics (all template numbers are doubles in
// the reference implementation, integers included).
#pragma once
#include <string>
#include <string_view>

namespace vireo::jinja {

// Number.prototype.toString() / String(x): shortest round-trip digits, JS exponent rules.
std::string js_number_to_string(double x);
// x.toFixed(1) for an integral x (what the reference prints for a float with no fraction).
std::string js_to_fixed1(double x);
// parseInt(s, 10) and parseFloat(s); NaN when nothing parses.
double js_parse_int(std::string_view s);
double js_parse_float(std::string_view s);
// Number(s) (ToNumber on a string), as loose equality (==) uses it.
double js_string_to_number(std::string_view s);
// Number.isInteger(x).
bool js_is_integer(double x);

}  // namespace vireo::jinja
