// vireo synth: write a model of a real architecture with seeded random weights.
#include <cstdio>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "format.h"
#include "vireo/core/error.h"
#include "vireo/models/synth.h"

namespace vireo::cli {

Runner add_synth(CLI::App& app) {
  auto* cmd = app.add_subcommand("synth", "Write a model of a real architecture's shapes with random weights");
  auto o = std::make_shared<SynthOptions>();
  auto out = std::make_shared<std::string>();
  auto json = std::make_shared<bool>(false);
  auto list = std::make_shared<bool>(false);
  std::string presets, types;
  for (const auto& p : synth_presets()) presets += (presets.empty() ? "" : ", ") + p.name;
  for (const auto& t : synth_types()) types += (types.empty() ? "" : ", ") + t;
  cmd->add_option("--arch", o->preset, "Architecture preset: " + presets)->capture_default_str();
  cmd->add_option("--type", o->type, "Weight type: " + types)->capture_default_str();
  cmd->add_option("--layers", o->n_layer, "Number of layers (default: the preset's)");
  cmd->add_option("--vocab-size", o->vocab_size, "Shrink the vocabulary to N tokens (keeps every layer's shape; for tests)");
  cmd->add_option("--vocab", o->vocab_path, "GGUF file whose tokenizer to use (default: a built-in byte-level vocabulary)");
  cmd->add_option("--seed", o->seed, "Random seed")->capture_default_str();
  cmd->add_option("-t,--threads", o->threads, "Threads (default: all cores)");
  cmd->add_option("-o,--output", *out, "Output GGUF file");
  cmd->add_flag("--json", *json, "Print a JSON summary");
  cmd->add_flag("--list", *list, "List the presets and exit");
  return [o, out, json, list] {
    if (*list) {
      for (const auto& p : synth_presets()) {
        const auto& c = p.config;
        std::printf("%-13s %-24s %-6s layers %-3u embd %-5u heads %u/%u ff %u vocab %u\n", p.name.c_str(),
                    p.description.c_str(), c.arch_name.c_str(), c.n_layer, c.n_embd, c.n_head, c.n_head_kv, c.n_ff,
                    c.n_vocab);
      }
      return 0;
    }
    if (out->empty()) throw Error(ErrorCode::InvalidArgument, "synth needs an output file: -o OUT.gguf");
    ProgressBar bar(fmt::format("synth {} {}", o->preset, o->type));
    const auto r = synthesize_model(*o, *out, [&](size_t d, size_t t) { bar.update(d, t); });
    bar.finish();
    if (*json) {
      nlohmann::ordered_json j = {{"path", *out}, {"preset", o->preset}, {"type", o->type},
                                  {"n_layer", r.config.n_layer}, {"n_vocab", r.config.n_vocab},
                                  {"n_params", r.n_params}, {"file_bytes", r.file_bytes}};
      std::printf("%s\n", j.dump(2).c_str());
    } else {
      std::printf("wrote %s: %s %s, %s parameters, %s\n", out->c_str(), o->preset.c_str(), o->type.c_str(),
                  human_count(r.n_params).c_str(), human_bytes(r.file_bytes).c_str());
    }
    return 0;
  };
}

}  // namespace vireo::cli
