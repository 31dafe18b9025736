#include "tokenizer/jinja/parser.h"

#include <cstdlib>
#include <initializer_list>
#include <string_view>

namespace vireo::jinja {

const char* op_text(Op op) {
  switch (op) {
    case Op::Add: return "+";
    case Op::Sub: return "-";
    case Op::Concat: return "~";
    case Op::Mul: return "*";
    case Op::Div: return "/";
    case Op::FloorDiv: return "//";
    case Op::Mod: return "%";
    case Op::Pow: return "**";
    case Op::Eq: return "==";
    case Op::Ne: return "!=";
    case Op::Lt: return "<";
    case Op::Gt: return ">";
    case Op::Le: return "<=";
    case Op::Ge: return ">=";
    case Op::And: return "and";
    case Op::Or: return "or";
    case Op::In: return "in";
    case Op::NotIn: return "not in";
    case Op::Not: return "not";
    case Op::Neg: return "-";
    case Op::Pos: return "+";
  }
  return "?";
}

Node::~Node() {
  NodeList pending;
  auto detach = [&pending](Node& n) {
    for (NodePtr* child : {&n.a, &n.b, &n.c}) {
      if (*child) pending.push_back(std::move(*child));
    }
    for (NodeList* list : {&n.items, &n.body, &n.alt}) {
      for (auto& child : *list) {
        if (child) pending.push_back(std::move(child));
      }
      list->clear();
    }
  };
  detach(*this);
  while (!pending.empty()) {
    NodePtr n = std::move(pending.back());
    pending.pop_back();
    detach(*n);
  }  // n dies here with no children left
}

namespace {

Op binary_op(std::string_view text) {
  static constexpr std::pair<std::string_view, Op> kOps[] = {
      {"+", Op::Add}, {"-", Op::Sub},  {"~", Op::Concat}, {"*", Op::Mul}, {"/", Op::Div}, {"//", Op::FloorDiv},
      {"%", Op::Mod}, {"**", Op::Pow}, {"==", Op::Eq},    {"!=", Op::Ne}, {"<", Op::Lt},  {">", Op::Gt},
      {"<=", Op::Le}, {">=", Op::Ge},  {"and", Op::And},  {"or", Op::Or}, {"in", Op::In}, {"not in", Op::NotIn},
  };
  for (const auto& [t, op] : kOps) {
    if (t == text) return op;
  }
  return Op::Add;  // unreachable: the lexer only produces the operators above
}

// Which of `kwargs` / `varargs` a macro body reads before declaring them. Mirrors the reference's
// walk (which follows Jinja's own visit order), including its quirks: one set of declared names
// for the whole walk, and a for-loop condition visited after the loop body.
class SpecialArgScan {
 public:
  void declare_params(const NodeList& params) {
    for (const auto& p : params) declare(p->name);
  }
  void visit_list(const NodeList& list) {
    for (const auto& n : list) visit(n.get());
  }
  bool kwargs = false;
  bool varargs = false;
  bool too_deep = false;

 private:
  void declare(const std::string& name) {
    if (name == "kwargs") kwargs_declared_ = true;
    if (name == "varargs") varargs_declared_ = true;
  }
  void declare_target(const Node* target) {
    if (target->type == NodeType::Identifier) declare(target->name);
    if (target->type == NodeType::Tuple) {
      for (const auto& item : target->items) declare_target(item.get());
    }
  }
  void visit_defaults(const NodeList& params) {
    for (const auto& p : params) {
      if (p->type == NodeType::KwArg) visit(p->a.get());
    }
  }
  void visit_filter(const Node* filter) {
    if (filter->type == NodeType::Call) visit_list(filter->items);
  }

  void visit(const Node* n) {
    if (n == nullptr || too_deep) return;
    if (depth_ >= kMaxEvalDepth) {  // such a body could not be evaluated anyway
      too_deep = true;
      return;
    }
    ++depth_;
    visit_node(n);
    --depth_;
  }

