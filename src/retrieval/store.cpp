// The SQLite index store: schema, cached prepared statements, one transaction per document, and
// BM25 search through FTS5.
#include "vireo/retrieval/store.h"

#include <sqlite3.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <set>
#include <string_view>
#include <system_error>
#include <unordered_set>

#include "vireo/core/error.h"

namespace vireo {

namespace {

constexpr int kSchemaVersion = 1;
// BM25 column weights: a match in the section heading says more about a chunk than one in its body.
constexpr double kTextWeight = 1.0;
constexpr double kHeadingWeight = 2.0;
constexpr int kSnippetTokens = 24;
// Far more terms than any real question; keeps pasted documents from building huge expressions.
constexpr size_t kMaxQueryTerms = 1000;

// Tables, the FTS5 index over chunks, and the indexes the cascades need. Deletes and updates reach
// the FTS5 index by triggers (they also fire for the cascaded deletes of a replaced document);
// inserts are written by put_document itself, because an insert trigger into FTS5 makes indexing
// about 2.5 times slower.
constexpr const char* kSchemaSql = R"sql(
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE documents(
  id INTEGER PRIMARY KEY,
  path TEXT NOT NULL UNIQUE,
  sha256 TEXT NOT NULL,
  size INTEGER NOT NULL,
  mtime_ns INTEGER NOT NULL,
  format TEXT NOT NULL,
  mime TEXT NOT NULL,
  title TEXT NOT NULL,
  status TEXT NOT NULL CHECK (status IN ('ok', 'low_quality', 'failed')),
  error TEXT NOT NULL,
  pages INTEGER NOT NULL,
  chunks INTEGER NOT NULL,
  indexed_at INTEGER NOT NULL
);
CREATE TABLE pages(
  doc_id INTEGER NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
  number INTEGER NOT NULL CHECK (number >= 1),
  text TEXT NOT NULL,
  ocr INTEGER NOT NULL,
  ocr_confidence REAL NOT NULL,
  garbage_ratio REAL NOT NULL,
  low_quality INTEGER NOT NULL,
  quality_note TEXT NOT NULL,
  PRIMARY KEY (doc_id, number)
);
-- AUTOINCREMENT: chunk ids are never reused, so (count, max id) of a model's vectors changes
-- whenever vectors are added or removed, which is how a saved vector graph is known to be stale.
CREATE TABLE chunks(
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  doc_id INTEGER NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
  page INTEGER NOT NULL CHECK (page >= 1),
  heading_path TEXT NOT NULL,
  text TEXT NOT NULL,
  char_start INTEGER NOT NULL CHECK (char_start >= 0),
  char_end INTEGER NOT NULL CHECK (char_end >= char_start),
  tokens INTEGER NOT NULL CHECK (tokens >= 0)
);
CREATE INDEX chunks_by_doc ON chunks(doc_id);
CREATE VIRTUAL TABLE chunks_fts USING fts5(
  text, heading_path, content='chunks', content_rowid='id',
  tokenize='porter unicode61 remove_diacritics 2'
);
CREATE TRIGGER chunks_fts_delete AFTER DELETE ON chunks BEGIN
  INSERT INTO chunks_fts(chunks_fts, rowid, text, heading_path)
  VALUES ('delete', old.id, old.text, old.heading_path);
END;
CREATE TRIGGER chunks_fts_update AFTER UPDATE ON chunks BEGIN
  INSERT INTO chunks_fts(chunks_fts, rowid, text, heading_path)
  VALUES ('delete', old.id, old.text, old.heading_path);
  INSERT INTO chunks_fts(rowid, text, heading_path) VALUES (new.id, new.text, new.heading_path);
END;
CREATE TABLE vectors(
  chunk_id INTEGER NOT NULL REFERENCES chunks(id) ON DELETE CASCADE,
  model TEXT NOT NULL,
  vec BLOB NOT NULL,
  PRIMARY KEY (chunk_id, model)
);
CREATE INDEX vectors_by_model ON vectors(model, chunk_id);
CREATE TABLE labels(
  chunk_id INTEGER NOT NULL REFERENCES chunks(id) ON DELETE CASCADE,
  task TEXT NOT NULL,
  label TEXT NOT NULL,
  PRIMARY KEY (chunk_id, task)
);
)sql";

constexpr const char* kChunkColumns =
    "c.id, c.doc_id, d.path, d.title, c.page, c.heading_path, c.text, c.char_start, c.char_end, c.tokens";

// The English stop words of Lucene's EnglishAnalyzer (as Anserini uses them).
bool is_stop_word(std::string_view w) {
  static const std::unordered_set<std::string_view> words = {
      "a",   "an",    "and",  "are",   "as",    "at",   "be",   "but", "by",  "for",  "if",
      "in",  "into",  "is",   "it",    "no",    "not",  "of",   "on",  "or",  "such", "that",
      "the", "their", "then", "there", "these", "they", "this", "to",  "was", "will", "with"};
  return words.count(w) != 0;
}

// Decodes one UTF-8 sequence at s[i]; malformed bytes come back as U+FFFD, one byte consumed.
char32_t next_code_point(std::string_view s, size_t& i) {
  const auto b0 = static_cast<unsigned char>(s[i]);
  if (b0 < 0x80) {
    ++i;
    return b0;
  }
  const int len = b0 >= 0xF0 ? 4 : b0 >= 0xE0 ? 3 : b0 >= 0xC0 ? 2 : 0;
  if (len == 0 || i + len > s.size()) {
    ++i;
    return 0xFFFD;
  }
  char32_t cp = b0 & (0x7F >> len);
  for (int k = 1; k < len; ++k) {
    const auto b = static_cast<unsigned char>(s[i + k]);
    if ((b & 0xC0) != 0x80) {
      ++i;
      return 0xFFFD;
    }
    cp = (cp << 6) | (b & 0x3F);
  }
  i += len;
  return cp;
}

// Letters and digits. Outside ASCII everything counts except spaces, punctuation and symbols of
// the common blocks: the FTS5 tokenizer makes the final cut anyway, and a term is always quoted.
bool is_word_code_point(char32_t c) {
  if (c < 0x80) return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
  if (c <= 0xBF) return c == 0xAA || c == 0xB2 || c == 0xB3 || c == 0xB5 || c == 0xB9 || c == 0xBA;
  if (c == 0xD7 || c == 0xF7) return false;
  if (c >= 0x2000 && c <= 0x2BFF) return false;  // punctuation, symbols, arrows, box drawing
  if (c >= 0x3000 && c <= 0x303F) return false;  // CJK punctuation
  if (c >= 0xFE10 && c <= 0xFE6F) return false;  // vertical and small forms
  if (c >= 0xFF00 && c <= 0xFF0F) return false;  // fullwidth punctuation
  if (c >= 0xFF1A && c <= 0xFF20) return false;
  if (c == 0xFFFD || (c >= 0xE000 && c <= 0xF8FF)) return false;  // replacement, private use
  if ((c >= 0xD800 && c <= 0xDFFF) || c > 0x10FFFF) return false;  // not characters
  return true;
}

// The words of a query as an FTS5 expression: "w1" OR "w2" ...; "" when nothing is left.
std::string fts_query(std::string_view query) {
  std::string expr, word;
  size_t terms = 0;
  auto flush = [&] {
    if (word.empty()) return;
    if (!is_stop_word(word) && terms < kMaxQueryTerms) {
      if (!expr.empty()) expr += " OR ";
      expr += '"';
      expr += word;  // only letters and digits: no quote to escape
      expr += '"';
      ++terms;
    }
    word.clear();
  };
  size_t i = 0;
  while (i < query.size()) {
    const size_t start = i;
    const char32_t c = next_code_point(query, i);
    if (!is_word_code_point(c)) {
      flush();
      continue;
    }
    if (c < 0x80) {
      word += static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
    } else {
      word.append(query.substr(start, i - start));  // the tokenizer folds case beyond ASCII
    }
  }
  flush();
  return expr;
}

int64_t now_seconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// The error code follows the cause: a broken constraint is bad input, a damaged file is the file's.
[[noreturn]] void fail_sqlite(sqlite3* db, std::string_view what) {
  const int rc = sqlite3_errcode(db) & 0xFF;
  const ErrorCode code = rc == SQLITE_CONSTRAINT                       ? ErrorCode::InvalidArgument
                         : rc == SQLITE_CORRUPT || rc == SQLITE_NOTADB ? ErrorCode::InvalidFile
                                                                       : ErrorCode::Io;
  fail(code, "index database: {} failed: {}", what, sqlite3_errmsg(db));
}

void exec(sqlite3* db, const char* sql, std::string_view what) {
  char* message = nullptr;
  if (sqlite3_exec(db, sql, nullptr, nullptr, &message) != SQLITE_OK) {
    const std::string text = message != nullptr ? message : sqlite3_errmsg(db);
    sqlite3_free(message);
    fail(ErrorCode::Io, "index database: {} failed: {}", what, text);
  }
}

// A prepared statement, reset after each use by Use.
class Statement {
 public:
  Statement() = default;
  Statement(sqlite3* db, const char* sql) : db_(db) {
    if (sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, &stmt_, nullptr) != SQLITE_OK) {
      fail_sqlite(db, fmt::format("preparing '{}'", sql));
    }
  }
  ~Statement() { sqlite3_finalize(stmt_); }
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;

