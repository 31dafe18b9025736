// Tokens -> syntax tree, with @huggingface/jinja's grammar and operator precedence (lowest first):
// `x if c else y`, or, and, not, comparisons and in / not in, + - ~, * / // %, **, is, |, unary
// sign, calls / member access, primaries.
#pragma once
#include <vector>

#include "tokenizer/jinja/ast.h"
#include "tokenizer/jinja/diagnostics.h"
#include "tokenizer/jinja/lexer.h"

namespace vireo::jinja {

// Throws vireo::Error (located) on a syntax error.
Program parse(const std::vector<Token>& tokens, const SourceInfo& src);

}  // namespace vireo::jinja
