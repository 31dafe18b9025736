#include "vireo/kernels/ref/sample.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <functional>
#include <iterator>
#include <limits>
#include <vector>

#include "vireo/core/error.h"

namespace vireo::ref {
namespace {

constexpr float kBanned = -std::numeric_limits<float>::infinity();
constexpr size_t kLanes = 8;

// exp(x) for x <= 0 to about 2 ulp, written so that the loops calling it vectorise:
// x = n*ln2 + r, exp(r) by a degree-6 polynomial, 2^n put into the exponent bits.
inline float exp_nonpositive(float x) {
  x = x > -87.0f ? x : -87.0f;  // below this the weight is 0 in any float sum that matters
  const float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;  // round to nearest, branch-free
  const float r = x - n * 0.693145751953125f - n * 1.428606765330187045e-06f;
  float p = 1.0f / 720;
  p = p * r + 1.0f / 120;
  p = p * r + 1.0f / 24;
  p = p * r + 1.0f / 6;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  return p * std::bit_cast<float>(static_cast<int32_t>(n + 127.0f) << 23);
}

// Plain loops over raw pointers in lanes, so that they vectorise (this file is built with
// -fno-trapping-math: without it GCC keeps float compares as branches).
float row_max(const float* l, size_t n) {
  float lane[kLanes];
  std::fill(std::begin(lane), std::end(lane), kBanned);
  size_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (size_t k = 0; k < kLanes; ++k) lane[k] = l[i + k] > lane[k] ? l[i + k] : lane[k];
  }
  for (; i < n; ++i) lane[0] = l[i] > lane[0] ? l[i] : lane[0];
  return *std::max_element(std::begin(lane), std::end(lane));
}

// The kept values (>= floor, not banned), into `out`.
void kept_values(const float* l, size_t n, float floor, std::vector<float>& out) {
  out.clear();
  for (size_t i = 0; i < n; ++i) {
    if (l[i] >= floor && l[i] > kBanned) out.push_back(l[i]);
  }
}

// The top-p threshold among the kept values: the smallest value of the fewest largest ones whose
// probability at temperature 1 reaches top_p. Only a growing best-first prefix is sorted (the
// kept set is usually short next to a vocabulary of 100k+).
float top_p_floor(std::vector<float>& v, float max, float top_p) {
  double z = 0;
  for (float x : v) z += std::exp(static_cast<double>(x - max));
  const double target = static_cast<double>(top_p) * z;
  size_t sorted = 0;
  for (size_t k = std::min<size_t>(64, v.size());; k = std::min(v.size(), k * 8)) {
    if (k > sorted) {
      std::partial_sort(v.begin() + static_cast<ptrdiff_t>(sorted), v.begin() + static_cast<ptrdiff_t>(k), v.end(), std::greater<>());
      sorted = k;
    }
    double cum = 0;
    for (size_t i = 0; i < k; ++i) {
      cum += std::exp(static_cast<double>(v[i] - max));
      if (cum >= target) return v[i];
    }
    if (k == v.size()) return v.back();  // rounding: every kept value
  }
}

}  // namespace

int32_t draw_token(const float* l, int64_t n_signed, const DrawParams& p) {
  if (n_signed <= 0) fail(ErrorCode::InvalidArgument, "sample: no logits");
  const auto n = static_cast<size_t>(n_signed);
  const float max = row_max(l, n);
  if (!(max > kBanned)) fail(ErrorCode::InvalidArgument, "sample: every token is banned");
  if (!(p.temperature > 0.0f)) return static_cast<int32_t>(std::find(l, l + n, max) - l);

  float floor = kBanned;  // keep logits >= floor
  thread_local std::vector<float> kept;
  const auto top_k = static_cast<size_t>(std::max(p.top_k, 0.0f));
  if (top_k > 0 && top_k < n) {
    kept_values(l, n, kBanned, kept);
    if (top_k < kept.size()) {
      std::nth_element(kept.begin(), kept.begin() + static_cast<ptrdiff_t>(top_k - 1), kept.end(), std::greater<>());
      floor = kept[top_k - 1];
    }
  }
  if (p.top_p < 1.0f) {
    kept_values(l, n, floor, kept);
    floor = std::max(floor, top_p_floor(kept, max, p.top_p));
  }
  if (p.min_p > 0.0f) floor = std::max(floor, max + std::log(p.min_p));

  // Weights of blocks of 256 summed in float lanes (at most 256 terms of at most 1 each), the
  // blocks in double; then the draw walks blocks, then one block.
  constexpr size_t kBlock = 256;
  const float inv_t = 1.0f / p.temperature;
  auto weight = [&](float x) { return x >= floor && x > kBanned ? exp_nonpositive((x - max) * inv_t) : 0.0f; };
  const size_t n_blocks = (n + kBlock - 1) / kBlock;
  thread_local std::vector<double> block_sums;
  block_sums.resize(n_blocks);
  double z = 0;
  for (size_t b = 0; b < n_blocks; ++b) {
    const size_t begin = b * kBlock, end = std::min(n, begin + kBlock);
    float acc[kLanes] = {};
    size_t i = begin;
    for (; i + kLanes <= end; i += kLanes) {
      for (size_t k = 0; k < kLanes; ++k) acc[k] += weight(l[i + k]);
    }
    for (; i < end; ++i) acc[0] += weight(l[i]);
    float sum = 0;
    for (float a : acc) sum += a;
    block_sums[b] = sum;
    z += sum;
  }
  double target = static_cast<double>(std::clamp(p.u, 0.0f, 1.0f)) * z;
  size_t last = n;  // the last token with weight so far: where rounding past the end lands
  for (size_t b = 0; b < n_blocks; ++b) {
    if (block_sums[b] <= 0) continue;
    if (target >= block_sums[b] && b + 1 < n_blocks) {
      target -= block_sums[b];
      for (size_t i = std::min(n, (b + 1) * kBlock); i-- > b * kBlock;) {
        if (weight(l[i]) > 0) {
          last = i;
          break;
        }
      }
      continue;
    }
    for (size_t i = b * kBlock; i < std::min(n, (b + 1) * kBlock); ++i) {
      const float w = weight(l[i]);
      if (w <= 0) continue;
      last = i;
      if (target < w) return static_cast<int32_t>(i);
      target -= w;
    }
  }
  return static_cast<int32_t>(last < n ? last : std::find(l, l + n, max) - l);
}

}  // namespace vireo::ref
