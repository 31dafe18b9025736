#include "vireo/runtime/json_constraint.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <string_view>
#include <utility>

#include <nlohmann/json.hpp>

#include "vireo/core/error.h"

namespace vireo {

using nlohmann::json;

namespace detail {

enum TypeBit : uint8_t {
  kString = 1,
  kNumber = 2,
  kInteger = 4,
  kBoolean = 8,
  kNull = 16,
  kObject = 32,
  kArray = 64,
};
constexpr uint8_t kAllTypes = 127;
constexpr uint8_t kScalarTypes = kString | kNumber | kInteger | kBoolean | kNull;

constexpr uint32_t kUnbounded = std::numeric_limits<uint32_t>::max();
constexpr uint32_t kAdditional = 0xFFFFFFFEu;  // the key being written is not a declared property
constexpr size_t kMaxProperties = 64;          // declared properties per object: Frame::seen is 64 bits
constexpr uint8_t kMaxWhitespace = 2;          // whitespace bytes in a row
constexpr uint16_t kMaxNesting = 32;           // deeper, containers only where no scalar would do
constexpr uint32_t kMaxIntDigits = 18;         // keeps every integer inside int64
constexpr uint32_t kMaxFracDigits = 20;
constexpr uint32_t kMaxExpDigits = 2;    // with the bounds above, every number is a finite double
constexpr size_t kMaxAlternatives = 64;  // live anyOf alternatives; more are dropped (each kept one is valid)
constexpr int kMaxSchemaDepth = 200;

struct GNode {
  uint8_t types = 0;            // TypeBit set; 0: no value matches
  int32_t literals = -1;        // enum/const: the value is one of GrammarData::literal_sets[literals]
  std::vector<int32_t> any_of;  // a union of these nodes (nothing else applies)
  // Strings: length in code points.
  uint32_t min_length = 0, max_length = kUnbounded;
  // Objects: declared property names as written inside the quotes, sorted bytewise.
  std::vector<std::string> keys;
  std::vector<int32_t> key_nodes;  // parallel to keys
  uint64_t required = 0;           // bits over keys
  uint64_t usable = 0;             // keys whose value can be written
  int32_t additional = -1;         // schema of other properties; -1: none allowed
  // Arrays.
  int32_t items = -1;
  uint32_t min_items = 0, max_items = kUnbounded;
  // Derived after compiling.
  std::vector<int32_t> alts;  // the non-union nodes this value may take
  bool has_scalar = false;    // some alternative needs no nesting
};

struct GrammarData {
  std::vector<GNode> nodes;
  std::vector<std::vector<std::string>> literal_sets;  // each sorted bytewise
  int32_t root = -1;
  int32_t bool_set = -1, null_set = -1;
};

// ---------------------------------------------------------------------------------------------
// The byte-level machine.

enum FrameKind : uint8_t { kRoot, kObjectFrame, kArrayFrame, kStringFrame, kNumberFrame, kLiteralFrame };
// Frame fields by kind:
//   root:    state
//   object:  state, ws, esc (key), a..b: declared keys still matching the key so far (a == b: an
//            additional key), c: key bytes so far, d: the key's index (or kAdditional), seen
//   array:   state, ws, a: items started
//   string:  esc, a: code points so far
//   number:  state, a: digits in the current part, flags: integers only
//   literal: node: literal set, a..b: values still matching, c: bytes so far
enum RootState : uint8_t { kRootStart, kRootInValue, kRootDone };
enum ObjectState : uint8_t {
  kObjStart,
  kObjKey,
  kObjAfterKey,
  kObjAfterColon,
  kObjInValue,
  kObjAfterValue,
  kObjAfterComma
};
enum ArrayState : uint8_t { kArrStart, kArrInValue, kArrAfterValue, kArrAfterComma };
enum NumberState : uint8_t { kNumMinus, kNumZero, kNumInt, kNumDot, kNumFrac, kNumExpMark, kNumExpSign, kNumExp };
enum StringSub : uint8_t {
  kEscNone,
  kEscStart,
  kHex1,
  kHex2NoSurrogate,
  kHex2,
  kHex3,
  kHex4,
  kCont1,
  kCont2,
  kCont3,
  kAfterE0,
  kAfterED,
  kAfterF0,
  kAfterF4,
};

bool is_ws(uint8_t c) {
  return c == ' ' || c == '\n' || c == '\t' || c == '\r';
}
bool is_digit(uint8_t c) {
  return c >= '0' && c <= '9';
}
bool is_hex(uint8_t c) {
  return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}
bool number_accepting(uint8_t s) {
  return s == kNumZero || s == kNumInt || s == kNumFrac || s == kNumExp;
}

// One byte of string content (not the closing quote). Returns -1 if invalid, 1 if it starts a code
// point, 0 if it continues one.
int string_byte(uint8_t& esc, uint8_t c) {
  auto cont = [&](uint8_t lo, uint8_t hi, uint8_t next) {
    if (c < lo || c > hi) return -1;
    esc = next;
    return 0;
  };
  switch (esc) {
    case kEscNone:
      if (c == '\\') {
        esc = kEscStart;
        return 1;
      }
      if (c < 0x20 || c == '"') return -1;
      if (c < 0x80) return 1;
      // Well-formed UTF-8 only (no overlongs, surrogates or code points past U+10FFFF).
      if (c >= 0xC2 && c <= 0xDF)
        esc = kCont1;
      else if (c == 0xE0)
        esc = kAfterE0;
      else if (c == 0xED)
        esc = kAfterED;
      else if (c >= 0xE1 && c <= 0xEF)
        esc = kCont2;
      else if (c == 0xF0)
        esc = kAfterF0;
      else if (c >= 0xF1 && c <= 0xF3)
        esc = kCont3;
      else if (c == 0xF4)
        esc = kAfterF4;
      else
        return -1;
      return 1;
    case kEscStart:
      switch (c) {
        case '"':
        case '\\':
        case '/':
        case 'b':
        case 'f':
        case 'n':
        case 'r':
        case 't': esc = kEscNone; return 0;
        case 'u': esc = kHex1; return 0;
        default: return -1;
      }
    // No surrogates (\uD800-\uDFFF), so that each escape is exactly one code point.
    case kHex1:
      if (c == 'd' || c == 'D') {
        esc = kHex2NoSurrogate;
        return 0;
      }
      if (!is_hex(c)) return -1;
      esc = kHex2;
      return 0;
    case kHex2NoSurrogate: return cont('0', '7', kHex3);
    case kHex2:
      if (!is_hex(c)) return -1;
      esc = kHex3;
      return 0;
    case kHex3:
      if (!is_hex(c)) return -1;
      esc = kHex4;
      return 0;
    case kHex4:
      if (!is_hex(c)) return -1;
      esc = kEscNone;
      return 0;
    case kCont1: return cont(0x80, 0xBF, kEscNone);
    case kCont2: return cont(0x80, 0xBF, kCont1);
    case kCont3: return cont(0x80, 0xBF, kCont2);
    case kAfterE0: return cont(0xA0, 0xBF, kCont1);
    case kAfterED: return cont(0x80, 0x9F, kCont1);
    case kAfterF0: return cont(0x90, 0xBF, kCont2);
    case kAfterF4: return cont(0x80, 0x8F, kCont2);
    default: return -1;
  }
}

// Within [lo, hi) of a sorted set whose strings share their first `pos` bytes, the strings whose
// byte at `pos` is c (also contiguous, as sorting puts a string before its extensions).
std::pair<uint32_t, uint32_t> narrow(const std::vector<std::string>& set, uint32_t lo, uint32_t hi, uint32_t pos,
                                     uint8_t c) {
  auto byte_at = [&](uint32_t i) {
    return set[i].size() > pos ? static_cast<int>(static_cast<uint8_t>(set[i][pos])) : -1;
  };
  auto first = [&](uint32_t l, uint32_t h, auto below) {
    while (l < h) {
      const uint32_t m = l + (h - l) / 2;
      if (below(byte_at(m)))
        l = m + 1;
      else
        h = m;
    }
    return l;
  };
  const uint32_t new_lo = first(lo, hi, [&](int b) { return b < c; });
  const uint32_t new_hi = first(new_lo, hi, [&](int b) { return b <= c; });
  return {new_lo, new_hi};
}

uint64_t range_bits(uint32_t lo, uint32_t hi) {
  const uint64_t below_hi = hi >= 64 ? ~uint64_t{0} : (uint64_t{1} << hi) - 1;
  const uint64_t below_lo = lo >= 64 ? ~uint64_t{0} : (uint64_t{1} << lo) - 1;
  return below_hi & ~below_lo;
}

// Steps stacks by one byte. Frames are only appended, never changed, so the caller can drop
// everything appended after a mark to undo.
class Machine {
 public:
  Machine(const GrammarData& g, std::vector<Frame>& frames, std::vector<uint32_t>& out)
      : g_(g), frames_(frames), out_(out) {}

