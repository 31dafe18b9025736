// Every CPU kernel against the scalar reference (kernels/ref/ops.h), through the Backend
// interface, on fresh random inputs of awkward sizes, with outputs poisoned by NaN first.
// Each available instruction set is tested (the portable path always; AVX2, AVX-512 and AMX when
// present).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "vireo/backend/backend.h"
#include "vireo/backend/thread_pool.h"
#include "vireo/core/error.h"
#include "vireo/core/quant_blocks.h"
#include "vireo/kernels/cpu/cpu_features.h"
#include "vireo/kernels/cpu/matmul.h"
#include "vireo/kernels/ref/ops.h"
#include "vireo/kernels/ref/quant.h"

namespace vireo {
namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

// ---------------------------------------------------------------- tolerances, one table per dtype

// Matmul: max |fast - ref| / max |ref| over the output, where both round the activations the same
// way (so only float summation order differs). `rounding` bounds the reference's own distance from
// the exact product with unrounded activations: the price of the dot type.
struct MatmulTolerance {
  DType type;
  double kernel;
  double rounding;
};
constexpr MatmulTolerance kMatmulTolerances[] = {
    {DType::F32, 2e-6, 1e-6},  {DType::F16, 2e-6, 2e-3},  {DType::BF16, 2e-6, 1e-2},
    {DType::Q8_0, 2e-6, 2e-2}, {DType::Q4_0, 2e-6, 2e-2}, {DType::Q4_1, 2e-6, 2e-2},
    {DType::Q5_0, 2e-6, 2e-2}, {DType::Q5_1, 2e-6, 2e-2}, {DType::Q4_K, 2e-6, 2e-2},
    {DType::Q5_K, 2e-6, 2e-2}, {DType::Q6_K, 2e-6, 2e-2}, {DType::Q2_K, 2e-6, 2e-2},
    {DType::Q3_K, 2e-6, 2e-2},
};
const MatmulTolerance& tolerance(DType t) {
  for (const auto& e : kMatmulTolerances) {
    if (e.type == t) return e;
  }
  throw std::runtime_error("no tolerance for type");
}

// Other ops, relative to the output's largest magnitude.
constexpr double kNormTolerance = 2e-6;
constexpr double kElementwiseTolerance = 2e-6;
constexpr double kRopeTolerance = 2e-6;
constexpr double kAttentionTolerance = 2e-6;
constexpr double kSoftmaxTolerance = 2e-6;

// ---------------------------------------------------------------- helpers

std::string type_name(DType t) { return std::string(dtype_traits(t)->name); }

std::vector<float> random_floats(std::mt19937& rng, size_t n, float scale = 1.0f) {
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

double max_abs(const std::vector<float>& v) {
  double m = 0;
  for (float x : v) m = std::max(m, std::fabs(static_cast<double>(x)));
  return m;
}

// max |a - b| / max |b|; NaN anywhere (an unwritten output) gives infinity.
double rel_error(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return std::numeric_limits<double>::infinity();
  double err = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!std::isfinite(a[i]) || !std::isfinite(b[i])) return std::numeric_limits<double>::infinity();
    err = std::max(err, std::fabs(static_cast<double>(a[i]) - b[i]));
  }
  return err / std::max(max_abs(b), 1e-30);
}

// The SIMD instruction sets this CPU runs, each with its kernels over the interleaved layouts.
std::vector<cpu::Isa> simd_isas() {
  std::vector<cpu::Isa> out;
  for (cpu::Isa isa : {cpu::Isa::Avx2, cpu::Isa::Avx512, cpu::Isa::Amx}) {
    if (cpu::choose_isa(cpu::isa_name(isa)) == isa && cpu::has_interleaved_kernel(DType::Q4_0, isa)) out.push_back(isa);
  }
  return out;
}

// The instruction sets to test: the portable path always, then every SIMD one.
std::vector<std::string> isas() {
  std::vector<std::string> out = {"scalar"};
  for (cpu::Isa isa : simd_isas()) out.push_back(cpu::isa_name(isa));
  return out;
}

// A weight tensor over bytes the test owns.
Tensor make_tensor(const std::string& name, DType type, uint64_t rows, uint64_t cols, const std::vector<uint8_t>& bytes) {
  Tensor t;
  t.name = name;
  t.type = type;
  t.shape = rows == 1 ? std::vector<uint64_t>{cols} : std::vector<uint64_t>{rows, cols};
  t.data = bytes.data();
  t.nbytes = bytes.size();
  return t;
}

std::vector<uint8_t> quantize_matrix(DType type, const std::vector<float>& w, int64_t rows, int64_t cols) {
  const size_t rb = ref::row_bytes(type, cols);
  std::vector<uint8_t> bytes(rb * static_cast<size_t>(rows));
  for (int64_t r = 0; r < rows; ++r) ref::quantize_row(type, w.data() + r * cols, bytes.data() + r * rb, cols);
  return bytes;
}

