// Scalar reference ops: the oracle every backend kernel is tested against. Plain loops, double
// accumulation where it matters, written to state the math rather than to be fast.
//
// Matmul semantics (shared by every backend): the activations are first rounded to the weight
// type's "dot type" (as llama.cpp's vec_dot_type): F32 weights use F32 activations, F16 -> F16,
// BF16 -> F32 (llama.cpp rounds to BF16; widening is exact and no slower), Q4_0/Q4_1/Q5_0/
// Q5_1/Q8_0 -> Q8_0 blocks of 32, K-quants -> Q8_K blocks of 256.
// The product is then exact (integer sums) up to the float rounding of the final scaling, which
// the reference does in double from the dequantized values.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "vireo/core/dtype.h"
#include "vireo/formats/model.h"
#include "vireo/kernels/kv_pages.h"

namespace vireo::ref {

// The activation type a weight type's dot products use; throws Unsupported for types with none.
DType dot_type(DType weight_type);

// Rounds a row of activations to dot_type(weight_type), returned dequantized (what the dot
// product sees). n must be a multiple of the dot type's block size.
std::vector<float> round_activations(DType weight_type, const float* x, int64_t n);

// y[t, r] = Σ_c dequant(w)[r, c] · round_activations(x[t, :])[c].
// w: rows rows of row_bytes(type, cols) bytes; x: [n, cols]; y: [n, rows].
void matmul(DType type, const void* w, int64_t rows, int64_t cols, const float* x, int64_t n, float* y);

// out[i, :] = dequant(table row ids[i]). table rows of `cols` elements of `type`.
void get_rows(DType type, const void* table, int64_t cols, const int32_t* ids, int64_t n, float* out);

// Row-wise ops on x [n, d] (out may equal x).
void rms_norm(const float* x, const float* weight, float eps, int64_t n, int64_t d, float* out);
void layer_norm(const float* x, const float* weight, const float* bias, float eps, int64_t n, int64_t d, float* out);
void softmax(const float* x, int64_t n, int64_t d, float* out);
void argmax(const float* x, int64_t n, int64_t d, int32_t* out);
void l2_normalize(const float* x, int64_t n, int64_t d, float* out);
// out[s, :] = mean of rows [begin_s, begin_s + count_s) of x. ranges: [n_seq][2].
void mean_rows(const float* x, int64_t d, const int32_t* ranges, int64_t n_seq, float* out);

// Elementwise over n values.
void add(const float* a, const float* b, int64_t n, float* out);
void mul(const float* a, const float* b, int64_t n, float* out);
void silu_mul(const float* gate, const float* up, int64_t n, float* out);  // silu(gate) * up
void gelu(const float* x, int64_t n, float* out);                         // tanh approximation

// The (cos, sin) of each rotated pair of one position: cs[2*i], cs[2*i + 1] for i < n_dims/2.
// As llama.cpp computes it: theta_i = pos * theta^(-2i/n_dims) (built by repeated float
// multiplication), divided by freq_factors[i] when given, times freq_scale.
void rope_cos_sin(int32_t pos, float theta, int n_dims, const float* freq_factors, float freq_scale, float* cs);

// Rotates each head of x [n, n_heads*head_dim] in place. style Normal rotates (x[2i], x[2i+1]);
// NeoX rotates (x[i], x[i + n_dims/2]). Dimensions past n_dims pass through.
void rope(float* x, const int32_t* positions, int64_t n, int n_heads, int head_dim, RopeStyle style, float theta,
          int n_dims, const float* freq_factors, float freq_scale);

// Scaled dot-product attention, exactly as the Backend op (see backend.h). k/v: [cells, n_head_kv*head_dim]
// of kv_type (F16, F32, or Q8_0 with head_dim a multiple of 32). ranges: [n][2] (begin, count) of
// logical keys, which `pages` maps to cache rows (the default: key j is row j).
void attention(const float* q, const void* k, const void* v, DType kv_type, const int32_t* ranges, int64_t n,
               int n_head, int n_head_kv, int head_dim, float scale, float* out, const KvPages& pages = {});

}  // namespace vireo::ref
