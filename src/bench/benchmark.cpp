#include "vireo/bench/benchmark.h"

#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>

#include "vireo/core/error.h"

namespace vireo {
namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// One forward of `n` tokens for each of `seqs` at their next positions; logits of each sequence's last.
void forward(TextEngine& e, const std::vector<SeqId>& seqs, std::span<const int32_t> tokens) {
  ForwardBatch batch;
  for (SeqId s : seqs) e.cache().append(batch, s, tokens, true);
  (void)e.language_model().forward(batch, e.cache().buffers());
  e.backend().synchronize();
}

}  // namespace

std::string BenchTest::name() const {
  std::string s;
  if (n_prompt > 0) s = "pp" + std::to_string(n_prompt);
  if (n_gen > 0) s += (s.empty() ? "tg" : "+tg") + std::to_string(n_gen);
  if (depth > 0) s += " @ d" + std::to_string(depth);
  if (batch > 1) s += " x" + std::to_string(batch);
  return s;
}

std::vector<int32_t> bench_prompt_ids(int32_t n, int32_t n_vocab) {
  std::vector<int32_t> ids(static_cast<size_t>(std::max(n, 1)));
  const int64_t span = std::max<int64_t>(1, std::min<int64_t>(n_vocab, 32000) - 3);
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int32_t>(3 + (static_cast<int64_t>(i) * 7919) % span);
  return ids;
}

std::vector<int32_t> parse_int_list(const std::string& text, const std::string& flag) {
  std::vector<int32_t> out;
  std::stringstream ss(text);
  for (std::string item; std::getline(ss, item, ',');) {
    auto bad = [&] {
      fail(ErrorCode::InvalidArgument, "{} '{}': expected N, A-B, A-B*M or A-B+S with A <= B", flag, item);
    };
    // The whole text must be the number: "2-3" is not 2.
    auto whole = [&](const std::string& t) {
      size_t used = 0;
      const long long v = std::stoll(t, &used);
      if (used != t.size() || t.empty()) bad();
      return static_cast<int64_t>(v);
    };
    try {
      const size_t dash = item.find('-', 1);
      if (dash == std::string::npos) {
        out.push_back(static_cast<int32_t>(whole(item)));
        continue;
      }
      const size_t op = item.find_first_of("*+", dash);
      const int64_t a = whole(item.substr(0, dash));
      const int64_t b = whole(item.substr(dash + 1, op == std::string::npos ? std::string::npos : op - dash - 1));
      const char kind = op == std::string::npos ? '+' : item[op];
      const int64_t step = op == std::string::npos ? 1 : whole(item.substr(op + 1));
      if (a > b || (kind == '*' && (step < 2 || a <= 0)) || (kind == '+' && step < 1)) bad();
      for (int64_t v = a; v <= b; v = kind == '*' ? v * step : v + step) {
        out.push_back(static_cast<int32_t>(v));
        if (out.size() > 4096) fail(ErrorCode::InvalidArgument, "{} '{}': more than 4096 values", flag, item);
      }
    } catch (const std::logic_error&) {
      bad();
    }
  }
  if (out.empty()) fail(ErrorCode::InvalidArgument, "{}: no values", flag);
  return out;
}

uint64_t peak_rss_bytes() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<uint64_t>(u.ru_maxrss) * 1024;
}

ResidentMemory resident_memory() {
  ResidentMemory m;
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);) {
    unsigned long long kb = 0;
    if (std::sscanf(line.c_str(), "RssAnon: %llu kB", &kb) == 1) m.anon_bytes = kb * 1024;
    if (std::sscanf(line.c_str(), "RssFile: %llu kB", &kb) == 1) m.file_bytes = kb * 1024;
  }
  return m;
}

ResourceMonitor::ResourceMonitor(int period_ms) : period_ms_(std::max(period_ms, 10)) {}
ResourceMonitor::~ResourceMonitor() { stop(); }

void ResourceMonitor::start() {
  if (running_.exchange(true)) return;
  thread_ = std::thread([this] {
    const auto t0 = Clock::now();
    while (running_.load()) {
      const ResidentMemory m = resident_memory();
      {
        std::lock_guard lock(mu_);
        samples_.push_back({seconds_since(t0), m.anon_bytes + m.file_bytes, m.anon_bytes});
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(period_ms_));
    }
  });
}

