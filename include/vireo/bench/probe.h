// Hardware peaks for the roofline: memory read bandwidth and matrix throughput of a device,
// measured once and cached (in $VIREO_CACHE/probe/), so every benchmark result can be placed
// against what the machine can do.
#pragma once
#include <cstdint>
#include <string>

#include "vireo/backend/backend.h"

namespace vireo {

struct HardwarePeaks {
  std::string device;         // "cpu: Intel(R) Xeon(R) ... (amx, 2 threads)"
  std::string key;            // what the cache file is named by
  double mem_gb_s = 0;        // streaming read, GB/s (1e9 bytes)
  double int8_tops = 0;       // quantized matmul (int8 dot products), 1e12 ops/s
  double float_tflops = 0;    // F16/F32 matmul, 1e12 flop/s
  bool from_cache = false;
};

// Measures (or reads from the cache) the peaks of the CPU backend with `threads` threads (0: one
// per core) and kernel cap `isa`. `refresh` re-measures.
HardwarePeaks probe_cpu(unsigned threads, const std::string& isa, bool refresh = false);

// The folder vireo caches synthetic models and probes in: $VIREO_CACHE, else
// $XDG_CACHE_HOME/vireo, else ~/.cache/vireo.
std::string vireo_cache_dir();

}  // namespace vireo
