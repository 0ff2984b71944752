// Test page (tests/js/test_js_threads.py): for every artifact in job.json, load it with each
// {variant, threads} of job.runs, run its inputs, and hand back the outputs (base64) with the build
// chosen, the threads running and the per-thread chunk counts.
// window.__done / window.__result are read by browser_eval.mjs.
import { WasmTorch } from "./wasm-torch.mjs";

const ARRAYS = { float32: Float32Array, int64: BigInt64Array, int32: Int32Array, uint8: Uint8Array, int8: Int8Array, bool: Uint8Array };
const b64 = (u8) => {
  let s = "";
  for (let i = 0; i < u8.length; i += 0x8000) s += String.fromCharCode(...u8.subarray(i, i + 0x8000));
  return btoa(s);
};

async function main() {
  const job = await (await fetch("./job.json")).json();
  const out = { isolated: crossOriginIsolated, models: {} };
  for (const a of job.artifacts) {
    const inputs = {};
    for (const [name, spec] of Object.entries(a.inputs)) {
      const buf = await (await fetch(spec.file)).arrayBuffer();
      inputs[name] = { data: new ARRAYS[spec.dtype](buf), shape: spec.shape };
    }
    const runs = [];
    for (const { variant, threads } of job.runs) {
      const m = await WasmTorch.load(a.path, { threads, variant });
      let res;
      for (let r = 0; r < (job.repeat ?? 3); r++) res = await m.run(inputs);
      const outputs = {};
      for (const [k, o] of Object.entries(res)) {
        outputs[k] = { dtype: o.dtype, shape: o.shape, b64: b64(new Uint8Array(o.data.buffer, o.data.byteOffset, o.data.byteLength)) };
      }
      runs.push({ variant, threads, built: m.variant, running: m.threads, stats: m.threadStats(), outputs });
      m.close();
    }
    out.models[a.name] = runs;
  }
  return out;
}

main().then((r) => {
  window.__result = r;
  document.getElementById("status").textContent = "done";
}).catch((e) => {
  window.__result = { error: `${e?.name}: ${e?.message}` };
}).finally(() => {
  window.__done = true;
});
