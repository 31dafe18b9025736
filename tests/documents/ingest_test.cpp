// The ingest pipeline end to end on real files into a real index: mixed formats, failures recorded
// with reasons, unchanged files skipped, changed ones replaced, deleted ones removed, and an index
// that a kill -9 at a random moment leaves consistent and a re-run completes exactly.
#include <gtest/gtest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "reference_engine.h"
#include "test_util.h"
#include "vireo/documents/ingest.h"
#include "vireo/retrieval/search.h"

namespace vireo {
namespace {

namespace fs = std::filesystem;

void write_file(const std::string& path, const std::string& text) {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream(path, std::ios::binary) << text;
}

// A small corpus of distinct, searchable documents in several formats.
void make_corpus(const std::string& dir, int n_text) {
  const char* topics[] = {"volcano", "glacier", "harbour", "orchard", "meteor", "canyon", "lagoon", "prairie"};
  for (int i = 0; i < n_text; ++i) {
    std::string body;
    for (int p = 0; p < 3 + i % 4; ++p) {
      body += fmt::format("Paragraph {} of note {} is about the {} and its surroundings, measured on day {}.\n\n", p, i,
                          topics[(i + p) % 8], i * 7 + p);
    }
    write_file(fmt::format("{}/notes/note-{:04}.txt", dir, i), body);
  }
  write_file(dir + "/guide.md", "# Field guide\n\nIntro text about birds.\n\n## Vireos\n\n- red-eyed vireo\n- warbling vireo\n\n"
                                "| bird | colour |\n|---|---|\n| vireo | olive |\n");
  write_file(dir + "/page.html", "<html><head><title>Tides</title></head><body><nav>menu</nav><h1>Tides</h1>"
                                 "<p>The moon pulls the oceans into tides.</p><ul><li>spring tide</li><li>neap tide</li></ul>"
                                 "</body></html>");
  write_file(dir + "/broken.pdf", "%PDF-1.7\n1 0 obj << /Type /Catalog >> garbage without xref\n");
  write_file(dir + "/empty.txt", "");
}

struct IndexContent {
  std::map<std::string, std::string> docs;                 // path -> status
  std::map<std::string, std::vector<std::string>> chunks;  // path -> chunk texts in order
  bool operator==(const IndexContent&) const = default;
};

IndexContent read_index(const std::string& dir) {
  auto store = IndexStore::open(dir, false);
  IndexContent c;
  for (const auto& d : store->documents()) {
    c.docs[d.path] = std::string(doc_status_name(d.status));
    auto& texts = c.chunks[d.path];
    for (const auto& ch : store->chunks_of(d.id)) texts.push_back(ch.text);
  }
  return c;
}

IngestReport ingest_dir(const std::string& corpus, const std::string& index) {
  IngestOptions o;
  o.jobs = 2;
  o.exclude.push_back(fs::canonical(index).string());
  IndexSink sink(index, nullptr, false);
  return run_ingest({corpus}, o, sink);
}

TEST(Ingest, MixedFolderFailuresRecordedRerunsIncremental) {
  test::TempDir tmp;
  const std::string corpus = tmp.file("corpus"), index = tmp.file("index");
  make_corpus(corpus, 20);
  fs::create_directories(index);
  auto r = ingest_dir(corpus, index);
  EXPECT_EQ(r.files_seen, 24);
  EXPECT_EQ(r.failed, 2) << "broken.pdf and empty.txt";
  EXPECT_EQ(r.ok + r.low_quality, 22);
  EXPECT_GT(r.chunks, 22);
  ASSERT_EQ(r.failures.size(), 2u);
  for (const auto& [path, why] : r.failures) {
    EXPECT_FALSE(why.empty());
    if (path.ends_with("broken.pdf")) EXPECT_NE(why.find("PDF"), std::string::npos) << why;
  }
  auto store = IndexStore::open(index, false);
  EXPECT_EQ(store->check_integrity(), "");
  const auto hits = store->search_bm25("warbling vireo", 3);
  ASSERT_FALSE(hits.empty());
  EXPECT_TRUE(hits[0].chunk.doc_path.ends_with("guide.md"));
  EXPECT_EQ(hits[0].chunk.heading_path, "Field guide > Vireos");
  const auto before = read_index(index);

  // Nothing changed: everything skipped but the failed files (tried again: the cause may be
  // fixed), the index identical.
  r = ingest_dir(corpus, index);
  EXPECT_EQ(r.skipped_unchanged, 22);
  EXPECT_EQ(r.failed, 2);
  EXPECT_EQ(read_index(index), before);

  // One file changed, one only touched, one deleted.
  write_file(corpus + "/notes/note-0003.txt", "A completely new text about a lighthouse.\n");
  const auto touched = fs::path(corpus + "/notes/note-0004.txt");
  fs::last_write_time(touched, fs::last_write_time(touched) + std::chrono::seconds(5));
  fs::remove(corpus + "/notes/note-0005.txt");
  r = ingest_dir(corpus, index);
  EXPECT_EQ(r.ok, 1);
  EXPECT_EQ(r.removed, 1);
  EXPECT_EQ(r.skipped_unchanged, 20);
  const auto after = read_index(index);
  EXPECT_EQ(after.docs.size(), before.docs.size() - 1);
  const auto key3 = fs::canonical(corpus + "/notes/note-0003.txt").string();
  ASSERT_EQ(after.chunks.at(key3).size(), 1u);
  EXPECT_NE(after.chunks.at(key3)[0].find("lighthouse"), std::string::npos);
  EXPECT_EQ(store->search_bm25("lighthouse", 5).size(), 1u);
}

TEST(Ingest, MissingPathIsAClearError) {
  test::TempDir tmp;
  IndexSink sink(tmp.file("index"), nullptr, false);
  try {
    run_ingest({tmp.file("nope")}, IngestOptions{}, sink);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("no such file"), std::string::npos) << e.what();
  }
}

TEST(Ingest, CliIngestAndSearch) {
  test::TempDir tmp;
  make_corpus(tmp.file("corpus"), 10);
  auto [status, out] = test::run_vireo("ingest -q --json --index " + tmp.file("index") + " " + tmp.file("corpus"));
  ASSERT_EQ(status, 0) << out;
  const auto report = nlohmann::json::parse(out.substr(out.find('{')));
  EXPECT_EQ(report["failed"], 2);
  EXPECT_EQ(report["files"], 14);
  std::tie(status, out) = test::run_vireo("search --json -k 3 --index " + tmp.file("index") + " 'moon tides'");
  ASSERT_EQ(status, 0) << out;
  const auto hits = nlohmann::json::parse(out)["results"];
  ASSERT_FALSE(hits.empty());
  EXPECT_TRUE(hits[0]["document"].get<std::string>().ends_with("page.html"));
  EXPECT_NE(hits[0]["snippet"].get<std::string>().find('['), std::string::npos);
  std::tie(status, out) = test::run_vireo("search --index " + tmp.file("no-index") + " x");
  EXPECT_EQ(status, 1);
  EXPECT_NE(out.find("no-index"), std::string::npos) << out;
}

// kill -9 at random moments: every re-run must end with the uninterrupted run's index.
TEST(Ingest, KillNineAtRandomMomentsThenRerunMatchesCleanRun) {
  test::TempDir tmp;
  const std::string corpus = tmp.file("corpus");
  make_corpus(corpus, 300);
  const std::string clean = tmp.file("clean");
  auto [status, out] = test::run_vireo("ingest -q --index " + clean + " " + corpus);
  ASSERT_EQ(status, 0) << out;
  const auto expected = read_index(clean);
  std::mt19937 rng(7);
  for (int trial = 0; trial < 3; ++trial) {
    const std::string index = tmp.file(fmt::format("crash{}", trial));
    const pid_t pid = fork();
    if (pid == 0) {
      execl(VIREO_BINARY_PATH, VIREO_BINARY_PATH, "ingest", "-q", "-j", "2", "--index", index.c_str(), corpus.c_str(),
            static_cast<char*>(nullptr));
      _exit(127);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(std::uniform_int_distribution<int>(20, 600)(rng)));
    kill(pid, SIGKILL);
    int st = 0;
    waitpid(pid, &st, 0);
    if (fs::exists(index + "/index.sqlite")) {
      auto store = IndexStore::open(index, false);
      EXPECT_EQ(store->check_integrity(), "") << "trial " << trial;
    }
    std::tie(status, out) = test::run_vireo("ingest -q --index " + index + " " + corpus);
    ASSERT_EQ(status, 0) << out;
    EXPECT_TRUE(read_index(index) == expected) << "trial " << trial;
  }
}

}  // namespace
}  // namespace vireo
