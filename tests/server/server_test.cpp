// The HTTP server end to end, in process, on a small synthetic model: OpenAI's response and stream
// shapes, greedy output identical to the engine's own whether requests run alone or batched,
// errors in OpenAI's shape with the right status, API keys, body limits, a full queue (429), a
// client that disconnects (its sequence stops), JSON-schema output, embeddings and /metrics.
#include "vireo/server/http_server.h"

#include <gtest/gtest.h>
#include <httplib.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <future>
#include <thread>

#include <nlohmann/json.hpp>

#include "test_util.h"
#include "vireo/models/synth.h"

namespace vireo::server {
namespace {

using json = nlohmann::json;

const char* kTemplate =
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}";

struct Running {
  std::unique_ptr<Server> server;
  std::thread thread;
  int port = 0;
  ~Running() {
    if (server) server->stop();
    if (thread.joinable()) thread.join();
  }
};

class ServerTest : public testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new test::TempDir();
    SynthOptions o;
    o.preset = "tiny";
    o.type = "q8_0";
    synthesize_model(o, dir_->file("tiny.gguf"));
    SynthOptions e;
    e.preset = "bge-small";
    e.type = "f16";
    e.n_layer = 2;
    synthesize_model(e, dir_->file("bge.gguf"));
  }
  // Slow enough per token that a long generation outlasts a test's steps (made only where needed).
  static void make_slow_model() {
    if (std::filesystem::exists(dir_->file("slow.gguf"))) return;
    SynthOptions slow;
    slow.preset = "llama3.2-1b";
    slow.type = "q8_0";
    slow.n_layer = 2;
    slow.vocab_size = 1024;
    synthesize_model(slow, dir_->file("slow.gguf"));
  }
  static void TearDownTestSuite() { delete dir_; }

  std::unique_ptr<Running> start(ServerOptions so = {}, SchedulerOptions sched = {}, bool with_embed = true,
                                 const std::string& decoder = "tiny.gguf", int64_t kv_cells = 0) {
    auto r = std::make_unique<Running>();
    ModelLoadOptions load;
    load.engine.n_ctx = kv_cells;
    // The server's logic is checked on the CPU, where every batch shape gives the same numbers, so
    // greedy answers can be compared exactly; GPU numerics have their own tests (CudaBackend.*).
    load.engine.device = "cpu";
    load.engine.n_threads = 2;
    load.scheduler = sched;
    load.chat_template = kTemplate;
    so.port = 0;
    std::vector<ModelSpec> specs{{dir_->file(decoder), "tiny"}};
    if (with_embed) specs.push_back({dir_->file("bge.gguf"), "bge"});
    r->server = std::make_unique<Server>(specs, load, so);
    r->port = r->server->bind();
    r->thread = std::thread([s = r->server.get()] { s->serve(); });
    return r;
  }
  static std::unique_ptr<httplib::Client> client(int port) {
    auto c = std::make_unique<httplib::Client>("127.0.0.1", port);
    c->set_read_timeout(60, 0);
    return c;
  }
  static json post(httplib::Client& c, const std::string& path, const json& body, int expect = 200) {
    auto res = c.Post(path, body.dump(), "application/json");
    EXPECT_TRUE(res) << path;
    if (!res) return {};
    EXPECT_EQ(res->status, expect) << res->body;
    return json::parse(res->body);
  }
  // The events of a streamed answer, "[DONE]" included as a string.
  static std::vector<json> stream(httplib::Client& c, const std::string& path, json body) {
    body["stream"] = true;
    std::string raw;
    auto res = c.Post(path, httplib::Headers{}, body.dump(), "application/json");
    EXPECT_TRUE(res);
    if (!res) return {};
    EXPECT_EQ(res->status, 200) << res->body;
    EXPECT_EQ(res->get_header_value("Content-Type"), "text/event-stream");
    std::vector<json> events;
    size_t at = 0;
    const std::string& b = res->body;
    while (at < b.size()) {
      const size_t end = b.find("\n\n", at);
      EXPECT_NE(end, std::string::npos) << "an event not ended by a blank line";
      if (end == std::string::npos) break;
      const std::string ev = b.substr(at, end - at);
      EXPECT_EQ(ev.rfind("data: ", 0), 0u) << ev;
      const std::string data = ev.substr(6);
      events.push_back(data == "[DONE]" ? json("[DONE]") : json::parse(data));
      at = end + 2;
    }
    return events;
  }
  static test::TempDir* dir_;
};
test::TempDir* ServerTest::dir_ = nullptr;

