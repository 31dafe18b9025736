// llama.cpp's tokenizer called in-process: the libllama shared library that the pinned npm package
// @node-llama-cpp/linux-x64 ships (the same build tests/reference/llama_ref.mjs drives), loaded with
// dlopen. Unlike the Node driver it takes raw bytes, so it checks invalid UTF-8 too, and it is fast
// enough to compare every token's piece. The few declarations below mirror llama.h of that exact
// version (node-llama-cpp 3.22.1); the loader refuses any other version.
#pragma once
#include <dlfcn.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace vireo::test {

class LlamaDirect {
 public:
  // The shared instance, or nullptr with `why` set when the library cannot be used here.
  static LlamaDirect* get(std::string* why) {
    static std::string reason;
    static std::unique_ptr<LlamaDirect> inst = [] {
      auto d = std::unique_ptr<LlamaDirect>(new LlamaDirect());
      reason = d->init();
      return reason.empty() ? std::move(d) : nullptr;
    }();
    if (why) *why = reason;
    return inst.get();
  }

  // A vocab-only model handle (cached per path), or nullptr.
  const void* vocab(const std::string& path) {
    auto it = vocabs_.find(path);
    if (it != vocabs_.end()) return it->second;
    ModelParams p = default_params_();
    p.vocab_only = true;
    void* model = load_(path.c_str(), p);
    const void* v = model ? get_vocab_(model) : nullptr;
    vocabs_[path] = v;
    return v;
  }

  std::vector<int32_t> tokenize(const void* vocab, const std::string& text, bool add_special, bool parse_special) {
    std::vector<int32_t> out(text.size() + 16);
    int32_t n = tokenize_(vocab, text.data(), static_cast<int32_t>(text.size()), out.data(),
                          static_cast<int32_t>(out.size()), add_special, parse_special);
    if (n < 0) {
      out.resize(-n);
      n = tokenize_(vocab, text.data(), static_cast<int32_t>(text.size()), out.data(), static_cast<int32_t>(out.size()),
                    add_special, parse_special);
    }
    out.resize(n < 0 ? 0 : n);
    return out;
  }

  std::string piece(const void* vocab, int32_t id, bool special) {
    std::string buf(64, '\0');
    int32_t n = piece_(vocab, id, buf.data(), static_cast<int32_t>(buf.size()), 0, special);
    if (n < 0) {
      buf.resize(-n);
      n = piece_(vocab, id, buf.data(), static_cast<int32_t>(buf.size()), 0, special);
    }
    buf.resize(n < 0 ? 0 : n);
    return buf;
  }

  std::string detokenize(const void* vocab, const std::vector<int32_t>& ids, bool remove_special, bool unparse_special) {
    std::string buf(ids.size() * 8 + 64, '\0');
    int32_t n = detok_(vocab, ids.data(), static_cast<int32_t>(ids.size()), buf.data(), static_cast<int32_t>(buf.size()),
                       remove_special, unparse_special);
    if (n < 0) {
      buf.resize(-n);
      n = detok_(vocab, ids.data(), static_cast<int32_t>(ids.size()), buf.data(), static_cast<int32_t>(buf.size()),
                 remove_special, unparse_special);
    }
    buf.resize(n < 0 ? 0 : n);
    return buf;
  }

  uint32_t attr(const void* vocab, int32_t id) { return attr_(vocab, id); }
  int32_t n_tokens(const void* vocab) { return n_tokens_(vocab); }

 private:
  // llama_model_params of llama.cpp as bundled with node-llama-cpp 3.22.1.
  struct ModelParams {
    void* devices;
    const void* tensor_buft_overrides;
    int32_t n_gpu_layers;
    int32_t split_mode, load_mode, lazy_mode;
    int32_t main_gpu;
    const float* tensor_split;
    void* progress_callback;
    void* progress_callback_user_data;
    const void* kv_overrides;
    bool vocab_only, check_tensors, use_extra_bufts, no_host, no_alloc, load_mtp;
  };

  LlamaDirect() = default;

  std::string init() {
    const std::string root = std::string(VIREO_SOURCE_DIR) + "/tests/reference/node_modules";
    const std::string dir = root + "/@node-llama-cpp/linux-x64/bins/linux-x64/";
    if (!std::filesystem::exists(dir + "libllama.v0.5.0.so")) {
      return "llama.cpp shared library not installed (tests/reference: npm install)";
    }
    std::ifstream pkg(root + "/node-llama-cpp/package.json");
    const auto j = nlohmann::json::parse(pkg, nullptr, false);
    if (j.is_discarded() || j.value("version", "") != "3.22.1") {
      return "node-llama-cpp is not version 3.22.1, whose llama.h these declarations mirror";
    }
    ggml_ = dlopen((dir + "libggml.v0.5.0.so").c_str(), RTLD_NOW | RTLD_LOCAL);
    llama_ = dlopen((dir + "libllama.v0.5.0.so").c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!ggml_ || !llama_) return std::string("dlopen failed: ") + dlerror();
    auto sym = [&](void* lib, const char* name) { return dlsym(lib, name); };
    auto load_all = reinterpret_cast<void (*)(const char*)>(sym(ggml_, "ggml_backend_load_all_from_path"));
    auto backend_init = reinterpret_cast<void (*)()>(sym(llama_, "llama_backend_init"));
    auto log_set = reinterpret_cast<void (*)(void (*)(int, const char*, void*), void*)>(sym(llama_, "llama_log_set"));
    default_params_ = reinterpret_cast<ModelParams (*)()>(sym(llama_, "llama_model_default_params"));
    load_ = reinterpret_cast<void* (*)(const char*, ModelParams)>(sym(llama_, "llama_model_load_from_file"));
    get_vocab_ = reinterpret_cast<const void* (*)(const void*)>(sym(llama_, "llama_model_get_vocab"));
    tokenize_ = reinterpret_cast<decltype(tokenize_)>(sym(llama_, "llama_tokenize"));
    piece_ = reinterpret_cast<decltype(piece_)>(sym(llama_, "llama_token_to_piece"));
    detok_ = reinterpret_cast<decltype(detok_)>(sym(llama_, "llama_detokenize"));
    attr_ = reinterpret_cast<decltype(attr_)>(sym(llama_, "llama_vocab_get_attr"));
    n_tokens_ = reinterpret_cast<decltype(n_tokens_)>(sym(llama_, "llama_vocab_n_tokens"));
    if (!load_all || !backend_init || !log_set || !default_params_ || !load_ || !get_vocab_ || !tokenize_ || !piece_ ||
        !detok_ || !attr_ || !n_tokens_) {
      return "libllama lacks an expected symbol";
    }
    log_set([](int, const char*, void*) {}, nullptr);
    load_all(dir.c_str());
    backend_init();
    return "";
  }

  void* ggml_ = nullptr;
  void* llama_ = nullptr;
  ModelParams (*default_params_)() = nullptr;
  void* (*load_)(const char*, ModelParams) = nullptr;
  const void* (*get_vocab_)(const void*) = nullptr;
  int32_t (*tokenize_)(const void*, const char*, int32_t, int32_t*, int32_t, bool, bool) = nullptr;
  int32_t (*piece_)(const void*, int32_t, char*, int32_t, int32_t, bool) = nullptr;
  int32_t (*detok_)(const void*, const int32_t*, int32_t, char*, int32_t, bool, bool) = nullptr;
  uint32_t (*attr_)(const void*, int32_t) = nullptr;
  int32_t (*n_tokens_)(const void*) = nullptr;
  std::map<std::string, const void*> vocabs_;
};

}  // namespace vireo::test
