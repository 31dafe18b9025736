// Format detection and the extractors: small fixtures built here for HTML, Markdown, DOCX and
// text in several encodings; the shared PDFs (text layers, scans, a rotated page, tables, an
// encrypted and a malformed file) checked against Mozilla pdf.js and for OCR.
#include <gtest/gtest.h>
#include <leptonica/allheaders.h>
#include <poppler/cpp/poppler-document.h>
#include <poppler/cpp/poppler-image.h>
#include <poppler/cpp/poppler-page-renderer.h>
#include <poppler/cpp/poppler-page.h>
#include <zip.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "reference_engine.h"
#include "test_util.h"
#include "vireo/core/error.h"
#include "vireo/documents/document.h"
#include "vireo/documents/extract.h"

namespace vireo {
namespace {

using test::TempDir;

void write_text(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::vector<Block> blocks_of(const ExtractedDocument& doc) {
  std::vector<Block> all;
  for (const Page& p : doc.pages) all.insert(all.end(), p.blocks.begin(), p.blocks.end());
  return all;
}

const Block* find_block(const ExtractedDocument& doc, BlockKind kind, const std::string& text) {
  for (const Page& p : doc.pages)
    for (const Block& b : p.blocks)
      if (b.kind == kind && b.text == text) return &b;
  return nullptr;
}

std::string all_text(const ExtractedDocument& doc) {
  std::string out;
  for (const Page& p : doc.pages) out += page_text(p) + "\n";
  return out;
}

ErrorCode error_code_of(const std::string& path, const ExtractOptions& options, std::string* message) {
  try {
    extract_document(path, options);
  } catch (const Error& e) {
    *message = e.what();
    return e.code();
  }
  ADD_FAILURE() << path << " did not throw";
  return ErrorCode::InvalidArgument;
}

// ---- detection --------------------------------------------------------------------------------

TEST(DetectFormat, ByContentNotName) {
  EXPECT_EQ(detect_format("notes.txt", "%PDF-1.7\n%\xE2\xE3\xCF\xD3\n1 0 obj\n<< >>\nendobj\n").format, DocFormat::Pdf);
  EXPECT_EQ(detect_format("page.txt", "<!DOCTYPE html><html><head><title>x</title></head><body><p>Hi</p></body></html>")
                .format,
            DocFormat::Html);
  EXPECT_EQ(detect_format("a.bin", "Just a few words of plain text.\nAnd a second line.\n").format, DocFormat::Text);
  const std::string png("\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0\x1f\x15\xc4\x89", 33);
  const DetectedFormat image = detect_format("x.pdf", png);
  EXPECT_EQ(image.format, DocFormat::Image);
  EXPECT_EQ(image.mime, "image/png");
  EXPECT_EQ(detect_format("x", std::string("\x7f" "ELF\x02\x01\x01\0\0\0\0\0\0\0\0\0", 16)).format, DocFormat::Unknown);
}

TEST(DetectFormat, MarkdownByNameOrStructure) {
  const std::string plain = "A title\n\nSome text that is plain.\n";
  EXPECT_EQ(detect_format("readme.txt", plain).format, DocFormat::Text);
  EXPECT_EQ(detect_format("README.md", plain).format, DocFormat::Markdown);
  EXPECT_EQ(detect_format("notes.markdown", plain).format, DocFormat::Markdown);
  const std::string md = "# Install\n\nRun the script:\n\n- download it\n- see [the docs](https://example.org)\n";
  EXPECT_EQ(detect_format("notes", md).format, DocFormat::Markdown);
  // A lone '#' line is not enough.
  EXPECT_EQ(detect_format("notes", "# just a comment\nvalue = 3\n").format, DocFormat::Text);
}

// ---- plain text ---------------------------------------------------------------------------------

TEST(ExtractText, Utf8ParagraphsOnBlankLines) {
  TempDir dir;
  const std::string path = dir.file("a.txt");
  write_text(path, "First paragraph, line one.\r\nLine two.\r\n\r\n  \r\nSecond paragraph: caf\xC3\xA9.\n");
  const ExtractedDocument doc = extract_document(path, {});
  EXPECT_EQ(doc.format, DocFormat::Text);
  EXPECT_EQ(doc.encoding, "UTF-8");
  ASSERT_EQ(doc.pages.size(), 1u);
  ASSERT_EQ(doc.pages[0].blocks.size(), 2u);
  EXPECT_EQ(doc.pages[0].blocks[0].text, "First paragraph, line one.\nLine two.");
  EXPECT_EQ(doc.pages[0].blocks[1].text, "Second paragraph: caf\xC3\xA9.");
  EXPECT_EQ(doc.pages[0].blocks[1].kind, BlockKind::Paragraph);
}

TEST(ExtractText, Utf16WithBom) {
  TempDir dir;
  const std::u16string text = u"Gr\u00FC\u00DFe aus K\u00F6ln.\n\nZweiter Absatz \u20AC.\n";
  std::string le = "\xFF\xFE", be = "\xFE\xFF";
  for (char16_t c : text) {
    le += static_cast<char>(c & 0xFF), le += static_cast<char>(c >> 8);
    be += static_cast<char>(c >> 8), be += static_cast<char>(c & 0xFF);
  }
  for (const auto& [bytes, name] : {std::pair{le, "UTF-16LE"}, std::pair{be, "UTF-16BE"}}) {
    const std::string path = dir.file(std::string(name) + ".txt");
    write_text(path, bytes);
    const ExtractedDocument doc = extract_document(path, {});
    EXPECT_EQ(doc.format, DocFormat::Text) << name << " detected as " << doc.mime;
    EXPECT_EQ(doc.encoding, name);
    ASSERT_EQ(doc.pages[0].blocks.size(), 2u) << name;
    EXPECT_EQ(doc.pages[0].blocks[0].text, "Gr\xC3\xBC\xC3\x9F" "e aus K\xC3\xB6ln.");
    EXPECT_EQ(doc.pages[0].blocks[1].text, "Zweiter Absatz \xE2\x82\xAC.");
  }
}

TEST(ExtractText, Latin1IsDetectedAndConverted) {
  TempDir dir;
  const std::string path = dir.file("latin1.txt");
  // French in ISO-8859-1: enough accented text for a detector to be sure.
  write_text(path,
             "Le syst\xE8me de d\xE9tection reconna\xEEt l'encodage. \xC0 bient\xF4t, ch\xE8re coll\xE8gue.\n"
             "Les donn\xE9" "es sont d\xE9j\xE0 pr\xEA" "tes pour l'\xE9t\xE9 prochain, tr\xE8s bien.\n\n"
             "Deuxi\xE8me paragraphe : caf\xE9, na\xEFve, \xE9l\xE8ve.\n");
  const ExtractedDocument doc = extract_document(path, {});
  EXPECT_EQ(doc.format, DocFormat::Text);
  EXPECT_NE(doc.encoding, "UTF-8");
  EXPECT_FALSE(doc.encoding.empty());
  ASSERT_EQ(doc.pages[0].blocks.size(), 2u);
  EXPECT_NE(doc.pages[0].blocks[0].text.find("syst\xC3\xA8me de d\xC3\xA9tection"), std::string::npos)
      << doc.pages[0].blocks[0].text;
  EXPECT_EQ(doc.pages[0].blocks[1].text, "Deuxi\xC3\xA8me paragraphe : caf\xC3\xA9, na\xC3\xAFve, \xC3\xA9l\xC3\xA8ve.");
}

TEST(Extract, EmptyAndMissingAndUnsupported) {
  TempDir dir;
  write_text(dir.file("empty.txt"), "");
  std::string why;
  EXPECT_EQ(error_code_of(dir.file("empty.txt"), {}, &why), ErrorCode::InvalidFile);
  EXPECT_EQ(why, "empty file");
  EXPECT_EQ(error_code_of(dir.file("absent.txt"), {}, &why), ErrorCode::NotFound);
  write_text(dir.file("prog"), std::string("\x7f" "ELF\x02\x01\x01\0\0\0\0\0\0\0\0\0\x03\0\x3e\0", 20) + std::string(200, '\0'));
  EXPECT_EQ(error_code_of(dir.file("prog"), {}, &why), ErrorCode::Unsupported);
  EXPECT_NE(why.find("unsupported format: "), std::string::npos) << why;
}

TEST(PageText, JoinsBlocksWithNewlines) {
  Page page;
  page.blocks = {{BlockKind::Heading, 1, "Title"}, {BlockKind::Paragraph, 0, "Body."}, {BlockKind::ListItem, 1, "x"}};
  EXPECT_EQ(page_text(page), "Title\nBody.\nx");
  EXPECT_EQ(page_text(Page{}), "");
  EXPECT_EQ(doc_format_name(DocFormat::Docx), "docx");
  EXPECT_EQ(doc_format_name(DocFormat::Unknown), "unknown");
}

// ---- HTML -------------------------------------------------------------------------------------

TEST(ExtractHtml, MainContentAndStructure) {
  TempDir dir;
  const std::string path = dir.file("page.html");
  write_text(path, R"(<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>The  Page
Title</title><style>p { color: red }</style><script>var hidden = "script text";</script></head>
<body>
<nav><a href="/">Home</a> <a href="/about">Navigation link</a></nav>
<header>Site header</header>
<main>
  <h1>Main heading</h1>
  <p>Inline <b>bold</b>, <a href="#">linked</a> and <em>em</em>phasis stay one para<span>graph</span>.<br>After a break.</p>
  <h3>Sub <code>heading</code></h3>
  <ul>
    <li>First item</li>
    <li>Second item
      <ol><li>Nested item</li></ol>
    </li>
  </ul>
  <table>
    <thead><tr><th>Name</th><th>Value</th></tr></thead>
    <tbody><tr><td>alpha</td><td>1</td></tr><tr><td>beta</td><td>2</td></tr></tbody>
  </table>
  <pre>int main() {
  return 0;
}</pre>
  <blockquote>Quoted words.</blockquote>
  <form><input value="form text">Form label</form>
  <noscript>Enable JavaScript</noscript>
</main>
<aside>Sidebar</aside>
<footer>Footer text</footer>
</body></html>)");
  const ExtractedDocument doc = extract_document(path, {});
  EXPECT_EQ(doc.format, DocFormat::Html);
  EXPECT_EQ(doc.mime, "text/html");
  EXPECT_EQ(doc.title, "The Page Title");
  ASSERT_NE(find_block(doc, BlockKind::Heading, "Main heading"), nullptr);
  EXPECT_EQ(find_block(doc, BlockKind::Heading, "Main heading")->level, 1);
  ASSERT_NE(find_block(doc, BlockKind::Heading, "Sub heading"), nullptr);
  EXPECT_EQ(find_block(doc, BlockKind::Heading, "Sub heading")->level, 3);
  EXPECT_NE(find_block(doc, BlockKind::Paragraph,
                       "Inline bold, linked and emphasis stay one paragraph.\nAfter a break."),
            nullptr)
      << all_text(doc);
  ASSERT_NE(find_block(doc, BlockKind::ListItem, "First item"), nullptr);
  EXPECT_EQ(find_block(doc, BlockKind::ListItem, "First item")->level, 1);
  ASSERT_NE(find_block(doc, BlockKind::ListItem, "Second item"), nullptr);
  ASSERT_NE(find_block(doc, BlockKind::ListItem, "Nested item"), nullptr);
  EXPECT_EQ(find_block(doc, BlockKind::ListItem, "Nested item")->level, 2);
  ASSERT_NE(find_block(doc, BlockKind::TableRow, "Name | Value"), nullptr);
  EXPECT_EQ(find_block(doc, BlockKind::TableRow, "Name | Value")->level, 0);
  ASSERT_NE(find_block(doc, BlockKind::TableRow, "beta | 2"), nullptr);
  EXPECT_EQ(find_block(doc, BlockKind::TableRow, "beta | 2")->level, 2);
  EXPECT_NE(find_block(doc, BlockKind::Code, "int main() {\n  return 0;\n}"), nullptr);
  EXPECT_NE(find_block(doc, BlockKind::Paragraph, "Quoted words."), nullptr);
  const std::string text = all_text(doc);
  for (const char* hidden : {"script text", "color", "Navigation link", "Site header", "Sidebar", "Footer text",
                             "Form label", "Enable JavaScript"}) {
    EXPECT_EQ(text.find(hidden), std::string::npos) << hidden << " leaked into:\n" << text;
  }
}

TEST(ExtractHtml, DeclaredCharsetAndFirstH1Title) {
  TempDir dir;
  const std::string path = dir.file("latin.html");
  write_text(path,
             "<html><head><meta http-equiv=\"Content-Type\" content=\"text/html; charset=iso-8859-1\"></head>"
             "<body><article><h1>Caf\xE9 cr\xE8me</h1><p>D\xE9j\xE0 vu \xE0 M\xFCnchen.</p></article>"
             "<article><p>Second article.</p></article><div>Outside articles.</div></body></html>");
  const ExtractedDocument doc = extract_document(path, {});
  EXPECT_EQ(doc.format, DocFormat::Html);
  EXPECT_EQ(doc.title, "Caf\xC3\xA9 cr\xC3\xA8me");
  EXPECT_NE(find_block(doc, BlockKind::Paragraph, "D\xC3\xA9j\xC3\xA0 vu \xC3\xA0 M\xC3\xBCnchen."), nullptr) << all_text(doc);
  EXPECT_NE(find_block(doc, BlockKind::Paragraph, "Second article."), nullptr);
  EXPECT_EQ(all_text(doc).find("Outside articles"), std::string::npos);
}

TEST(ExtractHtml, DeepNestingIsSafe) {
  TempDir dir;
  const std::string path = dir.file("deep.html");
  std::string html = "<html><body>";
  for (int i = 0; i < 20000; ++i) html += "<div><span>";
  html += "deep words";
  html += "</body></html>";
  write_text(path, html);
  const ExtractedDocument doc = extract_document(path, {});
  EXPECT_EQ(doc.format, DocFormat::Html);  // any content is fine; no crash, no stack overflow
}

// ---- Markdown -----------------------------------------------------------------------------------

TEST(ExtractMarkdown, Structure) {
  TempDir dir;
  const std::string path = dir.file("doc.md");
  write_text(path, R"(# Project title

Some *emphasis*, `code span` and a [link text](https://example.org) in
one paragraph.

## Setup

- first item
- second item
  - nested item

1. numbered

| Name | Value |
|------|-------|
| a    | 1     |
| ~~b~~ | 2    |

```cpp
int x = 1;
```

> quoted text
)");
  const ExtractedDocument doc = extract_document(path, {});
  EXPECT_EQ(doc.format, DocFormat::Markdown);
  EXPECT_EQ(doc.title, "Project title");
  ASSERT_NE(find_block(doc, BlockKind::Heading, "Project title"), nullptr);
  EXPECT_EQ(find_block(doc, BlockKind::Heading, "Setup")->level, 2);
  EXPECT_NE(find_block(doc, BlockKind::Paragraph, "Some emphasis, code span and a link text in one paragraph."), nullptr)
      << all_text(doc);
  ASSERT_NE(find_block(doc, BlockKind::ListItem, "first item"), nullptr);
  EXPECT_EQ(find_block(doc, BlockKind::ListItem, "first item")->level, 1);
  ASSERT_NE(find_block(doc, BlockKind::ListItem, "nested item"), nullptr);
  EXPECT_EQ(find_block(doc, BlockKind::ListItem, "nested item")->level, 2);
  EXPECT_NE(find_block(doc, BlockKind::ListItem, "numbered"), nullptr);
  ASSERT_NE(find_block(doc, BlockKind::TableRow, "Name | Value"), nullptr);
  EXPECT_EQ(find_block(doc, BlockKind::TableRow, "Name | Value")->level, 0);
  ASSERT_NE(find_block(doc, BlockKind::TableRow, "b | 2"), nullptr);
  EXPECT_EQ(find_block(doc, BlockKind::TableRow, "b | 2")->level, 2);
  EXPECT_NE(find_block(doc, BlockKind::Code, "int x = 1;"), nullptr);
  EXPECT_NE(find_block(doc, BlockKind::Paragraph, "quoted text"), nullptr);
}

TEST(ExtractMarkdown, HostileNestingIsSafe) {
  TempDir dir;
  const std::string path = dir.file("deep.md");
  write_text(path, "# Deep\n\n" + std::string(50000, '>') + " text\n\n" + std::string(20000, '[') + "x\n" +
                       std::string(5000, '-') + "\n");
  const ExtractedDocument doc = extract_document(path, {});
  EXPECT_EQ(doc.format, DocFormat::Markdown);
}

// ---- DOCX ---------------------------------------------------------------------------------------

void add_zip_entry(zip_t* z, const char* name, const std::string& content) {
  // libzip copies the data when the archive is closed, so keep it alive until then.
  static thread_local std::vector<std::unique_ptr<std::string>> keep;
  keep.push_back(std::make_unique<std::string>(content));
  zip_source_t* src = zip_source_buffer(z, keep.back()->data(), keep.back()->size(), 0);
  ASSERT_NE(src, nullptr);
  ASSERT_GE(zip_file_add(z, name, src, ZIP_FL_OVERWRITE), 0);
}

void write_zip(const std::string& path, const std::map<std::string, std::string>& entries) {
  int err = 0;
  zip_t* z = zip_open(path.c_str(), ZIP_CREATE | ZIP_TRUNCATE, &err);
  ASSERT_NE(z, nullptr);
  for (const auto& [name, content] : entries) add_zip_entry(z, name.c_str(), content);
  ASSERT_EQ(zip_close(z), 0);
}

const char* kContentTypes =
    R"(<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="xml" ContentType="application/xml"/><Override PartName="/word/document.xml" ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/></Types>)";

TEST(ExtractDocx, HeadingsListsTables) {
  TempDir dir;
  const std::string path = dir.file("report.bin");
  const std::string document = R"(<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body>
<w:p><w:pPr><w:pStyle w:val="Heading1"/></w:pPr><w:r><w:t>Quarterly </w:t></w:r><w:r><w:rPr><w:b/></w:rPr><w:t>report</w:t></w:r></w:p>
<w:p><w:r><w:t xml:space="preserve">Plain text with</w:t></w:r><w:r><w:tab/><w:t>a tab and</w:t><w:br/><w:t>a break.</w:t></w:r><w:del><w:r><w:delText>deleted</w:delText></w:r></w:del></w:p>
<w:p><w:pPr><w:numPr><w:ilvl w:val="1"/><w:numId w:val="3"/></w:numPr></w:pPr><w:r><w:t>Nested list item</w:t></w:r></w:p>
<w:p><w:pPr><w:pStyle w:val="Heading2"/></w:pPr><w:r><w:t>Figures</w:t></w:r></w:p>
<w:tbl><w:tr><w:tc><w:p><w:r><w:t>Region</w:t></w:r></w:p></w:tc><w:tc><w:p><w:r><w:t>Sales</w:t></w:r></w:p></w:tc></w:tr>
<w:tr><w:tc><w:p><w:r><w:t>North</w:t></w:r></w:p></w:tc><w:tc><w:p><w:r><w:t>42</w:t></w:r></w:p></w:tc></w:tr></w:tbl>
<w:sectPr/></w:body></w:document>)";
  const std::string core = R"(<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<cp:coreProperties xmlns:cp="http://schemas.openxmlformats.org/package/2006/metadata/core-properties" xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:title>Q3 Report</dc:title></cp:coreProperties>)";
  write_zip(path, {{"[Content_Types].xml", kContentTypes}, {"word/document.xml", document}, {"docProps/core.xml", core}});

  const ExtractedDocument doc = extract_document(path, {});
  EXPECT_EQ(doc.format, DocFormat::Docx) << doc.mime;
  EXPECT_EQ(doc.mime, "application/vnd.openxmlformats-officedocument.wordprocessingml.document");
  EXPECT_EQ(doc.title, "Q3 Report");
  ASSERT_NE(find_block(doc, BlockKind::Heading, "Quarterly report"), nullptr) << all_text(doc);
  EXPECT_EQ(find_block(doc, BlockKind::Heading, "Quarterly report")->level, 1);
  EXPECT_EQ(find_block(doc, BlockKind::Heading, "Figures")->level, 2);
  EXPECT_NE(find_block(doc, BlockKind::Paragraph, "Plain text with\ta tab and\na break."), nullptr) << all_text(doc);
  ASSERT_NE(find_block(doc, BlockKind::ListItem, "Nested list item"), nullptr);
  EXPECT_EQ(find_block(doc, BlockKind::ListItem, "Nested list item")->level, 2);
  ASSERT_NE(find_block(doc, BlockKind::TableRow, "Region | Sales"), nullptr);
  EXPECT_EQ(find_block(doc, BlockKind::TableRow, "Region | Sales")->level, 0);
  EXPECT_EQ(find_block(doc, BlockKind::TableRow, "North | 42")->level, 1);
  EXPECT_EQ(all_text(doc).find("deleted"), std::string::npos);
}

TEST(ExtractDocx, BrokenPackagesFailClearly) {
  TempDir dir;
  std::string why;
  // A zip that says it is a Word document but lacks the document part.
  write_zip(dir.file("nodoc.docx"), {{"[Content_Types].xml", kContentTypes}, {"word/styles.xml", "<x/>"}});
  EXPECT_EQ(detect_format(dir.file("nodoc.docx"), "PK\x03\x04").format, DocFormat::Docx);
  EXPECT_EQ(error_code_of(dir.file("nodoc.docx"), {}, &why), ErrorCode::InvalidFile);
  EXPECT_EQ(why, "malformed DOCX: the zip has no word/document.xml");
  // Any other zip is not a document we read.
  write_zip(dir.file("other.zip"), {{"notes.txt", "hello"}});
  EXPECT_EQ(error_code_of(dir.file("other.zip"), {}, &why), ErrorCode::Unsupported);
  EXPECT_EQ(why, "unsupported format: application/zip");
  // The document part is there but is not XML.
  write_zip(dir.file("badxml.docx"), {{"[Content_Types].xml", kContentTypes}, {"word/document.xml", "<w:document><w:body"}});
  EXPECT_EQ(error_code_of(dir.file("badxml.docx"), {}, &why), ErrorCode::InvalidFile);
  EXPECT_NE(why.find("malformed DOCX"), std::string::npos) << why;
}

// ---- concurrency --------------------------------------------------------------------------------

TEST(Extract, SafeFromSeveralThreads) {
  TempDir dir;
  write_text(dir.file("a.html"), "<html><body><h1>T</h1><p>One <b>two</b> three.</p><ul><li>x</li></ul></body></html>");
  write_text(dir.file("b.md"), "# T\n\n- a\n- b [c](d)\n\n| x | y |\n|---|---|\n| 1 | 2 |\n");
  write_text(dir.file("c.txt"), "caf\xE9 cr\xE8me et cr\xEApes, d\xE9j\xE0 vu.\n\nMore.\n");
  std::vector<std::string> files = {dir.file("a.html"), dir.file("b.md"), dir.file("c.txt")};
  for (const char* rel : {"pdfs/word365_structure.pdf", "pdfs/senate-expenditures.pdf"}) {
    if (const std::string p = test::shared_file(rel); !p.empty()) files.push_back(p);
  }
  ExtractOptions options;
  options.ocr = OcrMode::Never;
  std::vector<std::string> expected;
  for (const auto& f : files) expected.push_back(all_text(extract_document(f, options)));
  std::vector<std::thread> threads;
  std::vector<int> mismatches(4, 0);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int round = 0; round < 5; ++round)
        for (size_t i = 0; i < files.size(); ++i)
          if (all_text(extract_document(files[(i + static_cast<size_t>(t)) % files.size()], options)) !=
              expected[(i + static_cast<size_t>(t)) % files.size()])
            ++mismatches[static_cast<size_t>(t)];
    });
  }
  for (auto& th : threads) th.join();
  for (int m : mismatches) EXPECT_EQ(m, 0);
}

