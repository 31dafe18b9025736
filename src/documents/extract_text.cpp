// Plain text in any common encoding (BOM, then UTF-8 validation, then uchardet + iconv), and the
// dispatcher that reads a file, detects its format and hands it to the right extractor.
#include <iconv.h>
#include <uchardet/uchardet.h>

#include <algorithm>
#include <cerrno>
#include <cctype>
#include <span>
#include <string>
#include <string_view>

#include "vireo/core/error.h"
#include "vireo/core/mapped_file.h"
#include "vireo/core/utf8.h"
#include "vireo/documents/extract.h"

namespace vireo {

// The extractors, one per source file.
namespace extract_detail {
ExtractedDocument extract_pdf(std::span<const uint8_t> bytes, const ExtractOptions& options);
ExtractedDocument extract_image(std::span<const uint8_t> bytes, const ExtractOptions& options);
ExtractedDocument extract_html(std::string_view bytes);
ExtractedDocument extract_markdown(std::string_view text);
ExtractedDocument extract_docx(std::span<const uint8_t> bytes);
ExtractedDocument extract_text(std::string_view bytes);
std::string decode_to_utf8(std::string_view bytes, std::string* encoding);
}  // namespace extract_detail

namespace extract_detail {
namespace {

// Converts with iconv; bytes that do not convert become U+FFFD, so hostile input never stops us.
std::string convert_with_iconv(std::string_view bytes, const std::string& from, size_t unit) {
  iconv_t cd = ::iconv_open("UTF-8", from.c_str());
  if (cd == reinterpret_cast<iconv_t>(-1)) {
    fail(ErrorCode::Unsupported, "text encoding {} is not supported by iconv", from);
  }
  std::string out;
  out.reserve(bytes.size() + bytes.size() / 2 + 16);
  char* in = const_cast<char*>(bytes.data());
  size_t in_left = bytes.size();
  char buffer[16384];
  while (in_left > 0) {
    char* out_ptr = buffer;
    size_t out_left = sizeof buffer;
    const size_t rc = ::iconv(cd, &in, &in_left, &out_ptr, &out_left);
    out.append(buffer, static_cast<size_t>(out_ptr - buffer));
    if (rc != static_cast<size_t>(-1)) continue;
    if (errno == E2BIG) continue;
    // EILSEQ or EINVAL (truncated at the end): skip one code unit and mark the loss.
    out += "\xEF\xBF\xBD";
    const size_t skip = std::min(unit, in_left);
    in += skip;
    in_left -= skip;
    ::iconv(cd, nullptr, nullptr, nullptr, nullptr);
  }
  char* out_ptr = buffer;
  size_t out_left = sizeof buffer;
  ::iconv(cd, nullptr, nullptr, &out_ptr, &out_left);
  out.append(buffer, static_cast<size_t>(out_ptr - buffer));
  ::iconv_close(cd);
  return out;
}

std::string detect_charset(std::string_view bytes) {
  uchardet_t detector = ::uchardet_new();
  if (detector == nullptr) return "";
  // The first megabyte is plenty to tell encodings apart.
  const size_t n = std::min<size_t>(bytes.size(), size_t{1} << 20);
  std::string charset;
  if (::uchardet_handle_data(detector, bytes.data(), n) == 0) {
    ::uchardet_data_end(detector);
    if (const char* c = ::uchardet_get_charset(detector)) charset = c;
  }
  ::uchardet_delete(detector);
  std::transform(charset.begin(), charset.end(), charset.begin(),
                 [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
  return charset;
}

bool is_blank(std::string_view line) {
  return std::all_of(line.begin(), line.end(), [](char c) { return c == ' ' || c == '\t' || c == '\f' || c == '\v'; });
}

}  // namespace

std::string decode_to_utf8(std::string_view bytes, std::string* encoding) {
  auto set_encoding = [&](std::string name) {
    if (encoding != nullptr) *encoding = std::move(name);
  };
  auto has_prefix = [&](std::string_view p) { return bytes.substr(0, p.size()) == p; };
  if (has_prefix("\xEF\xBB\xBF")) {
    bytes.remove_prefix(3);
    if (is_valid_utf8(bytes)) {
      set_encoding("UTF-8");
      return std::string(bytes);
    }
    set_encoding("UTF-8");
    return convert_with_iconv(bytes, "UTF-8", 1);
  }
  if (has_prefix(std::string_view("\xFF\xFE\x00\x00", 4))) {
    set_encoding("UTF-32LE");
    return convert_with_iconv(bytes.substr(4), "UTF-32LE", 4);
  }
  if (has_prefix(std::string_view("\x00\x00\xFE\xFF", 4))) {
    set_encoding("UTF-32BE");
    return convert_with_iconv(bytes.substr(4), "UTF-32BE", 4);
  }
  if (has_prefix("\xFF\xFE")) {
    set_encoding("UTF-16LE");
    return convert_with_iconv(bytes.substr(2), "UTF-16LE", 2);
  }
  if (has_prefix("\xFE\xFF")) {
    set_encoding("UTF-16BE");
    return convert_with_iconv(bytes.substr(2), "UTF-16BE", 2);
  }
  if (is_valid_utf8(bytes)) {
    set_encoding("UTF-8");
    return std::string(bytes);
  }
  std::string charset = detect_charset(bytes);
  // Not UTF-8, and nothing better known: Windows-1252 maps every byte, a superset of Latin-1.
  if (charset.empty() || charset == "ASCII" || charset == "UTF-8") charset = "WINDOWS-1252";
  const size_t unit = charset.starts_with("UTF-16") ? 2 : charset.starts_with("UTF-32") ? 4 : 1;
  set_encoding(charset);
  return convert_with_iconv(bytes, charset, unit);
}

ExtractedDocument extract_text(std::string_view bytes) {
  ExtractedDocument doc;
  const std::string text = decode_to_utf8(bytes, &doc.encoding);
  Page page;
  std::string paragraph;
  auto flush = [&] {
    while (!paragraph.empty() && paragraph.back() == '\n') paragraph.pop_back();
    if (!paragraph.empty()) page.blocks.push_back({BlockKind::Paragraph, 0, std::move(paragraph)});
    paragraph.clear();
  };
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    std::string_view line(text.data() + pos, end - pos);
    pos = end + 1;
    // Old Mac and Windows line ends, and trailing blanks that carry nothing.
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ' || line.back() == '\t')) line.remove_suffix(1);
    if (line.find('\r') != std::string_view::npos) {
      // Lone CRs as line breaks: treat each piece as its own line.
      size_t p = 0;
      while (p <= line.size()) {
        size_t e = line.find('\r', p);
        if (e == std::string_view::npos) e = line.size();
        std::string_view piece = line.substr(p, e - p);
        if (is_blank(piece)) {
          flush();
        } else {
          paragraph.append(piece);
          paragraph += '\n';
        }
        p = e + 1;
      }
      continue;
    }
    if (is_blank(line)) {
      flush();
    } else {
      paragraph.append(line);
      paragraph += '\n';
    }
  }
  flush();
  doc.pages.push_back(std::move(page));
  return doc;
}

}  // namespace extract_detail

ExtractedDocument extract_document(const std::string& path, const ExtractOptions& options) {
  if (options.ocr_dpi < 30 || options.ocr_dpi > 1200) {
    fail(ErrorCode::InvalidArgument, "OCR resolution {} dpi is out of range (30..1200)", options.ocr_dpi);
  }
  const MappedFile file(path);
  if (file.size() == 0) fail(ErrorCode::InvalidFile, "empty file");
  const std::string_view all(reinterpret_cast<const char*>(file.data()), file.size());
  const DetectedFormat detected = detect_format(path, all.substr(0, size_t{256} << 10));

  ExtractedDocument doc;
  switch (detected.format) {
    case DocFormat::Pdf: doc = extract_detail::extract_pdf(file.bytes(), options); break;
    case DocFormat::Image: doc = extract_detail::extract_image(file.bytes(), options); break;
    case DocFormat::Html: doc = extract_detail::extract_html(all); break;
    case DocFormat::Markdown: doc = extract_detail::extract_markdown(all); break;
    case DocFormat::Docx: doc = extract_detail::extract_docx(file.bytes()); break;
    case DocFormat::Text: doc = extract_detail::extract_text(all); break;
    case DocFormat::Unknown: fail(ErrorCode::Unsupported, "unsupported format: {}", detected.mime);
  }
  doc.format = detected.format;
  doc.mime = detected.mime;
  if (doc.pages.empty()) doc.pages.emplace_back();
  for (size_t i = 0; i < doc.pages.size(); ++i) doc.pages[i].number = static_cast<int>(i + 1);
  if (doc.title.empty()) {
    // No metadata title: the first heading stands in.
    for (const Page& page : doc.pages) {
      // A heading of a few letters at least: large page numbers are not titles.
      auto it = std::find_if(page.blocks.begin(), page.blocks.end(), [](const Block& b) {
        return b.kind == BlockKind::Heading &&
               std::count_if(b.text.begin(), b.text.end(), [](unsigned char c) { return std::isalpha(c) || c >= 0x80; }) >= 3;
      });
      if (it != page.blocks.end()) {
        doc.title = it->text;
        break;
      }
    }
  }
  return doc;
}

}  // namespace vireo
