// vireo bench serve: the SSE parser, percentiles, arrival times and option parsing on their own,
// then the load generator against an in-process OpenAI-style streaming server with known delays
// (first token after 30 ms, 5 ms between tokens), rate limiting, errors, odd TCP splits and
// timeouts: the measured latencies must match the injected ones and every figure the others.
#include "vireo/bench/serve_load.h"

#include <gtest/gtest.h>

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <fstream>
#include <map>
#include <mutex>
#include <numeric>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include <httplib.h>
#include <nlohmann/json.hpp>

#include "test_util.h"
#include "vireo/core/error.h"

namespace vireo::serve_load {
namespace {

using json = nlohmann::json;

// ---- SSE parser ---------------------------------------------------------------------------------

std::vector<SseEvent> parse_in_pieces(const std::string& stream, const std::vector<size_t>& cuts) {
  SseParser p;
  std::vector<SseEvent> out;
  auto h = [&](const SseEvent& e) {
    out.push_back(e);
    return true;
  };
  size_t at = 0;
  for (size_t c : cuts) {
    p.feed(std::string_view(stream).substr(at, c - at), h);
    at = c;
  }
  p.feed(std::string_view(stream).substr(at), h);
  p.finish(h);
  return out;
}

bool same(const std::vector<SseEvent>& a, const std::vector<SseEvent>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i].event != b[i].event || a[i].data != b[i].data) return false;
  }
  return true;
}

TEST(ServeLoadSse, FieldsLinesAndEvents) {
  const std::string stream =
      ": a comment, as keep-alive pings are\n"
      "data: {\"a\":1}\n\n"
      "data:no-space\r\n\r\n"
      "event: update\rdata: line one\rdata:  two spaces\r\r"
      "id: 7\nretry: 100\nunknown: x\ndata\n\n"
      "error: {\"message\":\"boom\"}\n\n"
      "\n\n"               // blank lines with no data dispatch nothing
      "event: lonely\n\n"  // an event name alone is no event
      "data: [DONE]";      // no final blank line: delivered by finish()
  const auto ev = parse_in_pieces(stream, {});
  ASSERT_EQ(ev.size(), 6u);
  EXPECT_EQ(ev[0].data, "{\"a\":1}");
  EXPECT_EQ(ev[0].event, "");
  EXPECT_EQ(ev[1].data, "no-space");
  EXPECT_EQ(ev[2].event, "update");
  EXPECT_EQ(ev[2].data, "line one\n two spaces");  // only one leading space is dropped
  EXPECT_EQ(ev[3].data, "");                       // "data" without a colon: an empty line of data
  EXPECT_EQ(ev[4].event, "error");
  EXPECT_EQ(ev[4].data, "{\"message\":\"boom\"}");
  EXPECT_EQ(ev[5].data, "[DONE]");
  EXPECT_EQ(ev[5].event, "");  // "event: lonely" was discarded with its empty event
}

TEST(ServeLoadSse, EverySplitGivesTheSameEvents) {
  const std::string stream =
      "\xEF\xBB\xBF"  // a byte order mark, dropped
      "data: {\"choices\":[{\"delta\":\r\ndata: {\"content\":\"hi\"}}]}\r\n\r\n"
      "data: a\r"
      "\ndata: b\r\n\r\n"  // CR then LF: one line end, not an empty line
      ": ping\n"
      "data: [DONE]\n\n";
  const auto whole = parse_in_pieces(stream, {});
  ASSERT_EQ(whole.size(), 3u);
  EXPECT_EQ(json::parse(whole[0].data)["choices"][0]["delta"]["content"], "hi");
  EXPECT_EQ(whole[1].data, "a\nb");
  EXPECT_EQ(whole[2].data, "[DONE]");
  for (size_t i = 0; i <= stream.size(); ++i) {
    for (size_t j = i; j <= stream.size(); j += 3) {
      ASSERT_TRUE(same(parse_in_pieces(stream, {i, j}), whole)) << "cut at " << i << " and " << j;
    }
  }
  std::vector<size_t> every;
  for (size_t i = 1; i < stream.size(); ++i) every.push_back(i);
  EXPECT_TRUE(same(parse_in_pieces(stream, every), whole));
}

TEST(ServeLoadSse, HandlerCanStop) {
  SseParser p;
  int n = 0;
  EXPECT_FALSE(p.feed("data: 1\n\ndata: 2\n\ndata: 3\n\n", [&](const SseEvent&) { return ++n < 2; }));
  EXPECT_EQ(n, 2);
}

// ---- Statistics ---------------------------------------------------------------------------------

