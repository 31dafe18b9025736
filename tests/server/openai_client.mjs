// Drives a running `vireo serve` with the official `openai` npm client, as users' tools do.
// Usage: node openai_client.mjs BASE_URL API_KEY
// Prints one line per check and exits non-zero on the first failure.
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(path.join(here, "../reference/package.json"));
const OpenAI = require("openai").default ?? require("openai");
const Ajv = require("ajv").default ?? require("ajv");

const [baseURL, apiKey] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey, maxRetries: 0, timeout: 60_000 });

function check(cond, what) {
  if (!cond) {
    console.log(`FAIL ${what}`);
    process.exit(1);
  }
  console.log(`ok   ${what}`);
}

const messages = [
  { role: "system", content: "You are terse." },
  { role: "user", content: "Tell me a story." },
];

// Models.
const models = [];
for await (const m of client.models.list()) models.push(m.id);
check(models.includes("tiny") && models.includes("bge"), `models.list: ${models.join(", ")}`);

// Chat, whole.
const whole = await client.chat.completions.create({
  model: "tiny", messages, max_tokens: 16, temperature: 0, ignore_eos: true,
});
check(whole.object === "chat.completion", "chat.completions.create: object");
check(typeof whole.choices[0].message.content === "string" && whole.choices[0].message.role === "assistant", "chat: assistant message");
check(whole.usage.completion_tokens === 16 && whole.usage.total_tokens === whole.usage.prompt_tokens + 16, "chat: usage");
check(whole.choices[0].finish_reason === "length", "chat: finish_reason length");

// Chat, streamed: the same greedy text, then a usage chunk.
const stream = await client.chat.completions.create({
  model: "tiny", messages, max_tokens: 16, temperature: 0, ignore_eos: true,
  stream: true, stream_options: { include_usage: true },
});
let text = "", finish = null, usage = null, chunks = 0;
for await (const chunk of stream) {
  chunks++;
  if (chunk.usage) usage = chunk.usage;
  for (const c of chunk.choices) {
    text += c.delta?.content ?? "";
    if (c.finish_reason) finish = c.finish_reason;
  }
}
check(chunks >= 3, `chat stream: ${chunks} chunks`);
check(text === whole.choices[0].message.content, "chat stream: text equals the non-streamed answer");
check(finish === "length" && usage?.completion_tokens === 16, "chat stream: finish_reason and usage");

// Completions, with several choices and log-probs.
const comp = await client.completions.create({ model: "tiny", prompt: "Once upon a time", max_tokens: 8, n: 2, seed: 3, logprobs: 2, ignore_eos: true });
check(comp.object === "text_completion" && comp.choices.length === 2, "completions.create: two choices");
check(comp.choices[0].logprobs.tokens.length === 8 && comp.choices[0].logprobs.top_logprobs[0] !== undefined, "completions: logprobs");

// Streamed completion.
let ctext = "";
for await (const chunk of await client.completions.create({ model: "tiny", prompt: "Once upon a time", max_tokens: 8, temperature: 0, stream: true, ignore_eos: true })) {
  ctext += chunk.choices[0]?.text ?? "";
}
const cwhole = await client.completions.create({ model: "tiny", prompt: "Once upon a time", max_tokens: 8, temperature: 0, ignore_eos: true });
check(ctext === cwhole.choices[0].text, "completions stream: text equals the non-streamed answer");

// Embeddings: the client asks for base64 by default and decodes it.
const emb = await client.embeddings.create({ model: "bge", input: ["hello world", "vireo serves embeddings"] });
const v = emb.data[0].embedding;
const norm = Math.sqrt(v.reduce((s, x) => s + x * x, 0));
check(emb.data.length === 2 && v.length === 384 && Math.abs(norm - 1) < 1e-3, `embeddings.create: 2 x ${v.length}, norm ${norm.toFixed(5)}`);
const embf = await client.embeddings.create({ model: "bge", input: "hello world", encoding_format: "float" });
const diff = Math.max(...embf.data[0].embedding.map((x, i) => Math.abs(x - v[i])));
check(diff < 1e-4, `embeddings: float and base64, batched and alone, agree (max diff ${diff.toExponential(2)})`);

// JSON schema output: parses and validates.
const schema = {
  type: "object",
  properties: {
    title: { type: "string", maxLength: 12 },
    rating: { enum: [1, 2, 3, 4, 5] },
    tags: { type: "array", items: { type: "string", maxLength: 5 }, maxItems: 3 },
    done: { type: "boolean" },
  },
  required: ["title", "rating", "tags", "done"],
  additionalProperties: false,
};
const validate = new Ajv().compile(schema);
for (const seed of [1, 2, 3]) {
  const r = await client.chat.completions.create({
    model: "tiny", messages, max_tokens: 200, seed,
    response_format: { type: "json_schema", json_schema: { name: "review", strict: true, schema } },
  });
  const out = r.choices[0].message.content;
  let doc = null;
  try { doc = JSON.parse(out); } catch { /* reported below */ }
  check(doc !== null && validate(doc), `json_schema (seed ${seed}): ${out.replace(/\s+/g, " ")}`);
}

// Errors arrive as the client's typed errors.
try {
  await client.chat.completions.create({ model: "tiny", messages, temperature: 9 });
  check(false, "a bad temperature is refused");
} catch (e) {
  check(e instanceof OpenAI.BadRequestError && e.status === 400 && /temperature/.test(e.message), `400 BadRequestError: ${e.message}`);
}
try {
  await new OpenAI({ baseURL, apiKey: "wrong", maxRetries: 0 }).models.list();
  check(false, "a wrong key is refused");
} catch (e) {
  check(e instanceof OpenAI.AuthenticationError && e.status === 401, `401 AuthenticationError: ${e.message}`);
}
try {
  await client.chat.completions.create({ model: "no-such-model", messages });
  check(false, "an unknown model is refused");
} catch (e) {
  check(e instanceof OpenAI.NotFoundError && e.status === 404, `404 NotFoundError: ${e.message}`);
}

// A client that aborts mid-stream frees its sequence.
const controller = new AbortController();
const long = await client.chat.completions.create(
  { model: "tiny", messages, max_tokens: 200, stream: true, ignore_eos: true }, { signal: controller.signal });
let got = 0;
try {
  for await (const _ of long) { if (++got === 3) controller.abort(); }
} catch { /* the abort */ }
let running = -1;
for (let i = 0; i < 100; i++) {
  const metrics = await (await fetch(baseURL.replace(/\/v1$/, "") + "/metrics", { headers: { Authorization: `Bearer ${apiKey}` } })).text();
  running = Number(/vireo_running_sequences\{model="tiny"\} (\d+)/.exec(metrics)?.[1] ?? -1);
  if (running === 0) break;
  await new Promise((r) => setTimeout(r, 20));
}
check(running === 0, "an aborted stream frees its sequence");
console.log("all checks passed");
