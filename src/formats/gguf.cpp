#include "vireo/formats/gguf.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>

#include "vireo/core/error.h"
#include "vireo/core/utf8.h"

namespace vireo::gguf {
namespace {

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" read little-endian
constexpr uint32_t kMaxDims = 4;
constexpr uint32_t kMaxArrayDepth = 3;
constexpr uint64_t kMaxKeyLength = 65535;
constexpr uint64_t kMaxAlignment = 1u << 20;

bool valid_value_type(uint32_t t) { return t <= static_cast<uint32_t>(ValueType::F64); }

// Size on disk of a scalar value, 0 for strings and arrays.
uint64_t scalar_size(ValueType t) {
  switch (t) {
    case ValueType::U8: case ValueType::I8: case ValueType::BOOL: return 1;
    case ValueType::U16: case ValueType::I16: return 2;
    case ValueType::U32: case ValueType::I32: case ValueType::F32: return 4;
    case ValueType::U64: case ValueType::I64: case ValueType::F64: return 8;
    default: return 0;
  }
}

// Bounds-checked little-endian cursor over the file's bytes. `what` names the field being read
// so that a truncated file says where it ended.
class Cursor {
 public:
  Cursor(std::span<const uint8_t> bytes, const std::string& name) : bytes_(bytes), name_(name) {}

  uint64_t pos() const { return pos_; }
  uint64_t remaining() const { return bytes_.size() - pos_; }

  template <typename T>
  T read(const char* what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, bytes_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }

  std::string read_string(const std::string& what) {
    const auto len = read<uint64_t>(what.c_str());
    if (len > remaining()) {
      fail(ErrorCode::InvalidFile,
           "{}: {} has length {} but only {} bytes remain in the file (offset {})", name_, what,
           len, remaining(), pos_);
    }
    std::string s(reinterpret_cast<const char*>(bytes_.data() + pos_), len);
    pos_ += len;
    return s;
  }

  void need(uint64_t n, const char* what) const {
    if (n > remaining()) {
      fail(ErrorCode::InvalidFile, "{}: file truncated while reading {} at offset {} (need {} bytes, {} remain)",
           name_, what, pos_, n, remaining());
    }
  }