TEST(ServeLoadStats, PercentileInterpolatesBetweenRanks) {
  EXPECT_EQ(percentile({}, 50), 0);
  EXPECT_EQ(percentile({7}, 99), 7);
  std::mt19937 rng(1);
  std::uniform_real_distribution<double> u(-100, 100);
  for (int n : {2, 3, 10, 101}) {
    std::vector<double> v(n);
    for (auto& x : v) x = u(rng);
    std::vector<double> s = v;
    std::sort(s.begin(), s.end());
    EXPECT_EQ(percentile(v, 0), s.front());
    EXPECT_EQ(percentile(v, 100), s.back());
    // At exact ranks the value itself; halfway between ranks the midpoint.
    for (int k = 0; k < n; ++k) EXPECT_NEAR(percentile(v, 100.0 * k / (n - 1)), s[k], 1e-9);
    for (int k = 0; k + 1 < n; ++k)
      EXPECT_NEAR(percentile(v, 100.0 * (k + 0.5) / (n - 1)), (s[k] + s[k + 1]) / 2, 1e-9);
    double last = -1e300;
    for (double p = 0; p <= 100; p += 0.5) {
      const double q = percentile(v, p);
      EXPECT_GE(q, last);
      last = q;
    }
    const Stats st = summarize(v);
    const double mean = std::accumulate(v.begin(), v.end(), 0.0) / n;
    double var = 0;
    for (double x : v) var += (x - mean) * (x - mean) / n;
    EXPECT_NEAR(st.mean, mean, 1e-9);
    EXPECT_NEAR(st.std, std::sqrt(var), 1e-9);
    EXPECT_EQ(st.median, percentile(v, 50));
    EXPECT_EQ(st.count, static_cast<size_t>(n));
    EXPECT_TRUE(st.min <= st.median && st.median <= st.p90 && st.p90 <= st.p99 && st.p99 <= st.max);
  }
}

TEST(ServeLoadStats, ArrivalsHaveTheRateAndBurstiness) {
  EXPECT_EQ(arrival_offsets(5, std::numeric_limits<double>::infinity(), 1, 0), std::vector<double>(5, 0.0));
  for (double b : {0.25, 1.0, 4.0}) {
    const double rate = 20;
    const auto t = arrival_offsets(20000, rate, b, 42);
    EXPECT_EQ(t[0], 0);
    std::vector<double> gaps;
    for (size_t i = 1; i < t.size(); ++i) gaps.push_back(t[i] - t[i - 1]);
    const Stats s = summarize(gaps);
    EXPECT_NEAR(s.mean, 1 / rate, 0.05 / rate) << b;
    EXPECT_NEAR(s.std / s.mean, 1 / std::sqrt(b), 0.08 / std::sqrt(b)) << b;  // gamma: cv = 1/sqrt(shape)
    EXPECT_EQ(t, arrival_offsets(20000, rate, b, 42));
    EXPECT_NE(t, arrival_offsets(20000, rate, b, 43));
  }
}

// ---- Options ------------------------------------------------------------------------------------

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(ServeLoadOptions, SloAndRate) {
  const Slo a = parse_slo("ttft:500,tpot:50");
  EXPECT_EQ(a.ttft_ms, 500);
  EXPECT_EQ(a.tpot_ms, 50);
  EXPECT_FALSE(a.e2el_ms);
  const Slo b = parse_slo(" TTFT:0.5 , e2el:2000 ");
  EXPECT_EQ(b.ttft_ms, 0.5);
  EXPECT_EQ(b.e2el_ms, 2000);
  EXPECT_FALSE(b.tpot_ms);
  EXPECT_NE(error_of([] { parse_slo("ttft:500,ttfx:5"); }).find("'ttfx:5'"), std::string::npos);
  EXPECT_NE(error_of([] { parse_slo("ttft:500,ttfx:5"); }).find("unknown metric"), std::string::npos);
  EXPECT_NE(error_of([] { parse_slo("ttft:abc"); }).find("'ttft:abc'"), std::string::npos);
  EXPECT_NE(error_of([] { parse_slo("tpot"); }).find("'tpot'"), std::string::npos);
  EXPECT_NE(error_of([] { parse_slo("ttft:-3"); }).find("'ttft:-3'"), std::string::npos);
  EXPECT_NE(error_of([] { parse_slo("ttft:1,ttft:2"); }).find("twice"), std::string::npos);
  EXPECT_NE(error_of([] { parse_slo("ttft:1,,tpot:2"); }).find("''"), std::string::npos);
  EXPECT_TRUE(std::isinf(parse_rate("inf")));
  EXPECT_EQ(parse_rate("2.5"), 2.5);
  for (const char* bad : {"0", "-1", "fast", "3x", ""}) EXPECT_THROW(parse_rate(bad), Error) << bad;
}

