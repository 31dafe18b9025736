// Interleaved weight layouts of the AVX-512 and AVX2 kernels: groups of 16 rows, so that one
// 512-bit register (two 256-bit ones for AVX2: rows 0-7, 8-15) holds the same 4-byte chunk (or one
// value) of each of the 16 rows, and every scale of a block sits in one 16-lane vector. Packing only moves bits: unpack_row rebuilds the file's
// bytes of a row exactly (and then dequantizes them with the reference).
//
// Per group, block after block (b = block index along the row, r = row in the group 0..15):
//   F32          [cols][16] f32
//   F16, BF16    [cols][16] u16
//   Q4_0  288 B  d[16] f16 | 4 x 64 B: word r of load i = qs[4i..4i+3] of row r
//                (low nibbles: elements 4i..4i+3, high nibbles: 16+4i..16+4i+3)
//   Q4_1  320 B  d[16] | m[16] | qs as Q4_0
//   Q5_0  352 B  d[16] | qh: word r = the row's 32 fifth bits | qs as Q4_0
//   Q5_1  384 B  d[16] | m[16] | qh | qs
//   Q8_0  544 B  d[16] | 8 x 64 B: word r of load j = qs[4j..4j+3] of row r, each byte xor 0x80
//                (levels stored as unsigned q + 128)
//   Q4_K 2368 B  d[16] | dmin[16] | sc u8[8 sub][16] | min u8[4 pair][16][2] |
//                4 pairs x 8 x 64 B: word r of load i of pair p = qs[32p + 4i ..] of row r
//                (low nibbles: sub-block 2p, high nibbles: sub-block 2p+1)
//   Q5_K 2880 B  as Q4_K, then qh: 8 x 64 B, word r of load j = qh[4j..4j+3] of row r
//                (bit s of each byte: fifth bit of sub-block s)
//   Q6_K 3360 B  d[16] | sc i8[8 pair][16][2] | 16 units (one per sub-block of 16 elements u),
//                each 3 x 64 B: A, B, H. Byte c of row r's word, with L(e) the 6-bit level:
//                A = L(16u+c)&15 | (L(16u+4+c)&15)<<4, B = same for 16u+8+c, 16u+12+c,
//                H = the four top-2-bit fields of 16u+c, +4+c, +8+c, +12+c at shifts 0, 2, 4, 6.
#include <cstring>
#include <vector>

#include "vireo/core/error.h"
#include "vireo/core/quant_blocks.h"
#include "vireo/kernels/cpu/matmul.h"
#include "vireo/kernels/ref/quant.h"

