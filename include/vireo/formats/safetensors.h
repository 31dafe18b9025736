// safetensors: a validating reader over a memory map (single files and sharded folders).
// Rules enforced: header length at most 100 MB and inside the file, a JSON object with no
// duplicate names, known dtypes, sizes exactly shape x element size, offsets contiguous from 0
// and non-overlapping, and no bytes after the last tensor.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "vireo/core/dtype.h"
#include "vireo/core/mapped_file.h"

namespace vireo::safetensors {

inline constexpr uint64_t kMaxHeaderBytes = 100'000'000;

struct TensorInfo {
  std::string name;
  std::string dtype;  // as written: "F32", "BF16", "U32", ...
  uint32_t elem_bytes = 0;
  std::vector<uint64_t> shape;  // outermost first
  uint64_t begin = 0, end = 0;  // within the data section
  const uint8_t* data = nullptr;
  uint64_t nbytes() const { return end - begin; }
  uint64_t n_elements() const;
  // The vireo element type for float dtypes (F32/F16/BF16), nullopt for others.
  std::optional<DType> float_type() const;
};

class File {
 public:
  static File open(const std::string& path);
  static File parse(std::span<const uint8_t> bytes, const std::string& name = "<memory>");

  const std::string& path() const { return path_; }
  uint64_t file_size() const { return size_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  const TensorInfo* find(const std::string& name) const;

 private:
  void parse_all(std::span<const uint8_t> bytes);
  std::shared_ptr<MappedFile> map_;
  std::string path_;
  uint64_t size_ = 0;
  std::map<std::string, std::string> metadata_;
  std::vector<TensorInfo> tensors_;
  std::map<std::string, size_t> index_;
};

// All tensors of a model: one file, or the shards named by model.safetensors.index.json.
class Collection {
 public:
  // `path` is a .safetensors file or a folder holding one (model.safetensors) or an index.
  static Collection open(const std::string& path);
  const TensorInfo* find(const std::string& name) const;
  std::vector<const TensorInfo*> tensors() const;
  const std::vector<std::string>& files() const { return files_; }
  uint64_t total_bytes() const { return total_bytes_; }
  std::vector<std::shared_ptr<const void>> owners() const;

 private:
  std::vector<std::shared_ptr<File>> shards_;
  std::map<std::string, std::pair<size_t, const TensorInfo*>> by_name_;
  std::vector<std::string> files_;
  uint64_t total_bytes_ = 0;
};

// Writes a single safetensors file (tests, MLX quantization later).
struct OwnedTensor {
  std::string name;
  std::string dtype;
  std::vector<uint64_t> shape;
  std::vector<uint8_t> bytes;
};
std::vector<uint8_t> serialize(const std::vector<OwnedTensor>& tensors,
                               const std::map<std::string, std::string>& metadata = {});
void write_file(const std::string& path, const std::vector<OwnedTensor>& tensors,
                const std::map<std::string, std::string>& metadata = {});

}  // namespace vireo::safetensors
