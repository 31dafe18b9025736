// Members of strings, lists and dicts (s.strip(), l.length, d.items(), ...) and the global
// functions (range, namespace, raise_exception, strftime_now), as the reference provides them.
#include <cmath>
#include <ctime>

#include "tokenizer/jinja/interpreter.h"
#include "tokenizer/jinja/js_number.h"
#include "tokenizer/jinja/js_string.h"

namespace vireo::jinja {
namespace {

bool is_word(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

void check_size(const std::string& s) {
  if (s.size() > kMaxStringBytes) runtime_fail("string grew past the {} byte limit", kMaxStringBytes);
}

// A method that ignores its arguments and maps the string (upper, strip, ...).
Value string_fn(const std::string& name, const Value& self, std::string (*map)(std::string_view)) {
  return Value::function(
      name, [map](const Value& me, Args&, Env*) { return Value::string(map(me.str())); }, self);
}

// startswith / endswith: a string, or a list / tuple of strings (any of them).
Value affix_fn(const std::string& name, const Value& self, bool prefix) {
  return Value::function(
      name,
      [name, prefix](const Value& self, Args& args, Env*) {
        if (args.empty()) runtime_fail("{}() needs an argument", name);
        auto matches = [&](const std::string& affix) {
          const std::string& s = self.str();
          return prefix ? s.starts_with(affix) : s.ends_with(affix);
        };
        const Value& pattern = args[0];
        if (pattern.is_string()) return Value::boolean(matches(pattern.str()));
        if (pattern.is_array_like()) {
          for (const auto& item : pattern.items()) {
            if (!item.is_string()) runtime_fail("{}() tuple elements must be strings", name);
            if (matches(item.str())) return Value::boolean(true);
          }
          return Value::boolean(false);
        }
        runtime_fail("{}() argument must be a string or a tuple of strings", name);
      },
      self);
}

void push_part(std::vector<Value>& parts, std::string part) {
  if (parts.size() >= kMaxArrayItems) runtime_fail("list grew past the {} item limit", kMaxArrayItems);
  parts.push_back(Value::string(std::move(part)));
}

// str.split(sep=None, maxsplit=-1), with the reference's handling of maxsplit.
Value split(const std::string& s, Args& args) {
  const Value sep = args.size() > 0 ? args[0] : Value::null();
  if (!sep.is_string() && !sep.is_null()) runtime_fail("split(): sep must be a string or none");
  const Value maxsplit = args.size() > 1 ? args[1] : Value::integer(-1);
  if (!maxsplit.is(Kind::Integer)) runtime_fail("split(): maxsplit must be an integer");
  const double max = maxsplit.num();
  std::vector<Value> parts;
  if (sep.is_null()) {
    // Runs of whitespace separate; with maxsplit the last part keeps the rest verbatim.
    const std::string_view text = js_trim_start(s);
    size_t i = 0;
    while (i < text.size()) {
      const size_t start = i;
      while (i < text.size() && js_space_len(text, i) == 0) {
        size_t j = i;
        decode_cp(text, j);
        i = j;
      }
      if (max != -1 && static_cast<double>(parts.size()) >= max) {
        push_part(parts, std::string(text.substr(start)));
        break;
      }
      push_part(parts, std::string(text.substr(start, i - start)));
      while (size_t n = js_space_len(text, i)) i += n;
    }
    return Value::array(std::move(parts));
  }
  const std::string& sep_s = sep.str();
  if (sep_s.empty()) runtime_fail("split(): empty separator");
  std::vector<std::string> pieces;
  for (size_t start = 0;;) {
    const size_t at = js_find(s, sep_s, start);
    if (pieces.size() >= kMaxArrayItems) runtime_fail("list grew past the {} item limit", kMaxArrayItems);
    pieces.push_back(s.substr(start, at == std::string::npos ? std::string::npos : at - start));
    if (at == std::string::npos) break;
    start = at + sep_s.size();
  }
  if (max != -1 && static_cast<double>(pieces.size()) > max) {
    // result.push(result.splice(maxsplit).join(sep)): splice's start clamps like Array.prototype.splice.
    const double len = static_cast<double>(pieces.size());
    double k = std::isnan(max) ? 0 : std::trunc(max);
    k = k < 0 ? std::max(len + k, 0.0) : std::min(k, len);
    const auto cut = static_cast<size_t>(k);
    std::string tail;
    for (size_t i = cut; i < pieces.size(); ++i) {
      if (i > cut) tail += sep_s;
      js_append(tail, pieces[i]);
    }
    pieces.resize(cut);
    pieces.push_back(std::move(tail));
  }
  for (auto& p : pieces) parts.push_back(Value::string(std::move(p)));
  return Value::array(std::move(parts));
}

// str.replace(old, new, count=None); an empty `old` inserts `new` between every character.
Value replace(const std::string& s, Args& args) {
  if (args.size() < 2) runtime_fail("replace() needs at least two arguments");
  if (!args[0].is_string() || !args[1].is_string()) runtime_fail("replace() arguments must be strings");
  Value count = Value::null();
  if (args.size() > 2) {
    if (args[2].is(Kind::KwArgs)) {
      const Value* c = args[2].object().find("count");
      count = c ? *c : Value::null();
    } else {
      count = args[2];
    }
  }
  if (!count.is(Kind::Integer) && !count.is_null()) runtime_fail("replace() count must be an integer or none");
  if (count.is(Kind::Integer) && count.num() == 0) return Value::string(s);
  double remaining = count.is_null() || count.num() < 0 ? INFINITY : count.num();
  const std::string& from = args[0].str();
  const std::string& to = args[1].str();
  std::string out;
  if (from.empty()) {
    for (size_t i = 0;;) {
      if (remaining > 0) {
        js_append(out, to);
        --remaining;
      }
      if (i >= s.size()) break;
      const size_t start = i;
      decode_cp(s, i);
      js_append(out, std::string_view(s).substr(start, i - start));
      check_size(out);
    }
    return Value::string(std::move(out));
  }
  size_t start = 0;
  while (remaining > 0) {
    const size_t at = js_find(s, from, start);
    if (at == std::string::npos) break;
    js_append(out, std::string_view(s).substr(start, at - start));
    js_append(out, to);
    check_size(out);
    start = at + from.size();
    --remaining;
  }
  js_append(out, std::string_view(s).substr(start));
  check_size(out);
  return Value::string(std::move(out));
}

Value dictsort(const Value& self, Args& args) {
  std::vector<Value> pos;
  const ObjectData* kwargs = nullptr;
  for (const auto& a : args) {
    if (a.is(Kind::KwArgs)) {
      kwargs = &a.object();
    } else {
      pos.push_back(a);
    }
  }
  auto option = [&](size_t i, const char* name, Value fallback) {
    if (i < pos.size()) return pos[i];
    if (kwargs != nullptr) {
      if (const Value* v = kwargs->find(name)) return *v;
    }
    return fallback;
  };
  const Value case_sensitive = option(0, "case_sensitive", Value::boolean(false));
  if (!case_sensitive.is(Kind::Bool)) runtime_fail("dictsort: case_sensitive must be a boolean");
  const Value by = option(1, "by", Value::string("key"));
  if (!by.is_string()) runtime_fail("dictsort: by must be a string");
  if (by.str() != "key" && by.str() != "value") runtime_fail("dictsort: by must be 'key' or 'value'");
  const Value reverse = option(2, "reverse", Value::boolean(false));
  if (!reverse.is(Kind::Bool)) runtime_fail("dictsort: reverse must be a boolean");
  std::vector<Value> items;
  for (const auto& [k, v] : self.object().entries()) items.push_back(Value::array({Value::string(k), v}));
  const size_t index = by.str() == "key" ? 0 : 1;
  std::vector<size_t> order(items.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    const int c = compare_values(items[a].items()[index], items[b].items()[index], case_sensitive.boolean());
    return (reverse.boolean() ? -c : c) < 0;
  });
  std::vector<Value> out;
  out.reserve(order.size());
  for (size_t i : order) out.push_back(items[i]);
  return Value::array(std::move(out));
}

// range(start, stop, step) with the reference's JavaScript argument handling: an undefined (or
// none) argument counts as not given, and `stop` is only ever compared, so any value works there
// (a string compares as a number, a dict as NaN: no items).
bool range_given(const Args& args, size_t i) {
  return i < args.size() && !args[i].is_undefined() && !args[i].is_null();
}

double range_number(const Args& args, size_t i, const char* what) {
  const Value& v = args[i];
  if (!v.is_number()) runtime_fail("range() {} must be a number, got {}", what, kind_name(v.kind()));
  return v.num();
}

double compared_as_number(const Value& v) {
  if (v.is_numeric_like()) return v.num();
  if (v.is_string()) return js_string_to_number(v.str());
  if (v.is_array_like()) return js_string_to_number(raw_string(v));
  return NAN;
}

Value range(Args& args) {
  double start = 0, stop;
  if (!range_given(args, 1)) {
    if (!range_given(args, 0)) return Value::array({});
    stop = compared_as_number(args[0]);
  } else {
    if (!range_given(args, 0)) return Value::array({});  // undefined < stop is false
    start = range_number(args, 0, "start");
    stop = compared_as_number(args[1]);
  }
  const double step = range_given(args, 2) ? range_number(args, 2, "step") : 1;
  if (step == 0) runtime_fail("range() step must not be zero");
  const double span = (stop - start) / step;
  if (span > static_cast<double>(kMaxArrayItems)) runtime_fail("range() of more than {} items", kMaxArrayItems);
  std::vector<Value> out;
  for (double i = start; step > 0 ? i < stop : i > stop; i += step) {
    // A step too small to change a huge start never ends (in the reference either).
    if (out.size() >= kMaxArrayItems) runtime_fail("range() of more than {} items", kMaxArrayItems);
    out.push_back(js_is_integer(i) ? Value::integer(i) : Value::floating(i));
  }
  return Value::array(std::move(out));
}

// The reference's strftime: %Y %m %d %b %B %H %M %% in local time, English month names.
std::string strftime_now(const std::string& format) {
  static constexpr const char* kMonths[] = {"January", "February", "March",     "April",   "May",      "June",
                                            "July",    "August",   "September", "October", "November", "December"};
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  localtime_r(&now, &tm);
  auto pad2 = [](int n) { return fmt::format("{:02d}", n); };
  std::string out;
  for (size_t i = 0; i < format.size(); ++i) {
    if (format[i] != '%' || i + 1 >= format.size()) {
      out += format[i];
      continue;
    }
    const char c = format[i + 1];
    switch (c) {
      case 'Y': out += std::to_string(tm.tm_year + 1900); break;
      case 'm': out += pad2(tm.tm_mon + 1); break;
      case 'd': out += pad2(tm.tm_mday); break;
      case 'b': out += std::string(kMonths[tm.tm_mon]).substr(0, 3); break;
      case 'B': out += kMonths[tm.tm_mon]; break;
      case 'H': out += pad2(tm.tm_hour); break;
      case 'M': out += pad2(tm.tm_min); break;
      case '%': out += '%'; break;
      default: out += '%'; continue;  // not a directive: keep both characters
    }
    ++i;
  }
  return out;
}

Value make_namespace(Interpreter& interp, Args& args) {
  Args positional = args;
  const Value* kwargs = nullptr;
  if (!positional.empty() && positional.back().is(Kind::KwArgs)) {
    kwargs = &args.back();
    positional.pop_back();
  }
  if (positional.size() > 1) runtime_fail("namespace() takes at most 1 positional argument, got {}", positional.size());
  std::vector<ObjectData::Entry> entries;
  auto put = [&](const std::string& key, const Value& value) {
    for (auto& e : entries) {
      if (e.first == key) {
        e.second = value;
        return;
      }
    }
    entries.emplace_back(key, value);
  };
  if (positional.size() == 1) {
    const Value& source = positional[0];
    if (source.is_dict_like()) {
      for (const auto& [k, v] : source.object().entries()) put(k, v);
    } else if (source.is_array_like()) {
      for (const auto& pair : source.items()) {
        std::vector<Value> kv;
        if (pair.is_array_like()) kv = pair.items();
        if (pair.is_string()) {
          for (auto& c : js_code_points(pair.str())) kv.push_back(Value::string(std::move(c)));
        }
        if (kv.size() != 2) runtime_fail("namespace() expected a dict or a list of [key, value] pairs");
        if (!kv[0].is_string()) runtime_fail("namespace() keys must be strings");
        put(kv[0].str(), kv[1]);
      }
    } else {
      runtime_fail("namespace() cannot read {}", kind_name(source.kind()));
    }
  }
  if (kwargs != nullptr) {
    for (const auto& [k, v] : kwargs->object().entries()) put(k, v);
  }
  return interp.new_namespace(std::move(entries));
}

std::string upper(std::string_view s) {
  return js_to_upper(s);
}
std::string lower(std::string_view s) {
  return js_to_lower(s);
}
std::string strip(std::string_view s) {
  return std::string(js_trim(s));
}
std::string lstrip(std::string_view s) {
  return std::string(js_trim_start(s));
}
std::string rstrip(std::string_view s) {
  return std::string(js_trim_end(s));
}
std::string title(std::string_view s) {
  return title_case(s);
}
std::string cap(std::string_view s) {
  return capitalize(s);
}

}  // namespace

std::string title_case(std::string_view s) {
  // JavaScript's /\b\w/g: an ASCII word character after a non-word one; the rest is left alone.
  std::string out(s);
  for (size_t i = 0; i < out.size(); ++i) {
    if (is_word(out[i]) && (i == 0 || !is_word(out[i - 1])) && out[i] >= 'a' && out[i] <= 'z') out[i] -= 32;
  }
  return out;
}

std::string capitalize(std::string_view s) {
  std::string out = js_to_upper(js_first_unit(s));
  js_append(out, js_after_first_unit(s));
  return out;
}

std::string js_join(const std::vector<Value>& items, std::string_view sep) {
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) {
    if (i > 0) js_append(out, sep);
    if (!items[i].is_undefined() && !items[i].is_null()) js_append(out, raw_string(items[i]));
    check_size(out);
  }
  return out;
}