class Backends : public testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    CpuBackendOptions o;
    o.isa = GetParam();
    o.n_threads = 2;
    be = create_cpu_backend(o);
  }
  Buffer upload(const std::vector<float>& host, int64_t rows, int64_t cols) {
    Buffer b = be->alloc(DType::F32, rows, cols);
    be->upload(b, host.data());
    return b;
  }
  Buffer upload_i32(const std::vector<int32_t>& host, int64_t rows, int64_t cols) {
    Buffer b = be->alloc(DType::I32, rows, cols);
    be->upload(b, host.data());
    return b;
  }
  Buffer poisoned(int64_t rows, int64_t cols) {
    const std::vector<float> nan(static_cast<size_t>(rows * cols), kNaN);
    return upload(nan, rows, cols);
  }
  std::vector<float> download(const Buffer& b) {
    std::vector<float> host(static_cast<size_t>(b.rows() * b.cols()));
    be->download(b, host.data());
    return host;
  }
  std::unique_ptr<Backend> be;
};

std::string isa_case_name(const testing::TestParamInfo<std::string>& info) { return info.param; }

// ---------------------------------------------------------------- matmul

struct MatmulShape {
  int64_t rows, cols, n;
};

std::vector<MatmulShape> shapes_for(DType t) {
  const int64_t block = dtype_traits(t)->block_elems;
  if (block == 1) {
    return {{1, 1, 1}, {31, 31, 1}, {32, 32, 3}, {33, 33, 9}, {17, 4095, 2}, {48, 100, 8}, {16, 64, 17}};
  }
  // n >= 16 also covers the AMX tiles (16 tokens at a time, the remainder through AVX-512).
  return {{1, block, 1},       {31, block, 1},   {33, 3 * block, 5}, {32, 2 * block, 8},  {16, 16 * block, 2},
          {47, block, 13},     {17, 4096, 1},    {64, 8 * block, 33}, {33, 2 * block, 16}, {17, 4096, 48}};
}

TEST_P(Backends, MatmulMatchesReferenceForEveryType) {
  std::mt19937 rng(1234);
  for (const auto& tol : kMatmulTolerances) {
    const DType type = tol.type;
    for (const MatmulShape& s : shapes_for(type)) {
      SCOPED_TRACE(type_name(type) + " rows " + std::to_string(s.rows) + " cols " + std::to_string(s.cols) + " n " +
                   std::to_string(s.n));
      const std::vector<float> wf = random_floats(rng, static_cast<size_t>(s.rows * s.cols), 0.5f);
      const std::vector<uint8_t> wq = quantize_matrix(type, wf, s.rows, s.cols);
      const std::vector<float> x = random_floats(rng, static_cast<size_t>(s.n * s.cols));
      std::vector<float> want(static_cast<size_t>(s.n * s.rows));
      ref::matmul(type, wq.data(), s.rows, s.cols, x.data(), s.n, want.data());

      const WeightPtr w = be->prepare(make_tensor("w", type, s.rows, s.cols, wq), WeightUse::Matmul);
      const Buffer y = poisoned(s.n, s.rows);
      be->matmul(upload(x, s.n, s.cols), *w, y);
      EXPECT_LE(rel_error(download(y), want), tol.kernel);
    }
  }
}

TEST_P(Backends, MatmulMultiSharesActivationsAcrossTypes) {
  std::mt19937 rng(99);
  const int64_t cols = 512, n = 6;
  const DType types[] = {DType::Q4_0, DType::Q8_0, DType::Q4_K, DType::F16, DType::Q6_K};
  const int64_t rows[] = {33, 16, 48, 5, 20};
  std::vector<std::vector<uint8_t>> bytes;
  std::vector<WeightPtr> ws;
  std::vector<const Weight*> wptr;
  std::vector<Buffer> outs;
  const std::vector<float> x = random_floats(rng, n * cols);
  for (size_t i = 0; i < std::size(types); ++i) {
    bytes.push_back(quantize_matrix(types[i], random_floats(rng, rows[i] * cols), rows[i], cols));
    ws.push_back(be->prepare(make_tensor("w", types[i], rows[i], cols, bytes.back()), WeightUse::Matmul));
    wptr.push_back(ws.back().get());
    outs.push_back(poisoned(n, rows[i]));
  }
  be->matmul_multi(upload(x, n, cols), wptr, outs);
  for (size_t i = 0; i < std::size(types); ++i) {
    SCOPED_TRACE(type_name(types[i]));
    std::vector<float> want(static_cast<size_t>(n * rows[i]));
    ref::matmul(types[i], bytes[i].data(), rows[i], cols, x.data(), n, want.data());
    EXPECT_LE(rel_error(download(outs[i]), want), tolerance(types[i]).kernel);
  }
}

