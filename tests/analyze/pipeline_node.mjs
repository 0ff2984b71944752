// Test helper: load a pipeline with wasm_torch/js/pipeline.mjs in Node and run it.
//   node pipeline_node.mjs job.json  ->  result.json in job.out
// job = {module, pipeline, inputs: [{name, dtype, shape, file}], runs, out}
import { readFileSync, writeFileSync } from "node:fs";

const job = JSON.parse(readFileSync(process.argv[2], "utf8"));
const { loadPipeline } = await import(job.module);
const ARRAYS = { float32: Float32Array, int64: BigInt64Array, int32: Int32Array, uint8: Uint8Array, bool: Uint8Array };
const result = {};
try {
  const p = await loadPipeline(job.pipeline, { variant: job.variant ?? "simd128" });
  const inputs = {};
  for (const i of job.inputs) {
    const b = readFileSync(i.file);
    inputs[i.name] = { data: new ARRAYS[i.dtype](b.buffer, b.byteOffset, b.byteLength / ARRAYS[i.dtype].BYTES_PER_ELEMENT), shape: i.shape };
  }
  const outs = await p.runMany(Array.from({ length: job.runs }, () => inputs));
  result.workers = p.workers;
  result.variants = p.variants;
  result.stages = p.stages.length;
  result.runs = outs.map((o, k) => Object.fromEntries(Object.entries(o).map(([name, v]) => {
    const f = `${job.out}/out${k}_${name}.bin`;
    writeFileSync(f, Buffer.from(v.data.buffer, v.data.byteOffset, v.data.byteLength));
    return [name, { file: f, shape: v.shape, dtype: v.dtype }];
  })));
  if (job.badInput) {
    try {
      await p.run({ [job.inputs[0].name]: { data: new Float32Array(3), shape: [3] } });
    } catch (e) {
      result.badInput = { name: e.name, message: e.message };
    }
  }
  p.terminate();
} catch (e) {
  result.error = { name: e.name, message: e.message };
}
writeFileSync(`${job.out}/result.json`, JSON.stringify(result));