// ---- An OpenAI-style streaming server with controlled behaviour --------------------------------

struct FakeConfig {
  int ttft_ms = 30, itl_ms = 5;
  int slow_ttft_every = 0, slow_ttft_ms = 0;  // requests k with k % every == 0 wait slow_ttft_ms
  int default_tokens = 16;
  bool usage = true;
  int reject_every = 0;     // k % every == every-1: HTTP 429 with an error body
  int error_every = 0;      // k % every == every-1 (not rejected): an error event after two tokens
  bool odd_splits = false;  // CRLF, comments, multi-line data, and every event split into odd pieces
  int stall_ms = 0;         // after the headers, silence
  bool models = true;       // serve GET /v1/models
  bool plain_json = false;  // ignore "stream": answer with one JSON body
  bool truncate = false;    // end the stream after three tokens: no finish_reason, no [DONE]
};

class FakeServer {
 public:
  explicit FakeServer(FakeConfig c) : c_(c) {
    svr_.new_task_queue = [] { return new httplib::ThreadPool(24); };
    svr_.set_tcp_nodelay(true);  // each write leaves at once: the delays are the injected ones
    svr_.Get("/v1/models", [this](const httplib::Request&, httplib::Response& res) {
      if (!c_.models) {
        res.status = 404;
        res.set_content(R"({"error":{"message":"no such route"}})", "application/json");
        return;
      }
      res.set_content(R"({"object":"list","data":[{"id":"fake-model","object":"model"},{"id":"other"}]})",
                      "application/json");
    });
    auto handler = [this](const httplib::Request& req, httplib::Response& res) { complete(req, res); };
    svr_.Post("/v1/chat/completions", handler);
    svr_.Post("/v1/completions", handler);
    port_ = svr_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { svr_.listen_after_bind(); });
  }
  ~FakeServer() {
    stopping_ = true;
    svr_.stop();
    thread_.join();
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  std::vector<json> bodies() const {
    std::lock_guard<std::mutex> l(mu_);
    return bodies_;
  }
  std::vector<std::string> paths() const {
    std::lock_guard<std::mutex> l(mu_);
    return paths_;
  }

 private:
  void complete(const httplib::Request& req, httplib::Response& res) {
    const int k = counter_++;
    const json body = json::parse(req.body);
    {
      std::lock_guard<std::mutex> l(mu_);
      bodies_.push_back(body);
      paths_.push_back(req.path);
    }
    if (c_.reject_every && k % c_.reject_every == c_.reject_every - 1) {
      res.status = 429;
      res.set_content(R"({"error":{"message":"rate limited: try again later","type":"rate_limit_exceeded"}})",
                      "application/json");
      return;
    }
    if (c_.plain_json) {
      res.set_content(
          R"({"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}]})",
          "application/json");
      return;
    }
    const bool fail_mid = c_.error_every && k % c_.error_every == c_.error_every - 1;
    const bool chat = req.path == "/v1/chat/completions";
    const int n = body.value("max_tokens", c_.default_tokens);
    int64_t prompt_tokens = 0;
    {
      std::istringstream words(chat ? body["messages"].back()["content"].get<std::string>()
                                    : body["prompt"].get<std::string>());
      for (std::string w; words >> w;) ++prompt_tokens;
    }
    const int ttft = c_.slow_ttft_every && k % c_.slow_ttft_every == 0 ? c_.slow_ttft_ms : c_.ttft_ms;
    const FakeConfig c = c_;
    res.set_chunked_content_provider("text/event-stream", [this, c, chat, n, prompt_tokens, ttft, fail_mid](
                                                              size_t, httplib::DataSink& sink) {
      auto wait = [&](int ms) {
        const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
        while (std::chrono::steady_clock::now() < until && !stopping_)
          std::this_thread::sleep_until(
              std::min(until, std::chrono::steady_clock::now() + std::chrono::milliseconds(10)));
        return !stopping_.load();
      };
      const std::string nl = c.odd_splits ? "\r\n" : "\n";
      auto send = [&](const std::string& text) {
        if (!c.odd_splits) return sink.write(text.data(), text.size());
        // Pieces of 1, 2, 3, 5, 8 ... bytes, each its own write (and HTTP chunk).
        size_t at = 0, a = 1, b = 2;
        while (at < text.size()) {
          const size_t len = std::min(a, text.size() - at);
          if (!sink.write(text.data() + at, len)) return false;
          at += len;
          const size_t s = a + b;
          a = b;
          b = s;
        }
        return true;
      };
      auto event = [&](const json& j) {
        std::string d = j.dump();
        if (c.odd_splits) {
          // The JSON over two data lines (the parser joins them with a newline: JSON whitespace).
          const size_t comma = d.find(',');
          if (comma != std::string::npos) d = d.substr(0, comma + 1) + nl + "data: " + d.substr(comma + 1);
          return send(": keep-alive" + nl + "id: 1" + nl + "data: " + d + nl + nl);
        }
        return send("data: " + d + nl + nl);
      };
      auto chunk = [&](const std::string& text, const json& finish) {
        json choice = {{"index", 0}, {"finish_reason", finish}};
        if (chat)
          choice["delta"] = {{"content", text}};
        else
          choice["text"] = text;
        return event(
            {{"id", "cmpl-1"}, {"object", chat ? "chat.completion.chunk" : "text_completion"}, {"choices", {choice}}});
      };
      if (c.stall_ms > 0) {
        wait(c.stall_ms);
        sink.done();
        return true;
      }
      if (chat &&
          !event({{"choices",
                   {{{"index", 0}, {"delta", {{"role", "assistant"}, {"content", ""}}}, {"finish_reason", nullptr}}}}}))
        return false;
      if (!wait(ttft)) return false;
      for (int i = 0; i < n; ++i) {
        if (i > 0 && !wait(c.itl_ms)) return false;
        if (c.truncate && i == 3) {
          sink.done();
          return true;
        }
        if (fail_mid && i == 2) {
          event({{"error", {{"message", "model crashed"}, {"code", 500}}}});
          sink.done();
          return true;
        }
        if (!chunk(" tok" + std::to_string(i), i + 1 == n ? json("length") : json(nullptr))) return false;
      }
      if (c.usage) {
        event({{"choices", json::array()},
               {"usage",
                {{"prompt_tokens", prompt_tokens}, {"completion_tokens", n}, {"total_tokens", prompt_tokens + n}}}});
      }
      send("data: [DONE]" + nl + nl);
      sink.done();
      return true;
    });
  }

  FakeConfig c_;
  httplib::Server svr_;
  int port_ = 0;
  std::thread thread_;
  std::atomic<int> counter_{0};
  std::atomic<bool> stopping_{false};
  mutable std::mutex mu_;
  std::vector<json> bodies_;
  std::vector<std::string> paths_;
};

