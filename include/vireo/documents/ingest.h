// The streaming ingest pipeline: discovery -> extract/normalise/assess/chunk (a persistent pool of
// workers) -> one writer -> an optional embedding stage, joined by bounded queues so memory stays
// flat however many files there are. Where results go is the IngestSink's business (the retrieval
// layer's SQLite index), so this layer knows nothing of storage.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <unordered_map>
#include <vector>

#include "vireo/documents/chunk.h"
#include "vireo/documents/document.h"
#include "vireo/documents/extract.h"

namespace vireo {

struct SourceFile {
  std::string path;  // canonical
  int64_t size = 0;
  int64_t mtime_ns = 0;
};

// What the index already holds for a path, for skipping unchanged files.
struct KnownFile {
  int64_t size = 0;
  int64_t mtime_ns = 0;
  std::string sha256;
  bool failed = false;  // failed files are tried again: the cause may have been fixed since
};

// One file after the worker stages; `error` set means it failed and `doc`/`chunks` are empty.
struct ProcessedFile {
  SourceFile file;
  std::string sha256;
  bool unchanged = false;  // same bytes as already indexed; only its stat moved
  bool failed = false;
  std::string error;
  ExtractedDocument doc;
  QualityReport quality;
  std::vector<Chunk> chunks;
  double extract_s = 0, normalise_s = 0, chunk_s = 0;  // worker time per stage
};

class IngestSink {
 public:
  virtual ~IngestSink() = default;
  // Called once before the run (from the calling thread). Empty when the index was built with other
  // settings, so that every file is processed again.
  virtual std::unordered_map<std::string, KnownFile> known_files() = 0;
  // Called from the single writer thread, in completion order; stores the file atomically and
  // returns the ids of its chunks (for the embedding stage).
  virtual std::vector<int64_t> write(const ProcessedFile& file) = 0;
  // Writes between these two calls may be committed together (each file still all or nothing).
  virtual void begin_batch() {}
  virtual void end_batch() {}
  // A file whose bytes are unchanged but whose mtime moved: just record the new stat.
  virtual void touch(const SourceFile& file) = 0;
  // Called from the embedding thread with a batch of chunks; stores their vectors.
  virtual void embed(const std::vector<int64_t>& chunk_ids, const std::vector<std::string>& texts) {}
  // Embeds, in batches, chunks an earlier interrupted run stored without vectors (those that existed
  // when known_files() was called). Returns how many; stops early when `stop()` says so.
  virtual int64_t embed_pending(int batch, const std::function<bool()>& stop) { return 0; }
  // Files under the roots that are no longer there.
  virtual int remove_missing(const std::vector<std::string>& roots, const std::vector<std::string>& seen) { return 0; }
  // The run completed: settings may be recorded as those of the whole index.
  virtual void finished() {}
};

struct IngestOptions {
  unsigned jobs = 0;  // extraction workers; 0: one per core
  ExtractOptions extract;
  ChunkOptions chunk;
  TokenCounter count_tokens;  // empty: estimated_token_counter()
  bool embed = false;         // run the embedding stage (the sink's embed())
  int embed_batch = 32;
  size_t queue_depth = 0;     // per queue; 0: 2 x jobs
  bool follow_hidden = false; // descend into dot-folders and take dot-files
  std::vector<std::string> exclude;  // canonical paths never taken (the index folder itself)
};

struct StageTime {
  double busy_s = 0;  // summed over the stage's threads
};

struct IngestReport {
  int files_seen = 0;
  int skipped_unchanged = 0;
  int ok = 0, low_quality = 0, failed = 0, removed = 0;
  std::vector<std::string> unlisted_folders;  // could not be read: their indexed files were kept
  std::map<std::string, int> failure_reasons;  // reason -> count
  std::vector<std::pair<std::string, std::string>> failures;  // (path, reason)
  std::vector<std::pair<std::string, std::string>> low_quality_files;  // (path, note)
  int64_t pages = 0, chunks = 0, bytes = 0, embedded = 0;
  double wall_s = 0;
  std::map<std::string, double> stage_busy_s;  // extract, normalise, chunk, write, embed
  int64_t peak_rss_bytes = 0;
};

// Progress for a bar: files done of those found so far (found grows while discovery runs).
struct IngestProgress {
  int done = 0, found = 0;
  int64_t pages = 0;
  bool discovery_finished = false;
  double elapsed_s = 0;
};

// Files under `paths` (files or folders, recursively). Throws for a path that does not exist.
std::vector<SourceFile> discover_files(const std::vector<std::string>& paths, const IngestOptions& options);

IngestReport run_ingest(const std::vector<std::string>& paths, const IngestOptions& options, IngestSink& sink,
                        const std::function<void(const IngestProgress&)>& progress = {});

// Hex SHA-256 of a file's bytes (memory-mapped).
std::string sha256_file(const std::string& path);

}  // namespace vireo
