#include "vireo/runtime/scheduler.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>

#include "vireo/core/error.h"
#include "vireo/runtime/json_constraint.h"

namespace vireo {
namespace {

using Clock = std::chrono::steady_clock;
double ms_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}
constexpr size_t kMaxCachedSequences = 64;
constexpr int32_t kMaxTopLogprobs = 20;

}  // namespace

// ---------------------------------------------------------------- handle

bool RequestHandle::next(std::vector<GenerationEvent>& out, std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  if (taken_final_) return false;
  if (events_.empty()) cv_.wait_for(lock, timeout, [&] { return !events_.empty(); });
  while (!events_.empty()) {
    if (events_.front().done) taken_final_ = true;
    out.push_back(std::move(events_.front()));
    events_.pop_front();
  }
  return true;
}

void RequestHandle::push(GenerationEvent e) {
  {
    std::lock_guard lock(mu_);
    if (finished_) return;
    finished_ = e.done;
    events_.push_back(std::move(e));
  }
  cv_.notify_all();
}

// ---------------------------------------------------------------- slot

struct Scheduler::Slot {
  Pending p;
  SeqId seq = -1;
  std::vector<int32_t> tokens;  // prompt, then every sampled token
  size_t n_prompt = 0;
  size_t fed = 0;  // tokens whose K and V are in the cache
  int32_t max_tokens = 0, generated = 0, cached_tokens = 0;
  std::optional<Sampler> sampler;
  std::optional<StreamDecoder> decoder;
  std::optional<StopStrings> stops;
  std::unique_ptr<JsonMatcher> matcher;
  GenerationEvent event;  // this step's text and log-probs
  Clock::time_point admitted, first_token;
  bool done = false;
  int32_t output_row = -1;  // this step's logits row, -1: none
};

// ---------------------------------------------------------------- scheduler

Scheduler::Scheduler(TextEngine& engine, SchedulerOptions options) : engine_(engine), options_(options) {
  if (options_.max_batch < 1) fail(ErrorCode::InvalidArgument, "parallel sequences must be >= 1, got {}", options_.max_batch);
  if (options_.step_tokens < 1) fail(ErrorCode::InvalidArgument, "tokens per step must be >= 1, got {}", options_.step_tokens);
  if (options_.max_queue < 0) fail(ErrorCode::InvalidArgument, "queue size must be >= 0, got {}", options_.max_queue);
  // A step always carries every running sequence's decode token.
  options_.step_tokens = std::max(options_.step_tokens, options_.max_batch);
  seq_ctx_ = options_.seq_ctx > 0 ? std::min<int64_t>(options_.seq_ctx, engine_.n_ctx()) : engine_.n_ctx();
  eog_ = engine_.eog_tokens();
  stats_.kv_cells = engine_.n_ctx();
  thread_ = std::thread([this] { run(); });
}

Scheduler::~Scheduler() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

std::shared_ptr<const ConstraintVocab> Scheduler::constraint_vocab() {
  std::lock_guard lock(vocab_mu_);
  if (!vocab_) {
    const Tokenizer& tok = engine_.tokenizer();
    std::vector<std::string> pieces(static_cast<size_t>(engine_.config().n_vocab));
    for (int32_t id = 0; id < static_cast<int32_t>(pieces.size()); ++id) {
      if (id < tok.n_vocab() && !tok.is_eog(id)) pieces[static_cast<size_t>(id)] = tok.token_to_piece(id, false);
    }
    vocab_ = std::make_shared<const ConstraintVocab>(std::move(pieces), eog_);
  }
  return vocab_;
}

