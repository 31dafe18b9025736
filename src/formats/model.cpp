#include "vireo/formats/model.h"

#include <filesystem>

#include <fmt/ranges.h>

#include "vireo/core/error.h"

namespace vireo {

const char* tokenizer_kind_name(TokenizerKind k) {
  switch (k) {
    case TokenizerKind::None: return "none";
    case TokenizerKind::SentencePiece: return "sentencepiece";
    case TokenizerKind::BytePairEncoding: return "bpe";
    case TokenizerKind::WordPiece: return "wordpiece";
    case TokenizerKind::Unigram: return "unigram";
  }
  return "none";
}

uint64_t Tensor::n_elements() const {
  uint64_t n = 1;
  for (auto d : shape) n *= d;
  return n;
}

uint64_t Tensor::rows() const {
  uint64_t n = 1;
  for (size_t i = 0; i + 1 < shape.size(); ++i) n *= shape[i];
  return n;
}

const Tensor* Model::find(const std::string& name) const {
  auto it = weights.find(name);
  return it == weights.end() ? nullptr : &it->second;
}

const Tensor& Model::get(const std::string& name) const {
  const Tensor* t = find(name);
  if (t == nullptr) fail(ErrorCode::NotFound, "model is missing tensor '{}'", name);
  return *t;
}

uint64_t Model::n_params() const {
  uint64_t n = 0;
  for (const auto& [name, t] : weights) n += t.n_elements();
  return n;
}

uint64_t Model::weight_bytes() const {
  uint64_t n = 0;
  for (const auto& [name, t] : weights) {
    n += t.nbytes;
    if (t.mlx_scales != nullptr) {
      const uint64_t groups = t.n_elements() / t.mlx_group_size;
      n += 2 * groups * dtype_traits(t.mlx_scale_type)->block_bytes;
    }
  }
  return n;
}

uint64_t Model::kv_cache_bytes(uint32_t n_ctx) const {
  if (!config.causal) return 0;
  return 2ull * config.n_layer * n_ctx * config.n_head_kv * config.head_dim * sizeof(uint16_t);
}

namespace {

class ShapeChecker {
 public:
  explicit ShapeChecker(const Model& m) : m_(m) {}

  void require(const std::string& name, std::vector<uint64_t> shape) {
    const Tensor* t = m_.find(name);
    if (t == nullptr) {
      fail(ErrorCode::NotFound, "{}: {} model ({}) is missing tensor '{}' (expected shape [{}])", where(),
           m_.config.arch_name, m_.format, name, fmt::join(shape, ", "));
    }
    check(*t, shape);
  }
  void optional(const std::string& name, std::vector<uint64_t> shape) {
    if (const Tensor* t = m_.find(name)) check(*t, shape);
  }

 private:
  void check(const Tensor& t, const std::vector<uint64_t>& shape) {
    if (t.shape != shape) {
      fail(ErrorCode::InvalidFile, "{}: tensor '{}' has shape [{}] but the config implies [{}]", where(), t.name,
           fmt::join(t.shape, ", "), fmt::join(shape, ", "));
    }
  }
  std::string where() const { return m_.files.empty() ? std::string("model") : m_.files.front(); }
  const Model& m_;
};

}  // namespace

void validate_model(Model& m) {
  ModelConfig& c = m.config;
  if (m.weights.empty()) return;  // vocab-only file: nothing to check against
  if (const Tensor* emb = m.find("token_embd.weight"); emb != nullptr && emb->shape.size() == 2) {
    if (c.n_vocab == 0) c.n_vocab = static_cast<uint32_t>(emb->shape[0]);
  }
  const std::string where = m.files.empty() ? std::string("model") : m.files.front();
  auto bad = [&](const char* what, uint64_t v) {
    fail(ErrorCode::InvalidFile, "{}: model config: {} is {}, which is invalid", where, what, v);
  };
  if (c.n_layer == 0 || c.n_layer > 1024) bad("layer count", c.n_layer);
  if (c.n_embd == 0 || c.n_embd > (1u << 20)) bad("embedding size", c.n_embd);
  if (c.n_head == 0 || c.n_head > 4096) bad("head count", c.n_head);
  if (c.n_head_kv == 0 || c.n_head % c.n_head_kv != 0) {
    fail(ErrorCode::InvalidFile, "{}: model config: {} KV heads do not divide {} heads", where, c.n_head_kv, c.n_head);
  }
  if (c.head_dim == 0 || c.head_dim > 1024) bad("head size", c.head_dim);
  if (c.n_ff == 0 || c.n_ff > (1u << 22)) bad("feed-forward size", c.n_ff);
  if (c.n_vocab == 0) bad("vocabulary size", c.n_vocab);
  if (c.rope.n_dims == 0) c.rope.n_dims = c.head_dim;

  const uint64_t E = c.n_embd, V = c.n_vocab, F = c.n_ff;
  const uint64_t Q = uint64_t{c.n_head} * c.head_dim, KV = uint64_t{c.n_head_kv} * c.head_dim;
  ShapeChecker s(m);
  s.require("token_embd.weight", {V, E});
  if (c.family == ArchFamily::Bert) {
    s.require("position_embd.weight", {c.n_ctx_train, E});
    s.optional("token_types.weight", {c.n_token_types, E});
    s.require("token_embd_norm.weight", {E});
    s.require("token_embd_norm.bias", {E});
    for (uint32_t i = 0; i < c.n_layer; ++i) {
      const std::string b = fmt::format("blk.{}.", i);
      for (const char* p : {"attn_q", "attn_k", "attn_v", "attn_output"}) {
        s.require(b + p + ".weight", {E, E});
        s.require(b + p + ".bias", {E});
      }
      for (const char* p : {"attn_output_norm", "layer_output_norm"}) {
        s.require(b + p + ".weight", {E});
        s.require(b + p + ".bias", {E});
      }
      s.require(b + "ffn_up.weight", {F, E});
      s.require(b + "ffn_up.bias", {F});
      s.require(b + "ffn_down.weight", {E, F});
      s.require(b + "ffn_down.bias", {E});
    }
    return;
  }
  s.require("output_norm.weight", {E});
  if (!c.tied_embeddings) s.require("output.weight", {V, E});
  s.optional("rope_freqs.weight", {c.rope.n_dims / 2});
  for (uint32_t i = 0; i < c.n_layer; ++i) {
    const std::string b = fmt::format("blk.{}.", i);
    s.require(b + "attn_norm.weight", {E});
    s.require(b + "attn_q.weight", {Q, E});
    s.require(b + "attn_k.weight", {KV, E});
    s.require(b + "attn_v.weight", {KV, E});
    s.require(b + "attn_output.weight", {E, Q});
    if (c.qkv_bias) {
      s.require(b + "attn_q.bias", {Q});
      s.require(b + "attn_k.bias", {KV});
      s.require(b + "attn_v.bias", {KV});
    }
    if (c.qk_norm) {
      s.require(b + "attn_q_norm.weight", {c.head_dim});
      s.require(b + "attn_k_norm.weight", {c.head_dim});
    }
    s.require(b + "ffn_norm.weight", {E});
    s.require(b + "ffn_gate.weight", {F, E});
    s.require(b + "ffn_up.weight", {F, E});
    s.require(b + "ffn_down.weight", {E, F});
  }
}

Model load_model(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::exists(path, ec)) fail(ErrorCode::NotFound, "model '{}' does not exist", path);
  if (fs::is_directory(path, ec) || path.ends_with(".safetensors") || path.ends_with(".json")) {
    return load_safetensors_model(path);
  }
  return load_gguf_model(path);
}

}  // namespace vireo
