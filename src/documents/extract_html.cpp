// HTML through libxml2's forgiving HTML parser: the main content (the <main> or <article> when
// there is one, without navigation, scripts and forms) as headings, paragraphs, list items,
// table rows and code.
#include <libxml/HTMLparser.h>
#include <libxml/tree.h>

#include <array>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "vireo/core/error.h"
#include "vireo/documents/extract.h"

namespace vireo {
namespace extract_detail {
namespace {

// Deeper than this, structure is ignored and only the text is kept; the walk never recurses deeper.
constexpr int kMaxDepth = 96;

std::string_view name_of(const xmlNode* n) {
  return n->name != nullptr ? std::string_view(reinterpret_cast<const char*>(n->name)) : std::string_view();
}

bool is_one_of(std::string_view name, std::initializer_list<std::string_view> names) {
  for (std::string_view n : names)
    if (name == n) return true;
  return false;
}

bool skipped(std::string_view name) {
  return is_one_of(name, {"script", "style", "noscript", "template", "nav", "header", "footer", "aside", "form",
                          "svg", "head", "iframe", "object", "canvas", "button", "select", "math"});
}

bool block_level(std::string_view name) {
  return is_one_of(name, {"p", "div", "blockquote", "dd", "dt", "dl", "section", "article", "main", "body", "html",
                          "ul", "ol", "table", "tbody", "thead", "tfoot", "caption", "figure", "figcaption",
                          "address", "details", "summary", "center", "hr", "fieldset", "legend", "menu", "hgroup",
                          "td", "th", "video", "audio", "picture"});
}

int heading_level(std::string_view name) {
  if (name.size() == 2 && name[0] == 'h' && name[1] >= '1' && name[1] <= '6') return name[1] - '0';
  return 0;
}

// Appends text with HTML's whitespace collapsing: runs of blanks become one space.
void append_collapsed(std::string& out, std::string_view text) {
  for (size_t i = 0; i < text.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(text[i]);
    bool space = c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f';
    size_t width = 1;
    if (c == 0xC2 && i + 1 < text.size() && static_cast<unsigned char>(text[i + 1]) == 0xA0) space = true, width = 2;
    if (space) {
      if (!out.empty() && out.back() != ' ' && out.back() != '\n') out += ' ';
      i += width - 1;
    } else {
      out += static_cast<char>(c);
    }
  }
}

// All text below `node`, collapsed, without recursion (safe at any depth).
void collect_text(const xmlNode* node, std::string& out, bool verbatim) {
  std::vector<const xmlNode*> stack;
  for (const xmlNode* c = node->last; c != nullptr; c = c->prev) stack.push_back(c);
  while (!stack.empty()) {
    const xmlNode* n = stack.back();
    stack.pop_back();
    if (n->type == XML_TEXT_NODE || n->type == XML_CDATA_SECTION_NODE) {
      if (n->content == nullptr) continue;
      std::string_view text(reinterpret_cast<const char*>(n->content));
      if (verbatim) {
        out.append(text);
      } else {
        append_collapsed(out, text);
      }
    } else if (n->type == XML_ELEMENT_NODE) {
      const std::string_view name = name_of(n);
      if (skipped(name)) continue;
      if (name == "br") {
        out += verbatim ? "\n" : " ";
        continue;
      }
      // Cells and blocks met here still separate words.
      if (!verbatim && (block_level(name) || name == "li" || name == "tr" || heading_level(name) > 0)) {
        if (!out.empty() && out.back() != ' ') out += ' ';
      }
      for (const xmlNode* c = n->last; c != nullptr; c = c->prev) stack.push_back(c);
    }
  }
}

std::string trimmed(std::string s) {
  // Trim each line's edges and drop empty lines that <br> runs leave behind.
  std::string out;
  size_t pos = 0;
  while (pos <= s.size()) {
    size_t end = s.find('\n', pos);
    if (end == std::string::npos) end = s.size();
    std::string_view line(s.data() + pos, end - pos);
    while (!line.empty() && line.front() == ' ') line.remove_prefix(1);
    while (!line.empty() && line.back() == ' ') line.remove_suffix(1);
    if (!line.empty()) {
      if (!out.empty()) out += '\n';
      out.append(line);
    }
    pos = end + 1;
  }
  return out;
}

class HtmlWalker {
 public:
  std::vector<Block> blocks;
  std::string first_h1;

  void walk(const xmlNode* node, int depth) {
    for (const xmlNode* c = node->children; c != nullptr; c = c->next) visit(c, depth + 1);
  }

  void flush() {
    std::string text = trimmed(std::move(pending_));
    pending_.clear();
    if (!text.empty()) blocks.push_back({pending_kind_, pending_level_, std::move(text)});
    pending_kind_ = list_depth_ > 0 && in_item_ > 0 ? BlockKind::ListItem : BlockKind::Paragraph;
    pending_level_ = pending_kind_ == BlockKind::ListItem ? list_depth_ : 0;
  }

 private:
  std::string pending_;
  BlockKind pending_kind_ = BlockKind::Paragraph;
  int pending_level_ = 0;
  int list_depth_ = 0;
  int in_item_ = 0;
  std::vector<int> table_rows_;  // rows seen so far in each open table

