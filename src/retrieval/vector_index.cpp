// Vector search over the stored chunk vectors (exact for small sets, an HNSW graph for large ones)
// and reciprocal-rank fusion.
// hnswlib's SIMD search prefetches one entry past the end of a neighbour list: harmless, but
// AddressSanitizer reports it, so sanitizer builds use its plain distance code instead.
#if defined(__SANITIZE_ADDRESS__)
#define NO_MANUAL_VECTORIZATION
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define NO_MANUAL_VECTORIZATION
#endif
#endif
// This header defines non-inline functions: include it from this file only.
#include <hnswlib/hnswlib.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include "vireo/core/error.h"
#include "vireo/retrieval/store.h"

namespace vireo {

namespace {

// Below this many vectors an exact scan is fast and has no recall loss.
constexpr size_t kExactSearchLimit = 2000;
constexpr size_t kHnswM = 16;
constexpr size_t kHnswEfConstruction = 200;
constexpr size_t kHnswSeed = 100;

// Model names become file names: keep [A-Za-z0-9._-], replace the rest.
std::string sanitise(const std::string& model) {
  std::string out;
  for (const char c : model) {
    const bool keep =
        (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '_';
    out += keep ? c : '_';
  }
  if (out.empty() || out[0] == '.') out.insert(out.begin(), '_');
  return out;
}

// A 64-bit hash of the ids and vector bytes, eight bytes a step (it runs on every load): the saved
// graph is reused only for exactly these vectors.
uint64_t fingerprint(const std::vector<int64_t>& ids, const std::vector<float>& data) {
  uint64_t h = 1469598103934665603ull;
  auto mix = [&h](const void* p, size_t n) {
    const auto* b = static_cast<const unsigned char*>(p);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
      uint64_t word;
      std::memcpy(&word, b + i, 8);
      h = (h ^ word) * 0x100000001b3ull;
      h ^= h >> 29;
    }
    for (; i < n; ++i) h = (h ^ b[i]) * 0x100000001b3ull;
  };
  mix(ids.data(), ids.size() * sizeof(int64_t));
  mix(data.data(), data.size() * sizeof(float));
  return h;
}

struct GraphMeta {
  std::string count, max_id, fingerprint, dim;
  bool operator==(const GraphMeta&) const = default;
};

std::string meta_key(const std::string& model, const char* what) {
  return "vectors." + model + "." + what;
}

GraphMeta stored_graph_meta(IndexStore& store, const std::string& model) {
  GraphMeta m;
  m.count = store.meta(meta_key(model, "count")).value_or("");
  m.max_id = store.meta(meta_key(model, "max_chunk_id")).value_or("");
  m.fingerprint = store.meta(meta_key(model, "fingerprint")).value_or("");
  m.dim = store.meta(meta_key(model, "dim")).value_or("");
  return m;
}

// hnswlib trusts its file's header; check it describes `count` vectors of `dim` floats with
// M = kHnswM before handing it over, so a damaged or foreign file means a rebuild, not a crash.
bool graph_header_matches(const std::string& path, size_t count, int dim) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  size_t header[4] = {};  // offsetLevel0, max_elements, cur_element_count, size_data_per_element
  in.read(reinterpret_cast<char*>(header), sizeof header);
  if (!in) return false;
  const size_t level0_links = kHnswM * 2 * sizeof(hnswlib::tableint) + sizeof(hnswlib::linklistsizeint);
  const size_t per_element = level0_links + static_cast<size_t>(dim) * sizeof(float) + sizeof(hnswlib::labeltype);
  std::error_code ec;
  const auto file_size = std::filesystem::file_size(path, ec);
  return !ec && header[0] == 0 && header[1] == count && header[2] == count && header[3] == per_element &&
         file_size >= count * per_element;
}

}  // namespace

