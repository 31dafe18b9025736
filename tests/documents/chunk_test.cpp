// Tests for normalisation (NFC, whitespace, dehyphenation, running headers and page numbers),
// quality assessment, the token estimate, and the chunker's invariants on randomised documents:
// offsets match page_text exactly, nothing is lost, no chunk crosses a heading or splits a table
// row, budgets and overlaps hold.
#include <gtest/gtest.h>
#include <utf8proc.h>

#include <algorithm>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "vireo/core/error.h"
#include "vireo/documents/chunk.h"
#include "vireo/documents/document.h"

namespace vireo {
namespace {

Page make_page(int number, std::vector<Block> blocks) {
  Page page;
  page.number = number;
  page.blocks = std::move(blocks);
  return page;
}

Block paragraph(std::string text) {
  return {BlockKind::Paragraph, 0, std::move(text)};
}
Block heading(int level, std::string text) {
  return {BlockKind::Heading, level, std::move(text)};
}

ExtractedDocument one_page(std::vector<Block> blocks) {
  ExtractedDocument doc;
  doc.pages.push_back(make_page(1, std::move(blocks)));
  return doc;
}

std::string normalised_text(const std::string& text, BlockKind kind = BlockKind::Paragraph) {
  ExtractedDocument doc = one_page({{kind, 0, text}});
  normalise_document(doc);
  return doc.pages[0].blocks.empty() ? std::string() : doc.pages[0].blocks[0].text;
}

// Code point offsets -> byte offsets, independently of the chunker's own bookkeeping.
std::vector<size_t> code_point_byte_offsets(const std::string& text) {
  std::vector<size_t> offsets;
  for (size_t i = 0; i < text.size(); ++i) {
    if ((static_cast<unsigned char>(text[i]) & 0xC0) != 0x80) offsets.push_back(i);
  }
  offsets.push_back(text.size());
  return offsets;
}

bool is_space(char c) {
  return c == ' ' || c == '\n' || c == '\t' || c == '\r';
}

// --- Normalisation ---

TEST(Normalise, ComposesToNfc) {
  EXPECT_EQ(normalised_text("caf"
                            "e\u0301"),
            "caf\u00e9");
  EXPECT_EQ(normalised_text("A\u030a"), "\u00c5");
  // Compatibility characters stay: NFC, not NFKC.
  EXPECT_EQ(normalised_text("\ufb01nal"), "\ufb01nal");
  // Code is composed too, but keeps its whitespace.
  EXPECT_EQ(normalised_text("  x  =  \"e\u0301\"\n\ty", BlockKind::Code), "  x  =  \"\u00e9\"\n\ty");
}

TEST(Normalise, MatchesFullNfcOnRandomText) {
  // Only stretches that may change are normalised; the result must equal NFC of the whole text.
  const std::vector<std::string> pieces = {"a",      "e",      "a b",        "\u0301",       "\u0308", "\u0323",
                                           "\u0327", "\u00e9", "\u1100",     "\u1161",       "\u11a8", "\uac00",
                                           "\u212b", "\u0374", "\u03b1",     "\u0345",       "\u0dd9", "\u0dcf",
                                           "\u0dca", "\u65e5", "\U0001d15e", "x\u0300\u0315"};
  std::mt19937 rng(7);
  for (int round = 0; round < 3000; ++round) {
    std::string text;
    const int n = 1 + static_cast<int>(rng() % 12);
    for (int i = 0; i < n; ++i) text += pieces[rng() % pieces.size()];
    char* expected = reinterpret_cast<char*>(utf8proc_NFC(reinterpret_cast<const utf8proc_uint8_t*>(text.c_str())));
    ASSERT_NE(expected, nullptr);
    EXPECT_EQ(normalised_text(text, BlockKind::Code), expected) << text;
    std::free(expected);
  }
}

TEST(Normalise, ReplacesInvalidUtf8) {
  EXPECT_EQ(normalised_text("ab\xff"
                            "cd\xc3"),
            "ab\ufffdcd\ufffd");
  EXPECT_EQ(normalised_text("\xed\xa0\x80x"), "\ufffd\ufffd\ufffdx");  // an encoded surrogate
}

TEST(Normalise, CollapsesWhitespace) {
  EXPECT_EQ(normalised_text("  one \t two\u00a0\u00a0three   "), "one two three");
  EXPECT_EQ(normalised_text("line one\nline two\r\n  line three"), "line one line two line three");
  EXPECT_EQ(normalised_text("soft\u00adhyphen"), "softhyphen");
}

TEST(Normalise, JoinsHyphenatedWords) {
  EXPECT_EQ(normalised_text("an inter-\nnational deal"), "an international deal");
  EXPECT_EQ(normalised_text("an inter-  \n  national deal"), "an international deal");
  EXPECT_EQ(normalised_text("Jean-\nPaul Sartre"), "Jean-Paul Sartre");
  EXPECT_EQ(normalised_text("pages 10-\n12"), "pages 10-12");
  EXPECT_EQ(normalised_text("a dash -\nthen more"), "a dash - then more");
  EXPECT_EQ(normalised_text("well-known words"), "well-known words");  // no line end: untouched
}

TEST(Normalise, DropsEmptyBlocks) {
  ExtractedDocument doc =
      one_page({paragraph(" \t "), paragraph("kept"), {BlockKind::Code, 0, "\n\n"}, paragraph("\u00a0")});
  normalise_document(doc);
  ASSERT_EQ(doc.pages[0].blocks.size(), 1u);
  EXPECT_EQ(doc.pages[0].blocks[0].text, "kept");
}

TEST(Normalise, RemovesRunningHeadersAndFooters) {
  const std::vector<std::string> topics = {"Summary", "Market", "Products", "Finance", "Risks", "Outlook"};
  ExtractedDocument doc;
  for (int n = 1; n <= 6; ++n) {
    const std::string& topic = topics[static_cast<size_t>(n - 1)];
    std::vector<Block> blocks = {
        paragraph("ACME  Report 2024"), heading(2, topic), paragraph("What we say about " + topic + "."),
        paragraph(topic + " closes with " + std::to_string(n * 7) + " items."), paragraph("Page " + std::to_string(n))};
    doc.pages.push_back(make_page(n, std::move(blocks)));
  }
  // A header missing from one page is still a header; text like it in the middle of a page stays.
  doc.pages[2].blocks.erase(doc.pages[2].blocks.begin());
  doc.pages[3].blocks.insert(doc.pages[3].blocks.begin() + 3, paragraph("ACME Report 2024"));
  normalise_document(doc);
  for (int n = 1; n <= 6; ++n) {
    const Page& page = doc.pages[static_cast<size_t>(n - 1)];
    const std::string& topic = topics[static_cast<size_t>(n - 1)];
    ASSERT_EQ(page.blocks.size(), n == 4 ? 4u : 3u) << page_text(page);
    EXPECT_EQ(page.blocks[0].text, topic);
    EXPECT_EQ(page.blocks[1].text, "What we say about " + topic + ".");
    EXPECT_EQ(page.blocks.back().text, topic + " closes with " + std::to_string(n * 7) + " items.");
  }
  EXPECT_EQ(doc.pages[3].blocks[2].text, "ACME Report 2024");
}

TEST(Normalise, RemovesVaryingPageNumbers) {
  const std::vector<std::string> numbers = {"- 4 -", "Page 5 of 10", "vi", "[7]", "p. 8", "9 / 10"};
  ExtractedDocument doc;
  for (size_t i = 0; i < numbers.size(); ++i) {
    const bool at_top = i % 2 == 0;
    std::vector<Block> blocks = {paragraph("Content " + std::string(1, static_cast<char>('a' + i)) + " here.")};
    blocks.insert(at_top ? blocks.begin() : blocks.end(), paragraph(numbers[i]));
    doc.pages.push_back(make_page(static_cast<int>(i + 1), std::move(blocks)));
  }
  normalise_document(doc);
  for (const Page& page : doc.pages) {
    ASSERT_EQ(page.blocks.size(), 1u) << page_text(page);
    EXPECT_TRUE(page.blocks[0].text.starts_with("Content ")) << page.blocks[0].text;
  }
}

TEST(Normalise, KeepsNumbersThatAreContent) {
  // One page: no running lines to detect; a final "12" is content.
  ExtractedDocument single = one_page({paragraph("How many?"), paragraph("12")});
  normalise_document(single);
  EXPECT_EQ(single.pages[0].blocks.size(), 2u);
  // Numbers in the middle of a page are content.
  ExtractedDocument doc;
  for (int n = 1; n <= 3; ++n) {
    const std::string tag(static_cast<size_t>(n), 'x');
    doc.pages.push_back(make_page(n, {paragraph("Intro " + tag), paragraph("A " + tag), paragraph("42"),
                                      paragraph("B " + tag), paragraph("End " + tag)}));
  }
  normalise_document(doc);
  for (const Page& page : doc.pages) EXPECT_EQ(page.blocks.size(), 5u) << page_text(page);
}

// --- Quality ---

TEST(Quality, CleanTextPasses) {
  ExtractedDocument doc =
      one_page({paragraph("The quick brown fox jumps over the lazy dog. It was not amused, "
                          "and neither were the twenty other animals watching in 2024.")});
  const QualityReport report = assess_quality(doc);
  EXPECT_FALSE(doc.pages[0].low_quality) << doc.pages[0].quality_note;
  EXPECT_FALSE(doc.pages[0].empty);
  EXPECT_EQ(doc.pages[0].garbage_ratio, 0.0);
  EXPECT_FALSE(report.low_quality) << report.note;
  EXPECT_EQ(report.ocr_confidence, -1.0);
}

TEST(Quality, GarbageText) {
  std::string text = "Some readable words here ";
  for (int i = 0; i < 20; ++i) text += "\ufffd\ue000\x01";
  ExtractedDocument doc = one_page({paragraph(text)});
  const QualityReport report = assess_quality(doc);
  EXPECT_TRUE(doc.pages[0].low_quality);
  EXPECT_GT(doc.pages[0].garbage_ratio, 0.5);
  EXPECT_NE(doc.pages[0].quality_note.find("garbage"), std::string::npos) << doc.pages[0].quality_note;
  EXPECT_TRUE(report.low_quality);
  EXPECT_GT(report.garbage_ratio, 0.5);
}

TEST(Quality, SymbolSoupCountsAsGarbage) {
  ExtractedDocument doc = one_page({paragraph("Title"),
                                    paragraph("@#%&*{~^}|<>@#%&*{~^"),
                                    paragraph("$%^&*()_+=~`{}[]|\\:;<>?/"),
                                    {BlockKind::Code, 0, "x = {@#%&*~^};"}});
  assess_quality(doc);
  EXPECT_TRUE(doc.pages[0].low_quality);
  EXPECT_NE(doc.pages[0].quality_note.find("garbage"), std::string::npos);
  // A rule of repeated characters is not soup.
  ExtractedDocument ruled = one_page({paragraph("Results below"), paragraph("------------------------------")});
  assess_quality(ruled);
  EXPECT_FALSE(ruled.pages[0].low_quality) << ruled.pages[0].quality_note;
}

TEST(Quality, EmptyPage) {
  ExtractedDocument doc;
  doc.pages.push_back(make_page(1, {paragraph("Real content on the first page.")}));
  doc.pages.push_back(make_page(2, {}));
  doc.pages.push_back(make_page(3, {paragraph("... --- ...")}));
  const QualityReport report = assess_quality(doc);
  EXPECT_FALSE(doc.pages[0].empty);
  EXPECT_TRUE(doc.pages[1].empty);
  EXPECT_TRUE(doc.pages[2].empty);
  EXPECT_EQ(doc.pages[1].quality_note, "empty page");
  EXPECT_EQ(report.empty_pages, 2);
  EXPECT_EQ(report.low_quality_pages, 0);
  EXPECT_FALSE(report.low_quality) << report.note;

  ExtractedDocument blank;
  blank.pages.push_back(make_page(1, {}));
  const QualityReport blank_report = assess_quality(blank);
  EXPECT_TRUE(blank_report.low_quality);
  EXPECT_NE(blank_report.note.find("no text"), std::string::npos);
}

TEST(Quality, LowOcrConfidence) {
  ExtractedDocument doc;
  for (int n = 1; n <= 3; ++n) {
    Page page = make_page(n, {paragraph("Scanned text that reads fine to the eye.")});
    page.ocr = true;
    page.ocr_confidence = n == 1 ? 90.0 : 42.0;
    doc.pages.push_back(std::move(page));
  }
  const QualityReport report = assess_quality(doc);
  EXPECT_FALSE(doc.pages[0].low_quality);
  EXPECT_TRUE(doc.pages[1].low_quality);
  EXPECT_EQ(doc.pages[1].quality_note, "OCR confidence 42");
  EXPECT_EQ(report.low_quality_pages, 2);
  EXPECT_TRUE(report.low_quality);  // two of three pages with text
  EXPECT_NEAR(report.ocr_confidence, (90.0 + 42.0 + 42.0) / 3, 1e-9);
}

TEST(Quality, FewRealWords) {
  std::string text;
  for (int i = 0; i < 30; ++i) text += "xkcd qwrtz l1l1 ";
  ExtractedDocument doc = one_page({paragraph(text)});
  assess_quality(doc);
  EXPECT_TRUE(doc.pages[0].low_quality);
  EXPECT_NE(doc.pages[0].quality_note.find("few real words"), std::string::npos) << doc.pages[0].quality_note;
}

// --- Token estimate ---

TEST(TokenEstimate, CountsWordsAndPunctuation) {
  const TokenCounter count = estimated_token_counter();
  EXPECT_EQ(count(""), 0);
  EXPECT_EQ(count("hello world"), 3);               // ceil(2 * 1.3)
  EXPECT_EQ(count("Hello, world!"), 5);             // + 2 marks
  EXPECT_EQ(count("internationalization"), 2 + 3);  // 20 letters: 3 extra
  EXPECT_EQ(count("caf\u00e9 na\u00efve"), 3);      // accented letters continue words
  EXPECT_EQ(count("\u65e5\u672c\u8a9e"), 3);        // one per CJK character
}

// --- Chunking ---

struct PageFacts {
  std::string text;
  std::vector<size_t> byte_of;                                                   // code point -> byte
  std::vector<std::pair<int64_t, int64_t>> headings, table_rows, fitting_items;  // code point ranges
  std::vector<std::pair<int64_t, std::string>> section_paths;                    // (section start, heading path)
};

// Trimmed code point range of block `i` on a page.
std::pair<int64_t, int64_t> block_range(const PageFacts& facts, size_t byte_begin, size_t byte_end) {
  while (byte_begin < byte_end && is_space(facts.text[byte_begin])) ++byte_begin;
  while (byte_end > byte_begin && is_space(facts.text[byte_end - 1])) --byte_end;
  auto cp = [&](size_t byte) {
    return static_cast<int64_t>(std::lower_bound(facts.byte_of.begin(), facts.byte_of.end(), byte) -
                                facts.byte_of.begin());
  };
  return {cp(byte_begin), cp(byte_end)};
}

// Checks every invariant of chunk_document's output for `doc`.
void check_chunks(const ExtractedDocument& doc, const ChunkOptions& options, const TokenCounter& count) {
  const std::vector<Chunk> chunks = chunk_document(doc, options, count);
  std::vector<std::string> path;  // heading stack, by level
  std::vector<int> levels;
  size_t next_chunk = 0;
  for (const Page& page : doc.pages) {
    PageFacts facts;
    facts.text = page_text(page);
    facts.byte_of = code_point_byte_offsets(facts.text);
    size_t offset = 0;
    std::string current_path;
    auto joined = [&] {
      std::string s;
      for (const std::string& p : path) s += (s.empty() ? "" : " > ") + p;
      return s;
    };
    facts.section_paths.emplace_back(0, joined());
    for (const Block& b : page.blocks) {
      const auto range = block_range(facts, offset, offset + b.text.size());
      offset += b.text.size() + 1;
      if (range.first == range.second) continue;
      if (b.kind == BlockKind::Heading) {
        while (!levels.empty() && levels.back() >= b.level) {
          levels.pop_back();
          path.pop_back();
        }
        levels.push_back(b.level);
        path.push_back(b.text);
        facts.headings.push_back(range);
        facts.section_paths.emplace_back(range.first, joined());
      }
      if (b.kind == BlockKind::TableRow) facts.table_rows.push_back(range);
      if (b.kind == BlockKind::ListItem && count(b.text) <= options.chunk_tokens) facts.fitting_items.push_back(range);
    }

    std::vector<bool> covered(facts.byte_of.size(), false);
    const Chunk* previous = nullptr;
    for (; next_chunk < chunks.size() && chunks[next_chunk].page == page.number; ++next_chunk) {
      const Chunk& c = chunks[next_chunk];
      SCOPED_TRACE("page " + std::to_string(page.number) + " chunk [" + std::to_string(c.char_start) + ", " +
                   std::to_string(c.char_end) + "): " + c.text.substr(0, 80));
      ASSERT_LE(0, c.char_start);
      ASSERT_LT(c.char_start, c.char_end);
      ASSERT_LT(static_cast<size_t>(c.char_end), facts.byte_of.size());
      const size_t b0 = facts.byte_of[static_cast<size_t>(c.char_start)];
      const size_t b1 = facts.byte_of[static_cast<size_t>(c.char_end)];
      ASSERT_EQ(c.text, facts.text.substr(b0, b1 - b0));
      EXPECT_FALSE(is_space(c.text.front()));
      EXPECT_FALSE(is_space(c.text.back()));
      EXPECT_LE(count(c.text), c.tokens);  // tokens is the packing sum, an upper bound
      for (int64_t i = c.char_start; i < c.char_end; ++i) covered[static_cast<size_t>(i)] = true;

      for (const auto& [h0, h1] : facts.headings) {
        EXPECT_FALSE(c.char_start < h0 && h0 < c.char_end) << "crosses a heading";
      }
      bool is_single_row = false;
      for (const auto& [r0, r1] : facts.table_rows) {
        const bool overlaps = c.char_start < r1 && r0 < c.char_end;
        EXPECT_TRUE(!overlaps || (c.char_start <= r0 && r1 <= c.char_end)) << "splits a table row";
        is_single_row = is_single_row || (c.char_start == r0 && c.char_end == r1);
      }
      for (const auto& [r0, r1] : facts.fitting_items) {
        const bool overlaps = c.char_start < r1 && r0 < c.char_end;
        EXPECT_TRUE(!overlaps || (c.char_start <= r0 && r1 <= c.char_end)) << "splits a list item";
      }
      if (!is_single_row) {
        EXPECT_LE(c.tokens, options.chunk_tokens);
      }

      // The heading path is that of the section the chunk starts in.
      std::string expected_path;
      for (const auto& [start, p] : facts.section_paths) {
        if (start <= c.char_start) expected_path = p;
      }
      EXPECT_EQ(c.heading_path, expected_path);

      if (previous != nullptr) {
        EXPECT_GT(c.char_start, previous->char_start);
        EXPECT_GT(c.char_end, previous->char_end);
        if (c.char_start < previous->char_end) {
          EXPECT_EQ(c.heading_path, previous->heading_path);
          const size_t o0 = facts.byte_of[static_cast<size_t>(c.char_start)];
          const size_t o1 = facts.byte_of[static_cast<size_t>(previous->char_end)];
          EXPECT_LE(count(facts.text.substr(o0, o1 - o0)), std::min(options.overlap, options.chunk_tokens / 2));
        }
      }
      previous = &c;
    }
    for (size_t i = 0; i + 1 < facts.byte_of.size(); ++i) {
      if (!is_space(facts.text[facts.byte_of[i]])) {
        ASSERT_TRUE(covered[i]) << "page " << page.number << " loses the character at " << i << " in "
                                << facts.text.substr(facts.byte_of[i], 40);
      }
    }
  }
  EXPECT_EQ(next_chunk, chunks.size()) << "chunks out of page order";
}

std::string random_word(std::mt19937& rng) {
  static const std::vector<std::string> words = {"the",
                                                 "data",
                                                 "model",
                                                 "caf\u00e9",
                                                 "na\u00efve",
                                                 "\u65e5\u672c\u8a9e",
                                                 "\u00fcber",
                                                 "results",
                                                 "of",
                                                 "analysis",
                                                 "\U0001F600",
                                                 "x",
                                                 "2024",
                                                 "3.14",
                                                 "internationalization",
                                                 "e\u0301",
                                                 "\u0436\u0438\u0437\u043d\u044c"};
  std::uniform_int_distribution<size_t> pick(0, words.size() - 1);
  return words[pick(rng)];
}

std::string random_sentence(std::mt19937& rng, int words) {
  std::string s = "The";
  for (int i = 0; i < words; ++i) s += " " + random_word(rng);
  const char* ends[] = {".", "?", "!", ".\u201d", ".)"};
  return s + ends[rng() % 5];
}

ExtractedDocument random_document(std::mt19937& rng) {
  ExtractedDocument doc;
  const int pages = 1 + static_cast<int>(rng() % 4);
  for (int p = 1; p <= pages; ++p) {
    Page page = make_page(p, {});
    const int blocks = static_cast<int>(rng() % 25);
    for (int b = 0; b < blocks; ++b) {
      const unsigned kind = rng() % 12;
      if (kind == 0) {
        page.blocks.push_back(heading(1 + static_cast<int>(rng() % 3), "Heading " + std::to_string(rng() % 100)));
      } else if (kind <= 5) {
        std::string text;
        const int sentences = 1 + static_cast<int>(rng() % (rng() % 4 == 0 ? 40 : 4));
        for (int s = 0; s < sentences; ++s) text += (s ? " " : "") + random_sentence(rng, static_cast<int>(rng() % 30));
        page.blocks.push_back(paragraph(text));
      } else if (kind <= 7) {
        const int rows = 1 + static_cast<int>(rng() % 6);
        for (int r = 0; r < rows; ++r) {
          page.blocks.push_back({BlockKind::TableRow, r,
                                 random_word(rng) + " | " + random_word(rng) + " | " + std::to_string(rng() % 1000)});
        }
      } else if (kind <= 9) {
        page.blocks.push_back({BlockKind::ListItem, 1, random_sentence(rng, static_cast<int>(rng() % 12))});
      } else if (kind == 10) {
        std::string code;
        const int lines = 1 + static_cast<int>(rng() % 60);
        for (int l = 0; l < lines; ++l) code += "  call(" + random_word(rng) + ", " + std::to_string(l) + ");\n";
        page.blocks.push_back({BlockKind::Code, 0, code});
      } else {
        // Awkward input: an unbroken word far over any budget, odd whitespace, an empty block.
        const unsigned odd = rng() % 3;
        if (odd == 0) page.blocks.push_back(paragraph("see " + std::string(600 + rng() % 400, 'z') + " end"));
        if (odd == 1) page.blocks.push_back(paragraph("  padded \n text\t "));
        if (odd == 2) page.blocks.push_back(paragraph(""));
      }
    }
    doc.pages.push_back(std::move(page));
  }
  return doc;
}

TEST(Chunk, RandomDocumentsKeepInvariants) {
  std::mt19937 rng(20240611);
  const TokenCounter estimate = estimated_token_counter();
  // A counter that rounds per call the other way: one token per 4 bytes, at least one.
  const TokenCounter bytes = [](std::string_view s) { return s.empty() ? 0 : static_cast<int>((s.size() + 3) / 4); };
  for (int round = 0; round < 150; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    ExtractedDocument doc = random_document(rng);
    if (round % 2 == 0) normalise_document(doc);
    const ChunkOptions options{16 + static_cast<int>(rng() % 200), 0};
    ChunkOptions with_overlap = options;
    with_overlap.overlap = static_cast<int>(rng() % static_cast<unsigned>(options.chunk_tokens));
    check_chunks(doc, options, estimate);
    check_chunks(doc, with_overlap, estimate);
    check_chunks(doc, with_overlap, bytes);
    if (HasFatalFailure()) return;
  }
}

TEST(Chunk, HeadingPaths) {
  ExtractedDocument doc;
  doc.pages.push_back(make_page(1, {paragraph("Preface text."), heading(1, "Chapter 1"), paragraph("Intro."),
                                    heading(2, "Methods"), paragraph("How.")}));
  doc.pages.push_back(
      make_page(2, {paragraph("More on methods."), heading(2, "Results"), paragraph("What."), heading(3, "Detail"),
                    paragraph("Fine print."), heading(1, "Chapter 2"), paragraph("Next.")}));
  const std::vector<Chunk> chunks = chunk_document(doc, {}, estimated_token_counter());
  std::vector<std::pair<std::string, std::string>> got;
  for (const Chunk& c : chunks) got.emplace_back(c.heading_path, c.text);
  const std::vector<std::pair<std::string, std::string>> want = {
      {"", "Preface text."},
      {"Chapter 1", "Chapter 1\nIntro."},
      {"Chapter 1 > Methods", "Methods\nHow."},
      {"Chapter 1 > Methods", "More on methods."},
      {"Chapter 1 > Results", "Results\nWhat."},
      {"Chapter 1 > Results > Detail", "Detail\nFine print."},
      {"Chapter 2", "Chapter 2\nNext."},
  };
  EXPECT_EQ(got, want);
  EXPECT_EQ(chunks[3].page, 2);
  EXPECT_EQ(chunks[3].char_start, 0);
}

TEST(Chunk, OverlapIsPresentAndBounded) {
  std::string text;
  for (int i = 0; i < 60; ++i) text += "Sentence number " + std::to_string(i) + " says little. ";
  ExtractedDocument doc = one_page({heading(1, "Notes"), paragraph(text)});
  normalise_document(doc);
  const TokenCounter count = estimated_token_counter();
  const ChunkOptions options{64, 16};
  const std::vector<Chunk> chunks = chunk_document(doc, options, count);
  ASSERT_GE(chunks.size(), 4u);
  EXPECT_TRUE(chunks[0].text.starts_with("Notes\nSentence number 0"));
  const std::string page = page_text(doc.pages[0]);  // ASCII: code points are bytes
  for (size_t i = 1; i < chunks.size(); ++i) {
    ASSERT_LT(chunks[i].char_start, chunks[i - 1].char_end) << "no overlap before chunk " << i;
    const std::string shared = page.substr(static_cast<size_t>(chunks[i].char_start),
                                           static_cast<size_t>(chunks[i - 1].char_end - chunks[i].char_start));
    EXPECT_GT(count(shared), 0);
    EXPECT_LE(count(shared), options.overlap);
    EXPECT_TRUE(shared.starts_with("Sentence number")) << shared;  // whole sentences
  }
  // overlap 0 disables it.
  const std::vector<Chunk> plain = chunk_document(doc, {64, 0}, count);
  for (size_t i = 1; i < plain.size(); ++i) EXPECT_GE(plain[i].char_start, plain[i - 1].char_end);
}

TEST(Chunk, LongBlocksSplitAtSentencesThenWords) {
  std::string long_sentence = "This";
  for (int i = 0; i < 200; ++i) long_sentence += " word";
  ExtractedDocument doc = one_page({paragraph("Short one. Another short one. " + long_sentence + ". Tail here.")});
  const TokenCounter count = estimated_token_counter();
  const std::vector<Chunk> chunks = chunk_document(doc, {32, 0}, count);
  ASSERT_GE(chunks.size(), 4u);
  // The long sentence cannot join the short ones; its last words and the next sentence pack together.
  EXPECT_EQ(chunks.front().text, "Short one. Another short one.");
  EXPECT_TRUE(chunks[1].text.starts_with("This word word"));
  EXPECT_TRUE(chunks.back().text.ends_with("word. Tail here.")) << chunks.back().text;
  for (size_t i = 0; i < chunks.size(); ++i) {
    EXPECT_LE(chunks[i].tokens, 32);
    // Runs of words are counted as runs, not word by word, so they fill their chunks.
    if (i > 0 && i + 1 < chunks.size()) {
      EXPECT_GE(chunks[i].tokens, 28) << chunks[i].text;
    }
  }
}

TEST(Chunk, TableRowsStayWholeAndCodeSplitsAtLines) {
  std::vector<Block> blocks;
  for (int r = 0; r < 40; ++r) blocks.push_back({BlockKind::TableRow, r, "cell " + std::to_string(r) + " | value"});
  std::string code;
  for (int l = 0; l < 50; ++l) code += "int v" + std::to_string(l) + " = f(x);\n";
  blocks.push_back({BlockKind::Code, 0, code});
  ExtractedDocument doc = one_page(blocks);
  const std::vector<Chunk> chunks = chunk_document(doc, {32, 0}, estimated_token_counter());
  ASSERT_GE(chunks.size(), 4u);
  int code_chunks = 0;
  for (const Chunk& c : chunks) {
    // Every line of every chunk is a whole row or a whole line of code.
    size_t start = 0;
    while (start <= c.text.size()) {
      size_t end = c.text.find('\n', start);
      if (end == std::string::npos) end = c.text.size();
      const std::string line = c.text.substr(start, end - start);
      const bool row = line.starts_with("cell ") && line.ends_with(" | value");
      const bool code_line = line.starts_with("int v") && line.ends_with(" = f(x);");
      EXPECT_TRUE(row || code_line) << line;
      code_chunks += code_line && start == 0;
      start = end + 1;
    }
  }
  EXPECT_GE(code_chunks, 3);  // the code block was cut at line ends
}

TEST(Chunk, EmptyPagesGiveNoChunks) {
  ExtractedDocument doc;
  doc.pages.push_back(make_page(1, {}));
  doc.pages.push_back(make_page(2, {paragraph("  "), paragraph("")}));
  EXPECT_TRUE(chunk_document(doc, {}, estimated_token_counter()).empty());
}

TEST(Chunk, RejectsBadOptions) {
  const ExtractedDocument doc = one_page({paragraph("text")});
  const TokenCounter count = estimated_token_counter();
  auto message_of = [&](ChunkOptions options) -> std::string {
    try {
      chunk_document(doc, options, count);
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::InvalidArgument);
      return e.what();
    }
    return "no error";
  };
  EXPECT_NE(message_of({15, 0}).find("--chunk-tokens"), std::string::npos);
  EXPECT_NE(message_of({64, -1}).find("--overlap"), std::string::npos);
  EXPECT_NE(message_of({64, 64}).find("--overlap"), std::string::npos);
  EXPECT_NO_THROW(chunk_document(doc, {16, 15}, count));
  EXPECT_EQ(chunk_document(doc, {16, 15}, TokenCounter()).size(), 1u);  // no counter: the estimate
}

}  // namespace
}  // namespace vireo
