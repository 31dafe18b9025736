// BERT-family encoders (BERT, bge, MiniLM): absolute position embeddings, post-norm LayerNorm
// blocks, GELU feed-forward, bidirectional attention; the output is pooled per sequence (mean or
// CLS, as the file says) into one embedding.
#include <cmath>

#include "vireo/core/error.h"
#include "vireo/models/language_model.h"

namespace vireo {
namespace {

struct EncoderLayer {
  WeightPtr wq, wk, wv, wo;          // [n_embd, n_embd]
  WeightPtr bq, bk, bv, bo;          // [1, n_embd]
  WeightPtr attn_norm_w, attn_norm_b;  // [1, n_embd]: after attention + residual
  WeightPtr w_up, b_up;              // [n_ff, n_embd], [1, n_ff]
  WeightPtr w_down, b_down;          // [n_embd, n_ff], [1, n_embd]
  WeightPtr out_norm_w, out_norm_b;  // [1, n_embd]: after the FFN + residual
};

class Encoder final : public EmbeddingModel {
 public:
  Encoder(std::shared_ptr<const Model> model, Backend& backend) : model_(std::move(model)), be_(backend) {
    const ModelConfig& c = model_->config;
    if (c.family != ArchFamily::Bert) fail(ErrorCode::Unsupported, "'{}' is not an encoder; use create_decoder", c.arch_name);
    if (c.n_head_kv != c.n_head) fail(ErrorCode::Unsupported, "encoder with grouped-query attention");
    auto mat = [&](const std::string& n) { return be_.prepare(model_->get(n), WeightUse::Matmul); };
    auto vec = [&](const std::string& n) { return be_.prepare(model_->get(n), WeightUse::Vector); };
    token_embd_ = be_.prepare(model_->get("token_embd.weight"), WeightUse::Rows);
    position_embd_ = be_.prepare(model_->get("position_embd.weight"), WeightUse::Rows);
    if (model_->find("token_types.weight") != nullptr) {
      token_types_ = be_.prepare(model_->get("token_types.weight"), WeightUse::Rows);
    }
    embd_norm_w_ = vec("token_embd_norm.weight");
    embd_norm_b_ = vec("token_embd_norm.bias");
    for (uint32_t i = 0; i < c.n_layer; ++i) {
      const std::string b = fmt::format("blk.{}.", i);
      EncoderLayer l;
      l.wq = mat(b + "attn_q.weight");
      l.wk = mat(b + "attn_k.weight");
      l.wv = mat(b + "attn_v.weight");
      l.wo = mat(b + "attn_output.weight");
      l.bq = vec(b + "attn_q.bias");
      l.bk = vec(b + "attn_k.bias");
      l.bv = vec(b + "attn_v.bias");
      l.bo = vec(b + "attn_output.bias");
      l.attn_norm_w = vec(b + "attn_output_norm.weight");
      l.attn_norm_b = vec(b + "attn_output_norm.bias");
      l.w_up = mat(b + "ffn_up.weight");
      l.b_up = vec(b + "ffn_up.bias");
      l.w_down = mat(b + "ffn_down.weight");
      l.b_down = vec(b + "ffn_down.bias");
      l.out_norm_w = vec(b + "layer_output_norm.weight");
      l.out_norm_b = vec(b + "layer_output_norm.bias");
      layers_.push_back(std::move(l));
    }
    attn_.n_head = attn_.n_head_kv = static_cast<int>(c.n_head);
    attn_.head_dim = static_cast<int>(c.head_dim);
    attn_.scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
  }

  const ModelConfig& config() const override { return model_->config; }

