// libFuzzer entry point for the document stages (built with -DVIREO_FUZZ=ON; run by scripts/fuzz.sh).
// The input is a file's bytes: it is detected, extracted (HTML, Markdown, DOCX, plain text in any
// encoding), normalised, assessed and chunked. PDFs and images are skipped: their parsers
// (poppler, leptonica) are fuzzed by their own projects and OCR is far too slow for fuzzing.
// Only vireo::Error may escape; a chunk whose text is not its page's text at its offsets is a
// finding too.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "vireo/core/error.h"
#include "vireo/documents/chunk.h"
#include "vireo/documents/extract.h"

namespace {

const std::string& scratch_path() {
  static const std::string path = [] {
    const char* dir = std::getenv("TMPDIR");
    return std::string(dir ? dir : "/tmp") + "/vireo-document-fuzz-" + std::to_string(::getpid());
  }();
  return path;
}

size_t code_points(const std::string& s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  const auto detected = vireo::detect_format(scratch_path(), bytes.substr(0, 4096));
  if (detected.format == vireo::DocFormat::Pdf || detected.format == vireo::DocFormat::Image) return 0;
  if (std::FILE* f = std::fopen(scratch_path().c_str(), "wb")) {
    std::fwrite(data, 1, size, f);
    std::fclose(f);
  } else {
    return 0;
  }
  try {
    vireo::ExtractOptions options;
    options.ocr = vireo::OcrMode::Never;
    auto doc = vireo::extract_document(scratch_path(), options);
    vireo::normalise_document(doc);
    vireo::assess_quality(doc);
    vireo::ChunkOptions co;
    co.chunk_tokens = 32;
    co.overlap = 8;
    const auto chunks = vireo::chunk_document(doc, co, vireo::estimated_token_counter());
    for (const auto& c : chunks) {
      if (c.page < 1 || c.page > static_cast<int>(doc.pages.size())) std::abort();
      const std::string text = vireo::page_text(doc.pages[static_cast<size_t>(c.page - 1)]);
      if (c.char_end < c.char_start || static_cast<size_t>(c.char_end) > code_points(text)) std::abort();
    }
  } catch (const vireo::Error&) {
  }
  return 0;
}
