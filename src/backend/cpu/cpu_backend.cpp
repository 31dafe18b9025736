// The CPU backend: host memory, weights packed once for the SIMD kernels, ops spread over a
// persistent thread pool. Ops run synchronously, so upload/download are plain copies.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "vireo/backend/backend.h"
#include "vireo/backend/thread_pool.h"
#include "vireo/core/mapped_file.h"
#include "vireo/core/quant_blocks.h"
#include "vireo/kernels/cpu/matmul.h"
#include "vireo/kernels/cpu/ops.h"
#include "vireo/kernels/ref/ops.h"
#include "vireo/kernels/ref/quant.h"
#include "backend/mlx_convert.h"
#include "backend/op_checks.h"

namespace vireo {
namespace {

class CpuWeight final : public Weight {
 public:
  cpu::PackedMatrix matrix;       // WeightUse::Matmul
  const uint8_t* table = nullptr; // WeightUse::Rows: the file's rows (not owned)
  size_t row_bytes = 0;
  std::vector<float> values;      // WeightUse::Vector: an F32 copy
  std::vector<uint8_t> converted; // MLX weights re-expressed in a type the kernels know
};

const CpuWeight& as_cpu(const Weight& w) { return static_cast<const CpuWeight&>(w); }

using op_checks::require;
using op_checks::require_f32;
using op_checks::require_shape;
void require_vector(const Weight& w, int64_t n, const char* op) {
  const auto& cw = as_cpu(w);
  if (static_cast<int64_t>(cw.values.size()) != n) {
    fail(ErrorCode::InvalidArgument, "{}: vector '{}' has {} values, expected {}", op, w.name, cw.values.size(), n);
  }
}

// Work below this many elements runs on the calling thread: waking workers costs more.
constexpr int64_t kSerialElements = 1 << 14;

class CpuBackend final : public Backend {
 public:
  using Backend::attention;  // the call without block tables
  explicit CpuBackend(const CpuBackendOptions& o) : isa_(cpu::choose_isa(o.isa)), pool_(o.n_threads) {}

  std::string name() const override { return fmt::format("cpu ({}, {} threads)", cpu::isa_name(isa_), pool_.size()); }

  // ---- memory ----
  Buffer alloc(DType type, int64_t rows, int64_t cols) override {
    const auto traits = dtype_traits(type);
    if (!traits || (traits->block_elems != 1 && type != DType::Q8_0)) {
      fail(ErrorCode::InvalidArgument, "alloc: buffers hold plain types or Q8_0 only");
    }
    if (rows < 0 || cols < 0) fail(ErrorCode::InvalidArgument, "alloc: negative shape [{}, {}]", rows, cols);
    if (cols % traits->block_elems != 0) {
      fail(ErrorCode::InvalidArgument, "alloc: a {} row of {} elements is not whole blocks of {}", traits->name, cols, traits->block_elems);
    }
    const size_t bytes = (static_cast<size_t>(rows * (cols / traits->block_elems)) * traits->block_bytes + 127) / 64 * 64;
    void* p = std::aligned_alloc(64, bytes);
    if (p == nullptr) fail(ErrorCode::Io, "out of memory allocating a [{}, {}] buffer", rows, cols);
    return Buffer(std::shared_ptr<void>(p, std::free), p, type, rows, cols, cols);
  }
  void upload(const Buffer& buf, const void* host) override {
    const size_t row = buf.row_bytes();
    for (int64_t r = 0; r < buf.rows(); ++r) std::memcpy(buf.row<uint8_t>(r), static_cast<const uint8_t*>(host) + r * row, row);
  }
  void download(const Buffer& buf, void* host) override {
    const size_t row = buf.row_bytes();
    for (int64_t r = 0; r < buf.rows(); ++r) std::memcpy(static_cast<uint8_t*>(host) + r * row, buf.row<uint8_t>(r), row);
  }

