// Readers for BEIR and SMART-format test collections, and nDCG@10 / recall@100 / MRR.
#include "vireo/retrieval/eval.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string_view>

#include <nlohmann/json.hpp>

#include "vireo/core/error.h"

namespace vireo {

namespace {

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(ErrorCode::NotFound, "cannot open {}", path);
  std::ostringstream out;
  out << in.rdbuf();
  if (in.bad()) fail(ErrorCode::Io, "cannot read {}", path);
  return out.str();
}

std::vector<std::string_view> split_lines(std::string_view text) {
  std::vector<std::string_view> lines;
  size_t start = 0;
  while (start <= text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(start, end - start);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    lines.push_back(line);
    start = end + 1;
  }
  return lines;
}

std::string_view trim(std::string_view s) {
  const auto space = [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; };
  while (!s.empty() && space(s.front())) s.remove_prefix(1);
  while (!s.empty() && space(s.back())) s.remove_suffix(1);
  return s;
}

std::vector<std::string> fields(std::string_view line) {
  std::vector<std::string> out;
  std::string current;
  for (const char c : line) {
    if (c == ' ' || c == '\t' || c == '\r') {
      if (!current.empty()) out.push_back(std::move(current));
      current.clear();
    } else {
      current += c;
    }
  }
  if (!current.empty()) out.push_back(std::move(current));
  return out;
}

// "007" -> "7", so ids written with leading zeros match the plain numbers of the relevance files.
std::string canonical_number(std::string_view id) {
  id = trim(id);
  while (id.size() > 1 && id.front() == '0') id.remove_prefix(1);
  return std::string(id);
}

int parse_int(const std::string& s, const std::string& path, size_t line) {
  try {
    size_t used = 0;
    const int v = std::stoi(s, &used);
    if (used == s.size()) return v;
  } catch (const std::exception&) {
  }
  fail(ErrorCode::InvalidFile, "{}:{}: '{}' is not an integer", path, line, s);
}

// One record of a SMART file: ".I id" followed by fields ".X" each with its lines.
struct SmartRecord {
  std::string id;
  std::vector<std::pair<char, std::string>> fields;  // field letter, text (lines joined by '\n')

  std::string field(char name) const {
    std::string out;
    for (const auto& [letter, text] : fields) {
      if (letter != name) continue;
      if (!out.empty()) out += '\n';
      out += text;
    }
    return out;
  }
};

bool is_smart_marker(std::string_view line) {
  return line.size() >= 2 && line[0] == '.' && line[1] >= 'A' && line[1] <= 'Z' &&
         (line.size() == 2 || line[2] == ' ' || line[2] == '\t');
}

std::vector<SmartRecord> read_smart(const std::string& path) {
  const std::string text = read_file(path);
  std::vector<SmartRecord> records;
  std::string* current = nullptr;
  size_t number = 0;
  for (const std::string_view raw : split_lines(text)) {
    ++number;
    if (is_smart_marker(raw)) {
      const char letter = raw[1];
      if (letter == 'I') {
        records.push_back({canonical_number(raw.substr(2)), {}});
        current = nullptr;
        if (records.back().id.empty()) fail(ErrorCode::InvalidFile, "{}:{}: .I without an id", path, number);
        continue;
      }
      if (records.empty()) fail(ErrorCode::InvalidFile, "{}:{}: field before the first .I", path, number);
      records.back().fields.emplace_back(letter, std::string());
      current = &records.back().fields.back().second;
      // Some files put a field's first line on the marker line (".T Title").
      const std::string_view rest = trim(raw.substr(2));
      if (!rest.empty()) *current = std::string(rest);
      continue;
    }
    if (current == nullptr) {
      if (trim(raw).empty()) continue;
      fail(ErrorCode::InvalidFile, "{}:{}: text outside any field", path, number);
    }
    const std::string_view line = trim(raw);
    if (line.empty()) continue;
    if (!current->empty()) *current += '\n';
    *current += line;
  }
  return records;
}

// The title on one line, then the body: the documents' and queries' text.
std::string title_and_body(const SmartRecord& r) {
  std::string title = r.field('T');
  std::replace(title.begin(), title.end(), '\n', ' ');
  const std::string body = r.field('W');
  if (title.empty()) return body;
  return body.empty() ? title : title + "\n" + body;
}

std::vector<EvalQuery> read_jsonl_queries(const std::string& path, const std::string& text) {
  std::vector<EvalQuery> out;
  size_t number = 0;
  for (const std::string_view raw : split_lines(text)) {
    ++number;
    const std::string_view line = trim(raw);
    if (line.empty()) continue;
    try {
      const auto j = nlohmann::json::parse(line);
      const auto& id = j.at("_id");
      EvalQuery q;
      q.id = id.is_string() ? id.get<std::string>() : id.dump();
      q.text = j.at("text").get<std::string>();
      out.push_back(std::move(q));
    } catch (const nlohmann::json::exception& e) {
      fail(ErrorCode::InvalidFile, "{}:{}: not a BEIR query ({})", path, number, e.what());
    }
  }
  return out;
}

double dcg_gain(int gain, size_t rank) {
  return gain / std::log2(static_cast<double>(rank) + 1.0);
}

}  // namespace

