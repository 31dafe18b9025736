// Top-1 agreement of vireo's next-token logits with llama.cpp's, run in llama.cpp itself (any of
// its builds: CUDA, CPU). Built and run by scripts/gpu-check.sh against the llama.cpp it builds:
//
//   llama-agreement MODEL.gguf IDS VIREO_LOGITS [--gap 0.1] [--cpu]
//
// IDS: comma-separated token ids; VIREO_LOGITS: `vireo score MODEL --prompt-ids IDS --logits-out F`
// (float32 [ids, n_vocab]). llama.cpp scores the ids twice: the whole prompt in one batch (the
// reference) and one token at a time (its decode kernels: the noise floor between two correct
// runs). Prints one JSON line; exits 1 when vireo's top-1 agreement over the decisive positions
// (the reference leads by >= gap) is below 0.99.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "llama.h"
#include "logit_agreement.h"

namespace {

[[noreturn]] void die(const std::string& msg) {
  std::fprintf(stderr, "llama-agreement: %s\n", msg.c_str());
  std::exit(2);
}

std::vector<llama_token> parse_ids(const std::string& list) {
  std::vector<llama_token> ids;
  std::stringstream ss(list);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (item.empty()) continue;
    size_t used = 0;
    try {
      ids.push_back(static_cast<llama_token>(std::stol(item, &used)));
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != item.size()) die("not a token id: '" + item + "'");
  }
  return ids;
}

// llama.cpp's logits after each id, [ids][V]: one batch of every id, or one id per decode.
std::vector<float> llama_logits(llama_model* model, const std::vector<llama_token>& ids, size_t V, bool one_at_a_time) {
  llama_context_params cp = llama_context_default_params();
  cp.n_ctx = static_cast<uint32_t>(ids.size() + 16);
  cp.n_batch = cp.n_ubatch = static_cast<uint32_t>(ids.size());
  cp.no_perf = true;
  llama_context* ctx = llama_init_from_model(model, cp);
  if (ctx == nullptr) die("cannot create a llama.cpp context");
  std::vector<float> out(ids.size() * V);
  if (one_at_a_time) {
    for (size_t i = 0; i < ids.size(); ++i) {
      llama_token t = ids[i];
      if (llama_decode(ctx, llama_batch_get_one(&t, 1)) != 0) die("llama_decode failed");
      std::memcpy(out.data() + i * V, llama_get_logits_ith(ctx, -1), V * sizeof(float));
    }
  } else {
    llama_batch b = llama_batch_init(static_cast<int32_t>(ids.size()), 0, 1);
    for (size_t i = 0; i < ids.size(); ++i) {
      b.token[i] = ids[i];
      b.pos[i] = static_cast<llama_pos>(i);
      b.n_seq_id[i] = 1;
      b.seq_id[i][0] = 0;
      b.logits[i] = 1;
    }
    b.n_tokens = static_cast<int32_t>(ids.size());
    if (llama_decode(ctx, b) != 0) die("llama_decode failed");
    for (size_t i = 0; i < ids.size(); ++i) {
      std::memcpy(out.data() + i * V, llama_get_logits_ith(ctx, static_cast<int32_t>(i)), V * sizeof(float));
    }
    llama_batch_free(b);
  }
  llama_free(ctx);
  return out;
}

std::string to_json(const vireo::test::LogitAgreement& a) {
  char buf[256];
  std::snprintf(buf, sizeof buf, R"({"top1":%.4f,"decisive_top1":%.4f,"decisive":%zu,"mean_kl":%.3e,"max_kl":%.3e})",
                a.top1, a.decisive_top1, a.decisive, a.mean_kl, a.max_kl);
  return buf;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) die("usage: llama-agreement MODEL.gguf IDS VIREO_LOGITS [--gap G] [--cpu]");
  double gap = 0.1;
  bool cpu = false;
  for (int i = 4; i < argc; ++i) {
    if (std::strcmp(argv[i], "--gap") == 0 && i + 1 < argc) {
      gap = std::atof(argv[++i]);
    } else if (std::strcmp(argv[i], "--cpu") == 0) {
      cpu = true;
    } else {
      die(std::string("unknown option ") + argv[i]);
    }
  }
  const std::vector<llama_token> ids = parse_ids(argv[2]);
  if (ids.empty()) die("no token ids");

  llama_log_set([](ggml_log_level, const char*, void*) {}, nullptr);
  llama_backend_init();
  llama_model_params mp = llama_model_default_params();
  mp.n_gpu_layers = cpu ? 0 : 999;
  llama_model* model = llama_model_load_from_file(argv[1], mp);
  if (model == nullptr) die(std::string("llama.cpp cannot load ") + argv[1]);
  const auto V = static_cast<size_t>(llama_vocab_n_tokens(llama_model_get_vocab(model)));

  std::ifstream in(argv[3], std::ios::binary);
  std::vector<float> vireo(ids.size() * V);
  in.read(reinterpret_cast<char*>(vireo.data()), static_cast<std::streamsize>(vireo.size() * sizeof(float)));
  if (!in || in.peek() != EOF)
    die(std::string(argv[3]) + " is not float32 [" + std::to_string(ids.size()) + ", " + std::to_string(V) + "]");

  const std::vector<float> batch = llama_logits(model, ids, V, false);
  const std::vector<float> single = llama_logits(model, ids, V, true);
  llama_model_free(model);

  const auto a = vireo::test::compare_logits(batch, vireo, V, gap);
  const auto floor = vireo::test::compare_logits(batch, single, V, gap);
  std::printf(R"({"positions":%zu,"gap":%.3f,"device":"%s","vireo":%s,"llama_one_at_a_time":%s})"
              "\n",
              ids.size(), gap, cpu ? "cpu" : "gpu", to_json(a).c_str(), to_json(floor).c_str());
  return a.decisive_top1 >= 0.99 ? 0 : 1;
}