  // ---- weights ----
  WeightPtr prepare(const Tensor& t, WeightUse use) override {
    if (t.data == nullptr) fail(ErrorCode::InvalidArgument, "{}: tensor has no data", t.name);
    auto w = std::make_shared<CpuWeight>();
    w->name = t.name;
    w->type = t.type;
    w->rows = static_cast<int64_t>(t.rows());
    w->cols = static_cast<int64_t>(t.cols());
    const uint8_t* data = t.data;
    if (t.mlx_scales != nullptr) {
      w->type = convert_mlx(t, w->converted);
      data = w->converted.data();
    }
    switch (use) {
      case WeightUse::Matmul:
        // A copied weight no longer needs the file's pages resident: peak memory stays near
        // one copy of the weights instead of two.
        w->matrix = cpu::pack_matrix(w->type, data, w->rows, w->cols, isa_, t.file_mapped && w->converted.empty());
        if (t.file_mapped && !w->converted.empty()) drop_resident_pages(t.data, t.nbytes);
        break;
      case WeightUse::Rows:
        w->row_bytes = ref::row_bytes(w->type, w->cols);  // checks the type and the block size
        if (!ref::can_dequantize(w->type)) fail(ErrorCode::Unsupported, "{}: type cannot be read as rows", t.name);
        w->table = data;
        break;
      case WeightUse::Vector:
        w->rows = 1;
        w->cols = static_cast<int64_t>(t.n_elements());
        w->values.resize(static_cast<size_t>(w->cols));
        ref::dequantize_row(w->type, data, w->values.data(), w->cols);
        break;
    }
    return w;
  }

  // ---- ops ----
  void get_rows(const Weight& table, const Buffer& ids, const Buffer& out) override {
    const auto& w = as_cpu(table);
    require(ids.type() == DType::I32 && ids.cols() == 1, "get_rows", "ids must be I32 [n, 1]");
    require_f32(out, "get_rows");
    require_shape(out, ids.rows(), w.cols, "get_rows", "out");
    for (int64_t i = 0; i < ids.rows(); ++i) {
      const int32_t id = *ids.row<int32_t>(i);
      if (id < 0 || id >= w.rows) {
        fail(ErrorCode::InvalidArgument, "get_rows: id {} is outside '{}' (rows 0..{})", id, w.name, w.rows - 1);
      }
      if (w.table != nullptr) {
        ref::dequantize_row(w.type, w.table + static_cast<size_t>(id) * w.row_bytes, out.row<float>(i), w.cols);
      } else {
        cpu::unpack_row(w.matrix, id, out.row<float>(i));
      }
    }
  }

  void gather_rows(const Buffer& src, const Buffer& ids, const Buffer& out) override {
    require(ids.type() == DType::I32 && ids.cols() == 1, "gather_rows", "ids must be I32 [n, 1]");
    require(src.type() == out.type() && src.cols() == out.cols() && out.rows() == ids.rows(), "gather_rows",
            "out must be [n, src.cols] of src's type");
    const size_t row = src.row_bytes();
    for (int64_t i = 0; i < ids.rows(); ++i) {
      const int32_t id = *ids.row<int32_t>(i);
      if (id < 0 || id >= src.rows()) fail(ErrorCode::InvalidArgument, "gather_rows: row {} of {}", id, src.rows());
      std::memmove(out.row<uint8_t>(i), src.row<uint8_t>(id), row);
    }
  }

  void matmul(const Buffer& x, const Weight& w, const Buffer& out) override {
    const Weight* ws[1] = {&w};
    const Buffer outs[1] = {out};
    matmul_multi(x, ws, outs);
  }

