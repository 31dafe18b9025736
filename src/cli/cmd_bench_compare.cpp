// vireo bench compare: two `vireo bench -o json` runs (two builds, two configurations) side by
// side; per matching test the ratio of the rates and whether the difference is significant.
#include <cstdio>
#include <memory>

#include <nlohmann/json.hpp>

#include "commands.h"
#include "vireo/bench/compare.h"

namespace vireo::cli {

Runner add_bench_compare(CLI::App& bench) {
  auto* cmd = bench.add_subcommand(
      "compare", "Compare two `vireo bench -o json` outputs: B/A ratio per test with a 95% confidence interval");
  struct Opts {
    std::string a, b;
    bool json = false;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("A", o->a, "The baseline: a `vireo bench -o json` document")->required();
  cmd->add_option("B", o->b, "The candidate, compared with A")->required();
  cmd->add_flag("--json", o->json, "Print the comparison as JSON");
  return [o] {
    const CompareResult result = compare_bench(load_bench_json(o->a), load_bench_json(o->b));
    if (o->json) {
      nlohmann::json j = compare_to_json(result);
      j["a"] = o->a;
      j["b"] = o->b;
      std::printf("%s\n", j.dump(2).c_str());
    } else {
      std::printf("A: %s\nB: %s\n%s", o->a.c_str(), o->b.c_str(), format_compare_table(result).c_str());
    }
    return 0;
  };
}

}  // namespace vireo::cli
