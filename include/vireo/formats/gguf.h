// GGUF (versions 2 and 3): a validating reader over a memory map, and a streaming writer.
// Every count, length, offset and shape is checked before use; a bad file gives a vireo::Error
// that names the key or tensor and what was expected.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <variant>
#include <vector>

#include "vireo/core/dtype.h"
#include "vireo/core/mapped_file.h"

namespace vireo::gguf {

enum class ValueType : uint32_t {
  U8 = 0, I8 = 1, U16 = 2, I16 = 3, U32 = 4, I32 = 5, F32 = 6, BOOL = 7,
  STRING = 8, ARRAY = 9, U64 = 10, I64 = 11, F64 = 12,
};
std::string_view value_type_name(ValueType t);

struct Value;
struct Array {
  ValueType elem_type = ValueType::U8;
  std::vector<Value> items;
};

// One metadata value. Integers keep their declared type in `type`; the payload is widened.
struct Value {
  ValueType type = ValueType::U8;
  std::variant<uint64_t, int64_t, double, bool, std::string, Array> data;

  static Value u32(uint32_t v) { return {ValueType::U32, uint64_t{v}}; }
  static Value u64(uint64_t v) { return {ValueType::U64, v}; }
  static Value i32(int32_t v) { return {ValueType::I32, int64_t{v}}; }
  static Value f32(float v) { return {ValueType::F32, double{v}}; }
  static Value boolean(bool v) { return {ValueType::BOOL, v}; }
  static Value str(std::string v) { return {ValueType::STRING, std::move(v)}; }
  static Value strings(const std::vector<std::string>& v);
  static Value f32s(const std::vector<float>& v);
  static Value i32s(const std::vector<int32_t>& v);

  bool is_integer() const;
  bool is_number() const { return is_integer() || type == ValueType::F32 || type == ValueType::F64; }
};

struct TensorInfo {
  std::string name;
  DType type = DType::F32;
  std::vector<uint64_t> ne;   // GGML order: ne[0] is the contiguous (innermost) dimension
  uint64_t offset = 0;        // from the start of the data section
  uint64_t nbytes = 0;
  const uint8_t* data = nullptr;  // into the mapping (null for parse-only files)
  uint64_t n_elements() const;
};

class File {
 public:
  // Maps and validates a file. Throws vireo::Error.
  static File open(const std::string& path);
  // Validates bytes already in memory (tests, fuzzing). `bytes` must outlive the File.
  static File parse(std::span<const uint8_t> bytes, const std::string& name = "<memory>");

  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }
  uint64_t data_offset() const { return data_offset_; }
  uint64_t file_size() const { return size_; }
  const std::string& path() const { return path_; }
  // The mapping that tensor data points into (null for parse()): a model keeps this alive, not the
  // whole File, so the parsed metadata (a vocabulary's strings: megabytes) is freed after loading.
  std::shared_ptr<const MappedFile> mapping() const { return map_; }

  const std::vector<std::pair<std::string, Value>>& metadata() const { return metadata_; }
  const Value* find(const std::string& key) const;
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  const TensorInfo* find_tensor(const std::string& name) const;

  // Typed getters: throw a clear error when the key has another type; `fallback` when absent.
  std::string get_string(const std::string& key, const std::string& fallback = {}) const;
  uint64_t get_uint(const std::string& key, uint64_t fallback) const;
  double get_float(const std::string& key, double fallback) const;
  bool get_bool(const std::string& key, bool fallback) const;
  bool has(const std::string& key) const { return find(key) != nullptr; }
  std::vector<std::string> get_strings(const std::string& key) const;
  std::vector<double> get_numbers(const std::string& key) const;

 private:
  void parse_all(std::span<const uint8_t> bytes);

  std::shared_ptr<MappedFile> map_;
  std::string path_;
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  uint64_t data_offset_ = 0;
  uint64_t size_ = 0;
  std::vector<std::pair<std::string, Value>> metadata_;
  std::map<std::string, size_t, std::less<>> key_index_;
  std::vector<TensorInfo> tensors_;
  std::map<std::string, size_t, std::less<>> tensor_index_;
};

// Streams a GGUF v3 file: metadata and tensor infos first, then each tensor's bytes produced by
// its callback one at a time, so a 16 GB model is written with one tensor in memory. Writes to
// a temporary file and renames it into place: a failed write leaves nothing half-written.
class Writer {
 public:
  explicit Writer(uint64_t alignment = 32) : alignment_(alignment) {}
  void set(const std::string& key, Value value);
  // `fill` writes exactly nbytes into dst.
  void add_tensor(const std::string& name, DType type, std::vector<uint64_t> ne,
                  std::function<void(uint8_t* dst, uint64_t nbytes)> fill);
  // Serialises to memory (small files, tests).
  std::vector<uint8_t> to_bytes() const;
  void write(const std::string& path,
             const std::function<void(size_t done, size_t total)>& progress = {}) const;

 private:
  struct PendingTensor {
    std::string name;
    DType type;
    std::vector<uint64_t> ne;
    uint64_t nbytes;
    std::function<void(uint8_t*, uint64_t)> fill;
  };
  std::vector<uint8_t> header_bytes() const;
  uint64_t alignment_;
  std::vector<std::pair<std::string, Value>> metadata_;
  std::vector<PendingTensor> tensors_;
};

}  // namespace vireo::gguf
