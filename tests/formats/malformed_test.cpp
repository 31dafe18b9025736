// Malformed-input tests for the file readers: hand-made broken GGUF and safetensors files (and
// Hugging Face / MLX folders), each of which must be refused with a vireo::Error -- never a crash,
// never another exception type -- whose message names what is wrong (the key or tensor, and the
// expected vs actual value). Plus positive tests for tiny Hugging Face and MLX folders.
//
// Broken GGUF files are built byte by byte (class Raw) so that any field can hold an absurd value;
// broken safetensors files are a raw JSON header plus data bytes.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <string>
#include <typeinfo>
#include <vector>

#include <nlohmann/json.hpp>

#include "test_util.h"
#include "vireo/core/error.h"
#include "vireo/core/quant_blocks.h"
#include "vireo/formats/gguf.h"
#include "vireo/formats/model.h"
#include "vireo/formats/safetensors.h"
#include "vireo/kernels/ref/quant.h"

namespace vireo {
namespace {

using Bytes = std::vector<uint8_t>;
using nlohmann::json;
using VT = gguf::ValueType;

constexpr uint64_t kU64Max = std::numeric_limits<uint64_t>::max();
constexpr uint64_t kI64Max = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());

// ---------------------------------------------------------------------------------------------
// Checking errors

// Runs `fn`; it must throw vireo::Error with `code` whose message contains every fragment.
// Any other exception is a failure that names its type (the readers must wrap library errors).
void expect_error(const std::function<void()>& fn, ErrorCode code, const std::vector<std::string>& fragments) {
  try {
    fn();
    ADD_FAILURE() << "no error was thrown (expected " << error_code_name(code) << " containing '"
                  << (fragments.empty() ? std::string() : fragments.front()) << "')";
  } catch (const Error& e) {
    const std::string msg = e.what();
    if (std::getenv("VIREO_PRINT_ERRORS") != nullptr) std::printf("    [%s] %s\n", error_code_name(e.code()).data(), e.what());
    EXPECT_EQ(e.code(), code) << "got " << error_code_name(e.code()) << ": " << msg;
    for (const auto& f : fragments) {
      EXPECT_NE(msg.find(f), std::string::npos) << "message lacks '" << f << "': " << msg;
    }
  } catch (const std::exception& e) {
    ADD_FAILURE() << "threw " << typeid(e).name() << " instead of vireo::Error: " << e.what();
  }
}

// ---------------------------------------------------------------------------------------------
// Byte builders

// A little-endian byte builder for hand-made files.
class Raw {
 public:
  Raw& u8(uint8_t v) { return put(v); }
  Raw& u32(uint32_t v) { return put(v); }
  Raw& u64(uint64_t v) { return put(v); }
  Raw& i32(int32_t v) { return put(v); }
  Raw& f32(float v) { return put(v); }
  Raw& raw(std::string_view s) {
    b.insert(b.end(), s.begin(), s.end());
    return *this;
  }
  Raw& raw(const Bytes& v) {
    b.insert(b.end(), v.begin(), v.end());
    return *this;
  }
  Raw& str(std::string_view s) { return u64(s.size()).raw(s); }  // GGUF string: u64 length + bytes
  Raw& pad(size_t align) {
    b.resize((b.size() + align - 1) / align * align, 0);
    return *this;
  }
  // Appends n data bytes (a recognisable pattern).
  Raw& data(size_t n) {
    for (size_t i = 0; i < n; ++i) b.push_back(static_cast<uint8_t>(i * 7 + 1));
    return *this;
  }
  Bytes b;

