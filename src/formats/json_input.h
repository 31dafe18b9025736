// Parsing untrusted JSON (safetensors headers, config.json, tokenizer.json): nesting is bounded
// and duplicate keys are refused, so a hostile file can neither exhaust the stack nor hide a
// second value behind the first.
#pragma once
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "vireo/core/error.h"

namespace vireo {

inline constexpr int kMaxJsonDepth = 64;

inline nlohmann::json parse_untrusted_json(std::string_view text, const std::string& file) {
  using nlohmann::json;
  std::vector<std::set<std::string>> keys;  // keys of each open object
  std::string duplicate;
  bool too_deep = false;
  auto on_event = [&](int depth, json::parse_event_t event, json& parsed) {
    if (depth > kMaxJsonDepth) {
      too_deep = true;
      return false;
    }
    if (event == json::parse_event_t::object_start) {
      keys.emplace_back();
    } else if (event == json::parse_event_t::object_end) {
      if (!keys.empty()) keys.pop_back();
    } else if (event == json::parse_event_t::key && !keys.empty()) {
      const auto& key = parsed.get_ref<const std::string&>();
      if (!keys.back().insert(key).second && duplicate.empty()) duplicate = key;
    }
    return true;
  };
  json j;
  try {
    j = json::parse(text.begin(), text.end(), on_event);
  } catch (const json::exception& e) {
    if (!too_deep) fail(ErrorCode::InvalidFile, "{}: not valid JSON: {}", file, e.what());
  }
  if (too_deep) fail(ErrorCode::InvalidFile, "{}: JSON nests deeper than {} levels", file, kMaxJsonDepth);
  if (!duplicate.empty()) fail(ErrorCode::InvalidFile, "{}: the key '{}' appears twice in one object", file, duplicate);
  return j;
}

}  // namespace vireo
