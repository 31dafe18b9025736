// JSON-constrained decoding: random walks under the mask always end in a document that parses and
// validates (checked by a small validator written here, independent of the matcher), and the
// matcher's single rules hold on hand-written inputs.
#include "vireo/runtime/json_constraint.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <random>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "vireo/core/error.h"

namespace vireo {
namespace {

using nlohmann::json;

// ---------------------------------------------------------------------------------------------
// A small vocabulary: every single byte, pieces that cross JSON token boundaries, split UTF-8,
// escapes, an empty control piece and two end-of-generation ids (one with text).

struct TestVocab {
  std::vector<std::string> pieces;
  int32_t eos = -1, eot = -1, control = -1;
  int32_t byte_token[256] = {};
  std::shared_ptr<const ConstraintVocab> vocab;
};

const TestVocab& test_vocab() {
  static const TestVocab tv = [] {
    TestVocab v;
    for (int b = 0; b < 256; ++b) {
      v.byte_token[b] = static_cast<int32_t>(v.pieces.size());
      v.pieces.push_back(std::string(1, static_cast<char>(b)));
    }
    const char* multi[] = {
        "{\"",        "\":",      "\": ",        "\":\"",        "\",",
        "\", \"",     "\"}",      "\"]",         "true",         "false",
        "null",       "tru",      "nul",         "12",           "0",
        "-1",         "3.14",     ".5",          "e+",           "E-",
        "e5",         "00",       "1e",          " \"",          "}\n",
        "},",         "],",       "[{",          "[]",           "{}",
        "[\"",        ", ",       ",\n",         "\n\n",         "  ",
        "   ",        "\\n",      "\\u00e9",     "\\ud83d",      "\\\"",
        "\\\\",       "\\u",      "\xC3\xA9",    "\xE2\x82\xAC", "\xF0\x9F\x98\x80",
        "\xE2\x82",   "\xC0\xAF", "name",        "age",          "tags",
        "email",      "status",   "active",      "inactive",     "kind",
        "circle",     "rect",     "root",        "value",        "children",
        "flag",       "note",     "shape",       "\"name\":",    "\"age\":",
        "nam",        "ab",       "hello world", "}}",           "]]",
        "\"\"",       "\"a",      "true}",       "1,",           "2]",
        " null",      "\t\t",     "\"kind\":\"", "circle\"",     "rect\"",
        "red",        "green",    "blue",        "\"red\"",      "\"bb\"",
        "bb",         "x",        "-0",          "\"shape\":",   "\"root\":",
        "\"value\":", "\"c\":",
    };
    for (const char* p : multi) v.pieces.push_back(p);
    v.control = static_cast<int32_t>(v.pieces.size());
    v.pieces.push_back("");
    v.eos = static_cast<int32_t>(v.pieces.size());
    v.pieces.push_back("");
    v.eot = static_cast<int32_t>(v.pieces.size());
    v.pieces.push_back("<|eot|>");
    v.vocab = std::make_shared<ConstraintVocab>(v.pieces, std::vector<int32_t>{v.eos, v.eot});
    return v;
  }();
  return tv;
}

int32_t byte_tok(char c) {
  return test_vocab().byte_token[static_cast<uint8_t>(c)];
}

// Feeds text one byte-token at a time.
void feed(JsonMatcher& m, std::string_view text) {
  for (const char c : text) m.accept(byte_tok(c));
}

std::vector<float> masked(const JsonMatcher& m, size_t n) {
  std::vector<float> l(n, 0.0f);
  m.mask(l);
  return l;
}

bool allowed_byte(const JsonMatcher& m, char c) {
  return std::isfinite(masked(m, test_vocab().pieces.size())[static_cast<size_t>(byte_tok(c))]);
}

// ---------------------------------------------------------------------------------------------
// An independent validator for the supported subset of JSON Schema.

size_t code_points(const std::string& s) {
  size_t n = 0;
  for (const char c : s) n += (static_cast<uint8_t>(c) & 0xC0) != 0x80;
  return n;
}

bool valid(const json& root, const json& s, const json& v) {
  if (s.is_boolean()) return s.get<bool>();
  if (s.contains("$ref")) {
    const std::string ref = s["$ref"];
    return valid(root, root.at(json::json_pointer(ref.substr(1))), v);
  }
  if (s.value("nullable", false) && v.is_null()) return true;
  if (s.contains("anyOf")) {
    bool any = false;
    for (const auto& b : s["anyOf"]) any = any || valid(root, b, v);
    if (!any) return false;
  }
  if (s.contains("oneOf")) {
    int n = 0;
    for (const auto& b : s["oneOf"]) n += valid(root, b, v);
    if (n != 1) return false;
  }
  if (s.contains("allOf"))
    for (const auto& b : s["allOf"])
      if (!valid(root, b, v)) return false;
  if (s.contains("enum") && std::find(s["enum"].begin(), s["enum"].end(), v) == s["enum"].end()) return false;
  if (s.contains("const") && s["const"] != v) return false;
  if (s.contains("type")) {
    const json types = s["type"].is_array() ? s["type"] : json::array({s["type"]});
    bool ok = false;
    for (const auto& t : types) {
      const std::string name = t;
      ok = ok || (name == "string" && v.is_string()) || (name == "number" && v.is_number()) ||
           (name == "integer" && v.is_number_integer()) || (name == "boolean" && v.is_boolean()) ||
           (name == "null" && v.is_null()) || (name == "object" && v.is_object()) || (name == "array" && v.is_array());
    }
    if (!ok) return false;
  }
  if (v.is_string()) {
    const size_t n = code_points(v.get<std::string>());
    if (n < s.value("minLength", size_t{0}) || n > s.value("maxLength", SIZE_MAX)) return false;
  }
  if (v.is_object()) {
    const json props = s.value("properties", json::object());
    for (const auto& r : s.value("required", json::array()))
      if (!v.contains(r.get<std::string>())) return false;
    for (const auto& [k, sub] : v.items()) {
      if (props.contains(k)) {
        if (!valid(root, props[k], sub)) return false;
      } else if (s.contains("additionalProperties") && !valid(root, s["additionalProperties"], sub)) {
        return false;
      }
    }
  }
  if (v.is_array()) {
    if (v.size() < s.value("minItems", size_t{0}) || v.size() > s.value("maxItems", SIZE_MAX)) return false;
    if (s.contains("items"))
      for (const auto& e : v)
        if (!valid(root, s["items"], e)) return false;
  }
  return true;
}

TEST(JsonConstraintValidator, CatchesViolations) {
  const json s = {{"type", "object"},
                  {"properties", {{"a", {{"type", "integer"}}}, {"b", {{"enum", {"x", "y"}}}}}},
                  {"required", {"a"}},
                  {"additionalProperties", false}};
  EXPECT_TRUE(valid(s, s, json::parse(R"({"a": 1, "b": "x"})")));
  EXPECT_FALSE(valid(s, s, json::parse(R"({"b": "x"})")));
  EXPECT_FALSE(valid(s, s, json::parse(R"({"a": 1.5})")));
  EXPECT_FALSE(valid(s, s, json::parse(R"({"a": 1, "b": "z"})")));
  EXPECT_FALSE(valid(s, s, json::parse(R"({"a": 1, "c": 2})")));
}

// ---------------------------------------------------------------------------------------------
// Random walks: random logits, the mask, a softmax draw, accept. Every step checks that something
// is allowed, that EOG is allowed exactly when the document is complete, and that the trie walk in
// mask() agrees with allows() token by token.

struct Walk {
  std::string text;
  bool finished = false;
};

Walk random_walk(std::shared_ptr<const JsonGrammar> grammar, uint64_t seed, int max_steps = 4000) {
  const TestVocab& tv = test_vocab();
  JsonMatcher m(std::move(grammar), tv.vocab);
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 2.0f);
  std::uniform_real_distribution<double> uniform(0.0, 1.0);
  const size_t n = tv.pieces.size() + 3;  // a padded logits row: ids past the vocabulary
  Walk w;
  for (int step = 0; step < max_steps; ++step) {
    std::vector<float> logits(n);
    for (auto& x : logits) x = normal(rng);
    // Later on, favour tokens that close things so that walks end.
    const float push = step > 40 ? 0.05f * static_cast<float>(step - 40) : 0.0f;
    for (size_t t = 0; t < tv.pieces.size(); ++t) {
      const std::string& p = tv.pieces[t];
      if (p.find('"') != std::string::npos) logits[t] += 3 * push;
      if (p.find_first_of("}]") != std::string::npos) logits[t] += 2 * push;
      if (p.find_first_of(",{[") != std::string::npos) logits[t] -= push;
      if (p.size() > 3 && p.front() == '"' && p.ends_with("\":")) logits[t] += 4 * push;  // whole names
    }
    logits[static_cast<size_t>(tv.eos)] += 2 * push;
    m.mask(logits);

    EXPECT_EQ(std::isfinite(logits[static_cast<size_t>(tv.eos)]), m.complete()) << w.text;
    EXPECT_FALSE(std::isfinite(logits[static_cast<size_t>(tv.control)])) << "empty control piece allowed";
    for (size_t t = tv.pieces.size(); t < n; ++t) EXPECT_FALSE(std::isfinite(logits[t]));
    for (size_t t = 0; t < tv.pieces.size(); ++t)
      if (std::isfinite(logits[t]) != m.allows(static_cast<int32_t>(t))) {
        ADD_FAILURE() << "mask and allows() disagree on "
                      << json(tv.pieces[t]).dump(-1, ' ', true, json::error_handler_t::replace) << " after " << w.text;
        return w;
      }

    float top = -INFINITY;
    for (const float x : logits) top = std::max(top, x);
    if (!std::isfinite(top)) {
      ADD_FAILURE() << "dead end after " << w.text;
      return w;
    }
    double total = 0;
    for (const float x : logits) total += std::isfinite(x) ? std::exp(x - top) : 0.0;
    double r = uniform(rng) * total;
    size_t pick = 0;
    for (size_t t = 0; t < n; ++t) {
      if (!std::isfinite(logits[t])) continue;
      pick = t;
      r -= std::exp(logits[t] - top);
      if (r <= 0) break;
    }
    const auto token = static_cast<int32_t>(pick);
    EXPECT_NO_THROW(m.accept(token));
    if (tv.vocab->is_eog(token)) {
      w.finished = true;
      return w;
    }
    w.text += tv.pieces[pick];
  }
  return w;
}

// Walks many seeds; each document must parse and validate.
std::vector<json> check_walks(const json& schema, int trials, uint64_t seed0) {
  const auto grammar = schema.is_null() ? JsonGrammar::any_object() : JsonGrammar::from_schema(schema);
  std::vector<json> docs;
  for (int i = 0; i < trials; ++i) {
    const Walk w = random_walk(grammar, seed0 + static_cast<uint64_t>(i));
    if (::testing::Test::HasFailure()) break;
    EXPECT_TRUE(w.finished) << "walk did not end: " << w.text.substr(0, 400);
    json doc;
    try {
      doc = json::parse(w.text);
    } catch (const json::exception& e) {
      ADD_FAILURE() << "does not parse: " << e.what() << "\n" << w.text;
      break;
    }
    if (schema.is_null())
      EXPECT_TRUE(doc.is_object()) << w.text;
    else
      EXPECT_TRUE(valid(schema, schema, doc)) << "does not validate: " << w.text;
    docs.push_back(doc);
  }
  return docs;
}

TEST(JsonConstraint, AnyObjectWalksParse) {
  const auto docs = check_walks(json(), 60, 1000);
  ASSERT_EQ(docs.size(), 60u);
  size_t nested = 0;
  for (const auto& d : docs)
    for (const auto& [k, v] : d.items()) nested += v.is_structured();
  EXPECT_GT(nested, 0u) << "walks never nested a value";
}

const json kPerson = json::parse(R"({
  "type": "object",
  "properties": {
    "name": {"type": "string", "minLength": 1, "maxLength": 8, "description": "who"},
    "age": {"type": "integer"},
    "email": {"type": ["string", "null"], "format": "email"},
    "tags": {"type": "array", "items": {"type": "string", "enum": ["red", "green", "blue"]}, "minItems": 1, "maxItems": 3},
    "status": {"enum": ["active", "inactive", 3, null]},
    "score": {"type": "number"}
  },
  "required": ["name", "age", "tags"],
  "additionalProperties": false
})");