  sqlite3_stmt* get() const { return stmt_; }
  sqlite3* db() const { return db_; }

 private:
  sqlite3* db_ = nullptr;
  sqlite3_stmt* stmt_ = nullptr;
};

// Binds parameters, steps, reads columns; resets and clears the statement when it goes.
class Use {
 public:
  Use(Statement& s, std::string_view what) : stmt_(s.get()), db_(s.db()), what_(what) {}
  ~Use() {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
  }
  Use(const Use&) = delete;
  Use& operator=(const Use&) = delete;

  Use& bind(int i, int64_t v) {
    check(sqlite3_bind_int64(stmt_, i, v));
    return *this;
  }
  Use& bind(int i, int v) { return bind(i, static_cast<int64_t>(v)); }
  Use& bind(int i, double v) {
    check(sqlite3_bind_double(stmt_, i, v));
    return *this;
  }
  Use& bind(int i, std::string_view v) {
    check(sqlite3_bind_text(stmt_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT));
    return *this;
  }
  Use& bind(int i, const std::string& v) { return bind(i, std::string_view(v)); }
  Use& bind(int i, const char* v) { return bind(i, std::string_view(v)); }
  Use& bind_blob(int i, const void* data, size_t bytes) {
    check(sqlite3_bind_blob(stmt_, i, data, static_cast<int>(bytes), SQLITE_TRANSIENT));
    return *this;
  }

