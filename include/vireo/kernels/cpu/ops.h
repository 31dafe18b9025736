// CPU kernels of the non-matmul ops, one row (or one attention head group) per call: the CPU
// backend spreads rows over its threads. Each has a reference in kernels/ref/ops.h.
#pragma once
#include <cstdint>

#include "vireo/core/dtype.h"
#include "vireo/formats/model.h"
#include "vireo/kernels/cpu/cpu_features.h"
#include "vireo/kernels/kv_pages.h"

namespace vireo::cpu {

void rms_norm_row(const float* x, const float* weight, float eps, int64_t d, float* out);
void layer_norm_row(const float* x, const float* weight, const float* bias, float eps, int64_t d, float* out);
void softmax_row(const float* x, int64_t d, float* out);
int32_t argmax_row(const float* x, int64_t d);
void l2_normalize_row(const float* x, int64_t d, float* out);

void add(const float* a, const float* b, int64_t n, float* out);
void mul(const float* a, const float* b, int64_t n, float* out);
void silu_mul(const float* gate, const float* up, int64_t n, float* out);
void gelu(const float* x, int64_t n, float* out);

void f32_to_f16(const float* x, int64_t n, uint16_t* out);

// Rotates n_heads heads of one token in place with a (cos, sin) table of n_dims/2 pairs
// (ref::rope_cos_sin).
void rope_row(float* x, const float* cos_sin, int n_heads, int head_dim, int n_dims, RopeStyle style);

// Attention for one query token and one KV head: the `n_q` query heads that share KV head
// `kv_head` (q and out point at the first of them, head_dim floats apart). Logical keys
// [begin, begin + count), rows `pages` maps them to, of caches with rows of kv_stride elements of kv_type (F16, F32, or Q8_0
// with head_dim a multiple of 32).
// scratch: at least n_q * count floats.
void attention_heads(const float* q, int n_q, const void* k, const void* v, DType kv_type, int64_t kv_stride,
                     int kv_head, int head_dim, int32_t begin, int32_t count, const KvPages& pages, float scale,
                     float* scratch, float* out, Isa isa);

namespace avx512 {
void attention_heads(const float* q, int n_q, const void* k, const void* v, DType kv_type, int64_t kv_stride,
                     int kv_head, int head_dim, int32_t begin, int32_t count, const KvPages& pages, float scale,
                     float* scratch, float* out);
void f32_to_f16(const float* x, int64_t n, uint16_t* out);
void silu_mul(const float* gate, const float* up, int64_t n, float* out);
}  // namespace avx512

}  // namespace vireo::cpu