void ResourceMonitor::stop() {
  if (!running_.exchange(false)) return;
  if (thread_.joinable()) thread_.join();
}

std::vector<ResourceMonitor::Sample> ResourceMonitor::samples() const {
  std::lock_guard lock(mu_);
  return samples_;
}

BenchResult run_bench_test(TextEngine& e, const BenchTest& test, int reps) {
  if (test.n_prompt < 0 || test.n_gen < 0 || test.n_prompt + test.n_gen == 0 || test.depth < 0 || test.batch < 1) {
    fail(ErrorCode::InvalidArgument, "benchmark test {}: needs prompt or generated tokens, depth >= 0, batch >= 1", test.name());
  }
  if (reps < 1) fail(ErrorCode::InvalidArgument, "repetitions must be >= 1, got {}", reps);
  const int64_t per_seq = int64_t{test.depth} + test.n_prompt + test.n_gen;
  if (test.cells() > e.cache().free_cells()) {
    fail(ErrorCode::InvalidArgument, "{} needs {} KV cells but the cache holds {}", test.name(), test.cells(), e.n_ctx());
  }
  const auto ids = bench_prompt_ids(std::max(test.depth, test.n_prompt), static_cast<int32_t>(e.config().n_vocab));
  BenchResult r;
  r.test = test;
  for (int rep = 0; rep <= reps; ++rep) {  // rep 0 warms up
    std::vector<SeqId> seqs;
    for (int b = 0; b < test.batch; ++b) seqs.push_back(e.cache().add_sequence(static_cast<int32_t>(per_seq)));
    if (test.depth > 0) forward(e, seqs, std::span(ids).first(static_cast<size_t>(test.depth)));
    std::vector<double> itl;
    const auto t0 = Clock::now();
    if (test.n_prompt > 0) forward(e, seqs, std::span(ids).first(static_cast<size_t>(test.n_prompt)));
    for (int32_t i = 0; i < test.n_gen; ++i) {
      const int32_t token = ids[static_cast<size_t>(i) % ids.size()];
      const auto t = Clock::now();
      forward(e, seqs, std::span(&token, 1));
      itl.push_back(seconds_since(t) * 1000.0);
    }
    const double secs = seconds_since(t0);
    for (SeqId s : seqs) e.cache().remove_sequence(s);
    if (rep == 0) continue;
    const double tokens = double(test.batch) * (test.n_prompt + test.n_gen);
    r.samples.push_back({secs, tokens / secs});
    r.itl_ms.insert(r.itl_ms.end(), itl.begin(), itl.end());
  }
  double sum = 0;
  for (const auto& s : r.samples) sum += s.tokens_per_s;
  r.mean_tokens_per_s = sum / static_cast<double>(r.samples.size());
  double var = 0;
  for (const auto& s : r.samples) var += (s.tokens_per_s - r.mean_tokens_per_s) * (s.tokens_per_s - r.mean_tokens_per_s);
  r.stddev_tokens_per_s = r.samples.size() > 1 ? std::sqrt(var / static_cast<double>(r.samples.size() - 1)) : 0.0;
  return r;
}

}  // namespace vireo

namespace vireo {

std::string LatencyScenario::name() const { return "latency " + label + " (p" + std::to_string(n_prompt) + ",n" + std::to_string(n_gen) + ")"; }

double LatencyRep::decode_tokens_per_s() const {
  double ms = 0;
  for (double v : itl_ms) ms += v;
  return ms > 0 ? 1000.0 * static_cast<double>(itl_ms.size()) / ms : 0;
}

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const double pos = std::clamp(p, 0.0, 1.0) * static_cast<double>(v.size() - 1);
  const auto lo = static_cast<size_t>(pos);
  const size_t hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (v[hi] - v[lo]) * (pos - static_cast<double>(lo));
}

