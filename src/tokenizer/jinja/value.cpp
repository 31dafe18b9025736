#include "tokenizer/jinja/value.h"

#include <algorithm>
#include <cmath>

#include "tokenizer/jinja/diagnostics.h"
#include "tokenizer/jinja/js_number.h"
#include "tokenizer/jinja/js_string.h"
#include "vireo/core/utf8.h"

namespace vireo::jinja {
namespace {

constexpr int kMaxValueDepth = 512;

void check_depth(int depth) {
  if (depth > kMaxValueDepth) runtime_fail("value nested deeper than {} levels", kMaxValueDepth);
}

void check_size(const std::string& s) {
  if (s.size() > kMaxStringBytes) runtime_fail("string grew past the {} byte limit", kMaxStringBytes);
}

// "Cannot convert to JSON" in the reference: tuples and keyword arguments have their own type
// names there and fall through its serializer.
[[noreturn]] void not_serializable(const Value& v) {
  runtime_fail("cannot convert {} to JSON", kind_name(v.kind()));
}

void json_into(std::string& out, const Value& v, const JsonOptions& o, int depth, bool undefined_as_null) {
  check_depth(depth);
  charge_work(1);
  switch (v.kind()) {
    case Kind::Null: out += "null"; return;
    case Kind::Undefined: out += undefined_as_null ? "null" : "undefined"; return;
    case Kind::Bool: out += v.boolean() ? "true" : "false"; return;
    case Kind::Integer:
    case Kind::Float: out += std::isfinite(v.num()) ? js_number_to_string(v.num()) : "null"; return;
    case Kind::String: {
      const std::string quoted = js_json_quote(v.str());
      out += o.ensure_ascii ? js_ascii_escape(quoted) : quoted;
      return;
    }
    case Kind::Array:
    case Kind::Object:
    case Kind::Namespace: break;
    default: not_serializable(v);
  }
  // A truthy indent (non-zero, not NaN) pretty-prints; " ".repeat() rejects negative counts.
  const bool pretty = o.indent.has_value() && *o.indent != 0 && !std::isnan(*o.indent);
  std::string unit;
  if (pretty) {
    if (*o.indent < 0 || *o.indent > static_cast<double>(kMaxStringBytes)) runtime_fail("invalid indent {}", *o.indent);
    unit.assign(static_cast<size_t>(*o.indent), ' ');
  }
  std::string item_sep = ", ", key_sep = ": ";
  if (o.separators) {
    item_sep = o.separators->first;
    key_sep = o.separators->second;
  } else if (pretty) {
    item_sep = ",";
  }
  std::string base = "\n", child = "\n";
  if (pretty) {
    for (int i = 0; i < depth; ++i) base += unit;
    child = base + unit;
  }
  if (v.is(Kind::Array)) {
    const auto& items = v.items();
    out += '[';
    for (size_t i = 0; i < items.size(); ++i) {
      if (i > 0) out += item_sep;
      if (pretty) out += child;
      json_into(out, items[i], o, depth + 1, undefined_as_null);
      check_size(out);
    }
    if (pretty && !items.empty()) out += base;
    out += ']';
    return;
  }
  std::vector<const ObjectData::Entry*> entries;
  for (const auto& e : v.object().entries()) entries.push_back(&e);
  if (o.sort_keys) {
    std::stable_sort(entries.begin(), entries.end(),
                     [](const auto* a, const auto* b) { return js_locale_compare(a->first, b->first) < 0; });
  }
  out += '{';
  for (size_t i = 0; i < entries.size(); ++i) {
    if (i > 0) out += item_sep;
    if (pretty) out += child;
    const std::string key = js_json_quote(entries[i]->first);
    out += o.ensure_ascii ? js_ascii_escape(key) : key;
    out += key_sep;
    json_into(out, entries[i]->second, o, depth + 1, undefined_as_null);
    check_size(out);
  }
  if (pretty && !entries.empty()) out += base;
  out += '}';
}

// A value's JavaScript primitive type, for == and ===.
enum class Raw { Undefined, Bool, Number, String, Object };

Raw raw_type(const Value& v) {
  switch (v.kind()) {
    case Kind::Undefined: return Raw::Undefined;
    case Kind::Null: return Raw::Undefined;  // the reference builds none as `new NullValue()`: value undefined
    case Kind::Bool: return Raw::Bool;
    case Kind::Integer:
    case Kind::Float: return Raw::Number;
    case Kind::String: return Raw::String;
    default: return Raw::Object;
  }
}

// Integer-like keys ("0" .. "4294967294", canonical) come first in a JavaScript object.
std::optional<uint32_t> array_index(std::string_view key) {
  if (key.empty() || key.size() > 10 || (key.size() > 1 && key[0] == '0')) return std::nullopt;
  uint64_t n = 0;
  for (char c : key) {
    if (c < '0' || c > '9') return std::nullopt;
    n = n * 10 + static_cast<uint64_t>(c - '0');
  }
  if (n >= 0xFFFFFFFFull) return std::nullopt;
  return static_cast<uint32_t>(n);
}

std::string clean(const std::string& s) {
  return is_valid_utf8(s) ? s : sanitize_utf8(s);
}

template <typename Json>
Value convert(const Json& j, int depth) {
  check_depth(depth);
  switch (j.type()) {
    case nlohmann::json::value_t::null: return Value::null();
    case nlohmann::json::value_t::boolean: return Value::boolean(j.template get<bool>());
    case nlohmann::json::value_t::number_integer: return Value::integer(static_cast<double>(j.template get<int64_t>()));
    case nlohmann::json::value_t::number_unsigned:
      return Value::integer(static_cast<double>(j.template get<uint64_t>()));
    case nlohmann::json::value_t::number_float: {
      const double d = j.template get<double>();
      return js_is_integer(d) ? Value::integer(d) : Value::floating(d);
    }
    case nlohmann::json::value_t::string: return Value::string(clean(j.template get_ref<const std::string&>()));
    case nlohmann::json::value_t::array: {
      std::vector<Value> items;
      items.reserve(j.size());
      for (const auto& e : j) items.push_back(convert(e, depth + 1));
      return Value::array(std::move(items));
    }
    case nlohmann::json::value_t::object: {
      std::vector<std::pair<uint32_t, ObjectData::Entry>> indexed;
      std::vector<ObjectData::Entry> named;
      for (auto it = j.begin(); it != j.end(); ++it) {
        std::string key = clean(it.key());
        Value value = convert(it.value(), depth + 1);
        if (auto idx = array_index(key)) {
          indexed.push_back({*idx, {std::move(key), std::move(value)}});
        } else {
          named.emplace_back(std::move(key), std::move(value));
        }
      }
      std::stable_sort(indexed.begin(), indexed.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
      std::vector<ObjectData::Entry> entries;
      entries.reserve(indexed.size() + named.size());
      for (auto& e : indexed) entries.push_back(std::move(e.second));
      for (auto& e : named) entries.push_back(std::move(e));
      return Value::object_unique(std::move(entries));
    }
    default:  // binary, discarded
      return Value();
  }
}

}  // namespace

const Value* ObjectData::find(std::string_view key) const {
  if (!index_.empty()) {
    auto it = index_.find(std::string(key));
    return it == index_.end() ? nullptr : &entries_[it->second].second;
  }
  for (const auto& e : entries_) {
    if (e.first == key) return &e.second;
  }
  return nullptr;
}

ObjectData::ObjectData(std::vector<Entry> unique_entries) : entries_(std::move(unique_entries)) {
  if (entries_.size() > kIndexAfter) {
    for (size_t i = 0; i < entries_.size(); ++i) index_.emplace(entries_[i].first, i);
  }
}

void ObjectData::set(std::string key, Value value) {
  if (const Value* existing = find(key)) {
    *const_cast<Value*>(existing) = std::move(value);
    return;
  }
  entries_.emplace_back(std::move(key), std::move(value));
  if (!index_.empty()) {
    index_.emplace(entries_.back().first, entries_.size() - 1);
  } else if (entries_.size() > kIndexAfter) {
    for (size_t i = 0; i < entries_.size(); ++i) index_.emplace(entries_[i].first, i);
  }
}

namespace {

// Freeing a value frees what it holds, recursively. Below kDeferAt nested levels that recursion is
// left alone; deeper values are parked on a list that the outermost release empties in a loop.
constexpr int kDeferAt = 64;
thread_local int t_release_depth = 0;
thread_local bool t_draining = false;

std::vector<Value>& deferred_releases() {
  thread_local std::vector<Value> pending;
  return pending;
}

bool must_defer() {
  return t_release_depth >= kDeferAt;
}

struct ReleaseLevel {
  ReleaseLevel() { ++t_release_depth; }
  ~ReleaseLevel() {
    if (--t_release_depth > 0 || t_draining) return;
    t_draining = true;
    auto& pending = deferred_releases();
    while (!pending.empty()) {
      Value v = std::move(pending.back());
      pending.pop_back();
    }  // each v is freed here and may park its own deep parts on `pending` again
    t_draining = false;
  }
};

}  // namespace

void ObjectData::clear() {
  if (must_defer()) {
    for (auto& e : entries_) deferred_releases().push_back(std::move(e.second));
  }
  ReleaseLevel level;
  entries_.clear();
  index_.clear();
}

ArrayData::~ArrayData() {
  if (must_defer()) {
    for (auto& v : items) deferred_releases().push_back(std::move(v));
  }
  ReleaseLevel level;
  items.clear();
}

FunctionData::~FunctionData() {
  if (must_defer()) deferred_releases().push_back(std::move(self));
  ReleaseLevel level;
  self = Value();
}

const std::vector<Value>& Value::items() const {
  return std::get<std::shared_ptr<ArrayData>>(ptr_)->items;
}

Value Value::string(std::string s) {
  Value v(Kind::String);
  v.ptr_ = std::make_shared<const std::string>(std::move(s));
  return v;
}

Value Value::array(std::vector<Value> items, Kind kind) {
  if (items.size() > kMaxArrayItems) runtime_fail("list grew past the {} item limit", kMaxArrayItems);
  Value v(kind);
  auto data = std::make_shared<ArrayData>();
  data->items = std::move(items);
  v.ptr_ = std::move(data);
  return v;
}

Value Value::object(std::shared_ptr<ObjectData> data, Kind kind) {
  Value v(kind);
  v.ptr_ = std::move(data);
  return v;
}

Value Value::object(std::vector<ObjectData::Entry> entries, Kind kind) {
  auto data = std::make_shared<ObjectData>();
  for (auto& e : entries) data->set(std::move(e.first), std::move(e.second));
  return object(std::move(data), kind);
}

Value Value::object_unique(std::vector<ObjectData::Entry> entries, Kind kind) {
  return object(std::make_shared<ObjectData>(std::move(entries)), kind);
}

Value Value::function(std::string name, std::function<Value(const Value&, Args&, Env*)> fn, Value self) {
  Value v(Kind::Function);
  auto data = std::make_shared<FunctionData>();
  data->name = std::move(name);
  data->self = std::move(self);
  data->fn = std::move(fn);
  v.ptr_ = std::move(data);
  return v;
}

Value Value::function(std::string name, std::function<Value(const Value&, Args&, Env*)> fn) {
  return function(std::move(name), std::move(fn), Value());
}

const void* Value::identity() const {
  return std::visit(
      [](const auto& p) -> const void* {
        if constexpr (std::is_same_v<std::decay_t<decltype(p)>, std::monostate>) {
          return nullptr;
        } else {
          return p.get();
        }
      },
      ptr_);
}

const char* kind_name(Kind k) {
  switch (k) {
    case Kind::Undefined: return "an undefined value";
    case Kind::Null: return "none";
    case Kind::Bool: return "a boolean";
    case Kind::Integer: return "an integer";
    case Kind::Float: return "a float";
    case Kind::String: return "a string";
    case Kind::Array: return "a list";
    case Kind::Tuple: return "a tuple";
    case Kind::Object: return "a dict";
    case Kind::KwArgs: return "keyword arguments";
    case Kind::Namespace: return "a namespace";
    case Kind::Function: return "a function";
  }
  return "a value";
}

bool truthy(const Value& v) {
  switch (v.kind()) {
    case Kind::Undefined:
    case Kind::Null: return false;
    case Kind::Bool:
    case Kind::Integer:
    case Kind::Float: return v.num() != 0 && !std::isnan(v.num());
    case Kind::String: return !v.str().empty();
    case Kind::Array:
    case Kind::Tuple: return !v.items().empty();
    case Kind::Object:
    case Kind::KwArgs: return v.object().size() > 0;
    case Kind::Namespace:
    case Kind::Function: return true;
  }
  return false;
}

bool js_truthy(const Value& v) {
  switch (v.kind()) {
    case Kind::Array:
    case Kind::Tuple:
    case Kind::Object:
    case Kind::KwArgs: return true;
    default: return truthy(v);
  }
}

std::string display(const Value& v) {
  switch (v.kind()) {
    case Kind::Undefined:
    case Kind::Null: return "undefined";  // String(value), and none's value is undefined too
    case Kind::Bool: return v.boolean() ? "true" : "false";
    case Kind::Integer: return js_number_to_string(v.num());
    case Kind::Float: {
      const double x = v.num();
      if (x == 0 && std::signbit(x)) return "-0.0";
      return js_is_integer(x) ? js_to_fixed1(x) : js_number_to_string(x);
    }
    case Kind::String: return v.str();
    case Kind::Function: runtime_fail("cannot render the function '{}' (call it with ())", v.function().name);
    default: return to_json(v, JsonOptions{}, false);
  }
}

std::string raw_string(const Value& v) {
  switch (v.kind()) {
    case Kind::Integer:
    case Kind::Float: return js_number_to_string(v.num());
    case Kind::Array:
    case Kind::Tuple: {
      // Array.prototype.toString: the elements' own toString(), joined with commas.
      std::string out;
      bool first = true;
      for (const auto& item : v.items()) {
        if (!first) out += ',';
        first = false;
        js_append(out, display(item));
        check_size(out);
      }
      return out;
    }
    case Kind::Object:
    case Kind::KwArgs:
    case Kind::Namespace: return "[object Map]";
    default: return display(v);
  }
}

std::string to_json(const Value& v, const JsonOptions& options, bool undefined_as_null) {
  std::string out;
  json_into(out, v, options, 0, undefined_as_null);
  return out;
}

bool strict_equals(const Value& a, const Value& b) {
  const Raw ra = raw_type(a), rb = raw_type(b);
  if (ra != rb) return false;
  switch (ra) {
    case Raw::Undefined: return true;
    case Raw::Bool:
    case Raw::Number: return a.num() == b.num();
    case Raw::String: return a.str() == b.str();
    case Raw::Object: return a.identity() == b.identity();
  }
  return false;
}

bool loose_equals(const Value& a, const Value& b) {
  const Raw ra = raw_type(a), rb = raw_type(b);
  if (ra == rb) return strict_equals(a, b);
  if (ra == Raw::Undefined || rb == Raw::Undefined) return false;  // both undefined was handled above
  // Booleans compare as numbers; objects as their primitive (string) form; strings as numbers.
  if (ra == Raw::Bool) return loose_equals(Value::integer(a.num()), b);
  if (rb == Raw::Bool) return loose_equals(a, Value::integer(b.num()));
  if (ra == Raw::Object) return loose_equals(Value::string(raw_string(a)), b);
  if (rb == Raw::Object) return loose_equals(a, Value::string(raw_string(b)));
  const double x = ra == Raw::Number ? a.num() : js_string_to_number(a.str());
  const double y = rb == Raw::Number ? b.num() : js_string_to_number(b.str());
  return x == y;
}

int compare_values(const Value& a, const Value& b, bool case_sensitive) {
  charge_work(1);
  if (a.is_null() && b.is_null()) return 0;
  if (a.is_null() || b.is_null()) runtime_fail("cannot compare {} with {}", kind_name(a.kind()), kind_name(b.kind()));
  if (a.is_undefined() && b.is_undefined()) return 0;
  if (a.is_undefined() || b.is_undefined()) {
    runtime_fail("cannot compare {} with {}", kind_name(a.kind()), kind_name(b.kind()));
  }
  if (a.is_numeric_like() && b.is_numeric_like()) return a.num() < b.num() ? -1 : a.num() > b.num() ? 1 : 0;
  if (a.kind() != b.kind()) {
    runtime_fail("cannot compare different types: {} and {}", kind_name(a.kind()), kind_name(b.kind()));
  }
  if (!a.is_string()) runtime_fail("cannot order {}", kind_name(a.kind()));
  charge_work((a.str().size() + b.str().size()) / 256);
  if (case_sensitive) return js_compare(a.str(), b.str());
  return js_compare(js_to_lower(a.str()), js_to_lower(b.str()));
}

Value from_json(const nlohmann::json& j) {
  return convert(j, 0);
}
Value from_json(const nlohmann::ordered_json& j) {
  return convert(j, 0);
}

}  // namespace vireo::jinja
