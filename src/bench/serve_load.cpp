#include "vireo/bench/serve_load.h"

#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <numeric>
#include <random>
#include <regex>
#include <thread>
#include <tuple>

#include <fmt/format.h>
#include <httplib.h>

#include "vireo/bench/report.h"
#include "vireo/core/error.h"

namespace vireo::serve_load {
namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;

double ms_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

std::string trim(std::string_view s) {
  size_t b = 0, e = s.size();
  while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
  while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
  return std::string(s.substr(b, e - b));
}

// One line of text for a message: newlines folded, cut to `max` characters.
std::string one_line(std::string_view s, size_t max = 300) {
  std::string o;
  for (char c : s) {
    if (o.size() >= max) {
      o += "...";
      break;
    }
    o += (c == '\n' || c == '\r' || c == '\t') ? ' ' : c;
  }
  return trim(o);
}

// The message of an OpenAI-style error body ({"error": {"message": ...}}, {"error": "..."},
// {"message": ...}, {"detail": ...}), else the body itself on one line.
std::string error_message(std::string_view body) {
  const json j = json::parse(body, nullptr, false);
  if (j.is_object()) {
    if (j.contains("error")) {
      const json& e = j["error"];
      if (e.is_string()) return one_line(e.get<std::string>());
      if (e.is_object() && e.contains("message") && e["message"].is_string())
        return one_line(e["message"].get<std::string>());
      return one_line(e.dump());
    }
    for (const char* k : {"message", "detail"}) {
      if (j.contains(k) && j[k].is_string()) return one_line(j[k].get<std::string>());
    }
  }
  return one_line(body);
}

// ---- The server's address -----------------------------------------------------------------------

struct Target {
  std::string display;  // the URL as given, without a trailing '/'
  std::string scheme, host;
  int port = 0;
  std::string origin;  // scheme://host:port, for the HTTP client
  std::string prefix;  // path before /v1/...
};

Target parse_url(const std::string& url) {
  static const std::regex re(R"re(^(https?)://(\[[0-9A-Fa-f:.]+\]|[^/:\[\]\s]+)(?::(\d{1,5}))?(/[^\s?#]*)?$)re");
  std::smatch m;
  if (!std::regex_match(url, m, re)) {
    fail(ErrorCode::InvalidArgument, "--url '{}': expected http[s]://HOST[:PORT][/PATH]", url);
  }
  Target t;
  t.scheme = m[1].str();
  t.host = m[2].str();
  t.port = m[3].matched ? std::stoi(m[3].str()) : (t.scheme == "https" ? 443 : 80);
  if (t.port <= 0 || t.port > 65535)
    fail(ErrorCode::InvalidArgument, "--url '{}': port {} is out of range", url, t.port);
  t.prefix = m[4].matched ? m[4].str() : "";
  while (!t.prefix.empty() && t.prefix.back() == '/') t.prefix.pop_back();
  if (t.prefix.ends_with("/v1")) t.prefix.resize(t.prefix.size() - 3);
  t.origin = fmt::format("{}://{}:{}", t.scheme, t.host, t.port);
  t.display = url;
  while (t.display.size() > 1 && t.display.back() == '/') t.display.pop_back();
  return t;
}

// Opens (and closes) a TCP connection to the server: "" when it answers, else why not, in the
// operating system's words ("connection refused").
std::string probe_connect(const Target& t, double timeout_s) {
  std::string host = t.host;
  if (host.size() > 2 && host.front() == '[') host = host.substr(1, host.size() - 2);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  const std::string port = std::to_string(t.port);
  if (const int rc = ::getaddrinfo(host.c_str(), port.c_str(), &hints, &res); rc != 0) {
    std::string why = ::gai_strerror(rc);
    if (!why.empty()) why[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(why[0])));
    return fmt::format("unknown host '{}' ({})", host, why);
  }
  std::string why = "no address";
  for (addrinfo* a = res; a != nullptr; a = a->ai_next) {
    const int fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, a->ai_protocol);
    if (fd < 0) {
      why = std::strerror(errno);
      continue;
    }
    int err = 0;
    if (::connect(fd, a->ai_addr, a->ai_addrlen) != 0) {
      err = errno;
      if (err == EINPROGRESS) {
        pollfd p{fd, POLLOUT, 0};
        const int n = ::poll(&p, 1, static_cast<int>(std::min(timeout_s, 30.0) * 1000));
        if (n == 0) {
          err = ETIMEDOUT;
        } else {
          socklen_t len = sizeof err;
          ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
        }
      }
    }
    ::close(fd);
    if (err == 0) {
      ::freeaddrinfo(res);
      return "";
    }
    why = std::strerror(err);
  }
  ::freeaddrinfo(res);
  if (!why.empty()) why[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(why[0])));
  return why;
}

void set_client_options(httplib::Client& cli, const Options& o) {
  const auto t = std::chrono::duration<double>(o.timeout_s);
  const auto us = std::chrono::duration_cast<std::chrono::microseconds>(t);
  const auto connect_us =
      std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::duration<double>(std::min(o.timeout_s, 30.0)));
  cli.set_connection_timeout(connect_us);
  cli.set_read_timeout(us);
  cli.set_write_timeout(us);
  cli.set_keep_alive(true);
  cli.set_tcp_nodelay(true);
  cli.set_follow_location(false);
}

httplib::Headers base_headers(const Options& o) {
  httplib::Headers h{{"Accept-Encoding", "identity"}, {"User-Agent", "vireo-bench-serve/0.1"}};
  if (!o.api_key.empty()) h.emplace("Authorization", "Bearer " + o.api_key);
  return h;
}

// ---- Synthetic prompts --------------------------------------------------------------------------