 private:
  std::span<const uint8_t> bytes_;
  const std::string& name_;
  uint64_t pos_ = 0;
};

Value read_value(Cursor& cur, ValueType type, const std::string& key, const std::string& file,
                 uint32_t depth);

Value read_array(Cursor& cur, const std::string& key, const std::string& file, uint32_t depth) {
  if (depth >= kMaxArrayDepth) {
    fail(ErrorCode::InvalidFile, "{}: key '{}' nests arrays deeper than {}", file, key, kMaxArrayDepth);
  }
  const auto raw_type = cur.read<uint32_t>("array element type");
  if (!valid_value_type(raw_type)) {
    fail(ErrorCode::InvalidFile, "{}: key '{}' is an array of unknown value type {}", file, key, raw_type);
  }
  const auto elem = static_cast<ValueType>(raw_type);
  const auto count = cur.read<uint64_t>("array length");
  // Every element takes at least one byte (strings and arrays take at least 8): a count larger
  // than the bytes left cannot be real, and must not drive an allocation.
  const uint64_t min_elem = elem == ValueType::STRING || elem == ValueType::ARRAY ? 8 : scalar_size(elem);
  if (count > cur.remaining() / min_elem) {
    fail(ErrorCode::InvalidFile,
         "{}: key '{}' claims an array of {} {} values but only {} bytes remain", file, key, count,
         value_type_name(elem), cur.remaining());
  }
  Array arr;
  arr.elem_type = elem;
  arr.items.reserve(count);
  for (uint64_t i = 0; i < count; ++i) arr.items.push_back(read_value(cur, elem, key, file, depth + 1));
  return Value{ValueType::ARRAY, std::move(arr)};
}

Value read_value(Cursor& cur, ValueType type, const std::string& key, const std::string& file,
                 uint32_t depth) {
  switch (type) {
    case ValueType::U8: return {type, uint64_t{cur.read<uint8_t>("u8 value")}};
    case ValueType::I8: return {type, int64_t{cur.read<int8_t>("i8 value")}};
    case ValueType::U16: return {type, uint64_t{cur.read<uint16_t>("u16 value")}};
    case ValueType::I16: return {type, int64_t{cur.read<int16_t>("i16 value")}};
    case ValueType::U32: return {type, uint64_t{cur.read<uint32_t>("u32 value")}};
    case ValueType::I32: return {type, int64_t{cur.read<int32_t>("i32 value")}};
    case ValueType::U64: return {type, cur.read<uint64_t>("u64 value")};
    case ValueType::I64: return {type, cur.read<int64_t>("i64 value")};
    case ValueType::F32: return {type, double{cur.read<float>("f32 value")}};
    case ValueType::F64: return {type, cur.read<double>("f64 value")};
    case ValueType::BOOL: {
      const auto b = cur.read<uint8_t>("bool value");
      if (b > 1) fail(ErrorCode::InvalidFile, "{}: key '{}' has bool value {} (expected 0 or 1)", file, key, b);
      return {type, b == 1};
    }
    case ValueType::STRING: return {type, cur.read_string("string value of key '" + key + "'")};
    case ValueType::ARRAY: return read_array(cur, key, file, depth);
  }
  fail(ErrorCode::InvalidFile, "{}: key '{}' has unknown value type {}", file, key, static_cast<uint32_t>(type));
}

uint64_t checked_mul(uint64_t a, uint64_t b, const std::string& file, const std::string& tensor) {
  if (a != 0 && b > std::numeric_limits<int64_t>::max() / a) {
    fail(ErrorCode::InvalidFile, "{}: tensor '{}' has a shape whose element count overflows", file, tensor);
  }
  return a * b;
}

uint64_t align_up(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

}  // namespace

std::string_view value_type_name(ValueType t) {
  static constexpr std::string_view kNames[] = {"u8",  "i8",   "u16",    "i16",   "u32", "i32", "f32",
                                                "bool", "string", "array", "u64", "i64", "f64"};
  const auto i = static_cast<uint32_t>(t);
  return i < std::size(kNames) ? kNames[i] : std::string_view("unknown");
}

bool Value::is_integer() const {
  switch (type) {
    case ValueType::U8: case ValueType::I8: case ValueType::U16: case ValueType::I16:
    case ValueType::U32: case ValueType::I32: case ValueType::U64: case ValueType::I64: return true;
    default: return false;
  }
}

Value Value::strings(const std::vector<std::string>& v) {
  Array a{ValueType::STRING, {}};
  a.items.reserve(v.size());
  for (const auto& s : v) a.items.push_back(str(s));
  return {ValueType::ARRAY, std::move(a)};
}
Value Value::f32s(const std::vector<float>& v) {
  Array a{ValueType::F32, {}};
  a.items.reserve(v.size());
  for (float x : v) a.items.push_back(f32(x));
  return {ValueType::ARRAY, std::move(a)};
}
Value Value::i32s(const std::vector<int32_t>& v) {
  Array a{ValueType::I32, {}};
  a.items.reserve(v.size());
  for (int32_t x : v) a.items.push_back(i32(x));
  return {ValueType::ARRAY, std::move(a)};
}

uint64_t TensorInfo::n_elements() const {
  uint64_t n = 1;
  for (auto d : ne) n *= d;
  return n;
}

File File::open(const std::string& path) {
  File f;
  f.map_ = std::make_shared<MappedFile>(path);
  f.path_ = path;
  f.parse_all(f.map_->bytes());
  return f;
}

File File::parse(std::span<const uint8_t> bytes, const std::string& name) {
  File f;
  f.path_ = name;
  f.parse_all(bytes);
  return f;
}

void File::parse_all(std::span<const uint8_t> bytes) {
  const std::string& file = path_;
  size_ = bytes.size();
  Cursor cur(bytes, file);

  const auto magic = cur.read<uint32_t>("magic");
  if (magic != kMagic) {
    fail(ErrorCode::InvalidFile, "{}: not a GGUF file (magic is 0x{:08x}, expected 'GGUF')", file, magic);
  }
  version_ = cur.read<uint32_t>("version");
  if (version_ == 1) {
    fail(ErrorCode::Unsupported, "{}: GGUF version 1 is obsolete; convert it with a current llama.cpp", file);
  }
  if (version_ != 2 && version_ != 3) {
    // A big-endian file reads as a byte-swapped version number.
    const bool swapped = version_ == 0x02000000 || version_ == 0x03000000;
    fail(ErrorCode::Unsupported, "{}: GGUF version {} is not supported (expected 2 or 3){}", file,
         version_, swapped ? "; this looks like a big-endian file" : "");
  }
  const auto n_tensors = cur.read<uint64_t>("tensor count");
  const auto n_kv = cur.read<uint64_t>("metadata count");
  // Minimal on-disk sizes: a key/value pair is 8+1+4+1 bytes, a tensor info 8+1+4+8+4+8.
  if (n_kv > cur.remaining() / 14) {
    fail(ErrorCode::InvalidFile, "{}: header claims {} metadata entries, more than the file can hold", file, n_kv);
  }
  if (n_tensors > cur.remaining() / 33) {
    fail(ErrorCode::InvalidFile, "{}: header claims {} tensors, more than the file can hold", file, n_tensors);
  }

  metadata_.reserve(n_kv);
  for (uint64_t i = 0; i < n_kv; ++i) {
    std::string key = cur.read_string(fmt::format("key of metadata entry {}", i));
    if (key.empty() || key.size() > kMaxKeyLength) {
      fail(ErrorCode::InvalidFile, "{}: metadata entry {} has a key of length {} (expected 1 to {})", file, i,
           key.size(), kMaxKeyLength);
    }
    if (!is_valid_utf8(key)) {
      fail(ErrorCode::InvalidFile, "{}: metadata entry {} has a key that is not valid UTF-8: {}", file, i,
           quote_for_error(key));
    }
    if (key_index_.count(key) != 0) {
      fail(ErrorCode::InvalidFile, "{}: duplicate metadata key '{}'", file, key);
    }
    const auto raw_type = cur.read<uint32_t>("metadata value type");
    if (!valid_value_type(raw_type)) {
      fail(ErrorCode::InvalidFile, "{}: key '{}' has unknown value type {} (expected 0 to 12)", file, key, raw_type);
    }
    Value v = read_value(cur, static_cast<ValueType>(raw_type), key, file, 0);
    key_index_.emplace(key, metadata_.size());
    metadata_.emplace_back(std::move(key), std::move(v));
  }

  if (const Value* a = find("general.alignment")) {
    if (a->type != ValueType::U32) {
      fail(ErrorCode::InvalidFile, "{}: general.alignment has type {} (expected u32)", file,
           value_type_name(a->type));
    }
    alignment_ = std::get<uint64_t>(a->data);
    if (alignment_ == 0 || (alignment_ & (alignment_ - 1)) != 0 || alignment_ > kMaxAlignment) {
      fail(ErrorCode::InvalidFile, "{}: general.alignment is {} (expected a power of two up to {})", file,
           alignment_, kMaxAlignment);
    }
  }

  tensors_.reserve(n_tensors);
  for (uint64_t i = 0; i < n_tensors; ++i) {
    TensorInfo t;
    t.name = cur.read_string(fmt::format("name of tensor {}", i));
    if (t.name.empty() || t.name.size() > kMaxKeyLength || !is_valid_utf8(t.name)) {
      fail(ErrorCode::InvalidFile, "{}: tensor {} has an invalid name {} (expected 1 to {} bytes of UTF-8)", file,
           i, quote_for_error(t.name), kMaxKeyLength);
    }
    if (tensor_index_.count(t.name) != 0) fail(ErrorCode::InvalidFile, "{}: duplicate tensor '{}'", file, t.name);
    const auto n_dims = cur.read<uint32_t>("tensor dimension count");
    if (n_dims == 0 || n_dims > kMaxDims) {
      fail(ErrorCode::InvalidFile, "{}: tensor '{}' has {} dimensions (expected 1 to {})", file, t.name, n_dims,
           kMaxDims);
    }
    uint64_t n_elem = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      const auto dim = cur.read<uint64_t>("tensor dimension");
      if (dim == 0 || dim > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        fail(ErrorCode::InvalidFile, "{}: tensor '{}' dimension {} is {} (expected 1 to 2^63-1)", file, t.name, d,
             dim);
      }
      n_elem = checked_mul(n_elem, dim, file, t.name);
      t.ne.push_back(dim);
    }
    const auto raw_type = cur.read<uint32_t>("tensor type");
    const auto traits = dtype_traits(static_cast<DType>(raw_type));
    if (!traits || raw_type >= 1000) {
      fail(ErrorCode::Unsupported, "{}: tensor '{}' has type {} (id {}), which vireo does not support", file,
           t.name, ggml_type_name(raw_type), raw_type);
    }
    t.type = static_cast<DType>(raw_type);
    if (t.ne[0] % traits->block_elems != 0) {
      fail(ErrorCode::InvalidFile, "{}: tensor '{}' of type {} has a row of {} elements, not a multiple of the block size {}",
           file, t.name, traits->name, t.ne[0], traits->block_elems);
    }
    const uint64_t n_blocks = n_elem / traits->block_elems;
    if (n_blocks > std::numeric_limits<uint64_t>::max() / traits->block_bytes) {
      fail(ErrorCode::InvalidFile, "{}: tensor '{}' has {} elements of type {}, whose byte size overflows", file,
           t.name, n_elem, traits->name);
    }
    t.nbytes = n_blocks * traits->block_bytes;
    t.offset = cur.read<uint64_t>("tensor data offset");
    if (t.offset % alignment_ != 0) {
      fail(ErrorCode::InvalidFile, "{}: tensor '{}' has offset {}, not a multiple of the alignment {}", file,
           t.name, t.offset, alignment_);
    }
    tensor_index_.emplace(t.name, tensors_.size());
    tensors_.push_back(std::move(t));
  }

