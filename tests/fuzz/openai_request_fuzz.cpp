// libFuzzer entry point for the OpenAI request parsers (built with -DVIREO_FUZZ=ON; run by
// scripts/fuzz.sh). The input is a request body; every parser must either accept it or throw an
// ApiError (a 4xx to the client). A JSON schema that parses is compiled, and a matcher over a
// small vocabulary writes a document with it: only vireo::Error may escape, and every token the
// mask allows must be accepted. Anything else aborts.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "vireo/core/error.h"
#include "vireo/runtime/json_constraint.h"
#include "vireo/server/openai_api.h"

namespace {

[[noreturn]] void broken(const char* what) {
  std::fprintf(stderr, "openai_request_fuzz: invariant broken: %s\n", what);
  std::abort();
}

std::shared_ptr<const vireo::ConstraintVocab> vocab() {
  static const auto v = [] {
    std::vector<std::string> pieces;
    for (int c = 32; c < 127; ++c) pieces.emplace_back(1, static_cast<char>(c));
    for (const char* p : {"\"", "{\"", "\":", "true", "false", "null", "12", "\n", "é", ""}) pieces.emplace_back(p);
    const auto eog = static_cast<int32_t>(pieces.size() - 1);  // the empty piece ends generation
    return std::make_shared<const vireo::ConstraintVocab>(std::move(pieces), std::vector<int32_t>{eog});
  }();
  return v;
}

void write_with(const std::shared_ptr<const vireo::JsonGrammar>& grammar) {
  vireo::JsonMatcher m(grammar, vocab());
  std::vector<float> logits(vocab()->size());
  for (int step = 0; step < 64 && !m.complete(); ++step) {
    for (size_t i = 0; i < logits.size(); ++i) logits[i] = static_cast<float>((i * 2654435761u + static_cast<unsigned>(step)) % 97);
    m.mask(logits);
    size_t best = 0;
    for (size_t i = 1; i < logits.size(); ++i) {
      if (logits[i] > logits[best]) best = i;
    }
    if (std::isinf(logits[best])) broken("the mask allows no token");
    if (vocab()->is_eog(static_cast<int32_t>(best))) break;
    if (!m.allows(static_cast<int32_t>(best))) broken("a token the mask allows is refused");
    m.accept(static_cast<int32_t>(best));
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string body(reinterpret_cast<const char*>(data), size);
  nlohmann::json j;
  try {
    j = vireo::server::parse_body(body);
  } catch (const vireo::server::ApiError& e) {
    if (e.status() != 400) broken("a parse error that is not a 400");
    return 0;
  }
  for (int kind = 0; kind < 3; ++kind) {
    try {
      if (kind == 2) {
        (void)vireo::server::parse_embedding_request(j);
        continue;
      }
      const auto p = kind == 0 ? vireo::server::parse_chat_request(j) : vireo::server::parse_completion_request(j);
      if (p.format == vireo::server::ResponseFormat::JsonSchema) {
        try {
          write_with(vireo::JsonGrammar::from_schema(p.schema));
        } catch (const vireo::Error&) {
        }
      } else if (p.format == vireo::server::ResponseFormat::JsonObject) {
        write_with(vireo::JsonGrammar::any_object());
      }
    } catch (const vireo::server::ApiError& e) {
      if (e.status() < 400 || e.status() >= 500) broken("a request error that is not a 4xx");
      if (std::string(e.what()).empty()) broken("an error without a message");
    }
  }
  return 0;
}