TEST(JsonConstraint, SchemaWalksValidate) {
  const auto docs = check_walks(kPerson, 80, 2000);
  ASSERT_EQ(docs.size(), 80u);
  std::set<std::string> statuses;
  bool saw_score = false;
  for (const auto& d : docs) {
    EXPECT_TRUE(d["age"].is_number_integer());
    EXPECT_GE(d["tags"].size(), 1u);
    if (d.contains("status")) statuses.insert(d["status"].dump());
    saw_score = saw_score || d.contains("score");
  }
  EXPECT_GE(statuses.size(), 2u) << "enum values never varied";
  EXPECT_TRUE(saw_score) << "optional properties never written";
}

TEST(JsonConstraint, RefsRecursionAndNesting) {
  const json schema = json::parse(R"({
    "$defs": {
      "node": {
        "type": "object",
        "properties": {
          "value": {"type": "number"},
          "children": {"type": "array", "items": {"$ref": "#/$defs/node"}, "maxItems": 2}
        },
        "required": ["value"],
        "additionalProperties": false
      }
    },
    "type": "object",
    "properties": {"root": {"$ref": "#/$defs/node"}, "flag": {"type": "boolean"}},
    "required": ["root", "flag"],
    "additionalProperties": false
  })");
  const auto docs = check_walks(schema, 60, 3000);
  ASSERT_EQ(docs.size(), 60u);
  bool deep = false;
  for (const auto& d : docs) deep = deep || (d["root"].contains("children") && !d["root"]["children"].empty());
  EXPECT_TRUE(deep) << "recursion never taken";
}