TEST_F(ServerTest, ModelsHealthAndUnknownEndpoints) {
  auto r = start();
  auto c = client(r->port);
  auto res = c->Get("/health");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  res = c->Get("/v1/models");
  ASSERT_TRUE(res);
  const json models = json::parse(res->body);
  EXPECT_EQ(models["object"], "list");
  ASSERT_EQ(models["data"].size(), 2u);
  EXPECT_EQ(models["data"][0]["id"], "tiny");
  EXPECT_EQ(models["data"][1]["id"], "bge");
  res = c->Get("/v1/nothing");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 404);
  EXPECT_TRUE(json::parse(res->body)["error"]["message"].is_string());
}

TEST_F(ServerTest, GreedyCompletionsMatchTheEngineAloneAndBatched) {
  const std::vector<std::string> prompts = {"Once upon a time", "The cat", "In the beginning there was", "a b c d e f"};
  // The engine's own greedy continuations, one at a time.
  std::vector<std::string> expected;
  {
    TextEngine engine(dir_->file("tiny.gguf"), EngineOptions{.device = "cpu", .n_threads = 2, .n_ctx = 256});
    for (const auto& p : prompts) {
      TextGenerateOptions go;
      go.gen.max_tokens = 24;
      go.ignore_eos = true;
      expected.push_back(engine.generate(engine.tokenize(p), go).text);
    }
  }
  SchedulerOptions sched;
  sched.max_batch = 4;
  sched.step_tokens = 8;  // prompts are chunked beside running decodes
  auto r = start({}, sched, false);
  std::vector<std::future<json>> answers;
  for (int round = 0; round < 2; ++round) {  // the second round reuses cached prefixes
    answers.clear();
    int cached = 0;
    for (const auto& p : prompts) {
      answers.push_back(std::async(std::launch::async, [&, p] {
        auto c = client(r->port);
        return post(*c, "/v1/completions", {{"model", "tiny"}, {"prompt", p}, {"max_tokens", 24}, {"temperature", 0}, {"ignore_eos", true}});
      }));
    }
    for (size_t i = 0; i < prompts.size(); ++i) {
      const json a = answers[i].get();
      EXPECT_EQ(a["object"], "text_completion");
      EXPECT_EQ(a["choices"][0]["text"], expected[i]) << "prompt " << i << " round " << round;
      EXPECT_EQ(a["choices"][0]["finish_reason"], "length");
      EXPECT_EQ(a["usage"]["completion_tokens"], 24);
      EXPECT_EQ(a["usage"]["total_tokens"], a["usage"]["prompt_tokens"].get<int>() + 24);
      cached += a["usage"]["prompt_tokens_details"]["cached_tokens"].get<int>();
    }
    if (round == 1) EXPECT_GT(cached, 0) << "the second round found no cached prefix";
  }
}

