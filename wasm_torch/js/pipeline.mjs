// pipeline.mjs: run a partitioned wasm-torch model (pipeline.json + stage_0..stage_k-1) in the
// browser with each stage in its own Web Worker, or in Node / without workers on this thread.
// Mirrors wasm_torch/analyze/runner.py; the contract is pipeline.json (docs/partitioning.md).
//
//   import { loadPipeline } from "./pipeline.mjs";
//   const p = await loadPipeline("vit4/");                           // URL in browsers, path or URL in Node
//   const out = await p.run({ pixel_values: x }, { shapes: { pixel_values: [1, 3, 224, 224] } });
//   const outs = await p.runMany([inputs0, inputs1, ...], { shapes });   // micro-batches in flight
//   p.terminate();
//
// A stage's worker runs its calls one at a time, in the order they arrive; a call is sent as soon as
// the tensors it reads exist, so stage j works on micro-batch m+1 while stage j+1 works on m.
import {
  ArtifactError,
  InputError,
  IntegrityError,
  WasmTorch,
  WasmTorchError,
  fetchArtifact,
  sha256,
} from "./wasm-torch.mjs";

export const PIPELINE_FORMAT = "wasm-torch-pipeline/1";
const MAX_PIPELINE_BYTES = 8 << 20;
const MAX_STAGES = 1024;
const DIR = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$/;
const IS_NODE = typeof process !== "undefined" && !!process.versions?.node && typeof window === "undefined";
const isUrl = (s) => /^[a-z][a-z0-9+.-]*:/i.test(s) && !/^[a-z]:[\\/]/i.test(s);

function baseOf(src) {
  let s = src instanceof URL ? src.href : String(src);
  if (IS_NODE && s.startsWith("file:")) s = decodeURIComponent(new URL(s).pathname);
  if (!s.endsWith("/")) s += "/";
  if (IS_NODE && !isUrl(s)) return { node: true, base: s };
  const here = globalThis.location?.href;
  return { node: false, base: here ? new URL(s, here).href : s };
}

async function readBytes(loc, name, fetchImpl) {
  if (loc.node) {
    const fs = await import("node:fs/promises");
    try {
      const st = await fs.stat(loc.base + name);
      if (name === "pipeline.json" && st.size > MAX_PIPELINE_BYTES) {
        throw new ArtifactError(`${loc.base}${name} is larger than ${MAX_PIPELINE_BYTES} bytes`);
      }
      return new Uint8Array(await fs.readFile(loc.base + name));
    } catch (e) {
      if (e instanceof WasmTorchError) throw e;
      throw new ArtifactError(`${loc.base}${name} cannot be read: ${e.code === "ENOENT" ? "missing" : e.message}`);
    }
  }
  let r;
  try {
    r = await fetchImpl(loc.base + name);
  } catch (e) {
    throw new ArtifactError(`${loc.base}${name} could not be fetched: ${e.message}`);
  }
  if (!r.ok) throw new ArtifactError(`${loc.base}${name} could not be fetched: HTTP ${r.status}`);
  const b = new Uint8Array(await r.arrayBuffer());
  if (name === "pipeline.json" && b.byteLength > MAX_PIPELINE_BYTES) {
    throw new ArtifactError(`${loc.base}${name} is larger than ${MAX_PIPELINE_BYTES} bytes`);
  }
  return b;
}

