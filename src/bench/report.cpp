#include "vireo/bench/report.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <vector>

#include <fmt/format.h>

#include "vireo/core/error.h"

namespace vireo {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

std::string esc(const std::string& s) { return html_escape(s); }

const char* kColors[] = {"#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#4b5563", "#ca8a04"};

// One SVG chart with axes; x and y may be logarithmic. Series of points, drawn as lines or dots.
class Chart {
 public:
  Chart(std::string id, std::string title, std::string xlabel, std::string ylabel, bool logx = false, bool logy = false)
      : id_(std::move(id)), title_(std::move(title)), xl_(std::move(xlabel)), yl_(std::move(ylabel)), logx_(logx), logy_(logy) {}
  struct Series {
    std::string name;
    std::vector<std::pair<double, double>> pts;
    bool line = true, dots = true;
    std::string dash;
  };
  void add(Series s) { series_.push_back(std::move(s)); }
  bool empty() const { return series_.empty() && bars_.empty(); }
  void bars(std::vector<std::pair<std::string, double>> b, std::vector<double> err = {}) {
    bars_ = std::move(b);
    err_ = std::move(err);
  }

  std::string svg() const {
    const double W = 640, H = 340, L = 70, R = 20, T = 36, B = bars_.empty() ? 48 : 110;
    std::string s = fmt::format(R"svg(<svg class="chart" id="{}" xmlns="http://www.w3.org/2000/svg" width="{}" height="{}" viewBox="0 0 {} {}">)svg", id_, W, H, W, H);
    s += fmt::format(R"svg(<text x="{}" y="20" text-anchor="middle" class="title">{}</text>)svg", W / 2, esc(title_));
    if (!bars_.empty()) {
      double ymax = 0;
      for (size_t i = 0; i < bars_.size(); ++i) ymax = std::max(ymax, bars_[i].second + (i < err_.size() ? err_[i] : 0));
      ymax = ymax > 0 ? ymax * 1.1 : 1;
      const double bw = (W - L - R) / static_cast<double>(bars_.size());
      axes(s, L, R, T, B, W, H, 0, 1, 0, ymax, false);
      for (size_t i = 0; i < bars_.size(); ++i) {
        const double h = (H - T - B) * bars_[i].second / ymax, x = L + bw * static_cast<double>(i) + bw * 0.15;
        s += fmt::format(R"svg(<rect class="bar" x="{:.1f}" y="{:.1f}" width="{:.1f}" height="{:.1f}" fill="{}"><title>{}: {:.2f}</title></rect>)svg",
                         x, H - B - h, bw * 0.7, h, kColors[i % 8], esc(bars_[i].first), bars_[i].second);
        if (i < err_.size() && err_[i] > 0) {
          const double e = (H - T - B) * err_[i] / ymax, cx = x + bw * 0.35;
          s += fmt::format(R"svg(<line x1="{0:.1f}" x2="{0:.1f}" y1="{1:.1f}" y2="{2:.1f}" stroke="#111"/>)svg", cx, H - B - h - e, H - B - h + e);
        }
        s += fmt::format(R"svg(<text x="{:.1f}" y="{:.1f}" transform="rotate(-35 {:.1f} {:.1f})" text-anchor="end" class="tick">{}</text>)svg",
                         x + bw * 0.35, H - B + 14, x + bw * 0.35, H - B + 14, esc(bars_[i].first.substr(0, 28)));
      }
      return s + "</svg>";
    }
    double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
    for (const auto& se : series_) {
      for (auto [x, y] : se.pts) {
        if ((logx_ && x <= 0) || (logy_ && y <= 0)) continue;
        x0 = std::min(x0, x); x1 = std::max(x1, x); y0 = std::min(y0, y); y1 = std::max(y1, y);
      }
    }
    if (!std::isfinite(x0)) { x0 = logx_ ? 1 : 0; x1 = logx_ ? 10 : 1; y0 = logy_ ? 1 : 0; y1 = logy_ ? 10 : 1; }
    if (!logy_) y0 = std::min(0.0, y0);
    if (x1 <= x0) x1 = logx_ ? x0 * 10 : x0 + 1;
    if (y1 <= y0) y1 = logy_ ? y0 * 10 : y0 + 1;
    if (logx_) { x0 /= 1.5; x1 *= 1.5; }
    if (logy_) { y0 /= 1.5; y1 *= 1.5; } else { y1 *= 1.08; }
    axes(s, L, R, T, B, W, H, x0, x1, y0, y1, true);
    auto px = [&](double x) { return L + (W - L - R) * (logx_ ? std::log(x / x0) / std::log(x1 / x0) : (x - x0) / (x1 - x0)); };
    auto py = [&](double y) { return H - B - (H - T - B) * (logy_ ? std::log(y / y0) / std::log(y1 / y0) : (y - y0) / (y1 - y0)); };
    int legend = 0;
    for (size_t k = 0; k < series_.size(); ++k) {
      const auto& se = series_[k];
      const char* col = kColors[k % 8];
      std::string pts;
      for (auto [x, y] : se.pts) {
        if ((logx_ && x <= 0) || (logy_ && y <= 0)) continue;
        pts += fmt::format("{:.1f},{:.1f} ", px(x), py(y));
      }
      if (se.line && !pts.empty()) {
        s += fmt::format(R"svg(<polyline class="series" fill="none" stroke="{}" stroke-width="2" {} points="{}"/>)svg", col,
                         se.dash.empty() ? "" : "stroke-dasharray=\"" + se.dash + "\"", pts);
      }
      if (se.dots) {
        for (auto [x, y] : se.pts) {
          if ((logx_ && x <= 0) || (logy_ && y <= 0)) continue;
          s += fmt::format(R"svg(<circle class="point" cx="{:.1f}" cy="{:.1f}" r="4" fill="{}"><title>{}: ({:.4g}, {:.4g})</title></circle>)svg",
                           px(x), py(y), col, esc(se.name), x, y);
        }
      }
      s += fmt::format(R"svg(<text x="{}" y="{}" class="legend" fill="{}">{}</text>)svg", L + 8, T + 14 + 14 * legend++, col, esc(se.name));
    }
    return s + "</svg>";
  }

 private:
  void axes(std::string& s, double L, double R, double T, double B, double W, double H, double x0, double x1, double y0,
            double y1, bool xticks) const {
    s += fmt::format(R"svg(<line x1="{0}" y1="{1}" x2="{0}" y2="{2}" class="axis"/><line x1="{0}" y1="{2}" x2="{3}" y2="{2}" class="axis"/>)svg", L, T, H - B, W - R);
    auto ticks = [](double a, double b, bool log) {
      std::vector<double> t;
      if (log) {
        for (double v = std::pow(10, std::floor(std::log10(a))); v <= b; v *= 10) if (v >= a) t.push_back(v);
      } else {
        const double step = std::pow(10, std::floor(std::log10((b - a) / 4)));
        const double st = (b - a) / step > 20 ? step * 5 : (b - a) / step > 8 ? step * 2 : step;
        for (double v = std::ceil(a / st) * st; v <= b + 1e-9; v += st) t.push_back(v);
      }
      return t;
    };
    for (double v : ticks(y0, y1, logy_)) {
      const double y = H - B - (H - T - B) * (logy_ ? std::log(v / y0) / std::log(y1 / y0) : (v - y0) / (y1 - y0));
      s += fmt::format(R"svg(<line x1="{}" x2="{}" y1="{:.1f}" y2="{:.1f}" class="grid"/><text x="{}" y="{:.1f}" text-anchor="end" class="tick">{:.4g}</text>)svg", L, W - R, y, y, L - 4, y + 4, v);
    }
    if (xticks) {
      for (double v : ticks(x0, x1, logx_)) {
        const double x = L + (W - L - R) * (logx_ ? std::log(v / x0) / std::log(x1 / x0) : (v - x0) / (x1 - x0));
        s += fmt::format(R"svg(<text x="{:.1f}" y="{}" text-anchor="middle" class="tick">{:.4g}</text>)svg", x, H - B + 16, v);
      }
      s += fmt::format(R"svg(<text x="{}" y="{}" text-anchor="middle" class="label">{}</text>)svg", (L + W - R) / 2, H - 10, esc(xl_));
    }
    s += fmt::format(R"svg(<text x="14" y="{}" transform="rotate(-90 14 {})" text-anchor="middle" class="label">{}</text>)svg", (T + H - B) / 2, (T + H - B) / 2, esc(yl_));
  }

  std::string id_, title_, xl_, yl_;
  bool logx_, logy_;
  std::vector<Series> series_;
  std::vector<std::pair<std::string, double>> bars_;
  std::vector<double> err_;
};

std::string short_name(const json& r) {
  std::string m = fs::path(r.value("model", std::string())).filename().string();
  if (m.size() > 5 && m.ends_with(".gguf")) m.resize(m.size() - 5);
  return fmt::format("{} {} t{}", m, r.value("test", std::string()), r.value("threads", 0));
}

}  // namespace

std::string write_bench_report(const std::string& dir, const json& report) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) fail(ErrorCode::Io, "cannot create report folder '{}': {}", dir, ec.message());
  const json& results = report.at("results");

