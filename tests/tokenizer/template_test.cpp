// Chat templates: the language, hand-checked (expected outputs written out), error locations, and a
// golden comparison of real templates against @huggingface/jinja (tests/reference/jinja_ref.mjs).
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "reference_engine.h"
#include "test_util.h"
#include "vireo/core/error.h"
#include "vireo/tokenizer/chat_template.h"

namespace vireo {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

std::string render(const std::string& source, const json& context = json::object()) {
  return ChatTemplate::parse(source, "t").render(context);
}

// The message of the error that parsing or rendering throws, or "" when none is thrown.
std::string error_of(const std::string& source, const json& context = json::object()) {
  try {
    ChatTemplate::parse(source, "t").render(context);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// ---------------------------------------------------------------------------------------------
// The language, with expected outputs worked out by hand from @huggingface/jinja's semantics.

TEST(ChatTemplate, TextAndExpressions) {
  EXPECT_EQ(render("Hello {{ name }}!", {{"name", "world"}}), "Hello world!");
  EXPECT_EQ(render("{{ 1 + 2 }} {{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ 2 ** 3 ** 2 }}"), "3 3 -4 1 64");
  EXPECT_EQ(render("{{ 1 / 2 }} {{ 4 / 2 }} {{ 1.5 + 1 }} {{ 2.0 }} {{ -0.0 }}"), "0.5 2.0 2.5 2.0 -0.0");
  EXPECT_EQ(render("{{ 'a' ~ 1 ~ none is none }}"), "a1true");
  EXPECT_EQ(render("{{ 'a' + 'b' }}{{ [1] + [2] }}"), "ab[1, 2]");
  EXPECT_EQ(render("{{ true and 'x' }}|{{ false or 'y' }}|{{ not 0 }}|{{ [] or 'empty' }}"), "x|y|true|empty");
  EXPECT_EQ(render("{{ 'yes' if 1 < 2 else 'no' }}{{ 'x' if false }}"), "yes");
  EXPECT_EQ(render("{{ 'ab' in 'cabd' }}{{ 2 not in [1, 3] }}{{ 'k' in {'k': 1} }}"), "truetruetrue");
  EXPECT_EQ(render("{{ 1 == 1.0 }}{{ '1' == 1 }}{{ [1] == [1] }}"), "truetruefalse");
  EXPECT_EQ(render("{{ x }}{{ x.y }}{{ none }}", json::object()), "");
  EXPECT_EQ(render("{{ {'a': 1, 'b': [true, none]} }}"), R"({"a": 1, "b": [true, null]})");
  EXPECT_EQ(render("{{ 'a' 'b' }}{{ \"\\n\" | length }}{{ '\\u00e9' }}"), "ab1\xC3\xA9");
}

TEST(ChatTemplate, WhitespaceControl) {
  // HF renders with trim_blocks (newline after a block tag dropped) and lstrip_blocks (indentation
  // before a block tag dropped); one trailing newline of the template is dropped too.
  EXPECT_EQ(render("{% if true %}\n  yes\n{% endif %}\n"), "  yes\n");
  EXPECT_EQ(render("a\n    {% if true %}b{% endif %}\nc"), "a\nbc");
  EXPECT_EQ(render("a  {{- ' b ' -}}  c"), "a b c");
  EXPECT_EQ(render("a\n  {%- if true -%}\n  b\n{%- endif %}"), "ab");
  EXPECT_EQ(render("x {#- comment -#} y{# c #}\nz"), "xyz");
  EXPECT_EQ(render("  {{ 'kept' }}\n"), "  kept");
  EXPECT_EQ(render("a {% generation %}b{% endgeneration %} c"), "a b c");
}

TEST(ChatTemplate, ForLoops) {
  const json ctx = {{"xs", {"a", "b", "c"}}};
  EXPECT_EQ(render("{% for x in xs %}{{ loop.index }}{{ x }}{% if not loop.last %},{% endif %}{% endfor %}", ctx),
            "1a,2b,3c");
  EXPECT_EQ(
      render("{% for x in xs %}{{ loop.index0 }}{{ loop.revindex }}{{ loop.first }}{{ loop.length }} {% endfor %}",
             ctx),
      "03true3 12false3 21false3 ");
  EXPECT_EQ(render("{% for x in xs %}{{ loop.previtem }}>{{ loop.nextitem }} {% endfor %}", ctx), ">b a>c b> ");
  EXPECT_EQ(render("{% for x in [] %}x{% else %}empty{% endfor %}"), "empty");
  EXPECT_EQ(render("{% for x in xs if x != 'b' %}{{ x }}{{ loop.length }}{% endfor %}", ctx), "a2c2");
  EXPECT_EQ(render("{% for k, v in {'a': 1, 'b': 2}.items() %}{{ k }}={{ v }};{% endfor %}"), "a=1;b=2;");
  EXPECT_EQ(render("{% for k in {'b': 1, 'a': 2} %}{{ k }}{% endfor %}"), "ba");
  EXPECT_EQ(render("{% for x in xs %}{% if x == 'b' %}{% break %}{% endif %}{{ x }}{% endfor %}", ctx), "a");
  // An iteration cut short by continue contributes nothing, even text already rendered.
  EXPECT_EQ(render("{% for x in xs %}<{% if x == 'b' %}{% continue %}{% endif %}{{ x }}>{% endfor %}", ctx), "<a><c>");
  EXPECT_EQ(render("{% for i in range(3) %}{{ i }}{% endfor %}{% for i in range(5, 0, -2) %}{{ i }}{% endfor %}"),
            "012531");
  EXPECT_EQ(render("{% set x = 1 %}{% for i in [2] %}{% set x = i %}{% endfor %}{{ x }}"), "1");
}

TEST(ChatTemplate, SetNamespaceMacroCall) {
  EXPECT_EQ(render("{% set a, b = 1, 2 %}{{ a }}{{ b }}{% set c %}block {{ a }}{% endset %}{{ c }}"), "12block 1");
  EXPECT_EQ(
      render("{% set ns = namespace(n=0) %}{% for i in [1, 2, 3] %}{% set ns.n = ns.n + i %}{% endfor %}{{ ns.n }}"),
      "6");
  EXPECT_EQ(render("{% macro greet(name, punct='!') %}Hi {{ name }}{{ punct }}{% endmacro %}"
                   "{{ greet('A') }} {{ greet('B', '?') }} {{ greet(punct='.', name='C') }}"),
            "Hi A! Hi B? Hi C.");
  EXPECT_EQ(render("{% macro wrap() %}[{{ caller() }}]{% endmacro %}{% call wrap() %}inside{% endcall %}"), "[inside]");
  EXPECT_EQ(render("{% macro m() %}{{ varargs | length }}{{ kwargs.k }}{% endmacro %}{{ m(1, 2, k='v') }}"), "2v");
  EXPECT_EQ(render("{% filter upper %}shout {{ 'this' }}{% endfilter %}"), "SHOUT THIS");
}

TEST(ChatTemplate, TestsAndMembers) {
  EXPECT_EQ(render("{{ x is defined }}{{ y is undefined }}{{ none is none }}{{ 3 is odd }}{{ 4 is even }}", {{"x", 1}}),
            "truetruetruetruetrue");
  EXPECT_EQ(render("{{ 'a' is string }}{{ 1 is number }}{{ 1.5 is integer }}{{ {} is mapping }}{{ [] is iterable }}"),
            "truetruefalsetruetrue");
  EXPECT_EQ(render("{{ 'abc' is lower }}{{ 'aBc' is upper }}{{ true is boolean }}{{ range is callable }}"),
            "truefalsetruetrue");
  EXPECT_EQ(render("{{ x is not none }}", {{"x", nullptr}}), "false");
  EXPECT_EQ(
      render("{{ '  a b  '.strip() }}|{{ 'a,b,,c'.split(',') }}|{{ ' a  b '.split() }}|{{ 'a b c'.split(' ', 1) }}"),
      R"(a b|["a", "b", "", "c"]|["a", "b"]|["a", "b c"])");
  EXPECT_EQ(render("{{ 'abc'.upper() }}{{ 'ABC'.lower() }}{{ 'hello world'.title() }}{{ 'hELLO'.capitalize() }}"),
            "ABCabcHello WorldHELLO");
  EXPECT_EQ(render("{{ 'abc'.startswith('ab') }}{{ 'abc'.endswith(('x', 'c')) }}{{ 'aaa'.replace('a', 'b', 2) }}"),
            "truetruebba");
  EXPECT_EQ(render("{{ d.get('a') }}{{ d.get('z', 'dflt') }}{{ d.get('z') }}{{ d.keys() }}{{ d.values() }}",
                   {{"d", {{"a", 1}}}}),
            R"(1dflt["a"][1])");
  EXPECT_EQ(render("{{ 'hello'[1] }}{{ 'hello'[-1] }}{{ 'hello'[1:3] }}{{ 'hello'[::-1] }}{{ [1, 2, 3][1:] }}"),
            "eoelolleh[2, 3]");
  EXPECT_EQ(render("{{ 'h\xC3\xA9llo'.length }}{{ '\xF0\x9F\x8C\x8D'.length }}{{ xs.length }}", {{"xs", {1, 2}}}),
            "522");
}

TEST(ChatTemplate, Filters) {
  EXPECT_EQ(render("{{ '  x  ' | trim }}|{{ 'ab' | upper }}|{{ [3, 1, 2] | sort }}|{{ [1, 2] | reverse }}"),
            "x|AB|[1, 2, 3]|[2, 1]");
  EXPECT_EQ(render("{{ ['a', 'b'] | join(', ') }}|{{ [1, 2] | join }}|{{ [1, 1, 2] | unique }}|{{ [4, 5] | first }}{{ "
                   "[4, 5] | last }}"),
            "a, b|12|[1, 2]|45");
  EXPECT_EQ(render("{{ '42' | int + 1 }}|{{ '2.5' | float }}|{{ 'x' | int }}|{{ -3 | abs }}|{{ 3.7 | int }}"),
            "43|2.5|0|3|3");
  EXPECT_EQ(render("{{ x | default('d') }}|{{ '' | default('d', true) }}|{{ 0 | string }}", json::object()), "d|d|0");
  EXPECT_EQ(render("{{ {'b': 1, 'a': 2} | dictsort }}|{{ {'a': 1} | items }}|{{ {'a': 1} | length }}"),
            R"([["a", 2], ["b", 1]]|[["a", 1]]|1)");
  const json users = {{"users", {{{"name", "a"}, {"admin", true}}, {{"name", "b"}, {"admin", false}}}}};
  EXPECT_EQ(render("{{ users | selectattr('admin') | map(attribute='name') | list }}", users), R"(["a"])");
  EXPECT_EQ(render("{{ users | rejectattr('name', 'equalto', 'a') | map(attribute='name') | join }}", users), "b");
  EXPECT_EQ(render("{{ 'a\nb\n\nc' | indent(2) }}|{{ 'a\nb' | indent(2, true) }}"), "a\n  b\n\n  c|  a\n  b");
  EXPECT_EQ(render("{{ 'a-b' | replace('-', '+') }}|{{ 'abc' | length }}|{{ 'x' | safe }}"), "a+b|3|x");
}

TEST(ChatTemplate, ToJson) {
  const json ctx = {{"v", {{"name", "f"}, {"args", {1, 2.5, "\"q\"\n"}}, {"e", json::object()}}}};
  EXPECT_EQ(render("{{ v | tojson }}", ctx), R"({"args": [1, 2.5, "\"q\"\n"], "e": {}, "name": "f"})");
  EXPECT_EQ(render("{{ v | tojson(indent=2) }}", ctx),
            "{\n  \"args\": [\n    1,\n    2.5,\n    \"\\\"q\\\"\\n\"\n  ],\n  \"e\": {},\n  \"name\": \"f\"\n}");
  EXPECT_EQ(render("{{ 'h\xC3\xA9' | tojson }}{{ 'h\xC3\xA9' | tojson(ensure_ascii=true) }}"),
            "\"h\xC3\xA9\"\"h\\u00e9\"");
  EXPECT_EQ(render("{{ {'b': 1, 'a': 2} | tojson(sort_keys=true, separators=(',', ':')) }}"), R"({"a":2,"b":1})");
  EXPECT_EQ(render("{{ 1.0 | tojson }}{{ x | tojson }}", json::object()), "1null");
}

// Where the reference's JavaScript shows through, vireo follows it.
TEST(ChatTemplate, JavaScriptSemantics) {
  EXPECT_EQ(render("{{ 0.1 + 0.2 }} {{ 10 ** 21 }} {{ 1 / 3 }} {{ 2 ** -2 }} {{ 7 % -3 }} {{ 1 / 0 }}"),
            "0.30000000000000004 1e+21 0.3333333333333333 0.25 1 Infinity");
  // Lengths and indexes count UTF-16 code units; case mapping is Unicode's.
  EXPECT_EQ(render("{{ '\\u00df' | upper }} {{ '\\u0391\\u03a3' | lower }} {{ s | length }} {{ s[::-1] }}",
                   {{"s", "a\xF0\x9F\x8C\x8D"}}),
            "SS \xCE\xB1\xCF\x82 3 \xF0\x9F\x8C\x8D"
            "a");
  EXPECT_EQ(render("{{ 'hello wORLD-x' | title }}|{{ 'hELLO' | capitalize }}"), "Hello WORLD-X|HELLO");
  // none is JavaScript's undefined underneath: it joins as "" but prints as "undefined" inside a list.
  EXPECT_EQ(render("{{ [none, 1] | join(',') }}|{{ [[none]] | join }}|{{ none == x }}", json::object()),
            ",1|undefined|true");
  // `[] | first` is a raw undefined: it may be assigned (and reads back undefined), nothing more.
  EXPECT_EQ(render("{% set q = [] | first %}{{ q is defined }}"), "false");
  EXPECT_NE(error_of("{{ [] | first }}"), "");
  // A string key of a dict literal keeps its place; integer-like keys of the context come first.
  EXPECT_EQ(render("{{ d | tojson }}", {{"d", {{"b", 1}, {"10", 2}, {"a", 3}, {"2", 4}}}}),
            R"({"2": 4, "10": 2, "a": 3, "b": 1})");
}

TEST(ChatTemplate, ContextKeepsKeyOrderWithOrderedJson) {
  const auto t = ChatTemplate::parse("{{ d | tojson }}");
  nlohmann::ordered_json ctx;
  ctx["d"]["z"] = 1;
  ctx["d"]["a"] = 2;
  ctx["d"]["1"] = 3;  // integer-like keys come first in a JavaScript object
  EXPECT_EQ(t.render(ctx), R"({"1": 3, "z": 1, "a": 2})");
}

TEST(ChatTemplate, ApplyChatTemplate) {
  const auto t = ChatTemplate::parse(
      "{{ bos_token }}{% for m in messages %}<{{ m.role }}>{{ m.content }}{{ eos_token }}{% endfor %}"
      "{% if tools is defined %}[{{ tools | length }} tools]{% endif %}"
      "{% if add_generation_prompt %}<assistant>{% endif %}{{ flavor }}");
  const json messages = {{{"role", "user"}, {"content", "hi"}}};
  ChatOptions o;
  o.bos_token = "<s>";
  o.eos_token = "</s>";
  EXPECT_EQ(apply_chat_template(t, messages, o), "<s><user>hi</s><assistant>");
  o.add_generation_prompt = false;
  o.tools = json::array({json::object()});
  o.extra = {{"flavor", "!"}};
  EXPECT_EQ(apply_chat_template(t, messages, o), "<s><user>hi</s>[1 tools]!");
}

// ---------------------------------------------------------------------------------------------
// Errors name the template, line and column.

TEST(ChatTemplate, SyntaxErrorsNameTheLine) {
  EXPECT_EQ(error_of("line one\n{% if x %}\nunclosed"),
            "t:3:9: 'if' block opened at t:2:4 is not closed (expected {% endif %})");
  EXPECT_EQ(error_of("ok\n\n  {{ 1 + }}"), "t:3:10: expected an expression, got '}}'");
  EXPECT_EQ(error_of("{% raw %}x{% endraw %}"), "t:1:4: unknown statement 'raw'");
  EXPECT_EQ(error_of("{{ 'abc }}"), "t:1:4: string literal is not closed");
  EXPECT_EQ(error_of("{# never closed"), "t:1:1: comment is not closed with #}");
  EXPECT_EQ(error_of("{{ x @ y }}"), "t:1:6: unexpected character '@'");
}

TEST(ChatTemplate, RuntimeErrorsNameTheLine) {
  EXPECT_EQ(error_of("a\n{{ raise_exception('no system role') }}"), "t:2:4: template raised an error: no system role");
  EXPECT_EQ(error_of("\n\n{{ 'x' | bogus }}"), "t:3:10: unknown filter 'bogus' for a string");
  EXPECT_EQ(error_of("{% for m in messages %}{% endfor %}"),
            "t:1:4: cannot loop over an undefined value (expected a list or a dict)");
  EXPECT_EQ(error_of("{{ x + 1 }}"), "t:1:6: cannot apply '+' to an undefined value");
  EXPECT_EQ(error_of("{% break %}"), "t:1:4: 'break' outside of a loop");
  EXPECT_EQ(error_of("{{ 1 is divisibleby }}"), "t:1:9: unknown test 'divisibleby'");
  EXPECT_EQ(error_of("{{ x }}", {{"range", 1}}), "t: context variable 'range' clashes with a built-in name");
}

TEST(ChatTemplate, LimitsAreErrorsNotCrashes) {
  EXPECT_NE(error_of("{{ " + std::string(5000, '(') + "1" + std::string(5000, ')') + " }}").find("nesting deeper"),
            std::string::npos);
  std::string long_chain = "{{ 1";
  for (int i = 0; i < 100000; ++i) long_chain += " + 1";
  EXPECT_NE(error_of(long_chain + " }}").find("nested deeper"), std::string::npos);
  // A list nested 100000 deep is built and freed without overflowing the stack.
  EXPECT_EQ(render("{% set ns = namespace(x=[]) %}{% for i in range(100000) %}{% set ns.x = [ns.x] %}{% endfor %}"
                   "{{ ns.x | length }}"),
            "1");
  EXPECT_NE(error_of("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}").find("nested deeper"), std::string::npos);
  EXPECT_NE(error_of("{% for i in range(100000000) %}{% endfor %}").find("range()"), std::string::npos);
  EXPECT_NE(
      error_of("{% set ns = namespace(s='xxxxxxxxxxxxxxxx') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}"
               "{% endfor %}")
          .find("limit"),
      std::string::npos);
  EXPECT_NE(error_of("{% set ns = namespace() %}{% set ns.self = ns %}{{ ns }}").find("nested deeper"),
            std::string::npos);
}

// ---------------------------------------------------------------------------------------------
// Golden comparison with @huggingface/jinja on real chat templates.

struct Conversation {
  std::string name;
  json messages;
  bool with_tools;
  json extra;
};

json weather_tools() {
  return json::parse(R"([{"type": "function", "function": {"name": "get_weather",
    "description": "Get the current weather in a city",
    "parameters": {"type": "object", "properties": {
      "city": {"type": "string", "description": "City name, e.g. Paris"},
      "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
      "required": ["city"]}}}])");
}

