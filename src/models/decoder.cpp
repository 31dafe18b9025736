// The decoder-only transformer of the Llama lineage, written once: Llama 2/3.x and Mistral
// (pre-norm RMSNorm, rotary positions, grouped-query attention, SwiGLU), Qwen 2/2.5 (plus q/k/v
// biases) and Qwen 3 (plus RMSNorm of each q and k head). Every difference is a ModelConfig flag
// set at load; nothing here looks at the file format.
#include <cmath>
#include <cstring>
#include <initializer_list>

#include "vireo/core/error.h"
#include "vireo/models/language_model.h"

namespace vireo {
namespace {

struct LayerWeights {
  WeightPtr attn_norm;       // [1, n_embd]
  WeightPtr wq, wk, wv;      // [n_head*head_dim, n_embd], [n_head_kv*head_dim, n_embd] x 2
  WeightPtr bq, bk, bv;      // qkv_bias: [1, n_head*head_dim], [1, n_head_kv*head_dim] x 2
  WeightPtr q_norm, k_norm;  // qk_norm: [1, head_dim]
  WeightPtr wo;              // [n_embd, n_head*head_dim]
  WeightPtr ffn_norm;        // [1, n_embd]
  WeightPtr w_gate, w_up;    // [n_ff, n_embd]
  WeightPtr w_down;          // [n_embd, n_ff]
};

// Llama 3 frequency divisors computed from the config, as the GGUF converter stores them in
// rope_freqs.weight (for files that carry the scaling only as hyperparameters).
std::vector<float> llama3_freq_factors(const RopeConfig& r) {
  std::vector<float> f(r.n_dims / 2);
  const float low_wavelen = static_cast<float>(r.original_context) / r.low_freq_factor;
  const float high_wavelen = static_cast<float>(r.original_context) / r.high_freq_factor;
  for (size_t i = 0; i < f.size(); ++i) {
    const float freq = 1.0f / std::pow(r.theta, 2.0f * static_cast<float>(i) / static_cast<float>(r.n_dims));
    const float wavelen = 2.0f * static_cast<float>(M_PI) / freq;
    if (wavelen < high_wavelen) {
      f[i] = 1.0f;
    } else if (wavelen > low_wavelen) {
      f[i] = r.factor;
    } else {
      const float smooth = (static_cast<float>(r.original_context) / wavelen - r.low_freq_factor) /
                           (r.high_freq_factor - r.low_freq_factor);
      f[i] = 1.0f / ((1 - smooth) / r.factor + smooth);
    }
  }
  return f;
}

class Decoder final : public LanguageModel {
 public:
  Decoder(std::shared_ptr<const Model> model, Backend& backend) : model_(std::move(model)), be_(backend) {
    const ModelConfig& c = model_->config;
    if (c.family == ArchFamily::Bert || !c.causal) {
      fail(ErrorCode::Unsupported, "'{}' is an encoder; use create_encoder", c.arch_name);
    }
    if (c.rope.style == RopeStyle::None) fail(ErrorCode::Unsupported, "decoder without rotary positions");
    if (c.rope.scaling == RopeScaling::Yarn) fail(ErrorCode::Unsupported, "YaRN rope scaling is not supported yet");
    auto mat = [&](const std::string& name) { return prep(name, WeightUse::Matmul); };
    auto vec = [&](const std::string& name) { return prep(name, WeightUse::Vector); };
    output_norm_ = vec("output_norm.weight");
    output_ = mat(c.tied_embeddings ? "token_embd.weight" : "output.weight");
    // Tied: the embedding rows are read from the output head's own copy, so the file's pages of
    // the table never become resident (each looked-up row would fault in 64 KiB of the file).
    token_embd_ = c.tied_embeddings ? output_ : prep("token_embd.weight", WeightUse::Rows);
    for (uint32_t i = 0; i < c.n_layer; ++i) {
      const std::string b = fmt::format("blk.{}.", i);
      LayerWeights l;
      l.attn_norm = vec(b + "attn_norm.weight");
      l.wq = mat(b + "attn_q.weight");
      l.wk = mat(b + "attn_k.weight");
      l.wv = mat(b + "attn_v.weight");
      if (c.qkv_bias) {
        l.bq = vec(b + "attn_q.bias");
        l.bk = vec(b + "attn_k.bias");
        l.bv = vec(b + "attn_v.bias");
      }
      if (c.qk_norm) {
        l.q_norm = vec(b + "attn_q_norm.weight");
        l.k_norm = vec(b + "attn_k_norm.weight");
      }
      l.wo = mat(b + "attn_output.weight");
      l.ffn_norm = vec(b + "ffn_norm.weight");
      l.w_gate = mat(b + "ffn_gate.weight");
      l.w_up = mat(b + "ffn_up.weight");
      l.w_down = mat(b + "ffn_down.weight");
      layers_.push_back(std::move(l));
    }
    rope_.style = c.rope.style;
    rope_.theta = c.rope.theta;
    rope_.n_dims = static_cast<int>(c.rope.n_dims != 0 ? c.rope.n_dims : c.head_dim);
    if (const Tensor* ff = model_->find("rope_freqs.weight")) {
      // llama.cpp's files carry Llama 3 scaling as these per-frequency divisors (always F32).
      if (ff->type != DType::F32) fail(ErrorCode::Unsupported, "rope_freqs.weight must be F32");
      rope_.freq_factors.resize(ff->n_elements());
      std::memcpy(rope_.freq_factors.data(), ff->data, ff->n_elements() * sizeof(float));
    } else if (c.rope.scaling == RopeScaling::Llama3) {
      rope_.freq_factors = llama3_freq_factors(c.rope);
    }
    if (c.rope.scaling == RopeScaling::Linear && c.rope.factor > 0) rope_.freq_scale = 1.0f / c.rope.factor;
    attn_.n_head = static_cast<int>(c.n_head);
    attn_.n_head_kv = static_cast<int>(c.n_head_kv);
    attn_.head_dim = static_cast<int>(c.head_dim);
    attn_.scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
  }

