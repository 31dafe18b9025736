#include "vireo/kernels/cuda/gemv.h"

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstring>
#include <string>
#include <vector>

#include "vireo/core/error_types.h"
#include "vireo/core/quant_blocks.h"

namespace vireo::cuda {
namespace {

void check(cudaError_t e, const char* what) {
  // ({fmt} does not get through nvcc's front end: plain strings here.)
  if (e != cudaSuccess) throw Error(ErrorCode::Io, std::string("CUDA ") + what + ": " + cudaGetErrorString(e));
}

constexpr int kWarp = 32;
constexpr int kRowsPerBlock = 8;  // one warp per row

template <int T>
__device__ __forceinline__ void warp_sum_store(float (&acc)[T], float* y, int ldy, int row, int lane) {
#pragma unroll
  for (int t = 0; t < T; ++t) {
    float v = acc[t];
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    if (lane == 0) y[t * ldy + row] = v;
  }
}

// 32 activations of one block: 8 float4 loads through the read-only cache (x is shared by all rows).
__device__ __forceinline__ void load_x32(const float* __restrict__ x, float (&v)[32]) {
  const float4* p = reinterpret_cast<const float4*>(x);
#pragma unroll
  for (int i = 0; i < 8; ++i) {
    const float4 f = __ldg(p + i);
    v[4 * i] = f.x, v[4 * i + 1] = f.y, v[4 * i + 2] = f.z, v[4 * i + 3] = f.w;
  }
}

// Q4_0: element j of a block is d * (q_j - 8); byte i holds q_i (low nibble) and q_{i+16} (high).
template <int T>
__global__ void __launch_bounds__(kWarp* kRowsPerBlock) gemv_q4_0(const uint4* __restrict__ levels, const __half* __restrict__ scales,
                                                                 const float* __restrict__ x, float* __restrict__ y, int rows,
                                                                 int nb, int ldx, int ldy) {
  const int row = blockIdx.x * kRowsPerBlock + threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  if (row >= rows) return;
  const uint4* rq = levels + static_cast<size_t>(row) * nb;
  const __half* rd = scales + static_cast<size_t>(row) * nb;
  float acc[T] = {};
#pragma unroll 4
  for (int b = lane; b < nb; b += kWarp) {
    const uint4 q = __ldg(rq + b);
    const float d = __half2float(rd[b]);
    const uint32_t w[4] = {q.x, q.y, q.z, q.w};
#pragma unroll
    for (int t = 0; t < T; ++t) {
      float xv[32];
      load_x32(x + static_cast<size_t>(t) * ldx + b * 32, xv);
      float s = 0;
#pragma unroll
      for (int i = 0; i < 16; ++i) {
        const uint32_t byte = (w[i / 4] >> (8 * (i % 4))) & 0xffu;
        s += (static_cast<float>(byte & 15u) - 8.0f) * xv[i] + (static_cast<float>(byte >> 4) - 8.0f) * xv[i + 16];
      }
      acc[t] += d * s;
    }
  }
  warp_sum_store<T>(acc, y, ldy, row, lane);
}

// Q8_0: element j is d * q_j, q signed bytes; two 16-byte loads per block.
template <int T>
__global__ void __launch_bounds__(kWarp* kRowsPerBlock) gemv_q8_0(const uint4* __restrict__ levels, const __half* __restrict__ scales,
                                                                 const float* __restrict__ x, float* __restrict__ y, int rows,
                                                                 int nb, int ldx, int ldy) {
  const int row = blockIdx.x * kRowsPerBlock + threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  if (row >= rows) return;
  const uint4* rq = levels + static_cast<size_t>(row) * nb * 2;
  const __half* rd = scales + static_cast<size_t>(row) * nb;
  float acc[T] = {};
#pragma unroll 4
  for (int b = lane; b < nb; b += kWarp) {
    const uint4 q0 = __ldg(rq + 2 * b), q1 = __ldg(rq + 2 * b + 1);
    const float d = __half2float(rd[b]);
    const uint32_t w[8] = {q0.x, q0.y, q0.z, q0.w, q1.x, q1.y, q1.z, q1.w};
#pragma unroll
    for (int t = 0; t < T; ++t) {
      float xv[32];
      load_x32(x + static_cast<size_t>(t) * ldx + b * 32, xv);
      float s = 0;
#pragma unroll
      for (int i = 0; i < 32; ++i) s += static_cast<float>(static_cast<int8_t>((w[i / 4] >> (8 * (i % 4))) & 0xffu)) * xv[i];
      acc[t] += d * s;
    }
  }
  warp_sum_store<T>(acc, y, ldy, row, lane);
}

// F16: 8 halves per 16-byte load.
template <int T>
__global__ void __launch_bounds__(kWarp* kRowsPerBlock) gemv_f16(const uint4* __restrict__ w, const float* __restrict__ x,
                                                                float* __restrict__ y, int rows, int n8, int ldx, int ldy) {
  const int row = blockIdx.x * kRowsPerBlock + threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  if (row >= rows) return;
  const uint4* rw = w + static_cast<size_t>(row) * n8;
  float acc[T] = {};
#pragma unroll 4
  for (int c = lane; c < n8; c += kWarp) {
    const uint4 q = __ldg(rw + c);
    const __half2* h = reinterpret_cast<const __half2*>(&q);
    float wv[8];
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const float2 f = __half22float2(h[i]);
      wv[2 * i] = f.x, wv[2 * i + 1] = f.y;
    }
#pragma unroll
    for (int t = 0; t < T; ++t) {
      const float4* xp = reinterpret_cast<const float4*>(x + static_cast<size_t>(t) * ldx + c * 8);
      const float4 a = __ldg(xp), b = __ldg(xp + 1);
      acc[t] += wv[0] * a.x + wv[1] * a.y + wv[2] * a.z + wv[3] * a.w + wv[4] * b.x + wv[5] * b.y + wv[6] * b.z + wv[7] * b.w;
    }
  }
  warp_sum_store<T>(acc, y, ldy, row, lane);
}

template <int T>
void launch(const DeviceMatrix& m, const float* x, float* y) {
  const dim3 grid(static_cast<unsigned>((m.rows + kRowsPerBlock - 1) / kRowsPerBlock)), block(kWarp * kRowsPerBlock);
  const int rows = static_cast<int>(m.rows), cols = static_cast<int>(m.cols);
  switch (m.type) {
    case DType::Q4_0:
      gemv_q4_0<T><<<grid, block>>>(static_cast<const uint4*>(m.levels), static_cast<const __half*>(m.scales), x, y, rows, cols / 32, cols, rows);
      break;
    case DType::Q8_0:
      gemv_q8_0<T><<<grid, block>>>(static_cast<const uint4*>(m.levels), static_cast<const __half*>(m.scales), x, y, rows, cols / 32, cols, rows);
      break;
    case DType::F16:
      gemv_f16<T><<<grid, block>>>(static_cast<const uint4*>(m.levels), x, y, rows, cols / 8, cols, rows);
      break;
    default:
      throw Error(ErrorCode::Unsupported, "cuda gemv: type " + std::to_string(static_cast<int>(m.type)) + " is not supported");
  }
}

}  // namespace