std::vector<LatencyScenario> parse_latency_scenarios(const std::string& text, int32_t n_gen, int64_t n_ctx) {
  if (n_gen < 1) fail(ErrorCode::InvalidArgument, "--latency: -n must be >= 1, got {}", n_gen);
  if (n_ctx < int64_t{n_gen} + 1) fail(ErrorCode::InvalidArgument, "--latency: {} generated tokens do not fit a context of {}", n_gen, n_ctx);
  std::vector<LatencyScenario> out;
  std::stringstream ss(text);
  for (std::string item; std::getline(ss, item, ',');) {
    int64_t n = 0;
    if (item == "short") n = 32;
    else if (item == "medium") n = 512;
    else if (item == "long") n = 2048;
    else {
      size_t used = 0;
      try {
        n = std::stoll(item, &used);
      } catch (const std::logic_error&) {
        used = 0;
      }
      if (used == 0 || used != item.size() || n < 1) {
        fail(ErrorCode::InvalidArgument, "--latency '{}': expected short, medium, long or a prompt size >= 1", item);
      }
    }
    const int64_t fits = std::min<int64_t>(n, n_ctx - n_gen);  // clamped to what fits the context
    out.push_back({item, static_cast<int32_t>(fits), n_gen});
  }
  if (out.empty()) fail(ErrorCode::InvalidArgument, "--latency: no scenarios");
  return out;
}

LatencyResult run_latency_test(TextEngine& e, const LatencyScenario& scenario, int reps) {
  if (reps < 1) fail(ErrorCode::InvalidArgument, "repetitions must be >= 1, got {}", reps);
  if (int64_t{scenario.n_prompt} + scenario.n_gen > e.cache().free_cells()) {
    fail(ErrorCode::InvalidArgument, "{} needs {} KV cells but the cache holds {}", scenario.name(),
         scenario.n_prompt + scenario.n_gen, e.n_ctx());
  }
  const auto prompt = bench_prompt_ids(scenario.n_prompt, static_cast<int32_t>(e.config().n_vocab));
  GenerateOptions go;
  go.max_tokens = scenario.n_gen;  // no stop tokens: every repetition makes exactly n_gen tokens
  LatencyResult r;
  r.scenario = scenario;
  for (int rep = 0; rep <= reps; ++rep) {  // rep 0 warms up
    LatencyRep lr;
    const auto t0 = Clock::now();
    auto last = t0;
    bool first = true;
    // The callback sees each token right after it is sampled: the gaps are what a client streams.
    e.generator().generate(prompt, go, [&](int32_t) {
      const auto now = Clock::now();
      const double ms = std::chrono::duration<double, std::milli>(now - last).count();
      if (first) lr.ttft_ms = ms;
      else lr.itl_ms.push_back(ms);
      first = false;
      last = now;
      return true;
    });
    lr.e2e_ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
    if (rep > 0) r.reps.push_back(std::move(lr));
  }
  return r;
}

}  // namespace vireo

namespace vireo {

nlohmann::json latency_to_json(const LatencyResult& r) {
  std::vector<double> ttft, e2e, itl, decode;
  nlohmann::json reps = nlohmann::json::array();
  for (const auto& rep : r.reps) {
    ttft.push_back(rep.ttft_ms);
    e2e.push_back(rep.e2e_ms);
    decode.push_back(rep.decode_tokens_per_s());
    itl.insert(itl.end(), rep.itl_ms.begin(), rep.itl_ms.end());
    reps.push_back({{"ttft_ms", rep.ttft_ms}, {"e2e_ms", rep.e2e_ms}, {"decode_tokens_per_s", rep.decode_tokens_per_s()},
                    {"itl_ms", rep.itl_ms}});
  }
  auto mean = [](const std::vector<double>& v) {
    double s = 0;
    for (double x : v) s += x;
    return v.empty() ? 0.0 : s / static_cast<double>(v.size());
  };
  auto summary = [&](const std::vector<double>& v) {
    return nlohmann::json{{"mean", mean(v)}, {"p50", percentile(v, 0.5)}, {"p90", percentile(v, 0.9)}, {"p99", percentile(v, 0.99)}};
  };
  return {{"scenario", r.scenario.label},
          {"n_prompt", r.scenario.n_prompt},
          {"n_gen", r.scenario.n_gen},
          {"ttft_ms", summary(ttft)},
          {"itl_ms", summary(itl)},
          {"e2e_ms", summary(e2e)},
          {"decode_tokens_per_s", mean(decode)},
          {"repetitions", reps}};
}

}  // namespace vireo
