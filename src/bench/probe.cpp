#include "vireo/bench/probe.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <thread>
#include <vector>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "vireo/core/error.h"
#include "vireo/formats/model.h"
#include "vireo/kernels/ref/quant.h"

#ifdef VIREO_HAS_CUDA
#include "vireo/kernels/cuda/gemv.h"
#include "vireo/kernels/cuda/ops.h"
#endif

namespace vireo {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

std::string cpu_model_name() {
  std::ifstream in("/proc/cpuinfo");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("model name", 0) == 0) {
      const size_t colon = line.find(':');
      if (colon != std::string::npos) return line.substr(line.find_first_not_of(' ', colon + 1));
    }
  }
  return "unknown CPU";
}

// Streams a buffer with the widest loads the CPU has (the kernels' own way of reading weights).
#if defined(__x86_64__)
__attribute__((target("avx512f"))) uint64_t sum_avx512(const uint64_t* p, size_t n) {
  __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
  for (size_t i = 0; i + 32 <= n; i += 32) {
    a0 = _mm512_add_epi64(a0, _mm512_load_si512(p + i));
    a1 = _mm512_add_epi64(a1, _mm512_load_si512(p + i + 8));
    a2 = _mm512_add_epi64(a2, _mm512_load_si512(p + i + 16));
    a3 = _mm512_add_epi64(a3, _mm512_load_si512(p + i + 24));
  }
  alignas(64) uint64_t v[8];  // summed as unsigned: the lanes wrap, which is fine for a checksum
  _mm512_store_si512(v, _mm512_add_epi64(_mm512_add_epi64(a0, a1), _mm512_add_epi64(a2, a3)));
  return v[0] + v[1] + v[2] + v[3] + v[4] + v[5] + v[6] + v[7];
}
__attribute__((target("avx2"))) uint64_t sum_avx2(const uint64_t* p, size_t n) {
  __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
  for (size_t i = 0; i + 16 <= n; i += 16) {
    a0 = _mm256_add_epi64(a0, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i)));
    a1 = _mm256_add_epi64(a1, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i + 4)));
    a2 = _mm256_add_epi64(a2, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i + 8)));
    a3 = _mm256_add_epi64(a3, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i + 12)));
  }
  alignas(32) uint64_t v[4];
  _mm256_store_si256(reinterpret_cast<__m256i*>(v), _mm256_add_epi64(_mm256_add_epi64(a0, a1), _mm256_add_epi64(a2, a3)));
  return v[0] + v[1] + v[2] + v[3];
}
#endif
uint64_t sum_plain(const uint64_t* p, size_t n) {
  uint64_t a[8] = {};
  for (size_t i = 0; i + 8 <= n; i += 8) {
    for (int k = 0; k < 8; ++k) a[k] += p[i + k];
  }
  return a[0] + a[1] + a[2] + a[3] + a[4] + a[5] + a[6] + a[7];
}

// Each thread streams its own slice of a 512 MiB buffer; the best of four passes.
double read_bandwidth_gb_s(unsigned threads) {
  const size_t bytes = size_t{512} << 20;
  const size_t words = bytes / 8;
  auto* buf = static_cast<uint64_t*>(std::aligned_alloc(64, bytes));
  if (buf == nullptr) fail(ErrorCode::Io, "probe: out of memory");
  std::memset(buf, 1, bytes);
  uint64_t (*sum)(const uint64_t*, size_t) = sum_plain;
#if defined(__x86_64__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) sum = sum_avx512;
  else if (__builtin_cpu_supports("avx2")) sum = sum_avx2;
#endif
  double best = 0;
  std::atomic<uint64_t> sink{0};
  for (int pass = 0; pass < 4; ++pass) {
    const auto t0 = Clock::now();
    std::vector<std::thread> ts;
    for (unsigned t = 0; t < threads; ++t) {
      ts.emplace_back([&, t] {
        const size_t lo = words * t / threads / 32 * 32, hi = words * (t + 1) / threads / 32 * 32;
        sink += sum(buf + lo, hi - lo);
      });
    }
    for (auto& th : ts) th.join();
    const double s = std::chrono::duration<double>(Clock::now() - t0).count();
    best = std::max(best, static_cast<double>(bytes) / s / 1e9);
  }
  std::free(buf);
  return sink.load() == 0x5eed ? best + 1e-12 : best;  // uses the sums so they are computed
}

// Throughput of the backend's own matmul on a compute-heavy product that stays in cache:
// weights [rows, cols] of `type` against `tokens` activations.
double matmul_tera_ops(Backend& be, DType type, int64_t rows, int64_t cols, int64_t tokens) {
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<float> w(static_cast<size_t>(rows * cols));
  for (auto& v : w) v = u(rng);
  const size_t rb = ref::row_bytes(type, cols);
  std::vector<uint8_t> bytes(rb * static_cast<size_t>(rows));
  for (int64_t r = 0; r < rows; ++r) ref::quantize_row(type, w.data() + r * cols, bytes.data() + r * rb, cols);
  Tensor t;
  t.name = "probe";
  t.type = type;
  t.shape = {static_cast<uint64_t>(rows), static_cast<uint64_t>(cols)};
  t.data = bytes.data();
  t.nbytes = bytes.size();
  const WeightPtr weight = be.prepare(t, WeightUse::Matmul);
  std::vector<float> xs(static_cast<size_t>(tokens * cols));
  for (auto& v : xs) v = u(rng);
  const Buffer x = be.alloc(DType::F32, tokens, cols);
  const Buffer y = be.alloc(DType::F32, tokens, rows);
  be.upload(x, xs.data());
  be.matmul(x, *weight, y);  // warm-up
  be.synchronize();
  double best = 0;
  for (int rep = 0; rep < 5; ++rep) {  // the best of five: a shared machine only ever slows it
    const auto t0 = Clock::now();
    int n = 0;
    do {
      be.matmul(x, *weight, y);
      ++n;
      be.synchronize();
    } while (std::chrono::duration<double>(Clock::now() - t0).count() < 0.15);
    const double s = std::chrono::duration<double>(Clock::now() - t0).count();
    best = std::max(best, 2.0 * static_cast<double>(rows) * cols * tokens * n / s / 1e12);
  }
  return best;
}

