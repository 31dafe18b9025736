// vireo bench: list parsing, and the JSON document and HTML report of a real (small) run:
// every figure consistent with the others (tokens / time = rate, mean of the samples, roofline
// fraction = achieved / attainable), the charts present, and the page rendered by headless
// Chromium when it is installed.
#include "vireo/bench/benchmark.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "test_util.h"
#include "vireo/core/error.h"

namespace vireo {
namespace {

TEST(BenchLists, LlamaBenchForms) {
  EXPECT_EQ(parse_int_list("128", "-p"), (std::vector<int32_t>{128}));
  EXPECT_EQ(parse_int_list("128-512*2", "-p"), (std::vector<int32_t>{128, 256, 512}));
  EXPECT_EQ(parse_int_list("1-4+1", "-t"), (std::vector<int32_t>{1, 2, 3, 4}));
  EXPECT_EQ(parse_int_list("1,8-16*2,0", "-b"), (std::vector<int32_t>{1, 8, 16, 0}));
  EXPECT_EQ(parse_int_list("2-7+2", "-d"), (std::vector<int32_t>{2, 4, 6}));
  for (const char* bad : {"", "x", "5-1", "1-4*1", "0-8*2", "3-9+0", "12abc", "1-2-3"}) {
    EXPECT_THROW(parse_int_list(bad, "-p"), Error) << bad;
  }
}

double rel(double a, double b) { return std::abs(a - b) / std::max({std::abs(a), std::abs(b), 1e-30}); }

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST(BenchRun, JsonIsConsistentAndTheReportHasItsCharts) {
  test::TempDir dir;
  const std::string cmd = "VIREO_CACHE=" + dir.path() + " " + VIREO_BINARY_PATH +
                          " bench --synthetic tiny --type q8_0 -p 16 -n 8 -d 0,8 -b 1,2 -r 2 -t 2 --device cpu -o json --report " +
                          dir.file("report") + " 2>/dev/null";
  FILE* p = ::popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr);
  std::string out;
  char buf[4096];
  for (size_t n; (n = std::fread(buf, 1, sizeof buf, p)) > 0;) out.append(buf, n);
  ASSERT_EQ(::pclose(p), 0) << out.substr(0, 2000);
  const auto doc = nlohmann::json::parse(out);

  // The documented top level (docs/bench-json.md).
  EXPECT_EQ(doc["schema"], 1);
  const auto& hw = doc["hardware"];
  for (const char* k : {"mem_gb_s", "int8_tops", "float_tflops"}) EXPECT_GT(hw[k].get<double>(), 0) << k;
  EXPECT_EQ(hw["mem_method"], "streaming read");
  EXPECT_FALSE(doc["timeline"].empty());
  const auto& results = doc["results"];
  ASSERT_EQ(results.size(), 8u);  // (pp16, tg8) x depth (0, 8) x batch (1, 2)