Value attribute_path(const Value& item, std::string_view path) {
  Value v = item;
  size_t start = 0;
  while (true) {
    const size_t dot = path.find('.', start);
    const std::string part(path.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start));
    if (v.is_attr_container()) {
      const Value* next = v.object().find(part);
      v = next ? *next : Value();
    } else if (v.is_array_like()) {
      const double index = js_parse_int(part);
      if (std::isnan(index) || index < 0 || index >= static_cast<double>(v.items().size())) return Value();
      v = v.items()[static_cast<size_t>(index)];
    } else {
      return Value();
    }
    if (dot == std::string_view::npos) return v;
    start = dot + 1;
  }
}

Value string_member(const Value& s, const std::string& name) {
  if (name == "length") {
    charge_work(s.str().size() / 256);
    return Value::integer(static_cast<double>(js_length(s.str())));
  }
  if (name == "upper") return string_fn(name, s, upper);
  if (name == "lower") return string_fn(name, s, lower);
  if (name == "strip") return string_fn(name, s, strip);
  if (name == "lstrip") return string_fn(name, s, lstrip);
  if (name == "rstrip") return string_fn(name, s, rstrip);
  if (name == "title") return string_fn(name, s, title);
  if (name == "capitalize") return string_fn(name, s, cap);
  if (name == "startswith") return affix_fn(name, s, true);
  if (name == "endswith") return affix_fn(name, s, false);
  if (name == "split") {
    return Value::function(
        name, [](const Value& me, Args& args, Env*) { return split(me.str(), args); }, s);
  }
  if (name == "replace") {
    return Value::function(
        name, [](const Value& me, Args& args, Env*) { return replace(me.str(), args); }, s);
  }
  return Value();
}

