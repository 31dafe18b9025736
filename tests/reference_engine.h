// Runs llama.cpp (node-llama-cpp, driven by tests/reference/llama_ref.mjs) as an independent
// reference. Tests skip with a message when Node.js or the npm package is not installed.
#pragma once
#include <gtest/gtest.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace vireo::test {

inline std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

// Why the reference engine cannot run here, or "" when it can.
inline std::string llama_ref_unavailable() {
  const std::string dir = std::string(VIREO_SOURCE_DIR) + "/tests/reference";
  if (!std::filesystem::exists(dir + "/node_modules/node-llama-cpp")) {
    return "llama.cpp reference engine not installed (run scripts/install-deps.sh; needs Node.js >= 20 and npm)";
  }
  if (std::system("node --version > /dev/null 2>&1") != 0) return "node not found";
  return "";
}

// Runs `node llama_ref.mjs ARGS...` and parses its one JSON line.
inline nlohmann::json run_llama_ref(const std::vector<std::string>& args) {
  std::string cmd = "node " + shell_quote(std::string(VIREO_SOURCE_DIR) + "/tests/reference/llama_ref.mjs");
  for (const auto& a : args) cmd += " " + shell_quote(a);
  cmd += " 2>/dev/null";
  std::string out;
  if (FILE* p = ::popen(cmd.c_str(), "r")) {
    std::array<char, 65536> buf;
    size_t n;
    while ((n = std::fread(buf.data(), 1, buf.size(), p)) > 0) out.append(buf.data(), n);
    ::pclose(p);
  }
  auto j = nlohmann::json::parse(out, nullptr, false);
  if (j.is_discarded()) return {{"error", "reference driver printed no JSON: " + out.substr(0, 300)}};
  return j;
}

#define VIREO_REQUIRE_LLAMA_REF()                                            \
  if (const std::string why = ::vireo::test::llama_ref_unavailable(); !why.empty()) \
  GTEST_SKIP() << why

}  // namespace vireo::test
