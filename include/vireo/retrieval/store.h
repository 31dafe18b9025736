// The index: one SQLite database (WAL) in DIR/index.sqlite holding documents, pages, chunks, an
// FTS5 table for BM25, chunk vectors and classification labels. Every document is written in one
// transaction, so after a crash at any moment the index holds whole documents only.
// One IndexStore per thread: the object itself is not shared between threads (SQLite WAL lets
// several connections read while one writes).
#pragma once
#include <cstdint>
#include <climits>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "vireo/documents/chunk.h"
#include "vireo/documents/document.h"

struct sqlite3;

namespace vireo {

enum class DocStatus { Ok, LowQuality, Failed };
std::string_view doc_status_name(DocStatus s);  // "ok", "low_quality", "failed"

struct DocumentRecord {
  int64_t id = 0;  // assigned by the store
  std::string path;  // absolute, canonical
  std::string sha256;  // hex
  int64_t size = 0;
  int64_t mtime_ns = 0;
  std::string format;  // doc_format_name()
  std::string mime;
  std::string title;
  DocStatus status = DocStatus::Ok;
  std::string error;  // why failed, or the quality note
  int pages = 0;
  int chunks = 0;
};

struct StoredChunk {
  int64_t id = 0;
  int64_t doc_id = 0;
  std::string doc_path;
  std::string doc_title;
  int page = 1;
  std::string heading_path;
  std::string text;
  int64_t char_start = 0, char_end = 0;
  int tokens = 0;
};

struct SearchHit {
  StoredChunk chunk;
  double score = 0.0;    // higher is better (BM25: -bm25(); vector: cosine; hybrid: RRF sum)
  std::string snippet;   // text around the matched terms, matches wrapped in [ and ]
};

class IndexStore {
 public:
  // Opens DIR/index.sqlite, creating DIR and the schema when `create`; otherwise a missing index is
  // a vireo::Error naming the folder. Checks the schema version.
  static std::unique_ptr<IndexStore> open(const std::string& dir, bool create);
  ~IndexStore();
  IndexStore(const IndexStore&) = delete;
  IndexStore& operator=(const IndexStore&) = delete;

  const std::string& dir() const { return dir_; }

  // The record for a path, if indexed (any status).
  std::optional<DocumentRecord> find_document(const std::string& path);
  std::vector<DocumentRecord> documents();

  // In one transaction: removes any earlier record of doc.path (its pages, chunks, FTS rows,
  // vectors, labels), then inserts the document, its pages' texts and its chunks. Returns the id;
  // the chunks' ids, in order, go to `chunk_ids` when given.
  int64_t put_document(const DocumentRecord& doc, const std::vector<Page>& pages,
                       const std::vector<Chunk>& chunks, std::vector<int64_t>* chunk_ids = nullptr);
  // Several documents in one transaction (writing many small documents is far cheaper so); each
  // put_document / put_failed inside stays all or nothing on its own. A batch not committed is
  // rolled back.
  void begin_batch();
  void commit_batch();

  // A failed file: recorded with its reason (replacing an earlier record of the path).
  int64_t put_failed(const DocumentRecord& doc);
  // Removes documents whose path is not in `keep` among those under `roots` (files deleted since).
  int remove_missing(const std::vector<std::string>& roots, const std::vector<std::string>& keep);

  // Records a new stat for a file whose bytes did not change.
  void touch_document(const std::string& path, int64_t size, int64_t mtime_ns);

  int64_t chunk_count();
  std::vector<StoredChunk> chunks_of(int64_t doc_id);  // in id order
  std::optional<StoredChunk> chunk(int64_t id);
  // Chunks with no vector for `model` yet and an id in (after_id, up_to], in id order, at most `limit`.
  std::vector<StoredChunk> chunks_without_vectors(const std::string& model, int limit, int64_t after_id = 0,
                                                  int64_t up_to = INT64_MAX);
  std::vector<StoredChunk> chunks_in_order(int64_t after_id, int limit);  // id > after_id
  int64_t max_chunk_id();  // 0 when none

  // Vectors (float32, L2-normalised by the caller), one transaction per call.
  void put_vectors(const std::string& model, std::span<const int64_t> chunk_ids,
                   std::span<const float> vectors, int dim);
  // All vectors of `model`: ids and row-major data. dim 0 when none.
  void load_vectors(const std::string& model, std::vector<int64_t>& ids, std::vector<float>& data, int& dim);
  std::string vector_model();  // the model of the stored vectors, "" when none

  // BM25 over chunk text and heading path (FTS5, Porter stemming; the query's words are ORed,
  // English stop words dropped, FTS5 syntax characters neutralised so any text is a valid query).
  std::vector<SearchHit> search_bm25(const std::string& query, int k);

  // Labels from classification, keyed by (chunk, task). task names the label set.
  void put_label(int64_t chunk_id, const std::string& task, const std::string& label);
  // One label for several chunks (a document's), in one transaction.
  void put_labels(std::span<const int64_t> chunk_ids, const std::string& task, const std::string& label);
  std::optional<std::string> label(int64_t chunk_id, const std::string& task);

  // Key-value metadata (tokenizer used for chunking, options, vector index generation).
  void set_meta(const std::string& key, const std::string& value);
  std::optional<std::string> meta(const std::string& key);

  // Integrity: PRAGMA integrity_check and the FTS5 'integrity-check' command; "" when fine.
  std::string check_integrity();

 private:
  IndexStore(std::string dir, sqlite3* db);
  std::string dir_;
  sqlite3* db_;
  bool batch_open_ = false;
  struct Statements;
  std::unique_ptr<Statements> st_;
};

// Vector search over the stored vectors with hnswlib (inner product on normalised vectors): the
// HNSW graph is saved beside the database (DIR/vectors-<model>.hnsw) with the count it covers and
// rebuilt from the database when it is missing or stale, so the database stays the only truth.
class VectorIndex {
 public:
  static std::unique_ptr<VectorIndex> load_or_build(IndexStore& store, const std::string& model);
  ~VectorIndex();
  int dim() const;
  size_t size() const;
  // (chunk id, cosine) best first.
  std::vector<std::pair<int64_t, float>> search(std::span<const float> query, int k) const;

  struct Impl;

 private:
  explicit VectorIndex(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Reciprocal-rank fusion (k = 60) of ranked lists of chunk ids; best first.
std::vector<std::pair<int64_t, double>> reciprocal_rank_fusion(
    const std::vector<std::vector<int64_t>>& rankings, int k_rrf = 60);

}  // namespace vireo
