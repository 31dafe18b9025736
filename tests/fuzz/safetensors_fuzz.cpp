// libFuzzer entry point for the safetensors reader (built with -DVIREO_FUZZ=ON; run by
// scripts/fuzz.sh). Parses the input; on success reads every tensor byte and every metadata
// entry and checks the reader's promises (sizes match shapes, tensors tile the data section).
// Only vireo::Error may escape parsing: anything else is a finding (it aborts).
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "vireo/core/error.h"
#include "vireo/formats/safetensors.h"

namespace {

volatile uint64_t g_sink = 0;

[[noreturn]] void broken(const char* what, const std::string& name) {
  std::fprintf(stderr, "safetensors_fuzz: invariant broken: %s (%s)\n", what, name.c_str());
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::optional<vireo::safetensors::File> file;
  try {
    file.emplace(vireo::safetensors::File::parse(std::span<const uint8_t>(data, size), "fuzz.safetensors"));
  } catch (const vireo::Error&) {
    return 0;
  }
  const auto& f = *file;
  uint64_t sum = 0;
  uint64_t covered = 0;
  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  for (const auto& t : f.tensors()) {
    if (f.find(t.name) != &t) broken("find does not return the tensor", t.name);
    if (t.elem_bytes == 0) broken("tensor with element size 0", t.name);
    unsigned __int128 want = t.elem_bytes;
    for (auto d : t.shape) want *= d;
    if (want != t.nbytes()) broken("byte size differs from shape x element size", t.name);
    if (t.n_elements() * t.elem_bytes != t.nbytes()) broken("n_elements() disagrees with nbytes()", t.name);
    if (t.nbytes() > 0 && (t.data < data || t.data + t.nbytes() > data + size)) {
      broken("tensor data outside the input", t.name);
    }
    for (uint64_t i = 0; i < t.nbytes(); ++i) sum += t.data[i];
    if (auto ft = t.float_type()) sum += static_cast<uint64_t>(*ft);
    covered += t.nbytes();
    ranges.emplace_back(t.begin, t.end);
  }
  // The tensors tile the data section: sorted, each begins where the previous ended.
  std::sort(ranges.begin(), ranges.end());
  uint64_t expected = 0;
  for (const auto& [b, e] : ranges) {
    if (b != expected) broken("tensors do not tile the data section", "");
    expected = e;
  }
  if (!f.tensors().empty() && f.tensors().front().data != nullptr) {
    const uint64_t data_start = static_cast<uint64_t>(f.tensors().front().data - data) - f.tensors().front().begin;
    if (data_start + covered != size) broken("bytes after the last tensor", "");
  }
  for (const auto& [k, v] : f.metadata()) sum += k.size() + v.size() + (v.empty() ? 0 : static_cast<uint8_t>(v[0]));
  g_sink = g_sink + sum;
  return 0;
}
