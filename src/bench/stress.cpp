#include "vireo/bench/stress.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include <fmt/format.h>

#include "vireo/core/error.h"

namespace vireo {
namespace {

using Clock = std::chrono::steady_clock;
constexpr double kMiB = 1048576.0;

}  // namespace

double least_squares_slope(const std::vector<double>& x, const std::vector<double>& y) {
  const size_t n = std::min(x.size(), y.size());
  if (n < 2) return 0;
  double mx = 0, my = 0;
  for (size_t i = 0; i < n; ++i) mx += x[i], my += y[i];
  mx /= static_cast<double>(n);
  my /= static_cast<double>(n);
  double sxy = 0, sxx = 0;
  for (size_t i = 0; i < n; ++i) {
    sxy += (x[i] - mx) * (y[i] - my);
    sxx += (x[i] - mx) * (x[i] - mx);
  }
  return sxx > 0 ? sxy / sxx : 0;
}

std::string stress_verdict(double slope, double mean_mb, double* threshold) {
  const double limit = std::max(0.01 * mean_mb, 1.0);
  if (threshold != nullptr) *threshold = limit;
  return slope < limit ? "no growth" : "memory grows: possible leak";
}

StressResult run_stress(TextEngine& e, const StressOptions& options, GpuMonitor* gpu) {
  if (!(options.seconds > 0)) fail(ErrorCode::InvalidArgument, "--stress: seconds must be > 0, got {}", options.seconds);
  if (options.batch < 1) fail(ErrorCode::InvalidArgument, "--stress: batch must be >= 1, got {}", options.batch);
  if (options.windows < 1) fail(ErrorCode::InvalidArgument, "--stress: windows must be >= 1, got {}", options.windows);
  const int64_t blocks_per_seq = e.cache().free_cells() / KvCache::kBlockSize / options.batch;
  const int64_t per_seq = blocks_per_seq * KvCache::kBlockSize;
  const int32_t n_prompt = static_cast<int32_t>(std::min<int64_t>(options.n_prompt, per_seq / 2));
  if (n_prompt < 1 || per_seq < n_prompt + 2) {
    fail(ErrorCode::InvalidArgument, "--stress: {} sequences do not fit a context of {} cells", options.batch, e.n_ctx());
  }
  const auto prompt = bench_prompt_ids(n_prompt, static_cast<int32_t>(e.config().n_vocab));
  const auto n_vocab = static_cast<size_t>(e.config().n_vocab);
  std::vector<float> logits(n_vocab * static_cast<size_t>(options.batch));

  StressResult r;
  r.options = options;
  ResourceMonitor memory(100);
  // Tokens counted into fixed windows as they come: a record per step would itself grow memory.
  const double width = options.seconds / options.windows;
  std::vector<int64_t> window_tokens(static_cast<size_t>(options.windows), 0);
  auto count = [&](double t, int64_t tokens) {
    window_tokens[static_cast<size_t>(std::min<double>(options.windows - 1, std::floor(t / width)))] += tokens;
  };
  memory.start();
  if (gpu != nullptr) gpu->start();
  const auto t0 = Clock::now();
  auto elapsed = [&] { return std::chrono::duration<double>(Clock::now() - t0).count(); };
  // Greedy next token of every sequence, from the logits of the last forward.
  auto forward = [&](const std::vector<SeqId>& seqs, const std::vector<std::vector<int32_t>>& tokens) {
    ForwardBatch batch;
    for (size_t s = 0; s < seqs.size(); ++s) e.cache().append(batch, seqs[s], tokens[s], true);
    const Buffer out = e.language_model().forward(batch, e.cache().buffers());
    e.backend().download(out, logits.data());
    std::vector<std::vector<int32_t>> next(seqs.size());
    for (size_t s = 0; s < seqs.size(); ++s) {
      const float* row = logits.data() + s * n_vocab;
      next[s] = {static_cast<int32_t>(std::max_element(row, row + n_vocab) - row)};
    }
    return next;
  };
  while (elapsed() < options.seconds) {
    std::vector<SeqId> seqs;
    for (int b = 0; b < options.batch; ++b) seqs.push_back(e.cache().add_sequence(static_cast<int32_t>(per_seq)));
    auto tokens = forward(seqs, std::vector<std::vector<int32_t>>(seqs.size(), prompt));
    r.tokens += options.batch;
    count(elapsed(), options.batch);
    for (int64_t pos = n_prompt + 1; pos < per_seq && elapsed() < options.seconds; ++pos) {
      tokens = forward(seqs, tokens);
      r.tokens += options.batch;
      count(elapsed(), options.batch);
    }
    for (SeqId s : seqs) e.cache().remove_sequence(s);
    if (elapsed() < options.seconds) ++r.restarts;
  }
  r.duration_s = elapsed();
  memory.stop();
  if (gpu != nullptr) {
    gpu->stop();
    r.gpu = gpu->samples();
  }
  r.memory = memory.samples();

  // Memory growth over the run, the warm-up left out.
  const double fit_from = options.warmup_fraction * r.duration_s;
  std::vector<double> t_min, rss_mb, anon_mb;
  for (const auto& s : r.memory) {
    if (s.t_s < fit_from) continue;
    t_min.push_back(s.t_s / 60.0);
    rss_mb.push_back(static_cast<double>(s.rss_bytes) / kMiB);
    anon_mb.push_back(static_cast<double>(s.anon_bytes) / kMiB);
  }
  r.rss_slope_mb_per_min = least_squares_slope(t_min, rss_mb);
  r.anon_slope_mb_per_min = least_squares_slope(t_min, anon_mb);
  for (double v : rss_mb) r.rss_mean_mb += v / static_cast<double>(rss_mb.size());
  // A leak grows the heap (anonymous memory). RSS also counts pages of the memory-mapped model file,
  // which come in as rows (token embeddings) are first read: growth, but not a leak.
  r.verdict = stress_verdict(r.anon_slope_mb_per_min, r.rss_mean_mb, &r.growth_threshold_mb_per_min);
  std::vector<double> gt, gmb;
  for (const auto& s : r.gpu) {
    if (s.t_s < fit_from) continue;
    gt.push_back(s.t_s / 60.0);
    gmb.push_back(static_cast<double>(s.memory_used_bytes) / kMiB);
  }
  r.gpu_fitted = gt.size() >= 2;
  r.gpu_slope_mb_per_min = least_squares_slope(gt, gmb);

  // Tokens per second in equal windows of the run (the last also takes the final step's overrun).
  for (int w = 0; w < options.windows; ++w) {
    StressWindow win{w * width, w == options.windows - 1 ? r.duration_s : (w + 1) * width};
    win.tokens = window_tokens[static_cast<size_t>(w)];
    win.tokens_per_s = win.t1_s > win.t0_s ? static_cast<double>(win.tokens) / (win.t1_s - win.t0_s) : 0;
    r.windows.push_back(win);
  }
  const double first = r.windows.front().tokens_per_s, last = r.windows.back().tokens_per_s;
  r.slowdown_pct = first > 0 ? 100.0 * (first - last) / first : 0;
  return r;
}

}  // namespace vireo

