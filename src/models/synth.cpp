#include "vireo/models/synth.h"

#include <cmath>
#include <cstring>
#include <filesystem>

#include <fmt/format.h>

#include "vireo/core/error.h"
#include "vireo/core/parallel.h"
#include "vireo/formats/gguf.h"
#include "vireo/kernels/ref/quant.h"
#include "vireo/models/type_plan.h"

namespace vireo {
namespace {

ModelConfig decoder(const char* arch, ArchFamily fam, uint32_t vocab, uint32_t embd, uint32_t layers, uint32_t heads,
                    uint32_t kv, uint32_t head_dim, uint32_t ff, uint32_t ctx, float theta, float eps, bool tied) {
  ModelConfig c;
  c.arch_name = arch;
  c.family = fam;
  c.n_vocab = vocab;
  c.n_embd = embd;
  c.n_layer = layers;
  c.n_head = heads;
  c.n_head_kv = kv;
  c.head_dim = head_dim;
  c.n_ff = ff;
  c.n_ctx_train = ctx;
  c.rope.theta = theta;
  c.rope.n_dims = head_dim;
  c.rope.style = fam == ArchFamily::Llama ? RopeStyle::Normal : RopeStyle::NeoX;
  c.norm_eps = eps;
  c.tied_embeddings = tied;
  c.qkv_bias = fam == ArchFamily::Qwen2;
  c.qk_norm = fam == ArchFamily::Qwen3;
  return c;
}

ModelConfig encoder(uint32_t embd, uint32_t layers, uint32_t heads, uint32_t ff, const char* pooling) {
  ModelConfig c;
  c.arch_name = "bert";
  c.family = ArchFamily::Bert;
  c.n_vocab = 30522;
  c.n_embd = embd;
  c.n_layer = layers;
  c.n_head = heads;
  c.n_head_kv = heads;
  c.head_dim = embd / heads;
  c.n_ff = ff;
  c.n_ctx_train = 512;
  c.norm_eps = 1e-12f;
  c.rope.style = RopeStyle::None;
  c.causal = false;
  c.qkv_bias = true;
  c.n_token_types = 2;
  c.pooling = pooling;
  return c;
}

std::vector<SynthPreset> make_presets() {
  using F = ArchFamily;
  std::vector<SynthPreset> p;
  p.push_back({"llama3-8b", "Meta Llama 3 8B", decoder("llama", F::Llama, 128256, 4096, 32, 32, 8, 128, 14336, 8192, 500000.f, 1e-5f, false)});
  auto l32 = decoder("llama", F::Llama, 128256, 2048, 16, 32, 8, 64, 8192, 131072, 500000.f, 1e-5f, true);
  l32.rope.scaling = RopeScaling::Llama3;
  l32.rope.factor = 32.f;
  l32.rope.low_freq_factor = 1.f;
  l32.rope.high_freq_factor = 4.f;
  l32.rope.original_context = 8192;
  p.push_back({"llama3.2-1b", "Meta Llama 3.2 1B", l32});
  p.push_back({"llama2-7b", "Meta Llama 2 7B", decoder("llama", F::Llama, 32000, 4096, 32, 32, 32, 128, 11008, 4096, 10000.f, 1e-5f, false)});
  p.push_back({"mistral-7b", "Mistral 7B v0.3", decoder("llama", F::Llama, 32768, 4096, 32, 32, 8, 128, 14336, 32768, 1e6f, 1e-5f, false)});
  p.push_back({"qwen2.5-7b", "Qwen2.5 7B", decoder("qwen2", F::Qwen2, 152064, 3584, 28, 28, 4, 128, 18944, 32768, 1e6f, 1e-6f, false)});
  p.push_back({"qwen2.5-0.5b", "Qwen2.5 0.5B", decoder("qwen2", F::Qwen2, 151936, 896, 24, 14, 2, 64, 4864, 32768, 1e6f, 1e-6f, true)});
  p.push_back({"qwen3-0.6b", "Qwen3 0.6B", decoder("qwen3", F::Qwen3, 151936, 1024, 28, 16, 8, 128, 3072, 40960, 1e6f, 1e-6f, true)});
  p.push_back({"bert-base", "BERT base (uncased)", encoder(768, 12, 12, 3072, "cls")});
  p.push_back({"bge-small", "BAAI bge-small-en-v1.5", encoder(384, 12, 12, 1536, "cls")});
  p.push_back({"tiny", "a tiny llama for tests", decoder("llama", F::Llama, 512, 256, 2, 4, 2, 64, 512, 256, 10000.f, 1e-5f, false)});
  return p;
}

// Deterministic per-row random numbers: the file is the same whatever the thread count.
struct SplitMix {
  uint64_t s;
  uint64_t next() {
    uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  float uniform() { return static_cast<float>(next() >> 40) * (1.0f / 16777216.0f); }  // [0, 1)
};

uint64_t hash_name(const std::string& s, uint64_t seed) {
  uint64_t h = 1469598103934665603ull ^ seed;
  for (char c : s) h = (h ^ static_cast<uint8_t>(c)) * 1099511628211ull;
  return h;
}

// GPT-2's byte -> printable code point table, so every byte is a visible token.
std::string byte_token(uint8_t b) {
  uint32_t cp;
  if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174) {
    cp = b;
  } else {
    uint32_t n = 0;
    for (uint32_t x = 0; x < b; ++x) {
      if (!((x >= 33 && x <= 126) || (x >= 161 && x <= 172) || x >= 174)) ++n;
    }
    cp = 256 + n;
  }
  std::string out;
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
  return out;
}

// The built-in vocabulary: 256 byte tokens, a few English merges, BOS/EOS, and unused padding
// up to the architecture's vocabulary size (as Llama 3 pads with reserved tokens).
void set_builtin_vocab(gguf::Writer& w, uint32_t n_vocab) {
  std::vector<std::string> tokens;
  std::vector<int32_t> types;
  for (int b = 0; b < 256; ++b) {
    tokens.push_back(byte_token(static_cast<uint8_t>(b)));
    types.push_back(1);
  }
  const std::string sp = byte_token(' ');
  const std::vector<std::pair<std::string, std::string>> merges_list = {
      {sp, "t"}, {"h", "e"}, {"i", "n"}, {"e", "r"}, {"a", "n"}, {sp, "a"}, {"o", "n"}, {"r", "e"},
      {sp + "t", "he"}, {sp, "s"}, {"e", "n"}, {"o", "u"}, {sp, "w"}, {"e", "d"}, {sp, "o"}, {"in", "g"}};
  std::vector<std::string> merges;
  for (const auto& [a, b] : merges_list) {
    merges.push_back(a + " " + b);
    tokens.push_back(a + b);
    types.push_back(1);
  }
  const auto bos = static_cast<int32_t>(tokens.size());
  tokens.push_back("<|begin_of_text|>");
  types.push_back(3);
  tokens.push_back("<|end_of_text|>");
  types.push_back(3);
  if (n_vocab < tokens.size()) fail(ErrorCode::InvalidArgument, "vocabulary of {} is smaller than the {} built-in tokens", n_vocab, tokens.size());
  for (uint32_t i = static_cast<uint32_t>(tokens.size()); i < n_vocab; ++i) {
    tokens.push_back(fmt::format("<|unused_{}|>", i));
    types.push_back(5);
  }
  w.set("tokenizer.ggml.model", gguf::Value::str("gpt2"));
  w.set("tokenizer.ggml.pre", gguf::Value::str("default"));
  w.set("tokenizer.ggml.tokens", gguf::Value::strings(tokens));
  w.set("tokenizer.ggml.token_type", gguf::Value::i32s(types));
  w.set("tokenizer.ggml.merges", gguf::Value::strings(merges));
  w.set("tokenizer.ggml.bos_token_id", gguf::Value::u32(static_cast<uint32_t>(bos)));
  w.set("tokenizer.ggml.eos_token_id", gguf::Value::u32(static_cast<uint32_t>(bos + 1)));
  w.set("tokenizer.ggml.add_bos_token", gguf::Value::boolean(true));
}

// Copies every tokenizer.* key from a vocab GGUF; returns its token count.
uint32_t copy_vocab(gguf::Writer& w, const std::string& path) {
  const auto vocab = gguf::File::open(path);
  for (const auto& [k, v] : vocab.metadata()) {
    if (k.starts_with("tokenizer.")) w.set(k, v);
  }
  const auto tokens = vocab.get_strings("tokenizer.ggml.tokens");
  if (tokens.empty()) fail(ErrorCode::InvalidFile, "{}: has no tokenizer.ggml.tokens", path);
  return static_cast<uint32_t>(tokens.size());
}

struct PlannedTensor {
  std::string name;
  std::vector<uint64_t> shape;  // outermost first
  DType type;
  float scale;    // uniform half-width of the random values
  float center;   // 1 for norm weights
};

// llama3 rope scaling as llama.cpp stores it: one divisor per rotated frequency.
std::vector<float> llama3_rope_factors(const ModelConfig& c) {
  std::vector<float> f(c.rope.n_dims / 2);
  const float low_wavelen = c.rope.original_context / c.rope.low_freq_factor;
  const float high_wavelen = c.rope.original_context / c.rope.high_freq_factor;
  for (size_t i = 0; i < f.size(); ++i) {
    const float freq = 1.0f / std::pow(c.rope.theta, 2.0f * i / c.rope.n_dims);
    const float wavelen = 2.0f * static_cast<float>(M_PI) / freq;
    if (wavelen < high_wavelen) {
      f[i] = 1.0f;
    } else if (wavelen > low_wavelen) {
      f[i] = c.rope.factor;
    } else {
      const float smooth = (c.rope.original_context / wavelen - c.rope.low_freq_factor) /
                           (c.rope.high_freq_factor - c.rope.low_freq_factor);
      f[i] = 1.0f / ((1 - smooth) / c.rope.factor + smooth);
    }
  }
  return f;
}

}  // namespace

const std::vector<SynthPreset>& synth_presets() {
  static const std::vector<SynthPreset> presets = make_presets();
  return presets;
}

const SynthPreset& find_synth_preset(const std::string& name) {
  std::string all;
  for (const auto& p : synth_presets()) {
    if (p.name == name) return p;
    all += (all.empty() ? "" : ", ") + p.name;
  }
  fail(ErrorCode::InvalidArgument, "unknown preset '{}' (choose one of: {})", name, all);
}

std::vector<std::string> synth_types() { return file_type_names(); }

SynthResult synthesize_model(const SynthOptions& opt, const std::string& out_path,
                             const std::function<void(size_t, size_t)>& progress) {
  std::string type = opt.type;
  for (auto& ch : type) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  const TypePlan plan = plan_for(type);
  ModelConfig c = find_synth_preset(opt.preset).config;
  if (opt.n_layer != 0) {
    if (opt.n_layer > 1024) fail(ErrorCode::InvalidArgument, "--layers {} is too many (at most 1024)", opt.n_layer);
    c.n_layer = opt.n_layer;
  }
  if (opt.vocab_size != 0) {
    if (!opt.vocab_path.empty()) fail(ErrorCode::InvalidArgument, "--vocab-size and --vocab exclude each other");
    if (opt.vocab_size < 300 || opt.vocab_size > 1'000'000) {
      fail(ErrorCode::InvalidArgument, "--vocab-size {} is out of range (300 to 1000000)", opt.vocab_size);
    }
    c.n_vocab = opt.vocab_size;
  }

  gguf::Writer w;
  const std::string& a = c.arch_name;
  w.set("general.architecture", gguf::Value::str(a));
  w.set("general.name", gguf::Value::str(fmt::format("vireo-synth {} {}", opt.preset, type)));
  w.set("general.file_type", gguf::Value::u32(plan.file_type));
  if (plan.file_type != 0 && plan.file_type != 1 && plan.file_type != 32) {
    w.set("general.quantization_version", gguf::Value::u32(2));
  }
  w.set(a + ".context_length", gguf::Value::u32(c.n_ctx_train));
  w.set(a + ".embedding_length", gguf::Value::u32(c.n_embd));
  w.set(a + ".block_count", gguf::Value::u32(c.n_layer));
  w.set(a + ".feed_forward_length", gguf::Value::u32(c.n_ff));
  w.set(a + ".attention.head_count", gguf::Value::u32(c.n_head));
  w.set(a + ".attention.head_count_kv", gguf::Value::u32(c.n_head_kv));
  w.set(a + ".attention.key_length", gguf::Value::u32(c.head_dim));
  w.set(a + ".attention.value_length", gguf::Value::u32(c.head_dim));
  if (c.family == ArchFamily::Bert) {
    w.set(a + ".attention.layer_norm_epsilon", gguf::Value::f32(c.norm_eps));
    w.set(a + ".attention.causal", gguf::Value::boolean(false));
    w.set(a + ".pooling_type", gguf::Value::u32(c.pooling == "cls" ? 2 : 1));
  } else {
    w.set(a + ".attention.layer_norm_rms_epsilon", gguf::Value::f32(c.norm_eps));
    w.set(a + ".rope.freq_base", gguf::Value::f32(c.rope.theta));
    w.set(a + ".rope.dimension_count", gguf::Value::u32(c.rope.n_dims));
  }

  if (opt.vocab_path.empty()) {
    set_builtin_vocab(w, c.n_vocab);
  } else {
    c.n_vocab = copy_vocab(w, opt.vocab_path);
  }
  if (c.family == ArchFamily::Bert) w.set("tokenizer.ggml.token_type_count", gguf::Value::u32(c.n_token_types));
  w.set(a + ".vocab_size", gguf::Value::u32(c.n_vocab));

  // The tensors, in llama.cpp's order. Linear weights get U(-a, a) with std 1/sqrt(fan_in).
  const uint64_t E = c.n_embd, V = c.n_vocab, F = c.n_ff;
  const uint64_t Q = uint64_t{c.n_head} * c.head_dim, KV = uint64_t{c.n_head_kv} * c.head_dim;
  const float sqrt3 = std::sqrt(3.0f);
  auto lin = [&](uint64_t fan_in) { return sqrt3 / std::sqrt(static_cast<float>(fan_in)); };
  std::vector<PlannedTensor> ts;
  auto mat = [&](const std::string& name, uint64_t rows, uint64_t cols, DType t, float scale) {
    ts.push_back({name, {rows, cols}, fit_row(t, cols), scale, 0.0f});
  };
  auto vec = [&](const std::string& name, uint64_t n, float scale, float center) {
    ts.push_back({name, {n}, DType::F32, scale, center});
  };
  const DType dense_f = plan.base == DType::BF16 ? DType::BF16 : DType::F16;  // small matrices kept in float
  mat("token_embd.weight", V, E, plan.embd, lin(E));
  if (c.family == ArchFamily::Bert) {
    mat("position_embd.weight", c.n_ctx_train, E, plan.base == DType::F32 ? DType::F32 : dense_f, 0.02f * sqrt3);
    mat("token_types.weight", c.n_token_types, E, DType::F32, 0.02f * sqrt3);
    vec("token_embd_norm.weight", E, 0.1f, 1.0f);
    vec("token_embd_norm.bias", E, 0.02f, 0.0f);
    for (uint32_t i = 0; i < c.n_layer; ++i) {
      const std::string b = fmt::format("blk.{}.", i);
      for (const char* p : {"attn_q", "attn_k", "attn_v"}) {
        mat(b + p + ".weight", E, E, plan.base, lin(E));
        vec(b + p + ".bias", E, 0.02f, 0.0f);
      }
      mat(b + "attn_output.weight", E, E, plan.base, lin(E));
      vec(b + "attn_output.bias", E, 0.02f, 0.0f);
      vec(b + "attn_output_norm.weight", E, 0.1f, 1.0f);
      vec(b + "attn_output_norm.bias", E, 0.02f, 0.0f);
      mat(b + "ffn_up.weight", F, E, plan.base, lin(E));
      vec(b + "ffn_up.bias", F, 0.02f, 0.0f);
      mat(b + "ffn_down.weight", E, F, plan.base, lin(F));
      vec(b + "ffn_down.bias", E, 0.02f, 0.0f);
      vec(b + "layer_output_norm.weight", E, 0.1f, 1.0f);
      vec(b + "layer_output_norm.bias", E, 0.02f, 0.0f);
    }
  } else {
    vec("output_norm.weight", E, 0.1f, 1.0f);
    if (!c.tied_embeddings) mat("output.weight", V, E, plan.output, lin(E));
    if (c.rope.scaling == RopeScaling::Llama3) ts.push_back({"rope_freqs.weight", {c.rope.n_dims / 2}, DType::F32, 0, 0});
    for (uint32_t i = 0; i < c.n_layer; ++i) {
      const std::string b = fmt::format("blk.{}.", i);
      const DType more = use_more_bits(i, c.n_layer) ? plan.more_bits : plan.base;
      vec(b + "attn_norm.weight", E, 0.1f, 1.0f);
      mat(b + "attn_q.weight", Q, E, plan.base, lin(E));
      mat(b + "attn_k.weight", KV, E, plan.base, lin(E));
      mat(b + "attn_v.weight", KV, E, more, lin(E));
      if (c.qkv_bias) {
        vec(b + "attn_q.bias", Q, 0.1f, 0.0f);
        vec(b + "attn_k.bias", KV, 0.1f, 0.0f);
        vec(b + "attn_v.bias", KV, 0.1f, 0.0f);
      }
      if (c.qk_norm) {
        vec(b + "attn_q_norm.weight", c.head_dim, 0.1f, 1.0f);
        vec(b + "attn_k_norm.weight", c.head_dim, 0.1f, 1.0f);
      }
      mat(b + "attn_output.weight", E, Q, plan.base, lin(Q));
      vec(b + "ffn_norm.weight", E, 0.1f, 1.0f);
      mat(b + "ffn_gate.weight", F, E, plan.base, lin(E));
      mat(b + "ffn_up.weight", F, E, plan.base, lin(E));
      mat(b + "ffn_down.weight", E, F, more, lin(F));
    }
  }

  const std::vector<float> rope_factors =
      c.rope.scaling == RopeScaling::Llama3 ? llama3_rope_factors(c) : std::vector<float>{};
  SynthResult result;
  result.config = c;
  for (const auto& t : ts) {
    uint64_t n = 1;
    for (auto d : t.shape) n *= d;
    result.n_params += n;
    result.tensor_types.emplace_back(t.name, t.type);
    std::vector<uint64_t> ne(t.shape.rbegin(), t.shape.rend());
    w.add_tensor(t.name, t.type, ne, [&, t, n](uint8_t* dst, uint64_t nbytes) {
      if (t.name == "rope_freqs.weight") {
        std::memcpy(dst, rope_factors.data(), nbytes);
        return;
      }
      const uint64_t cols = t.shape.back();
      const uint64_t rows = n / cols;
      const uint64_t row_bytes = ref::row_bytes(t.type, static_cast<int64_t>(cols));
      const uint64_t base = hash_name(t.name, opt.seed);
      parallel_for(static_cast<int64_t>(rows), [&](int64_t r0, int64_t r1) {
        std::vector<float> row(cols);
        for (int64_t r = r0; r < r1; ++r) {
          SplitMix rng{base + static_cast<uint64_t>(r) * 0x632BE59BD9B4E019ull};
          for (auto& x : row) x = t.center + t.scale * (2.0f * rng.uniform() - 1.0f);
          ref::quantize_row(t.type, row.data(), dst + r * row_bytes, static_cast<int64_t>(cols));
        }
      }, opt.threads);
    });
  }
  w.write(out_path, progress);
  std::error_code ec;
  result.file_bytes = std::filesystem::file_size(out_path, ec);
  return result;
}

}  // namespace vireo