namespace vireo::cpu::avx512 {
namespace {

constexpr int G = static_cast<int>(kRowGroup);
constexpr int kSuper = static_cast<int>(QK_K);

size_t block_bytes_packed(DType type) {
  switch (type) {
    case DType::Q4_0: return 288;
    case DType::Q4_1: return 320;
    case DType::Q5_0: return 352;
    case DType::Q5_1: return 384;
    case DType::Q8_0: return 544;
    case DType::Q4_K: return 2368;
    case DType::Q5_K: return 2880;
    case DType::Q6_K: return 3360;
    default: return 0;
  }
}

// Moves bytes one way or the other: pack (file -> packed) or unpack (packed -> file).
struct Mover {
  bool pack;
  void move(uint8_t* packed, uint8_t* file, size_t n) const {
    if (pack) {
      std::memcpy(packed, file, n);
    } else {
      std::memcpy(file, packed, n);
    }
  }
  void move_xor80(uint8_t* packed, uint8_t* file, size_t n) const {
    for (size_t i = 0; i < n; ++i) {
      if (pack) {
        packed[i] = file[i] ^ 0x80;
      } else {
        file[i] = packed[i] ^ 0x80;
      }
    }
  }
};

// One row's block b <-> its place in a packed block of the group. `file` is the row's block.
void move_block_32(DType type, const Mover& mv, uint8_t* pk, uint8_t* file, int r) {
  auto f16 = [&](int slot, size_t file_off) { mv.move(pk + 32 * slot + 2 * r, file + file_off, 2); };
  auto nibbles = [&](size_t pk_off, size_t file_off) {
    for (int i = 0; i < 4; ++i) mv.move(pk + pk_off + 64 * i + 4 * r, file + file_off + 4 * i, 4);
  };
  switch (type) {
    case DType::Q4_0:
      f16(0, offsetof(block_q4_0, d));
      nibbles(32, offsetof(block_q4_0, qs));
      break;
    case DType::Q4_1:
      f16(0, offsetof(block_q4_1, d));
      f16(1, offsetof(block_q4_1, m));
      nibbles(64, offsetof(block_q4_1, qs));
      break;
    case DType::Q5_0:
      f16(0, offsetof(block_q5_0, d));
      mv.move(pk + 32 + 4 * r, file + offsetof(block_q5_0, qh), 4);
      nibbles(96, offsetof(block_q5_0, qs));
      break;
    case DType::Q5_1:
      f16(0, offsetof(block_q5_1, d));
      f16(1, offsetof(block_q5_1, m));
      mv.move(pk + 64 + 4 * r, file + offsetof(block_q5_1, qh), 4);
      nibbles(128, offsetof(block_q5_1, qs));
      break;
    case DType::Q8_0:
      f16(0, offsetof(block_q8_0, d));
      for (int j = 0; j < 8; ++j) mv.move_xor80(pk + 32 + 64 * j + 4 * r, file + offsetof(block_q8_0, qs) + 4 * j, 4);
      break;
    default:
      VIREO_CHECK(false);
  }
}

void move_block_q4_K_like(DType type, const Mover& mv, uint8_t* pk, uint8_t* file, int r) {
  // Both block_q4_K and block_q5_K start with d, dmin, scales[12], then (q5_K: qh) qs.
  mv.move(pk + 2 * r, file + offsetof(block_q4_K, d), 2);
  mv.move(pk + 32 + 2 * r, file + offsetof(block_q4_K, dmin), 2);
  uint8_t* scales = file + offsetof(block_q4_K, scales);
  for (int s = 0; s < 8; ++s) {
    uint8_t& sc = pk[64 + 16 * s + r];
    uint8_t& m = pk[192 + 32 * (s / 2) + 2 * r + s % 2];
    if (mv.pack) {
      unpack_scale_min_k4(s, scales, sc, m);
    } else {  // re-encode the 6-bit codes (every bit of the 12 bytes is a code bit)
      if (s == 0) std::memset(scales, 0, K_SCALE_SIZE);
      if (s < 4) {
        scales[s] |= sc & 63;
        scales[s + 4] |= m & 63;
      } else {
        scales[s + 4] |= static_cast<uint8_t>((sc & 0xf) | ((m & 0xf) << 4));
        scales[s - 4] |= static_cast<uint8_t>((sc >> 4) << 6);
        scales[s] |= static_cast<uint8_t>((m >> 4) << 6);
      }
    }
  }
  const size_t qs_off = type == DType::Q4_K ? offsetof(block_q4_K, qs) : offsetof(block_q5_K, qs);
  for (int p = 0; p < 4; ++p) {
    for (int i = 0; i < 8; ++i) mv.move(pk + 320 + 512 * p + 64 * i + 4 * r, file + qs_off + 32 * p + 4 * i, 4);
  }
  if (type == DType::Q5_K) {
    for (int j = 0; j < 8; ++j) mv.move(pk + 2368 + 64 * j + 4 * r, file + offsetof(block_q5_K, qh) + 4 * j, 4);
  }
}

// q6_K level of element e (as the file stores it) and its inverse.
int q6_level(const block_q6_K& b, int e) {
  const int h = e / 128, k = (e % 128) / 32, l = e % 32;
  const uint8_t lo_byte = b.ql[64 * h + 32 * (k & 1) + l];
  const int lo = k < 2 ? lo_byte & 0xf : lo_byte >> 4;
  return lo | (((b.qh[32 * h + l] >> (2 * k)) & 3) << 4);
}
void q6_put_level(block_q6_K& b, int e, int q) {
  const int h = e / 128, k = (e % 128) / 32, l = e % 32;
  b.ql[64 * h + 32 * (k & 1) + l] |= static_cast<uint8_t>((q & 0xf) << (k < 2 ? 0 : 4));
  b.qh[32 * h + l] |= static_cast<uint8_t>(((q >> 4) & 3) << (2 * k));
}

void move_block_q6_K(const Mover& mv, uint8_t* pk, uint8_t* file, int r) {
  block_q6_K b;
  if (mv.pack) {
    std::memcpy(&b, file, sizeof b);
  } else {
    std::memset(&b, 0, sizeof b);
  }
  mv.move(pk + 2 * r, reinterpret_cast<uint8_t*>(&b) + offsetof(block_q6_K, d), 2);
  for (int s = 0; s < 16; ++s) {
    mv.move(pk + 32 + 32 * (s / 2) + 2 * r + s % 2, reinterpret_cast<uint8_t*>(&b) + offsetof(block_q6_K, scales) + s, 1);
  }
  for (int u = 0; u < 16; ++u) {
    uint8_t* unit = pk + 288 + 192 * u;
    for (int c = 0; c < 4; ++c) {
      uint8_t& a = unit[4 * r + c];
      uint8_t& bb = unit[64 + 4 * r + c];
      uint8_t& h = unit[128 + 4 * r + c];
      const int e0 = 16 * u + c;
      if (mv.pack) {
        const int l0 = q6_level(b, e0), l1 = q6_level(b, e0 + 4), l2 = q6_level(b, e0 + 8), l3 = q6_level(b, e0 + 12);
        a = static_cast<uint8_t>((l0 & 15) | ((l1 & 15) << 4));
        bb = static_cast<uint8_t>((l2 & 15) | ((l3 & 15) << 4));
        h = static_cast<uint8_t>((l0 >> 4) | ((l1 >> 4) << 2) | ((l2 >> 4) << 4) | ((l3 >> 4) << 6));
      } else {
        q6_put_level(b, e0, (a & 15) | ((h & 3) << 4));
        q6_put_level(b, e0 + 4, (a >> 4) | (((h >> 2) & 3) << 4));
        q6_put_level(b, e0 + 8, (bb & 15) | (((h >> 4) & 3) << 4));
        q6_put_level(b, e0 + 12, (bb >> 4) | (((h >> 6) & 3) << 4));
      }
    }
  }
  if (!mv.pack) std::memcpy(file, &b, sizeof b);
}

// Moves one row (file bytes `file_row`) into or out of its group.
void move_row(DType type, const Mover& mv, uint8_t* group, uint8_t* file_row, int r, int64_t cols) {
  switch (type) {
    case DType::F32:
      for (int64_t c = 0; c < cols; ++c) mv.move(group + (c * G + r) * 4, file_row + c * 4, 4);
      return;
    case DType::F16:
    case DType::BF16:
      for (int64_t c = 0; c < cols; ++c) mv.move(group + (c * G + r) * 2, file_row + c * 2, 2);
      return;
    default:
      break;
  }
  const auto traits = dtype_traits(type);
  const int64_t nb = cols / traits->block_elems;
  const size_t pb = block_bytes_packed(type);
  for (int64_t b = 0; b < nb; ++b) {
    uint8_t* pk = group + b * pb;
    uint8_t* file = file_row + b * traits->block_bytes;
    switch (type) {
      case DType::Q4_K:
      case DType::Q5_K: move_block_q4_K_like(type, mv, pk, file, r); break;
      case DType::Q6_K: move_block_q6_K(mv, pk, file, r); break;
      default: move_block_32(type, mv, pk, file, r); break;
    }
  }
}

}  // namespace

bool has_kernel(DType type) {
  switch (type) {
    case DType::F32:
    case DType::F16:
    case DType::BF16:
    case DType::Q4_0:
    case DType::Q4_1:
    case DType::Q5_0:
    case DType::Q5_1:
    case DType::Q8_0:
    case DType::Q4_K:
    case DType::Q5_K:
    case DType::Q6_K: return true;
    default: return false;
  }
}

size_t group_bytes(DType type, int64_t cols) {
  switch (type) {
    case DType::F32: return static_cast<size_t>(cols) * G * 4;
    case DType::F16:
    case DType::BF16: return static_cast<size_t>(cols) * G * 2;
    default: return static_cast<size_t>(cols / dtype_traits(type)->block_elems) * block_bytes_packed(type);
  }
}

void pack_group(DType type, const uint8_t* rows_data, int64_t n_rows, int64_t cols, uint8_t* out) {
  const size_t rb = ref::row_bytes(type, cols);
  std::memset(out, 0, group_bytes(type, cols));
  // Rows past the matrix's end are all-zero blocks (scale 0): their outputs are never stored.
  std::vector<uint8_t> row(rb, 0);
  const Mover mv{true};
  for (int r = 0; r < G; ++r) {
    if (r < n_rows) {
      std::memcpy(row.data(), rows_data + r * rb, rb);
    } else {
      std::fill(row.begin(), row.end(), 0);
    }
    move_row(type, mv, out, row.data(), r, cols);
  }
}

void unpack_row(DType type, const uint8_t* group, int64_t row_in_group, int64_t cols, float* out) {
  std::vector<uint8_t> row(ref::row_bytes(type, cols), 0);
  const Mover mv{false};
  move_row(type, mv, const_cast<uint8_t*>(group), row.data(), static_cast<int>(row_in_group), cols);
  ref::dequantize_row(type, row.data(), out, cols);
}

}  // namespace vireo::cpu::avx512