  std::vector<std::vector<float>> embed(const std::vector<EncoderInput>& inputs, bool normalize) override {
    const ModelConfig& c = model_->config;
    const int64_t E = c.n_embd, F = c.n_ff;
    std::vector<int32_t> tokens, positions, types, ranges, seq_ranges, cls_rows;
    for (const EncoderInput& in : inputs) {
      if (in.tokens.empty()) fail(ErrorCode::InvalidArgument, "embed: empty input");
      if (in.tokens.size() > c.n_ctx_train) {
        fail(ErrorCode::InvalidArgument, "embed: {} tokens exceed the model's {} positions", in.tokens.size(), c.n_ctx_train);
      }
      if (!in.token_types.empty() && in.token_types.size() != in.tokens.size()) {
        fail(ErrorCode::InvalidArgument, "embed: {} token types for {} tokens", in.token_types.size(), in.tokens.size());
      }
      const auto begin = static_cast<int32_t>(tokens.size()), count = static_cast<int32_t>(in.tokens.size());
      seq_ranges.insert(seq_ranges.end(), {begin, count});
      cls_rows.push_back(begin);
      for (int32_t i = 0; i < count; ++i) {
        const int32_t t = in.tokens[i];
        if (t < 0 || static_cast<uint32_t>(t) >= c.n_vocab) fail(ErrorCode::InvalidArgument, "embed: token id {} is outside the vocabulary", t);
        const int32_t type = in.token_types.empty() ? 0 : in.token_types[i];
        if (type < 0 || (token_types_ ? type >= token_types_->rows : type != 0)) {
          fail(ErrorCode::InvalidArgument, "embed: token type {} is out of range", type);
        }
        tokens.push_back(t);
        positions.push_back(i);
        types.push_back(type);
        ranges.insert(ranges.end(), {begin, count});  // every token sees its whole sequence
      }
    }
    const auto n = static_cast<int64_t>(tokens.size());
    const auto n_seq = static_cast<int64_t>(inputs.size());
    AttentionParams attn = attn_;
    attn.shared_ranges = n >= 16 * n_seq;  // sequences of 16 tokens or more on average
    auto i32 = [&](const std::vector<int32_t>& v, int64_t rows, int64_t cols) {
      Buffer b = be_.alloc(DType::I32, rows, cols);
      be_.upload(b, v.data());
      return b;
    };
    const Buffer ids = i32(tokens, n, 1), pos = i32(positions, n, 1), typ = i32(types, n, 1), rng = i32(ranges, n, 2);
    Buffer x = be_.alloc(DType::F32, n, E);     // [n, E] the residual stream
    Buffer t = be_.alloc(DType::F32, n, E);     // [n, E] scratch
    Buffer q = be_.alloc(DType::F32, n, E), k = be_.alloc(DType::F32, n, E), v = be_.alloc(DType::F32, n, E);
    Buffer att = be_.alloc(DType::F32, n, E);   // [n, E]
    Buffer ffn = be_.alloc(DType::F32, n, F);   // [n, F]

    be_.get_rows(*token_embd_, ids, x);
    be_.get_rows(*position_embd_, pos, t);
    be_.add(x, t, x);
    if (token_types_) {
      be_.get_rows(*token_types_, typ, t);
      be_.add(x, t, x);
    }
    be_.layer_norm(x, *embd_norm_w_, *embd_norm_b_, c.norm_eps, x);
    for (const EncoderLayer& l : layers_) {
      const Weight* qkv_w[3] = {l.wq.get(), l.wk.get(), l.wv.get()};
      const Buffer qkv_out[3] = {q, k, v};
      be_.matmul_multi(x, qkv_w, qkv_out);
      be_.add_bias(q, *l.bq);
      be_.add_bias(k, *l.bk);
      be_.add_bias(v, *l.bv);
      be_.attention(q, k, v, rng, attn, att);
      be_.matmul(att, *l.wo, t);
      be_.add_bias(t, *l.bo);
      be_.add(t, x, x);
      be_.layer_norm(x, *l.attn_norm_w, *l.attn_norm_b, c.norm_eps, x);
      be_.matmul(x, *l.w_up, ffn);
      be_.add_bias(ffn, *l.b_up);
      be_.gelu(ffn, ffn);
      be_.matmul(ffn, *l.w_down, t);
      be_.add_bias(t, *l.b_down);
      be_.add(t, x, x);
      be_.layer_norm(x, *l.out_norm_w, *l.out_norm_b, c.norm_eps, x);
    }
    Buffer pooled = be_.alloc(DType::F32, n_seq, E);  // [n_seq, E]
    if (c.pooling == "cls") {
      be_.gather_rows(x, i32(cls_rows, n_seq, 1), pooled);
    } else {
      be_.mean_rows(x, i32(seq_ranges, n_seq, 2), pooled);
    }
    if (normalize) be_.l2_normalize(pooled, pooled);
    std::vector<float> host(static_cast<size_t>(n_seq * E));
    be_.download(pooled, host.data());
    std::vector<std::vector<float>> out;
    for (int64_t s = 0; s < n_seq; ++s) out.emplace_back(host.begin() + s * E, host.begin() + (s + 1) * E);
    return out;
  }

 private:
  std::shared_ptr<const Model> model_;
  Backend& be_;
  WeightPtr token_embd_;     // [n_vocab, n_embd]
  WeightPtr position_embd_;  // [n_ctx_train, n_embd]
  WeightPtr token_types_;    // [n_token_types, n_embd] (optional)
  WeightPtr embd_norm_w_, embd_norm_b_;
  std::vector<EncoderLayer> layers_;
  AttentionParams attn_;
};

}  // namespace

std::unique_ptr<EmbeddingModel> create_encoder(std::shared_ptr<const Model> model, Backend& backend) {
  if (!model) fail(ErrorCode::InvalidArgument, "create_encoder: no model");
  return std::make_unique<Encoder>(std::move(model), backend);
}

}  // namespace vireo
