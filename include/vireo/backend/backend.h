// The Backend interface: the one surface models are written against. A backend owns the memory
// activations live in (host memory for the CPU, device memory for CUDA), prepares each weight
// once at load into whatever layout its kernels like best (values exactly preserved), and runs
// the ops below. Ops are enqueued in call order; `download` (and `synchronize`) wait for them.
//
// Shapes: every activation is a 2-D row-major Buffer [rows, cols]; one row per token unless noted.
// A Weight is [rows, cols] as in the file (a linear layer is [n_out, n_in]); vectors are [1, n].
//
// A backend that lacks an op inherits the default, which throws vireo::Error (Unsupported)
// naming the op and the backend, so a model fails at its first step with a clear message.
#pragma once
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "vireo/core/dtype.h"
#include "vireo/core/error.h"
#include "vireo/formats/model.h"
#include "vireo/kernels/ref/sample.h"

namespace vireo {

// A 2-D view of backend memory. Copies share the allocation (a shared_ptr keeps it alive); views
// of rows or reshapes of a contiguous buffer share it too. Code outside the backend must not
// dereference data(): on a GPU it is a device address.
//
// Elements are of a plain type, or Q8_0 (a KV cache): cols and stride then count elements, whole
// 32-element blocks, and a row is cols/32 blocks of 34 bytes.
class Buffer {
 public:
  Buffer() = default;
  Buffer(std::shared_ptr<void> storage, void* data, DType type, int64_t rows, int64_t cols, int64_t stride)
      : storage_(std::move(storage)), data_(data), type_(type), rows_(rows), cols_(cols), stride_(stride) {
    const auto t = dtype_traits(type);
    VIREO_CHECK(t.has_value() && cols % t->block_elems == 0 && stride % t->block_elems == 0);
    block_elems_ = t->block_elems;
    block_bytes_ = t->block_bytes;
    stride_bytes_ = bytes_of(stride);
  }

  bool empty() const { return data_ == nullptr; }
  DType type() const { return type_; }
  int64_t rows() const { return rows_; }
  int64_t cols() const { return cols_; }
  int64_t stride() const { return stride_; }  // elements from one row's start to the next
  bool contiguous() const { return stride_ == cols_; }
  size_t element_size() const { return block_bytes_; }  // plain types; a block's bytes for Q8_0
  size_t row_bytes() const { return bytes_of(cols_); }
  size_t stride_bytes() const { return stride_bytes_; }
  void* data() const { return data_; }
  template <typename T>
  T* as() const { return static_cast<T*>(data_); }
  template <typename T>
  T* row(int64_t r) const {
    return reinterpret_cast<T*>(static_cast<char*>(data_) + r * static_cast<int64_t>(stride_bytes_));
  }

  // Rows [begin, begin + count) of this buffer.
  Buffer rows_view(int64_t begin, int64_t count) const {
    VIREO_CHECK(begin >= 0 && count >= 0 && begin + count <= rows_);
    return Buffer(storage_, row<char>(begin), type_, count, cols_, stride_);
  }
  // The same elements as [rows, cols]; the buffer must be contiguous.
  Buffer reshaped(int64_t rows, int64_t cols) const {
    VIREO_CHECK(contiguous() && rows * cols == rows_ * cols_);
    return Buffer(storage_, data_, type_, rows, cols, cols);
  }

 private:
  size_t bytes_of(int64_t elements) const {
    return static_cast<size_t>(elements) / block_elems_ * block_bytes_;
  }

  std::shared_ptr<void> storage_;
  void* data_ = nullptr;
  DType type_ = DType::F32;
  int64_t rows_ = 0, cols_ = 0, stride_ = 0;
  uint32_t block_elems_ = 1, block_bytes_ = 4;
  size_t stride_bytes_ = 0;
};

// A weight prepared by a backend. Backends subclass it with their own storage.
class Weight {
 public:
  virtual ~Weight() = default;
  std::string name;
  DType type = DType::F32;  // the file's type (the backend may store it repacked)
  int64_t rows = 0, cols = 0;
};
using WeightPtr = std::shared_ptr<const Weight>;

// How a weight will be used, so the backend can choose its layout.
enum class WeightUse {
  Matmul,  // the right operand of matmul (a linear layer, the output head)
  Rows,    // a table read by get_rows (token / position embeddings)
  Vector,  // a norm weight or a bias: [1, n] F32
};

struct RopeParams {
  RopeStyle style = RopeStyle::Normal;
  float theta = 10000.0f;
  int n_dims = 0;                    // rotated dimensions per head (the rest pass through)
  std::vector<float> freq_factors;   // n_dims/2 divisors of each frequency (llama3 scaling), or empty
  float freq_scale = 1.0f;           // linear scaling: positions are multiplied by this
};

struct AttentionParams {
  int n_head = 0;
  int n_head_kv = 0;  // query head h reads KV head h / (n_head / n_head_kv)
  int head_dim = 0;
  float scale = 0.0f;  // usually 1/sqrt(head_dim)
  // Query rows come in runs that attend to the same keys (a prompt's tokens, an encoder's
  // sequences), so blocks of rows can share key tiles; false for rows of many sequences.
  bool shared_ranges = false;
  // At least as many keys as any query row attends to (0: unknown, the cache's size). A bound
  // that holds for many steps (the decoder rounds it up to a power of two), so that a step
  // replayed from a graph keeps the same split of long ranges.
  int64_t max_keys = 0;
  // Cells per block of a paged cache (a power of two), when attention is given block tables.
  int kv_block_size = 0;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;