TEST(MatmulReference, RoundingActivationsCostsLittle) {
  std::mt19937 rng(5);
  const int64_t rows = 16, cols = 1024, n = 4;
  for (const auto& tol : kMatmulTolerances) {
    SCOPED_TRACE(type_name(tol.type));
    const std::vector<uint8_t> wq = quantize_matrix(tol.type, random_floats(rng, rows * cols), rows, cols);
    const std::vector<float> x = random_floats(rng, n * cols);
    std::vector<float> got(static_cast<size_t>(n * rows)), exact(static_cast<size_t>(n * rows));
    ref::matmul(tol.type, wq.data(), rows, cols, x.data(), n, got.data());
    std::vector<float> wrow(static_cast<size_t>(cols));
    for (int64_t r = 0; r < rows; ++r) {
      ref::dequantize_row(tol.type, wq.data() + r * ref::row_bytes(tol.type, cols), wrow.data(), cols);
      for (int64_t t = 0; t < n; ++t) {
        double s = 0;
        for (int64_t c = 0; c < cols; ++c) s += static_cast<double>(wrow[c]) * x[t * cols + c];
        exact[t * rows + r] = static_cast<float>(s);
      }
    }
    EXPECT_LE(rel_error(got, exact), tol.rounding);
  }
}

TEST(MatmulPacking, InterleavedLayoutsKeepEveryValue) {
  if (simd_isas().empty()) GTEST_SKIP() << "no AVX2: the interleaved layouts are not used here";
  std::mt19937 rng(8);
  for (DType type : {DType::F32, DType::F16, DType::BF16, DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1,
                     DType::Q8_0, DType::Q4_K, DType::Q5_K, DType::Q6_K}) {
    SCOPED_TRACE(type_name(type));
    const int64_t rows = 37, cols = type == DType::F32 || type == DType::F16 || type == DType::BF16 ? 45 : 512;
    const std::vector<uint8_t> wq = quantize_matrix(type, random_floats(rng, rows * cols), rows, cols);
    // One layout for every SIMD instruction set.
    const cpu::PackedMatrix m = cpu::pack_matrix(type, wq.data(), rows, cols, cpu::best_isa());
    ASSERT_EQ(m.layout, cpu::Layout::Interleaved);
    std::vector<float> got(static_cast<size_t>(cols)), want(static_cast<size_t>(cols));
    for (int64_t r = 0; r < rows; ++r) {
      cpu::unpack_row(m, r, got.data());
      ref::dequantize_row(type, wq.data() + r * ref::row_bytes(type, cols), want.data(), cols);
      ASSERT_EQ(std::memcmp(got.data(), want.data(), got.size() * sizeof(float)), 0) << "row " << r;
    }
  }
}

TEST(MatmulActivations, FastQuantizersMatchTheReferenceBitForBit) {
  if (simd_isas().empty()) GTEST_SKIP() << "no AVX2";
  for (cpu::Isa isa : simd_isas()) {
    std::mt19937 rng(77);
    for (DType weight : {DType::Q4_0, DType::Q4_K}) {
      SCOPED_TRACE(std::string(cpu::isa_name(isa)) + " " + type_name(weight));
      const int64_t n = 5, cols = 1024;
      std::vector<float> x = random_floats(rng, n * cols, 3.0f);
      std::fill(x.begin() + 256, x.begin() + 512, 0.0f);  // an all-zero block
      // Row 1 lies on rounding ties: with 127 the largest magnitude of every block, the scale is 1.
      for (int64_t c = 0; c < cols; ++c) x[cols + c] = c % 32 == 0 ? 127.0f : static_cast<float>(c % 61) - 30.5f;
      std::vector<uint8_t> wq = quantize_matrix(weight, random_floats(rng, 16 * cols), 16, cols);
      const cpu::PackedMatrix m = cpu::pack_matrix(weight, wq.data(), 16, cols, isa);
      cpu::Activations fast, portable;
      cpu::prepare_activations(m, n, fast);
      cpu::prepare_activations(m, n, portable);
      cpu::quantize_activations(x.data(), cols, 0, n, fast, isa);
      cpu::quantize_activations(x.data(), cols, 0, n, portable, cpu::Isa::Scalar);
      EXPECT_EQ(std::memcmp(fast.q.data(), portable.q.data(), fast.q.size()), 0);
      EXPECT_EQ(std::memcmp(fast.d.data(), portable.d.data(), fast.d.size()), 0);
      EXPECT_EQ(std::memcmp(fast.s32.data(), portable.s32.data(), fast.s32.size()), 0);
      ASSERT_EQ(fast.s16.size(), portable.s16.size());
      if (fast.s16.size() > 0) EXPECT_EQ(std::memcmp(fast.s16.data(), portable.s16.data(), fast.s16.size()), 0);
    }
  }
}