  // Feeds byte c to the stack topped by frame h; appends the tops of the surviving stacks to out.
  void feed(uint32_t h, uint8_t c) {
    Frame f = frames_[h];
    switch (f.kind) {
      case kRoot:
        if (f.state == kRootStart) {
          f.state = kRootInValue;
          start_value(push(f), g_.root, c);
        } else if (f.state == kRootDone) {
          whitespace(f, c);
        }
        return;
      case kObjectFrame: feed_object(f, c); return;
      case kArrayFrame: feed_array(f, c); return;
      case kStringFrame: feed_string(f, c); return;
      case kNumberFrame: feed_number(f, c); return;
      case kLiteralFrame: feed_literal(f, c); return;
      default: return;
    }
  }

  // Drops alternatives appended from `begin` on that equal an earlier one, and any past the cap.
  void dedupe(size_t begin) {
    if (out_.size() - begin <= 1) return;
    size_t kept = begin;
    for (size_t i = begin; i < out_.size(); ++i) {
      bool dup = false;
      for (size_t j = begin; j < kept && !dup; ++j) dup = frames_[out_[j]] == frames_[out_[i]];
      if (!dup && kept - begin < kMaxAlternatives) out_[kept++] = out_[i];
    }
    out_.resize(kept);
  }

 private:
  uint32_t push(const Frame& f) {
    frames_.push_back(f);
    return static_cast<uint32_t>(frames_.size() - 1);
  }
  void emit(const Frame& f) { out_.push_back(push(f)); }

  void whitespace(Frame& f, uint8_t c) {
    if (!is_ws(c) || f.ws >= kMaxWhitespace) return;
    ++f.ws;
    emit(f);
  }

  // The parent of a value that has just ended, moved past it.
  uint32_t after_value(uint32_t parent) {
    Frame p = frames_[parent];
    p.ws = 0;
    if (p.kind == kRoot)
      p.state = kRootDone;
    else if (p.kind == kObjectFrame)
      p.state = kObjAfterValue;
    else
      p.state = kArrAfterValue;
    return push(p);
  }

  void start_value(uint32_t parent, int32_t node, uint8_t c) {
    const GNode& n = g_.nodes[static_cast<size_t>(node)];
    const uint16_t depth = static_cast<uint16_t>(std::min<int>(frames_[parent].depth + 1, 0xFFFF));
    // Past the nesting bound a model could otherwise open brackets forever.
    const bool containers = depth <= kMaxNesting || !n.has_scalar;
    for (const int32_t alt : n.alts) start_alt(parent, depth, alt, c, containers);
  }

  void start_alt(uint32_t parent, uint16_t depth, int32_t node, uint8_t c, bool containers) {
    const GNode& n = g_.nodes[static_cast<size_t>(node)];
    Frame f;
    f.parent = parent;
    f.depth = depth;
    if (n.literals >= 0) {
      start_literal(f, n.literals, c);
    } else if (c == '"') {
      if (!(n.types & kString)) return;
      f.kind = kStringFrame;
      f.node = static_cast<uint32_t>(node);
      emit(f);
    } else if (c == '-' || is_digit(c)) {
      if (!(n.types & (kNumber | kInteger))) return;
      f.kind = kNumberFrame;
      f.flags = (n.types & kNumber) ? 0 : 1;
      f.state = c == '-' ? kNumMinus : c == '0' ? kNumZero : kNumInt;
      f.a = f.state == kNumInt ? 1 : 0;
      emit(f);
    } else if (c == 't' || c == 'f') {
      if (n.types & kBoolean) start_literal(f, g_.bool_set, c);
    } else if (c == 'n') {
      if (n.types & kNull) start_literal(f, g_.null_set, c);
    } else if (c == '{') {
      if (!(n.types & kObject) || !containers) return;
      f.kind = kObjectFrame;
      f.node = static_cast<uint32_t>(node);
      f.state = kObjStart;
      emit(f);
    } else if (c == '[') {
      if (!(n.types & kArray) || !containers) return;
      f.kind = kArrayFrame;
      f.node = static_cast<uint32_t>(node);
      f.state = kArrStart;
      emit(f);
    }
  }

  void start_literal(Frame& f, int32_t set_index, uint8_t c) {
    const auto& set = g_.literal_sets[static_cast<size_t>(set_index)];
    const auto [lo, hi] = narrow(set, 0, static_cast<uint32_t>(set.size()), 0, c);
    if (lo == hi) return;
    f.kind = kLiteralFrame;
    f.node = static_cast<uint32_t>(set_index);
    f.a = lo;
    f.b = hi;
    f.c = 1;
    emit(f);
  }

  void feed_literal(Frame& f, uint8_t c) {
    const auto& set = g_.literal_sets[f.node];
    const auto [lo, hi] = narrow(set, f.a, f.b, f.c, c);
    if (lo < hi) {
      f.a = lo;
      f.b = hi;
      ++f.c;
      emit(f);
    } else if (set[f.a].size() == f.c) {
      // The value ended one byte ago (no value continues with c): c belongs to the parent.
      feed(after_value(f.parent), c);
    }
  }

