// ref::draw_token's definition written out plainly (full sorts, double sums): the oracle that the
// fast CPU draw and the GPU `sample` op are held to.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <vector>

#include "vireo/kernels/ref/sample.h"

namespace vireo::test {

struct OracleDraw {
  int32_t token = -1;
  double margin = 0;  // how far u * Z is from the nearest edge of the token's interval, over Z
};

inline OracleDraw oracle_draw(const std::vector<float>& l, const DrawParams& p) {
  const float banned = -std::numeric_limits<float>::infinity();
  std::vector<float> valid;
  for (float v : l) {
    if (v > banned) valid.push_back(v);
  }
  if (valid.empty()) return {};
  std::sort(valid.begin(), valid.end(), std::greater<>());
  const float max = valid.front();
  if (!(p.temperature > 0)) return {static_cast<int32_t>(std::find(l.begin(), l.end(), max) - l.begin()), 1.0};
  float floor = banned;
  const auto k = static_cast<size_t>(std::max(p.top_k, 0.0f));
  if (k > 0 && k < valid.size()) floor = valid[k - 1];
  if (p.top_p < 1) {
    double z = 0;
    for (float v : valid) {
      if (v >= floor) z += std::exp(static_cast<double>(v) - max);
    }
    double cum = 0;
    for (float v : valid) {
      if (v < floor) break;
      cum += std::exp(static_cast<double>(v) - max);
      if (cum >= p.top_p * z) {
        floor = v;
        break;
      }
    }
  }
  if (p.min_p > 0) floor = std::max(floor, max + std::log(p.min_p));
  std::vector<double> w(l.size(), 0.0);
  double z = 0;
  for (size_t i = 0; i < l.size(); ++i) {
    if (l[i] >= floor && l[i] > banned) w[i] = std::exp((static_cast<double>(l[i]) - max) / p.temperature);
    z += w[i];
  }
  const double goal = static_cast<double>(p.u) * z;
  double before = 0;
  OracleDraw d;
  for (size_t i = 0; i < l.size(); ++i) {
    if (w[i] <= 0) continue;
    d.token = static_cast<int32_t>(i);
    d.margin = std::min(goal - before, before + w[i] - goal) / z;
    if (goal < before + w[i]) break;
    before += w[i];
  }
  return d;
}

}  // namespace vireo::test
