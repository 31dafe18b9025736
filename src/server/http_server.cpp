#include "vireo/server/http_server.h"

#include <httplib.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <future>

#include <fmt/format.h>

#include "vireo/backend/backend.h"
#include "vireo/core/error.h"
#include "vireo/models/language_model.h"
#include "vireo/runtime/json_constraint.h"
#include "vireo/server/metrics.h"
#include "vireo/server/openai_api.h"

namespace vireo::server {
namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// An encoder model behind one thread that batches every waiting request into one forward.
class EmbeddingService {
 public:
  EmbeddingService(std::shared_ptr<Model> model, const EngineOptions& eo) : model_(std::move(model)) {
    backend_ = create_backend(eo.backend_options());
    encoder_ = create_encoder(model_, *backend_);
    tokenizer_ = Tokenizer::create(model_->tokenizer);
    max_len_ = model_->config.n_ctx_train > 0 ? model_->config.n_ctx_train : 512;
    thread_ = std::thread([this] { run(); });
  }
  ~EmbeddingService() {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  const Tokenizer& tokenizer() const { return *tokenizer_; }
  const ModelConfig& config() const { return model_->config; }
  size_t max_len() const { return max_len_; }
  std::string backend_name() const { return backend_->name(); }

  std::vector<std::vector<float>> embed(std::vector<EncoderInput> inputs) {
    Job job{std::move(inputs), {}};
    auto result = job.done.get_future();
    {
      std::lock_guard lock(mu_);
      jobs_.push_back(std::move(job));
    }
    cv_.notify_all();
    return result.get();
  }

 private:
  struct Job {
    std::vector<EncoderInput> inputs;
    std::promise<std::vector<std::vector<float>>> done;
  };
  void run() {
    for (;;) {
      std::vector<Job> batch;
      {
        std::unique_lock lock(mu_);
        cv_.wait(lock, [&] { return stop_ || !jobs_.empty(); });
        if (stop_ && jobs_.empty()) return;
        batch.swap(jobs_);
      }
      std::vector<EncoderInput> all;
      for (auto& j : batch) all.insert(all.end(), j.inputs.begin(), j.inputs.end());
      try {
        auto vectors = encoder_->embed(all, true);
        size_t at = 0;
        for (auto& j : batch) {
          std::vector<std::vector<float>> mine(std::make_move_iterator(vectors.begin() + static_cast<ptrdiff_t>(at)),
                                               std::make_move_iterator(vectors.begin() + static_cast<ptrdiff_t>(at + j.inputs.size())));
          at += j.inputs.size();
          j.done.set_value(std::move(mine));
        }
      } catch (...) {
        for (auto& j : batch) j.done.set_exception(std::current_exception());
      }
    }
  }

  std::shared_ptr<Model> model_;
  std::unique_ptr<Backend> backend_;
  std::unique_ptr<EmbeddingModel> encoder_;
  std::unique_ptr<Tokenizer> tokenizer_;
  size_t max_len_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Job> jobs_;
  bool stop_ = false;
  std::thread thread_;
};

struct LoadedModel {
  std::string id;
  int64_t created = 0;
  std::unique_ptr<TextEngine> engine;       // decoders
  std::unique_ptr<Scheduler> scheduler;
  std::unique_ptr<EmbeddingService> embed;  // encoders
  const Tokenizer& tokenizer() const { return engine ? engine->tokenizer() : embed->tokenizer(); }
};

std::string finish_reason(const std::string& r) {
  // OpenAI knows stop and length; a timeout or shutdown cut the output short, like a length limit.
  return r == "stop" ? "stop" : "length";
}

json bytes_of(const std::string& s) {
  json b = json::array();
  for (unsigned char c : s) b.push_back(static_cast<int>(c));
  return b;
}

// One choice's output gathered for a non-streaming answer.
struct Choice {
  std::string text;
  std::vector<TokenLogprob> logprobs;
  GenerationEvent final_event;
};

}  // namespace

struct Server::Impl {
  ServerOptions o;
  std::vector<std::unique_ptr<LoadedModel>> models;
  httplib::Server http;
  Metrics metrics;
  int port = -1;
  std::atomic<bool> stopping{false};  // set by stop(): open requests end at once

