// Human-readable numbers and a terminal progress bar shared by the subcommands.
#pragma once
#include <cstdint>
#include <string>

namespace vireo::cli {

std::string human_bytes(uint64_t bytes);   // "4.58 GiB"
std::string human_count(uint64_t n);       // "8.03B", "292.5K"

// A whole file as bytes; a missing or unreadable file is a NotFound error naming it.
std::string read_text_file(const std::string& path);

// Draws "label [#####.....] 12/40" on stderr when it is a terminal; silent otherwise.
class ProgressBar {
 public:
  explicit ProgressBar(std::string label);
  void update(size_t done, size_t total);
  void finish();

 private:
  std::string label_;
  bool enabled_;
  int last_width_ = -1;
};

}  // namespace vireo::cli
