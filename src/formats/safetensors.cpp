#include "vireo/formats/safetensors.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <set>

#include <nlohmann/json.hpp>

#include "vireo/core/error.h"
#include "vireo/core/utf8.h"
#include "json_input.h"

namespace vireo::safetensors {
namespace {

using nlohmann::json;

uint32_t dtype_bytes(const std::string& dtype) {
  static const std::map<std::string, uint32_t> kSizes = {
      {"F64", 8},  {"F32", 4}, {"F16", 2},     {"BF16", 2},    {"I64", 8}, {"I32", 4}, {"I16", 2}, {"I8", 1},
      {"U64", 8},  {"U32", 4}, {"U16", 2},     {"U8", 1},      {"BOOL", 1}, {"F8_E4M3", 1}, {"F8_E5M2", 1}};
  auto it = kSizes.find(dtype);
  return it == kSizes.end() ? 0 : it->second;
}

}  // namespace

uint64_t TensorInfo::n_elements() const {
  uint64_t n = 1;
  for (auto d : shape) n *= d;
  return n;
}

std::optional<DType> TensorInfo::float_type() const {
  if (dtype == "F32") return DType::F32;
  if (dtype == "F16") return DType::F16;
  if (dtype == "BF16") return DType::BF16;
  return std::nullopt;
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
  if (size_ < 8) fail(ErrorCode::InvalidFile, "{}: file has {} bytes, too short for a safetensors header", file, size_);
  uint64_t header_len;
  std::memcpy(&header_len, bytes.data(), 8);
  if (header_len > kMaxHeaderBytes) {
    fail(ErrorCode::InvalidFile, "{}: header length is {} bytes (at most {} allowed)", file, header_len, kMaxHeaderBytes);
  }
  if (header_len > size_ - 8) {
    fail(ErrorCode::InvalidFile, "{}: header length is {} bytes but only {} follow", file, header_len, size_ - 8);
  }
  if (header_len < 2 || bytes[8] != '{') {
    fail(ErrorCode::InvalidFile, "{}: header does not start with '{{'", file);
  }
  const std::string_view text(reinterpret_cast<const char*>(bytes.data() + 8), header_len);
  if (!is_valid_utf8(text)) fail(ErrorCode::InvalidFile, "{}: header is not valid UTF-8", file);
  const json header = parse_untrusted_json(text, file);
  if (!header.is_object()) fail(ErrorCode::InvalidFile, "{}: header is not a JSON object", file);
  const uint64_t data_start = 8 + header_len;
  const uint64_t data_size = size_ - data_start;

  for (const auto& [name, entry] : header.items()) {
    if (name == "__metadata__") {
      if (!entry.is_object()) fail(ErrorCode::InvalidFile, "{}: __metadata__ is not an object", file);
      for (const auto& [k, v] : entry.items()) {
        if (!v.is_string()) fail(ErrorCode::InvalidFile, "{}: __metadata__ value '{}' is not a string", file, k);
        metadata_[k] = v.get<std::string>();
      }
      continue;
    }
    if (!entry.is_object()) fail(ErrorCode::InvalidFile, "{}: entry for tensor '{}' is not an object", file, name);
    TensorInfo t;
    t.name = name;
    const auto dt = entry.find("dtype");
    if (dt == entry.end() || !dt->is_string()) fail(ErrorCode::InvalidFile, "{}: tensor '{}' has no dtype string", file, name);
    t.dtype = dt->get<std::string>();
    t.elem_bytes = dtype_bytes(t.dtype);
    if (t.elem_bytes == 0) fail(ErrorCode::Unsupported, "{}: tensor '{}' has unknown dtype '{}'", file, name, t.dtype);
    const auto sh = entry.find("shape");
    if (sh == entry.end() || !sh->is_array()) fail(ErrorCode::InvalidFile, "{}: tensor '{}' has no shape array", file, name);
    if (sh->size() > 8) fail(ErrorCode::InvalidFile, "{}: tensor '{}' has {} dimensions (at most 8)", file, name, sh->size());
    uint64_t n = 1;
    for (const auto& d : *sh) {
      if (!d.is_number_unsigned()) {
        // Name only the kind of a nested value: dumping it would recurse as deep as the attacker nests.
        fail(ErrorCode::InvalidFile, "{}: tensor '{}' has a shape entry {} that is not a non-negative integer", file,
             name, d.is_primitive() ? d.dump() : std::string(d.type_name()));
      }
      const uint64_t dim = d.get<uint64_t>();
      if (dim != 0 && n > std::numeric_limits<uint64_t>::max() / t.elem_bytes / dim) {
        fail(ErrorCode::InvalidFile, "{}: tensor '{}' has a shape whose byte size overflows", file, name);
      }
      n *= dim;
      t.shape.push_back(dim);
    }
    const auto off = entry.find("data_offsets");
    if (off == entry.end() || !off->is_array() || off->size() != 2 || !(*off)[0].is_number_unsigned() ||
        !(*off)[1].is_number_unsigned()) {
      fail(ErrorCode::InvalidFile, "{}: tensor '{}' needs data_offsets [begin, end] of non-negative integers", file, name);
    }
    t.begin = (*off)[0].get<uint64_t>();
    t.end = (*off)[1].get<uint64_t>();
    if (t.begin > t.end) {
      fail(ErrorCode::InvalidFile, "{}: tensor '{}' has data_offsets [{}, {}] that end before they begin", file, name,
           t.begin, t.end);
    }
    if (t.end > data_size) {
      fail(ErrorCode::InvalidFile, "{}: tensor '{}' has data_offsets [{}, {}] outside the data section of {} bytes",
           file, name, t.begin, t.end, data_size);
    }
    if (t.end - t.begin != n * t.elem_bytes) {
      fail(ErrorCode::InvalidFile, "{}: tensor '{}' has {} bytes but its shape and dtype {} need {}", file, name,
           t.end - t.begin, t.dtype, n * t.elem_bytes);
    }
    t.data = bytes.data() + data_start + t.begin;
    index_[name] = tensors_.size();
    tensors_.push_back(std::move(t));
  }

  // The data section must be tiled exactly: each tensor starts where the previous ended.
  std::vector<const TensorInfo*> order;
  for (const auto& t : tensors_) order.push_back(&t);
  std::sort(order.begin(), order.end(), [](auto* a, auto* b) { return a->begin < b->begin || (a->begin == b->begin && a->end < b->end); });
  uint64_t expected = 0;
  for (const auto* t : order) {
    if (t->begin < expected) {
      fail(ErrorCode::InvalidFile, "{}: tensor '{}' at [{}, {}] overlaps the tensor before it (ending at {})", file,
           t->name, t->begin, t->end, expected);
    }
    if (t->begin > expected) {
      fail(ErrorCode::InvalidFile, "{}: tensor '{}' starts at {} leaving a gap after {} (offsets must be contiguous)",
           file, t->name, t->begin, expected);
    }
    expected = t->end;
  }
  if (expected != data_size) {
    fail(ErrorCode::InvalidFile, "{}: {} bytes after the last tensor (data section is {} bytes, tensors cover {})",
         file, data_size - expected, data_size, expected);
  }
}

const TensorInfo* File::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

Collection Collection::open(const std::string& path) {
  namespace fs = std::filesystem;
  Collection c;
  std::vector<std::string> shard_paths;
  std::map<std::string, std::string> weight_map;  // tensor -> shard file name (from an index)
  std::error_code ec;
  if (!fs::is_directory(path, ec)) {
    shard_paths.push_back(path);
  } else {
    const fs::path dir(path);
    const fs::path index = dir / "model.safetensors.index.json";
    if (fs::exists(index, ec)) {
      std::ifstream in(index, std::ios::binary);
      const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      const json j = parse_untrusted_json(text, index.string());
      if (!j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object()) {
        fail(ErrorCode::InvalidFile, "{}: has no \"weight_map\" object", index.string());
      }
      std::set<std::string> names;
      for (const auto& [tensor, file] : j["weight_map"].items()) {
        if (!file.is_string()) fail(ErrorCode::InvalidFile, "{}: shard of '{}' is not a string", index.string(), tensor);
        const std::string f = file.get<std::string>();
        // Shards live beside the index: no paths, so an index cannot point anywhere else.
        if (f.empty() || f.find('/') != std::string::npos || f.find('\\') != std::string::npos || f == "." || f == "..") {
          fail(ErrorCode::InvalidFile, "{}: shard name '{}' of tensor '{}' is not a plain file name", index.string(), f, tensor);
        }
        weight_map[tensor] = f;
        names.insert(f);
      }
      for (const auto& n : names) shard_paths.push_back((dir / n).string());
    } else if (fs::exists(dir / "model.safetensors", ec)) {
      shard_paths.push_back((dir / "model.safetensors").string());
    } else {
      for (const auto& e : fs::directory_iterator(dir, ec)) {
        if (e.path().extension() == ".safetensors") shard_paths.push_back(e.path().string());
      }
      std::sort(shard_paths.begin(), shard_paths.end());
      if (shard_paths.empty()) fail(ErrorCode::NotFound, "{}: no .safetensors files in this folder", path);
    }
  }
  for (const auto& p : shard_paths) {
    auto shard = std::make_shared<File>(File::open(p));
    const size_t idx = c.shards_.size();
    for (const auto& t : shard->tensors()) {
      if (c.by_name_.count(t.name) != 0) {
        fail(ErrorCode::InvalidFile, "{}: tensor '{}' is also in {}", p, t.name, c.files_[c.by_name_[t.name].first]);
      }
      c.by_name_[t.name] = {idx, &t};
    }
    c.total_bytes_ += shard->file_size();
    c.files_.push_back(p);
    c.shards_.push_back(std::move(shard));
  }
  for (const auto& [tensor, file] : weight_map) {
    auto it = c.by_name_.find(tensor);
    if (it == c.by_name_.end()) fail(ErrorCode::NotFound, "index lists tensor '{}' in '{}', but that shard lacks it", tensor, file);
    const std::string actual = fs::path(c.files_[it->second.first]).filename().string();
    if (actual != file) fail(ErrorCode::InvalidFile, "index puts tensor '{}' in '{}' but it is in '{}'", tensor, file, actual);
  }
  return c;
}

const TensorInfo* Collection::find(const std::string& name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : it->second.second;
}

std::vector<const TensorInfo*> Collection::tensors() const {
  std::vector<const TensorInfo*> out;
  for (const auto& [name, v] : by_name_) out.push_back(v.second);
  return out;
}

std::vector<std::shared_ptr<const void>> Collection::owners() const {
  return {shards_.begin(), shards_.end()};
}

std::vector<uint8_t> serialize(const std::vector<OwnedTensor>& tensors, const std::map<std::string, std::string>& metadata) {
  json header = json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (const auto& t : tensors) {
    header[t.name] = {{"dtype", t.dtype}, {"shape", t.shape}, {"data_offsets", {offset, offset + t.bytes.size()}}};
    offset += t.bytes.size();
  }
  std::string text = header.dump();
  text.resize((text.size() + 7) / 8 * 8, ' ');  // keep the data section 8-byte aligned
  std::vector<uint8_t> out(8);
  const uint64_t len = text.size();
  std::memcpy(out.data(), &len, 8);
  out.insert(out.end(), text.begin(), text.end());
  for (const auto& t : tensors) out.insert(out.end(), t.bytes.begin(), t.bytes.end());
  return out;
}

void write_file(const std::string& path, const std::vector<OwnedTensor>& tensors,
                const std::map<std::string, std::string>& metadata) {
  const auto bytes = serialize(tensors, metadata);
  const std::string tmp = path + ".partial";
  {
    std::ofstream out(tmp, std::ios::binary);
    out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
    if (!out) fail(ErrorCode::Io, "writing '{}' failed", tmp);
  }
  std::filesystem::rename(tmp, path);
}

}  // namespace vireo::safetensors
