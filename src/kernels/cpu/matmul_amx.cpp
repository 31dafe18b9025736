// AMX-INT8 matmul for batches of 16 tokens or more (prefill), over the same interleaved layouts
// as the AVX-512 kernels (pack_avx512.cpp).
//
// One tile multiply takes 16 tokens x K activation levels (A, int8, straight from the activation
// rows) and K x 16 weight rows (B, in the 4-byte-interleaved "VNNI" order the packed weights
// already have) into a 16 x 16 int32 tile, with K the block (32) or sub-block (16 for q6_K) size,
// so that every tile is one block and the scales can be applied after it: the int32 tile goes
// through memory into 16 AVX-512 registers, is converted and multiplied by weight scale x token
// scale, and added to 16 float accumulators (one per token, 16 rows each). Three C tiles rotate
// so the next two blocks' multiplies overlap this block's scaling.
//
// Weights become signed levels (dpbssd: int8 x int8), so offsets need no correction: q4_0 stores
// q - 8, q8_0 its own levels, q6_K q - 32. A group of 16 rows is unpacked once into a per-thread
// buffer and reused by every 16-token tile.
#include <algorithm>
#include <cstdint>
#include <cstring>

#include "vireo/core/error.h"
#include "vireo/core/quant_blocks.h"
#include "vireo/kernels/cpu/matmul.h"

// Everything below is compiled for these instruction sets (the caller checks the CPU first).
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("amx-tile,amx-int8,avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("amx-tile,amx-int8,avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")
#pragma GCC diagnostic push
// GCC 12 flags the intentionally undefined registers of some AVX-512 intrinsics.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

#include "vireo/kernels/cpu/avx512_levels.h"

namespace vireo::cpu::amx {
namespace {

using namespace avx512_levels;

constexpr int64_t G = kRowGroup;
constexpr int kTokens = 16;  // tokens per tile

struct TileConfig {
  uint8_t palette_id = 1;
  uint8_t start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};

// Tiles 0-2: C (16 tokens x 16 rows int32); 3, 4: A (16 tokens x k bytes); 5, 6: B (k/4 x 64 B).
void configure_tiles(int k) {
  TileConfig cfg;
  for (int i = 0; i < 3; ++i) {
    cfg.rows[i] = kTokens;
    cfg.colsb[i] = 64;
  }
  for (int i = 0; i < 2; ++i) {
    cfg.rows[3 + i] = kTokens;
    cfg.colsb[3 + i] = static_cast<uint16_t>(k);
    cfg.rows[5 + i] = static_cast<uint8_t>(k / 4);
    cfg.colsb[5 + i] = 64;
  }
  _tile_loadconfig(&cfg);
}

// A group of 16 weight rows, unpacked for the tile multiplies: per block (or sub-block) of k
// elements, k/4 x 64 bytes of signed levels, 16 float scales, and (for types with a min term) 16
// float mins.
struct UnpackedGroup {
  int k = 32;                 // elements per block
  int64_t n_blocks = 0;
  bool has_min = false;
  bool min_per_super = false;  // K-quants: the min term uses per-32 activation sums of Q8_K blocks
  AlignedBytes levels;        // [n_blocks][k/4][64] int8
  AlignedBytes scales;        // [n_blocks][16] float
  AlignedBytes mins;          // [n_blocks][16] float
};

void store_levels(UnpackedGroup& u, int64_t b, const __m512i* q, int n, int offset) {
  auto* dst = u.levels.data() + b * (u.k / 4) * 64;
  const __m512i off = _mm512_set1_epi8(static_cast<char>(offset));
  for (int j = 0; j < n; ++j) _mm512_storeu_si512(dst + 64 * j, _mm512_sub_epi8(q[j], off));
}

void unpack_group(DType type, const uint8_t* group, int64_t cols, UnpackedGroup& u) {
  const bool k_quant = type == DType::Q4_K || type == DType::Q5_K || type == DType::Q6_K;
  u.k = type == DType::Q6_K ? 16 : 32;
  u.n_blocks = cols / u.k;
  u.has_min = type == DType::Q4_1 || type == DType::Q5_1 || type == DType::Q4_K || type == DType::Q5_K;
  u.min_per_super = k_quant;
  u.levels.resize(static_cast<size_t>(u.n_blocks) * (u.k / 4) * 64);
  u.scales.resize(static_cast<size_t>(u.n_blocks) * 64);
  u.mins.resize(u.has_min ? static_cast<size_t>(u.n_blocks) * 64 : 0);
  float* scales = u.scales.as<float>();
  float* mins = u.has_min ? u.mins.as<float>() : nullptr;
  __m512i q[8];
  if (!k_quant) {
    int64_t bytes = 0, qs = 0, qh = -1, min = -1, offset = 0;
    switch (type) {
      case DType::Q4_0: bytes = 288, qs = 32, offset = 8; break;
      case DType::Q4_1: bytes = 320, qs = 64, min = 32; break;
      case DType::Q5_0: bytes = 352, qs = 96, qh = 32, offset = 16; break;
      case DType::Q5_1: bytes = 384, qs = 128, qh = 64, min = 32; break;
      case DType::Q8_0: bytes = 544, qs = 32, offset = 128; break;
      default: VIREO_CHECK(false);
    }
    for (int64_t b = 0; b < u.n_blocks; ++b) {
      const uint8_t* blk = group + b * bytes;
      if (type == DType::Q8_0) {
        for (int j = 0; j < 8; ++j) q[j] = load512(blk + qs + 64 * j);
      } else {
        unpack_nibbles(blk + qs, q);
        if (qh >= 0) add_fifth_bits(blk + qh, q);
      }
      store_levels(u, b, q, 8, static_cast<int>(offset));
      _mm512_storeu_ps(scales + 16 * b, load_f16x16(blk));
      if (min >= 0) _mm512_storeu_ps(mins + 16 * b, load_f16x16(blk + min));
    }
    return;
  }
  for (int64_t sb = 0; sb < cols / static_cast<int64_t>(QK_K); ++sb) {
    if (type == DType::Q6_K) {
      const uint8_t* blk = group + sb * 3360;
      const __m512 d = load_f16x16(blk);
      for (int s = 0; s < 16; ++s) {
        unpack_q6_unit(blk + 288 + 192 * s, q);
        store_levels(u, 16 * sb + s, q, 4, 32);
        __m512i sc_even, sc_odd;
        q6_scale_pair(blk, s / 2, sc_even, sc_odd);
        _mm512_storeu_ps(scales + 16 * (16 * sb + s), _mm512_mul_ps(d, _mm512_cvtepi32_ps(s % 2 == 0 ? sc_even : sc_odd)));
      }
      continue;
    }
    const bool five = type == DType::Q5_K;
    const uint8_t* blk = group + sb * (five ? 2880 : 2368);
    const __m512 d = load_f16x16(blk), dmin = load_f16x16(blk + 32);
    for (int p = 0; p < 4; ++p) {
      __m512i lo[8], hi[8];
      unpack_k_pair(blk, p, five, lo, hi);
      for (int h = 0; h < 2; ++h) {
        const int s = 2 * p + h;
        const int64_t b = 8 * sb + s;
        store_levels(u, b, h == 0 ? lo : hi, 8, 0);
        const __m512 sc = _mm512_cvtepi32_ps(
            _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + 64 + 16 * s))));
        // Mins: u8 [4 pairs][16 rows][2]; pick element h of pair p for each row.
        const __m512i mp = _mm512_cvtepu8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + 192 + 32 * p)));
        const __m512i m = h == 0 ? _mm512_and_si512(mp, _mm512_set1_epi32(0xffff)) : _mm512_srli_epi32(mp, 16);
        _mm512_storeu_ps(scales + 16 * b, _mm512_mul_ps(d, sc));
        _mm512_storeu_ps(mins + 16 * b, _mm512_mul_ps(dmin, _mm512_cvtepi32_ps(m)));
      }
    }
  }
}

