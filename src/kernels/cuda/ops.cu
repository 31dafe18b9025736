// CUDA kernels of the Backend ops besides the products. Plain, memory-bound kernels: one block
// (or warp) per row, F32 accumulation, launch shapes that depend only on the op's shape (so a
// decode step can be captured in a graph). Attention is flash-decoding style: long ranges are
// split across blocks with an online softmax and combined by a second kernel.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <mma.h>

#include <algorithm>
#include <cfloat>
#include <climits>
#include <cstdlib>
#include <cstdint>
#include <string>

#include "dequant.cuh"
#include "device_util.cuh"
#include "vireo/core/error_types.h"
#include "vireo/kernels/cuda/ops.h"
#include "vireo/kernels/cuda/qgemm.h"

namespace vireo::cuda {
namespace {

constexpr int kWarp = 32;

void check_launch(const char* what) {
  const cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) throw Error(ErrorCode::Io, std::string("CUDA ") + what + ": " + cudaGetErrorString(e));
}
cudaStream_t st(Stream s) { return static_cast<cudaStream_t>(s); }
unsigned blocks_for(int64_t n, int threads) { return static_cast<unsigned>((n + threads - 1) / threads); }
// Elementwise kernels over rows: blockIdx.x covers a row's units, blockIdx.y picks the row (with a
// stride of gridDim.y past 65,535 rows), so no element pays a 64-bit division for its place.
dim3 rows_grid(int64_t rows, int64_t units_per_row, int threads, unsigned z = 1) {
  return dim3(blocks_for(units_per_row, threads), static_cast<unsigned>(std::clamp<int64_t>(rows, 1, 65535)), z);
}
bool aligned(const void* p, size_t bytes) { return reinterpret_cast<uintptr_t>(p) % bytes == 0; }
// Rows of floats ld apart from p that float4 loads and stores can take: 16-byte aligned, ld a multiple of 4.
bool float4_rows(const void* p, int64_t ld) { return aligned(p, 16) && ld % 4 == 0; }

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
// Sum over the block (blockDim.x a multiple of 32, at most 1024); every thread gets it.
__device__ float block_sum(float v, float* shared32) {
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp, n_warps = blockDim.x / kWarp;
  v = warp_sum(v);
  __syncthreads();  // shared32 may still be read by a previous call
  if (lane == 0) shared32[warp] = v;
  __syncthreads();
  v = lane < n_warps ? shared32[lane] : 0.0f;
  return warp_sum(v);
}
__device__ float block_max(float v, float* shared32) {
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp, n_warps = blockDim.x / kWarp;
  v = warp_max(v);
  __syncthreads();
  if (lane == 0) shared32[warp] = v;
  __syncthreads();
  v = lane < n_warps ? shared32[lane] : -FLT_MAX;
  return warp_max(v);
}

// An op's output also written as the next product's activations (see NextActivations): Q8_0
// blocks (every lane of a warp must call put for one block of 32 together) and/or qgemm's F16.
struct Rounding {
  int8_t* q = nullptr;
  float* d = nullptr;
  float* s = nullptr;
  __half* x16 = nullptr;
  Rounding() = default;
  explicit Rounding(const NextActivations& next)
      : q(next.qx != nullptr ? next.qx->q : nullptr), d(next.qx != nullptr ? next.qx->d : nullptr),
        s(next.qx != nullptr ? next.qx->s : nullptr), x16(static_cast<__half*>(next.x16)) {}
  __device__ __forceinline__ void put(float v, int64_t row, int64_t col, int64_t cols) const {
    if (q != nullptr) quantize_block_q8(v, static_cast<size_t>((row * cols + col) / 32), threadIdx.x % kWarp, q, d, s);
    if (x16 != nullptr) x16[qgemm_x_index(row, col, cols)] = __float2half_rn(v);
  }
  // Four consecutive elements from each lane, col a multiple of 4: the 8 lanes of a block of 32
  // call it together (every lane of the warp, those past the end with zeros and live = false).
  __device__ __forceinline__ void put4(const float (&v)[4], int64_t row, int64_t col, int64_t cols, bool live) const {
    if (q != nullptr) quantize_block_q8_x4(v, static_cast<size_t>((row * cols + col) / 32), threadIdx.x % 8, live, q, d, s);
    if (x16 != nullptr && live) {
#pragma unroll
      for (int k = 0; k < 4; ++k) x16[qgemm_x_index(row, col + k, cols)] = __float2half_rn(v[k]);
    }
  }
};

WeightView view_of(const DeviceMatrix& m) {
  return WeightView{m.type, static_cast<const uint8_t*>(m.levels), static_cast<const __half*>(m.scales), m.cols,
                    static_cast<int64_t>(m.row_bytes)};
}

// ---------------------------------------------------------------- rows

__global__ void get_rows_kernel(WeightView w, int64_t table_rows, const int32_t* ids, float* out, int64_t ldo) {
  kernel_prologue();
  const int64_t i = blockIdx.x;
  const int32_t id = ids[i];
  float* o = out + i * ldo;
  for (int64_t c = threadIdx.x * 8; c < w.cols; c += blockDim.x * 8) {
    float v[8];
    if (id >= 0 && id < table_rows) {
      dequant8(w, id, c, v);
    } else {
#pragma unroll
      for (int k = 0; k < 8; ++k) v[k] = __int_as_float(0x7fc00000);  // the runtime checks ids; NaN shows a slip
    }
    for (int k = 0; k < 8 && c + k < w.cols; ++k) o[c + k] = v[k];
  }
}

__global__ void gather_rows_kernel(const uint8_t* src, int64_t src_stride, const int32_t* ids, int64_t row_bytes, uint8_t* out,
                                   int64_t out_stride) {
  kernel_prologue();
  const int64_t i = blockIdx.x;
  const uint8_t* s = src + ids[i] * src_stride;
  uint8_t* o = out + i * out_stride;
  for (int64_t b = threadIdx.x; b < row_bytes; b += blockDim.x) o[b] = s[b];
}

__global__ void dequantize_rows_kernel(WeightView w, int64_t row0, int64_t n_rows, void* out, bool bf16) {
  kernel_prologue();
  const int64_t per_row = w.cols / 8;
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= n_rows * per_row) return;
  const int64_t r = idx / per_row, c = (idx % per_row) * 8;
  float v[8];
  dequant8(w, row0 + r, c, v);
  uint4 packed;
  uint32_t* words = reinterpret_cast<uint32_t*>(&packed);
#pragma unroll
  for (int k = 0; k < 4; ++k) {
    if (bf16) {
      const __nv_bfloat162 h = __floats2bfloat162_rn(v[2 * k], v[2 * k + 1]);
      words[k] = *reinterpret_cast<const uint32_t*>(&h);
    } else {
      const __half2 h = __floats2half2_rn(v[2 * k], v[2 * k + 1]);
      words[k] = *reinterpret_cast<const uint32_t*>(&h);
    }
  }
  reinterpret_cast<uint4*>(out)[idx] = packed;
}

// out [rows][cols] (F16 or BF16) = x; V consecutive elements a thread (4: float4 in, 8 bytes out).
template <int V>
__global__ void convert_f32_kernel(const float* x, int64_t ldx, int64_t rows, int64_t cols, void* out, bool bf16) {
  kernel_prologue();
  const int64_t c = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) * V;
  if (c >= cols) return;
  for (int64_t r = blockIdx.y; r < rows; r += gridDim.y) {
    const float* xr = x + r * ldx + c;
    const int64_t o = r * cols + c;
    if constexpr (V == 4) {
      const float4 v = *reinterpret_cast<const float4*>(xr);
      uint2 packed;
      if (bf16) {
        const __nv_bfloat162 lo = __floats2bfloat162_rn(v.x, v.y), hi = __floats2bfloat162_rn(v.z, v.w);
        packed = make_uint2(*reinterpret_cast<const uint32_t*>(&lo), *reinterpret_cast<const uint32_t*>(&hi));
        *reinterpret_cast<uint2*>(static_cast<__nv_bfloat16*>(out) + o) = packed;
      } else {
        const __half2 lo = __floats2half2_rn(v.x, v.y), hi = __floats2half2_rn(v.z, v.w);
        packed = make_uint2(*reinterpret_cast<const uint32_t*>(&lo), *reinterpret_cast<const uint32_t*>(&hi));
        *reinterpret_cast<uint2*>(static_cast<__half*>(out) + o) = packed;
      }
    } else if (bf16) {
      static_cast<__nv_bfloat16*>(out)[o] = __float2bfloat16_rn(xr[0]);
    } else {
      static_cast<__half*>(out)[o] = __float2half_rn(xr[0]);
    }
  }
}

// ---------------------------------------------------------------- elementwise

__device__ __forceinline__ float binary_op(Binary op, float x, float y) {
  switch (op) {
    case Binary::Add: return x + y;
    case Binary::Mul: return x * y;
    case Binary::SiluMul: return x / (1.0f + expf(-x)) * y;
    default: return 0.5f * x * (1.0f + tanhf(0.7978845608f * x * (1.0f + 0.044715f * x * x)));
  }
}
// V consecutive elements a thread (4: float4 loads and stores); b is not read for Gelu.
template <int V>
__global__ void binary_kernel(Binary op, const float* a, int64_t lda, const float* b, int64_t ldb, float* out, int64_t ldo,
                              int64_t rows, int64_t cols) {
  kernel_prologue();
  const int64_t c = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) * V;
  if (c >= cols) return;
  const bool unary = op == Binary::Gelu;
  for (int64_t r = blockIdx.y; r < rows; r += gridDim.y) {
    if constexpr (V == 4) {
      const float4 x = *reinterpret_cast<const float4*>(a + r * lda + c);
      const float4 y = unary ? x : *reinterpret_cast<const float4*>(b + r * ldb + c);
      *reinterpret_cast<float4*>(out + r * ldo + c) =
          make_float4(binary_op(op, x.x, y.x), binary_op(op, x.y, y.y), binary_op(op, x.z, y.z), binary_op(op, x.w, y.w));
    } else {
      const float x = a[r * lda + c];
      out[r * ldo + c] = binary_op(op, x, unary ? x : b[r * ldb + c]);
    }
  }
}

__global__ void add_bias_kernel(float* x, int64_t ldx, int64_t rows, int64_t cols, const float* bias) {
  kernel_prologue();
  const int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= cols) return;
  for (int64_t r = blockIdx.y; r < rows; r += gridDim.y) x[r * ldx + c] += bias[c];
}

// ---------------------------------------------------------------- row reductions

constexpr int kRowThreads = 256;

// x += h (when h is given; the sum of h_splits arrays h_stride apart: a split product's partial
// sums), out = rms_norm(x) * w, and out also written as the next product's activations (rd): a
// residual add, the next norm and the next product's input in one launch. A decode step has one
// row, so one block does all of it: every load is issued before the first store (x and out may be
// the same buffer, so no __restrict__ lets the compiler do it) and the row stays in registers, up
// to kNormRegs elements per thread.
constexpr int kNormRegs = 8;
__device__ __forceinline__ float summed(const float* h, int64_t c, int splits, int64_t stride) {
  float a = h[c];
  for (int sp = 1; sp < splits; ++sp) a += h[sp * stride + c];
  return a;
}
template <bool kSplits>  // h is split sums (a decode step of one sequence never has them)
__global__ void add_rms_norm_kernel(float* x, int64_t ldx, const float* h, int64_t ldh, int h_splits, int64_t h_stride, const float* w,
                                    float eps, int64_t cols, float* out, int64_t ldo, Rounding rd) {
  const int64_t step = blockDim.x;
  float v[kNormRegs], wv[kNormRegs];
  // The norm's weights are read before the wait: they come from memory while the kernel before
  // finishes (the row is in L2 by then).
  if (cols <= kNormRegs * step) {
#pragma unroll
    for (int k = 0; k < kNormRegs; ++k) {
      const int64_t c = threadIdx.x + k * step;
      wv[k] = c < cols ? w[c] : 0.0f;
    }
  }
  kernel_prologue();
  __shared__ float sh[32];
  float* xr = x + blockIdx.x * ldx;
  const float* hr = h != nullptr ? h + blockIdx.x * ldh : nullptr;
  float* o = out + blockIdx.x * ldo;
  float ss = 0;
  if (cols <= kNormRegs * step) {
    if constexpr (kSplits) {
      float hv[kNormRegs];
#pragma unroll
      for (int k = 0; k < kNormRegs; ++k) {
        const int64_t c = threadIdx.x + k * step;
        v[k] = c < cols ? xr[c] : 0.0f;
        hv[k] = c < cols ? hr[c] : 0.0f;
      }
      // The further sums in passes of their own, so that the loads above go out together; four
      // splits' loads at a time.
#pragma unroll 4
      for (int sp = 1; sp < h_splits; ++sp) {
#pragma unroll
        for (int k = 0; k < kNormRegs; ++k) {
          const int64_t c = threadIdx.x + k * step;
          if (c < cols) hv[k] += hr[sp * h_stride + c];
        }
      }
#pragma unroll
      for (int k = 0; k < kNormRegs; ++k) v[k] += hv[k];
    } else {
#pragma unroll
      for (int k = 0; k < kNormRegs; ++k) {
        const int64_t c = threadIdx.x + k * step;
        v[k] = c < cols ? xr[c] : 0.0f;
        if (hr != nullptr && c < cols) v[k] += hr[c];
      }
    }
#pragma unroll
    for (int k = 0; k < kNormRegs; ++k) {
      const int64_t c = threadIdx.x + k * step;
      if (hr != nullptr && c < cols) xr[c] = v[k];
      ss += v[k] * v[k];
    }
  } else {
    for (int64_t c = threadIdx.x; c < cols; c += step) {
      float a = xr[c];
      if (hr != nullptr) {
        a += kSplits ? summed(hr, c, h_splits, h_stride) : hr[c];
        xr[c] = a;
      }
      ss += a * a;
    }
  }
  ss = block_sum(ss, sh);
  const float inv = rsqrtf(ss / static_cast<float>(cols) + eps);
  // A warp's 32 lanes hold one block of 32 consecutive elements on every pass.
  if (cols <= kNormRegs * step) {
#pragma unroll
    for (int k = 0; k < kNormRegs; ++k) {
      const int64_t c = threadIdx.x + k * step;
      if (c - threadIdx.x % kWarp >= cols) break;  // whole warps leave together
      const float r = v[k] * inv * wv[k];
      if (c < cols) o[c] = r;
      rd.put(r, blockIdx.x, c, cols);
    }
  } else {
    for (int64_t c = threadIdx.x; c < cols; c += step) {
      const float r = xr[c] * inv * w[c];
      o[c] = r;
      rd.put(r, blockIdx.x, c, cols);
    }
  }
}

