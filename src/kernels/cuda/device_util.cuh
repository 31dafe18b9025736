// Helpers shared by the kernel files: error checks, the device's SM count, event timing, and
// launches that overlap the kernel before them.
#pragma once
#include <cuda_runtime.h>

#include <cstdlib>
#include <string>
#include <utility>

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

// ---- launches over several matrices (q/k/v, gate/up) ----
// Their units of work (CTAs, row tiles) are dealt out to the matrices in order; ends[s] counts the
// units of matrices 0..s. Returns the matrix that unit u falls in and makes u its index there.
// The pick is a chain of selects, not an indexed load: indexing a kernel parameter's array with a
// runtime value would copy the array to local memory.
template <class Segment>
__device__ __forceinline__ const Segment& segment_of_unit(const Segment (&seg)[3], const int (&ends)[3], int n_seg, int& u) {
  int s = 0;
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    if (i + 1 < n_seg && u >= ends[i]) s = i + 1;
  }
  if (s > 0) u -= ends[s - 1];
  return s == 0 ? seg[0] : s == 1 ? seg[1] : seg[2];
}

// ---- qgemm's activations ----
// Where element (t, c) of [n][cols] activations sits in qgemm's F16 operand: each run of 16 is
// stored as its even elements, then its odd ones (the order in which the tensor cores take a
// thread's word of weights). Ops that make a product's input may write it there directly.
__device__ __forceinline__ int64_t qgemm_x_index(int64_t t, int64_t c, int64_t cols) {
  return t * cols + (c & ~int64_t{15}) + (c & 1) * 8 + ((c & 15) >> 1);
}

// ---- programmatic dependent launch (sm_90 and newer) ----
// Every kernel goes through launch(): on Hopper it may start while the kernel before it in the
// stream is still running, so a step's hundreds of small kernels do not each pay a full drain and
// ramp. The rule that keeps this correct: a kernel calls kernel_prologue() before it touches any
// memory that another kernel writes (weights, written once at load, may be read before it).
// kernel_prologue() also lets the next kernel start, so every kernel must call it, on every path.

// Lets the next kernel in the stream launch, then waits until the kernel before this one has
// finished and its writes are visible. Without an overlapping launch both are no-ops.
__device__ __forceinline__ void kernel_prologue() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

// Starts `bytes` from `p` on their way to L2 (Hopper's bulk prefetch, 2 KB per lane and step):
// reads of weights issued before kernel_prologue(), so they overlap the kernel before.
__device__ __forceinline__ void prefetch_l2(const void* p, int64_t bytes, int lane, int lanes) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  constexpr int64_t kChunk = 2048;
  const uintptr_t start = reinterpret_cast<uintptr_t>(p) & ~uintptr_t{15};
  const int64_t total = static_cast<int64_t>((reinterpret_cast<uintptr_t>(p) + bytes + 15 - start) & ~uintptr_t{15});
  for (int64_t off = static_cast<int64_t>(lane) * kChunk; off < total; off += static_cast<int64_t>(lanes) * kChunk) {
    const uint32_t n = static_cast<uint32_t>(total - off < kChunk ? total - off : kChunk);
    asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(start + off), "r"(n) : "memory");
  }
#endif
}

// Whether launches overlap (compute capability 9.0 or newer; VIREO_CUDA_PDL=0 turns it off).
inline bool overlapping_launches() {
  static const bool on = [] {
    if (const char* e = std::getenv("VIREO_CUDA_PDL"); e != nullptr && std::string(e) == "0") return false;
    int dev = 0, major = 0;
    cudaGetDevice(&dev);
    cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev);
    return major >= 9;
  }();
  return on;
}

template <typename... Params, typename... Args>
void launch(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem, cudaStream_t stream, Args&&... args) {
  cudaLaunchAttribute attr{};
  attr.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr.val.programmaticStreamSerializationAllowed = overlapping_launches() ? 1 : 0;
  cudaLaunchConfig_t cfg{};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = stream;
  cfg.attrs = &attr;
  cfg.numAttrs = 1;
  check(cudaLaunchKernelEx(&cfg, kernel, std::forward<Args>(args)...), "launch");
}

}  // namespace vireo::cuda
