#include "vireo/retrieval/search.h"

#include <cmath>
#include <filesystem>
#include <unordered_set>

#include "vireo/core/error.h"
#include "vireo/core/utf8.h"

namespace vireo {
Embedder::Embedder(const std::string& model_path, unsigned n_threads, const std::string& device) {
  name_ = std::filesystem::path(model_path).filename().string();
  model_ = std::make_shared<Model>(load_model(model_path));
  BackendOptions bo;
  bo.device = device;
  bo.n_threads = n_threads;
  backend_ = create_backend(bo);
  encoder_ = create_encoder(model_, *backend_);
  tokenizer_ = Tokenizer::create(model_->tokenizer);
  max_tokens_ = model_->config.n_ctx_train > 0 ? static_cast<size_t>(model_->config.n_ctx_train) : 512;
}

int Embedder::dim() const { return static_cast<int>(model_->config.n_embd); }

std::vector<float> Embedder::embed(const std::vector<std::string>& texts) {
  std::vector<EncoderInput> inputs(texts.size());
  for (size_t i = 0; i < texts.size(); ++i) {
    auto& tokens = inputs[i].tokens;
    tokens = tokenizer_->encode(texts[i], true, false);
    if (tokens.size() > max_tokens_) {
      const int32_t last = tokens.back();
      tokens.resize(max_tokens_);
      tokens.back() = last;
    }
  }
  const auto vectors = encoder_->embed(inputs, true);
  std::vector<float> out;
  out.reserve(texts.size() * static_cast<size_t>(dim()));
  for (const auto& v : vectors) out.insert(out.end(), v.begin(), v.end());
  return out;
}

IndexSink::IndexSink(const std::string& dir, Embedder* embedder, bool index_low_quality, std::string settings)
    : writer_(IndexStore::open(dir, true)),
      embedder_(embedder),
      index_low_quality_(index_low_quality),
      settings_(std::move(settings)) {
  if (embedder_ != nullptr) {
    embed_store_ = IndexStore::open(dir, false);
    const std::string existing = writer_->vector_model();
    if (!existing.empty() && existing != embedder_->name()) {
      fail(ErrorCode::InvalidArgument, "the index at {} holds vectors from {}; embed with the same model or use a new index",
           dir, existing);
    }
  }
}

std::unordered_map<std::string, KnownFile> IndexSink::known_files() {
  pending_up_to_ = writer_->max_chunk_id();
  std::unordered_map<std::string, KnownFile> known;
  const auto docs = writer_->documents();
  const auto recorded = writer_->meta("ingest_settings");
  if (docs.empty() || !recorded) {
    // A new index takes this run's settings now, so an interrupted first run resumes with them.
    writer_->set_meta("ingest_settings", settings_);
  } else if (*recorded != settings_) {
    return known;  // built otherwise: every file again (finished() records the new settings)
  }
  for (const auto& d : docs) known[d.path] = KnownFile{d.size, d.mtime_ns, d.sha256, d.status == DocStatus::Failed};
  return known;
}

void IndexSink::finished() { writer_->set_meta("ingest_settings", settings_); }

std::vector<int64_t> IndexSink::write(const ProcessedFile& f) {
  DocumentRecord rec;
  rec.path = f.file.path;
  rec.sha256 = f.sha256;
  rec.size = f.file.size;
  rec.mtime_ns = f.file.mtime_ns;
  if (f.failed) {
    rec.status = DocStatus::Failed;
    rec.error = f.error;
    writer_->put_failed(rec);
    return {};
  }
  rec.format = std::string(doc_format_name(f.doc.format));
  rec.mime = f.doc.mime;
  rec.title = f.doc.title;
  rec.pages = static_cast<int>(f.doc.pages.size());
  const bool keep_out = f.quality.low_quality && !index_low_quality_;
  rec.status = f.quality.low_quality ? DocStatus::LowQuality : DocStatus::Ok;
  rec.error = f.quality.note;
  static const std::vector<Chunk> kNoChunks;
  const auto& chunks = keep_out ? kNoChunks : f.chunks;
  rec.chunks = static_cast<int>(chunks.size());
  std::vector<int64_t> ids;
  writer_->put_document(rec, f.doc.pages, chunks, &ids);
  return ids;
}

void IndexSink::touch(const SourceFile& file) { writer_->touch_document(file.path, file.size, file.mtime_ns); }

void IndexSink::embed(const std::vector<int64_t>& chunk_ids, const std::vector<std::string>& texts) {
  if (embedder_ == nullptr) return;
  const auto vectors = embedder_->embed(texts);
  embed_store_->put_vectors(embedder_->name(), chunk_ids, vectors, embedder_->dim());
}

int64_t IndexSink::embed_pending(int batch, const std::function<bool()>& stop) {
  if (embedder_ == nullptr) return 0;
  int64_t done = 0;
  // Paged by id, and only chunks older than this run: the writer's new ones come by the queue.
  for (int64_t after = 0; !stop();) {
    const auto chunks = embed_store_->chunks_without_vectors(embedder_->name(), batch, after, pending_up_to_);
    if (chunks.empty()) break;
    std::vector<int64_t> ids;
    std::vector<std::string> texts;
    for (const auto& c : chunks) {
      ids.push_back(c.id);
      texts.push_back(c.text);
    }
    embed(ids, texts);
    after = ids.back();
    done += static_cast<int64_t>(ids.size());
  }
  return done;
}

int IndexSink::remove_missing(const std::vector<std::string>& roots, const std::vector<std::string>& seen) {
  return writer_->remove_missing(roots, seen);
}

SearchMode parse_search_mode(const std::string& s) {
  if (s == "bm25") return SearchMode::Bm25;
  if (s == "vector") return SearchMode::Vector;
  if (s == "hybrid") return SearchMode::Hybrid;
  fail(ErrorCode::InvalidArgument, "unknown search mode '{}' (bm25, vector or hybrid)", s);
}

std::vector<SearchHit> Searcher::search(const std::string& query, SearchMode mode, int k) {
  IndexStore& store = store_;
  if (k < 1) fail(ErrorCode::InvalidArgument, "k must be at least 1 (got {})", k);
  if (mode == SearchMode::Bm25) return store.search_bm25(query, k);
  if (embedder_ == nullptr) fail(ErrorCode::InvalidArgument, "vector and hybrid search need the index's encoder model (--embed MODEL)");
  if (!vectors_) {
    const std::string model = store.vector_model();
    if (model.empty()) fail(ErrorCode::InvalidArgument, "the index has no vectors: ingest with --embed MODEL first");
    if (model != embedder_->name()) {
      fail(ErrorCode::InvalidArgument, "the index's vectors come from {}, not {}", model, embedder_->name());
    }
    vectors_ = VectorIndex::load_or_build(store, model);
  }
  const auto qv = embedder_->embed({query});
  // Fusion looks deeper than k so that a chunk ranked well by one side only still competes.
  const int depth = mode == SearchMode::Hybrid ? static_cast<int>(std::clamp<int64_t>(int64_t{k} * 4, 50, 100000)) : k;
  const auto vec_hits = vectors_->search(qv, depth);
  std::vector<std::pair<int64_t, double>> ranked;
  std::unordered_map<int64_t, SearchHit> bm25_by_id;
  if (mode == SearchMode::Vector) {
    for (const auto& [id, score] : vec_hits) ranked.emplace_back(id, score);
  } else {
    std::vector<int64_t> vec_ids, bm_ids;
    for (const auto& h : vec_hits) vec_ids.push_back(h.first);
    for (auto& h : store.search_bm25(query, depth)) {
      bm_ids.push_back(h.chunk.id);
      bm25_by_id.emplace(h.chunk.id, std::move(h));
    }
    ranked = reciprocal_rank_fusion({bm_ids, vec_ids});
  }
  std::vector<SearchHit> hits;
  for (const auto& [id, score] : ranked) {
    if (static_cast<int>(hits.size()) >= k) break;
    SearchHit hit;
    if (auto it = bm25_by_id.find(id); it != bm25_by_id.end()) {
      hit = std::move(it->second);
    } else {
      auto c = store.chunk(id);
      if (!c) continue;
      hit.chunk = std::move(*c);
      hit.snippet = utf8_truncate(hit.chunk.text, 240);
    }
    hit.score = score;
    hits.push_back(std::move(hit));
  }
  return hits;
}

}  // namespace vireo