  void visit_node(const Node* n) {
    switch (n->type) {
      case NodeType::For:
        declare_target(n->a.get());
        if (n->b->type == NodeType::Select) {
          visit(n->b->a.get());
          visit_list(n->body);
          visit_list(n->alt);
          visit(n->b->b.get());
        } else {
          visit(n->b.get());
          visit_list(n->body);
          visit_list(n->alt);
        }
        return;
      case NodeType::Set:
        declare_target(n->a.get());
        visit(n->b.get());
        visit_list(n->body);
        return;
      case NodeType::Macro:
        declare_params(n->items);
        visit_defaults(n->items);
        visit_list(n->body);
        return;
      case NodeType::CallBlock:
        visit(n->a.get());
        declare_params(n->items);
        visit_defaults(n->items);
        visit_list(n->body);
        return;
      case NodeType::FilterBlock:
        visit_list(n->body);
        visit_filter(n->a.get());
        return;
      case NodeType::Identifier:
        if (n->name == "kwargs" && !kwargs_declared_) kwargs = true;
        if (n->name == "varargs" && !varargs_declared_) varargs = true;
        return;
      case NodeType::Member:
        visit(n->a.get());
        if (n->flag) visit(n->b.get());
        return;
      case NodeType::Filter:
        visit(n->a.get());
        visit_filter(n->b.get());
        return;
      case NodeType::Test: visit(n->a.get()); return;
      case NodeType::Select:
        visit(n->b.get());
        visit(n->a.get());
        return;
      case NodeType::KwArg: visit(n->a.get()); return;
      default:  // everything else: children in field order
        visit(n->a.get());
        visit(n->b.get());
        visit(n->c.get());
        visit_list(n->items);
        visit_list(n->body);
        visit_list(n->alt);
    }
  }

  bool kwargs_declared_ = false;
  bool varargs_declared_ = false;
  int depth_ = 0;
};

void scan_special_args(Node& macro, const SourceInfo& src) {
  SpecialArgScan scan;
  scan.declare_params(macro.items);
  scan.visit_list(macro.body);
  if (scan.too_deep) fail_at(src, macro.pos, ErrorCode::InvalidFile, "macro body is nested too deeply");
  macro.uses_kwargs = scan.kwargs;
  macro.uses_varargs = scan.varargs;
}

class Parser {
 public:
  Parser(const std::vector<Token>& tokens, const SourceInfo& src) : t_(tokens), src_(src) {}

  Program run() {
    Program program;
    while (cur_ < t_.size()) program.body.push_back(parse_any());
    return program;
  }

 private:
  // Guards the recursion of every self-nesting rule against hostile input.
  struct DepthGuard {
    explicit DepthGuard(Parser& p) : p_(p) {
      if (++p_.depth_ > kMaxParseDepth) p_.fail_here(fmt::format("nesting deeper than {} levels", kMaxParseDepth));
    }
    ~DepthGuard() { --p_.depth_; }
    Parser& p_;
  };

  uint32_t here() const { return cur_ < t_.size() ? t_[cur_].pos : static_cast<uint32_t>(src_.text.size()); }

  [[noreturn]] void fail_here(std::string_view message) const {
    fail_at(src_, here(), ErrorCode::InvalidFile, message);
  }

  std::string describe_current() const {
    if (cur_ >= t_.size()) return "the end of the template";
    const Token& t = t_[cur_];
    if (t.type == Tok::Identifier) return fmt::format("'{}'", t.value);
    if (t.type == Tok::Text) return "text";
    return tok_name(t.type);
  }

  bool is(Tok type) const { return cur_ < t_.size() && t_[cur_].type == type; }
  bool is_ident(std::string_view name, size_t ahead = 0) const {
    return cur_ + ahead < t_.size() && t_[cur_ + ahead].type == Tok::Identifier && t_[cur_ + ahead].value == name;
  }
  bool is_statement(std::initializer_list<std::string_view> names) const {
    if (!is(Tok::OpenStatement) || cur_ + 1 >= t_.size() || t_[cur_ + 1].type != Tok::Identifier) return false;
    for (auto n : names) {
      if (t_[cur_ + 1].value == n) return true;
    }
    return false;
  }

