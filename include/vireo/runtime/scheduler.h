// Continuous batching over one decoder: requests join and leave the running batch at every step,
// prompts are processed in chunks under a per-step token budget (so running streams keep a steady
// pace), finished sequences stay in the KV cache as a prefix cache until their cells are needed.
// One thread, the scheduler's own, owns the model, the cache and every sampler; other threads only
// submit plain requests and read events from their handles.
#pragma once
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "vireo/runtime/sampler.h"
#include "vireo/runtime/text_engine.h"

namespace vireo {

class JsonGrammar;
class ConstraintVocab;

struct GenerationRequest {
  std::vector<int32_t> prompt;
  int32_t max_tokens = -1;  // -1: until the per-request context is full
  SamplingParams sampling;
  std::vector<std::string> stop;  // stop strings, never part of the text
  bool ignore_eos = false;
  int32_t top_logprobs = -1;  // -1: no log-probs; 0..20: the chosen token's and that many alternatives
  std::shared_ptr<const JsonGrammar> json;  // output constrained to this grammar when set
  std::chrono::steady_clock::time_point deadline = std::chrono::steady_clock::time_point::max();
};

struct TokenLogprob {
  int32_t token = 0;
  float logprob = 0;
  std::vector<std::pair<int32_t, float>> top;  // the most likely tokens, best first
};

// What a request's stream carries: new text as it becomes final, then a last event with done set.
struct GenerationEvent {
  std::string text;
  std::vector<TokenLogprob> logprobs;  // one per token whose text is in this event (when asked)
  bool done = false;
  // When done:
  std::string finish_reason;  // "stop", "length", "cancelled", "timeout", "error"
  std::string error;          // for "error"
  int32_t prompt_tokens = 0, completion_tokens = 0, cached_tokens = 0;
  double queue_ms = 0, ttft_ms = 0, total_ms = 0;  // from submission
};

// Shared by the scheduler (writer) and the submitting thread (reader).
class RequestHandle {
 public:
  // Moves the pending events into `out`; waits up to `timeout` when there are none. Returns false
  // once the final event has been taken (nothing more will come).
  bool next(std::vector<GenerationEvent>& out, std::chrono::milliseconds timeout);
  // The client went away: generation stops at the next step and its cells are freed.
  void cancel() { cancelled_ = true; }
  bool cancelled() const { return cancelled_; }

 private:
  friend class Scheduler;
  void push(GenerationEvent e);
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<GenerationEvent> events_;
  bool finished_ = false, taken_final_ = false;
  std::atomic<bool> cancelled_{false};
};

struct SchedulerOptions {
  int32_t max_batch = 16;     // sequences running together
  int32_t step_tokens = 128;  // tokens per forward (decode tokens first, then prompt chunks)
  int32_t max_queue = 256;    // requests waiting for a place; more are refused (QueueFull)
  int64_t seq_ctx = 0;        // most tokens (prompt + completion) of one request; 0: the cache's size
  bool prefix_cache = true;   // keep finished sequences' KV for later prompts that share a prefix
};

struct SchedulerStats {
  int64_t queued = 0, running = 0, cached_sequences = 0;
  int64_t kv_cells = 0, kv_cells_used = 0;
  int64_t requests_done = 0, prompt_tokens = 0, cached_prompt_tokens = 0, generated_tokens = 0;
  int64_t steps = 0, step_tokens = 0;  // forwards and tokens they carried
  int64_t decode_tokens = 0;           // of those, one-token rows of decoding sequences
  int64_t last_batch = 0;              // sequences in the last forward
  // Where the scheduler thread's time goes, in microseconds: the forward with its copy of logits
  // or token ids to the host, then sampling and text (detokenizing, stop strings, events).
  int64_t forward_us = 0, sample_us = 0;
};

// Thrown by submit() when the waiting queue is full (the server answers 429).
class QueueFull : public Error {
 public:
  explicit QueueFull(std::string message) : Error(ErrorCode::InvalidArgument, std::move(message)) {}
};

class Scheduler {
 public:
  Scheduler(TextEngine& engine, SchedulerOptions options);
  ~Scheduler();  // ends every request ("cancelled") and joins the thread
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // Validates and queues; throws InvalidArgument when the request can never fit, QueueFull when
  // the queue is full.
  std::shared_ptr<RequestHandle> submit(GenerationRequest request);
  SchedulerStats stats() const;
  const SchedulerOptions& options() const { return options_; }
  int64_t seq_ctx() const { return seq_ctx_; }
  // The vocabulary as output constraints see it (built on first use).
  std::shared_ptr<const ConstraintVocab> constraint_vocab();

 private:
  struct Slot;
  struct Pending {
    GenerationRequest request;
    std::shared_ptr<RequestHandle> handle;
    std::chrono::steady_clock::time_point submitted;
  };
  void run();
  bool admit(Pending& p);
  void step();
  void sample_slot(Slot& slot, std::span<float> logits);
  void accept_token(Slot& slot, int32_t token, std::optional<float> logprob, std::vector<std::pair<int32_t, float>> top);
  void finish(Slot& slot, const std::string& reason, const std::string& error = {});
  void retire(Slot& slot);
  bool free_cells(int32_t capacity);
  // Drops the least recently used cached sequence other than `keep`; false when there is none.
  bool evict_lru(SeqId keep = -1);

  TextEngine& engine_;
  SchedulerOptions options_;
  int64_t seq_ctx_;
  std::vector<int32_t> eog_;

  mutable std::mutex mu_;  // guards queue_, stop_, stats_
  std::condition_variable cv_;
  std::deque<Pending> queue_;
  bool stop_ = false;
  SchedulerStats stats_;

  // Owned by the scheduler thread.
  std::vector<std::unique_ptr<Slot>> running_;
  struct CachedSequence {
    SeqId seq;
    std::vector<int32_t> tokens;  // whose K and V the cache holds
    uint64_t last_use;
  };
  std::vector<CachedSequence> cached_;
  uint64_t clock_ = 0;
  std::vector<float> logits_;  // [n_vocab]: a row sampled on the host
  Buffer chosen_;              // [outputs, 1] I32 on the backend: tokens picked where the logits are
  std::vector<int32_t> chosen_host_;

  std::mutex vocab_mu_;
  std::shared_ptr<const ConstraintVocab> vocab_;
  std::thread thread_;
};

}  // namespace vireo