  const ModelConfig& config() const override { return model_->config; }
  Backend& backend() const override { return be_; }
  uint64_t weight_bytes() const override { return weight_bytes_; }

  Buffer forward(const ForwardBatch& batch, const KvBuffers& kv) override {
    const ModelConfig& c = model_->config;
    const auto n = static_cast<int64_t>(batch.size());
    check_batch(batch, kv);
    const auto n_out = static_cast<int64_t>(batch.output_rows.size());
    ensure_buffers(n);
    // Before the step: a captured step stages its inputs in a small buffer, and tables can be large.
    const Buffer blocks = upload_blocks(batch, kv);
    if (n_out > logits_.rows()) {
      logits_ = be_.alloc(DType::F32, n_out, c.n_vocab);  // [n_out, n_vocab]
      ++buffers_version_;
    }
    if (!batch.draws.empty() && n_out > draws_.rows()) {
      draws_ = be_.alloc(DType::F32, n_out, 5);
      ++buffers_version_;
    }
    // Steps with the same shape make the same calls on the same buffers: the backend may replay them.
    const bool identity = identity_outputs(batch);
    const int64_t max_keys = key_bound(batch);
    const uint64_t key = step_key({static_cast<uint64_t>(n), static_cast<uint64_t>(n_out), identity ? 1u : 0u, buffers_version_,
                                   reinterpret_cast<uintptr_t>(kv.k[0].data()), static_cast<uint64_t>(kv.k[0].rows()),
                                   reinterpret_cast<uintptr_t>(batch.chosen_ids != nullptr ? batch.chosen_ids->data() : nullptr),
                                   batch.draws.empty() ? 0u : 1u, static_cast<uint64_t>(max_keys),
                                   static_cast<uint64_t>(batch.kv_block_size)});
    be_.begin_step(key, n);
    StepScope step(be_);
    AttentionParams attn = attn_;
    attn.shared_ranges = rows_per_range(batch) >= 16;
    attn.max_keys = max_keys;
    attn.kv_block_size = batch.kv_block_size;

    // Inputs. [n, 1] I32 each; ranges [n, 2].
    const Buffer ids = upload_i32(ids_, batch.tokens, n, 1);
    const Buffer pos = upload_i32(pos_, batch.positions, n, 1);
    const Buffer cells = upload_i32(cells_, batch.kv_cells, n, 1);
    const Buffer ranges = upload_i32(ranges_, batch.kv_ranges, n, 2);

    Buffer x = x_.rows_view(0, n);        // [n, n_embd] the residual stream
    Buffer h = h_.rows_view(0, n);        // [n, n_embd] a block's normed input, then its output
    Buffer q = q_.rows_view(0, n);        // [n, n_head*head_dim]
    Buffer k = k_.rows_view(0, n);        // [n, n_head_kv*head_dim]
    Buffer v = v_.rows_view(0, n);        // [n, n_head_kv*head_dim]
    Buffer att = att_.rows_view(0, n);    // [n, n_head*head_dim] attention output
    Buffer gate = gate_.rows_view(0, n);  // [n, n_ff]
    Buffer up = up_.rows_view(0, n);      // [n, n_ff]
    const Buffer hn = h_.rows_view(0, n_out);  // the output rows, normed for the logits
    be_.get_rows(*token_embd_, ids, x);
    bool gathered = false;  // x holds just the output rows, in output order

    be_.rms_norm(x, *layers_[0].attn_norm, c.norm_eps, h);
    for (size_t il = 0; il < layers_.size(); ++il) {
      const LayerWeights& l = layers_[il];
      const bool last = il + 1 == layers_.size();
      const Weight* qkv_w[3] = {l.wq.get(), l.wk.get(), l.wv.get()};
      const Buffer qkv_out[3] = {q, k, v};
      be_.matmul_multi(h, qkv_w, qkv_out);
      if (c.qkv_bias) {
        be_.add_bias(q, *l.bq);
        be_.add_bias(k, *l.bk);
        be_.add_bias(v, *l.bv);
      }
      if (c.qk_norm) {  // per head: view [n, heads*head_dim] as [n*heads, head_dim]
        const Buffer qh = q.reshaped(n * c.n_head, c.head_dim), kh = k.reshaped(n * c.n_head_kv, c.head_dim);
        be_.rms_norm(qh, *l.q_norm, c.norm_eps, qh);
        be_.rms_norm(kh, *l.k_norm, c.norm_eps, kh);
      }
      be_.rope_qk_kv_write(q, k, v, pos, cells, kv.k[il], kv.v[il], static_cast<int>(c.n_head), static_cast<int>(c.n_head_kv),
                           static_cast<int>(c.head_dim), rope_);
      if (last && n_out == 0) {  // only filling the cache
        step.end();
        return Buffer();
      }
      be_.attention(q, kv.k[il], kv.v[il], ranges, blocks, attn, att);

      if (last && n_out < n) {
        gathered = true;
        // Only the output tokens go on through the last layer's projection and FFN.
        const Buffer out_ids = upload_i32(out_ids_, batch.output_rows, n_out, 1);
        be_.gather_rows(att, out_ids, att_out_.rows_view(0, n_out));
        be_.gather_rows(x, out_ids, x_out_.rows_view(0, n_out));
        att = att_out_.rows_view(0, n_out);
        x = x_out_.rows_view(0, n_out);
        h = h.rows_view(0, n_out);
        gate = gate.rows_view(0, n_out);
        up = up.rows_view(0, n_out);
      }
      be_.matmul(att, *l.wo, h);
      be_.add_rms_norm(x, h, *l.ffn_norm, c.norm_eps, h);  // x += h; h = norm(x)
      const Weight* gu_w[2] = {l.w_gate.get(), l.w_up.get()};
      const Buffer gu_out[2] = {gate, up};
      be_.matmul_multi(h, gu_w, gu_out);
      be_.silu_mul(gate, up, gate);
      be_.matmul(gate, *l.w_down, h);
      // The residual add with the next norm: the next layer's, or the output's when x already
      // holds just the output rows.
      if (!last) {
        be_.add_rms_norm(x, h, *layers_[il + 1].attn_norm, c.norm_eps, h);
      } else if (gathered || identity) {
        be_.add_rms_norm(x, h, *output_norm_, c.norm_eps, hn);
      } else {
        be_.add(x, h, x);
      }
    }
    if (!gathered && !identity) {
      const Buffer out_ids = upload_i32(out_ids_, batch.output_rows, n_out, 1);
      be_.gather_rows(x, out_ids, x_out_.rows_view(0, n_out));
      x = x_out_.rows_view(0, n_out);
      be_.rms_norm(x, *output_norm_, c.norm_eps, hn);
    }
    const Buffer logits = logits_.rows_view(0, n_out);
    be_.matmul(hn, *output_, logits);
    if (batch.chosen_ids != nullptr && batch.draws.empty()) {
      be_.argmax(logits, *batch.chosen_ids);
    } else if (batch.chosen_ids != nullptr) {
      const Buffer params = draws_.rows_view(0, n_out);
      be_.upload(params, batch.draws.data());
      be_.sample(logits, params, *batch.chosen_ids);
    }
    step.end();
    return logits;
  }