// ---- PDFs ---------------------------------------------------------------------------------------

TEST(ExtractPdf, DetectedByContentUnderAnyName) {
  VIREO_REQUIRE_SHARED(pdf, "pdfs/word365_structure.pdf");
  TempDir dir;
  const std::string renamed = dir.file("not-a-pdf.txt");
  std::filesystem::copy_file(pdf, renamed);
  ExtractOptions options;
  options.ocr = OcrMode::Never;
  const ExtractedDocument doc = extract_document(renamed, options);
  EXPECT_EQ(doc.format, DocFormat::Pdf);
  EXPECT_EQ(doc.mime, "application/pdf");
}

TEST(ExtractPdf, StructureOfAWordExport) {
  VIREO_REQUIRE_SHARED(pdf, "pdfs/word365_structure.pdf");
  ExtractOptions options;
  options.ocr = OcrMode::Never;
  const ExtractedDocument doc = extract_document(pdf, options);
  ASSERT_EQ(doc.pages.size(), 1u);
  EXPECT_EQ(doc.title, "Titre");
  EXPECT_NE(find_block(doc, BlockKind::Heading, "Titre"), nullptr) << all_text(doc);
  EXPECT_NE(find_block(doc, BlockKind::ListItem, "\xE2\x80\xA2 Liste 2"), nullptr) << all_text(doc);
  EXPECT_NE(find_block(doc, BlockKind::ListItem, "1. Liste num\xC3\xA9rot\xC3\xA9" "e"), nullptr);
  EXPECT_NE(find_block(doc, BlockKind::TableRow, "Ligne 1 | Alouette | Farfadet"), nullptr) << all_text(doc);
}

