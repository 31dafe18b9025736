// The CUDA backend: activations and weights in device memory, every op enqueued on one stream.
// Decode-sized products (up to 16 tokens by default, 8 a launch) stream the weights through the
// gemv kernels in their file's precision; larger batches go to tensor cores: up to 128 rows (many
// sequences decoding) Q4_0, Q8_0, Q4_K and Q6_K weights through qgemm (dequantized in registers),
// longer ones (prompts) and other types through cuBLAS (quantized weights dequantized tile by tile
// into F16 first). Only download waits for the GPU.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <bit>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <utility>
#include <vector>

#include "backend/cuda/cublas_loader.h"
#include "backend/mlx_convert.h"
#include "backend/op_checks.h"
#include "vireo/backend/backend.h"
#include "vireo/core/mapped_file.h"
#include "vireo/kernels/cuda/gemv.h"
#include "vireo/kernels/cuda/qgemm.h"
#include "vireo/kernels/cuda/ops.h"
#include "vireo/kernels/ref/quant.h"

namespace vireo {
namespace {

void check_cuda(cudaError_t e, const char* what) {
  if (e != cudaSuccess) fail(ErrorCode::Io, "CUDA {}: {}", what, cudaGetErrorString(e));
}
void check_cublas(cublasStatus_t s, const char* what) {
  if (s != CUBLAS_STATUS_SUCCESS) fail(ErrorCode::Io, "cuBLAS {}: status {}", what, static_cast<int>(s));
}

using op_checks::require;
using op_checks::require_f32;
using op_checks::require_shape;

// Device memory is cached: a block freed by its last Buffer waits, by device and rounded size,
// for the next request. cudaMalloc costs far more than a forward pass's small buffers, and
// cudaFree waits for the whole device, so encoders and prefill that size buffers per call would
// otherwise stall on them.
class DevicePool {
 public:
  std::shared_ptr<void> get(size_t bytes) {
    int device = 0;
    check_cuda(cudaGetDevice(&device), "get device");
    const size_t size = rounded(bytes);
    void* p = nullptr;
    {
      std::lock_guard lock(mutex_);
      auto& list = free_[{device, size}];
      if (!list.empty()) {
        p = list.back();
        list.pop_back();
      }
    }
    if (p == nullptr && cudaMalloc(&p, size) != cudaSuccess) {
      (void)cudaGetLastError();
      release(device);  // what the cache holds may be what is missing
      check_cuda(cudaMalloc(&p, size), "out of device memory");
    }
    return std::shared_ptr<void>(p, [this, device, size](void* q) {
      std::lock_guard lock(mutex_);
      free_[{device, size}].push_back(q);
    });
  }

 private:
  // Small blocks by powers of two, large ones by 2 MiB: little waste, few distinct sizes.
  static size_t rounded(size_t bytes) {
    if (bytes <= (size_t{1} << 20)) return std::bit_ceil(std::max<size_t>(bytes, 256));
    return (bytes + (size_t{2} << 20) - 1) / (size_t{2} << 20) * (size_t{2} << 20);
  }
  void release(int device) {
    std::lock_guard lock(mutex_);
    cudaDeviceSynchronize();
    for (auto& [key, list] : free_) {
      if (key.first != device) continue;
      for (void* q : list) cudaFree(q);
      list.clear();
    }
  }
  std::mutex mutex_;
  std::map<std::pair<int, size_t>, std::vector<void*>> free_;
};

std::shared_ptr<void> device_alloc(size_t bytes) {
  static DevicePool* pool = new DevicePool;  // never destroyed: buffers may outlive static destructors
  return pool->get(bytes);
}

class CudaWeight final : public Weight {
 public:
  ~CudaWeight() override { cuda::free_matrix(matrix); }
  cuda::DeviceMatrix matrix;    // Matmul and Rows
  std::shared_ptr<void> vec;    // Vector: [1, cols] F32 on the device
  // Quantized matrices dequantized once to F16 for prompt-sized products, where memory allows
  // (see CudaBackend::f16_copy); made at the first such product.
  mutable std::shared_ptr<void> f16;
  mutable bool f16_tried = false;
};
const CudaWeight& as_cuda(const Weight& w) { return static_cast<const CudaWeight&>(w); }

const float* vector_of(const Weight& w, int64_t n, const char* op) {
  const auto& cw = as_cuda(w);
  if (!cw.vec || cw.cols != n) fail(ErrorCode::InvalidArgument, "{}: vector '{}' has {} values, expected {}", op, w.name, cw.cols, n);
  return static_cast<const float*>(cw.vec.get());
}

// A device scratch that only grows.
struct Scratch {
  std::shared_ptr<void> mem;
  size_t bytes = 0;
  uint64_t moves = 0;
  void* get(size_t n) {
    if (n > bytes) {
      mem = device_alloc(n);
      check_cuda(cudaMemset(mem.get(), 0, n), "zero scratch");  // attention's merge counters start at zero
      bytes = n;
      ++moves;
    }
    return mem.get();
  }
};

class CudaBackend final : public Backend {
 public:
  using Backend::attention;  // the call without block tables
  explicit CudaBackend(int device) : device_(device) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) fail(ErrorCode::Unsupported, "no CUDA device is present");
    if (device < 0 || device >= n) fail(ErrorCode::InvalidArgument, "CUDA device {} does not exist ({} present)", device, n);
    check_cuda(cudaSetDevice(device), "set device");
    check_cuda(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "stream");
    check_cublas(cuda::cublas().create(&blas_), "create");
    check_cublas(cuda::cublas().set_stream(blas_, stream_), "set stream");
    name_ = fmt::format("cuda:{} ({})", device, cuda::device_name(device));
    // VIREO_CUDA_GRAPHS=0 runs every op as its own launch (for profilers).
    if (const char* g = std::getenv("VIREO_CUDA_GRAPHS")) graphs_ = std::string(g) != "0";
    // VIREO_CUDA_F16_WEIGHTS=0: prompts dequantize weight tiles at every product instead of
    // keeping F16 copies (less device memory, slower prompts).
    if (const char* f = std::getenv("VIREO_CUDA_F16_WEIGHTS")) f16_weights_ = std::string(f) != "0";
    // Products of qgemm's types leave the gemv kernels after one launch's rows on Hopper, whose
    // warpgroup tiles are faster from there (measured on an H100, Llama-3-8B Q4_0 at depth 1024:
    // 12 and 16 sequences 1.45x and 1.58x two gemv launches).
    gemv_rows_qgemm_ = cuda::qgemm_uses_wgmma() ? cuda::kMaxGemvTokens : cuda::kDefaultGemvRows;
    // Tuning: the most rows a product takes through the gemv kernels before the GEMM path (for
    // qgemm's types, down to 0: every product through qgemm).
    if (const char* r = std::getenv("VIREO_CUDA_GEMV_ROWS")) {
      const int64_t rows = std::atoll(r);
      gemv_rows_ = std::max<int64_t>(cuda::kMaxGemvTokens, rows);
      gemv_rows_qgemm_ = std::max<int64_t>(0, rows);
    }
    // Tuning: the most rows a product of plain weights (F16, BF16, F32) takes through the gemv.
    if (const char* p = std::getenv("VIREO_CUDA_PLAIN_GEMV_ROWS")) {
      gemv_rows_plain_ = std::clamp<int64_t>(std::atoll(p), 0, cuda::kMaxGemvTokens);
    }
    // Tuning: the most rows a product of qgemm's types takes through it; more (or any, with 0)
    // dequantize the weights to F16 for cuBLAS.
    if (const char* q = std::getenv("VIREO_CUDA_QGEMM_ROWS")) qgemm_rows_ = std::max<int64_t>(0, std::atoll(q));
    // Steps of up to this many rows are replayed as graphs (batched decode; a step of many
    // sequences launches some 300 kernels, more than the host keeps ahead of the GPU eagerly).
    if (const char* g = std::getenv("VIREO_CUDA_GRAPH_ROWS")) graph_rows_ = std::max<int64_t>(0, std::atoll(g));
    if (const char* p = std::getenv("VIREO_CUDA_PROFILE"); p != nullptr && std::string(p) != "0") {
      profile_ = true;
      graphs_ = false;
      check_cuda(cudaEventCreate(&prof_start_), "event");
      check_cuda(cudaEventCreate(&prof_end_), "event");
    }
  }
  ~CudaBackend() override {
    cudaStreamSynchronize(stream_);
    if (download_staging_ != nullptr) cudaFreeHost(download_staging_);
    if (profile_) {
      profile_report();
      cudaEventDestroy(prof_start_);
      cudaEventDestroy(prof_end_);
    }
    steps_.clear();
    cuda::cublas().destroy(blas_);
    cudaStreamDestroy(stream_);
  }