// Common English words, each about one token with its leading space in the usual tokenizers.
const char* const kWords[] = {
    "the",      "of",      "and",    "to",      "in",      "is",        "you",     "that",     "it",        "he",
    "was",      "for",     "on",     "are",     "as",      "with",      "his",     "they",     "at",        "be",
    "this",     "have",    "from",   "or",      "one",     "had",       "by",      "word",     "but",       "not",
    "what",     "all",     "were",   "we",      "when",    "your",      "can",     "said",     "there",     "use",
    "an",       "each",    "which",  "she",     "do",      "how",       "their",   "if",       "will",      "up",
    "other",    "about",   "out",    "many",    "then",    "them",      "these",   "so",       "some",      "her",
    "would",    "make",    "like",   "him",     "into",    "time",      "has",     "look",     "two",       "more",
    "write",    "go",      "see",    "number",  "no",      "way",       "could",   "people",   "my",        "than",
    "first",    "water",   "been",   "call",    "who",     "oil",       "its",     "now",      "find",      "long",
    "down",     "day",     "did",    "get",     "come",    "made",      "may",     "part",     "over",      "new",
    "sound",    "take",    "only",   "little",  "work",    "know",      "place",   "year",     "live",      "me",
    "back",     "give",    "most",   "very",    "after",   "thing",     "our",     "just",     "name",      "good",
    "man",      "think",   "say",    "great",   "where",   "help",      "through", "much",     "before",    "line",
    "right",    "too",     "mean",   "old",     "any",     "same",      "tell",    "boy",      "follow",    "came",
    "want",     "show",    "also",   "around",  "form",    "three",     "small",   "set",      "put",       "end",
    "does",     "another", "well",   "large",   "must",    "big",       "even",    "such",     "because",   "turn",
    "here",     "why",     "ask",    "went",    "men",     "read",      "need",    "land",     "different", "home",
    "us",       "move",    "try",    "kind",    "hand",    "picture",   "again",   "change",   "off",       "play",
    "spell",    "air",     "away",   "animal",  "house",   "point",     "page",    "letter",   "mother",    "answer",
    "found",    "study",   "still",  "learn",   "should",  "world",     "high",    "every",    "near",      "add",
    "food",     "between", "own",    "below",   "country", "plant",     "last",    "school",   "father",    "keep",
    "tree",     "never",   "start",  "city",    "earth",   "eye",       "light",   "thought",  "head",      "under",
    "story",    "saw",     "left",   "few",     "while",   "along",     "might",   "close",    "something", "seem",
    "next",     "hard",    "open",   "example", "begin",   "life",      "always",  "those",    "both",      "paper",
    "together", "got",     "group",  "often",   "run",     "important", "until",   "children", "side",      "feet",
    "car",      "mile",    "night",  "walk",    "white",   "sea",       "began",   "grow",     "took",      "river",
    "four",     "carry",   "state",  "once",    "book",    "hear",      "stop",    "without",  "second",    "later",
    "miss",     "idea",    "enough", "eat",     "face",
};

// ---- SLO parsing --------------------------------------------------------------------------------

std::optional<double> parse_positive(const std::string& s) {
  if (s.empty()) return std::nullopt;
  size_t used = 0;
  double v = 0;
  try {
    v = std::stod(s, &used);
  } catch (const std::exception&) {
    return std::nullopt;
  }
  if (used != s.size() || !std::isfinite(v) || v <= 0) return std::nullopt;
  return v;
}

}  // namespace

// ---- SSE ----------------------------------------------------------------------------------------

bool SseParser::feed(std::string_view bytes, const Handler& on_event) {
  if (bytes.empty()) return true;
  if (!started_) {
    // A UTF-8 byte order mark before the first field is dropped (it may arrive split).
    static constexpr std::string_view kBom = "\xEF\xBB\xBF";
    std::string head = std::move(partial_);
    partial_.clear();
    head.append(bytes);
    if (head.size() < kBom.size() && kBom.starts_with(head)) {
      partial_ = std::move(head);
      return true;
    }
    started_ = true;
    if (head.starts_with(kBom)) head.erase(0, kBom.size());
    return feed(head, on_event);
  }
  size_t i = 0;
  if (after_cr_ && !bytes.empty() && bytes[0] == '\n') i = 1;  // the LF of a CRLF split across feeds
  after_cr_ = false;
  while (i < bytes.size()) {
    const size_t e = bytes.find_first_of("\r\n", i);
    if (e == std::string_view::npos) {
      partial_.append(bytes.substr(i));
      break;
    }
    bool ok;
    if (partial_.empty()) {
      ok = line(bytes.substr(i, e - i), on_event);
    } else {
      partial_.append(bytes.substr(i, e - i));
      const std::string l = std::move(partial_);
      partial_.clear();
      ok = line(l, on_event);
    }
    i = e + 1;
    if (bytes[e] == '\r') {
      if (i < bytes.size()) {
        if (bytes[i] == '\n') ++i;
      } else {
        after_cr_ = true;
      }
    }
    if (!ok) return false;
  }
  return true;
}

bool SseParser::finish(const Handler& on_event) {
  if (!started_ && !partial_.empty()) {
    // Fewer than three bytes in the whole stream, all of them a prefix of a BOM: nothing.
    partial_.clear();
  }
  if (!partial_.empty()) {
    const std::string l = std::move(partial_);
    partial_.clear();
    if (!line(l, on_event)) return false;
  }
  after_cr_ = false;
  return dispatch(on_event);
}

bool SseParser::line(std::string_view l, const Handler& on_event) {
  if (l.empty()) return dispatch(on_event);
  if (l[0] == ':') return true;  // comment (keep-alive pings)
  const size_t colon = l.find(':');
  std::string_view field = l.substr(0, colon), value;
  if (colon != std::string_view::npos) {
    value = l.substr(colon + 1);
    if (!value.empty() && value[0] == ' ') value.remove_prefix(1);
  }
  if (field == "data") {
    if (has_data_) data_ += '\n';
    data_.append(value);
    has_data_ = true;
  } else if (field == "event") {
    event_.assign(value);
  } else if (field == "error") {
    event_ = "error";
    if (has_data_) data_ += '\n';
    data_.append(value);
    has_data_ = true;
  }
  return true;  // "id", "retry" and unknown fields are ignored
}

bool SseParser::dispatch(const Handler& on_event) {
  if (!has_data_) {
    event_.clear();
    return true;
  }
  SseEvent ev{std::move(event_), std::move(data_)};
  event_.clear();
  data_.clear();
  has_data_ = false;
  ++events_;
  return on_event(ev);
}

// ---- Statistics ---------------------------------------------------------------------------------

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const double pos = std::clamp(p, 0.0, 100.0) / 100.0 * static_cast<double>(v.size() - 1);
  const auto lo = static_cast<size_t>(pos);
  const size_t hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (v[hi] - v[lo]) * (pos - static_cast<double>(lo));
}

Stats summarize(const std::vector<double>& values) {
  Stats s;
  s.count = values.size();
  if (values.empty()) return s;
  std::vector<double> v = values;
  std::sort(v.begin(), v.end());
  const double n = static_cast<double>(v.size());
  s.mean = std::accumulate(v.begin(), v.end(), 0.0) / n;
  double ss = 0;
  for (double x : v) ss += (x - s.mean) * (x - s.mean);
  s.std = std::sqrt(ss / n);
  s.min = v.front();
  s.max = v.back();
  s.median = percentile(v, 50);
  s.p90 = percentile(v, 90);
  s.p99 = percentile(v, 99);
  return s;
}

// ---- Options ------------------------------------------------------------------------------------

