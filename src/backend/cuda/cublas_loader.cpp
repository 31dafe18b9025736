#include "backend/cuda/cublas_loader.h"

#include <dlfcn.h>

#include <mutex>
#include <string>
#include <type_traits>

#include "vireo/core/error.h"

#ifndef VIREO_CUBLAS_SONAME
#define VIREO_CUBLAS_SONAME "libcublas.so"
#endif

namespace vireo::cuda {

const CublasApi& cublas() {
  static CublasApi api;
  static std::string error;
  static std::once_flag once;
  std::call_once(once, [] {
    // The major version vireo was built against first, then whatever the loader finds.
    void* lib = nullptr;
    for (const char* name : {VIREO_CUBLAS_SONAME, "libcublas.so"}) {
      if ((lib = ::dlopen(name, RTLD_NOW | RTLD_LOCAL)) != nullptr) break;
    }
    if (lib == nullptr) {
      const char* why = ::dlerror();
      error = std::string("cannot load cuBLAS (" VIREO_CUBLAS_SONAME "): ") + (why != nullptr ? why : "not found");
      return;
    }
    auto load = [&](auto& fn, const char* symbol) {
      fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(::dlsym(lib, symbol));
      if (fn == nullptr && error.empty()) error = std::string("cuBLAS lacks ") + symbol;
    };
    load(api.create, "cublasCreate_v2");
    load(api.destroy, "cublasDestroy_v2");
    load(api.set_stream, "cublasSetStream_v2");
    load(api.gemm_ex, "cublasGemmEx");
  });
  if (!error.empty()) fail(ErrorCode::Unsupported, "{}", error);
  return api;
}

}  // namespace vireo::cuda