  // ---- memory ----
  virtual Buffer alloc(DType type, int64_t rows, int64_t cols) = 0;  // contents undefined
  // Copies host data (rows*cols elements of the buffer's type, row-major) into / out of `buf`.
  virtual void upload(const Buffer& buf, const void* host) = 0;
  virtual void download(const Buffer& buf, void* host) = 0;
  virtual void synchronize() {}

  // ---- steps ----
  // A model brackets each forward pass with these. A backend may record the ops of a step the
  // first times it sees `key` and afterwards replay the recording (a CUDA graph), with only the
  // uploads' data new: the caller promises that equal keys make the same calls on the same
  // buffers, with uploads of the same sizes in the same order. begin_step returns whether the
  // step is being recorded or replayed; end_step(false) abandons it (after an error).
  virtual bool begin_step(uint64_t key, int64_t n_tokens) { return false; }
  virtual void end_step(bool run = true) {}

  // ---- weights ----
  // Prepares a weight once, at load. The tensor's data must stay valid for the weight's life
  // (the model keeps its file mapped); a backend may also copy it.
  virtual WeightPtr prepare(const Tensor& tensor, WeightUse use) = 0;

  // ---- ops ---- (F32 activations unless noted; `out` may alias an input of an elementwise op)

  // out[i, :] = table[ids[i], :] as F32. ids: I32 [n, 1]; out: [n, table.cols].
  virtual void get_rows(const Weight& table, const Buffer& ids, const Buffer& out) { missing("get_rows"); }
  // out[i, :] = src[ids[i], :]. ids: I32 [n, 1]; out: [n, src.cols].
  virtual void gather_rows(const Buffer& src, const Buffer& ids, const Buffer& out) { missing("gather_rows"); }
  // out[n, w.rows] = x[n, w.cols] · wᵀ, for any weight type the backend prepared for Matmul.
  virtual void matmul(const Buffer& x, const Weight& w, const Buffer& out) { missing("matmul"); }
  // Several weights applied to the same input (q/k/v, gate/up): one pass over x.
  virtual void matmul_multi(const Buffer& x, std::span<const Weight* const> ws, std::span<const Buffer> outs) {
    for (size_t i = 0; i < ws.size(); ++i) matmul(x, *ws[i], outs[i]);
  }
  // x[i, :] += bias (a [1, x.cols] vector), in place.
  virtual void add_bias(const Buffer& x, const Weight& bias) { missing("add_bias"); }
  // out = x / rms(x) * weight, per row. x [n, d]; weight [1, d].
  virtual void rms_norm(const Buffer& x, const Weight& weight, float eps, const Buffer& out) { missing("rms_norm"); }
  // x += h, then out = rms_norm(x) * weight: a residual add and the next norm (one launch on a GPU).
  virtual void add_rms_norm(const Buffer& x, const Buffer& h, const Weight& weight, float eps, const Buffer& out) {
    add(x, h, x);
    rms_norm(x, weight, eps, out);
  }
  // out = (x - mean) / sqrt(var + eps) * weight + bias, per row.
  virtual void layer_norm(const Buffer& x, const Weight& weight, const Weight& bias, float eps, const Buffer& out) {
    missing("layer_norm");
  }
  virtual void add(const Buffer& a, const Buffer& b, const Buffer& out) { missing("add"); }
  virtual void mul(const Buffer& a, const Buffer& b, const Buffer& out) { missing("mul"); }
  // out = silu(gate) * up (SwiGLU).
  virtual void silu_mul(const Buffer& gate, const Buffer& up, const Buffer& out) { missing("silu_mul"); }
  // GELU, tanh approximation (as llama.cpp's ggml_gelu).
  virtual void gelu(const Buffer& x, const Buffer& out) { missing("gelu"); }
  // Rotary embedding in place. x [n, n_heads*head_dim]; positions I32 [n, 1].
  virtual void rope(const Buffer& x, const Buffer& positions, int n_heads, int head_dim, const RopeParams& p) {
    missing("rope");
  }
  // rope on q (n_head heads) and k (n_head_kv heads) at the same positions.
  virtual void rope_qk(const Buffer& q, const Buffer& k, const Buffer& positions, int n_head, int n_head_kv, int head_dim,
                       const RopeParams& p) {
    rope(q, positions, n_head, head_dim, p);
    rope(k, positions, n_head_kv, head_dim, p);
  }
  // Writes k and v ([n, n_head_kv*head_dim] F32) into rows cells[i] of the caches (F16, F32, or
  // Q8_0 where the backend allocates it, rounded as the reference quantizer does;
  // [n_cells, n_head_kv*head_dim]). cells: I32 [n, 1].
  virtual void kv_write(const Buffer& k, const Buffer& v, const Buffer& cells, const Buffer& k_cache,
                        const Buffer& v_cache) {
    missing("kv_write");
  }
  // rope_qk, then kv_write of the roped k and v: a decoder layer's step from its q/k/v products to
  // attention (one launch on a GPU).
  virtual void rope_qk_kv_write(const Buffer& q, const Buffer& k, const Buffer& v, const Buffer& positions, const Buffer& cells,
                                const Buffer& k_cache, const Buffer& v_cache, int n_head, int n_head_kv, int head_dim,
                                const RopeParams& p) {
    rope_qk(q, k, positions, n_head, n_head_kv, head_dim, p);
    kv_write(k, v, cells, k_cache, v_cache);
  }
  // Scaled dot-product attention. Query row i attends to keys [begin_i, begin_i + count_i),
  // given by ranges (I32 [n, 2]: begin, count); causality is expressed by the ranges.
  // q and out: [n, n_head*head_dim] F32; k, v: [cells, n_head_kv*head_dim] F16, F32 or Q8_0.
  // Paged caches: `blocks` (I32 [n_blocks, 1]) holds the batch's block tables end to end, and key j
  // is row blocks[j / B] * B + j % B of k and v, B = p.kv_block_size (see kernels/kv_pages.h).
  // Without blocks (empty), key j is row j.
  virtual void attention(const Buffer& q, const Buffer& k, const Buffer& v, const Buffer& ranges, const Buffer& blocks,
                         const AttentionParams& p, const Buffer& out) {
    missing("attention");
  }
  void attention(const Buffer& q, const Buffer& k, const Buffer& v, const Buffer& ranges, const AttentionParams& p,
                 const Buffer& out) {
    attention(q, k, v, ranges, Buffer(), p, out);
  }
  // Row-wise softmax.
  virtual void softmax(const Buffer& x, const Buffer& out) { missing("softmax"); }
  // out (I32 [n, 1]) = index of each row's largest value (the first one on ties).
  virtual void argmax(const Buffer& x, const Buffer& out) { missing("argmax"); }
  // out (I32 [n, 1]) = ref::draw_token of each row of x with that row of params (F32 [n, 5], one
  // DrawParams each): sampling where the logits are. A row with no finite logit gets -1.
  virtual void sample(const Buffer& x, const Buffer& params, const Buffer& out) { missing("sample"); }
  // Mean of the rows of each sequence: ranges I32 [n_seq, 2] (begin, count) -> out [n_seq, d].
  virtual void mean_rows(const Buffer& x, const Buffer& ranges, const Buffer& out) { missing("mean_rows"); }
  // out = x / max(||x||, eps), per row.
  virtual void l2_normalize(const Buffer& x, const Buffer& out) { missing("l2_normalize"); }