std::shared_ptr<RequestHandle> Scheduler::submit(GenerationRequest request) {
  const auto n_vocab = static_cast<int32_t>(engine_.config().n_vocab);
  if (request.prompt.empty()) throw Error(ErrorCode::InvalidArgument, "the prompt is empty");
  for (int32_t t : request.prompt) {
    if (t < 0 || t >= n_vocab) fail(ErrorCode::InvalidArgument, "prompt token {} is outside the vocabulary (0..{})", t, n_vocab - 1);
  }
  if (static_cast<int64_t>(request.prompt.size()) >= seq_ctx_) {
    fail(ErrorCode::InvalidArgument, "the prompt has {} tokens but a request's context holds {}", request.prompt.size(),
         seq_ctx_);
  }
  if (request.max_tokens > 0 && static_cast<int64_t>(request.prompt.size()) + request.max_tokens > seq_ctx_) {
    fail(ErrorCode::InvalidArgument, "the prompt has {} tokens and max_tokens asks for {} more, but a request's context holds {}",
         request.prompt.size(), request.max_tokens, seq_ctx_);
  }
  request.top_logprobs = std::min(request.top_logprobs, kMaxTopLogprobs);
  auto handle = std::make_shared<RequestHandle>();
  if (request.max_tokens == 0) {  // nothing to generate: answer at once
    GenerationEvent e;
    e.done = true;
    e.finish_reason = "length";
    e.prompt_tokens = static_cast<int32_t>(request.prompt.size());
    handle->push(std::move(e));
    return handle;
  }
  {
    std::lock_guard lock(mu_);
    if (static_cast<int64_t>(queue_.size()) >= options_.max_queue) {
      throw QueueFull(fmt::format("the server is busy: {} requests are waiting", queue_.size()));
    }
    queue_.push_back(Pending{std::move(request), handle, Clock::now()});
    stats_.queued = static_cast<int64_t>(queue_.size());
  }
  cv_.notify_all();
  return handle;
}

SchedulerStats Scheduler::stats() const {
  std::lock_guard lock(mu_);
  return stats_;
}

void Scheduler::run() {
  for (;;) {
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return stop_ || !queue_.empty() || !running_.empty(); });
      if (stop_) break;
    }
    // Admit in arrival order while there is room.
    while (static_cast<int32_t>(running_.size()) < options_.max_batch) {
      Pending p;
      {
        std::lock_guard lock(mu_);
        if (queue_.empty()) break;
        p = std::move(queue_.front());
        queue_.pop_front();
      }
      if (p.handle->cancelled()) continue;
      if (!admit(p)) {
        if (running_.empty() && cached_.empty()) {
          // Nothing will free cells for it: say so instead of waiting forever.
          GenerationEvent e;
          e.done = true;
          e.finish_reason = "error";
          e.error = fmt::format("the request needs {} free KV cells; the cache has at most {}",
                                p.request.prompt.size() + static_cast<size_t>(std::max(p.request.max_tokens, 0)),
                                engine_.cache().free_cells());
          p.handle->push(std::move(e));
          continue;
        }
        std::lock_guard lock(mu_);
        queue_.push_front(std::move(p));  // waits for cells to free up
        break;
      }
    }
    try {
      step();
    } catch (const std::exception& e) {  // a failed forward ends the requests in it, not the server
      for (auto& s : running_) finish(*s, "error", e.what());
    }
    for (auto& s : running_) {
      if (s->done) retire(*s);
    }
    std::erase_if(running_, [](const std::unique_ptr<Slot>& s) { return s->done; });
    std::lock_guard lock(mu_);
    stats_.queued = static_cast<int64_t>(queue_.size());
    stats_.running = static_cast<int64_t>(running_.size());
    stats_.cached_sequences = static_cast<int64_t>(cached_.size());
    stats_.kv_cells_used = engine_.cache().n_cells() - engine_.cache().free_cells();
  }
  // Shutting down: end everything still open, and give the engine's KV cache back every cell this
  // scheduler held (the engine outlives it and may serve another).
  for (auto& s : running_) {
    if (!s->done) finish(*s, "cancelled");
    if (s->seq >= 0) engine_.cache().remove_sequence(s->seq);
  }
  running_.clear();
  for (const auto& c : cached_) engine_.cache().remove_sequence(c.seq);
  cached_.clear();
  std::lock_guard lock(mu_);
  for (auto& p : queue_) {
    GenerationEvent e;
    e.done = true;
    e.finish_reason = "cancelled";
    p.handle->push(std::move(e));
  }
  queue_.clear();
}