  void visit(const xmlNode* n, int depth) {
    if (n->type == XML_TEXT_NODE || n->type == XML_CDATA_SECTION_NODE) {
      if (n->content != nullptr) append_collapsed(pending_, reinterpret_cast<const char*>(n->content));
      return;
    }
    if (n->type != XML_ELEMENT_NODE) return;
    const std::string_view name = name_of(n);
    if (skipped(name)) return;
    if (depth > kMaxDepth) {
      collect_text(n, pending_, false);
      return;
    }
    if (name == "br") {
      pending_ += '\n';
      return;
    }
    if (const int level = heading_level(name); level > 0) {
      flush();
      std::string text;
      collect_text(n, text, false);
      text = trimmed(std::move(text));
      if (!text.empty()) {
        if (level == 1 && first_h1.empty()) first_h1 = text;
        blocks.push_back({BlockKind::Heading, level, std::move(text)});
      }
      return;
    }
    if (name == "pre" || name == "listing" || name == "xmp") {
      flush();
      std::string text;
      collect_text(n, text, true);
      if (!text.empty() && text.front() == '\n') text.erase(0, 1);
      while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
      if (!text.empty()) blocks.push_back({BlockKind::Code, 0, std::move(text)});
      return;
    }
    if (name == "tr") {
      flush();
      std::string row;
      for (const xmlNode* c = n->children; c != nullptr; c = c->next) {
        if (c->type != XML_ELEMENT_NODE || (name_of(c) != "td" && name_of(c) != "th")) continue;
        std::string cell;
        collect_text(c, cell, false);
        cell = trimmed(std::move(cell));
        for (char& ch : cell)
          if (ch == '\n') ch = ' ';
        if (!row.empty()) row += " | ";
        row += cell;
      }
      if (row.find_first_not_of(" |") != std::string::npos) {
        const int index = table_rows_.empty() ? 0 : table_rows_.back()++;
        blocks.push_back({BlockKind::TableRow, index, std::move(row)});
      }
      return;
    }
    if (name == "table") {
      flush();
      table_rows_.push_back(0);
      walk(n, depth);
      table_rows_.pop_back();
      flush();
      return;
    }
    if (name == "ul" || name == "ol" || name == "menu") {
      flush();
      ++list_depth_;
      walk(n, depth);
      --list_depth_;
      flush();
      return;
    }
    if (name == "li") {
      flush();
      ++in_item_;
      pending_kind_ = BlockKind::ListItem;
      pending_level_ = std::max(list_depth_, 1);
      walk(n, depth);
      flush();
      --in_item_;
      pending_kind_ = list_depth_ > 0 && in_item_ > 0 ? BlockKind::ListItem : BlockKind::Paragraph;
      pending_level_ = pending_kind_ == BlockKind::ListItem ? list_depth_ : 0;
      return;
    }
    if (block_level(name)) {
      flush();
      walk(n, depth);
      flush();
      return;
    }
    walk(n, depth);  // inline: words run on
  }
};

const xmlNode* find_element(const xmlNode* root, std::string_view wanted, std::vector<const xmlNode*>* all) {
  std::vector<const xmlNode*> stack{root};
  const xmlNode* first = nullptr;
  while (!stack.empty()) {
    const xmlNode* n = stack.back();
    stack.pop_back();
    if (n->type == XML_ELEMENT_NODE) {
      const std::string_view name = name_of(n);
      if (name == wanted) {
        if (first == nullptr) first = n;
        if (all == nullptr) return n;
        all->push_back(n);
        continue;  // an article inside an article belongs to the outer one
      }
      if (wanted != "title" && skipped(name)) continue;
    }
    if (n->type == XML_ELEMENT_NODE || n->type == XML_DOCUMENT_NODE || n->type == XML_HTML_DOCUMENT_NODE) {
      for (const xmlNode* c = n->last; c != nullptr; c = c->prev) stack.push_back(c);
    }
  }
  return first;
}

struct DocDeleter {
  void operator()(xmlDoc* d) const { xmlFreeDoc(d); }
};

}  // namespace

ExtractedDocument extract_html(std::string_view bytes) {
  // libxml2 wants its globals set up once before threads parse side by side.
  static std::once_flag libxml_ready;
  std::call_once(libxml_ready, [] { xmlInitParser(); });
  if (bytes.size() > static_cast<size_t>(INT32_MAX)) fail(ErrorCode::Unsupported, "HTML file larger than 2 GiB");
  // The parser works out the encoding itself: BOM, then <meta charset>, then its default.
  std::unique_ptr<xmlDoc, DocDeleter> html(
      htmlReadMemory(bytes.data(), static_cast<int>(bytes.size()), nullptr, nullptr,
                     HTML_PARSE_NOERROR | HTML_PARSE_NOWARNING | HTML_PARSE_RECOVER | HTML_PARSE_NONET));
  if (!html) fail(ErrorCode::InvalidFile, "malformed HTML: libxml2 could not parse it");

  ExtractedDocument doc;
  if (html->encoding != nullptr) doc.encoding = reinterpret_cast<const char*>(html->encoding);
  const xmlNode* root = reinterpret_cast<const xmlNode*>(html.get());

  if (const xmlNode* title = find_element(root, "title", nullptr)) {
    std::string text;
    collect_text(title, text, false);
    doc.title = trimmed(std::move(text));
  }

  HtmlWalker walker;
  std::vector<const xmlNode*> articles;
  if (const xmlNode* main = find_element(root, "main", nullptr)) {
    walker.walk(main, 0);
  } else if (find_element(root, "article", &articles); !articles.empty()) {
    for (const xmlNode* a : articles) {
      walker.walk(a, 0);
      walker.flush();
    }
  } else if (const xmlNode* body = find_element(root, "body", nullptr)) {
    walker.walk(body, 0);
  } else {
    walker.walk(root, 0);
  }
  walker.flush();
  if (doc.title.empty()) doc.title = walker.first_h1;

  Page page;
  page.blocks = std::move(walker.blocks);
  doc.pages.push_back(std::move(page));
  return doc;
}

}  // namespace extract_detail
}  // namespace vireo
