// PDF text layers through poppler-cpp. poppler gives words in reading order with their boxes and
// fonts; from those we rebuild lines, paragraphs, headings (by font size and weight), list items
// and simple tables. Pages without a usable text layer go to OCR.
#include <poppler/cpp/poppler-document.h>
#include <poppler/cpp/poppler-global.h>
#include <poppler/cpp/poppler-image.h>
#include <poppler/cpp/poppler-page-renderer.h>
#include <poppler/cpp/poppler-page.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <map>
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
// In ocr.cpp: OCR of an 8-bit grey image.
OcrResult ocr_gray8(const uint8_t* pixels, int width, int height, int bytes_per_line, int dpi,
                    const std::string& language);

namespace {

void ignore_poppler_message(const std::string&, void*) {}

void silence_poppler() {
  static std::once_flag once;
  std::call_once(once, [] { poppler::set_debug_error_function(ignore_poppler_message, nullptr); });
}

std::string to_utf8(const poppler::ustring& s) {
  if (s.empty()) return {};
  const poppler::byte_array bytes = s.to_utf8();
  std::string out(bytes.begin(), bytes.end());
  // Some producers end strings with NULs; they carry nothing.
  while (!out.empty() && out.back() == '\0') out.pop_back();
  return out;
}

// A word with its box in "flow" coordinates: u runs along the text, v across the lines, so
// rotated text is handled like upright text.
struct Word {
  std::string text;
  double u0 = 0, u1 = 0, v0 = 0, v1 = 0;
  double size = 0;
  int rotation = 0;
  bool bold = false;
  bool space_after = false;
};

struct Line {
  std::vector<Word> words;
  double u0 = 0, u1 = 0, v0 = 0, v1 = 0;
  double size = 0;  // the size most of its characters have
  int rotation = 0;
  bool bold = false;  // every word bold
  size_t chars = 0;
  std::string text;
  int table = -1;      // index of the table it belongs to, or -1
  int table_row = -1;  // index of its row there
  double height() const { return std::max(v1 - v0, 0.1); }
};

bool is_bold_font(const std::string& name) {
  std::string lower(name);
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
  return lower.find("bold") != std::string::npos || lower.find("black") != std::string::npos ||
         lower.find("heavy") != std::string::npos || lower.find("semibold") != std::string::npos ||
         lower.find(",bd") != std::string::npos;
}

size_t utf8_length(std::string_view s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

size_t count_alnum(std::string_view s) {
  size_t n = 0;
  for (unsigned char c : s) n += std::isalnum(c) != 0 || c >= 0xC0;  // a multibyte lead counts once
  return n;
}

Word make_word(const poppler::text_box& box) {
  Word w;
  w.text = to_utf8(box.text());
  const poppler::rectf r = box.bbox();
  const double x0 = r.left(), x1 = r.right(), y0 = r.top(), y1 = r.bottom();
  w.rotation = ((box.rotation() % 4) + 4) % 4;
  switch (w.rotation) {
    case 0: w.u0 = x0, w.u1 = x1, w.v0 = y0, w.v1 = y1; break;
    case 1: w.u0 = y0, w.u1 = y1, w.v0 = -x1, w.v1 = -x0; break;
    case 2: w.u0 = -x1, w.u1 = -x0, w.v0 = -y1, w.v1 = -y0; break;
    default: w.u0 = -y1, w.u1 = -y0, w.v0 = x0, w.v1 = x1; break;
  }
  if (box.has_font_info()) {
    w.size = box.get_font_size();
    w.bold = is_bold_font(box.get_font_name(0));
  }
  if (!(w.size > 0.5) || !std::isfinite(w.size)) w.size = std::max(w.v1 - w.v0, 1.0);
  w.space_after = box.has_space_after();
  return w;
}

// Does `w` continue the line that ends with `last`? Same direction, overlapping across the text,
// and not jumping back along it.
bool continues_line(const Line& line, const Word& w) {
  const Word& last = line.words.back();
  if (w.rotation != last.rotation) return false;
  const double overlap = std::min(line.v1, w.v1) - std::max(line.v0, w.v0);
  const double min_height = std::min(line.v1 - line.v0, w.v1 - w.v0);
  if (overlap < 0.5 * min_height) return false;
  return w.u0 >= last.u1 - 0.5 * std::max(last.size, w.size);
}

void finish_line(Line& line) {
  std::map<double, size_t> size_chars;
  line.bold = true;
  for (size_t i = 0; i < line.words.size(); ++i) {
    const Word& w = line.words[i];
    if (i > 0) {
      const Word& prev = line.words[i - 1];
      const double gap = w.u0 - prev.u1;
      if (prev.space_after || gap > 0.15 * std::min(prev.size, w.size)) line.text += ' ';
    }
    line.text += w.text;
    const size_t n = utf8_length(w.text);
    line.chars += n;
    size_chars[std::round(w.size * 2) / 2] += n;
    line.bold = line.bold && w.bold;
  }
  size_t best = 0;
  for (const auto& [size, n] : size_chars) {
    if (n >= best) best = n, line.size = size;
  }
}

std::vector<Line> build_lines(std::vector<Word>& words) {
  std::vector<Line> lines;
  for (Word& w : words) {
    if (w.text.empty()) continue;
    if (lines.empty() || !continues_line(lines.back(), w)) {
      if (!lines.empty()) finish_line(lines.back());
      Line line;
      line.u0 = w.u0, line.u1 = w.u1, line.v0 = w.v0, line.v1 = w.v1;
      line.rotation = w.rotation;
      lines.push_back(std::move(line));
    }
    Line& line = lines.back();
    line.u0 = std::min(line.u0, w.u0), line.u1 = std::max(line.u1, w.u1);
    line.v0 = std::min(line.v0, w.v0), line.v1 = std::max(line.v1, w.v1);
    line.words.push_back(std::move(w));
  }
  if (!lines.empty()) finish_line(lines.back());
  return lines;
}

// ---- tables -------------------------------------------------------------------------------

// A stretch of words on one physical row with no large gap inside.
struct Segment {
  double u0, u1;
  std::string text;
  size_t line_index;
};

struct PhysicalRow {
  std::vector<size_t> lines;  // indices into the page's lines
  std::vector<Segment> segments;
  double v0 = 0, v1 = 0, size = 0;
  int rotation = 0;
};

std::vector<PhysicalRow> physical_rows(const std::vector<Line>& lines) {
  std::vector<size_t> order(lines.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    if (lines[a].rotation != lines[b].rotation) return lines[a].rotation < lines[b].rotation;
    return lines[a].v0 + lines[a].v1 < lines[b].v0 + lines[b].v1;
  });
  std::vector<PhysicalRow> rows;
  for (size_t idx : order) {
    const Line& l = lines[idx];
    bool joined = false;
    if (!rows.empty()) {
      PhysicalRow& row = rows.back();
      const double overlap = std::min(row.v1, l.v1) - std::max(row.v0, l.v0);
      if (row.rotation == l.rotation && overlap > 0.5 * std::min(row.v1 - row.v0, l.height())) {
        row.lines.push_back(idx);
        row.v0 = std::min(row.v0, l.v0), row.v1 = std::max(row.v1, l.v1);
        row.size = std::max(row.size, l.size);
        joined = true;
      }
    }
    if (!joined) {
      PhysicalRow row;
      row.lines.push_back(idx);
      row.v0 = l.v0, row.v1 = l.v1, row.size = l.size, row.rotation = l.rotation;
      rows.push_back(std::move(row));
    }
  }
  // Cut each row into segments at gaps wider than about two spaces' worth of the font.
  for (PhysicalRow& row : rows) {
    std::vector<std::pair<const Word*, size_t>> words;
    for (size_t li : row.lines)
      for (const Word& w : lines[li].words) words.emplace_back(&w, li);
    std::stable_sort(words.begin(), words.end(), [](const auto& a, const auto& b) { return a.first->u0 < b.first->u0; });
    for (size_t i = 0; i < words.size(); ++i) {
      const Word& w = *words[i].first;
      const bool new_segment =
          row.segments.empty() || w.u0 - row.segments.back().u1 > 1.2 * w.size || w.u0 < row.segments.back().u1 - 0.5 * w.size;
      if (new_segment) {
        row.segments.push_back({w.u0, w.u1, w.text, words[i].second});
      } else {
        Segment& s = row.segments.back();
        s.text += ' ';
        s.text += w.text;
        s.u1 = std::max(s.u1, w.u1);
      }
    }
  }
  return rows;
}

// Table cells are short; columns of running text (newspapers, the Federal Register) are not.
bool tabular(const PhysicalRow& row) {
  if (row.segments.size() < 2) return false;
  if (row.segments.size() >= 6) return true;
  size_t chars = 0;
  for (const Segment& s : row.segments) chars += utf8_length(s.text);
  return chars <= 26 * row.segments.size();
}

// Segments of `row` that line up (left, right or centre) with a segment of `prev`.
size_t aligned_segments(const PhysicalRow& row, const PhysicalRow& prev) {
  size_t n = 0;
  const double tol = std::max(row.size, 4.0);
  for (const Segment& s : row.segments) {
    for (const Segment& p : prev.segments) {
      if (std::abs(s.u0 - p.u0) < tol || std::abs(s.u1 - p.u1) < tol ||
          std::abs((s.u0 + s.u1) - (p.u0 + p.u1)) < 2 * tol) {
        ++n;
        break;
      }
    }
  }
  return n;
}

struct Table {
  std::vector<size_t> rows;  // indices into the page's physical rows
};

std::vector<Table> find_tables(std::vector<Line>& lines, const std::vector<PhysicalRow>& rows) {
  std::vector<Table> tables;
  size_t i = 0;
  while (i < rows.size()) {
    if (!tabular(rows[i])) {
      ++i;
      continue;
    }
    size_t j = i + 1;
    while (j < rows.size() && tabular(rows[j]) && rows[j].rotation == rows[j - 1].rotation) {
      const double gap = rows[j].v0 - rows[j - 1].v1;
      const double height = std::max(rows[j - 1].v1 - rows[j - 1].v0, 1.0);
      if (gap > 2.5 * height) break;
      const size_t need = std::min<size_t>(2, std::min(rows[j].segments.size(), rows[j - 1].segments.size()));
      if (aligned_segments(rows[j], rows[j - 1]) < need) break;
      ++j;
    }
    if (j - i >= 3) {
      Table t;
      for (size_t k = i; k < j; ++k) t.rows.push_back(k);
      const int table_index = static_cast<int>(tables.size());
      for (size_t k = 0; k < t.rows.size(); ++k)
        for (size_t li : rows[t.rows[k]].lines) lines[li].table = table_index, lines[li].table_row = static_cast<int>(k);
      tables.push_back(std::move(t));
    }
    i = j;
  }
  return tables;
}

// ---- blocks -------------------------------------------------------------------------------

bool starts_list_item(const Line& line) {
  const std::string& first = line.words.front().text;
  static const std::string_view bullets[] = {"•", "-", "*", "–", "◦", "▪", "●", "○", "■", "·", "‣",
                                              "\uF0B7", "\uF0A7"};
  for (std::string_view b : bullets) {
    if (first == b) return line.words.size() > 1;
    if (first.size() > b.size() && first.starts_with(b) && (b == "•" || b == "◦" || b == "▪" || b == "●")) return true;
  }
  // "1." "12)" "a)" "(a)" "(iv)"
  std::string_view s(first);
  if (s.size() >= 2 && s.size() <= 5) {
    if (s.front() == '(' && s.back() == ')') return line.words.size() > 1;
    const char last = s.back();
    const std::string_view stem = s.substr(0, s.size() - 1);
    const bool digits = std::all_of(stem.begin(), stem.end(), [](unsigned char c) { return std::isdigit(c); });
    if (digits && stem.size() <= 3 && (last == '.' || last == ')')) return line.words.size() > 1;
    if (stem.size() == 1 && std::isalpha(static_cast<unsigned char>(stem[0])) && last == ')') return line.words.size() > 1;
  }
  return false;
}

void append_line_text(std::string& text, const std::string& line) {
  if (text.empty()) {
    text = line;
    return;
  }
  // A word broken at a line end: keep the hyphen and the two halves together.
  const bool hyphen = text.size() >= 2 && text.back() == '-' && std::isalpha(static_cast<unsigned char>(text[text.size() - 2]));
  if (!hyphen) text += ' ';
  text += line;
}

bool is_bullet(std::string_view s) {
  static const std::string_view bullets[] = {"•", "◦", "▪", "●", "○", "■", "·", "‣", "–", "-", "*", "\uF0B7", "\uF0A7"};
  return std::find(std::begin(bullets), std::end(bullets), s) != std::end(bullets);
}

// poppler often reads a column of bullets as a block of its own, away from the items' text. Put
// each lone bullet back at the start of the line it marks: the nearest line just to its right.
void attach_lone_bullets(std::vector<Line>& lines) {
  std::vector<bool> drop(lines.size(), false);
  for (size_t i = 0; i < lines.size(); ++i) {
    Line& bullet = lines[i];
    if (bullet.words.size() != 1 || !is_bullet(bullet.words[0].text)) continue;
    size_t best = lines.size();
    double best_distance = 4.0 * bullet.words[0].size + 24.0;
    for (size_t j = 0; j < lines.size(); ++j) {
      const Line& target = lines[j];
      if (j == i || drop[j] || target.rotation != bullet.rotation) continue;
      if (target.words.size() == 1 && is_bullet(target.words[0].text)) continue;
      const double overlap = std::min(target.v1, bullet.v1) - std::max(target.v0, bullet.v0);
      if (overlap < 0.4 * std::min(target.height(), bullet.height())) continue;
      const double distance = target.u0 - bullet.u1;
      if (distance >= -1.0 && distance < best_distance) best_distance = distance, best = j;
    }
    if (best == lines.size()) continue;
    Line& target = lines[best];
    Word w = bullet.words[0];
    w.space_after = true;
    target.words.insert(target.words.begin(), std::move(w));
    target.u0 = std::min(target.u0, bullet.u0);
    target.text = target.words[0].text + " " + target.text;
    target.chars += 2;
    drop[i] = true;
  }
  size_t kept = 0;
  for (size_t i = 0; i < lines.size(); ++i)
    if (!drop[i]) {
      if (kept != i) lines[kept] = std::move(lines[i]);
      ++kept;
    }
  lines.resize(kept);
}

// A page's lines with the tables found among them.
struct PageLayout {
  std::vector<Line> lines;
  std::vector<PhysicalRow> rows;
  std::vector<Table> tables;
};

PageLayout layout_page(std::vector<Line> lines) {
  PageLayout layout;
  layout.lines = std::move(lines);
  attach_lone_bullets(layout.lines);
  layout.rows = physical_rows(layout.lines);
  layout.tables = find_tables(layout.lines, layout.rows);
  return layout;
}

// Font statistics over the whole document, so that heading levels agree from page to page and a
// page of footnotes does not turn the body text into headings.
struct FontStats {
  double body = 0;
  bool body_bold = false;
  std::vector<double> heading_sizes;  // largest first

