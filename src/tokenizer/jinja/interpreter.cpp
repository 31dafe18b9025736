#include "tokenizer/jinja/interpreter.h"

#include <cmath>

#include "tokenizer/jinja/js_string.h"

namespace vireo::jinja {
namespace {

// {% break %} / {% continue %}: unwind to the innermost loop, which may be in a calling scope
// (a macro called from a loop body breaks that loop, as in the reference).
struct BreakSignal {
  uint32_t pos;
};
struct ContinueSignal {
  uint32_t pos;
};

// Python's slice rules as the reference implements them, on positions 0..len-1.
std::vector<size_t> slice_positions(size_t length, const Value& start_v, const Value& stop_v, const Value& step_v) {
  const double len = static_cast<double>(length);
  const double step = step_v.is_undefined() ? 1 : step_v.num();
  const double direction = step > 0 ? 1 : step < 0 ? -1 : step == 0 ? 0 : NAN;
  double start, stop;
  if (direction >= 0) {
    start = start_v.is_undefined() ? 0 : start_v.num();
    start = start < 0 ? std::max(len + start, 0.0) : std::min(start, len);
    stop = stop_v.is_undefined() ? len : stop_v.num();
    stop = stop < 0 ? std::max(len + stop, 0.0) : std::min(stop, len);
  } else {
    start = start_v.is_undefined() ? len - 1 : start_v.num();
    start = start < 0 ? std::max(len + start, -1.0) : std::min(start, len - 1);
    stop = stop_v.is_undefined() ? -1 : stop_v.num();
    stop = stop < -1 ? std::max(len + stop, -1.0) : std::min(stop, len - 1);
  }
  std::vector<size_t> out;
  for (double i = start; direction * i < direction * stop; i += step) {
    if (!(i >= 0 && i < len)) break;  // cannot happen with the clamping above; stay in bounds anyway
    out.push_back(static_cast<size_t>(i));
  }
  return out;
}

}  // namespace

Value Env::lookup(const std::string& name) const {
  for (const Env* e = this; e != nullptr; e = e->parent_.get()) {
    auto it = e->vars_.find(name);
    if (it != e->vars_.end()) return it->second;
  }
  return Value();
}

const Value* CallArgs::keyword(std::string_view name) const {
  for (const auto& [k, v] : keywords) {
    if (k == name) return &v;
  }
  return nullptr;
}

void Interpreter::emit(std::string& out, std::string_view text) {
  charge_work(text.size() / 256);
  js_append(out, text);
  if (out.size() > kMaxStringBytes) runtime_fail("output grew past the {} byte limit", kMaxStringBytes);
}

struct Interpreter::DepthGuard {
  explicit DepthGuard(Interpreter& in) : in_(in) {
    if (++in_.depth_ > kMaxEvalDepth)
      runtime_fail("evaluation nested deeper than {} levels (runaway recursion?)", kMaxEvalDepth);
    charge_work(1);
  }
  ~DepthGuard() { --in_.depth_; }
  Interpreter& in_;
};

Interpreter::~Interpreter() {
  for (auto& ns : namespaces_) ns->clear();
}

std::shared_ptr<Env> Interpreter::new_env(Env* parent) {
  return std::make_shared<Env>(parent != nullptr ? parent->shared_from_this() : nullptr);
}

Value Interpreter::new_namespace(std::vector<ObjectData::Entry> entries) {
  Value ns = Value::object(std::move(entries), Kind::Namespace);
  namespaces_.push_back(ns.object_ptr());
  return ns;
}

std::string Interpreter::render(const Program& program, std::vector<ObjectData::Entry> context) {
  const auto global_owner = new_env(nullptr);
  Env* global = global_owner.get();
  install_globals(*global, *this);
  for (auto& [name, value] : context) {
    // The reference refuses a context key that shadows a global (true, range, namespace, ...).
    if (global->declares(name)) {
      fail(ErrorCode::InvalidArgument, "{}: context variable '{}' clashes with a built-in name", src_.name, name);
    }
    global->set(name, std::move(value));
  }
  std::string out;
  try {
    exec_block(program.body, global, out);
  } catch (const BreakSignal& s) {
    fail_at(src_, s.pos, ErrorCode::InvalidFile, "'break' outside of a loop");
  } catch (const ContinueSignal& s) {
    fail_at(src_, s.pos, ErrorCode::InvalidFile, "'continue' outside of a loop");
  }
  return out;
}

std::string Interpreter::render_block(const NodeList& body, Env* env) {
  std::string out;
  exec_block(body, env, out);
  return out;
}

void Interpreter::exec_block(const NodeList& body, Env* env, std::string& out) {
  for (const auto& n : body) exec(*n, env, out);
}

void Interpreter::exec(const Node& n, Env* env, std::string& out) {
  try {
    DepthGuard guard(*this);
    switch (n.type) {
      case NodeType::Text: emit(out, n.name); return;
      case NodeType::Comment: return;
      case NodeType::If: exec_block(truthy(eval(*n.a, env)) ? n.body : n.alt, env, out); return;
      case NodeType::For: exec_for(n, env, out); return;
      case NodeType::Set: exec_set(n, env); return;
      case NodeType::Macro: define_macro(n, env); return;
      case NodeType::Break: throw BreakSignal{n.pos};
      case NodeType::Continue: throw ContinueSignal{n.pos};
      default: break;
    }
    Value v;
    if (n.type == NodeType::CallBlock) {
      v = call_block(n, env);
    } else if (n.type == NodeType::FilterBlock) {
      v = apply_filter(Value::string(render_block(n.body, env)), *n.a, env);
    } else {
      v = eval(n, env);
    }
    if (!v.is_undefined() && !v.is_null()) emit(out, display(v));
  } catch (const RuntimeError& e) {
    fail_at(src_, n.pos, e.code, e.message);
  }
}

void Interpreter::exec_for(const Node& n, Env* env, std::string& out) {
  const auto scope_owner = new_env(env);
  Env* scope = scope_owner.get();
  const Node* test = nullptr;
  Value iterable;
  if (n.b->type == NodeType::Select) {
    iterable = eval(*n.b->a, scope);
    test = n.b->b.get();
  } else {
    iterable = eval(*n.b, scope);
  }
  if (!iterable.is_array_like() && !iterable.is_dict_like()) {
    runtime_fail("cannot loop over {} (expected a list or a dict)", kind_name(iterable.kind()));
  }
  std::vector<Value> keys;
  if (iterable.is_dict_like()) {
    for (const auto& e : iterable.object().entries()) keys.push_back(Value::string(e.first));
  }
  const std::vector<Value>& all = iterable.is_dict_like() ? keys : iterable.items();

  const Node& target = *n.a;
  auto assign = [&](Env* scope_env, const Value& item) {
    if (target.type == NodeType::Identifier) {
      scope_env->set(target.name, item);
      return;
    }
    for (size_t j = 0; j < target.items.size(); ++j) {
      const Node& name = *target.items[j];
      if (name.type != NodeType::Identifier) runtime_fail("cannot unpack into something that is not a name");
      scope_env->set(name.name, item.items()[j]);
    }
  };

  std::vector<Value> selected;  // the items that pass the loop's condition
  for (const Value& item : all) {
    charge_work(1);
    if (target.type == NodeType::Tuple) {
      // The reference unpacks lists only (not tuples), and only of the exact size.
      if (!item.is(Kind::Array)) runtime_fail("cannot unpack {} into loop variables", kind_name(item.kind()));
      if (item.items().size() != target.items.size()) {
        runtime_fail("too {} items to unpack ({} names, {} items)",
                     target.items.size() > item.items().size() ? "few" : "many", target.items.size(),
                     item.items().size());
      }
    }
    if (test != nullptr) {
      const auto loop_scope = new_env(scope);
      assign(loop_scope.get(), item);
      if (!truthy(eval(*test, loop_scope.get()))) continue;
      selected.push_back(item);
    }
  }
  const std::vector<Value>& items = test != nullptr ? selected : all;

  bool no_iteration = true;
  const size_t count = items.size();
  for (size_t i = 0; i < count; ++i) {
    charge_work(4);  // the loop variable, a fresh `loop` dict, the body's buffer
    std::vector<ObjectData::Entry> loop;
    loop.reserve(9);
    const double d = static_cast<double>(i), len = static_cast<double>(count);
    loop.emplace_back("index", Value::integer(d + 1));
    loop.emplace_back("index0", Value::integer(d));
    loop.emplace_back("revindex", Value::integer(len - d));
    loop.emplace_back("revindex0", Value::integer(len - d - 1));
    loop.emplace_back("first", Value::boolean(i == 0));
    loop.emplace_back("last", Value::boolean(i + 1 == count));
    loop.emplace_back("length", Value::integer(len));
    loop.emplace_back("previtem", i > 0 ? items[i - 1] : Value());
    loop.emplace_back("nextitem", i + 1 < count ? items[i + 1] : Value());
    scope->set("loop", Value::object_unique(std::move(loop)));
    assign(scope, items[i]);
    // An iteration cut short by break / continue contributes nothing, as in the reference.
    std::string body;
    try {
      exec_block(n.body, scope, body);
    } catch (const ContinueSignal&) {
      continue;
    } catch (const BreakSignal&) {
      break;
    }
    emit(out, body);
    no_iteration = false;
  }
  if (no_iteration) exec_block(n.alt, scope, out);
}

void Interpreter::exec_set(const Node& n, Env* env) {
  Value rhs = n.b ? eval(*n.b, env, /*allow_hole=*/true) : Value::string(render_block(n.body, env));
  const Node& target = *n.a;
  if (rhs.is_hole() && target.type != NodeType::Tuple) rhs = Value();  // reads back as undefined
  switch (target.type) {
    case NodeType::Identifier: env->set(target.name, std::move(rhs)); return;
    case NodeType::Tuple: {
      if (!rhs.is_array_like()) runtime_fail("cannot unpack {} in set", kind_name(rhs.kind()));
      const auto& values = rhs.items();
      if (values.size() != target.items.size()) {
        runtime_fail("too {} items to unpack in set ({} names, {} items)",
                     target.items.size() > values.size() ? "few" : "many", target.items.size(), values.size());
      }
      for (size_t i = 0; i < values.size(); ++i) {
        if (target.items[i]->type != NodeType::Identifier)
          runtime_fail("cannot unpack into something that is not a name");
        env->set(target.items[i]->name, values[i]);
      }
      return;
    }
    case NodeType::Member: {
      const Value object = eval(*target.a, env);
      if (!object.is(Kind::Namespace))
        runtime_fail("cannot assign an attribute of {} (only of a namespace)", kind_name(object.kind()));
      if (target.b->type != NodeType::Identifier) runtime_fail("cannot assign to a member that is not a name");
      object.object().set(target.b->name, std::move(rhs));
      return;
    }
    default: runtime_fail("invalid target of set");
  }
}

void Interpreter::bind_macro_args(const std::string& display_name, const Node& owner, Args& args, Env* scope) {
  std::vector<ObjectData::Entry> keywords;
  size_t positional = args.size();
  if (positional > 0 && args.back().is(Kind::KwArgs)) {
    keywords = args.back().object().entries();
    --positional;
  }
  auto take_keyword = [&](const std::string& name) -> std::optional<Value> {
    for (auto it = keywords.begin(); it != keywords.end(); ++it) {
      if (it->first == name) {
        Value v = std::move(it->second);
        keywords.erase(it);
        return v;
      }
    }
    return std::nullopt;
  };
  // Every parameter is bound before any default is evaluated, so a default never sees an outer
  // variable of the same name.
  std::vector<const Node*> pending_defaults;
  const NodeList& params = owner.items;
  for (size_t i = 0; i < params.size(); ++i) {
    const Node& p = *params[i];
    std::optional<Value> value;
    if (i < positional) value = args[i];
    if (!value) value = take_keyword(p.name);
    if (!value && p.type == NodeType::KwArg) pending_defaults.push_back(&p);
    scope->set(p.name, value ? std::move(*value) : Value());
  }
  if (owner.uses_kwargs) {
    scope->set("kwargs", Value::object(std::move(keywords)));
  } else if (!keywords.empty()) {
    runtime_fail("macro {} takes no keyword argument '{}'", display_name, keywords.front().first);
  }
  if (owner.uses_varargs) {
    std::vector<Value> rest;
    for (size_t i = params.size(); i < positional; ++i) rest.push_back(args[i]);
    scope->set("varargs", Value::array(std::move(rest)));
  } else if (positional > params.size()) {
    runtime_fail("macro {} takes not more than {} argument(s)", display_name, params.size());
  }
  for (const Node* p : pending_defaults) scope->set(p->name, eval(*p->a, scope));
}

void Interpreter::define_macro(const Node& n, Env* env) {
  const Node* node = &n;
  env->set(n.name, Value::function(n.name, [this, node](const Value&, Args& args, Env* caller) {
             const auto scope = new_env(caller);
             bind_macro_args("'" + node->name + "'", *node, args, scope.get());
             return Value::string(render_block(node->body, scope.get()));
           }));
}

Value Interpreter::call_block(const Node& n, Env* env) {
  const Node* node = &n;
  Value caller =
      Value::function("caller", [this, node, owner = env->shared_from_this()](const Value&, Args& args, Env*) {
        const auto scope = new_env(owner.get());
        bind_macro_args("None", *node, args, scope.get());
        return Value::string(render_block(node->body, scope.get()));
      });
  const Node& call = *n.a;
  CallArgs evaluated = eval_args(call.items, env);
  Args args = std::move(evaluated.positional);
  args.push_back(Value::object(std::move(evaluated.keywords), Kind::KwArgs));
  const Value fn = eval(*call.a, env);
  if (!fn.is(Kind::Function)) runtime_fail("cannot call {}: it is not a function", kind_name(fn.kind()));
  const auto call_env = new_env(env);
  call_env->set("caller", caller);
  return fn.function().call(args, call_env.get());
}

Value Interpreter::eval(const Node& n, Env* env, bool allow_hole) {
  try {
    DepthGuard guard(*this);
    Value v = eval_node(n, env);
    if (v.is_string()) charge_work(v.str().size() / 256);  // building big strings is work too
    if (v.is_array_like()) charge_work(v.items().size() / 16);
    if (v.is_hole() && !allow_hole) runtime_fail("'first' or 'last' of an empty list can only be assigned with set");
    return v;
  } catch (const RuntimeError& e) {
    fail_at(src_, n.pos, e.code, e.message);
  }
}

Value Interpreter::eval_node(const Node& n, Env* env) {
  switch (n.type) {
    case NodeType::Integer: return Value::integer(n.number);
    case NodeType::Float: return Value::floating(n.number);
    case NodeType::String:
    case NodeType::Text: return Value::string(n.name);
    case NodeType::Identifier: return env->lookup(n.name);
    case NodeType::Array:
    case NodeType::Tuple: {
      std::vector<Value> items;
      items.reserve(n.items.size());
      for (const auto& item : n.items) items.push_back(eval(*item, env));
      return Value::array(std::move(items), n.type == NodeType::Tuple ? Kind::Tuple : Kind::Array);
    }
    case NodeType::Object: {
      auto data = std::make_shared<ObjectData>();
      for (size_t i = 0; i + 1 < n.items.size(); i += 2) {
        const Value key = eval(*n.items[i], env);
        if (!key.is_string()) runtime_fail("dict keys must be strings, got {}", kind_name(key.kind()));
        data->set(key.str(), eval(*n.items[i + 1], env));
      }
      return Value::object(std::move(data));
    }
    case NodeType::Member: return eval_member(n, env);
    case NodeType::Call: return eval_call(n, env);
    case NodeType::Unary: return eval_unary(n, env);
    case NodeType::Binary: return eval_binary(n, env);
    case NodeType::Filter: return apply_filter(eval(*n.a, env), *n.b, env);
    case NodeType::Test: {
      const bool result = apply_test(n.name, eval(*n.a, env), nullptr);
      return Value::boolean(n.flag ? !result : result);
    }
    case NodeType::Select:
      if (!truthy(eval(*n.b, env))) return Value();
      return eval(*n.a, env);
    case NodeType::Ternary: return truthy(eval(*n.a, env)) ? eval(*n.b, env) : eval(*n.c, env);
    case NodeType::Comment: return Value::null();
    default: runtime_fail("this construct cannot be used as a value here");
  }
}

Value Interpreter::eval_unary(const Node& n, Env* env) {
  const Value arg = eval(*n.a, env);
  if (n.op == Op::Not) return Value::boolean(!truthy(arg));
  if (!arg.is_numeric_like()) runtime_fail("unary '{}' needs a number, got {}", op_text(n.op), kind_name(arg.kind()));
  const double v = (n.op == Op::Neg ? -1 : 1) * arg.num();
  return arg.is(Kind::Float) ? Value::floating(v) : Value::integer(v);
}

Value Interpreter::eval_binary(const Node& n, Env* env) {
  const Value left = eval(*n.a, env);
  if (n.op == Op::And) return truthy(left) ? eval(*n.b, env) : left;
  if (n.op == Op::Or) return truthy(left) ? left : eval(*n.b, env);
  const Value right = eval(*n.b, env);
  if (n.op == Op::Eq) return Value::boolean(loose_equals(left, right));
  if (n.op == Op::Ne) return Value::boolean(!loose_equals(left, right));

  const char* op = op_text(n.op);
  if (left.is_undefined() || right.is_undefined()) {
    // `x in undefined` is false and `x not in undefined` true; anything else on undefined fails.
    if (right.is_undefined() && (n.op == Op::In || n.op == Op::NotIn)) return Value::boolean(n.op == Op::NotIn);
    runtime_fail("cannot apply '{}' to an undefined value", op);
  }
  if (left.is_null() || right.is_null()) runtime_fail("cannot apply '{}' to none", op);
  if (n.op == Op::Concat) {
    std::string s = raw_string(left);
    js_append(s, raw_string(right));
    if (s.size() > kMaxStringBytes) runtime_fail("string grew past the {} byte limit", kMaxStringBytes);
    return Value::string(std::move(s));
  }
  if (n.op == Op::Pow && left.is_numeric_like() && right.is_numeric_like()) {
    const double a = left.num(), b = right.num();
    if (a == 0 && b < 0) runtime_fail("0.0 cannot be raised to a negative power");
    double r = std::pow(a, b);
    if (std::isnan(b) || (std::fabs(a) == 1 && std::isinf(b))) r = NAN;  // JavaScript's ** here
    if (!std::isfinite(r)) runtime_fail("'**' result is not a finite real number");
    const bool is_float = left.is(Kind::Float) || right.is(Kind::Float) || b < 0;
    return is_float ? Value::floating(r) : Value::integer(r);
  }
  if (left.is_number() && right.is_number()) {
    const double a = left.num(), b = right.num();
    const bool is_float = left.is(Kind::Float) || right.is(Kind::Float);
    auto number = [&](double r) { return is_float ? Value::floating(r) : Value::integer(r); };
    switch (n.op) {
      case Op::Add: return number(a + b);
      case Op::Sub: return number(a - b);
      case Op::Mul: return number(a * b);
      case Op::Div: return Value::floating(a / b);
      case Op::FloorDiv: return number(std::floor(a / b));
      case Op::Mod: return number(std::fmod(a, b));
      case Op::Lt: return Value::boolean(a < b);
      case Op::Gt: return Value::boolean(a > b);
      case Op::Le: return Value::boolean(a <= b);
      case Op::Ge: return Value::boolean(a >= b);
      default: break;
    }
  } else if (left.is_array_like() && right.is_array_like()) {
    if (n.op == Op::Add) {
      std::vector<Value> items = left.items();
      if (items.size() + right.items().size() > kMaxArrayItems)
        runtime_fail("list grew past the {} item limit", kMaxArrayItems);
      items.insert(items.end(), right.items().begin(), right.items().end());
      return Value::array(std::move(items));
    }
  } else if (right.is_array_like()) {
    if (n.op == Op::In || n.op == Op::NotIn) {
      bool member = false;
      for (const auto& item : right.items()) {
        if (strict_equals(item, left)) {
          member = true;
          break;
        }
      }
      return Value::boolean(n.op == Op::In ? member : !member);
    }
  }
  if ((left.is_string() || right.is_string()) && n.op == Op::Add) {
    std::string s = raw_string(left);
    js_append(s, raw_string(right));
    if (s.size() > kMaxStringBytes) runtime_fail("string grew past the {} byte limit", kMaxStringBytes);
    return Value::string(std::move(s));
  }
  if (left.is_string() && right.is_string() && (n.op == Op::In || n.op == Op::NotIn)) {
    const bool found = js_find(right.str(), left.str()) != std::string::npos;
    return Value::boolean(n.op == Op::In ? found : !found);
  }
  if (left.is_string() && right.is_dict_like() && (n.op == Op::In || n.op == Op::NotIn)) {
    const bool found = right.object().find(left.str()) != nullptr;
    return Value::boolean(n.op == Op::In ? found : !found);
  }
  unsupported("operator '{}' is not supported between {} and {}", op, kind_name(left.kind()), kind_name(right.kind()));
}

Value Interpreter::eval_member(const Node& n, Env* env) {
  const Value object = eval(*n.a, env);
  Value property;
  if (n.flag) {
    if (n.b->type == NodeType::Slice) return eval_slice(object, *n.b, env);
    property = eval(*n.b, env);
  } else if (n.b->type == NodeType::Integer) {
    property = Value::integer(n.b->number);
  } else {
    property = Value::string(n.b->name);
  }

  if (object.is_attr_container()) {
    if (!property.is_string())
      runtime_fail("{} can only be indexed by a string, got {}", kind_name(object.kind()), kind_name(property.kind()));
    if (const Value* v = object.object().find(property.str())) return *v;
    return object.is_dict_like() ? dict_member(object, property.str()) : Value();
  }
  if (object.is_array_like() || object.is_string()) {
    if (property.is(Kind::Integer)) {
      if (object.is_string()) {
        charge_work(object.str().size() / 256);
        auto unit = js_at(object.str(), property.num());
        return unit ? Value::string(std::move(*unit)) : Value();
      }
      const auto& items = object.items();
      const double len = static_cast<double>(items.size());
      double k = std::isnan(property.num()) ? 0 : std::trunc(property.num());
      if (k < 0) k += len;
      return k >= 0 && k < len ? items[static_cast<size_t>(k)] : Value();
    }
    if (property.is_string()) {
      return object.is_string() ? string_member(object, property.str()) : array_member(object, property.str());
    }
    runtime_fail("{} can only be indexed by an integer or a string, got {}", kind_name(object.kind()),
                 kind_name(property.kind()));
  }
  // Attributes of anything else (undefined and none included) are undefined, as in the reference.
  if (!property.is_string())
    runtime_fail("cannot index {} with {}", kind_name(object.kind()), kind_name(property.kind()));
  return Value();
}

Value Interpreter::eval_slice(const Value& object, const Node& slice, Env* env) {
  if (!object.is_array_like() && !object.is_string()) runtime_fail("cannot slice {}", kind_name(object.kind()));
  const Value start = slice.a ? eval(*slice.a, env) : Value();
  const Value stop = slice.b ? eval(*slice.b, env) : Value();
  const Value step = slice.c ? eval(*slice.c, env) : Value();
  for (const Value* v : {&start, &stop, &step}) {
    if (!v->is(Kind::Integer) && !v->is_undefined())
      runtime_fail("slice bounds must be integers, got {}", kind_name(v->kind()));
  }
  if (object.is_array_like()) {
    const auto& items = object.items();
    std::vector<Value> out;
    for (size_t i : slice_positions(items.size(), start, stop, step)) out.push_back(items[i]);
    return Value::array(std::move(out));
  }
  charge_work(object.str().size() / 64);
  const std::vector<std::string> chars = js_code_points(object.str());
  std::string out;
  for (size_t i : slice_positions(chars.size(), start, stop, step)) js_append(out, chars[i]);
  return Value::string(std::move(out));
}

CallArgs Interpreter::eval_args(const NodeList& args, Env* env) {
  CallArgs out;
  // Like Python, every positional argument (spreads included) is evaluated before any keyword.
  for (const auto& a : args) {
    if (a->type == NodeType::Spread) {
      const Value seq = eval(*a->a, env);
      if (!seq.is_array_like()) runtime_fail("cannot unpack {} with *", kind_name(seq.kind()));
      out.positional.insert(out.positional.end(), seq.items().begin(), seq.items().end());
    } else if (a->type != NodeType::KwArg && a->type != NodeType::KwSpread) {
      out.positional.push_back(eval(*a, env));
    }
  }
  auto add_keyword = [&](const std::string& key, Value value) {
    if (out.keyword(key) != nullptr) runtime_fail("got multiple values for keyword argument '{}'", key);
    out.keywords.emplace_back(key, std::move(value));
  };
  for (const auto& a : args) {
    if (a->type == NodeType::KwArg) {
      add_keyword(a->name, eval(*a->a, env));
    } else if (a->type == NodeType::KwSpread) {
      const Value map = eval(*a->a, env);
      if (!map.is_dict_like()) runtime_fail("the argument after ** must be a dict, not {}", kind_name(map.kind()));
      for (const auto& [k, v] : map.object().entries()) add_keyword(k, v);
    }
  }
  return out;
}

Value Interpreter::eval_call(const Node& n, Env* env) {
  CallArgs evaluated = eval_args(n.items, env);
  Args args = std::move(evaluated.positional);
  if (!evaluated.keywords.empty()) args.push_back(Value::object(std::move(evaluated.keywords), Kind::KwArgs));
  const Value fn = eval(*n.a, env);
  if (!fn.is(Kind::Function)) runtime_fail("cannot call {}: it is not a function", kind_name(fn.kind()));
  return fn.function().call(args, env);
}

}  // namespace vireo::jinja
