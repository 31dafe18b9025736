// Markdown (CommonMark with GitHub's tables and strikethrough) through cmark-gfm: the AST's
// headings, paragraphs, list items, table rows and code blocks become blocks.
#include <cmark-gfm-core-extensions.h>
#include <cmark-gfm-extension_api.h>
#include <cmark-gfm.h>

#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "vireo/core/error.h"
#include "vireo/documents/extract.h"

namespace vireo {
namespace extract_detail {

std::string decode_to_utf8(std::string_view bytes, std::string* encoding);

namespace {

struct ParserDeleter {
  void operator()(cmark_parser* p) const { cmark_parser_free(p); }
};
struct NodeDeleter {
  void operator()(cmark_node* n) const { cmark_node_free(n); }
};
struct IterDeleter {
  void operator()(cmark_iter* i) const { cmark_iter_free(i); }
};

void register_extensions() {
  // Registration edits a global list: once, before any parser looks extensions up.
  static std::once_flag once;
  std::call_once(once, [] { cmark_gfm_core_extensions_ensure_registered(); });
}

std::string_view type_of(cmark_node* node) {
  const char* s = cmark_node_get_type_string(node);
  return s != nullptr ? std::string_view(s) : std::string_view();
}

std::string trim(std::string s) {
  const size_t b = s.find_first_not_of(" \n");
  if (b == std::string::npos) return {};
  const size_t e = s.find_last_not_of(" \n");
  return s.substr(b, e - b + 1);
}

}  // namespace

ExtractedDocument extract_markdown(std::string_view bytes) {
  register_extensions();
  ExtractedDocument doc;
  const std::string text = decode_to_utf8(bytes, &doc.encoding);

  std::unique_ptr<cmark_parser, ParserDeleter> parser(cmark_parser_new(CMARK_OPT_VALIDATE_UTF8 | CMARK_OPT_FOOTNOTES));
  if (!parser) fail(ErrorCode::Io, "cannot create a Markdown parser");
  for (const char* name : {"table", "strikethrough"}) {
    if (cmark_syntax_extension* ext = cmark_find_syntax_extension(name)) {
      cmark_parser_attach_syntax_extension(parser.get(), ext);
    }
  }
  cmark_parser_feed(parser.get(), text.data(), text.size());
  std::unique_ptr<cmark_node, NodeDeleter> root(cmark_parser_finish(parser.get()));
  if (!root) fail(ErrorCode::InvalidFile, "malformed Markdown: the parser produced no document");

  Page page;
  std::string inline_text;  // the leaf block being read
  bool in_leaf = false;
  int list_depth = 0;
  int item_depth = 0;
  std::vector<int> table_rows;
  std::string row;

  std::unique_ptr<cmark_iter, IterDeleter> iter(cmark_iter_new(root.get()));
  cmark_event_type ev;
  while ((ev = cmark_iter_next(iter.get())) != CMARK_EVENT_DONE) {
    cmark_node* node = cmark_iter_get_node(iter.get());
    const cmark_node_type type = cmark_node_get_type(node);
    const bool enter = ev == CMARK_EVENT_ENTER;
    const std::string_view type_name = type_of(node);

    if (type == CMARK_NODE_LIST) {
      list_depth += enter ? 1 : -1;
    } else if (type == CMARK_NODE_ITEM) {
      item_depth += enter ? 1 : -1;
    } else if (type == CMARK_NODE_HEADING || type == CMARK_NODE_PARAGRAPH) {
      if (enter) {
        inline_text.clear();
        in_leaf = true;
      } else {
        in_leaf = false;
        std::string t = trim(std::move(inline_text));
        inline_text.clear();
        if (t.empty()) continue;
        if (type == CMARK_NODE_HEADING) {
          page.blocks.push_back({BlockKind::Heading, cmark_node_get_heading_level(node), std::move(t)});
        } else if (item_depth > 0 && list_depth > 0) {
          page.blocks.push_back({BlockKind::ListItem, list_depth, std::move(t)});
        } else {
          page.blocks.push_back({BlockKind::Paragraph, 0, std::move(t)});
        }
      }
    } else if (type == CMARK_NODE_CODE_BLOCK) {
      if (const char* literal = cmark_node_get_literal(node)) {
        std::string code(literal);
        while (!code.empty() && code.back() == '\n') code.pop_back();
        if (!code.empty()) page.blocks.push_back({BlockKind::Code, 0, std::move(code)});
      }
    } else if (type_name == "table") {
      if (enter) {
        table_rows.push_back(0);
      } else if (!table_rows.empty()) {
        table_rows.pop_back();
      }
    } else if (type_name == "table_header" || type_name == "table_row") {
      if (enter) {
        row.clear();
      } else {
        const int index = table_rows.empty() ? 0 : table_rows.back()++;
        if (row.find_first_not_of(" |") != std::string::npos) page.blocks.push_back({BlockKind::TableRow, index, row});
        row.clear();
      }
    } else if (type_name == "table_cell") {
      if (enter) {
        inline_text.clear();
        in_leaf = true;
      } else {
        in_leaf = false;
        if (!row.empty() || cmark_node_previous(node) != nullptr) row += " | ";
        row += trim(std::move(inline_text));
        inline_text.clear();
      }
    } else if (in_leaf) {  // inside links and images too: link text and alt text are text
      if (type == CMARK_NODE_TEXT || type == CMARK_NODE_CODE) {
        if (const char* literal = cmark_node_get_literal(node)) inline_text += literal;
      } else if (type == CMARK_NODE_SOFTBREAK) {
        inline_text += ' ';
      } else if (type == CMARK_NODE_LINEBREAK) {
        inline_text += '\n';
      }
    }
  }
  doc.pages.push_back(std::move(page));
  return doc;
}

}  // namespace extract_detail
}  // namespace vireo