Slo parse_slo(const std::string& text) {
  Slo slo;
  if (trim(text).empty()) fail(ErrorCode::InvalidArgument, "--slo: empty; expected e.g. ttft:500,tpot:50");
  size_t start = 0;
  while (start <= text.size()) {
    const size_t comma = text.find(',', start);
    const std::string token = trim(text.substr(start, comma == std::string::npos ? std::string::npos : comma - start));
    start = comma == std::string::npos ? text.size() + 1 : comma + 1;
    const size_t colon = token.find(':');
    if (token.empty() || colon == std::string::npos) {
      fail(ErrorCode::InvalidArgument, "--slo: '{}' is not METRIC:MILLISECONDS (ttft, tpot or e2el), e.g. ttft:500",
           token);
    }
    std::string metric = trim(token.substr(0, colon));
    std::transform(metric.begin(), metric.end(), metric.begin(), [](unsigned char c) { return std::tolower(c); });
    const std::string value = trim(token.substr(colon + 1));
    const auto ms = parse_positive(value);
    if (!ms)
      fail(ErrorCode::InvalidArgument, "--slo: '{}': '{}' is not a positive number of milliseconds", token, value);
    std::optional<double>* slot = nullptr;
    if (metric == "ttft")
      slot = &slo.ttft_ms;
    else if (metric == "tpot")
      slot = &slo.tpot_ms;
    else if (metric == "e2el" || metric == "e2e")
      slot = &slo.e2el_ms;
    else
      fail(ErrorCode::InvalidArgument, "--slo: '{}': unknown metric '{}' (expected ttft, tpot or e2el)", token, metric);
    if (slot->has_value()) fail(ErrorCode::InvalidArgument, "--slo: '{}': {} is given twice", token, metric);
    *slot = *ms;
  }
  return slo;
}

double parse_rate(const std::string& text) {
  std::string t = trim(text);
  std::transform(t.begin(), t.end(), t.begin(), [](unsigned char c) { return std::tolower(c); });
  if (t == "inf" || t == "infinity") return std::numeric_limits<double>::infinity();
  const auto v = parse_positive(t);
  if (!v)
    fail(ErrorCode::InvalidArgument, "--rate '{}': expected a positive number of requests per second, or inf", text);
  return *v;
}

// ---- Workload -----------------------------------------------------------------------------------

std::vector<RequestSpec> synthetic_requests(size_t n, int input_len, int output_len, uint64_t seed) {
  std::mt19937_64 rng(seed);
  constexpr size_t kCount = sizeof kWords / sizeof kWords[0];
  std::uniform_int_distribution<size_t> pick(0, kCount - 1);
  std::vector<RequestSpec> out(n);
  for (auto& r : out) {
    std::string& p = r.prompt;
    p.reserve(static_cast<size_t>(std::max(input_len, 1)) * 6);
    for (int i = 0; i < input_len; ++i) {
      if (i) p += ' ';
      p += kWords[pick(rng)];
    }
    r.max_tokens = std::max(output_len, 0);
    r.estimated_input_tokens = std::max(input_len, 0);
  }
  return out;
}

std::vector<RequestSpec> load_dataset(const std::string& path, size_t n, int output_len, Endpoint endpoint) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(ErrorCode::NotFound, "cannot read dataset '{}'", path);
  std::vector<RequestSpec> entries;
  std::string text;
  for (size_t line_no = 1; std::getline(in, text); ++line_no) {
    if (trim(text).empty()) continue;
    json j = json::parse(text, nullptr, false);
    if (j.is_discarded() || !j.is_object()) fail(ErrorCode::InvalidFile, "{}:{}: not a JSON object", path, line_no);
    RequestSpec r;
    size_t chars = 0;
    if (j.contains("prompt") && j["prompt"].is_string()) {
      r.prompt = j["prompt"].get<std::string>();
      chars = r.prompt.size();
    } else if (j.contains("messages") && j["messages"].is_array() && !j["messages"].empty()) {
      if (endpoint != Endpoint::Chat) {
        fail(ErrorCode::InvalidArgument, "{}:{}: \"messages\" needs --endpoint chat (completions takes \"prompt\")",
             path, line_no);
      }
      for (const auto& m : j["messages"]) {
        if (!m.is_object() || !m.contains("role") || !m.contains("content")) {
          fail(ErrorCode::InvalidFile, "{}:{}: each message needs \"role\" and \"content\"", path, line_no);
        }
        chars +=
            m["content"].is_string() ? m["content"].get_ref<const std::string&>().size() : m["content"].dump().size();
      }
      r.messages = j["messages"];
    } else {
      fail(ErrorCode::InvalidFile, "{}:{}: expected \"prompt\" (a string) or \"messages\" (a non-empty array)", path,
           line_no);
    }
    r.max_tokens = std::max(output_len, 0);
    if (j.contains("max_tokens")) {
      if (!j["max_tokens"].is_number_integer() || j["max_tokens"].get<int64_t>() <= 0 ||
          j["max_tokens"].get<int64_t>() > (1 << 30)) {
        fail(ErrorCode::InvalidFile, "{}:{}: \"max_tokens\" must be a positive integer, not {}", path, line_no,
             j["max_tokens"].dump());
      }
      r.max_tokens = j["max_tokens"].get<int>();
    }
    r.estimated_input_tokens = std::max<int64_t>(1, static_cast<int64_t>((chars + 3) / 4));  // ~4 bytes a token
    entries.push_back(std::move(r));
  }
  if (entries.empty()) fail(ErrorCode::InvalidFile, "dataset '{}' has no entries", path);
  if (n == 0) return entries;
  std::vector<RequestSpec> out;
  out.reserve(n);
  for (size_t i = 0; i < n; ++i) out.push_back(entries[i % entries.size()]);
  return out;
}

std::vector<double> arrival_offsets(size_t n, double rate, double burstiness, uint64_t seed) {
  std::vector<double> t(n, 0.0);
  if (!std::isfinite(rate) || n == 0) return t;
  std::mt19937_64 rng(seed ^ 0x9e3779b97f4a7c15ULL);
  std::gamma_distribution<double> gap(burstiness, 1.0 / (rate * burstiness));
  for (size_t i = 1; i < n; ++i) t[i] = t[i - 1] + gap(rng);
  return t;
}

json request_body(const RequestSpec& spec, const std::string& model, Endpoint endpoint, bool ignore_eos,
                  const json& extra_body) {
  json b = {{"model", model}, {"stream", true}, {"stream_options", {{"include_usage", true}}}};
  if (endpoint == Endpoint::Chat) {
    b["messages"] =
        spec.messages.is_null() ? json::array({{{"role", "user"}, {"content", spec.prompt}}}) : spec.messages;
  } else {
    b["prompt"] = spec.prompt;
  }
  if (spec.max_tokens > 0) {
    b["max_tokens"] = spec.max_tokens;
    if (ignore_eos) b["ignore_eos"] = true;  // vLLM, llama.cpp: generate exactly max_tokens; others ignore it
  }
  if (extra_body.is_object()) b.update(extra_body);  // e.g. {"temperature": 0}
  return b;
}

// ---- One request --------------------------------------------------------------------------------

