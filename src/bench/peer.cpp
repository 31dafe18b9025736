#include "vireo/bench/peer.h"

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <sstream>

#include <fmt/format.h>

#include "vireo/core/error.h"

namespace vireo {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

std::string quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

std::string run(const std::string& cmd, int& status) {
  std::string out;
  FILE* p = ::popen(cmd.c_str(), "r");
  if (p == nullptr) fail(ErrorCode::Io, "cannot run: {}", cmd);
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  status = ::pclose(p);
  return out;
}

std::string find_in_path(const std::string& name) {
  const char* path = std::getenv("PATH");
  if (path == nullptr) return {};
  std::stringstream ss(path);
  for (std::string dir; std::getline(ss, dir, ':');) {
    const fs::path f = fs::path(dir) / name;
    if (!dir.empty() && ::access(f.c_str(), X_OK) == 0) return f.string();
  }
  return {};
}

json row(const BenchTest& t, const std::string& model, const std::string& how, unsigned threads, double avg, double sd,
         const json& samples) {
  return {{"engine", "llama.cpp"}, {"model", model},        {"backend", "llama.cpp (" + how + ")"},
          {"threads", threads},    {"test", t.name()},      {"n_prompt", t.n_prompt},
          {"n_gen", t.n_gen},      {"depth", t.depth},      {"batch", t.batch},
          {"avg_ts", avg},         {"stddev_ts", sd},       {"samples_ts", samples}};
}

double mean(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return v.empty() ? 0 : s / static_cast<double>(v.size());
}
double stddev(const std::vector<double>& v) {
  if (v.size() < 2) return 0;
  const double m = mean(v);
  double s = 0;
  for (double x : v) s += (x - m) * (x - m);
  return std::sqrt(s / static_cast<double>(v.size() - 1));
}

}  // namespace

PeerRun run_llama_cpp_peer(const std::string& llama_bench, const std::string& model, const std::vector<BenchTest>& tests,
                           unsigned threads, int reps, const std::string& device) {
  const bool gpu = device.rfind("cuda", 0) == 0;
  PeerRun out;
  std::string bin = llama_bench.empty() ? find_in_path("llama-bench") : llama_bench;
  if (!bin.empty()) {
    out.how = "llama-bench";
    for (const auto& t : tests) {
      if (t.batch > 1) {
        out.skipped.push_back(t.name() + ": llama-bench has no multi-sequence batches");
        continue;
      }
      std::string args = fmt::format(" -m {} -t {} -r {} -o json -d {}{}", quote(model), threads, reps, t.depth,
                                     gpu ? " -ngl 99 -fa 1" : " -ngl 0");
      if (t.n_prompt > 0 && t.n_gen > 0) args += fmt::format(" -p 0 -n 0 -pg {},{}", t.n_prompt, t.n_gen);
      else args += fmt::format(" -p {} -n {}", t.n_prompt, t.n_gen);
      int status = 0;
      const std::string text = run(quote(bin) + args + " 2>/dev/null", status);
      const json j = json::parse(text, nullptr, false);
      if (status != 0 || !j.is_array() || j.empty()) {
        fail(ErrorCode::Io, "llama-bench failed on {} ({}): {}", t.name(), bin, text.substr(0, 300));
      }
      const json& r = j.back();
      out.results.push_back(row(t, model, out.how, threads, r.value("avg_ts", 0.0), r.value("stddev_ts", 0.0),
                                r.value("samples_ts", json::array())));
    }
    return out;
  }
  // node-llama-cpp through the reference driver.
  std::string driver = std::getenv("VIREO_LLAMA_REF") != nullptr ? std::getenv("VIREO_LLAMA_REF") : "";
  if (driver.empty() && fs::exists("tests/reference/llama_ref.mjs")) driver = "tests/reference/llama_ref.mjs";
  if (driver.empty() || find_in_path("node").empty()) {
    fail(ErrorCode::NotFound,
         "no llama.cpp to compare with: give --peer-bin PATH/llama-bench, put llama-bench in PATH, or run from a vireo "
         "checkout with Node.js and scripts/install-deps.sh done (or set VIREO_LLAMA_REF to tests/reference/llama_ref.mjs)");
  }
  out.how = "node-llama-cpp";
  for (const auto& t : tests) {
    if (t.batch > 1 || t.depth > 0 || (t.n_prompt > 0 && t.n_gen > 0)) {
      out.skipped.push_back(t.name() + ": the node-llama-cpp driver runs plain pp and tg tests only");
      continue;
    }
    int status = 0;
    const std::string text = run(fmt::format("node {} bench {} --pp {} --tg {} --reps {} --threads {} 2>/dev/null", quote(driver),
                                             quote(model), t.n_prompt, t.n_gen, reps, threads), status);
    const json j = json::parse(text, nullptr, false);
    if (status != 0 || !j.is_object() || j.contains("error")) fail(ErrorCode::Io, "node-llama-cpp bench failed: {}", text.substr(0, 300));
    const auto runs = j.value(t.n_prompt > 0 ? "pp_runs" : "tg_runs", std::vector<double>{});
    out.results.push_back(row(t, model, out.how, threads, mean(runs), stddev(runs), runs));
  }
  return out;
}

}  // namespace vireo