 private:
  WeightPtr prep(const std::string& name, WeightUse use) {
    const Tensor& t = model_->get(name);
    if (use != WeightUse::Rows) weight_bytes_ += t.nbytes;
    return be_.prepare(t, use);
  }

  // The backend's step: end() runs it; leaving without end() (an exception) abandons it.
  struct StepScope {
    explicit StepScope(Backend& be) : be(be) {}
    ~StepScope() {
      if (!ended) {
        try {
          be.end_step(false);
        } catch (...) {  // already unwinding from the first error
        }
      }
    }
    void end() {
      ended = true;
      be.end_step(true);
    }
    Backend& be;
    bool ended = false;
  };

  static uint64_t step_key(std::initializer_list<uint64_t> parts) {
    uint64_t h = 1469598103934665603ull;  // FNV-1a over the parts
    for (uint64_t p : parts) {
      for (int i = 0; i < 8; ++i) h = (h ^ ((p >> (8 * i)) & 0xff)) * 1099511628211ull;
    }
    return h;
  }

  // The most keys a row attends to, rounded up to a power of two (at least 256): a bound that
  // changes only as often as a sequence doubles, so steps keep replaying one graph.
  static int64_t key_bound(const ForwardBatch& b) {
    int64_t most = 0;
    for (size_t i = 0; i < b.size(); ++i) most = std::max<int64_t>(most, b.kv_ranges[2 * i + 1]);
    int64_t bound = 256;
    while (bound < most) bound *= 2;
    return bound;
  }