// The same for the common shape (cols a multiple of 4, at most 4096 * V; rows and w 16-byte
// aligned): each thread holds V runs of 4 consecutive elements, moved as float4, and a block of 32
// activations is rounded by 8 lanes. A decode step's norm is one block, bound by its warps' chains
// of dependent instructions, not by memory: the scalar kernel ran about 820 instructions a warp
// for 4096 columns (H100: 4.6 us alone).
template <bool kSplits, int V>
__global__ void add_rms_norm4_kernel(float* x, int64_t ldx, const float* h, int64_t ldh, int h_splits, int64_t h_stride, const float* w,
                                     float eps, int cols, float* out, int64_t ldo, Rounding rd) {
  const int step = static_cast<int>(blockDim.x) * 4;
  auto at = [&](int v) { return 4 * static_cast<int>(threadIdx.x) + v * step; };
  auto load4 = [](const float* p) { return *reinterpret_cast<const float4*>(p); };
  float4 wv[V];
#pragma unroll
  for (int v = 0; v < V; ++v) wv[v] = at(v) < cols ? load4(w + at(v)) : make_float4(0, 0, 0, 0);  // before the wait, as above
  kernel_prologue();
  __shared__ float sh[32];
  float* xr = x + blockIdx.x * ldx;
  const float* hr = h != nullptr ? h + blockIdx.x * ldh : nullptr;
  float* o = out + blockIdx.x * ldo;
  float4 xv[V], hv[V];
#pragma unroll
  for (int v = 0; v < V; ++v) {
    const bool live = at(v) < cols;
    xv[v] = live ? load4(xr + at(v)) : make_float4(0, 0, 0, 0);
    hv[v] = live && hr != nullptr ? load4(hr + at(v)) : make_float4(0, 0, 0, 0);
  }
  if constexpr (kSplits) {
    for (int sp = 1; sp < h_splits; ++sp) {
#pragma unroll
      for (int v = 0; v < V; ++v) {
        if (at(v) >= cols) continue;
        const float4 a = load4(hr + sp * h_stride + at(v));
        hv[v].x += a.x, hv[v].y += a.y, hv[v].z += a.z, hv[v].w += a.w;
      }
    }
  }
  float ss = 0;
#pragma unroll
  for (int v = 0; v < V; ++v) {
    if (hr != nullptr) {
      xv[v].x += hv[v].x, xv[v].y += hv[v].y, xv[v].z += hv[v].z, xv[v].w += hv[v].w;
      if (at(v) < cols) *reinterpret_cast<float4*>(xr + at(v)) = xv[v];
    }
    ss += xv[v].x * xv[v].x + xv[v].y * xv[v].y + xv[v].z * xv[v].z + xv[v].w * xv[v].w;
  }
  ss = block_sum(ss, sh);
  const float inv = rsqrtf(ss / static_cast<float>(cols) + eps);
#pragma unroll
  for (int v = 0; v < V; ++v) {
    const bool live = at(v) < cols;
    const float r[4] = {xv[v].x * inv * wv[v].x, xv[v].y * inv * wv[v].y, xv[v].z * inv * wv[v].z, xv[v].w * inv * wv[v].w};
    if (live) *reinterpret_cast<float4*>(o + at(v)) = make_float4(r[0], r[1], r[2], r[3]);
    rd.put4(r, blockIdx.x, at(v), cols, live);
  }
}

// out = silu(gate) * up (as binary_kernel computes it), also written as the next product's
// activations (rd).
__global__ void silu_mul_next_kernel(const float* g, int64_t ldg, const float* u, int64_t ldu, int64_t cols, float* out, int64_t ldo,
                                     Rounding rd) {
  kernel_prologue();
  const int64_t r = blockIdx.y, c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= cols) return;  // whole warps: cols is a multiple of 32
  const float x = g[r * ldg + c];
  const float y = binary_op(Binary::SiluMul, x, u[r * ldu + c]);
  out[r * ldo + c] = y;
  rd.put(y, r, c, cols);
}
// The same, four elements a thread in 16-byte loads and stores (rows 16-byte aligned). Measured
// on an H100, Llama-3-8B Q4_0 decoding against the kernel above: 64 sequences at context 1,024
// 1.022x, 4 and 8 sequences 1.003x, but 16 and 32 sequences 0.99x, which keep that one.
__global__ void silu_mul_next4_kernel(const float* g, int64_t ldg, const float* u, int64_t ldu, int64_t cols, float* out, int64_t ldo,
                                      Rounding rd) {
  kernel_prologue();
  const int64_t r = blockIdx.y, c = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) * 4;
  if (c - 4 * (threadIdx.x % kWarp) >= cols) return;  // whole warps; a block of 32's 8 lanes are live together
  const bool live = c < cols;
  float y[4] = {0, 0, 0, 0};
  if (live) {
    const float4 x4 = *reinterpret_cast<const float4*>(g + r * ldg + c), u4 = *reinterpret_cast<const float4*>(u + r * ldu + c);
    const float x[4] = {x4.x, x4.y, x4.z, x4.w}, uu[4] = {u4.x, u4.y, u4.z, u4.w};
#pragma unroll
    for (int k = 0; k < 4; ++k) y[k] = binary_op(Binary::SiluMul, x[k], uu[k]);
    *reinterpret_cast<float4*>(out + r * ldo + c) = make_float4(y[0], y[1], y[2], y[3]);
  }
  rd.put4(y, r, c, cols, live);
}

__global__ void layer_norm_kernel(const float* x, int64_t ldx, const float* w, const float* b, float eps, int64_t cols,
                                  float* out, int64_t ldo) {
  kernel_prologue();
  __shared__ float sh[32];
  const float* xr = x + blockIdx.x * ldx;
  float s = 0;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) s += xr[c];
  const float mean = block_sum(s, sh) / static_cast<float>(cols);
  float v = 0;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) v += (xr[c] - mean) * (xr[c] - mean);
  const float inv = rsqrtf(block_sum(v, sh) / static_cast<float>(cols) + eps);
  float* o = out + blockIdx.x * ldo;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) o[c] = (xr[c] - mean) * inv * w[c] + b[c];
}

__global__ void softmax_kernel(const float* x, int64_t ldx, int64_t cols, float* out, int64_t ldo) {
  kernel_prologue();
  __shared__ float sh[32];
  const float* xr = x + blockIdx.x * ldx;
  float mx = -FLT_MAX;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) mx = fmaxf(mx, xr[c]);
  mx = block_max(mx, sh);
  float s = 0;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) s += expf(xr[c] - mx);
  const float inv = 1.0f / block_sum(s, sh);
  float* o = out + blockIdx.x * ldo;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) o[c] = expf(xr[c] - mx) * inv;
}

__global__ void argmax_kernel(const float* x, int64_t ldx, int64_t cols, int32_t* out) {
  kernel_prologue();
  __shared__ float sv[32];
  __shared__ int si[32];
  const float* xr = x + blockIdx.x * ldx;
  float best = -INFINITY;
  int idx = 0x7fffffff;
  // A whole vocabulary in one block (a sampling step has one row per sequence): 16-byte loads when
  // the row allows them. Each thread walks its elements in order, keeping the first of ties.
  int64_t c0 = 0;
  if (reinterpret_cast<uintptr_t>(xr) % 16 == 0) {
    const auto* x4 = reinterpret_cast<const float4*>(xr);
    const int64_t n4 = cols / 4;
    for (int64_t c = threadIdx.x; c < n4; c += blockDim.x) {
      const float4 v = x4[c];
      const int base = static_cast<int>(4 * c);
      if (v.x > best) best = v.x, idx = base;
      if (v.y > best) best = v.y, idx = base + 1;
      if (v.z > best) best = v.z, idx = base + 2;
      if (v.w > best) best = v.w, idx = base + 3;
    }
    c0 = n4 * 4;
  }
  for (int64_t c = c0 + threadIdx.x; c < cols; c += blockDim.x) {
    if (xr[c] > best) best = xr[c], idx = static_cast<int>(c);
  }
  // The largest value, the lowest index among equals.
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const float ov = __shfl_xor_sync(0xffffffffu, best, o);
    const int oi = __shfl_xor_sync(0xffffffffu, idx, o);
    if (ov > best || (ov == best && oi < idx)) best = ov, idx = oi;
  }
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
  if (lane == 0) sv[warp] = best, si[warp] = idx;
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int w = 1; w < static_cast<int>(blockDim.x / kWarp); ++w) {
      if (sv[w] > best || (sv[w] == best && si[w] < idx)) best = sv[w], idx = si[w];
    }
    out[blockIdx.x] = idx == 0x7fffffff ? 0 : idx;
  }
}

__global__ void l2_normalize_kernel(const float* x, int64_t ldx, int64_t cols, float* out, int64_t ldo) {
  kernel_prologue();
  __shared__ float sh[32];
  const float* xr = x + blockIdx.x * ldx;
  float ss = 0;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) ss += xr[c] * xr[c];
  const float inv = 1.0f / fmaxf(sqrtf(block_sum(ss, sh)), 1e-12f);
  float* o = out + blockIdx.x * ldo;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) o[c] = xr[c] * inv;
}

__global__ void mean_rows_kernel(const float* x, int64_t ldx, int64_t cols, const int32_t* ranges, float* out, int64_t ldo) {
  kernel_prologue();
  const int32_t begin = ranges[2 * blockIdx.x], count = ranges[2 * blockIdx.x + 1];
  const float inv = count > 0 ? 1.0f / static_cast<float>(count) : 0.0f;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
    float s = 0;
    for (int32_t r = 0; r < count; ++r) s += x[(begin + r) * ldx + c];
    out[blockIdx.x * ldo + c] = s * inv;
  }
}

// ---------------------------------------------------------------- rope and the cache

struct RopeArgs {
  int head_dim, n_dims;
  bool neox;
  float theta_scale;
  const float* freq_factors;
  float freq_scale;
};
// Where pair i of a head sits: elements i and i + n_dims / 2 (NeoX), else 2i and 2i + 1.
__device__ __forceinline__ void rope_slots(int i, const RopeArgs& ra, int& i0, int& i1) {
  i0 = ra.neox ? i : 2 * i, i1 = ra.neox ? i + ra.n_dims / 2 : 2 * i + 1;
}
// Rotates pair i, (x0, x1), of a head at position pos.
__device__ __forceinline__ void rope_rotate(float& x0, float& x1, int32_t pos, int i, const RopeArgs& ra) {
  // The reference's angle, by the same float operations in the same order.
  float angle = static_cast<float>(pos);
  for (int k = 0; k < i; ++k) angle = __fmul_rn(angle, ra.theta_scale);
  const float ff = ra.freq_factors != nullptr ? ra.freq_factors[i] : 1.0f;
  const float a = __fmul_rn(ra.freq_scale, __fdiv_rn(angle, ff));
  float sn, cs;
  sincosf(a, &sn, &cs);
  const float y0 = x0 * cs - x1 * sn, y1 = x0 * sn + x1 * cs;
  x0 = y0, x1 = y1;
}
// Rotates pair i of the head at v (position pos) in place and returns where its two elements sit.
__device__ __forceinline__ void rope_pair(float* v, int32_t pos, int i, const RopeArgs& ra, int& i0, int& i1) {
  rope_slots(i, ra, i0, i1);
  float x0 = v[i0], x1 = v[i1];
  rope_rotate(x0, x1, pos, i, ra);
  v[i0] = x0;
  v[i1] = x1;
}

// One thread per (head, pair of dimensions) of a row (rows_grid); blockIdx.z 1 rotates a second
// tensor (k beside q) at the same positions, so one launch serves both.
__global__ void rope_kernel(float* x, int64_t ldx, int n_heads, float* x2, int64_t ldx2, int n_heads2, const int32_t* positions,
                            int64_t rows, RopeArgs ra) {
  kernel_prologue();
  if (blockIdx.z == 1) x = x2, ldx = ldx2, n_heads = n_heads2;
  const int half = ra.n_dims / 2;
  const int u = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x);
  if (u >= n_heads * half) return;
  const int i = u % half, head = u / half;
  for (int64_t r = blockIdx.y; r < rows; r += gridDim.y) {
    int i0, i1;
    rope_pair(x + r * ldx + static_cast<int64_t>(head) * ra.head_dim, positions[r], i, ra, i0, i1);
  }
}

__device__ __forceinline__ void store_cell(void* cache, int64_t idx, float v, bool f16) {
  if (f16) static_cast<__half*>(cache)[idx] = __float2half_rn(v);
  else static_cast<float*>(cache)[idx] = v;
}

