#include "vireo/tokenizer/chat_template.h"

#include <new>
#include <stdexcept>

#include "tokenizer/jinja/interpreter.h"
#include "tokenizer/jinja/js_string.h"
#include "tokenizer/jinja/lexer.h"
#include "tokenizer/jinja/parser.h"
#include "vireo/core/utf8.h"

namespace vireo {

struct ChatTemplate::Impl {
  jinja::SourceInfo src;
  jinja::Program program;
};

namespace {

// Errors that are not vireo::Error (allocation failures, an unlocated runtime error) become one,
// so that callers only ever see vireo::Error from a template.
template <typename F>
auto guarded(const std::string& name, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const Error&) {
    throw;
  } catch (const jinja::RuntimeError& e) {
    throw Error(e.code, name + ": " + e.message);
  } catch (const std::bad_alloc&) {
    throw Error(ErrorCode::InvalidArgument, name + ": out of memory while rendering the template");
  } catch (const std::length_error&) {
    throw Error(ErrorCode::InvalidArgument, name + ": a value grew too large while rendering the template");
  }
}

template <typename Json>
std::string render_json(const jinja::SourceInfo& src, const jinja::Program& program, const Json& context) {
  if (!context.is_object() && !context.is_null()) {
    fail(ErrorCode::InvalidArgument, "{}: the template context must be a JSON object, got {}", src.name,
         context.type_name());
  }
  return guarded(src.name, [&] {
    std::vector<jinja::ObjectData::Entry> vars;
    if (context.is_object()) vars = jinja::from_json(context).object().entries();
    jinja::Interpreter interpreter(src);
    return jinja::to_well_formed_utf8(interpreter.render(program, std::move(vars)));
  });
}

}  // namespace

ChatTemplate ChatTemplate::parse(std::string source, std::string name) {
  auto impl = std::make_shared<Impl>();
  impl->src.name = std::move(name);
  // Node reads template files as UTF-8 with replacement characters for invalid bytes; so do we.
  impl->src.text = is_valid_utf8(source) ? std::move(source) : jinja::sanitize_utf8(source);
  guarded(impl->src.name, [&] {
    impl->program = jinja::parse(jinja::tokenize(impl->src), impl->src);
    return 0;
  });
  ChatTemplate t;
  t.impl_ = std::move(impl);
  return t;
}

std::string ChatTemplate::render(const nlohmann::json& context) const {
  return render_json(impl_->src, impl_->program, context);
}

std::string ChatTemplate::render(const nlohmann::ordered_json& context) const {
  return render_json(impl_->src, impl_->program, context);
}

const std::string& ChatTemplate::name() const {
  return impl_->src.name;
}

std::string apply_chat_template(const ChatTemplate& t, const nlohmann::json& messages, const ChatOptions& o) {
  if (!o.extra.is_object() && !o.extra.is_null()) {
    fail(ErrorCode::InvalidArgument, "chat template options: extra must be a JSON object, got {}", o.extra.type_name());
  }
  nlohmann::json context = nlohmann::json::object();
  context["messages"] = messages;
  if (!o.tools.is_null()) context["tools"] = o.tools;
  context["add_generation_prompt"] = o.add_generation_prompt;
  context["bos_token"] = o.bos_token;
  context["eos_token"] = o.eos_token;
  if (o.extra.is_object()) {
    for (const auto& [key, value] : o.extra.items()) context[key] = value;
  }
  return t.render(context);
}

}  // namespace vireo
