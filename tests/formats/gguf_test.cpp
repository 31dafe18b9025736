#include "vireo/formats/gguf.h"

#include <gtest/gtest.h>

#include <cstring>

#include "test_util.h"
#include "vireo/core/error.h"
#include "vireo/kernels/ref/quant.h"

namespace vireo {
namespace {

gguf::Writer small_writer() {
  gguf::Writer w;
  w.set("general.architecture", gguf::Value::str("llama"));
  w.set("test.u8", {gguf::ValueType::U8, uint64_t{200}});
  w.set("test.i8", {gguf::ValueType::I8, int64_t{-100}});
  w.set("test.u16", {gguf::ValueType::U16, uint64_t{60000}});
  w.set("test.i16", {gguf::ValueType::I16, int64_t{-30000}});
  w.set("test.u32", gguf::Value::u32(4000000000u));
  w.set("test.i32", gguf::Value::i32(-2000000000));
  w.set("test.u64", gguf::Value::u64(1ull << 60));
  w.set("test.i64", {gguf::ValueType::I64, int64_t{-(1ll << 60)}});
  w.set("test.f32", gguf::Value::f32(1.5f));
  w.set("test.f64", {gguf::ValueType::F64, 2.25});
  w.set("test.bool", gguf::Value::boolean(true));
  w.set("test.str", gguf::Value::str("héllo"));
  w.set("test.strs", gguf::Value::strings({"a", "", "ccc"}));
  w.set("test.f32s", gguf::Value::f32s({1.0f, -2.0f}));
  gguf::Array nested{gguf::ValueType::ARRAY, {gguf::Value::i32s({1, 2}), gguf::Value::i32s({3})}};
  w.set("test.nested", {gguf::ValueType::ARRAY, nested});
  w.add_tensor("a", DType::F32, {3, 2}, [](uint8_t* dst, uint64_t n) {
    const float v[6] = {1, 2, 3, 4, 5, 6};
    std::memcpy(dst, v, n);
  });
  w.add_tensor("b", DType::Q8_0, {64}, [](uint8_t* dst, uint64_t n) {
    float v[64];
    for (int i = 0; i < 64; ++i) v[i] = static_cast<float>(i) - 32.0f;
    ref::quantize_row(DType::Q8_0, v, dst, 64);
  });
  return w;
}

TEST(Gguf, RoundTripsEveryValueType) {
  const auto bytes = small_writer().to_bytes();
  const auto f = gguf::File::parse(bytes);
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.get_string("general.architecture"), "llama");
  EXPECT_EQ(f.get_uint("test.u8", 0), 200u);
  EXPECT_EQ(std::get<int64_t>(f.find("test.i8")->data), -100);
  EXPECT_EQ(f.get_uint("test.u16", 0), 60000u);
  EXPECT_EQ(std::get<int64_t>(f.find("test.i16")->data), -30000);
  EXPECT_EQ(f.get_uint("test.u32", 0), 4000000000u);
  EXPECT_EQ(std::get<int64_t>(f.find("test.i32")->data), -2000000000);
  EXPECT_EQ(f.get_uint("test.u64", 0), 1ull << 60);
  EXPECT_EQ(std::get<int64_t>(f.find("test.i64")->data), -(1ll << 60));
  EXPECT_FLOAT_EQ(f.get_float("test.f32", 0), 1.5);
  EXPECT_DOUBLE_EQ(f.get_float("test.f64", 0), 2.25);
  EXPECT_TRUE(f.get_bool("test.bool", false));
  EXPECT_EQ(f.get_string("test.str"), "héllo");
  EXPECT_EQ(f.get_strings("test.strs"), (std::vector<std::string>{"a", "", "ccc"}));
  EXPECT_EQ(f.get_numbers("test.f32s"), (std::vector<double>{1.0, -2.0}));
  const auto& nested = std::get<gguf::Array>(f.find("test.nested")->data);
  ASSERT_EQ(nested.items.size(), 2u);
  EXPECT_EQ(std::get<gguf::Array>(nested.items[0].data).items.size(), 2u);

  ASSERT_EQ(f.tensors().size(), 2u);
  const auto* a = f.find_tensor("a");
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->ne, (std::vector<uint64_t>{3, 2}));
  EXPECT_EQ(a->nbytes, 24u);
  EXPECT_EQ(reinterpret_cast<const float*>(a->data)[5], 6.0f);
  const auto* b = f.find_tensor("b");
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(b->type, DType::Q8_0);
  EXPECT_EQ(b->nbytes, 68u);
  EXPECT_EQ(b->offset % 32, 0u);
  EXPECT_EQ(f.data_offset() % 32, 0u);
}

TEST(Gguf, TypedGettersNameTheKey) {
  const auto bytes = small_writer().to_bytes();
  const auto f = gguf::File::parse(bytes, "x.gguf");
  try {
    f.get_string("test.u32");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("test.u32"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("expected string"), std::string::npos) << e.what();
  }
  EXPECT_EQ(f.get_uint("missing", 7), 7u);
}

TEST(Gguf, CustomAlignmentIsHonoured) {
  gguf::Writer w(64);
  w.add_tensor("x", DType::F32, {5}, [](uint8_t* d, uint64_t n) { std::memset(d, 0, n); });
  w.add_tensor("y", DType::F32, {5}, [](uint8_t* d, uint64_t n) { std::memset(d, 1, n); });
  const auto bytes = w.to_bytes();
  const auto f = gguf::File::parse(bytes);
  EXPECT_EQ(f.alignment(), 64u);
  EXPECT_EQ(f.find_tensor("y")->offset, 64u);
  EXPECT_EQ(f.data_offset() % 64, 0u);
}

TEST(Gguf, WriterIsAtomicOnFailure) {
  test::TempDir dir;
  gguf::Writer w;
  w.add_tensor("x", DType::F32, {4}, [](uint8_t*, uint64_t) { throw std::runtime_error("boom"); });
  EXPECT_THROW(w.write(dir.file("m.gguf")), std::runtime_error);
  EXPECT_FALSE(std::filesystem::exists(dir.file("m.gguf")));
  EXPECT_FALSE(std::filesystem::exists(dir.file("m.gguf.partial")));
}

TEST(Gguf, OpensRealStoriesModel) {
  VIREO_REQUIRE_SHARED(path, "models/stories260K.gguf");
  const auto f = gguf::File::open(path);
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.get_string("general.architecture"), "llama");
  EXPECT_GT(f.tensors().size(), 40u);
}

TEST(Gguf, OpensEveryVocabFile) {
  const std::string dir = test::shared_dir();
  if (dir.empty()) GTEST_SKIP() << "../shared not found";
  int n = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir + "/vocab")) {
    if (e.path().extension() != ".gguf") continue;
    const auto f = gguf::File::open(e.path().string());
    EXPECT_FALSE(f.get_strings("tokenizer.ggml.tokens").empty()) << e.path();
    ++n;
  }
  EXPECT_GE(n, 7);
}

}  // namespace
}  // namespace vireo
