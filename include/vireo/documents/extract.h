// Format detection by content and the extractors: PDF text layers (poppler), OCR of scans and
// images (tesseract), HTML (libxml2), Markdown (cmark-gfm), DOCX (libzip + libxml2) and plain
// text in any common encoding (uchardet + iconv). All are safe to call from several threads.
#pragma once
#include <string>
#include <string_view>

#include "vireo/documents/document.h"

namespace vireo {

struct DetectedFormat {
  DocFormat format = DocFormat::Unknown;
  std::string mime;  // libmagic's MIME type, e.g. "application/pdf"
};

// Looks at the bytes (libmagic), never at the name, except to tell Markdown from plain text when
// the content alone is ambiguous.
DetectedFormat detect_format(const std::string& path, std::string_view head_bytes);

enum class OcrMode { Auto, Always, Never };

struct ExtractOptions {
  OcrMode ocr = OcrMode::Auto;
  int ocr_dpi = 300;
  std::string ocr_language = "eng";
  // Auto: a PDF page gets OCR when its text layer has fewer than this many letters/digits.
  int ocr_min_chars = 16;
};

// Reads and extracts one file. Throws vireo::Error with a reason a user can act on:
// "encrypted PDF (password required)", "malformed PDF: ...", "unsupported format: application/zip".
ExtractedDocument extract_document(const std::string& path, const ExtractOptions& options);

}  // namespace vireo