  void matmul_multi(const Buffer& x, std::span<const Weight* const> ws, std::span<const Buffer> outs) override {
    require(ws.size() == outs.size() && !ws.empty(), "matmul", "one output per weight");
    require_f32(x, "matmul");
    const int64_t n = x.rows();
    for (size_t i = 0; i < ws.size(); ++i) {
      const auto& m = as_cpu(*ws[i]).matrix;
      if (m.data == nullptr) fail(ErrorCode::InvalidArgument, "matmul: '{}' was not prepared for matmul", ws[i]->name);
      if (m.cols != x.cols()) {
        fail(ErrorCode::InvalidArgument, "matmul: x has {} columns but '{}' has {}", x.cols(), ws[i]->name, m.cols);
      }
      require_f32(outs[i], "matmul");
      require_shape(outs[i], n, m.rows, "matmul", "out");
    }
    if (n == 0) return;
    // Activations are rounded once per distinct (dot type, layout); q/k/v or gate/up share it.
    struct Job {
      const cpu::PackedMatrix* m;
      const cpu::Activations* a;
      const Buffer* out;
      int64_t first_group, n_groups;
    };
    std::vector<Job> jobs;
    std::vector<size_t> act_of(ws.size());
    size_t n_acts = 0;
    for (size_t i = 0; i < ws.size(); ++i) {
      const auto& m = as_cpu(*ws[i]).matrix;
      size_t found = n_acts;
      for (size_t j = 0; j < i; ++j) {
        const auto& mj = as_cpu(*ws[j]).matrix;
        if (ref::dot_type(mj.type) == ref::dot_type(m.type) && mj.layout == m.layout) found = act_of[j];
      }
      if (found == n_acts) {
        if (acts_.size() <= n_acts) acts_.resize(n_acts + 1);
        cpu::prepare_activations(m, n, acts_[n_acts]);
        ++n_acts;
      }
      act_of[i] = found;
    }
    // Rounding: rows over threads when there are many.
    for (size_t k = 0; k < n_acts; ++k) {
      cpu::Activations& a = acts_[k];
      const int64_t per_task = std::max<int64_t>(1, (n + 4 * pool_.size() - 1) / (4 * pool_.size()));
      if (n * x.cols() < kSerialElements) {
        cpu::quantize_activations(x.as<float>(), x.stride(), 0, n, a, isa_);
      } else {
        pool_.run((n + per_task - 1) / per_task, [&](int64_t task, unsigned) {
          cpu::quantize_activations(x.as<float>(), x.stride(), task * per_task, std::min(n, (task + 1) * per_task), a, isa_);
        });
      }
    }
    // Row groups of all weights in one pool job, in tasks of a few groups.
    int64_t total_groups = 0;
    for (size_t i = 0; i < ws.size(); ++i) total_groups += as_cpu(*ws[i]).matrix.n_groups();
    const int64_t target_tasks = 6 * static_cast<int64_t>(pool_.size());
    const int64_t per_task = std::max<int64_t>(1, total_groups / target_tasks);
    for (size_t i = 0; i < ws.size(); ++i) {
      const auto& m = as_cpu(*ws[i]).matrix;
      for (int64_t g = 0; g < m.n_groups(); g += per_task) {
        jobs.push_back({&m, &acts_[act_of[i]], &outs[i], g, std::min(per_task, m.n_groups() - g)});
      }
    }
    pool_.run(static_cast<int64_t>(jobs.size()), [&](int64_t task, unsigned) {
      const Job& j = jobs[static_cast<size_t>(task)];
      const int64_t r0 = j.first_group * cpu::kRowGroup;
      const int64_t r1 = std::min(j.m->rows, (j.first_group + j.n_groups) * cpu::kRowGroup);
      cpu::matmul_rows(*j.m, *j.a, r0, r1, j.out->as<float>(), j.out->stride());
    });
  }

  void add_bias(const Buffer& x, const Weight& bias) override {
    require_f32(x, "add_bias");
    require_vector(bias, x.cols(), "add_bias");
    const float* b = as_cpu(bias).values.data();
    for_rows(x.rows(), x.cols(), [&](int64_t r) { cpu::add(x.row<float>(r), b, x.cols(), x.row<float>(r)); });
  }

