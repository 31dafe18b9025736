// Template source -> tokens, exactly as @huggingface/jinja's lexer does it, including its
// preprocessing (HF renders chat templates with trim_blocks and lstrip_blocks on, and drops the
// transformers-only {% generation %} tags) and its whitespace control ({%- -%} {{- -}} {#- -#}).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "tokenizer/jinja/diagnostics.h"

namespace vireo::jinja {

enum class Tok : uint8_t {
  Text,             // text between tags
  Number,           // 123, 1.5, and -1 / +2 where a sign cannot be a binary operator
  String,           // 'x' or "x", escapes resolved
  Identifier,       // names and keywords alike (if, in, not, true, ...)
  Equals,           // =
  OpenParen,        // (
  CloseParen,       // )
  OpenStatement,    // {%
  CloseStatement,   // %}
  OpenExpression,   // {{
  CloseExpression,  // }}
  OpenSquare,       // [
  CloseSquare,      // ]
  OpenCurly,        // {
  CloseCurly,       // }
  Comma,            // ,
  Dot,              // .
  Colon,            // :
  Pipe,             // |
  Additive,         // + - ~
  Multiplicative,   // * / // %
  Exponent,         // **
  Comparison,       // < > <= >= == !=
  Unary,            // a lone - or + before an operand
  Comment,          // {# ... #}
};

const char* tok_name(Tok t);

struct Token {
  Tok type;
  std::string value;
  uint32_t pos;  // byte offset of the token in the original source
};

// Throws vireo::Error (located) on malformed input.
std::vector<Token> tokenize(const SourceInfo& src);

}  // namespace vireo::jinja