TEST(JsonConstraint, AnyOfNullableAndAdditionalProperties) {
  const json schema = json::parse(R"({
    "type": "object",
    "properties": {
      "shape": {"anyOf": [
        {"type": "object", "properties": {"kind": {"const": "circle"}, "r": {"type": "number"}},
         "required": ["kind", "r"], "additionalProperties": false},
        {"type": "object", "properties": {"kind": {"const": "rect"}, "w": {"type": "integer"}, "h": {"type": "integer"}},
         "required": ["kind", "w", "h"], "additionalProperties": false}
      ]},
      "note": {"type": "string", "nullable": true, "maxLength": 3}
    },
    "required": ["shape"]
  })");
  const auto docs = check_walks(schema, 60, 4000);
  ASSERT_EQ(docs.size(), 60u);
  std::set<std::string> kinds;
  for (const auto& d : docs) kinds.insert(d["shape"]["kind"].get<std::string>());
  EXPECT_EQ(kinds.size(), 2u);
}

TEST(JsonConstraint, DefinitionsOneOfAndTopLevelArray) {
  const json schema = json::parse(R"({
    "definitions": {"pt": {"type": "array", "items": {"type": "integer"}, "minItems": 2, "maxItems": 2}},
    "type": "array",
    "maxItems": 4,
    "items": {"oneOf": [{"$ref": "#/definitions/pt"}, {"type": "boolean"}, {"type": "null"},
                        {"type": "object", "additionalProperties": {"$ref": "#/definitions/pt"}}]}
  })");
  check_walks(schema, 60, 5000);
}