// Scale of block b for a token: per block for Q8_0 activations, per super-block for Q8_K.
struct TokenScales {
  const float* d;
  const int32_t* s32;
  int64_t d_stride, s_stride;  // per token
  int blocks_per_scale;        // 1 (Q8_0) or 256 / k (Q8_K)
  int blocks_per_sum;          // blocks per 32-element sum: 1, or 2 for k = 16
};

// How a block's min term enters: none, + m·dx·Σq (q4_1, q5_1), or - dmin·m·dx·Σq (K-quants).
enum class MinTerm { None, Add, Subtract };

// y[t0 .. t0+16) x rows of one group. Templated on the min term so the block loop has no
// branches and the 16 accumulators stay in registers.
template <MinTerm kMin>
void tile_group(const UnpackedGroup& u, const int8_t* xq, int64_t cols, const TokenScales& ts, int64_t t0, float* y,
                int64_t ldy, int64_t valid) {
  alignas(64) int32_t c_buf[kTokens * 16];
  __m512 acc[kTokens];  // fully unrolled loops keep these in registers
#pragma GCC unroll 16
  for (auto& a : acc) a = _mm512_setzero_ps();
  const int8_t* a_base = xq + t0 * cols;
  const uint8_t* levels = u.levels.data();
  const int64_t b_bytes = (u.k / 4) * 64;
  const float* scales = u.scales.as<float>();
  const float* mins = u.mins.as<float>();
  const float* dx_base = ts.d + t0 * ts.d_stride;
  const int32_t* sum_base = ts.s32 + t0 * ts.s_stride;

  // Block b multiplies into C tile b % 3 from A and B tiles b % 2: two blocks are in flight
  // while a third is scaled. Tile numbers must be immediates, hence the switch.
  auto issue = [&](int64_t b) {
    const int8_t* a = a_base + b * u.k;
    const uint8_t* w = levels + b * b_bytes;
    switch (b % 6) {
      case 0: _tile_zero(0); _tile_loadd(3, a, cols); _tile_loadd(5, w, 64); _tile_dpbssd(0, 3, 5); break;
      case 1: _tile_zero(1); _tile_loadd(4, a, cols); _tile_loadd(6, w, 64); _tile_dpbssd(1, 4, 6); break;
      case 2: _tile_zero(2); _tile_loadd(3, a, cols); _tile_loadd(5, w, 64); _tile_dpbssd(2, 3, 5); break;
      case 3: _tile_zero(0); _tile_loadd(4, a, cols); _tile_loadd(6, w, 64); _tile_dpbssd(0, 4, 6); break;
      case 4: _tile_zero(1); _tile_loadd(3, a, cols); _tile_loadd(5, w, 64); _tile_dpbssd(1, 3, 5); break;
      default: _tile_zero(2); _tile_loadd(4, a, cols); _tile_loadd(6, w, 64); _tile_dpbssd(2, 4, 6); break;
    }
  };
  issue(0);
  if (u.n_blocks > 1) issue(1);
  for (int64_t b = 0; b < u.n_blocks; ++b) {
    switch (b % 3) {
      case 0: _tile_stored(0, c_buf, 64); break;
      case 1: _tile_stored(1, c_buf, 64); break;
      default: _tile_stored(2, c_buf, 64); break;
    }
    if (b + 2 < u.n_blocks) issue(b + 2);
    const __m512 ws = _mm512_loadu_ps(scales + 16 * b);
    const float* dx = dx_base + b / ts.blocks_per_scale;
#pragma GCC unroll 16
    for (int t = 0; t < kTokens; ++t) {
      const __m512 prod = _mm512_cvtepi32_ps(_mm512_load_si512(c_buf + 16 * t));
      acc[t] = _mm512_fmadd_ps(prod, _mm512_mul_ps(ws, _mm512_set1_ps(dx[t * ts.d_stride])), acc[t]);
    }
    if constexpr (kMin != MinTerm::None) {
      const __m512 wm = _mm512_loadu_ps(mins + 16 * b);
      const int32_t* sum = sum_base + b / ts.blocks_per_sum;
#pragma GCC unroll 16
      for (int t = 0; t < kTokens; ++t) {
        const __m512 term = _mm512_set1_ps(dx[t * ts.d_stride] * static_cast<float>(sum[t * ts.s_stride]));
        acc[t] = kMin == MinTerm::Add ? _mm512_fmadd_ps(wm, term, acc[t]) : _mm512_fnmadd_ps(wm, term, acc[t]);
      }
    }
  }
#pragma GCC unroll 16
  for (int t = 0; t < kTokens; ++t) {
    if (valid >= G) {
      _mm512_storeu_ps(y + t * ldy, acc[t]);
    } else {
      _mm512_mask_storeu_ps(y + t * ldy, static_cast<__mmask16>((1u << valid) - 1), acc[t]);
    }
  }
}

}  // namespace

