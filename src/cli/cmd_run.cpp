// vireo run / score / embed: the engine from the command line.
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <random>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "device_option.h"
#include "format.h"
#include "vireo/core/error.h"
#include "vireo/models/language_model.h"
#include "vireo/runtime/text_engine.h"

namespace vireo::cli {
namespace {

std::vector<int32_t> parse_ids(const std::string& list) {
  std::vector<int32_t> ids;
  std::stringstream ss(list);
  for (std::string item; std::getline(ss, item, ',');) {
    try {
      size_t used = 0;
      ids.push_back(std::stoi(item, &used));
      if (used != item.size()) throw std::invalid_argument(item);
    } catch (const std::exception&) {
      fail(ErrorCode::InvalidArgument, "'{}' is not a token id (give a comma-separated list)", item);
    }
  }
  return ids;
}

// "ID+BIAS", "ID-BIAS" (as llama.cpp) or "ID=BIAS"; "-inf" bans the token.
std::pair<int32_t, float> parse_logit_bias(const std::string& s) {
  const size_t at = s.find_first_of("+-=", 1);
  if (at == std::string::npos) fail(ErrorCode::InvalidArgument, "--logit-bias '{}': expected TOKEN+BIAS, TOKEN-BIAS or TOKEN=BIAS", s);
  try {
    const int32_t id = std::stoi(s.substr(0, at));
    std::string value = s.substr(s[at] == '=' ? at + 1 : at);
    if (value.front() == '+') value.erase(0, 1);
    const float bias = value == "-inf" ? -INFINITY : value == "inf" ? INFINITY : std::stof(value);
    return {id, bias};
  } catch (const std::exception&) {
    fail(ErrorCode::InvalidArgument, "--logit-bias '{}': expected TOKEN+BIAS, TOKEN-BIAS or TOKEN=BIAS", s);
  }
}

struct EngineFlags {
  unsigned threads = 0;
  int64_t ctx = 0;
  std::string device = "auto", isa, kv_type = "f16";
  void add(CLI::App* cmd) {
    add_device_option(cmd, device);
    cmd->add_option("-t,--threads", threads, "CPU threads (default: one per core)");
    cmd->add_option("-c,--ctx-size", ctx, "Context size in tokens (default: the model's, at most 4096)");
    cmd->add_option("--cpu-isa", isa, "Cap the CPU kernels: scalar, avx2, avx512, amx")
        ->check(CLI::IsMember({"scalar", "avx2", "avx512", "amx"}));
    add_kv_type_option(cmd, kv_type);
  }
  EngineOptions options() const {
    EngineOptions o;
    o.device = device;
    o.n_threads = threads;
    o.n_ctx = ctx;
    o.isa = isa;
    o.kv_type = kv_type_of(kv_type);
    return o;
  }
};

nlohmann::json timings_json(const Timings& t) {
  return {{"prompt_tokens", t.prompt_tokens},
          {"prefill_ms", t.prefill_ms},
          {"prefill_tokens_per_s", t.prefill_tokens_per_s()},
          {"decode_tokens", t.decode_tokens},
          {"decode_ms", t.decode_ms},
          {"decode_tokens_per_s", t.decode_tokens_per_s()}};
}

void print_speed(const Timings& t) {
  std::fflush(stdout);
  std::fprintf(stderr, "\nprefill: %lld tokens in %.1f ms, %.1f tok/s | decode: %lld tokens in %.1f ms, %.1f tok/s\n",
               static_cast<long long>(t.prompt_tokens), t.prefill_ms, t.prefill_tokens_per_s(),
               static_cast<long long>(t.decode_tokens), t.decode_ms, t.decode_tokens_per_s());
}

}  // namespace

// ---------------------------------------------------------------- run

Runner add_run(CLI::App& app) {
  auto* cmd = app.add_subcommand("run", "Generate text with a decoder model, streaming it as it comes");
  struct Opts {
    std::string model, prompt, file, ids, system, template_file;
    int32_t n_predict = 128;
    float temp = 0.8f, top_p = 0.95f, min_p = 0.05f, repeat_penalty = 1.0f, presence = 0, frequency = 0;
    int32_t top_k = 40, repeat_last_n = 64;
    int64_t seed = -1;
    std::vector<std::string> logit_bias, stop;
    bool chat = false, json = false, ignore_eos = false, no_bos = false;
    EngineFlags engine;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("model", o->model, "Model file or folder (GGUF, safetensors, MLX)")->required();
  cmd->add_option("-p,--prompt", o->prompt, "Prompt text");
  cmd->add_option("-f,--file", o->file, "Read the prompt from a file");
  cmd->add_option("--prompt-ids", o->ids, "Prompt as comma-separated token ids");
  cmd->add_option("-n,--n-predict", o->n_predict, "Tokens to generate (-1: until the context is full)");
  cmd->add_flag("--chat", o->chat, "Chat with the model's template; interactive (one line per turn) after -p");
  cmd->add_option("--system", o->system, "System message for --chat");
  cmd->add_option("--chat-template-file", o->template_file, "Use this Jinja chat template instead of the model's");
  cmd->add_option("--temp", o->temp, "Temperature; 0 is greedy")->capture_default_str();
  cmd->add_option("--top-k", o->top_k, "Top-k (0: off)")->capture_default_str();
  cmd->add_option("--top-p", o->top_p, "Top-p (1: off)")->capture_default_str();
  cmd->add_option("--min-p", o->min_p, "Min-p (0: off)")->capture_default_str();
  cmd->add_option("--repeat-penalty", o->repeat_penalty, "Repetition penalty (1: off)")->capture_default_str();
  cmd->add_option("--repeat-last-n", o->repeat_last_n, "Tokens the penalties look back over (-1: all)")->capture_default_str();
  cmd->add_option("--presence-penalty", o->presence, "Presence penalty")->capture_default_str();
  cmd->add_option("--frequency-penalty", o->frequency, "Frequency penalty")->capture_default_str();
  cmd->add_option("-l,--logit-bias", o->logit_bias, "TOKEN+BIAS or TOKEN-BIAS (repeatable; TOKEN-inf bans)");
  cmd->add_option("-s,--seed", o->seed, "Sampling seed (-1: random)")->capture_default_str();
  cmd->add_option("-r,--reverse-prompt,--stop", o->stop, "Stop when this text is generated (repeatable)");
  cmd->add_flag("--ignore-eos", o->ignore_eos, "Do not stop at end-of-generation tokens");
  cmd->add_flag("--no-bos", o->no_bos, "Do not add BOS to a plain prompt");
  cmd->add_flag("--json", o->json, "Print one JSON object: prompt and generated ids, text, finish reason, timings");
  o->engine.add(cmd);
  return [o] {
    const int given = !o->prompt.empty() + !o->file.empty() + !o->ids.empty();
    if (given > 1) throw Error(ErrorCode::InvalidArgument, "give one of --prompt, --file and --prompt-ids");
    if (given == 0 && !o->chat) throw Error(ErrorCode::InvalidArgument, "give a prompt (-p TEXT, -f FILE or --prompt-ids) or --chat");
    if (o->chat && !o->ids.empty()) throw Error(ErrorCode::InvalidArgument, "--chat takes text, not --prompt-ids");

    TextEngine engine(o->model, o->engine.options());
    if (!o->template_file.empty()) engine.set_chat_template(read_text_file(o->template_file));
    TextGenerateOptions go;
    go.gen.max_tokens = o->n_predict;
    go.gen.sampling.temperature = o->temp;
    go.gen.sampling.top_k = o->top_k;
    go.gen.sampling.top_p = o->top_p;
    go.gen.sampling.min_p = o->min_p;
    go.gen.sampling.repetition_penalty = o->repeat_penalty;
    go.gen.sampling.penalty_last_n = o->repeat_last_n;
    go.gen.sampling.presence_penalty = o->presence;
    go.gen.sampling.frequency_penalty = o->frequency;
    go.gen.sampling.seed = o->seed >= 0 ? static_cast<uint64_t>(o->seed) : std::random_device{}();
    for (const auto& b : o->logit_bias) go.gen.sampling.logit_bias.push_back(parse_logit_bias(b));
    go.stop = o->stop;
    go.ignore_eos = o->ignore_eos;
    const std::string text = !o->file.empty() ? read_text_file(o->file) : o->prompt;

    if (!o->chat) {
      const std::vector<int32_t> prompt = !o->ids.empty() ? parse_ids(o->ids) : engine.tokenize(text, !o->no_bos);
      for (int32_t id : prompt) {
        if (id < 0 || id >= static_cast<int32_t>(engine.config().n_vocab)) {
          fail(ErrorCode::InvalidArgument, "token id {} is outside the vocabulary (0..{})", id, engine.config().n_vocab - 1);
        }
      }
      const TextResult r = engine.generate(prompt, go, [&](const std::string& piece) {
        if (!o->json) {
          std::fwrite(piece.data(), 1, piece.size(), stdout);
          std::fflush(stdout);
        }
        return true;
      });
      if (o->json) {
        const nlohmann::json out = {{"model", o->model},         {"prompt_ids", r.prompt_tokens},
                                    {"ids", r.tokens},           {"text", r.text},
                                    {"finish_reason", r.finish}, {"seed", go.gen.sampling.seed},
                                    {"timings", timings_json(r.timings)}};
        std::printf("%s\n", out.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
      } else {
        std::printf("\n");
        print_speed(r.timings);
      }
      return 0;
    }

    // Chat: the whole conversation is re-rendered every turn with the model's template.
    nlohmann::json messages = nlohmann::json::array();
    if (!o->system.empty()) messages.push_back({{"role", "system"}, {"content", o->system}});
    const bool interactive = isatty(STDIN_FILENO) != 0;
    nlohmann::json transcript = nlohmann::json::array();
    std::string pending = text;  // the first turn, when -p / -f gave one
    for (;;) {
      std::string user;
      if (!pending.empty()) {
        user.swap(pending);
      } else {
        if (interactive) std::fprintf(stderr, "> ");
        if (!std::getline(std::cin, user) || user == "/exit" || user == "/quit") break;
        if (user.empty()) continue;
      }
      messages.push_back({{"role", "user"}, {"content", user}});
      const std::vector<int32_t> prompt = engine.tokenize(engine.render_chat(messages), /*add_special=*/false);
      const TextResult r = engine.generate(prompt, go, [&](const std::string& piece) {
        if (!o->json) {
          std::fwrite(piece.data(), 1, piece.size(), stdout);
          std::fflush(stdout);
        }
        return true;
      });
      messages.push_back({{"role", "assistant"}, {"content", r.text}});
      if (o->json) {
        transcript.push_back({{"user", user},
                              {"prompt_ids", r.prompt_tokens},
                              {"ids", r.tokens},
                              {"text", r.text},
                              {"finish_reason", r.finish},
                              {"timings", timings_json(r.timings)}});
      } else {
        std::printf("\n");
        print_speed(r.timings);
      }
    }
    if (o->json) std::printf("%s\n", nlohmann::json{{"model", o->model}, {"turns", transcript}}.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
    return 0;
  };
}

// ---------------------------------------------------------------- score

Runner add_score(CLI::App& app) {
  auto* cmd = app.add_subcommand("score", "Teacher-forced scoring: perplexity of a text, optionally every position's logits");
  struct Opts {
    std::string model, prompt, file, ids, logits_out;
    bool json = false, no_bos = false;
    EngineFlags engine;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("model", o->model, "Model file or folder")->required();
  cmd->add_option("-p,--prompt", o->prompt, "Text to score");
  cmd->add_option("-f,--file", o->file, "Read the text from a file");
  cmd->add_option("--prompt-ids", o->ids, "Token ids to score (comma-separated)");
  cmd->add_option("--logits-out", o->logits_out, "Write the logits after every token: float32 [tokens, n_vocab], row-major");
  cmd->add_flag("--no-bos", o->no_bos, "Do not add BOS");
  cmd->add_flag("--json", o->json, "Print JSON: ids, per-token log-probabilities, perplexity");
  o->engine.add(cmd);
  return [o] {
    const int given = !o->prompt.empty() + !o->file.empty() + !o->ids.empty();
    if (given != 1) throw Error(ErrorCode::InvalidArgument, "give one of --prompt, --file and --prompt-ids");
    TextEngine engine(o->model, o->engine.options());
    const std::vector<int32_t> ids = !o->ids.empty() ? parse_ids(o->ids)
                                     : engine.tokenize(!o->file.empty() ? read_text_file(o->file) : o->prompt, !o->no_bos);
    const auto V = static_cast<size_t>(engine.config().n_vocab);
    for (int32_t id : ids) {
      if (id < 0 || static_cast<size_t>(id) >= V) fail(ErrorCode::InvalidArgument, "token id {} is outside the vocabulary", id);
    }
    if (static_cast<int64_t>(ids.size()) > engine.n_ctx()) {
      fail(ErrorCode::InvalidArgument, "the text has {} tokens but the context holds {} (raise --ctx-size)", ids.size(), engine.n_ctx());
    }
    const std::vector<float> logits = engine.generator().score(ids);
    if (!o->logits_out.empty()) {
      std::ofstream out(o->logits_out, std::ios::binary);
      out.write(reinterpret_cast<const char*>(logits.data()), static_cast<std::streamsize>(logits.size() * sizeof(float)));
      if (!out) fail(ErrorCode::Io, "cannot write '{}'", o->logits_out);
    }
    std::vector<double> logprobs;
    double nll = 0;
    for (size_t p = 0; p + 1 < ids.size(); ++p) {
      const float* row = logits.data() + p * V;
      double mx = row[0];
      for (size_t i = 1; i < V; ++i) mx = std::max<double>(mx, row[i]);
      double sum = 0;
      for (size_t i = 0; i < V; ++i) sum += std::exp(row[i] - mx);
      const double lp = row[ids[p + 1]] - mx - std::log(sum);
      logprobs.push_back(lp);
      nll -= lp;
    }
    const double ppl = logprobs.empty() ? 0.0 : std::exp(nll / static_cast<double>(logprobs.size()));
    if (o->json) {
      std::printf("%s\n", nlohmann::json{{"ids", ids}, {"logprobs", logprobs}, {"perplexity", ppl}}.dump().c_str());
    } else {
      std::printf("%zu tokens, perplexity %.4f\n", ids.size(), ppl);
    }
    return 0;
  };
}

// ---------------------------------------------------------------- embed

Runner add_embed(CLI::App& app) {
  auto* cmd = app.add_subcommand("embed", "Embed texts with an encoder model (BERT, BGE, MiniLM)");
  struct Opts {
    std::string model, file;
    std::vector<std::string> texts;
    bool json = false, no_normalize = false, truncate = false;
    unsigned threads = 0;
    std::string device = "auto", isa;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("model", o->model, "Encoder model file or folder")->required();
  cmd->add_option("text", o->texts, "Texts to embed");
  cmd->add_option("-f,--file", o->file, "Read texts from a file, one per line");
  cmd->add_flag("--json", o->json, "Print JSON: {\"data\": [{\"index\", \"embedding\", \"tokens\"}]}");
  cmd->add_flag("--no-normalize", o->no_normalize, "Do not L2-normalise the vectors");
  cmd->add_flag("--truncate", o->truncate, "Cut inputs longer than the model's context instead of failing");
  add_device_option(cmd, o->device);
  cmd->add_option("-t,--threads", o->threads, "CPU threads (default: one per core)");
  cmd->add_option("--cpu-isa", o->isa, "Cap the CPU kernels: scalar, avx2, avx512, amx")
      ->check(CLI::IsMember({"scalar", "avx2", "avx512", "amx"}));
  return [o] {
    std::vector<std::string> texts = o->texts;
    if (!o->file.empty()) {
      std::istringstream in(read_text_file(o->file));
      for (std::string line; std::getline(in, line);) {
        if (!line.empty()) texts.push_back(line);
      }
    }
    if (texts.empty()) throw Error(ErrorCode::InvalidArgument, "give texts to embed (arguments or --file)");
    auto model = std::make_shared<Model>(load_model(o->model));
    BackendOptions bo;
    bo.device = o->device;
    bo.n_threads = o->threads;
    bo.isa = o->isa;
    auto backend = create_backend(bo);
    auto encoder = create_encoder(model, *backend);
    const auto tok = Tokenizer::create(model->tokenizer);
    const size_t max_len = model->config.n_ctx_train > 0 ? model->config.n_ctx_train : 512;
    std::vector<EncoderInput> inputs;
    for (size_t i = 0; i < texts.size(); ++i) {
      EncoderInput in;
      in.tokens = tok->encode(texts[i], true, false);
      if (in.tokens.size() > max_len) {
        if (!o->truncate) {
          fail(ErrorCode::InvalidArgument, "text {} has {} tokens but the model takes at most {} (use --truncate)", i,
               in.tokens.size(), max_len);
        }
        const int32_t last = in.tokens.back();
        in.tokens.resize(max_len);
        in.tokens.back() = last;  // keep the closing SEP
      }
      inputs.push_back(std::move(in));
    }
    const auto vectors = encoder->embed(inputs, !o->no_normalize);
    if (o->json) {
      nlohmann::json data = nlohmann::json::array();
      for (size_t i = 0; i < vectors.size(); ++i) {
        data.push_back({{"index", i}, {"embedding", vectors[i]}, {"tokens", inputs[i].tokens.size()}});
      }
      std::printf("%s\n", nlohmann::json{{"model", o->model}, {"dimensions", model->config.n_embd}, {"data", data}}.dump().c_str());
    } else {
      for (const auto& v : vectors) {
        std::string line;
        for (size_t i = 0; i < v.size(); ++i) line += fmt::format("{}{:.6f}", i ? " " : "", v[i]);
        std::printf("%s\n", line.c_str());
      }
    }
    return 0;
  };
}

}  // namespace vireo::cli