/** Check pipeline.json the way wasm_torch/analyze/pipeline_manifest.py does (minus stage manifests). */
export function checkPipeline(raw, where = "pipeline.json") {
  const bad = (what) => new ArtifactError(`${where}: ${what}; recompile the model with stages=k`);
  if (!raw || typeof raw !== "object" || Array.isArray(raw)) throw bad("top level must be an object");
  if (raw.format !== PIPELINE_FORMAT) throw bad(`format is ${JSON.stringify(raw.format)}, expected "${PIPELINE_FORMAT}"`);
  if (!Array.isArray(raw.inputs) || !raw.inputs.every((d) => d && typeof d.name === "string")) {
    throw bad("inputs must be a list of {name, ...} objects");
  }
  const inputs = new Set(raw.inputs.map((d) => d.name));
  if (inputs.size !== raw.inputs.length) throw bad("model input names repeat");
  if (!Array.isArray(raw.stages) || raw.stages.length < 1 || raw.stages.length > MAX_STAGES) {
    throw bad(`stages must be a list of 1..${MAX_STAGES} objects`);
  }
  const dirs = new Set();
  const source = (where2, from, before) => {
    if (!from || typeof from !== "object") throw bad(`${where2}.from must be an object`);
    const keys = Object.keys(from).sort().join(",");
    if (keys === "input" && typeof from.input === "string") {
      if (!inputs.has(from.input)) throw bad(`${where2}.from names unknown model input ${JSON.stringify(from.input)}`);
      return { stage: null, name: from.input };
    }
    if (keys === "output,stage" && Number.isInteger(from.stage) && typeof from.output === "string") {
      if (from.stage < 0 || from.stage >= before) throw bad(`${where2}.from refers to stage ${from.stage}, which does not run before it`);
      return { stage: from.stage, name: from.output };
    }
    throw bad(`${where2}.from must be {input: name} or {stage: j, output: name}`);
  };
  const stages = raw.stages.map((s, j) => {
    const w = `stages[${j}]`;
    if (!s || typeof s !== "object") throw bad(`${w} must be an object`);
    if (typeof s.dir !== "string" || !DIR.test(s.dir) || dirs.has(s.dir)) throw bad(`${w}.dir must be a distinct plain folder name`);
    dirs.add(s.dir);
    if (typeof s.manifest_sha256 !== "string" || !/^[0-9a-f]{64}$/.test(s.manifest_sha256)) {
      throw bad(`${w}.manifest_sha256 must be 64 lowercase hex digits`);
    }
    if (!Array.isArray(s.inputs)) throw bad(`${w}.inputs must be a list`);
    const wires = s.inputs.map((x, i) => {
      if (!x || typeof x.name !== "string") throw bad(`${w}.inputs[${i}] must be a {name, from} object`);
      return [x.name, source(`${w}.inputs[${i}]`, x.from, j)];
    });
    return { dir: s.dir, sha: s.manifest_sha256, inputs: wires, cost: Number(s.cost) || 0 };
  });
  if (!Array.isArray(raw.outputs) || raw.outputs.length === 0) throw bad("outputs must be a non-empty list");
  const outputs = raw.outputs.map((o, i) => {
    if (!o || typeof o.name !== "string") throw bad(`outputs[${i}] must be a {name, from} object`);
    return [o.name, source(`outputs[${i}]`, o.from, stages.length)];
  });
  return { name: String(raw.name ?? ""), inputs: raw.inputs.map((d) => d.name), stages, outputs };
}

/** One stage in its own Web Worker (wasm-torch-worker.mjs protocol). */
class WorkerStage {
  #worker;
  #pending = new Map();
  #next = 1;

  constructor(url, name) {
    this.#worker = new Worker(url, { type: "module", name });
    this.name = name;
    this.#worker.onmessage = (ev) => {
      const p = this.#pending.get(ev.data.id);
      if (!p) return;
      this.#pending.delete(ev.data.id);
      if (ev.data.error) p.reject(Object.assign(new WasmTorchError(ev.data.error.message), { name: ev.data.error.name }));
      else p.resolve(ev.data.result);
    };
    this.#worker.onerror = (ev) => {
      ev.preventDefault?.();
      for (const [, p] of this.#pending) p.reject(new WasmTorchError(`stage worker ${name} failed: ${ev.message ?? "script error"}`));
      this.#pending.clear();
    };
  }

  #post(msg, transfer = []) {
    const id = this.#next++;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      this.#worker.postMessage({ id, ...msg }, transfer);
    });
  }

  async init(parts) {
    const info = await this.#post({ op: "init", parts, opts: {} }, [parts.weights.buffer]);
    this.variant = info.variant;
    return info;
  }

  run(inputs) {
    return this.#post({ op: "run", inputs, opts: {} });
  }

  terminate() {
    this.#worker.terminate();
  }
}

/** One stage on this thread (Node, or workers: false). */
class LocalStage {
  constructor(model) {
    this.model = model;
    this.variant = model.variant;
  }

  async run(inputs) {
    return this.model.runSync(inputs, {});
  }

  terminate() {}
}

export class Pipeline {
  constructor(spec, stages, info) {
    this.spec = spec;
    this.name = spec.name;
    this.inputs = spec.inputs;
    this.outputs = spec.outputs.map(([n]) => n);
    this.stages = stages;
    Object.assign(this, info);
  }

  /** One call. inputs: {name: typed array | {data, shape}}; opts.shapes as in WasmTorch.run. */
  async run(inputs, opts = {}) {
    return (await this.runMany([inputs], opts))[0];
  }