TEST(ExtractPdf, RotatedTableReadsLikeTheUprightOne) {
  VIREO_REQUIRE_SHARED(upright, "pdfs/nics-background-checks-2015-11.pdf");
  VIREO_REQUIRE_SHARED(rotated, "pdfs/nics-background-checks-2015-11-rotated.pdf");
  ExtractOptions options;
  options.ocr = OcrMode::Never;
  const ExtractedDocument a = extract_document(upright, options);
  const ExtractedDocument b = extract_document(rotated, options);
  size_t rows_a = 0, rows_b = 0;
  for (const Block& blk : blocks_of(a)) rows_a += blk.kind == BlockKind::TableRow;
  for (const Block& blk : blocks_of(b)) rows_b += blk.kind == BlockKind::TableRow;
  EXPECT_GE(rows_a, 50u);
  EXPECT_GE(rows_b, 50u);
  const std::string row = "Alabama | 18,870 | 23,022 | 22,650 | 859 | 1,178 | 0 | 14 | 15 | 0 | 2,179 | 2,307 | 11 | 0 | 0 | 0 | "
                          "13 | 14 | 0 | 3 | 2 | 0 | 71,137";
  EXPECT_NE(find_block(a, BlockKind::TableRow, row), nullptr) << all_text(a).substr(0, 2000);
  EXPECT_NE(find_block(b, BlockKind::TableRow, row), nullptr) << all_text(b).substr(0, 2000);
}

