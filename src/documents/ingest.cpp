// The ingest pipeline: one discovery thread, a persistent pool of workers doing the CPU-heavy
// stages per file, one writer (SQLite has one writer at a time anyway), one embedding thread.
#include "vireo/documents/ingest.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <mutex>
#include <thread>
#include <unordered_set>

#include <openssl/evp.h>

#include "vireo/bench/benchmark.h"
#include "vireo/core/bounded_queue.h"
#include "vireo/core/error.h"

namespace vireo {
namespace fs = std::filesystem;

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

int64_t mtime_ns_of(const struct stat& st) { return int64_t{st.st_mtim.tv_sec} * 1000000000 + st.st_mtim.tv_nsec; }

bool hidden(const fs::path& p) {
  const std::string name = p.filename().string();
  return name.size() > 1 && name[0] == '.';
}

// Calls `take` for every regular file under `paths` once, in a stable (sorted) order, until `take`
// returns false. Folders that cannot be listed are added to `unlisted`.
void walk(const std::vector<std::string>& paths, const IngestOptions& options,
          const std::function<bool(SourceFile)>& take, std::vector<std::string>& unlisted) {
  const std::unordered_set<std::string> excluded(options.exclude.begin(), options.exclude.end());
  std::unordered_set<std::string> taken;  // a file named twice, or under two given roots
  auto stat_file = [&](const fs::path& p) {
    struct stat st {};
    if (::stat(p.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return true;
    if (!taken.insert(p.string()).second) return true;
    return take(SourceFile{p.string(), static_cast<int64_t>(st.st_size), mtime_ns_of(st)});
  };
  for (const auto& given : paths) {
    std::error_code ec;
    const fs::path root = fs::canonical(given, ec);
    if (ec) fail(ErrorCode::NotFound, "{}: no such file or folder", given);
    if (!fs::is_directory(root)) {
      if (!stat_file(root)) return;
      continue;
    }
    if (excluded.count(root.string())) continue;
    // Depth-first with sorted entries so runs are reproducible.
    std::vector<fs::path> stack{root};
    while (!stack.empty()) {
      const fs::path dir = stack.back();
      stack.pop_back();
      std::vector<fs::path> entries;
      fs::directory_iterator it(dir, ec), end;
      for (; !ec && it != end; it.increment(ec)) entries.push_back(it->path());
      if (ec) {
        unlisted.push_back(dir.string());
        continue;
      }
      std::sort(entries.begin(), entries.end());
      std::vector<fs::path> subdirs;
      for (const auto& e : entries) {
        if (!options.follow_hidden && hidden(e)) continue;
        if (excluded.count(e.string())) continue;
        std::error_code sec;
        const auto status = fs::symlink_status(e, sec);
        if (sec || fs::is_symlink(status)) continue;  // links could loop or leave the roots
        if (fs::is_directory(status)) {
          subdirs.push_back(e);
        } else if (fs::is_regular_file(status)) {
          if (!stat_file(e)) return;
        }
      }
      for (auto it2 = subdirs.rbegin(); it2 != subdirs.rend(); ++it2) stack.push_back(*it2);
    }
  }
}

std::string to_hex(const unsigned char* bytes, unsigned n) {
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (unsigned i = 0; i < n; ++i) {
    out += hex[bytes[i] >> 4];
    out += hex[bytes[i] & 15];
  }
  return out;
}

// The worker stages for one file. Never throws: a failure is recorded on the result.
ProcessedFile process_file(const SourceFile& file, const std::string& known_sha, const IngestOptions& options,
                           const TokenCounter& count) {
  ProcessedFile out;
  out.file = file;
  try {
    out.sha256 = sha256_file(file.path);
    if (!known_sha.empty() && out.sha256 == known_sha) {
      out.unchanged = true;  // the writer only records the new stat
      return out;
    }
    auto t0 = Clock::now();
    out.doc = extract_document(file.path, options.extract);
    out.extract_s = seconds_since(t0);
    t0 = Clock::now();
    normalise_document(out.doc);
    out.quality = assess_quality(out.doc);
    out.normalise_s = seconds_since(t0);
    t0 = Clock::now();
    out.chunks = chunk_document(out.doc, options.chunk, count);
    out.chunk_s = seconds_since(t0);
  } catch (const std::exception& e) {
    out.failed = true;
    out.error = e.what();
  } catch (...) {
    out.failed = true;
    out.error = "unknown error";
  }
  if (out.failed) {
    out.doc = {};
    out.chunks.clear();
  }
  return out;
}

// The part of a failure message that names its kind ("encrypted PDF", "malformed PDF", ...), with
// the file's own path taken out so that failures of one kind group together.
std::string reason_kind(std::string error, const std::string& path) {
  for (size_t at; !path.empty() && (at = error.find(path)) != std::string::npos;) error.replace(at, path.size(), "FILE");
  const auto colon = error.find(": ");
  std::string kind = colon == std::string::npos ? error : error.substr(0, colon);
  if (kind.size() > 60) kind = kind.substr(0, 60);
  return kind;
}

}  // namespace

// Read, not mapped: a file truncated by another program while it is hashed must give an error,
// not a SIGBUS.
std::string sha256_file(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) fail(ErrorCode::Io, "cannot open: {}", std::strerror(errno));
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  bool ok = ctx != nullptr && EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr) == 1;
  std::vector<unsigned char> buf(1 << 20);
  for (size_t n; ok && (n = std::fread(buf.data(), 1, buf.size(), f)) > 0;) ok = EVP_DigestUpdate(ctx, buf.data(), n) == 1;
  const bool read_error = std::ferror(f) != 0;
  std::fclose(f);
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  ok = ok && !read_error && EVP_DigestFinal_ex(ctx, digest, &len) == 1;
  EVP_MD_CTX_free(ctx);
  if (read_error) fail(ErrorCode::Io, "read error: {}", std::strerror(errno));
  if (!ok) fail(ErrorCode::Io, "SHA-256 failed");
  return to_hex(digest, len);
}