void expect_ordered(const Stats& s, const char* what) {
  EXPECT_LE(s.min, s.median) << what;
  EXPECT_LE(s.median, s.p90) << what;
  EXPECT_LE(s.p90, s.p99) << what;
  EXPECT_LE(s.p99, s.max) << what;
  EXPECT_LE(s.min, s.mean) << what;
  EXPECT_LE(s.mean, s.max) << what;
}

void expect_consistent(const RunResult& r) {
  const Summary& s = r.summary;
  EXPECT_EQ(s.completed + s.failed, r.requests.size());
  size_t failed = 0;
  for (const auto& e : s.errors) failed += e.count;
  EXPECT_EQ(failed, s.failed);
  int64_t in = 0, out = 0;
  size_t itl = 0, tpot = 0;
  for (const auto& q : r.requests) {
    if (!q.ok) continue;
    in += q.input_tokens;
    out += q.output_tokens;
    itl += q.itl_ms.size();
    tpot += q.has_tpot;
    EXPECT_EQ(q.itl_ms.size(), static_cast<size_t>(q.content_chunks - 1));
    EXPECT_LE(q.ttft_ms, q.e2el_ms);
    if (q.has_tpot) {
      EXPECT_NEAR(q.tpot_ms, (q.e2el_ms - q.ttft_ms) / static_cast<double>(q.output_tokens - 1), 1e-9);
    }
  }
  EXPECT_EQ(s.input_tokens, in);
  EXPECT_EQ(s.output_tokens, out);
  EXPECT_EQ(s.itl_ms.count, itl);
  EXPECT_EQ(s.tpot_ms.count, tpot);
  EXPECT_EQ(s.ttft_ms.count, s.completed);
  ASSERT_GT(s.duration_s, 0);
  EXPECT_NEAR(s.request_throughput, static_cast<double>(s.completed) / s.duration_s, 1e-9);
  EXPECT_NEAR(s.output_throughput, static_cast<double>(out) / s.duration_s, 1e-9);
  EXPECT_NEAR(s.total_token_throughput, static_cast<double>(in + out) / s.duration_s, 1e-9);
  for (const auto& [st, name] : {std::pair{s.ttft_ms, "ttft"}, std::pair{s.tpot_ms, "tpot"}, std::pair{s.itl_ms, "itl"},
                                 std::pair{s.e2el_ms, "e2el"}}) {
    if (st.count) expect_ordered(st, name);
  }
  // Every request ended within the run.
  for (const auto& q : r.requests) {
    EXPECT_GE(q.start_s, 0);
    if (q.ok) {
      EXPECT_LE(q.start_s + q.e2el_ms / 1e3, s.duration_s + 1e-3);
    }
  }
}