 private:
  template <typename T>
  Raw& put(T v) {
    uint8_t tmp[sizeof(T)];
    std::memcpy(tmp, &v, sizeof(T));
    b.insert(b.end(), tmp, tmp + sizeof(T));
    return *this;
  }
};

// GGUF header: magic, version, tensor count, kv count.
Raw gguf_head(uint64_t n_tensors, uint64_t n_kv, uint32_t version = 3) {
  Raw r;
  r.raw("GGUF").u32(version).u64(n_tensors).u64(n_kv);
  return r;
}
// Key and value type of a metadata entry; the caller appends the value.
Raw& kv(Raw& r, std::string_view key, VT type) { return r.str(key).u32(static_cast<uint32_t>(type)); }
Raw& kv_u32(Raw& r, std::string_view key, uint32_t v) { return kv(r, key, VT::U32).u32(v); }
Raw& kv_str(Raw& r, std::string_view key, std::string_view v) { return kv(r, key, VT::STRING).str(v); }
// One tensor info.
Raw& tinfo(Raw& r, std::string_view name, const std::vector<uint64_t>& ne, uint32_t type, uint64_t offset) {
  r.str(name).u32(static_cast<uint32_t>(ne.size()));
  for (auto d : ne) r.u64(d);
  return r.u32(type).u64(offset);
}
constexpr uint32_t kF32 = 0, kQ4_0 = 2;

// A file with one tensor info `name` and `data_bytes` bytes of data after the aligned header.
Bytes gguf_one_tensor(std::string_view name, const std::vector<uint64_t>& ne, uint32_t type, uint64_t offset,
                      size_t data_bytes) {
  Raw r = gguf_head(1, 0);
  tinfo(r, name, ne, type, offset);
  return r.pad(32).data(data_bytes).b;
}

// A file with a single metadata entry built by `value` (after the key and type), no tensors.
Bytes gguf_one_kv(std::string_view key, VT type, const std::function<void(Raw&)>& value) {
  Raw r = gguf_head(0, 1);
  kv(r, key, type);
  value(r);
  return r.b;
}

// A valid file exercising every value kind, nested arrays and three tensors; the last tensor
// ends exactly at the end of the file, so that every proper prefix is truncated.
Bytes valid_gguf() {
  gguf::Writer w;
  w.set("general.architecture", gguf::Value::str("llama"));
  w.set("general.name", gguf::Value::str("tiny"));
  w.set("test.u8", {VT::U8, uint64_t{7}});
  w.set("test.i16", {VT::I16, int64_t{-3}});
  w.set("test.u64", gguf::Value::u64(1ull << 40));
  w.set("test.f64", {VT::F64, 0.5});
  w.set("test.bool", gguf::Value::boolean(true));
  w.set("tokenizer.ggml.tokens", gguf::Value::strings({"<s>", "a", "bc"}));
  w.set("tokenizer.ggml.scores", gguf::Value::f32s({0.0f, -1.0f, -2.0f}));
  gguf::Array nested{VT::ARRAY, {gguf::Value::i32s({1, 2}), gguf::Value::i32s({3})}};
  w.set("test.nested", {VT::ARRAY, nested});
  w.add_tensor("a", DType::F32, {3, 2}, [](uint8_t* d, uint64_t n) { std::memset(d, 0x3f, n); });
  w.add_tensor("b", DType::Q8_0, {32}, [](uint8_t* d, uint64_t n) { std::memset(d, 0, n); });
  w.add_tensor("c", DType::F16, {16}, [](uint8_t* d, uint64_t n) { std::memset(d, 0x11, n); });  // 32 bytes
  return w.to_bytes();
}

// A safetensors file from a raw header text and `data_bytes` data bytes.
Bytes st_raw(std::string_view header, size_t data_bytes = 0) {
  Raw r;
  r.u64(header.size()).raw(header).data(data_bytes);
  return r.b;
}

// ---------------------------------------------------------------------------------------------
// GGUF: one table of malformed files

struct ParseCase {
  std::string name;
  std::function<Bytes()> make;
  ErrorCode code;
  std::vector<std::string> fragments;
};

std::string case_name(const ::testing::TestParamInfo<ParseCase>& info) { return info.param.name; }
void PrintTo(const ParseCase& c, std::ostream* os) { *os << c.name; }

std::vector<ParseCase> gguf_cases() {
  using EC = ErrorCode;
  return {
      // ---- header
      {"bad_magic", [] { Raw r; r.raw("GGUX").u32(3).u64(0).u64(0); return r.b; }, EC::InvalidFile,
       {"not a GGUF file", "0x58554747", "expected 'GGUF'"}},
      {"version_1", [] { return gguf_head(0, 0, 1).b; }, EC::Unsupported, {"GGUF version 1 is obsolete"}},
      {"version_4", [] { return gguf_head(0, 0, 4).b; }, EC::Unsupported,
       {"GGUF version 4 is not supported", "expected 2 or 3"}},
      {"version_big_endian", [] { return gguf_head(0, 0, 0x03000000).b; }, EC::Unsupported,
       {"version 50331648", "big-endian"}},
      {"huge_tensor_count", [] { return gguf_head(1ull << 62, 0).pad(64).b; }, EC::InvalidFile,
       {"claims 4611686018427387904 tensors", "more than the file can hold"}},
      {"huge_kv_count", [] { return gguf_head(0, kU64Max).pad(64).b; }, EC::InvalidFile,
       {"claims 18446744073709551615 metadata entries"}},
      // ---- metadata
      {"key_length_past_end", [] { Raw r = gguf_head(0, 1); r.u64(1000).raw("general.x").u32(4).u32(1); return r.b; },
       EC::InvalidFile, {"key of metadata entry 0 has length 1000 but only 17 bytes remain"}},
      {"string_value_past_end",
       [] { return gguf_one_kv("general.name", VT::STRING, [](Raw& r) { r.u64(1ull << 40).raw("abc"); }); },
       EC::InvalidFile, {"string value of key 'general.name' has length 1099511627776 but only 3 bytes remain"}},
      {"string_value_length_u64_max",
       [] { return gguf_one_kv("general.name", VT::STRING, [](Raw& r) { r.u64(kU64Max).raw("abc"); }); },
       EC::InvalidFile, {"'general.name' has length 18446744073709551615"}},
      {"huge_array_count",
       [] {
         return gguf_one_kv("tokenizer.ggml.tokens", VT::ARRAY,
                            [](Raw& r) { r.u32(static_cast<uint32_t>(VT::STRING)).u64(1ull << 60).str("a"); });
       },
       EC::InvalidFile, {"key 'tokenizer.ggml.tokens' claims an array of 1152921504606846976 string values"}},
      {"huge_array_count_u8",
       [] { return gguf_one_kv("test.bytes", VT::ARRAY, [](Raw& r) { r.u32(0).u64(kU64Max).u8(1); }); },
       EC::InvalidFile, {"key 'test.bytes' claims an array of 18446744073709551615 u8 values but only 1 bytes remain"}},
      {"array_string_element_past_end",
       [] {
         return gguf_one_kv("tokenizer.ggml.tokens", VT::ARRAY, [](Raw& r) {
           r.u32(static_cast<uint32_t>(VT::STRING)).u64(2).str("ok").u64(500).raw("short");
         });
       },
       EC::InvalidFile, {"string value of key 'tokenizer.ggml.tokens' has length 500"}},
      {"nested_array_too_deep",
       [] {
         return gguf_one_kv("test.deep", VT::ARRAY, [](Raw& r) {
           for (int i = 0; i < 3; ++i) r.u32(static_cast<uint32_t>(VT::ARRAY)).u64(1);
           r.u32(static_cast<uint32_t>(VT::ARRAY)).u64(1).u32(0).u64(1).u8(5);
         });
       },
       EC::InvalidFile, {"key 'test.deep' nests arrays deeper than 3"}},
      {"unknown_value_type", [] { return gguf_one_kv("test.x", static_cast<VT>(13), [](Raw& r) { r.u32(0); }); },
       EC::InvalidFile, {"key 'test.x' has unknown value type 13 (expected 0 to 12)"}},
      {"unknown_value_type_huge",
       [] { return gguf_one_kv("test.x", static_cast<VT>(0xFFFFFFFF), [](Raw& r) { r.u32(0); }); }, EC::InvalidFile,
       {"key 'test.x' has unknown value type 4294967295"}},
      {"unknown_array_element_type",
       [] { return gguf_one_kv("test.arr", VT::ARRAY, [](Raw& r) { r.u32(99).u64(1).u32(0); }); }, EC::InvalidFile,
       {"key 'test.arr' is an array of unknown value type 99"}},
      {"invalid_bool", [] { return gguf_one_kv("test.flag", VT::BOOL, [](Raw& r) { r.u8(2); }); }, EC::InvalidFile,
       {"key 'test.flag' has bool value 2 (expected 0 or 1)"}},
      {"invalid_bool_in_array",
       [] { return gguf_one_kv("test.flags", VT::ARRAY, [](Raw& r) { r.u32(7).u64(3).u8(0).u8(1).u8(255); }); },
       EC::InvalidFile, {"key 'test.flags' has bool value 255"}},
      {"duplicate_key",
       [] {
         Raw r = gguf_head(0, 2);
         kv_str(r, "general.name", "a");
         kv_str(r, "general.name", "b");
         return r.b;
       },
       EC::InvalidFile, {"duplicate metadata key 'general.name'"}},
      {"empty_key", [] { Raw r = gguf_head(0, 1); kv_u32(r, "", 1); return r.b; }, EC::InvalidFile,
       {"metadata entry 0 has a key of length 0 (expected 1 to 65535)"}},
      {"key_too_long", [] { Raw r = gguf_head(0, 1); kv_u32(r, std::string(65536, 'k'), 1); return r.b; },
       EC::InvalidFile, {"metadata entry 0 has a key of length 65536"}},
      {"invalid_utf8_key",
       [] {
         Raw r = gguf_head(0, 2);
         kv_u32(r, "general.ok", 1);
         kv_u32(r, "bad\xff\xfekey", 1);
         return r.b;
       },
       EC::InvalidFile, {"metadata entry 1 has a key that is not valid UTF-8", "'bad\\xff\\xfekey'"}},
      {"overlong_utf8_key", [] { Raw r = gguf_head(0, 1); kv_u32(r, "a\xc0\xafz", 1); return r.b; }, EC::InvalidFile,
       {"not valid UTF-8", "\\xc0\\xaf"}},
      {"surrogate_utf8_key", [] { Raw r = gguf_head(0, 1); kv_u32(r, "\xed\xa0\x80", 1); return r.b; },
       EC::InvalidFile, {"not valid UTF-8"}},
      // ---- general.alignment
      {"alignment_wrong_type",
       [] {
         Raw r = gguf_head(0, 1);
         kv(r, "general.alignment", VT::U64).u64(32);
         return r.b;
       },
       EC::InvalidFile, {"general.alignment has type u64 (expected u32)"}},
      {"alignment_string",
       [] { Raw r = gguf_head(0, 1); kv_str(r, "general.alignment", "32"); return r.b; }, EC::InvalidFile,
       {"general.alignment has type string (expected u32)"}},
      {"alignment_zero", [] { Raw r = gguf_head(0, 1); kv_u32(r, "general.alignment", 0); return r.b; },
       EC::InvalidFile, {"general.alignment is 0 (expected a power of two"}},
      {"alignment_not_power_of_2", [] { Raw r = gguf_head(0, 1); kv_u32(r, "general.alignment", 48); return r.b; },
       EC::InvalidFile, {"general.alignment is 48 (expected a power of two"}},
      {"alignment_too_large",
       [] { Raw r = gguf_head(0, 1); kv_u32(r, "general.alignment", 1u << 31); return r.b; }, EC::InvalidFile,
       {"general.alignment is 2147483648", "up to 1048576"}},
      // ---- tensor infos
      {"tensor_name_past_end",
       [] { Raw r = gguf_head(1, 0); r.u64(4096).raw("w").u32(1).u64(8).u32(0).u64(0); return r.pad(32).data(32).b; },
       EC::InvalidFile, {"name of tensor 0 has length 4096 but only"}},
      {"tensor_name_empty", [] { return gguf_one_tensor("", {8}, kF32, 0, 32); }, EC::InvalidFile,
       {"tensor 0 has an invalid name ''"}},
      {"tensor_name_invalid_utf8", [] { return gguf_one_tensor("w\x80", {8}, kF32, 0, 32); }, EC::InvalidFile,
       {"tensor 0 has an invalid name 'w\\x80'"}},
      {"duplicate_tensor",
       [] {
         Raw r = gguf_head(2, 0);
         tinfo(r, "blk.0.attn_q.weight", {8}, kF32, 0);
         tinfo(r, "blk.0.attn_q.weight", {8}, kF32, 32);
         return r.pad(32).data(64).b;
       },
       EC::InvalidFile, {"duplicate tensor 'blk.0.attn_q.weight'"}},
      {"n_dims_0", [] { return gguf_one_tensor("w", {}, kF32, 0, 32); }, EC::InvalidFile,
       {"tensor 'w' has 0 dimensions (expected 1 to 4)"}},
      {"n_dims_5", [] { return gguf_one_tensor("w", {1, 1, 1, 1, 8}, kF32, 0, 32); }, EC::InvalidFile,
       {"tensor 'w' has 5 dimensions (expected 1 to 4)"}},
      {"n_dims_huge", [] { Raw r = gguf_head(1, 0); r.str("w").u32(0xFFFFFFFF).u64(1); return r.pad(32).b; },
       EC::InvalidFile, {"tensor 'w' has 4294967295 dimensions"}},
      {"zero_dimension", [] { return gguf_one_tensor("w", {8, 0}, kF32, 0, 32); }, EC::InvalidFile,
       {"tensor 'w' dimension 1 is 0 (expected 1 to 2^63-1)"}},
      {"dimension_above_int64", [] { return gguf_one_tensor("w", {kI64Max + 1}, kF32, 0, 32); }, EC::InvalidFile,
       {"tensor 'w' dimension 0 is 9223372036854775808"}},
      {"dims_product_overflows_int64", [] { return gguf_one_tensor("w", {1ull << 32, 1ull << 31}, kF32, 0, 32); },
       EC::InvalidFile, {"tensor 'w' has a shape whose element count overflows"}},
      {"dims_product_overflows_uint64",
       [] { return gguf_one_tensor("w", {kI64Max, kI64Max, 3, 5}, kF32, 0, 32); }, EC::InvalidFile,
       {"tensor 'w' has a shape whose element count overflows"}},
      // The element count fits in int64, but times 4 bytes per f32 it wraps to 32 (mod 2^64): a
      // tensor claiming 2^62 + 8 elements must not be accepted with 32 bytes of data.
      {"byte_size_overflows_uint64", [] { return gguf_one_tensor("w", {(1ull << 62) + 8}, kF32, 0, 32); },
       EC::InvalidFile, {"tensor 'w'"}},
      {"type_iq2_xxs", [] { return gguf_one_tensor("w", {256}, 16, 0, 512); }, EC::Unsupported,
       {"tensor 'w' has type iq2_xxs (id 16)", "does not support"}},
      {"type_unknown_9999", [] { return gguf_one_tensor("w", {8}, 9999, 0, 32); }, EC::Unsupported,
       {"tensor 'w' has type unknown (id 9999)"}},
      {"type_q4_2_removed", [] { return gguf_one_tensor("w", {32}, 4, 0, 32); }, EC::Unsupported,
       {"tensor 'w' has type q4_2 (id 4)"}},
      {"type_vireo_internal_mlx_q4", [] { return gguf_one_tensor("w", {8}, 1000, 0, 32); }, EC::Unsupported,
       {"tensor 'w' has type mlx_q4 (id 1000)"}},
      {"row_not_multiple_of_block", [] { return gguf_one_tensor("w", {33, 2}, kQ4_0, 0, 64); }, EC::InvalidFile,
       {"tensor 'w' of type q4_0 has a row of 33 elements, not a multiple of the block size 32"}},
      {"row_not_multiple_of_k_block", [] { return gguf_one_tensor("w", {128}, 12, 0, 160); }, EC::InvalidFile,
       {"tensor 'w' of type q4_K has a row of 128 elements", "block size 256"}},
      {"offset_not_aligned", [] { return gguf_one_tensor("w", {8}, kF32, 4, 64); }, EC::InvalidFile,
       {"tensor 'w' has offset 4, not a multiple of the alignment 32"}},
      {"offset_not_aligned_custom",
       [] {
         Raw r = gguf_head(1, 1);
         kv_u32(r, "general.alignment", 64);
         tinfo(r, "w", {8}, kF32, 32);
         return r.pad(64).data(128).b;
       },
       EC::InvalidFile, {"tensor 'w' has offset 32, not a multiple of the alignment 64"}},
      {"offset_past_end", [] { return gguf_one_tensor("w", {8}, kF32, 64, 32); }, EC::InvalidFile,
       {"tensor 'w' needs 32 bytes at offset 64 of the data section, which has only 32 bytes"}},
      {"data_shorter_than_tensor", [] { return gguf_one_tensor("w", {16}, kF32, 0, 32); }, EC::InvalidFile,
       {"tensor 'w' needs 64 bytes at offset 0 of the data section, which has only 32 bytes"}},
      {"offset_huge_aligned", [] { return gguf_one_tensor("w", {8}, kF32, kU64Max - 31, 32); }, EC::InvalidFile,
       {"tensor 'w' needs 32 bytes at offset 18446744073709551584", "which has only 32 bytes"}},
      {"no_data_section",
       [] { Raw r = gguf_head(1, 0); tinfo(r, "w", {8}, kF32, 0); return r.b; }, EC::InvalidFile,
       {"before the tensor data section"}},
      {"tensors_overlap_same_offset",
       [] {
         Raw r = gguf_head(2, 0);
         tinfo(r, "a", {8}, kF32, 0);
         tinfo(r, "b", {8}, kF32, 0);
         return r.pad(32).data(64).b;
       },
       EC::InvalidFile, {"overlap (bytes 0..32 and 0..)", "'a'", "'b'"}},
      {"tensors_overlap_partially",
       [] {
         Raw r = gguf_head(2, 0);
         tinfo(r, "late", {8}, kF32, 32);
         tinfo(r, "early", {16}, kF32, 0);  // bytes 0..64 run into 'late' at 32
         return r.pad(32).data(96).b;
       },
       EC::InvalidFile, {"tensors 'early' and 'late' overlap (bytes 0..64 and 32..)"}},
  };
}

class GgufMalformed : public ::testing::TestWithParam<ParseCase> {};

TEST_P(GgufMalformed, ThrowsNamedError) {
  const ParseCase& c = GetParam();
  const Bytes bytes = c.make();
  const std::string file = c.name + ".gguf";
  std::vector<std::string> fragments = c.fragments;
  fragments.push_back(file + ": ");  // every message starts with the file's name
  expect_error([&] { (void)gguf::File::parse(bytes, file); }, c.code, fragments);
}

INSTANTIATE_TEST_SUITE_P(Cases, GgufMalformed, ::testing::ValuesIn(gguf_cases()), case_name);

// The message must not print begin + size wrapped around 2^64 ("bytes 18446744073709551584..0").
TEST(GgufMalformedSweep, OffsetPastEndMessageDoesNotWrap) {
  const Bytes bytes = gguf_one_tensor("w", {8}, kF32, kU64Max - 31, 32);
  try {
    (void)gguf::File::parse(bytes, "wrap.gguf");
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()).find("..0 "), std::string::npos) << e.what();
  }
}

