#include "vireo/server/openai_api.h"

#include <cmath>
#include <cstring>
#include <random>

#include <fmt/format.h>

namespace vireo::server {
namespace {

using json = nlohmann::json;

std::string type_for(int status) {
  switch (status) {
    case 401: return "authentication_error";
    case 404: return "not_found_error";
    case 429: return "rate_limit_error";
    default: return status >= 500 ? "server_error" : "invalid_request_error";
  }
}

[[noreturn]] void bad(const std::string& param, const std::string& message) { throw ApiError(400, message, param); }

std::string type_name(const json& v) {
  if (v.is_null()) return "null";
  if (v.is_boolean()) return "a boolean";
  if (v.is_number()) return "a number";
  if (v.is_string()) return "a string";
  if (v.is_array()) return "an array";
  return "an object";
}

// Typed readers: a missing or null field keeps the default; a wrong type names the field.
bool get_bool(const json& body, const char* key, bool def) {
  const auto it = body.find(key);
  if (it == body.end() || it->is_null()) return def;
  if (!it->is_boolean()) bad(key, fmt::format("'{}' must be a boolean, got {}", key, type_name(*it)));
  return it->get<bool>();
}

double get_number(const json& body, const char* key, double def, double lo, double hi) {
  const auto it = body.find(key);
  if (it == body.end() || it->is_null()) return def;
  if (!it->is_number()) bad(key, fmt::format("'{}' must be a number, got {}", key, type_name(*it)));
  const double v = it->get<double>();
  if (!(v >= lo && v <= hi)) bad(key, fmt::format("'{}' must be between {} and {}, got {}", key, lo, hi, v));
  return v;
}

int64_t get_int(const json& body, const char* key, int64_t def, int64_t lo, int64_t hi) {
  const auto it = body.find(key);
  if (it == body.end() || it->is_null()) return def;
  if (!it->is_number_integer() && !it->is_number_unsigned()) {
    bad(key, fmt::format("'{}' must be an integer, got {}", key, it->is_number() ? it->dump() : type_name(*it)));
  }
  if (it->is_number_unsigned() && it->get<uint64_t>() > static_cast<uint64_t>(hi)) {
    bad(key, fmt::format("'{}' must be between {} and {}, got {}", key, lo, hi, it->dump()));
  }
  const int64_t v = it->get<int64_t>();
  if (v < lo || v > hi) bad(key, fmt::format("'{}' must be between {} and {}, got {}", key, lo, hi, v));
  return v;
}

std::vector<int32_t> token_ids(const json& v, const std::string& param) {
  std::vector<int32_t> ids;
  for (const auto& t : v) {
    if (!t.is_number_integer() || t.get<int64_t>() < 0 || t.get<int64_t>() > INT32_MAX) {
      bad(param, fmt::format("'{}' token ids must be non-negative integers, got {}", param, t.dump()));
    }
    ids.push_back(static_cast<int32_t>(t.get<int64_t>()));
  }
  if (ids.empty()) bad(param, fmt::format("'{}' is empty", param));
  return ids;
}

void check_object(const json& body) {
  if (!body.is_object()) throw ApiError(400, fmt::format("the request body must be a JSON object, got {}", type_name(body)));
}

std::string get_model(const json& body) {
  const auto it = body.find("model");
  if (it == body.end() || it->is_null()) return {};
  if (!it->is_string()) bad("model", fmt::format("'model' must be a string, got {}", type_name(*it)));
  return it->get<std::string>();
}

// What both generation endpoints share.
void parse_common(const json& body, CompletionParams& p) {
  check_object(body);
  p.model = get_model(body);
  // max_completion_tokens supersedes max_tokens (OpenAI deprecated the latter for chat).
  p.max_tokens = static_cast<int32_t>(get_int(body, "max_tokens", -1, 0, INT32_MAX));
  p.max_tokens = static_cast<int32_t>(get_int(body, "max_completion_tokens", p.max_tokens, 0, INT32_MAX));
  p.n = static_cast<int32_t>(get_int(body, "n", 1, 1, 16));
  p.stream = get_bool(body, "stream", false);
  if (const auto so = body.find("stream_options"); so != body.end() && !so->is_null()) {
    if (!so->is_object()) bad("stream_options", "'stream_options' must be an object");
    if (!p.stream) bad("stream_options", "'stream_options' is only allowed when 'stream' is true");
    p.include_usage = get_bool(*so, "include_usage", false);
  }
  SamplingParams& s = p.sampling;
  s.temperature = static_cast<float>(get_number(body, "temperature", 1.0, 0.0, 2.0));
  s.top_p = static_cast<float>(get_number(body, "top_p", 1.0, 0.0, 1.0));
  s.presence_penalty = static_cast<float>(get_number(body, "presence_penalty", 0.0, -2.0, 2.0));
  s.frequency_penalty = static_cast<float>(get_number(body, "frequency_penalty", 0.0, -2.0, 2.0));
  // Extensions that llama.cpp's server also takes.
  s.top_k = static_cast<int32_t>(get_int(body, "top_k", 0, 0, INT32_MAX));
  s.min_p = static_cast<float>(get_number(body, "min_p", 0.0, 0.0, 1.0));
  s.repetition_penalty = static_cast<float>(get_number(body, "repeat_penalty", 1.0, 0.0, 10.0));
  s.penalty_last_n = -1;  // OpenAI's penalties count the whole completion
  if (const auto it = body.find("seed"); it != body.end() && !it->is_null()) {
    if (!it->is_number_integer()) bad("seed", fmt::format("'seed' must be an integer, got {}", type_name(*it)));
    s.seed = static_cast<uint64_t>(it->get<int64_t>());
    p.seed_given = true;
  } else {
    s.seed = std::random_device{}();
  }
  if (const auto it = body.find("logit_bias"); it != body.end() && !it->is_null()) {
    if (!it->is_object()) bad("logit_bias", "'logit_bias' must be an object mapping token ids to biases");
    for (const auto& [k, v] : it->items()) {
      char* end = nullptr;
      const long id = std::strtol(k.c_str(), &end, 10);
      if (k.empty() || *end != '\0' || id < 0 || id > INT32_MAX) {
        bad("logit_bias", fmt::format("'logit_bias' keys must be token ids, got '{}'", k));
      }
      if (!v.is_number() || v.get<double>() < -100 || v.get<double>() > 100) {
        bad("logit_bias", fmt::format("'logit_bias' values must be numbers from -100 to 100, got {}", v.dump()));
      }
      // -100 bans the token, as OpenAI documents.
      const float bias = v.get<double>() <= -100 ? -INFINITY : static_cast<float>(v.get<double>());
      s.logit_bias.emplace_back(static_cast<int32_t>(id), bias);
    }
  }
  if (const auto it = body.find("stop"); it != body.end() && !it->is_null()) {
    if (it->is_string()) {
      p.stop.push_back(it->get<std::string>());
    } else if (it->is_array()) {
      if (it->size() > 4) bad("stop", fmt::format("'stop' takes at most 4 sequences, got {}", it->size()));
      for (const auto& v : *it) {
        if (!v.is_string()) bad("stop", "'stop' must be a string or an array of strings");
        p.stop.push_back(v.get<std::string>());
      }
    } else {
      bad("stop", fmt::format("'stop' must be a string or an array of strings, got {}", type_name(*it)));
    }
  }
  p.ignore_eos = get_bool(body, "ignore_eos", false);
  if (const auto it = body.find("response_format"); it != body.end() && !it->is_null()) {
    if (!it->is_object() || !it->contains("type") || !(*it)["type"].is_string()) {
      bad("response_format", "'response_format' must be an object with a 'type'");
    }
    const std::string type = (*it)["type"];
    if (type == "text") {
      p.format = ResponseFormat::Text;
    } else if (type == "json_object") {
      p.format = ResponseFormat::JsonObject;
    } else if (type == "json_schema") {
      const auto js = it->find("json_schema");
      if (js == it->end() || !js->is_object()) bad("response_format.json_schema", "'json_schema' must be an object");
      const auto schema = js->find("schema");
      if (schema == js->end() || !schema->is_object()) {
        bad("response_format.json_schema.schema", "'json_schema.schema' must be an object (a JSON Schema)");
      }
      p.format = ResponseFormat::JsonSchema;
      p.schema = *schema;
    } else {
      bad("response_format.type", fmt::format("'response_format.type' must be text, json_object or json_schema, got '{}'", type));
    }
  }
  for (const char* unsupported : {"tools", "functions"}) {
    if (const auto it = body.find(unsupported); it != body.end() && !it->is_null() && !(it->is_array() && it->empty())) {
      bad(unsupported, fmt::format("'{}' (function calling) is not supported by this server", unsupported));
    }
  }
}

std::string message_content(const json& m, size_t index) {
  const std::string param = fmt::format("messages[{}].content", index);
  const auto it = m.find("content");
  if (it == m.end() || it->is_null()) return {};
  if (it->is_string()) return it->get<std::string>();
  if (!it->is_array()) bad(param, fmt::format("'{}' must be a string or an array of content parts", param));
  std::string text;
  for (const auto& part : *it) {
    // (value() would throw json's own error for a "type" that is not a string: check it first.)
    const bool text_part = part.is_object() && part.contains("type") && part["type"].is_string() && part["type"] == "text";
    if (!text_part || !part.contains("text") || !part["text"].is_string()) {
      bad(param, fmt::format("'{}' parts must be {{\"type\": \"text\", \"text\": ...}}; images and audio are not supported", param));
    }
    text += part["text"].get<std::string>();
  }
  return text;
}

}  // namespace

ApiError::ApiError(int status, std::string message, std::string param, std::string type, std::string code)
    : std::runtime_error(std::move(message)),
      status_(status),
      param_(std::move(param)),
      type_(type.empty() ? type_for(status) : std::move(type)),
      code_(std::move(code)) {}

json ApiError::body() const {
  json e = {{"message", what()}, {"type", type_}, {"param", nullptr}, {"code", nullptr}};
  if (!param_.empty()) e["param"] = param_;
  if (!code_.empty()) e["code"] = code_;
  return json{{"error", e}};
}

json parse_body(const std::string& body) {
  try {
    return json::parse(body);
  } catch (const json::exception& e) {  // syntax errors, and numbers too large for a double
    throw ApiError(400, fmt::format("the request body is not valid JSON: {}", e.what()));
  }
}

// A completion prompt or an embedding input: a string, strings, token ids, or lists of token ids
// (never text and ids mixed).
void read_texts_or_ids(const json& body, const std::string& field, std::vector<std::string>& texts,
                       std::vector<std::vector<int32_t>>& ids) {
  const auto it = body.find(field);
  if (it == body.end() || it->is_null()) bad(field, fmt::format("'{}' is required", field));
  const std::string shapes = fmt::format("'{}' must be a non-empty string, array of strings, or token ids", field);
  if (it->is_string()) {
    texts.push_back(it->get<std::string>());
  } else if (it->is_array() && !it->empty() && (*it)[0].is_number()) {
    ids.push_back(token_ids(*it, field));
  } else if (it->is_array() && !it->empty()) {
    for (const auto& v : *it) {
      if (v.is_string()) texts.push_back(v.get<std::string>());
      else if (v.is_array()) ids.push_back(token_ids(v, field));
      else bad(field, shapes);
    }
    if (!texts.empty() && !ids.empty()) bad(field, fmt::format("'{}' mixes text and token ids", field));
  } else {
    bad(field, shapes);
  }
}

CompletionParams parse_chat_request(const json& body) {
  CompletionParams p;
  p.chat = true;
  parse_common(body, p);
  const auto it = body.find("messages");
  if (it == body.end()) bad("messages", "'messages' is required");
  if (!it->is_array() || it->empty()) bad("messages", "'messages' must be a non-empty array");
  p.messages = json::array();
  for (size_t i = 0; i < it->size(); ++i) {
    const json& m = (*it)[i];
    if (!m.is_object()) bad(fmt::format("messages[{}]", i), fmt::format("'messages[{}]' must be an object", i));
    const auto role = m.find("role");
    if (role == m.end() || !role->is_string()) bad(fmt::format("messages[{}].role", i), fmt::format("'messages[{}].role' is required", i));
    const std::string r = *role;
    if (r != "system" && r != "developer" && r != "user" && r != "assistant" && r != "tool") {
      bad(fmt::format("messages[{}].role", i), fmt::format("'messages[{}].role' must be system, developer, user, assistant or tool, got '{}'", i, r));
    }
    // Templates know "system"; OpenAI's newer "developer" role means the same.
    p.messages.push_back({{"role", r == "developer" ? "system" : r}, {"content", message_content(m, i)}});
  }
  p.logprobs = get_bool(body, "logprobs", false);
  p.top_logprobs = static_cast<int32_t>(get_int(body, "top_logprobs", 0, 0, 20));
  if (body.contains("top_logprobs") && !body["top_logprobs"].is_null() && !p.logprobs) {
    bad("top_logprobs", "'top_logprobs' needs 'logprobs': true");
  }
  return p;
}

CompletionParams parse_completion_request(const json& body) {
  CompletionParams p;
  parse_common(body, p);
  if (p.max_tokens < 0 && !body.contains("max_tokens")) p.max_tokens = 16;  // OpenAI's default for completions
  read_texts_or_ids(body, "prompt", p.prompts, p.prompt_ids);
  p.echo = get_bool(body, "echo", false);
  // Completions take logprobs as a count of alternatives (0..5).
  if (const auto lp = body.find("logprobs"); lp != body.end() && !lp->is_null()) {
    p.top_logprobs = static_cast<int32_t>(get_int(body, "logprobs", 0, 0, 5));
    p.logprobs = true;
  }
  if (const auto bo = body.find("best_of"); bo != body.end() && !bo->is_null() && *bo != 1) {
    bad("best_of", "'best_of' other than 1 is not supported");
  }
  if (const auto sfx = body.find("suffix"); sfx != body.end() && !sfx->is_null()) {
    bad("suffix", "'suffix' (insertion) is not supported");
  }
  return p;
}

EmbeddingParams parse_embedding_request(const json& body) {
  check_object(body);
  EmbeddingParams p;
  p.model = get_model(body);
  read_texts_or_ids(body, "input", p.texts, p.ids);
  if (p.texts.size() + p.ids.size() > 2048) bad("input", "'input' holds more than 2048 items");
  if (const auto ef = body.find("encoding_format"); ef != body.end() && !ef->is_null()) {
    if (*ef == "base64") p.base64 = true;
    else if (*ef != "float") bad("encoding_format", "'encoding_format' must be float or base64");
  }
  p.dimensions = static_cast<int32_t>(get_int(body, "dimensions", 0, 1, 65536));
  return p;
}

std::string make_id(const std::string& prefix) {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  return fmt::format("{}-{:016x}{:08x}", prefix, rng(), static_cast<uint32_t>(rng()));
}

std::string base64_floats(const std::vector<float>& v) {
  static const char* alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string bytes(v.size() * 4, '\0');
  for (size_t i = 0; i < v.size(); ++i) {
    uint32_t u;
    std::memcpy(&u, &v[i], 4);
    for (int b = 0; b < 4; ++b) bytes[i * 4 + static_cast<size_t>(b)] = static_cast<char>((u >> (8 * b)) & 0xff);
  }
  std::string out;
  for (size_t i = 0; i < bytes.size(); i += 3) {
    uint32_t n = static_cast<uint8_t>(bytes[i]) << 16;
    if (i + 1 < bytes.size()) n |= static_cast<uint8_t>(bytes[i + 1]) << 8;
    if (i + 2 < bytes.size()) n |= static_cast<uint8_t>(bytes[i + 2]);
    out += alphabet[(n >> 18) & 63];
    out += alphabet[(n >> 12) & 63];
    out += i + 1 < bytes.size() ? alphabet[(n >> 6) & 63] : '=';
    out += i + 2 < bytes.size() ? alphabet[n & 63] : '=';
  }
  return out;
}

}  // namespace vireo::server
