// What the CLI needs on top of the store: an encoder for chunk and query vectors, the ingest
// pipeline's sink into the index, and BM25 / vector / hybrid search.
#pragma once
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "vireo/backend/backend.h"
#include "vireo/documents/ingest.h"
#include "vireo/models/language_model.h"
#include "vireo/retrieval/store.h"
#include "vireo/tokenizer/tokenizer.h"

namespace vireo {

// An encoder model (BERT family) with its tokenizer, loaded once.
class Embedder {
 public:
  // `device`: "cpu", "cuda", "cuda:N" or "auto" (see create_backend).
  Embedder(const std::string& model_path, unsigned n_threads, const std::string& device = "auto");
  const std::string& name() const { return name_; }  // the model file's name, the vectors' key
  int dim() const;
  const Tokenizer& tokenizer() const { return *tokenizer_; }
  size_t max_tokens() const { return max_tokens_; }  // the model's context, special tokens included
  // L2-normalised vectors, row-major [texts.size(), dim]. Texts longer than the model's context
  // are cut (keeping the closing separator): chunks are budgeted to fit, queries rarely exceed.
  std::vector<float> embed(const std::vector<std::string>& texts);

 private:
  std::string name_;
  std::shared_ptr<Model> model_;
  std::unique_ptr<Backend> backend_;
  std::unique_ptr<EmbeddingModel> encoder_;
  std::unique_ptr<Tokenizer> tokenizer_;
  size_t max_tokens_;
};

// Writes the pipeline's results into DIR's index. Low-quality documents are stored with their
// pages and the reason, but their chunks are kept out of search unless `index_low_quality`.
// `settings` names everything that shapes chunks (OCR mode, chunk budget, tokenizer...): an index
// built with other settings has all its files processed again.
class IndexSink : public IngestSink {
 public:
  IndexSink(const std::string& dir, Embedder* embedder, bool index_low_quality, std::string settings = {});
  std::unordered_map<std::string, KnownFile> known_files() override;
  std::vector<int64_t> write(const ProcessedFile& file) override;
  void touch(const SourceFile& file) override;
  void begin_batch() override { writer_->begin_batch(); }
  void end_batch() override { writer_->commit_batch(); }
  void embed(const std::vector<int64_t>& chunk_ids, const std::vector<std::string>& texts) override;
  int64_t embed_pending(int batch, const std::function<bool()>& stop) override;
  int remove_missing(const std::vector<std::string>& roots, const std::vector<std::string>& seen) override;
  void finished() override;

 private:
  std::unique_ptr<IndexStore> writer_, embed_store_;  // one connection per thread that uses it
  Embedder* embedder_;
  bool index_low_quality_;
  std::string settings_;
  int64_t pending_up_to_ = 0;  // chunks that existed before this run, for embed_pending()
};

enum class SearchMode { Bm25, Vector, Hybrid };
SearchMode parse_search_mode(const std::string& s);  // "bm25", "vector", "hybrid"

// Ranked chunks from one index. Vector and hybrid need `embedder` (the model the index's vectors
// came from); the vector index is loaded once, on the first query that needs it.
class Searcher {
 public:
  Searcher(IndexStore& store, Embedder* embedder) : store_(store), embedder_(embedder) {}
  std::vector<SearchHit> search(const std::string& query, SearchMode mode, int k);

 private:
  IndexStore& store_;
  Embedder* embedder_;
  std::unique_ptr<VectorIndex> vectors_;
};

}  // namespace vireo