TEST(GgufMalformedSweep, ValidBaseParses) {
  const Bytes bytes = valid_gguf();
  const auto f = gguf::File::parse(bytes, "valid.gguf");
  ASSERT_EQ(f.tensors().size(), 3u);
  const auto* c = f.find_tensor("c");
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(f.data_offset() + c->offset + c->nbytes, bytes.size()) << "the last tensor must end the file";
  // A hand-built minimal file and a v2 file are fine too.
  EXPECT_NO_THROW((void)gguf::File::parse(gguf_head(0, 0).b));
  EXPECT_EQ(gguf::File::parse(gguf_head(0, 0, 2).b).version(), 2u);
  EXPECT_NO_THROW((void)gguf::File::parse(gguf_one_tensor("w", {8}, kF32, 0, 32)));
}

// Every proper prefix of a valid file must be refused with an error that says it ended early.
// Each prefix is copied into a buffer of exactly its size so that ASan sees any over-read.
TEST(GgufMalformedSweep, TruncatedAtEveryByte) {
  const Bytes full = valid_gguf();
  ASSERT_GT(full.size(), 200u);
  for (size_t len = 0; len < full.size(); ++len) {
    SCOPED_TRACE("truncated to " + std::to_string(len) + " of " + std::to_string(full.size()) + " bytes");
    const Bytes prefix(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(len));
    try {
      (void)gguf::File::parse(prefix, "cut.gguf");
      ADD_FAILURE() << "parsed without error";
    } catch (const Error& e) {
      const std::string msg = e.what();
      EXPECT_EQ(e.code(), ErrorCode::InvalidFile) << msg;
      EXPECT_EQ(msg.rfind("cut.gguf: ", 0), 0u) << msg;
      const bool says_why = msg.find("truncated") != std::string::npos || msg.find("remain") != std::string::npos ||
                            msg.find("more than the file can hold") != std::string::npos ||
                            msg.find("before the tensor data section") != std::string::npos ||
                            msg.find("of the data section, which has only") != std::string::npos;
      EXPECT_TRUE(says_why) << msg;
    } catch (const std::exception& e) {
      ADD_FAILURE() << "threw " << typeid(e).name() << ": " << e.what();
    }
  }
}