bool has_kernel(DType type) {
  switch (type) {
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

void matmul_groups(const PackedMatrix& w, const Activations& a, int64_t g0, int64_t g1, int64_t t_end, float* y,
                   int64_t ldy) {
  VIREO_CHECK(a.kind == Activations::Kind::Levels && t_end % kTokens == 0 && t_end <= a.n);
  thread_local UnpackedGroup unpacked;
  const int64_t cols = a.cols;
  TokenScales ts;
  ts.d = a.d.as<float>();
  ts.s32 = a.s32.as<int32_t>();
  ts.d_stride = cols / a.block;
  ts.s_stride = cols / 32;
  const int k = w.type == DType::Q6_K ? 16 : 32;
  ts.blocks_per_scale = static_cast<int>(a.block / k);
  ts.blocks_per_sum = 32 / k;
  configure_tiles(k);
  for (int64_t g = g0; g < g1; ++g) {
    unpack_group(w.type, w.data + static_cast<size_t>(g) * w.group_bytes, cols, unpacked);
    const int64_t row0 = g * G;
    const int64_t valid = std::min(G, w.rows - row0);
    const auto tile = !unpacked.has_min       ? tile_group<MinTerm::None>
                      : unpacked.min_per_super ? tile_group<MinTerm::Subtract>
                                               : tile_group<MinTerm::Add>;
    for (int64_t t0 = 0; t0 < t_end; t0 += kTokens) {
      tile(unpacked, a.q.as<int8_t>(), cols, ts, t0, y + t0 * ldy + row0, ldy, valid);
    }
  }
  _tile_release();  // the OS need not save 8 KiB of tile state at each switch while we are idle
}

}  // namespace vireo::cpu::amx

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC diagnostic pop
#pragma GCC pop_options
#endif