TEST_P(Backends, MatmulRejectsMismatchedShapes) {
  std::vector<uint8_t> bytes(ref::row_bytes(DType::F32, 8) * 4);
  const WeightPtr w = be->prepare(make_tensor("blk.0.attn_q.weight", DType::F32, 4, 8, bytes), WeightUse::Matmul);
  try {
    be->matmul(poisoned(2, 7), *w, poisoned(2, 4));
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::InvalidArgument);
    EXPECT_NE(std::string(e.what()).find("blk.0.attn_q.weight"), std::string::npos) << e.what();
  }
}

// ---------------------------------------------------------------- get_rows

TEST_P(Backends, GetRowsDequantizesTheRequestedRows) {
  std::mt19937 rng(3);
  for (DType type : {DType::F32, DType::F16, DType::BF16, DType::Q8_0, DType::Q4_0, DType::Q4_K, DType::Q6_K}) {
    SCOPED_TRACE(type_name(type));
    const int64_t rows = 33, cols = 512;
    const std::vector<uint8_t> wq = quantize_matrix(type, random_floats(rng, rows * cols), rows, cols);
    const std::vector<int32_t> ids = {0, 32, 7, 7, 31};
    std::vector<float> want(ids.size() * cols);
    ref::get_rows(type, wq.data(), cols, ids.data(), static_cast<int64_t>(ids.size()), want.data());
    for (WeightUse use : {WeightUse::Rows, WeightUse::Matmul}) {  // tied embeddings read the matmul copy
      const WeightPtr w = be->prepare(make_tensor("token_embd.weight", type, rows, cols, wq), use);
      const Buffer out = poisoned(static_cast<int64_t>(ids.size()), cols);
      be->get_rows(*w, upload_i32(ids, static_cast<int64_t>(ids.size()), 1), out);
      EXPECT_EQ(rel_error(download(out), want), 0.0);
    }
    const WeightPtr w = be->prepare(make_tensor("token_embd.weight", type, rows, cols, wq), WeightUse::Rows);
    EXPECT_THROW(be->get_rows(*w, upload_i32({33}, 1, 1), poisoned(1, cols)), Error);
  }
}

// ---------------------------------------------------------------- norms and elementwise

TEST_P(Backends, NormsMatchReference) {
  std::mt19937 rng(11);
  for (int64_t d : {1, 8, 31, 33, 384, 4095}) {
    SCOPED_TRACE("d " + std::to_string(d));
    const int64_t n = 7;
    const std::vector<float> x = random_floats(rng, n * d, 2.0f);
    const std::vector<float> w = random_floats(rng, d), b = random_floats(rng, d);
    std::vector<uint8_t> wb(d * 4), bb(d * 4);
    std::memcpy(wb.data(), w.data(), wb.size());
    std::memcpy(bb.data(), b.data(), bb.size());
    const WeightPtr wv = be->prepare(make_tensor("norm.weight", DType::F32, 1, d, wb), WeightUse::Vector);
    const WeightPtr bv = be->prepare(make_tensor("norm.bias", DType::F32, 1, d, bb), WeightUse::Vector);
    std::vector<float> want(n * d);

    ref::rms_norm(x.data(), w.data(), 1e-5f, n, d, want.data());
    Buffer out = poisoned(n, d);
    be->rms_norm(upload(x, n, d), *wv, 1e-5f, out);
    EXPECT_LE(rel_error(download(out), want), kNormTolerance);

    ref::layer_norm(x.data(), w.data(), b.data(), 1e-12f, n, d, want.data());
    out = poisoned(n, d);
    be->layer_norm(upload(x, n, d), *wv, *bv, 1e-12f, out);
    EXPECT_LE(rel_error(download(out), want), kNormTolerance);

    ref::l2_normalize(x.data(), n, d, want.data());
    out = poisoned(n, d);
    be->l2_normalize(upload(x, n, d), out);
    EXPECT_LE(rel_error(download(out), want), kNormTolerance);

    // In place, as the models use it.
    Buffer inplace = upload(x, n, d);
    be->add_bias(inplace, *bv);
    std::vector<float> with_bias = x;
    for (int64_t i = 0; i < n * d; ++i) with_bias[i] += b[i % d];
    EXPECT_LE(rel_error(download(inplace), with_bias), kElementwiseTolerance);
  }
}

