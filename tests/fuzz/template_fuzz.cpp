// libFuzzer entry point for chat templates (built with -DVIREO_FUZZ=ON; run by scripts/fuzz.sh).
// The input is a template, optionally followed by a NUL byte and a JSON context; without one (or
// when it is not a JSON object) a small fixed conversation is used. The template is parsed and
// rendered; only vireo::Error may escape: any other exception, a crash, a sanitizer report, a hang
// or unbounded memory is a finding.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "vireo/core/error.h"
#include "vireo/tokenizer/chat_template.h"

namespace {

const nlohmann::json& fixed_context() {
  static const nlohmann::json ctx = nlohmann::json::parse(R"({
    "messages": [
      {"role": "system", "content": "Be brief."},
      {"role": "user", "content": "Hi \u00e9\ud83c\udf0d"},
      {"role": "assistant", "content": "", "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": {"a": [1, 2.5, null]}}}]},
      {"role": "tool", "content": "{\"ok\": true}"}],
    "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
    "add_generation_prompt": true, "bos_token": "<s>", "eos_token": "</s>"})");
  return ctx;
}

volatile size_t g_sink = 0;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const size_t nul = input.find('\0');
  const std::string source(input.substr(0, nul));
  nlohmann::json context = fixed_context();
  if (nul != std::string_view::npos) {
    auto parsed = nlohmann::json::parse(input.substr(nul + 1), nullptr, /*allow_exceptions=*/false);
    if (parsed.is_object()) context = std::move(parsed);
  }
  try {
    const auto t = vireo::ChatTemplate::parse(source, "fuzz");
    g_sink = g_sink + t.render(context).size();
  } catch (const vireo::Error& e) {
    // Every error names the template: "fuzz:LINE:COLUMN: ..." or "fuzz: ...".
    if (std::string_view(e.what()).substr(0, 5) != "fuzz:") {
      std::fprintf(stderr, "template_fuzz: error without location: %s\n", e.what());
      std::abort();
    }
  }
  return 0;
}
