// vireo: one binary, one subcommand per job.
#include <cstdio>
#include <map>

#include "commands.h"
#include "vireo/core/error.h"

int main(int argc, char** argv) {
  CLI::App app{"vireo: fast local inference for language models, and a document pipeline on it"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "vireo 0.1.0");
  std::map<const CLI::App*, vireo::cli::Runner> runners;
  auto add = [&](auto adder) {
    auto runner = adder(app);  // registers one subcommand, the newest in the app
    runners[app.get_subcommands({}).back()] = std::move(runner);
  };
  add(vireo::cli::add_info);
  add(vireo::cli::add_synth);
  add(vireo::cli::add_tokenize);
  add(vireo::cli::add_detokenize);
  add(vireo::cli::add_template);
  add(vireo::cli::add_run);
  add(vireo::cli::add_score);
  add(vireo::cli::add_embed);
  add(vireo::cli::add_quantize);
  add(vireo::cli::add_bench);
  add(vireo::cli::add_serve);
  add(vireo::cli::add_ingest);
  add(vireo::cli::add_search);
  add(vireo::cli::add_classify);
  add(vireo::cli::add_ask);
  add(vireo::cli::add_eval_retrieval);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    for (const auto& [sub, run] : runners) {
      if (sub->parsed()) return run();
    }
  } catch (const vireo::Error& e) {
    std::fprintf(stderr, "vireo: error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "vireo: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