TEST(ServeLoadRun, MeasuresTheInjectedDelays) {
  FakeConfig c;  // 30 ms to the first token, then 5 ms a token
  FakeServer server(c);
  Options o;
  o.url = server.url() + "/v1/";  // a trailing /v1 is accepted
  o.concurrency = 4;
  o.requests = 24;
  o.input_len = 32;
  o.output_len = 16;
  o.seed = 5;
  size_t last_done = 0, calls = 0;
  const RunResult r = run(o, [&](size_t done, size_t total) {
    EXPECT_EQ(total, 24u);
    EXPECT_EQ(done, last_done + 1);
    last_done = done;
    ++calls;
  });
  EXPECT_EQ(calls, 24u);
  const Summary& s = r.summary;
  ASSERT_EQ(s.completed, 24u) << (s.errors.empty() ? "" : s.errors[0].reason + ": " + s.errors[0].example);
  EXPECT_EQ(r.options.model, "fake-model");  // the first listed
  expect_consistent(r);
  EXPECT_EQ(s.max_concurrency, 4);
  EXPECT_EQ(s.output_tokens, 24 * 16);
  EXPECT_EQ(s.input_tokens, 24 * 32);  // the server counts the prompt's words
  EXPECT_FALSE(s.input_tokens_estimated);
  for (const auto& q : r.requests) {
    EXPECT_TRUE(q.usage_reported);
    EXPECT_EQ(q.output_tokens, 16);
    EXPECT_EQ(q.content_chunks, 16);
  }
  // The injected delays, never less, plus what a busy small machine adds (tests may run side by side).
  EXPECT_GE(s.ttft_ms.min, 29.0);
  EXPECT_LT(s.ttft_ms.median, 30.0 + 30);
  EXPECT_GE(s.itl_ms.mean, 4.5);
  EXPECT_LT(s.itl_ms.median, 5.0 + 7);
  EXPECT_GE(s.tpot_ms.mean, 4.9);
  EXPECT_LT(s.tpot_ms.median, 5.0 + 7);
  EXPECT_GE(s.e2el_ms.min, 30.0 + 15 * 5 - 1);
  // Six waves of four requests, each at least the injected 105 ms.
  EXPECT_GE(s.duration_s, 6 * 0.104);
  EXPECT_LT(s.duration_s, 6 * 0.104 * 3 + 0.5);

  // What was sent: streaming with usage, the length enforced, the synthetic prompt's length.
  const auto bodies = server.bodies();
  ASSERT_EQ(bodies.size(), 24u);
  std::set<std::string> prompts;
  for (const auto& b : bodies) {
    EXPECT_EQ(b["model"], "fake-model");
    EXPECT_EQ(b["stream"], true);
    EXPECT_EQ(b["stream_options"]["include_usage"], true);
    EXPECT_EQ(b["max_tokens"], 16);
    EXPECT_EQ(b["ignore_eos"], true);
    ASSERT_EQ(b["messages"].size(), 1u);
    EXPECT_EQ(b["messages"][0]["role"], "user");
    prompts.insert(b["messages"][0]["content"].get<std::string>());
  }
  EXPECT_EQ(prompts.size(), 24u);  // all different
  for (const auto& p : server.paths()) EXPECT_EQ(p, "/v1/chat/completions");

  // The same seed, the same prompts.
  const auto again = synthetic_requests(24, 32, 16, 5);
  for (const auto& q : again) EXPECT_TRUE(prompts.count(q.prompt)) << q.prompt;

  // The JSON document and the table say the same.
  const json doc = to_json(r);
  EXPECT_EQ(doc["schema"], 1);
  EXPECT_EQ(doc["kind"], "serve");
  EXPECT_TRUE(doc["config"]["rate"].is_null());
  EXPECT_EQ(doc["config"]["model"], "fake-model");
  EXPECT_EQ(doc["summary"]["completed"], 24);
  EXPECT_EQ(doc["summary"]["output_tokens"], 24 * 16);
  EXPECT_DOUBLE_EQ(doc["summary"]["ttft_ms"]["p99"].get<double>(), s.ttft_ms.p99);
  EXPECT_TRUE(doc["summary"]["goodput"].is_null());
  ASSERT_EQ(doc["requests"].size(), 24u);
  EXPECT_EQ(doc["requests"][0]["itl_ms"].size(), 15u);
  const std::string table = format_table(r);
  EXPECT_NE(table.find("Successful requests:"), std::string::npos);
  EXPECT_NE(table.find(fmt::format("{:.2f}", s.output_throughput)), std::string::npos) << table;

  // The report: self-contained, with the distributions drawn.
  test::TempDir dir;
  const std::string html_path = write_report(dir.file("report"), doc);
  std::ifstream in(html_path);
  std::stringstream html;
  html << in.rdbuf();
  for (const char* id :
       {"id=\"ttft\"", "id=\"itl\"", "id=\"tpot\"", "id=\"e2el\"", "id=\"timeline\"", "<rect class=\"bar\""}) {
    EXPECT_NE(html.str().find(id), std::string::npos) << id;
  }
  EXPECT_EQ(html.str().find("<script"), std::string::npos);
  EXPECT_EQ(html.str().find("<link"), std::string::npos);
  std::ifstream results(dir.file("report/results.json"));
  EXPECT_EQ(json::parse(results), doc);
}

