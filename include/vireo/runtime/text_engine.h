// A decoder model ready to talk: weights on a backend, its tokenizer, chat template, KV cache and
// generator, loaded once and kept warm. The CLI, the benchmark and the server all start here.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "vireo/backend/backend.h"
#include "vireo/models/language_model.h"
#include "vireo/runtime/generator.h"
#include "vireo/runtime/kv_cache.h"
#include "vireo/tokenizer/chat_template.h"
#include "vireo/tokenizer/tokenizer.h"

namespace vireo {

struct EngineOptions {
  std::string device = "auto";  // "cpu", "cuda", "cuda:N" or "auto"
  unsigned n_threads = 0;       // CPU backend: 0 is one per core
  std::string isa;              // CPU kernel cap; see CpuBackendOptions
  int64_t n_ctx = 0;            // KV cells; 0: the model's training context, at most 4096
  DType kv_type = DType::F16;

  BackendOptions backend_options() const { return {.device = device, .n_threads = n_threads, .isa = isa}; }
};

// Text-level stop strings. Text is fed as it is decoded; what could still be the start of a stop
// string is held back, so the caller never prints part of one.
class StopStrings {
 public:
  explicit StopStrings(std::vector<std::string> stops);
  // Returns the text that is safe to emit now. After a match, stopped() is true and the text up
  // to (not including) the stop string has been returned.
  std::string feed(const std::string& text);
  std::string flush();  // the held-back tail, at the end of generation
  bool stopped() const { return stopped_; }
  const std::string& matched() const { return matched_; }

 private:
  std::vector<std::string> stops_;
  std::string pending_;
  std::string matched_;
  bool stopped_ = false;
};

struct TextGenerateOptions {
  GenerateOptions gen;                 // stop_tokens are extended with the model's end-of-generation tokens
  std::vector<std::string> stop;       // stop strings (not part of the returned text)
  bool ignore_eos = false;             // do not stop on end-of-generation tokens
};

struct TextResult {
  std::string text;
  std::vector<int32_t> prompt_tokens, tokens;
  std::string finish;  // "stop" (EOG token or stop string), "length", "cancelled"
  Timings timings;
};

class TextEngine {
 public:
  TextEngine(const std::string& model_path, const EngineOptions& options);
  TextEngine(std::shared_ptr<Model> model, const EngineOptions& options);  // a model already loaded

  const Model& model() const { return *model_; }
  const ModelConfig& config() const { return model_->config; }
  const Tokenizer& tokenizer() const;  // throws when the model has none
  Backend& backend() { return *backend_; }
  LanguageModel& language_model() { return *lm_; }
  KvCache& cache() { return *cache_; }
  Generator& generator() { return *generator_; }
  int64_t n_ctx() const { return cache_->n_cells(); }
  const std::vector<int32_t>& eog_tokens() const { return eog_tokens_; }  // end-of-generation ids
  bool has_chat_template() const { return template_ != nullptr; }
  void set_chat_template(const std::string& source);  // replaces the model's

  std::vector<int32_t> tokenize(const std::string& text, bool add_special = true) const;
  // The conversation rendered with the model's own template (an error when it has none).
  std::string render_chat(const nlohmann::json& messages, bool add_generation_prompt = true) const;

  // Generates from `prompt` tokens; `on_text` receives text as it becomes final (return false to
  // stop). Throws InvalidArgument when the prompt does not fit the context.
  TextResult generate(const std::vector<int32_t>& prompt, const TextGenerateOptions& options,
                      const std::function<bool(const std::string&)>& on_text = {});

 private:
  std::shared_ptr<Model> model_;
  std::unique_ptr<Backend> backend_;
  std::unique_ptr<LanguageModel> lm_;
  std::unique_ptr<KvCache> cache_;
  std::unique_ptr<Generator> generator_;
  std::unique_ptr<Tokenizer> tokenizer_;
  std::unique_ptr<ChatTemplate> template_;
  std::vector<int32_t> eog_tokens_;
};

}  // namespace vireo