TEST_P(Backends, ElementwiseOpsMatchReference) {
  std::mt19937 rng(12);
  for (int64_t d : {1, 15, 16, 17, 1000, 8192}) {
    SCOPED_TRACE("d " + std::to_string(d));
    const int64_t n = 3;
    const std::vector<float> a = random_floats(rng, n * d, 4.0f), b = random_floats(rng, n * d);
    std::vector<float> want(n * d);
    const Buffer ba = upload(a, n, d), bb = upload(b, n, d);
    Buffer out = poisoned(n, d);

    ref::add(a.data(), b.data(), n * d, want.data());
    be->add(ba, bb, out);
    EXPECT_LE(rel_error(download(out), want), kElementwiseTolerance);
    ref::mul(a.data(), b.data(), n * d, want.data());
    be->mul(ba, bb, out = poisoned(n, d));
    EXPECT_LE(rel_error(download(out), want), kElementwiseTolerance);
    ref::silu_mul(a.data(), b.data(), n * d, want.data());
    be->silu_mul(ba, bb, out = poisoned(n, d));
    EXPECT_LE(rel_error(download(out), want), kElementwiseTolerance);
    ref::gelu(a.data(), n * d, want.data());
    be->gelu(ba, out = poisoned(n, d));
    EXPECT_LE(rel_error(download(out), want), kElementwiseTolerance);
    ref::softmax(a.data(), n, d, want.data());
    be->softmax(ba, out = poisoned(n, d));
    EXPECT_LE(rel_error(download(out), want), kSoftmaxTolerance);

    std::vector<int32_t> want_idx(n), got_idx(n, -1);
    ref::argmax(a.data(), n, d, want_idx.data());
    const Buffer idx = be->alloc(DType::I32, n, 1);
    be->argmax(ba, idx);
    be->download(idx, got_idx.data());
    EXPECT_EQ(got_idx, want_idx);
  }
  // Extreme inputs stay finite: silu of large negatives is 0, not NaN.
  const std::vector<float> big = {-1000.0f, -90.0f, 0.0f, 90.0f, 1000.0f};
  const std::vector<float> ones(big.size(), 1.0f);
  Buffer out = poisoned(1, 5);
  be->silu_mul(upload(big, 1, 5), upload(ones, 1, 5), out);
  const std::vector<float> got = download(out);
  EXPECT_EQ(got[0], 0.0f);
  EXPECT_EQ(got[2], 0.0f);
  EXPECT_FLOAT_EQ(got[4], 1000.0f);
}

TEST_P(Backends, MeanRowsPoolsEachSequence) {
  std::mt19937 rng(13);
  const int64_t n = 10, d = 33;
  const std::vector<float> x = random_floats(rng, n * d);
  const std::vector<int32_t> ranges = {0, 3, 3, 6, 9, 1};
  std::vector<float> want(3 * d);
  ref::mean_rows(x.data(), d, ranges.data(), 3, want.data());
  const Buffer out = poisoned(3, d);
  be->mean_rows(upload(x, n, d), upload_i32(ranges, 3, 2), out);
  EXPECT_LE(rel_error(download(out), want), kNormTolerance);
}

// ---------------------------------------------------------------- rope

TEST_P(Backends, RopeMatchesReferenceInBothStyles) {
  std::mt19937 rng(21);
  for (RopeStyle style : {RopeStyle::Normal, RopeStyle::NeoX}) {
    for (int head_dim : {8, 64, 128}) {
      for (bool factors : {false, true}) {
        SCOPED_TRACE(std::string(style == RopeStyle::Normal ? "normal" : "neox") + " head_dim " +
                     std::to_string(head_dim) + (factors ? " with freq factors" : ""));
        const int n_heads = 3, n = 5;
        RopeParams p;
        p.style = style;
        p.theta = 500000.0f;
        p.n_dims = head_dim;
        if (factors) {
          for (int i = 0; i < head_dim / 2; ++i) p.freq_factors.push_back(1.0f + static_cast<float>(i % 5));
        }
        const std::vector<int32_t> pos = {0, 1, 17, 4000, 131071};
        const std::vector<float> x = random_floats(rng, n * n_heads * head_dim);
        std::vector<float> want = x;
        ref::rope(want.data(), pos.data(), n, n_heads, head_dim, style, p.theta, p.n_dims,
                  factors ? p.freq_factors.data() : nullptr, 1.0f);
        const Buffer bx = upload(x, n, n_heads * head_dim);
        be->rope(bx, upload_i32(pos, n, 1), n_heads, head_dim, p);
        EXPECT_LE(rel_error(download(bx), want), kRopeTolerance);
      }
    }
  }
}

TEST(RopeReference, RotatesPairsByPositionTimesFrequency) {
  // head_dim 4, theta 100: frequencies 1 and 1/10. Position 2: angles 2 and 0.2.
  float x[4] = {1, 0, 0, 1};
  const int32_t pos = 2;
  ref::rope(x, &pos, 1, 1, 4, RopeStyle::Normal, 100.0f, 4, nullptr, 1.0f);
  EXPECT_NEAR(x[0], std::cos(2.0f), 1e-6);
  EXPECT_NEAR(x[1], std::sin(2.0f), 1e-6);
  EXPECT_NEAR(x[2], -std::sin(0.2f), 1e-6);
  EXPECT_NEAR(x[3], std::cos(0.2f), 1e-6);
  float y[4] = {1, 0, 0, 1};  // NeoX pairs (0, 2) and (1, 3)
  ref::rope(y, &pos, 1, 1, 4, RopeStyle::NeoX, 100.0f, 4, nullptr, 1.0f);
  EXPECT_NEAR(y[0], std::cos(2.0f), 1e-6);
  EXPECT_NEAR(y[2], std::sin(2.0f), 1e-6);
  EXPECT_NEAR(y[1], -std::sin(0.2f), 1e-6);
  EXPECT_NEAR(y[3], std::cos(0.2f), 1e-6);
}

