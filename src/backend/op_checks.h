// The argument checks every backend makes before an op, in one place so that the CPU and CUDA
// backends refuse the same calls with the same messages ("op: what is wrong").
#pragma once
#include <cstdint>

#include "vireo/backend/backend.h"
#include "vireo/kernels/kv_pages.h"

namespace vireo::op_checks {

void require(bool ok, const char* op, const char* what);
void require_f32(const Buffer& b, const char* op);
void require_shape(const Buffer& b, int64_t rows, int64_t cols, const char* op, const char* what);

// x [n, n_heads*head_dim] F32, positions I32 [n, 1], n_dims and freq_factors consistent.
void rope(const Buffer& x, const Buffer& positions, int n_heads, int head_dim, const RopeParams& p);
// k, v F32 [n, kv]; cells I32 [n, 1]; caches both F16, F32 or Q8_0, [cells, kv].
void kv_write(const Buffer& k, const Buffer& v, const Buffer& cells, const Buffer& k_cache, const Buffer& v_cache);
// q/out [n, n_head*head_dim] F32; k, v F16, F32 or Q8_0 [cells, n_head_kv*head_dim] with one stride; ranges I32 [n, 2];
// blocks empty, or I32 [n_blocks, 1] with p.kv_block_size a power of two that divides the cells.
void attention(const Buffer& q, const Buffer& k, const Buffer& v, const Buffer& ranges, const Buffer& blocks,
               const AttentionParams& p, const Buffer& out);
// The key-to-row map of a checked attention call (its tables stay where they are, host or device).
KvPages kv_pages(const Buffer& k, const Buffer& blocks, const AttentionParams& p);

}  // namespace vireo::op_checks
