// Test helper: node tokenize.mjs <js dir> <vocab.txt> <sentences.json>  -> JSON list of id lists on stdout
import { readFileSync } from "node:fs";
const { WordPiece } = await import(new URL("wordpiece.mjs", "file://" + process.argv[2] + "/").href);
const tok = WordPiece.fromText(readFileSync(process.argv[3], "utf8"));
const sentences = JSON.parse(readFileSync(process.argv[4], "utf8"));
console.log(JSON.stringify(sentences.map((s) => Array.from(tok.encode(s).ids, Number))));
