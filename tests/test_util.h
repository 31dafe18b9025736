// Helpers shared by the tests: where the shared reference data lives, and temp files.
#pragma once
#include <gtest/gtest.h>

#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

namespace vireo::test {

// ../shared beside the checkout (or $VIREO_SHARED_DIR); empty when absent.
inline std::string shared_dir() {
  namespace fs = std::filesystem;
  if (const char* env = std::getenv("VIREO_SHARED_DIR"); env != nullptr && fs::is_directory(env)) return env;
  const fs::path p = fs::path(VIREO_SOURCE_DIR).parent_path() / "shared";
  return fs::is_directory(p) ? p.string() : std::string();
}

// The path of a shared file, or "" (and the test should GTEST_SKIP) when it is absent.
inline std::string shared_file(const std::string& rel) {
  const std::string dir = shared_dir();
  if (dir.empty()) return "";
  const std::string p = dir + "/" + rel;
  return std::filesystem::exists(p) ? p : "";
}

#define VIREO_REQUIRE_SHARED(var, rel)                                                          \
  const std::string var = ::vireo::test::shared_file(rel);                                      \
  if (var.empty()) GTEST_SKIP() << "shared reference data not found (" rel "): needs ../shared " \
                                   "beside the checkout or VIREO_SHARED_DIR"

// A fresh folder under the system temp dir, removed with the object.
class TempDir {
 public:
  TempDir() {
    namespace fs = std::filesystem;
    std::string tmpl = (fs::temp_directory_path() / "vireo-test-XXXXXX").string();
    path_ = ::mkdtemp(tmpl.data());
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  std::string file(const std::string& name) const { return path_ + "/" + name; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Runs the vireo binary under test with `args` (shell syntax); returns (exit status, stdout+stderr).
inline std::pair<int, std::string> run_vireo(const std::string& args) {
  const std::string cmd = std::string(VIREO_BINARY_PATH) + " " + args + " 2>&1";
  std::string out;
  FILE* p = ::popen(cmd.c_str(), "r");
  if (p == nullptr) return {-1, "popen failed"};
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  const int status = ::pclose(p);
  return {WEXITSTATUS(status), out};
}

inline void write_bytes(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

}  // namespace vireo::test