  data_offset_ = align_up(cur.pos(), alignment_);
  const uint64_t data_size = data_offset_ <= size_ ? size_ - data_offset_ : 0;
  if (!tensors_.empty() && data_offset_ > size_) {
    fail(ErrorCode::InvalidFile, "{}: file ends at {} before the tensor data section at {}", file, size_, data_offset_);
  }

  // Offsets must lie inside the data section and tensors must not overlap.
  std::vector<const TensorInfo*> by_offset;
  by_offset.reserve(tensors_.size());
  for (auto& t : tensors_) {
    if (t.offset > data_size || t.nbytes > data_size - t.offset) {
      fail(ErrorCode::InvalidFile,
           "{}: tensor '{}' needs {} bytes at offset {} of the data section, which has only {} bytes", file, t.name,
           t.nbytes, t.offset, data_size);
    }
    if (t.nbytes > 0) t.data = bytes.data() + data_offset_ + t.offset;
    by_offset.push_back(&t);
  }
  std::sort(by_offset.begin(), by_offset.end(),
            [](const TensorInfo* a, const TensorInfo* b) { return a->offset < b->offset; });
  for (size_t i = 1; i < by_offset.size(); ++i) {
    const auto* prev = by_offset[i - 1];
    if (prev->offset + prev->nbytes > by_offset[i]->offset) {
      fail(ErrorCode::InvalidFile, "{}: tensors '{}' and '{}' overlap (bytes {}..{} and {}..)", file, prev->name,
           by_offset[i]->name, prev->offset, prev->offset + prev->nbytes, by_offset[i]->offset);
    }
  }
}

const Value* File::find(const std::string& key) const {
  auto it = key_index_.find(key);
  return it == key_index_.end() ? nullptr : &metadata_[it->second].second;
}

const TensorInfo* File::find_tensor(const std::string& name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

std::string File::get_string(const std::string& key, const std::string& fallback) const {
  const Value* v = find(key);
  if (v == nullptr) return fallback;
  if (v->type != ValueType::STRING) {
    fail(ErrorCode::InvalidFile, "{}: key '{}' has type {} (expected string)", path_, key, value_type_name(v->type));
  }
  return std::get<std::string>(v->data);
}

uint64_t File::get_uint(const std::string& key, uint64_t fallback) const {
  const Value* v = find(key);
  if (v == nullptr) return fallback;
  if (!v->is_integer()) {
    fail(ErrorCode::InvalidFile, "{}: key '{}' has type {} (expected an integer)", path_, key,
         value_type_name(v->type));
  }
  if (const auto* s = std::get_if<int64_t>(&v->data)) {
    if (*s < 0) fail(ErrorCode::InvalidFile, "{}: key '{}' is {} (expected a non-negative integer)", path_, key, *s);
    return static_cast<uint64_t>(*s);
  }
  return std::get<uint64_t>(v->data);
}

double File::get_float(const std::string& key, double fallback) const {
  const Value* v = find(key);
  if (v == nullptr) return fallback;
  if (const auto* d = std::get_if<double>(&v->data)) return *d;
  if (const auto* u = std::get_if<uint64_t>(&v->data)) return static_cast<double>(*u);
  if (const auto* s = std::get_if<int64_t>(&v->data)) return static_cast<double>(*s);
  fail(ErrorCode::InvalidFile, "{}: key '{}' has type {} (expected a number)", path_, key, value_type_name(v->type));
}

bool File::get_bool(const std::string& key, bool fallback) const {
  const Value* v = find(key);
  if (v == nullptr) return fallback;
  if (v->type != ValueType::BOOL) {
    fail(ErrorCode::InvalidFile, "{}: key '{}' has type {} (expected bool)", path_, key, value_type_name(v->type));
  }
  return std::get<bool>(v->data);
}

std::vector<std::string> File::get_strings(const std::string& key) const {
  const Value* v = find(key);
  if (v == nullptr) return {};
  const auto* arr = std::get_if<Array>(&v->data);
  if (arr == nullptr || arr->elem_type != ValueType::STRING) {
    fail(ErrorCode::InvalidFile, "{}: key '{}' is not an array of strings", path_, key);
  }
  std::vector<std::string> out;
  out.reserve(arr->items.size());
  for (const auto& item : arr->items) out.push_back(std::get<std::string>(item.data));
  return out;
}

std::vector<double> File::get_numbers(const std::string& key) const {
  const Value* v = find(key);
  if (v == nullptr) return {};
  const auto* arr = std::get_if<Array>(&v->data);
  if (arr == nullptr || arr->elem_type == ValueType::STRING || arr->elem_type == ValueType::ARRAY ||
      arr->elem_type == ValueType::BOOL) {
    fail(ErrorCode::InvalidFile, "{}: key '{}' is not an array of numbers", path_, key);
  }
  std::vector<double> out;
  out.reserve(arr->items.size());
  for (const auto& item : arr->items) {
    std::visit(
        [&](const auto& x) {
          using T = std::decay_t<decltype(x)>;
          if constexpr (std::is_arithmetic_v<T>) out.push_back(static_cast<double>(x));
        },
        item.data);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Writer

namespace {

class ByteSink {
 public:
  template <typename T>
  void put(T v) {
    const auto* p = reinterpret_cast<const uint8_t*>(&v);
    bytes.insert(bytes.end(), p, p + sizeof(T));
  }
  void put_string(const std::string& s) {
    put<uint64_t>(s.size());
    bytes.insert(bytes.end(), s.begin(), s.end());
  }
  void put_value(const Value& v) {
    switch (v.type) {
      case ValueType::U8: put<uint8_t>(static_cast<uint8_t>(std::get<uint64_t>(v.data))); break;
      case ValueType::I8: put<int8_t>(static_cast<int8_t>(std::get<int64_t>(v.data))); break;
      case ValueType::U16: put<uint16_t>(static_cast<uint16_t>(std::get<uint64_t>(v.data))); break;
      case ValueType::I16: put<int16_t>(static_cast<int16_t>(std::get<int64_t>(v.data))); break;
      case ValueType::U32: put<uint32_t>(static_cast<uint32_t>(std::get<uint64_t>(v.data))); break;
      case ValueType::I32: put<int32_t>(static_cast<int32_t>(std::get<int64_t>(v.data))); break;
      case ValueType::U64: put<uint64_t>(std::get<uint64_t>(v.data)); break;
      case ValueType::I64: put<int64_t>(std::get<int64_t>(v.data)); break;
      case ValueType::F32: put<float>(static_cast<float>(std::get<double>(v.data))); break;
      case ValueType::F64: put<double>(std::get<double>(v.data)); break;
      case ValueType::BOOL: put<uint8_t>(std::get<bool>(v.data) ? 1 : 0); break;
      case ValueType::STRING: put_string(std::get<std::string>(v.data)); break;
      case ValueType::ARRAY: {
        const auto& arr = std::get<Array>(v.data);
        put<uint32_t>(static_cast<uint32_t>(arr.elem_type));
        put<uint64_t>(arr.items.size());
        for (const auto& item : arr.items) {
          VIREO_CHECK(item.type == arr.elem_type);
          put_value(item);
        }
        break;
      }
    }
  }
  std::vector<uint8_t> bytes;
};

}  // namespace

void Writer::set(const std::string& key, Value value) {
  for (auto& [k, v] : metadata_) {
    if (k == key) {
      v = std::move(value);
      return;
    }
  }
  metadata_.emplace_back(key, std::move(value));
}

void Writer::add_tensor(const std::string& name, DType type, std::vector<uint64_t> ne,
                        std::function<void(uint8_t*, uint64_t)> fill) {
  const auto traits = dtype_traits(type);
  if (!traits) fail(ErrorCode::Unsupported, "cannot write tensor '{}': unsupported type id {}", name, static_cast<uint32_t>(type));
  if (ne.empty() || ne.size() > kMaxDims) fail(ErrorCode::InvalidArgument, "tensor '{}': {} dimensions", name, ne.size());
  if (ne[0] % traits->block_elems != 0) {
    fail(ErrorCode::InvalidArgument, "tensor '{}': row of {} is not a multiple of {}'s block size {}", name, ne[0],
         traits->name, traits->block_elems);
  }
  for (const auto& t : tensors_) {
    if (t.name == name) fail(ErrorCode::InvalidArgument, "tensor '{}' added twice", name);
  }
  uint64_t n = 1;
  for (auto d : ne) n *= d;
  tensors_.push_back({name, type, std::move(ne), n / traits->block_elems * traits->block_bytes, std::move(fill)});
}

std::vector<uint8_t> Writer::header_bytes() const {
  ByteSink out;
  out.put<uint32_t>(kMagic);
  out.put<uint32_t>(3);
  out.put<uint64_t>(tensors_.size());
  // general.alignment is written only when it differs from the default, as llama.cpp does.
  const bool write_alignment = alignment_ != 32;
  out.put<uint64_t>(metadata_.size() + (write_alignment ? 1 : 0));
  if (write_alignment) {
    out.put_string("general.alignment");
    out.put<uint32_t>(static_cast<uint32_t>(ValueType::U32));
    out.put<uint32_t>(static_cast<uint32_t>(alignment_));
  }
  for (const auto& [k, v] : metadata_) {
    out.put_string(k);
    out.put<uint32_t>(static_cast<uint32_t>(v.type));
    out.put_value(v);
  }
  uint64_t offset = 0;
  for (const auto& t : tensors_) {
    out.put_string(t.name);
    out.put<uint32_t>(static_cast<uint32_t>(t.ne.size()));
    for (auto d : t.ne) out.put<uint64_t>(d);
    out.put<uint32_t>(static_cast<uint32_t>(t.type));
    out.put<uint64_t>(offset);
    offset = align_up(offset + t.nbytes, alignment_);
  }
  out.bytes.resize(align_up(out.bytes.size(), alignment_), 0);
  return std::move(out.bytes);
}

std::vector<uint8_t> Writer::to_bytes() const {
  std::vector<uint8_t> bytes = header_bytes();
  for (const auto& t : tensors_) {
    const size_t start = bytes.size();
    bytes.resize(start + align_up(t.nbytes, alignment_), 0);
    t.fill(bytes.data() + start, t.nbytes);
  }
  return bytes;
}

void Writer::write(const std::string& path, const std::function<void(size_t, size_t)>& progress) const {
  const std::string tmp = path + ".partial";
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (f == nullptr) fail(ErrorCode::Io, "cannot create '{}': {}", tmp, std::strerror(errno));
  auto write_or_fail = [&](const void* p, size_t n) {
    if (n != 0 && std::fwrite(p, 1, n, f) != n) {
      std::fclose(f);
      std::remove(tmp.c_str());
      fail(ErrorCode::Io, "writing '{}' failed: {}", tmp, std::strerror(errno));
    }
  };
  const auto header = header_bytes();
  write_or_fail(header.data(), header.size());
  std::vector<uint8_t> buf;
  for (size_t i = 0; i < tensors_.size(); ++i) {
    const auto& t = tensors_[i];
    buf.assign(align_up(t.nbytes, alignment_), 0);
    try {
      t.fill(buf.data(), t.nbytes);
    } catch (...) {
      std::fclose(f);
      std::remove(tmp.c_str());
      throw;
    }
    write_or_fail(buf.data(), buf.size());
    if (progress) progress(i + 1, tensors_.size());
  }
  if (std::fclose(f) != 0) {
    std::remove(tmp.c_str());
    fail(ErrorCode::Io, "closing '{}' failed: {}", tmp, std::strerror(errno));
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) fail(ErrorCode::Io, "cannot move '{}' to '{}': {}", tmp, path, ec.message());
}

}  // namespace vireo::gguf