Value array_member(const Value& a, const std::string& name) {
  if (name == "length") return Value::integer(static_cast<double>(a.items().size()));
  return Value();
}

Value dict_member(const Value& d, const std::string& name) {
  if (name == "get") {
    return Value::function(
        name,
        [](const Value& d, Args& args, Env*) {
          if (args.empty() || !args[0].is_string()) {
            runtime_fail("dict.get() key must be a string, got {}",
                         args.empty() ? "nothing" : kind_name(args[0].kind()));
          }
          if (const Value* v = d.object().find(args[0].str())) return *v;
          return args.size() > 1 ? args[1] : Value::null();
        },
        d);
  }
  if (name == "items") {
    return Value::function(
        name,
        [](const Value& d, Args&, Env*) {
          std::vector<Value> out;
          for (const auto& [k, v] : d.object().entries()) out.push_back(Value::array({Value::string(k), v}));
          return Value::array(std::move(out));
        },
        d);
  }
  if (name == "keys") {
    return Value::function(
        name,
        [](const Value& d, Args&, Env*) {
          std::vector<Value> out;
          for (const auto& e : d.object().entries()) out.push_back(Value::string(e.first));
          return Value::array(std::move(out));
        },
        d);
  }
  if (name == "values") {
    return Value::function(
        name,
        [](const Value& d, Args&, Env*) {
          std::vector<Value> out;
          for (const auto& e : d.object().entries()) out.push_back(e.second);
          return Value::array(std::move(out));
        },
        d);
  }
  if (name == "dictsort") {
    return Value::function(
        name, [](const Value& me, Args& args, Env*) { return dictsort(me, args); }, d);
  }
  return Value();
}

void install_globals(Env& env, Interpreter& interp) {
  Interpreter* in = &interp;
  env.set("namespace",
          Value::function("namespace", [in](const Value&, Args& args, Env*) { return make_namespace(*in, args); }));
  env.set("false", Value::boolean(false));
  env.set("true", Value::boolean(true));
  env.set("none", Value::null());
  env.set("raise_exception", Value::function("raise_exception", [](const Value&, Args& args, Env*) -> Value {
            const std::string message = args.empty() ? std::string() : raw_string(args[0]);
            throw RuntimeError{ErrorCode::InvalidArgument, "template raised an error: " + message};
          }));
  env.set("range", Value::function("range", [](const Value&, Args& args, Env*) { return range(args); }));
  env.set("strftime_now", Value::function("strftime_now", [](const Value&, Args& args, Env*) {
            if (args.empty() || !args[0].is_string()) runtime_fail("strftime_now() needs a format string");
            return Value::string(strftime_now(args[0].str()));
          }));
  env.set("True", Value::boolean(true));
  env.set("False", Value::boolean(false));
  env.set("None", Value::null());
}

}  // namespace vireo::jinja