  // True while there is a row.
  bool step() {
    const int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    fail_sqlite(db_, what_);
  }
  void run() {
    while (step()) {
    }
  }

  int64_t int64(int col) const { return sqlite3_column_int64(stmt_, col); }
  int integer(int col) const { return sqlite3_column_int(stmt_, col); }
  double real(int col) const { return sqlite3_column_double(stmt_, col); }
  bool is_null(int col) const { return sqlite3_column_type(stmt_, col) == SQLITE_NULL; }
  std::string text(int col) const {
    const auto* p = sqlite3_column_text(stmt_, col);
    return p == nullptr
               ? std::string()
               : std::string(reinterpret_cast<const char*>(p), static_cast<size_t>(sqlite3_column_bytes(stmt_, col)));
  }
  std::string_view blob(int col) const {
    const void* p = sqlite3_column_blob(stmt_, col);
    const int n = sqlite3_column_bytes(stmt_, col);
    return p == nullptr ? std::string_view() : std::string_view(static_cast<const char*>(p), static_cast<size_t>(n));
  }

 private:
  void check(int rc) {
    if (rc != SQLITE_OK) fail_sqlite(db_, fmt::format("{} (binding a parameter)", what_));
  }
  sqlite3_stmt* stmt_;
  sqlite3* db_;
  std::string_view what_;
};

DocStatus parse_status(std::string_view s) {
  if (s == "low_quality") return DocStatus::LowQuality;
  if (s == "failed") return DocStatus::Failed;
  return DocStatus::Ok;
}

// Reads kChunkColumns starting at column `first`.
StoredChunk read_chunk(const Use& u, int first = 0) {
  StoredChunk c;
  c.id = u.int64(first);
  c.doc_id = u.int64(first + 1);
  c.doc_path = u.text(first + 2);
  c.doc_title = u.text(first + 3);
  c.page = u.integer(first + 4);
  c.heading_path = u.text(first + 5);
  c.text = u.text(first + 6);
  c.char_start = u.int64(first + 7);
  c.char_end = u.int64(first + 8);
  c.tokens = u.integer(first + 9);
  return c;
}

// BEGIN IMMEDIATE ... COMMIT; rolls back when left without commit() (an exception on the way).
// A transaction, or inside an open batch a savepoint: either way all or nothing of one document.
class Transaction {
 public:
  Transaction(Statement& begin, Statement& commit, Statement& rollback, Statement* release_after_rollback = nullptr)
      : commit_(commit), rollback_(rollback), release_(release_after_rollback) {
    Use(begin, "begin transaction").run();
  }
  ~Transaction() {
    if (!done_) {
      sqlite3_step(rollback_.get());
      sqlite3_reset(rollback_.get());
      if (release_ != nullptr) {  // ROLLBACK TO leaves the savepoint open
        sqlite3_step(release_->get());
        sqlite3_reset(release_->get());
      }
    }
  }
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;
  void commit() {
    Use(commit_, "commit").run();
    done_ = true;
  }