  enum class Need { Generation, Embedding, Tokenizer };

  LoadedModel& find_model(const std::string& name, Need need) {
    const bool generate = need == Need::Generation;
    for (auto& m : models) {
      if (m->id == name) {
        if (generate && !m->scheduler) throw ApiError(400, fmt::format("model '{}' is an embedding model and cannot generate text", name), "model");
        if (need == Need::Embedding && !m->embed) throw ApiError(400, fmt::format("model '{}' is not an embedding model", name), "model");
        return *m;
      }
    }
    // Tokenizing needs no particular kind: the only model, or the first when none is named.
    if (need == Need::Tokenizer && (models.size() == 1 || name.empty())) return *models.front();
    // A name no model has: with one model of the right kind, clients' placeholder names reach it.
    LoadedModel* only = nullptr;
    int n = 0;
    for (auto& m : models) {
      if (need == Need::Tokenizer || (generate ? m->scheduler != nullptr : m->embed != nullptr)) only = m.get(), ++n;
    }
    if (n == 1 && (name.empty() || models.size() == 1)) return *only;
    if (n == 0) throw ApiError(400, generate ? "no text generation model is loaded" : "no embedding model is loaded", "model");
    if (name.empty()) throw ApiError(400, "'model' is required when several models are served", "model");
    throw ApiError(404, fmt::format("The model '{}' does not exist", name), "model", "invalid_request_error", "model_not_found");
  }

  json logprob_entry(const Tokenizer& tok, const TokenLogprob& lp) const {
    const std::string piece = tok.token_to_piece(lp.token, false);
    json top = json::array();
    for (const auto& [id, v] : lp.top) {
      const std::string p = tok.token_to_piece(id, false);
      top.push_back({{"token", p}, {"logprob", v}, {"bytes", bytes_of(p)}});
    }
    return {{"token", piece}, {"logprob", lp.logprob}, {"bytes", bytes_of(piece)}, {"top_logprobs", top}};
  }

  // Completions' older log-prob shape: parallel arrays.
  json legacy_logprobs(const Tokenizer& tok, const std::vector<TokenLogprob>& lps, size_t text_offset) const {
    json tokens = json::array(), token_lps = json::array(), tops = json::array(), offsets = json::array();
    for (const auto& lp : lps) {
      const std::string piece = tok.token_to_piece(lp.token, false);
      tokens.push_back(piece);
      token_lps.push_back(lp.logprob);
      json top = json::object();
      for (const auto& [id, v] : lp.top) top[tok.token_to_piece(id, false)] = v;
      tops.push_back(top);
      offsets.push_back(text_offset);
      text_offset += piece.size();
    }
    return {{"tokens", tokens}, {"token_logprobs", token_lps}, {"top_logprobs", tops}, {"text_offset", offsets}};
  }

  void record(const std::string& model, const GenerationEvent& e) {
    const double ttft = e.ttft_ms / 1000, e2e = e.total_ms / 1000;
    const double tpot = e.completion_tokens > 1 ? (e2e - ttft) / (e.completion_tokens - 1) : 0;
    metrics.completion(model, e.prompt_tokens, e.completion_tokens, ttft, e2e, tpot);
  }

