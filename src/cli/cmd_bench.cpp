// vireo bench: llama-bench-style speed tests over every combination of models, sizes, depths,
// batches and thread counts; each result placed on the machine's measured roofline with a
// verdict and advice; optional llama.cpp peer runs, JSON/CSV/Markdown output and an HTML report.
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <numeric>
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "device_option.h"
#include "format.h"
#include "vireo/bench/benchmark.h"
#include "vireo/bench/gpu_monitor.h"
#include "vireo/bench/peer.h"
#include "vireo/bench/probe.h"
#include "vireo/bench/report.h"
#include "vireo/bench/roofline.h"
#include "vireo/bench/stress.h"
#include "vireo/core/error.h"
#include "vireo/models/synth.h"

namespace vireo::cli {
namespace {

namespace fs = std::filesystem;

// A synthetic model in the cache, written once.
std::string synthetic_model(const std::string& preset, const std::string& type, uint32_t layers) {
  const fs::path dir = fs::path(vireo_cache_dir()) / "synth";
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

// The weight type that dominates the file's bytes (for the roofline's choice of peak).
DType main_weight_type(const Model& m) {
  std::map<DType, uint64_t> bytes;
  for (const auto& [name, t] : m.weights) {
    if (t.shape.size() == 2) bytes[t.type] += t.nbytes;
  }
  DType best = DType::F32;
  uint64_t most = 0;
  for (const auto& [t, b] : bytes) {
    if (b > most) most = b, best = t;
  }
  return best;
}

}  // namespace

Runner add_bench(CLI::App& app) {
  auto* cmd = app.add_subcommand("bench", "Measure prefill and decode speed against the machine's roofline (llama-bench style)");
  struct Opts {
    std::vector<std::string> models, synthetic, types{"q4_0"}, pg;
    std::string prompts = "512", gens = "128", depths = "0", batches = "1", threads = "0";
    int reps = 5;
    std::string output = "table", isa, report, peer, peer_bin, device = "auto", kv_type = "f16";
    uint32_t layers = 0;
    bool refresh_probe = false, no_probe = false;
    std::string latency;
    double stress_s = 0;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("model", o->models, "Model files (GGUF, safetensors, MLX)");
  cmd->add_option("-m,--model", o->models, "Model file (repeatable)");
  cmd->add_option("-p,--n-prompt", o->prompts, "Prompt sizes (pp tests): N, A-B, A-B*M, A-B+S, comma-separated; 0 skips")->capture_default_str();
  cmd->add_option("-n,--n-gen", o->gens, "Generation sizes (tg tests), same forms; 0 skips")->capture_default_str();
  cmd->add_option("--pg", o->pg, "Prompt then generation, as P,N (repeatable)");
  cmd->add_option("-d,--n-depth", o->depths, "Context depths: tokens already in the KV cache")->capture_default_str();
  cmd->add_option("-b,--batch", o->batches, "Sequences processed together")->capture_default_str();
  cmd->add_option("-t,--threads", o->threads, "Thread counts (0: one per core)")->capture_default_str();
  cmd->add_option("-r,--repetitions", o->reps, "Repetitions of each test (after one warm-up)")->capture_default_str();
  cmd->add_option("--synthetic", o->synthetic, "Synthetic models of these presets (made once, cached), e.g. llama3-8b")->delimiter(',');
  cmd->add_option("--type", o->types, "Weight types of --synthetic (comma-separated)")->delimiter(',');
  cmd->add_option("--layers", o->layers, "Layers of --synthetic (default: the preset's)");
  add_device_option(cmd, o->device);
  add_kv_type_option(cmd, o->kv_type);
  cmd->add_option("-o,--output", o->output, "table, md, csv or json")->check(CLI::IsMember({"table", "json", "md", "csv"}))->capture_default_str();
  cmd->add_option("--report", o->report, "Write DIR/report.html (charts, roofline) and DIR/results.json");
  cmd->add_option("--peer", o->peer, "Run the same tests with another engine: llama.cpp")->check(CLI::IsMember({"llama.cpp"}));
  cmd->add_option("--peer-bin", o->peer_bin, "llama.cpp's llama-bench binary (default: found in PATH, else node-llama-cpp)");
  cmd->add_option("--cpu-isa", o->isa, "Cap the CPU kernels: scalar, avx2, avx512, amx");
  cmd->add_flag("--refresh-probe", o->refresh_probe, "Measure the hardware peaks again instead of using the cached ones");
  cmd->add_flag("--no-probe", o->no_probe, "Skip the hardware probe and the roofline");
  auto* latency_opt = cmd->add_option("--latency", o->latency,
                                      "Latency scenarios from an empty cache: short,medium,long (32, 512, 2048 prompt "
                                      "tokens) or prompt sizes; -n tokens each (64)");
  cmd->add_option("--stress", o->stress_s, "Generate for this many seconds, watching memory growth and slowdown")
      ->excludes(latency_opt);
  Runner serve = add_bench_serve(*cmd);
  Runner compare = add_bench_compare(*cmd);
  const CLI::App* serve_cmd = cmd->get_subcommand("serve");
  const CLI::App* compare_cmd = cmd->get_subcommand("compare");
  return [o, cmd, serve, serve_cmd, compare, compare_cmd] {
    if (serve_cmd->parsed()) return serve();
    if (compare_cmd->parsed()) return compare();
    // Resolved once, so every engine, the probe and the GPU monitor agree on the device.
    const std::string device = resolve_device(o->device);
    const bool on_gpu = device.rfind("cuda:", 0) == 0;
    const int gpu_index = on_gpu ? std::stoi(device.substr(5)) : 0;
    std::vector<std::string> models = o->models;
    for (const auto& preset : o->synthetic) {
      for (const auto& type : o->types) models.push_back(synthetic_model(preset, type, o->layers));
    }
    if (models.empty()) {  // the default run: a laptop minute
      models.push_back(synthetic_model("llama3.2-1b", "q4_0", 0));
      if (cmd->count("-p") == 0) o->prompts = "128";
      if (cmd->count("-n") == 0) o->gens = "32";
      if (cmd->count("-r") == 0) o->reps = 3;
      if (cmd->count("--report") == 0) o->report = (fs::path(vireo_cache_dir()) / "report").string();
    }
    const bool latency_mode = !o->latency.empty(), stress_mode = cmd->count("--stress") > 0;
    if (latency_mode && cmd->count("-n") == 0) o->gens = "64";
    if (latency_mode || stress_mode) o->prompts = "0";  // these modes replace the pp/tg tests
    if (stress_mode && !(o->stress_s > 0)) fail(ErrorCode::InvalidArgument, "--stress: seconds must be > 0");
    std::vector<BenchTest> shapes;
    for (int32_t p : parse_int_list(o->prompts, "-p")) if (p > 0) shapes.push_back({p, 0});
    for (int32_t n : parse_int_list(o->gens, "-n")) if (n > 0) shapes.push_back({0, n});
    for (const auto& pg : o->pg) {
      const auto v = parse_int_list(pg, "--pg");
      if (v.size() != 2 || v[0] <= 0 || v[1] <= 0) fail(ErrorCode::InvalidArgument, "--pg '{}': expected P,N", pg);
      shapes.push_back({v[0], v[1]});
    }
    if (latency_mode || stress_mode) shapes.clear();
    if (shapes.empty() && !latency_mode && !stress_mode) throw Error(ErrorCode::InvalidArgument, "no tests: give a -p, -n or --pg size above 0");
    const auto depths = parse_int_list(o->depths, "-d"), batches = parse_int_list(o->batches, "-b");
    const auto threads_list = parse_int_list(o->threads, "-t");
    std::vector<BenchTest> tests;
    for (const auto& s : shapes) {
      for (int32_t d : depths) {
        for (int32_t b : batches) {
          if (d < 0 || b < 1) fail(ErrorCode::InvalidArgument, "depths must be >= 0 and batches >= 1");
          tests.push_back({s.n_prompt, s.n_gen, d, b});
        }
      }
    }
    int64_t max_cells = 0;
    for (const auto& t : tests) max_cells = std::max(max_cells, t.cells());

    nlohmann::json doc = {{"vireo_version", "0.1.0"}, {"schema", 1}, {"results", nlohmann::json::array()}};
    ResourceMonitor monitor(100);
    monitor.start();
    const bool table = o->output == "table" || o->output == "md";
    const bool roof = !o->no_probe && !latency_mode && !stress_mode;
    // NVML beside the memory monitor; unavailable (with its reason) on machines without NVIDIA's driver.
    std::unique_ptr<GpuMonitor> gpu;
    if (on_gpu || stress_mode) gpu = std::make_unique<GpuMonitor>(static_cast<unsigned>(gpu_index), 100);
    if (gpu && !stress_mode) gpu->start();
    if (table && latency_mode) {
      std::printf("| %-26s | %10s | %7s | %-24s | %3s | %26s | %10s | %9s | %8s | %8s | %8s | %9s |\n", "model", "size", "params",
                  "backend", "thr", "test", "decode t/s", "TTFT ms", "ITL p50", "ITL p90", "ITL p99", "e2e ms");
      std::printf("| %s | %s: | %s: | %s | %s: | %s: | %s: | %s: | %s: | %s: | %s: | %s: |\n", std::string(26, '-').c_str(),
                  std::string(9, '-').c_str(), std::string(6, '-').c_str(), std::string(24, '-').c_str(),
                  std::string(2, '-').c_str(), std::string(25, '-').c_str(), std::string(9, '-').c_str(),
                  std::string(8, '-').c_str(), std::string(7, '-').c_str(), std::string(7, '-').c_str(),
                  std::string(7, '-').c_str(), std::string(8, '-').c_str());
    } else if (table && !stress_mode) {  // stress prints its own summary
      std::printf("| %-26s | %10s | %7s | %-24s | %3s | %16s | %16s |%s\n", "model", "size", "params", "backend", "thr", "test", "t/s",
                  roof ? "   GB/s | roof % | verdict        |" : "");
      std::printf("| %s | %s: | %s: | %s | %s: | %s: | %s: |%s\n", std::string(26, '-').c_str(), std::string(9, '-').c_str(),
                  std::string(6, '-').c_str(), std::string(24, '-').c_str(), std::string(2, '-').c_str(),
                  std::string(15, '-').c_str(), std::string(15, '-').c_str(), roof ? " ------: | -----: | -------------- |" : "");
    } else if (o->output == "csv" && latency_mode) {
      std::printf("model,backend,threads,test,n_prompt,n_gen,ttft_ms,itl_p50_ms,itl_p90_ms,itl_p99_ms,e2e_ms,decode_ts\n");
    } else if (o->output == "csv" && !stress_mode) {
      std::printf("model,model_bytes,n_params,backend,threads,test,n_prompt,n_gen,n_depth,batch,avg_ts,stddev_ts,gb_s,roofline_fraction,verdict\n");
    }
    const std::vector<int32_t> latency_gens = parse_int_list(o->gens, "-n");
    const size_t per_engine = latency_mode ? latency_gens.size() * (1 + static_cast<size_t>(std::count(o->latency.begin(), o->latency.end(), ',')))
                                           : stress_mode ? 1 : tests.size();
    const size_t total = models.size() * threads_list.size() * per_engine;
    size_t done = 0;
    ProgressBar bar("bench");
    for (const auto& path : models) {
      for (int32_t threads : threads_list) {
        if (threads < 0) fail(ErrorCode::InvalidArgument, "-t: thread counts must be >= 0");
        EngineOptions eo;
        eo.device = device;
        eo.n_threads = static_cast<unsigned>(threads);
        eo.isa = o->isa;
        eo.kv_type = kv_type_of(o->kv_type);
        eo.n_ctx = latency_mode || stress_mode ? 0 : max_cells;  // these two fit themselves to the model's context
        TextEngine engine(path, eo);
        HardwarePeaks peaks;
        nlohmann::json hardware;  // the peaks at this thread count
        if (roof) {
          peaks = on_gpu ? probe_cuda(gpu_index, o->refresh_probe)
                         : probe_cpu(static_cast<unsigned>(threads), o->isa, o->refresh_probe);
          hardware = {{"device", peaks.device},         {"mem_gb_s", peaks.mem_gb_s},   {"mem_method", peaks.mem_method},
                      {"int8_tops", peaks.int8_tops},   {"float_tflops", peaks.float_tflops},
                      {"from_cache", peaks.from_cache}};
          if (!doc.contains("hardware")) doc["hardware"] = hardware;  // the first probe; each result has its own
        }
        const ModelCost cost = model_cost(engine.config(), static_cast<double>(engine.language_model().weight_bytes()),
                                          main_weight_type(engine.model()), engine.cache().type());
        const std::string backend = engine.backend().name();
        const std::string name = fs::path(path).filename().string();
        const unsigned n_threads = threads > 0 ? static_cast<unsigned>(threads) : std::max(1u, std::thread::hardware_concurrency());
        nlohmann::json common = {{"engine", "vireo"},
                                 {"model", path},
                                 {"model_bytes", engine.model().file_bytes},
                                 {"n_params", engine.model().n_params()},
                                 {"weight_bytes", engine.language_model().weight_bytes()},
                                 {"kv_bytes", engine.cache().bytes()},
                                 {"device", device},
                                 {"backend", backend},
                                 {"threads", n_threads}};
        if (stress_mode) {
          StressOptions so;
          so.seconds = o->stress_s;
          so.batch = batches.front();
          std::fprintf(stderr, "stress: %s for %.0f s...\n", name.c_str(), o->stress_s);
          const StressResult sr = run_stress(engine, so, gpu.get());
          nlohmann::json j = common;
          j.update(stress_to_json(sr));
          if (!doc.contains("stress")) doc["stress"] = nlohmann::json::array();
          doc["stress"].push_back(j);
          if (gpu) doc["gpu"] = gpu_to_json(*gpu, sr.gpu);
          if (table || o->output == "csv") std::printf("%s: %s", name.c_str(), format_stress(sr).c_str());
          continue;
        }
        for (int32_t n_gen : latency_mode ? latency_gens : std::vector<int32_t>{}) {
          for (const auto& sc : parse_latency_scenarios(o->latency, n_gen, engine.n_ctx())) {
            bar.update(done, total);
            const LatencyResult lr = run_latency_test(engine, sc, o->reps);
            ++done;
            bar.finish();
            const nlohmann::json lat = latency_to_json(lr);
            const int64_t tokens = int64_t{sc.n_prompt} + sc.n_gen;
            nlohmann::json samples = nlohmann::json::array();
            std::vector<double> rates, itl;
            for (const auto& rep : lr.reps) {
              rates.push_back(static_cast<double>(tokens) / (rep.e2e_ms / 1000.0));
              samples.push_back({{"seconds", rep.e2e_ms / 1000.0}, {"tokens_per_s", rates.back()}});
              itl.insert(itl.end(), rep.itl_ms.begin(), rep.itl_ms.end());
            }
            const double mean = std::accumulate(rates.begin(), rates.end(), 0.0) / static_cast<double>(rates.size());
            double var = 0;
            for (double x : rates) var += (x - mean) * (x - mean);
            nlohmann::json j = common;
            j.update({{"test", sc.name()}, {"n_prompt", sc.n_prompt}, {"n_gen", sc.n_gen}, {"depth", 0}, {"batch", 1},
                      {"tokens", tokens}, {"repetitions", o->reps}, {"samples", samples}, {"avg_ts", mean},
                      {"stddev_ts", rates.size() > 1 ? std::sqrt(var / static_cast<double>(rates.size() - 1)) : 0.0},
                      {"peak_rss_bytes", peak_rss_bytes()}, {"latency", lat}, {"itl_ms", lat["itl_ms"]},
                      {"itl_ms_samples", itl}});
            doc["results"].push_back(j);
            if (table) {
              std::printf("| %-26s | %10s | %7s | %-24s | %3u | %26s | %10.2f | %9.2f | %8.2f | %8.2f | %8.2f | %9.1f |\n",
                          name.substr(0, 26).c_str(), human_bytes(engine.model().file_bytes).c_str(),
                          human_count(engine.model().n_params()).c_str(), backend.substr(0, 24).c_str(), n_threads,
                          sc.name().c_str(), lat["decode_tokens_per_s"].get<double>(), lat["ttft_ms"]["mean"].get<double>(),
                          lat["itl_ms"]["p50"].get<double>(), lat["itl_ms"]["p90"].get<double>(),
                          lat["itl_ms"]["p99"].get<double>(), lat["e2e_ms"]["mean"].get<double>());
            } else if (o->output == "csv") {
              std::printf("\"%s\",\"%s\",%u,\"%s\",%d,%d,%.3f,%.3f,%.3f,%.3f,%.3f,%.3f\n", path.c_str(), backend.c_str(),
                          n_threads, sc.name().c_str(), sc.n_prompt, sc.n_gen, lat["ttft_ms"]["mean"].get<double>(),
                          lat["itl_ms"]["p50"].get<double>(), lat["itl_ms"]["p90"].get<double>(),
                          lat["itl_ms"]["p99"].get<double>(), lat["e2e_ms"]["mean"].get<double>(),
                          lat["decode_tokens_per_s"].get<double>());
            }
            std::fflush(stdout);
          }
        }
        for (const auto& t : tests) {
          bar.update(done, total);
          const BenchResult r = run_bench_test(engine, t, o->reps);
          ++done;
          const ResidentMemory resident = resident_memory();
          nlohmann::json samples = nlohmann::json::array();
          for (const auto& s : r.samples) samples.push_back({{"seconds", s.seconds}, {"tokens_per_s", s.tokens_per_s}});
          nlohmann::json j = common;
          j.update({{"test", t.name()},
                    {"n_prompt", t.n_prompt},
                    {"n_gen", t.n_gen},
                    {"depth", t.depth},
                    {"batch", t.batch},
                    {"tokens", int64_t{t.batch} * (t.n_prompt + t.n_gen)},
                    {"repetitions", o->reps},
                    {"samples", samples},
                    {"avg_ts", r.mean_tokens_per_s},
                    {"stddev_ts", r.stddev_tokens_per_s},
                    {"peak_rss_bytes", peak_rss_bytes()},
                    {"rss_anon_bytes", resident.anon_bytes},
                    {"rss_file_bytes", resident.file_bytes}});
          if (!r.itl_ms.empty()) {
            j["itl_ms"] = {{"mean", std::accumulate(r.itl_ms.begin(), r.itl_ms.end(), 0.0) / static_cast<double>(r.itl_ms.size())},
                           {"p50", percentile(r.itl_ms, 0.5)},
                           {"p90", percentile(r.itl_ms, 0.9)},
                           {"p99", percentile(r.itl_ms, 0.99)}};
            j["itl_ms_samples"] = r.itl_ms;
          }
          Roofline rl;
          if (roof) {
            j["hardware"] = hardware;
            rl = analyze(cost, peaks, t.n_prompt, t.n_gen, t.depth, t.batch, r.mean_tokens_per_s);
            j["roofline"] = {{"bytes_per_token", rl.bytes_per_token}, {"flops_per_token", rl.flops_per_token},
                             {"achieved_gb_s", rl.achieved_gb_s},     {"achieved_tflops", rl.achieved_tflops},
                             {"intensity", rl.intensity},             {"attainable_tflops", rl.attainable_tflops},
                             {"fraction", rl.fraction},               {"bandwidth_fraction", rl.bandwidth_fraction},
                             {"compute_fraction", rl.compute_fraction}, {"bound", rl.bound},
                             {"verdict", rl.verdict},                 {"advice", rl.advice}};
          }
          doc["results"].push_back(j);
          bar.finish();
          if (table) {
            std::printf("| %-26s | %10s | %7s | %-24s | %3u | %16s | %8.2f ± %5.2f |", name.substr(0, 26).c_str(),
                        human_bytes(engine.model().file_bytes).c_str(), human_count(engine.model().n_params()).c_str(),
                        backend.substr(0, 24).c_str(), n_threads, t.name().c_str(), r.mean_tokens_per_s, r.stddev_tokens_per_s);
            if (roof) std::printf(" %7.1f | %5.0f%% | %-14s |", rl.achieved_gb_s, 100 * rl.fraction, rl.verdict.c_str());
            std::printf("\n");
          } else if (o->output == "csv") {
            std::printf("\"%s\",%llu,%llu,\"%s\",%u,\"%s\",%d,%d,%d,%d,%.3f,%.3f,%.3f,%.4f,%s\n", path.c_str(),
                        static_cast<unsigned long long>(engine.model().file_bytes),
                        static_cast<unsigned long long>(engine.model().n_params()), backend.c_str(), n_threads,
                        t.name().c_str(), t.n_prompt, t.n_gen, t.depth, t.batch, r.mean_tokens_per_s, r.stddev_tokens_per_s,
                        rl.achieved_gb_s, rl.fraction, rl.verdict.c_str());
          }
          std::fflush(stdout);
        }
        if (!o->peer.empty() && !tests.empty()) {
          const auto peer = run_llama_cpp_peer(o->peer_bin, path, tests, n_threads, o->reps, device);
          for (const auto& p : peer.results) {
            doc["results"].push_back(p);
            if (table) {
              std::printf("| %-26s | %10s | %7s | %-24s | %3u | %16s | %8.2f ± %5.2f |%s\n", name.substr(0, 26).c_str(), "",
                          "", ("llama.cpp " + peer.how).substr(0, 24).c_str(), n_threads, p.value("test", std::string()).c_str(),
                          p.value("avg_ts", 0.0), p.value("stddev_ts", 0.0), roof ? "         |        |                |" : "");
            }
          }
          doc["peer"] = {{"engine", "llama.cpp"}, {"how", peer.how}};
        }
      }
    }
    monitor.stop();
    if (gpu && !stress_mode) {
      gpu->stop();
      doc["gpu"] = gpu_to_json(*gpu, gpu->samples());
      const auto& sum = doc["gpu"].value("summary", nlohmann::json::object());
      if (table && sum.contains("gpu_util_pct_mean")) {
        std::string line = fmt::format("GPU while busy: kernel running {:.0f}% of the time (NVML), {:.0f} W, SM clock {:.0f} MHz",
                                       sum["gpu_util_pct_mean"].get<double>(), sum["power_w_mean"].get<double>(),
                                       sum["sm_clock_mhz_mean"].get<double>());
        if (sum.contains("sm_util_pct_mean")) {
          line += fmt::format("; GPM: SMs active {:.0f}%, tensor cores {:.0f}%, DRAM bandwidth {:.0f}%",
                              sum["sm_util_pct_mean"].get<double>(), sum["tensor_util_pct_mean"].get<double>(),
                              sum["dram_bw_util_pct_mean"].get<double>());
        } else {
          line += " (no GPM: " + gpu->gpm_reason() + ")";
        }
        std::printf("%s\n", line.c_str());
      }
    }
    nlohmann::json timeline = nlohmann::json::array();
    for (const auto& s : monitor.samples()) timeline.push_back({{"t_s", s.t_s}, {"rss_bytes", s.rss_bytes}, {"anon_bytes", s.anon_bytes}});
    doc["timeline"] = timeline;
    if (roof && table) {
      for (const auto& r : doc["results"]) {
        if (r.contains("roofline")) std::printf("%s: %s\n", r["test"].get<std::string>().c_str(), r["roofline"]["advice"].get<std::string>().c_str());
      }
    }
    if (o->output == "json") std::printf("%s\n", doc.dump(2).c_str());
    if (!o->report.empty()) {
      const std::string html = write_bench_report(o->report, doc);
      std::fprintf(stderr, "report: %s\n", html.c_str());
    }
    return 0;
  };
}

}  // namespace vireo::cli
