#include "vireo/server/metrics.h"

#include <algorithm>

#include <fmt/format.h>

namespace vireo::server {

Histogram::Histogram(std::vector<double> bounds) : bounds_(std::move(bounds)), counts_(bounds_.size() + 1, 0) {}

void Histogram::observe(double v) {
  const auto at = std::lower_bound(bounds_.begin(), bounds_.end(), v) - bounds_.begin();
  ++counts_[static_cast<size_t>(at)];
  sum_ += v;
  ++count_;
}

void Histogram::write(std::string& out, const std::string& name, const std::string& labels) const {
  uint64_t cumulative = 0;
  const std::string sep = labels.empty() ? "" : ",";
  for (size_t i = 0; i < bounds_.size(); ++i) {
    cumulative += counts_[i];
    out += fmt::format("{}_bucket{{{}{}le=\"{}\"}} {}\n", name, labels, sep, bounds_[i], cumulative);
  }
  out += fmt::format("{}_bucket{{{}{}le=\"+Inf\"}} {}\n", name, labels, sep, count_);
  const std::string l = labels.empty() ? "" : "{" + labels + "}";
  out += fmt::format("{}_sum{} {}\n{}_count{} {}\n", name, l, sum_, name, l, count_);
}

namespace {
const std::vector<double> kLatencyBounds = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120};
const std::vector<double> kTokenTimeBounds = {0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28};

std::string escape_label(const std::string& v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}
}  // namespace

Metrics::PerModel::PerModel() : ttft(kLatencyBounds), e2e(kLatencyBounds), tpot(kTokenTimeBounds) {}

Metrics::Metrics() = default;

void Metrics::request(const std::string& endpoint, int status) {
  std::lock_guard lock(mu_);
  ++requests_[{endpoint, status}];
}

void Metrics::completion(const std::string& model, int64_t prompt_tokens, int64_t completion_tokens, double ttft_s,
                         double e2e_s, double tpot_s) {
  std::lock_guard lock(mu_);
  PerModel& m = models_[model];
  m.prompt_tokens += static_cast<uint64_t>(prompt_tokens);
  m.completion_tokens += static_cast<uint64_t>(completion_tokens);
  ++m.completions;
  if (completion_tokens > 0) m.ttft.observe(ttft_s);
  m.e2e.observe(e2e_s);
  if (completion_tokens > 1) m.tpot.observe(tpot_s);
}

std::string Metrics::render(const std::vector<std::pair<std::string, double>>& gauges) const {
  std::lock_guard lock(mu_);
  std::string out;
  out += "# HELP vireo_requests_total HTTP requests answered, by endpoint and status.\n# TYPE vireo_requests_total counter\n";
  for (const auto& [key, n] : requests_) {
    out += fmt::format("vireo_requests_total{{endpoint=\"{}\",status=\"{}\"}} {}\n", escape_label(key.first), key.second, n);
  }
  out += "# HELP vireo_prompt_tokens_total Prompt tokens of finished completions.\n# TYPE vireo_prompt_tokens_total counter\n";
  for (const auto& [name, m] : models_) out += fmt::format("vireo_prompt_tokens_total{{model=\"{}\"}} {}\n", escape_label(name), m.prompt_tokens);
  out += "# HELP vireo_generation_tokens_total Generated tokens of finished completions.\n# TYPE vireo_generation_tokens_total counter\n";
  for (const auto& [name, m] : models_) out += fmt::format("vireo_generation_tokens_total{{model=\"{}\"}} {}\n", escape_label(name), m.completion_tokens);
  out += "# HELP vireo_time_to_first_token_seconds Time from request to first token.\n# TYPE vireo_time_to_first_token_seconds histogram\n";
  for (const auto& [name, m] : models_) m.ttft.write(out, "vireo_time_to_first_token_seconds", fmt::format("model=\"{}\"", escape_label(name)));
  out += "# HELP vireo_request_latency_seconds Time from request to last token.\n# TYPE vireo_request_latency_seconds histogram\n";
  for (const auto& [name, m] : models_) m.e2e.write(out, "vireo_request_latency_seconds", fmt::format("model=\"{}\"", escape_label(name)));
  out += "# HELP vireo_time_per_output_token_seconds Mean time between output tokens of a request.\n# TYPE vireo_time_per_output_token_seconds histogram\n";
  for (const auto& [name, m] : models_) m.tpot.write(out, "vireo_time_per_output_token_seconds", fmt::format("model=\"{}\"", escape_label(name)));
  std::string last_family;
  for (const auto& [key, v] : gauges) {
    const std::string family = key.substr(0, key.find('{'));
    if (family != last_family) out += fmt::format("# TYPE {} gauge\n", family);
    last_family = family;
    out += fmt::format("{} {}\n", key, v);
  }
  return out;
}

}  // namespace vireo::server