struct VectorIndex::Impl {
  int dim = 0;
  std::vector<int64_t> ids;  // exact search: the ids and row-major vectors
  std::vector<float> data;
  std::unique_ptr<hnswlib::InnerProductSpace> space;  // graph search
  std::unique_ptr<hnswlib::HierarchicalNSW<float>> graph;
  size_t count = 0;

  std::vector<std::pair<int64_t, float>> exact(const float* q, int k) const {
    std::vector<std::pair<int64_t, float>> scored(ids.size());
    for (size_t i = 0; i < ids.size(); ++i) {
      const float* v = data.data() + i * static_cast<size_t>(dim);
      float dot = 0.f;
      for (int j = 0; j < dim; ++j) dot += q[j] * v[j];
      scored[i] = {ids[i], dot};
    }
    const size_t n = std::min(scored.size(), static_cast<size_t>(k));
    auto better = [](const auto& a, const auto& b) {
      return a.second != b.second ? a.second > b.second : a.first < b.first;
    };
    std::partial_sort(scored.begin(), scored.begin() + static_cast<std::ptrdiff_t>(n), scored.end(), better);
    scored.resize(n);
    return scored;
  }

  std::vector<std::pair<int64_t, float>> approximate(const float* q, int k) const {
    // hnswlib searches with ef = max(ef_, asked); asking for max(2k, 64) sets ef without touching
    // the shared ef_ member, so concurrent searches stay safe.
    const size_t ask = std::max<size_t>(static_cast<size_t>(k) * 2, 64);
    auto found = graph->searchKnn(q, ask);
    std::vector<std::pair<int64_t, float>> out;
    out.reserve(found.size());
    while (!found.empty()) {  // worst first
      out.emplace_back(static_cast<int64_t>(found.top().second), 1.0f - found.top().first);
      found.pop();
    }
    std::reverse(out.begin(), out.end());
    if (out.size() > static_cast<size_t>(k)) out.resize(static_cast<size_t>(k));
    return out;
  }

  void build_graph(const std::vector<int64_t>& vec_ids, const std::vector<float>& vecs) {
    graph = std::make_unique<hnswlib::HierarchicalNSW<float>>(space.get(), vec_ids.size(), kHnswM, kHnswEfConstruction,
                                                              kHnswSeed);
    const size_t n = vec_ids.size();
    auto add = [&](size_t i) {
      graph->addPoint(vecs.data() + i * static_cast<size_t>(dim), static_cast<hnswlib::labeltype>(vec_ids[i]));
    };
    add(0);
    // addPoint is thread-safe: spread the insertions over the cores.
    const size_t workers = std::clamp<size_t>(std::thread::hardware_concurrency(), 1, 16);
    std::atomic<size_t> next{1};
    std::vector<std::thread> threads;
    std::exception_ptr error;
    std::mutex error_mutex;
    for (size_t w = 0; w < workers; ++w) {
      threads.emplace_back([&] {
        try {
          for (size_t i = next++; i < n; i = next++) add(i);
        } catch (...) {
          std::lock_guard lock(error_mutex);
          error = std::current_exception();
          next = n;
        }
      });
    }
    for (auto& t : threads) t.join();
    if (error) std::rethrow_exception(error);
  }
};