  void feed_number(Frame& f, uint8_t c) {
    const bool integer = f.flags != 0;
    const bool digit = is_digit(c);
    const bool exp_mark = !integer && (c == 'e' || c == 'E');
    int next = -1;
    switch (f.state) {
      case kNumMinus:
        if (c == '0')
          next = kNumZero;
        else if (digit)
          next = kNumInt, f.a = 1;
        break;
      case kNumZero:
        if (!integer && c == '.')
          next = kNumDot;
        else if (exp_mark)
          next = kNumExpMark;
        break;
      case kNumInt:
        if (digit && f.a < kMaxIntDigits)
          next = kNumInt, ++f.a;
        else if (!integer && c == '.')
          next = kNumDot;
        else if (exp_mark)
          next = kNumExpMark;
        break;
      case kNumDot:
        if (digit) next = kNumFrac, f.a = 1;
        break;
      case kNumFrac:
        if (digit && f.a < kMaxFracDigits)
          next = kNumFrac, ++f.a;
        else if (exp_mark)
          next = kNumExpMark;
        break;
      case kNumExpMark:
        if (c == '+' || c == '-')
          next = kNumExpSign;
        else if (digit)
          next = kNumExp, f.a = 1;
        break;
      case kNumExpSign:
        if (digit) next = kNumExp, f.a = 1;
        break;
      case kNumExp:
        if (digit && f.a < kMaxExpDigits) next = kNumExp, ++f.a;
        break;
      default: break;
    }
    if (next >= 0) {
      f.state = static_cast<uint8_t>(next);
      emit(f);
    } else if (number_accepting(f.state)) {
      // Numbers end where a byte cannot continue them; that byte belongs to the parent.
      feed(after_value(f.parent), c);
    }
  }

  void feed_string(Frame& f, uint8_t c) {
    const GNode& n = g_.nodes[f.node];
    if (f.esc == kEscNone && c == '"') {
      if (f.a >= n.min_length) out_.push_back(after_value(f.parent));
      return;
    }
    const int r = string_byte(f.esc, c);
    if (r < 0) return;
    if (r == 1) {
      if (f.a >= n.max_length) return;
      ++f.a;
    }
    emit(f);
  }

  static bool can_add_key(const GNode& n, uint64_t seen) { return n.additional >= 0 || (n.usable & ~seen) != 0; }

  void feed_object(Frame& f, uint8_t c) {
    const GNode& n = g_.nodes[f.node];
    switch (f.state) {
      case kObjStart:
      case kObjAfterComma:
        if (is_ws(c)) {
          whitespace(f, c);
        } else if (c == '"') {
          if (!can_add_key(n, f.seen)) return;
          f.state = kObjKey;
          f.ws = 0;
          f.esc = kEscNone;
          f.a = 0;
          f.b = static_cast<uint32_t>(n.keys.size());
          f.c = 0;
          emit(f);
        } else if (c == '}' && f.state == kObjStart && n.required == 0) {
          out_.push_back(after_value(f.parent));
        }
        return;
      case kObjKey: feed_key(f, n, c); return;
      case kObjAfterKey:
        if (is_ws(c)) {
          whitespace(f, c);
        } else if (c == ':') {
          f.state = kObjAfterColon;
          f.ws = 0;
          emit(f);
        }
        return;
      case kObjAfterColon:
        if (is_ws(c)) {
          whitespace(f, c);
        } else {
          const int32_t value_node = f.d == kAdditional ? n.additional : n.key_nodes[f.d];
          f.state = kObjInValue;
          f.ws = 0;
          start_value(push(f), value_node, c);
        }
        return;
      case kObjAfterValue:
        if (is_ws(c)) {
          whitespace(f, c);
        } else if (c == ',') {
          if (!can_add_key(n, f.seen)) return;
          f.state = kObjAfterComma;
          f.ws = 0;
          emit(f);
        } else if (c == '}') {
          if ((n.required & ~f.seen) == 0) out_.push_back(after_value(f.parent));
        }
        return;
      default: return;
    }
  }

  void feed_key(Frame& f, const GNode& n, uint8_t c) {
    const bool declared_prefix = f.a < f.b;
    if (f.esc == kEscNone && c == '"') {
      if (declared_prefix && n.keys[f.a].size() == f.c) {
        // A declared name: once only, and only if its value can be written.
        const uint64_t bit = uint64_t{1} << f.a;
        if (!(n.usable & bit) || (f.seen & bit)) return;
        f.d = f.a;
        f.seen |= bit;
      } else {
        if (n.additional < 0) return;
        f.d = kAdditional;
      }
      f.state = kObjAfterKey;
      f.ws = 0;
      emit(f);
      return;
    }
    const uint8_t esc_before = f.esc;
    if (string_byte(f.esc, c) < 0) return;
    if (declared_prefix) {
      const auto [lo, hi] = narrow(n.keys, f.a, f.b, f.c, c);
      if (lo < hi) {
        if (n.additional < 0 && (n.usable & ~f.seen & range_bits(lo, hi)) == 0) return;
        f.a = lo;
        f.b = hi;
      } else {
        // Leaving the declared names makes an additional property. It is written without escapes,
        // so it can never be a declared name in disguise (a duplicate).
        if (n.additional < 0 || esc_before != kEscNone || c == '\\') return;
        f.a = f.b = 0;
      }
    } else if (c == '\\' && !n.keys.empty()) {
      return;
    }
    ++f.c;
    emit(f);
  }

  void feed_array(Frame& f, uint8_t c) {
    const GNode& n = g_.nodes[f.node];
    switch (f.state) {
      case kArrStart:
      case kArrAfterComma:
        if (is_ws(c)) {
          whitespace(f, c);
        } else if (c == ']') {
          if (f.state == kArrStart && n.min_items == 0) out_.push_back(after_value(f.parent));
        } else if (f.a < n.max_items) {
          f.state = kArrInValue;
          f.ws = 0;
          ++f.a;
          start_value(push(f), n.items, c);
        }
        return;
      case kArrAfterValue:
        if (is_ws(c)) {
          whitespace(f, c);
        } else if (c == ',') {
          if (f.a >= n.max_items) return;
          f.state = kArrAfterComma;
          f.ws = 0;
          emit(f);
        } else if (c == ']') {
          if (f.a >= n.min_items) out_.push_back(after_value(f.parent));
        }
        return;
      default: return;
    }
  }