  void completions(const httplib::Request& req, httplib::Response& res, bool chat);
  void embeddings(const httplib::Request& req, httplib::Response& res);
  void routes();
};

void Server::Impl::completions(const httplib::Request& req, httplib::Response& res, bool chat) {
  const json body = parse_body(req.body);
  const CompletionParams p = chat ? parse_chat_request(body) : parse_completion_request(body);
  LoadedModel& m = find_model(p.model, Need::Generation);
  TextEngine& engine = *m.engine;

  std::vector<std::vector<int32_t>> prompts;
  std::vector<std::string> prompt_texts;
  try {
    if (chat) {
      prompt_texts.push_back(engine.render_chat(p.messages));
      prompts.push_back(engine.tokenize(prompt_texts.back(), /*add_special=*/false));  // the template has BOS
    } else {
      for (const auto& t : p.prompts) {
        prompt_texts.push_back(t);
        prompts.push_back(engine.tokenize(t, true));
      }
      for (const auto& ids : p.prompt_ids) {
        prompt_texts.push_back(engine.tokenizer().decode(ids, true, false));
        prompts.push_back(ids);
      }
    }
  } catch (const Error& e) {
    throw ApiError(400, e.what(), chat ? "messages" : "prompt");
  }
  std::shared_ptr<const JsonGrammar> grammar;
  try {
    if (p.format == ResponseFormat::JsonObject) grammar = JsonGrammar::any_object();
    if (p.format == ResponseFormat::JsonSchema) grammar = JsonGrammar::from_schema(p.schema);
  } catch (const Error& e) {
    throw ApiError(400, e.what(), "response_format");
  }

  const auto deadline = Clock::now() + std::chrono::milliseconds(static_cast<int64_t>(o.timeout_s * 1000));
  std::vector<std::shared_ptr<RequestHandle>> handles;
  try {
    for (size_t i = 0; i < prompts.size(); ++i) {
      for (int32_t j = 0; j < p.n; ++j) {
        GenerationRequest r;
        r.prompt = prompts[i];
        r.max_tokens = p.max_tokens;
        r.sampling = p.sampling;
        r.sampling.seed += static_cast<uint64_t>(j);
        r.stop = p.stop;
        r.ignore_eos = p.ignore_eos;
        r.top_logprobs = p.logprobs ? p.top_logprobs : -1;
        r.json = grammar;
        r.deadline = deadline;
        handles.push_back(m.scheduler->submit(std::move(r)));
      }
    }
  } catch (const QueueFull& e) {
    for (auto& h : handles) h->cancel();
    res.set_header("Retry-After", "1");
    throw ApiError(429, e.what(), {}, "rate_limit_error", "rate_limit_exceeded");
  } catch (const Error& e) {
    for (auto& h : handles) h->cancel();
    throw ApiError(400, e.what(), chat ? "messages" : "prompt");
  }

  const std::string id = make_id(chat ? "chatcmpl" : "cmpl");
  const int64_t created = unix_now();
  const std::string model_id = m.id;
  const Tokenizer* tok = &engine.tokenizer();
  auto chunk_base = [=](json choices) {
    return json{{"id", id}, {"object", chat ? "chat.completion.chunk" : "text_completion"}, {"created", created},
                {"model", model_id}, {"system_fingerprint", "vireo"}, {"choices", std::move(choices)}};
  };
  // By value: the streaming provider calls it after this function has returned.
  auto usage_of = [n_choices = static_cast<size_t>(p.n)](const std::vector<GenerationEvent>& finals) {
    int64_t prompt = 0, completion = 0, cached = 0;
    for (size_t i = 0; i < finals.size(); ++i) {
      if (i % n_choices == 0) prompt += finals[i].prompt_tokens, cached += finals[i].cached_tokens;
      completion += finals[i].completion_tokens;
    }
    return json{{"prompt_tokens", prompt}, {"completion_tokens", completion}, {"total_tokens", prompt + completion},
                {"prompt_tokens_details", {{"cached_tokens", cached}}}};
  };

  if (!p.stream) {
    std::vector<Choice> choices(handles.size());
    for (size_t i = 0; i < handles.size(); ++i) {
      std::vector<GenerationEvent> events;
      while (handles[i]->next(events, std::chrono::milliseconds(100))) {
        if (stopping) handles[i]->cancel();
        for (auto& e : events) {
          choices[i].text += e.text;
          for (auto& lp : e.logprobs) choices[i].logprobs.push_back(std::move(lp));
          if (e.done) choices[i].final_event = e;
        }
        events.clear();
      }
    }
    json out_choices = json::array();
    std::vector<GenerationEvent> finals;
    for (size_t i = 0; i < choices.size(); ++i) {
      const GenerationEvent& f = choices[i].final_event;
      if (f.finish_reason == "error") throw ApiError(500, "generation failed: " + f.error);
      finals.push_back(f);
      record(model_id, f);
      json lp = nullptr;
      if (chat) {
        if (p.logprobs) {
          json content = json::array();
          for (const auto& l : choices[i].logprobs) content.push_back(logprob_entry(*tok, l));
          lp = {{"content", content}, {"refusal", nullptr}};
        }
        out_choices.push_back({{"index", i},
                               {"message", {{"role", "assistant"}, {"content", choices[i].text}, {"refusal", nullptr}}},
                               {"logprobs", lp},
                               {"finish_reason", finish_reason(f.finish_reason)}});
      } else {
        const std::string& prompt_text = prompt_texts[i / static_cast<size_t>(p.n)];
        if (p.logprobs) lp = legacy_logprobs(*tok, choices[i].logprobs, p.echo ? prompt_text.size() : 0);
        out_choices.push_back({{"index", i},
                               {"text", p.echo ? prompt_text + choices[i].text : choices[i].text},
                               {"logprobs", lp},
                               {"finish_reason", finish_reason(f.finish_reason)}});
      }
    }
    json out = chunk_base(out_choices);
    out["object"] = chat ? "chat.completion" : "text_completion";
    out["usage"] = usage_of(finals);
    res.set_content(dump(out), "application/json");
    return;
  }

  // Streaming: server-sent events as OpenAI sends them, ended by "data: [DONE]".
  struct StreamState {
    std::vector<std::shared_ptr<RequestHandle>> handles;
    ~StreamState() {
      for (auto& h : handles) h->cancel();  // a client that left stops its generation
    }
  };
  auto state = std::make_shared<StreamState>();
  state->handles = std::move(handles);
  const bool include_usage = p.include_usage, logprobs = p.logprobs, echo = p.echo;
  const int32_t n = p.n;
  res.set_header("Cache-Control", "no-cache");
  res.set_header("X-Accel-Buffering", "no");
  res.set_chunked_content_provider(
      "text/event-stream",
      [this, state, chat, include_usage, logprobs, echo, n, prompt_texts, model_id, tok, chunk_base,
       usage_of](size_t, httplib::DataSink& sink) {
        auto send = [&](json chunk) {
          if (include_usage) chunk["usage"] = nullptr;
          const std::string line = "data: " + dump(chunk) + "\n\n";
          return sink.write(line.data(), line.size());
        };
        auto fail_all = [&] {
          for (auto& h : state->handles) h->cancel();
          return false;
        };
        const size_t count = state->handles.size();
        std::vector<bool> open(count, true);
        std::vector<GenerationEvent> finals(count);
        std::vector<size_t> offsets(count, 0);
        for (size_t i = 0; i < count; ++i) {
          json first;
          if (chat) {
            first = {{"index", i}, {"delta", {{"role", "assistant"}, {"content", ""}, {"refusal", nullptr}}}, {"logprobs", nullptr}, {"finish_reason", nullptr}};
          } else if (echo) {
            first = {{"index", i}, {"text", prompt_texts[i / static_cast<size_t>(n)]}, {"logprobs", nullptr}, {"finish_reason", nullptr}};
          } else {
            continue;
          }
          if (!send(chunk_base(json::array({first})))) return fail_all();
        }
        size_t remaining = count;
        std::vector<GenerationEvent> events;
        const auto wait = std::chrono::milliseconds(count == 1 ? 200 : 2);
        while (remaining > 0) {
          if (stopping) return fail_all();
          for (size_t i = 0; i < count; ++i) {
            if (!open[i]) continue;
            events.clear();
            if (!state->handles[i]->next(events, wait)) {
              open[i] = false;
              --remaining;
              continue;
            }
            for (auto& e : events) {
              if (!e.text.empty() || !e.logprobs.empty()) {
                json lp = nullptr;
                if (logprobs && chat) {
                  json content = json::array();
                  for (const auto& l : e.logprobs) content.push_back(logprob_entry(*tok, l));
                  lp = {{"content", content}, {"refusal", nullptr}};
                } else if (logprobs) {
                  lp = legacy_logprobs(*tok, e.logprobs, offsets[i]);
                }
                offsets[i] += e.text.size();
                json c = chat ? json{{"index", i}, {"delta", {{"content", e.text}}}, {"logprobs", lp}, {"finish_reason", nullptr}}
                              : json{{"index", i}, {"text", e.text}, {"logprobs", lp}, {"finish_reason", nullptr}};
                if (!send(chunk_base(json::array({c})))) return fail_all();
              }
              if (e.done) {
                if (e.finish_reason == "error") {
                  const std::string line = "data: " + dump(ApiError(500, "generation failed: " + e.error).body()) + "\n\n";
                  sink.write(line.data(), line.size());
                  return fail_all();
                }
                record(model_id, e);
                finals[i] = e;
                json c = chat ? json{{"index", i}, {"delta", json::object()}, {"logprobs", nullptr}, {"finish_reason", finish_reason(e.finish_reason)}}
                              : json{{"index", i}, {"text", ""}, {"logprobs", nullptr}, {"finish_reason", finish_reason(e.finish_reason)}};
                if (!send(chunk_base(json::array({c})))) return fail_all();
              }
            }
          }
        }
        if (include_usage) {
          json u = chunk_base(json::array());
          u["usage"] = usage_of(finals);
          const std::string line = "data: " + dump(u) + "\n\n";
          if (!sink.write(line.data(), line.size())) return fail_all();
        }
        const std::string done = "data: [DONE]\n\n";
        if (!sink.write(done.data(), done.size())) return fail_all();
        sink.done();
        return true;
      });
}

void Server::Impl::embeddings(const httplib::Request& req, httplib::Response& res) {
  const EmbeddingParams p = parse_embedding_request(parse_body(req.body));
  LoadedModel& m = find_model(p.model, Need::Embedding);
  EmbeddingService& svc = *m.embed;
  std::vector<EncoderInput> inputs;
  int64_t total = 0;
  auto add = [&](std::vector<int32_t> ids, size_t i) {
    if (ids.size() > svc.max_len()) {
      throw ApiError(400, fmt::format("input {} has {} tokens but the model takes at most {}", i, ids.size(), svc.max_len()), "input");
    }
    for (int32_t t : ids) {
      if (t >= static_cast<int32_t>(svc.config().n_vocab)) throw ApiError(400, fmt::format("input {} has token id {} outside the vocabulary", i, t), "input");
    }
    total += static_cast<int64_t>(ids.size());
    inputs.push_back(EncoderInput{std::move(ids), {}});
  };
  for (size_t i = 0; i < p.texts.size(); ++i) add(svc.tokenizer().encode(p.texts[i], true, false), i);
  for (size_t i = 0; i < p.ids.size(); ++i) add(p.ids[i], i);
  const int32_t dims = static_cast<int32_t>(svc.config().n_embd);
  if (p.dimensions > dims) throw ApiError(400, fmt::format("'dimensions' {} exceeds the model's {}", p.dimensions, dims), "dimensions");
  auto vectors = svc.embed(std::move(inputs));
  json data = json::array();
  for (size_t i = 0; i < vectors.size(); ++i) {
    auto& v = vectors[i];
    if (p.dimensions > 0 && p.dimensions < dims) {  // shortened, then L2-normalised again (as OpenAI does)
      v.resize(static_cast<size_t>(p.dimensions));
      double s = 0;
      for (float x : v) s += static_cast<double>(x) * x;
      const auto inv = static_cast<float>(s > 0 ? 1.0 / std::sqrt(s) : 0.0);
      for (float& x : v) x *= inv;
    }
    json e = {{"object", "embedding"}, {"index", i}};
    if (p.base64) e["embedding"] = base64_floats(v);
    else e["embedding"] = v;
    data.push_back(std::move(e));
  }
  res.set_content(dump({{"object", "list"}, {"data", data}, {"model", m.id}, {"usage", {{"prompt_tokens", total}, {"total_tokens", total}}}}),
                  "application/json");
}

void Server::Impl::routes() {
  auto guarded = [this](auto fn) {
    return [this, fn](const httplib::Request& req, httplib::Response& res) {
      try {
        fn(req, res);
      } catch (const ApiError& e) {
        res.status = e.status();
        res.set_content(dump(e.body()), "application/json");
      } catch (const Error& e) {
        const int status = e.code() == ErrorCode::InvalidArgument ? 400 : 500;
        res.status = status;
        res.set_content(dump(ApiError(status, e.what()).body()), "application/json");
      } catch (const std::exception& e) {
        res.status = 500;
        res.set_content(dump(ApiError(500, e.what()).body()), "application/json");
      }
    };
  };
  http.Post("/v1/chat/completions", guarded([this](const auto& req, auto& res) { completions(req, res, true); }));
  http.Post("/v1/completions", guarded([this](const auto& req, auto& res) { completions(req, res, false); }));
  http.Post("/v1/embeddings", guarded([this](const auto& req, auto& res) { embeddings(req, res); }));
  http.Get("/v1/models", guarded([this](const auto&, auto& res) {
    json data = json::array();
    for (const auto& m : models) {
      json meta = {{"kind", m->scheduler ? "generate" : "embed"}};
      if (m->engine) meta["n_ctx"] = m->scheduler->seq_ctx();
      data.push_back({{"id", m->id}, {"object", "model"}, {"created", m->created}, {"owned_by", "vireo"}, {"meta", meta}});
    }
    res.set_content(dump({{"object", "list"}, {"data", data}}), "application/json");
  }));
  http.Get(R"(/v1/models/(.+))", guarded([this](const auto& req, auto& res) {
    const std::string name = req.matches[1];
    for (const auto& m : models) {
      if (m->id == name) {
        res.set_content(dump({{"id", m->id}, {"object", "model"}, {"created", m->created}, {"owned_by", "vireo"}}), "application/json");
        return;
      }
    }
    throw ApiError(404, fmt::format("The model '{}' does not exist", name), "model", "invalid_request_error", "model_not_found");
  }));
  http.Get("/health", [](const auto&, auto& res) { res.set_content(R"({"status":"ok"})", "application/json"); });
  http.Get("/metrics", [this](const auto&, auto& res) {
    std::vector<std::pair<std::string, double>> gauges;
    auto add = [&](const char* name, const std::string& model, double v) {
      gauges.emplace_back(fmt::format("{}{{model=\"{}\"}}", name, model), v);
    };
    // Gauge families, grouped as Prometheus wants them, each read from the scheduler's stats.
    using Field = int64_t SchedulerStats::*;
    static constexpr std::pair<const char*, Field> kGauges[] = {
        {"vireo_queue_depth", &SchedulerStats::queued},
        {"vireo_running_sequences", &SchedulerStats::running},
        {"vireo_batch_size", &SchedulerStats::last_batch},
        {"vireo_kv_cells_used", &SchedulerStats::kv_cells_used},
        {"vireo_kv_cells", &SchedulerStats::kv_cells},
        {"vireo_cached_sequences", &SchedulerStats::cached_sequences},
        {"vireo_forward_steps", &SchedulerStats::steps},
        {"vireo_forward_tokens", &SchedulerStats::step_tokens},
        {"vireo_forward_decode_tokens", &SchedulerStats::decode_tokens},
        {"vireo_forward_microseconds", &SchedulerStats::forward_us},
        {"vireo_sampling_microseconds", &SchedulerStats::sample_us},
        {"vireo_scheduler_generated_tokens", &SchedulerStats::generated_tokens},
    };
    std::vector<std::pair<std::string, SchedulerStats>> stats;
    for (const auto& m : models) {
      if (m->scheduler) stats.emplace_back(m->id, m->scheduler->stats());
    }
    for (const auto& [family, field] : kGauges) {
      for (const auto& [id, s] : stats) add(family, id, static_cast<double>(s.*field));
    }
    res.set_content(metrics.render(gauges), "text/plain; version=0.0.4");
  });
  auto tokenizer_for = [this](const json& body) -> const LoadedModel& {
    const std::string name = body.is_object() && body.contains("model") && body["model"].is_string() ? body["model"].get<std::string>() : "";
    return find_model(name, Need::Tokenizer);
  };
  http.Post("/tokenize", guarded([this, tokenizer_for](const auto& req, auto& res) {
    const json body = parse_body(req.body);
    if (!body.is_object() || !body.contains("content") || !body["content"].is_string()) {
      throw ApiError(400, "'content' (a string) is required", "content");
    }
    const bool add_special = body.value("add_special", false);
    const auto ids = tokenizer_for(body).tokenizer().encode(body["content"].get<std::string>(), add_special, true);
    res.set_content(dump({{"tokens", ids}}), "application/json");
  }));
  http.Post("/detokenize", guarded([this, tokenizer_for](const auto& req, auto& res) {
    const json body = parse_body(req.body);
    if (!body.is_object() || !body.contains("tokens") || !body["tokens"].is_array()) {
      throw ApiError(400, "'tokens' (an array of token ids) is required", "tokens");
    }
    const Tokenizer& tok = tokenizer_for(body).tokenizer();
    std::vector<int32_t> ids;
    for (const auto& t : body["tokens"]) {
      if (!t.is_number_integer() || t.get<int64_t>() < 0 || t.get<int64_t>() >= tok.n_vocab()) {
        throw ApiError(400, fmt::format("'tokens' must hold token ids from 0 to {}, got {}", tok.n_vocab() - 1, t.dump()), "tokens");
      }
      ids.push_back(static_cast<int32_t>(t.get<int64_t>()));
    }
    res.set_content(dump({{"content", tok.decode(ids, false, true)}}), "application/json");
  }));

  // Every request: API key, CORS preflight.
  http.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    if (!o.cors_origin.empty()) {
      res.set_header("Access-Control-Allow-Origin", o.cors_origin);
      res.set_header("Vary", "Origin");
      if (req.method == "OPTIONS") {
        res.set_header("Access-Control-Allow-Methods", "GET, POST, OPTIONS");
        res.set_header("Access-Control-Allow-Headers", "Authorization, Content-Type");
        res.set_header("Access-Control-Max-Age", "600");
        res.status = 204;
        return httplib::Server::HandlerResponse::Handled;
      }
    }
    if (!o.api_key.empty() && req.path != "/health") {
      if (req.get_header_value("Authorization") != "Bearer " + o.api_key) {
        res.status = 401;
        res.set_content(dump(ApiError(401, "Incorrect API key provided", {}, "invalid_request_error", "invalid_api_key").body()),
                        "application/json");
        return httplib::Server::HandlerResponse::Handled;
      }
    }
    return httplib::Server::HandlerResponse::Unhandled;
  });
  // Errors httplib answers itself (no route, body too large...) get OpenAI's error shape too.
  http.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    std::string message = fmt::format("{} {} failed with HTTP status {}", req.method, req.path, res.status);
    if (res.status == 404) message = fmt::format("no such endpoint: {} {}", req.method, req.path);
    if (res.status == 413) message = "the request body is larger than the server accepts (--max-body)";
    res.set_content(dump(ApiError(res.status, message).body()), "application/json");
  });
  // Counted before the response is written (the logger runs after), so a client that has its
  // answer already finds it in /metrics.
  http.set_post_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    metrics.request(req.matches.empty() ? "other" : req.path, res.status);
  });
}

