// Host-side helpers shared by the kernel files: error checks, the device's SM count, event timing.
#pragma once
#include <cuda_runtime.h>

#include <string>

#include "vireo/core/error_types.h"

namespace vireo::cuda {

inline void check(cudaError_t e, const char* what) {
  // ({fmt} does not get through nvcc's front end: plain strings here.)
  if (e != cudaSuccess) throw Error(ErrorCode::Io, std::string("CUDA ") + what + ": " + cudaGetErrorString(e));
}

// Streaming multiprocessors of the current device (asked once).
inline int sm_count() {
  static const int n = [] {
    int dev = 0, count = 0;
    cudaGetDevice(&dev);
    cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount, dev);
    return count > 0 ? count : 1;
  }();
  return n;
}

// Milliseconds that `iters` runs of `body` take on the device (default stream), after one
// untimed run.
template <typename Body>
double device_ms(int iters, Body body) {
  cudaEvent_t a, b;
  cudaEventCreate(&a);
  cudaEventCreate(&b);
  body();
  cudaEventRecord(a);
  for (int i = 0; i < iters; ++i) body();
  cudaEventRecord(b);
  check(cudaEventSynchronize(b), "sync");
  float ms = 0;
  cudaEventElapsedTime(&ms, a, b);
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  return ms;
}

}  // namespace vireo::cuda