// The cache file of the device p describes; sets p.key.
fs::path cache_file(HardwarePeaks& p) {
  std::string key = p.device;
  for (char& c : key) {
    if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
  }
  p.key = key;
  return fs::path(vireo_cache_dir()) / "probe" / (key + ".json");
}

// Fills p's peaks from the cache; false when the file is missing, stale or incomplete.
bool read_cache(const fs::path& file, HardwarePeaks& p) {
  std::ifstream in(file);
  const auto j = nlohmann::json::parse(in, nullptr, false);
  if (j.is_discarded() || !j.is_object() || j.value("version", 0) != 4) return false;
  p.mem_gb_s = j.value("mem_gb_s", 0.0);
  p.int8_tops = j.value("int8_tops", 0.0);
  p.float_tflops = j.value("float_tflops", 0.0);
  p.from_cache = p.mem_gb_s > 0 && p.int8_tops > 0 && p.float_tflops > 0;
  return p.from_cache;
}

void write_cache(const fs::path& file, const HardwarePeaks& p) {
  std::error_code ec;
  fs::create_directories(file.parent_path(), ec);
  std::ofstream out(file);
  out << nlohmann::json{{"version", 4},           {"device", p.device},       {"mem_gb_s", p.mem_gb_s},
                        {"mem_method", p.mem_method}, {"int8_tops", p.int8_tops}, {"float_tflops", p.float_tflops}}
             .dump(2);
}

}  // namespace

std::string vireo_cache_dir() {
  if (const char* d = std::getenv("VIREO_CACHE"); d != nullptr && *d != 0) return d;
  if (const char* x = std::getenv("XDG_CACHE_HOME"); x != nullptr && *x != 0) return std::string(x) + "/vireo";
  if (const char* h = std::getenv("HOME"); h != nullptr && *h != 0) return std::string(h) + "/.cache/vireo";
  return ".vireo-cache";
}

HardwarePeaks probe_cpu(unsigned threads, const std::string& isa, bool refresh) {
  CpuBackendOptions bo;
  bo.n_threads = threads;
  bo.isa = isa;
  auto be = create_cpu_backend(bo);
  HardwarePeaks p;
  p.device = fmt::format("cpu: {} [{}]", cpu_model_name(), be->name());
  p.mem_method = "streaming read";
  const fs::path file = cache_file(p);
  if (!refresh && read_cache(file, p)) return p;
  const unsigned n = threads == 0 ? std::max(1u, std::thread::hardware_concurrency()) : threads;
  p.mem_gb_s = read_bandwidth_gb_s(n);
  // The fastest of the engine's quantized products, and its float product, on cache-resident shapes.
  p.int8_tops = 0;
  for (DType t : {DType::Q8_0, DType::Q4_0}) {
    for (int64_t rows : {2048, 8192}) {
      for (int64_t tokens : {128, 512}) p.int8_tops = std::max(p.int8_tops, matmul_tera_ops(*be, t, rows, 2048, tokens));
    }
  }
  p.float_tflops = matmul_tera_ops(*be, DType::F16, 2048, 2048, 256);
  write_cache(file, p);
  return p;
}

HardwarePeaks probe_cuda(int device, bool refresh) {
#ifdef VIREO_HAS_CUDA
  HardwarePeaks p;
  p.device = fmt::format("cuda:{} ({})", device, cuda::device_name(device));
  // A copy reads and writes every byte: the figure counts both, and is used as is for weight reads.
  p.mem_method = "device copy (read+write)";
  const fs::path file = cache_file(p);
  if (!refresh && read_cache(file, p)) return p;
  // A clear error for a device that is not there; the backend also makes `device` the calling
  // thread's current one, where the two measurements below run.
  auto be = create_cuda_backend(device);
  for (int pass = 0; pass < 3; ++pass) {  // the best of three: the first also pays for clocks ramping up
    p.mem_gb_s = std::max(p.mem_gb_s, cuda::copy_bandwidth_gb_s(size_t{256} << 20, 20));  // far beyond the L2 cache
    p.float_tflops = std::max(p.float_tflops, cuda::gemm_f16_tflops(8192, 10));
  }
  // The backend's own quantized products, on shapes large enough to fill the GPU.
  for (DType t : {DType::Q8_0, DType::Q4_0}) {
    for (int64_t tokens : {512, 2048}) p.int8_tops = std::max(p.int8_tops, matmul_tera_ops(*be, t, 8192, 4096, tokens));
  }
  write_cache(file, p);
  return p;
#else
  (void)device;
  (void)refresh;
  throw Error(ErrorCode::Unsupported, "this build of vireo has no CUDA backend");
#endif
}

}  // namespace vireo