  bool heading_by_size(const Line& l) const {
    return l.size >= body * 1.18 && l.size - body >= 1.0 && l.chars <= 200 && count_alnum(l.text) >= 2;
  }
  int size_level(double size) const {
    const auto it = std::find(heading_sizes.begin(), heading_sizes.end(), size);
    return std::min<int>(static_cast<int>(it - heading_sizes.begin()) + 1, 6);
  }
  int bold_level() const { return std::min<int>(static_cast<int>(heading_sizes.size()) + 1, 6); }
};

FontStats font_stats(const std::vector<PageLayout>& pages) {
  FontStats stats;
  std::map<double, size_t> size_chars;
  size_t bold_chars = 0, all_chars = 0;
  for (const PageLayout& page : pages) {
    for (const Line& l : page.lines) {
      size_chars[l.size] += l.chars;
      all_chars += l.chars;
      if (l.bold) bold_chars += l.chars;
    }
  }
  size_t best = 0;
  for (const auto& [size, n] : size_chars) {
    if (n > best) best = n, stats.body = size;
  }
  stats.body_bold = bold_chars * 2 > all_chars;
  for (const PageLayout& page : pages)
    for (const Line& l : page.lines)
      if (l.table < 0 && stats.heading_by_size(l)) stats.heading_sizes.push_back(l.size);
  std::sort(stats.heading_sizes.begin(), stats.heading_sizes.end(), std::greater<>());
  stats.heading_sizes.erase(std::unique(stats.heading_sizes.begin(), stats.heading_sizes.end()),
                            stats.heading_sizes.end());
  return stats;
}

std::vector<Block> page_blocks(PageLayout& layout, const FontStats& fonts) {
  std::vector<Block> blocks;
  std::vector<Line>& lines = layout.lines;
  const std::vector<Table>& tables = layout.tables;
  if (lines.empty()) return blocks;
  auto heading_by_size = [&](const Line& l) { return fonts.heading_by_size(l); };
  const bool body_bold = fonts.body_bold;

  double list_left = 1e300;
  for (const Line& l : lines)
    if (l.table < 0 && starts_list_item(l)) list_left = std::min(list_left, l.u0);

  std::vector<bool> table_emitted(tables.size(), false);
  Block current;
  bool open = false;
  const Line* prev = nullptr;
  double item_text_u0 = 0;
  double block_u0 = 0, block_u1 = 0;  // the open block's extent along the text
  int block_lines = 0;
  auto flush = [&] {
    // Many lines of large type are body text set large, not a heading.
    if (current.kind == BlockKind::Heading && (block_lines > 3 || current.text.size() > 300)) {
      current.kind = BlockKind::Paragraph;
      current.level = 0;
    }
    if (open && !current.text.empty()) blocks.push_back(std::move(current));
    block_lines = 0;
    current = Block{};
    open = false;
    prev = nullptr;
  };

  for (size_t i = 0; i < lines.size(); ++i) {
    Line& l = lines[i];
    if (l.table >= 0) {
      if (!table_emitted[static_cast<size_t>(l.table)]) {
        flush();
        table_emitted[static_cast<size_t>(l.table)] = true;
        const Table& t = tables[static_cast<size_t>(l.table)];
        for (size_t r = 0; r < t.rows.size(); ++r) {
          std::string text;
          for (const Segment& s : layout.rows[t.rows[r]].segments) {
            if (!text.empty()) text += " | ";
            text += s.text;
          }
          blocks.push_back({BlockKind::TableRow, static_cast<int>(r), std::move(text)});
        }
      }
      continue;
    }
    const bool big = heading_by_size(l);
    const bool bold_heading = !big && !body_bold && l.bold && l.chars <= 80 && count_alnum(l.text) >= 2;
    const bool list_start = starts_list_item(l);

    // Does this line continue the open block?
    bool continues = false;
    if (open && prev != nullptr && prev->rotation == l.rotation && !list_start) {
      const double h = prev->height();
      const double gap = l.v0 - prev->v1;
      const bool near = gap > -0.5 * h && gap < 0.8 * h;
      const bool overlaps = std::min(l.u1, current.kind == BlockKind::ListItem ? 1e300 : prev->u1) >
                            std::max(l.u0, prev->u0 - 4 * prev->size) - 1e-9 && l.u0 < prev->u1;
      const bool same_size = std::abs(l.size - prev->size) <= 0.15 * std::max(l.size, 1.0);
      if (near && overlaps && same_size) {
        if (current.kind == BlockKind::Heading) {
          // Only a heading that wrapped goes on: a long line, and the next one aligned with it.
          const bool aligned = std::abs(l.u0 - prev->u0) < prev->size ||
                               std::abs((l.u0 + l.u1) - (prev->u0 + prev->u1)) < 2 * prev->size;
          continues = (big || bold_heading) && l.size == prev->size && prev->chars >= 25 && aligned;
        } else if (current.kind == BlockKind::ListItem) {
          continues = !big && !bold_heading && l.u0 >= item_text_u0 - 2.0;
        } else {
          // A line that ends a sentence well short of the block's right edge ends the paragraph.
          const bool ended_early = prev->u1 < block_u1 - 0.15 * (block_u1 - block_u0) && !prev->text.empty() &&
                                   std::string_view(".:;!?").find(prev->text.back()) != std::string_view::npos;
          continues = !big && !(bold_heading && !prev->bold) && !ended_early;
        }
      }
    }
    if (continues) {
      append_line_text(current.text, l.text);
      block_u0 = std::min(block_u0, l.u0), block_u1 = std::max(block_u1, l.u1);
      ++block_lines;
      prev = &l;
      continue;
    }
    flush();
    open = true;
    prev = &l;
    current.text = l.text;
    block_u0 = l.u0, block_u1 = l.u1;
    block_lines = 1;
    if (big) {
      current.kind = BlockKind::Heading;
      current.level = fonts.size_level(l.size);
    } else if (bold_heading) {
      current.kind = BlockKind::Heading;
      current.level = fonts.bold_level();
    } else if (list_start) {
      current.kind = BlockKind::ListItem;
      current.level = std::clamp(1 + static_cast<int>(std::lround((l.u0 - list_left) / 18.0)), 1, 6);
      item_text_u0 = l.words.size() > 1 ? l.words[1].u0 : l.u0;
    } else {
      current.kind = BlockKind::Paragraph;
    }
  }
  flush();
  return blocks;
}

// ---- OCR of a rendered page ---------------------------------------------------------------

void ocr_page(const poppler::page& page, const ExtractOptions& options, Page& out) {
  const poppler::rectf rect = page.page_rect();
  // Keep huge pages to about 120 megapixels: beyond that OCR gains nothing and memory explodes.
  double dpi = options.ocr_dpi;
  const double area_in2 = std::max(rect.width(), 1.0) * std::max(rect.height(), 1.0) / (72.0 * 72.0);
  if (area_in2 * dpi * dpi > 120e6) dpi = std::sqrt(120e6 / area_in2);
  poppler::page_renderer renderer;
  renderer.set_render_hint(poppler::page_renderer::antialiasing, true);
  renderer.set_render_hint(poppler::page_renderer::text_antialiasing, true);
  renderer.set_image_format(poppler::image::format_gray8);
  const poppler::image img = renderer.render_page(&page, dpi, dpi);
  if (!img.is_valid() || img.width() <= 0 || img.height() <= 0) return;
  OcrResult r = ocr_gray8(reinterpret_cast<const uint8_t*>(img.const_data()), img.width(), img.height(),
                          img.bytes_per_row(), static_cast<int>(std::lround(dpi)), options.ocr_language);
  out.blocks = std::move(r.blocks);
  out.ocr = true;
  out.ocr_confidence = r.confidence;
}

size_t letters_and_digits(const std::vector<Line>& lines) {
  size_t n = 0;
  for (const Line& l : lines) n += count_alnum(l.text);
  return n;
}

}  // namespace