// ---------------------------------------------------------------- KV write and attention

TEST_P(Backends, KvWriteRoundsToF16AtTheGivenCells) {
  std::mt19937 rng(31);
  const int64_t n = 3, dim = 40, cells = 10;
  const std::vector<float> k = random_floats(rng, n * dim), v = random_floats(rng, n * dim);
  const Buffer kc = be->alloc(DType::F16, cells, dim), vc = be->alloc(DType::F16, cells, dim);
  be->kv_write(upload(k, n, dim), upload(v, n, dim), upload_i32({4, 9, 0}, n, 1), kc, vc);
  std::vector<uint16_t> got(static_cast<size_t>(cells * dim));
  be->download(kc, got.data());
  for (int64_t j = 0; j < dim; ++j) {
    EXPECT_EQ(got[9 * dim + j], fp32_to_fp16(k[1 * dim + j]));
    EXPECT_EQ(got[0 * dim + j], fp32_to_fp16(k[2 * dim + j]));
  }
  be->download(vc, got.data());
  for (int64_t j = 0; j < dim; ++j) EXPECT_EQ(got[4 * dim + j], fp32_to_fp16(v[0 * dim + j]));
  EXPECT_THROW(be->kv_write(upload(k, n, dim), upload(v, n, dim), upload_i32({4, 10, 0}, n, 1), kc, vc), Error);
}

TEST_P(Backends, KvWriteRoundsToQ8_0AsTheReferenceQuantizer) {
  std::mt19937 rng(33);
  const int64_t n = 3, dim = 96, cells = 7;
  const std::vector<float> k = random_floats(rng, n * dim, 3.0f), v = random_floats(rng, n * dim);
  const Buffer kc = be->alloc(DType::Q8_0, cells, dim), vc = be->alloc(DType::Q8_0, cells, dim);
  ASSERT_EQ(kc.row_bytes(), static_cast<size_t>(dim / 32 * 34));
  be->kv_write(upload(k, n, dim), upload(v, n, dim), upload_i32({6, 2, 0}, n, 1), kc, vc);
  std::vector<uint8_t> got(kc.row_bytes() * cells), want(kc.row_bytes());
  for (int which = 0; which < 2; ++which) {
    be->download(which == 0 ? kc : vc, got.data());
    const std::vector<float>& src = which == 0 ? k : v;
    for (const auto& [row, cell] : {std::pair{0, 6}, std::pair{1, 2}, std::pair{2, 0}}) {
      ref::quantize_row(DType::Q8_0, src.data() + row * dim, want.data(), dim);
      EXPECT_TRUE(std::equal(want.begin(), want.end(), got.begin() + cell * static_cast<int64_t>(kc.row_bytes())))
          << (which == 0 ? "k" : "v") << " row " << row;
    }
  }
  EXPECT_THROW(be->alloc(DType::Q8_0, cells, 40), Error);  // not whole blocks
  // Heads of 16 would split a block between two heads.
  const AttentionParams p{6, 6, 16, 0.25f};
  EXPECT_THROW(be->attention(upload(random_floats(rng, dim), 1, dim), kc, vc, upload_i32({0, 1}, 1, 2), p, poisoned(1, dim)), Error);
}