TEST(ServeLoadRun, CountsFailuresAndGoodput) {
  FakeConfig c;
  c.ttft_ms = 10;
  c.itl_ms = 2;
  c.slow_ttft_every = 3;  // a third of the requests answer late
  c.slow_ttft_ms = 120;
  c.reject_every = 5;
  c.error_every = 7;
  FakeServer server(c);
  Options o;
  o.url = server.url();
  o.model = "given";
  o.concurrency = 3;
  o.requests = 21;
  o.input_len = 8;
  o.output_len = 6;
  o.slo = parse_slo("ttft:70");
  const RunResult r = run(o);
  const Summary& s = r.summary;
  expect_consistent(r);

  // What the server did, by its own request counter.
  size_t rejected = 0, broken = 0, slow_ok = 0, fast_ok = 0;
  for (int k = 0; k < 21; ++k) {
    if (k % 5 == 4)
      ++rejected;
    else if (k % 7 == 6)
      ++broken;
    else if (k % 3 == 0)
      ++slow_ok;
    else
      ++fast_ok;
  }
  EXPECT_EQ(s.failed, rejected + broken);
  EXPECT_EQ(s.completed, slow_ok + fast_ok);
  std::map<std::string, ErrorCount> errors;
  for (const auto& e : s.errors) errors[e.reason] = e;
  ASSERT_EQ(errors.size(), 2u);
  EXPECT_EQ(errors["HTTP 429"].count, rejected);
  EXPECT_EQ(errors["HTTP 429"].example, "rate limited: try again later");
  EXPECT_EQ(errors["stream error"].count, broken);
  EXPECT_EQ(errors["stream error"].example, "model crashed");
  EXPECT_EQ(s.errors.front().count, std::max(rejected, broken));  // most frequent first
  for (const auto& q : r.requests) {
    if (!q.ok && q.error == "HTTP 429") {
      EXPECT_EQ(q.http_status, 429);
    }
  }

  // Goodput: the requests within the TTFT objective, per second.
  EXPECT_EQ(s.good, fast_ok);
  size_t within = 0;
  for (const auto& q : r.requests) within += q.ok && q.ttft_ms <= 70;
  EXPECT_EQ(s.good, within);
  EXPECT_NEAR(s.goodput, static_cast<double>(s.good) / s.duration_s, 1e-9);
  EXPECT_LT(s.goodput, s.request_throughput);
  EXPECT_GE(s.ttft_ms.max, 120 - 1);
  EXPECT_EQ(to_json(r)["summary"]["good"], fast_ok);
  const std::string table = format_table(r);
  EXPECT_NE(table.find("HTTP 429"), std::string::npos);
  EXPECT_NE(table.find("goodput"), std::string::npos);
}

