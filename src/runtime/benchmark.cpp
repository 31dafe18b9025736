#include "vireo/runtime/benchmark.h"

#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <string>

#include "vireo/core/error.h"

namespace vireo {
namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// One forward of `tokens` for a fresh sequence at its next positions; logits of the last only.
void forward(TextEngine& e, SeqId seq, std::span<const int32_t> tokens) {
  ForwardBatch batch;
  e.cache().append(batch, seq, tokens, true);
  const Buffer out = e.language_model().forward(batch, e.cache().buffers());
  e.backend().synchronize();
  (void)out;
}

}  // namespace

std::string BenchTest::name() const {
  if (n_prompt > 0 && n_gen > 0) return "pp" + std::to_string(n_prompt) + "+tg" + std::to_string(n_gen);
  return n_prompt > 0 ? "pp" + std::to_string(n_prompt) : "tg" + std::to_string(n_gen);
}

std::vector<int32_t> bench_prompt_ids(int32_t n, int32_t n_vocab) {
  std::vector<int32_t> ids(static_cast<size_t>(std::max(n, 1)));
  const int64_t span = std::max<int64_t>(1, std::min<int64_t>(n_vocab, 32000) - 3);
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int32_t>(3 + (static_cast<int64_t>(i) * 7919) % span);
  return ids;
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

BenchResult run_bench_test(TextEngine& e, const BenchTest& test, int reps) {
  if (test.n_prompt < 0 || test.n_gen < 0 || test.n_prompt + test.n_gen == 0) {
    fail(ErrorCode::InvalidArgument, "a benchmark test needs prompt or generated tokens");
  }
  if (reps < 1) fail(ErrorCode::InvalidArgument, "repetitions must be >= 1, got {}", reps);
  const int64_t need = int64_t{test.n_prompt} + test.n_gen;
  if (need > e.cache().largest_free_run()) {
    fail(ErrorCode::InvalidArgument, "{} needs {} KV cells but the context holds {}", test.name(), need, e.n_ctx());
  }
  const auto prompt = bench_prompt_ids(test.n_prompt, static_cast<int32_t>(e.config().n_vocab));
  BenchResult r;
  r.test = test;
  for (int rep = 0; rep <= reps; ++rep) {  // rep 0 warms up
    const SeqId seq = e.cache().add_sequence(static_cast<int32_t>(need));
    std::vector<double> itl;
    const auto t0 = Clock::now();
    if (test.n_prompt > 0) forward(e, seq, std::span(prompt).first(static_cast<size_t>(test.n_prompt)));
    int32_t token = prompt[0];
    for (int32_t i = 0; i < test.n_gen; ++i) {
      const auto t = Clock::now();
      forward(e, seq, std::span(&token, 1));
      itl.push_back(seconds_since(t) * 1000.0);
      token = prompt[static_cast<size_t>(i + 1) % prompt.size()];
    }
    const double secs = seconds_since(t0);
    e.cache().remove_sequence(seq);
    if (rep == 0) continue;
    r.samples.push_back({secs, static_cast<double>(need) / secs});
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