  const Token& expect(Tok type, std::string_view what) {
    if (!is(type)) fail_here(fmt::format("expected {}, got {}", what, describe_current()));
    return t_[cur_++];
  }
  void expect_ident(std::string_view name) {
    if (!is_ident(name)) fail_here(fmt::format("expected '{}', got {}", name, describe_current()));
    ++cur_;
  }
  // {% name %}
  void expect_end_tag(std::string_view name) {
    expect(Tok::OpenStatement, fmt::format("{{% {} %}}", name));
    expect_ident(name);
    expect(Tok::CloseStatement, "'%}'");
  }

  NodePtr make(NodeType type, uint32_t pos) { return std::make_unique<Node>(type, pos); }

  // Statements up to (not including) one of the `ends` tags.
  NodeList parse_block(std::initializer_list<std::string_view> ends, std::string_view opener, uint32_t opener_pos) {
    NodeList body;
    while (!is_statement(ends)) {
      if (cur_ >= t_.size()) {
        fail_here(fmt::format("'{}' block opened at {} is not closed (expected {{% end{} %}})", opener,
                              src_.where(opener_pos), opener));
      }
      body.push_back(parse_any());
    }
    return body;
  }

  NodePtr parse_any() {
    DepthGuard guard(*this);
    const Token& t = t_[cur_];
    switch (t.type) {
      case Tok::Comment: {
        ++cur_;
        return make(NodeType::Comment, t.pos);
      }
      case Tok::Text: {
        auto n = make(NodeType::Text, t.pos);
        n->name = t.value;
        ++cur_;
        return n;
      }
      case Tok::OpenStatement: return parse_statement();
      case Tok::OpenExpression: {
        ++cur_;
        auto e = parse_expression();
        expect(Tok::CloseExpression, "'}}'");
        return e;
      }
      default: fail_here(fmt::format("unexpected {}", describe_current()));
    }
  }

  NodePtr parse_statement() {
    ++cur_;  // {%
    if (!is(Tok::Identifier)) fail_here(fmt::format("expected a statement name, got {}", describe_current()));
    const Token& kw = t_[cur_];
    const std::string name = kw.value;
    const uint32_t pos = kw.pos;
    ++cur_;
    if (name == "set") return parse_set(pos);
    if (name == "if") {
      auto n = parse_if(pos);
      expect_end_tag("endif");
      return n;
    }
    if (name == "macro") {
      auto n = parse_macro(pos);
      expect_end_tag("endmacro");
      return n;
    }
    if (name == "for") {
      auto n = parse_for(pos);
      expect_end_tag("endfor");
      return n;
    }
    if (name == "call") return parse_call_block(pos);
    if (name == "break" || name == "continue") {
      expect(Tok::CloseStatement, "'%}'");
      return make(name == "break" ? NodeType::Break : NodeType::Continue, pos);
    }
    if (name == "filter") return parse_filter_block(pos);
    fail_at(src_, pos, ErrorCode::Unsupported, fmt::format("unknown statement '{}'", name));
  }

  NodePtr parse_set(uint32_t pos) {
    auto n = make(NodeType::Set, pos);
    n->a = parse_expression_sequence(false);
    if (is(Tok::Equals)) {
      ++cur_;
      n->b = parse_expression_sequence(false);
    } else {
      expect(Tok::CloseStatement, "'=' or '%}'");
      n->body = parse_block({"endset"}, "set", pos);
      expect(Tok::OpenStatement, "{% endset %}");
      expect_ident("endset");
    }
    expect(Tok::CloseStatement, "'%}'");
    return n;
  }