  /** Many calls with micro-batches in flight (at most opts.maxInFlight, default stages + 2). */
  async runMany(batches, opts = {}) {
    const feeds = batches.map((b, m) => this.#normalise(b, opts.shapes ?? {}, m));
    const limit = Math.max(1, opts.maxInFlight ?? this.stages.length + 2);
    const results = new Array(feeds.length);
    let next = 0;
    const one = async (m) => {
      const done = this.spec.stages.map(() => null);
      const value = (src) => (src.stage === null ? feeds[m][src.name] : done[src.stage].then((o) => o[src.name]));
      this.spec.stages.forEach((st, j) => {
        done[j] = Promise.all(st.inputs.map(([, src]) => value(src))).then((vals) => {
          const ins = Object.fromEntries(st.inputs.map(([n], i) => [n, vals[i]]));
          return this.stages[j].run(ins).catch((e) => {
            const Err = e instanceof WasmTorchError ? e.constructor : WasmTorchError;
            throw Object.assign(new Err(`micro-batch ${m}, stage ${j}: ${e.message}`), { name: e.name ?? Err.name });
          });
        });
        done[j].catch(() => {}); // handled by the stages and outputs that read it; never "unhandled"
      });
      const outs = await Promise.all(this.spec.outputs.map(([, src]) => value(src)));
      return Object.fromEntries(this.spec.outputs.map(([n], i) => [n, outs[i]]));
    };
    const lane = async () => {
      while (next < feeds.length) {
        const m = next++;
        results[m] = await one(m);
      }
    };
    await Promise.all(Array.from({ length: Math.min(limit, feeds.length) }, lane));
    return results;
  }

  #normalise(inputs, shapes, m) {
    const names = Object.keys(inputs);
    const missing = this.inputs.filter((n) => !(n in inputs));
    const unknown = names.filter((n) => !this.inputs.includes(n));
    if (missing.length || unknown.length) {
      throw new InputError(`${this.name}: micro-batch ${m}: inputs are ${JSON.stringify(this.inputs)}; ` +
        `missing ${JSON.stringify(missing)}, unexpected ${JSON.stringify(unknown)}`);
    }
    return Object.fromEntries(this.inputs.map((n) => {
      const v = inputs[n];
      const isObj = v && !ArrayBuffer.isView(v) && !Array.isArray(v) && typeof v === "object" && "data" in v;
      return [n, isObj ? v : shapes[n] ? { data: v, shape: shapes[n] } : v];
    }));
  }

  terminate() {
    for (const s of this.stages) s.terminate();
  }
}

/**
 * Load a pipeline folder: check pipeline.json, each stage manifest's sha256 and (through
 * fetchArtifact) each stage's files, then start one Web Worker per stage (browsers) or instances on
 * this thread (Node, or opts.workers === false).
 * variant / threads are wasm-torch.mjs's, for every stage ("auto": the fastest build the engine runs;
 * "simd128": bit-identical to model.wasm everywhere; threads default 1 per stage).
 * @param {string|URL} src
 * @param {{workers?: boolean, variant?: string, threads?: number, workerUrl?: string|URL, fetch?: typeof fetch}} [opts]
 */
export async function loadPipeline(src, opts = {}) {
  const t0 = performance.now();
  const loc = baseOf(src);
  const fetchImpl = opts.fetch ?? globalThis.fetch?.bind(globalThis);
  const text = new TextDecoder().decode(await readBytes(loc, "pipeline.json", fetchImpl));
  let raw;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new ArtifactError(`${loc.base}pipeline.json is not valid JSON (${e.message})`);
  }
  const spec = checkPipeline(raw, `${loc.base}pipeline.json`);
  const useWorkers = opts.workers !== false && typeof Worker !== "undefined";
  const url = opts.workerUrl ?? new URL("./wasm-torch-worker.mjs", import.meta.url);
  const stages = [];
  try {
    for (const [j, st] of spec.stages.entries()) {
      const stageLoc = { ...loc, base: loc.base + st.dir + "/" };
      const mbytes = await readBytes(stageLoc, "manifest.json", fetchImpl);
      if ((await sha256(mbytes)) !== st.sha) {
        throw new IntegrityError(`${stageLoc.base}manifest.json: sha256 does not match pipeline.json (tampered or from another build)`);
      }
      // each stage single-threaded by default: the pipeline's parallelism is across stages
      const parts = await fetchArtifact(stageLoc.base, { fetch: fetchImpl, variant: opts.variant ?? "auto", threads: opts.threads ?? 1 });
      if (JSON.stringify(parts.manifest) !== JSON.stringify(JSON.parse(new TextDecoder().decode(mbytes)))) {
        throw new IntegrityError(`${stageLoc.base}manifest.json changed while it was being read`);
      }
      const want = parts.manifest.inputs.map((t) => t.name).sort();
      const got = st.inputs.map(([n]) => n).sort();
      if (JSON.stringify(want) !== JSON.stringify(got)) {
        throw new ArtifactError(`${loc.base}pipeline.json: stages[${j}].inputs ${JSON.stringify(got)} differ from what the stage manifest needs ${JSON.stringify(want)}`);
      }
      if (useWorkers) {
        const s = new WorkerStage(url, `wasm-torch-${spec.name}-stage${j}`);
        stages.push(s);
        await s.init(parts);
      } else {
        stages.push(new LocalStage(await WasmTorch.fromParts(parts)));
      }
    }
  } catch (e) {
    for (const s of stages) s.terminate();
    throw e;
  }
  return new Pipeline(spec, stages, { workers: useWorkers, variants: stages.map((s) => s.variant), loadMs: performance.now() - t0 });
}