TEST(JsonConstraint, EnumIsFilteredByType) {
  const json schema = {{"type", "object"},
                       {"properties", {{"c", {{"type", "string"}, {"enum", {"red", 1, "bb", nullptr}}}}}},
                       {"required", {"c"}},
                       {"additionalProperties", false}};
  const auto docs = check_walks(schema, 40, 6000);
  for (const auto& d : docs) EXPECT_TRUE(d["c"] == "red" || d["c"] == "bb") << d.dump();
}

// ---------------------------------------------------------------------------------------------
// Single rules.

TEST(JsonConstraint, EndOfGenerationOnlyWhenComplete) {
  const TestVocab& tv = test_vocab();
  JsonMatcher m(JsonGrammar::any_object(), tv.vocab);
  auto eog_allowed = [&] {
    const auto l = masked(m, tv.pieces.size());
    return std::isfinite(l[static_cast<size_t>(tv.eos)]) && std::isfinite(l[static_cast<size_t>(tv.eot)]);
  };
  EXPECT_FALSE(eog_allowed());
  EXPECT_FALSE(allowed_byte(m, ' ')) << "leading whitespace";
  EXPECT_FALSE(allowed_byte(m, '[')) << "json_object needs an object";
  EXPECT_THROW(m.accept(tv.eos), Error);
  feed(m, R"({"a":1)");
  EXPECT_FALSE(eog_allowed());
  EXPECT_FALSE(m.complete());
  feed(m, "}");
  EXPECT_TRUE(m.complete());
  EXPECT_TRUE(eog_allowed());
  // Complete: only EOG and (bounded) whitespace remain.
  const auto l = masked(m, tv.pieces.size());
  for (size_t t = 0; t < tv.pieces.size(); ++t) {
    if (!std::isfinite(l[t]) || tv.vocab->is_eog(static_cast<int32_t>(t))) continue;
    EXPECT_EQ(tv.pieces[t].find_first_not_of(" \t\n\r"), std::string::npos) << tv.pieces[t];
  }
  m.accept(tv.eos);
}

TEST(JsonConstraint, ForbiddenTokenThrowsAndLeavesStateAlone) {
  const TestVocab& tv = test_vocab();
  JsonMatcher m(JsonGrammar::any_object(), tv.vocab);
  try {
    m.accept(byte_tok('x'));
    FAIL() << "accepted 'x' at the start";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::InvalidArgument);
  }
  EXPECT_THROW(m.accept(tv.control), Error);
  EXPECT_THROW(m.accept(-1), Error);
  EXPECT_THROW(m.accept(static_cast<int32_t>(tv.pieces.size())), Error);
  feed(m, "{");
  EXPECT_THROW(m.accept(byte_tok(']')), Error);
  EXPECT_THROW(m.accept(byte_tok('1')), Error) << "keys are strings";
  m.accept(byte_tok('}'));  // the failed calls changed nothing
  EXPECT_TRUE(m.complete());
}

TEST(JsonConstraint, WhitespaceIsBounded) {
  JsonMatcher m(JsonGrammar::any_object(), test_vocab().vocab);
  feed(m, "{");
  EXPECT_TRUE(allowed_byte(m, ' '));
  feed(m, " \n");
  EXPECT_FALSE(allowed_byte(m, ' '));
  EXPECT_FALSE(allowed_byte(m, '\t'));
  feed(m, "\"k\"  :\t\"v\" \n,\n \"n\":1  }\n\n");
  EXPECT_TRUE(m.complete());
  EXPECT_FALSE(allowed_byte(m, '\n'));
}

