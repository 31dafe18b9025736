#include "vireo/runtime/kv_cache.h"

#include <algorithm>
#include <limits>
#include <utility>

#include "vireo/core/error.h"

namespace vireo {

KvCache::KvCache(const LanguageModel& model, int64_t n_cells, DType type)
    : n_cells_(blocks_for(n_cells) * kBlockSize), type_(type) {
  if (n_cells <= 0 || n_cells_ > std::numeric_limits<int32_t>::max()) {
    fail(ErrorCode::InvalidArgument, "KV cache of {} cells", n_cells);
  }
  if (type != DType::F16 && type != DType::F32 && type != DType::Q8_0) {
    fail(ErrorCode::Unsupported, "KV cache type must be f16, f32 or q8_0");
  }
  // Q8_0 rounds each head's keys and values in blocks of 32, so a head must be whole blocks.
  if (type == DType::Q8_0 && model.config().head_dim % 32 != 0) {
    fail(ErrorCode::Unsupported, "a q8_0 KV cache needs a head size that is a multiple of 32; this model's is {} (use f16)",
         model.config().head_dim);
  }
  Backend& be = model.backend();
  for (uint32_t l = 0; l < model.config().n_layer; ++l) {
    buffers_.k.push_back(be.alloc(type, n_cells_, model.kv_dim()));  // [n_cells, n_head_kv*head_dim]
    buffers_.v.push_back(be.alloc(type, n_cells_, model.kv_dim()));
  }
  // Written once now, so the whole cache is resident from the start: memory use is what it will
  // be under load, and no step pays for first-touch page faults.
  const std::vector<uint8_t> zeros(buffers_.k.empty() ? 0 : buffers_.k[0].row_bytes() * static_cast<size_t>(n_cells_), 0);
  for (uint32_t l = 0; l < model.config().n_layer; ++l) {
    be.upload(buffers_.k[l], zeros.data());
    be.upload(buffers_.v[l], zeros.data());
  }
  for (int64_t b = n_cells_ / kBlockSize; b-- > 0;) free_blocks_.push_back(static_cast<int32_t>(b));
}

uint64_t KvCache::bytes() const {
  uint64_t n = 0;
  for (const auto& b : buffers_.k) n += static_cast<uint64_t>(b.rows()) * b.row_bytes();
  return 2 * n;
}

const KvCache::Sequence& KvCache::get(SeqId seq) const {
  auto it = seqs_.find(seq);
  if (it == seqs_.end()) fail(ErrorCode::InvalidArgument, "KV cache has no sequence {}", seq);
  return it->second;
}
KvCache::Sequence& KvCache::get(SeqId seq) { return const_cast<Sequence&>(std::as_const(*this).get(seq)); }

SeqId KvCache::add_sequence(int32_t capacity) {
  if (capacity <= 0) fail(ErrorCode::InvalidArgument, "KV cache: a sequence needs a capacity > 0, got {}", capacity);
  if (capacity > free_cells()) {
    fail(ErrorCode::InvalidArgument, "KV cache is full: {} cells wanted, {} free of {}", capacity, free_cells(), n_cells_);
  }
  const SeqId id = next_id_++;
  seqs_.emplace(id, Sequence{});
  resize(id, capacity);  // takes the blocks: they are free, as checked
  return id;
}

void KvCache::remove_sequence(SeqId seq) {
  const Sequence& s = get(seq);
  free_blocks_.insert(free_blocks_.end(), s.blocks.rbegin(), s.blocks.rend());
  seqs_.erase(seq);
}

bool KvCache::resize(SeqId seq, int32_t capacity) {
  Sequence& s = get(seq);
  if (capacity < s.length || capacity <= 0) {
    fail(ErrorCode::InvalidArgument, "KV cache: resize sequence {} to {} cells, below its {} tokens", seq, capacity,
         s.length);
  }
  const auto want = static_cast<size_t>(blocks_for(capacity));
  if (want > s.blocks.size() + free_blocks_.size()) return false;
  while (s.blocks.size() > want) {
    free_blocks_.push_back(s.blocks.back());
    s.blocks.pop_back();
  }
  while (s.blocks.size() < want) {
    s.blocks.push_back(free_blocks_.back());
    free_blocks_.pop_back();
  }
  s.capacity = capacity;
  return true;
}

void KvCache::truncate(SeqId seq, int32_t length) {
  Sequence& s = get(seq);
  if (length < 0 || length > s.length) fail(ErrorCode::InvalidArgument, "KV cache: truncate to {} of {}", length, s.length);
  s.length = length;
}

void KvCache::append(ForwardBatch& batch, SeqId seq, std::span<const int32_t> tokens, bool want_logits) {
  Sequence& s = get(seq);
  if (tokens.empty()) return;
  if (static_cast<int64_t>(s.length) + static_cast<int64_t>(tokens.size()) > s.capacity) {
    fail(ErrorCode::InvalidArgument, "KV cache: sequence {} holds {} tokens, {} more exceed its capacity {}", seq,
         s.length, tokens.size(), s.capacity);
  }
  if (batch.kv_block_size != 0 && batch.kv_block_size != kBlockSize) {
    fail(ErrorCode::InvalidArgument, "KV cache: the batch already holds tables of {}-cell blocks", batch.kv_block_size);
  }
  batch.kv_block_size = kBlockSize;
  // The sequence's table, written once per batch (again only if it changed since).
  auto table = std::find_if(batch.kv_tables.begin(), batch.kv_tables.end(), [&](const auto& t) { return t.seq == seq; });
  const bool current = table != batch.kv_tables.end() && static_cast<size_t>(table->count) == s.blocks.size() &&
                       std::equal(s.blocks.begin(), s.blocks.end(), batch.kv_blocks.begin() + table->first);
  if (!current) {
    const ForwardBatch::KvTable t{seq, static_cast<int32_t>(batch.kv_blocks.size()), static_cast<int32_t>(s.blocks.size())};
    batch.kv_blocks.insert(batch.kv_blocks.end(), s.blocks.begin(), s.blocks.end());
    if (table != batch.kv_tables.end()) {
      *table = t;
    } else {
      batch.kv_tables.push_back(t);
      table = batch.kv_tables.end() - 1;
    }
  }
  const int32_t first_key = table->first * kBlockSize;  // the sequence's position 0 among the batch's keys
  for (int32_t t : tokens) {
    const int32_t pos = s.length++;
    batch.tokens.push_back(t);
    batch.positions.push_back(pos);
    batch.kv_cells.push_back(s.blocks[pos / kBlockSize] * kBlockSize + pos % kBlockSize);
    batch.kv_ranges.push_back(first_key);
    batch.kv_ranges.push_back(pos + 1);  // causal: itself and everything before
  }
  if (want_logits) batch.output_rows.push_back(static_cast<int32_t>(batch.tokens.size()) - 1);
}

}  // namespace vireo
