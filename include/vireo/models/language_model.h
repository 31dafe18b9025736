// Models written once against the Backend interface. A decoder (Llama, Mistral, Qwen 2/2.5,
// Qwen 3) is one implementation driven by ModelConfig's flags; an encoder (BERT family) gives
// pooled embeddings. Weights are prepared on the backend at construction; the Model (and the
// file mapping its tensors point into) is kept alive by the shared_ptr.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "vireo/backend/backend.h"
#include "vireo/formats/model.h"

namespace vireo {

// One forward pass: tokens of any number of sequences, each sequence a run of consecutive
// positions. The runtime's KV cache fills the cache fields.
struct ForwardBatch {
  std::vector<int32_t> tokens;       // [n]
  std::vector<int32_t> positions;    // [n] position of each token in its sequence
  std::vector<int32_t> kv_cells;     // [n] cache row that receives the token's K and V
  std::vector<int32_t> kv_ranges;    // [n][2] keys [begin, begin + count) the token attends to
  // A paged cache (kv_block_size > 0): the block tables of the batch's sequences end to end; key j
  // is cache row kv_blocks[j / size] * size + j % size (kernels/kv_pages.h). Otherwise key j is row j.
  std::vector<int32_t> kv_blocks;
  int32_t kv_block_size = 0;
  struct KvTable {
    int32_t seq, first, count;  // a sequence's table is kv_blocks[first, first + count)
  };
  std::vector<KvTable> kv_tables;
  std::vector<int32_t> output_rows;  // tokens whose logits are wanted, in output order (may be none)
  // When set: I32 [output_rows.size(), 1] that receives each output row's token within the same
  // step, so that only ids cross to the host: the argmax, or with `draws` (one per output row)
  // the backend's `sample` op.
  const Buffer* chosen_ids = nullptr;
  std::vector<DrawParams> draws;

  size_t size() const { return tokens.size(); }
};

// K and V cache buffers of every layer, each [n_cells, n_head_kv*head_dim] (F16, F32, or Q8_0 on the CPU).
struct KvBuffers {
  std::vector<Buffer> k, v;
};

class LanguageModel {
 public:
  virtual ~LanguageModel() = default;
  virtual const ModelConfig& config() const = 0;
  virtual Backend& backend() const = 0;
  // Columns of each layer's K (and V) cache row.
  int64_t kv_dim() const { return int64_t{config().n_head_kv} * config().head_dim; }
  // Runs the batch and returns the logits of batch.output_rows: [output_rows.size(), n_vocab]
  // in backend memory (valid until the next forward).
  virtual Buffer forward(const ForwardBatch& batch, const KvBuffers& kv) = 0;
  // Bytes of weights one forward pass reads (for bandwidth figures).
  virtual uint64_t weight_bytes() const = 0;
};

// Llama / Mistral / Qwen2 / Qwen3: throws Unsupported for other families.
std::unique_ptr<LanguageModel> create_decoder(std::shared_ptr<const Model> model, Backend& backend);

// One input sequence of an encoder.
struct EncoderInput {
  std::vector<int32_t> tokens;
  std::vector<int32_t> token_types;  // empty: all 0
};

class EmbeddingModel {
 public:
  virtual ~EmbeddingModel() = default;
  virtual const ModelConfig& config() const = 0;
  // One vector of n_embd floats per input: the model's pooling (mean or CLS), L2-normalised
  // when `normalize`.
  virtual std::vector<std::vector<float>> embed(const std::vector<EncoderInput>& inputs, bool normalize = true) = 0;
};

// BERT family: throws Unsupported for other families.
std::unique_ptr<EmbeddingModel> create_encoder(std::shared_ptr<const Model> model, Backend& backend);

}  // namespace vireo