std::vector<EvalQuery> read_queries(const std::string& path) {
  const std::string text = read_file(path);
  const std::string_view head = trim(text);
  if (head.starts_with('{')) return read_jsonl_queries(path, text);
  if (!head.starts_with(".I")) {
    fail(ErrorCode::InvalidFile, "{}: neither BEIR jsonl nor SMART (.I/.W) queries", path);
  }
  std::vector<EvalQuery> out;
  for (const SmartRecord& r : read_smart(path)) out.push_back({r.id, title_and_body(r)});
  return out;
}

// The layouts, told apart by their columns:
//   BEIR      "query-id<TAB>corpus-id<TAB>score" (header optional), tab-separated; gain = score.
//   TREC      "qid iter docid grade"; gain = grade.
//   CISI.REL  "qid docid 0 0.000000" (4th column a decimal): every listed pair is relevant, gain 1.
//   Cranfield "qid docid grade", space-separated: grade 1 (complete answer) .. 4 (minimal interest) and
//             -1 (not relevant; cranqrel holds -1, 1, 2, 3 and 4). Gain = 5 - grade, so 1 -> 4 ..
//             4 -> 1, and -1 -> 0 (judged, not relevant).
// Judged but not relevant pairs are kept with gain 0; a pair listed twice keeps its largest gain.
Qrels read_qrels(const std::string& path) {
  const std::string text = read_file(path);
  const std::vector<std::string_view> lines = split_lines(text);
  enum class Layout { Beir, Trec, Cisi, Cranfield } layout = Layout::Cranfield;
  bool decided = false;
  for (const std::string_view raw : lines) {
    const std::string_view line = trim(raw);
    if (line.empty()) continue;
    const std::vector<std::string> f = fields(line);
    if (f.size() == 3) {
      layout = line.find('\t') != std::string_view::npos || f[0] == "query-id" ? Layout::Beir : Layout::Cranfield;
    } else if (f.size() == 4) {
      layout = f[3].find('.') != std::string::npos ? Layout::Cisi : Layout::Trec;
    } else {
      fail(ErrorCode::InvalidFile, "{}: unrecognised relevance line '{}'", path, line);
    }
    decided = true;
    break;
  }
  Qrels qrels;
  if (!decided) return qrels;
  size_t number = 0;
  for (const std::string_view raw : lines) {
    ++number;
    const std::string_view line = trim(raw);
    if (line.empty()) continue;
    const std::vector<std::string> f = fields(line);
    if (layout == Layout::Beir && f.size() == 3 && f[0] == "query-id") continue;
    const size_t expected = layout == Layout::Beir || layout == Layout::Cranfield ? 3 : 4;
    if (f.size() != expected) {
      fail(ErrorCode::InvalidFile, "{}:{}: expected {} columns, got {}", path, number, expected, f.size());
    }
    std::string query, doc;
    int gain = 0;
    switch (layout) {
      case Layout::Beir: query = f[0], doc = f[1], gain = parse_int(f[2], path, number); break;
      case Layout::Trec: query = f[0], doc = f[2], gain = parse_int(f[3], path, number); break;
      case Layout::Cisi: query = canonical_number(f[0]), doc = canonical_number(f[1]), gain = 1; break;
      case Layout::Cranfield: {
        query = canonical_number(f[0]), doc = canonical_number(f[1]);
        const int grade = parse_int(f[2], path, number);
        if (grade != -1 && (grade < 1 || grade > 5)) {
          fail(ErrorCode::InvalidFile, "{}:{}: Cranfield grade {} is not -1 or 1..5", path, number, grade);
        }
        gain = grade == -1 ? 0 : 5 - grade;
        break;
      }
    }
    gain = std::max(gain, 0);
    auto [it, inserted] = qrels[query].emplace(doc, gain);
    if (!inserted) it->second = std::max(it->second, gain);
  }
  return qrels;
}