 private:
  Statement& commit_;
  Statement& rollback_;
  Statement* release_;
  bool done_ = false;
};

}  // namespace

std::string_view doc_status_name(DocStatus s) {
  switch (s) {
    case DocStatus::Ok: return "ok";
    case DocStatus::LowQuality: return "low_quality";
    case DocStatus::Failed: return "failed";
  }
  return "ok";
}

struct IndexStore::Statements {
  explicit Statements(sqlite3* db)
      : begin(db, "BEGIN IMMEDIATE"),
        commit(db, "COMMIT"),
        rollback(db, "ROLLBACK"),
        savepoint(db, "SAVEPOINT document"),
        release(db, "RELEASE document"),
        rollback_to(db, "ROLLBACK TO document"),
        find_document(db,
                      "SELECT id, path, sha256, size, mtime_ns, format, mime, title, status, error, pages, "
                      "chunks FROM documents WHERE path = ?1"),
        all_documents(db,
                      "SELECT id, path, sha256, size, mtime_ns, format, mime, title, status, error, pages, "
                      "chunks FROM documents ORDER BY path"),
        delete_document(db, "DELETE FROM documents WHERE path = ?1"),
        delete_document_id(db, "DELETE FROM documents WHERE id = ?1"),
        insert_document(db,
                        "INSERT INTO documents(path, sha256, size, mtime_ns, format, mime, title, status, "
                        "error, pages, chunks, indexed_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, "
                        "?11, ?12)"),
        insert_page(db,
                    "INSERT INTO pages(doc_id, number, text, ocr, ocr_confidence, garbage_ratio, low_quality, "
                    "quality_note) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"),
        insert_chunk(db,
                     "INSERT INTO chunks(doc_id, page, heading_path, text, char_start, char_end, tokens) "
                     "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"),
        insert_fts(db, "INSERT INTO chunks_fts(rowid, text, heading_path) VALUES (?1, ?2, ?3)"),
        document_paths(db, "SELECT id, path FROM documents"),
        chunk_count(db, "SELECT count(*) FROM chunks"),
        max_chunk_id(db, "SELECT coalesce(max(id), 0) FROM chunks"),
        chunk_by_id(db, fmt::format("SELECT {} FROM chunks c JOIN documents d ON d.id = c.doc_id "
                                    "WHERE c.id = ?1",
                                    kChunkColumns)
                            .c_str()),
        chunks_without_vectors(
            db, fmt::format("SELECT {} FROM chunks c JOIN documents d ON d.id = c.doc_id "
                            "WHERE c.id > ?3 AND c.id <= ?4 AND "
                            "NOT EXISTS (SELECT 1 FROM vectors v WHERE v.chunk_id = c.id AND v.model = ?1) "
                            "ORDER BY c.id LIMIT ?2",
                            kChunkColumns)
                    .c_str()),
        chunks_of_document(db, fmt::format("SELECT {} FROM chunks c JOIN documents d ON d.id = c.doc_id "
                                           "WHERE c.doc_id = ?1 ORDER BY c.id",
                                           kChunkColumns)
                                   .c_str()),
        touch_document(db, "UPDATE documents SET size = ?2, mtime_ns = ?3 WHERE path = ?1"),
        chunks_after(db, fmt::format("SELECT {} FROM chunks c JOIN documents d ON d.id = c.doc_id "
                                     "WHERE c.id > ?1 ORDER BY c.id LIMIT ?2",
                                     kChunkColumns)
                             .c_str()),
        // A chunk replaced meanwhile (its document re-ingested) gets no vector rather than an error.
        put_vector(db, "INSERT OR REPLACE INTO vectors(chunk_id, model, vec) SELECT ?1, ?2, ?3 "
                       "WHERE EXISTS (SELECT 1 FROM chunks WHERE id = ?1)"),
        load_vectors(db, "SELECT chunk_id, vec FROM vectors WHERE model = ?1 ORDER BY chunk_id"),
        vector_model(db, "SELECT model FROM vectors ORDER BY rowid DESC LIMIT 1"),
        // FTS5 sorts by rank itself, so the snippet and the joins run for the k rows returned only.
        search(db, fmt::format("SELECT {}, -chunks_fts.rank, snippet(chunks_fts, 0, '[', ']', '…', {}) "
                               "FROM chunks_fts JOIN chunks c ON c.id = chunks_fts.rowid "
                               "JOIN documents d ON d.id = c.doc_id "
                               "WHERE chunks_fts MATCH ?1 AND chunks_fts.rank MATCH 'bm25({}, {})' "
                               "ORDER BY chunks_fts.rank LIMIT ?2",
                               kChunkColumns, kSnippetTokens, kTextWeight, kHeadingWeight)
                       .c_str()),
        put_label(db, "INSERT OR REPLACE INTO labels(chunk_id, task, label) VALUES (?1, ?2, ?3)"),
        get_label(db, "SELECT label FROM labels WHERE chunk_id = ?1 AND task = ?2"),
        set_meta(db, "INSERT OR REPLACE INTO meta(key, value) VALUES (?1, ?2)"),
        get_meta(db, "SELECT value FROM meta WHERE key = ?1") {}

