// A read-only memory map of a whole file: tensors are used in place, nothing is copied.
#pragma once
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

namespace vireo {

class MappedFile {
 public:
  MappedFile() = default;
  // Maps `path`; throws vireo::Error (NotFound / Io) naming the path and the reason.
  explicit MappedFile(const std::string& path);
  ~MappedFile();
  MappedFile(MappedFile&& other) noexcept;
  MappedFile& operator=(MappedFile&& other) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  std::span<const uint8_t> bytes() const { return {data_, size_}; }
  const std::string& path() const { return path_; }

 private:
  void release();
  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

// Tells the kernel that the whole pages inside [p, p + n) of a read-only file mapping are not
// needed now: they leave the process's resident set but stay in the page cache, and fault back
// in if touched. For weights a backend has copied into its own layout. Never call it on
// anonymous (heap) memory: those pages would read back as zeros.
void drop_resident_pages(const void* p, size_t n);

}  // namespace vireo