std::vector<Conversation> conversations() {
  std::vector<Conversation> out;
  out.push_back({"system_user", json::parse(R"([
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "Hello! Caf\u00e9 \ud83c\udf0d, \"quotes\" and <tags>."}])"),
                 false, json::object()});
  out.push_back({"user_only", json::parse(R"([{"role": "user", "content": "What is 2+2?"}])"), false, json::object()});
  out.push_back({"multi_turn", json::parse(R"([
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "Hello! How can I help?"},
    {"role": "user", "content": "Tell me a joke.\nMake it short."}])"),
                 false, json::object()});
  out.push_back({"tools_defined", json::parse(R"([
    {"role": "system", "content": "You can call tools."},
    {"role": "user", "content": "What's the weather in Paris?"}])"),
                 true, json::object()});
  out.push_back({"tool_calls", json::parse(R"([
    {"role": "user", "content": "What's the weather in Paris?"},
    {"role": "assistant", "content": "", "tool_calls": [{"id": "call_1", "type": "function",
      "function": {"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}}]},
    {"role": "tool", "tool_call_id": "call_1", "name": "get_weather", "content": "{\"temperature\": 21}"},
    {"role": "assistant", "content": "It is 21 degrees in Paris."},
    {"role": "user", "content": "Thanks!"}])"),
                 true, json::object()});
  out.push_back({"thinking_off", json::parse(R"([
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "Hello."},
    {"role": "user", "content": "Bye"}])"),
                 false, json::parse(R"({"enable_thinking": false})")});
  return out;
}