  Statement begin, commit, rollback, savepoint, release, rollback_to;
  Statement find_document, all_documents, delete_document, delete_document_id, insert_document;
  Statement insert_page, insert_chunk, insert_fts, document_paths;
  Statement chunk_count, max_chunk_id, chunk_by_id, chunks_without_vectors, chunks_of_document, touch_document, chunks_after;
  Statement put_vector, load_vectors, vector_model;
  Statement search;
  Statement put_label, get_label, set_meta, get_meta;
};

namespace {

DocumentRecord read_document(const Use& u) {
  DocumentRecord d;
  d.id = u.int64(0);
  d.path = u.text(1);
  d.sha256 = u.text(2);
  d.size = u.int64(3);
  d.mtime_ns = u.int64(4);
  d.format = u.text(5);
  d.mime = u.text(6);
  d.title = u.text(7);
  d.status = parse_status(u.text(8));
  d.error = u.text(9);
  d.pages = u.integer(10);
  d.chunks = u.integer(11);
  return d;
}

int64_t insert_document_row(Statement& st, const DocumentRecord& doc, DocStatus status, int pages, int chunks) {
  Use u(st, "inserting a document");
  u.bind(1, doc.path)
      .bind(2, doc.sha256)
      .bind(3, doc.size)
      .bind(4, doc.mtime_ns)
      .bind(5, doc.format)
      .bind(6, doc.mime)
      .bind(7, doc.title)
      .bind(8, doc_status_name(status))
      .bind(9, doc.error)
      .bind(10, pages)
      .bind(11, chunks)
      .bind(12, now_seconds());
  u.run();
  return sqlite3_last_insert_rowid(st.db());
}

// Reads the schema version, creating the schema in an empty database.
void prepare_schema(sqlite3* db, const std::string& path, bool create) {
  bool has_meta = false;
  {
    Statement probe(db, "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'meta'");
    Use u(probe, "reading the schema");
    if (u.step()) has_meta = u.int64(0) > 0;
  }
  if (!has_meta) {
    Statement tables(db, "SELECT count(*) FROM sqlite_master");
    Use u(tables, "reading the schema");
    const bool empty = u.step() && u.int64(0) == 0;
    // An empty database is what a first run killed before its schema committed leaves behind: it
    // gets the schema (an empty index) whether or not this open may create one.
    if (!empty) fail(ErrorCode::InvalidFile, "{} is not a vireo index (an SQLite database without its tables)", path);
    exec(db, "BEGIN IMMEDIATE", "creating the schema");
    try {
      exec(db, kSchemaSql, "creating the schema");
      exec(db, fmt::format("INSERT INTO meta(key, value) VALUES ('schema_version', '{}')", kSchemaVersion).c_str(),
           "creating the schema");
      exec(db, "COMMIT", "creating the schema");
    } catch (...) {
      sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
      throw;
    }
    return;
  }
  Statement version(db, "SELECT value FROM meta WHERE key = 'schema_version'");
  Use u(version, "reading the schema version");
  if (!u.step()) fail(ErrorCode::InvalidFile, "{} is not a vireo index (no schema version)", path);
  const std::string text = u.text(0);
  int v = 0;
  try {
    v = std::stoi(text);
  } catch (const std::exception&) {
    fail(ErrorCode::InvalidFile, "{}: schema version '{}' is not a number", path, text);
  }
  if (v > kSchemaVersion) {
    fail(ErrorCode::Unsupported,
         "{} has index schema version {}, newer than this vireo understands ({}); use a newer vireo or "
         "re-index into a new folder",
         path, v, kSchemaVersion);
  }
  if (v < 1) fail(ErrorCode::InvalidFile, "{}: invalid schema version {}", path, v);
}

}  // namespace

