// Hugging Face folders (config.json + safetensors, optionally MLX-quantized) -> Model.
// Tensor names are mapped onto the canonical GGUF-style names; rope style is NeoX because
// Hugging Face checkpoints keep q/k unpermuted.
#include <filesystem>
#include <functional>
#include <fstream>
#include <optional>
#include <regex>

#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "vireo/core/error.h"
#include "vireo/formats/model.h"
#include "vireo/formats/safetensors.h"
#include "json_input.h"

namespace vireo {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

json read_json(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) fail(ErrorCode::NotFound, "cannot read '{}'", p.string());
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return parse_untrusted_json(text, p.string());
}

template <typename T>
T get_or(const json& j, const char* key, T fallback, const std::string& file) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  try {
    return it->get<T>();
  } catch (const json::exception&) {
    fail(ErrorCode::InvalidFile, "{}: \"{}\" has the wrong type ({})", file, key, it->type_name());
  }
}

uint32_t get_u32(const json& j, const char* key, const std::string& file, std::optional<uint32_t> fallback = {}) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) {
    if (fallback) return *fallback;
    fail(ErrorCode::InvalidFile, "{}: required field \"{}\" is missing", file, key);
  }
  if (!it->is_number_unsigned() || it->get<uint64_t>() > 0xFFFFFFFFull) {
    fail(ErrorCode::InvalidFile, "{}: \"{}\" is {} (expected a non-negative integer)", file, key,
         it->is_primitive() ? it->dump() : std::string(it->type_name()));
  }
  return it->get<uint32_t>();
}

// Hugging Face name -> canonical name, or "" for tensors vireo does not use (rotary caches).
std::string canonical_name(std::string name, bool bert) {
  static const std::regex kLayer(R"(^(?:model\.)?layers\.(\d+)\.(.*)$)");
  static const std::regex kBertLayer(R"(^(?:bert\.)?encoder\.layer\.(\d+)\.(.*)$)");
  static const std::vector<std::pair<std::string, std::string>> kDecoderLayer = {
      {"input_layernorm", "attn_norm"},       {"self_attn.q_proj", "attn_q"},     {"self_attn.k_proj", "attn_k"},
      {"self_attn.v_proj", "attn_v"},         {"self_attn.o_proj", "attn_output"}, {"self_attn.q_norm", "attn_q_norm"},
      {"self_attn.k_norm", "attn_k_norm"},    {"post_attention_layernorm", "ffn_norm"}, {"mlp.gate_proj", "ffn_gate"},
      {"mlp.up_proj", "ffn_up"},              {"mlp.down_proj", "ffn_down"}};
  static const std::vector<std::pair<std::string, std::string>> kBertLayerNames = {
      {"attention.self.query", "attn_q"},    {"attention.self.key", "attn_k"},
      {"attention.self.value", "attn_v"},    {"attention.output.dense", "attn_output"},
      {"attention.output.LayerNorm", "attn_output_norm"}, {"intermediate.dense", "ffn_up"},
      {"output.dense", "ffn_down"},          {"output.LayerNorm", "layer_output_norm"}};
  static const std::vector<std::pair<std::string, std::string>> kGlobal = {
      {"model.embed_tokens", "token_embd"}, {"model.norm", "output_norm"}, {"lm_head", "output"},
      {"embeddings.word_embeddings", "token_embd"}, {"embeddings.position_embeddings", "position_embd"},
      {"embeddings.token_type_embeddings", "token_types"}, {"embeddings.LayerNorm", "token_embd_norm"}};
  if (bert && name.starts_with("bert.")) name = name.substr(5);
  // Split off the parameter suffix: weight, bias, or MLX's scales/biases.
  const auto dot = name.rfind('.');
  if (dot == std::string::npos) return "";
  const std::string stem = name.substr(0, dot), suffix = name.substr(dot + 1);
  std::smatch m;
  const std::string full = stem;
  if (std::regex_match(full, m, bert ? kBertLayer : kLayer)) {
    for (const auto& [from, to] : bert ? kBertLayerNames : kDecoderLayer) {
      if (m[2] == from) return "blk." + m[1].str() + "." + to + "." + suffix;
    }
    return "";
  }
  for (const auto& [from, to] : kGlobal) {
    if (stem == from) return to + "." + suffix;
  }
  return "";
}

struct QuantSpec {
  uint32_t bits = 0;
  uint32_t group_size = 0;
};