TEST(JsonConstraint, RequiredAndUniqueKeys) {
  const TestVocab& tv = test_vocab();
  JsonMatcher m(JsonGrammar::from_schema(kPerson), tv.vocab);
  feed(m, R"({"name":"x")");
  EXPECT_FALSE(allowed_byte(m, '}')) << "age and tags are required";
  feed(m, R"(,"age":1)");
  EXPECT_FALSE(allowed_byte(m, '.'));
  EXPECT_FALSE(allowed_byte(m, 'e'));
  EXPECT_FALSE(allowed_byte(m, 'E'));
  feed(m, ",\"");
  EXPECT_FALSE(allowed_byte(m, 'x')) << "only declared names";
  EXPECT_FALSE(allowed_byte(m, 'n')) << "name was written already";
  EXPECT_TRUE(allowed_byte(m, 't'));
  EXPECT_FALSE(m.allows(byte_tok('"'))) << "empty key is not declared";
  feed(m, R"(tags":["red","blue"])");
  EXPECT_TRUE(allowed_byte(m, '}'));
  feed(m, R"(,"email":null,"status":3,"score":-0.5e+3)");
  EXPECT_FALSE(allowed_byte(m, ',')) << "every declared property is used";
  feed(m, "}");
  EXPECT_TRUE(m.complete());
}

TEST(JsonConstraint, EnumValuesAndArrayBounds) {
  JsonMatcher m(JsonGrammar::from_schema(kPerson), test_vocab().vocab);
  feed(m, R"({"tags":[)");
  EXPECT_FALSE(allowed_byte(m, ']')) << "minItems 1";
  feed(m, "\"");
  EXPECT_TRUE(allowed_byte(m, 'r'));
  EXPECT_TRUE(allowed_byte(m, 'g'));
  EXPECT_FALSE(allowed_byte(m, 'x'));
  feed(m, R"(red","red","red")");
  EXPECT_FALSE(allowed_byte(m, ',')) << "maxItems 3";
  feed(m, R"(],"status":)");
  EXPECT_TRUE(allowed_byte(m, '3'));
  EXPECT_TRUE(allowed_byte(m, 'n'));
  EXPECT_FALSE(allowed_byte(m, '4'));
  EXPECT_FALSE(allowed_byte(m, 't'));
}

TEST(JsonConstraint, NumbersFollowRfc8259) {
  const json schema = {{"type", "array"}, {"items", {{"type", "number"}}}};
  auto ok = [&](const std::string& text) {
    JsonMatcher m(JsonGrammar::from_schema(schema), test_vocab().vocab);
    try {
      feed(m, text);
    } catch (const Error&) {
      return false;
    }
    return m.complete();
  };
  EXPECT_TRUE(ok("[0,-0,12,-3.25,1e5,1E+05,2.5e-3,0.0]"));
  EXPECT_FALSE(ok("[01]"));
  EXPECT_FALSE(ok("[-]"));
  EXPECT_FALSE(ok("[1.]"));
  EXPECT_FALSE(ok("[.5]"));
  EXPECT_FALSE(ok("[1e]"));
  EXPECT_FALSE(ok("[+1]"));
  EXPECT_FALSE(ok("[1.5.2]"));
  EXPECT_FALSE(ok("[1234567890123456789]")) << "integer part is bounded";
  EXPECT_TRUE(ok("[123456789012345678]"));
  // A top-level number is complete once it could end, and may still go on.
  JsonMatcher top(JsonGrammar::from_schema({{"type", "integer"}}), test_vocab().vocab);
  feed(top, "12");
  EXPECT_TRUE(top.complete());
  EXPECT_TRUE(allowed_byte(top, '3'));
  EXPECT_FALSE(allowed_byte(top, '.'));
}

TEST(JsonConstraint, StringsEscapesAndUtf8) {
  const TestVocab& tv = test_vocab();
  const json schema = {{"type", "array"}, {"items", {{"type", "string"}, {"maxLength", 3}, {"minLength", 2}}}};
  auto ok = [&](const std::string& text) {
    JsonMatcher m(JsonGrammar::from_schema(schema), tv.vocab);
    try {
      feed(m, text);
    } catch (const Error&) {
      return false;
    }
    return m.complete();
  };
  EXPECT_TRUE(ok(R"(["ab","\n\"\\","\u00e9x","\/\b\f"])"));
  EXPECT_TRUE(ok("[\"\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80\"]")) << "three code points";
  EXPECT_FALSE(ok("[\"\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80z\"]")) << "four code points";
  EXPECT_FALSE(ok(R"(["a"])")) << "minLength";
  EXPECT_FALSE(ok("[\"a\nb\"]")) << "raw control character";
  EXPECT_FALSE(ok(R"(["\x"])"));
  EXPECT_FALSE(ok(R"(["\ud83d\ude00"])")) << "surrogate escapes";
  EXPECT_FALSE(ok("[\"\xC0\xAF\"]")) << "overlong UTF-8";
  EXPECT_FALSE(ok("[\"a\xFF\"]"));
  EXPECT_FALSE(ok("[\"a\x80\"]")) << "lone continuation byte";
  EXPECT_FALSE(ok("[\"\xED\xA0\x80\"]")) << "UTF-8 surrogate";
  // A character split across tokens.
  JsonMatcher m(JsonGrammar::from_schema(schema), tv.vocab);
  feed(m, "[\"");
  m.accept(byte_tok('\xC3'));
  EXPECT_FALSE(allowed_byte(m, 'a'));
  EXPECT_FALSE(allowed_byte(m, '"'));
  EXPECT_TRUE(allowed_byte(m, '\xA9'));
}

