// `vireo bench serve`: a load generator for any OpenAI-compatible server (vireo's own, llama.cpp's
// llama-server, Ollama, vLLM), measured the way vLLM's benchmark_serving measures: every request
// streams, and each one's time to first token (TTFT), inter-token latencies (ITL), time per output
// token (TPOT) and end-to-end latency (E2EL) are taken from the arrival of its SSE chunks.
//
// Requests arrive at a given rate (Poisson, or gamma-distributed with a burstiness) and are served
// by a fixed pool of worker threads, one per allowed in-flight request, each with its own
// keep-alive HTTP connection. Latencies are in milliseconds, durations in seconds.
#pragma once
#include <cstdint>
#include <functional>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace vireo::serve_load {

// ---- Server-sent events (the WHATWG EventSource rules) ------------------------------------------

struct SseEvent {
  std::string event;  // the "event:" field; empty for the default "message"
  std::string data;   // the "data:" lines joined with '\n'
};

// Incremental parser: bytes may arrive split anywhere (inside a field, between '\r' and '\n').
// Lines end with LF, CRLF or CR; a blank line ends an event; lines starting with ':' are comments;
// "id" and "retry" are accepted and ignored. An "error:" field (sent by some servers instead of an
// error event) becomes an event named "error" with the field's value as its data.
class SseParser {
 public:
  using Handler = std::function<bool(const SseEvent&)>;  // false: stop parsing
  // Feeds bytes; calls `on_event` for each completed event. False once a handler returned false.
  bool feed(std::string_view bytes, const Handler& on_event);
  // The stream ended: an event still missing its blank line is delivered (servers that close
  // right after the last "data:" line are common). False when a handler returned false.
  bool finish(const Handler& on_event);
  size_t events() const { return events_; }

 private:
  bool line(std::string_view l, const Handler& on_event);
  bool dispatch(const Handler& on_event);

  std::string partial_;  // an unterminated line
  std::string data_, event_;
  bool has_data_ = false, after_cr_ = false, started_ = false;
  size_t events_ = 0;
};

// ---- Statistics ---------------------------------------------------------------------------------

// The p-th percentile (p in [0, 100]) with linear interpolation between closest ranks (numpy's
// default, as vLLM reports); 0 for no values.
double percentile(std::vector<double> values, double p);

struct Stats {
  size_t count = 0;
  double mean = 0, std = 0, median = 0, p90 = 0, p99 = 0, min = 0, max = 0;  // std: population
};
Stats summarize(const std::vector<double>& values);

// ---- Options ------------------------------------------------------------------------------------

// Service-level objectives for goodput: a request is good when it completed and meets every one set.
struct Slo {
  std::optional<double> ttft_ms, tpot_ms, e2el_ms;
  bool any() const { return ttft_ms || tpot_ms || e2el_ms; }
};
// "ttft:500,tpot:50" (also "e2el:MS"); throws InvalidArgument naming the bad token.
Slo parse_slo(const std::string& text);

// "inf" or a positive number of requests per second; throws InvalidArgument.
double parse_rate(const std::string& text);

enum class Endpoint { Chat, Completions };  // /v1/chat/completions, /v1/completions

struct Options {
  std::string url = "http://127.0.0.1:8080";  // scheme://host[:port][/prefix]; a trailing /v1 is allowed
  std::string model;                          // empty: the first id of GET /v1/models
  Endpoint endpoint = Endpoint::Chat;
  int concurrency = 8;                                    // most requests in flight (= worker threads)
  int requests = 100;                                     // total; with a dataset, 0 means one per entry
  double rate = std::numeric_limits<double>::infinity();  // requests per second
  double burstiness = 1.0;                                // gamma shape of the inter-arrival times; 1: Poisson
  int input_len = 256;                                    // synthetic prompts: about this many tokens
  int output_len = 128;                                   // max_tokens (0: let the server stop)
  bool ignore_eos = true;                                 // send "ignore_eos": true with max_tokens
  nlohmann::json extra_body = nullptr;                    // fields merged into every request body
  std::string dataset;                                    // jsonl: {"prompt"} or {"messages"}, optional "max_tokens"
  uint64_t seed = 0;
  std::string api_key;     // sent as "Authorization: Bearer ..."
  double timeout_s = 300;  // per request: connect, silence and total time
  Slo slo;
};

