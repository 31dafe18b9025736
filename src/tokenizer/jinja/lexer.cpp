#include "tokenizer/jinja/lexer.h"

#include <string_view>

#include "tokenizer/jinja/js_string.h"

namespace vireo::jinja {
namespace {

// Text with, for every byte, the offset in the original source it came from (preprocessing
// deletes characters; errors must still point into the file the author wrote).
struct Mapped {
  std::string text;
  std::vector<uint32_t> origin;  // origin.size() == text.size() + 1; the last entry is the end

  void copy(const Mapped& from, size_t begin, size_t end) {
    text.append(from.text, begin, end - begin);
    origin.insert(origin.end(), from.origin.begin() + static_cast<std::ptrdiff_t>(begin),
                  from.origin.begin() + static_cast<std::ptrdiff_t>(end));
  }
  void finish(const Mapped& from) { origin.push_back(from.origin.back()); }
};

bool starts_with_at(std::string_view s, size_t i, std::string_view p) {
  return s.substr(std::min(i, s.size())).starts_with(p);
}

size_t char_len(std::string_view s, size_t i) {
  size_t j = i;
  decode_cp(s, j);
  return j - i;
}

bool is_line_terminator_at(std::string_view s, size_t i) {
  return s[i] == '\n' || s[i] == '\r' || starts_with_at(s, i, "\xE2\x80\xA8") || starts_with_at(s, i, "\xE2\x80\xA9");
}

// lstrip_blocks: /^[ \t]*({[#%-])/gm -> "$1" (note: not before "{{").
Mapped lstrip_blocks(const Mapped& in) {
  Mapped out;
  const std::string_view s = in.text;
  bool line_start = true;
  for (size_t i = 0; i < s.size();) {
    if (line_start) {
      size_t q = i;
      while (q < s.size() && (s[q] == ' ' || s[q] == '\t')) ++q;
      if (q + 1 < s.size() && s[q] == '{' && (s[q + 1] == '#' || s[q + 1] == '%' || s[q + 1] == '-')) i = q;
      line_start = false;
      continue;
    }
    const size_t len = char_len(s, i);
    line_start = is_line_terminator_at(s, i);
    out.copy(in, i, i + len);
    i += len;
  }
  out.finish(in);
  return out;
}

// trim_blocks: /([#%-]})\n/g -> "$1".
Mapped trim_blocks(const Mapped& in) {
  Mapped out;
  const std::string_view s = in.text;
  size_t i = 0;
  while (i < s.size()) {
    if ((s[i] == '#' || s[i] == '%' || s[i] == '-') && starts_with_at(s, i + 1, "}\n")) {
      out.copy(in, i, i + 2);
      i += 3;
    } else {
      out.copy(in, i, i + 1);
      ++i;
    }
  }
  out.finish(in);
  return out;
}

size_t skip_js_spaces(std::string_view s, size_t i) {
  while (size_t n = js_space_len(s, i)) i += n;
  return i;
}

// transformers' {% generation %} / {% endgeneration %} tags:
// /(\s*){%(-?)\s*(?:end)?generation\s*(-?)%}(\s*)/gs -> (lstrip ? "" : before) + (rstrip ? "" : after).
Mapped drop_generation_tags(const Mapped& in) {
  Mapped out;
  const std::string_view s = in.text;
  size_t i = 0;  // everything before i is copied or consumed by a match
  while (true) {
    const size_t q = s.find("{%", i);
    if (q == std::string_view::npos) break;
    size_t r = q + 2;
    const bool lstrip = r < s.size() && s[r] == '-';
    if (lstrip) ++r;
    r = skip_js_spaces(s, r);
    bool matched = false;
    if (starts_with_at(s, r, "endgeneration")) {
      r += 13;
      matched = true;
    } else if (starts_with_at(s, r, "generation")) {
      r += 10;
      matched = true;
    }
    bool rstrip = false;
    if (matched) {
      r = skip_js_spaces(s, r);
      rstrip = r < s.size() && s[r] == '-';
      if (rstrip) ++r;
      matched = starts_with_at(s, r, "%}");
    }
    if (!matched) {
      out.copy(in, i, q + 1);
      i = q + 1;
      continue;
    }
    r += 2;
    size_t before = q;
    while (before > i) {
      const size_t n = js_space_len_before(s, before);
      if (n == 0) break;
      before -= n;
    }
    const size_t after = skip_js_spaces(s, r);
    out.copy(in, i, before);
    if (!lstrip) out.copy(in, before, q);
    if (!rstrip) out.copy(in, r, after);
    i = after;
  }
  out.copy(in, i, s.size());
  out.finish(in);
  return out;
}

Mapped preprocess(const std::string& source) {
  Mapped m;
  m.text = source;
  m.origin.resize(source.size() + 1);
  for (size_t i = 0; i <= source.size(); ++i) m.origin[i] = static_cast<uint32_t>(i);
  if (!m.text.empty() && m.text.back() == '\n') {  // Jinja drops one trailing newline
    m.text.pop_back();
    m.origin.erase(m.origin.end() - 2);
  }
  return drop_generation_tags(trim_blocks(lstrip_blocks(m)));
}

bool is_word(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}
bool is_digit(char c) {
  return c >= '0' && c <= '9';
}
int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

struct Rule {
  std::string_view seq;
  Tok type;
};

// Tried in order, as the reference does ("**" before "*", "//" before "/").
constexpr Rule kRules[] = {
    {"{%", Tok::OpenStatement},  {"%}", Tok::CloseStatement},
    {"{{", Tok::OpenExpression}, {"}}", Tok::CloseExpression},
    {"(", Tok::OpenParen},       {")", Tok::CloseParen},
    {"{", Tok::OpenCurly},       {"}", Tok::CloseCurly},
    {"[", Tok::OpenSquare},      {"]", Tok::CloseSquare},
    {",", Tok::Comma},           {".", Tok::Dot},
    {":", Tok::Colon},           {"|", Tok::Pipe},
    {"<=", Tok::Comparison},     {">=", Tok::Comparison},
    {"==", Tok::Comparison},     {"!=", Tok::Comparison},
    {"<", Tok::Comparison},      {">", Tok::Comparison},
    {"+", Tok::Additive},        {"-", Tok::Additive},
    {"~", Tok::Additive},        {"**", Tok::Exponent},
    {"*", Tok::Multiplicative},  {"//", Tok::Multiplicative},
    {"/", Tok::Multiplicative},  {"%", Tok::Multiplicative},
    {"=", Tok::Equals},
};

class Lexer {
 public:
  Lexer(const SourceInfo& src, Mapped m) : src_(src), m_(std::move(m)), s_(m_.text) {}

