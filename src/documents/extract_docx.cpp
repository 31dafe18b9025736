// DOCX (Office Open XML word processing): libzip opens the package, libxml2 reads
// word/document.xml. Paragraph styles give headings, numbering gives list items, tables give
// rows; the title comes from docProps/core.xml.
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <zip.h>

#include <algorithm>
#include <cctype>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "vireo/core/error.h"
#include "vireo/documents/extract.h"

namespace vireo {
namespace extract_detail {
namespace {

// A document.xml past this is a zip bomb, not a document.
constexpr zip_uint64_t kMaxPartBytes = zip_uint64_t{512} << 20;
// Tables in cells in tables...: beyond this, structure is flattened and never recursed into.
constexpr int kMaxDepth = 48;

struct ArchiveCloser {
  void operator()(zip_t* z) const { zip_discard(z); }
};
struct DocDeleter {
  void operator()(xmlDoc* d) const { xmlFreeDoc(d); }
};

// Reads one part of the package into `out`; false when the package has no such part.
bool read_part(zip_t* archive, const char* name, std::string& out) {
  const zip_int64_t index = zip_name_locate(archive, name, 0);
  if (index < 0) return false;
  zip_stat_t st;
  zip_stat_init(&st);
  if (zip_stat_index(archive, static_cast<zip_uint64_t>(index), 0, &st) != 0) {
    fail(ErrorCode::InvalidFile, "malformed DOCX: cannot read {} from the zip", name);
  }
  if ((st.valid & ZIP_STAT_SIZE) != 0 && st.size > kMaxPartBytes) {
    fail(ErrorCode::Unsupported, "DOCX part {} is too large ({} bytes)", name, st.size);
  }
  zip_file_t* file = zip_fopen_index(archive, static_cast<zip_uint64_t>(index), 0);
  if (file == nullptr) fail(ErrorCode::InvalidFile, "malformed DOCX: cannot open {} in the zip: {}", name, zip_strerror(archive));
  out.clear();
  char buffer[65536];
  while (true) {
    const zip_int64_t n = zip_fread(file, buffer, sizeof buffer);
    if (n < 0) {
      zip_fclose(file);
      fail(ErrorCode::InvalidFile, "malformed DOCX: {} is corrupt in the zip", name);
    }
    if (n == 0) break;
    out.append(buffer, static_cast<size_t>(n));
    if (out.size() > kMaxPartBytes) {
      zip_fclose(file);
      fail(ErrorCode::Unsupported, "DOCX part {} is too large", name);
    }
  }
  zip_fclose(file);
  return true;
}

xmlDoc* parse_xml(const std::string& xml) {
  // No network, no entity expansion (XXE), no error chatter; depth stays at libxml2's default cap.
  return xmlReadMemory(xml.data(), static_cast<int>(xml.size()), nullptr, nullptr,
                       XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING | XML_PARSE_NOCDATA);
}

std::string_view local_name(const xmlNode* n) {
  return n->name != nullptr ? std::string_view(reinterpret_cast<const char*>(n->name)) : std::string_view();
}

std::string attribute(const xmlNode* n, const char* local) {
  for (const xmlAttr* a = n->properties; a != nullptr; a = a->next) {
    if (a->name != nullptr && std::string_view(reinterpret_cast<const char*>(a->name)) == local) {
      xmlChar* v = xmlNodeGetContent(reinterpret_cast<const xmlNode*>(a));
      std::string out = v != nullptr ? reinterpret_cast<const char*>(v) : "";
      xmlFree(v);
      return out;
    }
  }
  return {};
}

const xmlNode* child(const xmlNode* n, std::string_view name) {
  for (const xmlNode* c = n->children; c != nullptr; c = c->next)
    if (c->type == XML_ELEMENT_NODE && local_name(c) == name) return c;
  return nullptr;
}

// The text of runs below `node`, without recursion: w:t text, tabs, breaks; deleted text and
// field instructions are not part of what a reader sees.
void run_text(const xmlNode* node, std::string& out) {
  std::vector<const xmlNode*> stack;
  for (const xmlNode* c = node->last; c != nullptr; c = c->prev) stack.push_back(c);
  while (!stack.empty()) {
    const xmlNode* n = stack.back();
    stack.pop_back();
    if (n->type != XML_ELEMENT_NODE) continue;
    const std::string_view name = local_name(n);
    if (name == "t") {
      for (const xmlNode* c = n->children; c != nullptr; c = c->next)
        if ((c->type == XML_TEXT_NODE || c->type == XML_CDATA_SECTION_NODE) && c->content != nullptr)
          out += reinterpret_cast<const char*>(c->content);
      continue;
    }
    if (name == "tab" || name == "ptab") {
      if (n->parent != nullptr && local_name(n->parent) == "tabs") continue;  // a tab stop definition
      out += '\t';
      continue;
    }
    if (name == "br" || name == "cr") {
      out += '\n';
      continue;
    }
    if (name == "noBreakHyphen") {
      out += '-';
      continue;
    }
    if (name == "pPr" || name == "rPr" || name == "delText" || name == "instrText" || name == "del" ||
        name == "Fallback" || name == "fldData" || name == "footnoteReference" || name == "commentReference") {
      continue;
    }
    if (name == "p" && !out.empty() && out.back() != ' ' && out.back() != '\n') out += ' ';
    for (const xmlNode* c = n->last; c != nullptr; c = c->prev) stack.push_back(c);
  }
}

std::string tidy(std::string s) {
  const size_t b = s.find_first_not_of(" \t\n");
  if (b == std::string::npos) return {};
  const size_t e = s.find_last_not_of(" \t\n");
  return s.substr(b, e - b + 1);
}

int heading_level_of(std::string style) {
  std::transform(style.begin(), style.end(), style.begin(), [](unsigned char c) { return std::tolower(c); });
  style.erase(std::remove(style.begin(), style.end(), ' '), style.end());
  if (style == "title") return 1;
  if (style.size() == 8 && style.starts_with("heading") && style[7] >= '1' && style[7] <= '9') {
    return std::min(style[7] - '0', 6);
  }
  return 0;
}

class DocxWalker {
 public:
  std::vector<Block> blocks;