TEST(ExtractPdf, EncryptedInvalidAndMalformed) {
  VIREO_REQUIRE_SHARED(encrypted, "pdfs/password-example.pdf");
  VIREO_REQUIRE_SHARED(invalid, "pdfs/ocr-invalid.pdf");
  VIREO_REQUIRE_SHARED(malformed, "pdfs/malformed-from-issue-932.pdf");
  std::string why;
  EXPECT_EQ(error_code_of(encrypted, {}, &why), ErrorCode::InvalidFile);
  EXPECT_EQ(why, "encrypted PDF (password required)");
  // 44 bytes of a PDF header and nothing a parser can use.
  EXPECT_EQ(error_code_of(invalid, {}, &why), ErrorCode::InvalidFile);
  EXPECT_NE(why.find("malformed PDF"), std::string::npos) << why;
  // poppler recovers the one line of text this broken file has (pdf.js finds the same).
  ExtractOptions options;
  options.ocr = OcrMode::Never;
  const ExtractedDocument doc = extract_document(malformed, options);
  ASSERT_EQ(doc.pages.size(), 1u);
  EXPECT_EQ(page_text(doc.pages[0]), "2021 3 31");
}

TEST(ExtractPdf, EveryFileIsExtractedOrRefusedWithAReason) {
  const std::string dir = test::shared_dir();
  if (dir.empty() || !std::filesystem::is_directory(dir + "/pdfs")) GTEST_SKIP() << "shared PDFs not found (../shared/pdfs)";
  ExtractOptions options;
  options.ocr = OcrMode::Never;  // OCR has its own test; this one is about parsing
  for (const auto& entry : std::filesystem::directory_iterator(dir + "/pdfs")) {
    const std::string path = entry.path().string();
    try {
      const ExtractedDocument doc = extract_document(path, options);
      EXPECT_EQ(doc.format, DocFormat::Pdf) << path;
      EXPECT_FALSE(doc.pages.empty()) << path;
      for (size_t i = 0; i < doc.pages.size(); ++i) EXPECT_EQ(doc.pages[i].number, static_cast<int>(i + 1));
    } catch (const Error& e) {
      const std::string why = e.what();
      EXPECT_TRUE(why.find("malformed PDF") != std::string::npos || why.find("encrypted") != std::string::npos)
          << path << ": " << why;
    }
  }
}