  void rms_norm(const Buffer& x, const Weight& weight, float eps, const Buffer& out) override {
    require_f32(x, "rms_norm");
    require_shape(out, x.rows(), x.cols(), "rms_norm", "out");
    require_vector(weight, x.cols(), "rms_norm");
    const float* w = as_cpu(weight).values.data();
    for_rows(x.rows(), x.cols(), [&](int64_t r) { cpu::rms_norm_row(x.row<float>(r), w, eps, x.cols(), out.row<float>(r)); });
  }

  void layer_norm(const Buffer& x, const Weight& weight, const Weight& bias, float eps, const Buffer& out) override {
    require_f32(x, "layer_norm");
    require_shape(out, x.rows(), x.cols(), "layer_norm", "out");
    require_vector(weight, x.cols(), "layer_norm");
    require_vector(bias, x.cols(), "layer_norm");
    const float* w = as_cpu(weight).values.data();
    const float* b = as_cpu(bias).values.data();
    for_rows(x.rows(), x.cols(),
             [&](int64_t r) { cpu::layer_norm_row(x.row<float>(r), w, b, eps, x.cols(), out.row<float>(r)); });
  }

  void add(const Buffer& a, const Buffer& b, const Buffer& out) override {
    elementwise2(a, b, out, "add", [](const float* x, const float* y, int64_t n, float* o) { cpu::add(x, y, n, o); });
  }
  void mul(const Buffer& a, const Buffer& b, const Buffer& out) override {
    elementwise2(a, b, out, "mul", [](const float* x, const float* y, int64_t n, float* o) { cpu::mul(x, y, n, o); });
  }
  void silu_mul(const Buffer& gate, const Buffer& up, const Buffer& out) override {
    const bool fast = cpu::uses_avx512(isa_);
    elementwise2(gate, up, out, "silu_mul", [fast](const float* g, const float* u, int64_t n, float* o) {
      if (fast) {
        cpu::avx512::silu_mul(g, u, n, o);
      } else {
        cpu::silu_mul(g, u, n, o);
      }
    });
  }
  void gelu(const Buffer& x, const Buffer& out) override {
    elementwise2(x, x, out, "gelu", [](const float* a, const float*, int64_t n, float* o) { cpu::gelu(a, n, o); });
  }

  void rope(const Buffer& x, const Buffer& positions, int n_heads, int head_dim, const RopeParams& p) override {
    op_checks::rope(x, positions, n_heads, head_dim, p);
    if (p.style == RopeStyle::None) return;
    const float* ff = p.freq_factors.empty() ? nullptr : p.freq_factors.data();
    for_rows(x.rows(), x.cols() * 8, [&](int64_t r) {
      float cs[1024];
      std::vector<float> big;
      float* table = cs;
      if (p.n_dims > 1024) {
        big.resize(static_cast<size_t>(p.n_dims));
        table = big.data();
      }
      ref::rope_cos_sin(*positions.row<int32_t>(r), p.theta, p.n_dims, ff, p.freq_scale, table);
      cpu::rope_row(x.row<float>(r), table, n_heads, head_dim, p.n_dims, p.style);
    });
  }

  void kv_write(const Buffer& k, const Buffer& v, const Buffer& cells, const Buffer& k_cache,
                const Buffer& v_cache) override {
    op_checks::kv_write(k, v, cells, k_cache, v_cache);
    for (int64_t i = 0; i < k.rows(); ++i) {
      const int32_t cell = *cells.row<int32_t>(i);
      if (cell < 0 || cell >= k_cache.rows()) fail(ErrorCode::InvalidArgument, "kv_write: cell {} of {}", cell, k_cache.rows());
      for (int which = 0; which < 2; ++which) {
        const Buffer& src = which == 0 ? k : v;
        const Buffer& dst = which == 0 ? k_cache : v_cache;
        if (dst.type() == DType::F32) {
          std::memcpy(dst.row<float>(cell), src.row<float>(i), static_cast<size_t>(k.cols()) * sizeof(float));
        } else if (dst.type() == DType::Q8_0) {
          ref::quantize_row(DType::Q8_0, src.row<float>(i), dst.row<uint8_t>(cell), k.cols());
        } else if (cpu::uses_avx512(isa_)) {
          cpu::avx512::f32_to_f16(src.row<float>(i), k.cols(), dst.row<uint16_t>(cell));
        } else {
          cpu::f32_to_f16(src.row<float>(i), k.cols(), dst.row<uint16_t>(cell));
        }
      }
    }
  }