  std::vector<Token> run() {
    while (i_ < s_.size()) step();
    return std::move(tokens_);
  }

 private:
  [[noreturn]] void fail(size_t at, std::string_view message) const {
    fail_at(src_, m_.origin[std::min(at, s_.size())], ErrorCode::InvalidFile, message);
  }

  Tok last_type(bool& any) const {
    any = !tokens_.empty();
    return any ? tokens_.back().type : Tok::Text;
  }

  void push(Tok type, std::string value, size_t at) { tokens_.push_back(Token{type, std::move(value), m_.origin[at]}); }

  // The reference's consumeWhile fails when a token runs into the end of the input.
  void advance_inside_token(size_t n) {
    i_ += n;
    if (i_ >= s_.size()) fail(s_.size(), "unexpected end of template inside a tag");
  }

  void strip_trailing_whitespace() {
    if (tokens_.empty() || tokens_.back().type != Tok::Text) return;
    std::string& text = tokens_.back().value;
    text.resize(js_trim_end(text).size());
    if (text.empty()) tokens_.pop_back();
  }

  void skip_leading_whitespace() { i_ = skip_js_spaces(s_, i_); }

  std::string digits() {
    std::string out;
    while (i_ < s_.size() && is_digit(s_[i_])) {
      out += s_[i_];
      advance_inside_token(1);
    }
    return out;
  }