TEST(JsonConstraint, MatcherIsCopyable) {
  JsonMatcher a(JsonGrammar::any_object(), test_vocab().vocab);
  feed(a, R"({"k":)");
  JsonMatcher b = a;
  feed(b, "[1]}");
  EXPECT_TRUE(b.complete());
  EXPECT_FALSE(a.complete());
  feed(a, "\"v\"}");
  EXPECT_TRUE(a.complete());
}

TEST(JsonConstraint, AdditionalPropertiesSchema) {
  const json schema = {{"type", "object"},
                       {"properties", {{"id", {{"type", "integer"}}}}},
                       {"additionalProperties", {{"type", "boolean"}}}};
  JsonMatcher m(JsonGrammar::from_schema(schema), test_vocab().vocab);
  feed(m, R"({"idx":)");
  EXPECT_TRUE(allowed_byte(m, 't'));
  EXPECT_FALSE(allowed_byte(m, '1'));
  feed(m, R"(true,"id":)");
  EXPECT_TRUE(allowed_byte(m, '1'));
  EXPECT_FALSE(allowed_byte(m, 't'));
  feed(m, R"(7,")");
  EXPECT_TRUE(allowed_byte(m, 'i'));
  feed(m, "id");
  EXPECT_FALSE(allowed_byte(m, '"')) << "id again";
  EXPECT_FALSE(allowed_byte(m, '\\')) << "no escapes in additional names";
  feed(m, R"(2":false})");
  EXPECT_TRUE(m.complete());
}

TEST(JsonConstraint, EscapedPropertyNames) {
  // A declared name that needs an escape is matched as written by a JSON serializer.
  const json schema = {{"type", "object"},
                       {"properties", {{"a\"b", {{"type", "null"}}}, {"a", {{"type", "null"}}}}},
                       {"required", {"a\"b"}},
                       {"additionalProperties", false}};
  JsonMatcher m(JsonGrammar::from_schema(schema), test_vocab().vocab);
  feed(m, R"({"a\"b":null,"a":null})");
  EXPECT_TRUE(m.complete());
  // With no declared names, names may use escapes.
  JsonMatcher any(JsonGrammar::any_object(), test_vocab().vocab);
  feed(any, R"({"a\"b\u00e9":1})");
  EXPECT_TRUE(any.complete());
  EXPECT_EQ(json::parse(R"({"a\"b\u00e9":1})").begin().key(), "a\"b\xC3\xA9");
}

// ---------------------------------------------------------------------------------------------
// Schema errors.

void expect_rejected(const json& schema, const std::string& word) {
  try {
    JsonGrammar::from_schema(schema);
    ADD_FAILURE() << "accepted " << schema.dump();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::InvalidArgument);
    EXPECT_NE(std::string(e.what()).find(word), std::string::npos) << e.what();
  }
}

TEST(JsonConstraint, UnsupportedKeywordsAreNamed) {
  expect_rejected({{"type", "integer"}, {"minimum", 0}}, "minimum");
  expect_rejected({{"type", "object"}, {"patternProperties", json::object()}}, "patternProperties");
  expect_rejected({{"not", {{"type", "null"}}}}, "not");
  expect_rejected({{"if", json::object()}}, "if");
  expect_rejected({{"type", "array"}, {"uniqueItems", true}}, "uniqueItems");
  expect_rejected({{"type", "array"}, {"prefixItems", json::array()}}, "prefixItems");
  expect_rejected({{"type", "array"}, {"items", json::array({{{"type", "string"}}})}}, "items");
  expect_rejected({{"type", "object"}, {"properties", {{"a", {{"multipleOf", 2}}}}}}, "multipleOf");
  expect_rejected({{"$ref", "https://example.com/s.json"}}, "$ref");
  expect_rejected({{"$ref", "#/$defs/missing"}}, "missing");
  expect_rejected({{"type", "strin"}}, "strin");
  expect_rejected({{"type", "string"}, {"minLength", -1}}, "minLength");
  expect_rejected({{"allOf", {{{"required", "a"}}, {{"required", {"b"}}}}}}, "JSON Schema");
  expect_rejected(json::parse(R"({"allOf": [{"properties": {"a": {}}}, {"properties": {"b": {}},
                                 "additionalProperties": false}]})"),
                  "additionalProperties");
  // Annotations and formatting hints are ignored.
  EXPECT_NO_THROW(JsonGrammar::from_schema({{"type", "string"},
                                            {"format", "date"},
                                            {"pattern", "^a"},
                                            {"title", "t"},
                                            {"default", "x"},
                                            {"examples", {"y"}},
                                            {"x-extra", 1}}));
}