bool Scheduler::free_cells(int32_t capacity) {
  KvCache& cache = engine_.cache();
  while (cache.free_cells() < capacity) {
    if (!evict_lru()) return false;
  }
  return true;
}

bool Scheduler::evict_lru(SeqId keep) {
  auto lru = cached_.end();
  for (auto it = cached_.begin(); it != cached_.end(); ++it) {
    if (it->seq != keep && (lru == cached_.end() || it->last_use < lru->last_use)) lru = it;
  }
  if (lru == cached_.end()) return false;
  engine_.cache().remove_sequence(lru->seq);
  cached_.erase(lru);
  return true;
}

bool Scheduler::admit(Pending& p) {
  KvCache& cache = engine_.cache();
  const GenerationRequest& r = p.request;
  const auto n = static_cast<int64_t>(r.prompt.size());
  const int64_t room = seq_ctx_ - n;
  const auto max_tokens = static_cast<int32_t>(r.max_tokens < 0 ? room : std::min<int64_t>(r.max_tokens, room));
  const auto capacity = static_cast<int32_t>(n + max_tokens);

  auto slot = std::make_unique<Slot>();
  // The cached sequence sharing the longest prefix, when it can grow in place to the capacity.
  if (options_.prefix_cache) {
    size_t best = 0;
    auto best_it = cached_.end();
    for (auto it = cached_.begin(); it != cached_.end(); ++it) {
      const size_t limit = std::min(it->tokens.size(), r.prompt.size() - 1);  // the last prompt token is run again
      size_t k = 0;
      while (k < limit && it->tokens[k] == r.prompt[k]) ++k;
      if (k > best) best = k, best_it = it;
    }
    if (best_it != cached_.end()) {
      const SeqId reuse = best_it->seq;
      cache.truncate(reuse, static_cast<int32_t>(best));
      // The cache's blocks are all alike: older cached sequences give way for this one to grow.
      bool grown = cache.resize(reuse, capacity);
      while (!grown && evict_lru(reuse)) grown = cache.resize(reuse, capacity);
      best_it = std::find_if(cached_.begin(), cached_.end(), [&](const CachedSequence& c) { return c.seq == reuse; });
      if (grown) {
        slot->seq = reuse;
        slot->cached_tokens = static_cast<int32_t>(best);
        cached_.erase(best_it);
      } else {
        best_it->tokens.resize(best);
      }
    }
  }
  if (slot->seq < 0) {
    if (!free_cells(capacity)) return false;
    slot->seq = cache.add_sequence(capacity);
  }
  slot->p = std::move(p);
  slot->tokens = slot->p.request.prompt;
  slot->n_prompt = slot->tokens.size();
  slot->fed = static_cast<size_t>(slot->cached_tokens);
  slot->max_tokens = max_tokens;
  slot->sampler.emplace(slot->p.request.sampling);
  slot->decoder.emplace(engine_.tokenizer(), /*unparse_special=*/false);
  slot->stops.emplace(slot->p.request.stop);
  if (slot->p.request.json) slot->matcher = std::make_unique<JsonMatcher>(slot->p.request.json, constraint_vocab());
  slot->admitted = Clock::now();
  {
    std::lock_guard lock(mu_);
    stats_.prompt_tokens += static_cast<int64_t>(slot->n_prompt);
    stats_.cached_prompt_tokens += slot->cached_tokens;
  }
  running_.push_back(std::move(slot));
  return true;
}