// rope_kernel on q (blockIdx.z 0) and k (1), the roped k also written to the cache, and v copied
// there (2): one launch from the q/k/v products to attention. Every dimension is rotated
// (n_dims == head_dim). A thread takes one (head, pair) of a row (rows_grid). With split sums,
// the values are their sums (in reduce_splits' order) and q, k and v are written out.
__global__ void rope_kv_write_kernel(float* q, int64_t ldq, float* k, int64_t ldk, float* v, int64_t ldv, const int32_t* positions,
                                     const int32_t* cells, int64_t rows, int n_head, int n_head_kv, RopeArgs ra, void* k_cache,
                                     void* v_cache, int64_t ld_cache, int64_t n_cells, bool f16, QGemmSums sums) {
  kernel_prologue();
  const int half = ra.n_dims / 2;
  const int u = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x);
  const int z = blockIdx.z;
  const int heads = z == 0 ? n_head : n_head_kv;
  if (u >= heads * half) return;
  const int i = u % half, head = u / half;
  const int64_t col = static_cast<int64_t>(head) * ra.head_dim;
  float* t = z == 0 ? q : z == 1 ? k : v;
  const int64_t ld = z == 0 ? ldq : z == 1 ? ldk : ldv;
  const bool summed = sums.splits > 1;
  // This tensor's first column among the split product's rows: q's, then k's, then v's.
  const int64_t part_col = z == 0 ? 0 : static_cast<int64_t>(n_head) * ra.head_dim + (z == 2 ? static_cast<int64_t>(n_head_kv) * ra.head_dim : 0);
  auto value = [&](int64_t r, int j) {
    if (!summed) return t[r * ld + col + j];
    float sum = 0;
    for (int s = 0; s < sums.splits; ++s) sum += sums.part[s * sums.stride + r * sums.ld + part_col + col + j];
    return sum;
  };
  int i0 = 2 * i, i1 = 2 * i + 1;  // v's pair of elements; q's and k's as rotated
  if (z < 2) rope_slots(i, ra, i0, i1);
  for (int64_t r = blockIdx.y; r < rows; r += gridDim.y) {
    const int64_t cell = cells[r];
    const bool cached = cell >= 0 && cell < n_cells;  // the runtime hands out valid cells
    float x0 = value(r, i0), x1 = value(r, i1);
    if (z < 2) rope_rotate(x0, x1, positions[r], i, ra);
    if (z < 2 || summed) {
      t[r * ld + col + i0] = x0;
      t[r * ld + col + i1] = x1;
    }
    if (z > 0 && cached) {
      store_cell(z == 1 ? k_cache : v_cache, cell * ld_cache + col + i0, x0, f16);
      store_cell(z == 1 ? k_cache : v_cache, cell * ld_cache + col + i1, x1, f16);
    }
  }
}

__global__ void kv_write_kernel(const float* k, int64_t ldk, const float* v, int64_t ldv, const int32_t* cells, int64_t rows,
                                int64_t cols, void* k_cache, void* v_cache, int64_t ld_cache, int64_t n_cells, bool f16) {
  kernel_prologue();
  const int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= cols) return;
  for (int64_t r = blockIdx.y; r < rows; r += gridDim.y) {
    const int64_t cell = cells[r];
    if (cell < 0 || cell >= n_cells) continue;  // the runtime hands out valid cells
    store_cell(k_cache, cell * ld_cache + c, k[r * ldk + c], f16);
    store_cell(v_cache, cell * ld_cache + c, v[r * ldv + c], f16);
  }
}

// ---------------------------------------------------------------- attention

constexpr int kAttnWarps = 4;

// Scores in base-2 units: Q is scaled by scale·log2(e), so that each exponential of an online
// softmax is one ex2 instead of expf's range-reduced sequence (a fifth of the instructions of a
// decode step's loop over 16 keys). The kernels convert their maxima back (kLn2) before the merges,
// which work in natural units.
constexpr float kLog2e = 1.4426950408889634f, kLn2 = 0.6931471805599453f;
__device__ __forceinline__ float exp2_approx(float x) {  // 2^x, -inf -> 0 (relative error ~2^-22)
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}

template <bool F16>
__device__ __forceinline__ float load_kv(const void* base, int64_t idx) {
  if constexpr (F16) {
    return __half2float(static_cast<const __half*>(base)[idx]);
  } else {
    return static_cast<const float*>(base)[idx];
  }
}

// Keys [k0, k1) of query row i's range that split `split` of n_split covers.
// Splits start at whole multiples of `align` keys from the range's start.
__device__ __forceinline__ void split_keys(const int32_t* ranges, int64_t i, int64_t n_keys, int split, int n_split, int64_t& k0,
                                           int64_t& k1, int align = 1) {
  const int64_t begin = ranges[2 * i];
  int64_t count = ranges[2 * i + 1];
  if (begin < 0 || count < 0 || begin + count > n_keys) count = 0;  // the runtime checks ranges
  const int64_t chunk = ((count + n_split - 1) / n_split + align - 1) / align * align;
  k0 = begin + split * chunk;
  k1 = min(begin + count, k0 + chunk);
}

// The online-softmax states of W parts merged: the largest max M, the sum L, and each part's
// weight exp(m_w - M) (0 for a part that saw no key).
template <int W>
__device__ __forceinline__ void merged_state(const float* ms, const float* ls, float& M, float& L, float (&wscale)[W]) {
  M = -INFINITY;
#pragma unroll
  for (int w = 0; w < W; ++w) M = fmaxf(M, ms[w]);
  L = 0;
#pragma unroll
  for (int w = 0; w < W; ++w) {
    wscale[w] = ms[w] == -INFINITY ? 0.0f : __expf(ms[w] - M);  // its error grows with M - ms[w], as the weight shrinks
    L += ls[w] * wscale[w];
  }
}

// The end of a decode-attention block, for query head h: merges the warps' online-softmax states
// (max ms[w], sum ls[w], unnormalised sacc[w]) and writes the output row (one split) or the split's
// partial result for merge_if_last or attention_combine_kernel.
template <int DT, int W = kAttnWarps>
__device__ __forceinline__ void store_merged(const float (&ms)[W], const float (&ls)[W], const float (&sacc)[W][DT * 32], int64_t i,
                                             int h, int head_dim, int n_head, int split, int n_split, float* out, int64_t ldo,
                                             float* part_acc, float* part_ml, const Rounding& rd) {
  float M, L, wscale[W];
  merged_state<W>(ms, ls, M, L, wscale);
  const int64_t part = (i * n_head + h) * n_split + split;
  for (int d = threadIdx.x; d < head_dim; d += blockDim.x) {
    float a = 0;
#pragma unroll
    for (int w = 0; w < W; ++w) a += sacc[w][d] * wscale[w];
    if (n_split == 1) {
      const float o = L > 0 ? a / L : 0.0f;
      out[i * ldo + static_cast<int64_t>(h) * head_dim + d] = o;
      rd.put(o, i, static_cast<int64_t>(h) * head_dim + d, n_head * head_dim);
    } else {
      part_acc[part * head_dim + d] = a;
    }
  }
  if (n_split > 1 && threadIdx.x == 0) {
    part_ml[2 * part] = M;
    part_ml[2 * part + 1] = L;
  }
}

// store_merged by one warp for one head of 128, lane l holding elements 4l to 4l + 3, so that a
// block's warps merge its heads side by side after one barrier, with 16-byte shared loads and a
// Q8_0 block rounded by 8 lanes: the same sums in the same order, in about half the instructions
// of a lane per element (a warp's chain of them is what a short range's attention waits on).
template <int W>
__device__ __forceinline__ void store_merged_warp4(const float* ms, const float* ls, const float (*sacc)[128], int64_t i, int h,
                                                   int n_head, int split, int n_split, float* out, int64_t ldo, float* part_acc,
                                                   float* part_ml, const Rounding& rd) {
  constexpr int D = 128;
  const int lane = threadIdx.x % kWarp, c = 4 * lane;
  float M, L, wscale[W];
  merged_state<W>(ms, ls, M, L, wscale);
  float a[4] = {0, 0, 0, 0};
#pragma unroll
  for (int w = 0; w < W; ++w) {
    const float4 s4 = *reinterpret_cast<const float4*>(&sacc[w][c]);
    a[0] += s4.x * wscale[w], a[1] += s4.y * wscale[w], a[2] += s4.z * wscale[w], a[3] += s4.w * wscale[w];
  }
  if (n_split == 1) {
    float o[4];
#pragma unroll
    for (int k = 0; k < 4; ++k) o[k] = L > 0 ? a[k] / L : 0.0f;
    float* orow = out + i * ldo + static_cast<int64_t>(h) * D + c;
#pragma unroll
    for (int k = 0; k < 4; ++k) orow[k] = o[k];
    rd.put4(o, i, static_cast<int64_t>(h) * D + c, static_cast<int64_t>(n_head) * D, true);
  } else {
    const int64_t part = (i * n_head + h) * n_split + split;
#pragma unroll
    for (int k = 0; k < 4; ++k) part_acc[part * D + c + k] = a[k];
    if (lane == 0) {
      part_ml[2 * part] = M;
      part_ml[2 * part + 1] = L;
    }
  }
}

// Merges head h of row i over its splits, in one warp (up to 64 splits: two a lane). The partials
// come from other blocks, so they are read past L1.
constexpr int kMaxSplits = 64;
__device__ void combine_head(int64_t i, int h, int n_head, int head_dim, int n_split, const float* part_acc, const float* part_ml,
                             float* out, int64_t ldo, const Rounding& rd) {
  const int lane = threadIdx.x % kWarp;
  const int64_t base = (i * n_head + h) * n_split;
  float m[2], l[2], w[2];
#pragma unroll
  for (int k = 0; k < 2; ++k) {
    const int sp = lane + k * kWarp;
    m[k] = sp < n_split ? __ldcg(part_ml + 2 * (base + sp)) : -INFINITY;
    l[k] = sp < n_split ? __ldcg(part_ml + 2 * (base + sp) + 1) : 0.0f;
  }
  const float M = warp_max(fmaxf(m[0], m[1]));
#pragma unroll
  for (int k = 0; k < 2; ++k) w[k] = m[k] == -INFINITY ? 0.0f : __expf(m[k] - M);
  const float L = warp_sum(l[0] * w[0] + l[1] * w[1]);
  // A lane's elements (up to 8: head sizes up to 256) load together, four splits at a time, so a
  // merge costs about n_split / 4 round trips to L2 whatever the head size.
  constexpr int kMaxDt = 8;
  float a[kMaxDt] = {};
#pragma unroll 4
  for (int sp = 0; sp < n_split; ++sp) {
    const float ws = __shfl_sync(0xffffffffu, sp < kWarp ? w[0] : w[1], sp % kWarp);
    const float* src = part_acc + (base + sp) * head_dim + lane;
#pragma unroll
    for (int t = 0; t < kMaxDt; ++t) {
      if (t * kWarp + lane < head_dim) a[t] += __ldcg(src + t * kWarp) * ws;
    }
  }
#pragma unroll
  for (int t = 0; t < kMaxDt; ++t) {
    if (t * kWarp >= head_dim) break;  // whole warps: rounding works on blocks of 32
    const int d = t * kWarp + lane;
    const float o = L > 0 ? a[t] / L : 0.0f;
    if (d < head_dim) out[i * ldo + static_cast<int64_t>(h) * head_dim + d] = o;
    rd.put(o, i, static_cast<int64_t>(h) * head_dim + d, n_head * head_dim);  // used only when head_dim % 32 == 0
  }
}

// The end of a split decode-attention block when its launch merges in place (counters given; up
// to kFusedMergeSplits splits, see attention()): flash-decoding without a second launch. Each block
// counts itself done for its (row, head block) once its partials are visible; the last of the
// n_split merges heads [h0, h0 + nh) and rearms the counter for the next launch. A row's counters
// are one per head block: `hb` of `n_hb`.
__device__ void merge_if_last(unsigned* counters, int64_t i, int hb, int n_hb, int h0, int nh, int n_head, int head_dim, int n_split,
                              const float* part_acc, const float* part_ml, float* out, int64_t ldo, const Rounding& rd) {
  __shared__ bool last;
  __threadfence();
  __syncthreads();
  if (threadIdx.x == 0) {
    unsigned* c = counters + i * n_hb + hb;
    last = atomicAdd(c, 1u) == static_cast<unsigned>(n_split - 1);
    if (last) *c = 0;
  }
  __syncthreads();
  if (!last) return;
  __threadfence();
  for (int h = h0 + static_cast<int>(threadIdx.x) / kWarp; h < h0 + nh; h += static_cast<int>(blockDim.x) / kWarp) {
    combine_head(i, h, n_head, head_dim, n_split, part_acc, part_ml, out, ldo, rd);  // a warp a head
  }
}

// The separate merge, for many splits (one or a few rows over a long cache): a block per (row,
// head), a thread per element, so the splits' loads spread over more SMs than the last block of a
// fused merge has. The splits' weights exp(m_s - M) go to shared memory once.
__global__ void attention_combine_kernel(int n_head, int head_dim, int n_split, const float* __restrict__ part_acc,
                                         const float* __restrict__ part_ml, float* __restrict__ out, int64_t ldo, Rounding rd) {
  kernel_prologue();
  __shared__ float weight[kMaxSplits], red[32];
  const int64_t i = blockIdx.x;
  const int h = blockIdx.y;
  const int64_t base = (i * n_head + h) * n_split;
  const float ms = threadIdx.x < n_split ? part_ml[2 * (base + threadIdx.x)] : -INFINITY;
  const float ls = threadIdx.x < n_split ? part_ml[2 * (base + threadIdx.x) + 1] : 0.0f;
  const float M = block_max(ms, red);
  const float ws = ms == -INFINITY ? 0.0f : expf(ms - M);
  if (threadIdx.x < n_split) weight[threadIdx.x] = ws;
  const float L = block_sum(ls * ws, red);  // its barrier also publishes `weight`
  for (int d = threadIdx.x; d < head_dim; d += blockDim.x) {
    float a = 0;
#pragma unroll 8
    for (int sp = 0; sp < n_split; ++sp) a += part_acc[(base + sp) * head_dim + d] * weight[sp];
    const float o = L > 0 ? a / L : 0.0f;
    out[i * ldo + static_cast<int64_t>(h) * head_dim + d] = o;
    rd.put(o, i, static_cast<int64_t>(h) * head_dim + d, n_head * head_dim);
  }
}