  void step() {
    bool any;
    const Tok last = last_type(any);
    if (!any || last == Tok::CloseStatement || last == Tok::CloseExpression || last == Tok::Comment) {
      const size_t start = i_;
      while (i_ < s_.size() &&
             !(s_[i_] == '{' && i_ + 1 < s_.size() && (s_[i_ + 1] == '%' || s_[i_ + 1] == '{' || s_[i_ + 1] == '#'))) {
        ++i_;
      }
      if (i_ > start) {
        push(Tok::Text, s_.substr(start, i_ - start), start);
        return;
      }
    }

    if (starts_with_at(s_, i_, "{#")) return comment();
    if (starts_with_at(s_, i_, "{%-")) {
      strip_trailing_whitespace();
      push(Tok::OpenStatement, "{%", i_);
      i_ += 3;
      return;
    }
    if (starts_with_at(s_, i_, "{{-")) {
      strip_trailing_whitespace();
      push(Tok::OpenExpression, "{{", i_);
      curly_depth_ = 0;
      i_ += 3;
      return;
    }

    while (size_t n = js_space_len(s_, i_)) advance_inside_token(n);

    if (starts_with_at(s_, i_, "-%}")) {
      push(Tok::CloseStatement, "%}", i_);
      i_ += 3;
      skip_leading_whitespace();
      return;
    }
    if (starts_with_at(s_, i_, "-}}")) {
      push(Tok::CloseExpression, "}}", i_);
      i_ += 3;
      skip_leading_whitespace();
      return;
    }

    const char c = s_[i_];
    const size_t start = i_;
    if (c == '-' || c == '+') {
      const Tok prev = last_type(any);
      if (!any || prev == Tok::Text) fail(start, fmt::format("unexpected character '{}'", c));
      const bool binary = prev == Tok::Identifier || prev == Tok::Number || prev == Tok::String ||
                          prev == Tok::CloseParen || prev == Tok::CloseSquare;
      if (!binary) {
        ++i_;
        std::string num = digits();
        if (!num.empty() && i_ + 1 < s_.size() && s_[i_] == '.' && is_digit(s_[i_ + 1])) {
          ++i_;
          num += '.';
          num += digits();
        }
        const bool is_number = !num.empty();
        std::string text(1, c);
        text += num;
        push(is_number ? Tok::Number : Tok::Unary, std::move(text), start);
        return;
      }
    }

    for (const Rule& rule : kRules) {
      if (rule.seq == "}}" && curly_depth_ > 0) continue;  // inside a dict literal "}}" closes two dicts
      if (!starts_with_at(s_, i_, rule.seq)) continue;
      push(rule.type, std::string(rule.seq), i_);
      if (rule.type == Tok::OpenExpression) curly_depth_ = 0;
      if (rule.type == Tok::OpenCurly) ++curly_depth_;
      if (rule.type == Tok::CloseCurly) --curly_depth_;
      i_ += rule.seq.size();
      return;
    }

    if (c == '\'' || c == '"') return string_literal(c);
    if (is_digit(c)) {
      std::string num = digits();
      const bool after_dot = !tokens_.empty() && tokens_.back().type == Tok::Dot;  // x.0.1 is two lookups
      if (!after_dot && i_ + 1 < s_.size() && s_[i_] == '.' && is_digit(s_[i_ + 1])) {
        ++i_;
        num += '.';
        num += digits();
      }
      push(Tok::Number, std::move(num), start);
      return;
    }
    if (is_word(c)) {
      while (i_ < s_.size() && is_word(s_[i_])) advance_inside_token(1);
      push(Tok::Identifier, s_.substr(start, i_ - start), start);
      return;
    }
    fail(start, fmt::format("unexpected character {}", quote_char(start)));
  }

  std::string quote_char(size_t at) const {
    size_t j = at;
    decode_cp(s_, j);
    std::string quoted = "'";
    quoted.append(s_, at, j - at);
    quoted += '\'';
    return quoted;
  }