  const std::set<std::string> verdicts = {"memory-bound", "compute-bound", "under-utilised"};
  for (const auto& r : results) {
    SCOPED_TRACE(r["test"].get<std::string>());
    for (const char* k : {"engine", "model", "model_bytes", "n_params", "weight_bytes", "kv_bytes", "device", "backend", "threads", "test",
                          "n_prompt", "n_gen", "depth", "batch", "tokens", "repetitions", "samples", "avg_ts", "stddev_ts",
                          "peak_rss_bytes", "roofline"}) {
      EXPECT_TRUE(r.contains(k)) << k;
    }
    EXPECT_EQ(r["device"], "cpu");
    const double tokens = r["batch"].get<double>() * (r["n_prompt"].get<double>() + r["n_gen"].get<double>());
    EXPECT_EQ(r["tokens"].get<double>(), tokens);
    ASSERT_EQ(r["samples"].size(), 2u);
    double sum = 0;
    std::vector<double> rates;
    for (const auto& s : r["samples"]) {
      EXPECT_LT(rel(tokens / s["seconds"].get<double>(), s["tokens_per_s"].get<double>()), 1e-9);
      rates.push_back(s["tokens_per_s"].get<double>());
      sum += rates.back();
    }
    const double mean = sum / 2;
    EXPECT_LT(rel(r["avg_ts"].get<double>(), mean), 1e-9);
    EXPECT_LT(rel(r["stddev_ts"].get<double>(), std::abs(rates[0] - rates[1]) / std::sqrt(2.0)), 1e-6);
    if (r["n_gen"].get<int>() > 0) {
      EXPECT_EQ(r["itl_ms_samples"].size(), 2u * r["n_gen"].get<size_t>());
      EXPECT_LE(r["itl_ms"]["p50"].get<double>(), r["itl_ms"]["p99"].get<double>());
    }
    const auto& rl = r["roofline"];
    EXPECT_LT(rel(rl["achieved_gb_s"].get<double>(), rl["bytes_per_token"].get<double>() * mean / 1e9), 1e-9);
    EXPECT_LT(rel(rl["achieved_tflops"].get<double>(), rl["flops_per_token"].get<double>() * mean / 1e12), 1e-9);
    EXPECT_LT(rel(rl["intensity"].get<double>(), rl["flops_per_token"].get<double>() / rl["bytes_per_token"].get<double>()), 1e-9);
    const double peak = hw["int8_tops"].get<double>();  // q8_0 weights use the int8 roof
    const double attainable = std::min(peak, rl["intensity"].get<double>() * hw["mem_gb_s"].get<double>() / 1e3);
    EXPECT_LT(rel(rl["attainable_tflops"].get<double>(), attainable), 1e-9);
    EXPECT_LT(rel(rl["fraction"].get<double>(), rl["achieved_tflops"].get<double>() / attainable), 1e-9);
    EXPECT_TRUE(verdicts.count(rl["verdict"].get<std::string>()));
    EXPECT_FALSE(rl["advice"].get<std::string>().empty());
  }

  // The report: every chart with its data drawn, and the JSON beside it.
  const std::string html = slurp(dir.file("report") + "/report.html");
  for (const char* id : {"throughput", "vs-batch", "vs-depth", "itl", "memory", "roofline"}) {
    const size_t at = html.find(std::string("id=\"") + id + "\"");
    ASSERT_NE(at, std::string::npos) << id;
    const std::string svg = html.substr(at, html.find("</svg>", at) - at);
    EXPECT_TRUE(svg.find("class=\"bar\"") != std::string::npos || svg.find("class=\"point\"") != std::string::npos ||
                svg.find("class=\"series\"") != std::string::npos)
        << id << " has no data";
  }
  EXPECT_EQ(nlohmann::json::parse(slurp(dir.file("report") + "/results.json"))["results"].size(), 8u);

  // Headless Chromium renders it, charts included.
  if (std::system("command -v chromium > /dev/null 2>&1") != 0) {
    std::printf("  (chromium not installed: the HTML was checked as text only)\n");
    return;
  }
  const std::string dom_cmd = "chromium --headless --no-sandbox --disable-gpu --dump-dom file://" + dir.file("report") +
                              "/report.html 2>/dev/null";
  FILE* c = ::popen(dom_cmd.c_str(), "r");
  ASSERT_NE(c, nullptr);
  std::string dom;
  for (size_t n; (n = std::fread(buf, 1, sizeof buf, c)) > 0;) dom.append(buf, n);
  ::pclose(c);
  size_t svgs = 0;
  for (size_t at = dom.find("<svg"); at != std::string::npos; at = dom.find("<svg", at + 1)) ++svgs;
  EXPECT_EQ(svgs, 6u) << dom.substr(0, 500);
  EXPECT_NE(dom.find("class=\"point\""), std::string::npos);
}

}  // namespace
}  // namespace vireo
