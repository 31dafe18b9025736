// Open-addressing hash tables for the tokenizer's hot lookups: token text -> id, and a BPE merge
// (left id, right id) -> (rank, merged id). Built once, read-only afterwards.
#pragma once
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

namespace vireo::tok {

inline uint64_t hash_bytes(std::string_view s) {
  // 8 bytes at a time, multiply-xorshift mixing; tokens are short, so this stays cheap.
  uint64_t h = 0x9E3779B97F4A7C15ull ^ (s.size() * 0xC2B2AE3D27D4EB4Full);
  size_t i = 0;
  for (; i + 8 <= s.size(); i += 8) {
    uint64_t v;
    std::memcpy(&v, s.data() + i, 8);
    h = (h ^ v) * 0xFF51AFD7ED558CCDull;
    h ^= h >> 32;
  }
  uint64_t tail = 0;
  std::memcpy(&tail, s.data() + i, s.size() - i);
  h = (h ^ tail) * 0xC4CEB9FE1A85EC53ull;
  return h ^ (h >> 29);
}

// Strings by id in one character buffer: a 128k-token vocabulary costs its bytes plus 4 per entry,
// not a std::string header (32 bytes) and often a heap block per entry.
class StringTable {
 public:
  void reserve(size_t n, size_t chars) {
    ends_.reserve(n);
    chars_.reserve(chars);
  }
  void push_back(std::string_view s) {
    chars_.append(s);
    ends_.push_back(static_cast<uint32_t>(chars_.size()));
  }
  std::string_view operator[](size_t i) const {
    const uint32_t begin = i == 0 ? 0 : ends_[i - 1];
    return {chars_.data() + begin, ends_[i] - begin};
  }
  size_t size() const { return ends_.size(); }
  void shrink_to_fit() {
    chars_.shrink_to_fit();
    ends_.shrink_to_fit();
  }

 private:
  std::string chars_;
  std::vector<uint32_t> ends_;
};

// Maps strings (owned by `strings`, indexed by id) to ids. Inserting a string already present
// replaces its id, as llama.cpp's token_to_id map does for duplicate tokens.
class StringIndex {
 public:
  void build(const StringTable* strings, size_t expected) {
    strings_ = strings;
    size_t cap = 16;
    while (cap < expected * 2) cap <<= 1;
    slots_.assign(cap, -1);
    mask_ = cap - 1;
  }
  void insert(int32_t id) {
    const std::string_view s = (*strings_)[id];
    for (size_t i = hash_bytes(s) & mask_;; i = (i + 1) & mask_) {
      if (slots_[i] < 0 || (*strings_)[slots_[i]] == s) {
        slots_[i] = id;
        return;
      }
    }
  }
  int32_t find(std::string_view s) const {
    for (size_t i = hash_bytes(s) & mask_;; i = (i + 1) & mask_) {
      const int32_t id = slots_[i];
      if (id < 0) return -1;
      if ((*strings_)[id] == s) return id;
    }
  }

 private:
  const StringTable* strings_ = nullptr;
  std::vector<int32_t> slots_;
  size_t mask_ = 0;
};

class MergeIndex {
 public:
  struct Value {
    int32_t rank = -1;
    int32_t merged = -1;
  };
  void reserve(size_t n) {
    size_t cap = 16;
    while (cap < n * 2) cap <<= 1;
    keys_.assign(cap, kEmpty);
    values_.assign(cap, Value{});
    mask_ = cap - 1;
  }
  // Keeps the first rank given for a pair (llama.cpp's emplace).
  void insert(int32_t left, int32_t right, Value v) {
    const uint64_t key = make_key(left, right);
    for (size_t i = mix(key) & mask_;; i = (i + 1) & mask_) {
      if (keys_[i] == kEmpty) {
        keys_[i] = key;
        values_[i] = v;
        return;
      }
      if (keys_[i] == key) return;
    }
  }
  const Value* find(int32_t left, int32_t right) const {
    const uint64_t key = make_key(left, right);
    for (size_t i = mix(key) & mask_;; i = (i + 1) & mask_) {
      if (keys_[i] == key) return &values_[i];
      if (keys_[i] == kEmpty) return nullptr;
    }
  }

 private:
  static constexpr uint64_t kEmpty = ~0ull;
  static uint64_t make_key(int32_t l, int32_t r) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(l)) << 32) | static_cast<uint32_t>(r);
  }
  static uint64_t mix(uint64_t k) {
    k = (k ^ (k >> 31)) * 0x7FB5D329728EA185ull;
    return k ^ (k >> 27);
  }
  std::vector<uint64_t> keys_;
  std::vector<Value> values_;
  size_t mask_ = 0;
};

}  // namespace vireo::tok
