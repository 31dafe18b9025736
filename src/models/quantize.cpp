#include "vireo/models/quantize.h"

#include <cstring>
#include <filesystem>
#include <fstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "vireo/core/error.h"
#include "vireo/core/parallel.h"
#include "vireo/core/quant_blocks.h"
#include "vireo/formats/gguf.h"
#include "vireo/formats/safetensors.h"
#include "vireo/kernels/ref/quant.h"
#include "vireo/models/type_plan.h"

namespace vireo {
namespace fs = std::filesystem;
namespace {

uint64_t product(const std::vector<uint64_t>& v) {
  uint64_t n = 1;
  for (auto d : v) n *= d;
  return n;
}

std::string type_name(DType t) { return std::string(ggml_type_name(static_cast<uint32_t>(t))); }

bool is_float(DType t) { return t == DType::F32 || t == DType::F16 || t == DType::BF16; }

// Tensors llama.cpp leaves alone: vectors, norms, position and token-type tables, rope factors.
bool quantizable(const std::string& name, size_t n_dims) {
  if (n_dims < 2) return false;
  for (const char* keep : {"norm", "position_embd", "token_types", "rope_freqs", "pos_embd"}) {
    if (name.find(keep) != std::string::npos) return false;
  }
  return name.size() > 7 && name.ends_with(".weight");
}

// The layer of "blk.N.…", or -1.
int layer_of(const std::string& name) {
  if (!name.starts_with("blk.")) return -1;
  return std::atoi(name.c_str() + 4);
}

// ---------------------------------------------------------------- GGUF -> GGUF

QuantizeResult quantize_gguf(const std::string& in, const std::string& out, const QuantizeOptions& o, bool dry_run,
                             const std::function<void(size_t, size_t)>& progress) {
  const TypePlan plan = plan_for(o.type);
  const gguf::File src = gguf::File::open(in);
  const std::string arch = src.get_string("general.architecture");
  const auto n_layer = static_cast<uint32_t>(src.get_uint(arch + ".block_count", 0));

  gguf::Writer w(src.alignment());
  for (const auto& [key, value] : src.metadata()) {
    if (key == "general.file_type" || key == "general.quantization_version" || key == "general.alignment") continue;
    w.set(key, value);
  }
  w.set("general.file_type", gguf::Value::u32(plan.file_type));
  if (plan.file_type != 0 && plan.file_type != 1 && plan.file_type != 32) w.set("general.quantization_version", gguf::Value::u32(2));

  QuantizeResult result;
  result.format = "gguf";
  for (const auto& t : src.tensors()) {
    std::vector<uint64_t> shape(t.ne.rbegin(), t.ne.rend());
    DType to = t.type;
    if (quantizable(t.name, t.ne.size())) {
      if (!is_float(t.type) && !o.allow_requantize) {
        fail(ErrorCode::InvalidArgument, "{}: tensor '{}' is already {}; pass --allow-requantize to convert it anyway", in,
             t.name, type_name(t.type));
      }
      to = plan.base;
      if (t.name == "token_embd.weight") to = plan.embd;
      else if (t.name == "output.weight") to = plan.output;
      else if (t.name.ends_with("attn_v.weight") || t.name.ends_with("ffn_down.weight")) {
        const int layer = layer_of(t.name);
        if (layer >= 0 && use_more_bits(static_cast<uint32_t>(layer), n_layer)) to = plan.more_bits;
      }
      to = fit_row(to, t.ne[0]);
      if (t.ne[0] % dtype_traits(to)->block_elems != 0) to = DType::F16;  // rows that fit no block
    }
    QuantizedTensor q{t.name, shape, type_name(t.type), type_name(to), t.nbytes,
                      ref::row_bytes(to, static_cast<int64_t>(t.ne[0])) * (product(t.ne) / t.ne[0])};
    result.bytes_in += q.bytes_in;
    result.bytes_out += q.bytes_out;
    result.tensors.push_back(q);
    const gguf::TensorInfo* info = &t;
    w.add_tensor(t.name, to, t.ne, [info, to, threads = o.threads](uint8_t* dst, uint64_t nbytes) {
      if (to == info->type) {
        std::memcpy(dst, info->data, nbytes);
        return;
      }
      const auto cols = static_cast<int64_t>(info->ne[0]);
      const auto rows = static_cast<int64_t>(info->n_elements() / info->ne[0]);
      const size_t in_row = ref::row_bytes(info->type, cols), out_row = ref::row_bytes(to, cols);
      parallel_for(rows, [&](int64_t r0, int64_t r1) {
        std::vector<float> row(static_cast<size_t>(cols));
        for (int64_t r = r0; r < r1; ++r) {
          ref::dequantize_row(info->type, info->data + r * in_row, row.data(), cols);
          ref::quantize_row(to, row.data(), dst + r * out_row, cols);
        }
      }, threads);
    });
  }
  if (!dry_run) w.write(out, progress);
  return result;
}

// ---------------------------------------------------------------- safetensors -> MLX

uint16_t to_half_bits(float v, DType t) { return t == DType::BF16 ? fp32_to_bf16(v) : fp32_to_fp16(v); }

QuantizeResult quantize_mlx(const std::string& in, const std::string& out, const QuantizeOptions& o, bool dry_run,
                            const std::function<void(size_t, size_t)>& progress) {
  const int bits = o.type == "mlx-q4" ? 4 : 8;
  const uint32_t G = o.mlx_group_size;
  if (G != 32 && G != 64 && G != 128) fail(ErrorCode::InvalidArgument, "MLX group size must be 32, 64 or 128, got {}", G);
  const fs::path dir = fs::is_directory(in) ? fs::path(in) : fs::path(in).parent_path();
  const fs::path config_path = dir / "config.json";
  std::ifstream cf(config_path);
  if (!cf) fail(ErrorCode::NotFound, "{}: no config.json beside the safetensors files", dir.string());
  nlohmann::ordered_json config = nlohmann::ordered_json::parse(cf, nullptr, false);
  if (config.is_discarded() || !config.is_object()) fail(ErrorCode::InvalidFile, "{}: not a JSON object", config_path.string());
  if (config.contains("quantization")) fail(ErrorCode::InvalidArgument, "{}: the model is already MLX-quantized", in);

  const auto coll = safetensors::Collection::open(in);
  QuantizeResult result;
  result.format = "mlx";
  std::vector<safetensors::OwnedTensor> outs;
  const auto tensors = coll.tensors();
  size_t done = 0;
  for (const auto* t : tensors) {
    const auto ft = t->float_type();
    const uint64_t cols = t->shape.empty() ? 0 : t->shape.back();
    const bool quantize = ft && t->shape.size() == 2 && t->name.ends_with(".weight") && cols % G == 0 &&
                          t->name.find("norm") == std::string::npos;
    QuantizedTensor q{t->name, t->shape, t->dtype, quantize ? fmt::format("mlx-q{}", bits) : t->dtype, t->nbytes(), t->nbytes()};
    if (!quantize) {
      if (!dry_run) outs.push_back({t->name, t->dtype, t->shape, std::vector<uint8_t>(t->data, t->data + t->nbytes())});
    } else {
      const uint64_t rows = t->shape[0];
      const DType param_type = *ft == DType::F32 ? DType::F16 : *ft;  // scales and biases as MLX keeps them
      const uint64_t words = cols * static_cast<uint64_t>(bits) / 32, groups = cols / G;
      q.bytes_out = rows * (words * 4 + groups * 4);
      if (!dry_run) {
        const std::string stem = t->name.substr(0, t->name.size() - 7);
        safetensors::OwnedTensor wq{stem + ".weight", "U32", {rows, words}, std::vector<uint8_t>(rows * words * 4)};
        safetensors::OwnedTensor sc{stem + ".scales", param_type == DType::BF16 ? "BF16" : "F16", {rows, groups},
                                    std::vector<uint8_t>(rows * groups * 2)};
        safetensors::OwnedTensor bi{stem + ".biases", sc.dtype, {rows, groups}, std::vector<uint8_t>(rows * groups * 2)};
        parallel_for(static_cast<int64_t>(rows), [&](int64_t r0, int64_t r1) {
          std::vector<float> row(cols), s(groups), b(groups);
          for (int64_t r = r0; r < r1; ++r) {
            ref::dequantize_row(*ft, t->data + static_cast<uint64_t>(r) * cols * t->elem_bytes, row.data(),
                                static_cast<int64_t>(cols));
            auto* packed = reinterpret_cast<uint32_t*>(wq.bytes.data()) + static_cast<uint64_t>(r) * words;
            ref::quantize_mlx_row(bits, static_cast<int>(G), row.data(), packed, s.data(), b.data(), static_cast<int64_t>(cols));
            for (uint64_t g = 0; g < groups; ++g) {
              const uint16_t sh = to_half_bits(s[g], param_type), bh = to_half_bits(b[g], param_type);
              std::memcpy(sc.bytes.data() + (static_cast<uint64_t>(r) * groups + g) * 2, &sh, 2);
              std::memcpy(bi.bytes.data() + (static_cast<uint64_t>(r) * groups + g) * 2, &bh, 2);
            }
          }
        }, o.threads);
        outs.push_back(std::move(wq));
        outs.push_back(std::move(sc));
        outs.push_back(std::move(bi));
      }
    }
    result.bytes_in += q.bytes_in;
    result.bytes_out += q.bytes_out;
    result.tensors.push_back(q);
    if (progress) progress(++done, tensors.size());
  }
  if (dry_run) return result;

  // Into a temporary folder, renamed into place at the end.
  const fs::path final_dir(out), tmp = fs::path(out).string() + ".tmp-vireo";
  if (fs::exists(final_dir)) fail(ErrorCode::InvalidArgument, "'{}' exists; give a new folder for the MLX model", out);
  fs::remove_all(tmp);
  fs::create_directories(tmp);
  safetensors::write_file((tmp / "model.safetensors").string(), outs, {{"format", "mlx"}});
  nlohmann::ordered_json qcfg = {{"group_size", G}, {"bits", bits}, {"mode", "affine"}};
  config["quantization"] = qcfg;
  config["quantization_config"] = qcfg;
  {
    std::ofstream cfg(tmp / "config.json");
    cfg << config.dump(2) << "\n";
    if (!cfg) fail(ErrorCode::Io, "cannot write {}", (tmp / "config.json").string());
  }
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    if (!e.is_regular_file() || name == "config.json" || name.ends_with(".safetensors") ||
        name == "model.safetensors.index.json") {
      continue;
    }
    fs::copy_file(e.path(), tmp / name);  // tokenizer, generation config, ...
  }
  fs::rename(tmp, final_dir);
  return result;
}

}  // namespace

QuantizeResult quantize_model(const std::string& in, const std::string& out, const QuantizeOptions& o, bool dry_run,
                              const std::function<void(size_t, size_t)>& progress) {
  if (!fs::exists(in)) fail(ErrorCode::NotFound, "'{}' does not exist", in);
  const bool is_gguf = !fs::is_directory(in) && in.ends_with(".gguf");
  if (o.type == "mlx-q4" || o.type == "mlx-q8") {
    if (is_gguf) fail(ErrorCode::Unsupported, "MLX output needs a safetensors model (a Hugging Face folder), not GGUF");
    return quantize_mlx(in, out, o, dry_run, progress);
  }
  if (!is_gguf) {
    fail(ErrorCode::Unsupported,
         "'{}': safetensors models convert to MLX (--type mlx-q4 or mlx-q8); GGUF output needs a GGUF input", in);
  }
  return quantize_gguf(in, out, o, dry_run, progress);
}

}  // namespace vireo
