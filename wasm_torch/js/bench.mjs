#!/usr/bin/env node
// Latency of an artifact in Node (V8), for `make bench` next to ONNX Runtime Web in Node:
//   node bench.mjs ARTIFACT [--runs 20] [--sym seq=128]  ->  one JSON line
// Inputs are zeros (ids 0 are valid for embedding tables) at the given (or minimum) symbol sizes.
import { WasmTorch, evalDim, DTYPES } from "./wasm-torch.mjs";

const args = process.argv.slice(2);
const opt = (k, d) => (args.includes(k) ? args[args.indexOf(k) + 1] : d);
const path = args[0];
if (!path) {
  console.error("usage: node bench.mjs ARTIFACT [--runs N] [--sym name=value ...]");
  process.exit(2);
}
const t0 = performance.now();
const m = await WasmTorch.load(path);
const loadMs = performance.now() - t0;
const syms = Object.fromEntries((m.symbols ?? []).map((s) => [s.name, s.min]));
args.forEach((a, i) => {
  if (a === "--sym") {
    const [k, v] = args[i + 1].split("=");
    syms[k] = Number(v);
  }
});
const inputs = {};
for (const s of m.inputs) {
  const shape = s.shape.map((d) => evalDim(d, syms));
  inputs[s.name] = { data: new DTYPES[s.dtype](shape.reduce((a, b) => a * b, 1)), shape };
}
m.runSync(inputs); // warm-up
const runs = Number(opt("--runs", 20));
const ms = [];
for (let i = 0; i < runs; i++) {
  const t = performance.now();
  m.runSync(inputs);
  ms.push(performance.now() - t);
}
ms.sort((a, b) => a - b);
console.log(JSON.stringify({ runtime: "wasm-torch.mjs (node)", node: process.version, model: m.name, symbols: syms,
  load_ms: loadMs, runs, median_ms: ms[Math.floor(runs / 2)], p90_ms: ms[Math.floor(runs * 0.9)], min_ms: ms[0] }));
