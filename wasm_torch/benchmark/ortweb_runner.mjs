// Times one ONNX model in ONNX Runtime Web (onnxruntime-web from npm, wasm backend) under Node.
// Part of `wasm-torch bench` (wasm_torch/benchmark/peers.py starts it as a subprocess).
//
//   node ortweb_runner.mjs spec.json
//
// spec.json: {"ort_package": ".../node_modules/onnxruntime-web", "model": "m.onnx",
//             "inputs": [{"dtype": "float32"|"int64", "shape": [..], "file": "x0.bin"}],
//             "warmup": 2, "warmup_seconds": 1.0, "repeat": 9, "interactive": false, "out_dir": "...",
//             "threads": 1}
// Times `repeat` runs after the warm-up; with "interactive": true it then prints "@@ready" and times
// one more run per "run" line on stdin until "end". Then writes out_dir/result.json: per-run times (ms), the outputs (raw little-endian files), the ORT
// files Node actually loaded (recorded by a module-load hook and an fs.readFile* wrapper) and
// their sizes, and the versions. `threads` threads (env.wasm.numThreads: ORT-Web's own worker
// threads over a SharedArrayBuffer), SIMD, no proxy worker, all graph optimizations.
import fs from 'node:fs';
import module from 'node:module';
import path from 'node:path';
import readline from 'node:readline';
import { performance } from 'node:perf_hooks';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { MessageChannel } from 'node:worker_threads';

const spec = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const pkgDir = path.resolve(spec.ort_package);
const loaded = new Set();

// 1. every ES module Node loads (ort.node.min.mjs, then ort-wasm-simd-threaded.mjs) ...
const HOOKS = `let port;
export function initialize(d) { port = d.port; }
export async function load(url, context, next) {
  const r = await next(url, context);
  if (url.startsWith('file:')) port.postMessage(url);
  return r;
}`;
const { port1, port2 } = new MessageChannel();
port1.on('message', (url) => loaded.add(fileURLToPath(url)));
module.register('data:text/javascript,' + encodeURIComponent(HOOKS), import.meta.url, {
  data: { port: port2 },
  transferList: [port2],
});
// 2. ... and every file it reads (the .wasm binary is read with fs in Node).
for (const name of ['readFileSync', 'readFile']) {
  const orig = fs[name];
  fs[name] = function (p, ...rest) {
    if (typeof p === 'string' || p instanceof URL) loaded.add(p instanceof URL ? fileURLToPath(p) : path.resolve(p));
    return orig.call(this, p, ...rest);
  };
}
const origPromiseRead = fs.promises.readFile;
fs.promises.readFile = function (p, ...rest) {
  if (typeof p === 'string' || p instanceof URL) loaded.add(p instanceof URL ? fileURLToPath(p) : path.resolve(p));
  return origPromiseRead.call(this, p, ...rest);
};
module.syncBuiltinESMExports();

// Resolve the package's ES entry for Node exactly as `import 'onnxruntime-web'` would.
const pkg = JSON.parse(fs.readFileSync(path.join(pkgDir, 'package.json'), 'utf8'));
const entry = pkg.exports['.'].node.import;
const ort = await import(pathToFileURL(path.join(pkgDir, entry)).href);

const THREADS = spec.threads ?? 1;
ort.env.wasm.numThreads = THREADS;
ort.env.wasm.proxy = false;
ort.env.wasm.simd = true; // the only build 1.30 ships is SIMD; kept explicit
ort.env.logLevel = 'error';

const ARRAYS = { float32: Float32Array, int64: BigInt64Array, int32: Int32Array, bool: Uint8Array };
function readTensor(t) {
  const buf = fs.readFileSync(t.file);
  const Arr = ARRAYS[t.dtype];
  if (!Arr) throw new Error(`unsupported input dtype ${t.dtype}`);
  const data = new Arr(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength));
  return new ort.Tensor(t.dtype, data, t.shape);
}

const session = await ort.InferenceSession.create(new Uint8Array(fs.readFileSync(spec.model)), {
  executionProviders: ['wasm'],
  graphOptimizationLevel: 'all',
  executionMode: 'sequential',
  intraOpNumThreads: THREADS,
  interOpNumThreads: 1,
});
if (session.inputNames.length !== spec.inputs.length) {
  throw new Error(`model has inputs ${session.inputNames}, spec gives ${spec.inputs.length}`);
}
const feeds = {};
spec.inputs.forEach((t, i) => (feeds[session.inputNames[i]] = readTensor(t)));

// Warm-up: at least `warmup` runs and `warmup_seconds` of them, so V8 has tiered the hot wasm
// functions up from its baseline compiler (Liftoff) to the optimizing one (TurboFan) before timing.
let first = null;
let warmupRuns = 0;
const w0 = performance.now();
while (warmupRuns < spec.warmup || performance.now() - w0 < 1000 * (spec.warmup_seconds ?? 0)) {
  const r = await session.run(feeds);
  first ??= r;
  warmupRuns++;
}
const times = [];
for (let i = 0; i < spec.repeat; i++) {
  const t0 = performance.now();
  const r = await session.run(feeds);
  times.push(performance.now() - t0);
  first ??= r;
}
// Interactive mode (what `wasm-torch bench` uses): one timed run per "run" line on stdin, its time
// answered as "@@t <ms>", until "end". The Python side interleaves these with its own systems.
if (spec.interactive) {
  console.log('@@ready');
  for await (const line of readline.createInterface({ input: process.stdin })) {
    if (line.trim() === 'end') break;
    if (line.trim() !== 'run') throw new Error(`unknown command ${JSON.stringify(line)}`);
    const t0 = performance.now();
    await session.run(feeds);
    const ms = performance.now() - t0;
    times.push(ms);
    console.log(`@@t ${ms}`);
  }
}
const outputs = session.outputNames.map((name, k) => {
  const t = first[name];
  const file = path.join(spec.out_dir, `ortweb_out${k}.bin`);
  fs.writeFileSync(file, Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength));
  return { name, dtype: t.type, shape: t.dims, file };
});
await new Promise((r) => setImmediate(r)); // let the last module-load messages arrive
port1.close();
const runtime = [...loaded]
  .filter((f) => f.startsWith(pkgDir + path.sep) && /\.(wasm|mjs|js)$/.test(f))
  .sort()
  .map((f) => ({ file: path.relative(pkgDir, f), bytes: fs.statSync(f).size }));
const result = {
  times_ms: times,
  warmup_runs: warmupRuns,
  outputs,
  runtime_files: runtime,
  runtime_bytes: runtime.reduce((s, f) => s + f.bytes, 0),
  versions: { node: process.versions.node, onnxruntime_web: pkg.version, ort_env: ort.env.versions ?? null },
  threads: ort.env.wasm.numThreads,
};
fs.writeFileSync(path.join(spec.out_dir, 'result.json'), JSON.stringify(result));
await session.release();
