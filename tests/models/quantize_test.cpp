// vireo quantize and the safetensors / MLX paths of the engine:
//  - a float GGUF re-quantized to Q4_K_M gets exactly the tensor types of llama.cpp's mix (as
//    `vireo synth` writes them), and its next-token distributions stay close to the float model's;
//  - the same weights as a Hugging Face folder (F32 safetensors, HF names) give the GGUF's logits;
//  - `quantize --type mlx-q4` writes MLX's layout, and the engine runs it as the float model of
//    its dequantized weights does.
#include "vireo/models/quantize.h"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "test_util.h"
#include "vireo/core/error.h"
#include "vireo/core/quant_blocks.h"
#include "vireo/formats/gguf.h"
#include "vireo/formats/safetensors.h"
#include "vireo/kernels/ref/quant.h"
#include "vireo/models/synth.h"
#include "vireo/runtime/generator.h"

namespace vireo {
namespace {

std::vector<float> score(const std::string& path, const std::vector<int32_t>& ids) {
  auto model = std::make_shared<Model>(load_model(path));
  auto backend = create_cpu_backend({.n_threads = 2});
  auto lm = create_decoder(model, *backend);
  KvCache cache(*lm, 256);
  Generator gen(*lm, cache);
  return gen.score(ids);
}

struct Agreement {
  double cosine = 0, mean_kl = 0, top1 = 0;
};

Agreement compare(const std::vector<float>& want, const std::vector<float>& got, size_t V) {
  Agreement a;
  double dot = 0, n1 = 0, n2 = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    dot += double{want[i]} * got[i];
    n1 += double{want[i]} * want[i];
    n2 += double{got[i]} * got[i];
  }
  a.cosine = dot / std::sqrt(n1 * n2);
  const size_t n = want.size() / V;
  for (size_t p = 0; p < n; ++p) {
    const float* w = want.data() + p * V;
    const float* g = got.data() + p * V;
    const double mw = *std::max_element(w, w + V), mg = *std::max_element(g, g + V);
    double sw = 0, sg = 0;
    for (size_t i = 0; i < V; ++i) {
      sw += std::exp(w[i] - mw);
      sg += std::exp(g[i] - mg);
    }
    double kl = 0;
    for (size_t i = 0; i < V; ++i) {
      const double lw = w[i] - mw - std::log(sw), lg = g[i] - mg - std::log(sg);
      kl += std::exp(lw) * (lw - lg);
    }
    a.mean_kl += kl / static_cast<double>(n);
    a.top1 += (std::max_element(w, w + V) - w == std::max_element(g, g + V) - g) ? 1.0 / static_cast<double>(n) : 0.0;
  }
  return a;
}

std::vector<int32_t> random_ids(size_t n, int32_t vocab) {
  std::mt19937 rng(11);
  std::uniform_int_distribution<int32_t> pick(0, vocab - 1);
  std::vector<int32_t> ids(n);
  for (auto& id : ids) id = pick(rng);
  return ids;
}

TEST(Quantize, GgufQ4KMFollowsLlamaCppsMixAndStaysClose) {
  test::TempDir dir;
  SynthOptions so{.preset = "llama3.2-1b", .type = "f16", .n_layer = 2, .vocab_size = 1024};
  synthesize_model(so, dir.file("f16.gguf"));
  so.type = "q4_k_m";
  const SynthResult mix = synthesize_model(so, dir.file("synth-q4km.gguf"));

  const QuantizeResult dry = quantize_model(dir.file("f16.gguf"), dir.file("q.gguf"), {.type = "q4_k_m"}, true);
  EXPECT_FALSE(std::filesystem::exists(dir.file("q.gguf")));
  const QuantizeResult r = quantize_model(dir.file("f16.gguf"), dir.file("q.gguf"), {.type = "q4_k_m"}, false);
  EXPECT_EQ(r.bytes_out, dry.bytes_out);

  const gguf::File q = gguf::File::open(dir.file("q.gguf"));
  EXPECT_EQ(q.get_uint("general.file_type", 0), 15u);
  ASSERT_EQ(q.tensors().size(), mix.tensor_types.size());
  for (const auto& [name, type] : mix.tensor_types) {
    const auto* t = q.find_tensor(name);
    ASSERT_NE(t, nullptr) << name;
    EXPECT_EQ(t->type, type) << name;
  }
  // Every metadata key but the file type is carried over.
  const gguf::File src = gguf::File::open(dir.file("f16.gguf"));
  for (const auto& [key, value] : src.metadata()) {
    if (key != "general.file_type") EXPECT_NE(q.find(key), nullptr) << key;
  }

  // Quantizing the F16 file lands next to quantizing the original floats (what synth did); both
  // are a 4-bit distance from the float model (random weights make that distance look large).
  const auto ids = random_ids(64, 1024);
  const auto q_logits = score(dir.file("q.gguf"), ids);
  const Agreement a = compare(score(dir.file("synth-q4km.gguf"), ids), q_logits, 1024);
  const Agreement f = compare(score(dir.file("f16.gguf"), ids), q_logits, 1024);
  std::printf("  q4_k_m from f16 vs from f32: cosine %.5f, mean KL %.2e, top-1 %.3f; vs the f16 model: cosine %.4f\n",
              a.cosine, a.mean_kl, a.top1, f.cosine);
  EXPECT_GT(a.cosine, 0.99);
  EXPECT_LT(a.mean_kl, 0.01);
  EXPECT_GT(f.cosine, 0.95);

  // Already-quantized input needs --allow-requantize; MLX output needs safetensors.
  try {
    quantize_model(dir.file("q.gguf"), dir.file("qq.gguf"), {.type = "q8_0"}, true);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("pass --allow-requantize"), std::string::npos) << e.what();
  }
  EXPECT_THROW(quantize_model(dir.file("f16.gguf"), dir.file("m"), {.type = "mlx-q4"}, true), Error);
  EXPECT_THROW(quantize_model(dir.file("f16.gguf"), dir.file("x.gguf"), {.type = "q3_xs"}, true), Error);
}

