// Choosing a backend by device name, and the CUDA entry points of builds without CUDA.
#include <cctype>
#include <string>

#include "vireo/backend/backend.h"
#include "vireo/core/error.h"

namespace vireo {
namespace {

// -1 for "auto"/"", -2 for "cpu", else the CUDA device index.
int parse_device(const std::string& device) {
  if (device.empty() || device == "auto") return -1;
  if (device == "cpu") return -2;
  if (device == "cuda" || device == "gpu") return 0;
  if (device.rfind("cuda:", 0) == 0 && device.size() > 5 && device.size() < 9) {
    int index = 0;
    for (size_t i = 5; i < device.size(); ++i) {
      if (!std::isdigit(static_cast<unsigned char>(device[i]))) index = -1;
      if (index >= 0) index = index * 10 + (device[i] - '0');
    }
    if (index >= 0) return index;
  }
  fail(ErrorCode::InvalidArgument, "unknown device '{}': expected cpu, cuda, cuda:N or auto", device);
}

}  // namespace

std::string resolve_device(const std::string& device) {
  const int d = parse_device(device);
  if (d == -2 || (d == -1 && !cuda_available())) return "cpu";
  return fmt::format("cuda:{}", d < 0 ? 0 : d);
}

std::unique_ptr<Backend> create_backend(const BackendOptions& options) {
  const int d = parse_device(options.device);
  if (d == -2 || (d == -1 && !cuda_available())) {
    CpuBackendOptions cpu;
    cpu.n_threads = options.n_threads;
    cpu.isa = options.isa;
    return create_cpu_backend(cpu);
  }
  return create_cuda_backend(d < 0 ? 0 : d);
}

#if !defined(VIREO_HAS_CUDA)
bool cuda_available() { return false; }
std::unique_ptr<Backend> create_cuda_backend(int) {
  fail(ErrorCode::Unsupported, "this build of vireo has no CUDA backend (rebuild with the CUDA toolkit installed)");
}
#endif

}  // namespace vireo