// Block (row i, head h, split s). Lane l holds head elements l, l+32, ... (DT of them). Each warp
// runs an online softmax over its share of the split's keys; the warps are then merged. With one
// split the block writes the output; otherwise its (max, sum, unnormalised acc) go to scratch.
template <int DT, bool F16>
__global__ void __launch_bounds__(kAttnWarps* kWarp) attention_kernel(const float* q, int64_t ldq, const void* k, const void* v,
                                                                    int64_t ld_kv, const int32_t* ranges, int n_head, int group,
                                                                    int head_dim, float scale, KvPages pages, float* out,
                                                                    int64_t ldo, float* part_acc, float* part_ml, unsigned* counters, Rounding rd) {
  kernel_prologue();
  const int64_t i = blockIdx.x;
  const int h = blockIdx.y, split = blockIdx.z, n_split = gridDim.z;
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
  int64_t k0, k1;
  split_keys(ranges, i, pages.n_keys, split, n_split, k0, k1);
  const float* qh = q + i * ldq + static_cast<int64_t>(h) * head_dim;
  const int64_t kv_off = static_cast<int64_t>(h / group) * head_dim;
  float qv[DT], acc[DT];
#pragma unroll
  for (int t = 0; t < DT; ++t) {
    const int d = lane + 32 * t;
    qv[t] = d < head_dim ? qh[d] * scale : 0.0f;
    acc[t] = 0.0f;
  }
  // Each warp takes kKeys keys per step: their dot products and reductions are independent, so
  // their latencies overlap instead of adding up.
  constexpr int kKeys = 4;
  float m = -INFINITY, l = 0.0f;
  for (int64_t j0 = k0 + warp * kKeys; j0 < k1; j0 += kAttnWarps * kKeys) {
    float sc[kKeys];
#pragma unroll
    for (int u = 0; u < kKeys; ++u) {
      const int64_t j = j0 + u;
      float dot = 0;
      if (j < k1) {
        const int64_t base = pages.row(j) * ld_kv + kv_off;
#pragma unroll
        for (int t = 0; t < DT; ++t) {
          const int d = lane + 32 * t;
          if (d < head_dim) dot += qv[t] * load_kv<F16>(k, base + d);
        }
      }
      sc[u] = dot;
    }
#pragma unroll
    for (int u = 0; u < kKeys; ++u) sc[u] = j0 + u < k1 ? warp_sum(sc[u]) : -INFINITY;
    float m_new = m;
#pragma unroll
    for (int u = 0; u < kKeys; ++u) m_new = fmaxf(m_new, sc[u]);
    const float corr = expf(m - m_new);
    float p[kKeys];
    l *= corr;
#pragma unroll
    for (int u = 0; u < kKeys; ++u) {
      p[u] = expf(sc[u] - m_new);  // 0 past the end (-inf)
      l += p[u];
    }
#pragma unroll
    for (int t = 0; t < DT; ++t) {
      const int d = lane + 32 * t;
      float a = acc[t] * corr;
      if (d < head_dim) {
#pragma unroll
        for (int u = 0; u < kKeys; ++u) {
          if (j0 + u < k1) a += p[u] * load_kv<F16>(v, pages.row(j0 + u) * ld_kv + kv_off + d);
        }
      }
      acc[t] = a;
    }
    m = m_new;
  }
  __shared__ float sm[kAttnWarps], sl[kAttnWarps], sacc[kAttnWarps][DT * 32];
  if (lane == 0) sm[warp] = m, sl[warp] = l;
#pragma unroll
  for (int t = 0; t < DT; ++t) sacc[warp][lane + 32 * t] = acc[t];
  __syncthreads();
  store_merged<DT>(sm, sl, sacc, i, h, head_dim, n_head, split, n_split, out, ldo, part_acc, part_ml, rd);
  if (counters != nullptr) merge_if_last(counters, i, h, n_head, h, 1, n_head, head_dim, n_split, part_acc, part_ml, out, ldo, rd);
}

// The same over a KV head's whole query group: block (row i, KV head, split), G >= group query
// heads (the rest idle). Each K and V value is loaded once for the group instead of once per
// query head, so a batch of decoding rows reads its cache at 1/group of the traffic.
template <int DT, int G, bool F16>
__global__ void __launch_bounds__(kAttnWarps* kWarp) attention_group_kernel(const float* q, int64_t ldq, const void* k, const void* v,
                                                                          int64_t ld_kv, const int32_t* ranges, int n_head, int group,
                                                                          int head_dim, float scale, KvPages pages, float* out,
                                                                          int64_t ldo, float* part_acc, float* part_ml, unsigned* counters,
                                                                          Rounding rd) {
  kernel_prologue();
  const int64_t i = blockIdx.x;
  const int kvh = blockIdx.y, split = blockIdx.z, n_split = gridDim.z;
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
  int64_t k0, k1;
  split_keys(ranges, i, pages.n_keys, split, n_split, k0, k1);
  const int64_t kv_off = static_cast<int64_t>(kvh) * head_dim;
  float qv[G][DT], acc[G][DT], m[G], l[G];
#pragma unroll
  for (int g = 0; g < G; ++g) {
    const float* qh = q + i * ldq + static_cast<int64_t>(kvh * group + g) * head_dim;
#pragma unroll
    for (int t = 0; t < DT; ++t) {
      const int d = lane + 32 * t;
      qv[g][t] = g < group && d < head_dim ? qh[d] * scale : 0.0f;
      acc[g][t] = 0.0f;
    }
    m[g] = -INFINITY;
    l[g] = 0.0f;
  }
  constexpr int kKeys = G > 4 ? 1 : 2;  // keys per warp step: independent loads and reductions
  for (int64_t j0 = k0 + warp * kKeys; j0 < k1; j0 += kAttnWarps * kKeys) {
    float kv[kKeys][DT];
#pragma unroll
    for (int u = 0; u < kKeys; ++u) {
#pragma unroll
      for (int t = 0; t < DT; ++t) {
        const int d = lane + 32 * t;
        kv[u][t] = j0 + u < k1 && d < head_dim ? load_kv<F16>(k, pages.row(j0 + u) * ld_kv + kv_off + d) : 0.0f;
      }
    }
    float p[G][kKeys];
#pragma unroll
    for (int g = 0; g < G; ++g) {
      float sc[kKeys];
#pragma unroll
      for (int u = 0; u < kKeys; ++u) {
        float dot = 0;
#pragma unroll
        for (int t = 0; t < DT; ++t) dot += qv[g][t] * kv[u][t];
        sc[u] = j0 + u < k1 ? warp_sum(dot) : -INFINITY;
      }
      float m_new = m[g];
#pragma unroll
      for (int u = 0; u < kKeys; ++u) m_new = fmaxf(m_new, sc[u]);
      const float corr = expf(m[g] - m_new);
      l[g] *= corr;
#pragma unroll
      for (int u = 0; u < kKeys; ++u) {
        p[g][u] = expf(sc[u] - m_new);  // 0 past the end (-inf)
        l[g] += p[g][u];
      }
#pragma unroll
      for (int t = 0; t < DT; ++t) acc[g][t] *= corr;
      m[g] = m_new;
    }
#pragma unroll
    for (int u = 0; u < kKeys; ++u) {
#pragma unroll
      for (int t = 0; t < DT; ++t) {
        const int d = lane + 32 * t;
        kv[u][t] = j0 + u < k1 && d < head_dim ? load_kv<F16>(v, pages.row(j0 + u) * ld_kv + kv_off + d) : 0.0f;
      }
    }
#pragma unroll
    for (int g = 0; g < G; ++g) {
#pragma unroll
      for (int t = 0; t < DT; ++t) {
#pragma unroll
        for (int u = 0; u < kKeys; ++u) acc[g][t] += p[g][u] * kv[u][t];
      }
    }
  }
  // Merge the warps, head by head.
  __shared__ float sm[kAttnWarps][G], sl[kAttnWarps][G], sacc[kAttnWarps][DT * 32];
  if (lane == 0) {
#pragma unroll
    for (int g = 0; g < G; ++g) sm[warp][g] = m[g], sl[warp][g] = l[g];
  }
#pragma unroll
  for (int g = 0; g < G; ++g) {
    if (g >= group) break;
#pragma unroll
    for (int t = 0; t < DT; ++t) sacc[warp][lane + 32 * t] = acc[g][t];
    __syncthreads();
    float ms[kAttnWarps], ls[kAttnWarps];
#pragma unroll
    for (int w = 0; w < kAttnWarps; ++w) ms[w] = sm[w][g], ls[w] = sl[w][g];
    store_merged<DT>(ms, ls, sacc, i, kvh * group + g, head_dim, n_head, split, n_split, out, ldo, part_acc, part_ml, rd);
    __syncthreads();  // sacc is reused by the next head
  }
  if (counters != nullptr) merge_if_last(counters, i, kvh, gridDim.y, kvh * group, group, n_head, head_dim, n_split, part_acc, part_ml, out, ldo, rd);
}

// The group kernel for the common shape, head size 128 over an F16 cache: half-warps take keys
// (16 lanes x 8 elements: one 16-byte load per key and lane), so each dot product reduces in 4
// shuffles instead of 5 and a warp's loads and exponentials serve two keys at once. The two halves
// of a warp step together (their shuffles need both), masking keys past the end.
constexpr int kAttnStreams = 2 * kAttnWarps;
template <int G>
__global__ void __launch_bounds__(kAttnWarps* kWarp) attention_group128_kernel(const float* q, int64_t ldq, const __half* k,
                                                                             const __half* v, int64_t ld_kv, const int32_t* ranges,
                                                                             int n_head, int group, float scale, KvPages pages,
                                                                             float* out, int64_t ldo, float* part_acc, float* part_ml,
                                                                             unsigned* counters, Rounding rd) {
  kernel_prologue();
  constexpr int D = 128, kKeys = G > 4 ? 1 : 2;  // keys per half-warp and step
  const int64_t i = blockIdx.x;
  const int kvh = blockIdx.y, split = blockIdx.z, n_split = gridDim.z;
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp, half = lane / 16, sub = lane % 16;
  const int stream = 2 * warp + half;
  int64_t k0, k1;
  split_keys(ranges, i, pages.n_keys, split, n_split, k0, k1);
  const int64_t kv_off = static_cast<int64_t>(kvh) * D + 8 * sub;
  float qv[G][8], acc[G][8], m[G], l[G];
  const float qscale = scale * kLog2e;  // base-2 scores
  const bool q_aligned = reinterpret_cast<uintptr_t>(q) % 16 == 0 && ldq % 4 == 0;
#pragma unroll
  for (int g = 0; g < G; ++g) {
    const float* qh = q + i * ldq + static_cast<int64_t>(kvh * group + g) * D + 8 * sub;
    if (q_aligned) {  // two 16-byte loads
      const float4 a = g < group ? reinterpret_cast<const float4*>(qh)[0] : make_float4(0, 0, 0, 0);
      const float4 b = g < group ? reinterpret_cast<const float4*>(qh)[1] : make_float4(0, 0, 0, 0);
      const float e8[8] = {a.x, a.y, a.z, a.w, b.x, b.y, b.z, b.w};
#pragma unroll
      for (int e = 0; e < 8; ++e) qv[g][e] = e8[e] * qscale;
    } else {
#pragma unroll
      for (int e = 0; e < 8; ++e) qv[g][e] = g < group ? qh[e] * qscale : 0.0f;
    }
#pragma unroll
    for (int e = 0; e < 8; ++e) acc[g][e] = 0.0f;
    m[g] = -INFINITY;
    l[g] = 0.0f;
  }
  // K and V of a step are loaded together, and the next step's while this one computes: a
  // block's keys are a chain of steps, so bytes in flight, not arithmetic, set its speed. The
  // cache rows of a step's keys (a paged cache's table lookups) are found a step before its loads,
  // so that they add nothing to that chain.
  auto rows_of = [&](int64_t j0, int64_t (&src)[kKeys]) {
#pragma unroll
    for (int u = 0; u < kKeys; ++u) src[u] = j0 + u < k1 ? pages.row(j0 + u) * ld_kv + kv_off : -1;
  };
  auto fetch = [&](const int64_t (&src)[kKeys], uint4 (&kr)[kKeys], uint4 (&vr)[kKeys]) {
#pragma unroll
    for (int u = 0; u < kKeys; ++u) {
      if (src[u] >= 0) {
        kr[u] = *reinterpret_cast<const uint4*>(k + src[u]);
        vr[u] = *reinterpret_cast<const uint4*>(v + src[u]);
      } else {
        kr[u] = vr[u] = make_uint4(0, 0, 0, 0);  // F16 zeros
      }
    }
  };
  auto to_floats = [](const uint4& raw, float (&f)[8]) {
    const __half2* h2 = reinterpret_cast<const __half2*>(&raw);
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const float2 t = __half22float2(h2[e]);
      f[2 * e] = t.x, f[2 * e + 1] = t.y;
    }
  };
  constexpr int64_t kStep = kAttnWarps * 2 * kKeys;
  uint4 k_next[kKeys], v_next[kKeys];
  int64_t src_next[kKeys];
  rows_of(k0 + warp * 2 * kKeys + half * kKeys, src_next);
  fetch(src_next, k_next, v_next);
  rows_of(k0 + warp * 2 * kKeys + half * kKeys + kStep, src_next);
  for (int64_t jw = k0 + warp * 2 * kKeys; jw < k1; jw += kStep) {
    const int64_t j0 = jw + half * kKeys;
    uint4 k_raw[kKeys], v_raw[kKeys];
#pragma unroll
    for (int u = 0; u < kKeys; ++u) k_raw[u] = k_next[u], v_raw[u] = v_next[u];
    fetch(src_next, k_next, v_next);
    rows_of(j0 + 2 * kStep, src_next);
    float kf[kKeys][8];
#pragma unroll
    for (int u = 0; u < kKeys; ++u) to_floats(k_raw[u], kf[u]);
    float p[G][kKeys];
#pragma unroll
    for (int g = 0; g < G; ++g) {
      float sc[kKeys];
#pragma unroll
      for (int u = 0; u < kKeys; ++u) {
        float dot = 0;
#pragma unroll
        for (int e = 0; e < 8; ++e) dot += qv[g][e] * kf[u][e];
#pragma unroll
        for (int o = 8; o > 0; o >>= 1) dot += __shfl_xor_sync(0xffffffffu, dot, o);
        sc[u] = j0 + u < k1 ? dot : -INFINITY;
      }
      float m_new = m[g];
#pragma unroll
      for (int u = 0; u < kKeys; ++u) m_new = fmaxf(m_new, sc[u]);
      // A half with no key left this step keeps its state (m_new is still -inf: no NaN from -inf - -inf).
      const float corr = m_new == -INFINITY ? 1.0f : exp2_approx(m[g] - m_new);
      l[g] *= corr;
#pragma unroll
      for (int u = 0; u < kKeys; ++u) {
        p[g][u] = sc[u] == -INFINITY ? 0.0f : exp2_approx(sc[u] - m_new);
        l[g] += p[g][u];
      }
#pragma unroll
      for (int e = 0; e < 8; ++e) acc[g][e] *= corr;
      m[g] = m_new;
    }
#pragma unroll
    for (int u = 0; u < kKeys; ++u) to_floats(v_raw[u], kf[u]);
#pragma unroll
    for (int g = 0; g < G; ++g) {
#pragma unroll
      for (int e = 0; e < 8; ++e) {
#pragma unroll
        for (int u = 0; u < kKeys; ++u) acc[g][e] += p[g][u] * kf[u][e];
      }
    }
  }
  // Merge the half-warps: every head's state to shared memory, one barrier, then a warp a head.
  // (Head by head, with two barriers each, the merge was most of a short range's time: one
  // sequence, 16 keys, 1,100 of a warp's 1,550 instructions, all of them in one dependent chain.)
  __shared__ float sm[G][kAttnStreams], sl[G][kAttnStreams];
  __shared__ __align__(16) float sacc[G][kAttnStreams][D];
