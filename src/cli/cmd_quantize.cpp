// vireo quantize: float GGUF -> Q8_0 / Q4_0 / Q4_K_M / ... GGUF, float safetensors -> MLX 4/8-bit.
#include <cstdio>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "format.h"
#include "vireo/core/error.h"
#include "vireo/models/quantize.h"
#include "vireo/models/type_plan.h"

namespace vireo::cli {

Runner add_quantize(CLI::App& app) {
  auto* cmd = app.add_subcommand("quantize", "Convert a model's weights to a quantized type");
  struct Opts {
    std::string in, out, type;
    uint32_t group = 64;
    unsigned threads = 0;
    bool dry_run = false, json = false, allow_requantize = false;
  };
  auto o = std::make_shared<Opts>();
  std::vector<std::string> types = file_type_names();
  types.push_back("mlx-q4");
  types.push_back("mlx-q8");
  cmd->add_option("input", o->in, "GGUF file, or a safetensors model folder (for MLX output)")->required();
  cmd->add_option("output", o->out, "Output GGUF file, or folder for MLX");
  cmd->add_option("--type", o->type, "Target: q8_0, q4_0, q4_k_m, ... (GGUF) or mlx-q4, mlx-q8")
      ->required()
      ->check(CLI::IsMember(types));
  cmd->add_option("--group-size", o->group, "MLX group size: 32, 64 or 128")->capture_default_str();
  cmd->add_option("-t,--threads", o->threads, "Threads (default: one per core)");
  cmd->add_flag("--dry-run", o->dry_run, "Print the plan and sizes; write nothing");
  cmd->add_flag("--allow-requantize", o->allow_requantize, "Accept an already-quantized GGUF");
  cmd->add_flag("--json", o->json, "Print the plan as JSON");
  return [o] {
    if (o->out.empty() && !o->dry_run) throw Error(ErrorCode::InvalidArgument, "give an output path (or --dry-run)");
    QuantizeOptions qo;
    qo.type = o->type;
    qo.mlx_group_size = o->group;
    qo.threads = o->threads;
    qo.allow_requantize = o->allow_requantize;
    ProgressBar bar("quantize");
    const QuantizeResult r = quantize_model(o->in, o->out, qo, o->dry_run, [&](size_t d, size_t n) { bar.update(d, n); });
    bar.finish();
    if (o->json) {
      nlohmann::json ts = nlohmann::json::array();
      for (const auto& t : r.tensors) {
        ts.push_back({{"name", t.name}, {"shape", t.shape}, {"from", t.from}, {"to", t.to}, {"bytes_in", t.bytes_in}, {"bytes_out", t.bytes_out}});
      }
      std::printf("%s\n", nlohmann::json{{"format", r.format}, {"type", o->type}, {"dry_run", o->dry_run}, {"output", o->out},
                                         {"bytes_in", r.bytes_in}, {"bytes_out", r.bytes_out}, {"tensors", ts}}.dump(2).c_str());
      return 0;
    }
    if (o->dry_run) {
      for (const auto& t : r.tensors) {
        std::string shape;
        for (auto d : t.shape) shape += (shape.empty() ? "" : " x ") + std::to_string(d);
        std::printf("%-40s %-16s %6s -> %-7s %10s -> %s\n", t.name.c_str(), shape.c_str(), t.from.c_str(), t.to.c_str(),
                    human_bytes(t.bytes_in).c_str(), human_bytes(t.bytes_out).c_str());
      }
    }
    std::printf("%s%s: %s -> %s (%.1f%%)\n", o->dry_run ? "dry run, " : "", o->type.c_str(), human_bytes(r.bytes_in).c_str(),
                human_bytes(r.bytes_out).c_str(), r.bytes_in ? 100.0 * r.bytes_out / r.bytes_in : 0.0);
    if (!o->dry_run) std::printf("wrote %s\n", o->out.c_str());
    return 0;
  };
}

}  // namespace vireo::cli
