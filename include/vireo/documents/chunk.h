// Normalisation, quality assessment and structure-aware chunking of extracted documents.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "vireo/documents/document.h"

namespace vireo {

// In place: Unicode NFC, whitespace collapsed (Code blocks keep theirs), words hyphenated across
// line ends joined, and lines repeated at the top or bottom of most pages (running headers and
// footers, page numbers) removed. Empty blocks are dropped.
void normalise_document(ExtractedDocument& doc);

struct QualityReport {
  int pages = 0;
  int empty_pages = 0;
  int low_quality_pages = 0;
  double garbage_ratio = 0.0;       // over the whole document
  double ocr_confidence = -1.0;     // mean over OCR'd pages, -1 when none
  bool low_quality = false;         // the document as a whole should not be indexed silently
  std::string note;                 // why, for the report
};

// Sets each page's garbage_ratio / empty / low_quality / quality_note and sums them up.
QualityReport assess_quality(ExtractedDocument& doc);

struct ChunkOptions {
  int chunk_tokens = 256;  // budget per chunk
  int overlap = 32;        // tokens repeated from the end of the previous chunk of the same section
};

// Counts the tokens of a text (a real tokenizer's encode().size(), or an estimate).
using TokenCounter = std::function<int(std::string_view)>;

// A word-based estimate (about 1.3 tokens per word, one per punctuation mark) for when no
// tokenizer is given.
TokenCounter estimated_token_counter();

struct Chunk {
  int page = 1;
  std::string heading_path;  // "Chapter 2 > Results"; empty before the first heading
  std::string text;          // exactly page_text(page).substr over [char_start, char_end)
  int64_t char_start = 0;    // offsets in Unicode code points into page_text(page)
  int64_t char_end = 0;
  int tokens = 0;
};

// Cuts by structure: a chunk never crosses a page or a heading, table rows and list items are never
// split (a single over-long block is split at sentence, then word boundaries), and chunks of one
// section overlap by about `overlap` tokens.
std::vector<Chunk> chunk_document(const ExtractedDocument& doc, const ChunkOptions& options,
                                  const TokenCounter& count_tokens);

}  // namespace vireo
