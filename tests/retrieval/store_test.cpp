#include "vireo/retrieval/store.h"

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>
#include <thread>

#include "test_util.h"
#include "vireo/core/error.h"

namespace vireo {
namespace {

using test::TempDir;

DocumentRecord make_record(const std::string& path, const std::string& title = "A title") {
  DocumentRecord d;
  d.path = path;
  d.sha256 = "ab12";
  d.size = 1234;
  d.mtime_ns = 1700000000123456789;
  d.format = "text";
  d.mime = "text/plain";
  d.title = title;
  return d;
}

Page make_page(int number, const std::string& text) {
  Page p;
  p.number = number;
  p.blocks.push_back({BlockKind::Paragraph, 0, text});
  return p;
}

Chunk make_chunk(const std::string& text, int page = 1, const std::string& heading = "") {
  Chunk c;
  c.page = page;
  c.heading_path = heading;
  c.text = text;
  c.char_start = 0;
  c.char_end = static_cast<int64_t>(text.size());
  c.tokens = static_cast<int>(text.size() / 4);
  return c;
}

// Puts a one-page document whose chunks are `texts`.
int64_t put_texts(IndexStore& store, const std::string& path, const std::vector<std::string>& texts) {
  std::vector<Chunk> chunks;
  std::string all;
  for (const auto& t : texts) {
    chunks.push_back(make_chunk(t));
    all += t + " ";
  }
  return store.put_document(make_record(path), {make_page(1, all)}, chunks);
}

// Chunk ids whose FTS index entries match `term`, read straight from the database.
std::vector<int64_t> raw_fts_rowids(const std::string& dir, const std::string& term) {
  sqlite3* db = nullptr;
  EXPECT_EQ(sqlite3_open_v2((dir + "/index.sqlite").c_str(), &db, SQLITE_OPEN_READONLY, nullptr), SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  EXPECT_EQ(sqlite3_prepare_v2(db, "SELECT rowid FROM chunks_fts WHERE chunks_fts MATCH ?1", -1, &st, nullptr),
            SQLITE_OK);
  sqlite3_bind_text(st, 1, term.c_str(), -1, SQLITE_TRANSIENT);
  std::vector<int64_t> ids;
  while (sqlite3_step(st) == SQLITE_ROW) ids.push_back(sqlite3_column_int64(st, 0));
  sqlite3_finalize(st);
  sqlite3_close(db);
  return ids;
}

std::vector<float> random_unit_vectors(size_t n, int dim, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal;
  std::vector<float> v(n * static_cast<size_t>(dim));
  for (size_t i = 0; i < n; ++i) {
    float* row = v.data() + i * dim;
    double norm = 0;
    for (int j = 0; j < dim; ++j) {
      row[j] = normal(rng);
      norm += row[j] * row[j];
    }
    for (int j = 0; j < dim; ++j) row[j] = static_cast<float>(row[j] / std::sqrt(norm));
  }
  return v;
}

std::vector<int64_t> brute_force(const std::vector<int64_t>& ids, const std::vector<float>& data, int dim,
                                 const float* q, int k) {
  std::vector<std::pair<float, int64_t>> scored;
  for (size_t i = 0; i < ids.size(); ++i) {
    float dot = 0;
    for (int j = 0; j < dim; ++j) dot += q[j] * data[i * dim + j];
    scored.emplace_back(-dot, ids[i]);
  }
  std::sort(scored.begin(), scored.end());
  std::vector<int64_t> out;
  for (int i = 0; i < k && i < static_cast<int>(scored.size()); ++i) out.push_back(scored[i].second);
  return out;
}

// A document of `n` chunks whose vectors are stored for `model`; returns the chunk ids.
std::vector<int64_t> add_vector_document(IndexStore& store, const std::string& path, size_t n, int dim,
                                         const std::string& model, uint32_t seed, std::vector<float>* vectors) {
  std::vector<Chunk> chunks;
  for (size_t i = 0; i < n; ++i) chunks.push_back(make_chunk("chunk " + std::to_string(i)));
  const int64_t doc = store.put_document(make_record(path), {make_page(1, "x")}, chunks);
  std::vector<int64_t> ids;
  for (const auto& c : store.chunks_in_order(0, 1 << 30)) {
    if (c.doc_id == doc) ids.push_back(c.id);
  }
  EXPECT_EQ(ids.size(), n);
  *vectors = random_unit_vectors(n, dim, seed);
  store.put_vectors(model, ids, *vectors, dim);
  return ids;
}

TEST(IndexStore, RoundTripAndReplace) {
  TempDir tmp;
  auto store = IndexStore::open(tmp.path() + "/idx", true);
  DocumentRecord rec = make_record("/docs/report.md", "Quarterly report");
  rec.status = DocStatus::LowQuality;
  rec.error = "garbage 31%";
  Page p2 = make_page(2, "second page");
  p2.ocr = true;
  p2.ocr_confidence = 88.5;
  const int64_t id =
      store->put_document(rec, {make_page(1, "first page"), p2},
                          {make_chunk("zebra crossing rules", 1, "Intro"),
                           make_chunk("giraffe necks", 2, "Intro > Animals"), make_chunk("third chunk", 2)});
  EXPECT_GT(id, 0);

  const auto found = store->find_document("/docs/report.md");
  ASSERT_TRUE(found.has_value());
  EXPECT_EQ(found->id, id);
  EXPECT_EQ(found->sha256, "ab12");
  EXPECT_EQ(found->size, 1234);
  EXPECT_EQ(found->mtime_ns, 1700000000123456789);
  EXPECT_EQ(found->format, "text");
  EXPECT_EQ(found->mime, "text/plain");
  EXPECT_EQ(found->title, "Quarterly report");
  EXPECT_EQ(found->status, DocStatus::LowQuality);
  EXPECT_EQ(found->error, "garbage 31%");
  EXPECT_EQ(found->pages, 2);
  EXPECT_EQ(found->chunks, 3);
  EXPECT_FALSE(store->find_document("/docs/other.md").has_value());
  EXPECT_EQ(store->chunk_count(), 3);

  const auto chunks = store->chunks_in_order(0, 10);
  ASSERT_EQ(chunks.size(), 3u);
  EXPECT_EQ(chunks[1].text, "giraffe necks");
  EXPECT_EQ(chunks[1].page, 2);
  EXPECT_EQ(chunks[1].heading_path, "Intro > Animals");
  EXPECT_EQ(chunks[1].doc_path, "/docs/report.md");
  EXPECT_EQ(chunks[1].doc_title, "Quarterly report");
  EXPECT_EQ(chunks[1].char_end, 13);
  const auto one = store->chunk(chunks[0].id);
  ASSERT_TRUE(one.has_value());
  EXPECT_EQ(one->text, "zebra crossing rules");
  EXPECT_FALSE(store->chunk(999999).has_value());
  EXPECT_EQ(store->chunks_in_order(chunks[1].id, 10).size(), 1u);

  store->put_label(chunks[0].id, "topic", "traffic");
  EXPECT_EQ(store->label(chunks[0].id, "topic"), "traffic");
  EXPECT_FALSE(store->label(chunks[0].id, "other").has_value());
  const std::vector<float> vec = {1.f, 0.f};
  const std::vector<int64_t> vec_ids = {chunks[0].id};
  store->put_vectors("m", vec_ids, vec, 2);

  // Replace the same path: the old chunks, their FTS entries, labels and vectors go.
  const int64_t id2 = put_texts(*store, "/docs/report.md", {"okapi stripes"});
  EXPECT_EQ(store->documents().size(), 1u);
  EXPECT_EQ(store->chunk_count(), 1);
  EXPECT_EQ(store->find_document("/docs/report.md")->id, id2);
  EXPECT_EQ(store->find_document("/docs/report.md")->chunks, 1);
  EXPECT_TRUE(store->search_bm25("zebra", 10).empty());
  EXPECT_TRUE(raw_fts_rowids(store->dir(), "zebra").empty());
  EXPECT_TRUE(raw_fts_rowids(store->dir(), "giraffe").empty());
  EXPECT_EQ(raw_fts_rowids(store->dir(), "okapi").size(), 1u);
  EXPECT_FALSE(store->label(chunks[0].id, "topic").has_value());
  std::vector<int64_t> ids;
  std::vector<float> data;
  int dim = -1;
  store->load_vectors("m", ids, data, dim);
  EXPECT_TRUE(ids.empty());
  EXPECT_EQ(dim, 0);
  EXPECT_EQ(store->check_integrity(), "");

  // Everything survives closing and reopening.
  store.reset();
  auto again = IndexStore::open(tmp.path() + "/idx", false);
  EXPECT_EQ(again->chunk_count(), 1);
  EXPECT_EQ(again->search_bm25("okapi", 5).size(), 1u);
}

TEST(IndexStore, PutFailedReplacesAndRecordsReason) {
  TempDir tmp;
  auto store = IndexStore::open(tmp.path(), true);
  put_texts(*store, "/d/a.pdf", {"alpha beta", "gamma"});
  DocumentRecord rec = make_record("/d/a.pdf");
  rec.error = "encrypted PDF";
  store->put_failed(rec);
  const auto found = store->find_document("/d/a.pdf");
  ASSERT_TRUE(found.has_value());
  EXPECT_EQ(found->status, DocStatus::Failed);
  EXPECT_EQ(found->error, "encrypted PDF");
  EXPECT_EQ(found->chunks, 0);
  EXPECT_EQ(store->chunk_count(), 0);
  EXPECT_EQ(doc_status_name(DocStatus::Failed), "failed");
  EXPECT_EQ(doc_status_name(DocStatus::LowQuality), "low_quality");
  EXPECT_EQ(store->check_integrity(), "");
}

TEST(IndexStore, RemoveMissing) {
  TempDir tmp;
  auto store = IndexStore::open(tmp.path(), true);
  for (const char* p : {"/a/x.txt", "/a/sub/y.txt", "/a/z.txt", "/ab/w.txt", "/b/v.txt"}) put_texts(*store, p, {p});
  const int removed = store->remove_missing({"/a/"}, {"/a/x.txt", "/b/v.txt"});
  EXPECT_EQ(removed, 2);
  std::set<std::string> left;
  for (const auto& d : store->documents()) left.insert(d.path);
  EXPECT_EQ(left, (std::set<std::string>{"/a/x.txt", "/ab/w.txt", "/b/v.txt"}));
  EXPECT_EQ(store->chunk_count(), 3);
  EXPECT_EQ(store->remove_missing({"/nowhere"}, {}), 0);
  EXPECT_EQ(store->check_integrity(), "");
}

TEST(IndexStore, Bm25RanksTheRightChunk) {
  TempDir tmp;
  auto store = IndexStore::open(tmp.path(), true);
  put_texts(*store, "/c/1", {"The cat sat on the mat and purred.", "Dogs run in the park every morning."});
  put_texts(*store, "/c/2",
            {"Quantum chromodynamics describes the strong interaction between quarks.",
             "A long history of the printing press in Europe."});
  put_texts(*store, "/c/3", {"Le café est naïve et très bon."});

  auto hits = store->search_bm25("strong interaction of quarks", 10);
  ASSERT_FALSE(hits.empty());
  EXPECT_NE(hits[0].chunk.text.find("Quantum"), std::string::npos);
  EXPECT_EQ(hits[0].chunk.doc_path, "/c/2");
  EXPECT_EQ(hits[0].chunk.doc_title, "A title");
  EXPECT_GT(hits[0].score, 0.0);
  for (size_t i = 1; i < hits.size(); ++i) EXPECT_LE(hits[i].score, hits[i - 1].score);

  // Porter stemming: "running" and "runs" both reach "run".
  hits = store->search_bm25("running", 10);
  ASSERT_EQ(hits.size(), 1u);
  EXPECT_NE(hits[0].chunk.text.find("Dogs run"), std::string::npos);
  EXPECT_EQ(store->search_bm25("RUNS", 10).size(), 1u);

  // Diacritics are folded both ways.
  EXPECT_EQ(store->search_bm25("naive cafe", 10).size(), 1u);
  EXPECT_EQ(store->search_bm25("NAÏVE", 10).size(), 1u);

  // The snippet marks the matches.
  hits = store->search_bm25("printing press", 10);
  ASSERT_EQ(hits.size(), 1u);
  EXPECT_NE(hits[0].snippet.find("[printing]"), std::string::npos) << hits[0].snippet;
  EXPECT_NE(hits[0].snippet.find("[press]"), std::string::npos) << hits[0].snippet;

  // Only stop words, or nothing: no results, no error.
  EXPECT_TRUE(store->search_bm25("the of and is", 10).empty());
  EXPECT_TRUE(store->search_bm25("", 10).empty());
  EXPECT_EQ(store->search_bm25("cat", 0).size(), 0u);
  EXPECT_EQ(store->search_bm25("cat dogs quarks printing", 2).size(), 2u);
}

TEST(IndexStore, HeadingMatchesCount) {
  TempDir tmp;
  auto store = IndexStore::open(tmp.path(), true);
  store->put_document(
      make_record("/h"), {make_page(1, "x")},
      {make_chunk("plain words about nothing", 1, "Installation"), make_chunk("more plain words", 1, "Usage")});
  const auto hits = store->search_bm25("installation", 5);
  ASSERT_EQ(hits.size(), 1u);
  EXPECT_EQ(hits[0].chunk.heading_path, "Installation");
}

TEST(IndexStore, QueriesWithSyntaxCharactersNeverThrow) {
  TempDir tmp;
  auto store = IndexStore::open(tmp.path(), true);
  put_texts(*store, "/s", {"cat and dog near the river", "NOT a drill: column values"});
  std::string long_query;
  for (int i = 0; i < 3000; ++i) long_query += "word" + std::to_string(i) + " ";
  const std::vector<std::string> queries = {"AND OR NOT ( ) \" * : ^ NEAR",
                                            "\"unterminated",
                                            "NEAR(cat dog, 2)",
                                            "text:cat",
                                            "heading_path:cat",
                                            "cat*",
                                            "-cat",
                                            "+",
                                            "^cat",
                                            "((((",
                                            "'; DROP TABLE chunks; --",
                                            "cat AND",
                                            "OR",
                                            "   ",
                                            "\xff\xfe\x80 broken utf8 \xe2\x82",
                                            "日本語のテキスト",
                                            "emoji 🐈 cat",
                                            "a\"b\"c",
                                            long_query};
  for (const auto& q : queries) {
    EXPECT_NO_THROW(store->search_bm25(q, 10)) << q;
  }
  EXPECT_EQ(store->search_bm25("NEAR(cat dog, 2)", 10).size(), 1u);  // the words near, cat, dog, 2
  EXPECT_EQ(store->search_bm25("text:cat", 10).size(), 1u);
  EXPECT_EQ(store->chunk_count(), 2);
}

TEST(IndexStore, FailedPutLeavesNothingBehind) {
  TempDir tmp;
  auto store = IndexStore::open(tmp.path(), true);
  put_texts(*store, "/t/keep", {"original wombat text"});

  Chunk bad = make_chunk("broken platypus");
  bad.char_start = 10;
  bad.char_end = 5;  // violates the chunks table's CHECK
  const std::vector<Chunk> chunks = {make_chunk("good platypus chunk"), make_chunk("another platypus"), bad};
  try {
    store->put_document(make_record("/t/new"), {make_page(1, "p")}, chunks);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("inserting a chunk"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("CHECK"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(store->find_document("/t/new").has_value());
  EXPECT_EQ(store->chunk_count(), 1);
  EXPECT_TRUE(store->search_bm25("platypus", 10).empty());
  EXPECT_TRUE(raw_fts_rowids(store->dir(), "platypus").empty());

  // A failed replacement keeps the earlier version whole. Two pages numbered 1 break the key.
  EXPECT_THROW(store->put_document(make_record("/t/keep"), {make_page(1, "a"), make_page(1, "b")},
                                   {make_chunk("replacement koala")}),
               Error);
  ASSERT_TRUE(store->find_document("/t/keep").has_value());
  EXPECT_EQ(store->search_bm25("wombat", 10).size(), 1u);
  EXPECT_TRUE(store->search_bm25("koala", 10).empty());
  EXPECT_EQ(store->check_integrity(), "");

  // The store is still usable after the rollbacks.
  put_texts(*store, "/t/new", {"good platypus chunk"});
  EXPECT_EQ(store->search_bm25("platypus", 10).size(), 1u);
}

TEST(IndexStore, OpeningSomethingElseIsAClearError) {
  TempDir tmp;
  try {
    IndexStore::open(tmp.path(), false);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::NotFound);
    EXPECT_NE(std::string(e.what()).find(tmp.path()), std::string::npos) << e.what();
  }
  EXPECT_THROW(IndexStore::open(tmp.path() + "/missing", false), Error);

  // A file that is not a database.
  std::filesystem::create_directories(tmp.path() + "/junk");
  std::ofstream(tmp.path() + "/junk/index.sqlite") << std::string(4096, 'x');
  try {
    IndexStore::open(tmp.path() + "/junk", false);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::InvalidFile) << e.what();
    EXPECT_NE(std::string(e.what()).find("not a vireo index"), std::string::npos) << e.what();
  }

  // Another program's SQLite database.
  std::filesystem::create_directories(tmp.path() + "/other");
  sqlite3* db = nullptr;
  sqlite3_open((tmp.path() + "/other/index.sqlite").c_str(), &db);
  sqlite3_exec(db, "CREATE TABLE t(x)", nullptr, nullptr, nullptr);
  sqlite3_close(db);
  EXPECT_THROW(IndexStore::open(tmp.path() + "/other", true), Error);

  // An index written by a newer vireo.
  {
    auto store = IndexStore::open(tmp.path() + "/newer", true);
    store->set_meta("schema_version", "99");
  }
  try {
    IndexStore::open(tmp.path() + "/newer", false);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::Unsupported);
    EXPECT_NE(std::string(e.what()).find("newer"), std::string::npos) << e.what();
  }
}

TEST(IndexStore, MetaAndIntegrity) {
  TempDir tmp;
  auto store = IndexStore::open(tmp.path(), true);
  EXPECT_EQ(store->check_integrity(), "");
  EXPECT_EQ(store->meta("schema_version"), "1");
  EXPECT_FALSE(store->meta("tokenizer").has_value());
  store->set_meta("tokenizer", "bge");
  store->set_meta("tokenizer", "llama");
  EXPECT_EQ(store->meta("tokenizer"), "llama");
  put_texts(*store, "/m", {"one", "two"});
  EXPECT_EQ(store->check_integrity(), "");
}

TEST(IndexStore, VectorsRoundTrip) {
  TempDir tmp;
  auto store = IndexStore::open(tmp.path(), true);
  EXPECT_EQ(store->vector_model(), "");
  put_texts(*store, "/v", {"a1", "a2", "a3"});
  const auto chunks = store->chunks_in_order(0, 10);
  ASSERT_EQ(chunks.size(), 3u);
  EXPECT_EQ(store->chunks_without_vectors("bge", 10).size(), 3u);

  const std::vector<int64_t> ids = {chunks[0].id, chunks[2].id};
  const std::vector<float> data = {0.6f, 0.8f, 0.f, -1.f, 0.f, 0.f};
  store->put_vectors("bge", ids, data, 3);
  EXPECT_EQ(store->vector_model(), "bge");
  const auto missing = store->chunks_without_vectors("bge", 10);
  ASSERT_EQ(missing.size(), 1u);
  EXPECT_EQ(missing[0].id, chunks[1].id);
  EXPECT_EQ(store->chunks_without_vectors("other", 2).size(), 2u);

  std::vector<int64_t> got_ids;
  std::vector<float> got;
  int dim = 0;
  store->load_vectors("bge", got_ids, got, dim);
  EXPECT_EQ(dim, 3);
  EXPECT_EQ(got_ids, ids);
  EXPECT_EQ(got, data);
  EXPECT_THROW(store->put_vectors("bge", ids, data, 4), Error);

  // A vector for a chunk that no longer exists (its document re-ingested meanwhile) is dropped;
  // the others of the call are kept.
  const std::vector<int64_t> bad_ids = {chunks[1].id, 987654};
  EXPECT_NO_THROW(store->put_vectors("bge", bad_ids, data, 3));
  EXPECT_EQ(store->chunks_without_vectors("bge", 10).size(), 0u);
  store->load_vectors("bge", got_ids, got, dim);
  EXPECT_EQ(got_ids.size(), ids.size() + 1) << "a vector for chunks[1], none for the missing chunk";
}

TEST(VectorIndex, ExactSearchOnSmallSets) {
  TempDir tmp;
  auto store = IndexStore::open(tmp.path(), true);
  constexpr int kDim = 24;
  std::vector<float> data;
  const auto ids = add_vector_document(*store, "/v", 500, kDim, "small", 7, &data);
  auto index = VectorIndex::load_or_build(*store, "small");
  EXPECT_EQ(index->size(), 500u);
  EXPECT_EQ(index->dim(), kDim);
  const auto queries = random_unit_vectors(20, kDim, 99);
  for (int q = 0; q < 20; ++q) {
    const float* query = queries.data() + q * kDim;
    const auto got = index->search(std::span<const float>(query, kDim), 10);
    const auto want = brute_force(ids, data, kDim, query, 10);
    ASSERT_EQ(got.size(), 10u);
    for (int i = 0; i < 10; ++i) EXPECT_EQ(got[i].first, want[i]);
    for (int i = 1; i < 10; ++i) EXPECT_GE(got[i - 1].second, got[i].second);
  }
  // A stored vector finds itself with cosine 1.
  const auto self = index->search(std::span<const float>(data.data() + 17 * kDim, kDim), 1);
  ASSERT_EQ(self.size(), 1u);
  EXPECT_EQ(self[0].first, ids[17]);
  EXPECT_NEAR(self[0].second, 1.0f, 1e-5f);
  const std::vector<float> wrong(kDim + 1, 0.1f);
  EXPECT_THROW(index->search(wrong, 5), Error);

  auto empty = VectorIndex::load_or_build(*store, "no-such-model");
  EXPECT_EQ(empty->size(), 0u);
  EXPECT_TRUE(empty->search(std::span<const float>(queries.data(), kDim), 5).empty());
}

TEST(VectorIndex, HnswRecallSavedGraphAndStaleRebuild) {
  TempDir tmp;
  auto store = IndexStore::open(tmp.path(), true);
  constexpr int kDim = 32;
  const std::string model = "org/model:v1";
  std::vector<float> data;
  auto ids = add_vector_document(*store, "/big", 3000, kDim, model, 11, &data);
  auto index = VectorIndex::load_or_build(*store, model);
  EXPECT_EQ(index->size(), 3000u);

  const std::string graph = tmp.path() + "/vectors-org_model_v1.hnsw";
  ASSERT_TRUE(std::filesystem::exists(graph));
  EXPECT_EQ(store->meta("vectors." + model + ".count"), "3000");
  EXPECT_EQ(store->meta("vectors." + model + ".max_chunk_id"), std::to_string(ids.back()));

  const auto queries = random_unit_vectors(100, kDim, 5);
  auto recall_at_10 = [&](const VectorIndex& vi) {
    size_t hits = 0;
    for (int q = 0; q < 100; ++q) {
      const float* query = queries.data() + q * kDim;
      const auto got = vi.search(std::span<const float>(query, kDim), 10);
      const auto want = brute_force(ids, data, kDim, query, 10);
      const std::set<int64_t> truth(want.begin(), want.end());
      for (const auto& [id, score] : got) hits += truth.count(id);
    }
    return static_cast<double>(hits) / 1000.0;
  };
  const double recall = recall_at_10(*index);
  std::printf("HNSW recall@10 over 3000 vectors: %.3f\n", recall);
  EXPECT_GE(recall, 0.95);

  // Concurrent searches agree with serial ones.
  std::vector<std::vector<std::pair<int64_t, float>>> serial(100), parallel(100);
  for (int q = 0; q < 100; ++q) serial[q] = index->search(std::span<const float>(queries.data() + q * kDim, kDim), 10);
  {
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
      threads.emplace_back([&, t] {
        for (int q = t; q < 100; q += 4) {
          parallel[q] = index->search(std::span<const float>(queries.data() + q * kDim, kDim), 10);
        }
      });
    }
    for (auto& th : threads) th.join();
  }
  EXPECT_EQ(serial, parallel);

  // A second load reuses the saved graph (same answers, file untouched).
  const auto written = std::filesystem::last_write_time(graph);
  auto reloaded = VectorIndex::load_or_build(*store, model);
  EXPECT_EQ(std::filesystem::last_write_time(graph), written);
  for (int q = 0; q < 100; ++q) {
    EXPECT_EQ(reloaded->search(std::span<const float>(queries.data() + q * kDim, kDim), 10), serial[q]);
  }

  // More vectors make the saved graph stale: it is rebuilt and finds the new ones.
  std::vector<float> extra;
  const auto extra_ids = add_vector_document(*store, "/more", 200, kDim, model, 12, &extra);
  ids.insert(ids.end(), extra_ids.begin(), extra_ids.end());
  data.insert(data.end(), extra.begin(), extra.end());
  auto rebuilt = VectorIndex::load_or_build(*store, model);
  EXPECT_EQ(rebuilt->size(), 3200u);
  EXPECT_EQ(store->meta("vectors." + model + ".count"), "3200");
  EXPECT_EQ(store->meta("vectors." + model + ".max_chunk_id"), std::to_string(extra_ids.back()));
  const auto self = rebuilt->search(std::span<const float>(extra.data() + 5 * kDim, kDim), 3);
  ASSERT_FALSE(self.empty());
  EXPECT_EQ(self[0].first, extra_ids[5]);
  EXPECT_GE(recall_at_10(*rebuilt), 0.95);

  // A damaged graph file is rebuilt too.
  {
    std::fstream f(graph, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(0);
    f.write("garbage!garbage!garbage!garbage!", 32);
  }
  auto repaired = VectorIndex::load_or_build(*store, model);
  EXPECT_EQ(repaired->size(), 3200u);
  EXPECT_GE(recall_at_10(*repaired), 0.95);
  // Truncated as well.
  std::filesystem::resize_file(graph, 1000);
  EXPECT_GE(recall_at_10(*VectorIndex::load_or_build(*store, model)), 0.95);
}

TEST(ReciprocalRankFusion, HandComputedExample) {
  const auto fused = reciprocal_rank_fusion({{1, 2, 3}, {3, 1, 4}});
  ASSERT_EQ(fused.size(), 4u);
  EXPECT_EQ(fused[0].first, 1);
  EXPECT_DOUBLE_EQ(fused[0].second, 1.0 / 61 + 1.0 / 62);
  EXPECT_EQ(fused[1].first, 3);
  EXPECT_DOUBLE_EQ(fused[1].second, 1.0 / 63 + 1.0 / 61);
  EXPECT_EQ(fused[2].first, 2);
  EXPECT_DOUBLE_EQ(fused[2].second, 1.0 / 62);
  EXPECT_EQ(fused[3].first, 4);
  EXPECT_DOUBLE_EQ(fused[3].second, 1.0 / 63);

  const auto k1 = reciprocal_rank_fusion({{7, 8}, {8}}, 1);
  ASSERT_EQ(k1.size(), 2u);
  EXPECT_EQ(k1[0].first, 8);
  EXPECT_DOUBLE_EQ(k1[0].second, 1.0 / 3 + 1.0 / 2);
  EXPECT_DOUBLE_EQ(k1[1].second, 1.0 / 2);
  EXPECT_TRUE(reciprocal_rank_fusion({}).empty());
}

std::string random_text(std::mt19937& rng, const std::vector<std::string>& vocab, int words) {
  std::uniform_int_distribution<size_t> pick(0, vocab.size() - 1);
  std::string out;
  for (int i = 0; i < words; ++i) {
    if (i) out += ' ';
    out += vocab[pick(rng)];
  }
  return out;
}

TEST(IndexStore, Speed) {
  TempDir tmp;
  auto store = IndexStore::open(tmp.path(), true);
  std::mt19937 rng(3);
  std::vector<std::string> vocab;
  const char* syllables[] = {"ka", "lo", "mi", "ner", "tus", "ba", "dri", "fen", "go", "hal", "ix", "jun", "pra", "zo"};
  for (const char* a : syllables) {
    for (const char* b : syllables) {
      for (const char* c : syllables) vocab.push_back(std::string(a) + b + c);
    }
  }
  constexpr int kDocs = 1000;
  const auto start = std::chrono::steady_clock::now();
  for (int d = 0; d < kDocs; ++d) {
    std::vector<Chunk> chunks;
    for (int c = 0; c < 10; ++c) chunks.push_back(make_chunk(random_text(rng, vocab, 120)));
    store->put_document(make_record("/speed/" + std::to_string(d)), {make_page(1, "page")}, chunks);
  }
  const double put_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count() / kDocs;
  EXPECT_EQ(store->chunk_count(), 10 * kDocs);

  constexpr int kQueries = 200;
  const auto search_start = std::chrono::steady_clock::now();
  size_t found = 0;
  for (int q = 0; q < kQueries; ++q) found += store->search_bm25(random_text(rng, vocab, 5), 10).size();
  const double search_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - search_start).count() / kQueries;
  std::printf("put_document (10 chunks): %.3f ms; search_bm25 k=10 over %d chunks: %.3f ms\n", put_ms, 10 * kDocs,
              search_ms);
  EXPECT_GT(found, 0u);
  // Loose bounds: the machine may be busy; typical figures are far lower.
  EXPECT_LT(put_ms, 10.0);
  EXPECT_LT(search_ms, 50.0);
}

}  // namespace
}  // namespace vireo