// The context apply_chat_template builds, for the reference.
json reference_context(const Conversation& c, bool add_generation_prompt) {
  json ctx = {{"messages", c.messages},
              {"add_generation_prompt", add_generation_prompt},
              {"bos_token", "<|bos|>"},
              {"eos_token", "<|eos|>"}};
  if (c.with_tools) ctx["tools"] = weather_tools();
  for (const auto& [k, v] : c.extra.items()) ctx[k] = v;
  return ctx;
}

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// llama.cpp's models/templates, extracted once from the git bundle that node-llama-cpp ships and
// cached beside the test binary; "" with a reason in `why` when unavailable.
fs::path llama_cpp_templates(std::string& why) {
  const fs::path bundle =
      fs::path(VIREO_SOURCE_DIR) / "tests/reference/node_modules/node-llama-cpp/llama/gitRelease.bundle";
  const fs::path cache = fs::read_symlink("/proc/self/exe").parent_path() / "reference-cache" / "llama.cpp-templates";
  if (fs::exists(cache / ".complete")) return cache / "models/templates";
  if (!fs::exists(bundle)) {
    why = "node-llama-cpp's llama.cpp bundle not installed (" + bundle.string() + ")";
    return {};
  }
  const fs::path tmp = cache.string() + ".tmp." + std::to_string(::getpid());
  fs::remove_all(tmp);
  fs::create_directories(tmp);
  const std::string git = tmp.string() + "/repo.git";
  const std::string cmd = "git clone --quiet --bare " + test::shell_quote(bundle.string()) + " " +
                          test::shell_quote(git) + " >/dev/null 2>&1 && git --git-dir=" + test::shell_quote(git) +
                          " archive HEAD models/templates | tar -x -C " + test::shell_quote(tmp.string()) +
                          " && rm -rf " + test::shell_quote(git) + " && touch " +
                          test::shell_quote(tmp.string() + "/.complete");
  if (std::system(cmd.c_str()) != 0 || !fs::exists(tmp / ".complete")) {
    fs::remove_all(tmp);
    why = "could not extract models/templates from " + bundle.string() + " (needs git and tar)";
    return {};
  }
  std::error_code ec;
  fs::rename(tmp, cache, ec);  // another process may have won the race; either copy will do
  if (ec) fs::remove_all(tmp);
  return cache / "models/templates";
}

