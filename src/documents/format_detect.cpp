// Format detection by content: libmagic names the MIME type; a few cases need a closer look
// (DOCX reported as a plain zip, Markdown that libmagic calls text/plain).
#include <magic.h>
#include <zip.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <string>
#include <string_view>

#include "vireo/core/error.h"
#include "vireo/documents/extract.h"

namespace vireo {
namespace {

constexpr std::string_view kDocxMime =
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document";

// libmagic handles are not thread-safe: each thread gets its own, loaded on first use.
class MagicHandle {
 public:
  MagicHandle() {
    cookie_ = ::magic_open(MAGIC_MIME_TYPE | MAGIC_ERROR);
    if (cookie_ != nullptr && ::magic_load(cookie_, nullptr) != 0) {
      error_ = ::magic_error(cookie_) != nullptr ? ::magic_error(cookie_) : "unknown error";
      ::magic_close(cookie_);
      cookie_ = nullptr;
    } else if (cookie_ == nullptr) {
      error_ = "magic_open failed";
    }
  }
  ~MagicHandle() {
    if (cookie_ != nullptr) ::magic_close(cookie_);
  }
  MagicHandle(const MagicHandle&) = delete;
  MagicHandle& operator=(const MagicHandle&) = delete;

  std::string mime_of(std::string_view bytes) {
    if (cookie_ == nullptr) fail(ErrorCode::Io, "cannot load the libmagic database: {}", error_);
    const char* mime = ::magic_buffer(cookie_, bytes.data(), bytes.size());
    return mime != nullptr ? std::string(mime) : std::string("application/octet-stream");
  }

 private:
  magic_t cookie_ = nullptr;
  std::string error_;
};

bool starts_with(std::string_view s, std::string_view prefix) { return s.substr(0, prefix.size()) == prefix; }

bool ends_with_ci(std::string_view s, std::string_view suffix) {
  if (s.size() < suffix.size()) return false;
  return std::equal(suffix.begin(), suffix.end(), s.end() - static_cast<ptrdiff_t>(suffix.size()),
                    [](char a, char b) { return std::tolower(static_cast<unsigned char>(a)) == b; });
}

// A zip is a DOCX when it holds Word parts (word/...). The central directory sits at the end of
// the file, so open the file itself; fall back to the local headers in the bytes we have. A
// package with Word parts but no word/document.xml still counts, so that its extraction can say
// what is missing.
bool zip_has_word_parts(const std::string& path, std::string_view head) {
  if (!path.empty()) {
    int err = 0;
    if (zip_t* archive = ::zip_open(path.c_str(), ZIP_RDONLY, &err)) {
      bool found = ::zip_name_locate(archive, "word/document.xml", 0) >= 0;
      const zip_int64_t entries = std::min<zip_int64_t>(::zip_get_num_entries(archive, 0), 10000);
      for (zip_int64_t i = 0; i < entries && !found; ++i) {
        const char* name = ::zip_get_name(archive, static_cast<zip_uint64_t>(i), 0);
        found = name != nullptr && std::strncmp(name, "word/", 5) == 0;
      }
      ::zip_discard(archive);
      return found;
    }
  }
  return head.find("word/document.xml") != std::string_view::npos;
}

// Clear Markdown structure: ATX headings at line starts together with lists, links or fences.
bool looks_like_markdown(std::string_view text) {
  int headings = 0, lists = 0, links = 0, fences = 0, lines = 0;
  size_t pos = 0;
  while (pos < text.size() && lines < 4000) {
    size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(pos, end - pos);
    pos = end + 1;
    ++lines;
    size_t indent = line.find_first_not_of(' ');
    if (indent == std::string_view::npos || indent > 3) continue;
    std::string_view body = line.substr(indent);
    size_t hashes = 0;
    while (hashes < body.size() && body[hashes] == '#') ++hashes;
    if (hashes >= 1 && hashes <= 6 && indent == 0 && (hashes == body.size() || body[hashes] == ' ')) ++headings;
    if (starts_with(body, "```") || starts_with(body, "~~~")) ++fences;
    if (body.size() >= 2 && (body[0] == '-' || body[0] == '*' || body[0] == '+') && body[1] == ' ') ++lists;
    size_t digits = 0;
    while (digits < body.size() && std::isdigit(static_cast<unsigned char>(body[digits]))) ++digits;
    if (digits > 0 && digits + 1 < body.size() && (body[digits] == '.' || body[digits] == ')') &&
        body[digits + 1] == ' ')
      ++lists;
    if (body.find("](") != std::string_view::npos) ++links;
  }
  const int other = lists + links + fences;
  return (headings >= 1 && other >= 1) || (fences >= 2 && (lists + links) >= 1) || headings >= 3;
}

}  // namespace

DetectedFormat detect_format(const std::string& path, std::string_view head_bytes) {
  thread_local MagicHandle magic;
  DetectedFormat out;
  out.mime = magic.mime_of(head_bytes);
  const std::string& mime = out.mime;

  if (mime == "application/pdf" || starts_with(head_bytes, "%PDF-")) {
    out.format = DocFormat::Pdf;
    if (mime != "application/pdf") out.mime = "application/pdf";
  } else if (mime == "image/png" || mime == "image/jpeg" || mime == "image/tiff" || mime == "image/bmp" ||
             mime == "image/x-ms-bmp" || mime == "image/gif" || mime == "image/webp") {
    out.format = DocFormat::Image;
  } else if (mime == "text/html" || mime == "application/xhtml+xml") {
    out.format = DocFormat::Html;
  } else if (mime == kDocxMime) {
    out.format = DocFormat::Docx;
  } else if ((mime == "application/zip" || mime == "application/octet-stream") && starts_with(head_bytes, "PK\x03\x04")) {
    if (zip_has_word_parts(path, head_bytes)) {
      out.format = DocFormat::Docx;
      out.mime = std::string(kDocxMime);
    }
  } else if (mime == "text/xml" && head_bytes.find("<html") != std::string_view::npos) {
    out.format = DocFormat::Html;  // XHTML that libmagic calls plain XML
  } else if (starts_with(mime, "text/")) {
    if (mime == "text/markdown" || mime == "text/x-markdown" || ends_with_ci(path, ".md") ||
        ends_with_ci(path, ".markdown") || looks_like_markdown(head_bytes)) {
      out.format = DocFormat::Markdown;
    } else {
      out.format = DocFormat::Text;
    }
  }
  return out;
}

}  // namespace vireo