  // Throughput of every result.
  Chart tput("throughput", "Throughput (tokens/s, mean ± sd)", "", "tokens/s");
  std::vector<std::pair<std::string, double>> bars;
  std::vector<double> errs;
  for (const auto& r : results) {
    bars.emplace_back(short_name(r), r.value("avg_ts", 0.0));
    errs.push_back(r.value("stddev_ts", 0.0));
  }
  tput.bars(bars, errs);

  // tok/s versus batch and versus depth, one series per (model, kind of test).
  auto versus = [&](const char* id, const char* title, const char* key) {
    Chart c(id, title, key, "tokens/s");
    std::map<std::string, Chart::Series> by;
    for (const auto& r : results) {
      const std::string kind = r.value("n_prompt", 0) > 0 ? fmt::format("pp{}", r.value("n_prompt", 0)) : fmt::format("tg{}", r.value("n_gen", 0));
      const std::string name = fs::path(r.value("model", std::string())).filename().string() + " " + kind;
      auto& s = by[name];
      s.name = name;
      s.pts.emplace_back(r.value(key, 0), r.value("avg_ts", 0.0));
    }
    for (auto& [n, s] : by) {
      std::sort(s.pts.begin(), s.pts.end());
      c.add(s);
    }
    return c.svg();
  };