// ---- Workload -----------------------------------------------------------------------------------

struct RequestSpec {
  std::string prompt;                  // completions (and chat, when `messages` is null)
  nlohmann::json messages;             // chat: the conversation; null for a plain prompt
  int max_tokens = 0;                  // 0: not sent
  int64_t estimated_input_tokens = 0;  // used when the server reports no usage
};

// Prompts of `input_len` words drawn from a fixed list of common English words (about one token
// each in the usual tokenizers), the same for the same seed.
std::vector<RequestSpec> synthetic_requests(size_t n, int input_len, int output_len, uint64_t seed);

// Reads a jsonl dataset; entries are taken in order, cycling when `n` is larger (n = 0: all of them).
// Entries without "max_tokens" get `output_len`. Throws InvalidFile naming the line for bad lines.
std::vector<RequestSpec> load_dataset(const std::string& path, size_t n, int output_len, Endpoint endpoint);

// Arrival time of each request, seconds from the start: the first at 0, then gamma-distributed
// gaps with shape `burstiness` and mean 1/rate. All 0 when the rate is infinite.
std::vector<double> arrival_offsets(size_t n, double rate, double burstiness, uint64_t seed);

// The JSON body of one streaming request.
nlohmann::json request_body(const RequestSpec& spec, const std::string& model, Endpoint endpoint, bool ignore_eos,
                            const nlohmann::json& extra_body = nullptr);

// ---- Running ------------------------------------------------------------------------------------

struct RequestRecord {
  bool ok = false;
  std::string error;         // why it failed, short and countable: "HTTP 429", "timeout", ...
  std::string error_detail;  // the server's message or more context
  int http_status = 0;
  double start_s = 0;  // when it was sent, seconds since the run began
  double ttft_ms = 0, tpot_ms = 0, e2el_ms = 0;
  bool has_tpot = false;       // needs two or more output tokens
  std::vector<double> itl_ms;  // gaps between consecutive content chunks
  int64_t input_tokens = 0, output_tokens = 0;
  bool usage_reported = false;  // token counts from the server's usage chunk (else counted/estimated)
  int64_t content_chunks = 0;
};

struct ErrorCount {
  std::string reason;
  size_t count = 0;
  std::string example;
};

struct Summary {
  size_t completed = 0, failed = 0;
  std::vector<ErrorCount> errors;  // most frequent first
  double duration_s = 0;
  int64_t input_tokens = 0, output_tokens = 0;  // of the completed requests
  bool input_tokens_estimated = false;          // some server sent no prompt_tokens
  double request_throughput = 0, output_throughput = 0, total_token_throughput = 0;
  Stats ttft_ms, tpot_ms, itl_ms, e2el_ms;
  size_t good = 0;          // completed and within every SLO
  double goodput = 0;       // good / duration_s
  int max_concurrency = 0;  // most requests in flight at once
};

struct RunResult {
  Options options;  // as run, with the model filled in
  std::vector<RequestRecord> requests;
  Summary summary;
};

using Progress = std::function<void(size_t done, size_t total)>;

// The first model id the server lists; throws Io ("cannot reach URL: connection refused") or
// NotFound when the server lists none.
std::string discover_model(const Options& options);

// Checks the server can be reached, resolves the model, runs the load and summarises it.
// `progress` is called (from worker threads, one at a time) as requests finish.
RunResult run(Options options, const Progress& progress = {});

// Summary of records over a run that lasted `duration_s`.
Summary summarize_run(const std::vector<RequestRecord>& records, double duration_s, int max_concurrency,
                      const Slo& slo);

// The document `vireo bench serve -o json` prints (docs/bench-json.md).
nlohmann::json to_json(const RunResult& result);

// The human-readable summary.
std::string format_table(const RunResult& result);

// Writes DIR/report.html (summary, TTFT / ITL / TPOT / E2EL histograms, latency over time, as
// inline SVG) and DIR/results.json; returns the HTML file's path.
std::string write_report(const std::string& dir, const nlohmann::json& doc);

}  // namespace vireo::serve_load
