// libFuzzer entry point for the GGUF reader (built with -DVIREO_FUZZ=ON; run by scripts/fuzz.sh).
// Parses the input; on success reads every tensor byte and every metadata value, and calls the
// typed getters on every key. Only vireo::Error may escape parsing: any other exception, a
// sanitizer report or a broken invariant below is a finding (it aborts).
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <span>
#include <string>
#include <type_traits>
#include <variant>

#include "vireo/core/error.h"
#include "vireo/formats/gguf.h"

namespace {

volatile uint64_t g_sink = 0;

[[noreturn]] void broken(const char* what, const std::string& name) {
  std::fprintf(stderr, "gguf_fuzz: invariant broken: %s (%s)\n", what, name.c_str());
  std::abort();
}

uint64_t touch(const vireo::gguf::Value& v) {
  uint64_t h = static_cast<uint64_t>(v.type);
  std::visit(
      [&](const auto& x) {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, std::string>) {
          for (char c : x) h = h * 31 + static_cast<uint8_t>(c);
        } else if constexpr (std::is_same_v<T, vireo::gguf::Array>) {
          for (const auto& item : x.items) {
            if (item.type != x.elem_type) broken("array item type differs from the element type", "");
            h = h * 31 + touch(item);
          }
        } else if constexpr (std::is_same_v<T, double>) {
          h += static_cast<uint64_t>(x == x);  // no float->int conversion of arbitrary values
        } else {
          h += static_cast<uint64_t>(x);
        }
      },
      v.data);
  return h;
}

// The getters may refuse a key of the wrong type (vireo::Error); nothing else may happen.
void call_getters(const vireo::gguf::File& f, const std::string& key) {
  try { g_sink = g_sink + f.get_string(key).size(); } catch (const vireo::Error&) {}
  try { g_sink = g_sink + f.get_uint(key, 0); } catch (const vireo::Error&) {}
  try { g_sink = g_sink + static_cast<uint64_t>(f.get_float(key, 0.0) == 0.0); } catch (const vireo::Error&) {}
  try { g_sink = g_sink + f.get_bool(key, false); } catch (const vireo::Error&) {}
  try { g_sink = g_sink + f.get_strings(key).size(); } catch (const vireo::Error&) {}
  try { g_sink = g_sink + f.get_numbers(key).size(); } catch (const vireo::Error&) {}
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::optional<vireo::gguf::File> file;
  try {
    file.emplace(vireo::gguf::File::parse(std::span<const uint8_t>(data, size), "fuzz.gguf"));
  } catch (const vireo::Error&) {
    return 0;
  }
  const auto& f = *file;
  uint64_t sum = 0;
  for (const auto& t : f.tensors()) {
    if (f.find_tensor(t.name) != &t) broken("find_tensor does not return the tensor", t.name);
    const auto traits = vireo::dtype_traits(t.type);
    if (!traits) broken("tensor of a type without traits", t.name);
    // nbytes must be exactly n_elements / block_elems * block_bytes, computed without wrapping.
    unsigned __int128 n = 1;
    for (auto d : t.ne) n *= d;
    const unsigned __int128 want = n / traits->block_elems * traits->block_bytes;
    if (want != t.nbytes) broken("nbytes differs from the shape's byte size", t.name);
    if (t.nbytes > 0) {
      if (t.data < data || t.data + t.nbytes > data + size) broken("tensor data outside the input", t.name);
    }
    for (uint64_t i = 0; i < t.nbytes; ++i) sum += t.data[i];
  }
  for (const auto& [key, value] : f.metadata()) {
    if (f.find(key) != &value) broken("find does not return the value", key);
    sum += touch(value);
    call_getters(f, key);
  }
  g_sink = g_sink + sum;
  return 0;
}
