// CUDA matrix-vector products for decode: y = W x for a few tokens, weights streamed once from
// device memory with 16-byte coalesced loads. Weights are repacked at upload into split arrays
// (quant levels, then scales) so every load is aligned; their values are exactly the file's.
// Host-side API: no CUDA headers needed to call it.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include "vireo/core/dtype.h"

namespace vireo::cuda {

bool device_available();
std::string device_name();

struct DeviceMatrix {
  DType type = DType::F32;
  int64_t rows = 0, cols = 0;
  void* levels = nullptr;  // Q4_0: [rows][cols/32][16 B]; Q8_0: [rows][cols/32][32 B]; F16: [rows][cols] halves
  void* scales = nullptr;  // Q4_0 / Q8_0: [rows][cols/32] halves
  size_t bytes = 0;        // what one product reads
};

// Types: F16, Q4_0, Q8_0. `host_rows` holds rows*cols elements as the file stores them.
DeviceMatrix upload_matrix(DType type, const void* host_rows, int64_t rows, int64_t cols);
void free_matrix(DeviceMatrix& m);

// Device buffers of floats.
float* device_alloc_floats(size_t n);
void device_free(void* p);
void copy_to_device(float* dst, const float* src, size_t n);
void copy_to_host(float* dst, const float* src, size_t n);

// y[t][r] = sum_c W[r][c] * x[t][c] for t < n_tokens (1..8); x [n_tokens][cols], y [n_tokens][rows].
// Q4_0 / Q8_0 weights take x rounded to Q8_0 blocks first (as the CPU backend and llama.cpp do)
// and multiply in integers; F16 weights take x as it is.
void gemv(const DeviceMatrix& w, const float* x, float* y, int n_tokens);

// Mean milliseconds of one gemv over `iters` back-to-back launches (CUDA events).
double time_gemv_ms(const DeviceMatrix& w, const float* x, float* y, int n_tokens, int iters);
// Device-to-device copy bandwidth, counting bytes read and written, GB/s.
double copy_bandwidth_gb_s(size_t bytes, int iters);

}  // namespace vireo::cuda
