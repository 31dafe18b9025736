// Prints the text of a PDF as Mozilla pdf.js extracts it, as one JSON line: {"pages": [text, ...]}.
// A second opinion for the PDF extractor's tests. Usage: node pdfjs_text.mjs FILE.pdf
import { readFile } from "node:fs/promises";

const pdfjsUrl = new URL("../reference/node_modules/pdfjs-dist/legacy/build/pdf.mjs", import.meta.url);

// pdf.js reports missing optional canvas packages through the console; only our JSON goes to stdout.
for (const name of ["log", "info", "warn", "debug"]) console[name] = () => {};

async function main() {
  const path = process.argv[2];
  if (!path) throw new Error("usage: node pdfjs_text.mjs FILE.pdf");
  const pdfjs = await import(pdfjsUrl.href);
  const data = new Uint8Array(await readFile(path));
  const doc = await pdfjs.getDocument({ data, verbosity: 0, isEvalSupported: false }).promise;
  const pages = [];
  for (let i = 1; i <= doc.numPages; i++) {
    const page = await doc.getPage(i);
    const content = await page.getTextContent();
    let text = "";
    let last = null;  // the previous item's end on the page: x, y and height
    for (const item of content.items) {
      if (typeof item.str !== "string") continue;
      const [, , , , x, y] = item.transform;
      const height = Math.abs(item.height) || 1;
      // pdf.js leaves out the blank between items it keeps apart (table cells, columns): restore it
      // when there is a visible gap or the item starts somewhere else on the page.
      if (last !== null && item.str.length > 0 && !/\s$/.test(text) && text.length > 0) {
        const sameLine = Math.abs(y - last.y) < 0.5 * Math.min(height, last.height);
        const gap = x - last.end;
        if (!sameLine || gap > 0.1 * height || gap < -0.5 * height) text += " ";
      }
      text += item.str;
      if (item.hasEOL) text += "\n";
      if (item.str.length > 0) last = { end: x + item.width, y, height };
    }
    pages.push(text);
    page.cleanup();
  }
  await doc.destroy();
  process.stdout.write(JSON.stringify({ pages }) + "\n");
}

main().catch((err) => {
  process.stdout.write(JSON.stringify({ error: String(err && err.message ? err.message : err) }) + "\n");
  process.exitCode = 1;
});
