#!/usr/bin/env node
// Reference driver around llama.cpp (node-llama-cpp 3.22.1, CPU build) for vireo's tests.
//
//   node llama_ref.mjs generate    MODEL (--prompt TEXT | --prompt-ids 1,2,3) --n N [--special] [--no-bos]
//                                        [--ignore-eog] [--ctx N] [--threads N (default 1)] [--timings]
//   node llama_ref.mjs logits      MODEL --ids 1,2,3 [--top K] [--full] [--ctx N] [--threads N] [--batch N]
//        teacher-forced: evaluates the ids in one sequence and, after each of them, reports the raw
//        next-token logits: the K largest ("top": [[id, logit], ...], default 8) and with --full all
//        of them by id ("logits": [...], rounded to 6 significant digits).
//   node llama_ref.mjs bench       MODEL [--pp 128] [--tg 32] [--reps 3] [--threads N]
//        speed as llama-bench measures it: prefill of pp tokens (pp tok/s), and tg tokens decoded
//        one at a time (tg tok/s); median and all runs, each test from an empty KV cache.
//   node llama_ref.mjs tokenize    MODEL (--text TEXT | --file F.json | --ggml-inp F.inp)
//                                        [--special] [--add-special]
//   node llama_ref.mjs info        MODEL [--vocab-only]
//   node llama_ref.mjs embed       MODEL (--text TEXT | --ids 1,2,3)
//        the pooled embedding; "ids" are the tokens evaluated (after the model's added BOS/EOS).
//   node llama_ref.mjs check-vocab VOCAB.gguf [--inp F.inp] [--out F.out]
//
// Prints exactly one JSON object on stdout. On failure: {"error": "..."} on stdout, exit code 1.
// llama.cpp / node-llama-cpp logs go to stderr (errors only), so stdout stays pure JSON.

import fs from "node:fs";
import path from "node:path";

const USAGE = "usage: node llama_ref.mjs <generate|logits|bench|tokenize|info|embed|check-vocab> <model.gguf> [options]";

// flags that take no value; every other --option takes the next argument as its value
const BOOLEAN_FLAGS = new Set(["special", "add-special", "no-bos", "ignore-eog", "timings", "vocab-only", "full"]);

function parseArgs(argv) {
    const positional = [];
    const opts = {};
    for (let i = 0; i < argv.length; i++) {
        const a = argv[i];
        if (a.startsWith("--")) {
            const eq = a.indexOf("=");
            const name = eq >= 0 ? a.slice(2, eq) : a.slice(2);
            if (BOOLEAN_FLAGS.has(name)) {
                if (eq >= 0) throw new Error(`option --${name} takes no value`);
                opts[name] = true;
            } else if (eq >= 0) {
                opts[name] = a.slice(eq + 1);
            } else {
                if (i + 1 >= argv.length) throw new Error(`option --${name} needs a value`);
                opts[name] = argv[++i];
            }
        } else {
            positional.push(a);
        }
    }
    return { positional, opts };
}

function intOpt(opts, name, def) {
    if (opts[name] === undefined) return def;
    const v = Number(opts[name]);
    if (!Number.isInteger(v) || v < 0) throw new Error(`--${name} must be a non-negative integer, got ${JSON.stringify(opts[name])}`);
    return v;
}

// "1,2,3" -> [1, 2, 3]
function idsOpt(opts, name) {
    const raw = String(opts[name]).trim();
    if (raw === "") return [];
    return raw.split(",").map((x) => {
        const v = Number(x.trim());
        if (!Number.isInteger(v) || v < 0) throw new Error(`--${name}: ${JSON.stringify(x)} is not a token id`);
        return v;
    });
}

function checkKnown(opts, allowed) {
    for (const k of Object.keys(opts))
        if (!allowed.includes(k)) throw new Error(`unknown option --${k}`);
}

// Inputs of llama.cpp's tokenizer test files: each input is followed by "\n__ggml_vocab_test__\n".
function readGgmlInp(file) {
    const data = fs.readFileSync(file, "utf8");
    const sep = "\n__ggml_vocab_test__\n";
    const parts = data.split(sep);
    if (parts[parts.length - 1] === "") parts.pop();
    return parts;
}

