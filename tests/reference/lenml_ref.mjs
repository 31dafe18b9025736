#!/usr/bin/env node
// Reference driver around @lenml/tokenizers (a JavaScript port of Hugging Face tokenizers) for vireo's
// tokenizer tests.
//
//   node lenml_ref.mjs encode DIR --file INPUTS.json [--no-add-special]
//       DIR holds tokenizer.json (and tokenizer_config.json); INPUTS.json is a JSON array of strings.
//       -> {"tokens": [[ids...], ...]}
//
// Hugging Face tokenizers always split added tokens out of the text (there is no parse_special=false),
// and JavaScript strings cannot hold invalid UTF-8: callers pass valid UTF-8 only.
// Prints exactly one JSON object on stdout; on failure {"error": "..."} and exit code 1.

import fs from "node:fs";
import path from "node:path";

async function main() {
    const argv = process.argv.slice(2);
    const [cmd, dir] = argv;
    if (cmd !== "encode" || dir === undefined) throw new Error("usage: node lenml_ref.mjs encode DIR --file INPUTS.json [--no-add-special]");
    const fileAt = argv.indexOf("--file");
    if (fileAt < 0 || fileAt + 1 >= argv.length) throw new Error("encode needs --file INPUTS.json");
    const addSpecial = !argv.includes("--no-add-special");
    const inputs = JSON.parse(fs.readFileSync(argv[fileAt + 1], "utf8"));
    if (!Array.isArray(inputs) || !inputs.every((s) => typeof s === "string")) throw new Error("expected a JSON array of strings");
    const tokenizerJSON = JSON.parse(fs.readFileSync(path.join(dir, "tokenizer.json"), "utf8"));
    const configPath = path.join(dir, "tokenizer_config.json");
    const tokenizerConfig = fs.existsSync(configPath) ? JSON.parse(fs.readFileSync(configPath, "utf8")) : {};
    const { TokenizerLoader } = await import("@lenml/tokenizers");
    const tokenizer = TokenizerLoader.fromPreTrained({ tokenizerJSON, tokenizerConfig });
    const tokens = inputs.map((s) => Array.from(tokenizer.encode(s, { add_special_tokens: addSpecial })));
    return { tokens };
}

main().then(
    (out) => process.stdout.write(JSON.stringify(out) + "\n", () => process.exit(0)),
    (err) => process.stdout.write(JSON.stringify({ error: err instanceof Error ? err.message : String(err) }) + "\n", () => process.exit(1))
);