  std::string name() const override { return name_; }

  // The server and the ingest pipeline call a backend from several threads; CUDA's current device
  // is per thread, so every entry point makes it this backend's.
  void bind() const {
    thread_local int current = -1;
    if (current != device_) {
      check_cuda(cudaSetDevice(device_), "set device");
      current = device_;
    }
  }

  // ---- memory ----
  Buffer alloc(DType type, int64_t rows, int64_t cols) override {
    bind();
    const auto traits = dtype_traits(type);
    if (!traits || traits->block_elems != 1) {
      fail(ErrorCode::Unsupported, "the CUDA backend holds buffers of plain types only, not {} (a Q8_0 KV cache runs on the CPU backend)",
           traits ? traits->name : "this type");
    }
    if (rows < 0 || cols < 0) fail(ErrorCode::InvalidArgument, "alloc: negative shape [{}, {}]", rows, cols);
    auto mem = device_alloc(static_cast<size_t>(rows * cols) * traits->block_bytes);
    void* p = mem.get();
    return Buffer(std::move(mem), p, type, rows, cols, cols);
  }
  void upload(const Buffer& buf, const void* host) override {
    bind();
    add_pending_sums();  // before anything may overwrite their output
    ++op_seq_;  // may overwrite a buffer whose rounding an op left for the next product
    if (profile_) profile_close();
    if (buf.rows() == 0 || buf.cols() == 0) return;
    const size_t row = buf.row_bytes(), pitch = buf.stride_bytes();
    if (mode_ != Mode::Eager) {  // a captured step reads its inputs from its own pinned staging
      const size_t bytes = row * static_cast<size_t>(buf.rows());
      Step& st = *step_;
      if (mode_ == Mode::Capture) {
        const size_t offset = (st.staged + 255) / 256 * 256;
        if (offset + bytes > kStagingBytes) fail(ErrorCode::Unsupported, "a captured step uploads more than {} bytes", kStagingBytes);
        st.uploads.push_back({offset, bytes});
        st.staged = offset + bytes;
        std::memcpy(st.staging + offset, host, bytes);
        check_cuda(cudaMemcpy2DAsync(buf.data(), pitch, st.staging + offset, row, row,
                                     static_cast<size_t>(buf.rows()), cudaMemcpyHostToDevice, stream_),
                   "upload");
        return;
      }
      if (upload_index_ >= st.uploads.size() || st.uploads[upload_index_].second != bytes) {
        fail(ErrorCode::InvalidArgument, "a replayed step's uploads differ from the captured ones");
      }
      std::memcpy(st.staging + st.uploads[upload_index_++].first, host, bytes);
      return;
    }
    // Pageable source: the call returns once the data is staged, so `host` may go at once.
    check_cuda(cudaMemcpy2DAsync(buf.data(), pitch, host, row, row, static_cast<size_t>(buf.rows()),
                                 cudaMemcpyHostToDevice, stream_),
               "upload");
  }
  void download(const Buffer& buf, void* host) override {
    bind();
    if (mode_ != Mode::Eager) fail(ErrorCode::InvalidArgument, "download inside a captured step");
    add_pending_sums();
    if (buf.rows() == 0 || buf.cols() == 0) return;
    const size_t row = buf.row_bytes(), pitch = buf.stride_bytes();
    const size_t bytes = row * static_cast<size_t>(buf.rows());
    // Small results (a step's chosen ids) through pinned memory: a pageable copy costs a staging
    // round trip in the driver on every token.
    const bool small = bytes <= kStagingBytes;
    if (small && download_staging_ == nullptr) check_cuda(cudaMallocHost(&download_staging_, kStagingBytes), "pinned staging");
    check_cuda(cudaMemcpy2DAsync(small ? download_staging_ : host, row, buf.data(), pitch, row,
                                 static_cast<size_t>(buf.rows()), cudaMemcpyDeviceToHost, stream_),
               "download");
    synchronize();
    if (small) std::memcpy(host, download_staging_, bytes);
  }
  void synchronize() override {
    bind();
    add_pending_sums();
    if (profile_) profile_close();
    check_cuda(cudaStreamSynchronize(stream_), "synchronize");
  }