// Expected ids: one line per input, ids separated by spaces (an empty line for no tokens).
function readGgmlOut(file) {
    const lines = fs.readFileSync(file, "utf8").split("\n");
    if (lines[lines.length - 1] === "") lines.pop();
    return lines.map((l) => l.trim() === "" ? [] : l.trim().split(/\s+/).map(Number));
}

// llama.cpp log lines seen (errors only); the last few are attached to the error JSON.
const logLines = [];
// While loading a vocab-only file, node-llama-cpp's memory estimator does a trial load that makes
// llama.cpp log "missing tensor 'token_embd.weight'" errors although the real (vocab_only) load
// succeeds; those lines are held back (they still reach the error JSON if the load fails).
let holdBackLogs = false;

let llamaModule = null;
async function loadLlama(opts) {
    llamaModule ??= await import("node-llama-cpp");
    const { getLlama, LlamaLogLevel } = llamaModule;
    const llamaOptions = {
        gpu: false,                 // CPU backend only
        build: "never",             // use the prebuilt @node-llama-cpp/linux-x64 binary, never compile
        skipDownload: true,
        progressLogs: false,
        logLevel: LlamaLogLevel.error,
        logger: (level, message) => {
            const line = message.replace(/\n$/, "");
            logLines.push(line);
            if (!holdBackLogs) process.stderr.write(`[llama.cpp ${level}] ${line}\n`);
        }
    };
    // Default 1 thread: deterministic scheduling, and far faster than oversubscribing a small shared
    // CI machine for tiny models. --threads 0 = node-llama-cpp's default (max(math cores, 4)).
    const threads = intOpt(opts, "threads", 1);
    if (threads > 0) llamaOptions.maxThreads = threads;
    return await getLlama(llamaOptions);
}

function modelPathOf(positional) {
    const p = positional[1];
    if (p === undefined) throw new Error(USAGE);
    if (positional.length > 2) throw new Error(`unexpected argument ${JSON.stringify(positional[2])}`);
    if (!fs.existsSync(p)) throw new Error(`model file not found: ${p}`);
    return path.resolve(p);
}

async function loadVocabOnly(llama, modelPath) {
    holdBackLogs = true;
    try {
        return await llama.loadModel({ modelPath, vocabOnly: true, gpuLayers: 0 });
    } finally {
        holdBackLogs = false;
    }
}

function nVocab(model) {
    const n = model.fileInfo?.metadata?.tokenizer?.ggml?.tokens?.length;
    return typeof n === "number" ? n : null;
}

// Tokenize as llama.cpp's common_tokenize(vocab, text, add_special, parse_special) does:
// add_special adds BOS (if the vocab's add_bos) and EOS (if the vocab's add_eos).
function tokenizeText(model, text, parseSpecial, addSpecial) {
    const toks = Array.from(model.tokenize(text, parseSpecial));
    if (addSpecial) {
        if (model.tokens.shouldPrependBosToken && model.tokens.bos != null) toks.unshift(model.tokens.bos);
        if (model.tokens.shouldAppendEosToken && model.tokens.eos != null) toks.push(model.tokens.eos);
    }
    return toks;
}

