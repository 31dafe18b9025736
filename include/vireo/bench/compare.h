// A/B comparison of two `vireo bench -o json` documents (two builds, two configurations): results
// matched by model file name, engine, test, threads, batch and depth; for each pair the ratio of
// the rates B / A with a 95% confidence interval from the per-repetition samples.
#pragma once
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace vireo {

struct CompareRow {
  std::string model, engine, test;
  int threads = 0, batch = 1, depth = 0;
  size_t n_a = 0, n_b = 0;        // repetitions
  double mean_a = 0, mean_b = 0;  // arithmetic means of tokens/s
  double ratio = 0;               // mean_b / mean_a
  bool has_ci = false;            // false with fewer than two samples on a side
  double ci_low = 0, ci_high = 0; // 95% interval of the ratio of geometric means
  std::string verdict;            // "faster", "slower", "no significant difference", "too few samples"
};

struct CompareResult {
  std::string method;  // how the interval was computed, for the output
  std::vector<CompareRow> rows;
  std::vector<std::string> only_in_a, only_in_b;  // unmatched results, as "model | test | t/b/d"
};

// Reads a `vireo bench -o json` document; InvalidArgument / Io errors name the file and what is wrong.
nlohmann::json load_bench_json(const std::string& path);

// Welch's t on the logarithms of the rates: interval exp(mean log B - mean log A +- t * se).
CompareResult compare_bench(const nlohmann::json& a, const nlohmann::json& b);

nlohmann::json compare_to_json(const CompareResult& result);
std::string format_compare_table(const CompareResult& result);

// Student's t distribution: the quantile at probability p with `df` degrees of freedom (df may be
// fractional, as Welch's is).
double student_t_quantile(double p, double df);

}  // namespace vireo
