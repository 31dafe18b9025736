// The CUDA backend against the CPU backend: every op on fresh random inputs of awkward sizes,
// products of every weight type on both the decode (gemv) and the batched (GEMM) path, then
// whole models: synthetic decoders of real layer shapes (teacher-forced next-token
// distributions), stories260K (greedy continuations token for token) and a synthetic encoder.
// Skipped where vireo was built without CUDA or no GPU is present.
#include <gtest/gtest.h>

#include "vireo/backend/backend.h"

#if defined(VIREO_HAS_CUDA)
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <random>
#include <tuple>
#include <vector>

#include "test_util.h"
#include "vireo/kernels/cuda/gemv.h"
#include "vireo/kernels/ref/quant.h"
#include "draw_oracle.h"
#include "logit_agreement.h"
#include "vireo/models/language_model.h"
#include "vireo/models/synth.h"
#include "vireo/runtime/generator.h"
#include "vireo/runtime/kv_cache.h"
#include "vireo/tokenizer/tokenizer.h"

namespace vireo {
namespace {

#define VIREO_REQUIRE_GPU() \
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device"

struct Pair {
  Pair() {
    CpuBackendOptions o;
    o.n_threads = 2;
    cpu = create_cpu_backend(o);
    gpu = create_cuda_backend(0);
  }
  std::unique_ptr<Backend> cpu, gpu;
};

std::vector<float> random_floats(size_t n, std::mt19937& rng, float lo = -1.0f, float hi = 1.0f) {
  std::uniform_real_distribution<float> u(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = u(rng);
  return v;
}

Buffer put(Backend& be, DType type, int64_t rows, int64_t cols, const void* host) {
  Buffer b = be.alloc(type, rows, cols);
  be.upload(b, host);
  return b;
}
// A buffer poisoned with NaN first, so an op that skips an element shows.
Buffer poisoned(Backend& be, int64_t rows, int64_t cols) {
  std::vector<float> nan(static_cast<size_t>(rows * cols), std::nanf(""));
  return put(be, DType::F32, rows, cols, nan.data());
}
std::vector<float> get(Backend& be, const Buffer& b) {
  std::vector<float> v(static_cast<size_t>(b.rows() * b.cols()));
  be.download(b, v.data());
  return v;
}

// Largest |a - b| relative to the largest |b| (1 where they are all 0).
double rel_error(const std::vector<float>& a, const std::vector<float>& b) {
  double err = 0, mag = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::isnan(a[i]) != std::isnan(b[i])) return INFINITY;
    err = std::max(err, std::fabs(static_cast<double>(a[i]) - b[i]));
    mag = std::max(mag, std::fabs(static_cast<double>(b[i])));
  }
  return err / std::max(mag, 1e-30);
}

Tensor tensor_of(const std::string& name, DType type, int64_t rows, int64_t cols, const std::vector<uint8_t>& bytes) {
  Tensor t;
  t.name = name;
  t.type = type;
  t.shape = rows == 1 ? std::vector<uint64_t>{static_cast<uint64_t>(cols)}
                      : std::vector<uint64_t>{static_cast<uint64_t>(rows), static_cast<uint64_t>(cols)};
  t.data = bytes.data();
  t.nbytes = bytes.size();
  return t;
}

std::vector<uint8_t> quantized(DType type, const std::vector<float>& x, int64_t rows, int64_t cols) {
  const size_t rb = ref::row_bytes(type, cols);
  std::vector<uint8_t> out(rb * static_cast<size_t>(rows));
  for (int64_t r = 0; r < rows; ++r) ref::quantize_row(type, x.data() + r * cols, out.data() + r * rb, cols);
  return out;
}

TEST(CudaBackend, ElementwiseAndRowOpsMatchTheCpu) {
  VIREO_REQUIRE_GPU();
  Pair p;
  std::mt19937 rng(11);
  // 8192 and 12800 columns: the norm's runs of 4 two and four to a thread. 70001 rows: more than
  // a grid's 65535 rows (the elementwise kernels walk rows with a stride).
  for (auto [rows, cols] :
       {std::pair<int64_t, int64_t>{1, 8}, {3, 33}, {17, 4095}, {5, 4096}, {2, 8192}, {3, 12800}, {70001, 12}, {70001, 3}}) {
    SCOPED_TRACE(testing::Message() << rows << "x" << cols);
    const auto a = random_floats(static_cast<size_t>(rows * cols), rng, -4, 4);
    const auto b = random_floats(static_cast<size_t>(rows * cols), rng, -4, 4);
    const auto wv = random_floats(static_cast<size_t>(cols), rng, 0.5f, 1.5f);
    const auto bv = random_floats(static_cast<size_t>(cols), rng);
    std::vector<uint8_t> wb(wv.size() * 4), bb(bv.size() * 4);
    std::memcpy(wb.data(), wv.data(), wb.size());
    std::memcpy(bb.data(), bv.data(), bb.size());
    const Tensor wt = tensor_of("w", DType::F32, 1, cols, wb), bt = tensor_of("b", DType::F32, 1, cols, bb);
    auto run = [&](Backend& be, int op) {
      Buffer x = put(be, DType::F32, rows, cols, a.data()), y = put(be, DType::F32, rows, cols, b.data());
      Buffer out = poisoned(be, rows, cols);
      auto w = be.prepare(wt, WeightUse::Vector), bias = be.prepare(bt, WeightUse::Vector);
      switch (op) {
        case 0: be.add(x, y, out); break;
        case 1: be.mul(x, y, out); break;
        case 2: be.silu_mul(x, y, out); break;
        case 3: be.gelu(x, out); break;
        case 4: be.rms_norm(x, *w, 1e-5f, out); break;
        case 5: be.layer_norm(x, *w, *bias, 1e-5f, out); break;
        case 6: be.softmax(x, out); break;
        case 7: be.l2_normalize(x, out); break;
        case 8: be.add_bias(x, *bias); out = x; break;
        case 9: be.add(x, y, x); out = x; break;  // in place
      }
      return get(be, out);
    };
    for (int op = 0; op < 10; ++op) {
      SCOPED_TRACE(op);
      EXPECT_LE(rel_error(run(*p.gpu, op), run(*p.cpu, op)), 2e-5);
    }
    // argmax, with ties broken toward the first index.
    std::vector<float> tied = a;
    tied[static_cast<size_t>(cols - 1)] = 9.0f;
    tied[static_cast<size_t>(cols / 2)] = 9.0f;
    for (Backend* be : {p.cpu.get(), p.gpu.get()}) {
      Buffer x = put(*be, DType::F32, rows, cols, tied.data());
      Buffer idx = be->alloc(DType::I32, rows, 1);
      be->argmax(x, idx);
      std::vector<int32_t> got(static_cast<size_t>(rows));
      be->download(idx, got.data());
      EXPECT_EQ(got[0], cols / 2) << be->name();
    }
  }
}

// Sampling on the GPU draws the token that ref::draw_token draws from the same u, but where u * Z
// falls right at the edge between two tokens (float sums in another order).
TEST(CudaBackend, SampleDrawsLikeTheReference) {
  VIREO_REQUIRE_GPU();
  Pair p;
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> uniform(0.0f, 1.0f);
  const std::vector<DrawParams> settings = {
      {0.0f, 0, 1.0f, 0.0f, 0},   {1.0f, 0, 1.0f, 0.0f, 0},     {0.7f, 0, 1.0f, 0.0f, 0},   {1.3f, 40, 1.0f, 0.0f, 0},
      {1.0f, 0, 0.9f, 0.0f, 0},   {1.0f, 0, 1.0f, 0.05f, 0},    {0.8f, 40, 0.95f, 0.05f, 0}, {1.0f, 1, 1.0f, 0.0f, 0},
      {2.0f, 0, 0.3f, 0.0f, 0},   {1.0f, 5000, 0.99f, 0.0f, 0},
  };
  int compared = 0, at_edges = 0;
  for (int64_t n : {int64_t{33}, int64_t{1000}, int64_t{32000}, int64_t{128256}}) {
    for (float sd : {0.5f, 3.0f}) {
      const int64_t rows = 24;
      std::vector<float> l(static_cast<size_t>(rows * n));
      for (auto& x : l) x = std::normal_distribution<float>(0.0f, sd)(rng);
      for (int64_t j = 0; j < n; j += 7) l[static_cast<size_t>(3 * n + j)] = -INFINITY;  // banned tokens in row 3
      std::fill(l.begin() + 23 * n, l.end(), -INFINITY);                                // row 23: nothing to draw
      std::vector<DrawParams> params(static_cast<size_t>(rows));
      for (size_t r = 0; r < params.size(); ++r) {
        params[r] = settings[r % settings.size()];
        params[r].u = uniform(rng);
      }
      Buffer x = put(*p.gpu, DType::F32, rows, n, l.data()), pb = put(*p.gpu, DType::F32, rows, 5, params.data());
      Buffer out = p.gpu->alloc(DType::I32, rows, 1);
      p.gpu->sample(x, pb, out);
      std::vector<int32_t> got(static_cast<size_t>(rows));
      p.gpu->download(out, got.data());
      EXPECT_EQ(got[23], -1);
      for (int64_t r = 0; r + 1 < rows; ++r) {
        const std::vector<float> row(l.begin() + r * n, l.begin() + (r + 1) * n);
        const DrawParams& pr = params[static_cast<size_t>(r)];
        const int32_t want = ref::draw_token(row.data(), n, pr);
        ++compared;
        if (got[static_cast<size_t>(r)] == want) continue;
        ++at_edges;
        EXPECT_LT(test::oracle_draw(row, pr).margin, 1e-4) << "n " << n << " row " << r << " T " << pr.temperature << " k "
                                                           << pr.top_k << " p " << pr.top_p << " min_p " << pr.min_p << " u "
                                                           << pr.u << ": " << got[static_cast<size_t>(r)] << " vs " << want;
      }
    }
  }
  EXPECT_LE(at_edges, compared / 50);
}

// Writes K and V (F32, cells x kvd, in the order of cell_ids) into a fresh cache of kv_type, runs
// attention of `rows` query rows over it and returns the output.
std::vector<float> attention_over_cache(Backend& be, DType kv_type, const std::vector<float>& k, const std::vector<float>& v,
                                        const std::vector<int32_t>& cell_ids, int64_t kvd, const float* q, const int32_t* ranges,
                                        int64_t rows, const AttentionParams& ap, const std::vector<int32_t>& blocks = {}) {
  const auto cells = static_cast<int64_t>(cell_ids.size()), qd = int64_t{ap.n_head} * ap.head_dim;
  Buffer kc = be.alloc(kv_type, cells, kvd), vc = be.alloc(kv_type, cells, kvd);
  Buffer kb = put(be, DType::F32, cells, kvd, k.data()), vb = put(be, DType::F32, cells, kvd, v.data());
  Buffer cb = put(be, DType::I32, cells, 1, cell_ids.data());
  be.kv_write(kb, vb, cb, kc, vc);
  Buffer qb = put(be, DType::F32, rows, qd, q), rb = put(be, DType::I32, rows, 2, ranges);
  Buffer bb = blocks.empty() ? Buffer() : put(be, DType::I32, static_cast<int64_t>(blocks.size()), 1, blocks.data());
  Buffer out = poisoned(be, rows, qd);
  be.attention(qb, kc, vc, rb, bb, ap, out);
  return get(be, out);
}

TEST(CudaBackend, RowsRopeCacheAndAttentionMatchTheCpu) {
  VIREO_REQUIRE_GPU();
  Pair p;
  std::mt19937 rng(12);
  // Embedding rows of several types.
  for (DType type : {DType::F32, DType::F16, DType::Q4_0, DType::Q8_0, DType::Q6_K}) {
    const int64_t rows = 37, cols = 512;
    const auto x = random_floats(static_cast<size_t>(rows * cols), rng);
    const auto bytes = type == DType::F32 ? std::vector<uint8_t>(reinterpret_cast<const uint8_t*>(x.data()),
                                                                 reinterpret_cast<const uint8_t*>(x.data() + x.size()))
                                          : quantized(type, x, rows, cols);
    const Tensor t = tensor_of("emb", type, rows, cols, bytes);
    const std::vector<int32_t> ids = {36, 0, 5, 5, 17};
    auto run = [&](Backend& be) {
      auto w = be.prepare(t, WeightUse::Rows);
      Buffer idb = put(be, DType::I32, 5, 1, ids.data()), out = poisoned(be, 5, cols);
      be.get_rows(*w, idb, out);
      return get(be, out);
    };
    EXPECT_EQ(rel_error(run(*p.gpu), run(*p.cpu)), 0.0) << static_cast<int>(type);
  }
  // Rope in both styles, with llama3 frequency divisors and linear scaling.
  for (RopeStyle style : {RopeStyle::Normal, RopeStyle::NeoX}) {
    const int n = 7, heads = 3, hd = 64;
    const auto x = random_floats(static_cast<size_t>(n * heads * hd), rng);
    const std::vector<int32_t> pos = {0, 1, 2, 100, 2047, 8191, 131071};
    RopeParams rp;
    rp.style = style;
    rp.theta = 500000.0f;
    rp.n_dims = 48;
    rp.freq_factors = random_floats(24, rng, 1.0f, 8.0f);
    rp.freq_scale = 0.5f;
    auto run = [&](Backend& be) {
      Buffer xb = put(be, DType::F32, n, heads * hd, x.data()), pb = put(be, DType::I32, n, 1, pos.data());
      be.rope(xb, pb, heads, hd, rp);
      return get(be, xb);
    };
    EXPECT_LE(rel_error(run(*p.gpu), run(*p.cpu)), 1e-5);
  }
  // Cache writes, then attention over ranges of every kind (empty, one cell, long, grouped heads).
  for (DType kv_type : {DType::F16, DType::F32}) {
    for (int head_dim : {8, 64, 80, 128}) {
      SCOPED_TRACE(testing::Message() << "kv " << static_cast<int>(kv_type) << " head_dim " << head_dim);
      AttentionParams ap;
      ap.n_head = 8;
      ap.n_head_kv = 2;
      ap.head_dim = head_dim;
      ap.scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
      const int64_t cells = 3000, kvd = int64_t{ap.n_head_kv} * head_dim, qd = int64_t{ap.n_head} * head_dim;
      const auto k = random_floats(static_cast<size_t>(cells * kvd), rng, -2, 2);
      const auto v = random_floats(static_cast<size_t>(cells * kvd), rng, -2, 2);
      std::vector<int32_t> cell_ids(static_cast<size_t>(cells));
      for (int64_t i = 0; i < cells; ++i) cell_ids[static_cast<size_t>(i)] = static_cast<int32_t>((i * 7) % cells);
      const std::vector<int32_t> ranges = {0, 0, 5, 1, 0, 3000, 100, 1000, 2999, 1, 10, 2500};
      const int64_t nq = static_cast<int64_t>(ranges.size() / 2);
      const auto q = random_floats(static_cast<size_t>(nq * qd), rng, -2, 2);
      for (int64_t nq_used : {int64_t{1}, nq}) {  // one query row (split across blocks) and several
        auto run = [&](Backend& be) {
          return attention_over_cache(be, kv_type, k, v, cell_ids, kvd, q.data(), ranges.data() + (nq_used == 1 ? 4 : 0), nq_used, ap);
        };
        EXPECT_LE(rel_error(run(*p.gpu), run(*p.cpu)), 2e-4) << nq_used << " query rows";
      }
      // Many query rows: with shared key tiles (prefill; tensor cores where the head size allows,
      // so Q and P are rounded to F16) and without (many sequences' rows). Causal-like ranges,
      // shifted ones, an empty one.
      const int64_t many = 150;
      std::vector<int32_t> wide(static_cast<size_t>(2 * many));
      for (int64_t i = 0; i < many; ++i) {
        const int32_t b = static_cast<int32_t>((i * 37) % 700), c = static_cast<int32_t>(std::min<int64_t>(cells - b, i * 19));
        wide[static_cast<size_t>(2 * i)] = b;
        wide[static_cast<size_t>(2 * i + 1)] = c;
      }
      const auto qm = random_floats(static_cast<size_t>(many * qd), rng, -2, 2);
      auto run_many = [&](Backend& be, bool shared) {
        AttentionParams apm = ap;
        apm.shared_ranges = shared;
        return attention_over_cache(be, kv_type, k, v, cell_ids, kvd, qm.data(), wide.data(), many, apm);
      };
      const auto want = run_many(*p.cpu, false);
      EXPECT_LE(rel_error(run_many(*p.gpu, true), want), 3e-3) << many << " query rows, shared key tiles";
      // Grouped heads of 128 over an F16 cache run on tensor cores from 8 rows (Q and P in F16).
      const double per_row_tol = kv_type == DType::F16 && head_dim == 128 ? 3e-3 : 2e-4;
      EXPECT_LE(rel_error(run_many(*p.gpu, false), want), per_row_tol) << many << " query rows, one block per row";
    }
  }
}

// Decode attention of a batch of sequences over an F16 cache, heads of 128 (the tensor-core group
// kernel): groups of 2, 4 and 8 query heads, ranges of every length (empty, under one 16-key
// tile, over one split, the whole cache) at unaligned starts, and batches on both sides of the
// 8 rows where that kernel takes over.
TEST(CudaBackend, GroupedDecodeAttentionMatchesTheCpu) {
  VIREO_REQUIRE_GPU();
  Pair p;
  std::mt19937 rng(29);
  const int head_dim = 128;
  const int64_t cells = 1500;
  for (int n_head_kv : {16, 8, 4}) {
    AttentionParams ap;
    ap.n_head = 32;
    ap.n_head_kv = n_head_kv;
    ap.head_dim = head_dim;
    ap.scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
    const int64_t kvd = int64_t{n_head_kv} * head_dim, qd = int64_t{ap.n_head} * head_dim;
    const auto k = random_floats(static_cast<size_t>(cells * kvd), rng, -2, 2);
    const auto v = random_floats(static_cast<size_t>(cells * kvd), rng, -2, 2);
    std::vector<int32_t> cell_ids(static_cast<size_t>(cells));
    for (int64_t i = 0; i < cells; ++i) cell_ids[static_cast<size_t>(i)] = static_cast<int32_t>(i);
    for (int64_t rows : {int64_t{7}, int64_t{8}, int64_t{45}}) {
      SCOPED_TRACE(testing::Message() << "group " << ap.n_head / n_head_kv << ", " << rows << " rows");
      std::vector<int32_t> ranges(static_cast<size_t>(2 * rows));
      const int32_t lengths[] = {0, 1, 5, 16, 17, 300, 1023, 1500};
      for (int64_t i = 0; i < rows; ++i) {
        const int32_t len = lengths[i % 8] == 1500 ? 1500 : lengths[i % 8] + static_cast<int32_t>(i);
        const int32_t begin = static_cast<int32_t>((i * 131) % (cells - len + 1));
        ranges[static_cast<size_t>(2 * i)] = begin;
        ranges[static_cast<size_t>(2 * i + 1)] = len;
      }
      const auto q = random_floats(static_cast<size_t>(rows * qd), rng, -2, 2);
      auto run = [&](Backend& be) { return attention_over_cache(be, DType::F16, k, v, cell_ids, kvd, q.data(), ranges.data(), rows, ap); };
      EXPECT_LE(rel_error(run(*p.gpu), run(*p.cpu)), rows >= 8 ? 3e-3 : 2e-4);
    }
    // Ranges under a bound of 128 keys (decoding a short context, the splits sized by the bound),
    // up to the bound exactly.
    for (int64_t rows : {int64_t{1}, int64_t{3}, int64_t{7}}) {
      SCOPED_TRACE(testing::Message() << "group " << ap.n_head / n_head_kv << ", " << rows << " rows of at most 128 keys");
      AttentionParams bounded = ap;
      bounded.max_keys = 128;
      std::vector<int32_t> ranges(static_cast<size_t>(2 * rows));
      const int32_t lengths[] = {128, 1, 17, 100, 0, 127, 16};
      for (int64_t i = 0; i < rows; ++i) {
        const int32_t len = lengths[i];
        ranges[static_cast<size_t>(2 * i)] = static_cast<int32_t>((i * 211 + 5) % (cells - len + 1));
        ranges[static_cast<size_t>(2 * i + 1)] = len;
      }
      const auto q = random_floats(static_cast<size_t>(rows * qd), rng, -2, 2);
      auto run = [&](Backend& be) {
        return attention_over_cache(be, DType::F16, k, v, cell_ids, kvd, q.data(), ranges.data(), rows, bounded);
      };
      EXPECT_LE(rel_error(run(*p.gpu), run(*p.cpu)), 2e-4);
    }
  }
}

// A paged cache: the same rows as the CPU backend through shuffled block tables, for every kernel
// (one row split across blocks; rows of many sequences, on tensor cores for grouped heads of 128
// over F16; a prompt's rows sharing key tiles).
TEST(CudaBackend, PagedAttentionMatchesTheCpu) {
  VIREO_REQUIRE_GPU();
  Pair p;
  std::mt19937 rng(31);
  constexpr int kBlock = 16;
  const int64_t n_blocks = 80, cells = n_blocks * kBlock;
  std::vector<int32_t> blocks(static_cast<size_t>(n_blocks));
  std::iota(blocks.begin(), blocks.end(), 0);
  std::shuffle(blocks.begin(), blocks.end(), rng);
  blocks.resize(70);  // three sequences' tables: 30, 25 and 15 blocks, keys from 0, 480 and 880
  const int32_t first[3] = {0, 480, 880}, length[3] = {480, 400, 240};
  std::vector<int32_t> cell_ids(static_cast<size_t>(cells));
  std::iota(cell_ids.begin(), cell_ids.end(), 0);
  for (DType kv_type : {DType::F16, DType::F32}) {
    for (auto [n_head, n_head_kv, head_dim] : {std::tuple{8, 2, 64}, std::tuple{32, 8, 128}, std::tuple{6, 6, 80}, std::tuple{4, 2, 32}}) {
      SCOPED_TRACE(testing::Message() << "kv " << static_cast<int>(kv_type) << " heads " << n_head << "/" << n_head_kv << "x" << head_dim);
      AttentionParams ap;
      ap.n_head = n_head;
      ap.n_head_kv = n_head_kv;
      ap.head_dim = head_dim;
      ap.scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
      ap.kv_block_size = kBlock;
      const int64_t kvd = int64_t{n_head_kv} * head_dim, qd = int64_t{n_head} * head_dim;
      const auto k = random_floats(static_cast<size_t>(cells * kvd), rng, -2, 2);
      const auto v = random_floats(static_cast<size_t>(cells * kvd), rng, -2, 2);
      // Decode rows of the three sequences at assorted lengths, then a prompt of 150 rows of the first.
      const int64_t decode_rows = 45, prompt_rows = 150;
      std::vector<int32_t> ranges;
      for (int64_t i = 0; i < decode_rows; ++i) {
        const int s = static_cast<int>(i % 3);
        ranges.push_back(first[s]);
        ranges.push_back(static_cast<int32_t>((i * 97) % length[s]) + 1);
      }
      for (int64_t i = 0; i < prompt_rows; ++i) {
        ranges.push_back(first[0]);
        ranges.push_back(static_cast<int32_t>(300 + i));
      }
      const auto q = random_floats(ranges.size() / 2 * static_cast<size_t>(qd), rng, -2, 2);
      const bool tensor_cores = head_dim != 80;  // prompts: flash kernels (F32 caches rounded to F16) for heads of 32, 64, 128
      auto run = [&](Backend& be, int64_t row0, int64_t rows, bool shared) {
        AttentionParams a = ap;
        a.shared_ranges = shared;
        return attention_over_cache(be, kv_type, k, v, cell_ids, kvd, q.data() + row0 * qd, ranges.data() + 2 * row0, rows, a, blocks);
      };
      EXPECT_LE(rel_error(run(*p.gpu, 2, 1, false), run(*p.cpu, 2, 1, false)), 2e-4) << "one row";
      const bool mma = kv_type == DType::F16 && head_dim == 128;
      EXPECT_LE(rel_error(run(*p.gpu, 0, decode_rows, false), run(*p.cpu, 0, decode_rows, false)), mma ? 3e-3 : 2e-4) << "decode rows";
      EXPECT_LE(rel_error(run(*p.gpu, decode_rows, prompt_rows, true), run(*p.cpu, decode_rows, prompt_rows, false)),
                tensor_cores ? 3e-3 : 2e-4)
          << "prompt rows";
    }
  }
}

// Products against the exact product of the dequantized weights (double). Each path's error is
// the rounding of its activations: none on the decode path of the generic kernels (F32), Q8_0
// blocks for the integer decode products (Q4_0, Q8_0, Q4_K, Q6_K), F16 (BF16 for BF16 weights)
// on the tensor-core path of batches over 8 tokens.
TEST(CudaBackend, ProductsOfEveryTypeMatchTheReference) {
  VIREO_REQUIRE_GPU();
  Pair p;
  std::mt19937 rng(13);
  const std::vector<DType> types = {DType::F32, DType::F16, DType::BF16, DType::Q4_0, DType::Q4_1, DType::Q5_0,
                                    DType::Q5_1, DType::Q8_0, DType::Q4_K, DType::Q5_K, DType::Q6_K};
  for (DType type : types) {
    for (auto [rows, cols] : {std::pair<int64_t, int64_t>{37, 256}, {300, 1024}, {9, 4352}}) {
      const auto w = random_floats(static_cast<size_t>(rows * cols), rng);
      std::vector<uint8_t> bytes;
      if (type == DType::F32) {
        bytes.assign(reinterpret_cast<const uint8_t*>(w.data()), reinterpret_cast<const uint8_t*>(w.data() + w.size()));
      } else {
        bytes = quantized(type, w, rows, cols);
      }
      std::vector<float> deq(static_cast<size_t>(rows * cols));
      const size_t rb = ref::row_bytes(type, cols);
      for (int64_t r = 0; r < rows; ++r) ref::dequantize_row(type, bytes.data() + r * rb, deq.data() + r * cols, cols);
      const Tensor t = tensor_of("w", type, rows, cols, bytes);
      for (int64_t n : {1, 2, 3, 8, 9, 32, 33, 64, 300}) {
        SCOPED_TRACE(testing::Message() << dtype_traits(type)->name << " " << rows << "x" << cols << " tokens " << n);
        const auto x = random_floats(static_cast<size_t>(n * cols), rng);
        std::vector<float> exact(static_cast<size_t>(n * rows));
        for (int64_t i = 0; i < n; ++i) {
          for (int64_t r = 0; r < rows; ++r) {
            double acc = 0;
            for (int64_t c = 0; c < cols; ++c) acc += static_cast<double>(deq[r * cols + c]) * x[i * cols + c];
            exact[i * rows + r] = static_cast<float>(acc);
          }
        }
        auto run = [&](Backend& be) {
          auto wp = be.prepare(t, WeightUse::Matmul);
          Buffer xb = put(be, DType::F32, n, cols, x.data()), out = poisoned(be, n, rows);
          be.matmul(xb, *wp, out);
          return get(be, out);
        };
        // The gemv rounds activations to Q8_0 (types of uses_q8_activations); batched products
        // (qgemm, cuBLAS) multiply them in F16. Plain weights leave the gemv sooner.
        const bool plain = type == DType::F32 || type == DType::F16 || type == DType::BF16;
        const bool batched = n > (plain ? cuda::kMaxPlainGemvTokens : cuda::kDefaultGemvRows);
        const bool rounded = cuda::uses_q8_activations(type) && !batched;
        const double tol = type == DType::F32 ? 1e-5
                           : rounded          ? 1e-2
                           : batched          ? (type == DType::BF16 ? 1e-2 : 2e-3)
                           : type == DType::F16 || type == DType::BF16 ? 1e-5
                                                                        : 1e-4;
        EXPECT_LE(rel_error(run(*p.gpu), exact), tol);
      }
    }
  }
}

// The decode fusions: add_rms_norm, silu_mul, rms_norm and attention round their output for the
// product that follows (the product then skips its own rounding), matmul_multi launches weights of one
// type together, rope_qk rotates q and k in one launch. Each must give exactly what the separate
// ops give on the GPU, and agree with the CPU.
TEST(CudaBackend, FusedDecodeOpsEqualTheirParts) {
  VIREO_REQUIRE_GPU();
  Pair p;
  Backend& gpu = *p.gpu;
  std::mt19937 rng(17);
  for (auto [rows, cols] : {std::pair<int64_t, int64_t>{1, 4096}, {1, 8192}, {3, 256}, {8, 1024}, {17, 512}, {64, 1024}, {2, 33}}) {
    SCOPED_TRACE(testing::Message() << rows << "x" << cols);
    const auto a = random_floats(static_cast<size_t>(rows * cols), rng, -4, 4);
    const auto b = random_floats(static_cast<size_t>(rows * cols), rng, -4, 4);
    const auto wv = random_floats(static_cast<size_t>(cols), rng, 0.5f, 1.5f);
    std::vector<uint8_t> wb(wv.size() * 4);
    std::memcpy(wb.data(), wv.data(), wb.size());
    const Tensor wt = tensor_of("norm", DType::F32, 1, cols, wb);
    // add_rms_norm against add then rms_norm: the updated residual and the normed output.
    auto fused = [&](Backend& be, bool together) {
      Buffer x = put(be, DType::F32, rows, cols, a.data()), h = put(be, DType::F32, rows, cols, b.data());
      auto w = be.prepare(wt, WeightUse::Vector);
      if (together) {
        be.add_rms_norm(x, h, *w, 1e-5f, h);
      } else {
        be.add(x, h, x);
        be.rms_norm(x, *w, 1e-5f, h);
      }
      auto out = get(be, x);
      const auto normed = get(be, h);
      out.insert(out.end(), normed.begin(), normed.end());
      return out;
    };
    EXPECT_EQ(fused(gpu, true), fused(gpu, false));
    EXPECT_LE(rel_error(fused(gpu, true), fused(*p.cpu, true)), 2e-5);
    if (cols % 32 != 0) continue;

    // Products after each producer, with and without an unrelated op in between (which makes the
    // product round its activations itself): bit-identical. Three Q4_0 weights of different
    // heights go through one launch; a Q6_K one through another.
    std::vector<std::vector<uint8_t>> bytes;
    std::vector<Tensor> tensors;
    const std::pair<DType, int64_t> shapes[] = {{DType::Q4_0, 64}, {DType::Q4_0, 40}, {DType::Q4_0, 8}, {DType::Q6_K, 24}};
    for (auto [type, h_rows] : shapes) {
      if (type == DType::Q6_K && cols % 256 != 0) continue;
      bytes.push_back(quantized(type, random_floats(static_cast<size_t>(h_rows * cols), rng), h_rows, cols));
      tensors.push_back(tensor_of("w" + std::to_string(tensors.size()), type, h_rows, cols, bytes.back()));
    }
    auto products = [&](Backend& be, int producer, bool interrupt) {
      std::mt19937 rng_kv(3);
      Buffer x = put(be, DType::F32, rows, cols, a.data()), h = put(be, DType::F32, rows, cols, b.data());
      Buffer other = put(be, DType::F32, rows, cols, b.data());
      auto w = be.prepare(wt, WeightUse::Vector);
      std::vector<WeightPtr> ws;
      std::vector<const Weight*> wp;
      std::vector<Buffer> outs;
      for (const Tensor& t : tensors) {
        ws.push_back(be.prepare(t, WeightUse::Matmul));
        wp.push_back(ws.back().get());
        outs.push_back(poisoned(be, rows, t.shape[0]));
      }
      switch (producer) {
        case 0: be.rms_norm(x, *w, 1e-5f, h); break;
        case 1: be.add_rms_norm(x, h, *w, 1e-5f, h); break;
        case 2: be.silu_mul(x, h, h); break;
        case 3: {  // attention of heads of 64 over an F32 cache of 40 cells, rows over 10 + r keys
          AttentionParams ap;
          ap.head_dim = 64;
          ap.n_head = static_cast<int>(cols / 64);
          ap.n_head_kv = std::max(1, ap.n_head / 2);
          ap.scale = 0.125f;
          const auto kv = random_floats(static_cast<size_t>(40 * ap.n_head_kv * 64), rng_kv);
          Buffer kc = put(be, DType::F32, 40, ap.n_head_kv * 64, kv.data()), vc = put(be, DType::F32, 40, ap.n_head_kv * 64, kv.data());
          std::vector<int32_t> rg;
          for (int64_t r = 0; r < rows; ++r) rg.insert(rg.end(), {0, static_cast<int32_t>(10 + r % 30)});
          Buffer rb = put(be, DType::I32, rows, 2, rg.data());
          be.attention(x, kc, vc, rb, ap, h);
          break;
        }
      }
      if (interrupt) be.add(other, other, other);
      be.matmul_multi(h, wp, outs);
      std::vector<float> all;
      for (const Buffer& o : outs) {
        const auto v = get(be, o);
        all.insert(all.end(), v.begin(), v.end());
      }
      return all;
    };
    for (int producer = 0; producer < 4; ++producer) {
      SCOPED_TRACE(producer);
      if (producer == 3 && cols % 64 != 0) continue;
      const auto direct = products(gpu, producer, false);
      EXPECT_EQ(direct, products(gpu, producer, true));
      EXPECT_LE(rel_error(direct, products(*p.cpu, producer, false)), 2e-2);  // Q8 rounding near ties may differ
    }

    // A lone product whose width is split (4096 wide, few output rows) leaves its partial sums to
    // the residual add that follows: bit-identical to adding them first (an op in between).
    const int64_t kin = 4096;
    const auto av = random_floats(static_cast<size_t>(rows * kin), rng, -1, 1);
    const auto wq = quantized(DType::Q4_0, random_floats(static_cast<size_t>(cols * kin), rng), cols, kin);
    const Tensor proj = tensor_of("proj", DType::Q4_0, cols, kin, wq);
    auto residual = [&](Backend& be, bool interrupt) {
      Buffer x = put(be, DType::F32, rows, cols, a.data()), h = poisoned(be, rows, cols);
      Buffer act = put(be, DType::F32, rows, kin, av.data()), other = put(be, DType::F32, rows, cols, b.data());
      auto w = be.prepare(wt, WeightUse::Vector);
      auto wp = be.prepare(proj, WeightUse::Matmul);
      be.matmul(act, *wp, h);
      if (interrupt) be.add(other, other, other);
      be.add_rms_norm(x, h, *w, 1e-5f, h);
      auto out = get(be, x);
      const auto normed = get(be, h);
      out.insert(out.end(), normed.begin(), normed.end());
      return out;
    };
    const auto deferred = residual(gpu, false);
    EXPECT_EQ(deferred, residual(gpu, true));
    EXPECT_LE(rel_error(deferred, residual(*p.cpu, false)), 2e-2);
  }

  // rope_qk against two ropes.
  const int hd = 64, n_head = 8, n_head_kv = 2, n = 5;
  const auto q = random_floats(static_cast<size_t>(n * n_head * hd), rng), k = random_floats(static_cast<size_t>(n * n_head_kv * hd), rng);
  const std::vector<int32_t> pos = {0, 1, 7, 300, 4095};
  RopeParams rp;
  rp.n_dims = hd;
  rp.theta = 500000.0f;
  rp.style = RopeStyle::NeoX;
  auto roped = [&](Backend& be, bool together) {
    Buffer qb = put(be, DType::F32, n, n_head * hd, q.data()), kb = put(be, DType::F32, n, n_head_kv * hd, k.data());
    Buffer pb = put(be, DType::I32, n, 1, pos.data());
    if (together) {
      be.rope_qk(qb, kb, pb, n_head, n_head_kv, hd, rp);
    } else {
      be.rope(qb, pb, n_head, hd, rp);
      be.rope(kb, pb, n_head_kv, hd, rp);
    }
    auto out = get(be, qb);
    const auto kv = get(be, kb);
    out.insert(out.end(), kv.begin(), kv.end());
    return out;
  };
  EXPECT_EQ(roped(gpu, true), roped(gpu, false));
  EXPECT_LE(rel_error(roped(gpu, true), roped(*p.cpu, true)), 1e-5);

  // rope_qk_kv_write against rope_qk then kv_write: q, k and both caches (12 cells, two of them
  // untouched), for both rope styles.
  const auto v = random_floats(static_cast<size_t>(n * n_head_kv * hd), rng);
  const std::vector<int32_t> cells = {3, 0, 9, 1, 6};
  const std::vector<float> zeros(static_cast<size_t>(12 * n_head_kv * hd), 0.0f);
  for (RopeStyle style : {RopeStyle::NeoX, RopeStyle::Normal}) {
    rp.style = style;
    auto cached = [&](Backend& be, bool together) {
      Buffer qb = put(be, DType::F32, n, n_head * hd, q.data()), kb = put(be, DType::F32, n, n_head_kv * hd, k.data());
      Buffer vb = put(be, DType::F32, n, n_head_kv * hd, v.data()), pb = put(be, DType::I32, n, 1, pos.data());
      Buffer cb = put(be, DType::I32, n, 1, cells.data());
      Buffer kc = put(be, DType::F32, 12, n_head_kv * hd, zeros.data()), vc = put(be, DType::F32, 12, n_head_kv * hd, zeros.data());
      if (together) {
        be.rope_qk_kv_write(qb, kb, vb, pb, cb, kc, vc, n_head, n_head_kv, hd, rp);
      } else {
        be.rope_qk(qb, kb, pb, n_head, n_head_kv, hd, rp);
        be.kv_write(kb, vb, cb, kc, vc);
      }
      std::vector<float> out;
      for (const Buffer* b : {&qb, &kb, &kc, &vc}) {
        const auto part = get(be, *b);
        out.insert(out.end(), part.begin(), part.end());
      }
      return out;
    };
    EXPECT_EQ(cached(gpu, true), cached(gpu, false));
    EXPECT_LE(rel_error(cached(gpu, true), cached(*p.cpu, true)), 1e-5);
  }

  // A q/k/v product of a batch (64 rows, 4096 wide, few output rows: its width is split) leaves its
  // partial sums to rope_qk_kv_write, which adds them itself: q, k, v and both caches bit-identical
  // to adding them first (an op in between), for both rope styles.
  const int64_t rows = 64, kin = 4096, qn = 4, kvn = 2, n_cells = 80;
  const auto act = random_floats(static_cast<size_t>(rows * kin), rng, -1, 1);
  std::vector<std::vector<uint8_t>> qkv_bytes;
  std::vector<Tensor> qkv_tensors;
  for (int64_t heads : {qn, kvn, kvn}) {
    qkv_bytes.push_back(quantized(DType::Q4_0, random_floats(static_cast<size_t>(heads * hd * kin), rng), heads * hd, kin));
    qkv_tensors.push_back(tensor_of("qkv" + std::to_string(qkv_tensors.size()), DType::Q4_0, heads * hd, kin, qkv_bytes.back()));
  }
  std::vector<int32_t> batch_pos, batch_cells;
  for (int64_t r = 0; r < rows; ++r) {
    batch_pos.push_back(static_cast<int32_t>(3 * r + 1));
    batch_cells.push_back(static_cast<int32_t>((r * 7) % n_cells));  // 64 distinct cells of 80
  }
  const std::vector<float> cache_zeros(static_cast<size_t>(n_cells * kvn * hd), 0.0f);
  for (RopeStyle style : {RopeStyle::NeoX, RopeStyle::Normal}) {
    rp.style = style;
    auto from_product = [&](Backend& be, bool interrupt) {
      Buffer x = put(be, DType::F32, rows, kin, act.data()), other = put(be, DType::F32, rows, kin, act.data());
      std::vector<WeightPtr> ws;
      std::vector<const Weight*> wp;
      std::vector<Buffer> outs;
      for (const Tensor& t : qkv_tensors) {
        ws.push_back(be.prepare(t, WeightUse::Matmul));
        wp.push_back(ws.back().get());
        outs.push_back(poisoned(be, rows, t.shape[0]));
      }
      Buffer pb = put(be, DType::I32, rows, 1, batch_pos.data()), cb = put(be, DType::I32, rows, 1, batch_cells.data());
      Buffer kc = put(be, DType::F32, n_cells, kvn * hd, cache_zeros.data()), vc = put(be, DType::F32, n_cells, kvn * hd, cache_zeros.data());
      be.matmul_multi(x, wp, outs);
      if (interrupt) be.add(other, other, other);
      be.rope_qk_kv_write(outs[0], outs[1], outs[2], pb, cb, kc, vc, static_cast<int>(qn), static_cast<int>(kvn), hd, rp);
      std::vector<float> out;
      for (const Buffer* b : {&outs[0], &outs[1], &outs[2], &kc, &vc}) {
        const auto part = get(be, *b);
        out.insert(out.end(), part.begin(), part.end());
      }
      return out;
    };
    const auto summed = from_product(gpu, false);
    EXPECT_EQ(summed, from_product(gpu, true));
    EXPECT_LE(rel_error(summed, from_product(*p.cpu, false)), 2e-2);
  }
}

// ---------------------------------------------------------------- whole models

struct Engine {
  Engine(std::shared_ptr<Model> m, Backend& be, int64_t n_ctx = 1024) : model(std::move(m)) {
    lm = create_decoder(model, be);
    cache = std::make_unique<KvCache>(*lm, n_ctx);
    generator = std::make_unique<Generator>(*lm, *cache);
  }
  std::shared_ptr<Model> model;
  std::unique_ptr<LanguageModel> lm;
  std::unique_ptr<KvCache> cache;
  std::unique_ptr<Generator> generator;
};

using test::compare_logits;
using test::LogitAgreement;

TEST(CudaBackend, SyntheticDecodersScoreLikeTheCpu) {
  VIREO_REQUIRE_GPU();
  Pair p;
  struct Case {
    const char* preset;
    const char* type;
  };
  for (const Case c : {Case{"tiny", "f32"}, Case{"llama3.2-1b", "f16"}, Case{"llama3.2-1b", "bf16"}, Case{"llama3.2-1b", "q8_0"},
                       Case{"llama3.2-1b", "q4_0"}, Case{"llama3.2-1b", "q4_k_m"}, Case{"qwen2.5-0.5b", "q8_0"},
                       Case{"qwen3-0.6b", "q4_k_m"}, Case{"mistral-7b", "q4_0"}}) {
    SCOPED_TRACE(testing::Message() << c.preset << " " << c.type);
    test::TempDir dir;
    SynthOptions so;
    so.preset = c.preset;
    so.type = c.type;
    so.n_layer = 2;
    so.vocab_size = 1024;
    synthesize_model(so, dir.file("m.gguf"));
    auto model = std::make_shared<Model>(load_model(dir.file("m.gguf")));
    Engine on_cpu(model, *p.cpu), on_gpu(model, *p.gpu);
    std::mt19937 rng(7);
    std::uniform_int_distribution<int32_t> pick(0, 1023);
    std::vector<int32_t> ids(200);
    for (auto& id : ids) id = pick(rng);
    const size_t V = model->config.n_vocab;
    // Prefill (batched products), then decode-sized chunks (the gemv path).
    for (int32_t chunk : {512, 4}) {
      const auto want = on_cpu.generator->score(ids, chunk), got = on_gpu.generator->score(ids, chunk);
      ASSERT_EQ(want.size(), got.size());
      const LogitAgreement a = compare_logits(want, got, V);
      std::printf("  %s %s chunk %d: top-1 %.4f (decisive %.4f), mean KL %.2e\n", c.preset, c.type, chunk, a.top1, a.decisive_top1,
                  a.mean_kl);
      EXPECT_GE(a.decisive_top1, 0.99);
      EXPECT_LT(a.mean_kl, 0.01);
    }
  }
}

TEST(CudaBackend, StoriesGreedyContinuationsMatchTheCpu) {
  VIREO_REQUIRE_GPU();
  VIREO_REQUIRE_SHARED(path, "models/stories260K.gguf");
  Pair p;
  auto model = std::make_shared<Model>(load_model(path));
  const auto tok = Tokenizer::create(model->tokenizer);
  Engine on_cpu(model, *p.cpu), on_gpu(model, *p.gpu);
  for (const char* prompt : {"Once upon a time", "The little dog", "Lily wanted to",
                             "One day, a boy named Tom went to the park with his mom.", "The sun was"}) {
    SCOPED_TRACE(prompt);
    const auto ids = tok->encode(prompt, true, true);
    GenerateOptions opt;
    opt.max_tokens = 200;
    const auto want = on_cpu.generator->generate(ids, opt).tokens, got = on_gpu.generator->generate(ids, opt).tokens;
    size_t agree = 0;
    while (agree < want.size() && agree < got.size() && want[agree] == got[agree]) ++agree;
    EXPECT_EQ(agree, want.size()) << "first difference at token " << agree;
  }
  // Several sequences decoded in one batch.
  std::vector<std::vector<int32_t>> prompts;
  for (const char* prompt : {"Once upon a time", "The little dog", "Lily wanted to"}) prompts.push_back(tok->encode(prompt, true, true));
  GenerateOptions opt;
  opt.max_tokens = 100;
  const auto want = on_cpu.generator->generate_batch(prompts, opt), got = on_gpu.generator->generate_batch(prompts, opt);
  ASSERT_EQ(want.size(), got.size());
  for (size_t s = 0; s < want.size(); ++s) EXPECT_EQ(want[s].tokens, got[s].tokens) << "sequence " << s;
}

TEST(CudaBackend, EncoderEmbeddingsMatchTheCpu) {
  VIREO_REQUIRE_GPU();
  Pair p;
  test::TempDir dir;
  SynthOptions so;
  so.preset = "bge-small";
  so.type = "f16";
  synthesize_model(so, dir.file("e.gguf"));
  auto model = std::make_shared<Model>(load_model(dir.file("e.gguf")));
  auto a = create_encoder(model, *p.cpu), b = create_encoder(model, *p.gpu);
  std::mt19937 rng(3);
  std::uniform_int_distribution<int32_t> pick(0, 255);
  std::vector<EncoderInput> inputs;
  for (size_t len : {1, 5, 31, 120, 512}) {
    std::vector<int32_t> ids(len);
    for (auto& id : ids) id = pick(rng);
    inputs.push_back({ids, {}});
  }
  const auto want = a->embed(inputs), got = b->embed(inputs);
  ASSERT_EQ(want.size(), got.size());
  for (size_t s = 0; s < want.size(); ++s) {
    double dot = 0, na = 0, nb = 0;
    for (size_t i = 0; i < want[s].size(); ++i) {
      dot += static_cast<double>(want[s][i]) * got[s][i];
      na += static_cast<double>(want[s][i]) * want[s][i];
      nb += static_cast<double>(got[s][i]) * got[s][i];
    }
    EXPECT_GE(dot / std::sqrt(na * nb), 0.999) << "input " << s;
  }
}

}  // namespace
}  // namespace vireo

#else
TEST(CudaBackend, NeedsACudaBuild) {
  EXPECT_FALSE(vireo::cuda_available());
  GTEST_SKIP() << "vireo was built without CUDA";
}
#endif