TEST_P(Backends, AttentionMatchesReference) {
  std::mt19937 rng(41);
  struct Case {
    int n_head, n_head_kv, head_dim;
    DType kv;
  };
  for (const Case& c : {Case{4, 2, 64, DType::F16}, Case{8, 8, 32, DType::F32}, Case{32, 8, 64, DType::F16},
                        Case{16, 8, 128, DType::F16}, Case{2, 1, 8, DType::F16}, Case{14, 2, 64, DType::F16},
                        Case{3, 3, 33, DType::F32}, Case{20, 1, 16, DType::F16}, Case{32, 8, 64, DType::Q8_0},
                        Case{16, 8, 128, DType::Q8_0}, Case{4, 4, 32, DType::Q8_0}}) {
    SCOPED_TRACE(std::to_string(c.n_head) + "/" + std::to_string(c.n_head_kv) + " heads, head_dim " +
                 std::to_string(c.head_dim));
    const int64_t cells = 300, kv_dim = int64_t{c.n_head_kv} * c.head_dim, q_dim = int64_t{c.n_head} * c.head_dim;
    // Queries of two sequences: one decoding at a long position, others prefilling causally.
    const std::vector<int32_t> ranges = {0, 1, 0, 2, 0, 3, 100, 200, 100, 17, 250, 50};
    const int64_t n = static_cast<int64_t>(ranges.size() / 2);
    const std::vector<float> q = random_floats(rng, n * q_dim, 2.0f);
    std::vector<float> kf = random_floats(rng, cells * kv_dim), vf = random_floats(rng, cells * kv_dim);
    Buffer kb = be->alloc(c.kv, cells, kv_dim), vb = be->alloc(c.kv, cells, kv_dim);
    std::vector<uint16_t> kh(kf.size()), vh(vf.size());
    std::vector<uint8_t> kq(kb.row_bytes() * cells), vq(vb.row_bytes() * cells);  // Q8_0 rows
    const void* k_ref = kf.data();
    const void* v_ref = vf.data();
    if (c.kv == DType::Q8_0) {
      ref::quantize_row(DType::Q8_0, kf.data(), kq.data(), cells * kv_dim);
      ref::quantize_row(DType::Q8_0, vf.data(), vq.data(), cells * kv_dim);
      be->upload(kb, kq.data());
      be->upload(vb, vq.data());
      k_ref = kq.data();
      v_ref = vq.data();
    } else if (c.kv == DType::F16) {
      for (size_t i = 0; i < kf.size(); ++i) {
        kh[i] = fp32_to_fp16(kf[i]);
        vh[i] = fp32_to_fp16(vf[i]);
      }
      be->upload(kb, kh.data());
      be->upload(vb, vh.data());
      k_ref = kh.data();
      v_ref = vh.data();
    } else {
      be->upload(kb, kf.data());
      be->upload(vb, vf.data());
    }
    std::vector<float> want(static_cast<size_t>(n * q_dim));
    ref::attention(q.data(), k_ref, v_ref, c.kv, ranges.data(), n,
                   c.n_head, c.n_head_kv, c.head_dim, 1.0f / std::sqrt(static_cast<float>(c.head_dim)), want.data());
    AttentionParams p{c.n_head, c.n_head_kv, c.head_dim, 1.0f / std::sqrt(static_cast<float>(c.head_dim))};
    const Buffer out = poisoned(n, q_dim);
    be->attention(upload(q, n, q_dim), kb, vb, upload_i32(ranges, n, 2), p, out);
    EXPECT_LE(rel_error(download(out), want), kAttentionTolerance);
  }
}