  // ---- steps: decode steps captured once as a CUDA graph, then replayed ----
  // The first time a key is seen the step runs eagerly (buffers and scratch reach their sizes);
  // the second time it is captured; after that only its uploads are copied into its pinned
  // staging and the graph is launched, so a decode step costs one launch instead of hundreds.
  bool begin_step(uint64_t key, int64_t n_tokens) override {
    bind();
    prof_prompt_ = n_tokens > kProfileDecodeRows;
    if (!graphs_ || n_tokens > graph_rows_ || mode_ != Mode::Eager) return false;
    if (auto it = steps_.find(key); it != steps_.end()) {
      if (it->second.generation == generation()) {
        step_ = &it->second;
        step_->last_use = ++step_clock_;
        check_cuda(cudaEventSynchronize(step_->done), "step");  // its last launch may still read the staging
        mode_ = Mode::Replay;
        upload_index_ = 0;
        return true;
      }
      steps_.erase(it);  // scratch it used has moved
    }
    if (++seen_[key] < 2) return false;
    if (steps_.size() >= kMaxSteps) {  // a server's batches take many shapes: keep the recent ones
      auto oldest = std::min_element(steps_.begin(), steps_.end(), [](const auto& a, const auto& b) { return a.second.last_use < b.second.last_use; });
      check_cuda(cudaEventSynchronize(oldest->second.done), "step");  // its last launch may still read the staging
      steps_.erase(oldest);
    }
    Step& st = steps_[key];
    st.last_use = ++step_clock_;
    step_ = &st;
    mode_ = Mode::Capture;
    check_cuda(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeRelaxed), "begin capture");
    return true;
  }

  void end_step(bool run) override {
    bind();
    add_pending_sums();  // inside the captured step, if any
    if (mode_ == Mode::Eager) return;
    Step& st = *step_;
    const Mode mode = mode_;
    mode_ = Mode::Eager;
    step_ = nullptr;
    if (mode == Mode::Capture) {
      cudaGraph_t graph = nullptr;
      const cudaError_t e = cudaStreamEndCapture(stream_, &graph);
      if (e == cudaSuccess && run) {
        check_cuda(cudaGraphInstantiate(&st.exec, graph, 0), "instantiate graph");
        st.generation = generation();
      }
      if (graph != nullptr) cudaGraphDestroy(graph);
      if (e != cudaSuccess || !run || st.exec == nullptr) {
        for (auto it = steps_.begin(); it != steps_.end(); ++it) {
          if (&it->second == &st) {
            steps_.erase(it);
            break;
          }
        }
        if (run) check_cuda(e, "end capture");
        return;
      }
    } else if (upload_index_ != st.uploads.size()) {
      fail(ErrorCode::InvalidArgument, "a replayed step made {} uploads, its capture {}", upload_index_, st.uploads.size());
    }
    if (!run) return;
    check_cuda(cudaGraphLaunch(st.exec, stream_), "launch graph");
    check_cuda(cudaEventRecord(st.done, stream_), "record");
  }

  // ---- weights ----
  WeightPtr prepare(const Tensor& t, WeightUse use) override {
    bind();
    if (t.data == nullptr) fail(ErrorCode::InvalidArgument, "{}: tensor has no data", t.name);
    auto w = std::make_shared<CudaWeight>();
    w->name = t.name;
    w->type = t.type;
    w->rows = static_cast<int64_t>(t.rows());
    w->cols = static_cast<int64_t>(t.cols());
    const uint8_t* data = t.data;
    std::vector<uint8_t> converted;
    if (t.mlx_scales != nullptr) {
      w->type = convert_mlx(t, converted);
      data = converted.data();
    }
    if (use == WeightUse::Vector) {
      w->rows = 1;
      w->cols = static_cast<int64_t>(t.n_elements());
      std::vector<float> values(static_cast<size_t>(w->cols));
      ref::dequantize_row(w->type, data, values.data(), w->cols);
      w->vec = device_alloc(values.size() * sizeof(float));
      check_cuda(cudaMemcpy(w->vec.get(), values.data(), values.size() * sizeof(float), cudaMemcpyHostToDevice), "upload");
      return w;
    }
    if (!cuda::supports_type(w->type)) {
      fail(ErrorCode::Unsupported, "{}: the CUDA backend has no kernels for type {}", t.name,
           dtype_traits(w->type) ? dtype_traits(w->type)->name : "unknown");
    }
    w->matrix = cuda::upload_matrix(w->type, data, w->rows, w->cols);
    // The device holds the weight now: the file's pages need not stay in host memory.
    if (t.file_mapped && converted.empty()) drop_resident_pages(t.data, t.nbytes);
    return w;
  }

  // ---- ops ----
  void get_rows(const Weight& table, const Buffer& ids, const Buffer& out) override {
    if (replaying("get_rows")) return;
    const auto& w = as_cuda(table);
    require(w.matrix.levels != nullptr, "get_rows", "the table was not prepared as rows");
    require(ids.type() == DType::I32 && ids.cols() == 1, "get_rows", "ids must be I32 [n, 1]");
    require_f32(out, "get_rows");
    require_shape(out, ids.rows(), w.cols, "get_rows", "out");
    cuda::get_rows(w.matrix, ids.as<int32_t>(), ids.rows(), out.as<float>(), out.stride(), stream_);
  }

  void gather_rows(const Buffer& src, const Buffer& ids, const Buffer& out) override {
    if (replaying("gather_rows")) return;
    require(ids.type() == DType::I32 && ids.cols() == 1, "gather_rows", "ids must be I32 [n, 1]");
    require(src.type() == out.type() && src.cols() == out.cols() && out.rows() == ids.rows(), "gather_rows",
            "out must be [n, src.cols] of src's type");
    const auto es = static_cast<int64_t>(src.element_size());
    cuda::gather_rows(src.data(), src.stride() * es, ids.as<int32_t>(), ids.rows(), src.cols() * es, out.data(), out.stride() * es,
                      stream_);
  }

  void matmul(const Buffer& x, const Weight& w, const Buffer& out) override {
    const Weight* ws[1] = {&w};
    const Buffer outs[1] = {out};
    matmul_multi(x, ws, outs);
  }

  void matmul_multi(const Buffer& x, std::span<const Weight* const> ws, std::span<const Buffer> outs) override {
    if (replaying(nullptr)) return;  // timed below, by path
    require(ws.size() == outs.size() && !ws.empty(), "matmul", "one output per weight");
    require_f32(x, "matmul");
    const int64_t n = x.rows();
    bool any_q8_dot = false;
    for (size_t i = 0; i < ws.size(); ++i) {
      const auto& m = as_cuda(*ws[i]).matrix;
      if (m.levels == nullptr) fail(ErrorCode::InvalidArgument, "matmul: '{}' was not prepared for matmul", ws[i]->name);
      if (m.cols != x.cols()) fail(ErrorCode::InvalidArgument, "matmul: x has {} columns but '{}' has {}", x.cols(), ws[i]->name, m.cols);
      require_f32(outs[i], "matmul");
      require_shape(outs[i], n, m.rows, "matmul", "out");
      any_q8_dot = any_q8_dot || cuda::uses_q8_activations(m.type);
    }
    if (n == 0) return;
    auto qgemm_type = [&](const cuda::DeviceMatrix& m) { return cuda::qgemm_supports(m) && x.stride() % 4 == 0; };
    const bool all_qgemm = std::all_of(ws.begin(), ws.end(), [&](const Weight* w) { return qgemm_type(as_cuda(*w).matrix); });
    // Plain weights (F16, BF16, F32) go to cuBLAS past kMaxPlainGemvTokens rows: a GEMM then
    // reads them once at full rate (H100, Llama-3-8B F16, 8 sequences: 1,149 tok/s against 635
    // through the gemv).
    const bool all_plain = std::all_of(ws.begin(), ws.end(), [&](const Weight* w) {
      const DType t = as_cuda(*w).matrix.type;
      return t == DType::F16 || t == DType::BF16 || t == DType::F32;
    });
    const int64_t gemv_rows = all_qgemm ? gemv_rows_qgemm_ : all_plain ? gemv_rows_plain_ : gemv_rows_;
    if (n <= gemv_rows) {
      // Decode, of one sequence or a few: the weights streamed once per kMaxGemvTokens rows, with
      // activations rounded once (unless the op before did it: see produce_next), one launch per
      // run of weights of one type. Up to gemv_rows_ rows this beats dequantizing every matrix
      // for a GEMM.
      const bool pre_rounded = made_by_previous_op(x, false);
      if (profile_) profile_op(n <= cuda::kMaxGemvTokens ? "matmul: gemv" : "matmul: gemv, rows in chunks");
      for (int64_t r0 = 0; r0 < n; r0 += cuda::kMaxGemvTokens) {
        const Buffer xr = x.rows_view(r0, std::min<int64_t>(cuda::kMaxGemvTokens, n - r0));
        const int nr = static_cast<int>(xr.rows());
        if (any_q8_dot && !pre_rounded) cuda::quantize_activations(xr.as<float>(), xr.stride(), nr, xr.cols(), qx_, stream_);
        for (size_t i = 0; i < ws.size();) {
          cuda::GemvOutput group[cuda::kMaxGemvSegments];
          size_t g = 0;
          const cuda::DeviceMatrix& first = as_cuda(*ws[i]).matrix;
          for (; i < ws.size() && g < std::size(group); ++i, ++g) {
            const cuda::DeviceMatrix& m = as_cuda(*ws[i]).matrix;
            if (m.type != first.type || m.row_bytes != first.row_bytes) break;
            group[g] = {&m, outs[i].row<float>(r0), outs[i].stride()};
          }
          cuda::gemv_multi({group, g}, xr.as<float>(), xr.stride(), &qx_, nr, stream_);
        }
      }
      return;
    }
    bool x16_ready = false, x_bf16_ready = false, x_loaded = false;
    auto takes_qgemm = [&](const cuda::DeviceMatrix& m) { return n <= qgemm_rows_ && qgemm_type(m); };
    for (size_t i = 0; i < ws.size();) {
      const cuda::DeviceMatrix& m = as_cuda(*ws[i]).matrix;
      if (takes_qgemm(m)) {
        // Q4_0, Q8_0, Q4_K, Q6_K: tensor-core products straight from the stored weights, each
        // run of one type in one launch.
        if (profile_) profile_op("matmul: qgemm");
        if (!x_loaded && !made_by_previous_op(x, true)) cuda::qgemm_load_x(x.as<float>(), x.stride(), static_cast<int>(n), x.cols(), qgemm_ws_, stream_);
        x_loaded = true;
        cuda::QGemmOutput group[cuda::kMaxQGemmSegments];
        size_t g = 0;
        for (; i < ws.size() && g < std::size(group); ++i, ++g) {
          const cuda::DeviceMatrix& mi = as_cuda(*ws[i]).matrix;
          if (!takes_qgemm(mi) || mi.type != m.type) break;
          group[g] = {&mi, outs[i].as<float>(), outs[i].stride()};
        }
        // The split sums of a product launched whole are left for the op after (see add_pending_sums).
        const bool whole = g == ws.size();
        cuda::QGemmSums sums;
        cuda::qgemm_multi({group, g}, static_cast<int>(n), qgemm_ws_, stream_, {}, whole ? &sums : nullptr);
        if (sums.splits > 1) {
          pending_sums_ = {};
          for (size_t j = 0; j < g; ++j) pending_sums_.out[j] = outs[j];
          pending_sums_.n_out = g;
          pending_sums_.sums = sums;
        }
        continue;
      }
      if (profile_) profile_op("matmul: gemm");
      gemm(x, as_cuda(*ws[i]), outs[i], x16_ready, x_bf16_ready);
      ++i;
    }
  }

  void add_bias(const Buffer& x, const Weight& bias) override {
    if (replaying("add_bias")) return;
    require_f32(x, "add_bias");
    cuda::add_bias(x.as<float>(), x.stride(), x.rows(), x.cols(), vector_of(bias, x.cols(), "add_bias"), stream_);
  }

  void rms_norm(const Buffer& x, const Weight& weight, float eps, const Buffer& out) override {
    if (replaying("rms_norm")) return;
    require_f32(x, "rms_norm");
    require_shape(out, x.rows(), x.cols(), "rms_norm", "out");
    cuda::add_rms_norm(x.as<float>(), x.stride(), nullptr, 0, vector_of(weight, x.cols(), "rms_norm"), eps, x.rows(), x.cols(),
                       out.as<float>(), out.stride(), produce_next(out), stream_);
  }

  void add_rms_norm(const Buffer& x, const Buffer& h, const Weight& weight, float eps, const Buffer& out) override {
    if (replaying("add_rms_norm", &h)) return;
    require_f32(x, "add_rms_norm");
    require_f32(h, "add_rms_norm");
    require_shape(h, x.rows(), x.cols(), "add_rms_norm", "h");
    require_shape(out, x.rows(), x.cols(), "add_rms_norm", "out");
    // h straight from a split product's partial sums, when the product just before left them.
    const cuda::QGemmSums sums = take_pending_sums({&h});
    const float* hp = sums.splits > 1 ? sums.part : h.as<float>();
    const int64_t ldh = sums.splits > 1 ? sums.ld : h.stride();
    cuda::add_rms_norm(x.as<float>(), x.stride(), hp, ldh, vector_of(weight, x.cols(), "add_rms_norm"), eps, x.rows(), x.cols(),
                       out.as<float>(), out.stride(), produce_next(out), stream_, std::max(sums.splits, 1), sums.stride);
  }

  void layer_norm(const Buffer& x, const Weight& weight, const Weight& bias, float eps, const Buffer& out) override {
    if (replaying("layer_norm")) return;
    require_f32(x, "layer_norm");
    require_shape(out, x.rows(), x.cols(), "layer_norm", "out");
    cuda::layer_norm(x.as<float>(), x.stride(), vector_of(weight, x.cols(), "layer_norm"), vector_of(bias, x.cols(), "layer_norm"), eps,
                     x.rows(), x.cols(), out.as<float>(), out.stride(), stream_);
  }

  void add(const Buffer& a, const Buffer& b, const Buffer& out) override { binary(cuda::Binary::Add, a, b, out, "add"); }
  void mul(const Buffer& a, const Buffer& b, const Buffer& out) override { binary(cuda::Binary::Mul, a, b, out, "mul"); }
  void silu_mul(const Buffer& gate, const Buffer& up, const Buffer& out) override {
    if (replaying("silu_mul")) return;
    require_binary(gate, up, out, "silu_mul");
    if (const cuda::NextActivations next = produce_next(out); next.any()) {
      cuda::silu_mul_next(gate.as<float>(), gate.stride(), up.as<float>(), up.stride(), gate.rows(), gate.cols(), out.as<float>(),
                          out.stride(), next, stream_);
      return;
    }
    launch_binary(cuda::Binary::SiluMul, gate, up, out);
  }
  void gelu(const Buffer& x, const Buffer& out) override { binary(cuda::Binary::Gelu, x, x, out, "gelu"); }

  void rope(const Buffer& x, const Buffer& positions, int n_heads, int head_dim, const RopeParams& p) override {
    rope_pair(x, nullptr, positions, n_heads, 0, head_dim, p);
  }
  void rope_qk(const Buffer& q, const Buffer& k, const Buffer& positions, int n_head, int n_head_kv, int head_dim,
               const RopeParams& p) override {
    rope_pair(q, &k, positions, n_head, n_head_kv, head_dim, p);
  }
  // The checks of rope (x2: k beside q) and kv_write, shared with their fused form.
  void check_rope(const Buffer& x, const Buffer* x2, const Buffer& positions, int n_heads, int n_heads2, int head_dim,
                  const RopeParams& p) const {
    op_checks::rope(x, positions, n_heads, head_dim, p);
    if (x2 != nullptr) {
      require_f32(*x2, "rope");
      require(x2->rows() == x.rows() && x2->cols() == int64_t{n_heads2} * head_dim, "rope", "k must be [n, n_head_kv*head_dim]");
    }
  }
  void check_kv_write(const Buffer& k, const Buffer& v, const Buffer& cells, const Buffer& k_cache, const Buffer& v_cache) const {
    op_checks::kv_write(k, v, cells, k_cache, v_cache);
    require(k_cache.stride() == v_cache.stride(), "kv_write", "caches must share one row stride");  // one kernel writes both
  }
  static float theta_scale(const RopeParams& p) {
    return std::pow(p.theta, -2.0f / static_cast<float>(p.n_dims));  // as the reference computes it
  }
  void rope_pair(const Buffer& x, const Buffer* x2, const Buffer& positions, int n_heads, int n_heads2, int head_dim,
                 const RopeParams& p) {
    if (replaying("rope_pair")) return;
    check_rope(x, x2, positions, n_heads, n_heads2, head_dim, p);
    if (p.style == RopeStyle::None) return;
    cuda::rope(x.as<float>(), x.stride(), positions.as<int32_t>(), x.rows(), n_heads, head_dim, p.n_dims, p.style == RopeStyle::NeoX,
               theta_scale(p), device_freq_factors(p.freq_factors), p.freq_scale, stream_, x2 != nullptr ? x2->as<float>() : nullptr,
               x2 != nullptr ? x2->stride() : 0, n_heads2);
  }

  void rope_qk_kv_write(const Buffer& q, const Buffer& k, const Buffer& v, const Buffer& positions, const Buffer& cells,
                        const Buffer& k_cache, const Buffer& v_cache, int n_head, int n_head_kv, int head_dim,
                        const RopeParams& p) override {
    if (p.style == RopeStyle::None || p.n_dims != head_dim) {  // the two ops (partial rotation, none)
      Backend::rope_qk_kv_write(q, k, v, positions, cells, k_cache, v_cache, n_head, n_head_kv, head_dim, p);
      return;
    }
    if (replaying("rope_qk_kv_write", &q)) return;
    check_rope(q, &k, positions, n_head, n_head_kv, head_dim, p);
    check_kv_write(k, v, cells, k_cache, v_cache);
    // q, k and v straight from a split q/k/v product's partial sums, when it just left them.
    const cuda::QGemmSums sums = take_pending_sums({&q, &k, &v});
    cuda::rope_kv_write(q.as<float>(), q.stride(), k.as<float>(), k.stride(), v.as<float>(), v.stride(), positions.as<int32_t>(),
                        cells.as<int32_t>(), q.rows(), n_head, n_head_kv, head_dim, p.style == RopeStyle::NeoX, theta_scale(p),
                        device_freq_factors(p.freq_factors), p.freq_scale, k_cache.data(), v_cache.data(), k_cache.stride(), k_cache.rows(),
                        k_cache.type() == DType::F16, stream_, sums);
  }

  void kv_write(const Buffer& k, const Buffer& v, const Buffer& cells, const Buffer& k_cache, const Buffer& v_cache) override {
    if (replaying("kv_write")) return;
    check_kv_write(k, v, cells, k_cache, v_cache);
    cuda::kv_write(k.as<float>(), k.stride(), v.as<float>(), v.stride(), cells.as<int32_t>(), k.rows(), k.cols(), k_cache.data(),
                   v_cache.data(), k_cache.stride(), k_cache.rows(), k_cache.type() == DType::F16, stream_);
  }

  void attention(const Buffer& q, const Buffer& k, const Buffer& v, const Buffer& ranges, const Buffer& blocks,
                 const AttentionParams& p, const Buffer& out) override {
    // (Profiled apart by size: decode steps of a batch against prompt chunks.)
    if (replaying(q.rows() <= 128 ? "attention: <= 128 rows" : "attention: > 128 rows")) return;
    op_checks::attention(q, k, v, ranges, blocks, p, out);
    cuda::AttentionShape a;
    a.rows = q.rows();
    a.n_head = p.n_head;
    a.n_head_kv = p.n_head_kv;
    a.head_dim = p.head_dim;
    a.scale = p.scale;
    a.pages = op_checks::kv_pages(k, blocks, p);  // the tables are checked where they are made, on the host
    a.max_keys = p.max_keys;
    a.shared_ranges = p.shared_ranges;
    const size_t scratch = cuda::attention_scratch_floats(a);
    float* s = scratch > 0 ? static_cast<float*>(attn_scratch_.get(scratch * sizeof(float))) : nullptr;
    const void* kd = k.data();
    const void* vd = v.data();
    int64_t ld_kv = k.stride();
    bool f16 = k.type() == DType::F16;
    if (!f16 && p.shared_ranges && q.rows() >= 16 && (p.head_dim == 32 || p.head_dim == 64 || p.head_dim == 128)) {
      // F32 keys and values (an encoder's own activations): rounded to F16 for the tensor cores.
      const size_t half_bytes = static_cast<size_t>(k.rows() * k.cols()) * 2;
      auto* kv16 = static_cast<uint8_t*>(kv16_.get(2 * half_bytes));
      cuda::convert_f32(k.as<float>(), k.stride(), k.rows(), k.cols(), kv16, false, stream_);
      cuda::convert_f32(v.as<float>(), v.stride(), v.rows(), v.cols(), kv16 + half_bytes, false, stream_);
      kd = kv16;
      vd = kv16 + half_bytes;
      ld_kv = k.cols();
      f16 = true;
    }
    cuda::attention(q.as<float>(), q.stride(), kd, vd, ld_kv, f16, ranges.as<int32_t>(), a, out.as<float>(), out.stride(), s, stream_,
                    p.head_dim % 32 == 0 ? produce_next(out) : cuda::NextActivations{});
  }

  void softmax(const Buffer& x, const Buffer& out) override {
    if (replaying("softmax")) return;
    require_f32(x, "softmax");
    require_shape(out, x.rows(), x.cols(), "softmax", "out");
    cuda::softmax(x.as<float>(), x.stride(), x.rows(), x.cols(), out.as<float>(), out.stride(), stream_);
  }

  void argmax(const Buffer& x, const Buffer& out) override {
    if (replaying("argmax")) return;
    require_f32(x, "argmax");
    require(out.type() == DType::I32 && out.cols() == 1 && out.rows() == x.rows() && out.contiguous(), "argmax",
            "out must be I32 [n, 1]");
    cuda::argmax(x.as<float>(), x.stride(), x.rows(), x.cols(), out.as<int32_t>(), stream_);
  }
  void sample(const Buffer& x, const Buffer& params, const Buffer& out) override {
    if (replaying("sample")) return;
    require_f32(x, "sample");
    require(params.type() == DType::F32 && params.cols() == 5 && params.rows() == x.rows() && params.contiguous(), "sample",
            "params must be F32 [n, 5]");
    require(out.type() == DType::I32 && out.cols() == 1 && out.rows() == x.rows() && out.contiguous(), "sample",
            "out must be I32 [n, 1]");
    cuda::sample(x.as<float>(), x.stride(), x.rows(), x.cols(), params.as<float>(), out.as<int32_t>(), stream_);
  }

  void mean_rows(const Buffer& x, const Buffer& ranges, const Buffer& out) override {
    if (replaying("mean_rows")) return;
    require_f32(x, "mean_rows");
    require(ranges.type() == DType::I32 && ranges.cols() == 2 && ranges.rows() == out.rows() && ranges.contiguous(), "mean_rows",
            "ranges must be I32 [n_seq, 2]");
    require(out.cols() == x.cols(), "mean_rows", "out must be [n_seq, d]");
    cuda::mean_rows(x.as<float>(), x.stride(), x.cols(), ranges.as<int32_t>(), out.rows(), out.as<float>(), out.stride(), stream_);
  }

  void l2_normalize(const Buffer& x, const Buffer& out) override {
    if (replaying("l2_normalize")) return;
    require_f32(x, "l2_normalize");
    require_shape(out, x.rows(), x.cols(), "l2_normalize", "out");
    cuda::l2_normalize(x.as<float>(), x.stride(), x.rows(), x.cols(), out.as<float>(), out.stride(), stream_);
  }

 private:
  void binary(cuda::Binary op, const Buffer& a, const Buffer& b, const Buffer& out, const char* name) {
    if (replaying(name)) return;
    require_binary(a, b, out, name);
    launch_binary(op, a, b, out);
  }
  void require_binary(const Buffer& a, const Buffer& b, const Buffer& out, const char* name) const {
    require_f32(a, name);
    require_f32(b, name);
    require_f32(out, name);
    require_shape(b, a.rows(), a.cols(), name, "the second operand");
    require_shape(out, a.rows(), a.cols(), name, "out");
  }
  void launch_binary(cuda::Binary op, const Buffer& a, const Buffer& b, const Buffer& out) {
    cuda::binary(op, a.as<float>(), a.stride(), b.as<float>(), b.stride(), out.as<float>(), out.stride(), a.rows(), a.cols(), stream_);
  }


  // out [n, rows] = x [n, cols] · Wᵀ on tensor cores. cuBLAS is column-major: a row-major W is a
  // column-major [cols, rows] matrix, so C (column-major [rows, n]) = op_T(W) · x is out.
  void gemm(const Buffer& x, const CudaWeight& w, const Buffer& out, bool& x16_ready, bool& x_bf16_ready) {
    const cuda::DeviceMatrix& m = w.matrix;
    const int64_t n = x.rows(), cols = m.cols;
    const float one = 1.0f, zero = 0.0f;
    // lda: plain weights keep their rows padded to whole runs of 8 (see upload_matrix).
    auto run = [&](const void* a, cudaDataType at, int64_t lda, const void* b, cudaDataType bt, int64_t ldb, int64_t row0, int64_t rows) {
      check_cublas(cuda::cublas().gemm_ex(blas_, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(rows), static_cast<int>(n), static_cast<int>(cols), &one,
                                a, at, static_cast<int>(lda), b, bt, static_cast<int>(ldb), &zero, out.as<float>() + row0, CUDA_R_32F,
                                static_cast<int>(out.stride()), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                   "gemm");
    };
    if (m.type == DType::F32) {  // F32 weights multiply F32 activations, as the reference does
      run(m.levels, CUDA_R_32F, static_cast<int64_t>(m.row_bytes / 4), x.data(), CUDA_R_32F, x.stride(), 0, m.rows);
      return;
    }
    const bool bf16 = m.type == DType::BF16;
    Scratch& xs = bf16 ? x_bf16_ : x16_;
    bool& ready = bf16 ? x_bf16_ready : x16_ready;
    void* xh = xs.get(static_cast<size_t>(n * cols) * 2);
    if (!ready) {
      cuda::convert_f32(x.as<float>(), x.stride(), n, cols, xh, bf16, stream_);
      ready = true;
    }
    const cudaDataType ht = bf16 ? CUDA_R_16BF : CUDA_R_16F;
    if (m.type == DType::F16 || bf16) {
      run(m.levels, ht, static_cast<int64_t>(m.row_bytes / 2), xh, ht, cols, 0, m.rows);
      return;
    }
    if (const void* wf = f16_copy(w)) {
      run(wf, CUDA_R_16F, cols, xh, CUDA_R_16F, cols, 0, m.rows);
      return;
    }
    // Quantized: dequantize row tiles (exact in F16 for these formats' ranges) and multiply each.
    const int64_t tile = std::max<int64_t>(256, (int64_t{32} << 20) / cols) / 256 * 256;
    void* wh = w16_.get(static_cast<size_t>(std::min(tile, m.rows) * cols) * 2);
    for (int64_t r0 = 0; r0 < m.rows; r0 += tile) {
      const int64_t rows = std::min(tile, m.rows - r0);
      cuda::dequantize_rows(m, r0, rows, wh, false, stream_);
      run(wh, CUDA_R_16F, cols, xh, CUDA_R_16F, cols, r0, rows);
    }
  }

  // The F16 copy of a quantized matrix for prompt-sized products: made once, at its first such
  // product, while at least half of the device's memory stays free (KV caches and activations
  // come first; VIREO_CUDA_F16_WEIGHTS=0 never makes one). The same values as the row tiles the
  // products dequantize otherwise, so results do not change; a prompt then skips rewriting every
  // weight as F16 (about 15 GB of writes for an 8B model).
  const void* f16_copy(const CudaWeight& w) {
    if (!f16_weights_ || w.f16_tried) return w.f16.get();
    w.f16_tried = true;
    const cuda::DeviceMatrix& m = w.matrix;
    const size_t bytes = static_cast<size_t>(m.rows * m.cols) * 2;
    size_t free = 0, total = 0;
    if (cudaMemGetInfo(&free, &total) != cudaSuccess || free < bytes + total / 2) return nullptr;
    w.f16 = device_alloc(bytes);
    cuda::dequantize_rows(m, 0, m.rows, w.f16.get(), false, stream_);
    return w.f16.get();
  }

  // Device copies of rope frequency divisors, one per distinct vector.
  const float* device_freq_factors(const std::vector<float>& ff) {
    if (ff.empty()) return nullptr;
    for (auto& [values, mem] : freq_factors_) {
      if (values == ff) return static_cast<const float*>(mem.get());
    }
    auto mem = device_alloc(ff.size() * sizeof(float));
    check_cuda(cudaMemcpy(mem.get(), ff.data(), ff.size() * sizeof(float), cudaMemcpyHostToDevice), "upload");
    freq_factors_.emplace_back(ff, mem);
    return static_cast<const float*>(mem.get());
  }

  // Every op starts here; it also counts the ops, so a product can tell whether the op just
  // before it left its activations ready (see produce_next). A product's split sums left for the
  // next op are added first, unless this op takes them from `consumes` itself.
  bool replaying(const char* op, const Buffer* consumes = nullptr) {
    bind();
    if (pending_sums_.sums.splits > 1 && (consumes == nullptr || !same_view(pending_sums_.out[0], *consumes))) add_pending_sums();
    ++op_seq_;
    if (profile_) profile_op(op);
    return mode_ == Mode::Replay;
  }

  // VIREO_CUDA_PROFILE=1: the GPU time of each op, by name, printed when the backend closes.
  // Each op is timed with events once the previous one has finished (graphs off), so an op's time
  // is its kernels plus its own launch latency (several microseconds), never another op's.
  struct OpTime {
    double ms = 0;
    uint64_t calls = 0;
  };
  void profile_op(const char* op) const {
    profile_close();
    if (op == nullptr) return;
    check_cuda(cudaEventRecord(prof_start_, stream_), "profile");
    prof_op_ = op;
  }
  void profile_close() const {
    if (prof_op_ == nullptr) return;
    check_cuda(cudaEventRecord(prof_end_, stream_), "profile");
    check_cuda(cudaEventSynchronize(prof_end_), "profile");
    float ms = 0;
    cudaEventElapsedTime(&ms, prof_start_, prof_end_);
    OpTime& t = prof_[prof_prompt_ ? std::string(prof_op_) + " [prompt]" : std::string(prof_op_)];
    t.ms += ms;
    ++t.calls;
    prof_op_ = nullptr;
  }
  void profile_report() const {
    profile_close();
    double total = 0;
    std::vector<std::pair<std::string, OpTime>> rows(prof_.begin(), prof_.end());
    for (const auto& [name, t] : rows) total += t.ms;
    std::sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) { return a.second.ms > b.second.ms; });
    std::fprintf(stderr, "GPU time by op (%s, VIREO_CUDA_PROFILE):\n%-22s %10s %9s %10s %6s\n", name_.c_str(), "op", "ms", "calls",
                 "us/call", "share");
    for (const auto& [name, t] : rows) {
      std::fprintf(stderr, "%-22s %10.2f %9llu %10.2f %5.1f%%\n", name.c_str(), t.ms, static_cast<unsigned long long>(t.calls),
                   1000.0 * t.ms / static_cast<double>(t.calls), 100.0 * t.ms / std::max(total, 1e-9));
    }
  }
  // An op writing `out` of a decode-sized batch also writes it as the activations of the product
  // that may follow: rounded into qx_ for the gemv kernels, or in F16 for qgemm (none when out
  // cannot be a product's input here).
  cuda::NextActivations produce_next(const Buffer& out) {
    next_of_ = {};
    if (out.cols() % 32 != 0) return {};
    if (out.rows() <= cuda::kMaxGemvTokens) {
      next_of_ = {out.data(), out.rows(), out.cols(), out.stride(), op_seq_, false};
      return {&qx_, nullptr};
    }
    if (out.rows() <= qgemm_rows_ && out.cols() % 128 == 0 && out.stride() % 4 == 0) {
      next_of_ = {out.data(), out.rows(), out.cols(), out.stride(), op_seq_, true};
      return {nullptr, cuda::qgemm_x_target(qgemm_ws_, static_cast<int>(out.rows()), out.cols())};
    }
    return {};
  }
  // Whether the op just before wrote x as a product's activations: qgemm's F16 (x16) or Q8_0.
  bool made_by_previous_op(const Buffer& x, bool x16) const {
    return next_of_.data == x.data() && next_of_.rows == x.rows() && next_of_.cols == x.cols() && next_of_.stride == x.stride() &&
           next_of_.seq + 1 == op_seq_ && next_of_.x16 == x16;
  }
  // The split sums a product left for the op after it: added into its output by that op, or here
  // (before any other op, copy or wait).
  void add_pending_sums() {
    if (pending_sums_.sums.splits <= 1) return;
    const PendingSums p = std::exchange(pending_sums_, {});
    cuda::QGemmSumsOut outs[cuda::kMaxQGemmSegments];
    for (size_t i = 0; i < p.n_out; ++i) outs[i] = {p.out[i].as<float>(), p.out[i].stride(), p.out[i].cols()};
    cuda::qgemm_add_sums(p.sums, static_cast<int>(p.out[0].rows()), {outs, p.n_out}, stream_);
  }
  static bool same_view(const Buffer& a, const Buffer& b) {
    return a.data() == b.data() && a.rows() == b.rows() && a.cols() == b.cols() && a.stride() == b.stride();
  }
  // The pending sums when `outs` are exactly their product's outputs (the caller then adds them);
  // any others are added here first.
  cuda::QGemmSums take_pending_sums(std::initializer_list<const Buffer*> outs) {
    if (pending_sums_.sums.splits <= 1) return {};
    bool same = pending_sums_.n_out == outs.size();
    for (size_t i = 0; same && i < outs.size(); ++i) same = same_view(pending_sums_.out[i], *outs.begin()[i]);
    if (!same) {
      add_pending_sums();
      return {};
    }
    return std::exchange(pending_sums_, {}).sums;
  }
  // Changes whenever a scratch buffer moves: graphs captured before then are stale.
  uint64_t generation() const {
    return x16_.moves + x_bf16_.moves + w16_.moves + attn_scratch_.moves + kv16_.moves + static_cast<uint64_t>(qx_.capacity) +
           qgemm_ws_.x16_capacity + qgemm_ws_.partial_capacity;
  }

  static constexpr size_t kStagingBytes = 64 << 10;
  struct Step {
    Step() {
      check_cuda(cudaMallocHost(&staging, kStagingBytes), "pinned staging");
      check_cuda(cudaEventCreateWithFlags(&done, cudaEventDisableTiming), "event");
    }
    ~Step() {
      if (exec != nullptr) cudaGraphExecDestroy(exec);
      cudaEventDestroy(done);
      cudaFreeHost(staging);
    }
    Step(const Step&) = delete;
    Step& operator=(const Step&) = delete;
    cudaGraphExec_t exec = nullptr;
    cudaEvent_t done = nullptr;
    uint8_t* staging = nullptr;
    size_t staged = 0;
    std::vector<std::pair<size_t, size_t>> uploads;  // (offset, bytes) in staging, in call order
    uint64_t generation = 0;
    uint64_t last_use = 0;
  };
  static constexpr size_t kMaxSteps = 64;  // graphs kept
  enum class Mode { Eager, Capture, Replay };

  int device_;
  std::string name_;
  bool graphs_ = true;
  bool f16_weights_ = true;  // F16 copies of quantized matrices for prompts, memory allowing
  void* download_staging_ = nullptr;  // pinned, kStagingBytes
  bool profile_ = false;
  int64_t gemv_rows_ = cuda::kDefaultGemvRows;
  int64_t gemv_rows_plain_ = cuda::kMaxPlainGemvTokens;  // the same for F16, BF16 and F32 weights
  int64_t gemv_rows_qgemm_ = cuda::kDefaultGemvRows;  // the same, for products that qgemm can take
  int64_t qgemm_rows_ = cuda::kDefaultQGemmRows;
  cudaEvent_t prof_start_ = nullptr, prof_end_ = nullptr;
  mutable const char* prof_op_ = nullptr;
  // Steps of more rows are reported apart as prompt work, so a batched decode's ops stand alone.
  static constexpr int64_t kProfileDecodeRows = 64;
  bool prof_prompt_ = false;
  mutable std::map<std::string, OpTime> prof_;
  Mode mode_ = Mode::Eager;
  Step* step_ = nullptr;
  size_t upload_index_ = 0;
  std::map<uint64_t, Step> steps_;
  uint64_t step_clock_ = 0;
  int64_t graph_rows_ = cuda::kDefaultQGemmRows;
  std::map<uint64_t, int> seen_;
  cudaStream_t stream_ = nullptr;
  cublasHandle_t blas_ = nullptr;
  cuda::QuantizedActivations qx_;
  cuda::QGemmWorkspace qgemm_ws_;
  struct NextOf {
    const void* data = nullptr;
    int64_t rows = 0, cols = 0, stride = 0;
    uint64_t seq = 0;
    bool x16 = false;  // in qgemm_ws_ (else in qx_)
  };
  NextOf next_of_;               // the buffer an op also wrote as a product's activations, and that op
  struct PendingSums {
    Buffer out[cuda::kMaxQGemmSegments];  // the product's outputs, in the order of the sums' rows
    size_t n_out = 0;
    cuda::QGemmSums sums;
  };
  PendingSums pending_sums_;     // a split product's sums not yet added into its outputs
  mutable uint64_t op_seq_ = 0;  // ops so far (see replaying)
  Scratch x16_, x_bf16_, w16_, attn_scratch_, kv16_;
  std::vector<std::pair<std::vector<float>, std::shared_ptr<void>>> freq_factors_;
};

}  // namespace

