// Where template errors point: every token and AST node carries the byte offset of its first
// character in the original template source; an error message names "template:line:column".
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include <fmt/format.h>

#include "vireo/core/error.h"

namespace vireo::jinja {

// Limits that keep hostile templates from exhausting the stack, memory or time.
inline constexpr size_t kMaxTemplateBytes = 16u << 20;
inline constexpr size_t kMaxStringBytes = 64u << 20;  // any string value, and the rendered output
inline constexpr size_t kMaxArrayItems = 1u << 20;    // any array value (range, +, split, ...)
inline constexpr int kMaxParseDepth = 500;            // nesting of expressions and blocks
inline constexpr int kMaxEvalDepth = 500;             // nesting of evaluation, macro calls included
// Work units of one render (a node evaluated, a loop iteration, 256 bytes built, ...). A real
// template needs about 500 per message, so this allows conversations of thousands of messages.
inline constexpr uint64_t kMaxEvalSteps = 2'000'000;

struct SourceInfo {
  std::string name;
  std::string text;  // the (UTF-8 sanitized) template source

  // "name:line:column" for a byte offset; columns count code points from 1.
  std::string where(uint32_t pos) const;
};

// Work accounting for the render running on this thread, so that every part of the evaluator
// (to_json, sort, ...) can count its work against kMaxEvalSteps: a template that would run for
// minutes fails fast instead.
class WorkBudget {
 public:
  WorkBudget();   // starts counting from zero for one render
  ~WorkBudget();  // restores the previous count (renders do not nest, but stay correct if they do)
  WorkBudget(const WorkBudget&) = delete;
  WorkBudget& operator=(const WorkBudget&) = delete;

 private:
  uint64_t saved_;
};
// Adds `units` of work; throws RuntimeError once the budget is spent.
void charge_work(uint64_t units);

// A located error: "name:line:col: message".
[[noreturn]] void fail_at(const SourceInfo& src, uint32_t pos, ErrorCode code, std::string_view message);

// An error raised while evaluating, before the evaluator knows which node to blame; the
// evaluator catches it at the innermost node and rethrows it located (fail_at).
struct RuntimeError {
  ErrorCode code;
  std::string message;
};

template <typename... Args>
[[noreturn]] void runtime_fail(fmt::format_string<Args...> f, Args&&... args) {
  throw RuntimeError{ErrorCode::InvalidArgument, fmt::format(f, std::forward<Args>(args)...)};
}

template <typename... Args>
[[noreturn]] void unsupported(fmt::format_string<Args...> f, Args&&... args) {
  throw RuntimeError{ErrorCode::Unsupported, fmt::format(f, std::forward<Args>(args)...)};
}

}  // namespace vireo::jinja
