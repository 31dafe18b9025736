// The benchmark's self-contained HTML report: inline SVG charts (throughput, tok/s versus batch
// and depth, the inter-token latency histogram, memory over time, the roofline with every result
// placed on it) and the JSON it was drawn from. Opens offline in any browser.
#pragma once
#include <string>

#include <nlohmann/json.hpp>

namespace vireo {

// Text made safe inside HTML elements and attribute values.
std::string html_escape(const std::string& s);

// `report` is the document `vireo bench -o json` prints. Writes DIR/report.html and
// DIR/results.json; returns the HTML file's path.
std::string write_bench_report(const std::string& dir, const nlohmann::json& report);

}  // namespace vireo
