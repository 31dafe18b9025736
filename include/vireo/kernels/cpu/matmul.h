// CPU matmul kernels: y[n, rows] = x[n, cols] · Wᵀ with W in any supported weight type.
//
// Weights are packed once at load. With the AVX2 or AVX-512 kernels, F32/F16/BF16 and the
// 32-block and K-quant types are interleaved in groups of 16 rows (one 512-bit register, or two
// 256-bit ones, holds one value or one 4-byte chunk of each of the 16 rows), keeping every stored
// value exactly; anything else stays in the file's row layout and goes through the portable path
// (dequantize a row, dot in float).
//
// Activations are first rounded to the weight type's dot type (see kernels/ref/ops.h): the
// quantized kinds become int8 levels with one scale per block, and the dot products run in the
// integer domain, one float scaling per block: AVX-512 VNNI (or AVX2 vpmaddubsw) for a few tokens
// (decode), AMX int8 tiles for batches of 16 tokens and more (prefill) where the CPU has them.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>

#include "vireo/core/dtype.h"
#include "vireo/kernels/cpu/cpu_features.h"

namespace vireo::cpu {

// Rows interleaved by the packed layouts.
inline constexpr int64_t kRowGroup = 16;

// Owned, 64-byte aligned, uninitialised bytes.
class AlignedBytes {
 public:
  AlignedBytes() = default;
  explicit AlignedBytes(size_t n) { resize(n); }
  void resize(size_t n);  // discards the contents when it grows
  size_t size() const { return size_; }
  uint8_t* data() const { return data_.get(); }
  template <typename T>
  T* as() const { return reinterpret_cast<T*>(data_.get()); }

 private:
  struct Free {
    void operator()(uint8_t* p) const;
  };
  std::unique_ptr<uint8_t, Free> data_;
  size_t size_ = 0, capacity_ = 0;
};

enum class Layout {
  Plain,        // the file's rows, read through the portable path
  Interleaved,  // groups of 16 rows, read by the SIMD kernels
};

struct PackedMatrix {
  DType type = DType::F32;
  int64_t rows = 0, cols = 0;
  Layout layout = Layout::Plain;
  Isa isa = Isa::Scalar;
  const uint8_t* data = nullptr;  // Plain: rows of the file (not owned); Interleaved: `storage`
  AlignedBytes storage;
  size_t group_bytes = 0;  // Interleaved: bytes of one group of 16 rows

  int64_t n_groups() const { return (rows + kRowGroup - 1) / kRowGroup; }
  size_t bytes() const;  // what a matmul reads
};

// Whether pack_matrix interleaves this type for this instruction set.
bool has_interleaved_kernel(DType type, Isa isa);

// Packs rows*cols elements of `type` stored as the file stores them. Plain keeps a pointer to
// `data`, which must then outlive the matrix. release_source: `data` lies in a read-only file
// mapping whose pages may leave memory as they are copied (see drop_resident_pages).
PackedMatrix pack_matrix(DType type, const void* data, int64_t rows, int64_t cols, Isa isa, bool release_source = false);

// Row r of a packed matrix as floats (tests; get_rows on a weight packed for matmul).
void unpack_row(const PackedMatrix& m, int64_t r, float* out);

// Activations rounded to a weight's dot type, in the form its kernel reads.
struct Activations {
  enum class Kind { Floats, Levels };
  Kind kind = Kind::Floats;
  DType weight_type = DType::F32;
  DType dot_type = DType::F32;  // F32, F16, BF16 (Floats: values rounded to it) / Q8_0, Q8_K (Levels)
  int64_t n = 0, cols = 0;
  int64_t block = 1;  // elements per scale (Levels)
  AlignedBytes f;     // Floats: float [n][cols]
  AlignedBytes q;     // Levels: int8 [n][cols]
  AlignedBytes d;     // Levels: float [n][cols/block], the block scales
  AlignedBytes s32;   // Levels: int32 [n][cols/32], the sum of each 32 levels
  AlignedBytes s16;   // Levels with Q8_K: int16 [n][cols/16], the sum of each 16 levels
};

// Sizes `a` for n rows of x for matrix `w` (keeps its memory when big enough).
void prepare_activations(const PackedMatrix& w, int64_t n, Activations& a);
// Rounds rows [t0, t1) of x (ldx floats apart) into `a`. Threads may fill disjoint row ranges.
void quantize_activations(const float* x, int64_t ldx, int64_t t0, int64_t t1, Activations& a, Isa isa);

// y[t, r] (ldy floats apart) for every t < a.n and rows r0 <= r < r1; r0 must be a multiple of
// kRowGroup and r1 one too or equal to w.rows. Single-threaded: callers split the rows.
void matmul_rows(const PackedMatrix& w, const Activations& a, int64_t r0, int64_t r1, float* y, int64_t ldy);

// ---- per-ISA entry points (internal; matmul_rows dispatches) ----
namespace avx512 {
bool has_kernel(DType type);
// The interleaved layouts (pack_avx512.cpp): plain C++, shared by the AVX2 kernels.
size_t group_bytes(DType type, int64_t cols);
void pack_group(DType type, const uint8_t* rows_data, int64_t n_rows, int64_t cols, uint8_t* out);
void unpack_row(DType type, const uint8_t* group, int64_t row_in_group, int64_t cols, float* out);
void quantize_levels(const float* x, int64_t cols, DType dot_type, int8_t* q, float* d, int32_t* s32, int16_t* s16);
// Tokens [t0, t1) of `a`.
void matmul_groups(const PackedMatrix& w, const Activations& a, int64_t g0, int64_t g1, int64_t t0, int64_t t1, float* y,
                   int64_t ldy);
}  // namespace avx512
namespace avx2 {
bool has_kernel(DType type);
// The same levels, bytes for bytes, as the portable quantizer.
void quantize_levels(const float* x, int64_t cols, DType dot_type, int8_t* q, float* d, int32_t* s32, int16_t* s16);
// Tokens [t0, t1) of `a`, over the layouts of avx512::pack_group.
void matmul_groups(const PackedMatrix& w, const Activations& a, int64_t g0, int64_t g1, int64_t t0, int64_t t1, float* y,
                   int64_t ldy);
}  // namespace avx2
namespace amx {
bool has_kernel(DType type);
// Tokens [0, t_end), t_end a multiple of 16.
void matmul_groups(const PackedMatrix& w, const Activations& a, int64_t g0, int64_t g1, int64_t t_end, float* y,
                   int64_t ldy);
}  // namespace amx

}  // namespace vireo::cpu