#pragma unroll
  for (int g = 0; g < G; ++g) {
    if (g >= group) break;
    if (sub == 0) sm[g][stream] = m[g] * kLn2, sl[g][stream] = l[g];  // the merge works in natural units
    float4* dst = reinterpret_cast<float4*>(&sacc[g][stream][8 * sub]);
    dst[0] = make_float4(acc[g][0], acc[g][1], acc[g][2], acc[g][3]);
    dst[1] = make_float4(acc[g][4], acc[g][5], acc[g][6], acc[g][7]);
  }
  __syncthreads();
  for (int g = warp; g < group; g += kAttnWarps) {
    store_merged_warp4<kAttnStreams>(sm[g], sl[g], sacc[g], i, kvh * group + g, n_head, split, n_split, out, ldo, part_acc, part_ml, rd);
  }
  if (counters != nullptr) merge_if_last(counters, i, kvh, gridDim.y, kvh * group, group, n_head, D, n_split, part_acc, part_ml, out, ldo, rd);
}

// ---------------------------------------------------------------- attention for prefill (tensor cores)

// Flash attention for many query rows: a block takes 64 query rows of one head and walks the
// union of their key ranges in tiles of 64 keys. S = Q·Kᵀ and O += P·V run on tensor cores
// (F16 in, F32 accumulate); the online softmax runs on the S tile in shared memory. Each of the
// 4 warps owns 16 query rows, so only the K/V tile loads need the whole block.
constexpr int kFlashRows = 64, kFlashKeys = 64, kFlashWarps = 4;

// Rows are padded by 16 bytes: with power-of-two strides every row of a tile starts in the same
// shared-memory bank, and the fragment loads and the per-row softmax serialise on it.
template <int HD>
struct FlashSmem {
  static constexpr int kHalfPad = 8, kFloatPad = 4;
  static constexpr int kLdH = HD + kHalfPad, kLdS = kFlashKeys + kFloatPad, kLdP = kFlashKeys + kHalfPad, kLdO = HD + kFloatPad;
  __half q[kFlashRows][kLdH];
  __half k[kFlashKeys][kLdH];
  __half v[kFlashKeys][kLdH];
  float s[kFlashRows][kLdS];
  __half p[kFlashRows][kLdP];
  float o[kFlashRows][kLdO];
  float m[kFlashRows], l[kFlashRows];
  int begin[kFlashRows], end[kFlashRows];
  int span[2];
};

template <int HD>
__global__ void __launch_bounds__(kFlashWarps* kWarp) flash_attention_kernel(const float* __restrict__ q, int64_t ldq,
                                                                           const __half* __restrict__ k, const __half* __restrict__ v,
                                                                           int64_t ld_kv, const int32_t* __restrict__ ranges, int64_t rows,
                                                                           int group, float scale, KvPages pages, float* __restrict__ out,
                                                                           int64_t ldo) {
  kernel_prologue();
  using namespace nvcuda;
  extern __shared__ __align__(128) unsigned char smem_raw[];
  using Smem = FlashSmem<HD>;
  Smem& sm = *reinterpret_cast<Smem*>(smem_raw);
  const int h = blockIdx.y, tid = threadIdx.x, warp = tid / kWarp, lane = tid % kWarp;
  const int64_t row0 = static_cast<int64_t>(blockIdx.x) * kFlashRows;
  const int64_t kv_off = static_cast<int64_t>(h / group) * HD;

  // Ranges, Q (scaled, F16), O = 0.
  if (tid < kFlashRows) {
    const int64_t i = row0 + tid;
    int b = 0, e = 0;
    if (i < rows) {
      b = ranges[2 * i];
      e = b + ranges[2 * i + 1];
      if (b < 0 || e < b || e > pages.n_keys) b = e = 0;  // the runtime checks ranges
    }
    sm.begin[tid] = b;
    sm.end[tid] = e;
    sm.m[tid] = -INFINITY;
    sm.l[tid] = 0.0f;
  }
  for (int idx = tid; idx < kFlashRows * HD; idx += blockDim.x) {
    const int r = idx / HD, d = idx % HD;
    const int64_t i = row0 + r;
    sm.q[r][d] = __float2half_rn(i < rows ? q[i * ldq + static_cast<int64_t>(h) * HD + d] * scale : 0.0f);
    sm.o[r][d] = 0.0f;
  }
  __syncthreads();
  if (tid == 0) {
    int lo = INT_MAX, hi = 0;
    for (int r = 0; r < kFlashRows; ++r) {
      if (sm.end[r] > sm.begin[r]) lo = min(lo, sm.begin[r]), hi = max(hi, sm.end[r]);
    }
    sm.span[0] = lo == INT_MAX ? 0 : lo;
    sm.span[1] = hi;
  }
  __syncthreads();
  const int lo = sm.span[0], hi = sm.span[1];
  const int wr = warp * 16;  // this warp's first row

  for (int j0 = lo; j0 < hi; j0 += kFlashKeys) {
    // K and V tiles (zeros past the span, so masked products stay finite).
    for (int idx = tid; idx < kFlashKeys * HD / 8; idx += blockDim.x) {
      const int r = idx / (HD / 8), c = (idx % (HD / 8)) * 8;
      const int64_t j = j0 + r;
      uint4 kk = make_uint4(0, 0, 0, 0), vv = make_uint4(0, 0, 0, 0);
      if (j < hi) {
        const int64_t src = pages.row(j) * ld_kv + kv_off + c;
        kk = *reinterpret_cast<const uint4*>(k + src);
        vv = *reinterpret_cast<const uint4*>(v + src);
      }
      *reinterpret_cast<uint4*>(&sm.k[r][c]) = kk;
      *reinterpret_cast<uint4*>(&sm.v[r][c]) = vv;
    }
    __syncthreads();

    // S[16 rows of this warp][64 keys] = Q · Kᵀ.
#pragma unroll
    for (int kt = 0; kt < kFlashKeys / 16; ++kt) {
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
      wmma::fill_fragment(acc, 0.0f);
#pragma unroll
      for (int dt = 0; dt < HD / 16; ++dt) {
        wmma::fragment<wmma::matrix_a, 16, 16, 16, __half, wmma::row_major> a;
        wmma::fragment<wmma::matrix_b, 16, 16, 16, __half, wmma::col_major> b;
        wmma::load_matrix_sync(a, &sm.q[wr][dt * 16], Smem::kLdH);
        wmma::load_matrix_sync(b, &sm.k[kt * 16][dt * 16], Smem::kLdH);  // Kᵀ: K row-major read as column-major
        wmma::mma_sync(acc, a, b, acc);
      }
      wmma::store_matrix_sync(&sm.s[wr][kt * 16], acc, Smem::kLdS, wmma::mem_row_major);
    }
    __syncwarp();

    // Online softmax of this warp's 16 rows, one row at a time: the lanes take two keys each and
    // reduce across the warp, so every shared access is a contiguous row.
    for (int rr = 0; rr < 16; ++rr) {
      const int r = wr + rr;
      const int b = sm.begin[r], e = sm.end[r];
      const int j_a = j0 + lane, j_b = j0 + lane + 32;
      const bool in_a = j_a >= b && j_a < e, in_b = j_b >= b && j_b < e;
      const float s_a = sm.s[r][lane], s_b = sm.s[r][lane + 32];
      const float mx = warp_max(fmaxf(in_a ? s_a : -INFINITY, in_b ? s_b : -INFINITY));
      const float m_old = sm.m[r];
      const float m_new = fmaxf(m_old, mx);
      const float p_a = in_a ? expf(s_a - m_new) : 0.0f, p_b = in_b ? expf(s_b - m_new) : 0.0f;
      sm.p[r][lane] = __float2half_rn(p_a);
      sm.p[r][lane + 32] = __float2half_rn(p_b);
      const float sum = warp_sum(p_a + p_b);
      const float corr = m_new == -INFINITY ? 1.0f : expf(m_old - m_new);
      for (int d = lane; d < HD; d += kWarp) sm.o[r][d] *= corr;
      if (lane == 0) {
        sm.l[r] = sm.l[r] * corr + sum;
        sm.m[r] = m_new;
      }
    }
    __syncwarp();

    // O[16 rows][HD] += P · V.
#pragma unroll
    for (int dt = 0; dt < HD / 16; ++dt) {
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
      wmma::load_matrix_sync(acc, &sm.o[wr][dt * 16], Smem::kLdO, wmma::mem_row_major);
#pragma unroll
      for (int kt = 0; kt < kFlashKeys / 16; ++kt) {
        wmma::fragment<wmma::matrix_a, 16, 16, 16, __half, wmma::row_major> a;
        wmma::fragment<wmma::matrix_b, 16, 16, 16, __half, wmma::row_major> b;
        wmma::load_matrix_sync(a, &sm.p[wr][kt * 16], Smem::kLdP);
        wmma::load_matrix_sync(b, &sm.v[kt * 16][dt * 16], Smem::kLdH);
        wmma::mma_sync(acc, a, b, acc);
      }
      wmma::store_matrix_sync(&sm.o[wr][dt * 16], acc, Smem::kLdO, wmma::mem_row_major);
    }
    __syncthreads();  // the next tile overwrites K and V
  }

  for (int idx = tid; idx < kFlashRows * HD; idx += blockDim.x) {
    const int r = idx / HD, d = idx % HD;
    const int64_t i = row0 + r;
    if (i < rows) out[i * ldo + static_cast<int64_t>(h) * HD + d] = sm.l[r] > 0 ? sm.o[r][d] / sm.l[r] : 0.0f;
  }
}

// The same in registers (head sizes 64 and 128): each warp keeps its 16 query rows' Q, S = Q·Kᵀ
// and O as mma fragments (m16n8k16, F16 in, F32 accumulate). The online softmax runs on the S
// fragments (a row's values sit in one quad of lanes: two shuffles per reduction), P goes from
// the S accumulators straight into A operands, V comes in through ldmatrix.trans, and the K/V
// tiles of the next step load (cp.async) while this one computes. Nothing but K and V goes
// through shared memory.
template <int HD>
struct Flash2Smem {
  static constexpr int kLd = HD + 8;  // halves; +16 bytes so 8 rows' fragment loads hit distinct banks
  __half k[2][kFlashKeys][kLd];
  __half v[2][kFlashKeys][kLd];
  int span[2];
  int lo[kFlashWarps], hi[kFlashWarps];
};

__device__ __forceinline__ void cp_async16_zfill(void* smem, const void* gmem, bool valid) {
  const auto d = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(d), "l"(gmem), "r"(valid ? 16 : 0));
}
// A 16-byte copy that asks L2 to fetch the whole 256-byte segment around it from memory.
__device__ __forceinline__ void cp_async16_l2_256(void* smem, const void* gmem) {
  const auto d = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.cg.shared.global.L2::256B [%0], [%1], 16;\n" ::"r"(d), "l"(gmem));
}

__device__ __forceinline__ void mma_f16_16816(const uint32_t (&a)[4], uint32_t b0, uint32_t b1, float (&c)[4]) {
  asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
               : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ uint32_t pack_half2(float lo, float hi) {
  const __half2 h = __floats2half2_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&h);
}

// One step of flash attention on mma fragments (m16n8k16, F16 in, F32 accumulated), for a warp's
// 16 query rows (this thread's rows g and g + 8) over NK * 8 keys whose K and V rows sit in shared
// memory, ld halves apart (rows 16-byte aligned). First S = Q·Kᵀ from Q's A fragments, K's B
// operands of two k-steps per ldmatrix: lane l points at row l % 8 of matrix l / 8, which are
// (k-step dt, elements 0-7), (dt, 8-15), (dt + 1, 0-7), (dt + 1, 8-15) of 8 keys...
template <int KD, int NK>
__device__ __forceinline__ void flash_scores(const uint32_t (&qa)[KD][4], const __half* k, int ld, int lane, float (&sc)[NK][4]) {
  static_assert(KD % 2 == 0, "k-steps go in pairs");
  const __half* lane_row = k + (lane % 8) * ld + (lane / 8) * 8;
#pragma unroll
  for (int nt = 0; nt < NK; ++nt) {
    sc[nt][0] = sc[nt][1] = sc[nt][2] = sc[nt][3] = 0.0f;
#pragma unroll
    for (int dt = 0; dt < KD; dt += 2) {
      const auto addr = static_cast<unsigned>(__cvta_generic_to_shared(lane_row + nt * 8 * ld + dt * 16));
      uint32_t b0, b1, b2, b3;
      asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                   : "=r"(b0), "=r"(b1), "=r"(b2), "=r"(b3)
                   : "r"(addr));
      mma_f16_16816(qa[dt], b0, b1, sc[nt]);
      mma_f16_16816(qa[dt + 1], b2, b3, sc[nt]);
    }
  }
}

