// Structure-aware chunking. Each page is cut into sections at headings; a section's blocks are
// packed greedily into chunks of at most `chunk_tokens` tokens, counting each block once. Blocks
// over the budget are cut into smaller units first (sentences, then words, then code points; code
// at line ends), table rows never. Consecutive chunks of a section share about `overlap` tokens.
//
// Every chunk is one contiguous, trimmed range of page_text(page), so its offsets can be checked.
// Chunk::tokens is the sum used while packing: the units' counts plus the count of a "\n" per
// join. That is never below count_tokens(chunk.text) for the estimate (and, near enough, for real
// tokenizers), and it spares counting every chunk's text a second time.
#include <algorithm>
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "vireo/core/error.h"
#include "vireo/documents/chunk.h"

namespace vireo {

namespace {

bool is_space_byte(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

bool is_continuation_byte(char c) {
  return (static_cast<unsigned char>(c) & 0xC0) == 0x80;
}

// What one byte means to the estimate.
enum ByteClass : uint8_t { kSeparator, kWordByte, kPunctuation, kContinuation, kWideLead };

constexpr std::array<uint8_t, 256> make_byte_classes() {
  std::array<uint8_t, 256> classes{};
  for (int c = 0; c < 256; ++c) {
    uint8_t k = kSeparator;
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) {
      k = kWordByte;
    } else if (c > 0x20 && c < 0x7F) {
      k = kPunctuation;
    } else if (c >= 0x80 && c < 0xC0) {
      k = kContinuation;
    } else if (c >= 0xC0 && c < 0xE0) {
      k = kWordByte;
    } else if (c >= 0xE0) {
      k = kWideLead;
    }
    classes[static_cast<size_t>(c)] = k;
  }
  return classes;
}
constexpr std::array<uint8_t, 256> kByteClasses = make_byte_classes();

// Words (runs of letters and digits) cost about 1.3 tokens, plus one per six characters of a long
// word; ASCII punctuation marks one each. Two-byte UTF-8 letters (Latin with accents, Greek,
// Cyrillic, Arabic, Hebrew) continue words; a three- or four-byte character (CJK, most Indic
// scripts, typographic punctuation) is a token on its own. One branch-light pass, no allocation.
int estimate_tokens(std::string_view text) {
  int64_t words = 0, punctuation = 0, long_word_extra = 0, wide = 0, run = 0;
  for (const char ch : text) {
    const uint8_t k = kByteClasses[static_cast<unsigned char>(ch)];
    if (k == kContinuation) continue;  // lengths are in code points
    const bool word = k == kWordByte;
    words += (word && run == 0) ? 1 : 0;
    long_word_extra += (!word && run > 0) ? run / 6 : 0;
    run = word ? run + 1 : 0;
    punctuation += k == kPunctuation ? 1 : 0;
    wide += k == kWideLead ? 1 : 0;
  }
  long_word_extra += run / 6;
  const int64_t total = (words * 13 + 9) / 10 + punctuation + long_word_extra + wide;
  return static_cast<int>(std::min<int64_t>(total, 1 << 30));
}

struct Span {
  size_t begin = 0;
  size_t end = 0;
  bool empty() const { return begin >= end; }
};

Span trimmed(std::string_view text, size_t begin, size_t end) {
  while (begin < end && is_space_byte(text[begin])) ++begin;
  while (end > begin && is_space_byte(text[end - 1])) --end;
  return {begin, end};
}

// Byte length of a closing quote or bracket at `i` that may follow a sentence's final mark, or 0.
size_t closer_length(std::string_view text, size_t i, size_t end) {
  const char c = text[i];
  if (c == '"' || c == '\'' || c == ')' || c == ']') return 1;
  const std::string_view rest = text.substr(i, end - i);
  if (rest.starts_with("\u201D") || rest.starts_with("\u2019")) return 3;  // ” ’
  if (rest.starts_with("\u00BB")) return 2;                                // »
  return 0;
}

bool starts_uppercase(std::string_view text, size_t i) {
  const auto c = static_cast<unsigned char>(text[i]);
  if (c < 0x80) return c >= 'A' && c <= 'Z';
  // Latin-1 to Latin Extended and Greek/Cyrillic capitals without a table: decode two bytes.
  if ((c & 0xE0) == 0xC0 && i + 1 < text.size()) {
    const uint32_t cp = ((c & 0x1Fu) << 6) | (static_cast<unsigned char>(text[i + 1]) & 0x3Fu);
    if (cp >= 0xC0 && cp <= 0xDE && cp != 0xD7) return true;              // À..Þ
    if (cp >= 0x391 && cp <= 0x3A9) return true;                          // Greek capitals
    if (cp >= 0x400 && cp <= 0x42F) return true;                          // Cyrillic capitals
    if (cp >= 0x100 && cp <= 0x17F) return (cp & 1) == 0 && cp != 0x138;  // Latin Extended-A, roughly
  }
  return false;
}

// Calls `take(span)` for each sentence of `span` (trimmed, never empty): ends are ". ", "? ", "! "
// (closing quotes or brackets allowed after the mark) followed by an uppercase letter or the end,
// and the CJK full stop, exclamation and question marks. Abbreviations before a capital ("Dr. No")
// are cut too; a sentence end is only a preferred cut, so that costs little.
template <typename Take>
void for_each_sentence(std::string_view text, Span span, Take&& take) {
  size_t start = span.begin;
  size_t i = span.begin;
  while (i < span.end) {
    const char c = text[i];
    size_t mark_end = 0;  // just past the mark and its closers, when a sentence may end here
    if (c == '.' || c == '?' || c == '!') {
      mark_end = i + 1;
      while (mark_end < span.end && (text[mark_end] == '.' || text[mark_end] == '?' || text[mark_end] == '!')) {
        ++mark_end;
      }
      while (mark_end < span.end) {
        const size_t n = closer_length(text, mark_end, span.end);
        if (n == 0) break;
        mark_end += n;
      }
      if (mark_end < span.end && !is_space_byte(text[mark_end])) mark_end = 0;
    } else if (const std::string_view rest = text.substr(i, span.end - i);
               rest.starts_with("\u3002") || rest.starts_with("\uFF01") || rest.starts_with("\uFF1F")) {
      mark_end = i + 3;
    }
    if (mark_end == 0 || mark_end >= span.end) {
      i = mark_end > i ? mark_end : i + 1;
      continue;
    }
    size_t next = mark_end;
    while (next < span.end && is_space_byte(text[next])) ++next;
    const bool cjk_mark = !(c == '.' || c == '?' || c == '!');
    if (next < span.end && (cjk_mark || starts_uppercase(text, next))) {
      const Span sentence = trimmed(text, start, mark_end);
      if (!sentence.empty()) take(sentence);
      start = next;
    }
    i = next;
  }
  const Span last = trimmed(text, start, span.end);
  if (!last.empty()) take(last);
}

// The largest index j in [first, n) with fits(j), probing first, first+1, first+3, ... and then
// bisecting, so that the cost follows the size of the answer rather than n. fits must be monotone.
template <typename Fits>
std::optional<size_t> largest_fitting(size_t first, size_t n, Fits&& fits) {
  if (first >= n || !fits(first)) return std::nullopt;
  size_t good = first, bad = n, step = 1;
  while (good + 1 < n) {
    const size_t probe = std::min(good + step, n - 1);
    if (!fits(probe)) {
      bad = probe;
      break;
    }
    good = probe;
    step *= 2;
  }
  while (bad - good > 1) {
    const size_t mid = good + (bad - good) / 2;
    (fits(mid) ? good : bad) = mid;
  }
  return good;
}

// Byte offset -> code point offset, moving from the last answer: chunk offsets arrive nearly in
// order, so the total work is linear in the page.
class CodePointCursor {
 public:
  explicit CodePointCursor(std::string_view text = {}) : text_(text) {}
  int64_t at(size_t byte) {
    while (byte_ < byte) {
      if (!is_continuation_byte(text_[byte_])) ++code_point_;
      ++byte_;
    }
    while (byte_ > byte) {
      --byte_;
      if (!is_continuation_byte(text_[byte_])) --code_point_;
    }
    return code_point_;
  }