async function cmdGenerate(llama, modelPath, opts) {
    checkKnown(opts, ["prompt", "prompt-ids", "n", "special", "no-bos", "ignore-eog", "ctx", "threads", "timings"]);
    if ((opts.prompt === undefined) === (opts["prompt-ids"] === undefined))
        throw new Error("generate needs exactly one of --prompt TEXT, --prompt-ids 1,2,3");
    const n = intOpt(opts, "n", 32);
    const t0 = performance.now();
    const model = await llama.loadModel({ modelPath, gpuLayers: 0 });
    const tLoaded = performance.now();

    // Prompt: the model's defaults for BOS (add_bos), prompt text without parsing special tokens
    // unless --special; no chat template.
    // --prompt-ids are used as given (no BOS added).
    const fromIds = opts["prompt-ids"] !== undefined;
    const promptTokens = fromIds ? idsOpt(opts, "prompt-ids") : Array.from(model.tokenize(opts.prompt, opts.special === true));
    const addBos = !fromIds && opts["no-bos"] !== true && model.tokens.shouldPrependBosToken && model.tokens.bos != null;
    if (addBos) promptTokens.unshift(model.tokens.bos);
    if (promptTokens.length === 0) throw new Error("empty prompt (no tokens)");

    const trainCtx = model.trainContextSize;
    const needed = promptTokens.length + n;
    const ctxSize = intOpt(opts, "ctx", Math.min(trainCtx, Math.max(512, needed)));
    if (needed > ctxSize)
        throw new Error(`prompt (${promptTokens.length}) + n (${n}) = ${needed} tokens exceeds context size ${ctxSize} (train ctx ${trainCtx}); no context shift is done`);

    const contextOptions = { contextSize: ctxSize, sequences: 1 };
    const threads = intOpt(opts, "threads", 1);
    if (threads > 0) contextOptions.threads = threads;
    const context = await model.createContext(contextOptions);
    const sequence = context.getSequence();

    const tokens = [];
    let stoppedAtEog = false;
    const tGenStart = performance.now();
    let tFirst = null;
    if (n > 0) {
        // temperature 0 => llama.cpp greedy sampler only (argmax); no repeat/DRY penalties, no bias.
        for await (const token of sequence.evaluate(promptTokens, { temperature: 0, yieldEogToken: true })) {
            tFirst ??= performance.now();
            tokens.push(token);
            if (model.isEogToken(token) && opts["ignore-eog"] !== true) {
                stoppedAtEog = true;
                break;
            }
            if (tokens.length >= n) break;
        }
    }
    const tEnd = performance.now();

    const out = {
        prompt_tokens: promptTokens,
        tokens,
        text: model.detokenize(tokens.filter((t) => !model.isEogToken(t)), false, promptTokens),
        stopped_at_eog: stoppedAtEog,
        add_bos: addBos,
        n_ctx: context.contextSize
    };
    if (opts.timings) {
        out.timings = {
            load_ms: +(tLoaded - t0).toFixed(2),
            prompt_ms: tFirst == null ? null : +(tFirst - tGenStart).toFixed(2),
            generate_ms: +(tEnd - tGenStart).toFixed(2),
            tokens_per_s: tFirst == null || tokens.length < 2 ? null : +((tokens.length - 1) / ((tEnd - tFirst) / 1000)).toFixed(2)
        };
    }
    await context.dispose();
    await model.dispose();
    return out;
}

// Teacher-forced next-token logits after every input id. The greedy sampler (temperature 0) leaves
// the candidate logits untouched, so these are llama.cpp's raw logits.
async function cmdLogits(llama, modelPath, opts) {
    checkKnown(opts, ["ids", "top", "full", "ctx", "threads", "batch"]);
    if (opts.ids === undefined) throw new Error("logits needs --ids 1,2,3");
    const ids = idsOpt(opts, "ids");
    if (ids.length === 0) throw new Error("logits needs at least one id");
    const top = intOpt(opts, "top", 8);
    const full = opts.full === true;
    const model = await llama.loadModel({ modelPath, gpuLayers: 0 });
    const vocab = nVocab(model);
    for (const id of ids)
        if (vocab != null && id >= vocab) throw new Error(`id ${id} is outside the vocabulary of ${vocab}`);
    const ctxSize = intOpt(opts, "ctx", Math.min(model.trainContextSize, Math.max(512, ids.length)));
    if (ids.length > ctxSize) throw new Error(`${ids.length} ids exceed context size ${ctxSize}`);
    // --batch 1 evaluates one token at a time (llama.cpp's decode kernels instead of its prompt ones).
    const batch = intOpt(opts, "batch", Math.min(ids.length, 512));
    if (batch < 1) throw new Error("--batch must be at least 1");
    const contextOptions = { contextSize: ctxSize, sequences: 1, batchSize: batch };
    const threads = intOpt(opts, "threads", 1);
    if (threads > 0) contextOptions.threads = threads;
    const context = await model.createContext(contextOptions);
    const sequence = context.getSequence();
    const input = ids.map((id) => [id, { generateNext: { logits: true, options: { temperature: 0 } } }]);
    const results = await sequence.controlledEvaluate(input);
    const positions = results.map((r, i) => {
        const logits = r?.next?.logits;
        if (logits == null) throw new Error(`no logits after input ${i}`);
        const entries = Array.from(logits.entries());  // sorted by logit, highest first
        const pos = { top: entries.slice(0, top).map(([t, v]) => [t, v]) };
        if (full) {
            const n = vocab ?? entries.length;
            const byId = new Array(n).fill(null);
            for (const [t, v] of entries) byId[t] = Number(v.toPrecision(6));
            pos.logits = byId;
        }
        return pos;
    });
    await context.dispose();
    await model.dispose();
    return { n_vocab: vocab, ids, positions };
}