bool device_available() {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}

std::string device_name() {
  cudaDeviceProp p{};
  if (cudaGetDeviceProperties(&p, 0) != cudaSuccess) return "none";
  return p.name;
}

DeviceMatrix upload_matrix(DType type, const void* host_rows, int64_t rows, int64_t cols) {
  DeviceMatrix m;
  m.type = type;
  m.rows = rows;
  m.cols = cols;
  const auto* src = static_cast<const uint8_t*>(host_rows);
  if (type == DType::F16) {
    if (cols % 8 != 0) throw Error(ErrorCode::Unsupported, "cuda gemv: F16 rows must be a multiple of 8 columns, got " + std::to_string(cols));
    m.bytes = static_cast<size_t>(rows * cols) * 2;
    check(cudaMalloc(&m.levels, m.bytes), "malloc");
    check(cudaMemcpy(m.levels, src, m.bytes, cudaMemcpyHostToDevice), "upload");
    return m;
  }
  if (type != DType::Q4_0 && type != DType::Q8_0) {
    throw Error(ErrorCode::Unsupported, "cuda gemv: type " + std::to_string(static_cast<int>(type)) + " is not supported");
  }
  if (cols % 32 != 0) throw Error(ErrorCode::InvalidArgument, "cuda gemv: " + std::to_string(cols) + " columns are not whole blocks");
  const int64_t nb = cols / 32;
  const size_t lv = type == DType::Q4_0 ? 16 : 32, blk = type == DType::Q4_0 ? sizeof(block_q4_0) : sizeof(block_q8_0);
  std::vector<uint8_t> levels(static_cast<size_t>(rows * nb) * lv);
  std::vector<uint16_t> scales(static_cast<size_t>(rows * nb));
  for (int64_t i = 0; i < rows * nb; ++i) {
    const uint8_t* b = src + static_cast<size_t>(i) * blk;
    std::memcpy(&scales[static_cast<size_t>(i)], b, 2);  // d is the first field of both blocks
    std::memcpy(levels.data() + static_cast<size_t>(i) * lv, b + 2, lv);
  }
  m.bytes = levels.size() + scales.size() * 2;
  check(cudaMalloc(&m.levels, levels.size()), "malloc");
  check(cudaMalloc(&m.scales, scales.size() * 2), "malloc");
  check(cudaMemcpy(m.levels, levels.data(), levels.size(), cudaMemcpyHostToDevice), "upload");
  check(cudaMemcpy(m.scales, scales.data(), scales.size() * 2, cudaMemcpyHostToDevice), "upload");
  return m;
}