// ... then, with masked scores at -inf, the online softmax per row, base 2 (a row's values sit in one
// quad of lanes: two shuffles per reduction) and O += P·V, V's operands through ldmatrix.trans.
// P goes from the S accumulators straight into A operands: the accumulator of keys 8nt.. is half
// of the A operand of the 16 keys 16(nt/2)...
template <int NK, int ND>
__device__ __forceinline__ void flash_accumulate(float (&sc)[NK][4], const __half* v, int ld, int lane, float (&m)[2], float (&l)[2],
                                                 float (&o)[ND][4]) {
  float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
  for (int nt = 0; nt < NK; ++nt) {
#pragma unroll
    for (int x = 0; x < 4; ++x) mx[x >> 1] = fmaxf(mx[x >> 1], sc[nt][x]);
  }
  float corr[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
    mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
    const float m_new = fmaxf(m[r], mx[r]);
    corr[r] = m_new == -INFINITY ? 1.0f : exp2_approx(m[r] - m_new);  // a row with no key yet keeps its state
    m[r] = m_new;
    l[r] *= corr[r];
  }
  uint32_t pa[NK / 2][4];
#pragma unroll
  for (int nt = 0; nt < NK; ++nt) {
    float p[4];
#pragma unroll
    for (int x = 0; x < 4; ++x) {
      const int r = x >> 1;
      p[x] = sc[nt][x] == -INFINITY ? 0.0f : exp2_approx(sc[nt][x] - m[r]);
      l[r] += p[x];
    }
    pa[nt / 2][(nt & 1) * 2] = pack_half2(p[0], p[1]);
    pa[nt / 2][(nt & 1) * 2 + 1] = pack_half2(p[2], p[3]);
  }
#pragma unroll
  for (int nd = 0; nd < ND; ++nd) {
    o[nd][0] *= corr[0], o[nd][1] *= corr[0], o[nd][2] *= corr[1], o[nd][3] *= corr[1];
  }
#pragma unroll
  for (int kk = 0; kk < NK / 2; ++kk) {
#pragma unroll
    for (int nd = 0; nd < ND; nd += 2) {  // two n-tiles of the head per load
      const __half* src = v + (kk * 16 + (lane % 8) + ((lane / 8) % 2) * 8) * ld + (nd + lane / 16) * 8;
      const auto addr = static_cast<unsigned>(__cvta_generic_to_shared(src));
      uint32_t b0, b1, b2, b3;
      asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                   : "=r"(b0), "=r"(b1), "=r"(b2), "=r"(b3)
                   : "r"(addr));
      mma_f16_16816(pa[kk], b0, b1, o[nd]);
      mma_f16_16816(pa[kk], b2, b3, o[nd + 1]);
    }
  }
}

template <int HD>
__global__ void __launch_bounds__(kFlashWarps* kWarp) flash2_attention_kernel(const float* __restrict__ q, int64_t ldq,
                                                                            const __half* __restrict__ k, const __half* __restrict__ v,
                                                                            int64_t ld_kv, const int32_t* __restrict__ ranges,
                                                                            int64_t rows, int group, float scale, KvPages pages,
                                                                            float* __restrict__ out, int64_t ldo) {
  kernel_prologue();
  constexpr int KD = HD / 16, ND = HD / 8, NK = kFlashKeys / 8;  // k-steps over the head, its n-tiles, key n-tiles
  extern __shared__ __align__(128) unsigned char smem_raw[];
  using Smem = Flash2Smem<HD>;
  Smem& sm = *reinterpret_cast<Smem*>(smem_raw);
  const int h = blockIdx.y, tid = threadIdx.x, warp = tid / kWarp, lane = tid % kWarp, g = lane / 4, t4 = lane % 4;
  const int64_t row0 = static_cast<int64_t>(blockIdx.x) * kFlashRows + warp * 16;
  const int64_t kv_off = static_cast<int64_t>(h / group) * HD;

  // This thread's two rows (g and g + 8 of the warp's 16) and their key ranges.
  int rb[2], re[2];
#pragma unroll
  for (int x = 0; x < 2; ++x) {
    const int64_t i = row0 + g + 8 * x;
    rb[x] = re[x] = 0;
    if (i < rows) {
      const int b = ranges[2 * i], e = b + ranges[2 * i + 1];
      if (b >= 0 && e >= b && e <= pages.n_keys) rb[x] = b, re[x] = e;  // the runtime checks ranges
    }
  }
  // The block's key span: the union of its rows' ranges.
  int lo = re[0] > rb[0] ? rb[0] : INT_MAX, hi = re[0] > rb[0] ? re[0] : 0;
  if (re[1] > rb[1]) lo = min(lo, rb[1]), hi = max(hi, re[1]);
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    lo = min(lo, __shfl_xor_sync(0xffffffffu, lo, o));
    hi = max(hi, __shfl_xor_sync(0xffffffffu, hi, o));
  }
  if (lane == 0) sm.lo[warp] = lo, sm.hi[warp] = hi;
  __syncthreads();
  lo = INT_MAX, hi = 0;
#pragma unroll
  for (int w = 0; w < kFlashWarps; ++w) lo = min(lo, sm.lo[w]), hi = max(hi, sm.hi[w]);
  if (lo == INT_MAX) lo = hi = 0;

  // Q fragments, scaled (base-2 scores: see kLog2e), as F16.
  const float qscale = scale * kLog2e;
  uint32_t qa[KD][4];
#pragma unroll
  for (int dt = 0; dt < KD; ++dt) {
#pragma unroll
    for (int x = 0; x < 4; ++x) {  // a0: row g, dims 2t..; a1: row g+8; a2: row g, dims 8+2t..; a3: row g+8
      const int64_t i = row0 + g + 8 * (x & 1);
      const int d = dt * 16 + 2 * t4 + 8 * (x >> 1);
      float2 f = make_float2(0.0f, 0.0f);
      if (i < rows) f = *reinterpret_cast<const float2*>(q + i * ldq + static_cast<int64_t>(h) * HD + d);
      qa[dt][x] = pack_half2(f.x * qscale, f.y * qscale);
    }
  }

  auto load_tile = [&](int j0, int buf) {
    for (int idx = tid; idx < kFlashKeys * HD / 8; idx += blockDim.x) {
      const int r = idx / (HD / 8), c = (idx % (HD / 8)) * 8;
      const int64_t j = j0 + r;
      const bool ok = j < hi;
      const int64_t src = (ok ? pages.row(j) : 0) * ld_kv + kv_off + c;
      cp_async16_zfill(&sm.k[buf][r][c], k + src, ok);
      cp_async16_zfill(&sm.v[buf][r][c], v + src, ok);
    }
    asm volatile("cp.async.commit_group;\n" ::);
  };

  float o[ND][4] = {};
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};
  if (lo < hi) load_tile(lo, 0);
  int buf = 0;
  for (int j0 = lo; j0 < hi; j0 += kFlashKeys, buf ^= 1) {
    if (j0 + kFlashKeys < hi) {
      load_tile(j0 + kFlashKeys, buf ^ 1);  // the buffer every warp finished with last step
      asm volatile("cp.async.wait_group 1;\n" ::);
    } else {
      asm volatile("cp.async.wait_group 0;\n" ::);
    }
    __syncthreads();

    // S = Q·Kᵀ for 64 keys: 8 n-tiles of 8 keys; keys outside each row's range masked.
    float sc[NK][4];
    flash_scores<KD, NK>(qa, &sm.k[buf][0][0], Smem::kLd, lane, sc);
#pragma unroll
    for (int nt = 0; nt < NK; ++nt) {
#pragma unroll
      for (int x = 0; x < 4; ++x) {
        const int j = j0 + nt * 8 + 2 * t4 + (x & 1), r = x >> 1;
        if (j < rb[r] || j >= re[r]) sc[nt][x] = -INFINITY;
      }
    }
    flash_accumulate<NK, ND>(sc, &sm.v[buf][0][0], Smem::kLd, lane, m, l, o);
    __syncthreads();  // every warp is done with this buffer before the next load overwrites it
  }

  // Row sums over the quad, then O / l.
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    l[r] += __shfl_xor_sync(0xffffffffu, l[r], 1);
    l[r] += __shfl_xor_sync(0xffffffffu, l[r], 2);
  }
#pragma unroll
  for (int nd = 0; nd < ND; ++nd) {
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const int64_t i = row0 + g + 8 * r;
      if (i >= rows) continue;
      const float inv = l[r] > 0 ? 1.0f / l[r] : 0.0f;
      float2 val = make_float2(o[nd][2 * r] * inv, o[nd][2 * r + 1] * inv);
      *reinterpret_cast<float2*>(out + i * ldo + static_cast<int64_t>(h) * HD + nd * 8 + 2 * t4) = val;
    }
  }
}

template <int HD>
void launch_flash(const float* q, int64_t ldq, const void* k, const void* v, int64_t ld_kv, const int32_t* ranges, const AttentionShape& a,
                  float* out, int64_t ldo, cudaStream_t s) {
  const size_t smem = sizeof(FlashSmem<HD>);
  static bool configured = false;  // per instantiation: allow more than 48 KiB of shared memory
  if (!configured) {
    cudaFuncSetAttribute(flash_attention_kernel<HD>, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem));
    configured = true;
  }
  const dim3 grid(static_cast<unsigned>((a.rows + kFlashRows - 1) / kFlashRows), static_cast<unsigned>(a.n_head));
  if constexpr (HD == 64 || HD == 128) {
    if (ldq % 2 == 0 && ldo % 2 == 0 && reinterpret_cast<uintptr_t>(q) % 8 == 0 && reinterpret_cast<uintptr_t>(out) % 8 == 0) {
      const size_t smem2 = sizeof(Flash2Smem<HD>);
      static const bool configured2 = [&] {
        cudaFuncSetAttribute(flash2_attention_kernel<HD>, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem2));
        return true;
      }();
      (void)configured2;
      launch(flash2_attention_kernel<HD>, grid, kFlashWarps * kWarp, smem2, s, q, ldq, static_cast<const __half*>(k),
                                                                          static_cast<const __half*>(v), ld_kv, ranges, a.rows,
                                                                          a.n_head / a.n_head_kv, a.scale, a.pages, out, ldo);
      return;
    }
  }
  launch(flash_attention_kernel<HD>, grid, kFlashWarps * kWarp, smem, s, q, ldq, static_cast<const __half*>(k), static_cast<const __half*>(v),
                                                                    ld_kv, ranges, a.rows, a.n_head / a.n_head_kv, a.scale, a.pages,
                                                                    out, ldo);
}

// Decode attention over a KV head's query group on tensor cores (head size 128, F16 cache): the
// group kernel's work for many rows at once, where its per-key shuffles and exponentials, not the
// cache's bytes, set the pace. Block (row i, KV head, split); each warp streams its own 16-key
// tiles of the split's keys through a two-slot cp.async ring (no block-wide barrier in the loop)
// and runs flash2's step on them with the group's query heads as the 16 rows of the A operand
// (rows past the group are zeros). The warps' states are then merged as the group kernel's are.
constexpr int kGroupMmaKeys = 16, kGroupMmaLd = 128 + 8;  // halves a K/V row takes in shared memory
struct GroupMmaSlot {
  __half k[kGroupMmaKeys][kGroupMmaLd];
  __half v[kGroupMmaKeys][kGroupMmaLd];
};
// Blocks of 4 warps: blocks of 2 (six an SM) were within 3% (H100, 64 rows over 1,024 keys).
constexpr int kGroupMmaWarps = kAttnWarps;
struct GroupMmaMerge {
  float m[kGroupMmaWarps][8], l[kGroupMmaWarps][8];
  float acc[8][kGroupMmaWarps][128];  // [head][warp][element]
};
// Two slots a warp (one loading while one computes) let three blocks share an SM; three slots and
// two blocks were 1% slower on an H100.
constexpr int kGroupMmaSlots = 2;
constexpr size_t kGroupMmaSmem = std::max(sizeof(GroupMmaSlot) * kGroupMmaSlots * kGroupMmaWarps, sizeof(GroupMmaMerge));

__global__ void __launch_bounds__(kGroupMmaWarps* kWarp) attention_group_mma_kernel(const float* q, int64_t ldq, const __half* k,
                                                                              const __half* v, int64_t ld_kv, const int32_t* ranges,
                                                                              int n_head, int group, float scale, KvPages pages,
                                                                              float* out, int64_t ldo, float* part_acc, float* part_ml,
                                                                              unsigned* counters, Rounding rd) {
  kernel_prologue();
  constexpr int D = 128, KD = D / 16, ND = D / 8;
  extern __shared__ __align__(128) unsigned char smem_raw[];
  // Heads vary fastest over the grid: the blocks that run together read whole cache rows (every
  // KV head of a cell) rather than one head's 256 bytes of each.
  const int64_t i = blockIdx.y;
  const int kvh = blockIdx.x, split = blockIdx.z, n_split = gridDim.z;
  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp, g = lane / 4, t4 = lane % 4;
  GroupMmaSlot* slot = reinterpret_cast<GroupMmaSlot*>(smem_raw) + kGroupMmaSlots * warp;
  int64_t k0, k1;
  split_keys(ranges, i, pages.n_keys, split, n_split, k0, k1, kGroupMmaKeys);
  const int64_t kv_off = static_cast<int64_t>(kvh) * D;

  // Warp w takes tiles w, w + kGroupMmaWarps, ...; a lane copies 16 bytes of K and of V per step of its loop.
  // A tile within one block of the cache's table (the usual case: blocks of 16 or more cells, tiles
  // starting at multiples of 16) looks its block up once, into `base` (see tile_row).
  auto load_tile = [&](int64_t j0, int64_t base, GroupMmaSlot& s) {
    const bool one_block = pages.blocks == nullptr || (j0 >> pages.block_shift) == ((j0 + kGroupMmaKeys - 1) >> pages.block_shift);
    if (one_block && j0 + kGroupMmaKeys <= k1) {
      // A whole tile of consecutive cache rows (nearly every tile): a lane copies the same 16 bytes
      // of every other row, one address add a copy. (Row by row, with each row's checks, the
      // copies were two fifths of the loop's instructions.)
      const int r0 = lane / (D / 8), c = (lane % (D / 8)) * 8;
      const int64_t src = (base + r0) * ld_kv + kv_off + c, stride = (kWarp / (D / 8)) * ld_kv;
#pragma unroll
      for (int r = r0, n = 0; n < kGroupMmaKeys * D / 8 / kWarp; r += kWarp / (D / 8), ++n) {
        cp_async16_l2_256(&s.k[r][c], k + src + n * stride);
        cp_async16_l2_256(&s.v[r][c], v + src + n * stride);
      }
      return;
    }
#pragma unroll
    for (int idx = lane; idx < kGroupMmaKeys * D / 8; idx += kWarp) {
      const int r = idx / (D / 8), c = (idx % (D / 8)) * 8;
      const int64_t j = j0 + r;
      const bool ok = j < k1;
      const int64_t src = (ok ? (one_block ? base + r : pages.row(j)) : 0) * ld_kv + kv_off + c;
      cp_async16_zfill(&s.k[r][c], k + src, ok);
      cp_async16_zfill(&s.v[r][c], v + src, ok);
    }
  };
  // A tile's first cache row: a load from the table, made a step before the tile's copies need it
  // (waited for there, it would delay every step's copies by its latency).
  auto tile_row = [&](int64_t j0) { return j0 < k1 ? pages.row(j0) : int64_t{0}; };
  constexpr int64_t kStride = int64_t{kGroupMmaKeys} * kGroupMmaWarps;
  float o[ND][4] = {};
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};
  const int64_t first = k0 + warp * kGroupMmaKeys;
