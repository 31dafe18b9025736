// Filters (`x | f`, `x | f(args)`) and tests (`x is t`), with the reference implementation's
// coverage: a filter exists only for the operand types the reference gives it, so an unsupported
// combination fails here exactly where it fails there.
#include <algorithm>
#include <cmath>
#include <unordered_set>

#include "tokenizer/jinja/interpreter.h"
#include "tokenizer/jinja/js_number.h"
#include "tokenizer/jinja/js_string.h"

namespace vireo::jinja {
namespace {

[[noreturn]] void unknown_filter(const std::string& name, const Value& operand) {
  unsupported("unknown filter '{}' for {}", name, kind_name(operand.kind()));
}

const Value* positional(const Args& args, size_t i) {
  return i < args.size() ? &args[i] : nullptr;
}

// args[i] ?? kwargs[name] ?? fallback, as the reference resolves optional filter arguments.
Value arg_or(const CallArgs& a, size_t i, std::string_view name, Value fallback) {
  if (const Value* v = positional(a.positional, i)) return *v;
  if (const Value* v = a.keyword(name)) return *v;
  return fallback;
}

std::string indent_lines(std::string_view text, const std::string& pad, bool first, bool blank) {
  std::string out;
  size_t line = 0, start = 0;
  while (true) {
    const size_t nl = text.find('\n', start);
    const std::string_view piece =
        text.substr(start, nl == std::string_view::npos ? std::string_view::npos : nl - start);
    if (line > 0) out += '\n';
    if (!((!first && line == 0) || (!blank && piece.empty()))) out += pad;
    js_append(out, piece);
    if (out.size() > kMaxStringBytes) runtime_fail("string grew past the {} byte limit", kMaxStringBytes);
    if (nl == std::string_view::npos) break;
    start = nl + 1;
    ++line;
  }
  return out;
}

// A key that is equal for two values exactly when SameValueZero holds (what a JS Set compares).
std::string same_value_key(const Value& v) {
  switch (v.kind()) {
    case Kind::Undefined:
    case Kind::Null: return "u";  // both are the JavaScript undefined underneath
    case Kind::Bool: return v.boolean() ? "b1" : "b0";
    case Kind::Integer:
    case Kind::Float: {
      double d = v.num();
      if (d == 0) d = 0;  // -0 and +0 are the same
      if (std::isnan(d)) return "nan";
      std::string key = "n";
      key.append(reinterpret_cast<const char*>(&d), sizeof d);
      return key;
    }
    case Kind::String: {
      std::string key = "s";
      key += v.str();
      return key;
    }
    default: {
      const void* p = v.identity();
      std::string key = "o";
      key.append(reinterpret_cast<const char*>(&p), sizeof p);
      return key;
    }
  }
}

Value sorted(const Value& operand, bool reverse, bool case_sensitive, const Value& attribute) {
  const auto& items = operand.items();
  std::vector<Value> keys;
  for (const auto& item : items) {
    keys.push_back(attribute.is_null()
                       ? item
                       : attribute_path(item, attribute.is(Kind::Integer) ? js_number_to_string(attribute.num())
                                                                          : attribute.str()));
  }
  // Sort positions rather than values: a stable sort, like the reference's Array.prototype.sort.
  std::vector<size_t> order(items.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    const int c = compare_values(keys[a], keys[b], case_sensitive);
    return (reverse ? -c : c) < 0;
  });
  std::vector<Value> out;
  out.reserve(order.size());
  for (size_t i : order) out.push_back(items[i]);
  return Value::array(std::move(out));
}

}  // namespace

bool is_known_test(const std::string& name) {
  static constexpr std::string_view kTests[] = {
      "boolean",  "callable", "odd",      "even",  "false", "true",    "none",      "string",  "number", "integer",
      "iterable", "mapping",  "sequence", "lower", "upper", "defined", "undefined", "equalto", "eq"};
  return std::find(std::begin(kTests), std::end(kTests), name) != std::end(kTests);
}