ExtractedDocument extract_pdf(std::span<const uint8_t> bytes, const ExtractOptions& options) {
  silence_poppler();
  if (bytes.size() > static_cast<size_t>(INT_MAX)) fail(ErrorCode::Unsupported, "PDF larger than 2 GiB");
  std::unique_ptr<poppler::document> pdf(poppler::document::load_from_raw_data(
      reinterpret_cast<const char*>(bytes.data()), static_cast<int>(bytes.size())));
  if (!pdf) fail(ErrorCode::InvalidFile, "malformed PDF: poppler could not parse it");
  if (pdf->is_locked()) fail(ErrorCode::InvalidFile, "encrypted PDF (password required)");

  ExtractedDocument doc;
  doc.title = to_utf8(pdf->info_key("Title"));
  // Titles are often padded or hold only a file name placeholder; keep what has letters.
  while (!doc.title.empty() && std::isspace(static_cast<unsigned char>(doc.title.back()))) doc.title.pop_back();
  if (count_alnum(doc.title) == 0) doc.title.clear();

  const int page_count = pdf->pages();
  if (page_count <= 0) fail(ErrorCode::InvalidFile, "malformed PDF: no pages");
  doc.pages.resize(static_cast<size_t>(page_count));
  // Pass 1: text layers (or OCR); pass 2, once the document's fonts are known: blocks.
  std::vector<PageLayout> layouts(static_cast<size_t>(page_count));
  for (int i = 0; i < page_count; ++i) {
    Page& out = doc.pages[static_cast<size_t>(i)];
    out.number = i + 1;
    std::unique_ptr<poppler::page> page(pdf->create_page(i));
    if (!page) continue;
    std::vector<Line> lines;
    if (options.ocr != OcrMode::Always) {
      std::vector<poppler::text_box> boxes = page->text_list(poppler::page::text_list_include_font);
      std::vector<Word> words;
      words.reserve(boxes.size());
      for (const poppler::text_box& box : boxes) words.push_back(make_word(box));
      boxes.clear();
      lines = build_lines(words);
    }
    const bool needs_ocr =
        options.ocr == OcrMode::Always ||
        (options.ocr == OcrMode::Auto && letters_and_digits(lines) < static_cast<size_t>(std::max(options.ocr_min_chars, 0)));
    if (needs_ocr) ocr_page(*page, options, out);
    // Where OCR found nothing, whatever text layer there was still counts.
    if (out.blocks.empty()) layouts[static_cast<size_t>(i)] = layout_page(std::move(lines));
  }
  const FontStats fonts = font_stats(layouts);
  for (size_t i = 0; i < layouts.size(); ++i) {
    if (!layouts[i].lines.empty()) doc.pages[i].blocks = page_blocks(layouts[i], fonts);
  }
  return doc;
}

}  // namespace extract_detail
}  // namespace vireo
