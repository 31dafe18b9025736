// Products of many rows (batched decode, prefill) with Q4_0 / Q8_0 / Q4_K / Q6_K weights on the
// tensor cores, straight from the stored blocks: each thread turns its share of a weight tile into F16 in
// registers (level minus offset, times the block's scale) and multiplies it with the activations
// in F16, accumulating in F32 (mma m16n8k16). No F16 copy of the weights is written or read back.
// Host-side API: no CUDA headers needed to call it.
#pragma once
#include <cstdint>
#include <span>

#include "vireo/kernels/cuda/gemv.h"

namespace vireo::cuda {

// Tile shapes (weight rows x tokens per CTA); Auto picks by the shape of the product. The H tiles
// are Hopper's warpgroup products (wgmma); on other devices, or in a build without an sm_90a
// image, they run as R128xT64W8 (H128xT32 as R128xT32W8, H128xT16 as R32xT32). H128xT64S6 and
// H256xT64S5 run one CTA an SM with 6 and 5 stages in flight (the others two CTAs, 4 stages);
// H256xT64W4 is H256xT64S5's tile in four warpgroups of 64 rows (twice the warps an SM).
enum class QGemmTile { Auto, R32xT32, R64xT64, R128xT64, R64xT128, R128xT128, R128xT64W8, R128xT64W8Square, R64xT64S3,
                       R128xT32W8, H128xT64, H256xT64, H128xT32, H128xT16, H128xT64S6, H256xT64S5, H256xT64W4 };
struct QGemmOptions {
  QGemmTile tile = QGemmTile::Auto;
  int splits = 0;  // CTAs along the shared width, partial sums added after; 0: chosen by size
};

// Device memory of the products: the activations in F16 (qgemm_load_x) and the partial sums of
// split products. Grows as needed.
struct QGemmWorkspace {
  void* x16 = nullptr;
  size_t x16_capacity = 0;  // halves
  int n_tokens = 0;
  int64_t cols = 0;
  float* partial = nullptr;
  size_t partial_capacity = 0;  // floats
  void ensure_partial(size_t floats);
  ~QGemmWorkspace();
};

// Products of up to this many rows take qgemm in the CUDA backend (VIREO_CUDA_QGEMM_ROWS changes
// it); longer ones dequantize to F16 for cuBLAS. Measured on an H100, Llama-3-8B shapes, Q4_0,
// against that path: 64 rows 1.4-2.1x, 128 rows 1.1x (4096 x 4096), 256 rows 0.9-1.15x, 512 rows
// 0.63-0.78x.
constexpr int kDefaultQGemmRows = 128;

// True when products take the warpgroup tiles here (see QGemmTile).
bool qgemm_uses_wgmma();

// True when qgemm multiplies `w`: Q4_0, Q8_0, Q4_K or Q6_K, with whole runs of 128 columns.
bool qgemm_supports(const DeviceMatrix& w);

// Loads x [n_tokens][ldx] (F32) into ws as the F16 operand of the products that follow.
void qgemm_load_x(const float* x, int64_t ldx, int n_tokens, int64_t cols, QGemmWorkspace& ws, Stream s);
// The same in two parts, for an op that writes the products' operand itself: room in ws for
// n_tokens x cols activations (returned), and x written there as qgemm_load_x writes it (each run
// of 16 as its even elements, then its odd ones, rounded to F16). cols: whole runs of 128.
void* qgemm_x_target(QGemmWorkspace& ws, int n_tokens, int64_t cols);
void qgemm_write_x(const float* x, int64_t ldx, int n_tokens, int64_t cols, void* x16, Stream s);

// A split product's sums, left unadded (see qgemm_multi): the value of row r (counted over the
// launch's matrices in order) for token t is the sum over s < splits of part[s * stride + t * ld + r].
// splits 0: none left, the outputs hold the results.
struct QGemmSums {
  const float* part = nullptr;
  int splits = 0;
  int64_t stride = 0;
  int64_t ld = 0;
};
// Where the sums of one matrix's rows go: y [n_tokens][ldy], `rows` values a token.
struct QGemmSumsOut {
  float* y;
  int64_t ldy;
  int64_t rows;
};
// Adds them into the outputs of the launch's matrices, in order (their rows must add up to ld).
void qgemm_add_sums(const QGemmSums& sums, int n_tokens, std::span<const QGemmSumsOut> outs, Stream s);

// One matrix of a multi-matrix product and where its result goes ([n_tokens][ldy]).
struct QGemmOutput {
  const DeviceMatrix* w;
  float* y;
  int64_t ldy;
};
constexpr int kMaxQGemmSegments = 3;
// y_i = x · W_iᵀ for 1 to kMaxQGemmSegments matrices of one type and width in one launch (q/k/v,
// gate/up): more CTAs per launch, so fewer split products. With `deferred`, a split product
// leaves its partial sums in ws and describes them there (for the op that consumes the outputs to
// add them: one launch fewer); otherwise *deferred says none are left.
void qgemm_multi(std::span<const QGemmOutput> outs, int n_tokens, QGemmWorkspace& ws, Stream s, QGemmOptions opt = {},
                 QGemmSums* deferred = nullptr);
// y[t][r] = sum_c W[r][c] * x[t][c] for t < n_tokens, x as loaded into ws. y is [n_tokens][ldy].
void qgemm(const DeviceMatrix& w, int n_tokens, float* y, int64_t ldy, QGemmWorkspace& ws, Stream s, QGemmOptions opt = {});

// Mean milliseconds of one qgemm over `iters` launches (x loaded once, before timing).
double time_qgemm_ms(const DeviceMatrix& w, const float* x, float* y, int n_tokens, int iters, QGemmOptions opt = {});

}  // namespace vireo::cuda