bool apply_test(const std::string& name, const Value& v, const Value* other) {
  const Kind k = v.kind();
  if (name == "boolean") return k == Kind::Bool;
  if (name == "callable") return k == Kind::Function;
  if (name == "odd" || name == "even") {
    if (k != Kind::Integer) runtime_fail("test '{}' needs an integer, got {}", name, kind_name(k));
    const double r = std::fmod(v.num(), 2);
    return name == "odd" ? r != 0 : r == 0;  // NaN % 2 is NaN: odd, not even, as in JavaScript
  }
  if (name == "false") return k == Kind::Bool && !v.boolean();
  if (name == "true") return k == Kind::Bool && v.boolean();
  if (name == "none") return k == Kind::Null;
  if (name == "string") return k == Kind::String;
  if (name == "number") return v.is_number();
  if (name == "integer") return k == Kind::Integer;
  if (name == "iterable") return k == Kind::Array || k == Kind::String;  // not a tuple, as in the reference
  if (name == "mapping") return v.is_dict_like();
  if (name == "sequence") return v.is_array_like() || v.is_dict_like() || k == Kind::String;
  if (name == "lower") return k == Kind::String && v.str() == js_to_lower(v.str());
  if (name == "upper") return k == Kind::String && v.str() == js_to_upper(v.str());
  if (name == "defined") return k != Kind::Undefined;
  if (name == "undefined") return k == Kind::Undefined;
  if (name == "equalto" || name == "eq") {
    if (other == nullptr) runtime_fail("test '{}' needs a value to compare with", name);
    return strict_equals(v, *other);
  }
  unsupported("unknown test '{}'", name);
}

Value Interpreter::apply_filter(const Value& operand, const Node& filter, Env* env) {
  if (filter.type == NodeType::Identifier) return apply_named_filter(operand, filter.name, env);
  if (filter.type == NodeType::Call && filter.a->type == NodeType::Identifier) {
    return apply_call_filter(operand, filter.a->name, filter.items, env);
  }
  unsupported("a filter must be a name or a call of a name");
}

Value Interpreter::apply_named_filter(const Value& operand, const std::string& name, Env* env) {
  if (name == "safe") return operand;
  if (name == "tojson") return Value::string(to_json(operand, JsonOptions{}));

  if (operand.is_array_like()) {
    const auto& items = operand.items();
    if (name == "list") return operand;
    if (name == "first" || name == "last") {
      if (items.empty()) return Value::hole();
      return name == "first" ? items.front() : items.back();
    }
    if (name == "length") return Value::integer(static_cast<double>(items.size()));
    if (name == "reverse") return Value::array(std::vector<Value>(items.rbegin(), items.rend()));
    if (name == "sort") return sorted(operand, false, false, Value::null());
    if (name == "join") return Value::string(js_join(items, ""));
    if (name == "string") return Value::string(to_json(operand, JsonOptions{}, false));
    if (name == "unique") {
      std::unordered_set<std::string> seen;
      std::vector<Value> out;
      for (const auto& item : items) {
        if (seen.insert(same_value_key(item)).second) out.push_back(item);
      }
      return Value::array(std::move(out));
    }
    unknown_filter(name, operand);
  }
  if (operand.is_string()) {
    const std::string& s = operand.str();
    if (name == "length") {
      charge_work(s.size() / 256);
      return Value::integer(static_cast<double>(js_length(s)));
    }
    if (name == "upper") return Value::string(js_to_upper(s));
    if (name == "lower") return Value::string(js_to_lower(s));
    if (name == "title") return Value::string(title_case(s));
    if (name == "capitalize") return Value::string(capitalize(s));
    if (name == "trim") return Value::string(std::string(js_trim(s)));
    if (name == "indent") return Value::string(indent_lines(s, "    ", false, false));
    if (name == "join" || name == "string") return operand;
    if (name == "int") {
      const double v = js_parse_int(s);
      return Value::integer(std::isnan(v) ? 0 : v);
    }
    if (name == "float") {
      const double v = js_parse_float(s);
      return Value::floating(std::isnan(v) ? 0 : v);
    }
    unknown_filter(name, operand);
  }
  if (operand.is_number()) {
    if (name == "abs")
      return operand.is(Kind::Integer) ? Value::integer(std::fabs(operand.num()))
                                       : Value::floating(std::fabs(operand.num()));
    if (name == "int") return Value::integer(std::floor(operand.num()));
    if (name == "float") return Value::floating(operand.num());
    if (name == "string") return Value::string(display(operand));
    unknown_filter(name, operand);
  }
  if (operand.is_dict_like()) {
    if (name == "length") return Value::integer(static_cast<double>(operand.object().size()));
    Value member = dict_member(operand, name);  // items, keys, values, dictsort, get
    if (member.is(Kind::Function)) {
      Args none;
      return member.function().call(none, env);
    }
    if (!member.is_undefined()) return member;
    unknown_filter(name, operand);
  }
  if (operand.is(Kind::Bool)) {
    if (name == "bool") return operand;
    if (name == "int") return Value::integer(operand.boolean() ? 1 : 0);
    if (name == "float") return Value::floating(operand.boolean() ? 1 : 0);
    if (name == "string") return Value::string(operand.boolean() ? "true" : "false");
    unknown_filter(name, operand);
  }
  runtime_fail("cannot apply filter '{}' to {}", name, kind_name(operand.kind()));
}