  const GrammarData& g_;
  std::vector<Frame>& frames_;
  std::vector<uint32_t>& out_;
};

bool stacks_complete(const GrammarData& g, const std::vector<Frame>& frames, const std::vector<uint32_t>& heads) {
  for (const uint32_t h : heads) {
    const Frame& f = frames[h];
    if (f.kind == kRoot && f.state == kRootDone) return true;
    // A top-level number or literal is complete once it could end.
    if (f.parent == Frame::kNone || frames[f.parent].kind != kRoot) continue;
    if (f.kind == kNumberFrame && number_accepting(f.state)) return true;
    if (f.kind == kLiteralFrame && g.literal_sets[f.node][f.a].size() == f.c) return true;
  }
  return false;
}

// ---------------------------------------------------------------------------------------------
// Schema compiler.

const std::set<std::string, std::less<>>& supported_keywords() {
  static const std::set<std::string, std::less<>> s = {"type",       "properties", "required",  "additionalProperties",
                                                       "items",      "minItems",   "maxItems",  "enum",
                                                       "const",      "anyOf",      "oneOf",     "allOf",
                                                       "$ref",       "minLength",  "maxLength", "nullable",
                                                       "uniqueItems"};
  return s;
}

// Keywords that do not constrain the value here: annotations, formatting hints, and containers of
// definitions (reached through $ref).
bool ignored_keyword(std::string_view k) {
  static const std::set<std::string, std::less<>> s = {
      "format",           "pattern",    "description", "title",     "default",  "examples",
      "example",          "deprecated", "readOnly",    "writeOnly", "$comment", "contentEncoding",
      "contentMediaType", "$defs",      "definitions", "$schema",   "$id",      "$anchor"};
  return s.count(k) > 0 || k.starts_with("x-");
}

uint8_t type_bit(const json& name, const std::string& where) {
  if (!name.is_string())
    fail(ErrorCode::InvalidArgument, "JSON Schema 'type' at {} must be a string or a list of strings", where);
  const auto& s = name.get_ref<const std::string&>();
  if (s == "string") return kString;
  if (s == "number") return kNumber;
  if (s == "integer") return kInteger;
  if (s == "boolean") return kBoolean;
  if (s == "null") return kNull;
  if (s == "object") return kObject;
  if (s == "array") return kArray;
  fail(ErrorCode::InvalidArgument, "JSON Schema 'type' at {}: unknown type '{}'", where, s);
}

uint8_t parse_types(const json& t, const std::string& where) {
  if (!t.is_array()) return type_bit(t, where);
  uint8_t bits = 0;
  for (const auto& e : t) bits |= type_bit(e, where);
  return bits;
}

std::string dump_strict(const json& v, const std::string& where) {
  try {
    return v.dump(-1, ' ', false, json::error_handler_t::strict);
  } catch (const json::exception& e) {
    fail(ErrorCode::InvalidArgument, "JSON Schema at {}: {}", where, e.what());
  }
}

// A property name as it appears between the quotes.
std::string key_bytes(const std::string& name, const std::string& where) {
  const std::string quoted = dump_strict(json(name), where);
  return quoted.substr(1, quoted.size() - 2);
}

uint32_t count_code_points(const std::string& s) {
  uint32_t n = 0;
  for (const char ch : s) n += (static_cast<uint8_t>(ch) & 0xC0) != 0x80;
  return n;
}

uint32_t get_count(const json& s, const char* key, uint32_t fallback, const std::string& where) {
  if (!s.contains(key)) return fallback;
  const json& v = s[key];
  if (!v.is_number_integer() || v.get<int64_t>() < 0)
    fail(ErrorCode::InvalidArgument, "JSON Schema '{}' at {} must be a non-negative integer", key, where);
  return static_cast<uint32_t>(std::min<uint64_t>(v.get<uint64_t>(), kUnbounded - 1));
}

class SchemaCompiler {
 public:
  explicit SchemaCompiler(const json& doc) : doc_(doc) {}

  std::shared_ptr<GrammarData> build() {
    g_.bool_set = add_literal_set({"false", "true"});
    g_.null_set = add_literal_set({"null"});
    g_.root = compile(doc_, "#", 0);
    finish();
    return std::make_shared<GrammarData>(std::move(g_));
  }

 private:
  int32_t add(GNode n) {
    g_.nodes.push_back(std::move(n));
    return static_cast<int32_t>(g_.nodes.size() - 1);
  }
  int32_t add_literal_set(std::vector<std::string> set) {
    std::sort(set.begin(), set.end());
    set.erase(std::unique(set.begin(), set.end()), set.end());
    g_.literal_sets.push_back(std::move(set));
    return static_cast<int32_t>(g_.literal_sets.size() - 1);
  }
  int32_t any() {
    if (any_ >= 0) return any_;
    GNode n;
    n.types = kAllTypes;
    any_ = add(std::move(n));
    g_.nodes[static_cast<size_t>(any_)].additional = any_;
    g_.nodes[static_cast<size_t>(any_)].items = any_;
    return any_;
  }
  int32_t typed(uint8_t types) {
    GNode n;
    n.types = types;
    return add(std::move(n));
  }

  const json& resolve(const json& ref, const std::string& where) {
    if (!ref.is_string()) fail(ErrorCode::InvalidArgument, "JSON Schema '$ref' at {} must be a string", where);
    const auto& r = ref.get_ref<const std::string&>();
    if (r.empty() || r[0] != '#')
      fail(ErrorCode::InvalidArgument,
           "JSON Schema '$ref' at {}: only local references (#/...) are supported, got '{}'", where, r);
    try {
      return doc_.at(json::json_pointer(r.substr(1)));
    } catch (const json::exception&) {
      fail(ErrorCode::InvalidArgument, "JSON Schema '$ref' at {}: '{}' does not resolve", where, r);
    }
  }

  // A schema with its pure $ref chain followed, for merging into another.
  const json& deref(const json& s, const std::string& where) {
    const json* p = &s;
    for (int i = 0; p->is_object() && p->contains("$ref") && !has_constraints(*p, {"$ref"}); ++i) {
      if (i > kMaxSchemaDepth) fail(ErrorCode::InvalidArgument, "JSON Schema '$ref' at {} loops", where);
      p = &resolve((*p)["$ref"], where);
    }
    return *p;
  }

  // Whether a schema object has constraining keywords other than `except`.
  static bool has_constraints(const json& s, std::initializer_list<std::string_view> except) {
    for (const auto& [k, v] : s.items()) {
      if (ignored_keyword(k) || std::find(except.begin(), except.end(), k) != except.end()) continue;
      return true;
    }
    return false;
  }