// The KV cache is paged: a cached prefix grows into blocks that older cached sequences give up,
// where a cache of contiguous runs would have evicted it for want of a run after it.
TEST_F(ServerTest, ACachedPrefixGrowsIntoBlocksOthersGiveUp) {
  SchedulerOptions sched;
  sched.max_batch = 1;
  auto r = start({}, sched, false, "tiny.gguf", 64);  // 4 blocks of 16 cells
  auto c = client(r->port);
  auto ask = [&](const std::vector<int>& ids) {
    return post(*c, "/v1/completions", {{"model", "tiny"}, {"prompt", ids}, {"max_tokens", 4}, {"temperature", 0}, {"ignore_eos", true}});
  };
  std::vector<int> a(20), b(20);
  for (int i = 0; i < 20; ++i) a[i] = 1 + i, b[i] = 100 + i;
  ask(a);  // cached afterwards in 2 blocks
  ask(b);  // 2 more: the cache is full
  std::vector<int> longer = a;
  for (int i = 0; i < 20; ++i) longer.push_back(200 + i);  // 44 cells: a's sequence must grow to 3 blocks
  const json answer = ask(longer);
  EXPECT_EQ(answer["usage"]["prompt_tokens_details"]["cached_tokens"], 20);
  EXPECT_EQ(answer["usage"]["completion_tokens"], 4);
}

TEST_F(ServerTest, ChatStreamsAsOpenAIDoes) {
  auto r = start();
  auto c = client(r->port);
  const json req = {{"model", "tiny"},
                    {"messages", {{{"role", "system"}, {"content", "Be brief."}}, {{"role", "user"}, {"content", "Hello there"}}}},
                    {"max_tokens", 12},
                    {"temperature", 0},
                    {"ignore_eos", true}};
  const json whole = post(*c, "/v1/chat/completions", req);
  EXPECT_EQ(whole["object"], "chat.completion");
  EXPECT_EQ(whole["choices"][0]["message"]["role"], "assistant");
  const std::string text = whole["choices"][0]["message"]["content"];

  json sreq = req;
  sreq["stream_options"] = {{"include_usage", true}};
  const auto events = stream(*c, "/v1/chat/completions", sreq);
  ASSERT_GE(events.size(), 4u);
  EXPECT_EQ(events.back(), "[DONE]");
  EXPECT_EQ(events[0]["choices"][0]["delta"]["role"], "assistant");
  std::string streamed;
  std::string finish;
  for (size_t i = 0; i + 2 < events.size(); ++i) {
    const json& e = events[i];
    EXPECT_EQ(e["object"], "chat.completion.chunk");
    EXPECT_EQ(e["id"], events[0]["id"]);
    EXPECT_TRUE(e.contains("usage") && e["usage"].is_null());
    const json& ch = e["choices"][0];
    if (ch["delta"].contains("content")) streamed += ch["delta"]["content"].get<std::string>();
    if (!ch["finish_reason"].is_null()) finish = ch["finish_reason"];
  }
  EXPECT_EQ(streamed, text);
  EXPECT_EQ(finish, "length");
  const json& usage = events[events.size() - 2];
  EXPECT_TRUE(usage["choices"].empty());
  EXPECT_EQ(usage["usage"]["completion_tokens"], 12);
}

TEST_F(ServerTest, SeveralChoicesAndLogprobs) {
  auto r = start();
  auto c = client(r->port);
  const json a = post(*c, "/v1/chat/completions",
                      {{"messages", {{{"role", "user"}, {"content", "hi"}}}}, {"n", 3}, {"max_tokens", 5}, {"seed", 7},
                       {"logprobs", true}, {"top_logprobs", 2}, {"ignore_eos", true}});
  ASSERT_EQ(a["choices"].size(), 3u);
  for (int i = 0; i < 3; ++i) {
    const json& lp = a["choices"][i]["logprobs"]["content"];
    ASSERT_EQ(lp.size(), 5u);
    for (const auto& t : lp) {
      EXPECT_LE(t["logprob"].get<double>(), 0.0);
      ASSERT_EQ(t["top_logprobs"].size(), 2u);
      EXPECT_GE(t["top_logprobs"][0]["logprob"].get<double>(), t["top_logprobs"][1]["logprob"].get<double>());
      EXPECT_GE(t["top_logprobs"][0]["logprob"].get<double>(), t["logprob"].get<double>() - 1e-5);
    }
  }
  EXPECT_EQ(a["usage"]["completion_tokens"], 15);
  // The same seed gives the same choices.
  const json b = post(*c, "/v1/chat/completions",
                      {{"messages", {{{"role", "user"}, {"content", "hi"}}}}, {"n", 3}, {"max_tokens", 5}, {"seed", 7}, {"ignore_eos", true}});
  for (int i = 0; i < 3; ++i) EXPECT_EQ(a["choices"][i]["message"]["content"], b["choices"][i]["message"]["content"]);
}

