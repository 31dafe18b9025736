// vireo bench: llama-bench-style speed tests (pp, tg, pp+tg) over every combination of the
// given models, sizes and thread counts, with mean and standard deviation over repetitions.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "format.h"
#include "vireo/core/error.h"
#include "vireo/models/synth.h"
#include "vireo/runtime/benchmark.h"

namespace vireo::cli {
namespace {

namespace fs = std::filesystem;

std::string cache_dir() {
  if (const char* d = std::getenv("VIREO_CACHE"); d != nullptr && *d != 0) return d;
  if (const char* x = std::getenv("XDG_CACHE_HOME"); x != nullptr && *x != 0) return std::string(x) + "/vireo";
  if (const char* h = std::getenv("HOME"); h != nullptr && *h != 0) return std::string(h) + "/.cache/vireo";
  return ".vireo-cache";
}

// A synthetic model in the cache, written once.
std::string synthetic_model(const std::string& preset, const std::string& type, uint32_t layers) {
  const fs::path dir = fs::path(cache_dir()) / "synth";
  fs::create_directories(dir);
  const fs::path path = dir / fmt::format("{}-{}{}.gguf", preset, type, layers ? fmt::format("-{}l", layers) : "");
  if (!fs::exists(path)) {
    SynthOptions o;
    o.preset = preset;
    o.type = type;
    o.n_layer = layers;
    ProgressBar bar("synth " + path.filename().string());
    synthesize_model(o, path.string(), [&](size_t d, size_t n) { bar.update(d, n); });
    bar.finish();
  }
  return path.string();
}

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const double pos = p * static_cast<double>(v.size() - 1);
  const auto lo = static_cast<size_t>(pos);
  const size_t hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (v[hi] - v[lo]) * (pos - static_cast<double>(lo));
}

}  // namespace