TEST(JsonConstraint, UnsatisfiableSchemasAreRejected) {
  expect_rejected({{"type", "string"}, {"enum", {1, 2}}}, "enum");
  expect_rejected({{"type", "string"}, {"minLength", 3}, {"maxLength", 2}}, "no value");
  expect_rejected(json::parse(R"({"$defs": {"a": {"type": "object", "properties": {"x": {"$ref": "#/$defs/a"}},
                                 "required": ["x"]}}, "$ref": "#/$defs/a"})"),
                  "no value");
  expect_rejected({{"type", "object"}, {"required", {"a"}}, {"additionalProperties", false}}, "required");
  // An optional property that cannot be written is simply never offered.
  const json schema = {{"type", "object"},
                       {"properties", {{"never", false}, {"ok", {{"type", "null"}}}}},
                       {"additionalProperties", false}};
  JsonMatcher m(JsonGrammar::from_schema(schema), test_vocab().vocab);
  feed(m, "{\"");
  EXPECT_FALSE(allowed_byte(m, 'n'));
  EXPECT_TRUE(allowed_byte(m, 'o'));
}

TEST(JsonConstraint, AllOfAndRefSiblingsMerge) {
  const json schema = json::parse(R"({
    "$defs": {"base": {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}},
    "allOf": [{"$ref": "#/$defs/base"}, {"properties": {"b": {"type": "boolean"}}, "required": ["b"]}],
    "properties": {"b": {"const": true}}
  })");
  JsonMatcher m(JsonGrammar::from_schema(schema), test_vocab().vocab);
  feed(m, R"({"a":1)");
  EXPECT_FALSE(allowed_byte(m, '}'));
  feed(m, R"(,"b":)");
  EXPECT_FALSE(allowed_byte(m, 'f')) << "both parts' schemas of b apply";
  feed(m, R"(true})");
  EXPECT_TRUE(m.complete());
}

// ---------------------------------------------------------------------------------------------
// Timing on a vocabulary of real size. Prints; does not assert on time.

std::vector<std::string> synthetic_vocab(size_t n_text, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<std::string> pieces;
  std::set<std::string> seen;
  auto add = [&](std::string p) {
    if (seen.insert(p).second) pieces.push_back(std::move(p));
  };
  for (int b = 0; b < 256; ++b) add(std::string(1, static_cast<char>(b)));
  const std::string letters = "etaoinshrdlcumwfgypbvkjxqz";
  const std::string punct = "{}[]\":,.;!?()'-_/\\*&%$#@+=<>|~` \n\t";
  std::geometric_distribution<int> word_len(0.25);
  std::uniform_int_distribution<int> pct(0, 99);
  while (pieces.size() < n_text) {
    const int kind = pct(rng);
    std::string p;
    if (kind < 75) {
      if (pct(rng) < 55) p += ' ';
      const int len = 1 + std::min(word_len(rng), 14);
      for (int i = 0; i < len; ++i) {
        // Skewed towards frequent letters, as real vocabularies are.
        const size_t k = std::min<size_t>(letters.size() - 1,
                                          static_cast<size_t>(std::abs(std::normal_distribution<double>(0, 7)(rng))));
        p += letters[k];
      }
      if (pct(rng) < 10) p[p[0] == ' ' ? 1 : 0] = static_cast<char>(std::toupper(p[p[0] == ' ' ? 1 : 0]));
    } else if (kind < 82) {
      const int len = 1 + pct(rng) % 3;
      for (int i = 0; i < len; ++i) p += static_cast<char>('0' + pct(rng) % 10);
    } else if (kind < 92) {
      const int len = 2 + pct(rng) % 3;
      for (int i = 0; i < len; ++i) p += punct[static_cast<size_t>(pct(rng)) % punct.size()];
    } else if (kind < 94) {
      // Byte-level fragments: pieces of multi-byte characters, alone or next to text.
      const std::string cjk = "\xE4\xB8\xAD\xE6\x96\x87";
      const size_t from = static_cast<size_t>(pct(rng)) % cjk.size();
      p = cjk.substr(from, 1 + static_cast<size_t>(pct(rng)) % (cjk.size() - from));
      if (pct(rng) < 50) p += letters.substr(0, 1 + static_cast<size_t>(pct(rng)) % 4);
    } else {
      // Non-ASCII words: Latin-1 supplement and CJK code points.
      const int len = 1 + pct(rng) % 3;
      for (int i = 0; i < len; ++i) {
        const uint32_t cp =
            pct(rng) < 50 ? 0xC0 + static_cast<uint32_t>(pct(rng)) : 0x4E00 + static_cast<uint32_t>(rng() % 0x5000);
        if (cp < 0x800) {
          p += static_cast<char>(0xC0 | (cp >> 6));
          p += static_cast<char>(0x80 | (cp & 0x3F));
        } else {
          p += static_cast<char>(0xE0 | (cp >> 12));
          p += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
          p += static_cast<char>(0x80 | (cp & 0x3F));
        }
      }
    }
    add(std::move(p));
  }
  return pieces;
}

