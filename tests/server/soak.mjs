// Soak test of an OpenAI-compatible server: CLIENTS concurrent streaming clients for SECONDS, a
// share of them hanging up mid-stream at random. Every stream that is not abandoned must end with
// "data: [DONE]". Samples the server's resident memory (from /proc/PID/status) once a second.
// Usage: node soak.mjs BASE_URL CLIENTS SECONDS SERVER_PID [--model NAME] [--abort-share 0.25]
// Prints one JSON object.
import fs from "node:fs";

const [base, clientsArg, secondsArg, pidArg, ...rest] = process.argv.slice(2);
const opt = (name, def) => {
  const i = rest.indexOf(name);
  return i >= 0 ? rest[i + 1] : def;
};
const clients = Number(clientsArg), seconds = Number(secondsArg), pid = Number(pidArg);
const model = opt("--model", "");
const abortShare = Number(opt("--abort-share", "0.25"));
const words = "the a cat dog runs over under house river tree sun moon story small big old new".split(" ");
let seed = 12345;
const rand = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648);

const rssKb = () => {
  try {
    const m = /VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) : -1;
  } catch {
    return -1;
  }
};

const stats = { completed: 0, abandoned: 0, missing_done: 0, failed: 0, errors: {}, tokens: 0 };
const samples = [];
const t0 = Date.now();
const deadline = t0 + seconds * 1000;
const sampler = setInterval(() => samples.push([(Date.now() - t0) / 1000, rssKb()]), 1000);

async function one() {
  const leave = rand() < abortShare;
  const leaveAfter = 1 + Math.floor(rand() * 8);
  const prompt = Array.from({ length: 8 + Math.floor(rand() * 24) }, () => words[Math.floor(rand() * words.length)]).join(" ");
  const body = { prompt, max_tokens: 16 + Math.floor(rand() * 48), stream: true, ignore_eos: true, temperature: 0.8 };
  if (model) body.model = model;
  const ctrl = new AbortController();
  try {
    const res = await fetch(`${base}/v1/completions`, {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body), signal: ctrl.signal,
    });
    if (res.status !== 200) {
      const key = `HTTP ${res.status}`;
      stats.errors[key] = (stats.errors[key] ?? 0) + 1;
      stats.failed++;
      await res.text();
      return;
    }
    const reader = res.body.getReader();
    const dec = new TextDecoder();
    let buf = "", events = 0, last = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += dec.decode(value, { stream: true });
      let at;
      while ((at = buf.indexOf("\n\n")) >= 0) {
        const ev = buf.slice(0, at);
        buf = buf.slice(at + 2);
        if (!ev.startsWith("data: ")) continue;
        last = ev.slice(6);
        events++;
        if (last !== "[DONE]") {
          const j = JSON.parse(last);
          if (j.error) throw new Error(`stream error: ${j.error.message}`);
          if (j.choices?.[0]?.text) stats.tokens++;
        }
      }
      if (leave && events >= leaveAfter) {
        ctrl.abort();
        stats.abandoned++;
        return;
      }
    }
    if (last === "[DONE]") stats.completed++;
    else stats.missing_done++;
  } catch (e) {
    if (ctrl.signal.aborted) return;
    const key = String(e.message ?? e).slice(0, 80);
    stats.errors[key] = (stats.errors[key] ?? 0) + 1;
    stats.failed++;
  }
}

async function client() {
  while (Date.now() < deadline) await one();
}

await Promise.all(Array.from({ length: clients }, client));
clearInterval(sampler);
samples.push([(Date.now() - t0) / 1000, rssKb()]);
// Memory growth: the median of the last fifth of the run against the median of the second fifth
// (the first is warm-up: buffers and caches reach their working size).
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.floor(s.length / 2)] : NaN;
};
const n = samples.length, fifth = Math.max(1, Math.floor(n / 5));
const early = median(samples.slice(fifth, 2 * fifth).map((s) => s[1]));
const late = median(samples.slice(n - fifth).map((s) => s[1]));
let alive = true;
try {
  alive = (await fetch(`${base}/health`)).status === 200;
} catch {
  alive = false;
}
console.log(JSON.stringify({
  clients, seconds, abort_share: abortShare, ...stats, server_alive: alive,
  rss_early_kb: early, rss_late_kb: late, rss_growth: (late - early) / early, rss_samples: samples,
}));
