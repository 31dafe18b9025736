// How closely two engines' next-token logits agree over a run of positions: top-1 agreement
// (overall, and where the reference's lead is decisive), and the mean and largest
// KL(reference || other) of the distributions. Shared by the tests against llama.cpp and the
// CUDA tests against the CPU backend.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <vector>

namespace vireo::test {

// log-softmax of one row, in double.
inline std::vector<double> log_softmax(const float* x, size_t n) {
  double mx = x[0];
  for (size_t i = 1; i < n; ++i) mx = std::max(mx, static_cast<double>(x[i]));
  double sum = 0;
  for (size_t i = 0; i < n; ++i) sum += std::exp(x[i] - mx);
  const double lse = mx + std::log(sum);
  std::vector<double> out(n);
  for (size_t i = 0; i < n; ++i) out[i] = x[i] - lse;
  return out;
}

struct LogitAgreement {
  double top1 = 0;           // share of positions with the same top token
  double decisive_top1 = 0;  // the same over positions where the reference leads by >= the gap
  size_t decisive = 0;       // how many such positions
  double mean_kl = 0, max_kl = 0;
};

// want and got: [positions][V], row-major.
inline LogitAgreement compare_logits(const std::vector<float>& want, const std::vector<float>& got, size_t V,
                                     double decisive_gap = 0.1) {
  const size_t n = want.size() / V;
  size_t top1 = 0, decisive_top1 = 0;
  LogitAgreement a;
  double kl_sum = 0;
  for (size_t p = 0; p < n; ++p) {
    const float* w = want.data() + p * V;
    const float* g = got.data() + p * V;
    const auto lp = log_softmax(w, V), lq = log_softmax(g, V);
    double kl = 0;
    for (size_t i = 0; i < V; ++i) kl += std::exp(lp[i]) * (lp[i] - lq[i]);
    kl_sum += kl;
    a.max_kl = std::max(a.max_kl, kl);
    const size_t wt = std::max_element(w, w + V) - w, gt = std::max_element(g, g + V) - g;
    float second = -INFINITY;
    for (size_t i = 0; i < V; ++i) {
      if (i != wt) second = std::max(second, w[i]);
    }
    top1 += wt == gt;
    if (w[wt] - second >= decisive_gap) ++a.decisive, decisive_top1 += wt == gt;
  }
  a.top1 = static_cast<double>(top1) / static_cast<double>(std::max<size_t>(n, 1));
  a.decisive_top1 = static_cast<double>(decisive_top1) / static_cast<double>(std::max<size_t>(a.decisive, 1));
  a.mean_kl = kl_sum / static_cast<double>(std::max<size_t>(n, 1));
  return a;
}

}  // namespace vireo::test