// A paged cache: keys reach their rows through block tables laid end to end. The reference reads
// through the same tables and must agree exactly with itself over the rows gathered in key order;
// the backend must agree with the reference.
TEST_P(Backends, AttentionReadsKeysThroughBlockTables) {
  std::mt19937 rng(43);
  constexpr int kBlock = 16;
  const int64_t n_blocks = 20, cells = n_blocks * kBlock;
  // Two sequences' tables, in shuffled blocks: A has 8 blocks (keys [0, 128)), B 6 (keys [128, 224)).
  std::vector<int32_t> order(static_cast<size_t>(n_blocks));
  std::iota(order.begin(), order.end(), 0);
  std::shuffle(order.begin(), order.end(), rng);
  const std::vector<int32_t> blocks(order.begin(), order.begin() + 14);
  const std::vector<int32_t> ranges = {0, 1, 0, 17, 0, 128, 128, 1, 128, 77, 128 + 40, 56};
  const int64_t n = static_cast<int64_t>(ranges.size() / 2), n_keys = static_cast<int64_t>(blocks.size()) * kBlock;
  for (DType kv : {DType::F32, DType::F16, DType::Q8_0}) {
    SCOPED_TRACE(std::string(dtype_traits(kv)->name));
    const int n_head = 8, n_head_kv = 2, head_dim = 64;
    const int64_t kv_dim = int64_t{n_head_kv} * head_dim, q_dim = int64_t{n_head} * head_dim;
    const std::vector<float> q = random_floats(rng, n * q_dim, 2.0f);
    const std::vector<float> kf = random_floats(rng, cells * kv_dim), vf = random_floats(rng, cells * kv_dim);
    Buffer kb = be->alloc(kv, cells, kv_dim), vb = be->alloc(kv, cells, kv_dim);
    const size_t row_bytes = kb.row_bytes();
    std::vector<uint8_t> kr(row_bytes * cells), vr(row_bytes * cells);  // the cache's bytes, as stored
    for (int64_t c = 0; c < cells; ++c) {
      for (int which = 0; which < 2; ++which) {
        const float* src = (which == 0 ? kf : vf).data() + c * kv_dim;
        uint8_t* dst = (which == 0 ? kr : vr).data() + c * row_bytes;
        if (kv == DType::F32) {
          std::memcpy(dst, src, row_bytes);
        } else if (kv == DType::F16) {
          for (int64_t d = 0; d < kv_dim; ++d) reinterpret_cast<uint16_t*>(dst)[d] = fp32_to_fp16(src[d]);
        } else {
          ref::quantize_row(DType::Q8_0, src, dst, kv_dim);
        }
      }
    }
    be->upload(kb, kr.data());
    be->upload(vb, vr.data());
    // The same keys gathered into rows 0, 1, ... in key order: no table needed.
    std::vector<uint8_t> kg(row_bytes * n_keys), vg(row_bytes * n_keys);
    for (int64_t j = 0; j < n_keys; ++j) {
      const int64_t row = int64_t{blocks[j / kBlock]} * kBlock + j % kBlock;
      std::memcpy(kg.data() + j * row_bytes, kr.data() + row * row_bytes, row_bytes);
      std::memcpy(vg.data() + j * row_bytes, vr.data() + row * row_bytes, row_bytes);
    }
    const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
    KvPages pages;
    pages.blocks = blocks.data();
    pages.block_shift = 4;
    pages.n_keys = n_keys;
    pages.n_rows = cells;
    std::vector<float> want(static_cast<size_t>(n * q_dim)), gathered(want.size());
    ref::attention(q.data(), kr.data(), vr.data(), kv, ranges.data(), n, n_head, n_head_kv, head_dim, scale, want.data(), pages);
    ref::attention(q.data(), kg.data(), vg.data(), kv, ranges.data(), n, n_head, n_head_kv, head_dim, scale, gathered.data());
    EXPECT_EQ(want, gathered);
    AttentionParams p{n_head, n_head_kv, head_dim, scale};
    p.kv_block_size = kBlock;
    const Buffer bb = upload_i32(blocks, static_cast<int64_t>(blocks.size()), 1);
    const Buffer out = poisoned(n, q_dim);
    be->attention(upload(q, n, q_dim), kb, vb, upload_i32(ranges, n, 2), bb, p, out);
    EXPECT_LE(rel_error(download(out), want), kAttentionTolerance);
    // Bad tables and ranges are refused with the reason.
    const Buffer bad = upload_i32({0, 20}, 2, 1);  // block 20 of 20
    EXPECT_THROW(be->attention(upload(q, n, q_dim), kb, vb, upload_i32({0, 1}, 1, 2), bad, p, poisoned(1, q_dim)), Error);
    EXPECT_THROW(be->attention(upload(q, 1, q_dim), kb, vb, upload_i32({200, 30}, 1, 2), bb, p, poisoned(1, q_dim)), Error);
    AttentionParams odd = p;
    odd.kv_block_size = 12;  // not a power of two
    EXPECT_THROW(be->attention(upload(q, 1, q_dim), kb, vb, upload_i32({0, 1}, 1, 2), bb, odd, poisoned(1, q_dim)), Error);
  }
}

// ---------------------------------------------------------------- the backend contract

TEST(BackendContract, AMissingOpNamesTheOpAndTheBackend) {
  class Bare final : public Backend {
   public:
    std::string name() const override { return "bare"; }
    Buffer alloc(DType, int64_t, int64_t) override { return {}; }
    void upload(const Buffer&, const void*) override {}
    void download(const Buffer&, void*) override {}
    WeightPtr prepare(const Tensor&, WeightUse) override { return std::make_shared<Weight>(); }
  } bare;
  try {
    bare.attention({}, {}, {}, {}, {}, {});
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::Unsupported);
    EXPECT_STREQ(e.what(), "op 'attention' is not implemented by the bare backend");
  }
}

TEST(ThreadPool, RunsEveryTaskOnceAndRethrows) {
  ThreadPool pool(3);
  for (int64_t n : {0, 1, 2, 7, 1000}) {
    std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
    for (int rep = 0; rep < 20; ++rep) {
      pool.run(n, [&](int64_t t, unsigned thread) {
        ASSERT_LT(thread, pool.size());
        hits[static_cast<size_t>(t)].fetch_add(1);
      });
    }
    for (auto& h : hits) EXPECT_EQ(h.load(), 20);
  }
  EXPECT_THROW(pool.run(50, [](int64_t t, unsigned) {
    if (t == 13) throw Error(ErrorCode::InvalidArgument, "task 13");
  }), Error);
  int64_t sum = 0;  // still usable after a failure
  std::mutex m;
  pool.run(10, [&](int64_t t, unsigned) {
    std::lock_guard lock(m);
    sum += t;
  });
  EXPECT_EQ(sum, 45);
}

INSTANTIATE_TEST_SUITE_P(Cpu, Backends, testing::ValuesIn(isas()), isa_case_name);

}  // namespace
}  // namespace vireo