Server::Server(const std::vector<ModelSpec>& specs, const ModelLoadOptions& load, ServerOptions options)
    : impl_(std::make_unique<Impl>()) {
  impl_->o = std::move(options);
  if (specs.empty()) throw Error(ErrorCode::InvalidArgument, "give at least one model to serve");
  for (const auto& spec : specs) {
    auto m = std::make_unique<LoadedModel>();
    m->id = spec.alias.empty() ? std::filesystem::path(spec.path).filename().string() : spec.alias;
    if (m->id.empty()) m->id = spec.path;  // a folder given with a trailing slash
    for (const auto& other : impl_->models) {
      if (other->id == m->id) fail(ErrorCode::InvalidArgument, "two models are named '{}': give each an --alias", m->id);
    }
    m->created = unix_now();
    auto model = std::make_shared<Model>(load_model(spec.path));
    if (!model->config.causal) {
      m->embed = std::make_unique<EmbeddingService>(std::move(model), load.engine);
    } else {
      // A request's context: as given, else the model's (at most 4096). The cache holds room for
      // the parallel sequences: as given, else 1024 cells each and at least one full context.
      const uint32_t train = model->config.n_ctx_train > 0 ? model->config.n_ctx_train : 4096;
      SchedulerOptions so = load.scheduler;
      if (so.seq_ctx <= 0) so.seq_ctx = std::min<int64_t>(train, 4096);
      EngineOptions eo = load.engine;
      if (eo.n_ctx <= 0) eo.n_ctx = std::max<int64_t>(so.seq_ctx, int64_t{so.max_batch} * 1024);
      m->engine = std::make_unique<TextEngine>(std::move(model), eo);
      (void)m->engine->tokenizer();  // a server speaks text: refuse models without a tokenizer now
      if (!load.chat_template.empty()) m->engine->set_chat_template(load.chat_template);
      m->scheduler = std::make_unique<Scheduler>(*m->engine, so);
      if (load.warm_up) {  // the kernels' first-use costs are paid before the first client
        GenerationRequest r;
        r.prompt = m->engine->tokenize("Hello", true);
        r.max_tokens = 2;
        r.ignore_eos = true;
        auto h = m->scheduler->submit(std::move(r));
        std::vector<GenerationEvent> events;
        while (h->next(events, std::chrono::milliseconds(1000))) events.clear();
      }
    }
    impl_->models.push_back(std::move(m));
  }
  Impl& s = *impl_;
  int threads = s.o.http_threads;
  if (threads <= 0) threads = std::max(64, 4 * load.scheduler.max_batch);
  s.http.new_task_queue = [threads] { return new httplib::ThreadPool(static_cast<size_t>(threads)); };
  s.http.set_payload_max_length(s.o.max_body);
  s.http.set_tcp_nodelay(true);  // tokens leave as they come, not when Nagle lets them
  s.http.set_keep_alive_max_count(1000);
  s.http.set_read_timeout(30, 0);
  s.http.set_write_timeout(30, 0);
  s.routes();
}