TEST_F(ServerTest, BadRequestsGetOpenAIErrors) {
  auto r = start();
  auto c = client(r->port);
  auto check = [&](const std::string& path, const std::string& body, int status, const std::string& param) {
    auto res = c->Post(path, body, "application/json");
    ASSERT_TRUE(res);
    EXPECT_EQ(res->status, status) << body << " -> " << res->body;
    const json e = json::parse(res->body)["error"];
    EXPECT_TRUE(e["message"].is_string());
    EXPECT_TRUE(e["type"].is_string());
    if (!param.empty()) EXPECT_EQ(e["param"], param) << res->body;
  };
  check("/v1/chat/completions", "{not json", 400, "");
  check("/v1/chat/completions", "[1,2]", 400, "");
  check("/v1/chat/completions", R"({"temperature": 5555e55555})", 400, "");  // a number beyond double
  check("/v1/chat/completions", R"({"model":"tiny"})", 400, "messages");
  check("/v1/chat/completions", R"({"messages":[{"role":"wizard","content":"x"}]})", 400, "messages[0].role");
  check("/v1/chat/completions", R"({"messages":[{"role":"user","content":"x"}],"temperature":7})", 400, "temperature");
  check("/v1/chat/completions", R"({"messages":[{"role":"user","content":"x"}],"max_tokens":"many"})", 400, "max_tokens");
  check("/v1/chat/completions", R"({"messages":[{"role":"user","content":"x"}],"model":"nope"})", 404, "model");
  check("/v1/chat/completions", R"({"messages":[{"role":"user","content":"x"}],"model":"bge"})", 400, "model");
  check("/v1/completions", R"({"prompt":[1,2,100000]})", 400, "prompt");
  check("/v1/completions", R"({"prompt":"x","logit_bias":{"abc":1}})", 400, "logit_bias");
  check("/v1/completions", R"({"prompt":"x","response_format":{"type":"json_schema","json_schema":{"schema":{"type":"object","patternProperties":{}}}}})",
        400, "response_format");
  check("/v1/embeddings", R"({"model":"bge"})", 400, "input");
  std::string long_prompt(4000, 'x');
  check("/v1/completions", json{{"prompt", long_prompt}}.dump(), 400, "prompt");  // longer than the context
  check("/v1/completions", R"({"prompt":"x","max_tokens":1000000000})", 400, "prompt");
  check("/v1/completions", "{\"prompt\":\"\xff\xfe bad utf-8\"}", 400, "");
  check("/v1/completions", R"({"prompt":"x","n":100})", 400, "n");
  check("/v1/completions", R"({"prompt":"x","stop":[1,2]})", 400, "stop");
  // A 10 MB body is refused before it is parsed.
  auto big = c->Post("/v1/completions", "{\"prompt\":\"" + std::string(10u << 20, 'a') + "\"}", "application/json");
  ASSERT_TRUE(big);
  EXPECT_EQ(big->status, 413);
  EXPECT_TRUE(json::parse(big->body)["error"]["message"].is_string());
  // And the server goes on serving.
  const json ok = post(*c, "/v1/completions", {{"prompt", "x"}, {"max_tokens", 2}, {"ignore_eos", true}});
  EXPECT_EQ(ok["usage"]["completion_tokens"], 2);
}