 protected:
  [[noreturn]] void missing(const char* op) const {
    fail(ErrorCode::Unsupported, "op '{}' is not implemented by the {} backend", op, name());
  }
};

struct CpuBackendOptions {
  unsigned n_threads = 0;  // 0: one per core
  // Caps the kernels' instruction set: "scalar" (portable C++), "avx2", "avx512" (AVX-512 +
  // VNNI), "amx" (AVX-512 plus AMX tiles for batches of 16+ tokens); "" picks the best the CPU
  // and OS support.
  std::string isa;
};

std::unique_ptr<Backend> create_cpu_backend(const CpuBackendOptions& options = {});

// True when this build has the CUDA backend and a CUDA device is present.
bool cuda_available();
// The CUDA backend on device `device` (weights and activations in device memory). Throws
// Unsupported when the build has no CUDA or no device is present.
std::unique_ptr<Backend> create_cuda_backend(int device = 0);

struct BackendOptions {
  // "cpu", "cuda" (or "cuda:N"), or "auto" / "": CUDA when a GPU is present, else the CPU.
  std::string device = "auto";
  unsigned n_threads = 0;  // CPU backend only; 0: one per core
  std::string isa;         // CPU backend only; see CpuBackendOptions
};
// The backend the options name; "cuda" without a usable GPU is an error that says so.
std::unique_ptr<Backend> create_backend(const BackendOptions& options);
// The device create_backend would use for `device` ("cpu" or "cuda:N"), without creating it.
std::string resolve_device(const std::string& device);

}  // namespace vireo
