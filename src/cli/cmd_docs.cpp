// vireo ingest / search / classify / ask / eval-retrieval: the document pipeline and its index.
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "device_option.h"
#include "format.h"
#include "vireo/core/error.h"
#include "vireo/documents/ingest.h"
#include "vireo/formats/model.h"
#include "vireo/retrieval/answer.h"
#include "vireo/retrieval/eval.h"
#include "vireo/retrieval/search.h"

namespace vireo::cli {
namespace fs = std::filesystem;

namespace {

std::string eta(double seconds) {
  if (seconds < 0 || seconds > 360000) return "?";
  const int s = static_cast<int>(seconds + 0.5);
  return fmt::format("{}:{:02}", s / 60, s % 60);
}

struct IngestFlags {
  std::vector<std::string> paths;
  std::string index, embed, tokenizer, ocr = "auto", device = "auto";
  unsigned jobs = 0, threads = 0;
  int chunk_tokens = 256, overlap = 32;
  bool low_quality = false, hidden = false, json = false, quiet = false;
};

OcrMode parse_ocr(const std::string& s) {
  if (s == "auto") return OcrMode::Auto;
  if (s == "always") return OcrMode::Always;
  return OcrMode::Never;
}

nlohmann::json report_json(const IngestReport& r) {
  nlohmann::json failures = nlohmann::json::array();
  for (const auto& [path, why] : r.failures) failures.push_back({{"path", path}, {"reason", why}});
  nlohmann::json low = nlohmann::json::array();
  for (const auto& [path, why] : r.low_quality_files) low.push_back({{"path", path}, {"note", why}});
  return {{"files", r.files_seen},       {"ok", r.ok},
          {"low_quality", r.low_quality}, {"failed", r.failed},
          {"skipped_unchanged", r.skipped_unchanged}, {"removed", r.removed},
          {"pages", r.pages},            {"chunks", r.chunks},
          {"embedded", r.embedded},      {"bytes", r.bytes},
          {"seconds", r.wall_s},         {"pages_per_s", r.wall_s > 0 ? r.pages / r.wall_s : 0.0},
          {"mb_per_s", r.wall_s > 0 ? r.bytes / 1e6 / r.wall_s : 0.0},
          {"stage_busy_s", r.stage_busy_s}, {"peak_rss_bytes", r.peak_rss_bytes},
          {"failure_reasons", r.failure_reasons}, {"failures", failures}, {"low_quality_files", low}};
}

void print_report(const IngestReport& r, const std::string& index) {
  std::printf("%d files: %d indexed, %d low quality, %d failed, %d unchanged, %d removed\n", r.files_seen, r.ok,
              r.low_quality, r.failed, r.skipped_unchanged, r.removed);
  std::printf("%lld pages, %lld chunks%s in %.2f s: %.1f pages/s, %.1f MB/s; peak RSS %s\n",
              static_cast<long long>(r.pages), static_cast<long long>(r.chunks),
              r.embedded ? fmt::format(", {} embedded", r.embedded).c_str() : "", r.wall_s,
              r.wall_s > 0 ? r.pages / r.wall_s : 0.0, r.wall_s > 0 ? r.bytes / 1e6 / r.wall_s : 0.0,
              human_bytes(static_cast<uint64_t>(r.peak_rss_bytes)).c_str());
  std::string stages;
  for (const char* s : {"extract", "normalise", "chunk", "write", "embed"}) {
    if (auto it = r.stage_busy_s.find(s); it != r.stage_busy_s.end()) stages += fmt::format("  {} {:.2f} s", s, it->second);
  }
  std::printf("busy time per stage:%s\n", stages.c_str());
  for (const auto& [path, why] : r.failures) std::printf("failed: %s: %s\n", path.c_str(), why.c_str());
  for (const auto& [path, why] : r.low_quality_files) std::printf("low quality: %s: %s\n", path.c_str(), why.c_str());
  std::printf("index: %s\n", index.c_str());
}

// Ingests with the CLI's options; shared by `ingest` and `eval-retrieval --collection`.
IngestReport ingest(const IngestFlags& o) {
  if (o.index.empty()) fail(ErrorCode::InvalidArgument, "--index DIR is required");
  std::unique_ptr<Embedder> embedder;
  if (!o.embed.empty()) embedder = std::make_unique<Embedder>(o.embed, o.threads, o.device);
  std::unique_ptr<Tokenizer> own_tokenizer;
  const Tokenizer* tok = embedder ? &embedder->tokenizer() : nullptr;
  if (!o.tokenizer.empty()) {
    own_tokenizer = Tokenizer::create(load_model(o.tokenizer).tokenizer);
    tok = own_tokenizer.get();
  }
  IngestOptions io;
  io.jobs = o.jobs;
  io.extract.ocr = parse_ocr(o.ocr);
  io.chunk.chunk_tokens = o.chunk_tokens;
  io.chunk.overlap = o.overlap;
  if (tok != nullptr) {
    io.count_tokens = [tok](std::string_view text) { return static_cast<int>(tok->encode(text, false, false).size()); };
  }
  io.embed = embedder != nullptr;
  if (embedder && static_cast<size_t>(o.chunk_tokens) + 2 > embedder->max_tokens()) {
    fail(ErrorCode::InvalidArgument, "--chunk-tokens {} does not fit {}'s context of {} tokens", o.chunk_tokens,
         embedder->name(), embedder->max_tokens());
  }
  io.follow_hidden = o.hidden;
  fs::create_directories(o.index);
  io.exclude.push_back(fs::canonical(o.index).string());
  // Validate chunk options before touching the index.
  chunk_document(ExtractedDocument{}, io.chunk, estimated_token_counter());
  // Everything that shapes the chunks: an index built otherwise is processed again.
  const std::string settings =
      fmt::format("ocr={} chunk_tokens={} overlap={} tokenizer={} low_quality={}", o.ocr, o.chunk_tokens, o.overlap,
                  tok ? fs::path(o.tokenizer.empty() ? o.embed : o.tokenizer).filename().string() : "estimate",
                  o.low_quality);
  IndexSink sink(o.index, embedder.get(), o.low_quality, settings);
  ProgressBar bar("ingest");
  auto report = run_ingest(o.paths, io, sink, [&](const IngestProgress& p) {
    if (o.quiet) return;
    const double rate = p.elapsed_s > 0 ? p.pages / p.elapsed_s : 0;
    const double per_file = p.done > 0 ? p.elapsed_s / p.done : 0;
    const std::string status = fmt::format("docs, {:.1f} pages/s, ETA {}", rate,
                                           p.discovery_finished ? eta(per_file * (p.found - p.done)) : "?");
    bar.update(static_cast<size_t>(p.done), static_cast<size_t>(std::max(p.found, 1)), status);
  });
  bar.finish();
  for (const auto& dir : report.unlisted_folders) {
    std::fprintf(stderr, "vireo: warning: could not list %s; its indexed files were kept\n", dir.c_str());
  }
  return report;
}

void add_ingest_flags(CLI::App* cmd, IngestFlags& o) {
  cmd->add_option("--index", o.index, "Index folder (created when missing)")->required();
  cmd->add_option("-j,--jobs", o.jobs, "Extraction workers (default: one per core)");
  cmd->add_option("--ocr", o.ocr, "OCR for scans and images: auto (pages without text), always, never")
      ->check(CLI::IsMember({"auto", "always", "never"}));
  cmd->add_option("--embed", o.embed, "Encoder model (GGUF) for chunk vectors");
  cmd->add_option("--tokenizer", o.tokenizer, "Model file whose tokenizer budgets chunks (default: --embed's, else an estimate)");
  cmd->add_option("--chunk-tokens", o.chunk_tokens, "Tokens per chunk")->capture_default_str();
  cmd->add_option("--overlap", o.overlap, "Tokens repeated between consecutive chunks of a section")->capture_default_str();
  cmd->add_flag("--index-low-quality", o.low_quality, "Also index chunks of documents flagged low quality");
  cmd->add_flag("--hidden", o.hidden, "Take dot-files and descend into dot-folders");
  cmd->add_option("-t,--threads", o.threads, "CPU threads for the encoder");
  add_device_option(cmd, o.device);
  cmd->add_flag("--json", o.json, "Print the report as JSON");
  cmd->add_flag("-q,--quiet", o.quiet, "No progress bar");
}

void print_hits(const std::vector<SearchHit>& hits, bool json) {
  if (json) {
    nlohmann::json arr = nlohmann::json::array();
    for (size_t i = 0; i < hits.size(); ++i) {
      const auto& c = hits[i].chunk;
      arr.push_back({{"rank", i + 1},           {"score", hits[i].score},    {"chunk_id", c.id},
                     {"document", c.doc_path}, {"title", c.doc_title},      {"page", c.page},
                     {"heading_path", c.heading_path}, {"snippet", hits[i].snippet}, {"text", c.text},
                     {"char_start", c.char_start}, {"char_end", c.char_end}});
    }
    std::printf("%s\n", nlohmann::json{{"results", arr}}.dump().c_str());
    return;
  }
  const bool color = isatty(STDOUT_FILENO) != 0;
  for (size_t i = 0; i < hits.size(); ++i) {
    const auto& c = hits[i].chunk;
    std::string snippet = hits[i].snippet;
    std::replace(snippet.begin(), snippet.end(), '\n', ' ');  // one line per hit
    if (color) {  // the store marks matches with [ ]
      std::string s;
      for (char ch : snippet) s += ch == '[' ? std::string("\x1b[1;33m") : ch == ']' ? std::string("\x1b[0m") : std::string(1, ch);
      snippet = s;
    }
    std::printf("%2zu. %s  p.%d  score %.3f\n", i + 1, c.doc_path.c_str(), c.page, hits[i].score);
    if (!c.heading_path.empty()) std::printf("    %s\n", c.heading_path.c_str());
    std::printf("    %s\n", snippet.c_str());
  }
  if (hits.empty()) std::printf("no results\n");
}

}  // namespace

Runner add_ingest(CLI::App& app) {
  auto* cmd = app.add_subcommand("ingest", "Extract, chunk and index documents (PDF, scans, images, HTML, Markdown, DOCX, text)");
  auto o = std::make_shared<IngestFlags>();
  cmd->add_option("paths", o->paths, "Files or folders")->required();
  add_ingest_flags(cmd, *o);
  return [o] {
    const auto report = ingest(*o);
    if (o->json) {
      std::printf("%s\n", report_json(report).dump(2).c_str());
    } else {
      print_report(report, o->index);
    }
    return 0;
  };
}

Runner add_search(CLI::App& app) {
  auto* cmd = app.add_subcommand("search", "Search an index: BM25, vectors, or both fused");
  struct Opts {
    std::string index, query, mode = "bm25", embed, device = "auto";
    int k = 10;
    unsigned threads = 0;
    bool json = false;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("--index", o->index, "Index folder")->required();
  cmd->add_option("query", o->query, "Query text")->required();
  cmd->add_option("-k", o->k, "Results")->capture_default_str()->check(CLI::Range(1, 10000));
  cmd->add_option("--mode", o->mode, "bm25, vector or hybrid (reciprocal-rank fusion)")
      ->check(CLI::IsMember({"bm25", "vector", "hybrid"}))->capture_default_str();
  cmd->add_option("--embed", o->embed, "The encoder model the index was embedded with (vector, hybrid)");
  cmd->add_option("-t,--threads", o->threads, "CPU threads for the encoder");
  add_device_option(cmd, o->device);
  cmd->add_flag("--json", o->json, "Print JSON");
  return [o] {
    auto store = IndexStore::open(o->index, false);
    std::unique_ptr<Embedder> embedder;
    if (!o->embed.empty()) embedder = std::make_unique<Embedder>(o->embed, o->threads, o->device);
    Searcher searcher(*store, embedder.get());
    const auto hits = searcher.search(o->query, parse_search_mode(o->mode), o->k);
    print_hits(hits, o->json);
    return 0;
  };
}

Runner add_classify(CLI::App& app) {
  auto* cmd = app.add_subcommand("classify", "Label each chunk (or document) of an index with a local LLM");
  struct Opts {
    std::string index, model, labels, instructions, task, device = "auto";
    bool per_document = false, redo = false, json = false;
    int parallel = 8;
    unsigned threads = 0;
    int64_t ctx = 4096;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("--index", o->index, "Index folder")->required();
  cmd->add_option("-m,--model", o->model, "Decoder model (GGUF)")->required();
  cmd->add_option("--labels", o->labels, "Comma-separated labels, e.g. \"invoice,contract,letter\"")->required();
  cmd->add_option("--instructions", o->instructions, "What the labels mean, for the model");
  cmd->add_option("--task", o->task, "Name of this label set in the index (default: the labels)");
  cmd->add_flag("--documents", o->per_document, "One label per document instead of per chunk");
  cmd->add_flag("--redo", o->redo, "Relabel items labelled by an earlier run");
  cmd->add_option("--np,--parallel", o->parallel, "Items decoded together")->capture_default_str();
  cmd->add_option("-c,--ctx-size", o->ctx, "Context (KV cells) shared by the batch")->capture_default_str();
  cmd->add_option("-t,--threads", o->threads, "CPU threads");
  add_device_option(cmd, o->device);
  cmd->add_flag("--json", o->json, "Print the summary as JSON");
  return [o] {
    ClassifyOptions co;
    for (size_t b = 0; b <= o->labels.size();) {
      size_t e = o->labels.find(',', b);
      if (e == std::string::npos) e = o->labels.size();
      std::string l = o->labels.substr(b, e - b);
      l.erase(0, l.find_first_not_of(' '));
      l.erase(l.find_last_not_of(' ') + 1);
      co.labels.push_back(l);
      b = e + 1;
    }
    co.instructions = o->instructions;
    co.task = o->task;
    co.per_document = o->per_document;
    co.redo = o->redo;
    co.parallel = o->parallel;
    auto store = IndexStore::open(o->index, false);
    EngineOptions eo;
    eo.device = o->device;
    eo.n_threads = o->threads;
    eo.n_ctx = o->ctx;
    TextEngine engine(o->model, eo);
    ProgressBar bar("classify");
    const auto r = classify_index(*store, engine, co, [&](int64_t d, int64_t t) {
      bar.update(static_cast<size_t>(d), static_cast<size_t>(t), "");
    });
    bar.finish();
    if (o->json) {
      std::printf("%s\n", nlohmann::json{{"task", r.task}, {"labelled", r.labelled}, {"skipped", r.skipped},
                                         {"counts", r.counts}, {"seconds", r.seconds}}.dump().c_str());
    } else {
      std::printf("task '%s': %lld labelled, %lld already labelled, %.1f s (%.1f items/s)\n", r.task.c_str(),
                  static_cast<long long>(r.labelled), static_cast<long long>(r.skipped), r.seconds,
                  r.seconds > 0 ? r.labelled / r.seconds : 0.0);
      for (const auto& [label, n] : r.counts) std::printf("  %-20s %lld\n", label.c_str(), static_cast<long long>(n));
    }
    return 0;
  };
}

Runner add_ask(CLI::App& app) {
  auto* cmd = app.add_subcommand("ask", "Answer a question from an index, with citations");
  struct Opts {
    std::string index, model, question, mode = "bm25", embed, device = "auto";
    int k = 5, max_tokens = 512;
    double temp = 0.0;
    uint64_t seed = 0;
    unsigned threads = 0;
    int64_t ctx = 4096;
    bool json = false;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("--index", o->index, "Index folder")->required();
  cmd->add_option("-m,--model", o->model, "Decoder model (GGUF)")->required();
  cmd->add_option("question", o->question, "The question")->required();
  cmd->add_option("-k", o->k, "Chunks retrieved")->capture_default_str()->check(CLI::Range(1, 1000));
  cmd->add_option("--mode", o->mode, "Retrieval: bm25, vector or hybrid")
      ->check(CLI::IsMember({"bm25", "vector", "hybrid"}))->capture_default_str();
  cmd->add_option("--embed", o->embed, "The index's encoder model (vector, hybrid)");
  cmd->add_option("-n,--n-predict", o->max_tokens, "Most tokens in the answer")->capture_default_str();
  cmd->add_option("--temp", o->temp, "Temperature (0: greedy)")->capture_default_str();
  cmd->add_option("-s,--seed", o->seed, "Sampling seed");
  cmd->add_option("-c,--ctx-size", o->ctx, "Context size")->capture_default_str();
  cmd->add_option("-t,--threads", o->threads, "CPU threads");
  add_device_option(cmd, o->device);
  cmd->add_flag("--json", o->json, "Print JSON (answer, sources, timings) instead of streaming");
  return [o] {
    auto store = IndexStore::open(o->index, false);
    std::unique_ptr<Embedder> embedder;
    if (!o->embed.empty()) embedder = std::make_unique<Embedder>(o->embed, o->threads, o->device);
    EngineOptions eo;
    eo.device = o->device;
    eo.n_threads = o->threads;
    eo.n_ctx = o->ctx;
    TextEngine engine(o->model, eo);
    AskOptions ao;
    ao.k = o->k;
    ao.mode = parse_search_mode(o->mode);
    ao.max_tokens = o->max_tokens;
    ao.temperature = o->temp;
    ao.seed = o->seed;
    const auto r = ask_index(*store, engine, embedder.get(), o->question, ao, [&](const std::string& text) {
      if (!o->json) {
        std::fwrite(text.data(), 1, text.size(), stdout);
        std::fflush(stdout);
      }
      return true;
    });
    if (o->json) {
      nlohmann::json sources = nlohmann::json::array();
      for (size_t i = 0; i < r.sources.size(); ++i) {
        const auto& c = r.sources[i].chunk;
        sources.push_back({{"n", i + 1}, {"document", c.doc_path}, {"page", c.page}, {"heading_path", c.heading_path},
                           {"chunk_id", c.id}});
      }
      std::printf("%s\n", nlohmann::json{{"answer", r.answer}, {"sources", sources},
                                         {"prompt_tokens", r.generation.prompt_tokens.size()},
                                         {"completion_tokens", r.generation.tokens.size()},
                                         {"finish_reason", r.generation.finish}}.dump().c_str());
    } else {
      std::printf("\n\nSources:\n");
      for (size_t i = 0; i < r.sources.size(); ++i) {
        const auto& c = r.sources[i].chunk;
        std::printf("[%zu] %s, page %d%s%s\n", i + 1, c.doc_path.c_str(), c.page, c.heading_path.empty() ? "" : " — ",
                    c.heading_path.c_str());
      }
    }
    return 0;
  };
}

Runner add_eval_retrieval(CLI::App& app) {
  auto* cmd = app.add_subcommand("eval-retrieval", "nDCG@10, recall@100 and MRR of an index on judged queries");
  struct Opts {
    IngestFlags ingest;
    std::string queries, qrels, collection, mode = "bm25";
    bool json = false;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("--index", o->ingest.index, "Index folder (documents named by their ids)")->required();
  cmd->add_option("--queries", o->queries, "Queries: BEIR jsonl or SMART .I/.W");
  cmd->add_option("--qrels", o->qrels, "Judgements: BEIR tsv, TREC, Cranfield or CISI.REL");
  cmd->add_option("--collection", o->collection,
                  "A classic collection folder (Cranfield, CISI): its queries and judgements, and its documents "
                  "ingested into an empty index first");
  cmd->add_option("--mode", o->mode, "bm25, vector or hybrid")->check(CLI::IsMember({"bm25", "vector", "hybrid"}))->capture_default_str();
  cmd->add_option("--embed", o->ingest.embed, "Encoder model (vector, hybrid; and for ingesting --collection)");
  cmd->add_option("-t,--threads", o->ingest.threads, "CPU threads for the encoder");
  add_device_option(cmd, o->ingest.device);
  cmd->add_flag("--json", o->json, "Print JSON");
  return [o] {
    std::vector<EvalQuery> queries;
    Qrels qrels;
    if (!o->collection.empty()) {
      auto col = read_classic_collection(o->collection);
      queries = std::move(col.queries);
      qrels = std::move(col.qrels);
      // Documents become files named by their ids, so results map back to the judgements. Files
      // already there are left alone, so a second run (or one after an interruption) ingests only
      // what is missing.
      const fs::path corpus = fs::path(o->ingest.index) / "corpus";
      fs::create_directories(corpus);
      for (const auto& [id, text] : col.docs) {
        const fs::path file = corpus / (id + ".txt");
        std::error_code ec;
        if (fs::file_size(file, ec) == text.size() && !ec) continue;
        std::ofstream out(file, std::ios::binary);
        out << text;
        if (!out.flush()) fail(ErrorCode::Io, "cannot write {}", file.string());
      }
      o->ingest.paths = {corpus.string()};
      o->ingest.quiet = true;
      const auto r = ingest(o->ingest);
      if (r.ok + r.low_quality > 0) {
        std::fprintf(stderr, "ingested %d documents (%lld chunks) in %.2f s\n", r.ok + r.low_quality,
                     static_cast<long long>(r.chunks), r.wall_s);
      }
    } else {
      if (o->queries.empty() || o->qrels.empty()) fail(ErrorCode::InvalidArgument, "give --queries and --qrels, or --collection");
      queries = read_queries(o->queries);
      qrels = read_qrels(o->qrels);
    }
    auto store = IndexStore::open(o->ingest.index, false);
    std::unique_ptr<Embedder> embedder;
    if (!o->ingest.embed.empty()) embedder = std::make_unique<Embedder>(o->ingest.embed, o->ingest.threads, o->ingest.device);
    const SearchMode mode = parse_search_mode(o->mode);
    Searcher searcher(*store, embedder.get());
    std::map<std::string, std::vector<std::string>> run;
    ProgressBar bar("queries");
    size_t done = 0;
    for (const auto& q : queries) {
      auto& ranked = run[q.id];
      for (const auto& hit : searcher.search(q.text, mode, 1000)) {
        const std::string doc = fs::path(hit.chunk.doc_path).stem().string();
        if (std::find(ranked.begin(), ranked.end(), doc) == ranked.end()) ranked.push_back(doc);
        if (ranked.size() >= 100) break;
      }
      bar.update(++done, queries.size(), "");
    }
    bar.finish();
    const auto r = evaluate_run(run, qrels);
    if (o->json) {
      std::printf("%s\n", nlohmann::json{{"queries", r.queries}, {"ndcg@10", r.ndcg10}, {"recall@100", r.recall100},
                                         {"mrr", r.mrr}, {"mode", o->mode}}.dump().c_str());
    } else {
      std::printf("%d queries (%s): nDCG@10 %.4f  recall@100 %.4f  MRR %.4f\n", r.queries, o->mode.c_str(), r.ndcg10,
                  r.recall100, r.mrr);
    }
    return 0;
  };
}

}  // namespace vireo::cli
