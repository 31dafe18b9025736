// Counters and latency histograms for GET /metrics, written in Prometheus' text format. Every
// method is thread-safe; HTTP threads record, the scrape reads.
#pragma once
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace vireo::server {

class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds);  // upper bounds, ascending (+Inf is added)
  void observe(double v);
  // Appends the _bucket, _sum and _count lines of `name` with `labels` (e.g. model="x").
  void write(std::string& out, const std::string& name, const std::string& labels) const;

 private:
  std::vector<double> bounds_;
  std::vector<uint64_t> counts_;  // per bucket, not cumulative
  double sum_ = 0;
  uint64_t count_ = 0;
};

// What one model's requests did, by model name.
class Metrics {
 public:
  Metrics();
  void request(const std::string& endpoint, int status);  // every answered request
  void completion(const std::string& model, int64_t prompt_tokens, int64_t completion_tokens, double ttft_s,
                  double e2e_s, double tpot_s);
  // Prometheus text; `gauges` are point-in-time values (name{labels} -> value) the caller reads.
  std::string render(const std::vector<std::pair<std::string, double>>& gauges) const;

 private:
  mutable std::mutex mu_;
  std::map<std::pair<std::string, int>, uint64_t> requests_;
  struct PerModel {
    uint64_t prompt_tokens = 0, completion_tokens = 0, completions = 0;
    Histogram ttft, e2e, tpot;
    PerModel();
  };
  std::map<std::string, PerModel> models_;
};

}  // namespace vireo::server
