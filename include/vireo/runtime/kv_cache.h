// The KV cache: per-layer K and V buffers on the model's backend, shared by any number of
// sequences. It is paged: cells come in blocks of kBlockSize, and a sequence owns a list of blocks
// (its block table) anywhere in the cache, so that free cells never need to be contiguous. A batch
// may mix tokens of several sequences; each token is written at its sequence's next cell and
// attends, through the sequence's table, to the sequence's cells up to and including itself.
#pragma once
#include <cstdint>
#include <map>
#include <span>
#include <vector>

#include "vireo/models/language_model.h"

namespace vireo {

using SeqId = int32_t;

class KvCache {
 public:
  static constexpr int32_t kBlockSize = 16;  // cells per block: a power of two (kernels/kv_pages.h)

  // n_cells rows per layer, rounded up to whole blocks; type F16 (default, as llama.cpp) or F32.
  KvCache(const LanguageModel& model, int64_t n_cells, DType type = DType::F16);

  int64_t n_cells() const { return n_cells_; }
  DType type() const { return type_; }
  const KvBuffers& buffers() const { return buffers_; }
  uint64_t bytes() const;

  // A new, empty sequence with room for `capacity` tokens (its blocks are reserved now). Throws
  // InvalidArgument when fewer free cells are left.
  SeqId add_sequence(int32_t capacity);
  void remove_sequence(SeqId seq);
  bool has_sequence(SeqId seq) const { return seqs_.count(seq) != 0; }
  int32_t length(SeqId seq) const { return get(seq).length; }
  int32_t capacity(SeqId seq) const { return get(seq).capacity; }
  // Forgets the tokens from `length` on (for retries and prefix reuse).
  void truncate(SeqId seq, int32_t length);
  // Changes a sequence's capacity, never below its length: shrinking frees the blocks past it,
  // growing takes free blocks. Returns false (and changes nothing) when too few are free.
  bool resize(SeqId seq, int32_t capacity);
  // Cells in free blocks: a sequence of up to this capacity can be added.
  int64_t free_cells() const { return static_cast<int64_t>(free_blocks_.size()) * kBlockSize; }
  // A sequence's block table (block b holds cells [b * kBlockSize, (b + 1) * kBlockSize)).
  std::span<const int32_t> blocks(SeqId seq) const { return get(seq).blocks; }

  // Appends tokens of `seq` to `batch` at the sequence's next positions and advances its length;
  // when `want_logits` is set, also asks for the logits after the last of them. The batch's ranges
  // name keys through the sequence's table, which goes into batch.kv_blocks once per batch.
  void append(ForwardBatch& batch, SeqId seq, std::span<const int32_t> tokens, bool want_logits);

 private:
  struct Sequence {
    std::vector<int32_t> blocks;
    int32_t capacity = 0, length = 0;
  };
  const Sequence& get(SeqId seq) const;
  Sequence& get(SeqId seq);
  static int64_t blocks_for(int64_t cells) { return (cells + kBlockSize - 1) / kBlockSize; }

  int64_t n_cells_;
  DType type_;
  KvBuffers buffers_;
  std::map<SeqId, Sequence> seqs_;
  std::vector<int32_t> free_blocks_;  // taken from the back: the lowest blocks first
  SeqId next_id_ = 0;
};

}  // namespace vireo
