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
  // With a status after the count ("12.5 pages/s, ETA 0:42"), redrawn at most 10 times a second.
  void update(size_t done, size_t total, const std::string& status);
  void finish();

 private:
  std::string label_;
  bool enabled_;
  int last_width_ = -1;
  double last_draw_s_ = -1;
};

}  // namespace vireo::cli
