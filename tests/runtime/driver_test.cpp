// A small driver for trying the engine on any GGUF without the CLI (which the tokenizer work
// will wire up): greedy or sampled generation from token ids, printed as one JSON line.
//
//   VIREO_DRIVE_MODEL=m.gguf VIREO_DRIVE_IDS=1,403,407 [VIREO_DRIVE_N=64] [VIREO_DRIVE_THREADS=2]
//   [VIREO_DRIVE_TEMPERATURE=0.8 VIREO_DRIVE_SEED=1] build/vireo_tests --gtest_filter='Driver.*'
//
// Skipped when VIREO_DRIVE_MODEL is unset.
#include <gtest/gtest.h>

#include <cstdlib>
#include <sstream>
#include <string>

#include <nlohmann/json.hpp>

#include "vireo/backend/backend.h"
#include "vireo/runtime/generator.h"

namespace vireo {
namespace {

std::string env(const char* name, const std::string& fallback = "") {
  const char* v = std::getenv(name);
  return v != nullptr ? std::string(v) : fallback;
}

TEST(Driver, GenerateFromTokenIds) {
  const std::string path = env("VIREO_DRIVE_MODEL");
  if (path.empty()) GTEST_SKIP() << "set VIREO_DRIVE_MODEL (and VIREO_DRIVE_IDS) to run the driver";
  std::vector<int32_t> prompt;
  std::stringstream ids(env("VIREO_DRIVE_IDS", "1"));
  for (std::string id; std::getline(ids, id, ',');) prompt.push_back(std::stoi(id));

  auto model = std::make_shared<Model>(load_model(path));
  CpuBackendOptions bo;
  bo.n_threads = static_cast<unsigned>(std::stoi(env("VIREO_DRIVE_THREADS", "0")));
  bo.isa = env("VIREO_DRIVE_ISA");
  auto backend = create_cpu_backend(bo);
  auto lm = create_decoder(model, *backend);
  GenerateOptions o;
  o.max_tokens = std::stoi(env("VIREO_DRIVE_N", "64"));
  o.sampling.temperature = std::stof(env("VIREO_DRIVE_TEMPERATURE", "0"));
  o.sampling.seed = std::stoull(env("VIREO_DRIVE_SEED", "0"));
  if (model->tokenizer.eos_id >= 0 && env("VIREO_DRIVE_IGNORE_EOS").empty()) o.stop_tokens.push_back(model->tokenizer.eos_id);
  KvCache cache(*lm, static_cast<int64_t>(prompt.size()) + o.max_tokens);
  Generator gen(*lm, cache);
  const GenerateResult r = gen.generate(prompt, o);
  const nlohmann::json out = {{"backend", backend->name()},
                              {"prompt_tokens", prompt},
                              {"tokens", r.tokens},
                              {"stop", stop_reason_name(r.stop)},
                              {"prefill_tokens_per_s", r.timings.prefill_tokens_per_s()},
                              {"decode_tokens_per_s", r.timings.decode_tokens_per_s()}};
  std::printf("%s\n", out.dump().c_str());
}

}  // namespace
}  // namespace vireo