// Flipping any single byte of a valid file either still parses or gives a vireo::Error.
TEST(GgufMalformedSweep, EveryByteFlippedParsesOrThrowsError) {
  const Bytes full = valid_gguf();
  for (size_t i = 0; i < full.size(); ++i) {
    for (uint8_t mask : {uint8_t{0x01}, uint8_t{0x80}, uint8_t{0xff}}) {
      Bytes b = full;
      b[i] ^= mask;
      try {
        const auto f = gguf::File::parse(b, "flip.gguf");
        for (const auto& t : f.tensors()) {
          ASSERT_LE(t.data + t.nbytes, b.data() + b.size()) << "byte " << i;
        }
      } catch (const Error&) {
      } catch (const std::exception& e) {
        ADD_FAILURE() << "byte " << i << " ^ " << int{mask} << ": threw " << typeid(e).name() << ": " << e.what();
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// GGUF at model level: well-formed files whose known keys hold the wrong thing

void write_gguf(const std::string& path, const std::function<void(gguf::Writer&)>& fill) {
  gguf::Writer w;
  fill(w);
  test::write_bytes(path, w.to_bytes());
}

struct ModelCase {
  std::string name;
  std::function<void(gguf::Writer&)> fill;
  ErrorCode code;
  std::vector<std::string> fragments;
};

void add_f32(gguf::Writer& w, const std::string& name, std::vector<uint64_t> ne) {
  w.add_tensor(name, DType::F32, std::move(ne), [](uint8_t* d, uint64_t n) { std::memset(d, 0, n); });
}

std::vector<ModelCase> gguf_model_cases() {
  using EC = ErrorCode;
  auto llama = [](gguf::Writer& w) { w.set("general.architecture", gguf::Value::str("llama")); };
  return {
      {"block_count_is_string",
       [=](gguf::Writer& w) {
         llama(w);
         w.set("llama.block_count", gguf::Value::str("1"));
       },
       EC::InvalidFile, {"key 'llama.block_count' has type string (expected an integer)"}},
      {"head_count_negative",
       [=](gguf::Writer& w) {
         llama(w);
         w.set("llama.attention.head_count", gguf::Value::i32(-4));
       },
       EC::InvalidFile, {"key 'llama.attention.head_count' is -4 (expected a non-negative integer)"}},
      {"context_length_too_large",
       [=](gguf::Writer& w) {
         llama(w);
         w.set("llama.context_length", gguf::Value::u64(1ull << 33));
       },
       EC::InvalidFile, {"key 'llama.context_length' is 8589934592, too large"}},
      {"rope_freq_base_is_string",
       [=](gguf::Writer& w) {
         llama(w);
         w.set("llama.rope.freq_base", gguf::Value::str("1e4"));
       },
       EC::InvalidFile, {"key 'llama.rope.freq_base' has type string (expected a number)"}},
      {"architecture_is_integer", [](gguf::Writer& w) { w.set("general.architecture", gguf::Value::u32(1)); },
       EC::InvalidFile, {"key 'general.architecture' has type u32 (expected string)"}},
      {"architecture_missing", [](gguf::Writer& w) { w.set("general.name", gguf::Value::str("x")); }, EC::InvalidFile,
       {"'general.architecture' is missing"}},
      {"architecture_unsupported", [](gguf::Writer& w) { w.set("general.architecture", gguf::Value::str("gptj")); },
       EC::Unsupported, {"architecture 'gptj' is not supported", "llama, mistral, qwen2, qwen3, bert"}},
      {"required_key_missing",
       [=](gguf::Writer& w) {
         llama(w);
         add_f32(w, "token_embd.weight", {8, 4});
       },
       EC::InvalidFile, {"required key 'llama.block_count' is missing"}},
      {"tokens_not_strings",
       [=](gguf::Writer& w) {
         llama(w);
         w.set("tokenizer.ggml.tokens", gguf::Value::i32s({1, 2}));
       },
       EC::InvalidFile, {"key 'tokenizer.ggml.tokens' is not an array of strings"}},
      {"scores_count_mismatch",
       [=](gguf::Writer& w) {
         llama(w);
         w.set("tokenizer.ggml.model", gguf::Value::str("llama"));
         w.set("tokenizer.ggml.tokens", gguf::Value::strings({"a", "b"}));
         w.set("tokenizer.ggml.scores", gguf::Value::f32s({0.0f}));
       },
       EC::InvalidFile, {"tokenizer.ggml.scores has 1 entries but there are 2 tokens"}},
      {"bos_id_out_of_range",
       [=](gguf::Writer& w) {
         llama(w);
         w.set("tokenizer.ggml.tokens", gguf::Value::strings({"a", "b"}));
         w.set("tokenizer.ggml.bos_token_id", gguf::Value::u32(2));
       },
       EC::InvalidFile, {"tokenizer.ggml.bos_token_id is 2 but the vocabulary has 2 tokens"}},
      {"add_bos_is_integer",
       [=](gguf::Writer& w) {
         llama(w);
         w.set("tokenizer.ggml.add_bos_token", gguf::Value::u32(1));
       },
       EC::InvalidFile, {"key 'tokenizer.ggml.add_bos_token' has type u32 (expected bool)"}},
      // A token type that no int32 can hold: converting it is undefined behaviour unless checked.
      {"token_type_out_of_int32_range",
       [=](gguf::Writer& w) {
         llama(w);
         w.set("tokenizer.ggml.tokens", gguf::Value::strings({"a"}));
         w.set("tokenizer.ggml.token_type", gguf::Value::f32s({1e30f}));
       },
       EC::InvalidFile, {"tokenizer.ggml.token_type"}},
      {"shape_mismatch_vs_config",
       [=](gguf::Writer& w) {
         llama(w);
         w.set("llama.block_count", gguf::Value::u32(1));
         w.set("llama.embedding_length", gguf::Value::u32(8));
         w.set("llama.feed_forward_length", gguf::Value::u32(16));
         w.set("llama.attention.head_count", gguf::Value::u32(2));
         w.set("llama.context_length", gguf::Value::u32(64));
         w.set("llama.vocab_size", gguf::Value::u32(10));
         add_f32(w, "token_embd.weight", {8, 12});  // 12 rows, config says 10
       },
       EC::InvalidFile, {"tensor 'token_embd.weight' has shape [12, 8] but the config implies [10, 8]"}},
  };
}

std::string model_case_name(const ::testing::TestParamInfo<ModelCase>& info) { return info.param.name; }
void PrintTo(const ModelCase& c, std::ostream* os) { *os << c.name; }

class GgufModelMalformed : public ::testing::TestWithParam<ModelCase> {};

TEST_P(GgufModelMalformed, LoadThrowsNamedError) {
  const ModelCase& c = GetParam();
  test::TempDir dir;
  const std::string path = dir.file(c.name + ".gguf");
  write_gguf(path, c.fill);
  expect_error([&] { (void)load_model(path); }, c.code, c.fragments);
}

INSTANTIATE_TEST_SUITE_P(Cases, GgufModelMalformed, ::testing::ValuesIn(gguf_model_cases()), model_case_name);

// ---------------------------------------------------------------------------------------------
// safetensors: one table of malformed files

std::vector<ParseCase> safetensors_cases() {
  using EC = ErrorCode;
  return {
      {"shorter_than_8_bytes", [] { return Bytes{1, 0, 0, 0, 0}; }, EC::InvalidFile,
       {"file has 5 bytes, too short for a safetensors header"}},
      {"empty_file", [] { return Bytes{}; }, EC::InvalidFile, {"file has 0 bytes"}},
      {"header_length_over_100MB", [] { Raw r; r.u64(100'000'001).raw("{}"); return r.b; }, EC::InvalidFile,
       {"header length is 100000001 bytes (at most 100000000 allowed)"}},
      {"header_length_u64_max", [] { Raw r; r.u64(kU64Max).raw("{}"); return r.b; }, EC::InvalidFile,
       {"header length is 18446744073709551615 bytes"}},
      {"header_length_past_end", [] { Raw r; r.u64(1000).raw("{\"a\":1}"); return r.b; }, EC::InvalidFile,
       {"header length is 1000 bytes but only 7 follow"}},
      {"header_length_zero", [] { Raw r; r.u64(0).raw("{}"); return r.b; }, EC::InvalidFile,
       {"header does not start with '{'"}},
      {"header_not_starting_with_brace", [] { return st_raw(" {}"); }, EC::InvalidFile,
       {"header does not start with '{'"}},
      {"header_is_array", [] { return st_raw("[{}]"); }, EC::InvalidFile, {"header does not start with '{'"}},
      {"invalid_json", [] { return st_raw("{\"w\": {\"dtype\": \"F32\",}"); }, EC::InvalidFile,
       {"not valid JSON"}},
      {"json_with_trailing_garbage", [] { return st_raw("{} x"); }, EC::InvalidFile, {"not valid JSON"}},
      {"invalid_utf8_in_header", [] { return st_raw("{\"w\xff\": 1}"); }, EC::InvalidFile,
       {"header is not valid UTF-8"}},
      {"entry_not_an_object", [] { return st_raw(R"({"w": 5})"); }, EC::InvalidFile,
       {"entry for tensor 'w' is not an object"}},
      {"duplicate_tensor_names",
       [] {
         return st_raw(R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},)"
                       R"( "w": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}})",
                       8);
       },
       EC::InvalidFile, {"the key 'w' appears twice in one object"}},
      {"unknown_dtype", [] { return st_raw(R"({"w": {"dtype": "F4", "shape": [2], "data_offsets": [0, 1]}})", 1); },
       EC::Unsupported, {"tensor 'w' has unknown dtype 'F4'"}},
      {"dtype_not_string", [] { return st_raw(R"({"w": {"dtype": 4, "shape": [1], "data_offsets": [0, 4]}})", 4); },
       EC::InvalidFile, {"tensor 'w' has no dtype string"}},
      {"missing_shape", [] { return st_raw(R"({"w": {"dtype": "F32", "data_offsets": [0, 4]}})", 4); },
       EC::InvalidFile, {"tensor 'w' has no shape array"}},
      {"shape_negative",
       [] { return st_raw(R"({"w": {"dtype": "F32", "shape": [2, -1], "data_offsets": [0, 4]}})", 4); },
       EC::InvalidFile, {"tensor 'w' has a shape entry -1 that is not a non-negative integer"}},
      {"shape_float", [] { return st_raw(R"({"w": {"dtype": "F32", "shape": [2.5], "data_offsets": [0, 8]}})", 8); },
       EC::InvalidFile, {"tensor 'w' has a shape entry 2.5"}},
      {"shape_string", [] { return st_raw(R"({"w": {"dtype": "F32", "shape": ["2"], "data_offsets": [0, 8]}})", 8); },
       EC::InvalidFile, {"tensor 'w' has a shape entry \"2\""}},
      {"shape_too_many_dims",
       [] { return st_raw(R"({"w": {"dtype": "F32", "shape": [1,1,1,1,1,1,1,1,1], "data_offsets": [0, 4]}})", 4); },
       EC::InvalidFile, {"tensor 'w' has 9 dimensions (at most 8)"}},
      {"shape_product_overflow",
       [] {
         return st_raw(R"({"w": {"dtype": "F32", "shape": [4294967296, 4294967296], "data_offsets": [0, 0]}})");
       },
       EC::InvalidFile, {"tensor 'w' has a shape whose byte size overflows"}},
      {"shape_bytes_overflow",  // 2^62 elements fit in u64, but not 2^62 * 4 bytes
       [] { return st_raw(R"({"w": {"dtype": "F32", "shape": [4611686018427387904], "data_offsets": [0, 0]}})"); },
       EC::InvalidFile, {"tensor 'w' has a shape whose byte size overflows"}},
      {"shape_entry_above_u64",
       [] { return st_raw(R"({"w": {"dtype": "U8", "shape": [18446744073709551616], "data_offsets": [0, 0]}})"); },
       EC::InvalidFile, {"tensor 'w' has a shape entry"}},
      {"data_offsets_missing", [] { return st_raw(R"({"w": {"dtype": "F32", "shape": [1]}})", 4); }, EC::InvalidFile,
       {"tensor 'w' needs data_offsets [begin, end]"}},
      {"data_offsets_one_entry",
       [] { return st_raw(R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [4]}})", 4); }, EC::InvalidFile,
       {"tensor 'w' needs data_offsets [begin, end]"}},
      {"data_offsets_negative",
       [] { return st_raw(R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [-4, 0]}})", 4); },
       EC::InvalidFile, {"tensor 'w' needs data_offsets [begin, end] of non-negative integers"}},
      {"data_offsets_out_of_range",
       [] { return st_raw(R"({"w": {"dtype": "F32", "shape": [250], "data_offsets": [0, 1000]}})", 16); },
       EC::InvalidFile, {"tensor 'w' has data_offsets [0, 1000] outside the data section of 16 bytes"}},
      {"data_offsets_huge",
       [] {
         return st_raw(
             R"({"w": {"dtype": "U8", "shape": [4], "data_offsets": [18446744073709551612, 18446744073709551615]}})", 4);
       },
       EC::InvalidFile, {"tensor 'w' has data_offsets [18446744073709551612, 18446744073709551615] outside"}},
      {"data_offsets_begin_after_end",
       [] { return st_raw(R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [8, 4]}})", 8); },
       EC::InvalidFile, {"tensor 'w' has data_offsets [8, 4]"}},
      {"size_mismatch_vs_shape",
       [] { return st_raw(R"({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 12]}})", 12); },
       EC::InvalidFile, {"tensor 'w' has 12 bytes but its shape and dtype F32 need 16"}},
      {"tensors_overlap",
       [] {
         return st_raw(R"({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},)"
                       R"( "b": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]}})",
                       24);
       },
       EC::InvalidFile, {"tensor 'b' at [8, 24] overlaps the tensor before it (ending at 16)"}},
      {"tensors_identical_range",
       [] {
         return st_raw(R"({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},)"
                       R"( "b": {"dtype": "I32", "shape": [4], "data_offsets": [0, 16]}})",
                       16);
       },
       EC::InvalidFile, {"overlaps the tensor before it"}},
      {"gap_between_tensors",
       [] {
         return st_raw(R"({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},)"
                       R"( "b": {"dtype": "F32", "shape": [4], "data_offsets": [20, 36]}})",
                       36);
       },
       EC::InvalidFile, {"tensor 'b' starts at 20 leaving a gap after 16"}},
      {"gap_before_first_tensor",
       [] { return st_raw(R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}})", 8); },
       EC::InvalidFile, {"tensor 'a' starts at 4 leaving a gap after 0"}},
      {"trailing_bytes_after_last_tensor",
       [] { return st_raw(R"({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}})", 20); },
       EC::InvalidFile, {"4 bytes after the last tensor (data section is 20 bytes, tensors cover 16)"}},
      {"metadata_not_object", [] { return st_raw(R"({"__metadata__": ["format", "pt"]})"); }, EC::InvalidFile,
       {"__metadata__ is not an object"}},
      {"metadata_value_not_string", [] { return st_raw(R"({"__metadata__": {"format": 1}})"); }, EC::InvalidFile,
       {"__metadata__ value 'format' is not a string"}},
  };
}