  NodePtr parse_if(uint32_t pos) {
    DepthGuard guard(*this);
    auto n = make(NodeType::If, pos);
    n->a = parse_expression();
    expect(Tok::CloseStatement, "'%}'");
    n->body = parse_block({"elif", "else", "endif"}, "if", pos);
    if (is_statement({"elif"})) {
      const uint32_t elif_pos = t_[cur_ + 1].pos;
      cur_ += 2;
      n->alt.push_back(parse_if(elif_pos));
    } else if (is_statement({"else"})) {
      cur_ += 2;
      expect(Tok::CloseStatement, "'%}'");
      n->alt = parse_block({"endif"}, "if", pos);
    }
    return n;
  }

  NodePtr parse_macro(uint32_t pos) {
    auto n = make(NodeType::Macro, pos);
    auto name = parse_primary();
    if (name->type != NodeType::Identifier) fail_at(src_, name->pos, ErrorCode::InvalidFile, "expected a macro name");
    n->name = name->name;
    n->items = parse_args(true);
    expect(Tok::CloseStatement, "'%}'");
    n->body = parse_block({"endmacro"}, "macro", pos);
    scan_special_args(*n, src_);
    return n;
  }

  NodePtr parse_for(uint32_t pos) {
    auto n = make(NodeType::For, pos);
    n->a = parse_expression_sequence(true);
    if (n->a->type != NodeType::Identifier && n->a->type != NodeType::Tuple) {
      fail_at(src_, n->a->pos, ErrorCode::InvalidFile, "expected a name or a tuple of names as the loop variable");
    }
    if (!is_ident("in")) fail_here(fmt::format("expected 'in' after the loop variable, got {}", describe_current()));
    ++cur_;
    n->b = parse_expression();
    expect(Tok::CloseStatement, "'%}'");
    n->body = parse_block({"endfor", "else"}, "for", pos);
    if (is_statement({"else"})) {
      cur_ += 2;
      expect(Tok::CloseStatement, "'%}'");
      n->alt = parse_block({"endfor"}, "for", pos);
    }
    return n;
  }

  NodePtr parse_call_block(uint32_t pos) {
    auto n = make(NodeType::CallBlock, pos);
    if (is(Tok::OpenParen)) n->items = parse_args(true);
    auto callee = parse_primary();
    if (callee->type != NodeType::Identifier) {
      fail_at(src_, callee->pos, ErrorCode::InvalidFile, "expected a macro name after 'call'");
    }
    auto call = make(NodeType::Call, callee->pos);
    call->a = std::move(callee);
    call->items = parse_args(false);
    n->a = std::move(call);
    expect(Tok::CloseStatement, "'%}'");
    n->body = parse_block({"endcall"}, "call", pos);
    expect_end_tag("endcall");
    scan_special_args(*n, src_);
    return n;
  }

  NodePtr parse_filter_block(uint32_t pos) {
    auto n = make(NodeType::FilterBlock, pos);
    auto filter = parse_primary();
    if (filter->type == NodeType::Identifier && is(Tok::OpenParen)) filter = parse_call(std::move(filter));
    n->a = std::move(filter);
    expect(Tok::CloseStatement, "'%}'");
    n->body = parse_block({"endfilter"}, "filter", pos);
    expect_end_tag("endfilter");
    return n;
  }

  // `a` or `a, b, ...` (a tuple); `primary` restricts the items to primaries (loop targets).
  NodePtr parse_expression_sequence(bool primary) {
    const uint32_t pos = here();
    auto first = primary ? parse_primary() : parse_expression();
    if (!is(Tok::Comma)) return first;
    auto tuple = make(NodeType::Tuple, pos);
    tuple->items.push_back(std::move(first));
    while (true) {
      ++cur_;  // ,
      tuple->items.push_back(primary ? parse_primary() : parse_expression());
      if (!is(Tok::Comma)) break;
    }
    return tuple;
  }

