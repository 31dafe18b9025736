// vireo bench's modes beyond the speed tests: latency scenarios (TTFT, ITL, end-to-end), stress
// (memory growth fit, tokens/s windows, verdict), A/B compare (ratio and Welch interval checked by
// hand) and the NVML GPU monitor's behaviour without NVML. No assertion depends on speed.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "test_util.h"
#include "vireo/bench/benchmark.h"
#include "vireo/bench/compare.h"
#include "vireo/backend/backend.h"
#include "vireo/bench/gpu_monitor.h"
#include "vireo/bench/probe.h"
#include "vireo/bench/stress.h"
#include "vireo/core/error.h"

namespace vireo {
namespace {

using json = nlohmann::json;

// Runs the vireo binary; returns its stdout and sets `status` to its exit status.
std::string run_vireo(const std::string& cache, const std::string& args, int& status) {
  const std::string cmd = "VIREO_CACHE=" + cache + " " + VIREO_BINARY_PATH + " " + args;
  FILE* p = ::popen(cmd.c_str(), "r");
  if (p == nullptr) return "";
  std::string out;
  char buf[4096];
  for (size_t n; (n = std::fread(buf, 1, sizeof buf, p)) > 0;) out.append(buf, n);
  status = ::pclose(p);
  return out;
}

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool chart_has_data(const std::string& html, const std::string& id) {
  const size_t at = html.find("id=\"" + id + "\"");
  if (at == std::string::npos) return false;
  const std::string svg = html.substr(at, html.find("</svg>", at) - at);
  return svg.find("class=\"bar\"") != std::string::npos || svg.find("class=\"series\"") != std::string::npos;
}

TEST(BenchLatency, ScenariosParseAndFitTheContext) {
  const auto s = parse_latency_scenarios("short,medium,long", 64, 4096);
  ASSERT_EQ(s.size(), 3u);
  EXPECT_EQ(s[0].n_prompt, 32);
  EXPECT_EQ(s[1].n_prompt, 512);
  EXPECT_EQ(s[2].n_prompt, 2048);
  EXPECT_EQ(s[0].name(), "latency short (p32,n64)");
  const auto custom = parse_latency_scenarios("64,1024", 64, 256);
  EXPECT_EQ(custom[0].n_prompt, 64);
  EXPECT_EQ(custom[1].n_prompt, 192);  // clamped: 192 + 64 generated fill the 256 cells
  for (const char* bad : {"", "huge", "0", "12x", "-5"}) EXPECT_THROW(parse_latency_scenarios(bad, 64, 4096), Error) << bad;
  EXPECT_THROW(parse_latency_scenarios("short", 0, 4096), Error);
}

TEST(BenchLatency, TinyModelTimesAreConsistent) {
  test::TempDir dir;
  int status = -1;
  const std::string out = run_vireo(dir.path(),
                                    "bench --synthetic tiny --type q8_0 --latency short,long -n 8 -r 2 -t 2 -o json --report " +
                                        dir.file("report") + " 2>/dev/null",
                                    status);
  ASSERT_EQ(status, 0) << out.substr(0, 2000);
  const auto doc = json::parse(out);
  const auto& results = doc["results"];
  ASSERT_EQ(results.size(), 2u);
  for (const auto& r : results) {
    SCOPED_TRACE(r["test"].get<std::string>());
    ASSERT_TRUE(r.contains("latency"));
    const auto& lat = r["latency"];
    EXPECT_EQ(lat["n_gen"], 8);
    EXPECT_EQ(r["samples"].size(), 2u);  // per-repetition samples, as for every result
    EXPECT_GT(lat["ttft_ms"]["mean"].get<double>(), 0);
    for (const char* k : {"ttft_ms", "itl_ms", "e2e_ms"}) {
      EXPECT_LE(lat[k]["p50"].get<double>(), lat[k]["p90"].get<double>()) << k;
      EXPECT_LE(lat[k]["p90"].get<double>(), lat[k]["p99"].get<double>()) << k;
    }
    EXPECT_GT(lat["decode_tokens_per_s"].get<double>(), 0);
    ASSERT_EQ(lat["repetitions"].size(), 2u);
    for (size_t i = 0; i < lat["repetitions"].size(); ++i) {
      const auto& rep = lat["repetitions"][i];
      ASSERT_EQ(rep["itl_ms"].size(), 7u);  // the first of the 8 tokens is in the TTFT
      double sum = rep["ttft_ms"].get<double>();
      for (double v : rep["itl_ms"]) sum += v;
      const double e2e = rep["e2e_ms"].get<double>();
      EXPECT_GE(e2e + 1e-6, sum);
      EXPECT_NEAR(e2e, sum, 0.05 * e2e + 2.0);  // only the release of the sequence lies outside
      EXPECT_NEAR(r["samples"][i]["seconds"].get<double>(), e2e / 1000.0, 1e-9);  // a repetition's sample is its e2e
    }
  }
  EXPECT_EQ(results[0]["latency"]["n_prompt"], 32);
  EXPECT_TRUE(results[1]["test"].get<std::string>().starts_with("latency long (p"));
  const std::string html = slurp(dir.file("report") + "/report.html");
  EXPECT_TRUE(chart_has_data(html, "latency"));
}

TEST(BenchStress, SlopeAndVerdictRules) {
  EXPECT_NEAR(least_squares_slope({0, 1, 2, 3}, {1, 3, 5, 7}), 2.0, 1e-12);
  EXPECT_EQ(least_squares_slope({1}, {1}), 0.0);
  double threshold = 0;
  EXPECT_EQ(stress_verdict(0.5, 50, &threshold), "no growth");
  EXPECT_EQ(threshold, 1.0);  // the 1 MB/min floor
  EXPECT_EQ(stress_verdict(5, 1000, &threshold), "no growth");
  EXPECT_EQ(threshold, 10.0);  // 1% of 1000 MB
  EXPECT_EQ(stress_verdict(15, 1000), "memory grows: possible leak");
  EXPECT_EQ(stress_verdict(1.5, 50), "memory grows: possible leak");
}

TEST(BenchStress, ThreeSecondsOnATinyModel) {
  test::TempDir dir;
  int status = -1;
  const std::string out = run_vireo(dir.path(),
                                    "bench --synthetic tiny --type q8_0 --stress 3 -t 2 -o json --report " + dir.file("report") +
                                        " 2>/dev/null",
                                    status);
  ASSERT_EQ(status, 0) << out.substr(0, 2000);
  const auto doc = json::parse(out);
  ASSERT_EQ(doc["stress"].size(), 1u);
  const auto& st = doc["stress"][0];
  EXPECT_TRUE(st["rss_slope_mb_per_min"].is_number());
  EXPECT_TRUE(st["anon_slope_mb_per_min"].is_number());
  EXPECT_GT(st["rss_mean_mb"].get<double>(), 0);
  EXPECT_GE(st["duration_s"].get<double>(), 3.0);
  EXPECT_GT(st["tokens"].get<int64_t>(), 0);
  EXPECT_GT(st["restarts"].get<int64_t>(), 0);  // the tiny model's context fills within seconds
  EXPECT_GE(st["memory"].size(), 10u);          // 10 Hz
  ASSERT_EQ(st["windows"].size(), 10u);
  int64_t window_tokens = 0;
  for (const auto& w : st["windows"]) window_tokens += w["tokens"].get<int64_t>();
  EXPECT_EQ(window_tokens, st["tokens"].get<int64_t>());  // every token in exactly one window
  EXPECT_TRUE(st["slowdown_pct"].is_number());
  const std::set<std::string> verdicts = {"no growth", "memory grows: possible leak"};
  EXPECT_TRUE(verdicts.count(st["verdict"].get<std::string>())) << st["verdict"];
  ASSERT_TRUE(doc.contains("gpu"));
  EXPECT_FALSE(doc["gpu"]["note"].get<std::string>().empty());
  const std::string html = slurp(dir.file("report") + "/report.html");
  EXPECT_TRUE(chart_has_data(html, "stress-memory"));
  EXPECT_TRUE(chart_has_data(html, "stress-rate"));
}

json bench_doc(const std::string& model, const std::vector<std::pair<std::string, std::vector<double>>>& tests) {
  json results = json::array();
  for (const auto& [test, rates] : tests) {
    json samples = json::array();
    double sum = 0;
    for (double r : rates) samples.push_back({{"seconds", 100.0 / r}, {"tokens_per_s", r}}), sum += r;
    results.push_back({{"engine", "vireo"}, {"model", model}, {"test", test}, {"threads", 2}, {"batch", 1}, {"depth", 0},
                       {"samples", samples}, {"avg_ts", sum / static_cast<double>(rates.size())}});
  }
  return {{"schema", 1}, {"results", results}};
}

void write(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

TEST(BenchCompare, StudentTQuantiles) {
  EXPECT_NEAR(student_t_quantile(0.975, 1), 12.706205, 1e-5);
  EXPECT_NEAR(student_t_quantile(0.975, 4), 2.776445, 1e-5);
  EXPECT_NEAR(student_t_quantile(0.975, 10), 2.228139, 1e-5);
  EXPECT_NEAR(student_t_quantile(0.025, 10), -2.228139, 1e-5);
  EXPECT_NEAR(student_t_quantile(0.975, 1e6), 1.959966, 1e-4);
}

TEST(BenchCompare, RatioAndIntervalMatchAHandComputation) {
  // B is A scaled by 1.2: equal variances of the logs, so Welch's df is exactly 2 (n - 1) = 4.
  const json a = bench_doc("/x/m.gguf", {{"tg32", {100, 102, 104}}, {"pp64", {50, 50.5}}, {"only-a", {1, 2}}});
  const json b = bench_doc("/y/m.gguf", {{"tg32", {120, 122.4, 124.8}}, {"pp64", {50.2, 50.4}}, {"only-b", {1, 2}}});
  const CompareResult c = compare_bench(a, b);
  ASSERT_EQ(c.rows.size(), 2u);
  const CompareRow& tg = c.rows[0];
  EXPECT_EQ(tg.test, "tg32");
  EXPECT_NEAR(tg.mean_a, 102, 1e-9);
  EXPECT_NEAR(tg.mean_b, 122.4, 1e-9);
  EXPECT_NEAR(tg.ratio, 1.2, 1e-12);
  const double l[] = {std::log(100.0), std::log(102.0), std::log(104.0)};
  const double m = (l[0] + l[1] + l[2]) / 3;
  const double var = ((l[0] - m) * (l[0] - m) + (l[1] - m) * (l[1] - m) + (l[2] - m) * (l[2] - m)) / 2;
  const double half = 2.776445 * std::sqrt(2 * var / 3);
  ASSERT_TRUE(tg.has_ci);
  EXPECT_NEAR(tg.ci_low, 1.2 * std::exp(-half), 1e-5);
  EXPECT_NEAR(tg.ci_high, 1.2 * std::exp(half), 1e-5);
  EXPECT_EQ(tg.verdict, "faster");  // the interval (about 1.15 - 1.25) lies above 1
  EXPECT_EQ(c.rows[1].verdict, "no significant difference");
  EXPECT_EQ(c.only_in_a.size(), 1u);
  EXPECT_EQ(c.only_in_b.size(), 1u);
  EXPECT_NE(c.method.find("Welch"), std::string::npos);
  const json j = compare_to_json(c);
  EXPECT_NEAR(j["rows"][0]["ci_low"].get<double>(), tg.ci_low, 1e-12);

  // Slower the other way round; the same through the command line, with --json.
  EXPECT_EQ(compare_bench(b, a).rows[0].verdict, "slower");
  test::TempDir dir;
  write(dir.file("a.json"), a.dump());
  write(dir.file("b.json"), b.dump());
  int status = -1;
  const std::string ab = "bench compare " + dir.file("a.json") + " " + dir.file("b.json");
  const std::string out = run_vireo(dir.path(), ab + " --json", status);
  ASSERT_EQ(status, 0) << out;
  const json cli = json::parse(out);
  EXPECT_NEAR(cli["rows"][0]["ratio"].get<double>(), 1.2, 1e-12);
  EXPECT_EQ(cli["rows"][0]["verdict"], "faster");
  const std::string table = run_vireo(dir.path(), ab, status);
  EXPECT_EQ(status, 0);
  EXPECT_NE(table.find("faster"), std::string::npos);
  EXPECT_NE(table.find("Welch"), std::string::npos);
}

TEST(BenchCompare, ClearErrorsForBadFiles) {
  test::TempDir dir;
  write(dir.file("a.json"), bench_doc("m.gguf", {{"tg32", {1, 2}}}).dump());
  write(dir.file("other.json"), bench_doc("other.gguf", {{"tg32", {1, 2}}}).dump());
  write(dir.file("broken.json"), "{ not json");
  write(dir.file("serve.json"), R"({"kind": "serve", "results": []})");
  write(dir.file("no-results.json"), R"({"schema": 1})");
  EXPECT_THROW(load_bench_json(dir.file("missing.json")), Error);
  for (const char* bad : {"broken.json", "serve.json", "no-results.json"}) {
    try {
      load_bench_json(dir.file(bad));
      ADD_FAILURE() << bad << " was accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(bad), std::string::npos) << e.what();  // the message names the file
    }
  }
  EXPECT_THROW(compare_bench(load_bench_json(dir.file("a.json")), load_bench_json(dir.file("other.json"))), Error);
  int status = 0;
  const std::string out =
      run_vireo(dir.path(), "bench compare " + dir.file("a.json") + " " + dir.file("other.json") + " 2>&1", status);
  EXPECT_NE(status, 0);
  EXPECT_NE(out.find("no result of A matches"), std::string::npos) << out;
}

TEST(BenchGpuMonitor, WithoutNvmlItSaysWhyAndNothingBreaks) {
  GpuMonitor gpu;
  if (gpu.available()) {
    std::printf("  (NVML present: %s)\n", gpu.device_name().c_str());
    GpuMonitor::Sample s;
    EXPECT_TRUE(gpu.sample_now(s));
    EXPECT_GT(s.memory_total_bytes, 0u);
    return;
  }
  EXPECT_FALSE(gpu.reason().empty());
  EXPECT_NO_THROW(gpu.start());
  EXPECT_NO_THROW(gpu.stop());
  EXPECT_TRUE(gpu.samples().empty());
  GpuMonitor::Sample s;
  EXPECT_FALSE(gpu.sample_now(s));
  const json j = gpu_to_json(gpu, gpu.samples());
  EXPECT_EQ(j["available"], false);
  EXPECT_EQ(j["reason"], gpu.reason());
}

// On a GPU: the sampler sees the probe's copies and GEMMs as busy time, and where the GPU has GPM
// (Hopper and later) it reports SM and DRAM-bandwidth use for them.
TEST(BenchGpuMonitor, SamplesAGpuAtWorkIncludingGpmWhereTheGpuHasIt) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA GPU";
  GpuMonitor gpu(0, 100);  // the bench's 10 Hz: GPM needs some time between its samples
  if (!gpu.available()) GTEST_SKIP() << "NVML unavailable: " << gpu.reason();
  std::printf("  (GPM: %s)\n", gpu.gpm_available() ? "available" : gpu.gpm_reason().c_str());
  gpu.start();
  const HardwarePeaks peaks = probe_cuda(0, /*refresh=*/true);
  gpu.stop();
  EXPECT_GT(peaks.mem_gb_s, 0);
  const auto samples = gpu.samples();
  ASSERT_GE(samples.size(), 5u);
  unsigned util_max = 0;
  double sm_max = 0, dram_max = 0;
  int with_gpm = 0;
  for (const auto& s : samples) {
    util_max = std::max(util_max, s.gpu_util_pct);
    if (!s.has_gpm) continue;
    ++with_gpm;
    for (double v : {s.sm_util_pct, s.sm_occupancy_pct, s.tensor_util_pct, s.dram_bw_util_pct}) {
      EXPECT_GE(v, 0);
      EXPECT_LE(v, 100.5);
    }
    sm_max = std::max(sm_max, s.sm_util_pct);
    dram_max = std::max(dram_max, s.dram_bw_util_pct);
  }
  EXPECT_GE(util_max, 50u);
  const json j = gpu_to_json(gpu, samples);
  EXPECT_EQ(j["gpm"]["available"], gpu.gpm_available());
  EXPECT_GT(j["summary"]["busy_samples"].get<int>(), 0);
  std::printf("  (%zu samples, kernel-busy max %u%%, %d with GPM: SM max %.1f%%, DRAM bandwidth max %.1f%%)\n",
              samples.size(), util_max, with_gpm, sm_max, dram_max);
  if (!gpu.gpm_available()) return;
  EXPECT_GE(with_gpm, static_cast<int>(samples.size()) / 2);
  EXPECT_GT(sm_max, 30);    // the GEMMs fill the SMs
  EXPECT_GT(dram_max, 30);  // the copies stream memory
  EXPECT_TRUE(j["summary"].contains("dram_bw_util_pct_mean"));
}

TEST(BenchGpuMonitor, ThrottleReasonsDecode) {
  EXPECT_TRUE(GpuMonitor::decode_throttle_reasons(0).empty());
  EXPECT_EQ(GpuMonitor::decode_throttle_reasons(0x4 | 0x40), (std::vector<std::string>{"sw_power_cap", "hw_thermal_slowdown"}));
  EXPECT_EQ(GpuMonitor::decode_throttle_reasons(0x1 | 0x10000), (std::vector<std::string>{"gpu_idle", "other"}));
}

}  // namespace
}  // namespace vireo
