#include "vireo/runtime/generator.h"

#include <algorithm>
#include <chrono>
#include <numeric>

#include "vireo/core/error.h"

namespace vireo {
namespace {

using Clock = std::chrono::steady_clock;
double ms_since(Clock::time_point t0) { return std::chrono::duration<double, std::milli>(Clock::now() - t0).count(); }

// Frees a sequence's cells however the generation ends.
class SequenceGuard {
 public:
  SequenceGuard(KvCache& cache, SeqId seq) : cache_(cache), seq_(seq) {}
  ~SequenceGuard() {
    if (cache_.has_sequence(seq_)) cache_.remove_sequence(seq_);
  }
  SequenceGuard(const SequenceGuard&) = delete;
  SequenceGuard& operator=(const SequenceGuard&) = delete;

 private:
  KvCache& cache_;
  SeqId seq_;
};

void check_options(const GenerateOptions& o) {
  if (o.max_tokens < 0) fail(ErrorCode::InvalidArgument, "max_tokens must be >= 0, got {}", o.max_tokens);
  if (o.prefill_chunk <= 0) fail(ErrorCode::InvalidArgument, "prefill_chunk must be > 0, got {}", o.prefill_chunk);
}

bool is_stop(const GenerateOptions& o, int32_t token) {
  return std::find(o.stop_tokens.begin(), o.stop_tokens.end(), token) != o.stop_tokens.end();
}

}  // namespace

const char* stop_reason_name(StopReason r) {
  switch (r) {
    case StopReason::MaxTokens: return "max_tokens";
    case StopReason::StopToken: return "stop_token";
    case StopReason::Callback: return "callback";
  }
  return "max_tokens";
}

GenerateResult Generator::generate(std::span<const int32_t> prompt, const GenerateOptions& options,
                                   const TokenCallback& on_token) {
  check_options(options);
  if (prompt.empty()) fail(ErrorCode::InvalidArgument, "generate: empty prompt");
  GenerateResult result;
  if (options.max_tokens == 0) return result;
  const auto capacity = static_cast<int64_t>(prompt.size()) + options.max_tokens;
  if (capacity > cache_.free_cells()) {
    fail(ErrorCode::InvalidArgument, "generate: prompt ({}) + max_tokens ({}) exceed the KV cache's free cells ({})",
         prompt.size(), options.max_tokens, cache_.free_cells());
  }
  const SeqId seq = cache_.add_sequence(static_cast<int32_t>(capacity));
  SequenceGuard guard(cache_, seq);
  Sampler sampler(options.sampling);
  const auto n_vocab = static_cast<size_t>(model_.config().n_vocab);
  std::vector<float> logits;
  std::vector<int32_t> history(prompt.begin(), prompt.end());
  // Without bias or penalties the token is drawn where the logits are (the backend's argmax or
  // sample op in the same step): one id crosses to the host, not n_vocab floats.
  const bool on_backend = sampler.backend_can_draw();
  Buffer chosen;
  if (on_backend) chosen = model_.backend().alloc(DType::I32, 1, 1);
  auto forward_and_pick = [&](ForwardBatch& batch) {
    if (on_backend) {
      batch.chosen_ids = &chosen;
      Sampler* const rows[] = {&sampler};
      batch.draws = backend_draws(rows);
      model_.forward(batch, cache_.buffers());
      int32_t token = -1;
      model_.backend().download(chosen, &token);
      if (token < 0) fail(ErrorCode::InvalidArgument, "generate: every token's logit is -inf");
      return token;
    }
    const Buffer out = model_.forward(batch, cache_.buffers());
    logits.resize(n_vocab);
    model_.backend().download(out, logits.data());
    return sampler.sample(logits, history);
  };

  const auto t0 = Clock::now();
  int32_t token = -1;
  for (size_t begin = 0; begin < prompt.size(); begin += static_cast<size_t>(options.prefill_chunk)) {
    const size_t end = std::min(prompt.size(), begin + static_cast<size_t>(options.prefill_chunk));
    ForwardBatch batch;
    cache_.append(batch, seq, prompt.subspan(begin, end - begin), end == prompt.size());
    if (end == prompt.size()) token = forward_and_pick(batch);
    else model_.forward(batch, cache_.buffers());
  }
  result.timings.prompt_tokens = static_cast<int64_t>(prompt.size());
  result.timings.prefill_ms = ms_since(t0);

  auto t_decode = Clock::now();
  for (;;) {
    result.tokens.push_back(token);
    history.push_back(token);
    if (is_stop(options, token)) {
      result.stop = StopReason::StopToken;
      break;
    }
    if (on_token && !on_token(token)) {
      result.stop = StopReason::Callback;
      break;
    }
    if (static_cast<int32_t>(result.tokens.size()) >= options.max_tokens) {
      result.stop = StopReason::MaxTokens;
      break;
    }
    ForwardBatch batch;
    const int32_t next[1] = {token};
    cache_.append(batch, seq, next, true);
    token = forward_and_pick(batch);
    ++result.timings.decode_tokens;
  }
  result.timings.decode_ms = result.timings.decode_tokens > 0 ? ms_since(t_decode) : 0.0;
  return result;
}

std::vector<GenerateResult> Generator::generate_batch(const std::vector<std::vector<int32_t>>& prompts,
                                                      const GenerateOptions& options) {
  check_options(options);
  const size_t n_seq = prompts.size();
  std::vector<GenerateResult> results(n_seq);
  if (n_seq == 0 || options.max_tokens == 0) return results;
  std::vector<SeqId> seqs;
  std::vector<std::unique_ptr<SequenceGuard>> guards;
  std::vector<Sampler> samplers;
  std::vector<std::vector<int32_t>> history(prompts);
  for (size_t s = 0; s < n_seq; ++s) {
    if (prompts[s].empty()) fail(ErrorCode::InvalidArgument, "generate_batch: prompt {} is empty", s);
    seqs.push_back(cache_.add_sequence(static_cast<int32_t>(prompts[s].size()) + options.max_tokens));
    guards.push_back(std::make_unique<SequenceGuard>(cache_, seqs.back()));
    SamplingParams p = options.sampling;
    p.seed += s;
    samplers.emplace_back(p);
  }
  const auto n_vocab = static_cast<size_t>(model_.config().n_vocab);
  std::vector<float> logits(n_vocab * n_seq);

  // Prefill every prompt (chunked), keeping each one's last logits.
  const auto t0 = Clock::now();
  for (size_t s = 0; s < n_seq; ++s) {
    const std::span<const int32_t> prompt(prompts[s]);
    for (size_t begin = 0; begin < prompt.size(); begin += static_cast<size_t>(options.prefill_chunk)) {
      const size_t end = std::min(prompt.size(), begin + static_cast<size_t>(options.prefill_chunk));
      ForwardBatch batch;
      cache_.append(batch, seqs[s], prompt.subspan(begin, end - begin), end == prompt.size());
      const Buffer out = model_.forward(batch, cache_.buffers());
      if (end == prompt.size()) model_.backend().download(out, logits.data() + s * n_vocab);
    }
    results[s].timings.prompt_tokens = static_cast<int64_t>(prompt.size());
  }
  const double prefill_ms = ms_since(t0);

  std::vector<size_t> live(n_seq);
  std::iota(live.begin(), live.end(), size_t{0});
  const auto t_decode = Clock::now();
  while (!live.empty()) {
    ForwardBatch batch;
    std::vector<size_t> next_live;
    for (size_t s : live) {
      GenerateResult& r = results[s];
      const int32_t token = samplers[s].sample(std::span<float>(logits.data() + s * n_vocab, n_vocab), history[s]);
      r.tokens.push_back(token);
      history[s].push_back(token);
      if (is_stop(options, token)) {
        r.stop = StopReason::StopToken;
      } else if (static_cast<int32_t>(r.tokens.size()) >= options.max_tokens) {
        r.stop = StopReason::MaxTokens;
      } else {
        const int32_t next[1] = {token};
        cache_.append(batch, seqs[s], next, true);
        next_live.push_back(s);
      }
    }
    live = std::move(next_live);
    if (live.empty()) break;
    const Buffer out = model_.forward(batch, cache_.buffers());
    std::vector<float> rows(n_vocab * live.size());
    model_.backend().download(out, rows.data());
    for (size_t i = 0; i < live.size(); ++i) {
      std::copy_n(rows.data() + i * n_vocab, n_vocab, logits.data() + live[i] * n_vocab);
      ++results[live[i]].timings.decode_tokens;
    }
  }
  const double decode_ms = ms_since(t_decode);
  for (auto& r : results) {
    r.timings.prefill_ms = prefill_ms;
    r.timings.decode_ms = decode_ms;
  }
  return results;
}

std::vector<float> Generator::score(std::span<const int32_t> tokens, int32_t chunk) {
  if (tokens.empty()) fail(ErrorCode::InvalidArgument, "score: no tokens");
  if (chunk <= 0) fail(ErrorCode::InvalidArgument, "score: chunk must be > 0");
  const SeqId seq = cache_.add_sequence(static_cast<int32_t>(tokens.size()));
  SequenceGuard guard(cache_, seq);
  const auto n_vocab = static_cast<size_t>(model_.config().n_vocab);
  std::vector<float> logits(tokens.size() * n_vocab);
  for (size_t begin = 0; begin < tokens.size(); begin += static_cast<size_t>(chunk)) {
    const size_t end = std::min(tokens.size(), begin + static_cast<size_t>(chunk));
    ForwardBatch batch;
    cache_.append(batch, seq, tokens.subspan(begin, end - begin), false);
    batch.output_rows.resize(end - begin);
    std::iota(batch.output_rows.begin(), batch.output_rows.end(), 0);
    const Buffer out = model_.forward(batch, cache_.buffers());
    model_.backend().download(out, logits.data() + begin * n_vocab);
  }
  return logits;
}

}  // namespace vireo