class SafetensorsMalformed : public ::testing::TestWithParam<ParseCase> {};

TEST_P(SafetensorsMalformed, ThrowsNamedError) {
  const ParseCase& c = GetParam();
  const Bytes bytes = c.make();
  const std::string file = c.name + ".safetensors";
  std::vector<std::string> fragments = c.fragments;
  fragments.push_back(file + ": ");
  expect_error([&] { (void)safetensors::File::parse(bytes, file); }, c.code, fragments);
}

INSTANTIATE_TEST_SUITE_P(Cases, SafetensorsMalformed, ::testing::ValuesIn(safetensors_cases()), case_name);

// A shape entry nested a million arrays deep (a 2 MB header, well under the 100 MB limit): the
// reader formats the bad entry with json::dump(), which recurses once per level.
TEST(SafetensorsMalformedSweep, DeeplyNestedShapeEntry) {
  const size_t depth = 1'000'000;
  const std::string header = R"({"w": {"dtype": "F32", "shape": [)" + std::string(depth, '[') +
                             std::string(depth, ']') + R"(], "data_offsets": [0, 0]}})";
  const Bytes bytes = st_raw(header);
  expect_error([&] { (void)safetensors::File::parse(bytes, "deep.safetensors"); }, ErrorCode::InvalidFile,
               {"deep.safetensors: ", "nests deeper than 64 levels"});
}

Bytes valid_safetensors() {
  std::vector<safetensors::OwnedTensor> ts = {
      {"a", "F32", {2, 3}, Bytes(24, 0x3f)},
      {"b", "BF16", {4}, Bytes(8, 0x40)},
      {"empty", "I64", {0, 5}, {}},
      {"c", "U8", {3}, {1, 2, 3}},
  };
  return safetensors::serialize(ts, {{"format", "pt"}});
}

TEST(SafetensorsMalformedSweep, ValidBaseParses) {
  const Bytes bytes = valid_safetensors();
  const auto f = safetensors::File::parse(bytes, "valid.safetensors");
  ASSERT_EQ(f.tensors().size(), 4u);
  EXPECT_EQ(f.metadata().at("format"), "pt");
  EXPECT_EQ(f.find("c")->data[2], 3);
  EXPECT_EQ(f.find("empty")->nbytes(), 0u);
  EXPECT_NO_THROW((void)safetensors::File::parse(st_raw("{}")));
}

TEST(SafetensorsMalformedSweep, TruncatedAtEveryByte) {
  const Bytes full = valid_safetensors();
  for (size_t len = 0; len < full.size(); ++len) {
    SCOPED_TRACE("truncated to " + std::to_string(len) + " bytes");
    const Bytes prefix(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(len));
    expect_error([&] { (void)safetensors::File::parse(prefix, "cut.safetensors"); }, ErrorCode::InvalidFile,
                 {"cut.safetensors: "});
  }
}

