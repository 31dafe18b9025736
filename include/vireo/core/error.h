// Errors by layer: vireo::Error (a code and a message) for bad input and at the API;
// VIREO_CHECK for internal invariants, which abort with file:line.
#pragma once
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>

#include <fmt/format.h>

namespace vireo {

enum class ErrorCode {
  InvalidArgument,  // a caller passed something wrong (flag, option, request field)
  InvalidFile,      // a file's contents break its format's rules
  Unsupported,      // well-formed, but vireo does not handle it (type, architecture)
  NotFound,         // a file, key or tensor that must exist does not
  Io,               // the operating system refused (open, read, mmap, write)
};

std::string_view error_code_name(ErrorCode code);

class Error : public std::runtime_error {
 public:
  Error(ErrorCode code, std::string message) : std::runtime_error(std::move(message)), code_(code) {}
  ErrorCode code() const { return code_; }

 private:
  ErrorCode code_;
};

template <typename... Args>
[[noreturn]] void fail(ErrorCode code, fmt::format_string<Args...> f, Args&&... args) {
  throw Error(code, fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace vireo

#define VIREO_CHECK(cond)                                                                    \
  do {                                                                                       \
    if (!(cond)) {                                                                           \
      std::fprintf(stderr, "vireo: internal check failed at %s:%d: %s\n", __FILE__, __LINE__, \
                   #cond);                                                                   \
      std::abort();                                                                          \
    }                                                                                        \
  } while (0)