std::unique_ptr<VectorIndex> VectorIndex::load_or_build(IndexStore& store, const std::string& model) {
  auto impl = std::make_unique<Impl>();
  std::vector<int64_t> ids;
  std::vector<float> data;
  store.load_vectors(model, ids, data, impl->dim);
  impl->count = ids.size();
  if (ids.size() < kExactSearchLimit) {
    impl->ids = std::move(ids);
    impl->data = std::move(data);
    return std::unique_ptr<VectorIndex>(new VectorIndex(std::move(impl)));
  }

  const int dim = impl->dim;
  const GraphMeta current{std::to_string(ids.size()), std::to_string(ids.back()),  // ids come sorted
                          std::to_string(fingerprint(ids, data)), std::to_string(dim)};
  const std::string path = store.dir() + "/vectors-" + sanitise(model) + ".hnsw";
  impl->space = std::make_unique<hnswlib::InnerProductSpace>(static_cast<size_t>(dim));

  if (stored_graph_meta(store, model) == current && graph_header_matches(path, ids.size(), dim)) {
    try {
      impl->graph = std::make_unique<hnswlib::HierarchicalNSW<float>>(impl->space.get(), path, false, ids.size());
      // This hnswlib's loading constructor leaves the deleted count uninitialised: recount it.
      impl->graph->num_deleted_ = 0;
      for (size_t i = 0; i < impl->graph->cur_element_count; ++i) {
        if (impl->graph->isMarkedDeleted(static_cast<hnswlib::tableint>(i))) ++impl->graph->num_deleted_;
      }
    } catch (const std::exception&) {
      impl->graph.reset();  // unreadable: rebuild below
    }
  }
  if (!impl->graph) {
    impl->build_graph(ids, data);
    // Written aside and renamed, then recorded: a crash in between leaves a graph the metadata does
    // not vouch for, which the next load rebuilds. A read-only folder just means no saved graph.
    // A name of its own, so two processes building at once never write one file together.
    static std::atomic<unsigned> serial{0};
    const std::string tmp = fmt::format("{}.{}.{}.tmp", path, ::getpid(), serial++);
    try {
      impl->graph->saveIndex(tmp);
      std::filesystem::rename(tmp, path);
      store.set_meta(meta_key(model, "count"), current.count);
      store.set_meta(meta_key(model, "max_chunk_id"), current.max_id);
      store.set_meta(meta_key(model, "fingerprint"), current.fingerprint);
      store.set_meta(meta_key(model, "dim"), current.dim);
    } catch (const std::exception&) {
      std::error_code ec;
      std::filesystem::remove(tmp, ec);
    }
  }
  return std::unique_ptr<VectorIndex>(new VectorIndex(std::move(impl)));
}

VectorIndex::VectorIndex(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
VectorIndex::~VectorIndex() = default;

int VectorIndex::dim() const {
  return impl_->dim;
}
size_t VectorIndex::size() const {
  return impl_->count;
}

std::vector<std::pair<int64_t, float>> VectorIndex::search(std::span<const float> query, int k) const {
  if (k <= 0 || impl_->count == 0) return {};
  if (query.size() != static_cast<size_t>(impl_->dim)) {
    fail(ErrorCode::InvalidArgument, "vector search: query has dimension {}, the index {}", query.size(), impl_->dim);
  }
  // Normalised here too, so the scores are cosines whatever the caller passed.
  std::vector<float> q(query.begin(), query.end());
  double norm = 0.0;
  for (const float x : q) norm += static_cast<double>(x) * x;
  if (norm > 0.0) {
    const auto inv = static_cast<float>(1.0 / std::sqrt(norm));
    for (float& x : q) x *= inv;
  }
  return impl_->graph ? impl_->approximate(q.data(), k) : impl_->exact(q.data(), k);
}

std::vector<std::pair<int64_t, double>> reciprocal_rank_fusion(const std::vector<std::vector<int64_t>>& rankings,
                                                               int k_rrf) {
  if (k_rrf < 0) fail(ErrorCode::InvalidArgument, "reciprocal rank fusion: k = {} must not be negative", k_rrf);
  std::unordered_map<int64_t, double> scores;
  for (const auto& ranking : rankings) {
    std::unordered_set<int64_t> seen;  // an id repeated within one list counts once, at its best rank
    for (size_t i = 0; i < ranking.size(); ++i) {
      if (!seen.insert(ranking[i]).second) continue;
      scores[ranking[i]] += 1.0 / (k_rrf + static_cast<double>(i + 1));
    }
  }
  std::vector<std::pair<int64_t, double>> fused(scores.begin(), scores.end());
  std::sort(fused.begin(), fused.end(), [](const auto& a, const auto& b) {
    return a.second != b.second ? a.second > b.second : a.first < b.first;
  });
  return fused;
}

}  // namespace vireo