namespace {

struct StreamState {
  bool done = false, finished = false, invalid = false, stream_error = false;
  std::string problem;
  int64_t chunks = 0;
  std::optional<int64_t> completion_tokens, prompt_tokens;
  Clock::time_point first, last, done_at;
  std::vector<double> itl_ms;
};

// True when the chunk carries generated text.
bool has_content(const json& choice, Endpoint endpoint) {
  auto nonempty = [](const json& o, const char* k) {
    return o.contains(k) && o[k].is_string() && !o[k].get_ref<const std::string&>().empty();
  };
  if (endpoint == Endpoint::Completions) return nonempty(choice, "text");
  if (!choice.contains("delta") || !choice["delta"].is_object()) return nonempty(choice, "text");
  const json& d = choice["delta"];
  return nonempty(d, "content") || nonempty(d, "reasoning_content") || nonempty(d, "reasoning");
}

void handle_event(StreamState& s, const SseEvent& ev, Clock::time_point now, Endpoint endpoint) {
  const std::string data = trim(ev.data);
  if (ev.event == "error") {
    if (!s.stream_error) s.problem = error_message(data);
    s.stream_error = true;
    return;
  }
  if (data == "[DONE]") {
    if (!s.done) s.done_at = now;
    s.done = true;
    return;
  }
  if (data.empty()) return;
  const json j = json::parse(data, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    if (!s.invalid && !s.stream_error) s.problem = "not JSON: " + one_line(data, 120);
    s.invalid = true;
    return;
  }
  if (j.contains("error") && !j["error"].is_null()) {
    if (!s.stream_error) s.problem = error_message(data);
    s.stream_error = true;
    return;
  }
  if (j.contains("usage") && j["usage"].is_object()) {
    const json& u = j["usage"];
    if (u.contains("completion_tokens") && u["completion_tokens"].is_number_integer())
      s.completion_tokens = u["completion_tokens"].get<int64_t>();
    if (u.contains("prompt_tokens") && u["prompt_tokens"].is_number_integer())
      s.prompt_tokens = u["prompt_tokens"].get<int64_t>();
  }
  if (j.contains("choices") && j["choices"].is_array()) {
    for (const auto& c : j["choices"]) {
      if (!c.is_object()) continue;
      if (c.contains("finish_reason") && !c["finish_reason"].is_null()) s.finished = true;
      if (has_content(c, endpoint)) {
        if (s.chunks == 0) {
          s.first = now;
        } else {
          s.itl_ms.push_back(ms_between(s.last, now));
        }
        s.last = now;
        ++s.chunks;
      }
    }
  }
}

struct Worker {
  const Target& target;
  const Options& options;
  Clock::time_point run_start;

  RequestRecord execute(httplib::Client& cli, const RequestSpec& spec, const std::string& body) const {
    RequestRecord r;
    httplib::Request req;
    req.method = "POST";
    req.path = target.prefix + (options.endpoint == Endpoint::Chat ? "/v1/chat/completions" : "/v1/completions");
    req.headers = base_headers(options);
    req.headers.emplace("Content-Type", "application/json");
    req.headers.emplace("Accept", "text/event-stream");
    req.body = body;

    StreamState st;
    SseParser parser;
    int status = 0;
    std::string error_body, head;
    bool timed_out = false, got_bytes = false;
    const auto limit = std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(options.timeout_s));
    Clock::time_point sent;
    req.response_handler = [&](const httplib::Response& res) {
      status = res.status;
      return true;
    };
    req.content_receiver = [&](const char* data, size_t n, uint64_t, uint64_t) {
      const auto now = Clock::now();
      got_bytes = true;
      if (now - sent > limit) {
        timed_out = true;
        return false;
      }
      if (status != 200) {
        if (error_body.size() < 65536) error_body.append(data, std::min(n, 65536 - error_body.size()));
        return true;
      }
      if (head.size() < 4096) head.append(data, std::min(n, 4096 - head.size()));
      parser.feed(std::string_view(data, n), [&](const SseEvent& ev) {
        handle_event(st, ev, now, options.endpoint);
        return true;
      });
      return true;
    };

    httplib::Response res;
    httplib::Error err = httplib::Error::Success;
    sent = Clock::now();
    r.start_s = std::chrono::duration<double>(sent - run_start).count();
    const bool sent_ok = cli.send(req, res, err);
    const auto returned = Clock::now();
    r.http_status = status != 0 ? status : (sent_ok ? res.status : 0);
    const double elapsed_s = std::chrono::duration<double>(returned - sent).count();

    auto failed = [&](std::string reason, std::string detail) {
      r.ok = false;
      r.error = std::move(reason);
      r.error_detail = std::move(detail);
      return r;
    };
    if (timed_out || (!sent_ok && err == httplib::Error::ConnectionTimeout)) {
      return failed("timeout", fmt::format("no complete response within {:g} s", options.timeout_s));
    }
    if (!sent_ok) {
      if (err == httplib::Error::Connection) {
        const std::string why = probe_connect(target, options.timeout_s);
        return failed("cannot connect", why.empty() ? "connection failed" : why);
      }
      if (err == httplib::Error::Read && elapsed_s >= options.timeout_s * 0.98) {
        return failed("timeout", fmt::format("the server sent nothing for {:g} s", options.timeout_s));
      }
      if (err == httplib::Error::Read || err == httplib::Error::Write) {
        return failed(got_bytes || status ? "connection lost" : "no response",
                      fmt::format("{} error after {:.3f} s{}", err == httplib::Error::Read ? "read" : "write",
                                  elapsed_s, status ? fmt::format(" (HTTP {})", status) : ""));
      }
      return failed("http client error", httplib::to_string(err));
    }
    if (r.http_status != 200) {
      return failed(fmt::format("HTTP {}", r.http_status),
                    error_body.empty() ? std::string() : error_message(error_body));
    }
    const auto end_parse = Clock::now();
    parser.finish([&](const SseEvent& ev) {
      handle_event(st, ev, end_parse, options.endpoint);
      return true;
    });
    if (st.stream_error) return failed("stream error", st.problem);
    if (st.invalid) return failed("invalid stream", st.problem);
    if (parser.events() == 0) {
      const json j = json::parse(head, nullptr, false);
      return failed("not streamed",
                    j.is_discarded() ? "no server-sent events in the response: " + one_line(head, 120)
                                     : "the server answered with one JSON body; it may not support \"stream\": true");
    }
    if (st.chunks == 0) return failed("no output", "the stream ended without any generated text");
    if (!st.done && !st.finished) return failed("stream ended early", "no [DONE] and no finish_reason");

    const auto end = st.done ? st.done_at : returned;
    r.ok = true;
    r.ttft_ms = ms_between(sent, st.first);
    r.e2el_ms = ms_between(sent, std::max(end, st.last));
    r.itl_ms = std::move(st.itl_ms);
    r.content_chunks = st.chunks;
    r.usage_reported = st.completion_tokens.has_value() && *st.completion_tokens > 0;
    r.output_tokens = r.usage_reported ? *st.completion_tokens : st.chunks;
    r.input_tokens = st.prompt_tokens && *st.prompt_tokens > 0 ? *st.prompt_tokens : spec.estimated_input_tokens;
    if (!(st.prompt_tokens && *st.prompt_tokens > 0)) r.usage_reported = false;
    if (r.output_tokens > 1) {
      r.has_tpot = true;
      r.tpot_ms = (r.e2el_ms - r.ttft_ms) / static_cast<double>(r.output_tokens - 1);
    }
    return r;
  }
};

}  // namespace