Server::~Server() { stop(); }

int Server::bind() {
  Impl& s = *impl_;
  if (s.o.port == 0) {
    s.port = s.http.bind_to_any_port(s.o.host);
  } else {
    s.port = s.http.bind_to_port(s.o.host, s.o.port) ? s.o.port : -1;
  }
  if (s.port < 0) fail(ErrorCode::Io, "cannot listen on {}:{} (in use, or not an address of this machine)", s.o.host, s.o.port);
  return s.port;
}

void Server::serve() { impl_->http.listen_after_bind(); }

void Server::stop() {
  if (!impl_) return;
  impl_->stopping = true;
  impl_->http.stop();
}

int Server::port() const { return impl_->port; }

std::vector<std::string> Server::model_names() const {
  std::vector<std::string> names;
  for (const auto& m : impl_->models) names.push_back(m->id);
  return names;
}

std::vector<std::string> Server::describe() const {
  std::vector<std::string> lines;
  for (const auto& m : impl_->models) {
    if (m->embed) {
      lines.push_back(fmt::format("{}: embeddings on {}, {} dimensions, up to {} tokens per input", m->id,
                                  m->embed->backend_name(), m->embed->config().n_embd, m->embed->max_len()));
      continue;
    }
    const auto& so = m->scheduler->options();
    lines.push_back(fmt::format("{}: generation on {}, up to {} tokens per request, {} sequences in parallel, KV cache of {} cells ({:.0f} MiB){}",
                                m->id, m->engine->backend().name(), m->scheduler->seq_ctx(), so.max_batch, m->engine->n_ctx(),
                                static_cast<double>(m->engine->cache().bytes()) / (1 << 20),
                                m->engine->has_chat_template() ? "" : ", no chat template (completions only)"));
  }
  return lines;
}

}  // namespace vireo::server