// MLX "quantization": {"group_size", "bits", "mode", "<module path>": {...} | false}.
std::optional<QuantSpec> mlx_quant_for(const json& q, const std::string& module, const std::string& file) {
  QuantSpec spec{get_u32(q, "bits", file), get_u32(q, "group_size", file)};
  if (auto it = q.find(module); it != q.end()) {
    if (it->is_boolean()) {
      if (!it->get<bool>()) return std::nullopt;
    } else if (it->is_object()) {
      spec.bits = get_u32(*it, "bits", file, spec.bits);
      spec.group_size = get_u32(*it, "group_size", file, spec.group_size);
    }
  }
  if (spec.bits != 4 && spec.bits != 8) {
    fail(ErrorCode::Unsupported, "{}: MLX quantization of '{}' uses {} bits (supported: 4, 8)", file, module, spec.bits);
  }
  if (spec.group_size != 32 && spec.group_size != 64 && spec.group_size != 128) {
    fail(ErrorCode::Unsupported, "{}: MLX group size {} for '{}' (supported: 32, 64, 128)", file, spec.group_size, module);
  }
  return spec;
}

void load_hf_tokenizer(const fs::path& dir, TokenizerData& tok) {
  const fs::path tj = dir / "tokenizer.json";
  std::error_code ec;
  if (!fs::exists(tj, ec)) return;
  const json j = read_json(tj);
  const std::string file = tj.string();
  if (!j.is_object() || !j.contains("model") || !j["model"].is_object()) {
    fail(ErrorCode::InvalidFile, "{}: no \"model\" object", file);
  }
  auto str_of = [&](const json& v, const char* what) -> std::string {
    if (!v.is_string()) fail(ErrorCode::InvalidFile, "{}: {} is {} (expected a string)", file, what, v.type_name());
    return v.get<std::string>();
  };
  auto flag = [&](const json& obj, const char* key, bool fallback) {
    return get_or<bool>(obj, key, fallback, file);
  };
  auto refuse = [&](std::string why) {
    if (tok.unsupported.empty()) tok.unsupported = file + ": " + why;
  };
  const json& model = j["model"];
  const std::string type = get_or<std::string>(model, "type", "", file);
  std::map<uint64_t, std::string> by_id;
  if (type == "BPE" || type == "WordPiece") {
    tok.kind = type == "BPE" ? TokenizerKind::BytePairEncoding : TokenizerKind::WordPiece;
    if (!model.contains("vocab") || !model["vocab"].is_object()) fail(ErrorCode::InvalidFile, "{}: model.vocab is not an object", file);
    for (const auto& [piece, id] : model["vocab"].items()) {
      if (!id.is_number_unsigned()) fail(ErrorCode::InvalidFile, "{}: vocab id of {} is not an integer", file, json(piece).dump());
      by_id[id.get<uint64_t>()] = piece;
    }
    if (auto m = model.find("merges"); m != model.end() && m->is_array()) {
      tok.merges.reserve(m->size());
      for (const auto& merge : *m) {
        if (merge.is_string()) tok.merges.push_back(merge.get<std::string>());
        else if (merge.is_array() && merge.size() == 2 && merge[0].is_string() && merge[1].is_string())
          tok.merges.push_back(merge[0].get<std::string>() + " " + merge[1].get<std::string>());
        else fail(ErrorCode::InvalidFile, "{}: a merge is neither \"a b\" nor [a, b]", file);
      }
    }
    if (type == "BPE") {
      if (auto it = model.find("ignore_merges"); it != model.end() && !it->is_null()) tok.ignore_merges = flag(model, "ignore_merges", false);
      tok.byte_fallback = flag(model, "byte_fallback", false);
      if (!get_or<std::string>(model, "continuing_subword_prefix", "", file).empty() ||
          !get_or<std::string>(model, "end_of_word_suffix", "", file).empty()) {
        refuse("BPE with continuing_subword_prefix / end_of_word_suffix is not supported");
      }
    } else {
      refuse("WordPiece from tokenizer.json is not supported (its GGUF conversion is)");
    }
  } else if (type == "Unigram") {
    tok.kind = TokenizerKind::Unigram;
    uint64_t i = 0;
    for (const auto& entry : model.value("vocab", json::array())) {
      if (!entry.is_array() || entry.size() != 2 || !entry[0].is_string() || !entry[1].is_number()) {
        fail(ErrorCode::InvalidFile, "{}: Unigram vocab entry {} malformed", file, i);
      }
      by_id[i++] = entry[0].get<std::string>();
      tok.scores.push_back(entry[1].get<float>());
    }
  } else {
    fail(ErrorCode::Unsupported, "{}: tokenizer model type '{}' is not supported (BPE, WordPiece, Unigram)", file, type);
  }
  for (const auto& added : j.value("added_tokens", json::array())) {
    if (!added.is_object() || !added.contains("id") || !added["id"].is_number_unsigned() || !added.contains("content")) {
      fail(ErrorCode::InvalidFile, "{}: an added_tokens entry lacks an integer \"id\" or a \"content\"", file);
    }
    const uint64_t id = added["id"].get<uint64_t>();
    if (id > 10'000'000) fail(ErrorCode::InvalidFile, "{}: added token id {} is implausibly large", file, id);
    by_id[id] = str_of(added["content"], "an added token's content");
    TokenizerData::AddedToken a;
    a.id = static_cast<int32_t>(id);
    a.special = flag(added, "special", false);
    a.lstrip = flag(added, "lstrip", false);
    a.rstrip = flag(added, "rstrip", false);
    a.single_word = flag(added, "single_word", false);
    a.normalized = flag(added, "normalized", !a.special);
    tok.added_tokens.push_back(a);
  }
  const uint64_t n = by_id.empty() ? 0 : by_id.rbegin()->first + 1;
  if (n > 10'000'000) fail(ErrorCode::InvalidFile, "{}: token id {} is implausibly large", file, n - 1);
  tok.tokens.assign(n, "");
  for (auto& [id, piece] : by_id) tok.tokens[id] = std::move(piece);
  auto id_of = [&](const std::string& text) -> int32_t {
    for (size_t i = 0; i < tok.tokens.size(); ++i) {
      if (tok.tokens[i] == text) return static_cast<int32_t>(i);
    }
    return -1;
  };

  // normalizer: none, or NFC (alone or as a one-element Sequence).
  if (auto it = j.find("normalizer"); it != j.end() && !it->is_null()) {
    const json* norm = &*it;
    if (norm->is_object() && norm->value("type", "") == "Sequence" && norm->contains("normalizers") &&
        (*norm)["normalizers"].is_array() && (*norm)["normalizers"].size() <= 1) {
      norm = (*norm)["normalizers"].empty() ? nullptr : &(*norm)["normalizers"][0];
    }
    if (norm) {
      tok.normalizer = norm->is_object() ? norm->value("type", "?") : "?";
      if (tok.normalizer != "NFC") refuse(fmt::format("normalizer '{}' is not supported (NFC is)", tok.normalizer));
    }
  }
  // pre_tokenizer: Split (regex or string, Isolated) and ByteLevel, alone or in a Sequence.
  std::function<void(const json&)> pre_step = [&](const json& p) {
    if (!p.is_object()) fail(ErrorCode::InvalidFile, "{}: a pre_tokenizer is not an object", file);
    const std::string ptype = get_or<std::string>(p, "type", "", file);
    if (ptype == "Sequence") {
      const json& list = p.value("pretokenizers", json::array());
      if (!list.is_array()) fail(ErrorCode::InvalidFile, "{}: pre_tokenizer Sequence without a list", file);
      for (const auto& q : list) pre_step(q);
    } else if (ptype == "ByteLevel") {
      tok.byte_level = true;
      tok.byte_level_prefix_space = flag(p, "add_prefix_space", false);
      tok.byte_level_regex = flag(p, "use_regex", true);
    } else if (ptype == "Split") {
      const json& pat = p.value("pattern", json::object());
      if (get_or<std::string>(p, "behavior", "", file) != "Isolated" || flag(p, "invert", false)) {
        refuse("Split pre-tokenizers other than behavior Isolated, invert false are not supported");
      }
      if (pat.contains("Regex")) {
        tok.split_regexes.push_back(str_of(pat["Regex"], "a Split pattern"));
      } else if (pat.contains("String")) {
        std::string escaped;
        for (char c : str_of(pat["String"], "a Split pattern")) {
          if (std::string_view("\\^$.|?*+()[]{}").find(c) != std::string_view::npos) escaped += '\\';
          escaped += c;
        }
        tok.split_regexes.push_back(escaped);
      } else {
        fail(ErrorCode::InvalidFile, "{}: a Split pre-tokenizer has neither a Regex nor a String pattern", file);
      }
    } else {
      refuse(fmt::format("pre-tokenizer '{}' is not supported (ByteLevel, Split and Sequence are)", ptype));
    }
  };
  if (auto it = j.find("pre_tokenizer"); it != j.end() && !it->is_null()) pre_step(*it);
  if (tok.kind == TokenizerKind::BytePairEncoding && !tok.byte_level) refuse("BPE without a ByteLevel pre-tokenizer is not supported");
  // post_processor: TemplateProcessing says which special tokens wrap a single sequence.
  if (auto it = j.find("post_processor"); it != j.end() && it->is_object() && it->value("type", "") == "TemplateProcessing") {
    const json& single = it->value("single", json::array());
    auto special_at = [&](size_t k) -> int32_t {
      if (!single.is_array() || k >= single.size() || !single[k].is_object() || !single[k].contains("SpecialToken")) return -1;
      const json& st = single[k]["SpecialToken"];
      return st.is_object() && st.contains("id") ? id_of(str_of(st["id"], "a SpecialToken id")) : -1;
    };
    if (single.is_array() && !single.empty()) {
      if (const int32_t b = special_at(0); b >= 0) {
        tok.add_bos = true;
        tok.bos_id = b;
      }
      if (const int32_t e = special_at(single.size() - 1); e >= 0 && single.size() > 1) {
        tok.add_eos = true;
        tok.eos_id = e;
      }
    }
  }

  const fs::path tc = dir / "tokenizer_config.json";
  if (fs::exists(tc, ec)) {
    const json c = read_json(tc);
    if (!c.is_object()) fail(ErrorCode::InvalidFile, "{}: not a JSON object", tc.string());
    auto special_id = [&](const char* key) -> int32_t {
      auto it = c.find(key);
      if (it == c.end() || it->is_null()) return -1;
      const std::string text = it->is_object()   ? get_or<std::string>(*it, "content", "", tc.string())
                               : it->is_string() ? it->get<std::string>()
                                                 : "";
      return id_of(text);
    };
    for (auto [key, id] : {std::pair{"bos_token", &tok.bos_id}, {"eos_token", &tok.eos_id}, {"unk_token", &tok.unk_id},
                           {"pad_token", &tok.pad_id}, {"sep_token", &tok.sep_id}, {"cls_token", &tok.cls_id},
                           {"mask_token", &tok.mask_id}}) {
      if (const int32_t v = special_id(key); v >= 0) *id = v;
    }
    tok.add_bos = get_or<bool>(c, "add_bos_token", tok.add_bos.value_or(false), tc.string());
    tok.add_eos = get_or<bool>(c, "add_eos_token", tok.add_eos.value_or(false), tc.string());
    if (auto it = c.find("clean_up_tokenization_spaces"); it != c.end() && !it->is_null()) {
      tok.clean_spaces = get_or<bool>(c, "clean_up_tokenization_spaces", false, tc.string());
    }
    if (auto t = c.find("chat_template"); t != c.end() && t->is_string()) tok.chat_template = t->get<std::string>();
  }
}