std::unique_ptr<IndexStore> IndexStore::open(const std::string& dir, bool create) {
  namespace fs = std::filesystem;
  const std::string path = (fs::path(dir) / "index.sqlite").string();
  std::error_code ec;
  if (create) {
    fs::create_directories(dir, ec);
    if (ec) fail(ErrorCode::Io, "cannot create index folder {}: {}", dir, ec.message());
  } else if (!fs::is_directory(dir, ec)) {
    fail(ErrorCode::NotFound, "index folder {} does not exist", dir);
  } else if (!fs::exists(path, ec)) {
    fail(ErrorCode::NotFound, "{} holds no vireo index (no index.sqlite); build one first", dir);
  }

  sqlite3* db = nullptr;
  // One connection per thread (see the header): SQLite's own per-call locking is not needed.
  const int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | (create ? SQLITE_OPEN_CREATE : 0);
  if (sqlite3_open_v2(path.c_str(), &db, flags, nullptr) != SQLITE_OK) {
    const std::string message = db != nullptr ? sqlite3_errmsg(db) : "out of memory";
    sqlite3_close(db);
    fail(ErrorCode::Io, "cannot open index {}: {}", path, message);
  }
  try {
    sqlite3_extended_result_codes(db, 1);
    sqlite3_busy_timeout(db, 10000);
    // The first real read: a file that is not a database fails here.
    {
      char* message = nullptr;
      if (sqlite3_exec(db, "PRAGMA schema_version", nullptr, nullptr, &message) != SQLITE_OK) {
        const std::string text = message != nullptr ? message : sqlite3_errmsg(db);
        sqlite3_free(message);
        fail(ErrorCode::InvalidFile, "{} is not a vireo index: {}", path, text);
      }
    }
    {
      Statement wal(db, "PRAGMA journal_mode=WAL");
      Use u(wal, "setting journal_mode=WAL");
      if (!u.step() || u.text(0) != "wal") fail(ErrorCode::Io, "index {}: cannot switch to WAL mode", path);
    }
    // In WAL mode NORMAL loses no committed transaction when the process dies; only a power loss
    // or OS crash can drop the last commits (never corrupting the database).
    exec(db, "PRAGMA synchronous=NORMAL", "setting synchronous=NORMAL");
    exec(db, "PRAGMA foreign_keys=ON", "enabling foreign keys");
    prepare_schema(db, path, create);
    auto store = std::unique_ptr<IndexStore>(new IndexStore(dir, db));
    return store;
  } catch (...) {
    sqlite3_close_v2(db);
    throw;
  }
}

IndexStore::IndexStore(std::string dir, sqlite3* db)
    : dir_(std::move(dir)), db_(db), st_(std::make_unique<Statements>(db)) {}

IndexStore::~IndexStore() {
  if (batch_open_) Use(st_->rollback, "rolling back an unfinished batch").run();
  st_.reset();  // statements before the connection
  sqlite3_close_v2(db_);
}

void IndexStore::begin_batch() {
  if (batch_open_) return;
  Use(st_->begin, "begin transaction").run();
  batch_open_ = true;
}

void IndexStore::commit_batch() {
  if (!batch_open_) return;
  batch_open_ = false;
  Use(st_->commit, "commit").run();
}

std::optional<DocumentRecord> IndexStore::find_document(const std::string& path) {
  Use u(st_->find_document, "finding a document");
  u.bind(1, path);
  if (!u.step()) return std::nullopt;
  return read_document(u);
}

std::vector<DocumentRecord> IndexStore::documents() {
  std::vector<DocumentRecord> out;
  Use u(st_->all_documents, "listing documents");
  while (u.step()) out.push_back(read_document(u));
  return out;
}

int64_t IndexStore::put_document(const DocumentRecord& doc, const std::vector<Page>& pages,
                                 const std::vector<Chunk>& chunks, std::vector<int64_t>* chunk_ids) {
  if (chunk_ids != nullptr) chunk_ids->clear();
  if (doc.path.empty()) fail(ErrorCode::InvalidArgument, "put_document: the document has no path");
  Transaction tx = batch_open_ ? Transaction(st_->savepoint, st_->release, st_->rollback_to, &st_->release)
                                : Transaction(st_->begin, st_->commit, st_->rollback);
  Use(st_->delete_document, "removing the earlier record of a document").bind(1, doc.path).run();
  const int page_count = pages.empty() ? doc.pages : static_cast<int>(pages.size());
  const int64_t id =
      insert_document_row(st_->insert_document, doc, doc.status, page_count, static_cast<int>(chunks.size()));
  for (const Page& page : pages) {
    Use u(st_->insert_page, "inserting a page");
    u.bind(1, id)
        .bind(2, page.number)
        .bind(3, page_text(page))
        .bind(4, page.ocr ? 1 : 0)
        .bind(5, page.ocr_confidence)
        .bind(6, page.garbage_ratio)
        .bind(7, page.low_quality ? 1 : 0)
        .bind(8, page.quality_note);
    u.run();
  }
  for (const Chunk& chunk : chunks) {
    Use u(st_->insert_chunk, "inserting a chunk");
    u.bind(1, id)
        .bind(2, chunk.page)
        .bind(3, chunk.heading_path)
        .bind(4, chunk.text)
        .bind(5, chunk.char_start)
        .bind(6, chunk.char_end)
        .bind(7, chunk.tokens);
    u.run();
    const int64_t chunk_id = sqlite3_last_insert_rowid(db_);
    Use(st_->insert_fts, "indexing a chunk").bind(1, chunk_id).bind(2, chunk.text).bind(3, chunk.heading_path).run();
    if (chunk_ids != nullptr) chunk_ids->push_back(chunk_id);
  }
  tx.commit();
  return id;
}

