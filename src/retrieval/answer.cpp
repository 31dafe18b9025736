#include "vireo/retrieval/answer.h"

#include <algorithm>
#include <chrono>
#include <deque>
#include <optional>

#include <fmt/format.h>

#include "vireo/core/error.h"
#include "vireo/core/utf8.h"
#include "vireo/runtime/json_constraint.h"
#include "vireo/runtime/scheduler.h"

namespace vireo {
namespace {

// The model's chat template when it has one; a plain instruction layout otherwise.
std::vector<int32_t> render_prompt(TextEngine& engine, const std::string& system, const std::string& user,
                                   const std::string& plain_suffix) {
  if (engine.has_chat_template()) {
    nlohmann::json messages = nlohmann::json::array();
    if (!system.empty()) messages.push_back({{"role", "system"}, {"content", system}});
    messages.push_back({{"role", "user"}, {"content", user}});
    return engine.tokenize(engine.render_chat(messages, true), true);
  }
  return engine.tokenize(system + "\n\n" + user + plain_suffix, true);
}

}  // namespace

ClassifyReport classify_index(IndexStore& store, TextEngine& engine, const ClassifyOptions& options,
                              const std::function<void(int64_t, int64_t)>& progress) {
  const auto t0 = std::chrono::steady_clock::now();
  if (options.labels.size() < 2) fail(ErrorCode::InvalidArgument, "--labels needs at least two labels");
  for (const auto& l : options.labels) {
    if (l.empty()) fail(ErrorCode::InvalidArgument, "--labels has an empty label");
  }
  ClassifyReport report;
  report.task = options.task;
  if (report.task.empty()) {
    for (const auto& l : options.labels) report.task += (report.task.empty() ? "" : ",") + l;
  }
  std::string label_list;
  for (const auto& l : options.labels) label_list += (label_list.empty() ? "" : ", ") + l;
  const std::string system = fmt::format(
      "You classify passages of documents. Answer with exactly one of these labels: {}.{}{}", label_list,
      options.instructions.empty() ? "" : "\n", options.instructions);
  const auto grammar = JsonGrammar::from_schema(nlohmann::json{{"enum", options.labels}});

  // The items, read lazily so memory stays flat however large the index: every chunk, or each
  // document with its first chunks' text standing for all of its chunks.
  struct Item {
    std::vector<int64_t> chunk_ids;
    std::string text;
  };
  std::vector<DocumentRecord> docs;
  size_t next_doc = 0;
  int64_t after_chunk = 0;
  std::deque<Item> buffered;
  auto next_item = [&]() -> std::optional<Item> {
    while (true) {
      if (!buffered.empty()) {
        Item item = std::move(buffered.front());
        buffered.pop_front();
        if (!options.redo && store.label(item.chunk_ids.front(), report.task)) {
          ++report.skipped;
          continue;
        }
        return item;
      }
      if (options.per_document) {
        if (next_doc >= docs.size()) return std::nullopt;
        const auto& d = docs[next_doc++];
        if (d.status == DocStatus::Failed) continue;
        Item item;
        for (const auto& c : store.chunks_of(d.id)) {
          item.chunk_ids.push_back(c.id);
          if (static_cast<int>(item.text.size()) < options.max_chunk_chars) item.text += c.text + "\n";
        }
        if (!item.chunk_ids.empty()) buffered.push_back(std::move(item));
      } else {
        auto batch = store.chunks_in_order(after_chunk, 256);
        if (batch.empty()) return std::nullopt;
        after_chunk = batch.back().id;
        for (auto& c : batch) buffered.push_back(Item{{c.id}, std::move(c.text)});
      }
    }
  };
  if (options.per_document) docs = store.documents();
  const int64_t total = options.per_document ? static_cast<int64_t>(docs.size()) : store.chunk_count();

  // Room for the longest label as a JSON string, whatever its tokens.
  int32_t max_tokens = 8;
  for (const auto& l : options.labels) {
    max_tokens = std::max<int32_t>(max_tokens, static_cast<int32_t>(engine.tokenize(nlohmann::json(l).dump(), false).size()) + 8);
  }

  SchedulerOptions so;
  so.max_batch = std::max(1, options.parallel);
  so.step_tokens = 256;
  Scheduler scheduler(engine, so);
  struct InFlight {
    Item item;
    std::shared_ptr<RequestHandle> handle;
    std::string text;
  };
  std::deque<InFlight> in_flight;
  int64_t done = 0;
  bool exhausted = false;
  while (true) {
    while (!exhausted && static_cast<int>(in_flight.size()) < 2 * so.max_batch) {
      auto item = next_item();
      if (!item) {
        exhausted = true;
        break;
      }
      GenerationRequest req;
      req.prompt = render_prompt(
          engine, system,
          fmt::format("Passage:\n{}\n\nLabel:", utf8_truncate(item->text, static_cast<size_t>(options.max_chunk_chars), " …")),
          "\nAnswer: ");
      req.max_tokens = max_tokens;
      req.json = grammar;
      auto handle = scheduler.submit(std::move(req));
      in_flight.push_back(InFlight{std::move(*item), std::move(handle), {}});
    }
    if (in_flight.empty()) break;
    InFlight& f = in_flight.front();
    std::vector<GenerationEvent> events;
    std::string finish, error;
    while (finish.empty() && f.handle->next(events, std::chrono::milliseconds(200))) {
      for (auto& e : events) {
        f.text += e.text;
        if (e.done) {
          finish = e.finish_reason;
          error = e.error;
        }
      }
      events.clear();
    }
    if (finish == "error") fail(ErrorCode::InvalidArgument, "classification failed: {}", error);
    std::string label;
    try {
      label = nlohmann::json::parse(f.text).get<std::string>();
    } catch (const std::exception&) {
      fail(ErrorCode::InvalidFile, "the model's answer {} is not a label (generation ended: {})", f.text,
           finish.empty() ? "no final event" : finish);
    }
    store.put_labels(f.item.chunk_ids, report.task, label);
    ++report.labelled;
    ++report.counts[label];
    in_flight.pop_front();
    if (progress) progress(++done + report.skipped, total);
  }
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return report;
}

AskResult ask_index(IndexStore& store, TextEngine& engine, Embedder* embedder, const std::string& question,
                    const AskOptions& options, const std::function<bool(const std::string&)>& on_text) {
  AskResult result;
  Searcher searcher(store, embedder);
  result.sources = searcher.search(question, options.mode, options.k);
  const std::string system =
      "Answer the question using only the numbered sources. Cite the sources you use as [1], [2]. "
      "If the sources do not contain the answer, say so.";
  // What the prompt costs without sources (template, instructions, the question) comes first.
  const int64_t frame = static_cast<int64_t>(
      render_prompt(engine, system, fmt::format("Sources:\n\nQuestion: {}", question), "\nAnswer: ").size());
  const int64_t room = engine.n_ctx() - options.max_tokens - frame;
  if (room < 0) {
    fail(ErrorCode::InvalidArgument, "the question and {} answer tokens do not fit the context of {} tokens",
         options.max_tokens, engine.n_ctx());
  }
  const int64_t budget = options.max_context_tokens > 0 ? std::min<int64_t>(options.max_context_tokens, room) : room;
  std::string sources;
  int64_t used = 0;
  size_t kept = 0;
  for (const auto& hit : result.sources) {
    const auto& c = hit.chunk;
    std::string entry = fmt::format("[{}] {} (page {}{}{})\n{}\n\n", kept + 1, c.doc_title.empty() ? c.doc_path : c.doc_title,
                                    c.page, c.heading_path.empty() ? "" : ", ", c.heading_path, c.text);
    const int64_t n = static_cast<int64_t>(engine.tokenize(entry, false).size());
    if (used + n > budget) break;
    used += n;
    sources += entry;
    ++kept;
  }
  result.sources.resize(kept);
  const std::string user = result.sources.empty()
                               ? fmt::format("No sources were found.\n\nQuestion: {}", question)
                               : fmt::format("Sources:\n\n{}Question: {}", sources, question);
  const auto prompt = render_prompt(engine, system, user, "\nAnswer: ");
  TextGenerateOptions go;
  go.gen.max_tokens = options.max_tokens;
  go.gen.sampling.temperature = static_cast<float>(options.temperature);
  go.gen.sampling.seed = options.seed;
  result.generation = engine.generate(prompt, go, on_text);
  result.answer = result.generation.text;
  return result;
}

}  // namespace vireo