TEST(ExtractPdf, ScansAreReadByOcr) {
  struct Scan {
    const char* file;
    std::vector<std::string> words;
  };
  const std::vector<Scan> scans = {
      {"pdfs/ocr-c02-22.pdf", {"garden", "Watson", "branches", "kitchen"}},
      {"pdfs/ocr-linn.pdf", {"LinnSequencer", "MIDI", "sequences", "synthesizers"}},
      {"pdfs/ocr-skew.pdf", {"LinnSequencer", "MIDI", "tracks", "musician"}},
  };
  for (const Scan& scan : scans) {
    const std::string path = test::shared_file(scan.file);
    if (path.empty()) GTEST_SKIP() << "shared PDFs not found (../shared/pdfs)";
    const ExtractedDocument doc = extract_document(path, {});
    ASSERT_EQ(doc.pages.size(), 1u) << scan.file;
    const Page& page = doc.pages[0];
    EXPECT_TRUE(page.ocr) << scan.file;
    EXPECT_GT(page.ocr_confidence, 60.0) << scan.file;
    std::printf("  %-22s OCR confidence %.0f\n", scan.file, page.ocr_confidence);
    const std::string text = page_text(page);
    for (const std::string& w : scan.words) EXPECT_NE(text.find(w), std::string::npos) << scan.file << ": " << w;

    // Without OCR the scan has no text at all.
    ExtractOptions never;
    never.ocr = OcrMode::Never;
    const ExtractedDocument bare = extract_document(path, never);
    EXPECT_FALSE(bare.pages[0].ocr);
    EXPECT_TRUE(bare.pages[0].blocks.empty());
  }
}

