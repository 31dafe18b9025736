#include "vireo/bench/compare.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include <fmt/format.h>

#include "vireo/core/error.h"

namespace vireo {
namespace {

using json = nlohmann::json;

// Continued fraction of the regularized incomplete beta function (modified Lentz's method).
double beta_continued_fraction(double a, double b, double x) {
  constexpr double kTiny = 1e-300;
  double c = 1, d = 1 - (a + b) * x / (a + 1);
  if (std::abs(d) < kTiny) d = kTiny;
  d = 1 / d;
  double h = d;
  for (int m = 1; m <= 500; ++m) {
    const double m2 = 2.0 * m;
    double num = m * (b - m) * x / ((a + m2 - 1) * (a + m2));
    for (int step = 0; step < 2; ++step) {
      d = 1 + num * d;
      if (std::abs(d) < kTiny) d = kTiny;
      c = 1 + num / c;
      if (std::abs(c) < kTiny) c = kTiny;
      d = 1 / d;
      const double delta = d * c;
      h *= delta;
      if (step == 1 && std::abs(delta - 1) < 1e-15) return h;
      num = -(a + m) * (a + b + m) * x / ((a + m2) * (a + m2 + 1));
    }
  }
  return h;
}

double incomplete_beta(double a, double b, double x) {
  if (x <= 0) return 0;
  if (x >= 1) return 1;
  const double front = std::exp(std::lgamma(a + b) - std::lgamma(a) - std::lgamma(b) + a * std::log(x) + b * std::log1p(-x));
  if (x < (a + 1) / (a + b + 2)) return front * beta_continued_fraction(a, b, x) / a;
  return 1 - front * beta_continued_fraction(b, a, 1 - x) / b;
}

double student_t_cdf(double t, double df) {
  const double tail = 0.5 * incomplete_beta(df / 2, 0.5, df / (df + t * t));
  return t > 0 ? 1 - tail : tail;
}

std::string model_name(const json& r) { return std::filesystem::path(r.value("model", std::string())).filename().string(); }

struct Key {
  std::string model, engine, test;
  int threads, batch, depth;
  auto operator<=>(const Key&) const = default;
  std::string text() const { return fmt::format("{} | {} | {} | t{} b{} d{}", model, engine, test, threads, batch, depth); }
};

Key key_of(const json& r) {
  return {model_name(r), r.value("engine", std::string("vireo")), r.value("test", std::string()), r.value("threads", 0),
          r.value("batch", 1), r.value("depth", 0)};
}

std::vector<double> rates_of(const json& r) {
  std::vector<double> v;
  if (r.contains("samples") && r["samples"].is_array()) {
    for (const auto& s : r["samples"]) {
      const double x = s.value("tokens_per_s", 0.0);
      if (x > 0) v.push_back(x);
    }
  }
  if (v.empty() && r.value("avg_ts", 0.0) > 0) v.push_back(r.value("avg_ts", 0.0));  // peer rows carry no samples
  return v;
}

double mean(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return v.empty() ? 0 : s / static_cast<double>(v.size());
}

double sample_variance(const std::vector<double>& v) {
  const double m = mean(v);
  double s = 0;
  for (double x : v) s += (x - m) * (x - m);
  return v.size() > 1 ? s / static_cast<double>(v.size() - 1) : 0;
}

}  // namespace

double student_t_quantile(double p, double df) {
  if (!(p > 0 && p < 1) || !(df > 0)) {
    fail(ErrorCode::InvalidArgument, "t quantile needs 0 < p < 1 and df > 0 (p {}, df {})", p, df);
  }
  if (p < 0.5) return -student_t_quantile(1 - p, df);
  double lo = 0, hi = 1;
  while (student_t_cdf(hi, df) < p && hi < 1e12) hi *= 2;
  for (int i = 0; i < 200 && hi - lo > 1e-12 * hi; ++i) {
    const double mid = (lo + hi) / 2;
    (student_t_cdf(mid, df) < p ? lo : hi) = mid;
  }
  return (lo + hi) / 2;
}

json load_bench_json(const std::string& path) {
  std::ifstream in(path);
  if (!in) fail(ErrorCode::Io, "cannot read '{}'", path);
  std::stringstream ss;
  ss << in.rdbuf();
  json doc;
  try {
    doc = json::parse(ss.str());
  } catch (const json::exception& e) {
    fail(ErrorCode::InvalidArgument, "'{}' is not JSON: {}", path, e.what());
  }
  if (!doc.is_object() || !doc.contains("results") || !doc["results"].is_array()) {
    fail(ErrorCode::InvalidArgument, "'{}' is not a `vireo bench -o json` document (no \"results\" list)", path);
  }
  if (doc.value("kind", std::string()) == "serve") {
    fail(ErrorCode::InvalidArgument, "'{}' is a `vireo bench serve` document; compare reads `vireo bench -o json`", path);
  }
  return doc;
}

CompareResult compare_bench(const json& a, const json& b) {
  CompareResult out;
  out.method = "95% CI of the ratio of geometric means, Welch's t on the logarithms of the per-repetition tokens/s";
  std::map<Key, json> in_b;
  for (const auto& r : b.at("results")) in_b.emplace(key_of(r), r);
  std::map<Key, bool> matched;
  for (const auto& ra : a.at("results")) {
    const Key k = key_of(ra);
    const auto it = in_b.find(k);
    if (it == in_b.end()) {
      out.only_in_a.push_back(k.text());
      continue;
    }
    matched[k] = true;
    CompareRow row;
    row.model = k.model, row.engine = k.engine, row.test = k.test;
    row.threads = k.threads, row.batch = k.batch, row.depth = k.depth;
    const std::vector<double> xa = rates_of(ra), xb = rates_of(it->second);
    row.n_a = xa.size();
    row.n_b = xb.size();
    row.mean_a = mean(xa);
    row.mean_b = mean(xb);
    row.ratio = row.mean_a > 0 ? row.mean_b / row.mean_a : 0;
    if (xa.size() < 2 || xb.size() < 2) {
      row.verdict = "too few samples";
      out.rows.push_back(row);
      continue;
    }
    std::vector<double> la, lb;
    for (double x : xa) la.push_back(std::log(x));
    for (double x : xb) lb.push_back(std::log(x));
    const double diff = mean(lb) - mean(la);
    const double va = sample_variance(la) / static_cast<double>(la.size());
    const double vb = sample_variance(lb) / static_cast<double>(lb.size());
    const double se = std::sqrt(va + vb);
    double half = 0;
    if (se > 0) {
      // Welch-Satterthwaite degrees of freedom.
      const double df = (va + vb) * (va + vb) /
                        (va * va / static_cast<double>(la.size() - 1) + vb * vb / static_cast<double>(lb.size() - 1));
      half = student_t_quantile(0.975, df) * se;
    }
    row.has_ci = true;
    row.ci_low = std::exp(diff - half);
    row.ci_high = std::exp(diff + half);
    row.verdict = row.ci_low > 1 ? "faster" : row.ci_high < 1 ? "slower" : "no significant difference";
    out.rows.push_back(row);
  }
  for (const auto& [k, r] : in_b) {
    if (!matched.count(k)) out.only_in_b.push_back(k.text());
  }
  if (out.rows.empty()) {
    fail(ErrorCode::InvalidArgument, "no result of A matches one of B by model, test, threads, batch and depth "
         "(A has {}, B has {}; first of A: {})", a.at("results").size(), b.at("results").size(),
         out.only_in_a.empty() ? std::string("none") : out.only_in_a.front());
  }
  return out;
}

json compare_to_json(const CompareResult& result) {
  json rows = json::array();
  for (const auto& r : result.rows) {
    rows.push_back({{"model", r.model}, {"engine", r.engine}, {"test", r.test}, {"threads", r.threads},
                    {"batch", r.batch}, {"depth", r.depth}, {"n_a", r.n_a}, {"n_b", r.n_b},
                    {"mean_a", r.mean_a}, {"mean_b", r.mean_b}, {"ratio", r.ratio},
                    {"ci_low", r.has_ci ? json(r.ci_low) : json(nullptr)},
                    {"ci_high", r.has_ci ? json(r.ci_high) : json(nullptr)}, {"verdict", r.verdict}});
  }
  return {{"kind", "compare"}, {"method", result.method}, {"rows", rows},
          {"only_in_a", result.only_in_a}, {"only_in_b", result.only_in_b}};
}

std::string format_compare_table(const CompareResult& result) {
  std::string s = fmt::format("| {:<26} | {:<22} | {:>3} | {:>10} | {:>10} | {:>6} | {:>15} | {:<25} |\n", "model", "test",
                              "thr", "A t/s", "B t/s", "B/A", "95% CI", "verdict");
  s += fmt::format("| {} | {} | --: | ---------: | ---------: | -----: | --------------: | {} |\n", std::string(26, '-'),
                   std::string(22, '-'), std::string(25, '-'));
  for (const auto& r : result.rows) {
    const std::string test = fmt::format("{}{}", r.engine == "vireo" ? "" : r.engine + " ", r.test);
    const std::string ci = r.has_ci ? fmt::format("{:.3f} - {:.3f}", r.ci_low, r.ci_high) : "-";
    s += fmt::format("| {:<26} | {:<22} | {:>3} | {:>10.2f} | {:>10.2f} | {:>6.3f} | {:>15} | {:<25} |\n", r.model.substr(0, 26),
                     test.substr(0, 22), r.threads, r.mean_a, r.mean_b, r.ratio, ci, r.verdict);
  }
  s += "B/A: ratio of mean tokens/s; " + result.method + ".\n";
  for (const auto& k : result.only_in_a) s += "only in A: " + k + "\n";
  for (const auto& k : result.only_in_b) s += "only in B: " + k + "\n";
  return s;
}

}  // namespace vireo