TEST(ServeLoadRun, ParsesStreamsSplitAnywhereWithoutUsage) {
  FakeConfig c;
  c.ttft_ms = 5;
  c.itl_ms = 3;
  c.odd_splits = true;
  c.usage = false;
  FakeServer server(c);
  Options o;
  o.url = server.url();
  o.endpoint = Endpoint::Completions;
  o.concurrency = 2;
  o.requests = 6;
  o.input_len = 10;
  o.output_len = 12;
  const RunResult r = run(o);
  ASSERT_EQ(r.summary.completed, 6u) << (r.summary.errors.empty()
                                             ? ""
                                             : r.summary.errors[0].reason + ": " + r.summary.errors[0].example);
  expect_consistent(r);
  for (const auto& q : r.requests) {
    EXPECT_EQ(q.content_chunks, 12);
    EXPECT_EQ(q.output_tokens, 12);  // counted from the chunks
    EXPECT_FALSE(q.usage_reported);
    EXPECT_EQ(q.input_tokens, 10);  // estimated: the synthetic prompt's words
  }
  EXPECT_TRUE(r.summary.input_tokens_estimated);
  EXPECT_GE(r.summary.itl_ms.mean, 2.5);
  for (const auto& p : server.paths()) EXPECT_EQ(p, "/v1/completions");
  for (const auto& b : server.bodies()) EXPECT_TRUE(b["prompt"].is_string());
}

TEST(ServeLoadRun, FollowsTheArrivalTimes) {
  FakeConfig c;
  c.ttft_ms = 2;
  c.itl_ms = 1;
  FakeServer server(c);
  Options o;
  o.url = server.url();
  o.concurrency = 8;
  o.requests = 12;
  o.input_len = 4;
  o.output_len = 3;
  o.rate = 40;
  o.burstiness = 0.5;
  o.seed = 9;
  const RunResult r = run(o);
  ASSERT_EQ(r.summary.completed, 12u);
  expect_consistent(r);
  const auto t = arrival_offsets(12, 40, 0.5, 9);
  for (size_t i = 0; i < 12; ++i) {
    EXPECT_GE(r.requests[i].start_s, t[i] - 1e-4) << i;
    EXPECT_LT(r.requests[i].start_s, t[i] + 0.25) << i;  // late only by a busy machine's wake-up delays
  }
  EXPECT_GE(r.summary.duration_s, t.back());
}

TEST(ServeLoadRun, DatasetPromptsAndMessages) {
  FakeConfig c;
  c.ttft_ms = 1;
  c.itl_ms = 1;
  FakeServer server(c);
  test::TempDir dir;
  const std::string path = dir.file("prompts.jsonl");
  {
    std::ofstream f(path);
    f << R"({"prompt": "one two three", "max_tokens": 3})"
      << "\n\n"
      << R"({"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "a b c d e"}], "max_tokens": 5})"
      << "\n"
      << R"({"prompt": "no limit given"})"
      << "\n";
  }
  Options o;
  o.url = server.url();
  o.concurrency = 1;  // one worker: the server sees them in order
  o.requests = 0;     // one per entry
  o.output_len = 7;
  o.dataset = path;
  const RunResult r = run(o);
  ASSERT_EQ(r.requests.size(), 3u);
  ASSERT_EQ(r.summary.completed, 3u);
  expect_consistent(r);
  const auto bodies = server.bodies();
  ASSERT_EQ(bodies.size(), 3u);
  EXPECT_EQ(bodies[0]["messages"][0]["content"], "one two three");
  EXPECT_EQ(bodies[1]["messages"].size(), 2u);
  EXPECT_EQ(bodies[1]["messages"][0]["content"], "be brief");
  const std::vector<int> want{3, 5, 7};
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(bodies[i]["max_tokens"], want[i]);
    EXPECT_EQ(r.requests[i].output_tokens, want[i]);
  }
  EXPECT_EQ(r.requests[0].input_tokens, 3);
  EXPECT_EQ(r.requests[1].input_tokens, 5);  // the fake server counts the last message's words

  // More requests than entries cycle through them; bad lines are named.
  EXPECT_EQ(load_dataset(path, 7, 1, Endpoint::Chat).size(), 7u);
  EXPECT_EQ(load_dataset(path, 7, 1, Endpoint::Chat)[3].prompt, "one two three");
  EXPECT_NE(error_of([&] {
              load_dataset(path, 0, 1, Endpoint::Completions);
            }).find("prompts.jsonl:3: \"messages\" needs --endpoint chat"),
            std::string::npos);
  {
    std::ofstream f(dir.file("bad.jsonl"));
    f << R"({"prompt": "fine"})"
      << "\n"
      << R"({"text": "wrong key"})"
      << "\n";
  }
  EXPECT_NE(error_of([&] { load_dataset(dir.file("bad.jsonl"), 0, 1, Endpoint::Chat); }).find("bad.jsonl:2:"),
            std::string::npos);
  EXPECT_NE(error_of([&] { load_dataset(dir.file("missing.jsonl"), 0, 1, Endpoint::Chat); }).find("missing.jsonl"),
            std::string::npos);
}

