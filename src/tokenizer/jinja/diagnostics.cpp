#include "tokenizer/jinja/diagnostics.h"

#include <algorithm>

#include "tokenizer/jinja/js_string.h"

namespace vireo::jinja {

std::string SourceInfo::where(uint32_t pos) const {
  const size_t end = std::min<size_t>(pos, text.size());
  size_t line = 1, column = 1;
  for (size_t i = 0; i < end;) {
    if (text[i] == '\n') {
      ++line;
      column = 1;
      ++i;
      continue;
    }
    decode_cp(text, i);
    ++column;
  }
  return fmt::format("{}:{}:{}", name, line, column);
}

namespace {
thread_local uint64_t t_work = 0;
}  // namespace

WorkBudget::WorkBudget() : saved_(t_work) {
  t_work = 0;
}
WorkBudget::~WorkBudget() {
  t_work = saved_;
}

void charge_work(uint64_t units) {
  t_work += units;
  if (t_work > kMaxEvalSteps) {
    throw RuntimeError{ErrorCode::InvalidArgument,
                       fmt::format("template needs more than {} steps of work (runaway loop?)", kMaxEvalSteps)};
  }
}

void fail_at(const SourceInfo& src, uint32_t pos, ErrorCode code, std::string_view message) {
  throw Error(code, fmt::format("{}: {}", src.where(pos), message));
}

}  // namespace vireo::jinja
