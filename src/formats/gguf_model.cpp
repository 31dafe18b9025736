// GGUF -> Model: hyperparameters from "{arch}.*" keys, tokenizer from "tokenizer.ggml.*".
#include <algorithm>
#include <cmath>
#include <limits>

#include "vireo/core/error.h"
#include "vireo/core/mapped_file.h"
#include "vireo/formats/gguf.h"
#include "vireo/formats/model.h"

namespace vireo {
namespace {

uint32_t get_u32(const gguf::File& f, const std::string& key, uint64_t fallback, bool required) {
  if (required && !f.has(key)) fail(ErrorCode::InvalidFile, "{}: required key '{}' is missing", f.path(), key);
  const uint64_t v = f.get_uint(key, fallback);
  if (v > 0xFFFFFFFFull) fail(ErrorCode::InvalidFile, "{}: key '{}' is {}, too large", f.path(), key, v);
  return static_cast<uint32_t>(v);
}

}  // namespace

Model load_gguf_model(const std::string& path) {
  auto file = std::make_shared<gguf::File>(gguf::File::open(path));
  const gguf::File& f = *file;
  Model m;
  m.format = "gguf";
  m.files = {path};
  m.file_bytes = f.file_size();

  ModelConfig& c = m.config;
  c.arch_name = f.get_string("general.architecture", "");
  if (c.arch_name.empty()) fail(ErrorCode::InvalidFile, "{}: key 'general.architecture' is missing", path);
  c.name = f.get_string("general.name", "");
  const std::string& a = c.arch_name;
  if (a == "llama" || a == "mistral") {
    c.family = ArchFamily::Llama;
    c.rope.style = RopeStyle::Normal;
  } else if (a == "qwen2") {
    c.family = ArchFamily::Qwen2;
    c.rope.style = RopeStyle::NeoX;
  } else if (a == "qwen3") {
    c.family = ArchFamily::Qwen3;
    c.rope.style = RopeStyle::NeoX;
  } else if (a == "bert") {
    c.family = ArchFamily::Bert;
    c.rope.style = RopeStyle::None;
    c.causal = false;
  } else {
    fail(ErrorCode::Unsupported, "{}: architecture '{}' is not supported (supported: llama, mistral, qwen2, qwen3, bert)",
         path, a);
  }
  m.tokenizer = read_gguf_tokenizer(f);

  const bool has_weights = !f.tensors().empty();
  c.n_layer = get_u32(f, a + ".block_count", 0, has_weights);
  c.n_embd = get_u32(f, a + ".embedding_length", 0, has_weights);
  c.n_ff = get_u32(f, a + ".feed_forward_length", 0, has_weights);
  c.n_head = get_u32(f, a + ".attention.head_count", 0, has_weights);
  c.n_head_kv = get_u32(f, a + ".attention.head_count_kv", c.n_head, false);
  c.n_ctx_train = get_u32(f, a + ".context_length", 0, has_weights);
  c.head_dim = get_u32(f, a + ".attention.key_length", c.n_head ? c.n_embd / c.n_head : 0, false);
  c.rope.n_dims = get_u32(f, a + ".rope.dimension_count", c.head_dim, false);
  c.rope.theta = static_cast<float>(f.get_float(a + ".rope.freq_base", 10000.0));
  c.norm_eps = static_cast<float>(f.get_float(
      a + (c.family == ArchFamily::Bert ? ".attention.layer_norm_epsilon" : ".attention.layer_norm_rms_epsilon"),
      c.family == ArchFamily::Bert ? 1e-12 : 1e-5));
  const std::string scaling = f.get_string(a + ".rope.scaling.type", "none");
  if (scaling == "linear") c.rope.scaling = RopeScaling::Linear;
  else if (scaling == "yarn") c.rope.scaling = RopeScaling::Yarn;
  else if (scaling != "none") fail(ErrorCode::Unsupported, "{}: rope scaling '{}' is not supported", path, scaling);
  c.rope.factor = static_cast<float>(f.get_float(a + ".rope.scaling.factor", 1.0));
  c.rope.original_context = get_u32(f, a + ".rope.scaling.original_context_length", 0, false);
  // llama.cpp stores llama3-style scaling as precomputed per-dimension factors (rope_freqs.weight).
  if (f.find_tensor("rope_freqs.weight") != nullptr) c.rope.scaling = RopeScaling::Llama3;
  if (c.family == ArchFamily::Bert) {
    c.n_token_types = get_u32(f, a + ".token_type_count", 2, false);
    const uint32_t pooling = get_u32(f, a + ".pooling_type", 1, false);
    c.pooling = pooling == 2 ? "cls" : "mean";
  }
  c.n_vocab = get_u32(f, a + ".vocab_size", m.tokenizer.tokens.size(), false);

  for (const auto& t : f.tensors()) {
    Tensor w;
    w.name = t.name;
    w.type = t.type;
    w.shape.assign(t.ne.rbegin(), t.ne.rend());
    w.data = t.data;
    w.nbytes = t.nbytes;
    w.file_mapped = true;
    m.weights.emplace(t.name, std::move(w));
  }
  m.owners.push_back(file->mapping());
  // Everything before the tensor data (metadata, the vocabulary) has been read into the model:
  // its file pages need not stay resident.
  drop_resident_pages(file->mapping()->bytes().data(), static_cast<size_t>(f.data_offset()));
  c.tied_embeddings = has_weights && c.causal && m.find("output.weight") == nullptr;  // encoders have no output head
  c.qkv_bias = m.find("blk.0.attn_q.bias") != nullptr;
  c.qk_norm = m.find("blk.0.attn_q_norm.weight") != nullptr;
  validate_model(m);
  return m;
}

}  // namespace vireo