  void attention(const Buffer& q, const Buffer& k, const Buffer& v, const Buffer& ranges, const Buffer& blocks,
                 const AttentionParams& p, const Buffer& out) override {
    op_checks::attention(q, k, v, ranges, blocks, p, out);
    const KvPages pages = op_checks::kv_pages(k, blocks, p);
    for (int64_t b = 0; b < blocks.rows(); ++b) {
      const int32_t block = *blocks.row<int32_t>(b);
      if (block < 0 || (int64_t{block} << pages.block_shift) >= k.rows()) {
        fail(ErrorCode::InvalidArgument, "attention: block {} is outside the cache's {} blocks", block, k.rows() >> pages.block_shift);
      }
    }
    int32_t max_count = 0;
    for (int64_t i = 0; i < q.rows(); ++i) {
      const int32_t* r = ranges.row<int32_t>(i);
      if (r[0] < 0 || r[1] < 0 || int64_t{r[0]} + r[1] > pages.n_keys) {
        fail(ErrorCode::InvalidArgument, "attention: range [{}, {}+{}) is outside the {} keys", r[0], r[0], r[1], pages.n_keys);
      }
      max_count = std::max(max_count, r[1]);
    }
    const int group = p.n_head / p.n_head_kv;
    scratch_.resize(pool_.size());
    for (auto& s : scratch_) s.resize(static_cast<size_t>(group) * std::max(max_count, 1));
    const int64_t n_tasks = q.rows() * p.n_head_kv;
    auto task = [&](int64_t t, unsigned thread) {
      const int64_t i = t / p.n_head_kv;
      const int kvh = static_cast<int>(t % p.n_head_kv);
      const int32_t* r = ranges.row<int32_t>(i);
      const int64_t q_off = int64_t{kvh} * group * p.head_dim;
      cpu::attention_heads(q.row<float>(i) + q_off, group, k.data(), v.data(), k.type(), k.stride(), kvh, p.head_dim,
                           r[0], r[1], pages, p.scale, scratch_[thread].data(), out.row<float>(i) + q_off, isa_);
    };
    const int64_t work = n_tasks * std::max<int64_t>(max_count, 1) * p.head_dim * group;
    if (work < kSerialElements) {
      for (int64_t t = 0; t < n_tasks; ++t) task(t, 0);
    } else {
      pool_.run(n_tasks, task);
    }
  }

  void softmax(const Buffer& x, const Buffer& out) override {
    require_f32(x, "softmax");
    require_shape(out, x.rows(), x.cols(), "softmax", "out");
    for_rows(x.rows(), x.cols(), [&](int64_t r) { cpu::softmax_row(x.row<float>(r), x.cols(), out.row<float>(r)); });
  }

  void argmax(const Buffer& x, const Buffer& out) override {
    require_f32(x, "argmax");
    require(out.type() == DType::I32 && out.cols() == 1 && out.rows() == x.rows(), "argmax", "out must be I32 [n, 1]");
    for (int64_t r = 0; r < x.rows(); ++r) *out.row<int32_t>(r) = cpu::argmax_row(x.row<float>(r), x.cols());
  }

