#include "tokenizer/jinja/js_number.h"

#include <charconv>
#include <cmath>
#include <cstdlib>
#include <limits>

#include "tokenizer/jinja/js_string.h"

namespace vireo::jinja {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

// strtod on an already-validated decimal literal (no locale surprises: only [0-9.eE+-]).
double parse_decimal(std::string_view literal) {
  std::string copy(literal);
  return std::strtod(copy.c_str(), nullptr);
}

// Length of the longest prefix of s that is a StrDecimalLiteral without sign ("Infinity",
// digits[.digits][e±digits], .digits[e±digits]); 0 when none.
size_t decimal_prefix(std::string_view s) {
  if (s.substr(0, 8) == "Infinity") return 8;
  size_t i = 0;
  while (i < s.size() && is_digit(s[i])) ++i;
  const size_t int_digits = i;
  size_t frac_digits = 0;
  if (i < s.size() && s[i] == '.') {
    size_t j = i + 1;
    while (j < s.size() && is_digit(s[j])) ++j;
    frac_digits = j - i - 1;
    if (int_digits > 0 || frac_digits > 0) i = j;
  }
  if (int_digits == 0 && frac_digits == 0) return 0;
  if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
    size_t j = i + 1;
    if (j < s.size() && (s[j] == '+' || s[j] == '-')) ++j;
    const size_t exp_start = j;
    while (j < s.size() && is_digit(s[j])) ++j;
    if (j > exp_start) i = j;
  }
  return i;
}

}  // namespace

std::string js_number_to_string(double x) {
  if (std::isnan(x)) return "NaN";
  if (std::isinf(x)) return x > 0 ? "Infinity" : "-Infinity";
  if (x == 0) return "0";
  // Shortest round-trip digits in scientific form: d[.ddd]e±X.
  char buf[64];
  const auto res = std::to_chars(buf, buf + sizeof buf, x, std::chars_format::scientific);
  std::string_view sci(buf, static_cast<size_t>(res.ptr - buf));
  std::string out;
  if (sci.front() == '-') {
    out += '-';
    sci.remove_prefix(1);
  }
  const size_t e = sci.find('e');
  std::string digits;
  for (char c : sci.substr(0, e)) {
    if (c != '.') digits += c;
  }
  while (digits.size() > 1 && digits.back() == '0') digits.pop_back();
  const int k = static_cast<int>(digits.size());
  const int n = std::atoi(std::string(sci.substr(e + 1)).c_str()) + 1;  // x = 0.digits * 10^n
  if (k <= n && n <= 21) {
    out += digits;
    out.append(static_cast<size_t>(n - k), '0');
  } else if (0 < n && n <= 21) {
    out += digits.substr(0, static_cast<size_t>(n));
    out += '.';
    out += digits.substr(static_cast<size_t>(n));
  } else if (-6 < n && n <= 0) {
    out += "0.";
    out.append(static_cast<size_t>(-n), '0');
    out += digits;
  } else {
    out += digits[0];
    if (k > 1) {
      out += '.';
      out += digits.substr(1);
    }
    out += 'e';
    out += n - 1 >= 0 ? '+' : '-';
    out += std::to_string(std::abs(n - 1));
  }
  return out;
}

std::string js_to_fixed1(double x) {
  if (!std::isfinite(x) || std::fabs(x) >= 1e21) return js_number_to_string(x);
  char buf[400];
  const auto res = std::to_chars(buf, buf + sizeof buf, x, std::chars_format::fixed, 1);
  std::string out(buf, static_cast<size_t>(res.ptr - buf));
  if (out == "-0.0") out = "0.0";  // (-0).toFixed(1) is "0.0"; the caller handles -0.0 itself
  return out;
}

double js_parse_int(std::string_view s) {
  s = js_trim_start(s);
  bool negative = false;
  if (!s.empty() && (s[0] == '+' || s[0] == '-')) {
    negative = s[0] == '-';
    s.remove_prefix(1);
  }
  size_t n = 0;
  while (n < s.size() && is_digit(s[n])) ++n;
  if (n == 0) return kNaN;
  const double v = parse_decimal(s.substr(0, n));
  return negative ? -v : v;
}

double js_parse_float(std::string_view s) {
  s = js_trim_start(s);
  bool negative = false;
  std::string_view body = s;
  if (!body.empty() && (body[0] == '+' || body[0] == '-')) {
    negative = body[0] == '-';
    body.remove_prefix(1);
  }
  const size_t n = decimal_prefix(body);
  if (n == 0) return kNaN;
  double v =
      body.substr(0, n) == "Infinity" ? std::numeric_limits<double>::infinity() : parse_decimal(body.substr(0, n));
  return negative ? -v : v;
}

double js_string_to_number(std::string_view s) {
  s = js_trim(s);
  if (s.empty()) return 0;
  if (s.size() > 2 && s[0] == '0') {
    int base = 0;
    const char p = s[1];
    if (p == 'x' || p == 'X') base = 16;
    if (p == 'o' || p == 'O') base = 8;
    if (p == 'b' || p == 'B') base = 2;
    if (base != 0) {
      double v = 0;
      for (char c : s.substr(2)) {
        int d;
        if (is_digit(c)) {
          d = c - '0';
        } else if (c >= 'a' && c <= 'f') {
          d = c - 'a' + 10;
        } else if (c >= 'A' && c <= 'F') {
          d = c - 'A' + 10;
        } else {
          return kNaN;
        }
        if (d >= base) return kNaN;
        v = v * base + d;
      }
      return v;
    }
  }
  bool negative = false;
  std::string_view body = s;
  if (body[0] == '+' || body[0] == '-') {
    negative = body[0] == '-';
    body.remove_prefix(1);
  }
  const size_t n = decimal_prefix(body);
  if (n == 0 || n != body.size()) return kNaN;
  double v = body == "Infinity" ? std::numeric_limits<double>::infinity() : parse_decimal(body);
  return negative ? -v : v;
}

bool js_is_integer(double x) {
  return std::isfinite(x) && std::trunc(x) == x;
}

}  // namespace vireo::jinja