int64_t IndexStore::put_failed(const DocumentRecord& doc) {
  if (doc.path.empty()) fail(ErrorCode::InvalidArgument, "put_failed: the document has no path");
  Transaction tx = batch_open_ ? Transaction(st_->savepoint, st_->release, st_->rollback_to, &st_->release)
                                : Transaction(st_->begin, st_->commit, st_->rollback);
  Use(st_->delete_document, "removing the earlier record of a document").bind(1, doc.path).run();
  const int64_t id = insert_document_row(st_->insert_document, doc, DocStatus::Failed, doc.pages, 0);
  tx.commit();
  return id;
}

int IndexStore::remove_missing(const std::vector<std::string>& roots, const std::vector<std::string>& keep) {
  const std::set<std::string> kept(keep.begin(), keep.end());
  auto under_a_root = [&](const std::string& path) {
    for (std::string root : roots) {
      while (root.size() > 1 && root.back() == '/') root.pop_back();
      if (path == root) return true;
      if (root == "/" ? path.starts_with('/')
                      : path.size() > root.size() && path.starts_with(root) && path[root.size()] == '/') {
        return true;
      }
    }
    return false;
  };
  Transaction tx(st_->begin, st_->commit, st_->rollback);
  std::vector<int64_t> doomed;
  {
    Use u(st_->document_paths, "listing documents");
    while (u.step()) {
      const std::string path = u.text(1);
      if (under_a_root(path) && kept.count(path) == 0) doomed.push_back(u.int64(0));
    }
  }
  for (const int64_t id : doomed) Use(st_->delete_document_id, "removing a document").bind(1, id).run();
  tx.commit();
  return static_cast<int>(doomed.size());
}

void IndexStore::touch_document(const std::string& path, int64_t size, int64_t mtime_ns) {
  Use(st_->touch_document, "recording a document's new time").bind(1, path).bind(2, size).bind(3, mtime_ns).run();
}

std::vector<StoredChunk> IndexStore::chunks_of(int64_t doc_id) {
  std::vector<StoredChunk> out;
  Use u(st_->chunks_of_document, "listing a document's chunks");
  u.bind(1, doc_id);
  while (u.step()) out.push_back(read_chunk(u));
  return out;
}

int64_t IndexStore::max_chunk_id() {
  Use u(st_->max_chunk_id, "reading the largest chunk id");
  return u.step() ? u.int64(0) : 0;
}

int64_t IndexStore::chunk_count() {
  Use u(st_->chunk_count, "counting chunks");
  return u.step() ? u.int64(0) : 0;
}

std::optional<StoredChunk> IndexStore::chunk(int64_t id) {
  Use u(st_->chunk_by_id, "reading a chunk");
  u.bind(1, id);
  if (!u.step()) return std::nullopt;
  return read_chunk(u);
}

std::vector<StoredChunk> IndexStore::chunks_without_vectors(const std::string& model, int limit, int64_t after_id,
                                                            int64_t up_to) {
  std::vector<StoredChunk> out;
  Use u(st_->chunks_without_vectors, "listing chunks without vectors");
  u.bind(1, model).bind(2, limit).bind(3, after_id).bind(4, up_to);
  while (u.step()) out.push_back(read_chunk(u));
  return out;
}

std::vector<StoredChunk> IndexStore::chunks_in_order(int64_t after_id, int limit) {
  std::vector<StoredChunk> out;
  Use u(st_->chunks_after, "listing chunks");
  u.bind(1, after_id).bind(2, limit);
  while (u.step()) out.push_back(read_chunk(u));
  return out;
}