  NodePtr parse_expression() {
    DepthGuard guard(*this);
    auto a = parse_or();
    if (!is_ident("if")) return a;
    const uint32_t pos = t_[cur_].pos;
    ++cur_;
    auto test = parse_or();
    if (is_ident("else")) {
      ++cur_;
      auto n = make(NodeType::Ternary, pos);
      n->a = std::move(test);
      n->b = std::move(a);
      n->c = parse_expression();
      return n;
    }
    auto n = make(NodeType::Select, pos);
    n->a = std::move(a);
    n->b = std::move(test);
    return n;
  }

  NodePtr binary(Op op, uint32_t pos, NodePtr left, NodePtr right) {
    auto n = make(NodeType::Binary, pos);
    n->op = op;
    n->a = std::move(left);
    n->b = std::move(right);
    return n;
  }

  NodePtr parse_or() {
    auto left = parse_and();
    while (is_ident("or")) {
      const uint32_t pos = t_[cur_++].pos;
      left = binary(Op::Or, pos, std::move(left), parse_and());
    }
    return left;
  }

  NodePtr parse_and() {
    auto left = parse_not();
    while (is_ident("and")) {
      const uint32_t pos = t_[cur_++].pos;
      left = binary(Op::And, pos, std::move(left), parse_not());
    }
    return left;
  }

  NodePtr parse_not() {
    DepthGuard guard(*this);
    NodePtr result;
    // As in the reference, a second `not` after a complete operand replaces the first.
    while (is_ident("not")) {
      const uint32_t pos = t_[cur_++].pos;
      auto n = make(NodeType::Unary, pos);
      n->op = Op::Not;
      n->a = parse_not();
      result = std::move(n);
    }
    return result ? std::move(result) : parse_comparison();
  }

  NodePtr parse_comparison() {
    auto left = parse_additive();
    while (true) {
      Op op;
      const uint32_t pos = here();
      if (is_ident("not") && is_ident("in", 1)) {
        op = Op::NotIn;
        cur_ += 2;
      } else if (is_ident("in")) {
        op = Op::In;
        ++cur_;
      } else if (is(Tok::Comparison)) {
        op = binary_op(t_[cur_++].value);
      } else {
        break;
      }
      left = binary(op, pos, std::move(left), parse_additive());
    }
    return left;
  }

  NodePtr parse_additive() {
    auto left = parse_multiplicative();
    while (is(Tok::Additive)) {
      const Token& t = t_[cur_++];
      left = binary(binary_op(t.value), t.pos, std::move(left), parse_multiplicative());
    }
    return left;
  }

  NodePtr parse_multiplicative() {
    auto left = parse_power();
    while (is(Tok::Multiplicative)) {
      const Token& t = t_[cur_++];
      left = binary(binary_op(t.value), t.pos, std::move(left), parse_power());
    }
    return left;
  }

  NodePtr parse_power() {
    auto left = parse_test();  // left-associative, as in Jinja: 2 ** 3 ** 2 == 64
    while (is(Tok::Exponent)) {
      const Token& t = t_[cur_++];
      left = binary(Op::Pow, t.pos, std::move(left), parse_test());
    }
    return left;
  }

  NodePtr parse_test() {
    auto operand = parse_filter();
    while (is_ident("is")) {
      ++cur_;  // is
      const bool negate = is_ident("not");
      if (negate) ++cur_;
      auto test = parse_primary();
      if (test->type != NodeType::Identifier)
        fail_at(src_, test->pos, ErrorCode::InvalidFile, "expected a test name after 'is'");
      auto n = make(NodeType::Test, test->pos);
      n->a = std::move(operand);
      n->name = test->name;
      n->flag = negate;
      operand = std::move(n);
    }
    return operand;
  }

  NodePtr parse_filter() {
    auto operand = parse_unary_sign();
    while (is(Tok::Pipe)) {
      ++cur_;
      auto filter = parse_primary();
      if (filter->type != NodeType::Identifier) {
        fail_at(src_, filter->pos, ErrorCode::InvalidFile, "expected a filter name after '|'");
      }
      if (is(Tok::OpenParen)) filter = parse_call(std::move(filter));
      auto n = make(NodeType::Filter, filter->pos);
      n->a = std::move(operand);
      n->b = std::move(filter);
      operand = std::move(n);
    }
    return operand;
  }

