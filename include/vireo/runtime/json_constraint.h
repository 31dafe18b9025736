// Constrained decoding of JSON (the OpenAI `response_format` modes `json_object` and `json_schema`).
// A byte-level pushdown matcher, driven by a grammar compiled from a JSON Schema, tells which tokens
// can continue a valid document; the server masks the logits with it before each draw and advances
// it with the drawn token.
//
// The matcher allows a strict, compact dialect of JSON: no leading whitespace, at most two
// whitespace bytes in a row (so a model cannot loop on spaces), numbers of bounded length, no
// surrogate \u escapes (each escape is one code point), well-formed UTF-8 only, no escapes in the
// names of undeclared properties of objects that declare some (so they cannot duplicate a declared
// one), nesting past 32 levels only where the schema needs it, and at most 64 declared properties
// per object. Undeclared property names are not checked for duplicates.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace vireo {

namespace detail {
// A byte trie of token pieces in preorder, so that masking is one forward scan that shares the work
// of common prefixes and skips a whole subtree once its prefix is rejected. Node 0 is the root.
struct TokenTrie {
  std::vector<uint8_t> byte;           // [n_nodes] the byte on the edge into the node
  std::vector<uint32_t> depth;         // [n_nodes] bytes from the root
  std::vector<uint32_t> end;           // [n_nodes] one past the node's last descendant
  std::vector<uint32_t> tokens_begin;  // [n_nodes + 1] tokens ending at node i: [tokens_begin[i], tokens_begin[i+1])
  std::vector<int32_t> tokens;
  uint32_t max_depth = 0;
};
}  // namespace detail

// The vocabulary as the constraint sees it: each token's bytes when decoded
// (token_to_piece(id, /*special=*/false)), and which ids end generation. Built once per model and
// shared by all requests: immutable, so safe to use from many threads.
class ConstraintVocab {
 public:
  ConstraintVocab(std::vector<std::string> pieces, std::vector<int32_t> eog_ids);

  size_t size() const { return pieces_.size(); }
  const std::string& piece(int32_t id) const { return pieces_[static_cast<size_t>(id)]; }
  bool is_eog(int32_t id) const { return is_eog_[static_cast<size_t>(id)] != 0; }
  const std::vector<int32_t>& eog_ids() const { return eog_ids_; }

 private:
  friend class JsonMatcher;
  std::vector<std::string> pieces_;
  std::vector<int32_t> eog_ids_;
  std::vector<uint8_t> is_eog_;  // [n_vocab]
  // Most of a document is string content, where most tokens are allowed, so walking the whole trie
  // there would be the common, slow case. Tokens that are complete plain string content (no quote,
  // backslash or control byte; whole UTF-8 characters) are allowed in bulk there instead, by their
  // length, and only the rest are walked.
  std::vector<uint8_t> plain_chars_;  // [n_vocab] 0: not plain; else its code points + 1
  uint32_t plain_max_chars_ = 0;      // the most code points in a plain token
  detail::TokenTrie all_;             // every non-empty, non-EOG piece
  detail::TokenTrie not_plain_;       // those that are not plain
};

namespace detail {
struct GrammarData;

// One frame of a matcher stack. Stacks are linked through `parent` inside one array, so stepping
// a byte only appends a changed copy of the top frame: copies share everything below it.
struct Frame {
  static constexpr uint32_t kNone = 0xFFFFFFFFu;
  uint32_t parent = kNone;
  uint32_t node = 0;  // grammar node (a literal set for literal frames)
  uint8_t kind = 0;
  uint8_t state = 0;
  uint8_t ws = 0;   // whitespace bytes in a row
  uint8_t esc = 0;  // inside a string: escape sequence or UTF-8 continuation in progress
  uint16_t depth = 0;
  uint16_t flags = 0;
  uint32_t a = 0, b = 0, c = 0, d = 0;  // meaning depends on the kind (see json_constraint.cpp)
  uint64_t seen = 0;                    // objects: declared properties already written
  bool operator==(const Frame&) const = default;
};
}  // namespace detail

// A compiled grammar: any JSON value whose top level is an object (json_object mode), or a JSON
// Schema (json_schema mode). Immutable; share it between requests.
class JsonGrammar {
 public:
  static std::shared_ptr<const JsonGrammar> any_object();
  // Supported: type (string|number|integer|boolean|null|object|array, or a list of them),
  // properties, required, additionalProperties (false/true/schema), items, minItems/maxItems,
  // enum, const, anyOf/oneOf (oneOf is treated as anyOf), allOf (merged), $ref to local JSON
  // pointers (#/$defs/..., #/definitions/..., #), minLength/maxLength, nullable, uniqueItems: false.
  // Ignored annotations: format, pattern, description, title, default, examples, deprecated,
  // readOnly, writeOnly, $comment, contentEncoding, contentMediaType and x-* keys.
  // Anything else throws vireo::Error(InvalidArgument) naming the keyword, as does a schema no
  // value can satisfy.
  static std::shared_ptr<const JsonGrammar> from_schema(const nlohmann::json& schema);

  const detail::GrammarData& data() const { return *data_; }

 private:
  explicit JsonGrammar(std::shared_ptr<const detail::GrammarData> data) : data_(std::move(data)) {}
  std::shared_ptr<const detail::GrammarData> data_;
};

// Per-request state. Copyable. mask() uses internal scratch space, so one matcher must not be used
// from two threads at once.
class JsonMatcher {
 public:
  JsonMatcher(std::shared_ptr<const JsonGrammar> grammar, std::shared_ptr<const ConstraintVocab> vocab);

  // Sets the logits of tokens that cannot continue a valid document to -infinity (and of ids past
  // the vocabulary). End-of-generation ids are allowed only when the document is complete; then
  // only they and whitespace pieces remain (digits too after a top-level number).
  void mask(std::span<float> logits) const;
  // Advances by the token's bytes; throws vireo::Error(InvalidArgument) if the token is not allowed,
  // leaving the state as it was.
  void accept(int32_t token);
  // Whether accept(token) would succeed.
  bool allows(int32_t token) const;
  // A full valid document has been produced.
  bool complete() const;

 private:
  bool advance(const std::string& bytes, std::vector<detail::Frame>& frames, std::vector<uint32_t>& heads) const;
  std::optional<uint32_t> plain_budget() const;
  void walk(const detail::TokenTrie& trie) const;

  std::shared_ptr<const JsonGrammar> grammar_;
  std::shared_ptr<const ConstraintVocab> vocab_;
  std::vector<detail::Frame> frames_;  // the stacks of all live alternatives (anyOf can keep several)
  std::vector<uint32_t> heads_;        // the top frame of each alternative
  // Scratch for mask(), kept between calls to avoid reallocating each step.
  mutable std::vector<detail::Frame> scratch_frames_;
  mutable std::vector<uint32_t> scratch_heads_;
  mutable std::vector<uint8_t> allowed_;
  mutable std::vector<uint32_t> level_begin_, level_end_, level_frames_;
};

}  // namespace vireo
