// Test helper: node run_artifact.mjs job.json
// job = {loader, artifact, out, runs: [{name: {dtype, shape, file}}], nosimd?, verify?, threads?, variant?, repeat?}
// Writes out/result.json: {runs: [{outputs: {name: {dtype, shape, file}}} | {error}], stats, threadStats}
// (repeat: run every input this many times, keeping the last outputs: the helpers warm up)
// or {error: {name, message}} when loading failed.
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";

const job = JSON.parse(readFileSync(process.argv[2], "utf8"));
if (job.nosimd) WebAssembly.validate = () => false; // simulate an engine without SIMD128
const { WasmTorch } = await import(job.loader);

const ARRAYS = { float32: Float32Array, float64: Float64Array, int64: BigInt64Array, int32: Int32Array,
  uint8: Uint8Array, int8: Int8Array, bool: Uint8Array };

function readInput(spec) {
  const b = new Uint8Array(readFileSync(spec.file)); // a fresh, aligned copy
  const data = new ARRAYS[spec.dtype](b.buffer);
  return { data, shape: spec.shape };
}

const result = { runs: [] };
try {
  const opts = { verify: job.verify !== false };
  if (job.threads !== undefined) opts.threads = job.threads;
  if (job.variant !== undefined) opts.variant = job.variant;
  const m = await WasmTorch.load(job.artifact, opts);
  for (const batch of job.runs) {
    try {
      const inputs = Object.fromEntries(Object.entries(batch).map(([k, v]) => [k, readInput(v)]));
      let outs;
      for (let r = 0; r < (job.repeat ?? 1); r++) outs = await m.run(inputs);
      const files = {};
      for (const [name, o] of Object.entries(outs)) {
        const file = join(job.out, `${result.runs.length}_${name}.bin`);
        writeFileSync(file, new Uint8Array(o.data.buffer, o.data.byteOffset, o.data.byteLength));
        files[name] = { dtype: o.dtype, shape: o.shape, file };
      }
      result.runs.push({ outputs: files });
    } catch (e) {
      result.runs.push({ error: { name: e?.name, message: String(e?.message ?? e) } });
    }
  }
  result.stats = m.stats();
  result.threadStats = m.threadStats();
  m.close?.();
} catch (e) {
  result.error = { name: e?.name, message: String(e?.message ?? e) };
}
writeFileSync(join(job.out, "result.json"), JSON.stringify(result));