void IndexStore::put_vectors(const std::string& model, std::span<const int64_t> chunk_ids,
                             std::span<const float> vectors, int dim) {
  if (model.empty()) fail(ErrorCode::InvalidArgument, "put_vectors: empty model name");
  if (dim <= 0) fail(ErrorCode::InvalidArgument, "put_vectors: dimension {} must be positive", dim);
  if (vectors.size() != chunk_ids.size() * static_cast<size_t>(dim)) {
    fail(ErrorCode::InvalidArgument, "put_vectors: {} floats for {} chunks of dimension {}", vectors.size(),
         chunk_ids.size(), dim);
  }
  Transaction tx(st_->begin, st_->commit, st_->rollback);
  for (size_t i = 0; i < chunk_ids.size(); ++i) {
    Use u(st_->put_vector, "storing a vector");
    u.bind(1, chunk_ids[i]).bind(2, model).bind_blob(3, vectors.data() + i * dim, sizeof(float) * dim);
    u.run();
  }
  tx.commit();
}

void IndexStore::load_vectors(const std::string& model, std::vector<int64_t>& ids, std::vector<float>& data, int& dim) {
  ids.clear();
  data.clear();
  dim = 0;
  Use u(st_->load_vectors, "loading vectors");
  u.bind(1, model);
  while (u.step()) {
    const std::string_view blob = u.blob(1);
    const size_t n = blob.size() / sizeof(float);
    if (blob.size() % sizeof(float) != 0 || n == 0 || (dim != 0 && n != static_cast<size_t>(dim))) {
      fail(ErrorCode::InvalidFile, "index {}: vector of chunk {} for model '{}' has {} bytes (dimension {})", dir_,
           u.int64(0), model, blob.size(), dim);
    }
    dim = static_cast<int>(n);
    ids.push_back(u.int64(0));
    const size_t at = data.size();
    data.resize(at + n);
    std::memcpy(data.data() + at, blob.data(), blob.size());
  }
}

std::string IndexStore::vector_model() {
  Use u(st_->vector_model, "reading the vector model");
  return u.step() ? u.text(0) : std::string();
}

std::vector<SearchHit> IndexStore::search_bm25(const std::string& query, int k) {
  std::vector<SearchHit> hits;
  const std::string expr = fts_query(query);
  if (expr.empty() || k <= 0) return hits;
  Use u(st_->search, "BM25 search");
  u.bind(1, expr).bind(2, k);
  while (u.step()) {
    SearchHit hit;
    hit.chunk = read_chunk(u);
    hit.score = u.real(10);
    hit.snippet = u.text(11);
    hits.push_back(std::move(hit));
  }
  return hits;
}

void IndexStore::put_label(int64_t chunk_id, const std::string& task, const std::string& label) {
  Use(st_->put_label, "storing a label").bind(1, chunk_id).bind(2, task).bind(3, label).run();
}

void IndexStore::put_labels(std::span<const int64_t> chunk_ids, const std::string& task, const std::string& label) {
  Transaction tx(st_->begin, st_->commit, st_->rollback);
  for (const int64_t id : chunk_ids) Use(st_->put_label, "storing a label").bind(1, id).bind(2, task).bind(3, label).run();
  tx.commit();
}

std::optional<std::string> IndexStore::label(int64_t chunk_id, const std::string& task) {
  Use u(st_->get_label, "reading a label");
  u.bind(1, chunk_id).bind(2, task);
  if (!u.step()) return std::nullopt;
  return u.text(0);
}

void IndexStore::set_meta(const std::string& key, const std::string& value) {
  Use(st_->set_meta, "writing metadata").bind(1, key).bind(2, value).run();
}

std::optional<std::string> IndexStore::meta(const std::string& key) {
  Use u(st_->get_meta, "reading metadata");
  u.bind(1, key);
  if (!u.step()) return std::nullopt;
  return u.text(0);
}

std::string IndexStore::check_integrity() {
  std::string problems;
  {
    Statement check(db_, "PRAGMA integrity_check");
    Use u(check, "integrity check");
    while (u.step()) {
      const std::string line = u.text(0);
      if (line != "ok") problems += line + "\n";
    }
  }
  {
    Statement check(db_, "PRAGMA foreign_key_check");
    Use u(check, "foreign key check");
    while (u.step()) {
      problems += fmt::format("row {} of {} refers to a missing {} row\n", u.int64(1), u.text(0), u.text(2));
    }
  }
  // With rank 1 the check also compares the FTS index with the chunks table it mirrors.
  char* message = nullptr;
  if (sqlite3_exec(db_, "INSERT INTO chunks_fts(chunks_fts, rank) VALUES ('integrity-check', 1)", nullptr, nullptr,
                   &message) != SQLITE_OK) {
    problems += fmt::format("full-text index: {}\n", message != nullptr ? message : sqlite3_errmsg(db_));
  }
  sqlite3_free(message);
  if (!problems.empty() && problems.back() == '\n') problems.pop_back();
  return problems;
}

}  // namespace vireo
