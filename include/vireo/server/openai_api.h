// The OpenAI API at the edge: request bodies are validated and turned into plain structs here (every
// problem becomes an ApiError with OpenAI's status, type and param), and responses, stream chunks
// and error bodies are shaped exactly as OpenAI shapes them. Nothing here touches a model.
#pragma once
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "vireo/runtime/sampler.h"

namespace vireo::server {

// An error answered to the client: {"error": {"message", "type", "param", "code"}}.
class ApiError : public std::runtime_error {
 public:
  ApiError(int status, std::string message, std::string param = {}, std::string type = {}, std::string code = {});
  int status() const { return status_; }
  nlohmann::json body() const;

 private:
  int status_;
  std::string param_, type_, code_;
};

enum class ResponseFormat { Text, JsonObject, JsonSchema };

// /v1/chat/completions and /v1/completions, parsed.
struct CompletionParams {
  bool chat = false;
  std::string model;
  nlohmann::json messages;                    // chat: [{role, content: string}], content parts joined
  std::vector<std::string> prompts;           // completions: text prompts
  std::vector<std::vector<int32_t>> prompt_ids;  // completions: prompts given as token ids
  int32_t max_tokens = -1;  // -1: until the context is full
  int32_t n = 1;
  bool stream = false, include_usage = false;
  SamplingParams sampling;
  bool seed_given = false;
  std::vector<std::string> stop;
  bool logprobs = false;
  int32_t top_logprobs = 0;
  bool echo = false;  // completions: the prompt is repeated before the completion
  ResponseFormat format = ResponseFormat::Text;
  nlohmann::json schema;  // for JsonSchema
  bool ignore_eos = false;  // extension (as llama.cpp's server): generate max_tokens whatever comes
};

CompletionParams parse_chat_request(const nlohmann::json& body);
CompletionParams parse_completion_request(const nlohmann::json& body);

struct EmbeddingParams {
  std::string model;
  std::vector<std::string> texts;
  std::vector<std::vector<int32_t>> ids;  // inputs given as token ids
  bool base64 = false;                    // encoding_format "base64": little-endian float32
  int32_t dimensions = 0;                 // 0: the model's
};
EmbeddingParams parse_embedding_request(const nlohmann::json& body);

// The body as JSON, or an ApiError naming the parse problem.
nlohmann::json parse_body(const std::string& body);

// A random id such as "chatcmpl-3f9a..." (24 hex digits).
std::string make_id(const std::string& prefix);

// Little-endian float32 bytes in base64, as OpenAI's encoding_format "base64".
std::string base64_floats(const std::vector<float>& v);

}  // namespace vireo::server