TEST_F(ServerTest, ApiKeyAndBodyLimit) {
  ServerOptions so;
  so.api_key = "secret";
  so.max_body = 1000;
  auto r = start(so);
  auto c = client(r->port);
  auto res = c->Get("/v1/models");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 401);
  EXPECT_EQ(json::parse(res->body)["error"]["code"], "invalid_api_key");
  EXPECT_EQ(c->Get("/health")->status, 200);
  c->set_bearer_token_auth("secret");
  EXPECT_EQ(c->Get("/v1/models")->status, 200);
  res = c->Post("/v1/completions", json{{"prompt", std::string(5000, 'a')}}.dump(), "application/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 413);
  EXPECT_TRUE(json::parse(res->body)["error"]["message"].is_string());
}

int64_t gauge(httplib::Client& c, const std::string& name) {
  auto res = c.Get("/metrics");
  if (!res) return -1;
  const std::string key = name + "{model=\"tiny\"} ";
  const size_t at = res->body.find(key);
  if (at == std::string::npos) return -1;
  return std::stoll(res->body.substr(at + key.size()));
}

TEST_F(ServerTest, FullQueueAnswers429AndDisconnectsStopGeneration) {
  SchedulerOptions sched;
  sched.max_batch = 1;
  sched.max_queue = 1;
  make_slow_model();
  auto r = start({}, sched, false, "slow.gguf");
  const json long_req = {{"prompt", "x"}, {"max_tokens", 3000}, {"ignore_eos", true}, {"stream", true}};
  // First: a stream whose client hangs up when told to.
  std::atomic<bool> streaming{false}, hang_up{false};
  std::thread leaver([&] {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(r->port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) return;
    const std::string body = long_req.dump();
    const std::string http = "POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: " +
                             std::to_string(body.size()) + "\r\n\r\n" + body;
    (void)::send(fd, http.data(), http.size(), 0);
    char buf[4096];
    while (!hang_up) {
      const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n <= 0) break;
      if (std::string_view(buf, static_cast<size_t>(n)).find("data: ") != std::string_view::npos) streaming = true;
    }
    ::close(fd);
  });
  auto c = client(r->port);
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (!streaming && std::chrono::steady_clock::now() < give_up) std::this_thread::sleep_for(std::chrono::milliseconds(2));
  ASSERT_TRUE(streaming);
  // Second waits in the queue; the third finds it full.
  auto queued = std::async(std::launch::async, [&] {
    auto c2 = client(r->port);
    return post(*c2, "/v1/completions", {{"prompt", "y"}, {"max_tokens", 4}, {"ignore_eos", true}});
  });
  while (gauge(*c, "vireo_queue_depth") < 1 && std::chrono::steady_clock::now() < give_up) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  auto res = c->Post("/v1/completions", json{{"prompt", "z"}, {"max_tokens", 4}}.dump(), "application/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 429) << res->body;
  EXPECT_EQ(res->get_header_value("Retry-After"), "1");
  EXPECT_EQ(json::parse(res->body)["error"]["type"], "rate_limit_error");
  hang_up = true;
  leaver.join();
  // The leaver's generation stopped long before its 3000 tokens, and the queued request then ran.
  const json q = queued.get();
  EXPECT_EQ(q["usage"]["completion_tokens"], 4);
  EXPECT_LT(gauge(*c, "vireo_scheduler_generated_tokens"), 2000);
  // The scheduler retires a finished sequence just after its last event: allow it that step.
  const auto settle = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (gauge(*c, "vireo_running_sequences") != 0 && std::chrono::steady_clock::now() < settle) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_EQ(gauge(*c, "vireo_running_sequences"), 0);
}

