#!/usr/bin/env node
// Reference renderer for vireo's chat-template tests: @huggingface/jinja (the Jinja implementation
// Hugging Face's JavaScript libraries use), pinned in package.json.
//
//   node jinja_ref.mjs render TEMPLATE_FILE CONTEXT.json
//       -> {"text": "..."} or {"error": "..."}
//   node jinja_ref.mjs batch CASES.json [OUT.json]
//       CASES.json: {"templates": ["...", ...], "cases": [{"template": INDEX, "context": {...}}, ...]}
//       -> {"results": [{"text": "..."} | {"error": "..."}, ...]}  (one per case, in order)
//
// Batch mode parses each template once and renders every case in one process, so a golden test over
// hundreds of template x conversation pairs pays Node's start-up cost once. Output goes to OUT.json
// when given (large outputs through a pipe are fragile), else to stdout. Exit code 0 unless the
// driver itself fails (bad arguments, unreadable files); template errors are results, not failures.

import fs from "node:fs";
import { Template } from "@huggingface/jinja";

const USAGE = "usage: node jinja_ref.mjs render TEMPLATE_FILE CONTEXT.json | batch CASES.json [OUT.json]";

function errorText(e) {
    if (e instanceof Error) return `${e.name}: ${e.message}`;
    return String(e);
}

// Renders one template source with one context; a parse or render failure becomes {"error"}.
function renderOne(parsedOrError, context) {
    if (parsedOrError.error !== undefined) return { error: parsedOrError.error };
    try {
        return { text: parsedOrError.template.render(context) };
    } catch (e) {
        return { error: errorText(e) };
    }
}

function parseTemplate(source) {
    try {
        return { template: new Template(source) };
    } catch (e) {
        return { error: errorText(e) };
    }
}

function main(argv) {
    const [command, ...args] = argv;
    if (command === "render") {
        if (args.length !== 2) throw new Error(USAGE);
        const source = fs.readFileSync(args[0], "utf8");
        const context = JSON.parse(fs.readFileSync(args[1], "utf8"));
        return JSON.stringify(renderOne(parseTemplate(source), context));
    }
    if (command === "batch") {
        if (args.length < 1 || args.length > 2) throw new Error(USAGE);
        const input = JSON.parse(fs.readFileSync(args[0], "utf8"));
        if (!Array.isArray(input.templates) || !Array.isArray(input.cases)) {
            throw new Error("batch input needs arrays 'templates' and 'cases'");
        }
        const parsed = input.templates.map(parseTemplate);
        const results = input.cases.map((c) => {
            const t = parsed[c.template];
            if (t === undefined) return { error: `driver: no template with index ${c.template}` };
            return renderOne(t, c.context ?? {});
        });
        const out = JSON.stringify({ results });
        if (args.length === 2) {
            fs.writeFileSync(args[1], out);
            return JSON.stringify({ written: results.length });
        }
        return out;
    }
    throw new Error(USAGE);
}

try {
    process.stdout.write(main(process.argv.slice(2)) + "\n");
} catch (e) {
    process.stdout.write(JSON.stringify({ error: `driver: ${errorText(e)}` }) + "\n");
    process.exitCode = 1;
}
