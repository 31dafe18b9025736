// The one description every model file loads into: a ModelConfig (hyperparameters and flags),
// tokenizer data, and a map of weights under canonical (GGUF-style) names, used in place from
// memory-mapped files. The forward pass reads only this, never the file format.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "vireo/core/dtype.h"
#include "vireo/core/mapped_file.h"

namespace vireo {

enum class ArchFamily { Llama, Qwen2, Qwen3, Bert };

enum class RopeStyle {
  None,     // absolute position embeddings (BERT)
  Normal,   // rotate adjacent pairs (GGUF llama: q/k were permuted by the converter)
  NeoX,     // rotate the two halves (Hugging Face layout, qwen in GGUF)
};

enum class RopeScaling { None, Linear, Yarn, Llama3 };

struct RopeConfig {
  RopeStyle style = RopeStyle::Normal;
  float theta = 10000.0f;
  uint32_t n_dims = 0;  // rotated dimensions per head (usually head_dim)
  RopeScaling scaling = RopeScaling::None;
  float factor = 1.0f;
  float low_freq_factor = 1.0f;   // llama3
  float high_freq_factor = 4.0f;  // llama3
  uint32_t original_context = 0;
};

enum class TokenizerKind { None, SentencePiece, BytePairEncoding, WordPiece, Unigram };
const char* tokenizer_kind_name(TokenizerKind k);

struct TokenizerData {
  TokenizerKind kind = TokenizerKind::None;
  std::string pre;                   // pre-tokenizer name (GGUF tokenizer.ggml.pre)
  std::vector<std::string> tokens;   // by id
  std::vector<float> scores;         // SentencePiece / Unigram
  std::vector<int32_t> token_types;  // GGUF token types (1 normal, 2 unknown, 3 control, 6 byte...)
  std::vector<std::string> merges;   // BPE, "a b" per merge in rank order
  int32_t bos_id = -1, eos_id = -1, unk_id = -1, pad_id = -1, sep_id = -1, cls_id = -1;
  std::optional<bool> add_bos, add_eos;  // as the file says; unset: the family's default (see Tokenizer)
  std::string chat_template;

  // What else the file says, where it says it; unset optionals mean "the family's default" (llama.cpp's
  // rules for GGUF, Hugging Face's for tokenizer.json).
  int32_t eot_id = -1, eom_id = -1, mask_id = -1;
  std::string model_name;                 // GGUF general.name: llama.cpp keys token-attribute quirks on it
  std::optional<bool> add_space_prefix;   // tokenizer.ggml.add_space_prefix (SentencePiece default: yes)
  std::optional<bool> add_sep;            // tokenizer.ggml.add_sep_token
  std::optional<bool> lowercase;          // tokenizer.ggml.normalizer.lowercase (WordPiece default: yes)
  std::optional<bool> strip_accents;      // tokenizer.ggml.normalizer.strip_accents (default: = lowercase)

  // tokenizer.json only (empty/unset for GGUF, whose pipeline follows from `pre`).
  struct AddedToken {
    int32_t id = -1;
    bool special = false;  // recognised only when parsing special tokens; a plain added token always is
    bool lstrip = false, rstrip = false, single_word = false, normalized = false;
  };
  std::vector<AddedToken> added_tokens;
  std::vector<std::string> split_regexes;  // Split pre-tokenizers (behavior "Isolated"), applied in order
  bool byte_level = false;                 // ByteLevel pre-tokenizer: GPT-2 byte-to-unicode mapping
  bool byte_level_regex = false;           // ByteLevel with use_regex: also splits with the GPT-2 regex
  bool byte_level_prefix_space = false;    // ByteLevel add_prefix_space
  std::string normalizer;                  // "" or "NFC"
  std::optional<bool> ignore_merges;       // BPE: a word that is a token skips the merges
  bool byte_fallback = false;              // BPE: unknown pieces become <0xXX> tokens
  std::optional<bool> clean_spaces;        // decode: clean_up_tokenization_spaces
  std::string unsupported;  // why Tokenizer::create must refuse this tokenizer.json ("" when it can run it)
};

struct ModelConfig {
  std::string arch_name;  // as the file names it: "llama", "mistral", "qwen2", "qwen3", "bert"
  ArchFamily family = ArchFamily::Llama;
  std::string name;
  uint32_t n_layer = 0;
  uint32_t n_embd = 0;
  uint32_t n_head = 0;
  uint32_t n_head_kv = 0;
  uint32_t head_dim = 0;
  uint32_t n_ff = 0;
  uint32_t n_ctx_train = 0;
  uint32_t n_vocab = 0;
  float norm_eps = 1e-5f;
  RopeConfig rope;
  bool qkv_bias = false;         // qwen2
  bool qk_norm = false;          // qwen3: RMS norm on q and k per head
  bool tied_embeddings = false;  // output projection reuses token_embd
  bool causal = true;            // false for encoders
  // Encoders (BERT family)
  uint32_t n_token_types = 0;
  std::string pooling;  // "mean", "cls" or "" (decoders)
};

// One weight. `shape` is outermost-first (PyTorch order): a linear layer is [n_out, n_in] and its
// rows are contiguous, so quantized blocks run along the last dimension.
struct Tensor {
  std::string name;
  DType type = DType::F32;
  std::vector<uint64_t> shape;
  const uint8_t* data = nullptr;
  uint64_t nbytes = 0;
  bool file_mapped = false;  // data lies in a read-only file mapping (see drop_resident_pages)
  // MLX affine quantization only: per-group scales and biases, each [rows, cols/group_size].
  const uint8_t* mlx_scales = nullptr;
  const uint8_t* mlx_biases = nullptr;
  DType mlx_scale_type = DType::F16;
  uint32_t mlx_group_size = 0;

  uint64_t n_elements() const;
  uint64_t rows() const;  // product of all but the last dimension
  uint64_t cols() const { return shape.empty() ? 0 : shape.back(); }
};

struct Model {
  ModelConfig config;
  TokenizerData tokenizer;
  std::map<std::string, Tensor> weights;
  std::string format;  // "gguf", "safetensors", "mlx"
  std::vector<std::string> files;
  uint64_t file_bytes = 0;
  std::vector<std::shared_ptr<const void>> owners;  // keep the mappings that weights point into alive

  const Tensor* find(const std::string& name) const;
  const Tensor& get(const std::string& name) const;  // throws NotFound naming the tensor
  uint64_t n_params() const;
  uint64_t weight_bytes() const;
  // F16 K and V for every layer over `n_ctx` positions.
  uint64_t kv_cache_bytes(uint32_t n_ctx) const;
};

// Loads a GGUF file, a .safetensors file, or a folder with config.json and safetensors
// (Hugging Face or MLX). Throws vireo::Error with a message naming what is wrong.
Model load_model(const std::string& path);
Model load_gguf_model(const std::string& path);
Model load_safetensors_model(const std::string& path);
// A Hugging Face tokenizer.json (a file, or a folder holding one), with tokenizer_config.json beside it
// when present. Throws vireo::Error.
TokenizerData load_tokenizer_json(const std::string& path);

namespace gguf {
class File;
}
// The tokenizer of a GGUF file (any architecture, vocab-only files too).
TokenizerData read_gguf_tokenizer(const gguf::File& file);
TokenizerData load_gguf_tokenizer(const std::string& path);
// The tokenizer of any model path: a GGUF file, or a folder / tokenizer.json file.
TokenizerData load_tokenizer(const std::string& path);

// Fills derived fields and checks the config against the weights: every tensor the family needs
// is present with the expected shape. Shared by all loaders.
void validate_model(Model& model);

}  // namespace vireo