  NodePtr parse_unary_sign() {
    DepthGuard guard(*this);
    if ((is(Tok::Unary) || is(Tok::Additive)) && (t_[cur_].value == "-" || t_[cur_].value == "+")) {
      const Token& t = t_[cur_++];
      auto n = make(NodeType::Unary, t.pos);
      n->op = t.value == "-" ? Op::Neg : Op::Pos;
      n->a = parse_unary_sign();
      return n;
    }
    auto member = parse_member(parse_primary());
    if (is(Tok::OpenParen)) return parse_call(std::move(member));
    return member;
  }

  NodePtr parse_call(NodePtr callee) {
    DepthGuard guard(*this);
    auto n = make(NodeType::Call, callee->pos);
    n->a = std::move(callee);
    n->items = parse_args(false);
    NodePtr expr = parse_member(std::move(n));
    if (is(Tok::OpenParen)) expr = parse_call(std::move(expr));
    return expr;
  }

  // (a, b=1, *c, **d); `parameters` for macro and call-block declarations.
  NodeList parse_args(bool parameters) {
    expect(Tok::OpenParen, "'('");
    NodeList args;
    std::vector<std::string> names;
    bool saw_keyword = false, saw_spread = false;
    while (!is(Tok::CloseParen)) {
      const uint32_t pos = here();
      const bool kw_spread = is(Tok::Exponent);
      const bool spread = is(Tok::Multiplicative) && t_[cur_].value == "*";
      if (parameters && (kw_spread || spread)) fail_here("argument unpacking is not allowed in a declaration");
      if (kw_spread) {
        ++cur_;
        auto n = make(NodeType::KwSpread, pos);
        n->a = parse_expression();
        args.push_back(std::move(n));
        if (is(Tok::Comma)) ++cur_;
        if (!is(Tok::CloseParen)) fail_here("'**' must be applied to the last argument");
        break;
      }
      NodePtr arg;
      if (spread) {
        if (saw_spread) fail_here("only one '*' argument unpacking is allowed");
        saw_spread = true;
        ++cur_;
        arg = make(NodeType::Spread, pos);
        arg->a = parse_expression();
      } else {
        arg = parse_expression();
        if (is(Tok::Equals)) {
          ++cur_;
          if (arg->type != NodeType::Identifier) {
            fail_at(src_, arg->pos, ErrorCode::InvalidFile,
                    parameters ? "expected a parameter name before '='" : "expected a keyword name before '='");
          }
          auto kw = make(NodeType::KwArg, arg->pos);
          kw->name = arg->name;
          kw->a = parse_expression();
          arg = std::move(kw);
        }
        if (parameters) {
          if (arg->type != NodeType::Identifier && arg->type != NodeType::KwArg) {
            fail_at(src_, arg->pos, ErrorCode::InvalidFile, "expected a parameter name");
          }
          for (const auto& seen : names) {
            if (seen == arg->name)
              fail_at(src_, arg->pos, ErrorCode::InvalidFile, fmt::format("duplicate parameter '{}'", seen));
          }
          names.push_back(arg->name);
        }
        if (arg->type == NodeType::KwArg) {
          saw_keyword = true;
        } else if (saw_keyword) {
          fail_at(src_, arg->pos, ErrorCode::InvalidFile,
                  parameters ? "a parameter without default follows one with a default"
                             : "a positional argument follows a keyword argument");
        } else if (saw_spread) {
          fail_at(src_, arg->pos, ErrorCode::InvalidFile, "a positional argument follows '*' unpacking");
        }
      }
      args.push_back(std::move(arg));
      if (is(Tok::Comma)) ++cur_;
    }
    expect(Tok::CloseParen, "')'");
    return args;
  }