namespace vireo {

nlohmann::json gpu_to_json(const GpuMonitor& monitor, const std::vector<GpuMonitor::Sample>& samples) {
  nlohmann::json j = {{"available", monitor.available()},
                      {"note", "NVML 'utilization' is the share of time a kernel was running, not how much of the compute "
                               "units it used"}};
  if (!monitor.available()) {
    j["reason"] = monitor.reason();
    return j;
  }
  j["name"] = monitor.device_name();
  j["gpm"] = {{"available", monitor.gpm_available()}};
  if (!monitor.gpm_available()) j["gpm"]["reason"] = monitor.gpm_reason();
  nlohmann::json series = nlohmann::json::array();
  // Means over the samples taken while some kernel ran: load and set-up time would dilute them.
  double busy = 0, util = 0, sm = 0, tensor = 0, dram = 0, power = 0, clock = 0;
  for (const auto& s : samples) {
    nlohmann::json e = {{"t_s", s.t_s}, {"gpu_util_pct", s.gpu_util_pct}, {"mem_util_pct", s.mem_util_pct},
                        {"sm_clock_mhz", s.sm_clock_mhz}, {"mem_clock_mhz", s.mem_clock_mhz}, {"power_w", s.power_w},
                        {"temperature_c", s.temperature_c}, {"memory_used_bytes", s.memory_used_bytes},
                        {"memory_total_bytes", s.memory_total_bytes}, {"throttle_reasons", s.throttle_reasons}};
    if (s.has_gpm) {
      e["sm_util_pct"] = s.sm_util_pct;
      e["sm_occupancy_pct"] = s.sm_occupancy_pct;
      e["tensor_util_pct"] = s.tensor_util_pct;
      e["dram_bw_util_pct"] = s.dram_bw_util_pct;
    }
    series.push_back(std::move(e));
    if (s.gpu_util_pct == 0) continue;
    busy += 1, util += s.gpu_util_pct, power += s.power_w, clock += s.sm_clock_mhz;
    sm += s.sm_util_pct, tensor += s.tensor_util_pct, dram += s.dram_bw_util_pct;
  }
  j["samples"] = series;
  nlohmann::json summary = {{"busy_samples", static_cast<int>(busy)}};
  if (busy > 0) {
    summary["gpu_util_pct_mean"] = util / busy;
    summary["power_w_mean"] = power / busy;
    summary["sm_clock_mhz_mean"] = clock / busy;
    if (monitor.gpm_available()) {
      summary["sm_util_pct_mean"] = sm / busy;
      summary["tensor_util_pct_mean"] = tensor / busy;
      summary["dram_bw_util_pct_mean"] = dram / busy;
    }
  }
  j["summary"] = summary;
  return j;
}

nlohmann::json stress_to_json(const StressResult& r) {
  nlohmann::json memory = nlohmann::json::array(), windows = nlohmann::json::array();
  for (const auto& s : r.memory) memory.push_back({{"t_s", s.t_s}, {"rss_bytes", s.rss_bytes}, {"anon_bytes", s.anon_bytes}});
  for (const auto& w : r.windows) {
    windows.push_back({{"t0_s", w.t0_s}, {"t1_s", w.t1_s}, {"tokens", w.tokens}, {"tokens_per_s", w.tokens_per_s}});
  }
  nlohmann::json gpu_memory = nlohmann::json::array();
  for (const auto& s : r.gpu) gpu_memory.push_back({{"t_s", s.t_s}, {"memory_used_bytes", s.memory_used_bytes}});
  return {{"seconds", r.options.seconds},
          {"duration_s", r.duration_s},
          {"batch", r.options.batch},
          {"n_prompt", r.options.n_prompt},
          {"tokens", r.tokens},
          {"tokens_per_s", r.duration_s > 0 ? static_cast<double>(r.tokens) / r.duration_s : 0.0},
          {"restarts", r.restarts},
          {"warmup_s", r.options.warmup_fraction * r.duration_s},
          {"rss_slope_mb_per_min", r.rss_slope_mb_per_min},
          {"anon_slope_mb_per_min", r.anon_slope_mb_per_min},
          {"rss_mean_mb", r.rss_mean_mb},
          {"growth_threshold_mb_per_min", r.growth_threshold_mb_per_min},
          {"gpu_slope_mb_per_min", r.gpu_fitted ? nlohmann::json(r.gpu_slope_mb_per_min) : nlohmann::json(nullptr)},
          {"windows", windows},
          {"slowdown_pct", r.slowdown_pct},
          {"verdict", r.verdict},
          {"memory", memory},
          {"gpu_memory", gpu_memory}};
}

std::string format_stress(const StressResult& r) {
  std::string s = fmt::format("stress: {:.1f} s, batch {}, {} tokens ({:.2f} tok/s), {} restarts on a full context\n",
                              r.duration_s, r.options.batch, r.tokens,
                              r.duration_s > 0 ? static_cast<double>(r.tokens) / r.duration_s : 0.0, r.restarts);
  s += fmt::format("memory: RSS {:.1f} MiB, slope {:+.3f} MiB/min (anonymous {:+.3f}) after a {:.1f} s warm-up; "
                   "threshold {:.2f}\n",
                   r.rss_mean_mb, r.rss_slope_mb_per_min, r.anon_slope_mb_per_min, r.options.warmup_fraction * r.duration_s,
                   r.growth_threshold_mb_per_min);
  if (r.gpu_fitted) s += fmt::format("gpu memory: slope {:+.3f} MiB/min\n", r.gpu_slope_mb_per_min);
  s += "tok/s by window:";
  for (const auto& w : r.windows) s += fmt::format(" {:.1f}", w.tokens_per_s);
  s += fmt::format("\nslowdown (last window vs first): {:.1f}%\nverdict: {}\n", r.slowdown_pct, r.verdict);
  return s;
}

}  // namespace vireo