IrCollection read_classic_collection(const std::string& dir) {
  namespace fs = std::filesystem;
  IrCollection c;
  auto collect_docs = [&c](const std::string& path) {
    for (const SmartRecord& r : read_smart(path)) c.docs.emplace_back(r.id, title_and_body(r));
  };
  if (fs::exists(fs::path(dir) / "cran.all.1400")) {
    collect_docs((fs::path(dir) / "cran.all.1400").string());
    // cranqrel numbers the queries 1..225 by their place in cran.qry, whose own .I numbers skip.
    std::vector<EvalQuery> queries = read_queries((fs::path(dir) / "cran.qry").string());
    for (size_t i = 0; i < queries.size(); ++i) queries[i].id = std::to_string(i + 1);
    c.queries = std::move(queries);
    c.qrels = read_qrels((fs::path(dir) / "cranqrel").string());
  } else if (fs::exists(fs::path(dir) / "CISI.ALL")) {
    collect_docs((fs::path(dir) / "CISI.ALL").string());
    c.queries = read_queries((fs::path(dir) / "CISI.QRY").string());
    c.qrels = read_qrels((fs::path(dir) / "CISI.REL").string());
  } else {
    fail(ErrorCode::NotFound, "{} holds neither the Cranfield (cran.all.1400) nor the CISI (CISI.ALL) collection", dir);
  }
  return c;
}

EvalResult evaluate_run(const std::map<std::string, std::vector<std::string>>& run, const Qrels& qrels) {
  EvalResult result;
  double ndcg_sum = 0, recall_sum = 0, rr_sum = 0;
  static const std::vector<std::string> kNoResults;
  for (const auto& [query, judged] : qrels) {
    std::vector<int> relevant_gains;
    for (const auto& [doc, gain] : judged) {
      if (gain > 0) relevant_gains.push_back(gain);
    }
    if (relevant_gains.empty()) continue;
    ++result.queries;
    std::sort(relevant_gains.rbegin(), relevant_gains.rend());
    double ideal = 0;
    for (size_t i = 0; i < relevant_gains.size() && i < 10; ++i) ideal += dcg_gain(relevant_gains[i], i + 1);

    const auto found = run.find(query);
    const std::vector<std::string>& ranking = found == run.end() ? kNoResults : found->second;
    // A document listed twice (two of its chunks, say) counts at its first place only.
    std::set<std::string> seen;
    double dcg = 0, reciprocal_rank = 0;
    size_t rank = 0, relevant_in_100 = 0;
    for (const std::string& doc : ranking) {
      if (!seen.insert(doc).second) continue;
      ++rank;
      const auto j = judged.find(doc);
      const int gain = j == judged.end() ? 0 : j->second;
      if (gain <= 0) continue;
      if (rank <= 10) dcg += dcg_gain(gain, rank);
      if (rank <= 100) ++relevant_in_100;
      if (reciprocal_rank == 0) reciprocal_rank = 1.0 / static_cast<double>(rank);
    }
    ndcg_sum += dcg / ideal;
    recall_sum += static_cast<double>(relevant_in_100) / static_cast<double>(relevant_gains.size());
    rr_sum += reciprocal_rank;
  }
  if (result.queries > 0) {
    result.ndcg10 = ndcg_sum / result.queries;
    result.recall100 = recall_sum / result.queries;
    result.mrr = rr_sum / result.queries;
  }
  return result;
}

}  // namespace vireo