// Two alternatives live at once inside the value.
const json kStringOrEnum = json::parse(R"({"type": "object", "properties": {"s": {"anyOf": [
  {"type": "string", "maxLength": 14}, {"enum": ["hello world", "help me"]}]}}})");

TEST(JsonConstraint, MaskTimeOnA128kVocabulary) {
  std::vector<std::string> pieces = synthetic_vocab(128000, 7);
  for (int i = 0; i < 256; ++i) pieces.emplace_back();  // reserved control tokens: no text
  const auto eos = static_cast<int32_t>(pieces.size() - 2);
  const auto eot = static_cast<int32_t>(pieces.size() - 1);
  size_t bytes = 0;
  for (const auto& p : pieces) bytes += p.size();
  const auto t_vocab = std::chrono::steady_clock::now();
  const auto vocab = std::make_shared<ConstraintVocab>(pieces, std::vector<int32_t>{eos, eot});
  const double vocab_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t_vocab).count();
  std::printf("[ timing   ] vocabulary: %zu pieces, %zu bytes, built in %.1f ms\n", pieces.size(), bytes, vocab_ms);

  // Byte tokens of the synthetic vocabulary (its first 256 pieces) for feeding text.
  auto feed_big = [&](JsonMatcher& m, std::string_view text) {
    for (const char c : text) m.accept(static_cast<int32_t>(static_cast<uint8_t>(c)));
  };
  struct Case {
    const char* what;
    std::shared_ptr<const JsonGrammar> grammar;
    const char* prefix;
  };
  const Case cases[] = {
      {"start of document", JsonGrammar::any_object(), ""},
      {"json_object: in a key", JsonGrammar::any_object(), "{\"ab"},
      {"json_object: in a string value", JsonGrammar::any_object(), "{\"ab\": \"hello "},
      {"json_object: value start", JsonGrammar::any_object(), "{\"ab\":"},
      {"json_object: in a number", JsonGrammar::any_object(), "{\"ab\": 12"},
      {"schema: in a declared key", JsonGrammar::from_schema(kPerson), "{\"na"},
      {"schema: in a string value", JsonGrammar::from_schema(kPerson), "{\"name\":\"ab"},
      {"schema: after a value", JsonGrammar::from_schema(kPerson), "{\"name\":\"ab\""},
      {"schema: 2 chars left in a string", JsonGrammar::from_schema(kPerson), "{\"name\":\"abcdef"},
      {"schema: string or enum (full walk)", JsonGrammar::from_schema(kStringOrEnum), "{\"s\":\"hel"},
      {"schema: declared or other key", JsonGrammar::from_schema(kStringOrEnum), "{\"s"},
      {"schema: in an escape", JsonGrammar::any_object(), "{\"a\":\"\\u00"},
  };
  std::vector<float> logits(pieces.size());
  for (const Case& c : cases) {
    JsonMatcher m(c.grammar, vocab);
    feed_big(m, c.prefix);
    m.mask(logits);  // warm-up
    const int reps = 20;
    const auto t0 = std::chrono::steady_clock::now();
    size_t allowed = 0;
    for (int r = 0; r < reps; ++r) {
      std::fill(logits.begin(), logits.end(), 0.0f);
      m.mask(logits);
    }
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count() / reps;
    for (const float x : logits) allowed += std::isfinite(x);
    std::printf("[ timing   ] %-36s %6.2f ms per mask, %6zu tokens allowed\n", c.what, ms, allowed);
    // The trie walk (and the plain-content shortcut) must agree with feeding each piece alone.
    for (size_t t = 0; t < pieces.size(); ++t)
      ASSERT_EQ(std::isfinite(logits[t]), m.allows(static_cast<int32_t>(t))) << c.what << ": " << pieces[t];
    EXPECT_GT(allowed, 0u);
  }
}

}  // namespace
}  // namespace vireo