 private:
  std::string_view text_;
  size_t byte_ = 0;
  int64_t code_point_ = 0;
};

class Chunker {
 public:
  Chunker(const ChunkOptions& options, const TokenCounter& count_tokens, std::vector<Chunk>& out)
      : count_tokens_(count_tokens),
        budget_(options.chunk_tokens),
        overlap_target_(std::min(options.overlap, options.chunk_tokens / 2)),
        join_cost_(std::max(0, count_tokens("\n"))),
        out_(out) {}

  void add_page(const Page& page) {
    text_ = page_text(page);
    page_number_ = page.number;
    cursor_ = CodePointCursor(text_);
    size_t offset = 0;
    for (const Block& block : page.blocks) {
      const size_t begin = offset, end = offset + block.text.size();
      offset = end + 1;
      if (block.kind == BlockKind::Heading) {
        const Span s = trimmed(text_, begin, end);
        if (!s.empty()) {
          end_section();
          enter_heading(block.level, std::string_view(text_).substr(s.begin, s.end - s.begin));
        }
      }
      add_block(block, begin, end);
    }
    VIREO_CHECK(page.blocks.empty() || offset == text_.size() + 1);
    end_section();
  }

 private:
  struct Unit {
    size_t begin = 0;  // trimmed byte range in the page text
    size_t end = 0;
    int tokens = 0;
    bool prose = false;  // a whole prose block: overlap may take its trailing sentences
  };

