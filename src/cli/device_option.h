// The --device flag of every command that runs a model.
#pragma once
#include <algorithm>
#include <cctype>
#include <string>

#include <CLI/CLI.hpp>

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

}  // namespace vireo::cli