  // The inside of [...]: a subscript, or a slice a:b:c with any part left out.
  NodePtr parse_subscript(uint32_t pos) {
    NodeList parts;
    std::vector<bool> present;
    bool is_slice = false;
    while (!is(Tok::CloseSquare)) {
      if (cur_ >= t_.size()) fail_here("expected ']'");
      if (is(Tok::Colon)) {
        parts.push_back(nullptr);
        ++cur_;
        is_slice = true;
      } else {
        parts.push_back(parse_expression());
        if (is(Tok::Colon)) {
          ++cur_;
          is_slice = true;
        }
      }
    }
    if (parts.empty()) fail_here("expected a subscript or slice inside []");
    if (!is_slice) return std::move(parts[0]);  // as in the reference, [a b] reads as [a]
    if (parts.size() > 3) fail_at(src_, pos, ErrorCode::InvalidFile, "a slice has at most three parts");
    auto n = make(NodeType::Slice, pos);
    n->a = std::move(parts[0]);
    if (parts.size() > 1) n->b = std::move(parts[1]);
    if (parts.size() > 2) n->c = std::move(parts[2]);
    return n;
  }

  NodePtr parse_member(NodePtr object) {
    while (is(Tok::Dot) || is(Tok::OpenSquare)) {
      const Token& t = t_[cur_++];
      auto n = make(NodeType::Member, t.pos);
      n->flag = t.type == Tok::OpenSquare;
      if (n->flag) {
        n->b = parse_subscript(t.pos);
        expect(Tok::CloseSquare, "']'");
      } else {
        n->b = parse_primary();
        if (n->b->type != NodeType::Identifier && n->b->type != NodeType::Integer) {
          fail_at(src_, n->b->pos, ErrorCode::InvalidFile, "expected a name or an integer after '.'");
        }
      }
      n->a = std::move(object);
      object = std::move(n);
    }
    return object;
  }

  NodePtr parse_primary() {
    if (cur_ >= t_.size()) fail_here("expected an expression, got the end of the template");
    const Token& t = t_[cur_++];
    switch (t.type) {
      case Tok::Number: {
        auto n = make(t.value.find('.') != std::string::npos ? NodeType::Float : NodeType::Integer, t.pos);
        n->number = std::strtod(t.value.c_str(), nullptr);
        return n;
      }
      case Tok::String: {
        auto n = make(NodeType::String, t.pos);
        n->name = t.value;
        while (is(Tok::String)) n->name += t_[cur_++].value;  // 'a' 'b' == 'ab'
        return n;
      }
      case Tok::Identifier: {
        auto n = make(NodeType::Identifier, t.pos);
        n->name = t.value;
        return n;
      }
      case Tok::OpenParen: {
        auto e = parse_expression_sequence(false);
        expect(Tok::CloseParen, "')'");
        return e;
      }
      case Tok::OpenSquare: {
        auto n = make(NodeType::Array, t.pos);
        while (!is(Tok::CloseSquare)) {
          n->items.push_back(parse_expression());
          if (is(Tok::Comma)) ++cur_;
        }
        ++cur_;
        return n;
      }
      case Tok::OpenCurly: {
        auto n = make(NodeType::Object, t.pos);
        while (!is(Tok::CloseCurly)) {
          n->items.push_back(parse_expression());
          expect(Tok::Colon, "':' between a key and its value");
          n->items.push_back(parse_expression());
          if (is(Tok::Comma)) ++cur_;
        }
        ++cur_;
        return n;
      }
      default: --cur_; fail_here(fmt::format("expected an expression, got {}", describe_current()));
    }
  }

  const std::vector<Token>& t_;
  const SourceInfo& src_;
  size_t cur_ = 0;
  int depth_ = 0;
};

}  // namespace

Program parse(const std::vector<Token>& tokens, const SourceInfo& src) {
  return Parser(tokens, src).run();
}

}  // namespace vireo::jinja