// ---- Running ------------------------------------------------------------------------------------

std::string discover_model(const Options& options) {
  const Target t = parse_url(options.url);
  if (const std::string why = probe_connect(t, options.timeout_s); !why.empty()) {
    fail(ErrorCode::Io, "cannot reach {}: {}", t.display, why);
  }
  httplib::Client cli(t.origin);
  set_client_options(cli, options);
  cli.set_keep_alive(false);
  const std::string path = t.prefix + "/v1/models";
  auto res = cli.Get(path, base_headers(options));
  if (!res) fail(ErrorCode::Io, "cannot list models at {}{}: {}", t.origin, path, httplib::to_string(res.error()));
  if (res->status != 200) {
    fail(ErrorCode::Io, "cannot list models at {}{}: HTTP {}{}; give --model", t.origin, path, res->status,
         res->body.empty() ? std::string() : ": " + error_message(res->body));
  }
  const json j = json::parse(res->body, nullptr, false);
  if (j.is_object() && j.contains("data") && j["data"].is_array()) {
    for (const auto& m : j["data"]) {
      if (m.is_object() && m.contains("id") && m["id"].is_string()) return m["id"].get<std::string>();
    }
  }
  if (j.is_object() && j.contains("models") && j["models"].is_array()) {  // llama-server also lists these
    for (const auto& m : j["models"]) {
      for (const char* k : {"model", "name"}) {
        if (m.is_object() && m.contains(k) && m[k].is_string()) return m[k].get<std::string>();
      }
    }
  }
  fail(ErrorCode::NotFound, "the server at {} lists no models ({}{}); give --model", t.display, t.origin, path);
}

Summary summarize_run(const std::vector<RequestRecord>& records, double duration_s, int max_concurrency,
                      const Slo& slo) {
  Summary s;
  s.duration_s = duration_s;
  s.max_concurrency = max_concurrency;
  std::vector<double> ttft, tpot, itl, e2el;
  std::map<std::string, ErrorCount> errors;
  for (const auto& r : records) {
    if (!r.ok) {
      ++s.failed;
      auto& e = errors[r.error];
      if (e.count++ == 0) {
        e.reason = r.error;
        e.example = r.error_detail;
      }
      continue;
    }
    ++s.completed;
    s.input_tokens += r.input_tokens;
    s.output_tokens += r.output_tokens;
    if (!r.usage_reported) s.input_tokens_estimated = true;
    ttft.push_back(r.ttft_ms);
    e2el.push_back(r.e2el_ms);
    if (r.has_tpot) tpot.push_back(r.tpot_ms);
    itl.insert(itl.end(), r.itl_ms.begin(), r.itl_ms.end());
    const bool good = (!slo.ttft_ms || r.ttft_ms <= *slo.ttft_ms) &&
                      (!slo.tpot_ms || !r.has_tpot || r.tpot_ms <= *slo.tpot_ms) &&
                      (!slo.e2el_ms || r.e2el_ms <= *slo.e2el_ms);
    if (good) ++s.good;
  }
  for (auto& [k, e] : errors) s.errors.push_back(e);
  std::stable_sort(s.errors.begin(), s.errors.end(),
                   [](const ErrorCount& a, const ErrorCount& b) { return a.count > b.count; });
  if (duration_s > 0) {
    s.request_throughput = static_cast<double>(s.completed) / duration_s;
    s.output_throughput = static_cast<double>(s.output_tokens) / duration_s;
    s.total_token_throughput = static_cast<double>(s.input_tokens + s.output_tokens) / duration_s;
    s.goodput = static_cast<double>(s.good) / duration_s;
  }
  s.ttft_ms = summarize(ttft);
  s.tpot_ms = summarize(tpot);
  s.itl_ms = summarize(itl);
  s.e2el_ms = summarize(e2el);
  return s;
}

RunResult run(Options o, const Progress& progress) {
  if (o.concurrency < 1 || o.concurrency > 4096)
    fail(ErrorCode::InvalidArgument, "--concurrency {}: expected 1 to 4096", o.concurrency);
  if (o.requests < 0 || (o.requests == 0 && o.dataset.empty()))
    fail(ErrorCode::InvalidArgument, "--requests {}: expected at least 1", o.requests);
  if (!(o.rate > 0))
    fail(ErrorCode::InvalidArgument, "--rate: expected a positive number of requests per second, or inf");
  if (!(o.burstiness > 0) || !std::isfinite(o.burstiness))
    fail(ErrorCode::InvalidArgument, "--burstiness {}: expected a positive number", o.burstiness);
  if (o.input_len < 1 && o.dataset.empty())
    fail(ErrorCode::InvalidArgument, "--input-len {}: expected at least 1", o.input_len);
  if (o.output_len < 0)
    fail(ErrorCode::InvalidArgument, "--output-len {}: expected 0 (no limit) or more", o.output_len);
  if (!(o.timeout_s > 0) || !std::isfinite(o.timeout_s))
    fail(ErrorCode::InvalidArgument, "--timeout {}: expected a positive number of seconds", o.timeout_s);

  const Target target = parse_url(o.url);
  const std::vector<RequestSpec> specs =
      o.dataset.empty() ? synthetic_requests(static_cast<size_t>(o.requests), o.input_len, o.output_len, o.seed)
                        : load_dataset(o.dataset, static_cast<size_t>(o.requests), o.output_len, o.endpoint);
  if (const std::string why = probe_connect(target, o.timeout_s); !why.empty()) {
    fail(ErrorCode::Io, "cannot reach {}: {}", target.display, why);
  }
  if (o.model.empty()) o.model = discover_model(o);
  o.requests = static_cast<int>(specs.size());

  std::vector<std::string> bodies;
  bodies.reserve(specs.size());
  for (const auto& s : specs) bodies.push_back(request_body(s, o.model, o.endpoint, o.ignore_eos, o.extra_body).dump());
  const std::vector<double> arrivals = arrival_offsets(specs.size(), o.rate, o.burstiness, o.seed);

  RunResult result;
  result.requests.resize(specs.size());
  std::atomic<size_t> next{0};
  std::atomic<int> in_flight{0}, max_in_flight{0};
  std::mutex progress_mu;
  size_t done = 0;
  const size_t n_workers = std::min(static_cast<size_t>(o.concurrency), specs.size());
  const auto run_start = Clock::now();
  const Worker worker{target, o, run_start};
  std::vector<Clock::time_point> finished_at(n_workers, run_start);

  auto work = [&](size_t w) {
    httplib::Client cli(target.origin);
    set_client_options(cli, o);
    for (;;) {
      const size_t i = next.fetch_add(1);
      if (i >= specs.size()) break;
      std::this_thread::sleep_until(
          run_start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(arrivals[i])));
      const int now_in = in_flight.fetch_add(1) + 1;
      for (int m = max_in_flight.load(); now_in > m && !max_in_flight.compare_exchange_weak(m, now_in);) {
      }
      RequestRecord rec;
      try {
        rec = worker.execute(cli, specs[i], bodies[i]);
      } catch (const std::exception& e) {
        rec.ok = false;
        rec.error = "internal error";
        rec.error_detail = e.what();
      }
      in_flight.fetch_sub(1);
      result.requests[i] = std::move(rec);
      finished_at[w] = Clock::now();
      if (progress) {
        std::lock_guard<std::mutex> lock(progress_mu);
        progress(++done, specs.size());
      }
    }
  };
  std::vector<std::thread> threads;
  threads.reserve(n_workers);
  for (size_t w = 0; w < n_workers; ++w) threads.emplace_back(work, w);
  for (auto& t : threads) t.join();
  const auto run_end = *std::max_element(finished_at.begin(), finished_at.end());

  result.options = o;
  result.summary = summarize_run(result.requests, std::chrono::duration<double>(run_end - run_start).count(),
                                 max_in_flight.load(), o.slo);
  return result;
}

