// The syntax tree of a template. One node struct with a type tag: the tree is built once by the
// parser and only read by the interpreter, so a tagged struct keeps both sides short.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace vireo::jinja {

enum class NodeType : uint8_t {
  // Statements (members of a block).
  Text,         // name: the text
  Comment,      // renders nothing
  If,           // a: test, body, alt (elif is a nested If in alt)
  For,          // a: loop target (Identifier or Tuple), b: iterable (a Select for `for x in y if z`), body, alt: else
  Set,          // a: target, b: value (null for a block set), body: the block of a block set
  Macro,        // name, items: parameters (Identifier or KwArg), body
  CallBlock,    // a: the Call, items: caller parameters, body
  FilterBlock,  // a: the filter (Identifier or Call), body
  Break,
  Continue,
  // Expressions (a block may hold them too: {{ expr }}).
  Integer,     // number
  Float,       // number
  String,      // name: the value
  Identifier,  // name
  Array,       // items
  Tuple,       // items
  Object,      // items: key, value, key, value, ...
  Member,      // a: object, b: property, flag: computed (a[b] rather than a.b)
  Call,        // a: callee, items: arguments (may include KwArg, Spread, KwSpread)
  Unary,       // op, a
  Binary,      // op, a, b
  Filter,      // a: operand, b: the filter (Identifier or Call)
  Test,        // a: operand, name: the test, flag: negated (`is not`)
  Select,      // a: value, b: condition (`a if b` without else)
  Ternary,     // a: condition, b: value if true, c: value if false
  Slice,       // a: start, b: stop, c: step (each may be null)
  KwArg,       // name: keyword, a: value
  Spread,      // a: the sequence (*a)
  KwSpread,    // a: the mapping (**a)
};

enum class Op : uint8_t {
  Add,
  Sub,
  Concat,
  Mul,
  Div,
  FloorDiv,
  Mod,
  Pow,
  Eq,
  Ne,
  Lt,
  Gt,
  Le,
  Ge,
  And,
  Or,
  In,
  NotIn,
  Not,
  Neg,
  Pos,
};

const char* op_text(Op op);

struct Node;
using NodePtr = std::unique_ptr<Node>;
using NodeList = std::vector<NodePtr>;

struct Node {
  NodeType type;
  uint32_t pos = 0;  // byte offset in the source, for error messages
  std::string name;
  double number = 0;
  Op op = Op::Add;
  bool flag = false;
  NodePtr a, b, c;
  NodeList items;
  NodeList body, alt;
  // Macro and CallBlock: whether the body reads `kwargs` / `varargs` before declaring them, which
  // decides whether extra keyword / positional arguments are accepted (as in Jinja).
  bool uses_kwargs = false;
  bool uses_varargs = false;

  Node(NodeType t, uint32_t p) : type(t), pos(p) {}
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;
  ~Node();  // iterative: a left-deep chain like 1+1+...+1 must not recurse once per node
};

struct Program {
  NodeList body;
};

}  // namespace vireo::jinja