// A GGUF decoder's weights as a Hugging Face folder (Qwen2: rotary NeoX in both, so no permutation).
void write_hf_qwen2(const std::string& gguf_path, const std::string& dir, const std::string& dtype) {
  const Model m = load_model(gguf_path);
  const ModelConfig& c = m.config;
  nlohmann::json cfg = {{"model_type", "qwen2"},
                        {"architectures", {"Qwen2ForCausalLM"}},
                        {"hidden_size", c.n_embd},
                        {"intermediate_size", c.n_ff},
                        {"num_attention_heads", c.n_head},
                        {"num_key_value_heads", c.n_head_kv},
                        {"num_hidden_layers", c.n_layer},
                        {"vocab_size", c.n_vocab},
                        {"max_position_embeddings", c.n_ctx_train},
                        {"rms_norm_eps", c.norm_eps},
                        {"rope_theta", c.rope.theta},
                        {"tie_word_embeddings", c.tied_embeddings},
                        {"torch_dtype", dtype == "F32" ? "float32" : "bfloat16"}};
  std::filesystem::create_directories(dir);
  std::ofstream(dir + "/config.json") << cfg.dump(2);
  auto hf_name = [](const std::string& n) -> std::string {
    if (n == "token_embd.weight") return "model.embed_tokens.weight";
    if (n == "output_norm.weight") return "model.norm.weight";
    if (n == "output.weight") return "lm_head.weight";
    const size_t dot = n.find('.', 4);
    const std::string layer = n.substr(4, dot - 4), rest = n.substr(dot + 1);
    const std::string p = "model.layers." + layer + ".";
    static const std::map<std::string, std::string> map = {
        {"attn_norm", "input_layernorm"},    {"ffn_norm", "post_attention_layernorm"},
        {"attn_q", "self_attn.q_proj"},      {"attn_k", "self_attn.k_proj"},
        {"attn_v", "self_attn.v_proj"},      {"attn_output", "self_attn.o_proj"},
        {"ffn_gate", "mlp.gate_proj"},       {"ffn_up", "mlp.up_proj"},
        {"ffn_down", "mlp.down_proj"}};
    const size_t d2 = rest.find('.');
    return p + map.at(rest.substr(0, d2)) + rest.substr(d2);
  };
  std::vector<safetensors::OwnedTensor> ts;
  for (const auto& [name, t] : m.weights) {
    const auto n = static_cast<int64_t>(t.n_elements());
    std::vector<float> values(static_cast<size_t>(n));
    const int64_t cols = static_cast<int64_t>(t.cols()), rows = n / cols;
    const size_t rb = ref::row_bytes(t.type, cols);
    for (int64_t r = 0; r < rows; ++r) ref::dequantize_row(t.type, t.data + r * rb, values.data() + r * cols, cols);
    safetensors::OwnedTensor o{hf_name(name), dtype, t.shape, {}};
    o.bytes.resize(static_cast<size_t>(n) * (dtype == "F32" ? 4 : 2));
    for (int64_t i = 0; i < n; ++i) {
      if (dtype == "F32") {
        std::memcpy(o.bytes.data() + 4 * i, &values[static_cast<size_t>(i)], 4);
      } else {
        const uint16_t h = fp32_to_bf16(values[static_cast<size_t>(i)]);
        std::memcpy(o.bytes.data() + 2 * i, &h, 2);
      }
    }
    ts.push_back(std::move(o));
  }
  safetensors::write_file(dir + "/model.safetensors", ts);
}

