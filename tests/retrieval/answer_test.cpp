// The index's model-driven paths on small synthetic models: chunk vectors at ingest, vector and
// hybrid search, classification constrained to the labels (and resumed), answers with sources,
// and retrieval evaluation from the command line on a classic collection.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <set>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "test_util.h"
#include "vireo/documents/ingest.h"
#include "vireo/models/synth.h"
#include "vireo/retrieval/answer.h"
#include "vireo/retrieval/search.h"

namespace vireo {
namespace {

namespace fs = std::filesystem;

class IndexWithModels : public testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new test::TempDir();
    SynthOptions e;
    e.preset = "bge-small";
    e.type = "f16";
    e.n_layer = 2;
    synthesize_model(e, dir_->file("bge.gguf"));
    SynthOptions d;
    d.preset = "tiny";
    d.type = "q8_0";
    synthesize_model(d, dir_->file("tiny.gguf"));
    const char* topics[] = {"volcano lava eruption", "glacier ice melt", "harbour ships cargo", "orchard apples harvest"};
    fs::create_directories(dir_->file("corpus"));
    for (int i = 0; i < 12; ++i) {
      std::ofstream(dir_->file(fmt::format("corpus/doc-{:02}.txt", i)))
          << fmt::format("Report {} on the {}.\n\nThe {} was observed on day {}.\n", i, topics[i % 4], topics[i % 4], i);
    }
    embedder_ = new Embedder(dir_->file("bge.gguf"), 2);
    IngestOptions o;
    o.jobs = 2;
    o.embed = true;
    o.embed_batch = 5;
    IndexSink sink(dir_->file("index"), embedder_, false, "test");
    report_ = new IngestReport(run_ingest({dir_->file("corpus")}, o, sink));
  }
  static void TearDownTestSuite() {
    delete report_;
    delete embedder_;
    delete dir_;
  }
  static test::TempDir* dir_;
  static Embedder* embedder_;
  static IngestReport* report_;
};
test::TempDir* IndexWithModels::dir_ = nullptr;
Embedder* IndexWithModels::embedder_ = nullptr;
IngestReport* IndexWithModels::report_ = nullptr;

TEST_F(IndexWithModels, EveryChunkHasAVectorAndVectorSearchFindsItsOwnText) {
  EXPECT_EQ(report_->ok, 12);
  EXPECT_EQ(report_->embedded, report_->chunks);
  auto store = IndexStore::open(dir_->file("index"), false);
  EXPECT_TRUE(store->chunks_without_vectors(embedder_->name(), 10).empty());
  EXPECT_EQ(store->vector_model(), embedder_->name());
  Searcher searcher(*store, embedder_);
  const auto chunk = store->chunks_in_order(0, 100).at(5);
  const auto hits = searcher.search(chunk.text, SearchMode::Vector, 3);
  ASSERT_FALSE(hits.empty());
  EXPECT_EQ(hits[0].chunk.id, chunk.id);
  EXPECT_NEAR(hits[0].score, 1.0, 1e-3);
  const auto hybrid = searcher.search("glacier ice", SearchMode::Hybrid, 4);
  ASSERT_EQ(hybrid.size(), 4u);
  EXPECT_NE(hybrid[0].chunk.text.find("glacier"), std::string::npos);
  // A different encoder cannot search these vectors.
  Embedder other_name(dir_->file("bge.gguf"), 1);
  EXPECT_EQ(other_name.name(), embedder_->name());
  EXPECT_THROW(Searcher(*store, nullptr).search("x", SearchMode::Vector, 3), Error);
}

TEST_F(IndexWithModels, ClassifyLabelsEveryChunkWithOneOfTheLabelsAndResumes) {
  auto store = IndexStore::open(dir_->file("index"), false);
  EngineOptions eo;
  eo.n_threads = 2;
  eo.n_ctx = 2048;
  TextEngine engine(dir_->file("tiny.gguf"), eo);
  ClassifyOptions co;
  co.labels = {"geology", "shipping", "farming"};
  co.parallel = 4;
  const auto r = classify_index(*store, engine, co);
  EXPECT_EQ(r.labelled, store->chunk_count());
  EXPECT_EQ(r.skipped, 0);
  const std::set<std::string> allowed(co.labels.begin(), co.labels.end());
  for (const auto& c : store->chunks_in_order(0, 1000)) {
    const auto label = store->label(c.id, r.task);
    ASSERT_TRUE(label.has_value());
    EXPECT_TRUE(allowed.count(*label)) << *label;
  }
  // A second run finds everything labelled.
  const auto again = classify_index(*store, engine, co);
  EXPECT_EQ(again.labelled, 0);
  EXPECT_EQ(again.skipped, store->chunk_count());
  co.per_document = true;
  co.task = "by-document";
  const auto docs = classify_index(*store, engine, co);
  EXPECT_EQ(docs.labelled, 12);
  co.labels = {"only"};
  EXPECT_THROW(classify_index(*store, engine, co), Error);
}

TEST_F(IndexWithModels, AskAnswersWithNumberedSources) {
  auto store = IndexStore::open(dir_->file("index"), false);
  EngineOptions eo;
  eo.n_threads = 2;
  eo.n_ctx = 1024;
  TextEngine engine(dir_->file("tiny.gguf"), eo);
  AskOptions ao;
  ao.k = 3;
  ao.max_tokens = 16;
  std::string streamed;
  const auto r = ask_index(*store, engine, nullptr, "what happened to the harbour ships", ao, [&](const std::string& t) {
    streamed += t;
    return true;
  });
  ASSERT_EQ(r.sources.size(), 3u);
  EXPECT_NE(r.sources[0].chunk.text.find("harbour"), std::string::npos);
  EXPECT_EQ(streamed, r.answer);
  EXPECT_GT(r.generation.tokens.size(), 0u);
  ao.max_tokens = 5000;  // more than the context
  EXPECT_THROW(ask_index(*store, engine, nullptr, "harbour", ao), Error);
}

TEST(EvalRetrievalCli, CranfieldBm25FromTheCommandLine) {
  VIREO_REQUIRE_SHARED(cran, "ir/cranfield");
  test::TempDir tmp;
  const auto [status, out] =
      test::run_vireo("eval-retrieval --json --collection " + cran + " --index " + tmp.file("idx"));
  ASSERT_EQ(status, 0) << out;
  const auto j = nlohmann::json::parse(out.substr(out.rfind("\n{") == std::string::npos ? out.find('{') : out.rfind("\n{") + 1));
  std::printf("Cranfield via vireo eval-retrieval: %d queries, nDCG@10 %.4f, recall@100 %.4f, MRR %.4f\n",
              j["queries"].get<int>(), j["ndcg@10"].get<double>(), j["recall@100"].get<double>(), j["mrr"].get<double>());
  EXPECT_EQ(j["queries"], 225);
  EXPECT_GT(j["ndcg@10"].get<double>(), 0.33);
  EXPECT_GT(j["recall@100"].get<double>(), 0.69);
}

}  // namespace
}  // namespace vireo
