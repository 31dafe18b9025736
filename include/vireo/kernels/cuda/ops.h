// CUDA kernels of the Backend ops other than the products (see gemv.h), as host functions that
// enqueue on a stream. Shapes follow backend.h; `ld*` are row strides in elements. Every kernel
// is tested against the reference op in tests/kernels/cuda_ops_test.cpp.
#pragma once
#include <cstddef>
#include <cstdint>

#include "vireo/kernels/cuda/gemv.h"
#include "vireo/kernels/cuda/qgemm.h"
#include "vireo/kernels/kv_pages.h"

namespace vireo::cuda {

// out[i, :] = row ids[i] of the table, as F32.
void get_rows(const DeviceMatrix& table, const int32_t* ids, int64_t n, float* out, int64_t ldo, Stream s);
// out[i, :] = src[ids[i], :] for rows of `row_bytes` bytes (any element type).
void gather_rows(const void* src, int64_t src_stride_bytes, const int32_t* ids, int64_t n, int64_t row_bytes, void* out,
                 int64_t out_stride_bytes, Stream s);
// Rows [row0, row0 + n_rows) of a weight as F16 (or BF16 when `bf16`), row-major [n_rows, cols].
void dequantize_rows(const DeviceMatrix& w, int64_t row0, int64_t n_rows, void* out, bool bf16, Stream s);
// x [rows, cols] F32 -> F16 (or BF16), contiguous out.
void convert_f32(const float* x, int64_t ldx, int64_t rows, int64_t cols, void* out, bool bf16, Stream s);

enum class Binary { Add, Mul, SiluMul, Gelu /* of a; b unused */ };
void binary(Binary op, const float* a, int64_t lda, const float* b, int64_t ldb, float* out, int64_t ldo, int64_t rows,
            int64_t cols, Stream s);
// x[r, :] += bias.
void add_bias(float* x, int64_t ldx, int64_t rows, int64_t cols, const float* bias, Stream s);
// Where an op also writes its output as the next product's activations, so that the product
// skips preparing them: rounded into qx exactly as quantize_activations rounds it (for the gemv
// kernels), and/or as F16 at x16 exactly as qgemm_load_x converts it (see qgemm_x_target).
// Needs cols a multiple of 32.
struct NextActivations {
  QuantizedActivations* qx = nullptr;
  void* x16 = nullptr;
  bool any() const { return qx != nullptr || x16 != nullptr; }
};

// x += h (h null: no add); out = rms_norm(x) * w, also written as `next`. A decoder's residual add,
// its next norm and the next product's activations in one launch. h may be a split product's
// partial sums (see QGemmSums): h_splits arrays h_stride floats apart, added here.
void add_rms_norm(float* x, int64_t ldx, const float* h, int64_t ldh, const float* w, float eps, int64_t rows, int64_t cols,
                  float* out, int64_t ldo, NextActivations next, Stream s, int h_splits = 1, int64_t h_stride = 0);
// out = silu(gate) * up, also written as `next` (at least one of its outputs).
void silu_mul_next(const float* gate, int64_t ldg, const float* up, int64_t ldu, int64_t rows, int64_t cols, float* out,
                   int64_t ldo, NextActivations next, Stream s);
void layer_norm(const float* x, int64_t ldx, const float* w, const float* b, float eps, int64_t rows, int64_t cols,
                float* out, int64_t ldo, Stream s);
void softmax(const float* x, int64_t ldx, int64_t rows, int64_t cols, float* out, int64_t ldo, Stream s);
void argmax(const float* x, int64_t ldx, int64_t rows, int64_t cols, int32_t* out, Stream s);
// out[r] = ref::draw_token(x row r, params row r): params [rows][5] (DrawParams), -1 where every
// logit is banned. One block per row (sample.cu).
void sample(const float* x, int64_t ldx, int64_t rows, int64_t cols, const float* params, int32_t* out, Stream s);
void l2_normalize(const float* x, int64_t ldx, int64_t rows, int64_t cols, float* out, int64_t ldo, Stream s);
// out[s, :] = mean of x rows [begin_s, begin_s + count_s); ranges [n_seq][2].
void mean_rows(const float* x, int64_t ldx, int64_t cols, const int32_t* ranges, int64_t n_seq, float* out, int64_t ldo,
               Stream s);

// Rotary embedding in place; angles built as the reference builds them (repeated float
// multiplication by theta_scale = theta^(-2/n_dims)). freq_factors: device, n_dims/2, or null.
// x2 (optional): a second tensor of n_heads2 heads rotated at the same positions in the same launch.
void rope(float* x, int64_t ldx, const int32_t* positions, int64_t rows, int n_heads, int head_dim, int n_dims, bool neox,
          float theta_scale, const float* freq_factors, float freq_scale, Stream s, float* x2 = nullptr, int64_t ldx2 = 0,
          int n_heads2 = 0);

// k, v [rows, cols] F32 into cache rows cells[i] < n_cells (F16 or F32 caches, row stride ld_cache).
void kv_write(const float* k, int64_t ldk, const float* v, int64_t ldv, const int32_t* cells, int64_t rows, int64_t cols,
              void* k_cache, void* v_cache, int64_t ld_cache, int64_t n_cells, bool f16, Stream s);
// rope of q (n_head heads) and k (n_head_kv), every dimension rotated, then kv_write of k and v
// (n_head_kv * head_dim columns), in one launch: the same values as the two ops. With `sums` (a
// split q/k/v product's, q's rows first, then k's, then v's), q, k and v are first added up from
// them (as qgemm_add_sums would) and written out.
void rope_kv_write(float* q, int64_t ldq, float* k, int64_t ldk, float* v, int64_t ldv, const int32_t* positions, const int32_t* cells,
                   int64_t rows, int n_head, int n_head_kv, int head_dim, bool neox, float theta_scale, const float* freq_factors,
                   float freq_scale, void* k_cache, void* v_cache, int64_t ld_cache, int64_t n_cells, bool f16, Stream s,
                   const QGemmSums& sums = {});

struct AttentionShape {
  int64_t rows = 0;  // query rows
  int n_head = 0, n_head_kv = 0, head_dim = 0;
  float scale = 0;
  KvPages pages;         // key j -> cache row (tables in device memory); pages.n_keys bounds every range
  int64_t max_keys = 0;  // a bound on every range's count, for the split (0: pages.n_keys)
  bool shared_ranges = false;  // rows come in runs over the same keys: tensor-core tiles of rows pay
};
// Floats of scratch `attention` needs for this shape (0: none). The scratch must be zeroed when
// it is allocated (it holds counters that each launch leaves at zero again).
size_t attention_scratch_floats(const AttentionShape& a);
// Query row i attends to keys [ranges[2i], ranges[2i] + ranges[2i+1]), at the cache rows a.pages maps
// them to. q/out [rows, n_head*head_dim]; k/v [cells, n_head_kv*head_dim] F16 or F32. Long ranges are split across blocks and combined
// (flash-decoding); the launch shape depends only on `a`, so it can be captured in a graph.
// next (optional): out also written as the output projection's activations (head sizes a
// multiple of 32).
void attention(const float* q, int64_t ldq, const void* k, const void* v, int64_t ld_kv, bool f16, const int32_t* ranges,
               const AttentionShape& a, float* out, int64_t ldo, float* scratch, Stream s, NextActivations next = {});

// F16 x F16 -> F32 GEMM throughput of cuBLAS on device 0, n x n x n, TFLOP/s (the roofline probe).
double gemm_f16_tflops(int n, int iters);

}  // namespace vireo::cuda
