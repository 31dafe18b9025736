// The index's LLM tasks: classify chunks or documents into a fixed set of labels (output
// constrained to the labels, requests batched through the scheduler, results stored, resumable)
// and answer a question from retrieved chunks with citations.
#pragma once
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "vireo/retrieval/search.h"
#include "vireo/retrieval/store.h"
#include "vireo/runtime/text_engine.h"

namespace vireo {

struct ClassifyOptions {
  std::vector<std::string> labels;
  std::string instructions;    // added to the prompt
  std::string task;            // the label set's name in the index; empty: derived from the labels
  bool per_document = false;   // one label per document (from its first chunks) instead of per chunk
  int max_chunk_chars = 2000;  // text shown to the model per item
  int parallel = 8;            // items decoded together
  bool redo = false;           // relabel items that already have a label
};

struct ClassifyReport {
  std::string task;
  int64_t labelled = 0, skipped = 0;  // skipped: already labelled earlier
  std::map<std::string, int64_t> counts;
  double seconds = 0;
};

// `progress(done, total)` after each item.
ClassifyReport classify_index(IndexStore& store, TextEngine& engine, const ClassifyOptions& options,
                              const std::function<void(int64_t, int64_t)>& progress = {});

struct AskOptions {
  int k = 5;
  SearchMode mode = SearchMode::Bm25;
  int max_context_tokens = 0;  // 0: what fits in the context beside the answer
  int max_tokens = 512;
  double temperature = 0.0;
  uint64_t seed = 0;
};

struct AskResult {
  std::string answer;
  std::vector<SearchHit> sources;  // [1], [2], ... in the prompt
  TextResult generation;
};

// Retrieves, renders the sources and the question with the model's chat template and streams the
// answer to `on_text`.
AskResult ask_index(IndexStore& store, TextEngine& engine, Embedder* embedder, const std::string& question,
                    const AskOptions& options, const std::function<bool(const std::string&)>& on_text = {});

}  // namespace vireo
