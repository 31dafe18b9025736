// Where attention finds key j: the KV cache is paged. Its rows are grouped in blocks of
// 2^block_shift cells; a batch's block tables are laid end to end in `blocks`, so that one range of
// "logical" keys [begin, begin + count) names a sequence's keys through its table. Logical key j
// lives in cache row blocks[j >> block_shift] * block_size + j % block_size. Without a table
// (blocks null: an encoder's own activations, a contiguous cache) key j is row j.
// Shared by the reference, CPU and CUDA kernels, so all three read the same rows.
#pragma once
#include <cstdint>

#if defined(__CUDACC__)
#define VIREO_HOST_DEVICE __host__ __device__
#else
#define VIREO_HOST_DEVICE
#endif

namespace vireo {

struct KvPages {
  const int32_t* blocks = nullptr;  // [n_keys >> block_shift] block of each logical block; null: identity
  int block_shift = 0;
  int64_t n_keys = 0;               // logical keys: every range lies in [0, n_keys)
  int64_t n_rows = 0;               // rows of the cache; a block outside it reads row 0's block

  VIREO_HOST_DEVICE int64_t row(int64_t j) const {
    if (blocks == nullptr) return j;
    const int64_t block = blocks[j >> block_shift];
    const int64_t first = block << block_shift;
    return (first >= 0 && first < n_rows ? first : 0) + (j & ((int64_t{1} << block_shift) - 1));
  }
};

}  // namespace vireo
