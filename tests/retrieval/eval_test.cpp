#include "vireo/retrieval/eval.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>

#include "test_util.h"
#include "vireo/core/error.h"
#include "vireo/retrieval/store.h"

namespace vireo {
namespace {

using test::TempDir;

std::string write_text(const TempDir& tmp, const std::string& name, const std::string& text) {
  const std::string path = tmp.file(name);
  std::ofstream(path, std::ios::binary) << text;
  return path;
}

TEST(EvaluateRun, HandComputedMeasures) {
  Qrels qrels;
  qrels["q1"] = {{"d1", 3}, {"d2", 1}, {"d3", 0}};
  qrels["q2"] = {{"d5", 1}};  // absent from the run: counts as 0
  qrels["q3"] = {{"d6", 0}};  // nothing relevant: not evaluated
  std::map<std::string, std::vector<std::string>> run;
  run["q1"] = {"d3", "d1", "d4", "d2"};
  run["q3"] = {"d6"};
  const EvalResult r = evaluate_run(run, qrels);
  EXPECT_EQ(r.queries, 2);
  // q1: DCG = 3/log2(3) + 1/log2(5); ideal = 3/log2(2) + 1/log2(3).
  const double ndcg_q1 = (3 / std::log2(3.0) + 1 / std::log2(5.0)) / (3 + 1 / std::log2(3.0));
  EXPECT_NEAR(r.ndcg10, ndcg_q1 / 2, 1e-12);
  EXPECT_NEAR(r.recall100, 0.5, 1e-12);
  EXPECT_NEAR(r.mrr, 0.25, 1e-12);
}

TEST(EvaluateRun, CutoffsAndRepeats) {
  Qrels qrels;
  qrels["q"] = {{"rel", 2}, {"other", 1}};
  std::map<std::string, std::vector<std::string>> run;
  for (int i = 0; i < 100; ++i) run["q"].push_back("n" + std::to_string(i));
  run["q"].push_back("rel");  // rank 101: beyond nDCG@10 and recall@100, but counts for MRR
  EvalResult r = evaluate_run(run, qrels);
  EXPECT_EQ(r.queries, 1);
  EXPECT_DOUBLE_EQ(r.ndcg10, 0.0);
  EXPECT_DOUBLE_EQ(r.recall100, 0.0);
  EXPECT_DOUBLE_EQ(r.mrr, 1.0 / 101);

  // A document repeated in the ranking counts once, at its first place.
  run["q"] = {"x", "x", "x", "other", "rel"};
  r = evaluate_run(run, qrels);
  EXPECT_DOUBLE_EQ(r.mrr, 0.5);
  EXPECT_DOUBLE_EQ(r.recall100, 1.0);
  EXPECT_NEAR(r.ndcg10, (1 / std::log2(3.0) + 2 / std::log2(4.0)) / (2 + 1 / std::log2(3.0)), 1e-12);

  // A perfect ranking.
  run["q"] = {"rel", "other"};
  r = evaluate_run(run, qrels);
  EXPECT_DOUBLE_EQ(r.ndcg10, 1.0);
  EXPECT_DOUBLE_EQ(r.mrr, 1.0);
  EXPECT_EQ(evaluate_run({}, {}).queries, 0);
}

TEST(ReadQueries, BeirAndSmart) {
  TempDir tmp;
  auto q = read_queries(write_text(tmp, "q.jsonl",
                                   "{\"_id\": \"q1\", \"text\": \"what is bm25\", \"metadata\": {}}\n"
                                   "\n{\"_id\": 7, \"text\": \"numeric id\"}\n"));
  ASSERT_EQ(q.size(), 2u);
  EXPECT_EQ(q[0].id, "q1");
  EXPECT_EQ(q[0].text, "what is bm25");
  EXPECT_EQ(q[1].id, "7");

  q = read_queries(write_text(tmp, "q.smart",
                              ".I 001\n.W\nwhat similarity laws\nmust be obeyed .\n"
                              ".I 5\n.T\nA Title\n.A\nSomeone, A.\n.W\n  the body\n.B\n1970\n"));
  ASSERT_EQ(q.size(), 2u);
  EXPECT_EQ(q[0].id, "1");
  EXPECT_EQ(q[0].text, "what similarity laws\nmust be obeyed .");
  EXPECT_EQ(q[1].id, "5");
  EXPECT_EQ(q[1].text, "A Title\nthe body");

  EXPECT_THROW(read_queries(write_text(tmp, "bad", "hello world\n")), Error);
  EXPECT_THROW(read_queries(write_text(tmp, "bad.jsonl", "{\"id\": 1}\n")), Error);
  EXPECT_THROW(read_queries(tmp.file("absent")), Error);
}

TEST(ReadQrels, AllLayouts) {
  TempDir tmp;
  Qrels q = read_qrels(write_text(tmp, "beir.tsv", "query-id\tcorpus-id\tscore\nq1\td1\t2\nq1\td2\t0\nq2\td1\t1\n"));
  EXPECT_EQ(q.size(), 2u);
  EXPECT_EQ(q["q1"]["d1"], 2);
  EXPECT_EQ(q["q1"]["d2"], 0);
  EXPECT_EQ(q["q2"]["d1"], 1);

  q = read_qrels(write_text(tmp, "noheader.tsv", "q1\td9\t1\n"));
  EXPECT_EQ(q["q1"]["d9"], 1);

  q = read_qrels(write_text(tmp, "trec", "301 0 FBIS3-10082 1\n301 0 FBIS3-10169 0\n302 Q0 doc 2\n"));
  EXPECT_EQ(q["301"]["FBIS3-10082"], 1);
  EXPECT_EQ(q["301"]["FBIS3-10169"], 0);
  EXPECT_EQ(q["302"]["doc"], 2);

  // Cranfield: 1 is the most relevant grade, -1 not relevant.
  q = read_qrels(write_text(tmp, "cranqrel", "1 184 2 \n1 29 -1\n1 12 1\n1 51 4\n2 12 3\n"));
  EXPECT_EQ(q["1"]["184"], 3);
  EXPECT_EQ(q["1"]["29"], 0);
  EXPECT_EQ(q["1"]["12"], 4);
  EXPECT_EQ(q["1"]["51"], 1);
  EXPECT_EQ(q["2"]["12"], 2);

  q = read_qrels(write_text(tmp, "CISI.REL", "     1     28\t0\t0.000000\n    12   101\t0\t0.000000\n"));
  EXPECT_EQ(q["1"]["28"], 1);
  EXPECT_EQ(q["12"]["101"], 1);

  EXPECT_TRUE(read_qrels(write_text(tmp, "empty", "\n")).empty());
  EXPECT_THROW(read_qrels(write_text(tmp, "odd", "1 2\n")), Error);
  EXPECT_THROW(read_qrels(write_text(tmp, "nonint", "q\td\thigh\n")), Error);
}

TEST(ClassicCollections, Cranfield) {
  VIREO_REQUIRE_SHARED(qrel, "ir/cranfield/cranqrel");
  const IrCollection c = read_classic_collection(std::filesystem::path(qrel).parent_path().string());
  ASSERT_EQ(c.docs.size(), 1400u);
  ASSERT_EQ(c.queries.size(), 225u);
  EXPECT_EQ(c.docs[0].first, "1");
  EXPECT_EQ(c.docs[0].second.substr(0, c.docs[0].second.find('\n')),
            "experimental investigation of the aerodynamics of a wing in a slipstream .");
  EXPECT_EQ(c.docs.back().first, "1400");
  // Queries are numbered by position: the file's .I 001, 002, 004 ... become 1, 2, 3 ...
  EXPECT_EQ(c.queries[2].id, "3");
  EXPECT_NE(c.queries[2].text.find("heat conduction in composite slabs"), std::string::npos);
  EXPECT_EQ(c.queries.back().id, "225");
  EXPECT_EQ(c.qrels.size(), 225u);
  int relevant = 0;
  for (const auto& [query, docs] : c.qrels) {
    EXPECT_GE(std::stoi(query), 1);
    EXPECT_LE(std::stoi(query), 225);
    for (const auto& [doc, gain] : docs) relevant += gain > 0;
  }
  EXPECT_EQ(relevant, 1612);  // 1837 pairs less the 225 graded -1
}

TEST(ClassicCollections, Cisi) {
  VIREO_REQUIRE_SHARED(rel, "ir/cisi/CISI.REL");
  const IrCollection c = read_classic_collection(std::filesystem::path(rel).parent_path().string());
  EXPECT_EQ(c.docs.size(), 1460u);
  EXPECT_EQ(c.queries.size(), 112u);
  EXPECT_EQ(c.qrels.size(), 76u);
  EXPECT_EQ(c.docs[0].second.substr(0, c.docs[0].second.find('\n')),
            "18 Editions of the Dewey Decimal Classifications");
  EXPECT_EQ(c.queries[0].id, "1");
  EXPECT_EQ(c.queries.back().id, "112");
  for (const auto& [query, docs] : c.qrels) {
    EXPECT_GE(std::stoi(query), 1);
    EXPECT_LE(std::stoi(query), 112);
  }
}

// BM25 over whole documents, one chunk each, with the store's fixed settings.
EvalResult bm25_baseline(const IrCollection& c, const char* name) {
  TempDir tmp;
  auto store = IndexStore::open(tmp.path(), true);
  const auto start = std::chrono::steady_clock::now();
  for (const auto& [id, text] : c.docs) {
    DocumentRecord rec;
    rec.path = id;
    rec.title = text.substr(0, text.find('\n'));
    Page page;
    page.blocks.push_back({BlockKind::Paragraph, 0, text});
    Chunk chunk;
    chunk.text = text;
    chunk.char_end = static_cast<int64_t>(text.size());
    store->put_document(rec, {page}, {chunk});
  }
  const auto indexed = std::chrono::steady_clock::now();
  std::map<std::string, std::vector<std::string>> run;
  for (const EvalQuery& q : c.queries) {
    auto& ranking = run[q.id];
    for (const SearchHit& hit : store->search_bm25(q.text, 1000)) ranking.push_back(hit.chunk.doc_path);
  }
  const auto searched = std::chrono::steady_clock::now();
  const EvalResult r = evaluate_run(run, c.qrels);
  std::printf("%s BM25: %d queries, nDCG@10 %.4f, recall@100 %.4f, MRR %.4f (index %.0f ms, %zu searches %.0f ms)\n",
              name, r.queries, r.ndcg10, r.recall100, r.mrr,
              std::chrono::duration<double, std::milli>(indexed - start).count(), c.queries.size(),
              std::chrono::duration<double, std::milli>(searched - indexed).count());
  EXPECT_EQ(store->check_integrity(), "");
  return r;
}

TEST(Bm25Baseline, Cranfield) {
  VIREO_REQUIRE_SHARED(qrel, "ir/cranfield/cranqrel");
  const EvalResult r =
      bm25_baseline(read_classic_collection(std::filesystem::path(qrel).parent_path().string()), "Cranfield");
  EXPECT_EQ(r.queries, 225);
  // Measured: nDCG@10 0.361, recall@100 0.732, MRR 0.518 (gain 5 - grade).
  EXPECT_GT(r.ndcg10, 0.33);
  EXPECT_GT(r.recall100, 0.69);
  EXPECT_GT(r.mrr, 0.48);
}

TEST(Bm25Baseline, Cisi) {
  VIREO_REQUIRE_SHARED(rel, "ir/cisi/CISI.REL");
  const EvalResult r =
      bm25_baseline(read_classic_collection(std::filesystem::path(rel).parent_path().string()), "CISI");
  EXPECT_EQ(r.queries, 76);
  // Measured: nDCG@10 0.382, recall@100 0.441, MRR 0.626.
  EXPECT_GT(r.ndcg10, 0.35);
  EXPECT_GT(r.recall100, 0.41);
  EXPECT_GT(r.mrr, 0.58);
}

}  // namespace
}  // namespace vireo
