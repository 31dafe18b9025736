// CUDA matrix-vector products for decode: y = W x for a few tokens, weights streamed once from
// device memory with 16-byte coalesced loads. Q4_0 and Q8_0 weights are repacked at upload into
// split arrays (quant levels, then scales) so every load is aligned; other types keep the file's
// blocks. Values are exactly the file's either way.
// Host-side API: no CUDA headers needed to call it. `Stream` is a cudaStream_t (null: the
// default stream).
#pragma once
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "vireo/core/dtype.h"

namespace vireo::cuda {

using Stream = void*;

bool device_available();
std::string device_name(int device = 0);

struct DeviceMatrix {
  DType type = DType::F32;
  int64_t rows = 0, cols = 0;
  // F16: [rows][cols] halves. Q4_0: [rows][cols/32][16 B]; Q8_0: [rows][cols/32][32 B];
  // Q6_K: [rows][cols/256][208 B] (ql, qh, scales; d in `scales`).
  // Other types: the file's rows of row_bytes each.
  void* levels = nullptr;
  void* scales = nullptr;  // Q4_0 / Q8_0: [rows][cols/32] halves; Q6_K: [rows][cols/256] d; otherwise null
  size_t row_bytes = 0;    // bytes of one row in the file's layout
  size_t bytes = 0;        // what one product reads
};

// True when products with `type` take activations rounded to Q8_0 blocks (quantize_activations
// first): Q4_0, Q8_0, Q4_K, Q6_K, multiplied in integers.
bool uses_q8_activations(DType type);
// True when the device kernels can hold and multiply `type`.
bool supports_type(DType type);
// `host_rows` holds rows*cols elements as the file stores them. Types: F32, F16, BF16, Q4_0,
// Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K.
DeviceMatrix upload_matrix(DType type, const void* host_rows, int64_t rows, int64_t cols);
void free_matrix(DeviceMatrix& m);

// Device buffers of floats.
float* device_alloc_floats(size_t n);
void device_free(void* p);
void copy_to_device(float* dst, const float* src, size_t n);
void copy_to_host(float* dst, const float* src, size_t n);

// Activations rounded to Q8_0 blocks on the device (as the CPU backend and llama.cpp do for
// Q4_0 / Q8_0 weights): int8 levels [t][cols/32][32], scales and block sums d * sum(q).
struct QuantizedActivations {
  int8_t* q = nullptr;
  float* d = nullptr;
  float* s = nullptr;
  size_t capacity = 0;  // blocks
  int n_tokens = 0;
  int64_t cols = 0;
  void ensure(size_t blocks);
  ~QuantizedActivations();
};
void quantize_activations(const float* x, int64_t ldx, int n_tokens, int64_t cols, QuantizedActivations& qx, Stream s);

// y[t][r] = sum_c W[r][c] * x[t][c] for t < n_tokens (1..8); x [n_tokens][ldx], y [n_tokens][ldy].
// Types of uses_q8_activations take `qx` (made from x by quantize_activations) and multiply in
// integers; other types take x as it is.
void gemv(const DeviceMatrix& w, const float* x, int64_t ldx, const QuantizedActivations* qx, int n_tokens, float* y,
          int64_t ldy, Stream s);
// The same, quantizing x first into a scratch of this module (default stream; tests and benches).
void gemv(const DeviceMatrix& w, const float* x, float* y, int n_tokens);
constexpr int kMaxGemvTokens = 8;
// Products of up to this many rows go through the gemv kernels, kMaxGemvTokens rows a launch
// (the backend's default; VIREO_CUDA_GEMV_ROWS changes it); longer ones through qgemm or cuBLAS.
// Measured on an H100, Llama-3-8B Q4_0, decoding at depth 1024: 16 sequences 1.26x the rate of
// qgemm's mma.sync tiles, 32 sequences 0.65x. On Hopper, qgemm's warpgroup tiles take its types
// from kMaxGemvTokens + 1 rows (see the CUDA backend).
constexpr int kDefaultGemvRows = 16;
// Plain weights (F16, BF16, F32) leave the gemv for cuBLAS past this many rows
// (VIREO_CUDA_PLAIN_GEMV_ROWS changes it). H100, Llama-3-8B F16: gemv 1.07x cuBLAS for 2 and 3
// sequences, even at 4, cuBLAS 1.24x at 6 and 1.81x at 8.
constexpr int kMaxPlainGemvTokens = 4;

// Up to kMaxGemvSegments matrices of one type and width times the same x in one launch (the
// q/k/v or gate/up products of a layer): one launch instead of several small ones.
struct GemvOutput {
  const DeviceMatrix* w;
  float* y;
  int64_t ldy;
};
constexpr int kMaxGemvSegments = 3;
void gemv_multi(std::span<const GemvOutput> outs, const float* x, int64_t ldx, const QuantizedActivations* qx, int n_tokens,
                Stream s);

// Mean milliseconds of one gemv over `iters` back-to-back launches (CUDA events).
double time_gemv_ms(const DeviceMatrix& w, const float* x, float* y, int n_tokens, int iters);
// Device-to-device copy bandwidth, counting bytes read and written, GB/s.
double copy_bandwidth_gb_s(size_t bytes, int iters);

}  // namespace vireo::cuda