void free_matrix(DeviceMatrix& m) {
  cudaFree(m.levels);
  cudaFree(m.scales);
  m = {};
}

float* device_alloc_floats(size_t n) {
  void* p = nullptr;
  check(cudaMalloc(&p, n * sizeof(float)), "malloc");
  return static_cast<float*>(p);
}
void device_free(void* p) { cudaFree(p); }
void copy_to_device(float* dst, const float* src, size_t n) { check(cudaMemcpy(dst, src, n * 4, cudaMemcpyHostToDevice), "copy"); }
void copy_to_host(float* dst, const float* src, size_t n) { check(cudaMemcpy(dst, src, n * 4, cudaMemcpyDeviceToHost), "copy"); }

void gemv(const DeviceMatrix& m, const float* x, float* y, int n_tokens) {
  switch (n_tokens) {
    case 1: launch<1>(m, x, y); break;
    case 2: launch<2>(m, x, y); break;
    case 3: launch<3>(m, x, y); break;
    case 4: launch<4>(m, x, y); break;
    case 5: launch<5>(m, x, y); break;
    case 6: launch<6>(m, x, y); break;
    case 7: launch<7>(m, x, y); break;
    case 8: launch<8>(m, x, y); break;
    default: throw Error(ErrorCode::InvalidArgument, "cuda gemv: 1 to 8 tokens, got " + std::to_string(n_tokens));
  }
  check(cudaGetLastError(), "gemv launch");
}

double time_gemv_ms(const DeviceMatrix& m, const float* x, float* y, int n_tokens, int iters) {
  cudaEvent_t a, b;
  cudaEventCreate(&a);
  cudaEventCreate(&b);
  gemv(m, x, y, n_tokens);
  cudaEventRecord(a);
  for (int i = 0; i < iters; ++i) gemv(m, x, y, n_tokens);
  cudaEventRecord(b);
  check(cudaEventSynchronize(b), "sync");
  float ms = 0;
  cudaEventElapsedTime(&ms, a, b);
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  return ms / iters;
}

double copy_bandwidth_gb_s(size_t bytes, int iters) {
  void *src = nullptr, *dst = nullptr;
  check(cudaMalloc(&src, bytes), "malloc");
  check(cudaMalloc(&dst, bytes), "malloc");
  cudaMemset(src, 1, bytes);
  cudaEvent_t a, b;
  cudaEventCreate(&a);
  cudaEventCreate(&b);
  cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToDevice);
  cudaEventRecord(a);
  for (int i = 0; i < iters; ++i) cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToDevice);
  cudaEventRecord(b);
  check(cudaEventSynchronize(b), "sync");
  float ms = 0;
  cudaEventElapsedTime(&ms, a, b);
  cudaFree(src);
  cudaFree(dst);
  return 2.0 * static_cast<double>(bytes) * iters / (ms * 1e-3) / 1e9;
}

}  // namespace vireo::cuda