#pragma unroll
  for (int t = 0; t + 1 < kGroupMmaSlots; ++t) {
    if (first + t * kStride < k1) load_tile(first + t * kStride, tile_row(first + t * kStride), slot[t]);
    asm volatile("cp.async.commit_group;\n" ::);
  }
  int64_t ahead_row = tile_row(first + (kGroupMmaSlots - 1) * kStride);
  // Q of the group's heads as A fragments (rows g and g + 8 of 16), scaled for base-2 scores (see
  // kLog2e), F16: loaded while the first keys are on their way.
  const float qscale = scale * kLog2e;
  uint32_t qa[KD][4];
#pragma unroll
  for (int dt = 0; dt < KD; ++dt) {
#pragma unroll
    for (int x = 0; x < 4; ++x) {
      const int hr = g + 8 * (x & 1), d = dt * 16 + 2 * t4 + 8 * (x >> 1);
      float2 f = make_float2(0.0f, 0.0f);
      if (hr < group) f = *reinterpret_cast<const float2*>(q + i * ldq + static_cast<int64_t>(kvh * group + hr) * D + d);
      qa[dt][x] = pack_half2(f.x * qscale, f.y * qscale);
    }
  }
  int step = 0;
  for (int64_t j0 = first; j0 < k1; j0 += kStride, ++step) {
    const int64_t ahead = j0 + (kGroupMmaSlots - 1) * kStride;
    if (ahead < k1) load_tile(ahead, ahead_row, slot[(step + kGroupMmaSlots - 1) % kGroupMmaSlots]);  // the slot this warp finished with last step
    asm volatile("cp.async.commit_group;\n" ::);
    ahead_row = tile_row(ahead + kStride);
    asm volatile("cp.async.wait_group %0;\n" ::"n"(kGroupMmaSlots - 1));
    __syncwarp();
    const GroupMmaSlot& s = slot[step % kGroupMmaSlots];
    float sc[2][4];  // S = Q·Kᵀ for 16 keys: two n-tiles of 8
    flash_scores<KD, 2>(qa, &s.k[0][0], kGroupMmaLd, lane, sc);
    if (j0 + kGroupMmaKeys > k1) {  // the range's last, partial tile
#pragma unroll
      for (int nt = 0; nt < 2; ++nt) {
#pragma unroll
        for (int x = 0; x < 4; ++x) {
          if (j0 + nt * 8 + 2 * t4 + (x & 1) >= k1) sc[nt][x] = -INFINITY;
        }
      }
    }
    flash_accumulate<2, ND>(sc, &s.v[0][0], kGroupMmaLd, lane, m, l, o);
    __syncwarp();  // every lane is done with this slot before the warp's next load overwrites it
  }
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    l[r] += __shfl_xor_sync(0xffffffffu, l[r], 1);
    l[r] += __shfl_xor_sync(0xffffffffu, l[r], 2);
    m[r] *= kLn2;  // the merges below work in natural units
  }
  // The warps' states through shared memory (the K/V slots are free once every warp is done).
  __syncthreads();
  GroupMmaMerge& mg = *reinterpret_cast<GroupMmaMerge*>(smem_raw);
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int hr = g + 8 * r;
    if (hr >= group) continue;
    if (t4 == 0) mg.m[warp][hr] = m[r], mg.l[warp][hr] = l[r];
#pragma unroll
    for (int nd = 0; nd < ND; ++nd) {
      mg.acc[hr][warp][nd * 8 + 2 * t4] = o[nd][2 * r];
      mg.acc[hr][warp][nd * 8 + 2 * t4 + 1] = o[nd][2 * r + 1];
    }
  }
  __syncthreads();
  for (int hr = 0; hr < group; ++hr) {
    float ms[kGroupMmaWarps], ls[kGroupMmaWarps];
#pragma unroll
    for (int w = 0; w < kGroupMmaWarps; ++w) ms[w] = mg.m[w][hr], ls[w] = mg.l[w][hr];
    store_merged<D / 32, kGroupMmaWarps>(ms, ls, mg.acc[hr], i, kvh * group + hr, D, n_head, split, n_split, out, ldo, part_acc, part_ml, rd);
  }
  if (counters != nullptr) merge_if_last(counters, i, kvh, gridDim.x, kvh * group, group, n_head, D, n_split, part_acc, part_ml, out, ldo, rd);
}

// Rows from which decode attention over a group runs on tensor cores (VIREO_CUDA_ATTN_MMA_ROWS;
// 0 turns it off). Under it (one or a few sequences, whose greedy decoding is checked token for
// token against the CPU backend) the F32 group kernel stays: the tensor-core one rounds Q and P
// to F16, and with few rows it has little to gain.
int group_mma_rows() {
  static const int rows = [] {
    const char* e = std::getenv("VIREO_CUDA_ATTN_MMA_ROWS");
    if (e == nullptr) return 8;
    const int r = std::atoi(e);
    return r <= 0 ? INT_MAX : r;
  }();
  return rows;
}

// Splits per (row, head): enough blocks to fill the GPU when there are few rows and long ranges.
// Splits of each row's keys across blocks. A block's 4 warps take 16 keys per step, one after
// another, so a long range in one block is latency-bound: split until every SM has several
// blocks, down to 16 keys a split. The shape depends on the cache size, not on the ranges, so a
// captured step stays valid as they grow.
// The query heads one block of the decode kernel covers: a KV head's whole group (head sizes up to
// 128 and groups up to 8), else one.
int attention_block_heads(const AttentionShape& a) {
  const int group = a.n_head / a.n_head_kv;
  if (a.head_dim > 128 || group > 8 || group < 2) return 1;
  return group <= 4 ? 4 : 8;
}

// Splits are used only under 8 blocks per SM (see attention_splits), so no (row, block) index of
// a split launch reaches this.
size_t merge_counter_slots() { return static_cast<size_t>(8 * sm_count()); }

int attention_splits(const AttentionShape& a) {
  static const int forced = [] {  // VIREO_CUDA_ATTN_SPLITS: splits of every split launch, for tuning
    const char* e = std::getenv("VIREO_CUDA_ATTN_SPLITS");
    return e != nullptr ? std::clamp(std::atoi(e), 0, kMaxSplits) : 0;
  }();
  static const int64_t min_keys = [] {  // VIREO_CUDA_ATTN_SPLIT_KEYS: fewest keys a split, for tuning
    const char* e = std::getenv("VIREO_CUDA_ATTN_SPLIT_KEYS");
    return e != nullptr ? std::max(1, std::atoi(e)) : 32;
  }();
  const int block_heads = attention_block_heads(a);
  const int64_t blocks = a.rows * (block_heads > 1 ? a.n_head_kv : a.n_head);
  if (blocks >= 8 * sm_count()) return 1;
  if (forced > 0) return forced;
  // Splits of at least 32 keys (of the bound; 16 to 32 of the actual range, which the decoder
  // bounds by the next power of two), but two when a bound over 16 would give one: a short range
  // over a large cache (one sequence of many served) gains nothing from more blocks, and each adds
  // a partial result to merge. Measured on an H100, one Llama-3-8B sequence, against 16 keys: at
  // 1,024 keys 5.6% faster decoding, at 256 even, at under 32 keys even (one split: 1.7% slower).
  const int64_t keys = a.max_keys > 0 ? std::min(a.max_keys, a.pages.n_keys) : a.pages.n_keys;
  const int64_t by_len = std::max<int64_t>((keys + min_keys - 1) / min_keys, keys > 16 ? 2 : 1);
  const int64_t by_fill = (8 * sm_count() + blocks - 1) / blocks;
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>({by_len, by_fill, kMaxSplits})));
}

template <int DT>
void launch_attention(const float* q, int64_t ldq, const void* k, const void* v, int64_t ld_kv, bool f16, const int32_t* ranges,
                      const AttentionShape& a, int splits, float* out, int64_t ldo, float* part_acc, float* part_ml,
                      unsigned* counters, Rounding rd, cudaStream_t s) {
  const int group = a.n_head / a.n_head_kv;
  if constexpr (DT <= 4) {
    const int block_heads = attention_block_heads(a);
    if (block_heads > 1) {
      const dim3 grid(static_cast<unsigned>(a.rows), static_cast<unsigned>(a.n_head_kv), static_cast<unsigned>(splits));
      const bool aligned = reinterpret_cast<uintptr_t>(k) % 16 == 0 && reinterpret_cast<uintptr_t>(v) % 16 == 0 && ld_kv % 8 == 0;
      if (f16 && a.head_dim == 128 && aligned) {
        const auto* kh = static_cast<const __half*>(k);
        const auto* vh = static_cast<const __half*>(v);
        if (a.rows >= group_mma_rows() && a.rows <= 65535 && ldq % 2 == 0 && reinterpret_cast<uintptr_t>(q) % 8 == 0) {
          const dim3 heads_first(grid.y, grid.x, grid.z);
          static const bool configured = [] {  // over 48 KiB of shared memory needs opting in
            cudaFuncSetAttribute(attention_group_mma_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(kGroupMmaSmem));
            return true;
          }();
          (void)configured;
          launch(attention_group_mma_kernel, heads_first, kGroupMmaWarps * kWarp, kGroupMmaSmem, s, q, ldq, kh, vh, ld_kv, ranges, a.n_head, group,
                 a.scale, a.pages, out, ldo, part_acc, part_ml, counters, rd);
          return;
        }
        if (block_heads == 4) {
          launch(attention_group128_kernel<4>, grid, kAttnWarps * kWarp, 0, s, q, ldq, kh, vh, ld_kv, ranges, a.n_head, group, a.scale,
                                                                           a.pages, out, ldo, part_acc, part_ml, counters, rd);
        } else {
          launch(attention_group128_kernel<8>, grid, kAttnWarps * kWarp, 0, s, q, ldq, kh, vh, ld_kv, ranges, a.n_head, group, a.scale,
                                                                           a.pages, out, ldo, part_acc, part_ml, counters, rd);
        }
        return;
      }
#define VIREO_ATTN_GROUP(G, F16)                                                                                                  \
  launch(attention_group_kernel<DT, G, F16>, grid, kAttnWarps * kWarp, 0, s, q, ldq, k, v, ld_kv, ranges, a.n_head, group, a.head_dim, \
                                                                        a.scale, a.pages, out, ldo, part_acc, part_ml, counters, rd)
      if (block_heads == 4) {
        if (f16) VIREO_ATTN_GROUP(4, true); else VIREO_ATTN_GROUP(4, false);
      } else {
        if (f16) VIREO_ATTN_GROUP(8, true); else VIREO_ATTN_GROUP(8, false);
      }
#undef VIREO_ATTN_GROUP
      return;
    }
  }
  const dim3 grid(static_cast<unsigned>(a.rows), static_cast<unsigned>(a.n_head), static_cast<unsigned>(splits));
  if (f16) {
    launch(attention_kernel<DT, true>, grid, kAttnWarps * kWarp, 0, s, q, ldq, k, v, ld_kv, ranges, a.n_head, group, a.head_dim, a.scale,
                                                                  a.pages, out, ldo, part_acc, part_ml, counters, rd);
  } else {
    launch(attention_kernel<DT, false>, grid, kAttnWarps * kWarp, 0, s, q, ldq, k, v, ld_kv, ranges, a.n_head, group, a.head_dim,
                                                                   a.scale, a.pages, out, ldo, part_acc, part_ml, counters, rd);
  }
}

}  // namespace

// ---------------------------------------------------------------- host entry points

void get_rows(const DeviceMatrix& table, const int32_t* ids, int64_t n, float* out, int64_t ldo, Stream s) {
  if (n == 0) return;
  launch(get_rows_kernel, static_cast<unsigned>(n), 128, 0, st(s), view_of(table), table.rows, ids, out, ldo);
  check_launch("get_rows");
}

void gather_rows(const void* src, int64_t src_stride_bytes, const int32_t* ids, int64_t n, int64_t row_bytes, void* out,
                 int64_t out_stride_bytes, Stream s) {
  if (n == 0) return;
  launch(gather_rows_kernel, static_cast<unsigned>(n), 256, 0, st(s), static_cast<const uint8_t*>(src), src_stride_bytes, ids, row_bytes,
                                                                 static_cast<uint8_t*>(out), out_stride_bytes);
  check_launch("gather_rows");
}

void dequantize_rows(const DeviceMatrix& w, int64_t row0, int64_t n_rows, void* out, bool bf16, Stream s) {
  const int64_t n = n_rows * (w.cols / 8);
  if (n == 0) return;
  launch(dequantize_rows_kernel, blocks_for(n, 256), 256, 0, st(s), view_of(w), row0, n_rows, out, bf16);
  check_launch("dequantize_rows");
}

