// OCR with tesseract: rendered PDF pages and image files. One engine per thread, because a
// TessBaseAPI must not be shared; it is initialised once per thread and language.
#include <leptonica/allheaders.h>
#include <tesseract/baseapi.h>

#include <algorithm>
#include <cctype>
#include <climits>
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

struct OcrResult {
  std::vector<Block> blocks;
  double confidence = -1.0;
};

namespace {

class OcrEngine {
 public:
  ~OcrEngine() {
    if (api_) api_->End();
  }

  tesseract::TessBaseAPI& get(const std::string& language) {
    if (api_ && language == language_) return *api_;
    if (api_) api_->End();
    api_ = std::make_unique<tesseract::TessBaseAPI>();
    language_.clear();
    // Quiet: tesseract's diagnostics go nowhere rather than to our stderr.
    api_->SetVariable("debug_file", "/dev/null");
    if (api_->Init(nullptr, language.c_str(), tesseract::OEM_DEFAULT) != 0) {
      api_.reset();
      fail(ErrorCode::NotFound,
           "OCR language '{}' is not available to tesseract (install its data, e.g. "
           "`apt-get install tesseract-ocr-{}`)",
           language, language);
    }
    api_->SetVariable("debug_file", "/dev/null");
    api_->SetPageSegMode(tesseract::PSM_AUTO);
    language_ = language;
    return *api_;
  }

 private:
  std::unique_ptr<tesseract::TessBaseAPI> api_;
  std::string language_;
};

tesseract::TessBaseAPI& engine(const std::string& language) {
  if (language.empty() || language.size() > 64 ||
      !std::all_of(language.begin(), language.end(),
                   [](unsigned char c) { return std::isalnum(c) || c == '_' || c == '+' || c == '-'; })) {
    fail(ErrorCode::InvalidArgument, "invalid OCR language '{}'", language);
  }
  thread_local OcrEngine ocr;
  return ocr.get(language);
}

void quiet_leptonica() {
  static std::once_flag once;
  std::call_once(once, [] { setMsgSeverity(L_SEVERITY_NONE); });
}

// Tesseract's text: paragraphs separated by blank lines, lines inside them joined.
std::vector<Block> paragraphs_of(std::string_view text) {
  std::vector<Block> blocks;
  std::string paragraph;
  auto flush = [&] {
    if (!paragraph.empty()) blocks.push_back({BlockKind::Paragraph, 0, std::move(paragraph)});
    paragraph.clear();
  };
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(pos, end - pos);
    pos = end + 1;
    while (!line.empty() && std::isspace(static_cast<unsigned char>(line.back()))) line.remove_suffix(1);
    while (!line.empty() && std::isspace(static_cast<unsigned char>(line.front()))) line.remove_prefix(1);
    // Form feeds end a page; they are layout, not text.
    if (line.empty() || line == "\f") {
      flush();
      continue;
    }
    if (!paragraph.empty()) {
      const bool hyphen = paragraph.size() >= 2 && paragraph.back() == '-' &&
                          std::isalpha(static_cast<unsigned char>(paragraph[paragraph.size() - 2]));
      if (!hyphen) paragraph += ' ';
    }
    paragraph.append(line);
  }
  flush();
  return blocks;
}

OcrResult recognise(tesseract::TessBaseAPI& api) {
  OcrResult result;
  std::unique_ptr<char[]> text(api.GetUTF8Text());
  if (text) result.blocks = paragraphs_of(text.get());
  result.confidence = result.blocks.empty() ? 0.0 : api.MeanTextConf();
  api.Clear();
  return result;
}

}  // namespace

OcrResult ocr_gray8(const uint8_t* pixels, int width, int height, int bytes_per_line, int dpi,
                    const std::string& language) {
  tesseract::TessBaseAPI& api = engine(language);
  api.SetImage(pixels, width, height, 1, bytes_per_line);
  api.SetSourceResolution(dpi);
  return recognise(api);
}

ExtractedDocument extract_image(std::span<const uint8_t> bytes, const ExtractOptions& options) {
  quiet_leptonica();
  tesseract::TessBaseAPI& api = engine(options.ocr_language);
  Pix* pix = pixReadMem(bytes.data(), bytes.size());
  if (pix == nullptr) fail(ErrorCode::InvalidFile, "unreadable image: leptonica could not decode it");
  const int width = pixGetWidth(pix), height = pixGetHeight(pix);
  if (width <= 0 || height <= 0 || static_cast<long long>(width) * height > 400'000'000LL) {
    pixDestroy(&pix);
    fail(ErrorCode::Unsupported, "image of {}x{} pixels is too large for OCR", width, height);
  }
  // Tesseract takes 1, 8 and 32-bit images without a colour map; bring others to 8 bits.
  if (pixGetColormap(pix) != nullptr || (pixGetDepth(pix) != 1 && pixGetDepth(pix) != 8 && pixGetDepth(pix) != 32)) {
    Pix* converted = pixConvertTo8(pix, 0);
    pixDestroy(&pix);
    if (converted == nullptr) fail(ErrorCode::InvalidFile, "unreadable image: unsupported pixel format");
    pix = converted;
  }
  const int xres = pixGetXRes(pix);
  api.SetImage(pix);
  // Images often carry no resolution; tesseract guesses badly then, so assume a scan's 300 dpi.
  api.SetSourceResolution(xres >= 70 && xres <= 2400 ? xres : 300);
  OcrResult r = recognise(api);
  pixDestroy(&pix);

  ExtractedDocument doc;
  Page page;
  page.blocks = std::move(r.blocks);
  page.ocr = true;
  page.ocr_confidence = r.confidence;
  doc.pages.push_back(std::move(page));
  return doc;
}

}  // namespace extract_detail
}  // namespace vireo
