// The KV cache: per-layer K and V buffers on the model's backend, shared by any number of
// sequences, each owning a contiguous range of cells (rows). A batch may mix tokens of several
// sequences; each token is written at its sequence's next cell and attends to the sequence's
// cells up to and including itself.
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
  // n_cells rows per layer; type F16 (default, as llama.cpp) or F32.
  KvCache(const LanguageModel& model, int64_t n_cells, DType type = DType::F16);

  int64_t n_cells() const { return n_cells_; }
  DType type() const { return type_; }
  const KvBuffers& buffers() const { return buffers_; }
  uint64_t bytes() const;

  // A new, empty sequence with room for `capacity` tokens. Throws InvalidArgument when no free
  // run of that many cells is left.
  SeqId add_sequence(int32_t capacity);
  void remove_sequence(SeqId seq);
  bool has_sequence(SeqId seq) const { return seqs_.count(seq) != 0; }
  int32_t length(SeqId seq) const { return get(seq).length; }
  int32_t capacity(SeqId seq) const { return get(seq).capacity; }
  // Forgets the tokens from `length` on (for retries and prefix reuse).
  void truncate(SeqId seq, int32_t length);
  // Changes the cells a sequence owns, in place: shrinking (never below its length) frees the tail;
  // growing succeeds only when the cells right after it are free. Returns whether it was done.
  bool resize(SeqId seq, int32_t capacity);
  // Free cells in the largest free run.
  int64_t largest_free_run() const;

  // Appends tokens of `seq` to `batch` at the sequence's next positions and advances its length;
  // when `want_logits` is set, also asks for the logits after the last of them.
  void append(ForwardBatch& batch, SeqId seq, std::span<const int32_t> tokens, bool want_logits);

 private:
  struct Sequence {
    int32_t begin = 0, capacity = 0, length = 0;
  };
  const Sequence& get(SeqId seq) const;
  Sequence& get(SeqId seq);

  int64_t n_cells_;
  DType type_;
  KvBuffers buffers_;
  std::map<SeqId, Sequence> seqs_;
  std::map<int32_t, int32_t> free_;  // begin -> length of each free run
  SeqId next_id_ = 0;
};

}  // namespace vireo