  void walk(const xmlNode* parent, int depth) {
    for (const xmlNode* n = parent->children; n != nullptr; n = n->next) {
      if (n->type != XML_ELEMENT_NODE) continue;
      const std::string_view name = local_name(n);
      if (name == "p") {
        paragraph(n);
      } else if (name == "tbl") {
        table(n);  // cells are read flat, nested tables included
      } else if (name == "sectPr") {
        continue;
      } else if (depth < kMaxDepth) {
        walk(n, depth + 1);  // w:sdt, w:sdtContent, w:customXml, w:ins and friends
      } else {
        std::string text;
        run_text(n, text);
        if (text = tidy(std::move(text)); !text.empty()) blocks.push_back({BlockKind::Paragraph, 0, std::move(text)});
      }
    }
  }

 private:
  void paragraph(const xmlNode* p) {
    std::string text;
    run_text(p, text);
    text = tidy(std::move(text));
    if (text.empty()) return;
    Block block{BlockKind::Paragraph, 0, std::move(text)};
    if (const xmlNode* props = child(p, "pPr")) {
      if (const xmlNode* style = child(props, "pStyle")) {
        if (const int level = heading_level_of(attribute(style, "val")); level > 0) {
          block.kind = BlockKind::Heading;
          block.level = level;
        }
      }
      if (block.kind != BlockKind::Heading) {
        if (const xmlNode* outline = child(props, "outlineLvl")) {
          const std::string v = attribute(outline, "val");
          if (v.size() == 1 && v[0] >= '0' && v[0] <= '5') block.kind = BlockKind::Heading, block.level = v[0] - '0' + 1;
        }
      }
      if (block.kind == BlockKind::Paragraph) {
        if (const xmlNode* numbering = child(props, "numPr")) {
          const xmlNode* num_id = child(numbering, "numId");
          // numId 0 means "numbering removed" in Word.
          if (num_id == nullptr || attribute(num_id, "val") != "0") {
            int level = 1;
            if (const xmlNode* ilvl = child(numbering, "ilvl")) {
              const std::string v = attribute(ilvl, "val");
              if (v.size() == 1 && std::isdigit(static_cast<unsigned char>(v[0]))) level = v[0] - '0' + 1;
            }
            block.kind = BlockKind::ListItem;
            block.level = std::min(level, 6);
          }
        }
      }
    }
    blocks.push_back(std::move(block));
  }

