// Portable parts of the CPU matmul: packing dispatch, activation rounding, and the Plain path
// (dequantize one weight row, dot it in float) that serves any CPU and any dequantizable type.
#include "vireo/kernels/cpu/matmul.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include <sys/mman.h>
#include <vector>

#include "vireo/core/error.h"
#include "vireo/core/mapped_file.h"
#include "vireo/core/quant_blocks.h"
#include "vireo/kernels/ref/ops.h"
#include "vireo/kernels/ref/quant.h"

namespace vireo::cpu {

void AlignedBytes::Free::operator()(uint8_t* p) const { std::free(p); }

void AlignedBytes::resize(size_t n) {
  if (n <= capacity_) {
    size_ = n;
    return;
  }
  // Big buffers (packed weights) go on 2 MiB pages where the kernel allows it: streaming a
  // matrix then needs one TLB entry per 2 MiB instead of per 4 KiB. Only whole huge pages are
  // advised, so a matrix's tail costs no more memory than its bytes.
  constexpr size_t kHugePage = size_t{2} << 20;
  const bool huge = n >= kHugePage;
  const size_t rounded = (n + 63) / 64 * 64;
  void* raw = nullptr;
  if (::posix_memalign(&raw, huge ? kHugePage : 64, rounded) != 0) fail(ErrorCode::Io, "out of memory allocating {} bytes", rounded);
  auto* p = static_cast<uint8_t*>(raw);
#ifdef MADV_HUGEPAGE
  if (huge) ::madvise(p, rounded / kHugePage * kHugePage, MADV_HUGEPAGE);  // advisory: failure only costs speed
#endif
  data_.reset(p);
  size_ = n;
  capacity_ = rounded;
}

size_t PackedMatrix::bytes() const {
  if (layout == Layout::Interleaved) return group_bytes * static_cast<size_t>(n_groups());
  return ref::row_bytes(type, cols) * static_cast<size_t>(rows);
}

bool has_interleaved_kernel(DType type, Isa isa) {
  if (isa == Isa::Avx2) return avx2::has_kernel(type);
  return uses_avx512(isa) && avx512::has_kernel(type);
}

PackedMatrix pack_matrix(DType type, const void* data, int64_t rows, int64_t cols, Isa isa, bool release_source) {
  PackedMatrix m;
  m.type = type;
  m.rows = rows;
  m.cols = cols;
  m.isa = isa;
  ref::dot_type(type);  // throws Unsupported for a type no matmul handles
  const size_t row_bytes = ref::row_bytes(type, cols);  // checks the block size
  if (!has_interleaved_kernel(type, isa)) {
    m.layout = Layout::Plain;
    m.data = static_cast<const uint8_t*>(data);
    return m;
  }
  m.layout = Layout::Interleaved;
  m.group_bytes = avx512::group_bytes(type, cols);
  m.storage.resize(m.group_bytes * static_cast<size_t>(m.n_groups()));
  m.data = m.storage.data();
  for (int64_t g = 0; g < m.n_groups(); ++g) {
    const int64_t r0 = g * kRowGroup;
    const int64_t n_rows = std::min(kRowGroup, rows - r0);
    avx512::pack_group(type, static_cast<const uint8_t*>(data) + static_cast<size_t>(r0) * row_bytes, n_rows, cols,
                       m.storage.data() + static_cast<size_t>(g) * m.group_bytes);
    // Every 64 groups, let the packed source rows leave memory (peak: one copy of the weights).
    if (release_source && (g % 64 == 63 || g + 1 == m.n_groups())) {
      const int64_t first = (g / 64) * 64 * kRowGroup, last = std::min(rows, (g + 1) * kRowGroup);
      drop_resident_pages(static_cast<const uint8_t*>(data) + static_cast<size_t>(first) * row_bytes,
                          static_cast<size_t>(last - first) * row_bytes);
    }
  }
  return m;
}

void unpack_row(const PackedMatrix& m, int64_t r, float* out) {
  VIREO_CHECK(r >= 0 && r < m.rows);
  if (m.layout == Layout::Plain) {
    ref::dequantize_row(m.type, m.data + static_cast<size_t>(r) * ref::row_bytes(m.type, m.cols), out, m.cols);
    return;
  }
  avx512::unpack_row(m.type, m.data + static_cast<size_t>(r / kRowGroup) * m.group_bytes, r % kRowGroup, m.cols, out);
}

void prepare_activations(const PackedMatrix& w, int64_t n, Activations& a) {
  a.weight_type = w.type;
  a.dot_type = ref::dot_type(w.type);
  a.n = n;
  a.cols = w.cols;
  const bool levels = w.layout == Layout::Interleaved && (a.dot_type == DType::Q8_0 || a.dot_type == DType::Q8_K);
  const auto un = static_cast<size_t>(n), uc = static_cast<size_t>(w.cols);
  if (!levels) {
    a.kind = Activations::Kind::Floats;
    a.block = 1;
    a.f.resize(un * uc * sizeof(float));
    return;
  }
  a.kind = Activations::Kind::Levels;
  a.block = a.dot_type == DType::Q8_0 ? QK8_0 : static_cast<int64_t>(QK_K);
  a.q.resize(un * uc);
  a.d.resize(un * (uc / static_cast<size_t>(a.block)) * sizeof(float));
  a.s32.resize(un * (uc / 32) * sizeof(int32_t));
  a.s16.resize(a.dot_type == DType::Q8_K ? un * (uc / 16) * sizeof(int16_t) : 0);
}

namespace {

// The portable rounding to levels: the reference quantizer, split into the kernel's arrays.
void quantize_levels_portable(const float* x, int64_t cols, DType dot_type, int8_t* q, float* d, int32_t* s32,
                              int16_t* s16) {
  if (dot_type == DType::Q8_0) {
    std::vector<block_q8_0> blocks(static_cast<size_t>(cols / QK8_0));
    ref::quantize_row(DType::Q8_0, x, blocks.data(), cols);
    for (size_t b = 0; b < blocks.size(); ++b) {
      d[b] = fp16_to_fp32(blocks[b].d);
      int32_t sum = 0;
      for (int e = 0; e < QK8_0; ++e) sum += q[b * QK8_0 + e] = blocks[b].qs[e];
      s32[b] = sum;
    }
    return;
  }
  std::vector<block_q8_K> blocks(static_cast<size_t>(cols / static_cast<int64_t>(QK_K)));
  ref::quantize_row(DType::Q8_K, x, blocks.data(), cols);
  for (size_t b = 0; b < blocks.size(); ++b) {
    d[b] = blocks[b].d;
    std::memcpy(q + b * QK_K, blocks[b].qs, QK_K);
    for (size_t s = 0; s < QK_K / 16; ++s) s16[b * (QK_K / 16) + s] = blocks[b].bsums[s];
    for (size_t s = 0; s < QK_K / 32; ++s) s32[b * (QK_K / 32) + s] = blocks[b].bsums[2 * s] + blocks[b].bsums[2 * s + 1];
  }
}

}  // namespace

void quantize_activations(const float* x, int64_t ldx, int64_t t0, int64_t t1, Activations& a, Isa isa) {
  const int64_t cols = a.cols;
  for (int64_t t = t0; t < t1; ++t) {
    const float* xt = x + t * ldx;
    if (a.kind == Activations::Kind::Floats) {
      float* out = a.f.as<float>() + t * cols;
      if (a.dot_type == DType::F32) {
        std::memcpy(out, xt, static_cast<size_t>(cols) * sizeof(float));
      } else if (a.dot_type == DType::F16) {
        for (int64_t c = 0; c < cols; ++c) out[c] = fp16_to_fp32(fp32_to_fp16(xt[c]));
      } else if (a.dot_type == DType::BF16) {
        for (int64_t c = 0; c < cols; ++c) out[c] = bf16_to_fp32(fp32_to_bf16(xt[c]));
      } else {  // Q8_0 / Q8_K on the Plain path: the dequantized levels
        const std::vector<float> r = ref::round_activations(a.weight_type, xt, cols);
        std::memcpy(out, r.data(), r.size() * sizeof(float));
      }
      continue;
    }
    int8_t* q = a.q.as<int8_t>() + t * cols;
    float* d = a.d.as<float>() + t * (cols / a.block);
    int32_t* s32 = a.s32.as<int32_t>() + t * (cols / 32);
    int16_t* s16 = a.dot_type == DType::Q8_K ? a.s16.as<int16_t>() + t * (cols / 16) : nullptr;
    if (uses_avx512(isa)) {
      avx512::quantize_levels(xt, cols, a.dot_type, q, d, s32, s16);
    } else if (isa == Isa::Avx2) {
      avx2::quantize_levels(xt, cols, a.dot_type, q, d, s32, s16);
    } else {
      quantize_levels_portable(xt, cols, a.dot_type, q, d, s32, s16);
    }
  }
}

namespace {

// Plain path: one weight row dequantized, dotted with every activation row in float.
void matmul_rows_plain(const PackedMatrix& w, const Activations& a, int64_t r0, int64_t r1, float* y, int64_t ldy) {
  VIREO_CHECK(a.kind == Activations::Kind::Floats);
  const size_t rb = ref::row_bytes(w.type, w.cols);
  std::vector<float> row(static_cast<size_t>(w.cols));
  const float* x = a.f.as<float>();
  for (int64_t r = r0; r < r1; ++r) {
    ref::dequantize_row(w.type, w.data + static_cast<size_t>(r) * rb, row.data(), w.cols);
    for (int64_t t = 0; t < a.n; ++t) {
      const float* xt = x + t * w.cols;
      // Eight partial sums: keeps the rounding error low and lets the compiler vectorise.
      float part[8] = {};
      int64_t c = 0;
      for (; c + 8 <= w.cols; c += 8) {
        for (int k = 0; k < 8; ++k) part[k] += row[c + k] * xt[c + k];
      }
      for (; c < w.cols; ++c) part[c % 8] += row[c] * xt[c];
      y[t * ldy + r] = ((part[0] + part[1]) + (part[2] + part[3])) + ((part[4] + part[5]) + (part[6] + part[7]));
    }
  }
}

}  // namespace

void matmul_rows(const PackedMatrix& w, const Activations& a, int64_t r0, int64_t r1, float* y, int64_t ldy) {
  if (r0 >= r1) return;
  VIREO_CHECK(a.cols == w.cols);
  if (w.layout == Layout::Plain) return matmul_rows_plain(w, a, r0, r1, y, ldy);
  VIREO_CHECK(r0 % kRowGroup == 0 && (r1 % kRowGroup == 0 || r1 == w.rows));
  const int64_t g0 = r0 / kRowGroup, g1 = (r1 + kRowGroup - 1) / kRowGroup;
  if (w.isa == Isa::Avx2) return avx2::matmul_groups(w, a, g0, g1, 0, a.n, y, ldy);
  // Batches go through the AMX tiles 16 tokens at a time; the rest through AVX-512.
  int64_t amx_tokens = 0;
  if (w.isa == Isa::Amx && a.kind == Activations::Kind::Levels && amx::has_kernel(w.type)) amx_tokens = a.n / 16 * 16;
  if (amx_tokens > 0) amx::matmul_groups(w, a, g0, g1, amx_tokens, y, ldy);
  if (amx_tokens < a.n) avx512::matmul_groups(w, a, g0, g1, amx_tokens, a.n, y, ldy);
}

}  // namespace vireo::cpu