  int count(size_t begin, size_t end) const {
    return count_tokens_(std::string_view(text_).substr(begin, end - begin));
  }

  void enter_heading(int level, std::string_view title) {
    level = std::clamp(level, 1, 6);
    while (!headings_.empty() && headings_.back().first >= level) headings_.pop_back();
    std::string clean;  // one line, single spaces, whatever the extractor left
    for (const char c : title) {
      if (is_space_byte(c)) {
        if (!clean.empty() && clean.back() != ' ') clean += ' ';
      } else {
        clean += c;
      }
    }
    headings_.emplace_back(level, std::move(clean));
    path_.clear();
    for (const auto& [_, text] : headings_) path_ += (path_.empty() ? "" : " > ") + text;
  }

  void add_block(const Block& block, size_t begin, size_t end) {
    const Span s = trimmed(text_, begin, end);
    if (s.empty()) return;
    const int tokens = count(s.begin, s.end);
    const bool prose =
        block.kind == BlockKind::Paragraph || block.kind == BlockKind::ListItem || block.kind == BlockKind::Heading;
    // Table rows stay whole even over the budget: half a row is worse than a long chunk.
    if (tokens <= budget_ || block.kind == BlockKind::TableRow) {
      add_unit({s.begin, s.end, tokens, prose});
      return;
    }
    if (block.kind == BlockKind::Code) {
      size_t line_start = s.begin;
      for (size_t i = s.begin; i <= s.end; ++i) {
        if (i == s.end || text_[i] == '\n') {
          add_piece(trimmed(text_, line_start, i));
          line_start = i + 1;
        }
      }
      return;
    }
    for_each_sentence(text_, s, [&](Span sentence) { add_piece(sentence); });
  }

  // A sentence or a line of code: one unit when it fits, else cut at word boundaries.
  void add_piece(Span piece) {
    if (piece.empty()) return;
    const int tokens = count(piece.begin, piece.end);
    if (tokens <= budget_) {
      add_unit({piece.begin, piece.end, tokens, false});
      return;
    }
    std::vector<size_t> word_starts, word_ends;
    for (size_t i = piece.begin; i < piece.end;) {
      while (i < piece.end && is_space_byte(text_[i])) ++i;
      if (i == piece.end) break;
      word_starts.push_back(i);
      while (i < piece.end && !is_space_byte(text_[i])) ++i;
      word_ends.push_back(i);
    }
    // Each unit is the longest run of words that fits; counting whole runs (not word by word)
    // keeps the per-word rounding of a counter from halving the chunks.
    for (size_t w = 0; w < word_starts.size();) {
      const size_t start = word_starts[w];
      const auto last =
          largest_fitting(w, word_ends.size(), [&](size_t j) { return count(start, word_ends[j]) <= budget_; });
      if (!last) {
        split_word(start, word_ends[w]);
        ++w;
        continue;
      }
      add_unit({start, word_ends[*last], count(start, word_ends[*last]), false});
      w = *last + 1;
    }
  }

  // A single word over the budget (a URL, a base64 blob): cut between code points.
  void split_word(size_t begin, size_t end) {
    std::vector<size_t> ends;
    for (size_t i = begin + 1; i <= end; ++i) {
      if (i == end || !is_continuation_byte(text_[i])) ends.push_back(i);
    }
    for (size_t k = 0, start = begin; k < ends.size();) {
      const auto last = largest_fitting(k, ends.size(), [&](size_t j) { return count(start, ends[j]) <= budget_; });
      const size_t taken = last.value_or(k);  // one code point over the budget cannot be cut further
      add_unit({start, ends[taken], count(start, ends[taken]), false});
      start = ends[taken];
      k = taken + 1;
    }
  }

  int64_t cost_of(const std::vector<Unit>& units) const {
    int64_t total = 0;
    for (const Unit& u : units) total += u.tokens;
    return units.empty() ? 0 : total + static_cast<int64_t>(units.size() - 1) * join_cost_;
  }