void Scheduler::step() {
  const auto now = Clock::now();
  for (auto& s : running_) {
    if (s->done) continue;
    if (s->p.handle->cancelled()) finish(*s, "cancelled");
    else if (now >= s->p.request.deadline) finish(*s, "timeout");
  }
  KvCache& cache = engine_.cache();
  ForwardBatch batch;
  int32_t budget = options_.step_tokens;
  int64_t decode_tokens = 0;
  std::vector<Slot*> outputs;
  // Decoding sequences first: each gives its last token.
  for (auto& s : running_) {
    s->output_row = -1;
    if (s->done || s->fed < s->n_prompt) continue;
    const int32_t t[1] = {s->tokens[s->fed]};
    cache.append(batch, s->seq, t, true);
    ++s->fed;
    --budget;
    ++decode_tokens;
    s->output_row = static_cast<int32_t>(outputs.size());
    outputs.push_back(s.get());
  }
  // Then prompt chunks, oldest request first, in what is left of the budget.
  for (auto& s : running_) {
    if (s->done || s->fed >= s->n_prompt || budget <= 0) continue;
    const size_t chunk = std::min<size_t>(s->n_prompt - s->fed, static_cast<size_t>(budget));
    const bool last = s->fed + chunk == s->n_prompt;
    cache.append(batch, s->seq, std::span<const int32_t>(s->tokens).subspan(s->fed, chunk), last);
    s->fed += chunk;
    budget -= static_cast<int32_t>(chunk);
    if (last) {
      s->output_row = static_cast<int32_t>(outputs.size());
      outputs.push_back(s.get());
    }
  }
  if (batch.size() == 0) return;
  const auto n_vocab = static_cast<size_t>(engine_.config().n_vocab);
  int64_t generated = 0;
  // Rows whose draw needs nothing from the host (no bias or penalties, no JSON constraint, no
  // log-probs) take their token where the logits are, in the same step: only ids cross to the
  // host. Each other row then copies its own logits and samples here.
  auto on_backend = [](const Slot* s) { return s->sampler->backend_can_draw() && !s->matcher && s->p.request.top_logprobs < 0; };
  const auto n_out = static_cast<int64_t>(outputs.size());
  Buffer ids;
  if (n_out > 0) {
    if (chosen_.rows() < n_out) chosen_ = engine_.backend().alloc(DType::I32, n_out, 1);
    ids = chosen_.rows_view(0, n_out);
    batch.chosen_ids = &ids;
    std::vector<Sampler*> drawn(outputs.size());  // in output order, as outputs are
    for (Slot* s : outputs) drawn[static_cast<size_t>(s->output_row)] = on_backend(s) ? &*s->sampler : nullptr;
    batch.draws = backend_draws(drawn);
  }
  const auto started = Clock::now();
  const Buffer out = engine_.language_model().forward(batch, cache.buffers());
  chosen_host_.resize(outputs.size());
  if (n_out > 0) engine_.backend().download(ids, chosen_host_.data());
  const auto forwarded = Clock::now();
  for (Slot* s : outputs) {
    const auto row = static_cast<size_t>(s->output_row);
    if (on_backend(s) && chosen_host_[row] < 0) {
      finish(*s, "error", "every token's logit is -inf: there is nothing to sample");
      continue;  // no token
    }
    if (on_backend(s)) {
      accept_token(*s, chosen_host_[row], std::nullopt, {});
    } else {
      logits_.resize(n_vocab);  // kept between steps: no large allocation per token
      engine_.backend().download(out.rows_view(static_cast<int64_t>(row), 1), logits_.data());
      sample_slot(*s, logits_);
    }
    ++generated;
  }
  for (Slot* s : outputs) {
    if (!s->event.text.empty() || !s->event.logprobs.empty()) {
      s->p.handle->push(std::move(s->event));
      s->event = GenerationEvent{};
    }
  }
  const auto sampled = Clock::now();  // with the text of every event
  auto us = [](Clock::duration d) { return std::chrono::duration_cast<std::chrono::microseconds>(d).count(); };
  std::lock_guard lock(mu_);
  ++stats_.steps;
  stats_.step_tokens += static_cast<int64_t>(batch.size());
  stats_.decode_tokens += decode_tokens;
  stats_.forward_us += us(forwarded - started);
  stats_.sample_us += us(sampled - forwarded);
  stats_.generated_tokens += generated;
  stats_.last_batch = static_cast<int64_t>(outputs.size());
}

