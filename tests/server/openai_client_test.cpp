// `vireo serve` as a user runs it (the binary, an API key, a chat template file), driven by the
// official `openai` npm client: chat and completions whole and streamed, embeddings, models,
// JSON-schema output validated with Ajv, typed errors, an aborted stream. Then SIGTERM: the server
// stops cleanly. Skips when Node.js or the npm packages are missing.
#include <gtest/gtest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "reference_engine.h"
#include "test_util.h"
#include "vireo/models/synth.h"

namespace vireo {
namespace {

// Starts `vireo ARGS...` with stdout on a pipe; returns its pid and the pipe's read end.
std::pair<pid_t, FILE*> spawn(const std::vector<std::string>& args) {
  int fds[2];
  if (::pipe(fds) != 0) return {-1, nullptr};
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(fds[1], STDOUT_FILENO);
    ::close(fds[0]);
    ::close(fds[1]);
    std::vector<char*> argv;
    std::string bin = VIREO_BINARY_PATH;
    argv.push_back(bin.data());
    std::vector<std::string> copy = args;
    for (auto& a : copy) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execv(bin.c_str(), argv.data());
    ::_exit(127);
  }
  ::close(fds[1]);
  return {pid, ::fdopen(fds[0], "r")};
}

TEST(OpenAIClient, OfficialClientAgainstVireoServe) {
  const std::string ref = std::string(VIREO_SOURCE_DIR) + "/tests/reference";
  if (!std::filesystem::exists(ref + "/node_modules/openai") || !std::filesystem::exists(ref + "/node_modules/ajv")) {
    GTEST_SKIP() << "the openai npm client is not installed (run scripts/install-deps.sh; needs Node.js >= 20 and npm)";
  }
  if (std::system("node --version > /dev/null 2>&1") != 0) GTEST_SKIP() << "node not found";

  test::TempDir dir;
  SynthOptions d;
  d.preset = "tiny";
  d.type = "q8_0";
  synthesize_model(d, dir.file("tiny.gguf"));
  SynthOptions e;
  e.preset = "bge-small";
  e.type = "f16";
  e.n_layer = 2;
  synthesize_model(e, dir.file("bge.gguf"));
  std::ofstream(dir.file("chat.jinja"))
      << "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
         "{% if add_generation_prompt %}<|assistant|>{% endif %}";

  auto [pid, out] = spawn({"serve", dir.file("tiny.gguf"), dir.file("bge.gguf"), "--alias", "tiny", "--alias", "bge",
                           "--port", "0", "--api-key", "test-key", "--chat-template-file", dir.file("chat.jinja"),
                           "--threads", "2", "--parallel", "4"});
  ASSERT_GT(pid, 0);
  ASSERT_NE(out, nullptr);
  std::array<char, 512> line{};
  std::string url;
  if (std::fgets(line.data(), line.size(), out)) {
    const std::string s = line.data();  // "vireo: serving tiny, bge at http://127.0.0.1:PORT/v1"
    const size_t at = s.find("http://");
    if (at != std::string::npos) url = s.substr(at, s.find_first_of(" \n", at) - at);
  }
  ASSERT_FALSE(url.empty()) << "the server did not say where it listens";

  const std::string cmd = "node " + test::shell_quote(std::string(VIREO_SOURCE_DIR) + "/tests/server/openai_client.mjs") +
                          " " + test::shell_quote(url) + " test-key 2>&1";
  std::string log;
  int status = -1;
  if (FILE* p = ::popen(cmd.c_str(), "r")) {
    std::array<char, 4096> buf;
    while (std::fgets(buf.data(), buf.size(), p)) log += buf.data();
    status = ::pclose(p);
  }
  EXPECT_EQ(status, 0) << log;
  std::printf("%s", log.c_str());

  // SIGTERM ends the server with status 0.
  ::kill(pid, SIGTERM);
  int wstatus = 0;
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  pid_t done = 0;
  while ((done = ::waitpid(pid, &wstatus, WNOHANG)) == 0 && std::chrono::steady_clock::now() < give_up) {
    ::usleep(10000);
  }
  if (done == 0) {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, &wstatus, 0);
    ADD_FAILURE() << "the server did not stop within 20 s of SIGTERM";
  } else {
    EXPECT_TRUE(WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0) << "exit status " << wstatus;
  }
  std::fclose(out);
}

}  // namespace
}  // namespace vireo
