// Runtime values of the template language, with the reference implementation's semantics:
// numbers are doubles (integer and float differ only in kind), strings are immutable and shared,
// arrays and dicts are shared by reference (identity matters for ==), and a namespace is the only
// mutable container.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

namespace vireo::jinja {

class Env;
class Value;
using Args = std::vector<Value>;

enum class Kind : uint8_t {
  Undefined,
  Null,
  Bool,
  Integer,
  Float,
  String,
  Array,
  Tuple,      // an array written as (a, b): some operations treat it apart, as the reference does
  Object,     // a dict
  KwArgs,     // the keyword arguments of a call, passed as a trailing dict-like argument
  Namespace,  // namespace(): attribute assignment allowed, no dict methods
  Function,
};

class ObjectData;
struct ArrayData;
struct FunctionData;

class Value {
 public:
  Value() = default;  // undefined
  static Value null() { return Value(Kind::Null); }
  // A raw JavaScript undefined, which the reference yields for `[] | first` and `[] | last`: it
  // may be assigned with {% set %} (reading the variable back gives undefined), and using it in
  // any other way is an error, as it is there.
  static Value hole() {
    Value v(Kind::Undefined);
    v.num_ = 1;
    return v;
  }
  static Value boolean(bool b) {
    Value v(Kind::Bool);
    v.num_ = b ? 1 : 0;
    return v;
  }
  static Value integer(double n) {
    Value v(Kind::Integer);
    v.num_ = n;
    return v;
  }
  static Value floating(double n) {
    Value v(Kind::Float);
    v.num_ = n;
    return v;
  }
  static Value string(std::string s);
  static Value array(std::vector<Value> items, Kind kind = Kind::Array);
  static Value object(std::shared_ptr<ObjectData> data, Kind kind = Kind::Object);
  static Value object(std::vector<std::pair<std::string, Value>> entries, Kind kind = Kind::Object);
  static Value object_unique(std::vector<std::pair<std::string, Value>> entries, Kind kind = Kind::Object);
  // `self` is the receiver of a method; plain functions have none.
  static Value function(std::string name, std::function<Value(const Value&, Args&, Env*)> fn, Value self);
  static Value function(std::string name, std::function<Value(const Value&, Args&, Env*)> fn);

  Kind kind() const { return kind_; }
  bool is(Kind k) const { return kind_ == k; }
  bool is_undefined() const { return kind_ == Kind::Undefined; }
  bool is_hole() const { return kind_ == Kind::Undefined && num_ != 0; }
  bool is_null() const { return kind_ == Kind::Null; }
  bool is_string() const { return kind_ == Kind::String; }
  bool is_number() const { return kind_ == Kind::Integer || kind_ == Kind::Float; }
  bool is_numeric_like() const { return is_number() || kind_ == Kind::Bool; }
  bool is_array_like() const { return kind_ == Kind::Array || kind_ == Kind::Tuple; }
  bool is_dict_like() const { return kind_ == Kind::Object || kind_ == Kind::KwArgs; }
  bool is_attr_container() const { return is_dict_like() || kind_ == Kind::Namespace; }

  double num() const { return num_; }
  bool boolean() const { return num_ != 0; }
  const std::string& str() const { return *std::get<std::shared_ptr<const std::string>>(ptr_); }
  const std::vector<Value>& items() const;
  ObjectData& object() const { return *std::get<std::shared_ptr<ObjectData>>(ptr_); }
  const std::shared_ptr<ObjectData>& object_ptr() const { return std::get<std::shared_ptr<ObjectData>>(ptr_); }
  const FunctionData& function() const { return *std::get<std::shared_ptr<FunctionData>>(ptr_); }
  // The identity of a container (what JS compares objects by); null for primitives.
  const void* identity() const;

 private:
  explicit Value(Kind k) : kind_(k) {}
  Kind kind_ = Kind::Undefined;
  double num_ = 0;
  std::variant<std::monostate, std::shared_ptr<const std::string>, std::shared_ptr<ArrayData>,
               std::shared_ptr<ObjectData>, std::shared_ptr<FunctionData>>
      ptr_;
};

// A dict that keeps insertion order, with a hash index once it grows.
class ObjectData {
 public:
  using Entry = std::pair<std::string, Value>;
  ObjectData() = default;
  explicit ObjectData(std::vector<Entry> unique_entries);  // keys known to be distinct
  ObjectData(const ObjectData&) = delete;
  ObjectData& operator=(const ObjectData&) = delete;
  ~ObjectData() { clear(); }
  const Value* find(std::string_view key) const;
  void set(std::string key, Value value);  // replaces in place, else appends
  const std::vector<Entry>& entries() const { return entries_; }
  size_t size() const { return entries_.size(); }
  void clear();

 private:
  std::vector<Entry> entries_;
  std::unordered_map<std::string, size_t> index_;  // built past kIndexAfter entries
  static constexpr size_t kIndexAfter = 12;
};

// Containers free their contents without deep recursion (see value.cpp): a list nested a million
// levels deep, built in a loop, must not overflow the stack when it dies.
struct ArrayData {
  std::vector<Value> items;
  ArrayData() = default;
  ArrayData(const ArrayData&) = delete;
  ArrayData& operator=(const ArrayData&) = delete;
  ~ArrayData();
};

struct FunctionData {
  std::string name;
  Value self;  // the receiver of a method (`s` in s.upper); undefined for plain functions
  // args: positional values, then a KwArgs value when keyword arguments were given.
  // caller: the environment at the call site (macros see their caller's variables).
  std::function<Value(const Value& self, Args& args, Env* caller)> fn;

  Value call(Args& args, Env* caller) const { return fn(self, args, caller); }
  ~FunctionData();
};

// A value's type with its article ("a string", "an integer", "none"), for error messages.
const char* kind_name(Kind k);

// Python-like truthiness as the reference applies it (empty list / dict are false; a namespace is
// always true).
bool truthy(const Value& v);
// JavaScript truthiness of the underlying value (`!!x.value`): any container is true.
bool js_truthy(const Value& v);

// How a value renders inside {{ }} (toString() in the reference).
std::string display(const Value& v);
// String(x.value) / x.value.toString(): what ~, + and join see.
std::string raw_string(const Value& v);

struct JsonOptions {
  std::optional<double> indent;
  bool ensure_ascii = false;
  std::optional<std::pair<std::string, std::string>> separators;  // item, key
  bool sort_keys = false;
};
// JSON text of a value the way the reference's tojson writes it; `undefined_as_null` is false
// when rendering a container with {{ }} (undefined members print as `undefined`).
std::string to_json(const Value& v, const JsonOptions& options, bool undefined_as_null = true);

// JavaScript == and === on the underlying values.
bool loose_equals(const Value& a, const Value& b);
bool strict_equals(const Value& a, const Value& b);

// Ordering used by sort and dictsort; throws (RuntimeError) for values it cannot order.
int compare_values(const Value& a, const Value& b, bool case_sensitive);

// JSON context -> values, ordering object keys the way a JavaScript object does (integer-like
// keys first, ascending; then the rest in order).
Value from_json(const nlohmann::json& j);
Value from_json(const nlohmann::ordered_json& j);

}  // namespace vireo::jinja
