// The vireo subcommands. Each registers its options on the CLI11 app and returns the function
// that runs it; main() catches vireo::Error and prints it as "vireo: error: ...".
#pragma once
#include <functional>

#include <CLI/CLI.hpp>

namespace vireo::cli {

using Runner = std::function<int()>;

Runner add_info(CLI::App& app);
Runner add_synth(CLI::App& app);
Runner add_tokenize(CLI::App& app);
Runner add_detokenize(CLI::App& app);
Runner add_template(CLI::App& app);
Runner add_run(CLI::App& app);
Runner add_score(CLI::App& app);
Runner add_embed(CLI::App& app);
Runner add_quantize(CLI::App& app);
Runner add_bench(CLI::App& app);
Runner add_bench_serve(CLI::App& bench);  // `vireo bench serve`, registered by add_bench
Runner add_bench_compare(CLI::App& bench);  // `vireo bench compare`, registered by add_bench
Runner add_serve(CLI::App& app);
Runner add_ingest(CLI::App& app);
Runner add_search(CLI::App& app);
Runner add_classify(CLI::App& app);
Runner add_ask(CLI::App& app);
Runner add_eval_retrieval(CLI::App& app);

}  // namespace vireo::cli
