// vireo::Error and its codes, without the formatting helpers (for code that cannot include
// {fmt}, such as CUDA sources).
#pragma once
#include <stdexcept>
#include <string>
#include <string_view>

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

}  // namespace vireo
