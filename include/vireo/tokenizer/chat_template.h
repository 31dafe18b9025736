// Chat templates: the Jinja templates that models ship (tokenizer_config.json's chat_template,
// GGUF's tokenizer.chat_template) to turn a conversation into a prompt.
//
// vireo renders them byte for byte as @huggingface/jinja does (the implementation Hugging Face's
// JavaScript libraries use), including its whitespace handling (trim_blocks and lstrip_blocks on),
// its filters and tests, and the places where it reports an error. Any malformed template or failed
// render is a vireo::Error whose message starts "NAME:LINE:COLUMN: ".
#pragma once
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

namespace vireo {

namespace jinja {
struct Program;
}

class ChatTemplate {
 public:
  // Parses once; render() may then be called any number of times, from any thread.
  static ChatTemplate parse(std::string source, std::string name = "template");

  // Renders with the given variables (a JSON object). nlohmann::json keeps object keys sorted;
  // the ordered_json overload keeps them in insertion order, as the reference does (this shows in
  // `tojson` of tool schemas, for example).
  std::string render(const nlohmann::json& context) const;
  std::string render(const nlohmann::ordered_json& context) const;

  const std::string& name() const;

 private:
  struct Impl;
  std::shared_ptr<const Impl> impl_;
};

struct ChatOptions {
  bool add_generation_prompt = true;
  std::string bos_token, eos_token;
  nlohmann::json tools = nullptr;                   // passed as `tools` only when not null
  nlohmann::json extra = nlohmann::json::object();  // more variables, e.g. {"enable_thinking": false}
};

// Renders a conversation the way Hugging Face's apply_chat_template does: the template sees
// `messages`, `tools` (when given), `add_generation_prompt`, `bos_token`, `eos_token` and the
// `extra` variables (which win over the others on a clash).
std::string apply_chat_template(const ChatTemplate& t, const nlohmann::json& messages, const ChatOptions& o);

}  // namespace vireo