  void table(const xmlNode* tbl) {
    int index = 0;
    for (const xmlNode* tr = tbl->children; tr != nullptr; tr = tr->next) {
      if (tr->type != XML_ELEMENT_NODE || local_name(tr) != "tr") continue;
      std::string row;
      bool first = true;
      for (const xmlNode* tc = tr->children; tc != nullptr; tc = tc->next) {
        if (tc->type != XML_ELEMENT_NODE || local_name(tc) != "tc") continue;
        std::string cell;
        run_text(tc, cell);
        cell = tidy(std::move(cell));
        std::replace(cell.begin(), cell.end(), '\n', ' ');
        if (!first) row += " | ";
        row += cell;
        first = false;
      }
      if (row.find_first_not_of(" |\t") != std::string::npos) blocks.push_back({BlockKind::TableRow, index, std::move(row)});
      ++index;
    }
  }
};

std::string core_title(zip_t* archive) {
  std::string xml;
  if (!read_part(archive, "docProps/core.xml", xml)) return {};
  std::unique_ptr<xmlDoc, DocDeleter> core(parse_xml(xml));
  if (!core) return {};  // metadata is optional; a broken one costs only the title
  const xmlNode* root = xmlDocGetRootElement(core.get());
  if (root == nullptr) return {};
  if (const xmlNode* title = child(root, "title")) {
    xmlChar* v = xmlNodeGetContent(title);
    std::string out = v != nullptr ? reinterpret_cast<const char*>(v) : "";
    xmlFree(v);
    return tidy(std::move(out));
  }
  return {};
}

}  // namespace

ExtractedDocument extract_docx(std::span<const uint8_t> bytes) {
  // libxml2 wants its globals set up once before threads parse side by side.
  static std::once_flag libxml_ready;
  std::call_once(libxml_ready, [] { xmlInitParser(); });
  zip_error_t error;
  zip_error_init(&error);
  zip_source_t* source = zip_source_buffer_create(bytes.data(), bytes.size(), 0, &error);
  if (source == nullptr) {
    zip_error_fini(&error);
    fail(ErrorCode::InvalidFile, "malformed DOCX: cannot read the zip");
  }
  std::unique_ptr<zip_t, ArchiveCloser> archive(zip_open_from_source(source, ZIP_RDONLY, &error));
  if (!archive) {
    const std::string why = zip_error_strerror(&error);
    zip_source_free(source);
    zip_error_fini(&error);
    fail(ErrorCode::InvalidFile, "malformed DOCX: not a readable zip ({})", why);
  }
  zip_error_fini(&error);

  std::string xml;
  if (!read_part(archive.get(), "word/document.xml", xml)) {
    fail(ErrorCode::InvalidFile, "malformed DOCX: the zip has no word/document.xml");
  }
  if (xml.size() > static_cast<size_t>(INT32_MAX)) fail(ErrorCode::Unsupported, "DOCX document part too large");
  std::unique_ptr<xmlDoc, DocDeleter> document(parse_xml(xml));
  if (!document) fail(ErrorCode::InvalidFile, "malformed DOCX: word/document.xml is not well-formed XML");
  const xmlNode* root = xmlDocGetRootElement(document.get());
  if (root == nullptr || local_name(root) != "document") {
    fail(ErrorCode::InvalidFile, "malformed DOCX: word/document.xml has no w:document");
  }

  ExtractedDocument doc;
  doc.title = core_title(archive.get());
  DocxWalker walker;
  const xmlNode* body = child(root, "body");
  walker.walk(body != nullptr ? body : root, 0);
  Page page;
  page.blocks = std::move(walker.blocks);
  doc.pages.push_back(std::move(page));
  return doc;
}

}  // namespace extract_detail
}  // namespace vireo
