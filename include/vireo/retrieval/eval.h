// Retrieval evaluation: BEIR-style files (queries.jsonl, qrels .tsv) and the classic SMART-format
// collections (Cranfield, CISI), and the standard measures.
#pragma once
#include <map>
#include <string>
#include <vector>

namespace vireo {

struct EvalQuery {
  std::string id;
  std::string text;
};

// qrels[query id][doc id] = grade (> 0 relevant).
using Qrels = std::map<std::string, std::map<std::string, int>>;

struct IrCollection {
  std::vector<std::pair<std::string, std::string>> docs;  // (doc id, text with title first line)
  std::vector<EvalQuery> queries;
  Qrels qrels;
};

// Format by content: BEIR jsonl ({"_id","text"}) or SMART (.I/.W records).
std::vector<EvalQuery> read_queries(const std::string& path);
// BEIR tsv (query-id, corpus-id, score; header optional), TREC (qid 0 docid grade), Cranfield
// (qid docid grade, -1 = not relevant, grades 1..4 where 1 is most relevant) or CISI.REL.
Qrels read_qrels(const std::string& path);
// A folder holding cran.all.1400/cran.qry/cranqrel or CISI.ALL/CISI.QRY/CISI.REL. Cranfield's
// query numbers in cranqrel are the queries' positions in cran.qry (1-based), as its README says.
IrCollection read_classic_collection(const std::string& dir);

struct EvalResult {
  int queries = 0;  // evaluated: those with at least one relevant document
  double ndcg10 = 0, recall100 = 0, mrr = 0;  // means over queries
};

// run[query id] = ranked doc ids, best first.
EvalResult evaluate_run(const std::map<std::string, std::vector<std::string>>& run, const Qrels& qrels);

}  // namespace vireo
