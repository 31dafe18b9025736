// Stress mode: generate without pause for a set time, restarting the sequences whenever the
// context fills, while the process's memory (and the GPU's, when NVML is there) is sampled; then
// fit the memory's growth and compare the decode rate at the end with the one at the start.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "vireo/bench/benchmark.h"
#include "vireo/bench/gpu_monitor.h"
#include "vireo/runtime/text_engine.h"

namespace vireo {

struct StressOptions {
  double seconds = 60;
  int32_t batch = 1;         // sequences decoded together
  int32_t n_prompt = 32;     // prompt of each sequence (re)start
  int windows = 10;          // equal slices of the run for tokens/s over time
  double warmup_fraction = 0.2;  // start of the run left out of the memory fit (allocator, page cache)
};

struct StressWindow {
  double t0_s = 0, t1_s = 0;
  int64_t tokens = 0;
  double tokens_per_s = 0;
};

struct StressResult {
  StressOptions options;
  double duration_s = 0;
  int64_t tokens = 0;      // generated, all sequences
  int64_t restarts = 0;    // times the sequences were started again on a full context
  std::vector<ResourceMonitor::Sample> memory;  // 10 Hz
  std::vector<GpuMonitor::Sample> gpu;          // 10 Hz, empty without NVML
  double rss_slope_mb_per_min = 0, anon_slope_mb_per_min = 0;
  double rss_mean_mb = 0;           // over the fitted part
  double growth_threshold_mb_per_min = 0;
  bool gpu_fitted = false;
  double gpu_slope_mb_per_min = 0;
  std::vector<StressWindow> windows;
  double slowdown_pct = 0;  // (first window - last window) / first window; > 0: slower at the end
  std::string verdict;      // "no growth" or "memory grows: possible leak"
};

// Least-squares slope of y over x; 0 with fewer than two distinct x.
double least_squares_slope(const std::vector<double>& x, const std::vector<double>& y);

// The verdict's rule: growth counts when the RSS slope reaches 1% of the mean RSS per minute, and
// at least 1 MB per minute (below that, a whole hour adds less than allocator arenas move by).
std::string stress_verdict(double rss_slope_mb_per_min, double rss_mean_mb, double* threshold_mb_per_min = nullptr);

// Runs the stress loop on the engine; `gpu` may be null or unavailable.
StressResult run_stress(TextEngine& engine, const StressOptions& options, GpuMonitor* gpu);

// The "stress" object of the document (docs/bench-json.md), and the "gpu" one.
nlohmann::json stress_to_json(const StressResult& result);
nlohmann::json gpu_to_json(const GpuMonitor& monitor, const std::vector<GpuMonitor::Sample>& samples);
std::string format_stress(const StressResult& result);  // the printout

}  // namespace vireo
