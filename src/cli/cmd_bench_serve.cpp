// vireo bench serve: load-test an OpenAI-compatible server (vireo's, llama-server, Ollama, vLLM)
// with streaming requests at a chosen rate and concurrency, and report TTFT, TPOT, ITL and
// end-to-end latency percentiles, throughput and goodput, as a table, JSON or an HTML report.
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <memory>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "format.h"
#include "vireo/bench/serve_load.h"
#include "vireo/core/error.h"

namespace vireo::cli {

Runner add_bench_serve(CLI::App& bench) {
  auto* cmd = bench.add_subcommand(
      "serve", "Load-test an OpenAI-compatible server: TTFT, TPOT, ITL and latency percentiles, throughput, goodput");
  struct Opts {
    serve_load::Options load;
    std::string endpoint = "chat", rate = "inf", slo, output = "table", report;
    bool no_ignore_eos = false;
    std::string extra_body;
  };
  auto s = std::make_shared<Opts>();
  auto& o = s->load;
  cmd->add_option("--url", o.url, "Server base URL (a trailing /v1 is fine)")->capture_default_str();
  cmd->add_option("--model", o.model, "Model name sent in requests (default: the first of GET /v1/models)");
  cmd->add_option("--endpoint", s->endpoint, "chat (/v1/chat/completions) or completions (/v1/completions)")
      ->check(CLI::IsMember({"chat", "completions"}))
      ->capture_default_str();
  cmd->add_option("-c,--concurrency", o.concurrency, "Most requests in flight at once (one worker thread each)")
      ->capture_default_str();
  cmd->add_option("-n,--requests", o.requests, "Requests in all (with --dataset, default: one per entry)")
      ->capture_default_str();
  cmd->add_option("--rate", s->rate, "Requests per second (inf: all at once, up to --concurrency)")
      ->capture_default_str();
  cmd->add_option("--burstiness", o.burstiness,
                  "Gamma shape of the gaps between arrivals (1: Poisson; lower: burstier)")
      ->capture_default_str();
  cmd->add_option("--input-len", o.input_len, "Synthetic prompts of about this many tokens (random common words)")
      ->capture_default_str();
  cmd->add_option("--output-len", o.output_len, "max_tokens of each request (0: let the server stop)")
      ->capture_default_str();
  cmd->add_flag("--no-ignore-eos", s->no_ignore_eos, "Do not send \"ignore_eos\": true with max_tokens");
  cmd->add_option("--extra-body", s->extra_body, "JSON object merged into every request, e.g. '{\"temperature\": 0}'");
  cmd->add_option("--dataset", o.dataset,
                  "JSONL prompts: {\"prompt\": ...} or {\"messages\": [...]}, optional \"max_tokens\"");
  cmd->add_option("--seed", o.seed, "Seed of the synthetic prompts and the arrival times")->capture_default_str();
  cmd->add_option("--api-key", o.api_key, "Bearer token (default: $OPENAI_API_KEY)");
  cmd->add_option("--timeout", o.timeout_s, "Seconds a request may take (connect, silence and total)")
      ->capture_default_str();
  cmd->add_option("--slo", s->slo, "Goodput objectives in ms, e.g. ttft:500,tpot:50 (also e2el:MS)");
  cmd->add_option("-o,--output", s->output, "table or json")
      ->check(CLI::IsMember({"table", "json"}))
      ->capture_default_str();
  cmd->add_option("--report", s->report, "Write DIR/report.html (latency charts) and DIR/results.json");
  return [s, cmd] {
    serve_load::Options o = s->load;
    o.endpoint = s->endpoint == "completions" ? serve_load::Endpoint::Completions : serve_load::Endpoint::Chat;
    o.rate = serve_load::parse_rate(s->rate);
    o.ignore_eos = !s->no_ignore_eos;
    if (!s->extra_body.empty()) {
      try {
        o.extra_body = nlohmann::json::parse(s->extra_body);
      } catch (const nlohmann::json::exception& e) {
        throw Error(ErrorCode::InvalidArgument, "--extra-body is not valid JSON: " + std::string(e.what()));
      }
      if (!o.extra_body.is_object()) throw Error(ErrorCode::InvalidArgument, "--extra-body must be a JSON object");
    }
    if (!s->slo.empty()) o.slo = serve_load::parse_slo(s->slo);
    if (!o.dataset.empty() && cmd->count("--requests") == 0) o.requests = 0;
    if (o.api_key.empty()) {
      if (const char* env = std::getenv("OPENAI_API_KEY"); env != nullptr) o.api_key = env;
    }
    std::signal(SIGPIPE, SIG_IGN);  // a server closing mid-write is a failed request, not the end of the run
    ProgressBar bar("bench serve");
    const serve_load::RunResult result =
        serve_load::run(o, [&](size_t done, size_t total) { bar.update(done, total); });
    bar.finish();
    const nlohmann::json doc = serve_load::to_json(result);
    if (s->output == "json") {
      std::printf("%s\n", doc.dump(2).c_str());
    } else {
      std::printf("%s", serve_load::format_table(result).c_str());
    }
    std::fflush(stdout);
    if (!s->report.empty()) {
      const std::string html = serve_load::write_report(s->report, doc);
      std::fprintf(stderr, "report: %s\n", html.c_str());
    }
    const auto& sum = result.summary;
    if (sum.completed == 0) {
      const std::string why = sum.errors.empty()
                                  ? std::string()
                                  : fmt::format(" (most often {}: {})", sum.errors[0].reason, sum.errors[0].example);
      throw Error(ErrorCode::Io, fmt::format("all {} requests failed{}", sum.failed, why));
    }
    return 0;
  };
}

}  // namespace vireo::cli