Value Interpreter::apply_call_filter(const Value& operand, const std::string& name, const NodeList& arg_nodes,
                                     Env* env) {
  if (name == "tojson") {
    const CallArgs a = eval_args(arg_nodes, env);
    JsonOptions o;
    if (const Value* indent = a.keyword("indent"); indent != nullptr && !indent->is_null()) {
      if (!indent->is(Kind::Integer)) runtime_fail("tojson: indent must be an integer");
      o.indent = indent->num();
    }
    if (const Value* ascii = a.keyword("ensure_ascii")) {
      if (!ascii->is(Kind::Bool)) runtime_fail("tojson: ensure_ascii must be a boolean");
      o.ensure_ascii = ascii->boolean();
    }
    if (const Value* sort = a.keyword("sort_keys")) {
      if (!sort->is(Kind::Bool)) runtime_fail("tojson: sort_keys must be a boolean");
      o.sort_keys = sort->boolean();
    }
    if (const Value* seps = a.keyword("separators"); seps != nullptr && !seps->is_null()) {
      if (!seps->is_array_like() || seps->items().size() != 2 || !seps->items()[0].is_string() ||
          !seps->items()[1].is_string()) {
        runtime_fail("tojson: separators must be a pair of strings");
      }
      o.separators = std::make_pair(seps->items()[0].str(), seps->items()[1].str());
    }
    return Value::string(to_json(operand, o));
  }
  if (name == "join") {
    if (!operand.is_string() && !operand.is_array_like())
      runtime_fail("cannot apply filter 'join' to {}", kind_name(operand.kind()));
    const CallArgs a = eval_args(arg_nodes, env);
    const Value sep = arg_or(a, 0, "separator", Value::string(""));
    if (!sep.is_string()) runtime_fail("join: the separator must be a string");
    if (operand.is_array_like()) return Value::string(js_join(operand.items(), sep.str()));
    std::string out;
    const std::string& s = operand.str();
    for (size_t i = 0; i < s.size();) {  // the string's characters, joined
      const size_t start = i;
      decode_cp(s, i);
      if (start > 0) js_append(out, sep.str());
      js_append(out, std::string_view(s).substr(start, i - start));
      if (out.size() > kMaxStringBytes) runtime_fail("string grew past the {} byte limit", kMaxStringBytes);
    }
    return Value::string(std::move(out));
  }
  if (name == "int" || name == "float") {
    const bool to_int = name == "int";
    const CallArgs a = eval_args(arg_nodes, env);
    const Value fallback = arg_or(a, 0, "default", to_int ? Value::integer(0) : Value::floating(0));
    if (operand.is_string()) {
      const double v = to_int ? js_parse_int(operand.str()) : js_parse_float(operand.str());
      if (std::isnan(v)) return fallback;
      return to_int ? Value::integer(v) : Value::floating(v);
    }
    if (operand.is_number()) return operand;
    if (operand.is(Kind::Bool)) {
      return to_int ? Value::integer(operand.boolean() ? 1 : 0) : Value::floating(operand.boolean() ? 1 : 0);
    }
    runtime_fail("cannot apply filter '{}' to {}", name, kind_name(operand.kind()));
  }
  if (name == "default") {
    const CallArgs a = eval_args(arg_nodes, env);
    const Value fallback = a.positional.empty() ? Value::string("") : a.positional[0];
    const Value flag = a.positional.size() > 1 ? a.positional[1]
                       : a.keyword("boolean")  ? *a.keyword("boolean")
                                               : Value::boolean(false);
    if (!flag.is(Kind::Bool)) runtime_fail("default: the boolean flag must be a boolean");
    if (operand.is_undefined() || (flag.boolean() && !truthy(operand))) return fallback;
    return operand;
  }

  if (operand.is_array_like()) {
    if (name == "sort") {
      const CallArgs a = eval_args(arg_nodes, env);
      const Value reverse = arg_or(a, 0, "reverse", Value::boolean(false));
      const Value case_sensitive = arg_or(a, 1, "case_sensitive", Value::boolean(false));
      const Value attribute = arg_or(a, 2, "attribute", Value::null());
      if (!reverse.is(Kind::Bool)) runtime_fail("sort: reverse must be a boolean");
      if (!case_sensitive.is(Kind::Bool)) runtime_fail("sort: case_sensitive must be a boolean");
      if (!attribute.is_string() && !attribute.is(Kind::Integer) && !attribute.is_null()) {
        runtime_fail("sort: attribute must be a string, an integer or none");
      }
      return sorted(operand, reverse.boolean(), case_sensitive.boolean(), attribute);
    }
    if (name == "selectattr" || name == "rejectattr") return select_attr(operand, name == "selectattr", arg_nodes, env);
    if (name == "map") {
      const CallArgs a = eval_args(arg_nodes, env);
      const Value* attribute = a.keyword("attribute");
      if (attribute == nullptr) unsupported("map without attribute= is not supported");
      if (!attribute->is_string()) runtime_fail("map: attribute must be a string");
      const Value* fallback = a.keyword("default");
      std::vector<Value> out;
      for (const auto& item : operand.items()) {
        if (!item.is_attr_container()) runtime_fail("map: the list items must be dicts");
        Value v = attribute_path(item, attribute->str());
        out.push_back(v.is_undefined() && fallback != nullptr ? *fallback : std::move(v));
      }
      return Value::array(std::move(out));
    }
    unknown_filter(name, operand);
  }
  if (operand.is_string()) {
    if (name == "indent") {
      const CallArgs a = eval_args(arg_nodes, env);
      const Value width = arg_or(a, 0, "width", Value::integer(4));
      if (!width.is(Kind::Integer)) runtime_fail("indent: width must be an integer");
      if (width.num() < 0 || width.num() > static_cast<double>(kMaxStringBytes))
        runtime_fail("indent: invalid width {}", width.num());
      const Value first = arg_or(a, 1, "first", Value::boolean(false));
      const Value blank = arg_or(a, 2, "blank", Value::boolean(false));
      return Value::string(indent_lines(operand.str(), std::string(static_cast<size_t>(width.num()), ' '),
                                        js_truthy(first), js_truthy(blank)));
    }
    if (name == "replace") {
      CallArgs a = eval_args(arg_nodes, env);
      Args args = std::move(a.positional);
      args.push_back(Value::object(std::move(a.keywords), Kind::KwArgs));  // always, as the reference does
      return string_member(operand, "replace").function().call(args, env);
    }
    unknown_filter(name, operand);
  }
  if (operand.is_dict_like()) {
    Value member = dict_member(operand, name);
    if (member.is(Kind::Function)) {
      CallArgs a = eval_args(arg_nodes, env);
      Args args = std::move(a.positional);
      if (!a.keywords.empty()) args.push_back(Value::object(std::move(a.keywords), Kind::KwArgs));
      return member.function().call(args, env);
    }
    unknown_filter(name, operand);
  }
  runtime_fail("cannot apply filter '{}' to {}", name, kind_name(operand.kind()));
}

Value Interpreter::select_attr(const Value& operand, bool select, const NodeList& arg_nodes, Env* env) {
  const char* name = select ? "selectattr" : "rejectattr";
  for (const auto& item : operand.items()) {
    if (!item.is_attr_container()) runtime_fail("{} can only be applied to a list of dicts", name);
  }
  for (const auto& n : arg_nodes) {
    if (n->type != NodeType::String) unsupported("the arguments of {} must be string literals", name);
  }
  std::vector<Value> args;
  for (const auto& n : arg_nodes) args.push_back(eval(*n, env));
  const bool has_test = args.size() > 1;
  if (has_test && !is_known_test(args[1].str())) unsupported("unknown test '{}'", args[1].str());
  std::vector<Value> out;
  for (const auto& item : operand.items()) {
    if (args.empty()) runtime_fail("{} needs an attribute name", name);
    const Value* attr = item.object().find(args[0].str());
    bool result = false;
    if (attr != nullptr)
      result = has_test ? apply_test(args[1].str(), *attr, args.size() > 2 ? &args[2] : nullptr) : truthy(*attr);
    if (result == select) out.push_back(item);
  }
  return Value::array(std::move(out));
}

}  // namespace vireo::jinja
