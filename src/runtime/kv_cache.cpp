#include "vireo/runtime/kv_cache.h"

#include <iterator>
#include <limits>
#include <utility>

#include "vireo/core/error.h"

namespace vireo {

KvCache::KvCache(const LanguageModel& model, int64_t n_cells, DType type) : n_cells_(n_cells), type_(type) {
  if (n_cells <= 0 || n_cells > std::numeric_limits<int32_t>::max()) {
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
    buffers_.k.push_back(be.alloc(type, n_cells, model.kv_dim()));  // [n_cells, n_head_kv*head_dim]
    buffers_.v.push_back(be.alloc(type, n_cells, model.kv_dim()));
  }
  // Written once now, so the whole cache is resident from the start: memory use is what it will
  // be under load, and no step pays for first-touch page faults.
  const std::vector<uint8_t> zeros(buffers_.k.empty() ? 0 : buffers_.k[0].row_bytes() * static_cast<size_t>(n_cells), 0);
  for (uint32_t l = 0; l < model.config().n_layer; ++l) {
    be.upload(buffers_.k[l], zeros.data());
    be.upload(buffers_.v[l], zeros.data());
  }
  free_[0] = static_cast<int32_t>(n_cells);
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

int64_t KvCache::largest_free_run() const {
  int64_t best = 0;
  for (const auto& [begin, len] : free_) best = std::max<int64_t>(best, len);
  return best;
}

SeqId KvCache::add_sequence(int32_t capacity) {
  if (capacity <= 0) fail(ErrorCode::InvalidArgument, "KV cache: a sequence needs a capacity > 0, got {}", capacity);
  for (auto it = free_.begin(); it != free_.end(); ++it) {  // first fit
    if (it->second < capacity) continue;
    const int32_t begin = it->first, len = it->second;
    free_.erase(it);
    if (len > capacity) free_[begin + capacity] = len - capacity;
    const SeqId id = next_id_++;
    seqs_[id] = Sequence{begin, capacity, 0};
    return id;
  }
  fail(ErrorCode::InvalidArgument, "KV cache is full: no run of {} free cells (largest {} of {})", capacity,
       largest_free_run(), n_cells_);
}

void KvCache::remove_sequence(SeqId seq) {
  const Sequence s = get(seq);
  seqs_.erase(seq);
  int32_t begin = s.begin, len = s.capacity;
  // Merge with the free runs on either side.
  auto next = free_.lower_bound(begin);
  if (next != free_.end() && next->first == begin + len) {
    len += next->second;
    next = free_.erase(next);
  }
  if (next != free_.begin()) {
    auto prev = std::prev(next);
    if (prev->first + prev->second == begin) {
      begin = prev->first;
      len += prev->second;
      free_.erase(prev);
    }
  }
  free_[begin] = len;
}

bool KvCache::resize(SeqId seq, int32_t capacity) {
  Sequence& s = get(seq);
  if (capacity < s.length || capacity <= 0) {
    fail(ErrorCode::InvalidArgument, "KV cache: resize sequence {} to {} cells, below its {} tokens", seq, capacity,
         s.length);
  }
  if (capacity == s.capacity) return true;
  const int32_t end = s.begin + s.capacity;
  if (capacity < s.capacity) {  // give the tail back, merged with a free run after it
    int32_t len = s.capacity - capacity;
    auto next = free_.find(end);
    if (next != free_.end()) {
      len += next->second;
      free_.erase(next);
    }
    free_[s.begin + capacity] = len;
    s.capacity = capacity;
    return true;
  }
  auto next = free_.find(end);
  const int32_t extra = capacity - s.capacity;
  if (next == free_.end() || next->second < extra) return false;
  const int32_t left = next->second - extra;
  free_.erase(next);
  if (left > 0) free_[end + extra] = left;
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
  for (int32_t t : tokens) {
    const int32_t pos = s.length++;
    batch.tokens.push_back(t);
    batch.positions.push_back(pos);
    batch.kv_cells.push_back(s.begin + pos);
    batch.kv_ranges.push_back(s.begin);
    batch.kv_ranges.push_back(pos + 1);  // causal: itself and everything before
  }
  if (want_logits) batch.output_rows.push_back(static_cast<int32_t>(batch.tokens.size()) - 1);
}

}  // namespace vireo