  // dst := dst AND src, keyword by keyword, for allOf and for siblings of $ref / anyOf.
  void merge(json& dst, const json& src, const std::string& where) {
    if (src.is_boolean()) {
      if (!src.get<bool>()) dst["type"] = json::array();
      return;
    }
    if (!src.is_object()) fail(ErrorCode::InvalidArgument, "JSON Schema at {} must be an object or a boolean", where);
    // additionalProperties only sees the properties declared beside it; merged, it would also see
    // the other part's and let through names the original schema rejects.
    auto closed_to_other = [](const json& closed, const json& other) {
      if (!closed.contains("additionalProperties") || closed["additionalProperties"] == true) return false;
      if (!other.contains("properties") || !other["properties"].is_object()) return false;
      const json own = closed.value("properties", json::object());
      for (const auto& [name, sub] : other["properties"].items())
        if (!own.contains(name)) return true;
      return false;
    };
    if (closed_to_other(dst, src) || closed_to_other(src, dst))
      fail(ErrorCode::InvalidArgument,
           "JSON Schema at {}: 'additionalProperties' combined (allOf, $ref or anyOf siblings) with properties "
           "declared elsewhere is not supported",
           where);
    for (const auto& [k, v] : src.items()) {
      if (ignored_keyword(k)) continue;
      if (!dst.contains(k)) {
        dst[k] = v;
        continue;
      }
      json& d = dst[k];
      if (d == v) continue;
      if (k == "required") {
        for (const auto& r : v)
          if (std::find(d.begin(), d.end(), r) == d.end()) d.push_back(r);
      } else if (k == "properties" && d.is_object() && v.is_object()) {
        for (const auto& [name, sub] : v.items()) {
          if (!d.contains(name))
            d[name] = sub;
          else if (d[name] != sub)
            d[name] = json{{"allOf", json::array({d[name], sub})}};
        }
      } else if (k == "additionalProperties" || k == "items") {
        d = json{{"allOf", json::array({d, v})}};
      } else if (k == "minLength" || k == "minItems") {
        d = std::max(d, v);
      } else if (k == "maxLength" || k == "maxItems") {
        d = std::min(d, v);
      } else if (k == "type") {
        const uint8_t bits = parse_types(d, where) & parse_types(v, where);
        json list = json::array();
        for (const char* t : {"string", "number", "integer", "boolean", "null", "object", "array"})
          if (bits & type_bit(json(t), where)) list.push_back(t);
        // number AND integer is integer.
        if ((parse_types(d, where) & kInteger && parse_types(v, where) & kNumber) ||
            (parse_types(d, where) & kNumber && parse_types(v, where) & kInteger))
          list.push_back("integer");
        d = list;
      } else if (k == "enum" && d.is_array() && v.is_array()) {
        json both = json::array();
        for (const auto& e : d)
          if (std::find(v.begin(), v.end(), e) != v.end()) both.push_back(e);
        d = both;
      } else {
        fail(ErrorCode::InvalidArgument,
             "JSON Schema at {}: cannot combine two different '{}' (allOf, $ref or anyOf siblings)", where, k);
      }
    }
  }

  int32_t compile(const json& s, const std::string& where, int depth) {
    if (depth > kMaxSchemaDepth)
      fail(ErrorCode::InvalidArgument, "JSON Schema at {} is nested too deeply or loops", where);
    if (s.is_boolean()) return s.get<bool>() ? any() : typed(0);
    if (!s.is_object()) fail(ErrorCode::InvalidArgument, "JSON Schema at {} must be an object or a boolean", where);
    for (const auto& [k, v] : s.items()) {
      if (ignored_keyword(k)) continue;
      if (!supported_keywords().count(k))
        fail(ErrorCode::InvalidArgument, "unsupported JSON Schema keyword '{}' at {}", k, where);
      if (k == "uniqueItems" && v != false)
        fail(ErrorCode::InvalidArgument, "unsupported JSON Schema keyword 'uniqueItems' (true) at {}", where);
    }

    if (s.contains("nullable")) {
      const json& v = s["nullable"];
      if (!v.is_boolean()) fail(ErrorCode::InvalidArgument, "JSON Schema 'nullable' at {} must be a boolean", where);
      json rest = s;
      rest.erase("nullable");
      if (!v.get<bool>()) return compile(rest, where, depth + 1);
      GNode u;
      u.any_of = {compile(rest, where, depth + 1), typed(kNull)};
      return add(std::move(u));
    }

    if (s.contains("allOf")) {
      const json& parts = s["allOf"];
      if (!parts.is_array() || parts.empty())
        fail(ErrorCode::InvalidArgument, "JSON Schema 'allOf' at {} must be a non-empty array", where);
      json merged = s;
      merged.erase("allOf");
      for (size_t i = 0; i < parts.size(); ++i) {
        const std::string w = fmt::format("{}/allOf/{}", where, i);
        merge(merged, deref(parts[i], w), w);
      }
      return compile(merged, where, depth + 1);
    }

    if (s.contains("$ref")) {
      if (!has_constraints(s, {"$ref"})) return ref_node(s["$ref"], where, depth);
      json merged = s;
      merged.erase("$ref");
      merge(merged, deref(resolve(s["$ref"], where), where), where);
      return compile(merged, where, depth + 1);
    }

    if (s.contains("anyOf") || s.contains("oneOf")) {
      // oneOf is treated as anyOf: exclusivity cannot be checked while writing.
      if (s.contains("anyOf") && s.contains("oneOf"))
        fail(ErrorCode::InvalidArgument, "JSON Schema at {}: 'anyOf' together with 'oneOf' is not supported", where);
      const char* key = s.contains("anyOf") ? "anyOf" : "oneOf";
      const json& branches = s[key];
      if (!branches.is_array() || branches.empty())
        fail(ErrorCode::InvalidArgument, "JSON Schema '{}' at {} must be a non-empty array", key, where);
      const bool siblings = has_constraints(s, {"anyOf", "oneOf"});
      GNode u;
      for (size_t i = 0; i < branches.size(); ++i) {
        const std::string w = fmt::format("{}/{}/{}", where, key, i);
        if (!siblings) {
          u.any_of.push_back(compile(branches[i], w, depth + 1));
        } else {
          json merged = s;
          merged.erase(key);
          merge(merged, deref(branches[i], w), w);
          u.any_of.push_back(compile(merged, w, depth + 1));
        }
      }
      return add(std::move(u));
    }

    GNode n;
    n.types = s.contains("type") ? parse_types(s["type"], where) : kAllTypes;
    if (n.types & kString) {
      n.min_length = get_count(s, "minLength", 0, where);
      n.max_length = get_count(s, "maxLength", kUnbounded, where);
    }
    if (n.types & kObject) compile_object(s, n, where, depth);
    if (n.types & kArray) {
      n.min_items = get_count(s, "minItems", 0, where);
      n.max_items = get_count(s, "maxItems", kUnbounded, where);
      if (!s.contains("items")) {
        n.items = any();
      } else {
        const json& items = s["items"];
        if (items.is_array())
          fail(ErrorCode::InvalidArgument, "unsupported JSON Schema keyword 'items' (array form) at {}", where);
        n.items = compile(items, where + "/items", depth + 1);
      }
    }

    std::optional<std::vector<json>> values;
    if (s.contains("enum")) {
      if (!s["enum"].is_array()) fail(ErrorCode::InvalidArgument, "JSON Schema 'enum' at {} must be an array", where);
      values = s["enum"].get<std::vector<json>>();
    }
    if (s.contains("const")) {
      const json& c = s["const"];
      if (!values)
        values = std::vector<json>{c};
      else
        std::erase_if(*values, [&](const json& v) { return v != c; });
    }
    if (!values) return add(std::move(n));
    // The value must be one of the listed ones and also match the rest of the schema; the check
    // waits until every node exists.
    const int32_t base = add(std::move(n));
    GNode lit;
    lit.literals = static_cast<int32_t>(g_.literal_sets.size());
    g_.literal_sets.emplace_back();
    const int32_t id = add(std::move(lit));
    enums_.push_back({id, base, std::move(*values), where});
    return id;
  }

