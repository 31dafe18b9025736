#include "vireo/runtime/text_engine.h"

#include <algorithm>
#include <optional>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include "vireo/core/error.h"

namespace vireo {

// ---------------------------------------------------------------- stop strings

StopStrings::StopStrings(std::vector<std::string> stops) : stops_(std::move(stops)) {
  std::erase_if(stops_, [](const std::string& s) { return s.empty(); });
}

std::string StopStrings::feed(const std::string& text) {
  if (stopped_) return {};
  pending_ += text;
  // A full match anywhere: emit what precedes the earliest one.
  size_t best = std::string::npos;
  for (const std::string& s : stops_) {
    const size_t at = pending_.find(s);
    if (at < best) {
      best = at;
      matched_ = s;
    }
  }
  if (best != std::string::npos) {
    stopped_ = true;
    std::string out = pending_.substr(0, best);
    pending_.clear();
    return out;
  }
  // Hold back the longest tail that is a proper prefix of some stop string.
  size_t hold = 0;
  for (const std::string& s : stops_) {
    for (size_t n = std::min(s.size() - 1, pending_.size()); n > hold; --n) {
      if (pending_.compare(pending_.size() - n, n, s, 0, n) == 0) {
        hold = n;
        break;
      }
    }
  }
  std::string out = pending_.substr(0, pending_.size() - hold);
  pending_.erase(0, pending_.size() - hold);
  return out;
}

std::string StopStrings::flush() {
  std::string out;
  out.swap(pending_);
  return stopped_ ? std::string() : out;
}

// ---------------------------------------------------------------- engine

TextEngine::TextEngine(const std::string& model_path, const EngineOptions& options)
    : TextEngine(std::make_shared<Model>(load_model(model_path)), options) {}

TextEngine::TextEngine(std::shared_ptr<Model> model, const EngineOptions& options) : model_(std::move(model)) {
  backend_ = create_backend(options.backend_options());
  lm_ = create_decoder(model_, *backend_);
  int64_t n_ctx = options.n_ctx;
  if (n_ctx < 0) fail(ErrorCode::InvalidArgument, "context size must be >= 0, got {}", n_ctx);
  if (n_ctx == 0) n_ctx = std::min<int64_t>(model_->config.n_ctx_train > 0 ? model_->config.n_ctx_train : 4096, 4096);
  cache_ = std::make_unique<KvCache>(*lm_, n_ctx, options.kv_type);
  generator_ = std::make_unique<Generator>(*lm_, *cache_);
  if (model_->tokenizer.kind == TokenizerKind::None) return;  // ids in, ids out
  tokenizer_ = Tokenizer::create(model_->tokenizer);
  if (!model_->tokenizer.chat_template.empty()) {
    template_ = std::make_unique<ChatTemplate>(ChatTemplate::parse(model_->tokenizer.chat_template, "chat_template"));
  }
  for (int32_t id = 0; id < static_cast<int32_t>(model_->config.n_vocab); ++id) {
    if (tokenizer_->is_eog(id)) eog_tokens_.push_back(id);
  }
#ifdef __GLIBC__
  // Loading freed megabytes of small blocks (the file's parsed metadata, the vocabulary's
  // temporaries); hand those pages back rather than carry them for the engine's lifetime.
  malloc_trim(0);
#endif
}

const Tokenizer& TextEngine::tokenizer() const {
  if (!tokenizer_) fail(ErrorCode::Unsupported, "the model has no tokenizer: give token ids instead of text");
  return *tokenizer_;
}

std::vector<int32_t> TextEngine::tokenize(const std::string& text, bool add_special) const {
  (void)tokenizer();
  return tokenizer_->encode(text, add_special, /*parse_special=*/true);
}

void TextEngine::set_chat_template(const std::string& source) {
  template_ = std::make_unique<ChatTemplate>(ChatTemplate::parse(source, "chat_template"));
}

std::string TextEngine::render_chat(const nlohmann::json& messages, bool add_generation_prompt) const {
  if (!template_) fail(ErrorCode::Unsupported, "the model has no chat template (tokenizer.chat_template)");
  ChatOptions o;
  o.add_generation_prompt = add_generation_prompt;
  const auto& td = model_->tokenizer;
  if (td.bos_id >= 0) o.bos_token = tokenizer_->token_to_piece(td.bos_id, true);
  if (td.eos_id >= 0) o.eos_token = tokenizer_->token_to_piece(td.eos_id, true);
  return apply_chat_template(*template_, messages, o);
}

TextResult TextEngine::generate(const std::vector<int32_t>& prompt, const TextGenerateOptions& options,
                                const std::function<bool(const std::string&)>& on_text) {
  if (prompt.empty()) fail(ErrorCode::InvalidArgument, "the prompt is empty");
  const int64_t room = n_ctx() - static_cast<int64_t>(prompt.size());
  if (room <= 0) {
    fail(ErrorCode::InvalidArgument, "the prompt has {} tokens but the context holds {} (raise --ctx-size)",
         prompt.size(), n_ctx());
  }
  TextResult result;
  result.prompt_tokens = prompt;
  GenerateOptions go = options.gen;
  go.max_tokens = static_cast<int32_t>(std::min<int64_t>(go.max_tokens < 0 ? room : go.max_tokens, room));
  if (!options.ignore_eos) go.stop_tokens.insert(go.stop_tokens.end(), eog_tokens_.begin(), eog_tokens_.end());

  std::optional<StreamDecoder> decoder;
  if (tokenizer_) decoder.emplace(*tokenizer_, /*unparse_special=*/false);
  StopStrings stops(options.stop);
  bool cancelled = false;
  auto emit = [&](const std::string& text) {
    if (text.empty()) return;
    result.text += text;
    if (on_text && !on_text(text)) cancelled = true;
  };
  const GenerateResult r = generator_->generate(prompt, go, [&](int32_t token) {
    if (decoder) emit(stops.feed(decoder->push(token)));
    return !stops.stopped() && !cancelled;
  });
  if (decoder && !stops.stopped()) emit(stops.feed(decoder->flush()));
  emit(stops.flush());
  result.tokens = r.tokens;
  result.timings = r.timings;
  if (stops.stopped() || r.stop == StopReason::StopToken) result.finish = "stop";
  else if (cancelled) result.finish = "cancelled";
  else result.finish = "length";
  return result;
}

}  // namespace vireo
