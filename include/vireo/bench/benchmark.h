// Engine speed as llama-bench measures it: "pp N" prefills N tokens in one pass; "tg N" decodes
// N tokens one step at a time; both from a KV cache holding `depth` tokens already (not timed),
// for `batch` sequences at once. Each test runs once to warm up, then `reps` times; rates are all
// sequences' tokens / wall time.
#pragma once
#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "vireo/runtime/text_engine.h"

namespace vireo {

struct BenchTest {
  int32_t n_prompt = 0;  // pp
  int32_t n_gen = 0;     // tg
  int32_t depth = 0;     // tokens already in the cache
  int32_t batch = 1;     // sequences processed together
  std::string name() const;  // "pp128", "tg32", "tg32 @ d512", "tg32 x8"
  // KV cells the test's sequences take: each rounds up to whole blocks of the paged cache.
  int64_t cells() const {
    const int64_t blocks = (int64_t{depth} + n_prompt + n_gen + KvCache::kBlockSize - 1) / KvCache::kBlockSize;
    return int64_t{batch} * blocks * KvCache::kBlockSize;
  }
};

struct BenchSample {
  double seconds = 0;
  double tokens_per_s = 0;
};

struct BenchResult {
  BenchTest test;
  std::vector<BenchSample> samples;
  double mean_tokens_per_s = 0, stddev_tokens_per_s = 0;
  std::vector<double> itl_ms;  // tg: every decode step's latency, all repetitions
};

// Runs one test on the engine (its KV cache must hold test.cells() cells).
BenchResult run_bench_test(TextEngine& engine, const BenchTest& test, int reps);

// Latency of one generation from an empty cache, as a user sees it: time to first token (prompt
// prefill and the first sampled token), then the gap before each following token.
struct LatencyScenario {
  std::string label;      // "short", "medium", "long", or the prompt size given
  int32_t n_prompt = 0;
  int32_t n_gen = 0;
  std::string name() const;  // "latency short (p32,n64)"
};

struct LatencyRep {
  double ttft_ms = 0;          // prefill + first token
  std::vector<double> itl_ms;  // n_gen - 1 gaps between tokens
  double e2e_ms = 0;           // from the request to the end of generation
  double decode_tokens_per_s() const;  // (n_gen - 1) / sum(itl)
};

struct LatencyResult {
  LatencyScenario scenario;
  std::vector<LatencyRep> reps;  // after one warm-up
};

// "short,medium,long" (32, 512, 2048 prompt tokens) or sizes ("64,1024"), mixed freely; each
// prompt is clamped so that prompt + n_gen fits `n_ctx` cells. Throws InvalidArgument.
std::vector<LatencyScenario> parse_latency_scenarios(const std::string& text, int32_t n_gen, int64_t n_ctx);

// Greedy generation through the engine's Generator (no stop tokens), one warm-up then `reps`.
LatencyResult run_latency_test(TextEngine& engine, const LatencyScenario& scenario, int reps);

// The "latency" object of a result (docs/bench-json.md): TTFT, ITL, end-to-end and decode rate,
// summarised and per repetition.
nlohmann::json latency_to_json(const LatencyResult& result);

double percentile(std::vector<double> values, double p);  // linear between ranks, p in [0, 1]

// Deterministic prompt ids, away from the special tokens at the vocabulary's ends (the same
// ids tests/reference/llama_ref.mjs's bench uses).
std::vector<int32_t> bench_prompt_ids(int32_t n, int32_t n_vocab);

// "128", "128,512", "128-1024*2" (x2 steps), "1-8+1" (+1 steps), or a mix separated by commas,
// as llama-bench reads its lists. Throws InvalidArgument naming the bad item.
std::vector<int32_t> parse_int_list(const std::string& text, const std::string& flag);

// Peak resident set of this process so far, in bytes.
uint64_t peak_rss_bytes();

// The resident set now: anonymous memory (copies, buffers) and file pages (mapped weights).
struct ResidentMemory {
  uint64_t anon_bytes = 0, file_bytes = 0;
};
ResidentMemory resident_memory();

// Samples the process's memory every `period_ms` on its own thread (GpuMonitor runs beside it for the GPU).
class ResourceMonitor {
 public:
  struct Sample {
    double t_s = 0;  // since start()
    uint64_t rss_bytes = 0, anon_bytes = 0;
  };
  explicit ResourceMonitor(int period_ms = 100);
  ~ResourceMonitor();
  void start();
  void stop();
  std::vector<Sample> samples() const;

 private:
  int period_ms_;
  std::atomic<bool> running_{false};
  std::thread thread_;
  mutable std::mutex mu_;
  std::vector<Sample> samples_;
};

}  // namespace vireo