  // Inter-token latency histogram over every decode step.
  std::vector<double> itl;
  for (const auto& r : results) {
    if (r.contains("itl_ms_samples")) for (double v : r["itl_ms_samples"]) itl.push_back(v);
  }
  Chart hist("itl", "Inter-token latency (decode steps)", "milliseconds", "steps");
  if (!itl.empty()) {
    const auto [lo, hi] = std::minmax_element(itl.begin(), itl.end());
    const int nb = 30;
    const double w = std::max((*hi - *lo) / nb, 1e-6);
    std::vector<int> counts(nb, 0);
    for (double v : itl) counts[std::min(nb - 1, static_cast<int>((v - *lo) / w))]++;
    Chart::Series s{"steps", {}, true, false, ""};
    for (int b = 0; b < nb; ++b) {
      s.pts.emplace_back(*lo + w * b, 0);
      s.pts.emplace_back(*lo + w * b, counts[b]);
      s.pts.emplace_back(*lo + w * (b + 1), counts[b]);
      s.pts.emplace_back(*lo + w * (b + 1), 0);
    }
    hist.add(s);
  }

  // Memory over time.
  Chart mem("memory", "Memory over the run", "seconds", "MiB");
  if (report.contains("timeline")) {
    Chart::Series rss{"resident", {}, true, false, ""}, anon{"anonymous (copies, buffers)", {}, true, false, "4 3"};
    for (const auto& s : report["timeline"]) {
      rss.pts.emplace_back(s.value("t_s", 0.0), s.value("rss_bytes", 0.0) / 1048576.0);
      anon.pts.emplace_back(s.value("t_s", 0.0), s.value("anon_bytes", 0.0) / 1048576.0);
    }
    mem.add(rss);
    mem.add(anon);
  }

