// `vireo serve`: the OpenAI API over HTTP. HTTP threads parse and validate requests into plain
// structs and stream events back; each decoder model has one Scheduler thread that owns it, each
// encoder model one embedding thread. Binds 127.0.0.1 unless told otherwise.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "vireo/runtime/scheduler.h"
#include "vireo/runtime/text_engine.h"

namespace vireo::server {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8080;                  // 0: any free port (see Server::port())
  std::string api_key;              // when set, every /v1 request needs "Authorization: Bearer KEY"
  std::string cors_origin;          // empty: no CORS headers (browsers on other origins are refused)
  size_t max_body = 8u << 20;       // request body limit in bytes (413 beyond)
  double timeout_s = 600;           // a request's generation ends after this long
  int http_threads = 0;             // 0: enough for 4x the parallel sequences, at least 64
};

struct ModelSpec {
  std::string path;
  std::string alias;  // the name clients use; default: the file name
};

struct ModelLoadOptions {
  EngineOptions engine;
  SchedulerOptions scheduler;
  std::string chat_template;  // replaces the models' own when set
  bool warm_up = true;        // run one short generation before serving
};

class Server {
 public:
  Server(const std::vector<ModelSpec>& models, const ModelLoadOptions& load, ServerOptions options);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds the socket; throws vireo::Error when it cannot (the port is taken...). Returns the port.
  int bind();
  // Serves until stop(); call bind() first.
  void serve();
  void stop();
  int port() const;
  std::vector<std::string> model_names() const;
  // One line per model: its kind, context, KV cache and batching, for the start-up message.
  std::vector<std::string> describe() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace vireo::server