TEST(ExtractImage, PngScanIsReadByOcr) {
  VIREO_REQUIRE_SHARED(pdf, "pdfs/ocr-c02-22.pdf");
  // Turn the scanned page into a PNG file, then read that as an image.
  std::unique_ptr<poppler::document> doc(poppler::document::load_from_file(pdf));
  ASSERT_TRUE(doc);
  std::unique_ptr<poppler::page> page(doc->create_page(0));
  poppler::page_renderer renderer;
  renderer.set_image_format(poppler::image::format_gray8);
  const poppler::image img = renderer.render_page(page.get(), 200, 200);
  ASSERT_TRUE(img.is_valid());
  Pix* pix = pixCreate(img.width(), img.height(), 8);
  ASSERT_NE(pix, nullptr);
  for (int y = 0; y < img.height(); ++y) {
    const auto* row = reinterpret_cast<const uint8_t*>(img.const_data()) + static_cast<size_t>(y) * img.bytes_per_row();
    for (int x = 0; x < img.width(); ++x) pixSetPixel(pix, x, y, row[x]);
  }
  pixSetResolution(pix, 200, 200);
  TempDir dir;
  const std::string png = dir.file("scan.dat");
  ASSERT_EQ(pixWrite(png.c_str(), pix, IFF_PNG), 0);
  pixDestroy(&pix);

  const ExtractedDocument scan = extract_document(png, {});
  EXPECT_EQ(scan.format, DocFormat::Image);
  EXPECT_EQ(scan.mime, "image/png");
  ASSERT_EQ(scan.pages.size(), 1u);
  EXPECT_TRUE(scan.pages[0].ocr);
  EXPECT_GT(scan.pages[0].ocr_confidence, 60.0);
  const std::string text = page_text(scan.pages[0]);
  for (const char* w : {"garden", "Watson", "kitchen"}) EXPECT_NE(text.find(w), std::string::npos) << w << "\n" << text;

  // A PNG signature with nothing behind it.
  write_text(dir.file("broken.png"), std::string("\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0\x1f\x15\xc4\x89", 33));
  std::string why;
  EXPECT_EQ(error_code_of(dir.file("broken.png"), {}, &why), ErrorCode::InvalidFile);
  EXPECT_NE(why.find("image"), std::string::npos) << why;
}

