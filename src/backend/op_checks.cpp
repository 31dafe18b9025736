#include "backend/op_checks.h"

#include "vireo/core/error.h"

namespace vireo::op_checks {

void require(bool ok, const char* op, const char* what) {
  if (!ok) fail(ErrorCode::InvalidArgument, "{}: {}", op, what);
}

void require_f32(const Buffer& b, const char* op) { require(b.type() == DType::F32, op, "activations must be F32"); }

void require_shape(const Buffer& b, int64_t rows, int64_t cols, const char* op, const char* what) {
  if (b.rows() != rows || b.cols() != cols) {
    fail(ErrorCode::InvalidArgument, "{}: {} is [{}, {}], expected [{}, {}]", op, what, b.rows(), b.cols(), rows, cols);
  }
}

void rope(const Buffer& x, const Buffer& positions, int n_heads, int head_dim, const RopeParams& p) {
  require_f32(x, "rope");
  require(positions.type() == DType::I32 && positions.cols() == 1 && positions.rows() == x.rows(), "rope",
          "positions must be I32 [n, 1]");
  require(x.cols() == int64_t{n_heads} * head_dim, "rope", "x must be [n, n_heads*head_dim]");
  require(p.n_dims > 0 && p.n_dims <= head_dim && p.n_dims % 2 == 0, "rope", "n_dims must be even and <= head_dim");
  require(p.freq_factors.empty() || static_cast<int>(p.freq_factors.size()) == p.n_dims / 2, "rope",
          "freq_factors must have n_dims/2 values");
}

namespace {
bool is_cache_type(DType t) { return t == DType::F16 || t == DType::F32 || t == DType::Q8_0; }
}  // namespace

void kv_write(const Buffer& k, const Buffer& v, const Buffer& cells, const Buffer& k_cache, const Buffer& v_cache) {
  require_f32(k, "kv_write");
  require_f32(v, "kv_write");
  require_shape(v, k.rows(), k.cols(), "kv_write", "v");
  require(cells.type() == DType::I32 && cells.cols() == 1 && cells.rows() == k.rows(), "kv_write", "cells must be I32 [n, 1]");
  require(k_cache.type() == v_cache.type() && is_cache_type(k_cache.type()), "kv_write", "caches must both be F16, F32 or Q8_0");
  require(k_cache.cols() == k.cols() && v_cache.cols() == k.cols() && v_cache.rows() == k_cache.rows(), "kv_write",
          "caches must be [cells, n_head_kv*head_dim]");
}

void attention(const Buffer& q, const Buffer& k, const Buffer& v, const Buffer& ranges, const Buffer& blocks,
               const AttentionParams& p, const Buffer& out) {
  require_f32(q, "attention");
  require(p.n_head > 0 && p.n_head_kv > 0 && p.n_head % p.n_head_kv == 0 && p.head_dim > 0, "attention",
          "n_head must be a multiple of n_head_kv");
  require(q.cols() == int64_t{p.n_head} * p.head_dim, "attention", "q must be [n, n_head*head_dim]");
  require_shape(out, q.rows(), q.cols(), "attention", "out");
  require(k.type() == v.type() && is_cache_type(k.type()), "attention", "k and v must both be F16, F32 or Q8_0");
  require(k.type() != DType::Q8_0 || p.head_dim % 32 == 0, "attention", "a Q8_0 cache needs whole blocks per head (head_dim % 32)");
  require(k.cols() == int64_t{p.n_head_kv} * p.head_dim && v.cols() == k.cols() && v.rows() == k.rows() && k.stride() == v.stride(),
          "attention", "k and v must be [cells, n_head_kv*head_dim]");
  require(ranges.type() == DType::I32 && ranges.cols() == 2 && ranges.rows() == q.rows(), "attention", "ranges must be I32 [n, 2]");
  if (!blocks.empty()) {
    const int b = p.kv_block_size;
    require(blocks.type() == DType::I32 && blocks.cols() == 1 && blocks.contiguous(), "attention", "blocks must be I32 [n_blocks, 1]");
    require(b > 0 && (b & (b - 1)) == 0 && k.rows() % b == 0, "attention",
            "the KV block size must be a power of two that divides the cache's cells");
  }
}

KvPages kv_pages(const Buffer& k, const Buffer& blocks, const AttentionParams& p) {
  KvPages pages;
  pages.n_rows = k.rows();
  pages.n_keys = k.rows();
  if (!blocks.empty()) {
    pages.blocks = blocks.as<int32_t>();
    while ((1 << pages.block_shift) < p.kv_block_size) ++pages.block_shift;
    pages.n_keys = blocks.rows() << pages.block_shift;
  }
  return pages;
}

}  // namespace vireo::op_checks