Runner add_bench(CLI::App& app) {
  auto* cmd = app.add_subcommand("bench", "Measure prefill and decode speed (llama-bench style)");
  struct Opts {
    std::vector<std::string> models;
    std::vector<int32_t> prompts{512}, gens{128};
    std::vector<unsigned> threads{0};
    int reps = 5;
    std::string synthetic, type = "q4_0", output = "table", isa;
    uint32_t layers = 0;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("model", o->models, "Model files (GGUF, safetensors, MLX)");
  cmd->add_option("-m,--model", o->models, "Model file (repeatable)");
  cmd->add_option("-p,--n-prompt", o->prompts, "Prompt sizes (pp tests), comma-separated; 0 skips")->delimiter(',');
  cmd->add_option("-n,--n-gen", o->gens, "Generation sizes (tg tests), comma-separated; 0 skips")->delimiter(',');
  cmd->add_option("-t,--threads", o->threads, "Thread counts, comma-separated (0: one per core)")->delimiter(',');
  cmd->add_option("-r,--repetitions", o->reps, "Repetitions of each test (after one warm-up)")->capture_default_str();
  cmd->add_option("--synthetic", o->synthetic, "Benchmark a synthetic model of this preset (made once, cached)");
  cmd->add_option("--type", o->type, "Weight type of --synthetic")->capture_default_str();
  cmd->add_option("--layers", o->layers, "Layers of --synthetic (default: the preset's)");
  cmd->add_option("-o,--output", o->output, "table, json, md or csv")->check(CLI::IsMember({"table", "json", "md", "csv"}));
  cmd->add_option("--cpu-isa", o->isa, "Cap the CPU kernels: scalar, avx2, avx512, amx");
  return [o, cmd] {
    std::vector<std::string> models = o->models;
    if (!o->synthetic.empty()) models.push_back(synthetic_model(o->synthetic, o->type, o->layers));
    if (models.empty()) {  // the default run: small enough for a laptop minute
      models.push_back(synthetic_model("llama3.2-1b", "q4_0", 0));
      if (cmd->count("-p") == 0) o->prompts = {128};
      if (cmd->count("-n") == 0) o->gens = {32};
      if (cmd->count("-r") == 0) o->reps = 3;
    }
    std::vector<BenchTest> tests;
    for (int32_t p : o->prompts) if (p > 0) tests.push_back({p, 0});
    for (int32_t n : o->gens) if (n > 0) tests.push_back({0, n});
    if (tests.empty()) throw Error(ErrorCode::InvalidArgument, "no tests: give a -p or -n size above 0");
    int32_t max_tokens = 0;
    for (const auto& t : tests) max_tokens = std::max(max_tokens, t.n_prompt + t.n_gen);

    nlohmann::json results = nlohmann::json::array();
    const bool table = o->output == "table" || o->output == "md";
    if (table) {
      std::printf("| %-28s | %10s | %8s | %-28s | %7s | %12s | %16s |\n", "model", "size", "params", "backend", "threads", "test", "t/s");
      std::printf("| %s | %s: | %s: | %s | %s: | %s: | %s: |\n", std::string(28, '-').c_str(), std::string(9, '-').c_str(),
                  std::string(7, '-').c_str(), std::string(28, '-').c_str(), std::string(6, '-').c_str(),
                  std::string(11, '-').c_str(), std::string(15, '-').c_str());
    } else if (o->output == "csv") {
      std::printf("model,model_bytes,n_params,backend,threads,test,n_prompt,n_gen,avg_ts,stddev_ts\n");
    }
    for (const auto& path : models) {
      for (unsigned threads : o->threads) {
        EngineOptions eo;
        eo.n_threads = threads;
        eo.isa = o->isa;
        eo.n_ctx = max_tokens;
        TextEngine engine(path, eo);
        const std::string backend = engine.backend().name();
        const std::string name = fs::path(path).filename().string();
        for (const auto& t : tests) {
          const BenchResult r = run_bench_test(engine, t, o->reps);
          nlohmann::json samples = nlohmann::json::array();
          for (const auto& s : r.samples) samples.push_back(s.tokens_per_s);
          nlohmann::json j = {{"model", path},
                              {"model_bytes", engine.model().file_bytes},
                              {"n_params", engine.model().n_params()},
                              {"weight_bytes", engine.language_model().weight_bytes()},
                              {"kv_bytes", engine.cache().bytes()},
                              {"backend", backend},
                              {"threads", threads},
                              {"test", t.name()},
                              {"n_prompt", t.n_prompt},
                              {"n_gen", t.n_gen},
                              {"repetitions", o->reps},
                              {"samples_ts", samples},
                              {"avg_ts", r.mean_tokens_per_s},
                              {"stddev_ts", r.stddev_tokens_per_s},
                              {"peak_rss_bytes", peak_rss_bytes()},
                              {"rss_anon_bytes", resident_memory().anon_bytes},
                              {"rss_file_bytes", resident_memory().file_bytes}};
          if (!r.itl_ms.empty()) {
            j["itl_ms"] = {{"p50", percentile(r.itl_ms, 0.5)}, {"p90", percentile(r.itl_ms, 0.9)}, {"p99", percentile(r.itl_ms, 0.99)}};
          }
          results.push_back(j);
          if (table) {
            std::printf("| %-28s | %10s | %8s | %-28s | %7u | %12s | %8.2f ± %5.2f |\n", name.substr(0, 28).c_str(),
                        human_bytes(engine.model().file_bytes).c_str(), human_count(engine.model().n_params()).c_str(),
                        backend.substr(0, 28).c_str(), threads, t.name().c_str(), r.mean_tokens_per_s, r.stddev_tokens_per_s);
          } else if (o->output == "csv") {
            std::printf("\"%s\",%llu,%llu,\"%s\",%u,%s,%d,%d,%.3f,%.3f\n", path.c_str(),
                        static_cast<unsigned long long>(engine.model().file_bytes),
                        static_cast<unsigned long long>(engine.model().n_params()), backend.c_str(), threads,
                        t.name().c_str(), t.n_prompt, t.n_gen, r.mean_tokens_per_s, r.stddev_tokens_per_s);
          }
          std::fflush(stdout);
        }
      }
    }
    if (o->output == "json") std::printf("%s\n", nlohmann::json{{"vireo_version", "0.1.0"}, {"results", results}}.dump(2).c_str());
    return 0;
  };
}

}  // namespace vireo::cli