  void compile_object(const json& s, GNode& n, const std::string& where, int depth) {
    std::map<std::string, const json*> props;  // by name
    if (s.contains("properties")) {
      if (!s["properties"].is_object())
        fail(ErrorCode::InvalidArgument, "JSON Schema 'properties' at {} must be an object", where);
      for (const auto& [name, sub] : s["properties"].items()) props[name] = &sub;
    }
    std::set<std::string> required;
    if (s.contains("required")) {
      const json& r = s["required"];
      if (!r.is_array())
        fail(ErrorCode::InvalidArgument, "JSON Schema 'required' at {} must be an array of strings", where);
      for (const auto& e : r) {
        if (!e.is_string())
          fail(ErrorCode::InvalidArgument, "JSON Schema 'required' at {} must be an array of strings", where);
        required.insert(e.get<std::string>());
      }
    }
    if (!s.contains("additionalProperties") || s["additionalProperties"] == true) {
      n.additional = any();
    } else if (s["additionalProperties"] != false) {
      n.additional = compile(s["additionalProperties"], where + "/additionalProperties", depth + 1);
    }
    std::vector<std::pair<std::string, std::string>> keys;  // (bytes, name)
    for (const auto& [name, sub] : props) keys.emplace_back(key_bytes(name, where), name);
    for (const auto& name : required) {
      if (props.count(name)) continue;
      if (n.additional < 0)
        fail(ErrorCode::InvalidArgument,
             "JSON Schema 'required' at {}: '{}' is not in 'properties' and additionalProperties is false", where,
             name);
      keys.emplace_back(key_bytes(name, where), name);
    }
    if (keys.size() > kMaxProperties)
      fail(ErrorCode::InvalidArgument, "JSON Schema 'properties' at {}: more than {} properties are not supported",
           where, kMaxProperties);
    std::sort(keys.begin(), keys.end());
    for (size_t i = 0; i < keys.size(); ++i) {
      const auto& [bytes, name] = keys[i];
      const auto it = props.find(name);
      const int32_t node = it != props.end()
                               ? compile(*it->second, fmt::format("{}/properties/{}", where, name), depth + 1)
                               : n.additional;
      n.keys.push_back(bytes);
      n.key_nodes.push_back(node);
      if (required.count(name)) n.required |= uint64_t{1} << i;
    }
  }

  int32_t ref_node(const json& ref, const std::string& where, int depth) {
    const auto& r = ref.is_string() ? ref.get_ref<const std::string&>() : std::string();
    const auto it = refs_.find(r);
    if (it != refs_.end()) return it->second;
    const json& target = resolve(ref, where);
    // An alias node, registered before compiling the target so that recursion finds it.
    const int32_t id = add(GNode{});
    refs_[r] = id;
    const int32_t inner = compile(target, r, depth + 1);
    g_.nodes[static_cast<size_t>(id)].any_of = {inner};
    return id;
  }

  void flatten(int32_t node, std::vector<int32_t>& out, std::vector<uint8_t>& visiting) {
    const GNode& n = g_.nodes[static_cast<size_t>(node)];
    if (n.any_of.empty()) {
      if (std::find(out.begin(), out.end(), node) == out.end()) out.push_back(node);
      return;
    }
    if (visiting[static_cast<size_t>(node)]) return;  // a union that contains itself adds nothing
    visiting[static_cast<size_t>(node)] = 1;
    for (const int32_t child : n.any_of) flatten(child, out, visiting);
    visiting[static_cast<size_t>(node)] = 0;
  }

  // Does `v` match node? (Used to keep only the enum values that fit the rest of their schema.)
  bool matches(int32_t node, const json& v, int depth) const {
    if (depth > kMaxSchemaDepth) return false;
    for (const int32_t alt : g_.nodes[static_cast<size_t>(node)].alts)
      if (matches_alt(g_.nodes[static_cast<size_t>(alt)], v, depth)) return true;
    return false;
  }

  bool matches_alt(const GNode& n, const json& v, int depth) const {
    if (n.literals >= 0) {
      const auto& set = g_.literal_sets[static_cast<size_t>(n.literals)];
      return std::binary_search(set.begin(), set.end(), v.dump(-1, ' ', false, json::error_handler_t::replace));
    }
    switch (v.type()) {
      case json::value_t::string: {
        const uint32_t len = count_code_points(v.get_ref<const std::string&>());
        return (n.types & kString) && len >= n.min_length && len <= n.max_length;
      }
      case json::value_t::number_integer:
      case json::value_t::number_unsigned: return (n.types & (kNumber | kInteger)) != 0;
      case json::value_t::number_float: return (n.types & kNumber) != 0;
      case json::value_t::boolean: return (n.types & kBoolean) != 0;
      case json::value_t::null: return (n.types & kNull) != 0;
      case json::value_t::object: {
        if (!(n.types & kObject)) return false;
        uint64_t seen = 0;
        for (const auto& [name, sub] : v.items()) {
          const std::string bytes = key_bytes(name, "enum");
          const auto it = std::lower_bound(n.keys.begin(), n.keys.end(), bytes);
          if (it != n.keys.end() && *it == bytes) {
            const size_t i = static_cast<size_t>(it - n.keys.begin());
            if (!matches(n.key_nodes[i], sub, depth + 1)) return false;
            seen |= uint64_t{1} << i;
          } else if (n.additional < 0 || !matches(n.additional, sub, depth + 1)) {
            return false;
          }
        }
        return (n.required & ~seen) == 0;
      }
      case json::value_t::array: {
        if (!(n.types & kArray) || v.size() < n.min_items || v.size() > n.max_items) return false;
        for (const auto& e : v)
          if (n.items < 0 || !matches(n.items, e, depth + 1)) return false;
        return true;
      }
      default: return false;
    }
  }

  // Which types of a node can be written given which nodes can.
  uint8_t writable_types(const GNode& n, const std::vector<uint8_t>& sat) const {
    uint8_t t = n.types;
    if (n.min_length > n.max_length) t &= static_cast<uint8_t>(~kString);
    for (size_t i = 0; i < n.keys.size(); ++i)
      if ((n.required >> i & 1) && !sat[static_cast<size_t>(n.key_nodes[i])]) t &= static_cast<uint8_t>(~kObject);
    if (n.min_items > n.max_items || (n.min_items > 0 && (n.items < 0 || !sat[static_cast<size_t>(n.items)])))
      t &= static_cast<uint8_t>(~kArray);
    return t;
  }

