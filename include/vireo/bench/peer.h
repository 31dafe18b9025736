// The same benchmark tests run by llama.cpp, on the same model file and thread count: through
// its llama-bench binary when one is given or found in PATH, else through node-llama-cpp (the
// reference driver under tests/reference, when Node and its packages are installed).
#pragma once
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "vireo/bench/benchmark.h"

namespace vireo {

struct PeerRun {
  std::string how;                     // "llama-bench /path" or "node-llama-cpp"
  std::vector<nlohmann::json> results; // rows shaped like vireo's (engine, test, avg_ts, stddev_ts, ...)
  std::vector<std::string> skipped;    // tests the peer cannot run, with the reason
};

// Throws NotFound when no way to run llama.cpp is available. On a "cuda..." device llama-bench
// offloads every layer and uses flash attention (-ngl 99 -fa 1); on "cpu" none (-ngl 0).
PeerRun run_llama_cpp_peer(const std::string& llama_bench, const std::string& model, const std::vector<BenchTest>& tests,
                           unsigned threads, int reps, const std::string& device = "cpu");

}  // namespace vireo