std::vector<SourceFile> discover_files(const std::vector<std::string>& paths, const IngestOptions& options) {
  std::vector<SourceFile> files;
  std::vector<std::string> unlisted;
  walk(paths, options, [&](SourceFile f) {
    files.push_back(std::move(f));
    return true;
  }, unlisted);
  return files;
}

IngestReport run_ingest(const std::vector<std::string>& paths, const IngestOptions& options, IngestSink& sink,
                        const std::function<void(const IngestProgress&)>& progress) {
  const auto t_start = Clock::now();
  IngestReport report;
  const unsigned jobs = options.jobs ? options.jobs : std::max(1u, std::thread::hardware_concurrency());
  const size_t depth = options.queue_depth ? options.queue_depth : 2 * jobs;
  const TokenCounter count = options.count_tokens ? options.count_tokens : estimated_token_counter();
  // Checked up front so a bad path fails before anything is written.
  for (const auto& p : paths) {
    if (!fs::exists(p)) fail(ErrorCode::NotFound, "{}: no such file or folder", p);
  }
  const auto known = sink.known_files();

  struct Work {
    SourceFile file;
    std::string known_sha;
  };
  struct EmbedItem {
    int64_t chunk_id;
    std::string text;
  };
  BoundedQueue<Work> work_queue(depth);
  BoundedQueue<ProcessedFile> done_queue(depth);
  BoundedQueue<EmbedItem> embed_queue(std::max<size_t>(depth, static_cast<size_t>(options.embed_batch) * 4));

  std::mutex mu;  // guards report and progress counters below
  std::vector<std::string> seen;
  IngestProgress prog;
  std::atomic<bool> aborting{false};
  std::exception_ptr fatal;  // a storage failure stops the run
  auto record_fatal = [&](std::exception_ptr e) {
    std::lock_guard<std::mutex> lock(mu);
    if (!fatal) fatal = e;
    aborting = true;
    work_queue.close();
    done_queue.close();
    embed_queue.close();
  };
  auto report_progress = [&] {
    if (!progress) return;
    IngestProgress p;
    {
      std::lock_guard<std::mutex> lock(mu);
      prog.elapsed_s = seconds_since(t_start);
      p = prog;
    }
    progress(p);
  };

  std::thread discovery([&] {
    try {
      walk(paths, options, [&](SourceFile f) {
        if (aborting) return false;
        std::string known_sha;
        {
          std::lock_guard<std::mutex> lock(mu);
          seen.push_back(f.path);
          ++report.files_seen;
          ++prog.found;
        }
        if (const auto it = known.find(f.path); it != known.end() && !it->second.failed) {
          if (it->second.size == f.size && it->second.mtime_ns == f.mtime_ns) {
            std::lock_guard<std::mutex> lock(mu);
            ++report.skipped_unchanged;
            ++prog.done;
            return true;
          }
          known_sha = it->second.sha256;
        }
        return work_queue.push(Work{std::move(f), std::move(known_sha)});
      }, report.unlisted_folders);
    } catch (...) {
      record_fatal(std::current_exception());
    }
    {
      std::lock_guard<std::mutex> lock(mu);
      prog.discovery_finished = true;
    }
    work_queue.close();
  });

  std::atomic<unsigned> workers_left{jobs};
  std::vector<std::thread> workers;
  for (unsigned w = 0; w < jobs; ++w) {
    workers.emplace_back([&] {
      try {
        while (auto work = work_queue.pop()) {
          if (!done_queue.push(process_file(work->file, work->known_sha, options, count))) break;
        }
      } catch (...) {
        record_fatal(std::current_exception());
      }
      if (--workers_left == 0) done_queue.close();
    });
  }

  // Stores one file; a document the store refuses (a constraint) is recorded as failed instead.
  auto store_file = [&](ProcessedFile& f) -> std::vector<int64_t> {
    if (f.unchanged) {
      sink.touch(f.file);
      return {};
    }
    try {
      return sink.write(f);
    } catch (const Error& e) {
      if (e.code() != ErrorCode::InvalidArgument || f.failed) throw;  // storage failures stop the run
      f.failed = true;
      f.error = fmt::format("could not be stored: {}", e.what());
      f.doc = {};
      f.chunks.clear();
      return sink.write(f);
    }
  };
  // After the commit: counts, progress, and the new chunks to the encoder (whose connection sees
  // only committed rows).
  auto account = [&](ProcessedFile& f, std::vector<int64_t>& ids, double write_s) {
    {
      std::lock_guard<std::mutex> lock(mu);
      report.stage_busy_s["extract"] += f.extract_s;
      report.stage_busy_s["normalise"] += f.normalise_s;
      report.stage_busy_s["chunk"] += f.chunk_s;
      report.stage_busy_s["write"] += write_s;
      ++prog.done;
      if (f.unchanged) {
        ++report.skipped_unchanged;
      } else if (f.failed) {
        ++report.failed;
        ++report.failure_reasons[reason_kind(f.error, f.file.path)];
        report.failures.emplace_back(f.file.path, f.error);
      } else {
        if (f.quality.low_quality) {
          ++report.low_quality;
          report.low_quality_files.emplace_back(f.file.path, f.quality.note);
        } else {
          ++report.ok;
        }
        report.pages += static_cast<int64_t>(f.doc.pages.size());
        report.chunks += static_cast<int64_t>(ids.size());
        report.bytes += f.file.size;
        prog.pages += static_cast<int64_t>(f.doc.pages.size());
      }
    }
    if (options.embed) {
      for (size_t i = 0; i < ids.size() && i < f.chunks.size(); ++i) embed_queue.push(EmbedItem{ids[i], std::move(f.chunks[i].text)});
    }
  };

  std::thread writer([&] {
    try {
      // Files that are ready together are committed together: one transaction per small file
      // would cost more than the extraction. The batch is bounded so a crash loses little work.
      constexpr size_t kBatchFiles = 64;
      constexpr int64_t kBatchBytes = 16 << 20;
      while (auto first = done_queue.pop()) {
        std::vector<ProcessedFile> batch;
        batch.push_back(std::move(*first));
        int64_t bytes = batch.back().file.size;
        while (batch.size() < kBatchFiles && bytes < kBatchBytes) {
          auto more = done_queue.try_pop();
          if (!more) break;
          bytes += more->file.size;
          batch.push_back(std::move(*more));
        }
        const auto t0 = Clock::now();
        std::vector<std::vector<int64_t>> ids(batch.size());
        sink.begin_batch();
        for (size_t i = 0; i < batch.size(); ++i) ids[i] = store_file(batch[i]);
        sink.end_batch();
        const double write_s = seconds_since(t0) / static_cast<double>(batch.size());
        for (size_t i = 0; i < batch.size(); ++i) account(batch[i], ids[i], write_s);
        report_progress();
      }
    } catch (...) {
      record_fatal(std::current_exception());
    }
    embed_queue.close();
  });

  std::thread embedder;
  if (options.embed) {
    embedder = std::thread([&] {
      try {
        std::vector<int64_t> ids;
        std::vector<std::string> texts;
        auto flush = [&] {
          if (ids.empty()) return;
          const auto t0 = Clock::now();
          sink.embed(ids, texts);
          std::lock_guard<std::mutex> lock(mu);
          report.stage_busy_s["embed"] += seconds_since(t0);
          report.embedded += static_cast<int64_t>(ids.size());
          ids.clear();
          texts.clear();
        };
        // Chunks an interrupted run stored but never embedded come first.
        const auto t0 = Clock::now();
        const int64_t pending = sink.embed_pending(options.embed_batch, [&] { return aborting.load(); });
        {
          std::lock_guard<std::mutex> lock(mu);
          report.stage_busy_s["embed"] += seconds_since(t0);
          report.embedded += pending;
        }
        while (auto item = embed_queue.pop()) {
          ids.push_back(item->chunk_id);
          texts.push_back(std::move(item->text));
          if (static_cast<int>(ids.size()) >= options.embed_batch) flush();
        }
        flush();
      } catch (...) {
        record_fatal(std::current_exception());
      }
    });
  }

  discovery.join();
  for (auto& w : workers) w.join();
  writer.join();
  if (embedder.joinable()) embedder.join();
  if (fatal) std::rethrow_exception(fatal);

  std::vector<std::string> roots;
  for (const auto& p : paths) {
    std::error_code ec;
    const fs::path c = fs::canonical(p, ec);
    if (!ec && fs::is_directory(c)) roots.push_back(c.string());
  }
  // A folder that could not be listed must not look like deleted files.
  if (!roots.empty() && report.unlisted_folders.empty()) report.removed = sink.remove_missing(roots, seen);
  sink.finished();

  report.wall_s = seconds_since(t_start);
  report.peak_rss_bytes = static_cast<int64_t>(peak_rss_bytes());
  report_progress();
  return report;
}

}  // namespace vireo