void Scheduler::sample_slot(Slot& s, std::span<float> logits) {
  const GenerationRequest& r = s.p.request;
  // Log-probs come from the model's own distribution, before constraints and sampling settings.
  float log_z = 0;
  if (r.top_logprobs >= 0) {
    const float mx = *std::max_element(logits.begin(), logits.end());
    double sum = 0;
    for (float v : logits) sum += std::exp(static_cast<double>(v - mx));
    log_z = mx + static_cast<float>(std::log(sum));
  }
  std::vector<std::pair<int32_t, float>> top;
  if (r.top_logprobs > 0) {
    std::vector<int32_t> ids(logits.size());
    for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int32_t>(i);
    const auto k = std::min<size_t>(static_cast<size_t>(r.top_logprobs), ids.size());
    std::partial_sort(ids.begin(), ids.begin() + static_cast<ptrdiff_t>(k), ids.end(),
                      [&](int32_t a, int32_t b) { return logits[static_cast<size_t>(a)] > logits[static_cast<size_t>(b)]; });
    for (size_t i = 0; i < k; ++i) top.emplace_back(ids[i], logits[static_cast<size_t>(ids[i])] - log_z);
  }
  std::optional<float> raw_logprob;
  if (s.matcher) s.matcher->mask(logits);
  std::vector<float> raw;
  if (r.top_logprobs >= 0) raw.assign(logits.begin(), logits.end());  // the sampler edits the row
  const int32_t token = s.sampler->sample(logits, s.tokens);
  if (r.top_logprobs >= 0) raw_logprob = raw[static_cast<size_t>(token)] - log_z;
  accept_token(s, token, raw_logprob, std::move(top));
}

void Scheduler::accept_token(Slot& s, int32_t token, std::optional<float> raw_logprob, std::vector<std::pair<int32_t, float>> top) {
  const GenerationRequest& r = s.p.request;
  if (s.matcher) s.matcher->accept(token);
  if (s.generated == 0) s.first_token = Clock::now();
  ++s.generated;
  s.tokens.push_back(token);

  const bool eog = std::find(eog_.begin(), eog_.end(), token) != eog_.end();
  if (eog && !r.ignore_eos) {
    finish(s, "stop");
    return;
  }
  s.event.text += s.stops->feed(s.decoder->push(token));
  if (raw_logprob) s.event.logprobs.push_back(TokenLogprob{token, *raw_logprob, std::move(top)});
  if (s.stops->stopped() || (s.matcher && s.matcher->complete())) finish(s, "stop");
  else if (s.generated >= s.max_tokens) finish(s, "length");
}

void Scheduler::finish(Slot& s, const std::string& reason, const std::string& error) {
  if (s.done) return;
  s.done = true;
  if (reason == "error") s.fed = 0;  // its cells may be half written: not kept for reuse
  if (reason != "error" && !s.stops->stopped()) {
    s.event.text += s.stops->feed(s.decoder->flush());
    s.event.text += s.stops->flush();
  }
  GenerationEvent e = std::move(s.event);
  s.event = GenerationEvent{};
  e.done = true;
  e.finish_reason = reason;
  e.error = error;
  e.prompt_tokens = static_cast<int32_t>(s.n_prompt);
  e.completion_tokens = s.generated;
  e.cached_tokens = s.cached_tokens;
  const auto now = Clock::now();
  e.queue_ms = ms_between(s.p.submitted, s.admitted);
  e.ttft_ms = s.generated > 0 ? ms_between(s.p.submitted, s.first_token) : 0;
  e.total_ms = ms_between(s.p.submitted, now);
  s.p.handle->push(std::move(e));
  std::lock_guard lock(mu_);
  ++stats_.requests_done;
}

void Scheduler::retire(Slot& s) {
  KvCache& cache = engine_.cache();
  if (!options_.prefix_cache || s.fed == 0) {
    cache.remove_sequence(s.seq);
    return;
  }
  cache.truncate(s.seq, static_cast<int32_t>(s.fed));
  cache.resize(s.seq, static_cast<int32_t>(s.fed));  // keep only the filled cells
  s.tokens.resize(s.fed);
  cached_.push_back(CachedSequence{s.seq, std::move(s.tokens), ++clock_});
  if (cached_.size() > kMaxCachedSequences) evict_lru();
}

}  // namespace vireo