TEST(SafetensorsMalformedSweep, EveryByteFlippedParsesOrThrowsError) {
  const Bytes full = valid_safetensors();
  for (size_t i = 0; i < full.size(); ++i) {
    for (uint8_t mask : {uint8_t{0x01}, uint8_t{0x20}, uint8_t{0x80}}) {
      Bytes b = full;
      b[i] ^= mask;
      try {
        const auto f = safetensors::File::parse(b, "flip.safetensors");
        for (const auto& t : f.tensors()) ASSERT_LE(t.data + t.nbytes(), b.data() + b.size()) << "byte " << i;
      } catch (const Error&) {
      } catch (const std::exception& e) {
        ADD_FAILURE() << "byte " << i << " ^ " << int{mask} << ": threw " << typeid(e).name() << ": " << e.what();
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Hugging Face / MLX folders

// A tiny llama: hidden E, heads H (head_dim E/H), KV heads, ffn F, vocab V, one layer.
struct TinyLlama {
  uint64_t E = 8, H = 2, KV_HEADS = 1, F = 16, V = 12;
  uint64_t head_dim() const { return E / H; }

  json config() const {
    return {{"model_type", "llama"},      {"hidden_size", E},          {"num_attention_heads", H},
            {"num_key_value_heads", KV_HEADS}, {"intermediate_size", F}, {"vocab_size", V},
            {"num_hidden_layers", 1},     {"max_position_embeddings", 64}, {"rms_norm_eps", 1e-5},
            {"rope_theta", 10000.0},      {"tie_word_embeddings", false}};
  }
  // Hugging Face name -> shape (outermost first).
  std::vector<std::pair<std::string, std::vector<uint64_t>>> weights() const {
    const uint64_t Q = H * head_dim(), K = KV_HEADS * head_dim();
    const std::string l = "model.layers.0.";
    return {{"model.embed_tokens.weight", {V, E}},
            {"model.norm.weight", {E}},
            {"lm_head.weight", {V, E}},
            {l + "input_layernorm.weight", {E}},
            {l + "self_attn.q_proj.weight", {Q, E}},
            {l + "self_attn.k_proj.weight", {K, E}},
            {l + "self_attn.v_proj.weight", {K, E}},
            {l + "self_attn.o_proj.weight", {E, Q}},
            {l + "post_attention_layernorm.weight", {E}},
            {l + "mlp.gate_proj.weight", {F, E}},
            {l + "mlp.up_proj.weight", {F, E}},
            {l + "mlp.down_proj.weight", {E, F}}};
  }
};

uint64_t product(const std::vector<uint64_t>& s) {
  uint64_t n = 1;
  for (auto d : s) n *= d;
  return n;
}

// F16 bytes whose element i is value(i).
Bytes f16_bytes(uint64_t n, const std::function<float(uint64_t)>& value) {
  Bytes b(n * 2);
  for (uint64_t i = 0; i < n; ++i) {
    const uint16_t h = fp32_to_fp16(value(i));
    std::memcpy(b.data() + 2 * i, &h, 2);
  }
  return b;
}

std::vector<safetensors::OwnedTensor> tiny_llama_tensors(const TinyLlama& m) {
  std::vector<safetensors::OwnedTensor> ts;
  int k = 0;
  for (const auto& [name, shape] : m.weights()) {
    ++k;
    ts.push_back({name, "F16", shape, f16_bytes(product(shape), [k](uint64_t i) {
                    return static_cast<float>(k) + 0.25f * static_cast<float>(i % 8);
                  })});
  }
  // Rotary caches are not weights: the loader must skip them.
  ts.push_back({"model.layers.0.self_attn.rotary_emb.inv_freq", "F32", {2}, Bytes(8, 0)});
  return ts;
}

void write_json(const std::string& path, const json& j) {
  std::ofstream out(path);
  out << j.dump(2);
}

void write_text(const std::string& path, const std::string& text) {
  std::ofstream out(path);
  out << text;
}

TEST(HfFolder, TinyLlamaLoadsWithCanonicalNames) {
  test::TempDir dir;
  const TinyLlama m;
  write_json(dir.file("config.json"), m.config());
  safetensors::write_file(dir.file("model.safetensors"), tiny_llama_tensors(m));
  const Model model = load_model(dir.path());
  EXPECT_EQ(model.format, "safetensors");
  EXPECT_EQ(model.config.family, ArchFamily::Llama);
  EXPECT_EQ(model.config.rope.style, RopeStyle::NeoX);
  EXPECT_EQ(model.config.n_layer, 1u);
  EXPECT_EQ(model.config.n_embd, 8u);
  EXPECT_EQ(model.config.n_head_kv, 1u);
  EXPECT_EQ(model.config.head_dim, 4u);
  EXPECT_EQ(model.config.rope.n_dims, 4u);
  EXPECT_FALSE(model.config.tied_embeddings);
  const std::vector<std::pair<std::string, std::vector<uint64_t>>> expected = {
      {"token_embd.weight", {12, 8}},      {"output_norm.weight", {8}},          {"output.weight", {12, 8}},
      {"blk.0.attn_norm.weight", {8}},     {"blk.0.attn_q.weight", {8, 8}},      {"blk.0.attn_k.weight", {4, 8}},
      {"blk.0.attn_v.weight", {4, 8}},     {"blk.0.attn_output.weight", {8, 8}}, {"blk.0.ffn_norm.weight", {8}},
      {"blk.0.ffn_gate.weight", {16, 8}},  {"blk.0.ffn_up.weight", {16, 8}},     {"blk.0.ffn_down.weight", {8, 16}}};
  EXPECT_EQ(model.weights.size(), expected.size());
  for (const auto& [name, shape] : expected) {
    const Tensor* t = model.find(name);
    ASSERT_NE(t, nullptr) << name;
    EXPECT_EQ(t->type, DType::F16) << name;
    EXPECT_EQ(t->shape, shape) << name;
    EXPECT_EQ(t->nbytes, product(shape) * 2) << name;
  }
  // Data is used in place: attn_q is the 5th tensor written (k = 5), element 3 = 5 + 0.75.
  const Tensor& q = model.get("blk.0.attn_q.weight");
  uint16_t h;
  std::memcpy(&h, q.data + 2 * 3, 2);
  EXPECT_EQ(fp16_to_fp32(h), 5.75f);
  EXPECT_EQ(model.find("blk.0.rotary_emb.inv_freq"), nullptr);
}

// 4-bit MLX quantization, group size 32: each linear weight [rows, cols] is stored as U32 words
// [rows, cols/8] plus F16 scales and biases [rows, cols/32].
struct MlxTensor {
  std::vector<uint32_t> packed;
  std::vector<float> scales, biases;  // fp16-rounded, as stored
  std::vector<float> source;
};

MlxTensor quantize_mlx(uint64_t rows, uint64_t cols, int seed) {
  constexpr int kBits = 4, kGroup = 32;
  MlxTensor q;
  q.source.resize(rows * cols);
  for (uint64_t i = 0; i < q.source.size(); ++i) {
    q.source[i] = 0.05f * static_cast<float>(static_cast<int>((i * 37 + seed * 11) % 41) - 20) + 0.01f * seed;
  }
  q.packed.resize(rows * cols * kBits / 32);
  q.scales.resize(rows * cols / kGroup);
  q.biases.resize(rows * cols / kGroup);
  for (uint64_t r = 0; r < rows; ++r) {
    ref::quantize_mlx_row(kBits, kGroup, q.source.data() + r * cols, q.packed.data() + r * cols / 8,
                          q.scales.data() + r * cols / kGroup, q.biases.data() + r * cols / kGroup,
                          static_cast<int64_t>(cols));
  }
  for (auto* v : {&q.scales, &q.biases}) {
    for (float& x : *v) x = fp16_to_fp32(fp32_to_fp16(x));
  }
  return q;
}

struct TinyMlx {
  TinyLlama shape{32, 2, 1, 64, 16};  // every linear has cols 32 or 64: whole groups of 32
  std::map<std::string, MlxTensor> quantized;

  json config(uint32_t bits = 4) const {
    json c = shape.config();
    c["quantization"] = {{"group_size", 32}, {"bits", bits}};
    return c;
  }
  // Every 2-D weight is quantized; norms stay F16. `drop` names a tensor to leave out.
  std::vector<safetensors::OwnedTensor> tensors(const std::string& drop = "") {
    std::vector<safetensors::OwnedTensor> ts;
    int seed = 0;
    for (const auto& [name, s] : shape.weights()) {
      ++seed;
      if (s.size() == 1) {
        ts.push_back({name, "F16", s, f16_bytes(s[0], [](uint64_t) { return 1.0f; })});
        continue;
      }
      const auto& q = quantized.emplace(name, quantize_mlx(s[0], s[1], seed)).first->second;
      const std::string stem = name.substr(0, name.rfind('.'));
      Bytes words(q.packed.size() * 4);
      std::memcpy(words.data(), q.packed.data(), words.size());
      ts.push_back({name, "U32", {s[0], s[1] / 8}, words});
      auto to_f16 = [](const std::vector<float>& v) { return f16_bytes(v.size(), [&v](uint64_t i) { return v[i]; }); };
      ts.push_back({stem + ".scales", "F16", {s[0], s[1] / 32}, to_f16(q.scales)});
      ts.push_back({stem + ".biases", "F16", {s[0], s[1] / 32}, to_f16(q.biases)});
    }
    std::erase_if(ts, [&](const auto& t) { return t.name == drop; });
    return ts;
  }
};

TEST(HfFolder, TinyMlx4BitLoadsAndDequantizes) {
  test::TempDir dir;
  TinyMlx mlx;
  write_json(dir.file("config.json"), mlx.config());
  safetensors::write_file(dir.file("model.safetensors"), mlx.tensors());
  const Model model = load_model(dir.path());
  EXPECT_EQ(model.format, "mlx");
  EXPECT_EQ(model.config.rope.style, RopeStyle::NeoX);
  EXPECT_EQ(model.find("blk.0.attn_q.scales"), nullptr);
  EXPECT_EQ(model.find("blk.0.attn_q.biases"), nullptr);

  const std::map<std::string, std::pair<std::string, std::vector<uint64_t>>> linear = {
      {"token_embd.weight", {"model.embed_tokens.weight", {16, 32}}},
      {"output.weight", {"lm_head.weight", {16, 32}}},
      {"blk.0.attn_q.weight", {"model.layers.0.self_attn.q_proj.weight", {32, 32}}},
      {"blk.0.attn_k.weight", {"model.layers.0.self_attn.k_proj.weight", {16, 32}}},
      {"blk.0.ffn_down.weight", {"model.layers.0.mlp.down_proj.weight", {32, 64}}},
      {"blk.0.ffn_up.weight", {"model.layers.0.mlp.up_proj.weight", {64, 32}}}};
  for (const auto& [canon, hf] : linear) {
    SCOPED_TRACE(canon);
    const Tensor& w = model.get(canon);
    EXPECT_EQ(w.type, DType::MLX_Q4);
    EXPECT_EQ(w.shape, hf.second);  // logical shape, not the packed one
    EXPECT_EQ(w.mlx_group_size, 32u);
    EXPECT_EQ(w.mlx_scale_type, DType::F16);
    ASSERT_NE(w.mlx_scales, nullptr);
    ASSERT_NE(w.mlx_biases, nullptr);
    EXPECT_EQ(w.nbytes, w.shape[0] * w.shape[1] / 2);

    // Dequantize the last row from the model's pointers; it must equal the dequantization of
    // the arrays we wrote, and lie within half a step of the source.
    const MlxTensor& q = mlx.quantized.at(hf.first);
    const uint64_t rows = w.shape[0], cols = w.shape[1], r = rows - 1, groups = cols / 32;
    std::vector<uint32_t> words(cols / 8);
    std::memcpy(words.data(), w.data + r * cols / 2, cols / 2);
    std::vector<float> sc(groups), bi(groups);
    for (uint64_t g = 0; g < groups; ++g) {
      uint16_t hs, hb;
      std::memcpy(&hs, w.mlx_scales + 2 * (r * groups + g), 2);
      std::memcpy(&hb, w.mlx_biases + 2 * (r * groups + g), 2);
      sc[g] = fp16_to_fp32(hs);
      bi[g] = fp16_to_fp32(hb);
    }
    std::vector<float> got(cols), want(cols);
    ref::dequantize_mlx_row(4, 32, words.data(), sc.data(), bi.data(), got.data(), static_cast<int64_t>(cols));
    ref::dequantize_mlx_row(4, 32, q.packed.data() + r * cols / 8, q.scales.data() + r * groups,
                            q.biases.data() + r * groups, want.data(), static_cast<int64_t>(cols));
    for (uint64_t i = 0; i < cols; ++i) {
      ASSERT_EQ(got[i], want[i]) << "element " << i;
      // Element i is level q (4 bits of its word) times the group's scale plus its bias.
      const uint32_t level = (words[i / 8] >> (4 * (i % 8))) & 15u;
      EXPECT_FLOAT_EQ(got[i], sc[i / 32] * static_cast<float>(level) + bi[i / 32]) << "element " << i;
      // MLX snaps the scale so that the group's larger edge is a whole number of steps, which
      // can clip the far edge by up to a step: allow two.
      EXPECT_NEAR(got[i], q.source[r * cols + i], 2.0f * std::fabs(sc[i / 32]) + 0.01f) << "element " << i;
    }
  }
}

// ---- folder-level malformed cases

struct FolderCase {
  std::string name;
  std::function<void(const test::TempDir&)> make;  // writes the folder's files
  ErrorCode code;
  std::vector<std::string> fragments;
};

std::string folder_case_name(const ::testing::TestParamInfo<FolderCase>& info) { return info.param.name; }
void PrintTo(const FolderCase& c, std::ostream* os) { *os << c.name; }

void write_tiny_llama(const test::TempDir& d, const std::function<void(json&)>& edit_config = {},
                      const std::string& shard = "model.safetensors") {
  const TinyLlama m;
  json cfg = m.config();
  if (edit_config) edit_config(cfg);
  write_json(d.file("config.json"), cfg);
  safetensors::write_file(d.file(shard), tiny_llama_tensors(m));
}

json index_for(const std::map<std::string, std::string>& weight_map) {
  return {{"metadata", {{"total_size", 0}}}, {"weight_map", weight_map}};
}

std::vector<FolderCase> folder_cases() {
  using EC = ErrorCode;
  const std::string shard = "model-00001-of-00001.safetensors";
  return {
      {"index_shard_path_traversal",
       [=](const test::TempDir& d) {
         write_tiny_llama(d, {}, shard);
         write_json(d.file("model.safetensors.index.json"),
                    index_for({{"model.norm.weight", "../" + shard}}));
       },
       EC::InvalidFile, {"shard name '../" + shard + "' of tensor 'model.norm.weight' is not a plain file name"}},
      {"index_shard_absolute_path",
       [=](const test::TempDir& d) {
         write_tiny_llama(d, {}, shard);
         write_json(d.file("model.safetensors.index.json"), index_for({{"model.norm.weight", "/etc/passwd"}}));
       },
       EC::InvalidFile, {"shard name '/etc/passwd'", "is not a plain file name"}},
      {"index_shard_dotdot",
       [=](const test::TempDir& d) {
         write_tiny_llama(d, {}, shard);
         write_json(d.file("model.safetensors.index.json"), index_for({{"model.norm.weight", ".."}}));
       },
       EC::InvalidFile, {"shard name '..'", "is not a plain file name"}},
      {"index_tensor_missing_from_shard",
       [=](const test::TempDir& d) {
         write_tiny_llama(d, {}, shard);
         write_json(d.file("model.safetensors.index.json"),
                    index_for({{"model.norm.weight", shard}, {"model.layers.0.mlp.extra.weight", shard}}));
       },
       EC::NotFound, {"index lists tensor 'model.layers.0.mlp.extra.weight' in '" + shard + "', but that shard lacks it"}},
      {"index_shard_file_missing",
       [=](const test::TempDir& d) {
         write_tiny_llama(d, {}, shard);
         write_json(d.file("model.safetensors.index.json"),
                    index_for({{"model.norm.weight", "model-00002-of-00002.safetensors"}}));
       },
       EC::NotFound, {"model-00002-of-00002.safetensors"}},
      {"index_without_weight_map",
       [=](const test::TempDir& d) {
         write_tiny_llama(d, {}, shard);
         write_json(d.file("model.safetensors.index.json"), json{{"metadata", json::object()}});
       },
       EC::InvalidFile, {"model.safetensors.index.json: has no \"weight_map\" object"}},
      {"config_model_type_gpt_neox",
       [](const test::TempDir& d) { write_tiny_llama(d, [](json& c) { c["model_type"] = "gpt_neox"; }); },
       EC::Unsupported,
       {"model_type 'gpt_neox' is not supported", "supported: llama, mistral, qwen2, qwen3, bert"}},
      {"config_missing_hidden_size",
       [](const test::TempDir& d) { write_tiny_llama(d, [](json& c) { c.erase("hidden_size"); }); }, EC::InvalidFile,
       {"config.json: required field \"hidden_size\" is missing"}},
      {"config_layers_is_string",
       [](const test::TempDir& d) { write_tiny_llama(d, [](json& c) { c["num_hidden_layers"] = "1"; }); },
       EC::InvalidFile, {"\"num_hidden_layers\" is \"1\" (expected a non-negative integer)"}},
      {"config_heads_negative",
       [](const test::TempDir& d) { write_tiny_llama(d, [](json& c) { c["num_attention_heads"] = -2; }); },
       EC::InvalidFile, {"\"num_attention_heads\" is -2 (expected a non-negative integer)"}},
      {"config_heads_zero",
       [](const test::TempDir& d) { write_tiny_llama(d, [](json& c) { c["num_attention_heads"] = 0; }); },
       EC::InvalidFile, {"num_attention_heads is 0"}},
      {"config_not_json", [](const test::TempDir& d) { write_text(d.file("config.json"), "{\"model_type\": "); },
       EC::InvalidFile, {"config.json: not valid JSON"}},
      {"config_tie_embeddings_is_string",
       [](const test::TempDir& d) { write_tiny_llama(d, [](json& c) { c["tie_word_embeddings"] = "yes"; }); },
       EC::InvalidFile, {"\"tie_word_embeddings\" has the wrong type (string)"}},
      {"config_rope_scaling_unknown",
       [](const test::TempDir& d) {
         write_tiny_llama(d, [](json& c) { c["rope_scaling"] = {{"rope_type", "dynamic"}, {"factor", 2.0}}; });
       },
       EC::Unsupported, {"rope_scaling type 'dynamic' is not supported"}},
      // Wrong JSON types inside nested config / tokenizer objects must still give vireo::Error.
      {"config_rope_scaling_type_is_number",
       [](const test::TempDir& d) { write_tiny_llama(d, [](json& c) { c["rope_scaling"] = {{"rope_type", 3}}; }); },
       EC::InvalidFile, {"rope_type"}},
      {"config_rope_scaling_factor_is_string",
       [](const test::TempDir& d) {
         write_tiny_llama(d, [](json& c) { c["rope_scaling"] = {{"rope_type", "linear"}, {"factor", "2"}}; });
       },
       EC::InvalidFile, {"factor"}},
      {"tokenizer_merge_not_strings",
       [](const test::TempDir& d) {
         write_tiny_llama(d);
         write_text(d.file("tokenizer.json"),
                    R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 1}, "merges": [[1, 2]]}})");
       },
       EC::InvalidFile, {"tokenizer.json", "merge"}},
      {"tokenizer_config_add_bos_is_string",
       [](const test::TempDir& d) {
         write_tiny_llama(d);
         write_text(d.file("tokenizer.json"), R"({"model": {"type": "BPE", "vocab": {"a": 0}}})");
         write_text(d.file("tokenizer_config.json"), R"({"add_bos_token": "true"})");
       },
       EC::InvalidFile, {"add_bos_token"}},
      {"tokenizer_unsupported_type",
       [](const test::TempDir& d) {
         write_tiny_llama(d);
         write_text(d.file("tokenizer.json"), R"({"model": {"type": "WordLevel"}})");
       },
       EC::Unsupported, {"tokenizer model type 'WordLevel' is not supported"}},
      {"weight_shape_mismatch",
       [](const test::TempDir& d) { write_tiny_llama(d, [](json& c) { c["intermediate_size"] = 24; }); },
       EC::InvalidFile, {"tensor 'blk.0.ffn_gate.weight' has shape [16, 8] but the config implies [24, 8]"}},
      {"weight_missing",
       [](const test::TempDir& d) {
         const TinyLlama m;
         write_json(d.file("config.json"), m.config());
         auto ts = tiny_llama_tensors(m);
         std::erase_if(ts, [](const auto& t) { return t.name == "model.layers.0.mlp.up_proj.weight"; });
         safetensors::write_file(d.file("model.safetensors"), ts);
       },
       EC::NotFound, {"is missing tensor 'blk.0.ffn_up.weight' (expected shape [16, 8])"}},
      {"weight_dtype_unsupported",
       [](const test::TempDir& d) {
         const TinyLlama m;
         write_json(d.file("config.json"), m.config());
         auto ts = tiny_llama_tensors(m);
         for (auto& t : ts) {
           if (t.name == "model.norm.weight") t = {t.name, "I16", t.shape, t.bytes};
         }
         safetensors::write_file(d.file("model.safetensors"), ts);
       },
       EC::Unsupported, {"tensor 'model.norm.weight' has dtype I16"}},
      {"mlx_bits_3",
       [](const test::TempDir& d) {
         TinyMlx mlx;
         write_json(d.file("config.json"), mlx.config(3));
         safetensors::write_file(d.file("model.safetensors"), mlx.tensors());
       },
       EC::Unsupported, {"uses 3 bits (supported: 4, 8)"}},
      {"mlx_group_size_48",
       [](const test::TempDir& d) {
         TinyMlx mlx;
         json c = mlx.config();
         c["quantization"]["group_size"] = 48;
         write_json(d.file("config.json"), c);
         safetensors::write_file(d.file("model.safetensors"), mlx.tensors());
       },
       EC::Unsupported, {"MLX group size 48", "supported: 32, 64, 128"}},
      {"mlx_mode_unknown",
       [](const test::TempDir& d) {
         TinyMlx mlx;
         json c = mlx.config();
         c["quantization"]["mode"] = "mxfp4";
         write_json(d.file("config.json"), c);
         safetensors::write_file(d.file("model.safetensors"), mlx.tensors());
       },
       EC::Unsupported, {"MLX quantization mode 'mxfp4' (supported: affine)"}},
      {"mlx_missing_biases",
       [](const test::TempDir& d) {
         TinyMlx mlx;
         write_json(d.file("config.json"), mlx.config());
         safetensors::write_file(d.file("model.safetensors"),
                                 mlx.tensors("model.layers.0.self_attn.v_proj.biases"));
       },
       EC::NotFound,
       {"MLX tensor 'model.layers.0.self_attn.v_proj.weight' has scales but no "
        "'model.layers.0.self_attn.v_proj.biases'"}},
      {"mlx_scales_wrong_shape",
       [](const test::TempDir& d) {
         TinyMlx mlx;
         write_json(d.file("config.json"), mlx.config());
         auto ts = mlx.tensors();
         for (auto& t : ts) {
           if (t.name == "model.layers.0.mlp.up_proj.scales") t.shape = {t.shape[1], t.shape[0]};  // [1, 64]
         }
         safetensors::write_file(d.file("model.safetensors"), ts);
       },
       EC::InvalidFile, {"MLX tensor 'model.layers.0.mlp.up_proj.weight': 32 columns in groups of 32"}},
      {"mlx_module_disabled_but_has_scales",
       [](const test::TempDir& d) {
         TinyMlx mlx;
         json c = mlx.config();
         c["quantization"]["model.layers.0.self_attn.q_proj"] = false;
         write_json(d.file("config.json"), c);
         safetensors::write_file(d.file("model.safetensors"), mlx.tensors());
       },
       EC::InvalidFile, {"'model.layers.0.self_attn.q_proj.weight' has scales but the config says it is not quantized"}},
  };
}

class FolderMalformed : public ::testing::TestWithParam<FolderCase> {};

TEST_P(FolderMalformed, LoadThrowsNamedError) {
  const FolderCase& c = GetParam();
  test::TempDir dir;
  c.make(dir);
  expect_error([&] { (void)load_model(dir.path()); }, c.code, c.fragments);
}

INSTANTIATE_TEST_SUITE_P(Cases, FolderMalformed, ::testing::ValuesIn(folder_cases()), folder_case_name);

// A config value nested 200k arrays deep: the "expected a non-negative integer" message formats it
// with json::dump(), which recurses once per level.
TEST(HfFolder, DeeplyNestedConfigValue) {
  test::TempDir dir;
  write_text(dir.file("config.json"), R"({"model_type": "llama", "num_hidden_layers": )" + std::string(200000, '[') +
                                          std::string(200000, ']') + "}");
  expect_error([&] { (void)load_model(dir.path()); }, ErrorCode::InvalidFile, {"config.json", "nests deeper than 64 levels"});
}

// The index-traversal case must not have read the file outside the folder: a valid shard placed
// one level up is still refused.
TEST(HfFolder, IndexTraversalIsRefusedEvenWhenTheTargetExists) {
  test::TempDir outer;
  const std::string inner = outer.file("model");
  std::filesystem::create_directory(inner);
  const TinyLlama m;
  safetensors::write_file(outer.file("evil.safetensors"), tiny_llama_tensors(m));
  write_json(inner + "/config.json", m.config());
  std::map<std::string, std::string> wm;
  for (const auto& [name, shape] : m.weights()) wm[name] = "../evil.safetensors";
  write_json(inner + "/model.safetensors.index.json", index_for(wm));
  expect_error([&] { (void)load_model(inner); }, ErrorCode::InvalidFile, {"'../evil.safetensors'", "not a plain file name"});
}

}  // namespace
}  // namespace vireo