  // GPU activity over the run (NVML; GPM where the GPU has it) and its memory beside the host's.
  Chart gpu_t("gpu", "GPU activity over the run (%)", "seconds", "percent");
  if (report.contains("gpu") && report["gpu"].contains("samples")) {
    Chart::Series busy{"kernel running (NVML utilization)", {}, true, false, ""}, used{"GPU memory used", {}, true, false, "2 2"};
    Chart::Series sm{"SMs active (GPM)", {}, true, false, "6 3"}, dram{"DRAM bandwidth (GPM)", {}, true, false, "4 3"},
        tensor{"tensor cores (GPM)", {}, true, false, "1 3"};
    for (const auto& s : report["gpu"]["samples"]) {
      const double t = s.value("t_s", 0.0);
      busy.pts.emplace_back(t, s.value("gpu_util_pct", 0.0));
      used.pts.emplace_back(t, s.value("memory_used_bytes", 0.0) / 1048576.0);
      if (!s.contains("sm_util_pct")) continue;
      sm.pts.emplace_back(t, s.value("sm_util_pct", 0.0));
      dram.pts.emplace_back(t, s.value("dram_bw_util_pct", 0.0));
      tensor.pts.emplace_back(t, s.value("tensor_util_pct", 0.0));
    }
    for (auto* series : {&busy, &sm, &dram, &tensor}) {
      if (!series->pts.empty()) gpu_t.add(*series);
    }
    if (!used.pts.empty()) mem.add(used);
  }

  // Roofline: the roofs from the probe, every result at its arithmetic intensity.
  Chart roof("roofline", "Roofline (log-log)", "arithmetic intensity (flop/byte)", "TFLOP/s (TOP/s for int8)", true, true);
  if (report.contains("hardware")) {
    const auto& hw = report["hardware"];
    const double bw = hw.value("mem_gb_s", 0.0);
    double imin = 0.1, imax = 1000;
    for (const auto& r : results) {
      if (!r.contains("roofline")) continue;
      const double i = r["roofline"].value("intensity", 1.0);
      imin = std::min(imin, i / 4);
      imax = std::max(imax, i * 4);
    }
    for (const auto& [name, peak] : {std::pair{"int8 matrix peak", hw.value("int8_tops", 0.0)}, std::pair{"float matrix peak", hw.value("float_tflops", 0.0)}}) {
      Chart::Series s{fmt::format("{} {:.2f} T, {:.1f} GB/s", name, peak, bw), {}, true, false, "6 3"};
      for (double i = imin; i <= imax * 1.0001; i *= 1.25) s.pts.emplace_back(i, std::min(peak, i * bw / 1e3));
      roof.add(s);
    }
    for (const auto& r : results) {
      if (!r.contains("roofline")) continue;
      const auto& rl = r["roofline"];
      roof.add({short_name(r) + " (" + rl.value("verdict", std::string()) + ")",
                {{rl.value("intensity", 0.0), rl.value("achieved_tflops", 0.0)}}, false, true, ""});
    }
  }

  // Latency scenarios: time to first token of each.
  std::string extra;
  {
    std::vector<std::pair<std::string, double>> ttft;
    std::vector<double> spread;
    for (const auto& r : results) {
      if (!r.contains("latency")) continue;
      const auto& t = r["latency"]["ttft_ms"];
      ttft.emplace_back(short_name(r), t.value("mean", 0.0));
      spread.push_back(std::max(0.0, t.value("p90", 0.0) - t.value("mean", 0.0)));
    }
    if (!ttft.empty()) {
      Chart c("latency", "Time to first token (ms, mean; whisker to p90)", "", "milliseconds");
      c.bars(ttft, spread);
      extra += c.svg();
    }
  }
  // Stress runs: memory and decode rate over time.
  if (report.contains("stress")) {
    Chart mem_t("stress-memory", "Stress: memory over time", "seconds", "MiB");
    Chart rate_t("stress-rate", "Stress: tokens/s over time (windows)", "seconds", "tokens/s");
    for (const auto& st : report["stress"]) {
      const std::string m = fs::path(st.value("model", std::string())).filename().string();
      Chart::Series rss{m + " resident", {}, true, false, ""}, gpu_mem{m + " GPU memory used", {}, true, false, "4 3"};
      for (const auto& s : st.value("memory", json::array())) rss.pts.emplace_back(s.value("t_s", 0.0), s.value("rss_bytes", 0.0) / 1048576.0);
      for (const auto& s : st.value("gpu_memory", json::array())) {
        gpu_mem.pts.emplace_back(s.value("t_s", 0.0), s.value("memory_used_bytes", 0.0) / 1048576.0);
      }
      mem_t.add(rss);
      if (!gpu_mem.pts.empty()) mem_t.add(gpu_mem);
      Chart::Series rate{fmt::format("{} ({}; slowdown {:.1f}%)", m, st.value("verdict", std::string()), st.value("slowdown_pct", 0.0)),
                         {}, true, true, ""};
      for (const auto& w : st.value("windows", json::array())) {
        rate.pts.emplace_back((w.value("t0_s", 0.0) + w.value("t1_s", 0.0)) / 2, w.value("tokens_per_s", 0.0));
      }
      rate_t.add(rate);
    }
    extra += mem_t.svg() + rate_t.svg();
  }

