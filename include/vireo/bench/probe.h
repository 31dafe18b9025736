// Hardware peaks for the roofline: memory read bandwidth and matrix throughput of a device,
// measured once and cached (in $VIREO_CACHE/probe/), so every benchmark result can be placed
// against what the machine can do.
#pragma once
#include <cstdint>
#include <string>

#include "vireo/backend/backend.h"

namespace vireo {

struct HardwarePeaks {
  std::string device;         // "cpu: Intel(R) Xeon(R) ... (amx, 2 threads)", "cuda:0 (NVIDIA ...)"
  std::string key;            // what the cache file is named by
  double mem_gb_s = 0;        // memory bandwidth, GB/s (1e9 bytes), measured as mem_method says
  std::string mem_method;     // "streaming read" (CPU) or "device copy (read+write)" (CUDA)
  double int8_tops = 0;       // quantized matmul (int8 dot products), 1e12 ops/s
  double float_tflops = 0;    // F16/F32 matmul, 1e12 flop/s
  bool from_cache = false;
};

// Measures (or reads from the cache) the peaks of the CPU backend with `threads` threads (0: one
// per core) and kernel cap `isa`. `refresh` re-measures.
HardwarePeaks probe_cpu(unsigned threads, const std::string& isa, bool refresh = false);

// The same for CUDA device `device`: copy bandwidth, cuBLAS's F16 GEMM and the CUDA backend's
// quantized matmul. Throws Unsupported when this build has no CUDA backend.
HardwarePeaks probe_cuda(int device, bool refresh = false);

// The folder vireo caches synthetic models and probes in: $VIREO_CACHE, else
// $XDG_CACHE_HOME/vireo, else ~/.cache/vireo.
std::string vireo_cache_dir();

}  // namespace vireo