  void comment() {
    const size_t start = i_;
    i_ += 2;
    const bool strip_before = i_ < s_.size() && s_[i_] == '-';
    if (strip_before) ++i_;
    std::string body;
    while (!(i_ + 1 < s_.size() && s_[i_] == '#' && s_[i_ + 1] == '}')) {
      if (i_ + 2 >= s_.size()) fail(start, "comment is not closed with #}");
      body += s_[i_++];
    }
    const bool strip_after = !body.empty() && body.back() == '-';
    if (strip_after) body.pop_back();
    if (strip_before) strip_trailing_whitespace();
    push(Tok::Comment, std::move(body), start);
    i_ += 2;
    if (strip_after) skip_leading_whitespace();
  }

  void string_literal(char quote) {
    const size_t start = i_;
    ++i_;
    std::string value;
    while (true) {
      if (i_ >= s_.size()) fail(start, "string literal is not closed");
      const char c = s_[i_];
      if (c == quote) break;
      if (c != '\\') {
        const size_t len = char_len(s_, i_);
        js_append(value, std::string_view(s_).substr(i_, len));
        i_ += len;
        if (i_ >= s_.size()) fail(start, "string literal is not closed");
        continue;
      }
      ++i_;
      if (i_ >= s_.size()) fail(start, "string literal is not closed");
      const char e = s_[i_++];
      if (e == 'x' || e == 'u') {
        const size_t len = e == 'x' ? 2 : 4;
        uint32_t unit = 0;
        for (size_t k = 0; k < len; ++k) {
          const int h = i_ + k < s_.size() ? hex_value(s_[i_ + k]) : -1;
          if (h < 0) fail(i_ - 2, fmt::format("invalid hexadecimal escape sequence \\{}", e));
          unit = unit * 16 + static_cast<uint32_t>(h);
        }
        std::string piece;
        append_utf8(piece, unit);
        js_append(value, piece);
        i_ += len;
        continue;
      }
      switch (e) {
        case 'n': value += '\n'; break;
        case 't': value += '\t'; break;
        case 'r': value += '\r'; break;
        case 'b': value += '\b'; break;
        case 'f': value += '\f'; break;
        case 'v': value += '\v'; break;
        case '\'': value += '\''; break;
        case '"': value += '"'; break;
        case '\\': value += '\\'; break;
        default: fail(i_ - 2, fmt::format("unknown escape sequence \\{}", quote_char(i_ - 1)));
      }
    }
    ++i_;  // the closing quote
    push(Tok::String, std::move(value), start);
  }

  const SourceInfo& src_;
  Mapped m_;
  const std::string& s_;
  size_t i_ = 0;
  int curly_depth_ = 0;
  std::vector<Token> tokens_;
};

}  // namespace

const char* tok_name(Tok t) {
  switch (t) {
    case Tok::Text: return "text";
    case Tok::Number: return "number";
    case Tok::String: return "string";
    case Tok::Identifier: return "identifier";
    case Tok::Equals: return "'='";
    case Tok::OpenParen: return "'('";
    case Tok::CloseParen: return "')'";
    case Tok::OpenStatement: return "'{%'";
    case Tok::CloseStatement: return "'%}'";
    case Tok::OpenExpression: return "'{{'";
    case Tok::CloseExpression: return "'}}'";
    case Tok::OpenSquare: return "'['";
    case Tok::CloseSquare: return "']'";
    case Tok::OpenCurly: return "'{'";
    case Tok::CloseCurly: return "'}'";
    case Tok::Comma: return "','";
    case Tok::Dot: return "'.'";
    case Tok::Colon: return "':'";
    case Tok::Pipe: return "'|'";
    case Tok::Additive: return "additive operator";
    case Tok::Multiplicative: return "multiplicative operator";
    case Tok::Exponent: return "'**'";
    case Tok::Comparison: return "comparison operator";
    case Tok::Unary: return "unary operator";
    case Tok::Comment: return "comment";
  }
  return "token";
}

std::vector<Token> tokenize(const SourceInfo& src) {
  if (src.text.size() > kMaxTemplateBytes) {
    fail_at(src, 0, ErrorCode::InvalidFile,
            fmt::format("template is {} bytes; the limit is {}", src.text.size(), kMaxTemplateBytes));
  }
  return Lexer(src, preprocess(src.text)).run();
}

}  // namespace vireo::jinja