  void sample(const Buffer& x, const Buffer& params, const Buffer& out) override {
    require_f32(x, "sample");
    require(params.type() == DType::F32 && params.cols() == 5 && params.rows() == x.rows(), "sample",
            "params must be F32 [n, 5]");
    require(out.type() == DType::I32 && out.cols() == 1 && out.rows() == x.rows(), "sample", "out must be I32 [n, 1]");
    for_rows(x.rows(), x.cols(), [&](int64_t r) {
      DrawParams p;
      std::memcpy(static_cast<void*>(&p), params.row<float>(r), sizeof p);
      try {
        *out.row<int32_t>(r) = ref::draw_token(x.row<float>(r), x.cols(), p);
      } catch (const Error&) {  // every logit banned: the caller reports it for that row alone
        *out.row<int32_t>(r) = -1;
      }
    });
  }

  void mean_rows(const Buffer& x, const Buffer& ranges, const Buffer& out) override {
    require_f32(x, "mean_rows");
    require(ranges.type() == DType::I32 && ranges.cols() == 2 && ranges.rows() == out.rows(), "mean_rows",
            "ranges must be I32 [n_seq, 2]");
    require(out.cols() == x.cols(), "mean_rows", "out must be [n_seq, d]");
    for (int64_t s = 0; s < out.rows(); ++s) {
      const int32_t* r = ranges.row<int32_t>(s);
      if (r[0] < 0 || r[1] < 0 || int64_t{r[0]} + r[1] > x.rows()) fail(ErrorCode::InvalidArgument, "mean_rows: bad range");
      float* o = out.row<float>(s);
      std::fill(o, o + x.cols(), 0.0f);
      for (int32_t i = r[0]; i < r[0] + r[1]; ++i) cpu::add(o, x.row<float>(i), x.cols(), o);
      const float inv = r[1] > 0 ? 1.0f / static_cast<float>(r[1]) : 0.0f;
      for (int64_t j = 0; j < x.cols(); ++j) o[j] *= inv;
    }
  }

  void l2_normalize(const Buffer& x, const Buffer& out) override {
    require_f32(x, "l2_normalize");
    require_shape(out, x.rows(), x.cols(), "l2_normalize", "out");
    for_rows(x.rows(), x.cols(), [&](int64_t r) { cpu::l2_normalize_row(x.row<float>(r), x.cols(), out.row<float>(r)); });
  }

 private:
  // Runs fn(row) for every row, on the pool when the work is big enough.
  template <typename Fn>
  void for_rows(int64_t rows, int64_t cols, Fn&& fn) {
    if (rows * cols < kSerialElements || rows == 1) {
      for (int64_t r = 0; r < rows; ++r) fn(r);
      return;
    }
    const int64_t per_task = std::max<int64_t>(1, rows / (4 * static_cast<int64_t>(pool_.size())));
    pool_.run((rows + per_task - 1) / per_task, [&](int64_t task, unsigned) {
      for (int64_t r = task * per_task; r < std::min(rows, (task + 1) * per_task); ++r) fn(r);
    });
  }

  template <typename Fn>
  void elementwise2(const Buffer& a, const Buffer& b, const Buffer& out, const char* op, Fn&& fn) {
    require_f32(a, op);
    require_f32(b, op);
    require_f32(out, op);
    require_shape(b, a.rows(), a.cols(), op, "the second operand");
    require_shape(out, a.rows(), a.cols(), op, "out");
    for_rows(a.rows(), a.cols(), [&](int64_t r) { fn(a.row<float>(r), b.row<float>(r), a.cols(), out.row<float>(r)); });
  }

  cpu::Isa isa_;
  ThreadPool pool_;
  std::vector<cpu::Activations> acts_;       // matmul scratch, reused
  std::vector<std::vector<float>> scratch_;  // attention scores, one per thread
};

}  // namespace

std::unique_ptr<Backend> create_cpu_backend(const CpuBackendOptions& options) {
  return std::make_unique<CpuBackend>(options);
}

}  // namespace vireo