TEST(ServeLoadRun, TimesOutSilentAndSlowStreams) {
  FakeConfig silent;
  silent.stall_ms = 3000;
  FakeConfig slow;
  slow.ttft_ms = 1;
  slow.itl_ms = 40;  // 100 tokens would take four seconds
  for (const FakeConfig& c : {silent, slow}) {
    FakeServer server(c);
    Options o;
    o.url = server.url();
    o.model = "m";
    o.concurrency = 1;  // the second request reuses the client whose first one was abandoned
    o.requests = 2;
    o.output_len = 100;
    o.timeout_s = 0.3;
    const auto t0 = std::chrono::steady_clock::now();
    const RunResult r = run(o);
    const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    EXPECT_EQ(r.summary.failed, 2u);
    ASSERT_EQ(r.summary.errors.size(), 1u);
    EXPECT_EQ(r.summary.errors[0].reason, "timeout");
    EXPECT_LT(took, 2.0);
    EXPECT_GE(r.summary.duration_s, 2 * 0.29);
  }
}

TEST(ServeLoadRun, NamesBrokenResponses) {
  FakeConfig plain;
  plain.plain_json = true;
  FakeConfig cut;
  cut.ttft_ms = 1;
  cut.itl_ms = 1;
  cut.truncate = true;
  for (const auto& [c, reason] : {std::pair{plain, "not streamed"}, std::pair{cut, "stream ended early"}}) {
    FakeServer server(c);
    Options o;
    o.url = server.url();
    o.model = "m";
    o.concurrency = 2;
    o.requests = 3;
    o.output_len = 8;
    const RunResult r = run(o);
    EXPECT_EQ(r.summary.completed, 0u);
    ASSERT_EQ(r.summary.errors.size(), 1u);
    EXPECT_EQ(r.summary.errors[0].reason, reason);
    EXPECT_EQ(r.summary.errors[0].count, 3u);
    EXPECT_EQ(r.summary.ttft_ms.count, 0u);
    EXPECT_EQ(r.summary.output_throughput, 0);
  }
}

TEST(ServeLoadRun, ClearErrorsForUnreachableServersAndMissingModels) {
  // A port nobody listens on: bound, then closed.
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  const std::string url = "http://127.0.0.1:" + std::to_string(ntohs(a.sin_port));
  Options o;
  o.url = url;
  o.requests = 1;
  EXPECT_EQ(error_of([&] { run(o); }), "cannot reach " + url + ": connection refused");
  o.model = "given";
  EXPECT_EQ(error_of([&] { run(o); }), "cannot reach " + url + ": connection refused");

  o.url = "localhost:8080";
  EXPECT_NE(error_of([&] { run(o); }).find("--url 'localhost:8080'"), std::string::npos);

  FakeConfig c;
  c.models = false;
  FakeServer server(c);
  o.url = server.url();
  o.model.clear();
  const std::string e = error_of([&] { run(o); });
  EXPECT_NE(e.find("HTTP 404"), std::string::npos) << e;
  EXPECT_NE(e.find("give --model"), std::string::npos) << e;
}

TEST(ServeLoadCli, BenchServeEndToEnd) {
  FakeConfig c;
  c.ttft_ms = 2;
  c.itl_ms = 1;
  FakeServer server(c);
  test::TempDir dir;
  const auto [status, out] =
      test::run_vireo("bench serve --url " + server.url() +
                      " -n 4 -c 2 --input-len 4 --output-len 3 --slo ttft:1000 -o json --report " + dir.file("report"));
  ASSERT_EQ(status, 0) << out;
  const std::string report_line = "report: " + dir.file("report") + "/report.html\n";  // on stderr
  ASSERT_TRUE(out.ends_with(report_line)) << out;
  const json doc = json::parse(out.substr(0, out.size() - report_line.size()));
  EXPECT_EQ(doc["kind"], "serve");
  EXPECT_EQ(doc["summary"]["completed"], 4);
  EXPECT_EQ(doc["summary"]["output_tokens"], 12);
  EXPECT_EQ(doc["summary"]["good"], 4);
  EXPECT_EQ(doc["config"]["model"], "fake-model");
  std::ifstream results(dir.file("report/results.json"));
  EXPECT_EQ(json::parse(results), doc);

  const auto [bad, msg] = test::run_vireo("bench serve --url " + server.url() + " --slo ttft:5,ttfx:1");
  EXPECT_EQ(bad, 1);
  EXPECT_NE(msg.find("'ttfx:1'"), std::string::npos) << msg;
}

}  // namespace
}  // namespace vireo::serve_load