  // Mean number of consecutive tokens that attend from the same cache row (one sequence's run).
  static double rows_per_range(const ForwardBatch& b) {
    size_t runs = 0;
    for (size_t i = 0; i < b.size(); ++i) runs += i == 0 || b.kv_ranges[2 * i] != b.kv_ranges[2 * i - 2];
    return runs == 0 ? 0.0 : static_cast<double>(b.size()) / static_cast<double>(runs);
  }

  static bool identity_outputs(const ForwardBatch& b) {
    for (size_t i = 0; i < b.output_rows.size(); ++i) {
      if (b.output_rows[i] != static_cast<int32_t>(i)) return false;
    }
    return true;
  }

  void check_batch(const ForwardBatch& b, const KvBuffers& kv) const {
    const ModelConfig& c = model_->config;
    const size_t n = b.size();
    if (n == 0) fail(ErrorCode::InvalidArgument, "forward: empty batch");
    if (b.positions.size() != n || b.kv_cells.size() != n || b.kv_ranges.size() != 2 * n) {
      fail(ErrorCode::InvalidArgument, "forward: batch arrays disagree on the token count {}", n);
    }
    for (int32_t r : b.output_rows) {
      if (r < 0 || static_cast<size_t>(r) >= n) fail(ErrorCode::InvalidArgument, "forward: output row {} of {}", r, n);
    }
    if (!b.draws.empty() && (b.draws.size() != b.output_rows.size() || b.chosen_ids == nullptr)) {
      fail(ErrorCode::InvalidArgument, "forward: {} draws for {} output rows (and chosen_ids is needed)", b.draws.size(),
           b.output_rows.size());
    }
    for (int32_t t : b.tokens) {
      if (t < 0 || static_cast<uint32_t>(t) >= c.n_vocab) {
        fail(ErrorCode::InvalidArgument, "forward: token id {} is outside the vocabulary (0..{})", t, c.n_vocab - 1);
      }
    }
    if (kv.k.size() != c.n_layer || kv.v.size() != c.n_layer) {
      fail(ErrorCode::InvalidArgument, "forward: KV cache has {} layers, the model {}", kv.k.size(), c.n_layer);
    }
    // Every key a row names must be a cache row: the device kernels trust these.
    int64_t n_keys = kv.k[0].rows();
    if (b.kv_block_size != 0) {
      const int32_t bs = b.kv_block_size;
      if (bs < 0 || (bs & (bs - 1)) != 0 || kv.k[0].rows() % bs != 0) {
        fail(ErrorCode::InvalidArgument, "forward: KV blocks of {} cells (a power of two dividing the cache's {})", bs, kv.k[0].rows());
      }
      for (int32_t block : b.kv_blocks) {
        if (block < 0 || block >= kv.k[0].rows() / bs) {
          fail(ErrorCode::InvalidArgument, "forward: KV block {} is outside the cache's {}", block, kv.k[0].rows() / bs);
        }
      }
      n_keys = static_cast<int64_t>(b.kv_blocks.size()) * bs;
    }
    for (size_t i = 0; i < n; ++i) {
      const int64_t begin = b.kv_ranges[2 * i], count = b.kv_ranges[2 * i + 1];
      if (begin < 0 || count < 0 || begin + count > n_keys) {
        fail(ErrorCode::InvalidArgument, "forward: token {} attends to keys [{}, {}) outside the {} the cache holds", i, begin,
             begin + count, n_keys);
      }
    }
  }