  void add_unit(const Unit& unit) {
    if (!current_.empty() && current_tokens_ + join_cost_ + unit.tokens > budget_) {
      emit();
      current_ = overlap_tail();
      // Give up overlap, oldest first, where it would crowd out the new unit.
      size_t drop = 0;
      int64_t tokens = cost_of(current_);
      while (drop < current_.size() && tokens + join_cost_ + unit.tokens > budget_) {
        tokens -= current_[drop].tokens + (drop + 1 < current_.size() ? join_cost_ : 0);
        ++drop;
      }
      current_.erase(current_.begin(), current_.begin() + static_cast<std::ptrdiff_t>(drop));
      current_tokens_ = cost_of(current_);
    }
    current_tokens_ += (current_.empty() ? 0 : join_cost_) + unit.tokens;
    current_.push_back(unit);
  }

  // The trailing units of the chunk just emitted, worth at most overlap_target_ tokens, and never
  // the whole chunk; where the next whole unit is too big, its trailing sentences instead.
  std::vector<Unit> overlap_tail() const {
    if (overlap_target_ <= 0 || current_.empty()) return {};
    const size_t n = current_.size();
    int64_t taken_tokens = 0;
    size_t k = n;  // units [k, n) are taken
    while (k > 1) {
      const int64_t cost = current_[k - 1].tokens + (k == n ? 0 : join_cost_);
      if (taken_tokens + cost > overlap_target_) break;
      taken_tokens += cost;
      --k;
    }
    std::vector<Unit> tail(current_.begin() + static_cast<std::ptrdiff_t>(k), current_.end());
    const Unit& partial = current_[k - 1];
    if (partial.prose && taken_tokens < overlap_target_) {
      std::vector<Span> sentences;
      for_each_sentence(text_, Span{partial.begin, partial.end}, [&](Span s) { sentences.push_back(s); });
      // Counted from the end, and only as far as they fit: the work follows the overlap's size.
      std::vector<Unit> from_partial;
      for (size_t i = sentences.size(); i > 1; --i) {  // never the first sentence: not the whole unit
        const Span& s = sentences[i - 1];
        const int tokens = count(s.begin, s.end);
        const int64_t cost = tokens + (tail.empty() && from_partial.empty() ? 0 : join_cost_);
        if (taken_tokens + cost > overlap_target_) break;
        taken_tokens += cost;
        from_partial.push_back({s.begin, s.end, tokens, false});
      }
      std::reverse(from_partial.begin(), from_partial.end());
      tail.insert(tail.begin(), from_partial.begin(), from_partial.end());
    }
    return tail;
  }

  void emit() {
    if (current_.empty()) return;
    const size_t begin = current_.front().begin, end = current_.back().end;
    Chunk chunk;
    chunk.page = page_number_;
    chunk.heading_path = path_;
    chunk.char_start = cursor_.at(begin);
    chunk.char_end = cursor_.at(end);
    chunk.text = text_.substr(begin, end - begin);
    chunk.tokens = static_cast<int>(std::min<int64_t>(current_tokens_, 1 << 30));
    out_.push_back(std::move(chunk));
  }

  // Headings and page ends: emit what is pending, with no overlap into what follows.
  void end_section() {
    emit();
    current_.clear();
    current_tokens_ = 0;
  }

  const TokenCounter& count_tokens_;
  const int budget_;
  const int overlap_target_;
  const int join_cost_;
  std::vector<Chunk>& out_;

  std::vector<std::pair<int, std::string>> headings_;  // (level, title), outermost first
  std::string path_;

  std::string text_;
  int page_number_ = 1;
  CodePointCursor cursor_;
  std::vector<Unit> current_;
  int64_t current_tokens_ = 0;
};

}  // namespace

TokenCounter estimated_token_counter() {
  return [](std::string_view text) { return estimate_tokens(text); };
}

std::vector<Chunk> chunk_document(const ExtractedDocument& doc, const ChunkOptions& options,
                                  const TokenCounter& count_tokens) {
  if (options.chunk_tokens < 16) {
    fail(ErrorCode::InvalidArgument, "--chunk-tokens must be at least 16 (got {})", options.chunk_tokens);
  }
  if (options.overlap < 0 || options.overlap >= options.chunk_tokens) {
    fail(ErrorCode::InvalidArgument, "--overlap must be at least 0 and below --chunk-tokens ({}) (got {})",
         options.chunk_tokens, options.overlap);
  }
  const TokenCounter counter = count_tokens ? count_tokens : estimated_token_counter();
  std::vector<Chunk> chunks;
  Chunker chunker(options, counter, chunks);
  for (const Page& page : doc.pages) chunker.add_page(page);
  return chunks;
}

}  // namespace vireo
