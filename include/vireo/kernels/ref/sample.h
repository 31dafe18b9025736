// The last step of sampling, as every backend's `sample` op does it: final logits (bias and
// penalties already applied), a temperature, top-k / top-p / min-p and a uniform draw -> a token.
// Both the CPU sampler and the GPU kernel follow this definition, so that one seed picks the same
// token on either (up to float rounding at the edge between two tokens).
#pragma once
#include <cstdint>

namespace vireo {

// One row's parameters, as 5 F32 values (a backend takes them as an F32 [rows, 5] buffer).
struct DrawParams {
  float temperature = 0;  // <= 0: the argmax (the first of ties); the rest is then unused
  float top_k = 0;        // keep the k largest logits (every tie of the k-th too); 0: off
  float top_p = 1;        // then the fewest largest whose probability at temperature 1 reaches top_p; 1: off
  float min_p = 0;        // then those with p >= min_p * p_max; 0: off
  float u = 0;            // the uniform draw in [0, 1)
};
static_assert(sizeof(DrawParams) == 5 * sizeof(float));

namespace ref {

// The kept tokens are those with logit >= the largest of the three thresholds (top-k's k-th value,
// top-p's last value, max + ln(min_p)). The token is where u * Z falls when the weights
// exp((logit - max) / temperature) of the kept tokens are laid end to end in id order (Z: their
// sum). Throws InvalidArgument when every logit is -inf (or NaN).
int32_t draw_token(const float* logits, int64_t n, const DrawParams& p);

}  // namespace ref
}  // namespace vireo