async function cmdBench(llama, modelPath, opts) {
    checkKnown(opts, ["pp", "tg", "reps", "threads"]);
    const pp = intOpt(opts, "pp", 128), tg = intOpt(opts, "tg", 32), reps = Math.max(1, intOpt(opts, "reps", 3));
    const model = await llama.loadModel({ modelPath, gpuLayers: 0 });
    const vocab = nVocab(model) ?? 256;
    const contextOptions = { contextSize: Math.max(512, pp + tg + 8), sequences: 1, batchSize: Math.max(pp, 1) };
    const threads = intOpt(opts, "threads", 1);
    if (threads > 0) contextOptions.threads = threads;
    const context = await model.createContext(contextOptions);
    // Deterministic pseudo-random ids away from the special tokens at the ends of the vocabulary.
    const ids = Array.from({ length: pp }, (_, i) => 3 + ((i * 7919) % Math.max(1, Math.min(vocab, 32000) - 3)));
    const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
    const ppRuns = [], tgRuns = [];
    const sequence = context.getSequence();
    for (let r = 0; r <= reps; r++) {  // run 0 is a warm-up
        await sequence.clearHistory();
        let t0 = performance.now();
        if (pp > 0) {
            const input = ids.map((id, i) => (i === pp - 1 ? [id, { generateNext: { token: true, options: { temperature: 0 } } }] : id));
            await sequence.controlledEvaluate(input);
        }
        const ppMs = performance.now() - t0;
        // tg as llama-bench runs it: from an empty cache, one token at a time.
        await sequence.clearHistory();
        let last = ids[0] ?? 1;
        t0 = performance.now();
        for (let i = 0; i < tg; i++) {
            const res = await sequence.controlledEvaluate([[last, { generateNext: { token: true, options: { temperature: 0 } } }]]);
            last = res[0]?.next?.token ?? 1;
        }
        const tgMs = performance.now() - t0;
        if (r === 0) continue;
        if (pp > 0) ppRuns.push(pp / (ppMs / 1000));
        if (tg > 0) tgRuns.push(tg / (tgMs / 1000));
    }
    await context.dispose();
    await model.dispose();
    const round = (x) => +x.toFixed(2);
    return {
        pp, tg, threads: context.threads ?? threads,
        pp_tokens_per_s: ppRuns.length ? round(median(ppRuns)) : null,
        tg_tokens_per_s: tgRuns.length ? round(median(tgRuns)) : null,
        pp_runs: ppRuns.map(round), tg_runs: tgRuns.map(round)
    };
}

async function cmdTokenize(llama, modelPath, opts) {
    checkKnown(opts, ["text", "file", "ggml-inp", "special", "add-special", "threads"]);
    const sources = ["text", "file", "ggml-inp"].filter((k) => opts[k] !== undefined);
    if (sources.length !== 1) throw new Error("tokenize needs exactly one of --text TEXT, --file F.json (JSON array of strings), --ggml-inp F.inp");
    let inputs;
    if (opts.text !== undefined) {
        inputs = [opts.text];
    } else if (opts.file !== undefined) {
        inputs = JSON.parse(fs.readFileSync(opts.file, "utf8"));
        if (!Array.isArray(inputs) || !inputs.every((s) => typeof s === "string"))
            throw new Error(`${opts.file}: expected a JSON array of strings`);
    } else {
        inputs = readGgmlInp(opts["ggml-inp"]);
    }
    const model = await loadVocabOnly(llama, modelPath);
    const tokens = inputs.map((s) => tokenizeText(model, s, opts.special === true, opts["add-special"] === true));
    await model.dispose();
    return { tokens };
}

