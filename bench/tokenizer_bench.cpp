// Tokenizer speed: vireo against llama.cpp (its libllama, from the pinned npm package) on the same
// text in the same process, single thread. Run through scripts/bench-tokenizer.sh, which prints
// the ratio; the vocab is ../shared/vocab/ggml-vocab-llama-bpe.gguf unless VIREO_BENCH_VOCAB says.
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <string>

#include "tokenizer/llama_direct.h"
#include "tokenizer/tokenizer_corpus.h"
#include "vireo/formats/model.h"
#include "vireo/tokenizer/tokenizer.h"

namespace {

std::string vocab_path() {
  if (const char* v = std::getenv("VIREO_BENCH_VOCAB")) return v;
  return std::string(VIREO_SOURCE_DIR) + "/../shared/vocab/ggml-vocab-llama-bpe.gguf";
}

// About 1 MB of the tokenizer test corpus (many scripts, code, emoji, whitespace runs), valid UTF-8.
const std::string& bench_text() {
  static const std::string text = [] {
    std::string t;
    for (const auto& line : vireo::test::tokenizer_corpus(5000, false)) (t += line) += '\n';
    while (t.size() < (1u << 20)) t += t;
    return t;
  }();
  return text;
}

void BM_VireoEncode(benchmark::State& state) {
  std::unique_ptr<vireo::Tokenizer> tok;
  try {
    tok = vireo::Tokenizer::create(vireo::load_tokenizer(vocab_path()));
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
    return;
  }
  const std::string& text = bench_text();
  size_t n_tokens = 0;
  for (auto _ : state) {
    auto ids = tok->encode(text, false, false);
    n_tokens = ids.size();
    benchmark::DoNotOptimize(ids.data());
  }
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(text.size()));
  state.counters["tokens"] = static_cast<double>(n_tokens);
}

void BM_LlamaCppEncode(benchmark::State& state) {
  std::string why;
  auto* llama = vireo::test::LlamaDirect::get(&why);
  const void* vocab = llama ? llama->vocab(vocab_path()) : nullptr;
  if (vocab == nullptr) {
    state.SkipWithError(("llama.cpp not available: " + why).c_str());
    return;
  }
  const std::string& text = bench_text();
  size_t n_tokens = 0;
  for (auto _ : state) {
    auto ids = llama->tokenize(vocab, text, false, false);
    n_tokens = ids.size();
    benchmark::DoNotOptimize(ids.data());
  }
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(text.size()));
  state.counters["tokens"] = static_cast<double>(n_tokens);
}

BENCHMARK(BM_VireoEncode)->Unit(benchmark::kMillisecond)->MinTime(2.0);
BENCHMARK(BM_LlamaCppEncode)->Unit(benchmark::kMillisecond)->MinTime(2.0);

}  // namespace
