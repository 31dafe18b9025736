// Synthetic models: the exact shapes of real architectures with seeded random weights of a sane
// scale, written as GGUF, so benchmarks and tests need no download.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "vireo/formats/model.h"

namespace vireo {

struct SynthPreset {
  std::string name;         // "llama3-8b"
  std::string description;  // "Meta Llama 3 8B"
  ModelConfig config;
};

const std::vector<SynthPreset>& synth_presets();
const SynthPreset& find_synth_preset(const std::string& name);  // throws, listing the presets

// Weight type choices: "f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "q4_k_m",
// "q5_k_m", "q6_k", "q4_k_s", "q3_k_m", "q2_k".
std::vector<std::string> synth_types();

struct SynthOptions {
  std::string preset = "tiny";
  std::string type = "f16";
  uint32_t n_layer = 0;     // 0: the preset's
  uint32_t vocab_size = 0;  // 0: the preset's; smaller keeps every layer's shape but shrinks the embeddings (tests)
  std::string vocab_path; // GGUF whose tokenizer.* keys are copied; empty: built-in byte-level vocab
  uint64_t seed = 42;
  unsigned threads = 0;
};

struct SynthResult {
  ModelConfig config;
  uint64_t n_params = 0;
  uint64_t file_bytes = 0;
  std::vector<std::pair<std::string, DType>> tensor_types;
};

// Writes the model to `out_path`; `progress(done, total)` is called after each tensor.
SynthResult synthesize_model(const SynthOptions& options, const std::string& out_path,
                             const std::function<void(size_t, size_t)>& progress = {});

}  // namespace vireo