void convert_f32(const float* x, int64_t ldx, int64_t rows, int64_t cols, void* out, bool bf16, Stream s) {
  if (rows * cols == 0) return;
  if (cols % 4 == 0 && float4_rows(x, ldx) && aligned(out, 8)) {
    launch(convert_f32_kernel<4>, rows_grid(rows, cols / 4, 256), 256, 0, st(s), x, ldx, rows, cols, out, bf16);
  } else {
    launch(convert_f32_kernel<1>, rows_grid(rows, cols, 256), 256, 0, st(s), x, ldx, rows, cols, out, bf16);
  }
  check_launch("convert_f32");
}

void binary(Binary op, const float* a, int64_t lda, const float* b, int64_t ldb, float* out, int64_t ldo, int64_t rows,
            int64_t cols, Stream s) {
  if (rows * cols == 0) return;
  const bool b_vec = op == Binary::Gelu || float4_rows(b, ldb);
  if (cols % 4 == 0 && float4_rows(a, lda) && float4_rows(out, ldo) && b_vec) {
    launch(binary_kernel<4>, rows_grid(rows, cols / 4, 256), 256, 0, st(s), op, a, lda, b, ldb, out, ldo, rows, cols);
  } else {
    launch(binary_kernel<1>, rows_grid(rows, cols, 256), 256, 0, st(s), op, a, lda, b, ldb, out, ldo, rows, cols);
  }
  check_launch("elementwise");
}

void add_bias(float* x, int64_t ldx, int64_t rows, int64_t cols, const float* bias, Stream s) {
  if (rows * cols == 0) return;
  launch(add_bias_kernel, rows_grid(rows, cols, 256), 256, 0, st(s), x, ldx, rows, cols, bias);
  check_launch("add_bias");
}

// Sizes qx for rows x cols rounded activations (cols whole blocks of 32); `what` names the op.
void prepare_next(const NextActivations& next, int64_t rows, int64_t cols, const char* what) {
  if (!next.any()) return;
  if (cols % 32 != 0) throw Error(ErrorCode::InvalidArgument, std::string("cuda ") + what + ": the next product's activations need whole blocks of 32 columns");
  if (next.qx != nullptr) {
    next.qx->ensure(static_cast<size_t>(rows * (cols / 32)));
    next.qx->n_tokens = static_cast<int>(rows);
    next.qx->cols = cols;
  }
}

void add_rms_norm(float* x, int64_t ldx, const float* h, int64_t ldh, const float* w, float eps, int64_t rows, int64_t cols,
                  float* out, int64_t ldo, NextActivations next, Stream s, int h_splits, int64_t h_stride) {
  if (rows == 0) return;
  prepare_next(next, rows, cols, "add_rms_norm");
  const bool splits = h != nullptr && h_splits > 1;
  if (cols % 4 == 0 && cols <= 4 * 4096 && float4_rows(x, ldx) && float4_rows(w, 0) && float4_rows(out, ldo) &&
      (h == nullptr || float4_rows(h, ldh)) && (!splits || h_stride % 4 == 0)) {
    int v = static_cast<int>((cols + 4095) / 4096);  // runs of 4 a thread, for at most 1024 threads
    if (v == 3) v = 4;
    const int threads = static_cast<int>((cols / (4 * v) + 31) / 32 * 32);
    const int c = static_cast<int>(cols);
    const int hs = std::max(h_splits, 1);
#define VIREO_NORM4(S, V)                                                                                                       \
  launch(add_rms_norm4_kernel<S, V>, static_cast<unsigned>(rows), threads, 0, st(s), x, ldx, h, ldh, hs, h_stride, w, eps, c, out, ldo, \
         Rounding(next))
    switch (v + (splits ? 4 : 0)) {
      case 1: VIREO_NORM4(false, 1); break;
      case 2: VIREO_NORM4(false, 2); break;
      case 4: VIREO_NORM4(false, 4); break;
      case 5: VIREO_NORM4(true, 1); break;
      case 6: VIREO_NORM4(true, 2); break;
      default: VIREO_NORM4(true, 4); break;
    }
#undef VIREO_NORM4
    check_launch("add_rms_norm");
    return;
  }
  // Enough threads that a row of up to 8k fits in registers (4 elements each at 4096).
  const int threads = static_cast<int>(std::clamp<int64_t>((cols / 4 + 31) / 32 * 32, 32, 1024));
  if (splits) {
    launch(add_rms_norm_kernel<true>, static_cast<unsigned>(rows), threads, 0, st(s), x, ldx, h, ldh, h_splits, h_stride, w, eps, cols,
           out, ldo, Rounding(next));
  } else {
    launch(add_rms_norm_kernel<false>, static_cast<unsigned>(rows), threads, 0, st(s), x, ldx, h, ldh, 1, int64_t{0}, w, eps, cols, out,
           ldo, Rounding(next));
  }
  check_launch("add_rms_norm");
}

void silu_mul_next(const float* gate, int64_t ldg, const float* up, int64_t ldu, int64_t rows, int64_t cols, float* out,
                   int64_t ldo, NextActivations next, Stream s) {
  if (rows == 0) return;
  if (!next.any()) throw Error(ErrorCode::InvalidArgument, "cuda silu_mul_next: no activations to write");
  prepare_next(next, rows, cols, "silu_mul_next");
  if (float4_rows(gate, ldg) && float4_rows(up, ldu) && float4_rows(out, ldo) && (rows <= 8 || rows > 32)) {
    const dim3 grid(blocks_for(cols, 4 * 256), static_cast<unsigned>(rows));
    launch(silu_mul_next4_kernel, grid, 256, 0, st(s), gate, ldg, up, ldu, cols, out, ldo, Rounding(next));
  } else {
    const dim3 grid(blocks_for(cols, 256), static_cast<unsigned>(rows));
    launch(silu_mul_next_kernel, grid, 256, 0, st(s), gate, ldg, up, ldu, cols, out, ldo, Rounding(next));
  }
  check_launch("silu_mul_next");
}

void layer_norm(const float* x, int64_t ldx, const float* w, const float* b, float eps, int64_t rows, int64_t cols, float* out,
                int64_t ldo, Stream s) {
  if (rows == 0) return;
  launch(layer_norm_kernel, static_cast<unsigned>(rows), kRowThreads, 0, st(s), x, ldx, w, b, eps, cols, out, ldo);
  check_launch("layer_norm");
}

void softmax(const float* x, int64_t ldx, int64_t rows, int64_t cols, float* out, int64_t ldo, Stream s) {
  if (rows == 0) return;
  launch(softmax_kernel, static_cast<unsigned>(rows), kRowThreads, 0, st(s), x, ldx, cols, out, ldo);
  check_launch("softmax");
}

void argmax(const float* x, int64_t ldx, int64_t rows, int64_t cols, int32_t* out, Stream s) {
  if (rows == 0) return;
  launch(argmax_kernel, static_cast<unsigned>(rows), 1024, 0, st(s), x, ldx, cols, out);
  check_launch("argmax");
}

void l2_normalize(const float* x, int64_t ldx, int64_t rows, int64_t cols, float* out, int64_t ldo, Stream s) {
  if (rows == 0) return;
  launch(l2_normalize_kernel, static_cast<unsigned>(rows), kRowThreads, 0, st(s), x, ldx, cols, out, ldo);
  check_launch("l2_normalize");
}

void mean_rows(const float* x, int64_t ldx, int64_t cols, const int32_t* ranges, int64_t n_seq, float* out, int64_t ldo, Stream s) {
  if (n_seq == 0) return;
  launch(mean_rows_kernel, static_cast<unsigned>(n_seq), kRowThreads, 0, st(s), x, ldx, cols, ranges, out, ldo);
  check_launch("mean_rows");
}

void rope(float* x, int64_t ldx, const int32_t* positions, int64_t rows, int n_heads, int head_dim, int n_dims, bool neox,
          float theta_scale, const float* freq_factors, float freq_scale, Stream s, float* x2, int64_t ldx2, int n_heads2) {
  const int64_t per_row = std::max(n_heads, x2 != nullptr ? n_heads2 : 0) * (n_dims / 2);
  if (rows * per_row == 0) return;
  const dim3 grid = rows_grid(rows, per_row, 128, x2 != nullptr ? 2 : 1);
  launch(rope_kernel, grid, 128, 0, st(s), x, ldx, n_heads, x2, ldx2, n_heads2, positions, rows,
         RopeArgs{head_dim, n_dims, neox, theta_scale, freq_factors, freq_scale});
  check_launch("rope");
}

void rope_kv_write(float* q, int64_t ldq, float* k, int64_t ldk, float* v, int64_t ldv, const int32_t* positions, const int32_t* cells,
                   int64_t rows, int n_head, int n_head_kv, int head_dim, bool neox, float theta_scale, const float* freq_factors,
                   float freq_scale, void* k_cache, void* v_cache, int64_t ld_cache, int64_t n_cells, bool f16, Stream s,
                   const QGemmSums& sums) {
  const int64_t per_row = std::max(n_head, n_head_kv) * (head_dim / 2);
  if (rows * per_row == 0) return;
  if (head_dim % 2 != 0) throw Error(ErrorCode::InvalidArgument, "cuda rope_kv_write: odd head size");
  launch(rope_kv_write_kernel, rows_grid(rows, per_row, 128, 3), 128, 0, st(s), q, ldq, k, ldk, v, ldv, positions, cells, rows, n_head,
         n_head_kv, RopeArgs{head_dim, head_dim, neox, theta_scale, freq_factors, freq_scale}, k_cache, v_cache, ld_cache, n_cells, f16,
         sums);
  check_launch("rope_kv_write");
}

void kv_write(const float* k, int64_t ldk, const float* v, int64_t ldv, const int32_t* cells, int64_t rows, int64_t cols,
              void* k_cache, void* v_cache, int64_t ld_cache, int64_t n_cells, bool f16, Stream s) {
  if (rows * cols == 0) return;
  launch(kv_write_kernel, rows_grid(rows, cols, 256), 256, 0, st(s), k, ldk, v, ldv, cells, rows, cols, k_cache, v_cache, ld_cache,
                                                                  n_cells, f16);
  check_launch("kv_write");
}

size_t attention_scratch_floats(const AttentionShape& a) {
  const int splits = attention_splits(a);
  if (splits == 1) return 0;
  const size_t parts = static_cast<size_t>(a.rows) * a.n_head * splits;
  return merge_counter_slots() + parts * (static_cast<size_t>(a.head_dim) + 2);
}

void attention(const float* q, int64_t ldq, const void* k, const void* v, int64_t ld_kv, bool f16, const int32_t* ranges,
               const AttentionShape& a, float* out, int64_t ldo, float* scratch, Stream s, NextActivations next) {
  if (a.rows == 0) return;
  if (next.any() && a.head_dim % 32 != 0) {
    throw Error(ErrorCode::InvalidArgument, "cuda attention: the next product's activations need head sizes that are whole blocks of 32");
  }
  prepare_next(next, a.rows, int64_t{a.n_head} * a.head_dim, "attention");
  const Rounding rd(next);
  if (a.head_dim > 256) throw Error(ErrorCode::Unsupported, "cuda attention: head size " + std::to_string(a.head_dim) + " > 256");
  // Many query rows (prefill, encoders): tensor cores, for the head sizes they are built for.
  const bool aligned = ld_kv % 8 == 0 && reinterpret_cast<uintptr_t>(k) % 16 == 0 && reinterpret_cast<uintptr_t>(v) % 16 == 0;
  if (f16 && aligned && a.shared_ranges && a.rows >= 16 && (a.head_dim == 32 || a.head_dim == 64 || a.head_dim == 128)) {
    if (a.head_dim == 32) {
      launch_flash<32>(q, ldq, k, v, ld_kv, ranges, a, out, ldo, st(s));
    } else if (a.head_dim == 64) {
      launch_flash<64>(q, ldq, k, v, ld_kv, ranges, a, out, ldo, st(s));
    } else {
      launch_flash<128>(q, ldq, k, v, ld_kv, ranges, a, out, ldo, st(s));
    }
    check_launch("flash attention");
    const int64_t cols = int64_t{a.n_head} * a.head_dim;
    if (next.qx != nullptr) quantize_activations(out, ldo, static_cast<int>(a.rows), cols, *next.qx, s);
    if (next.x16 != nullptr) qgemm_write_x(out, ldo, static_cast<int>(a.rows), cols, next.x16, s);
    return;
  }
  const int splits = attention_splits(a);
  const size_t parts = static_cast<size_t>(a.rows) * a.n_head * splits;
  // Scratch: the merge counters (zero when the scratch is new; every merge rearms its own, and
  // they stay where they are whatever the shape), then the partial results. A few splits (a batch
  // of rows) merge in their last block; many (one row over a long cache) in a launch of their own,
  // which spreads the merge's loads wider (measured on an H100, Llama-3-8B Q4_0: one row decodes
  // 12% slower when its 40 splits merge in place).
  constexpr int kFusedMergeSplits = 8;
  auto* counters = splits > 1 && splits <= kFusedMergeSplits ? reinterpret_cast<unsigned*>(scratch) : nullptr;
  float* part_acc = splits > 1 ? scratch + merge_counter_slots() : nullptr;
  float* part_ml = splits > 1 ? part_acc + parts * a.head_dim : nullptr;
  const int dt = (a.head_dim + 31) / 32;
  switch (dt) {
#define VIREO_ATTN_CASE(N) \
  case N: launch_attention<N>(q, ldq, k, v, ld_kv, f16, ranges, a, splits, out, ldo, part_acc, part_ml, counters, rd, st(s)); break;
    VIREO_ATTN_CASE(1) VIREO_ATTN_CASE(2) VIREO_ATTN_CASE(3) VIREO_ATTN_CASE(4)
    VIREO_ATTN_CASE(5) VIREO_ATTN_CASE(6) VIREO_ATTN_CASE(7) VIREO_ATTN_CASE(8)
#undef VIREO_ATTN_CASE
  }
  check_launch("attention");
  if (splits > 1 && counters == nullptr) {
    const dim3 grid(static_cast<unsigned>(a.rows), static_cast<unsigned>(a.n_head));
    launch(attention_combine_kernel, grid, 128, 0, st(s), a.n_head, a.head_dim, splits, part_acc, part_ml, out, ldo, rd);
    check_launch("attention combine");
  }
}

}  // namespace vireo::cuda
