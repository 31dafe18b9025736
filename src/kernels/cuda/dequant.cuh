// Device-side reading of weights in every layout DeviceMatrix holds: eight consecutive
// elements of a row at a time (every block type's sub-blocks are multiples of 8, so the eight
// share their scales). Shared by the products, get_rows and the dequantization for prefill.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "vireo/core/dtype.h"

namespace vireo::cuda {

// Q6_K blocks are 210 bytes, so rows of them are not 16-byte aligned: at upload each block's
// quants and scales move to a 208-byte record and its d to a separate array.
constexpr int kQ6Bytes = 208;

struct WeightView {
  DType type;
  const uint8_t* levels;
  const __half* scales;  // Q4_0 / Q8_0 / Q6_K split layouts
  int64_t cols;
  int64_t row_bytes;
};

// One Q8_0 block of activations from the 32 lanes of a warp, lane i holding element i: as
// llama.cpp's reference rounds it (d = amax / 127 kept as F16, q = round(x / d)), stored as int8
// levels, the F32 scale and the block sum d * sum(q).
__device__ __forceinline__ void quantize_block_q8(float v, size_t blk, int lane, int8_t* xq, float* xd, float* xs) {
  float amax = fabsf(v);
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, o));
  const float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
  const int q = static_cast<int>(roundf(v * id));
  const float dh = __half2float(__float2half_rn(d));
  int sum = q;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
  xq[blk * 32 + lane] = static_cast<int8_t>(q);
  if (lane == 0) {
    xd[blk] = dh;
    xs[blk] = dh * static_cast<float>(sum);
  }
}

// The same block from 8 lanes of 4 consecutive elements each (lane % 8 == sub; the 8 lanes
// xor-adjacent): the same levels, scale and sum with a quarter of the shuffles. Every lane of the
// warp calls it; lanes of a block past the end (live = false) store nothing.
__device__ __forceinline__ void quantize_block_q8_x4(const float (&v)[4], size_t blk, int sub, bool live, int8_t* xq, float* xd,
                                                     float* xs) {
  float amax = fmaxf(fmaxf(fabsf(v[0]), fabsf(v[1])), fmaxf(fabsf(v[2]), fabsf(v[3])));
#pragma unroll
  for (int o = 4; o > 0; o >>= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, o));
  const float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
  int q[4], sum = 0;
#pragma unroll
  for (int k = 0; k < 4; ++k) {
    q[k] = static_cast<int>(roundf(v[k] * id));
    sum += q[k];
  }
  const float dh = __half2float(__float2half_rn(d));
#pragma unroll
  for (int o = 4; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
  if (!live) return;
  *reinterpret_cast<char4*>(xq + blk * 32 + 4 * sub) =
      make_char4(static_cast<signed char>(q[0]), static_cast<signed char>(q[1]), static_cast<signed char>(q[2]), static_cast<signed char>(q[3]));
  if (sub == 0) {
    xd[blk] = dh;
    xs[blk] = dh * static_cast<float>(sum);
  }
}

__device__ __forceinline__ float h2f(const uint8_t* p) {
  return __half2float(__ushort_as_half(static_cast<unsigned short>(p[0] | (p[1] << 8))));
}

// The 6-bit scale and min codes of sub-block j of q4_K / q5_K (see quant_blocks.h).
__device__ __forceinline__ void scale_min_k4(int j, const uint8_t* q, int& sc, int& m) {
  if (j < 4) {
    sc = q[j] & 63;
    m = q[j + 4] & 63;
  } else {
    sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
    m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
  }
}

