// Engine speed as llama-bench measures it: "pp N" prefills N tokens in one batch from an empty
// KV cache; "tg N" decodes N tokens one at a time from an empty cache; "pp N + tg M" does both.
// Each test runs once to warm up, then `reps` times; rates are tokens / wall time.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "vireo/runtime/text_engine.h"

namespace vireo {

struct BenchTest {
  int32_t n_prompt = 0;  // pp
  int32_t n_gen = 0;     // tg
  std::string name() const;  // "pp128", "tg32", "pp512+tg128"
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

// Runs one test on the engine (its KV cache must hold n_prompt + n_gen cells).
BenchResult run_bench_test(TextEngine& engine, const BenchTest& test, int reps);

// Deterministic prompt ids, away from the special tokens at the vocabulary's ends (the same
// ids tests/reference/llama_ref.mjs's bench uses).
std::vector<int32_t> bench_prompt_ids(int32_t n, int32_t n_vocab);

// Peak resident set of this process so far, in bytes.
uint64_t peak_rss_bytes();

// The resident set now: anonymous memory (copies, buffers) and file pages (mapped weights).
struct ResidentMemory {
  uint64_t anon_bytes = 0, file_bytes = 0;
};
ResidentMemory resident_memory();

}  // namespace vireo