TEST(Quantize, SafetensorsAndMlxFoldersRunLikeTheirFloatWeights) {
  test::TempDir dir;
  SynthOptions so{.preset = "qwen2.5-0.5b", .type = "f32", .n_layer = 2, .vocab_size = 1024};
  synthesize_model(so, dir.file("f32.gguf"));
  write_hf_qwen2(dir.file("f32.gguf"), dir.file("hf"), "F32");
  const auto ids = random_ids(64, 1024);
  const auto gguf_logits = score(dir.file("f32.gguf"), ids);
  const Agreement same = compare(gguf_logits, score(dir.file("hf"), ids), 1024);
  std::printf("  safetensors vs GGUF (F32): cosine %.7f, mean KL %.2e, top-1 %.3f\n", same.cosine, same.mean_kl, same.top1);
  EXPECT_GT(same.cosine, 0.99999);
  EXPECT_LT(same.mean_kl, 1e-5);

  // MLX 4-bit, group 64, from a BF16 folder; the reference is an F32 folder of the dequantized values.
  write_hf_qwen2(dir.file("f32.gguf"), dir.file("hf-bf16"), "BF16");
  const QuantizeResult r = quantize_model(dir.file("hf-bf16"), dir.file("mlx"), {.type = "mlx-q4"}, false);
  EXPECT_EQ(r.format, "mlx");
  const Model mlx = load_model(dir.file("mlx"));
  EXPECT_EQ(mlx.format, "mlx");
  const Tensor& q = mlx.get("blk.0.attn_q.weight");
  EXPECT_EQ(q.type, DType::MLX_Q4);
  EXPECT_EQ(q.mlx_group_size, 64u);
  EXPECT_EQ(q.mlx_scale_type, DType::BF16);
  const auto cfg = nlohmann::json::parse(std::ifstream(dir.file("mlx") + "/config.json"));
  EXPECT_EQ(cfg["quantization"]["bits"], 4);
  EXPECT_EQ(cfg["quantization"]["group_size"], 64);

  // Dequantize every MLX tensor to F32 and write it back under the HF names.
  const auto coll = safetensors::Collection::open(dir.file("mlx"));
  std::vector<safetensors::OwnedTensor> deq;
  for (const auto* t : coll.tensors()) {
    if (t->name.ends_with(".scales") || t->name.ends_with(".biases")) continue;
    if (t->dtype != "U32") {
      safetensors::OwnedTensor o{t->name, "F32", t->shape, std::vector<uint8_t>(t->n_elements() * 4)};
      for (uint64_t i = 0; i < t->n_elements(); ++i) {
        uint16_t h;
        std::memcpy(&h, t->data + 2 * i, 2);
        const float f = bf16_to_fp32(h);
        std::memcpy(o.bytes.data() + 4 * i, &f, 4);
      }
      deq.push_back(std::move(o));
      continue;
    }
    const std::string stem = t->name.substr(0, t->name.size() - 7);
    const auto* sc = coll.find(stem + ".scales");
    const auto* bi = coll.find(stem + ".biases");
    ASSERT_TRUE(sc && bi) << stem;
    const uint64_t rows = t->shape[0], cols = t->shape[1] * 8, groups = cols / 64;
    std::vector<float> s(groups), b(groups), row(cols);
    safetensors::OwnedTensor o{t->name, "F32", {rows, cols}, std::vector<uint8_t>(rows * cols * 4)};
    for (uint64_t r = 0; r < rows; ++r) {
      for (uint64_t g = 0; g < groups; ++g) {
        uint16_t hs, hb;
        std::memcpy(&hs, sc->data + 2 * (r * groups + g), 2);
        std::memcpy(&hb, bi->data + 2 * (r * groups + g), 2);
        s[g] = bf16_to_fp32(hs);
        b[g] = bf16_to_fp32(hb);
      }
      ref::dequantize_mlx_row(4, 64, reinterpret_cast<const uint32_t*>(t->data) + r * cols / 8, s.data(), b.data(),
                              row.data(), static_cast<int64_t>(cols));
      std::memcpy(o.bytes.data() + r * cols * 4, row.data(), cols * 4);
    }
    deq.push_back(std::move(o));
  }
  std::filesystem::create_directories(dir.file("deq"));
  std::filesystem::copy_file(dir.file("hf") + "/config.json", dir.file("deq") + "/config.json");
  safetensors::write_file(dir.file("deq") + "/model.safetensors", deq);

  const Agreement a = compare(score(dir.file("deq"), ids), score(dir.file("mlx"), ids), 1024);
  std::printf("  MLX q4 vs its dequantized weights: cosine %.6f, mean KL %.2e, top-1 %.3f\n", a.cosine, a.mean_kl, a.top1);
  EXPECT_GT(a.cosine, 0.999);
  EXPECT_LT(a.mean_kl, 0.01);

  EXPECT_THROW(quantize_model(dir.file("hf-bf16"), dir.file("mlx"), {.type = "mlx-q4"}, false), Error);  // exists
  EXPECT_THROW(quantize_model(dir.file("mlx"), dir.file("mlx2"), {.type = "mlx-q4"}, false), Error);      // already MLX
}

}  // namespace
}  // namespace vireo