  std::string rows;
  for (const auto& r : results) {
    const json rl = r.value("roofline", json::object());
    rows += fmt::format("<tr><td>{}</td><td>{}</td><td>{}</td><td class=n>{:.2f} ± {:.2f}</td><td class=n>{:.1f}</td><td class=n>{:.0f}%</td><td>{}</td><td>{}</td></tr>\n",
                        esc(fs::path(r.value("model", std::string())).filename().string()), esc(r.value("backend", std::string())),
                        esc(r.value("test", std::string())), r.value("avg_ts", 0.0), r.value("stddev_ts", 0.0),
                        rl.value("achieved_gb_s", 0.0), 100 * rl.value("fraction", 0.0), esc(rl.value("verdict", std::string())),
                        esc(rl.value("advice", std::string())));
  }
  const json hw = report.value("hardware", json::object());
  std::string html = R"svg(<!doctype html><html><head><meta charset="utf-8"><title>vireo bench report</title><style>
body{font:14px system-ui,sans-serif;margin:24px;color:#111}table{border-collapse:collapse;margin:12px 0}td,th{border:1px solid #ccc;padding:4px 8px}
td.n{text-align:right}.chart{border:1px solid #ddd;margin:8px 8px 0 0}.title{font-weight:600;font-size:14px}.tick{font-size:10px;fill:#444}
.label{font-size:11px;fill:#222}.legend{font-size:11px}.axis{stroke:#333}.grid{stroke:#eee}</style></head><body>
<h1>vireo bench</h1>)svg";
  html += fmt::format("<p>Device: {} — measured peaks: {:.1f} GB/s memory ({}), {:.2f} TOP/s int8 matrix, {:.2f} TFLOP/s float matrix{}.</p>",
                      esc(hw.value("device", std::string("unknown"))), hw.value("mem_gb_s", 0.0),
                      esc(hw.value("mem_method", std::string("streaming read"))), hw.value("int8_tops", 0.0),
                      hw.value("float_tflops", 0.0), hw.value("from_cache", false) ? " (cached probe)" : "");
  html += "<p>On a GPU, NVML's 'utilization' is the share of time a kernel was running, not how much of the compute units it used; the roofline fraction is the measure of use.</p>";
  html += "<table><tr><th>model</th><th>backend</th><th>test</th><th>tokens/s</th><th>GB/s</th><th>of roofline</th><th>verdict</th><th>advice</th></tr>\n" + rows + "</table>\n";
  html += tput.svg() + versus("vs-batch", "Tokens/s versus batch (sequences)", "batch") +
          versus("vs-depth", "Tokens/s versus context depth", "depth") + hist.svg() + mem.svg() + (gpu_t.empty() ? "" : gpu_t.svg()) + roof.svg() + extra;
  html += "\n<h2>Data</h2><pre id=\"data\">" + esc(report.dump(2)) + "</pre></body></html>\n";

  const std::string html_path = (fs::path(dir) / "report.html").string();
  std::ofstream(html_path) << html;
  std::ofstream(fs::path(dir) / "results.json") << report.dump(2) << "\n";
  if (!fs::exists(html_path)) fail(ErrorCode::Io, "cannot write '{}'", html_path);
  return html_path;
}

std::string html_escape(const std::string& s) {
  std::string o;
  for (char c : s) {
    switch (c) {
      case '<': o += "&lt;"; break;
      case '>': o += "&gt;"; break;
      case '&': o += "&amp;"; break;
      case '"': o += "&quot;"; break;
      default: o += c;
    }
  }
  return o;
}

}  // namespace vireo