// out[i] = element c + i of row r (c a multiple of 8).
__device__ __forceinline__ void dequant8(const WeightView& w, int64_t r, int64_t c, float out[8]) {
  switch (w.type) {
    case DType::F32: {
      const float4* p = reinterpret_cast<const float4*>(w.levels + r * w.row_bytes + c * 4);
      const float4 a = p[0], b = p[1];
      out[0] = a.x, out[1] = a.y, out[2] = a.z, out[3] = a.w, out[4] = b.x, out[5] = b.y, out[6] = b.z, out[7] = b.w;
      return;
    }
    case DType::F16:
    case DType::BF16: {
      const uint4 q = *reinterpret_cast<const uint4*>(w.levels + r * w.row_bytes + c * 2);
      const uint32_t words[4] = {q.x, q.y, q.z, q.w};
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        if (w.type == DType::F16) {
          out[2 * i] = __half2float(__ushort_as_half(static_cast<unsigned short>(words[i] & 0xFFFF)));
          out[2 * i + 1] = __half2float(__ushort_as_half(static_cast<unsigned short>(words[i] >> 16)));
        } else {
          out[2 * i] = __uint_as_float(words[i] << 16);
          out[2 * i + 1] = __uint_as_float(words[i] & 0xFFFF0000u);
        }
      }
      return;
    }
    case DType::Q4_0: {  // split layout: 16 level bytes per block
      const int64_t b = c / 32, nb = w.cols / 32;
      const int j = static_cast<int>(c % 32);
      const uint8_t* qs = w.levels + (r * nb + b) * 16;
      const float d = __half2float(w.scales[r * nb + b]);
#pragma unroll
      for (int i = 0; i < 8; ++i) {
        const int e = j + i;
        const int q = e < 16 ? (qs[e] & 0xF) : (qs[e - 16] >> 4);
        out[i] = d * static_cast<float>(q - 8);
      }
      return;
    }
    case DType::Q8_0: {
      const int64_t b = c / 32, nb = w.cols / 32;
      const int j = static_cast<int>(c % 32);
      const int8_t* qs = reinterpret_cast<const int8_t*>(w.levels + (r * nb + b) * 32);
      const float d = __half2float(w.scales[r * nb + b]);
#pragma unroll
      for (int i = 0; i < 8; ++i) out[i] = d * static_cast<float>(qs[j + i]);
      return;
    }
    case DType::Q4_1:
    case DType::Q5_0:
    case DType::Q5_1: {
      const bool has_m = w.type != DType::Q5_0, five = w.type != DType::Q4_1;
      const int bytes = w.type == DType::Q4_1 ? 20 : w.type == DType::Q5_0 ? 22 : 24;
      const uint8_t* blk = w.levels + r * w.row_bytes + (c / 32) * bytes;
      const int j = static_cast<int>(c % 32);
      const float d = h2f(blk);
      const float m = has_m ? h2f(blk + 2) : 0.0f;
      const uint8_t* qh = blk + (has_m ? 4 : 2);
      const uint8_t* qs = five ? qh + 4 : blk + 4;
      const uint32_t hbits = five ? (qh[0] | (qh[1] << 8) | (qh[2] << 16) | (static_cast<uint32_t>(qh[3]) << 24)) : 0u;
#pragma unroll
      for (int i = 0; i < 8; ++i) {
        const int e = j + i;
        int q = e < 16 ? (qs[e] & 0xF) : (qs[e - 16] >> 4);
        if (five) q |= static_cast<int>((hbits >> e) & 1u) << 4;
        out[i] = w.type == DType::Q5_0 ? d * static_cast<float>(q - 16) : d * static_cast<float>(q) + m;
      }
      return;
    }
    case DType::Q4_K:
    case DType::Q5_K: {
      const bool five = w.type == DType::Q5_K;
      const uint8_t* blk = w.levels + r * w.row_bytes + (c / 256) * (five ? 176 : 144);
      const int e0 = static_cast<int>(c % 256);
      const float d = h2f(blk), dmin = h2f(blk + 2);
      int sc, m;
      scale_min_k4(e0 / 32, blk + 4, sc, m);
      const float ds = d * static_cast<float>(sc), dm = dmin * static_cast<float>(m);
      const uint8_t* qh = blk + 16;
      const uint8_t* qs = five ? blk + 48 : blk + 16;
#pragma unroll
      for (int i = 0; i < 8; ++i) {
        const int e = e0 + i;
        const uint8_t byte = qs[32 * (e / 64) + e % 32];
        int q = (e % 64) >= 32 ? byte >> 4 : byte & 0xF;
        if (five) q |= ((qh[e % 32] >> (e / 32)) & 1) << 4;
        out[i] = ds * static_cast<float>(q) - dm;
      }
      return;
    }
    case DType::Q6_K: {  // split layout: [ql 128 | qh 64 | scales 16] per block, d in `scales`
      const int64_t b = c / 256, nb = w.cols / 256;
      const uint8_t* blk = w.levels + (r * nb + b) * kQ6Bytes;
      const int e0 = static_cast<int>(c % 256);
      const uint8_t* ql = blk;
      const uint8_t* qh = blk + 128;
      const int8_t* scales = reinterpret_cast<const int8_t*>(blk + 192);
      const float d = __half2float(w.scales[r * nb + b]) * static_cast<float>(scales[e0 / 16]);
#pragma unroll
      for (int i = 0; i < 8; ++i) {
        const int e = e0 + i, h = e / 128, k = (e % 128) / 32, l = e % 32;
        const uint8_t lo_byte = ql[64 * h + 32 * (k & 1) + l];
        const int lo = k < 2 ? lo_byte & 0xF : lo_byte >> 4;
        const int hi = (qh[32 * h + l] >> (2 * k)) & 3;
        out[i] = d * static_cast<float>((lo | (hi << 4)) - 32);
      }
      return;
    }
    default:
#pragma unroll
      for (int i = 0; i < 8; ++i) out[i] = __int_as_float(0x7fc00000);  // unsupported: NaN, never silently zero
      return;
  }
}

}  // namespace vireo::cuda