bool cuda_available() { return cuda::device_available(); }

std::unique_ptr<Backend> create_cuda_backend(int device) { return std::make_unique<CudaBackend>(device); }

namespace cuda {

double gemm_f16_tflops(int n, int iters) {  // on the calling thread's current device
  auto a = device_alloc(static_cast<size_t>(n) * n * 2), b = device_alloc(static_cast<size_t>(n) * n * 2);
  auto c = device_alloc(static_cast<size_t>(n) * n * 4);
  cudaMemset(a.get(), 0, static_cast<size_t>(n) * n * 2);
  cudaMemset(b.get(), 0, static_cast<size_t>(n) * n * 2);
  cublasHandle_t h;
  check_cublas(cublas().create(&h), "create");
  const float one = 1.0f, zero = 0.0f;
  auto once = [&] {
    check_cublas(cublas().gemm_ex(h, CUBLAS_OP_T, CUBLAS_OP_N, n, n, n, &one, a.get(), CUDA_R_16F, n, b.get(), CUDA_R_16F, n, &zero, c.get(),
                              CUDA_R_32F, n, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                 "gemm");
  };
  once();
  cudaEvent_t e0, e1;
  cudaEventCreate(&e0);
  cudaEventCreate(&e1);
  cudaEventRecord(e0);
  for (int i = 0; i < iters; ++i) once();
  cudaEventRecord(e1);
  check_cuda(cudaEventSynchronize(e1), "gemm timing");
  float ms = 0;
  cudaEventElapsedTime(&ms, e0, e1);
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
  cublas().destroy(h);
  return 2.0 * n * double(n) * n * iters / (ms * 1e-3) / 1e12;
}

}  // namespace cuda
}  // namespace vireo
