#include "vireo/documents/document.h"

namespace vireo {

std::string_view doc_format_name(DocFormat f) {
  switch (f) {
    case DocFormat::Pdf: return "pdf";
    case DocFormat::Image: return "image";
    case DocFormat::Html: return "html";
    case DocFormat::Markdown: return "markdown";
    case DocFormat::Docx: return "docx";
    case DocFormat::Text: return "text";
    case DocFormat::Unknown: break;
  }
  return "unknown";
}

std::string page_text(const Page& page) {
  size_t total = 0;
  for (const Block& b : page.blocks) total += b.text.size() + 1;
  std::string out;
  out.reserve(total);
  for (size_t i = 0; i < page.blocks.size(); ++i) {
    if (i > 0) out += '\n';
    out += page.blocks[i].text;
  }
  return out;
}

}  // namespace vireo