// ---- Output -------------------------------------------------------------------------------------

namespace {

json stats_json(const Stats& s) {
  return {{"count", s.count}, {"mean", s.mean}, {"std", s.std}, {"median", s.median},
          {"p90", s.p90},     {"p99", s.p99},   {"min", s.min}, {"max", s.max}};
}

json opt_json(const std::optional<double>& v) {
  return v ? json(*v) : json(nullptr);
}

const char* endpoint_name(Endpoint e) {
  return e == Endpoint::Chat ? "chat" : "completions";
}

}  // namespace

json to_json(const RunResult& r) {
  const Options& o = r.options;
  const Summary& s = r.summary;
  json errors = json::array();
  for (const auto& e : s.errors) errors.push_back({{"reason", e.reason}, {"count", e.count}, {"example", e.example}});
  json requests = json::array();
  for (const auto& q : r.requests) {
    json j = {{"ok", q.ok}, {"start_s", q.start_s}, {"http_status", q.http_status}};
    if (q.ok) {
      j["ttft_ms"] = q.ttft_ms;
      j["tpot_ms"] = q.has_tpot ? json(q.tpot_ms) : json(nullptr);
      j["e2el_ms"] = q.e2el_ms;
      j["itl_ms"] = q.itl_ms;
      j["input_tokens"] = q.input_tokens;
      j["output_tokens"] = q.output_tokens;
      j["content_chunks"] = q.content_chunks;
      j["usage_reported"] = q.usage_reported;
    } else {
      j["error"] = q.error;
      j["error_detail"] = q.error_detail;
    }
    requests.push_back(std::move(j));
  }
  return {
      {"vireo_version", "0.1.0"},
      {"schema", 1},
      {"kind", "serve"},
      {"config",
       {{"url", o.url},
        {"endpoint", endpoint_name(o.endpoint)},
        {"model", o.model},
        {"concurrency", o.concurrency},
        {"requests", o.requests},
        {"rate", std::isfinite(o.rate) ? json(o.rate) : json(nullptr)},
        {"burstiness", o.burstiness},
        {"input_len", o.dataset.empty() ? json(o.input_len) : json(nullptr)},
        {"output_len", o.output_len},
        {"ignore_eos", o.ignore_eos},
        {"dataset", o.dataset.empty() ? json(nullptr) : json(o.dataset)},
        {"seed", o.seed},
        {"timeout_s", o.timeout_s},
        {"slo",
         {{"ttft_ms", opt_json(o.slo.ttft_ms)},
          {"tpot_ms", opt_json(o.slo.tpot_ms)},
          {"e2el_ms", opt_json(o.slo.e2el_ms)}}}}},
      {"summary",
       {{"completed", s.completed},
        {"failed", s.failed},
        {"errors", errors},
        {"duration_s", s.duration_s},
        {"input_tokens", s.input_tokens},
        {"output_tokens", s.output_tokens},
        {"input_tokens_estimated", s.input_tokens_estimated},
        {"request_throughput", s.request_throughput},
        {"output_throughput", s.output_throughput},
        {"total_token_throughput", s.total_token_throughput},
        {"max_concurrency", s.max_concurrency},
        {"good", o.slo.any() ? json(s.good) : json(nullptr)},
        {"goodput", o.slo.any() ? json(s.goodput) : json(nullptr)},
        {"ttft_ms", stats_json(s.ttft_ms)},
        {"tpot_ms", stats_json(s.tpot_ms)},
        {"itl_ms", stats_json(s.itl_ms)},
        {"e2el_ms", stats_json(s.e2el_ms)}}},
      {"requests", requests},
  };
}

std::string format_table(const RunResult& r) {
  const Options& o = r.options;
  const Summary& s = r.summary;
  std::string t;
  auto row = [&](const std::string& k, const std::string& v) { t += fmt::format("{:<36} {}\n", k + ":", v); };
  t += "============ vireo bench serve ============\n";
  row("Server",
      fmt::format("{} ({})", o.url, o.endpoint == Endpoint::Chat ? "/v1/chat/completions" : "/v1/completions"));
  row("Model", o.model);
  row("Load",
      fmt::format("{} requests, concurrency {}, rate {}{}", o.requests, o.concurrency,
                  std::isfinite(o.rate) ? fmt::format("{:g}/s", o.rate) : "inf",
                  std::isfinite(o.rate) && o.burstiness != 1 ? fmt::format(" (burstiness {:g})", o.burstiness) : ""));
  row("Successful requests", fmt::format("{}", s.completed));
  row("Failed requests", fmt::format("{}", s.failed));
  for (const auto& e : s.errors) {
    row("  " + e.reason, fmt::format("{}{}", e.count, e.example.empty() ? "" : "  (" + one_line(e.example, 80) + ")"));
  }
  row("Max concurrency reached", fmt::format("{}", s.max_concurrency));
  row("Benchmark duration (s)", fmt::format("{:.2f}", s.duration_s));
  row("Total input tokens", fmt::format("{}{}", s.input_tokens, s.input_tokens_estimated ? " (estimated)" : ""));
  row("Total generated tokens", fmt::format("{}", s.output_tokens));
  row("Request throughput (req/s)", fmt::format("{:.2f}", s.request_throughput));
  row("Output token throughput (tok/s)", fmt::format("{:.2f}", s.output_throughput));
  row("Total token throughput (tok/s)", fmt::format("{:.2f}", s.total_token_throughput));
  if (o.slo.any()) {
    std::string slo;
    if (o.slo.ttft_ms) slo += fmt::format("ttft<={:g}ms ", *o.slo.ttft_ms);
    if (o.slo.tpot_ms) slo += fmt::format("tpot<={:g}ms ", *o.slo.tpot_ms);
    if (o.slo.e2el_ms) slo += fmt::format("e2el<={:g}ms ", *o.slo.e2el_ms);
    row("Request goodput (req/s)",
        fmt::format("{:.2f}  ({} of {} within {})", s.goodput, s.good, s.completed, trim(slo)));
  }
  t += fmt::format("\n| {:<12} | {:>9} | {:>9} | {:>9} | {:>9} | {:>9} | {:>8} |\n", "latency (ms)", "mean", "std",
                   "median", "p90", "p99", "samples");
  t += fmt::format("| {:-<12} | {:->8}: | {:->8}: | {:->8}: | {:->8}: | {:->8}: | {:->7}: |\n", "", "", "", "", "", "",
                   "");
  for (const auto& [name, st] : {std::pair{"TTFT", s.ttft_ms}, std::pair{"TPOT", s.tpot_ms}, std::pair{"ITL", s.itl_ms},
                                 std::pair{"E2EL", s.e2el_ms}}) {
    t += fmt::format("| {:<12} | {:>9.2f} | {:>9.2f} | {:>9.2f} | {:>9.2f} | {:>9.2f} | {:>8} |\n", name, st.mean,
                     st.std, st.median, st.p90, st.p99, st.count);
  }
  return t;
}