  void finish() {
    const size_t count = g_.nodes.size();
    std::vector<uint8_t> visiting(count, 0);
    for (size_t i = 0; i < count; ++i) flatten(static_cast<int32_t>(i), g_.nodes[i].alts, visiting);

    // Inner enums were recorded first, so each is filtered before any enum that contains it.
    for (auto& e : enums_) {
      std::vector<std::string> kept;
      for (const json& v : e.values)
        if (matches(e.base, v, 0)) kept.push_back(dump_strict(v, e.where));
      if (kept.empty())
        fail(ErrorCode::InvalidArgument, "JSON Schema 'enum'/'const' at {}: no listed value matches the schema",
             e.where);
      std::sort(kept.begin(), kept.end());
      kept.erase(std::unique(kept.begin(), kept.end()), kept.end());
      g_.literal_sets[static_cast<size_t>(g_.nodes[static_cast<size_t>(e.node)].literals)] = std::move(kept);
    }

    // Which nodes can be written at all: the least fixpoint (a schema that requires itself cannot).
    std::vector<uint8_t> sat(count, 0);
    for (bool changed = true; changed;) {
      changed = false;
      for (size_t i = 0; i < count; ++i) {
        if (sat[i]) continue;
        const GNode& n = g_.nodes[i];
        bool ok = false;
        if (n.literals >= 0)
          ok = !g_.literal_sets[static_cast<size_t>(n.literals)].empty();
        else if (!n.any_of.empty())
          ok = std::any_of(n.alts.begin(), n.alts.end(), [&](int32_t a) { return sat[static_cast<size_t>(a)] != 0; });
        else
          ok = writable_types(n, sat) != 0;
        if (ok) sat[i] = 1, changed = true;
      }
    }
    if (!sat[static_cast<size_t>(g_.root)]) fail(ErrorCode::InvalidArgument, "JSON Schema: no value can satisfy it");

    // Prune what cannot be written, so that the matcher never enters a dead end.
    for (GNode& n : g_.nodes) {
      if (n.literals < 0 && n.any_of.empty()) n.types = writable_types(n, sat);
      for (size_t i = 0; i < n.keys.size(); ++i)
        if (sat[static_cast<size_t>(n.key_nodes[i])]) n.usable |= uint64_t{1} << i;
      if (n.additional >= 0 && !sat[static_cast<size_t>(n.additional)]) n.additional = -1;
      if (n.items < 0 || !sat[static_cast<size_t>(n.items)]) n.items = -1, n.max_items = 0;
      std::erase_if(n.alts, [&](int32_t a) { return !sat[static_cast<size_t>(a)]; });
    }
    for (GNode& n : g_.nodes) {
      n.has_scalar = std::any_of(n.alts.begin(), n.alts.end(), [&](int32_t a) {
        const GNode& alt = g_.nodes[static_cast<size_t>(a)];
        return alt.literals >= 0 || (alt.types & kScalarTypes) != 0;
      });
    }
  }

  struct EnumRecord {
    int32_t node, base;
    std::vector<json> values;
    std::string where;
  };

