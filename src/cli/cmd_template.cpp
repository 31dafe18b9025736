// vireo template: render a chat with the model's own template (as Hugging Face would).
#include <cstdio>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "commands.h"
#include "format.h"
#include "vireo/core/error.h"
#include "vireo/formats/model.h"
#include "vireo/tokenizer/chat_template.h"

namespace vireo::cli {
namespace {

// Ordered: templates that print tool schemas with tojson must see the keys in the file's order.
nlohmann::ordered_json read_json_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) fail(ErrorCode::NotFound, "cannot read '{}'", path);
  try {
    return nlohmann::ordered_json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    fail(ErrorCode::InvalidArgument, "{}: not valid JSON: {}", path, e.what());
  }
}

}  // namespace

Runner add_template(CLI::App& app) {
  auto* cmd = app.add_subcommand("template", "Render a conversation with the model's chat template");
  struct Opts {
    std::string model, messages, tools, template_file;
    bool no_generation_prompt = false, json = false;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("model", o->model, "Model file or folder whose chat template to use")->required();
  cmd->add_option("-m,--messages", o->messages, "JSON file: an array of messages, or {\"messages\": [...], \"tools\": [...]}")
      ->required();
  cmd->add_option("--tools", o->tools, "JSON file: an array of tool definitions (OpenAI format)");
  cmd->add_option("--chat-template-file", o->template_file, "Use this Jinja template instead of the model's");
  cmd->add_flag("--no-generation-prompt", o->no_generation_prompt, "Do not open an assistant turn at the end");
  cmd->add_flag("--json", o->json, "Print JSON: {\"prompt\": ...}");
  return [o] {
    const TokenizerData m_tok = load_tokenizer(o->model);
    std::string source = o->template_file.empty() ? m_tok.chat_template : read_text_file(o->template_file);
    if (source.empty()) {
      throw Error(ErrorCode::NotFound, "the model has no chat template; give one with --chat-template-file");
    }
    const nlohmann::ordered_json input = read_json_file(o->messages);
    const nlohmann::ordered_json messages = input.is_object() ? input.value("messages", nlohmann::ordered_json()) : input;
    if (!messages.is_array()) {
      throw Error(ErrorCode::InvalidArgument, o->messages + ": expected an array of messages or {\"messages\": [...]}");
    }
    // The variables Hugging Face's apply_chat_template gives a template.
    nlohmann::ordered_json context;
    context["messages"] = messages;
    if (!o->tools.empty()) {
      context["tools"] = read_json_file(o->tools);
    } else if (input.is_object() && input.contains("tools")) {
      context["tools"] = input["tools"];
    }
    context["add_generation_prompt"] = !o->no_generation_prompt;
    const auto& t = m_tok;
    auto token_text = [&](int32_t id) { return id >= 0 && id < static_cast<int32_t>(t.tokens.size()) ? t.tokens[id] : ""; };
    context["bos_token"] = token_text(t.bos_id);
    context["eos_token"] = token_text(t.eos_id);
    const auto tmpl = ChatTemplate::parse(source, o->template_file.empty() ? "chat template" : o->template_file);
    const std::string prompt = tmpl.render(context);
    if (o->json) {
      std::printf("%s\n", nlohmann::json{{"prompt", prompt}}.dump().c_str());
    } else {
      std::fwrite(prompt.data(), 1, prompt.size(), stdout);
    }
    return 0;
  };
}

}  // namespace vireo::cli