// ---- HTML report --------------------------------------------------------------------------------

namespace {

std::string esc(const std::string& s) { return html_escape(s); }

constexpr double kW = 640, kH = 320, kL = 64, kR = 20, kT = 34, kB = 46;

std::vector<double> nice_ticks(double a, double b) {
  std::vector<double> t;
  if (!(b > a)) return {a};
  const double step = std::pow(10, std::floor(std::log10((b - a) / 4)));
  const double st = (b - a) / step > 20 ? step * 5 : (b - a) / step > 8 ? step * 2 : step;
  for (double v = std::ceil(a / st) * st; v <= b + 1e-9 * (b - a); v += st) t.push_back(v);
  return t;
}

// Frame, grid, ticks and labels of a chart over [x0, x1] x [y0, y1].
std::string frame(const std::string& id, const std::string& title, const std::string& xl, const std::string& yl,
                  double x0, double x1, double y0, double y1) {
  std::string s = fmt::format(
      R"svg(<svg class="chart" id="{}" xmlns="http://www.w3.org/2000/svg" width="{}" height="{}" viewBox="0 0 {} {}">)svg",
      id, kW, kH, kW, kH);
  s += fmt::format(R"svg(<text x="{}" y="20" text-anchor="middle" class="title">{}</text>)svg", kW / 2, esc(title));
  for (double v : nice_ticks(y0, y1)) {
    const double y = kH - kB - (kH - kT - kB) * (v - y0) / (y1 - y0);
    s += fmt::format(
        R"svg(<line x1="{}" x2="{}" y1="{:.1f}" y2="{:.1f}" class="grid"/><text x="{}" y="{:.1f}" text-anchor="end" class="tick">{:.4g}</text>)svg",
        kL, kW - kR, y, y, kL - 4, y + 4, v);
  }
  for (double v : nice_ticks(x0, x1)) {
    const double x = kL + (kW - kL - kR) * (v - x0) / (x1 - x0);
    s += fmt::format(R"svg(<text x="{:.1f}" y="{}" text-anchor="middle" class="tick">{:.4g}</text>)svg", x,
                     kH - kB + 16, v);
  }
  s += fmt::format(
      R"svg(<line x1="{0}" y1="{1}" x2="{0}" y2="{2}" class="axis"/><line x1="{0}" y1="{2}" x2="{3}" y2="{2}" class="axis"/>)svg",
      kL, kT, kH - kB, kW - kR);
  s += fmt::format(R"svg(<text x="{}" y="{}" text-anchor="middle" class="label">{}</text>)svg", (kL + kW - kR) / 2,
                   kH - 10, esc(xl));
  s += fmt::format(
      R"svg(<text x="14" y="{0}" transform="rotate(-90 14 {0})" text-anchor="middle" class="label">{1}</text>)svg",
      (kT + kH - kB) / 2, esc(yl));
  return s;
}

// A histogram of `values` with markers at the median and p99.
std::string histogram(const std::string& id, const std::string& title, const std::string& xl,
                      const std::vector<double>& values) {
  if (values.empty()) {
    return frame(id, title + " (no samples)", xl, "requests", 0, 1, 0, 1) + "</svg>";
  }
  const auto [lo_it, hi_it] = std::minmax_element(values.begin(), values.end());
  double lo = *lo_it, hi = *hi_it;
  if (hi - lo < 1e-9) {
    lo -= 0.5;
    hi += 0.5;
  }
  const int nb = std::clamp(static_cast<int>(std::sqrt(static_cast<double>(values.size())) * 2), 5, 60);
  const double w = (hi - lo) / nb;
  std::vector<size_t> counts(nb, 0);
  for (double v : values) counts[std::min(nb - 1, static_cast<int>((v - lo) / w))]++;
  const double ymax = static_cast<double>(*std::max_element(counts.begin(), counts.end())) * 1.1;
  std::string s = frame(id, title, xl, "count", lo, hi, 0, ymax);
  auto px = [&](double x) { return kL + (kW - kL - kR) * (x - lo) / (hi - lo); };
  auto py = [&](double y) { return kH - kB - (kH - kT - kB) * y / ymax; };
  for (int b = 0; b < nb; ++b) {
    if (counts[b] == 0) continue;
    s += fmt::format(
        R"svg(<rect class="bar" x="{:.1f}" y="{:.1f}" width="{:.1f}" height="{:.1f}" fill="#2563eb"><title>{:.3g} to {:.3g}: {}</title></rect>)svg",
        px(lo + w * b) + 0.5, py(static_cast<double>(counts[b])),
        std::max(px(lo + w * (b + 1)) - px(lo + w * b) - 1, 1.0), py(0) - py(static_cast<double>(counts[b])),
        lo + w * b, lo + w * (b + 1), counts[b]);
  }
  const Stats st = summarize(values);
  int k = 0;
  for (const auto& [name, v, col] :
       {std::tuple{"median", st.median, "#16a34a"}, std::tuple{"p99", st.p99, "#dc2626"}}) {
    s += fmt::format(R"svg(<line x1="{0:.1f}" x2="{0:.1f}" y1="{1}" y2="{2}" stroke="{3}" stroke-dasharray="5 3"/>)svg",
                     px(v), kT, kH - kB, col);
    s += fmt::format(R"svg(<text x="{}" y="{}" class="legend" fill="{}" text-anchor="end">{} {:.2f}</text>)svg",
                     kW - kR - 4, kT + 14 + 14 * k++, col, name, v);
  }
  return s + "</svg>";
}

// Points (x, y) of each series as dots.
std::string scatter(const std::string& id, const std::string& title, const std::string& xl, const std::string& yl,
                    const std::vector<std::pair<std::string, std::vector<std::pair<double, double>>>>& series) {
  double x1 = 0, y1 = 0;
  for (const auto& [n, pts] : series) {
    for (auto [x, y] : pts) x1 = std::max(x1, x), y1 = std::max(y1, y);
  }
  x1 = x1 > 0 ? x1 * 1.02 : 1;
  y1 = y1 > 0 ? y1 * 1.08 : 1;
  std::string s = frame(id, title, xl, yl, 0, x1, 0, y1);
  const char* colors[] = {"#2563eb", "#dc2626", "#16a34a"};
  int k = 0;
  for (const auto& [name, pts] : series) {
    const char* col = colors[k % 3];
    for (auto [x, y] : pts) {
      s += fmt::format(R"svg(<circle class="point" cx="{:.1f}" cy="{:.1f}" r="2.5" fill="{}" fill-opacity="0.7"/>)svg",
                       kL + (kW - kL - kR) * x / x1, kH - kB - (kH - kT - kB) * y / y1, col);
    }
    s += fmt::format(R"svg(<text x="{}" y="{}" class="legend" fill="{}" text-anchor="end">{}</text>)svg", kW - kR - 4,
                     kT + 14 + 14 * k++, col, esc(name));
  }
  return s + "</svg>";
}

std::vector<double> numbers(const json& requests, const char* key) {
  std::vector<double> v;
  for (const auto& r : requests) {
    if (!r.value("ok", false) || !r.contains(key)) continue;
    const json& x = r[key];
    if (x.is_number()) v.push_back(x.get<double>());
    if (x.is_array()) {
      for (const auto& e : x)
        if (e.is_number()) v.push_back(e.get<double>());
    }
  }
  return v;
}

}  // namespace