  const json& doc_;
  GrammarData g_;
  std::map<std::string, int32_t> refs_;
  std::vector<EnumRecord> enums_;
  int32_t any_ = -1;
};

}  // namespace detail

using detail::Frame;

// ---------------------------------------------------------------------------------------------

namespace {

// Builds the trie of the given tokens. Sorted pieces give it in preorder: each piece shares its
// longest common prefix with the previous one and appends the rest as new nodes.
detail::TokenTrie build_trie(const std::vector<std::string>& pieces, std::vector<int32_t> ids) {
  std::sort(ids.begin(), ids.end(),
            [&](int32_t x, int32_t y) { return pieces[static_cast<size_t>(x)] < pieces[static_cast<size_t>(y)]; });
  detail::TokenTrie t;
  auto add_node = [&](uint8_t byte, uint32_t depth) {
    t.byte.push_back(byte);
    t.depth.push_back(depth);
    t.end.push_back(0);
    t.tokens_begin.push_back(static_cast<uint32_t>(t.tokens.size()));
  };
  add_node(0, 0);
  std::vector<uint32_t> path = {0};  // nodes on the current piece's path, by depth
  auto close_to = [&](size_t depth) {
    while (path.size() > depth + 1) {
      t.end[path.back()] = static_cast<uint32_t>(t.byte.size());
      path.pop_back();
    }
  };
  const std::string* prev = nullptr;
  for (const int32_t id : ids) {
    const std::string& p = pieces[static_cast<size_t>(id)];
    size_t common = 0;
    if (prev) {
      const size_t n = std::min(prev->size(), p.size());
      while (common < n && (*prev)[common] == p[common]) ++common;
    }
    close_to(common);
    for (size_t i = common; i < p.size(); ++i) {
      path.push_back(static_cast<uint32_t>(t.byte.size()));
      add_node(static_cast<uint8_t>(p[i]), static_cast<uint32_t>(i + 1));
    }
    t.tokens.push_back(id);  // the newest node is this piece's last byte
    t.max_depth = std::max<uint32_t>(t.max_depth, static_cast<uint32_t>(p.size()));
    prev = &p;
  }
  close_to(0);
  t.end[0] = static_cast<uint32_t>(t.byte.size());
  t.tokens_begin.push_back(static_cast<uint32_t>(t.tokens.size()));
  return t;
}

// Code points in the piece if it is plain string content, else -1.
int plain_chars(const std::string& piece) {
  uint8_t esc = detail::kEscNone;
  int chars = 0;
  for (const char ch : piece) {
    const auto c = static_cast<uint8_t>(ch);
    if (c == '\\') return -1;
    const int r = detail::string_byte(esc, c);
    if (r < 0) return -1;
    chars += r;
  }
  return esc == detail::kEscNone && chars < 255 ? chars : -1;
}

}  // namespace

ConstraintVocab::ConstraintVocab(std::vector<std::string> pieces, std::vector<int32_t> eog_ids)
    : pieces_(std::move(pieces)),
      eog_ids_(std::move(eog_ids)),
      is_eog_(pieces_.size(), 0),
      plain_chars_(pieces_.size(), 0) {
  for (const int32_t id : eog_ids_) {
    if (id < 0 || static_cast<size_t>(id) >= pieces_.size())
      fail(ErrorCode::InvalidArgument, "ConstraintVocab: end-of-generation id {} is outside the vocabulary of {}", id,
           pieces_.size());
    is_eog_[static_cast<size_t>(id)] = 1;
  }
  std::vector<int32_t> all, not_plain;
  for (size_t i = 0; i < pieces_.size(); ++i) {
    if (pieces_[i].empty() || is_eog_[i]) continue;  // control tokens are never allowed
    const auto id = static_cast<int32_t>(i);
    all.push_back(id);
    const int chars = plain_chars(pieces_[i]);
    if (chars < 0) {
      not_plain.push_back(id);
    } else {
      plain_chars_[i] = static_cast<uint8_t>(chars + 1);
      plain_max_chars_ = std::max(plain_max_chars_, static_cast<uint32_t>(chars));
    }
  }
  all_ = build_trie(pieces_, std::move(all));
  not_plain_ = build_trie(pieces_, std::move(not_plain));
}

std::shared_ptr<const JsonGrammar> JsonGrammar::any_object() {
  static const std::shared_ptr<const JsonGrammar> grammar(
      new JsonGrammar(detail::SchemaCompiler(json{{"type", "object"}}).build()));
  return grammar;
}

std::shared_ptr<const JsonGrammar> JsonGrammar::from_schema(const json& schema) {
  try {
    return std::shared_ptr<const JsonGrammar>(new JsonGrammar(detail::SchemaCompiler(schema).build()));
  } catch (const json::exception& e) {
    // A keyword of the wrong JSON type that slipped past the checks above.
    fail(ErrorCode::InvalidArgument, "JSON Schema: {}", e.what());
  }
}

JsonMatcher::JsonMatcher(std::shared_ptr<const JsonGrammar> grammar, std::shared_ptr<const ConstraintVocab> vocab)
    : grammar_(std::move(grammar)), vocab_(std::move(vocab)) {
  if (!grammar_ || !vocab_) fail(ErrorCode::InvalidArgument, "JsonMatcher needs a grammar and a vocabulary");
  Frame root;
  root.kind = detail::kRoot;
  root.state = detail::kRootStart;
  frames_.push_back(root);
  heads_.push_back(0);
}

bool JsonMatcher::complete() const {
  return detail::stacks_complete(grammar_->data(), frames_, heads_);
}

bool JsonMatcher::advance(const std::string& bytes, std::vector<Frame>& frames, std::vector<uint32_t>& heads) const {
  std::vector<uint32_t> next;
  detail::Machine m(grammar_->data(), frames, next);
  for (const char ch : bytes) {
    next.clear();
    for (const uint32_t h : heads) m.feed(h, static_cast<uint8_t>(ch));
    m.dedupe(0);
    if (next.empty()) return false;
    heads.swap(next);
  }
  return true;
}

bool JsonMatcher::allows(int32_t token) const {
  if (token < 0 || static_cast<size_t>(token) >= vocab_->size()) return false;
  if (vocab_->is_eog(token)) return complete();
  const std::string& piece = vocab_->piece(token);
  if (piece.empty()) return false;
  std::vector<Frame> frames = frames_;
  std::vector<uint32_t> heads = heads_;
  return advance(piece, frames, heads);
}

void JsonMatcher::accept(int32_t token) {
  if (token < 0 || static_cast<size_t>(token) >= vocab_->size())
    fail(ErrorCode::InvalidArgument, "JSON constraint: token {} is outside the vocabulary of {}", token,
         vocab_->size());
  if (vocab_->is_eog(token)) {
    if (!complete())
      fail(ErrorCode::InvalidArgument, "JSON constraint: end of generation before the document is complete");
    return;
  }
  const std::string& piece = vocab_->piece(token);
  if (piece.empty()) fail(ErrorCode::InvalidArgument, "JSON constraint: token {} has no text", token);
  std::vector<Frame> frames = frames_;
  std::vector<uint32_t> heads = heads_;
  if (!advance(piece, frames, heads))
    fail(ErrorCode::InvalidArgument, "JSON constraint: token {} ({:?}) cannot continue the document", token, piece);

  // Keep only the frames the live stacks use, parents before children.
  std::vector<uint32_t> remap(frames.size(), Frame::kNone);
  std::vector<uint32_t> chain;
  frames_.clear();
  for (uint32_t& h : heads) {
    chain.clear();
    for (uint32_t i = h; i != Frame::kNone && remap[i] == Frame::kNone; i = frames[i].parent) chain.push_back(i);
    for (auto it = chain.rbegin(); it != chain.rend(); ++it) {
      Frame f = frames[*it];
      if (f.parent != Frame::kNone) f.parent = remap[f.parent];
      remap[*it] = static_cast<uint32_t>(frames_.size());
      frames_.push_back(f);
    }
    h = remap[h];
  }
  heads_ = std::move(heads);
}

// How many code points of plain string content every live alternative takes, if the fast path of
// mask() applies: kUnbounded if one of them takes any plain token, nothing if some alternative is
// not in string content (and might take a plain token by other rules).
std::optional<uint32_t> JsonMatcher::plain_budget() const {
  const detail::GrammarData& g = grammar_->data();
  uint32_t budget = 0;
  bool all_strings = true;
  for (const uint32_t h : heads_) {
    const Frame& f = frames_[h];
    if (f.esc == detail::kEscNone && f.kind == detail::kStringFrame) {
      const uint32_t max = g.nodes[f.node].max_length;
      if (max == detail::kUnbounded) return detail::kUnbounded;
      budget = std::max(budget, max - std::min(max, f.a));
    } else if (f.esc == detail::kEscNone && f.kind == detail::kObjectFrame && f.state == detail::kObjKey &&
               g.nodes[f.node].additional >= 0) {
      return detail::kUnbounded;  // a name that may be an additional property's
    } else {
      all_strings = false;
    }
  }
  if (budget >= vocab_->plain_max_chars_) return detail::kUnbounded;
  if (all_strings) return budget;
  return std::nullopt;
}

void JsonMatcher::walk(const detail::TokenTrie& trie) const {
  scratch_frames_ = frames_;
  scratch_heads_ = heads_;
  const size_t levels = trie.max_depth + 1;
  level_begin_.assign(levels, 0);
  level_end_.assign(levels, 0);
  level_frames_.assign(levels, 0);
  level_end_[0] = static_cast<uint32_t>(heads_.size());
  level_frames_[0] = static_cast<uint32_t>(scratch_frames_.size());

  // Depth-first, as a forward scan of the preorder: the alternatives after a node's bytes are
  // computed once from its parent's and shared by every token below it.
  detail::Machine m(grammar_->data(), scratch_frames_, scratch_heads_);
  const auto n_nodes = static_cast<uint32_t>(trie.byte.size());
  for (uint32_t i = 1; i < n_nodes;) {
    const uint32_t d = trie.depth[i];
    scratch_frames_.resize(level_frames_[d - 1]);
    scratch_heads_.resize(level_end_[d - 1]);
    const size_t begin = scratch_heads_.size();
    for (uint32_t k = level_begin_[d - 1]; k < level_end_[d - 1]; ++k) m.feed(scratch_heads_[k], trie.byte[i]);
    m.dedupe(begin);
    if (scratch_heads_.size() == begin) {
      i = trie.end[i];  // no piece with this prefix can follow
      continue;
    }
    level_begin_[d] = static_cast<uint32_t>(begin);
    level_end_[d] = static_cast<uint32_t>(scratch_heads_.size());
    level_frames_[d] = static_cast<uint32_t>(scratch_frames_.size());
    for (uint32_t t = trie.tokens_begin[i]; t < trie.tokens_begin[i + 1]; ++t)
      allowed_[static_cast<size_t>(trie.tokens[t])] = 1;
    ++i;
  }
}

void JsonMatcher::mask(std::span<float> logits) const {
  const ConstraintVocab& v = *vocab_;
  if (const std::optional<uint32_t> budget = plain_budget()) {
    const uint32_t limit = std::min<uint32_t>(*budget, 254) + 1;
    allowed_.resize(v.size());
    for (size_t t = 0; t < v.size(); ++t) allowed_[t] = v.plain_chars_[t] - 1u < limit;  // 0 wraps: not plain
    walk(v.not_plain_);
  } else {
    allowed_.assign(v.size(), 0);
    walk(v.all_);
  }
  if (complete())
    for (const int32_t id : v.eog_ids_) allowed_[static_cast<size_t>(id)] = 1;
  const float neg_inf = -std::numeric_limits<float>::infinity();
  for (size_t t = 0; t < logits.size(); ++t)
    if (t >= allowed_.size() || !allowed_[t]) logits[t] = neg_inf;
}

}  // namespace vireo