// ---- agreement with pdf.js ----------------------------------------------------------------------

std::string pdfjs_unavailable() {
  const std::string dir = std::string(VIREO_SOURCE_DIR) + "/tests/reference/node_modules/pdfjs-dist";
  if (!std::filesystem::exists(dir)) return "pdf.js not installed (tests/reference: npm install)";
  if (std::system("node --version > /dev/null 2>&1") != 0) return "node not found";
  return "";
}

nlohmann::json run_pdfjs(const std::string& pdf) {
  std::string cmd = "node " + test::shell_quote(std::string(VIREO_SOURCE_DIR) + "/tests/documents/pdfjs_text.mjs") +
                    " " + test::shell_quote(pdf) + " 2>/dev/null";
  std::string out;
  if (FILE* p = ::popen(cmd.c_str(), "r")) {
    std::array<char, 65536> buf;
    size_t n;
    while ((n = std::fread(buf.data(), 1, buf.size(), p)) > 0) out.append(buf.data(), n);
    ::pclose(p);
  }
  auto j = nlohmann::json::parse(out, nullptr, false);
  if (j.is_discarded()) return {{"error", "pdf.js driver printed no JSON: " + out.substr(0, 300)}};
  return j;
}

// Lower-cased words: runs of ASCII letters and digits and of non-ASCII letters (punctuation and
// symbol blocks split words, as ASCII punctuation does).
std::map<std::string, int> word_counts(const std::string& text) {
  std::map<std::string, int> counts;
  std::string word;
  auto end_word = [&] {
    if (!word.empty()) ++counts[word];
    word.clear();
  };
  for (size_t i = 0; i < text.size();) {
    const unsigned char c = static_cast<unsigned char>(text[i]);
    size_t len = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
    len = std::min(len, text.size() - i);
    uint32_t cp = c;
    if (len == 2) cp = ((c & 0x1Fu) << 6) | (text[i + 1] & 0x3Fu);
    if (len == 3) cp = ((c & 0x0Fu) << 12) | ((text[i + 1] & 0x3Fu) << 6) | (text[i + 2] & 0x3Fu);
    if (len == 4) cp = 0x10000;
    const bool word_char = cp < 0x80 ? std::isalnum(static_cast<int>(cp)) != 0
                                     : !(cp < 0xC0 || (cp >= 0x2000 && cp < 0x2C00) || (cp >= 0xE000 && cp < 0xF900) ||
                                         (cp >= 0x3000 && cp < 0x3040) || cp == 0xD7 || cp == 0xF7);
    if (word_char) {
      if (cp < 0x80) {
        word += static_cast<char>(std::tolower(static_cast<int>(cp)));
      } else {
        word.append(text, i, len);
      }
    } else {
      end_word();
    }
    i += len;
  }
  end_word();
  return counts;
}

