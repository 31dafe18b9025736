// vireo tokenize / detokenize: text <-> token ids with a model's own tokenizer.
#include <cstdio>
#include <fstream>
#include <sstream>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "format.h"
#include "vireo/core/error.h"
#include "vireo/core/utf8.h"
#include "vireo/formats/model.h"
#include "vireo/tokenizer/tokenizer.h"

namespace vireo::cli {
namespace {

// JSON strings must be valid UTF-8; a piece that is part of a character is shown as bytes.
nlohmann::json piece_json(const std::string& piece) {
  if (is_valid_utf8(piece)) return piece;
  nlohmann::json bytes = nlohmann::json::array();
  for (unsigned char c : piece) bytes.push_back(c);
  return {{"bytes", bytes}};
}

}  // namespace

Runner add_tokenize(CLI::App& app) {
  auto* cmd = app.add_subcommand("tokenize", "Turn text into token ids with a model's tokenizer");
  struct Opts {
    std::string model, text, file;
    bool ids = false, json = false, no_bos = false, no_parse_special = false, show_count = false;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("model", o->model, "Model file or folder (GGUF, safetensors, MLX; vocab-only GGUF works)")->required();
  cmd->add_option("text", o->text, "Text to tokenize");
  cmd->add_option("-f,--file", o->file, "Read the text from a file");
  cmd->add_flag("--ids", o->ids, "Print only the ids, as a list");
  cmd->add_flag("--json", o->json, "Print JSON: ids, pieces and count");
  cmd->add_flag("--no-bos", o->no_bos, "Do not add BOS/EOS (or CLS/SEP)");
  cmd->add_flag("--no-parse-special", o->no_parse_special, "Treat special-token text as plain text");
  cmd->add_flag("--show-count", o->show_count, "Print the number of tokens");
  return [o] {
    if (o->file.empty() == o->text.empty() && !(o->file.empty() && o->text.empty())) {
      throw Error(ErrorCode::InvalidArgument, "give the text or --file, not both");
    }
    const std::string text = o->file.empty() ? o->text : read_text_file(o->file);
    const auto tok = Tokenizer::create(load_tokenizer(o->model));
    const auto ids = tok->encode(text, !o->no_bos, !o->no_parse_special);
    if (o->json) {
      nlohmann::json pieces = nlohmann::json::array();
      for (auto id : ids) pieces.push_back(piece_json(tok->token_to_piece(id)));
      std::printf("%s\n", nlohmann::json{{"ids", ids}, {"pieces", pieces}, {"n_tokens", ids.size()}}.dump().c_str());
      return 0;
    }
    if (o->ids) {
      std::printf("[%s]\n", fmt::format("{}", fmt::join(ids, ", ")).c_str());
    } else {
      for (auto id : ids) std::printf("%6d -> %s\n", id, quote_for_error(tok->token_to_piece(id), 200).c_str());
    }
    if (o->show_count) std::printf("Total number of tokens: %zu\n", ids.size());
    return 0;
  };
}

Runner add_detokenize(CLI::App& app) {
  auto* cmd = app.add_subcommand("detokenize", "Turn token ids back into text");
  struct Opts {
    std::string model;
    std::vector<std::string> ids;
    bool json = false, remove_special = false;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("model", o->model, "Model file or folder")->required();
  cmd->add_option("ids", o->ids, "Token ids (separated by spaces or commas; brackets allowed)")->required();
  cmd->add_flag("--remove-special", o->remove_special, "Drop special tokens (BOS, EOS, ...)");
  cmd->add_flag("--json", o->json, "Print JSON");
  return [o] {
    const auto tok = Tokenizer::create(load_tokenizer(o->model));
    std::vector<int32_t> ids;
    for (std::string arg : o->ids) {
      for (char& c : arg) {
        if (c == ',' || c == '[' || c == ']') c = ' ';
      }
      std::istringstream in(arg);
      std::string word;
      while (in >> word) {
        size_t used = 0;
        long long v = -1;
        try {
          v = std::stoll(word, &used);
        } catch (const std::exception&) {
          used = 0;
        }
        if (used != word.size() || v < 0 || v >= tok->n_vocab()) {
          fail(ErrorCode::InvalidArgument, "'{}' is not a token id of this model (0 to {})", word, tok->n_vocab() - 1);
        }
        ids.push_back(static_cast<int32_t>(v));
      }
    }
    const std::string text = tok->decode(ids, o->remove_special);
    if (o->json) {
      std::printf("%s\n", nlohmann::json{{"text", text}}.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
    } else {
      std::fwrite(text.data(), 1, text.size(), stdout);
      std::printf("\n");
    }
    return 0;
  };
}

}  // namespace vireo::cli
