// Evaluates a parsed template against a context, with @huggingface/jinja's semantics: scoping
// (for-loops and macros get child scopes; macros see their caller's variables), undefined
// handling, operators, filters and tests. Split over interpreter.cpp (statements, expressions),
// filters.cpp (filters, tests) and builtins.cpp (methods of strings and dicts, global functions).
#pragma once
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "tokenizer/jinja/ast.h"
#include "tokenizer/jinja/diagnostics.h"
#include "tokenizer/jinja/value.h"

namespace vireo::jinja {

// A scope: variables plus the scope it was opened in. Scopes are shared: a call block's `caller`
// keeps the scope it was written in alive for as long as the function value lives.
class Env : public std::enable_shared_from_this<Env> {
 public:
  explicit Env(std::shared_ptr<Env> parent) : parent_(std::move(parent)) {}
  Value lookup(const std::string& name) const;  // undefined when no scope declares it
  void set(const std::string& name, Value value) { vars_[name] = std::move(value); }
  bool declares(const std::string& name) const { return vars_.count(name) != 0; }

 private:
  std::shared_ptr<Env> parent_;
  std::unordered_map<std::string, Value> vars_;
};

// Arguments of a call, evaluated: positionals (spreads expanded) and keywords, in order.
struct CallArgs {
  Args positional;
  std::vector<ObjectData::Entry> keywords;
  const Value* keyword(std::string_view name) const;
};

class Interpreter {
 public:
  explicit Interpreter(const SourceInfo& src) : src_(src) {}
  ~Interpreter();  // empties every namespace, which may hold itself
  Interpreter(const Interpreter&) = delete;
  Interpreter& operator=(const Interpreter&) = delete;

  std::string render(const Program& program, std::vector<ObjectData::Entry> context);

  // For the builtins.
  std::shared_ptr<Env> new_env(Env* parent);
  Value new_namespace(std::vector<ObjectData::Entry> entries);
  std::string render_block(const NodeList& body, Env* env);
  void bind_macro_args(const std::string& display_name, const Node& owner, Args& args, Env* scope);

 private:
  struct DepthGuard;

  void emit(std::string& out, std::string_view text);

  void exec_block(const NodeList& body, Env* env, std::string& out);
  void exec(const Node& n, Env* env, std::string& out);
  void exec_for(const Node& n, Env* env, std::string& out);
  void exec_set(const Node& n, Env* env);
  void define_macro(const Node& n, Env* env);
  Value call_block(const Node& n, Env* env);

  Value eval(const Node& n, Env* env, bool allow_hole = false);
  Value eval_node(const Node& n, Env* env);
  Value eval_binary(const Node& n, Env* env);
  Value eval_unary(const Node& n, Env* env);
  Value eval_member(const Node& n, Env* env);
  Value eval_slice(const Value& object, const Node& slice, Env* env);
  Value eval_call(const Node& n, Env* env);
  CallArgs eval_args(const NodeList& args, Env* env);

  // filters.cpp
  Value apply_filter(const Value& operand, const Node& filter, Env* env);
  Value apply_named_filter(const Value& operand, const std::string& name, Env* env);
  Value apply_call_filter(const Value& operand, const std::string& name, const NodeList& args, Env* env);
  Value select_attr(const Value& operand, bool select, const NodeList& args, Env* env);

  const SourceInfo& src_;
  std::vector<std::shared_ptr<ObjectData>> namespaces_;
  WorkBudget budget_;
  int depth_ = 0;
};

// Tests (`x is name`); `other` (null when absent) is the value equalto / eq compare with.
bool apply_test(const std::string& name, const Value& operand, const Value* other);
bool is_known_test(const std::string& name);

// builtins.cpp: members of strings, lists and dicts (`s.upper`, `l.length`, `d.items`), and the
// global functions. Each returns undefined when the value has no such member.
Value string_member(const Value& s, const std::string& name);
Value array_member(const Value& a, const std::string& name);
Value dict_member(const Value& d, const std::string& name);
void install_globals(Env& env, Interpreter& interp);

// Shared by filters and members.
std::string title_case(std::string_view s);
std::string capitalize(std::string_view s);
// The raw JavaScript join of values (Array.prototype.join): null / undefined become "".
std::string js_join(const std::vector<Value>& items, std::string_view sep);
// A value reached by a dotted path ("a.b.0") through dicts and lists, or undefined.
Value attribute_path(const Value& item, std::string_view path);

}  // namespace vireo::jinja