TEST_F(ServerTest, JsonSchemaOutputParsesAndConforms) {
  auto r = start({}, {}, false);
  auto c = client(r->port);
  const json schema = {{"type", "object"},
                       {"properties", {{"answer", {{"enum", {"yes", "no"}}}}, {"ok", {{"type", "boolean"}}}, {"name", {{"type", "string"}, {"maxLength", 6}}}}},
                       {"required", {"answer", "ok", "name"}},
                       {"additionalProperties", false}};
  for (int seed = 0; seed < 3; ++seed) {
    const json a = post(*c, "/v1/chat/completions",
                        {{"messages", {{{"role", "user"}, {"content", "Answer in JSON"}}}},
                         {"max_tokens", 120}, {"seed", seed},
                         {"response_format", {{"type", "json_schema"}, {"json_schema", {{"name", "a"}, {"schema", schema}}}}}});
    const std::string text = a["choices"][0]["message"]["content"];
    EXPECT_EQ(a["choices"][0]["finish_reason"], "stop") << text;
    json doc;
    ASSERT_NO_THROW(doc = json::parse(text)) << text;
    EXPECT_TRUE(doc["answer"] == "yes" || doc["answer"] == "no") << text;
    EXPECT_TRUE(doc["ok"].is_boolean()) << text;
    const std::string name = doc["name"];
    EXPECT_LE(std::count_if(name.begin(), name.end(), [](char ch) { return (ch & 0xC0) != 0x80; }), 6) << text;  // code points
    EXPECT_EQ(doc.size(), 3u) << text;
  }
  const json o = post(*c, "/v1/completions", {{"prompt", "{"}, {"max_tokens", 200}, {"response_format", {{"type", "json_object"}}}});
  const std::string text = o["choices"][0]["text"];
  if (o["choices"][0]["finish_reason"] == "stop") {
    EXPECT_TRUE(json::parse(text).is_object()) << text;
  }
}

TEST_F(ServerTest, EmbeddingsTokenizeAndMetrics) {
  auto r = start();
  auto c = client(r->port);
  const json e = post(*c, "/v1/embeddings", {{"model", "bge"}, {"input", {"hello world", "another text"}}});
  ASSERT_EQ(e["data"].size(), 2u);
  const auto v0 = e["data"][0]["embedding"].get<std::vector<float>>();
  EXPECT_EQ(v0.size(), 384u);
  double norm = 0;
  for (float x : v0) norm += static_cast<double>(x) * x;
  EXPECT_NEAR(norm, 1.0, 1e-4);
  EXPECT_GT(e["usage"]["prompt_tokens"].get<int>(), 0);
  const json short_e = post(*c, "/v1/embeddings", {{"model", "bge"}, {"input", "hello world"}, {"dimensions", 64}, {"encoding_format", "base64"}});
  EXPECT_EQ(short_e["data"][0]["embedding"].get<std::string>().size(), 344u);  // 256 bytes in base64

  const json t = post(*c, "/tokenize", {{"model", "tiny"}, {"content", "hello there"}});
  ASSERT_FALSE(t["tokens"].empty());
  const json d = post(*c, "/detokenize", {{"model", "tiny"}, {"tokens", t["tokens"]}});
  EXPECT_EQ(d["content"], "hello there");

  post(*c, "/v1/completions", {{"model", "tiny"}, {"prompt", "x"}, {"max_tokens", 3}, {"ignore_eos", true}});
  auto m = c->Get("/metrics");
  ASSERT_TRUE(m);
  for (const char* s : {"vireo_requests_total{endpoint=\"/v1/completions\",status=\"200\"} 1", "vireo_generation_tokens_total{model=\"tiny\"} 3",
                        "vireo_time_to_first_token_seconds_count{model=\"tiny\"} 1", "vireo_kv_cells{model=\"tiny\"}", "vireo_queue_depth{model=\"tiny\"} 0"}) {
    EXPECT_NE(m->body.find(s), std::string::npos) << s << "\n" << m->body;
  }
}

}  // namespace
}  // namespace vireo::server