TEST(ExtractPdf, TextLayersAgreeWithPdfJs) {
  const std::string dir = test::shared_dir();
  if (dir.empty() || !std::filesystem::is_directory(dir + "/pdfs")) GTEST_SKIP() << "shared PDFs not found (../shared/pdfs)";
  if (const std::string why = pdfjs_unavailable(); !why.empty()) GTEST_SKIP() << why;
  ExtractOptions options;
  options.ocr = OcrMode::Never;
  std::vector<std::string> files;
  for (const auto& entry : std::filesystem::directory_iterator(dir + "/pdfs")) files.push_back(entry.path().string());
  std::sort(files.begin(), files.end());
  int compared = 0;
  for (const std::string& path : files) {
    const nlohmann::json ref = run_pdfjs(path);
    if (ref.contains("error")) continue;  // encrypted or invalid: covered above
    std::string ref_text;
    for (const auto& page : ref["pages"]) ref_text += page.get<std::string>() + "\n";
    const auto theirs = word_counts(ref_text);
    int ref_words = 0;
    for (const auto& [w, n] : theirs) ref_words += n;
    if (ref_words < 20) continue;  // a scan without a real text layer

    ExtractedDocument doc;
    try {
      doc = extract_document(path, options);
    } catch (const Error& e) {
      ADD_FAILURE() << path << ": pdf.js reads it but we fail: " << e.what();
      continue;
    }
    ASSERT_EQ(doc.pages.size(), ref["pages"].size()) << path;
    const auto mine = word_counts(all_text(doc));
    int common = 0, my_words = 0;
    for (const auto& [w, n] : mine) {
      my_words += n;
      if (auto it = theirs.find(w); it != theirs.end()) common += std::min(n, it->second);
    }
    const double agreement = static_cast<double>(common) / ref_words;
    std::printf("  %-45s pdf.js words %6d, ours %6d, agreement %.4f\n",
                std::filesystem::path(path).filename().string().c_str(), ref_words, my_words, agreement);
    EXPECT_GE(agreement, 0.95) << path;
    // Nor do we invent or duplicate words.
    EXPECT_LE(my_words, ref_words * 1.05 + 5) << path;
    ++compared;
  }
  EXPECT_GE(compared, 8);
}

}  // namespace
}  // namespace vireo