  // The batch's block tables (an empty buffer for an unpaged cache). The whole buffer is passed, its
  // tail unused, so that the keys' bound stays the same from step to step; it holds as many entries
  // as the cache has blocks (more if a batch repeats a table), zeroed so that the tail names valid
  // blocks. Steps over the same sequences have the same tables: those are not sent again.
  Buffer upload_blocks(const ForwardBatch& b, const KvBuffers& kv) {
    if (b.kv_block_size <= 0) return Buffer();
    const auto need = std::max<int64_t>(static_cast<int64_t>(b.kv_blocks.size()), kv.k[0].rows() / b.kv_block_size);
    if (need > blocks_.rows()) {
      blocks_ = be_.alloc(DType::I32, need, 1);
      const std::vector<int32_t> zeros(static_cast<size_t>(need), 0);
      be_.upload(blocks_, zeros.data());
      ++buffers_version_;
      sent_blocks_.clear();
    }
    if (b.kv_blocks != sent_blocks_) {
      upload_i32(blocks_, b.kv_blocks, static_cast<int64_t>(b.kv_blocks.size()), 1);
      sent_blocks_ = b.kv_blocks;
    }
    return blocks_;
  }

  // Activation buffers sized for the largest batch seen so far.
  void ensure_buffers(int64_t n) {
    if (n <= capacity_) return;
    const ModelConfig& c = model_->config;
    const int64_t E = c.n_embd, Q = int64_t{c.n_head} * c.head_dim, KV = kv_dim(), F = c.n_ff;
    capacity_ = n;
    ++buffers_version_;
    x_ = be_.alloc(DType::F32, n, E);
    h_ = be_.alloc(DType::F32, n, E);
    q_ = be_.alloc(DType::F32, n, Q);
    k_ = be_.alloc(DType::F32, n, KV);
    v_ = be_.alloc(DType::F32, n, KV);
    att_ = be_.alloc(DType::F32, n, Q);
    att_out_ = be_.alloc(DType::F32, n, Q);
    x_out_ = be_.alloc(DType::F32, n, E);
    gate_ = be_.alloc(DType::F32, n, F);
    up_ = be_.alloc(DType::F32, n, F);
    ids_ = be_.alloc(DType::I32, n, 1);
    pos_ = be_.alloc(DType::I32, n, 1);
    cells_ = be_.alloc(DType::I32, n, 1);
    out_ids_ = be_.alloc(DType::I32, n, 1);
    ranges_ = be_.alloc(DType::I32, n, 2);
  }

  Buffer upload_i32(const Buffer& buf, const std::vector<int32_t>& values, int64_t rows, int64_t cols) {
    const Buffer view = buf.rows_view(0, rows);
    be_.upload(view, values.data());
    return view;
  }

  std::shared_ptr<const Model> model_;
  Backend& be_;
  WeightPtr token_embd_;   // [n_vocab, n_embd] read by rows
  WeightPtr output_norm_;  // [1, n_embd]
  WeightPtr output_;       // [n_vocab, n_embd] (token_embd when tied)
  std::vector<LayerWeights> layers_;
  RopeParams rope_;
  AttentionParams attn_;
  uint64_t weight_bytes_ = 0;

  int64_t capacity_ = 0;
  uint64_t buffers_version_ = 0;  // changes whenever an activation buffer is reallocated
  Buffer x_, h_, q_, k_, v_, att_, att_out_, x_out_, gate_, up_, logits_;
  Buffer ids_, pos_, cells_, out_ids_, ranges_;
  Buffer blocks_;                     // I32 [n_blocks, 1]: the step's block tables (paged caches)
  std::vector<int32_t> sent_blocks_;  // what blocks_ starts with now
  Buffer draws_;  // F32 [outputs, 5]: the step's DrawParams
};

}  // namespace

std::unique_ptr<LanguageModel> create_decoder(std::shared_ptr<const Model> model, Backend& backend) {
  if (!model) fail(ErrorCode::InvalidArgument, "create_decoder: no model");
  return std::make_unique<Decoder>(std::move(model), backend);
}

}  // namespace vireo
