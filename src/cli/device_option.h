// Flags shared by the commands that run a model: --device, --kv-type.
#pragma once
#include <algorithm>
#include <cctype>
#include <string>

#include <CLI/CLI.hpp>

#include "vireo/core/dtype.h"

namespace vireo::cli {

// "auto", "cpu", "cuda" or "cuda:N".
inline bool is_device_name(const std::string& s) {
  if (s == "auto" || s == "cpu" || s == "cuda") return true;
  if (s.rfind("cuda:", 0) != 0 || s.size() == 5) return false;
  return std::all_of(s.begin() + 5, s.end(), [](unsigned char c) { return std::isdigit(c) != 0; });
}

// Checked when the command line is parsed, so a typo fails before a model is loaded.
inline CLI::Option* add_device_option(CLI::App* cmd, std::string& device) {
  const CLI::Validator valid(
      [](std::string& s) {
        return is_device_name(s) ? std::string() : "'" + s + "' is not a device: give cpu, cuda, cuda:N or auto";
      },
      "");
  return cmd->add_option("--device", device, "cpu, cuda, cuda:N or auto (default: auto = the GPU when one is present)")
      ->type_name("DEV")
      ->check(valid);
}

// --kv-type: the KV cache's element type. q8_0 halves an F16 cache (CPU backend).
inline CLI::Option* add_kv_type_option(CLI::App* cmd, std::string& kv_type) {
  return cmd->add_option("--kv-type", kv_type, "KV cache type: f16 (default), f32, or q8_0 (half of f16's memory; CPU only)")
      ->check(CLI::IsMember({"f16", "f32", "q8_0"}));
}
inline DType kv_type_of(const std::string& name) {
  return name == "f32" ? DType::F32 : name == "q8_0" ? DType::Q8_0 : DType::F16;
}

}  // namespace vireo::cli