std::string write_report(const std::string& dir, const json& doc) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) fail(ErrorCode::Io, "cannot create report folder '{}': {}", dir, ec.message());
  const json requests = doc.value("requests", json::array());
  const json cfg = doc.value("config", json::object());
  const json sum = doc.value("summary", json::object());

  std::vector<std::pair<double, double>> ttft_t, e2el_t;
  for (const auto& r : requests) {
    if (!r.value("ok", false)) continue;
    ttft_t.emplace_back(r.value("start_s", 0.0), r.value("ttft_ms", 0.0));
    e2el_t.emplace_back(r.value("start_s", 0.0), r.value("e2el_ms", 0.0));
  }

  auto num = [](const json& j, const char* k) {
    return j.contains(k) && j[k].is_number() ? fmt::format("{:.2f}", j[k].get<double>()) : std::string("-");
  };
  std::string html =
      R"svg(<!doctype html><html><head><meta charset="utf-8"><title>vireo bench serve report</title><style>
body{font:14px system-ui,sans-serif;margin:24px;color:#111}table{border-collapse:collapse;margin:12px 0}td,th{border:1px solid #ccc;padding:4px 8px}
td.n{text-align:right}.chart{border:1px solid #ddd;margin:8px 8px 0 0}.title{font-weight:600;font-size:14px}.tick{font-size:10px;fill:#444}
.label{font-size:11px;fill:#222}.legend{font-size:11px}.axis{stroke:#333}.grid{stroke:#eee}</style></head><body>
<h1>vireo bench serve</h1>)svg";
  html += fmt::format(
      "<p>{} &mdash; model <b>{}</b>, endpoint {}, {} requests, concurrency {}, rate {}.</p>\n",
      esc(cfg.value("url", std::string())), esc(cfg.value("model", std::string())),
      esc(cfg.value("endpoint", std::string())), cfg.value("requests", 0), cfg.value("concurrency", 0),
      cfg.contains("rate") && cfg["rate"].is_number() ? fmt::format("{:g}/s", cfg["rate"].get<double>()) : "inf");
  html += "<table>";
  auto row = [&](const std::string& k, const std::string& v) {
    html += "<tr><th style=\"text-align:left\">" + esc(k) + "</th><td class=n>" + esc(v) + "</td></tr>";
  };
  row("completed", fmt::format("{}", sum.value("completed", 0)));
  row("failed", fmt::format("{}", sum.value("failed", 0)));
  if (sum.contains("errors")) {
    for (const auto& e : sum["errors"])
      row("  " + e.value("reason", std::string()),
          fmt::format("{}{}", e.value("count", 0),
                      e.value("example", std::string()).empty() ? std::string()
                                                                : " (" + e.value("example", std::string()) + ")"));
  }
  row("duration (s)", num(sum, "duration_s"));
  row("request throughput (req/s)", num(sum, "request_throughput"));
  row("output throughput (tok/s)", num(sum, "output_throughput"));
  row("total token throughput (tok/s)", num(sum, "total_token_throughput"));
  row("goodput (req/s)", num(sum, "goodput"));
  row("max concurrency reached", fmt::format("{}", sum.value("max_concurrency", 0)));
  html +=
      "</table>\n<table><tr><th>ms</th><th>mean</th><th>std</th><th>median</th><th>p90</th><th>p99</th><th>samples</"
      "th></tr>";
  for (const auto& [name, key] : {std::pair{"TTFT", "ttft_ms"}, std::pair{"TPOT", "tpot_ms"},
                                  std::pair{"ITL", "itl_ms"}, std::pair{"E2EL", "e2el_ms"}}) {
    const json st = sum.value(key, json::object());
    html += fmt::format(
        "<tr><td>{}</td><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td><td "
        "class=n>{}</td><td class=n>{}</td></tr>",
        name, num(st, "mean"), num(st, "std"), num(st, "median"), num(st, "p90"), num(st, "p99"), st.value("count", 0));
  }
  html += "</table>\n";
  html += histogram("ttft", "Time to first token", "milliseconds", numbers(requests, "ttft_ms"));
  html += histogram("itl", "Inter-token latency", "milliseconds", numbers(requests, "itl_ms"));
  html += histogram("tpot", "Time per output token", "milliseconds", numbers(requests, "tpot_ms"));
  html += histogram("e2el", "End-to-end latency", "milliseconds", numbers(requests, "e2el_ms"));
  html += scatter("timeline", "Latency by send time", "seconds since start", "milliseconds",
                  {{"E2EL", e2el_t}, {"TTFT", ttft_t}});
  html += "\n<h2>Data</h2><pre id=\"data\">" + esc(doc.dump(2)) + "</pre></body></html>\n";

  const std::string html_path = (fs::path(dir) / "report.html").string();
  {
    std::ofstream out(html_path);
    out << html;
    if (!out) fail(ErrorCode::Io, "cannot write '{}'", html_path);
  }
  std::ofstream json_out(fs::path(dir) / "results.json");
  json_out << doc.dump(2) << "\n";
  if (!json_out) fail(ErrorCode::Io, "cannot write '{}'", (fs::path(dir) / "results.json").string());
  return html_path;
}

}  // namespace vireo::serve_load