std::vector<fs::path> jinja_files(const fs::path& dir) {
  std::vector<fs::path> out;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.path().extension() == ".jinja") out.push_back(e.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::string first_difference(const std::string& a, const std::string& b) {
  size_t i = 0;
  while (i < a.size() && i < b.size() && a[i] == b[i]) ++i;
  const size_t from = i > 40 ? i - 40 : 0;
  return "at byte " + std::to_string(i) + ":\n    vireo: " + json(a.substr(from, 100)).dump() +
         "\n    ref:   " + json(b.substr(from, 100)).dump();
}

TEST(ChatTemplateGolden, MatchesHuggingFaceJinja) {
  const fs::path ref_dir = fs::path(VIREO_SOURCE_DIR) / "tests/reference";
  if (!fs::exists(ref_dir / "node_modules/@huggingface/jinja")) {
    GTEST_SKIP() << "@huggingface/jinja not installed (cd tests/reference && npm install)";
  }
  if (std::system("node --version > /dev/null 2>&1") != 0) GTEST_SKIP() << "node not found";
  VIREO_REQUIRE_SHARED(shared_templates, "templates");

  std::vector<fs::path> files = jinja_files(shared_templates);
  std::string why;
  const fs::path llama_dir = llama_cpp_templates(why);
  if (llama_dir.empty()) {
    std::printf("[ skipping llama.cpp templates: %s ]\n", why.c_str());
  } else {
    for (auto& f : jinja_files(llama_dir)) files.push_back(f);
  }

  const auto convs = conversations();
  json batch = {{"templates", json::array()}, {"cases", json::array()}};
  struct Case {
    size_t file;
    size_t conv;
    bool agp;
  };
  std::vector<Case> cases;
  for (size_t f = 0; f < files.size(); ++f) {
    batch["templates"].push_back(read_file(files[f]));
    for (size_t c = 0; c < convs.size(); ++c) {
      for (bool agp : {true, false}) {
        batch["cases"].push_back({{"template", f}, {"context", reference_context(convs[c], agp)}});
        cases.push_back({f, c, agp});
      }
    }
  }
  test::TempDir tmp;
  const std::string in = tmp.file("cases.json"), out = tmp.file("results.json");
  std::ofstream(in) << batch.dump();
  const std::string cmd = "node " + test::shell_quote((ref_dir / "jinja_ref.mjs").string()) + " batch " +
                          test::shell_quote(in) + " " + test::shell_quote(out) + " > /dev/null 2>&1";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << "jinja_ref.mjs batch failed";
  const json results = json::parse(read_file(out))["results"];
  ASSERT_EQ(results.size(), cases.size());

  size_t agree = 0, both_error = 0;
  std::vector<std::string> failures;
  for (size_t i = 0; i < cases.size(); ++i) {
    const Case& k = cases[i];
    const std::string label =
        files[k.file].filename().string() + " x " + convs[k.conv].name + (k.agp ? " +gen" : " -gen");
    std::string text, error;
    try {
      const auto t = ChatTemplate::parse(read_file(files[k.file]), files[k.file].filename().string());
      ChatOptions o;
      o.add_generation_prompt = k.agp;
      o.bos_token = "<|bos|>";
      o.eos_token = "<|eos|>";
      if (convs[k.conv].with_tools) o.tools = weather_tools();
      o.extra = convs[k.conv].extra;
      text = apply_chat_template(t, convs[k.conv].messages, o);
    } catch (const Error& e) {
      error = e.what();
    }
    const json& ref = results[i];
    if (ref.contains("error")) {
      if (!error.empty()) {
        ++agree;
        ++both_error;
      } else {
        failures.push_back(label + ": reference failed (" + ref["error"].get<std::string>() + ") but vireo rendered");
      }
    } else if (!error.empty()) {
      failures.push_back(label + ": vireo failed: " + error);
    } else if (text != ref["text"].get<std::string>()) {
      failures.push_back(label + ": output differs " + first_difference(text, ref["text"]));
    } else {
      ++agree;
    }
  }
  std::printf(
      "[ chat templates: %zu templates x %zu conversations: %zu/%zu agree with @huggingface/jinja "
      "(%zu of them errors in both) ]\n",
      files.size(), convs.size() * 2, agree, cases.size(), both_error);
  for (size_t i = 0; i < failures.size() && i < 40; ++i) ADD_FAILURE() << failures[i];
  EXPECT_EQ(agree, cases.size());
}

}  // namespace
}  // namespace vireo
