// The document model shared by the ingest stages: an extractor turns a file into pages of
// structural blocks; normalisation and quality assessment edit them in place; the chunker cuts
// them into retrieval units. Everything is UTF-8.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace vireo {

enum class DocFormat { Pdf, Image, Html, Markdown, Docx, Text, Unknown };
std::string_view doc_format_name(DocFormat f);  // "pdf", "image", "html", ...

enum class BlockKind {
  Heading,    // level 1..6
  Paragraph,
  ListItem,   // level = nesting depth, 1 for a top-level item
  TableRow,   // cells joined by " | "; level = row index within its table, 0 for the header row
  Code,       // preformatted text, kept verbatim
};

struct Block {
  BlockKind kind = BlockKind::Paragraph;
  int level = 0;
  std::string text;
};

struct Page {
  int number = 1;  // 1-based
  std::vector<Block> blocks;
  bool ocr = false;              // text came from OCR
  double ocr_confidence = -1.0;  // tesseract's mean word confidence 0..100 when OCR ran
  // Set by assess_quality().
  double garbage_ratio = 0.0;  // share of characters that are replacement, control or private-use
  bool empty = false;          // no text at all after extraction (and OCR, where it ran)
  bool low_quality = false;
  std::string quality_note;  // why low_quality, for the report ("garbage 31%", "OCR confidence 42")
};

struct ExtractedDocument {
  DocFormat format = DocFormat::Unknown;
  std::string mime;          // as libmagic reports it
  std::string title;         // metadata title or first heading; may be empty
  std::string encoding;      // source text encoding where one was detected ("UTF-8", "WINDOWS-1252")
  std::vector<Page> pages;   // formats without pages give one page
};

// A page's text as chunk offsets count it: its blocks' texts joined by "\n".
std::string page_text(const Page& page);

}  // namespace vireo
