// vireo serve: the OpenAI API on a local port.
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <pthread.h>
#include <thread>

#include "commands.h"
#include "device_option.h"
#include "format.h"
#include "vireo/core/error.h"
#include "vireo/server/http_server.h"

namespace vireo::cli {

Runner add_serve(CLI::App& app) {
  auto* cmd = app.add_subcommand("serve", "Serve models over the OpenAI API (chat, completions, embeddings) with continuous batching");
  struct Opts {
    std::vector<std::string> models, aliases;
    std::string host = "127.0.0.1", api_key, cors, template_file, device = "auto", isa, kv_type = "f16";
    int port = 8080, parallel = 16, step_tokens = 128, queue = 256, http_threads = 0;
    int64_t ctx = 0, kv_size = 0;
    unsigned threads = 0;
    double timeout = 600;
    size_t max_body = 8u << 20;
    bool no_prefix_cache = false, no_warmup = false;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("model", o->models, "Model files or folders (GGUF, safetensors, MLX); decoders generate, encoders embed");
  cmd->add_option("-m,--model", o->models, "Model (repeatable)");
  cmd->add_option("-a,--alias", o->aliases, "The name clients use for each model, in order (default: its file name)");
  cmd->add_option("--host", o->host, "Address to listen on; 0.0.0.0 exposes the server to the network")->capture_default_str();
  cmd->add_option("--port", o->port, "Port (0: any free one)")->capture_default_str();
  cmd->add_option("--api-key", o->api_key, "Require 'Authorization: Bearer KEY' (default: $VIREO_API_KEY when set)");
  cmd->add_option("--cors", o->cors, "Allow browsers from this origin (default: no CORS headers)");
  cmd->add_option("-c,--ctx-size", o->ctx, "Most tokens (prompt + completion) of one request (default: the model's, at most 4096)");
  cmd->add_option("--kv-size", o->kv_size, "KV cache cells shared by all sequences (default: 1024 per parallel sequence)");
  cmd->add_option("--parallel,--np", o->parallel, "Sequences decoded together (continuous batching)")->capture_default_str();
  cmd->add_option("-b,--batch-tokens", o->step_tokens, "Tokens per forward step; prompts are chunked to fit beside running streams")->capture_default_str();
  cmd->add_option("--queue", o->queue, "Requests that may wait for a place; more get 429")->capture_default_str();
  cmd->add_option("--timeout", o->timeout, "Seconds a request may generate")->capture_default_str();
  cmd->add_option("--max-body", o->max_body, "Largest request body in bytes (413 beyond)")->capture_default_str();
  cmd->add_option("--threads-http", o->http_threads, "HTTP worker threads (default: 4 per parallel sequence, at least 64)");
  cmd->add_option("--chat-template-file", o->template_file, "Use this Jinja chat template instead of the models' own");
  cmd->add_flag("--no-prefix-cache", o->no_prefix_cache, "Do not keep finished sequences' KV for prompts that share a prefix");
  cmd->add_flag("--no-warmup", o->no_warmup, "Skip the warm-up generation at start");
  add_device_option(cmd, o->device);
  cmd->add_option("-t,--threads", o->threads, "CPU threads (default: one per core)");
  cmd->add_option("--cpu-isa", o->isa, "Cap the CPU kernels: scalar, avx2, avx512, amx")->check(CLI::IsMember({"scalar", "avx2", "avx512", "amx"}));
  add_kv_type_option(cmd, o->kv_type);
  return [o] {
    if (o->models.empty()) throw Error(ErrorCode::InvalidArgument, "give a model to serve: vireo serve MODEL");
    if (o->aliases.size() > o->models.size()) throw Error(ErrorCode::InvalidArgument, "more --alias names than models");
    std::vector<server::ModelSpec> specs;
    for (size_t i = 0; i < o->models.size(); ++i) specs.push_back({o->models[i], i < o->aliases.size() ? o->aliases[i] : ""});
    server::ModelLoadOptions load;
    load.engine.device = o->device;
    load.engine.n_threads = o->threads;
    load.engine.isa = o->isa;
    load.engine.n_ctx = o->kv_size;
    load.engine.kv_type = kv_type_of(o->kv_type);
    load.scheduler.max_batch = o->parallel;
    load.scheduler.step_tokens = o->step_tokens;
    load.scheduler.max_queue = o->queue;
    load.scheduler.seq_ctx = o->ctx;
    load.scheduler.prefix_cache = !o->no_prefix_cache;
    load.warm_up = !o->no_warmup;
    if (!o->template_file.empty()) load.chat_template = read_text_file(o->template_file);
    server::ServerOptions so;
    so.host = o->host;
    so.port = o->port;
    so.api_key = o->api_key;
    if (so.api_key.empty()) {
      if (const char* k = std::getenv("VIREO_API_KEY")) so.api_key = k;
    }
    so.cors_origin = o->cors;
    so.timeout_s = o->timeout;
    so.max_body = o->max_body;
    so.http_threads = o->http_threads;

    // Signals go to one thread that stops the server; every other thread inherits the mask.
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &signals, nullptr);
    std::signal(SIGPIPE, SIG_IGN);

    std::fprintf(stderr, "vireo: loading %zu model(s)...\n", specs.size());
    server::Server server(specs, load, so);
    const int port = server.bind();
    std::thread waiter([&] {
      int sig = 0;
      sigwait(&signals, &sig);
      std::fprintf(stderr, "vireo: stopping\n");
      server.stop();
    });
    for (const auto& line : server.describe()) std::fprintf(stderr, "vireo: %s\n", line.c_str());
    std::string names;
    for (const auto& n : server.model_names()) names += (names.empty() ? "" : ", ") + n;
    std::printf("vireo: serving %s at http://%s:%d/v1\n", names.c_str(), o->host.c_str(), port);
    std::fflush(stdout);
    server.serve();
    pthread_kill(waiter.native_handle(), SIGTERM);  // when serve() ended some other way
    waiter.join();
    return 0;
  };
}

}  // namespace vireo::cli