async function cmdInfo(llama, modelPath, opts) {
    checkKnown(opts, ["vocab-only", "threads"]);
    const vocabOnly = opts["vocab-only"] === true;
    const model = vocabOnly ? await loadVocabOnly(llama, modelPath) : await llama.loadModel({ modelPath, gpuLayers: 0 });
    const t = model.tokens;
    let nParams = null;
    try { nParams = model._model?.getTotalParameters?.() ?? null; } catch { nParams = null; }
    const out = {
        loaded: true,
        vocab_only: vocabOnly,
        architecture: model.fileInfo?.metadata?.general?.architecture ?? null,
        name: model.fileInfo?.metadata?.general?.name ?? null,
        n_vocab: nVocab(model),
        vocab_type: model.vocabularyType,
        n_ctx_train: model.trainContextSize,
        n_embd: model.embeddingVectorSize,
        n_params: nParams,
        size_bytes: model.size,
        description: model.typeDescription ?? null,
        bos: t.bos, eos: t.eos, eot: t.eot, nl: t.nl,
        add_bos: t.shouldPrependBosToken,
        add_eos: t.shouldAppendEosToken,
        gpu_layers: model.gpuLayers,
        llama_cpp_release: llama.llamaCppRelease?.release ?? null,
        build_type: llama.buildType ?? null,
        gpu: llama.gpu
    };
    await model.dispose();
    return out;
}

// Embedding of one text (encoder models such as BERT, with the model's own pooling).
async function cmdEmbed(llama, modelPath, opts) {
    checkKnown(opts, ["text", "ids", "threads"]);
    if ((opts.text === undefined) === (opts.ids === undefined)) throw new Error("embed needs exactly one of --text TEXT, --ids 1,2,3");
    const model = await llama.loadModel({ modelPath, gpuLayers: 0 });
    const ctx = await model.createEmbeddingContext({ contextSize: Math.min(model.trainContextSize, 512), threads: intOpt(opts, "threads", 1) });
    let input = opts.text;
    let ids = null;
    if (opts.ids !== undefined) {
        input = idsOpt(opts, "ids");
        // The tokens llama.cpp will evaluate: node-llama-cpp adds the vocabulary's BOS/EOS (in place).
        ids = [...input];
        ctx._prepareInput(ids);
    }
    const embedding = await ctx.getEmbeddingFor(input);
    const vector = Array.from(embedding.vector);
    await ctx.dispose();
    await model.dispose();
    const out = { n: vector.length, finite: vector.every(Number.isFinite), embedding: vector };
    if (ids !== null) out.ids = ids;
    return out;
}

async function cmdCheckVocab(llama, modelPath, opts) {
    checkKnown(opts, ["inp", "out", "special", "add-special", "threads"]);
    const inpFile = opts.inp ?? `${modelPath}.inp`;
    const outFile = opts.out ?? `${modelPath}.out`;
    const inputs = readGgmlInp(inpFile);
    const expected = readGgmlOut(outFile);
    if (inputs.length !== expected.length)
        throw new Error(`${inpFile} has ${inputs.length} inputs but ${outFile} has ${expected.length} lines`);
    const model = await loadVocabOnly(llama, modelPath);
    const mismatches = [];
    inputs.forEach((s, i) => {
        const got = tokenizeText(model, s, opts.special === true, opts["add-special"] === true);
        if (got.length !== expected[i].length || got.some((v, j) => v !== expected[i][j]))
            mismatches.push({ index: i, input: s, expected: expected[i], got });
    });
    await model.dispose();
    return { total: inputs.length, matched: inputs.length - mismatches.length, mismatches };
}

async function main() {
    const { positional, opts } = parseArgs(process.argv.slice(2));
    const cmd = positional[0];
    const commands = { generate: cmdGenerate, logits: cmdLogits, bench: cmdBench, tokenize: cmdTokenize, info: cmdInfo, embed: cmdEmbed, "check-vocab": cmdCheckVocab };
    if (!(cmd in commands)) throw new Error(cmd === undefined ? USAGE : `unknown command ${JSON.stringify(cmd)}; ${USAGE}`);
    const modelPath = modelPathOf(positional);
    const llama = await loadLlama(opts);
    try {
        return await commands[cmd](llama, modelPath, opts);
    } finally {
        await llama.dispose();
    }
}

function finish(obj, code) {
    process.stdout.write(JSON.stringify(obj) + "\n", () => process.exit(code));
}

main().then(
    (out) => finish(out, 0),
    (err) => {
        const out = { error: err instanceof Error ? err.message : String(err) };
        if (logLines.length > 0) out.log = [...new Set(logLines)].slice(-10);
        finish(out, 1);
    }
);