Model load_hf_folder(const std::string& path);

}  // namespace

TokenizerData load_tokenizer_json(const std::string& path) {
  std::error_code ec;
  const fs::path p(path);
  const fs::path dir = fs::is_directory(p, ec) ? p : p.parent_path();
  if (!fs::exists(dir / "tokenizer.json", ec)) fail(ErrorCode::NotFound, "no tokenizer.json at '{}'", path);
  TokenizerData tok;
  load_hf_tokenizer(dir, tok);
  return tok;
}

Model load_safetensors_model(const std::string& path) {
  // Configs are untrusted: a value of an unexpected JSON type anywhere is a bad file, not a crash.
  try {
    return load_hf_folder(path);
  } catch (const nlohmann::json::exception& e) {
    fail(ErrorCode::InvalidFile, "{}: a JSON value has an unexpected type or form: {}", path, e.what());
  }
}

namespace {

Model load_hf_folder(const std::string& path) {
  std::error_code ec;
  const bool is_dir = fs::is_directory(path, ec);
  const fs::path dir = is_dir ? fs::path(path) : fs::path(path).parent_path();
  const fs::path config_path = dir / "config.json";
  if (!fs::exists(config_path, ec)) {
    fail(ErrorCode::NotFound, "'{}' has no config.json beside it: a safetensors model needs its Hugging Face config",
         path);
  }
  const json cfg = read_json(config_path);
  const std::string cfile = config_path.string();
  if (!cfg.is_object()) fail(ErrorCode::InvalidFile, "{}: not a JSON object", cfile);

  Model m;
  ModelConfig& c = m.config;
  c.arch_name = get_or<std::string>(cfg, "model_type", "", cfile);
  const std::string& a = c.arch_name;
  if (a == "llama" || a == "mistral") c.family = ArchFamily::Llama;
  else if (a == "qwen2") c.family = ArchFamily::Qwen2;
  else if (a == "qwen3") c.family = ArchFamily::Qwen3;
  else if (a == "bert" || a == "nomic_bert") c.family = ArchFamily::Bert;
  else fail(ErrorCode::Unsupported, "{}: model_type '{}' is not supported (supported: llama, mistral, qwen2, qwen3, bert)", cfile, a);
  const bool bert = c.family == ArchFamily::Bert;

  c.n_layer = get_u32(cfg, "num_hidden_layers", cfile);
  c.n_embd = get_u32(cfg, "hidden_size", cfile);
  c.n_head = get_u32(cfg, "num_attention_heads", cfile);
  c.n_head_kv = get_u32(cfg, "num_key_value_heads", cfile, c.n_head);
  c.n_ff = get_u32(cfg, "intermediate_size", cfile);
  c.n_ctx_train = get_u32(cfg, "max_position_embeddings", cfile, 2048);
  c.n_vocab = get_u32(cfg, "vocab_size", cfile);
  if (c.n_head == 0) fail(ErrorCode::InvalidFile, "{}: num_attention_heads is 0", cfile);
  c.head_dim = get_u32(cfg, "head_dim", cfile, c.n_embd / c.n_head);
  c.tied_embeddings = get_or<bool>(cfg, "tie_word_embeddings", false, cfile);
  c.qkv_bias = c.family == ArchFamily::Qwen2 || c.family == ArchFamily::Bert || get_or<bool>(cfg, "attention_bias", false, cfile);
  c.qk_norm = c.family == ArchFamily::Qwen3;
  c.name = get_or<std::string>(cfg, "_name_or_path", dir.filename().string(), cfile);
  if (bert) {
    c.causal = false;
    c.rope.style = RopeStyle::None;
    c.norm_eps = get_or<float>(cfg, "layer_norm_eps", 1e-12f, cfile);
    c.n_token_types = get_u32(cfg, "type_vocab_size", cfile, 2);
    c.pooling = "mean";
  } else {
    c.rope.style = RopeStyle::NeoX;
    c.norm_eps = get_or<float>(cfg, "rms_norm_eps", 1e-6f, cfile);
    // Older configs: rope_theta + rope_scaling; transformers 5 writes both into rope_parameters.
    const auto params = cfg.find("rope_parameters");
    const bool has_params = params != cfg.end() && params->is_object();
    c.rope.theta = get_or<float>(cfg, "rope_theta", has_params ? get_or<float>(*params, "rope_theta", 10000.0f, cfile)
                                                               : 10000.0f, cfile);
    c.rope.n_dims = c.head_dim;
    auto rs = cfg.find("rope_scaling");
    if ((rs == cfg.end() || !rs->is_object()) && has_params) rs = params;
    if (rs != cfg.end() && rs->is_object()) {
      const std::string rfile = cfile + (rs == params ? " rope_parameters" : " rope_scaling");
      const std::string type = get_or<std::string>(*rs, "rope_type", get_or<std::string>(*rs, "type", "", rfile), rfile);
      c.rope.factor = get_or<float>(*rs, "factor", 1.0f, rfile);
      c.rope.original_context = get_or<uint32_t>(*rs, "original_max_position_embeddings", 0u, rfile);
      if (type == "llama3") {
        c.rope.scaling = RopeScaling::Llama3;
        c.rope.low_freq_factor = get_or<float>(*rs, "low_freq_factor", 1.0f, rfile);
        c.rope.high_freq_factor = get_or<float>(*rs, "high_freq_factor", 4.0f, rfile);
      } else if (type == "linear") {
        c.rope.scaling = RopeScaling::Linear;
      } else if (type == "yarn") {
        c.rope.scaling = RopeScaling::Yarn;
      } else if (type != "default" && !type.empty()) {
        fail(ErrorCode::Unsupported, "{}: rope_scaling type '{}' is not supported", cfile, type);
      }
    }
  }

  const json* quant = nullptr;
  for (const char* key : {"quantization", "quantization_config"}) {
    if (auto it = cfg.find(key); it != cfg.end() && it->is_object() && it->contains("bits")) quant = &*it;
  }
  if (quant != nullptr) {
    const std::string mode = get_or<std::string>(*quant, "mode", "affine", cfile + " quantization");
    if (mode != "affine") fail(ErrorCode::Unsupported, "{}: MLX quantization mode '{}' (supported: affine)", cfile, mode);
  }

  auto st = safetensors::Collection::open(path);
  m.format = quant != nullptr ? "mlx" : "safetensors";
  m.files = st.files();
  m.file_bytes = st.total_bytes();
  m.owners = st.owners();

  for (const auto* t : st.tensors()) {
    const std::string canon = canonical_name(t->name, bert);
    if (canon.empty()) continue;
    const std::string stem = t->name.substr(0, t->name.rfind('.'));
    if (canon.ends_with(".scales") || canon.ends_with(".biases")) continue;  // attached to their weight below
    Tensor w;
    w.name = canon;
    w.shape = t->shape;
    w.data = t->data;
    w.nbytes = t->nbytes();
    // A quantized module's .weight holds the packed levels; its .bias stays float.
    const safetensors::TensorInfo* scales = t->name.ends_with(".weight") ? st.find(stem + ".scales") : nullptr;
    if (scales != nullptr && quant != nullptr) {
      const auto spec = mlx_quant_for(*quant, stem, cfile);
      if (!spec) fail(ErrorCode::InvalidFile, "'{}' has scales but the config says it is not quantized", t->name);
      const safetensors::TensorInfo* biases = st.find(stem + ".biases");
      if (biases == nullptr) fail(ErrorCode::NotFound, "MLX tensor '{}' has scales but no '{}.biases'", t->name, stem);
      if (t->dtype != "U32" || t->shape.size() != 2) {
        fail(ErrorCode::InvalidFile, "MLX tensor '{}' must be 2-D U32 packed words, found {} with {} dims", t->name,
             t->dtype, t->shape.size());
      }
      const uint64_t cols = t->shape[1] * 32 / spec->bits;
      const std::vector<uint64_t> group_shape = {t->shape[0], cols / spec->group_size};
      if (cols % spec->group_size != 0 || scales->shape != group_shape || biases->shape != group_shape) {
        fail(ErrorCode::InvalidFile,
             "{}: MLX tensor '{}': {} columns in groups of {} need scales and biases of shape [{}, {}], found [{}] and [{}]",
             cfile, t->name, cols, spec->group_size, group_shape[0], group_shape[1], fmt::join(scales->shape, ", "),
             fmt::join(biases->shape, ", "));
      }
      const auto st_type = scales->float_type();
      if (!st_type || biases->dtype != scales->dtype) {
        fail(ErrorCode::InvalidFile, "MLX tensor '{}': scales and biases must share a float dtype (found {} and {})",
             t->name, scales->dtype, biases->dtype);
      }
      w.type = spec->bits == 4 ? DType::MLX_Q4 : DType::MLX_Q8;
      w.shape = {t->shape[0], cols};
      w.mlx_scales = scales->data;
      w.mlx_biases = biases->data;
      w.mlx_scale_type = *st_type;
      w.mlx_group_size = spec->group_size;
    } else {
      const auto ft = t->float_type();
      if (!ft) fail(ErrorCode::Unsupported, "tensor '{}' has dtype {} (supported: F32, F16, BF16, MLX-packed U32)", t->name, t->dtype);
      w.type = *ft;
    }
    if (m.weights.count(canon) != 0) fail(ErrorCode::InvalidFile, "two tensors map to '{}' (one is '{}')", canon, t->name);
    m.weights.emplace(canon, std::move(w));
  }
  if (!c.tied_embeddings && !bert && m.find("output.weight") == nullptr) c.tied_embeddings = true;
  load_hf_tokenizer(dir, m.tokenizer);
  validate_model(m);
  return m;
}

}  // namespace
}  // namespace vireo
