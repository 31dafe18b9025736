// vireo info MODEL: what a model file holds and what it needs to run.
#include <cstdio>
#include <map>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "format.h"
#include "vireo/formats/gguf.h"
#include "vireo/formats/model.h"
#include "vireo/tokenizer/tokenizer.h"
#include "vireo/core/error.h"

namespace vireo::cli {
namespace {

const char* family_name(ArchFamily f) {
  switch (f) {
    case ArchFamily::Llama: return "llama";
    case ArchFamily::Qwen2: return "qwen2";
    case ArchFamily::Qwen3: return "qwen3";
    case ArchFamily::Bert: return "bert";
  }
  return "?";
}
const char* rope_style_name(RopeStyle s) {
  switch (s) {
    case RopeStyle::None: return "none";
    case RopeStyle::Normal: return "normal";
    case RopeStyle::NeoX: return "neox";
  }
  return "?";
}
const char* rope_scaling_name(RopeScaling s) {
  switch (s) {
    case RopeScaling::None: return "none";
    case RopeScaling::Linear: return "linear";
    case RopeScaling::Yarn: return "yarn";
    case RopeScaling::Llama3: return "llama3";
  }
  return "?";
}

// Floats as their shortest decimal form (1e-05, not 9.999999747378752e-06).
double json_float(float v) { return std::stod(fmt::format("{}", v)); }

nlohmann::ordered_json describe(const Model& m, const std::string& path, uint32_t ctx) {
  const ModelConfig& c = m.config;
  const TokenizerData& t = m.tokenizer;
  // Whether BOS is added follows the family's defaults where the file is silent: ask the tokenizer.
  nlohmann::json add_bos = t.add_bos ? nlohmann::json(*t.add_bos) : nlohmann::json(nullptr);
  if (t.kind != TokenizerKind::None) {
    try {
      add_bos = Tokenizer::create(t)->add_bos();
    } catch (const Error&) {
      // Unusable tokenizer data: info still describes the file; tokenize reports the error.
    }
  }
  nlohmann::ordered_json j;
  j["path"] = path;
  j["format"] = m.format;
  if (m.format == "gguf") j["gguf_version"] = gguf::File::open(path).version();
  j["files"] = m.files;
  j["file_bytes"] = m.file_bytes;
  j["arch"] = c.arch_name;
  j["family"] = family_name(c.family);
  j["name"] = c.name;
  j["n_params"] = m.n_params();
  j["n_layer"] = c.n_layer;
  j["n_embd"] = c.n_embd;
  j["n_head"] = c.n_head;
  j["n_head_kv"] = c.n_head_kv;
  j["head_dim"] = c.head_dim;
  j["n_ff"] = c.n_ff;
  j["n_ctx_train"] = c.n_ctx_train;
  j["n_vocab"] = c.n_vocab;
  j["norm_eps"] = json_float(c.norm_eps);
  j["rope"] = {{"style", rope_style_name(c.rope.style)},
               {"theta", json_float(c.rope.theta)},
               {"n_dims", c.rope.n_dims},
               {"scaling", rope_scaling_name(c.rope.scaling)},
               {"factor", json_float(c.rope.factor)},
               {"original_context", c.rope.original_context}};
  j["flags"] = {{"qkv_bias", c.qkv_bias},
                {"qk_norm", c.qk_norm},
                {"tied_embeddings", c.tied_embeddings},
                {"causal", c.causal}};
  if (!c.pooling.empty()) j["pooling"] = c.pooling;
  j["tokenizer"] = {{"kind", tokenizer_kind_name(t.kind)},
                    {"pre", t.pre},
                    {"n_tokens", t.tokens.size()},
                    {"n_merges", t.merges.size()},
                    {"bos_id", t.bos_id},
                    {"eos_id", t.eos_id},
                    {"unk_id", t.unk_id},
                    {"add_bos", add_bos},
                    {"has_chat_template", !t.chat_template.empty()}};
  std::map<std::string, std::pair<uint64_t, uint64_t>> types;  // name -> (count, bytes)
  for (const auto& [name, w] : m.weights) {
    auto& e = types[std::string(dtype_traits(w.type)->name)];
    e.first += 1;
    e.second += w.nbytes;
  }
  nlohmann::ordered_json tj = nlohmann::ordered_json::object();
  for (const auto& [name, e] : types) tj[name] = {{"count", e.first}, {"bytes", e.second}};
  j["tensor_types"] = tj;
  j["n_tensors"] = m.weights.size();
  const uint64_t kv = m.kv_cache_bytes(ctx);
  j["memory"] = {{"ctx", ctx}, {"weights_bytes", m.weight_bytes()}, {"kv_cache_bytes", kv},
                 {"kv_cache_type", "f16"}, {"total_bytes", m.weight_bytes() + kv}};
  return j;
}

void print_text(const nlohmann::ordered_json& j) {
  auto line = [](const char* k, const std::string& v) { std::printf("%-11s %s\n", k, v.c_str()); };
  std::string fmt_name = j["format"].get<std::string>();
  if (j.contains("gguf_version")) fmt_name += fmt::format(" v{}", j["gguf_version"].get<int>());
  line("model", fmt::format("{} ({}, {})", j["path"].get<std::string>(), fmt_name,
                            human_bytes(j["file_bytes"].get<uint64_t>())));
  line("arch", fmt::format("{}{}", j["arch"].get<std::string>(),
                           j["name"].get<std::string>().empty() ? "" : " — " + j["name"].get<std::string>()));
  line("params", human_count(j["n_params"].get<uint64_t>()));
  line("layers", std::to_string(j["n_layer"].get<uint32_t>()));
  line("embedding", std::to_string(j["n_embd"].get<uint32_t>()));
  line("heads", fmt::format("{} (KV heads {}, head size {})", j["n_head"].get<uint32_t>(),
                            j["n_head_kv"].get<uint32_t>(), j["head_dim"].get<uint32_t>()));
  line("ffn", std::to_string(j["n_ff"].get<uint32_t>()));
  line("context", std::to_string(j["n_ctx_train"].get<uint32_t>()));
  const auto& r = j["rope"];
  line("rope", fmt::format("{}, theta {}, {} dims, scaling {}", r["style"].get<std::string>(),
                           r["theta"].get<float>(), r["n_dims"].get<uint32_t>(), r["scaling"].get<std::string>()));
  std::string flags;
  for (const auto& [k, v] : j["flags"].items()) {
    if (v.get<bool>()) flags += (flags.empty() ? "" : ", ") + k;
  }
  line("flags", flags.empty() ? "-" : flags);
  const auto& t = j["tokenizer"];
  line("tokenizer", fmt::format("{} (pre {}), {} tokens, {} merges, bos {}, eos {}", t["kind"].get<std::string>(),
                                t["pre"].get<std::string>(), t["n_tokens"].get<size_t>(), t["n_merges"].get<size_t>(),
                                t["bos_id"].get<int>(), t["eos_id"].get<int>()));
  std::string types;
  for (const auto& [k, v] : j["tensor_types"].items()) {
    types += fmt::format("{}{}: {} ({})", types.empty() ? "" : ", ", k, v["count"].get<uint64_t>(),
                         human_bytes(v["bytes"].get<uint64_t>()));
  }
  line("tensors", fmt::format("{} — {}", j["n_tensors"].get<size_t>(), types.empty() ? "none" : types));
  const auto& mem = j["memory"];
  line("memory", fmt::format("{} weights + {} KV cache (f16, ctx {}) = {}", human_bytes(mem["weights_bytes"].get<uint64_t>()),
                             human_bytes(mem["kv_cache_bytes"].get<uint64_t>()), mem["ctx"].get<uint32_t>(),
                             human_bytes(mem["total_bytes"].get<uint64_t>())));
}

}  // namespace

Runner add_info(CLI::App& app) {
  auto* cmd = app.add_subcommand("info", "Show a model's architecture, tensors and memory needs");
  struct Opts {
    std::string path;
    bool json = false;
    uint32_t ctx = 0;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("model", o->path, "GGUF file, .safetensors file, or Hugging Face / MLX folder")->required();
  cmd->add_flag("--json", o->json, "Print JSON");
  cmd->add_option("-c,--ctx", o->ctx, "Context length for the KV-cache estimate (default: the model's)");
  return [o] {
    const Model m = load_model(o->path);
    const uint32_t ctx = o->ctx != 0 ? o->ctx : m.config.n_ctx_train;
    const auto j = describe(m, o->path, ctx);
    if (o->json) {
      std::printf("%s\n", j.dump(2).c_str());
    } else {
      print_text(j);
    }
    return 0;
  };
}

}  // namespace vireo::cli
