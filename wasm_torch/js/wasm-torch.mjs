// wasm-torch.mjs: run a wasm-torch artifact (manifest.json + model.wasm + weights.bin) in Node >= 18
// or any modern browser. No dependencies. Mirrors wasm_torch/runtime/module.py; the contract is
// docs/artifact-format.md (format "wasm-torch/1").
//
//   import { WasmTorch } from "./wasm-torch.mjs";
//   const m = await WasmTorch.load("model/");            // URL in browsers, path or URL in Node
//   const out = await m.run({ x: new Float32Array(64) }, { shapes: { x: [1, 64] } });
//   out.output_0  // { data: Float32Array, shape: [1, 10], dtype: "float32" }
//
// Threads: WasmTorch.load(src, {threads}) runs one call on several threads (default: the cores, at
// most 8) when the artifact has a threaded build and the engine has wasm threads (Node; pages that
// are cross-origin isolated), else on one thread with a loud console warning. Results are
// bit-identical whatever the thread count. {variant} picks the build (wasm-torch-variants.mjs).

import { chooseVariant, defaultThreads, engineFeatures, MAX_THREADS, parseVariants } from "./wasm-torch-variants.mjs";
import { canBlock, checkThreaded, heapBase, layout, startHelpers } from "./wasm-torch-pool.mjs";

export const FORMAT = "wasm-torch/1";
const PAGE = 65536;
const IS_NODE = typeof process !== "undefined" && !!process.versions?.node && typeof window === "undefined";

// ---- errors (same names as wasm_torch/errors.py) ------------------------------------------------
export class WasmTorchError extends Error {
  constructor(message) {
    super(message);
    this.name = new.target.name;
  }
}
export class ArtifactError extends WasmTorchError {}
export class IntegrityError extends WasmTorchError {}
export class InputError extends WasmTorchError {}
export class MemoryLimitError extends WasmTorchError {}
export class TrapError extends WasmTorchError {}
export class UnsupportedError extends WasmTorchError {}
export class ThreadsError extends WasmTorchError {}

// ---- dtypes ------------------------------------------------------------------------------------
/** numpy dtype name -> typed array used for its memory view */
export const DTYPES = {
  float32: Float32Array,
  int64: BigInt64Array,
  int32: Int32Array,
  uint8: Uint8Array,
  int8: Int8Array,
  bool: Uint8Array,
};
// What an input of each dtype accepts (numpy's same-kind or safe casts, as the Python runtime does).
const ACCEPTS = {
  float32: ["Float32Array", "Float64Array", "Int8Array", "Uint8Array", "Int16Array", "Uint16Array"],
  int64: ["BigInt64Array", "Int32Array", "Int16Array", "Int8Array", "Uint32Array", "Uint16Array", "Uint8Array"],
  int32: ["Int32Array", "BigInt64Array", "Int16Array", "Int8Array", "Uint16Array", "Uint8Array"],
  uint8: ["Uint8Array", "Uint8ClampedArray"],
  int8: ["Int8Array"],
  bool: ["Uint8Array"],
};
const typeName = (x) => (ArrayBuffer.isView(x) ? x.constructor.name : Array.isArray(x) ? "Array" : typeof x);

// ---- dimension expressions ("seq", "(seq * 12)", "max(a, b)"): a tiny parser, never eval -------
/** @param {number|string} expr @param {Record<string, number>} syms @returns {number} */
export function evalDim(expr, syms) {
  if (typeof expr === "number") return expr;
  const toks = String(expr).match(/\s*(\d+|[A-Za-z_]\w*|\/\/|[-+*%(),])/gy);
  if (!toks || toks.join("").replace(/\s/g, "") !== String(expr).replace(/\s/g, "")) {
    throw new ArtifactError(`bad dimension expression ${JSON.stringify(expr)} in manifest`);
  }
  const t = toks.map((s) => s.trim());
  let i = 0;
  const bad = () => new ArtifactError(`bad dimension expression ${JSON.stringify(expr)} in manifest`);
  const eat = (s) => (t[i] === s ? (i++, true) : false);
  const fdiv = (a, b) => Math.floor(a / b);
  const fmod = (a, b) => a - b * Math.floor(a / b);
  const sum = () => {
    let v = prod();
    for (;;) {
      if (eat("+")) v += prod();
      else if (eat("-")) v -= prod();
      else return v;
    }
  };
  const prod = () => {
    let v = unary();
    for (;;) {
      if (eat("*")) v *= unary();
      else if (eat("//")) v = fdiv(v, unary());
      else if (eat("%")) v = fmod(v, unary());
      else return v;
    }
  };
  const unary = () => (eat("-") ? -unary() : atom());
  const atom = () => {
    const s = t[i++];
    if (s === undefined) throw bad();
    if (/^\d+$/.test(s)) return Number(s);
    if (s === "(") {
      const v = sum();
      if (!eat(")")) throw bad();
      return v;
    }
    if ((s === "max" || s === "min") && eat("(")) {
      const vals = [sum()];
      while (eat(",")) vals.push(sum());
      if (!eat(")")) throw bad();
      return s === "max" ? Math.max(...vals) : Math.min(...vals);
    }
    if (s in syms) return syms[s];
    throw bad();
  };
  const v = sum();
  if (i !== t.length) throw bad();
  return v;
}

// ---- environment -------------------------------------------------------------------------------
const SIMD_PROBE = new Uint8Array([
  0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 123, 3, 2, 1, 0, 10, 10, 1, 8, 0, 65, 0, 253, 15, 253, 98, 11,
]);
/** True when this engine supports WebAssembly SIMD128 (needed by every wasm-torch module). */
export function simdSupported() {
  try {
    return typeof WebAssembly === "object" && WebAssembly.validate(SIMD_PROBE);
  } catch {
    return false;
  }
}

async function subtle() {
  if (globalThis.crypto?.subtle) return globalThis.crypto.subtle;
  if (IS_NODE) return (await import("node:crypto")).webcrypto.subtle;
  throw new UnsupportedError(
    "crypto.subtle is unavailable (pages served over plain http from a non-localhost address are not a " +
      "secure context): serve the site over https or from localhost, or pass {verify: false}",
  );
}

/** @param {ArrayBuffer|Uint8Array} bytes @returns {Promise<string>} hex sha256 */
export async function sha256(bytes) {
  const d = new Uint8Array(await (await subtle()).digest("SHA-256", bytes));
  return Array.from(d, (b) => b.toString(16).padStart(2, "0")).join("");
}

const isUrl = (s) => /^[a-z][a-z0-9+.-]*:/i.test(s) && !/^[a-z]:[\\/]/i.test(s); // not "C:\"

/** Resolve the artifact folder into a base (URL string, or path in Node) ending with a separator. */
function baseOf(src) {
  let s = src instanceof URL ? src.href : String(src);
  if (IS_NODE && !isUrl(s)) return { node: true, base: s.endsWith("/") ? s : s + "/" };
  if (IS_NODE && s.startsWith("file:")) {
    return { node: true, base: decodeURIComponent(new URL(s).pathname).replace(/\/?$/, "/") };
  }
  if (!s.endsWith("/")) s += "/";
  const here = globalThis.location?.href;
  return { node: false, base: here ? new URL(s, here).href : s };
}

/** Fetch one artifact file: a Response in browsers, the bytes in Node. */
async function open(loc, name, fetchImpl) {
  if (loc.node) {
    const fs = await import("node:fs/promises");
    try {
      const buf = await fs.readFile(loc.base + name);
      return { bytes: new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength) };
    } catch (e) {
      if (e.code === "ENOENT") throw new ArtifactError(`${loc.base}${name} is missing: the artifact is incomplete`);
      throw new ArtifactError(`${loc.base}${name} cannot be read: ${e.message}`);
    }
  }
  const url = loc.base + name;
  let r;
  try {
    r = await fetchImpl(url);
  } catch (e) {
    throw new ArtifactError(`${url} could not be fetched: ${e.message}`);
  }
  if (!r.ok) throw new ArtifactError(`${url} could not be fetched: HTTP ${r.status} ${r.statusText}`.trim());
  return { response: r };
}

function checkManifest(raw, where) {
  if (!raw || typeof raw !== "object") throw new ArtifactError(`${where} is not a JSON object; recompile the model`);
  if (raw.format !== FORMAT) {
    throw new ArtifactError(`${where}: format ${JSON.stringify(raw.format)}, this runtime reads "${FORMAT}"; recompile`);
  }
  for (const k of ["name", "entry", "inputs", "outputs", "memory", "files"]) {
    if (!(k in raw)) throw new ArtifactError(`${where}: missing field "${k}"; recompile the model`);
  }
  for (const s of [...raw.inputs, ...raw.outputs]) {
    if (!(s.dtype in DTYPES)) throw new ArtifactError(`${where}: tensor "${s.name}" has unsupported dtype ${s.dtype}`);
  }
  return raw;
}

async function verify(bytes, entry, where) {
  if (!entry) return;
  if (bytes.byteLength !== entry.bytes || (await sha256(bytes)) !== entry.sha256) {
    throw new IntegrityError(
      `${where} does not match its sha256 in manifest.json: the file is corrupt or was tampered with. ` +
        "Recompile the model or restore the original file.",
    );
  }
}

/**
 * Download (or read) and check an artifact without instantiating it: what a Web Worker needs.
 * @param {string|URL} src folder holding manifest.json, model.wasm, weights.bin
 * @param {{verify?: boolean, fetch?: typeof fetch}} [opts]
 */
export async function fetchArtifact(src, opts = {}) {
  const t0 = performance.now();
  if (!simdSupported()) {
    throw new UnsupportedError(
      "this JavaScript engine lacks WebAssembly SIMD128, which wasm-torch modules need " +
        "(Chrome/Edge 91+, Firefox 89+, Safari 16.4+, Node 16.4+)",
    );
  }
  const doVerify = opts.verify !== false;
  const fetchImpl = opts.fetch ?? globalThis.fetch?.bind(globalThis);
  const loc = baseOf(src);
  const bytes = { manifest: 0, wasm: 0, weights: 0 };
  const mf = await open(loc, "manifest.json", fetchImpl);
  const mtext = mf.bytes ? new TextDecoder().decode(mf.bytes) : await mf.response.text();
  bytes.manifest = mtext.length;
  let raw;
  try {
    raw = JSON.parse(mtext);
  } catch (e) {
    throw new ArtifactError(`${loc.base}manifest.json is not valid JSON (${e.message}); recompile the model`);
  }
  const manifest = checkManifest(raw, `${loc.base}manifest.json`);
  const files = manifest.files ?? {};
  const choice = await chooseBuild(manifest, loc.base, opts);
  const file = choice.spec.file;
  let heap = null;
  const keepHeap = (b) => {
    if (choice.spec.threads) heap = heapBase(b, (why) => new ArtifactError(`${loc.base}${file}: ${why}; recompile the model`));
  };

  // the chosen build (model.wasm unless a variant was chosen): streaming compile in browsers,
  // hashing the same bytes in parallel.
  const wasmP = (async () => {
    const f = await open(loc, file, fetchImpl);
    if (f.bytes) {
      await verify(f.bytes, doVerify && files[file], loc.base + file);
      bytes.wasm = f.bytes.byteLength;
      keepHeap(f.bytes);
      return compile(() => WebAssembly.compile(f.bytes), loc.base + file);
    }
    const r = f.response;
    const streaming = typeof WebAssembly.compileStreaming === "function" &&
      (r.headers.get("content-type") || "").startsWith("application/wasm");
    if (!streaming) {
      const b = new Uint8Array(await r.arrayBuffer());
      bytes.wasm = b.byteLength;
      await verify(b, doVerify && files[file], loc.base + file);
      keepHeap(b);
      return compile(() => WebAssembly.compile(b), loc.base + file);
    }
    const copy = r.clone();
    const [mod, b] = await Promise.all([
      compile(() => WebAssembly.compileStreaming(r), loc.base + file),
      copy.arrayBuffer(),
    ]);
    bytes.wasm = b.byteLength;
    await verify(b, doVerify && files[file], loc.base + file);
    keepHeap(b);
    return mod;
  })();
  const weightsP = (async () => {
    const f = await open(loc, "weights.bin", fetchImpl);
    const b = f.bytes ?? new Uint8Array(await f.response.arrayBuffer());
    bytes.weights = b.byteLength;
    await verify(b, doVerify && files["weights.bin"], loc.base + "weights.bin");
    return b;
  })();
  const [module, weights] = await Promise.all([wasmP, weightsP]);
  return { manifest, module, weights, base: loc.base, bytes, fetchMs: performance.now() - t0,
    variant: choice.spec, threads: choice.threads, heapBase: heap };
}

async function compile(fn, where) {
  try {
    return await fn();
  } catch (e) {
    throw new ArtifactError(`${where} is not a valid WebAssembly module: ${e.message}`);
  }
}

/** The build and thread count for opts.threads / opts.variant; warns loudly when threads fall back to one. */
async function chooseBuild(manifest, base, opts) {
  const asked = opts.threads;
  if (asked != null && (!Number.isInteger(asked) || asked < 1 || asked > MAX_THREADS)) {
    throw new ThreadsError(`threads=${asked}: expected an integer from 1 to ${MAX_THREADS} (or leave it out: the cores)`);
  }
  const threads = asked ?? (await defaultThreads());
  const variant = opts.variant ?? "auto";
  if (typeof variant !== "string") throw new ThreadsError(`variant must be a build name, "auto" or "simd128"`);
  const specs = parseVariants(manifest, `${base}manifest.json`, (m) => new ArtifactError(m));
  const choice = chooseVariant(specs, threads, variant, engineFeatures(), base, (m) => new ThreadsError(m));
  if (choice.fallback) {
    console.warn(
      `%cwasm-torch: running "${manifest.name}" on ONE thread, not ${threads}: ${choice.fallback}. ` +
        "For intra-op threads serve the page with the headers 'Cross-Origin-Opener-Policy: same-origin' and " +
        "'Cross-Origin-Embedder-Policy: require-corp' (see serve.py / _headers next to index.html).",
      "font-weight:bold;font-size:1.2em;color:#b00",
    );
  }
  return choice;
}

const align = (n, a = 64) => Math.ceil(n / a) * a;

// ---- the loaded model --------------------------------------------------------------------------
export class WasmTorch {
  /**
   * Load an artifact folder: read the manifest, verify the sha256 of model.wasm and weights.bin,
   * compile, instantiate, grow memory once and copy the weights in.
   * @param {string|URL} src @param {{verify?: boolean, fetch?: typeof fetch, memoryLimit?: number}} [opts]
   */
  static async load(src, opts = {}) {
    const t0 = performance.now();
    const parts = await fetchArtifact(src, opts);
    const m = await WasmTorch.fromParts(parts, opts);
    m.loadMs = performance.now() - t0;
    return m;
  }

  /** Instantiate from what fetchArtifact returned (used by the Web Worker). */
  static async fromParts(parts, opts = {}) {
    const m = new WasmTorch(parts.manifest, parts.base ?? "");
    m.variant = parts.variant?.name ?? "simd128";
    if (parts.variant?.threads) await m.#instantiateThreaded(parts, opts);
    else await m.#instantiate(parts.module, parts.weights, opts.memoryLimit);
    m.bytes = parts.bytes ?? { manifest: 0, wasm: 0, weights: parts.weights.byteLength };
    return m;
  }

  #fn;
  #mem;
  #pool = null;
  #sp;
  #sp0;
  #syms;
  #calls = 0;
  #totalMs = 0;
  #lastMs = 0;

  constructor(manifest, base) {
    this.manifest = manifest;
    this.name = manifest.name;
    this.base = base;
    this.inputs = manifest.inputs;
    this.outputs = manifest.outputs;
    this.symbols = manifest.symbols ?? [];
    this.loadMs = 0;
    this.threads = 1;
    this.variant = "simd128";
  }

  /** A threaded build: one shared memory, this thread the leader, threads - 1 helper workers. */
  async #instantiateThreaded(parts, opts) {
    const m = this.manifest, spec = parts.variant, where = this.base + spec.file;
    const bad = (why) => new ArtifactError(`${where}: ${why}; recompile the model`);
    checkThreaded(parts.module, m.entry, bad);
    const wb = Number(m.memory.weights_bytes);
    if (parts.weights.byteLength !== wb) throw bad(`weights.bin has ${parts.weights.byteLength} bytes, manifest says ${wb}`);
    const threads = parts.threads ?? 1;
    const lay = layout(parts.heapBase, wb, Number(m.memory.arena_bytes), threads, spec.stack_bytes);
    if (opts.memoryLimit != null && opts.memoryLimit < lay.bytes) {
      throw new MemoryLimitError(
        `model "${this.name}" on ${threads} thread(s) needs ${lay.bytes} bytes of memory (weights, arena, ` +
          `${threads - 1} helper stacks); memoryLimit=${opts.memoryLimit} is below that`,
      );
    }
    let memory, ex;
    try {
      memory = new WebAssembly.Memory({ initial: lay.pages, maximum: lay.pages, shared: true });
      ex = (await WebAssembly.instantiate(parts.module, { env: { memory } })).exports; // initialises its data once
    } catch (e) {
      throw new ArtifactError(`${where} cannot be instantiated: ${e.message}`);
    }
    if (Number(ex.__heap_base.value) !== parts.heapBase) throw bad("__heap_base is not the constant its global declares");
    this.W = lay.W;
    this.A = lay.A;
    this.memoryBytes = lay.bytes;
    new Uint8Array(memory.buffer, this.W, wb).set(parts.weights instanceof Uint8Array ? parts.weights : new Uint8Array(parts.weights));
    this.#fn = ex[m.entry];
    this.#mem = memory;
    this.#sp = ex.__stack_pointer;
    this.#sp0 = this.#sp.value;
    this.#syms = this.symbols.map((s) => s.name);
    const ctl = (op, arg) => ex.wt_pool_ctl(op, arg);
    this.#pool = await startHelpers({ module: parts.module, memory, ctl, threads, stacks: lay.stacks,
      stackBytes: spec.stack_bytes, name: this.name, helperUrl: opts.helperUrl });
    this.threads = threads;
  }

  /** Chunks each thread ran and parallel steps since the last clear: proof that more than one thread worked. */
  threadStats(clear = false) {
    return this.#pool ? this.#pool.stats(clear) : { threads: 1, chunks: [], jobs: 0 };
  }

  /** Stop the helper threads (a threaded build); the model cannot run afterwards. */
  close() {
    this.#pool?.close();
    this.#closed = true;
  }

  #closed = false;

  async #instantiate(module, weights, memoryLimit) {
    const m = this.manifest;
    let inst;
    try {
      inst = await WebAssembly.instantiate(module, {});
    } catch (e) {
      throw new ArtifactError(`${this.base}model.wasm cannot be instantiated: ${e.message}`);
    }
    const ex = inst.exports;
    const fn = ex[m.entry];
    if (!(ex.memory instanceof WebAssembly.Memory) || typeof fn !== "function" || !ex.__heap_base) {
      throw new ArtifactError(`${this.base}model.wasm lacks the exports memory/__heap_base/${m.entry}`);
    }
    const wb = Number(m.memory.weights_bytes);
    if (weights.byteLength !== wb) {
      throw new ArtifactError(`${this.base}weights.bin has ${weights.byteLength} bytes, manifest says ${wb}`);
    }
    this.W = align(Number(ex.__heap_base.value));
    this.A = align(this.W + wb);
    const need = this.A + Number(m.memory.arena_bytes);
    this.memoryBytes = Math.ceil(need / PAGE) * PAGE;
    if (memoryLimit != null && memoryLimit < this.memoryBytes) {
      throw new MemoryLimitError(
        `model "${this.name}" needs ${this.memoryBytes} bytes of linear memory (weights ${wb} + arena ` +
          `${m.memory.arena_bytes}); memoryLimit=${memoryLimit} is below that`,
      );
    }
    const grow = this.memoryBytes / PAGE - ex.memory.buffer.byteLength / PAGE;
    if (grow > 0) {
      try {
        ex.memory.grow(grow);
      } catch (e) {
        throw new MemoryLimitError(`could not grow wasm memory to ${this.memoryBytes} bytes: ${e.message}`);
      }
    }
    new Uint8Array(ex.memory.buffer, this.W, wb).set(
      weights instanceof Uint8Array ? weights : new Uint8Array(weights),
    );
    this.#fn = fn;
    this.#mem = ex.memory;
    // A trap leaves the C stack pointer wherever the trapped function moved it: restore it after.
    this.#sp = ex.__stack_pointer instanceof WebAssembly.Global ? ex.__stack_pointer : null;
    this.#sp0 = this.#sp?.value;
    this.#syms = this.symbols.map((s) => s.name);
  }

  /** Normalise one input to {data, shape}; shape from the value, opts.shapes, or the manifest. */
  #shapeOf(spec, v, given) {
    let data = v;
    let shape = given;
    if (v && !ArrayBuffer.isView(v) && !Array.isArray(v) && typeof v === "object" && "data" in v) {
      data = v.data;
      shape = v.shape ?? shape;
    }
    if (!ArrayBuffer.isView(data) && !Array.isArray(data)) {
      throw new InputError(`${this.name}: input "${spec.name}" must be a typed array, an Array or {data, shape}, got ${typeName(data)}`);
    }
    if (shape == null) {
      // Infer: every axis static, or exactly one non-static axis.
      const st = spec.shape.map((d) => (typeof d === "number" ? d : null));
      const free = st.filter((d) => d === null).length;
      const known = st.reduce((a, d) => a * (d ?? 1), 1);
      if (free === 0) shape = st;
      else if (free === 1 && known > 0 && data.length % known === 0) shape = st.map((d) => d ?? data.length / known);
      else {
        throw new InputError(
          `${this.name}: input "${spec.name}" has shape ${JSON.stringify(spec.shape)}: pass its shape ` +
            `({data, shape} or run(inputs, {shapes: {${spec.name}: [...]}}))`,
        );
      }
    }
    shape = Array.from(shape, Number);
    const n = shape.reduce((a, d) => a * d, 1);
    if (data.length !== n) {
      throw new InputError(
        `${this.name}: input "${spec.name}" has ${data.length} elements but shape ${JSON.stringify(shape)} needs ${n}`,
      );
    }
    return { data, shape };
  }

  #checkDtype(spec, data) {
    if (Array.isArray(data)) return;
    if (!ACCEPTS[spec.dtype].includes(data.constructor.name)) {
      const want = DTYPES[spec.dtype].name;
      throw new InputError(
        `${this.name}: input "${spec.name}" expects dtype ${spec.dtype} (${want}), got ${typeName(data)}`,
      );
    }
  }

  #bind(arrays) {
    const syms = {};
    const idx = new Set(this.#syms);
    this.inputs.forEach((spec, k) => {
      const shape = arrays[k].shape;
      if (shape.length !== spec.shape.length) {
        throw new InputError(
          `${this.name}: input "${spec.name}" expects rank ${spec.shape.length} shape ${JSON.stringify(spec.shape)}, ` +
            `got shape ${JSON.stringify(shape)}`,
        );
      }
      spec.shape.forEach((want, axis) => {
        const got = shape[axis];
        if (typeof want === "number") {
          if (want !== got) {
            throw new InputError(
              `${this.name}: input "${spec.name}" expects shape ${JSON.stringify(spec.shape)}, got ` +
                `${JSON.stringify(shape)} (axis ${axis}: ${got} != ${want})`,
            );
          }
        } else if (idx.has(want)) {
          if (want in syms && syms[want] !== got) {
            throw new InputError(
              `${this.name}: dimension "${want}" is ${syms[want]} in one input and ${got} in "${spec.name}" ` +
                `(axis ${axis}); they must agree`,
            );
          }
          syms[want] = got;
        }
      });
    });
    for (const s of this.symbols) {
      const v = syms[s.name];
      if (v === undefined || v < s.min || v > s.max) {
        throw new InputError(
          `${this.name}: dimension "${s.name}"=${v} is outside the compiled range [${s.min}, ${s.max}]; ` +
            "recompile with a larger Dim max if you need it",
        );
      }
    }
    this.inputs.forEach((spec, k) => {
      spec.shape.forEach((want, axis) => {
        const got = arrays[k].shape[axis];
        if (typeof want === "string" && !(want in syms) && evalDim(want, syms) !== got) {
          throw new InputError(`${this.name}: input "${spec.name}" axis size ${got} != ${want}`);
        }
      });
    });
    return syms;
  }

  /**
   * Run the model. inputs: {name: TypedArray | Array | {data, shape}}; shapes: {name: number[]}.
   * Resolves to {outputName: {data, shape, dtype}}. With copy:false, data are views of wasm
   * memory, valid until the next call.
   * @param {Record<string, any>} inputs @param {{shapes?: Record<string, number[]>, copy?: boolean}} [opts]
   */
  async run(inputs, opts = {}) {
    return this.runSync(inputs, opts);
  }

  /** The synchronous core of run() (blocks the calling thread for the duration of the call). */
  runSync(inputs, opts = {}) {
    if (!inputs || typeof inputs !== "object") throw new InputError(`${this.name}: run() takes an object of named inputs`);
    const names = this.inputs.map((s) => s.name);
    const unknown = Object.keys(inputs).filter((n) => !names.includes(n)).sort();
    const missing = names.filter((n) => !(n in inputs));
    if (unknown.length || missing.length) {
      throw new InputError(
        `${this.name}: inputs are ${JSON.stringify(names)}; missing ${JSON.stringify(missing)}, unexpected ${JSON.stringify(unknown)}`,
      );
    }
    const shapes = opts.shapes ?? {};
    const arrays = this.inputs.map((spec) => {
      const a = this.#shapeOf(spec, inputs[spec.name], shapes[spec.name]);
      this.#checkDtype(spec, a.data);
      return a;
    });
    const syms = this.#bind(arrays);
    const buf = this.#mem.buffer;
    this.inputs.forEach((spec, k) => {
      const { data } = arrays[k];
      const view = new DTYPES[spec.dtype](buf, this.A + spec.offset, data.length);
      writeInto(view, data, spec.dtype);
    });
    const args = [this.W, this.A, ...this.#syms.map((s) => syms[s])];
    if (this.#closed) throw new ThreadsError(`${this.name}: the model was closed`);
    const t0 = performance.now();
    try {
      this.#fn(...args);
    } catch (e) {
      if (this.#sp) this.#sp.value = this.#sp0;
      if (this.#pool && !this.#pool.recover()) {
        this.close();
        throw new ThreadsError(`${this.name}: helper threads did not finish after a trap; the model was closed`);
      }
      const unreachable = /unreachable/i.test(String(e?.message));
      throw new TrapError(
        `${this.name}: wasm trap${unreachable ? " (an index input is out of range)" : ""}: ${e?.message ?? e}`,
      );
    }
    const dt = performance.now() - t0;
    this.#calls++;
    this.#totalMs += dt;
    this.#lastMs = dt;
    const out = {};
    for (const spec of this.outputs) {
      const shape = spec.shape.map((d) => evalDim(d, syms));
      const n = shape.reduce((a, d) => a * d, 1);
      const view = new DTYPES[spec.dtype](this.#mem.buffer, this.A + spec.offset, n);
      out[spec.name] = { data: opts.copy === false ? view : view.slice(), shape, dtype: spec.dtype };
    }
    return out;
  }

  /** calls, total/mean/last ms, memory and load figures, bytes read per file. */
  stats() {
    return {
      calls: this.#calls,
      totalMs: this.#totalMs,
      lastMs: this.#lastMs,
      meanMs: this.#calls ? this.#totalMs / this.#calls : 0,
      memoryBytes: this.memoryBytes,
      weightsBytes: Number(this.manifest.memory.weights_bytes),
      arenaBytes: Number(this.manifest.memory.arena_bytes),
      loadMs: this.loadMs,
      bytes: this.bytes,
      variant: this.variant,
      threads: this.threads,
    };
  }

  toString() {
    const ins = this.inputs.map((s) => `${s.name}: ${s.dtype}${JSON.stringify(s.shape)}`).join(", ");
    return `WasmTorch("${this.name}", inputs=[${ins}])`;
  }
}

function writeInto(view, data, dtype) {
  if (dtype === "bool") {
    for (let i = 0; i < data.length; i++) view[i] = data[i] ? 1 : 0;
  } else if (view instanceof BigInt64Array) {
    if (data instanceof BigInt64Array) view.set(data);
    else for (let i = 0; i < data.length; i++) view[i] = BigInt(data[i]);
  } else if (data instanceof BigInt64Array || (Array.isArray(data) && typeof data[0] === "bigint")) {
    for (let i = 0; i < data.length; i++) view[i] = Number(data[i]);
  } else {
    view.set(data);
  }
}

/** Shorthand for WasmTorch.load. */
export const load = (src, opts) => WasmTorch.load(src, opts);
export default WasmTorch;

// ---- worker mode -------------------------------------------------------------------------------
const ERRORS = { WasmTorchError, ArtifactError, IntegrityError, InputError, MemoryLimitError, TrapError, UnsupportedError,
  ThreadsError };
const revive = (e) => new (ERRORS[e.name] ?? WasmTorchError)(e.message);

/** A model running in one or more Web Workers: same run()/stats() API, the page never blocks. */
export class WorkerModel {
  #workers;
  #idle;
  #queue = [];
  #pending = new Map();
  #next = 1;

  constructor(manifest, workers, info) {
    this.manifest = manifest;
    this.name = manifest.name;
    this.inputs = manifest.inputs;
    this.outputs = manifest.outputs;
    this.#workers = workers;
    this.#idle = [...workers];
    Object.assign(this, info);
  }

  /** Number of workers (independent instances: parallel runs). Each runs `threads` intra-op threads. */
  get workers() {
    return this.#workers.length;
  }

  static _call(worker, pending, id, msg, transfer = []) {
    return new Promise((resolve, reject) => {
      pending.set(id, { resolve, reject, worker });
      worker.postMessage({ id, ...msg }, transfer);
    });
  }

  _attach(worker) {
    worker.onmessage = (ev) => {
      const p = this.#pending.get(ev.data.id);
      if (!p) return;
      this.#pending.delete(ev.data.id);
      if (ev.data.error) p.reject(revive(ev.data.error));
      else p.resolve(ev.data.result);
    };
    worker.onerror = (ev) => {
      ev.preventDefault?.();
      const err = new WasmTorchError(`wasm-torch worker failed: ${ev.message ?? "script error"}`);
      for (const [id, p] of this.#pending) {
        if (p.worker === worker) {
          this.#pending.delete(id);
          p.reject(err);
        }
      }
    };
  }

  _post(worker, msg, transfer) {
    const id = this.#next++;
    return WorkerModel._call(worker, this.#pending, id, msg, transfer);
  }

  /** Same contract as WasmTorch.run; runs on the first idle worker (queued when all are busy). */
  async run(inputs, opts = {}) {
    const worker = this.#idle.pop() ?? (await new Promise((r) => this.#queue.push(r)));
    try {
      return await this._post(worker, { op: "run", inputs, opts: { shapes: opts.shapes } });
    } finally {
      const waiter = this.#queue.shift();
      if (waiter) waiter(worker);
      else this.#idle.push(worker);
    }
  }

  /** Stats of every worker. */
  stats() {
    return Promise.all(this.#workers.map((w) => this._post(w, { op: "stats" })));
  }

  /** Per worker: the chunks each of its threads ran and its parallel steps (see WasmTorch.threadStats). */
  threadStats(clear = false) {
    return Promise.all(this.#workers.map((w) => this._post(w, { op: "threadStats", clear })));
  }

  terminate() {
    for (const w of this.#workers) w.terminate();
  }
}

/**
 * Load an artifact and run it in Web Workers, so the page never blocks. The page downloads and
 * verifies the files once (fetch, streaming compile and sha256 are all asynchronous) and hands the
 * compiled module and the weights to the workers. Two ways to use several cores:
 *  - `threads` (default: the cores, at most 8): ONE worker runs the model with intra-op threads
 *    (helper workers it starts itself, over one shared memory; weights once). Lowest latency.
 *  - `workers: n` (with threads 1): n independent single-threaded instances; parallel runs, each at
 *    one-core latency. Most throughput for many concurrent requests.
 * Both need a cross-origin isolated page (SharedArrayBuffer); elsewhere one worker runs on one
 * thread and a loud console warning says why. Without Worker (Node), runs in-thread.
 * @param {string|URL} src
 * @param {{workers?: number, threads?: number, variant?: string, workerUrl?: string|URL, verify?: boolean, fetch?: typeof fetch}} [opts]
 */
export async function loadInWorker(src, opts = {}) {
  const t0 = performance.now();
  if (typeof Worker === "undefined") {
    console.warn("wasm-torch: Web Workers are unavailable here; running the model on this thread.");
    return WasmTorch.load(src, opts);
  }
  const isolated = globalThis.crossOriginIsolated === true;
  let n = Math.max(1, opts.workers ?? 1);
  if (n > 1 && (opts.threads ?? 1) > 1) {
    throw new ThreadsError("choose workers (several single-threaded instances) or threads (one instance, intra-op threads)");
  }
  if (n > 1 && !isolated) {
    console.warn(
      "%cwasm-torch: this page is NOT cross-origin isolated, so SharedArrayBuffer is off and the model runs " +
        "in ONE worker thread (parallel runs queue). Serve the page with the headers " +
        "'Cross-Origin-Opener-Policy: same-origin' and 'Cross-Origin-Embedder-Policy: require-corp' " +
        "(see serve.py / _headers next to index.html) to run several in parallel.",
      "font-weight:bold;font-size:1.2em;color:#b00",
    );
    n = 1;
  }
  const parts = await fetchArtifact(src, { ...opts, threads: n > 1 ? 1 : opts.threads });
  let weights = parts.weights;
  const shared = isolated && n > 1 && typeof SharedArrayBuffer !== "undefined";
  if (shared) {
    const sab = new SharedArrayBuffer(weights.byteLength);
    new Uint8Array(sab).set(weights);
    weights = new Uint8Array(sab);
  }
  const url = opts.workerUrl ?? new URL("./wasm-torch-worker.mjs", import.meta.url);
  const workers = Array.from({ length: n }, () => new Worker(url, { type: "module", name: `wasm-torch-${parts.manifest.name}` }));
  const model = new WorkerModel(parts.manifest, workers, { bytes: parts.bytes, shared, isolated });
  workers.forEach((w) => model._attach(w));
  const msg = () => ({ op: "init", parts: { ...parts, weights }, opts: { memoryLimit: opts.memoryLimit } });
  try {
    const infos = await Promise.all(
      workers.map((w, i) => model._post(w, msg(), !shared && i === n - 1 ? [weights.buffer] : [])),
    );
    model.memoryBytes = infos[0].memoryBytes;
    model.threads = infos[0].threads;
    model.variant = infos[0].variant;
    model.workerResources = infos[0].resources; // [url, bytes] the worker itself fetched (its scripts)
  } catch (e) {
    model.terminate();
    throw e;
  }
  model.loadMs = performance.now() - t0;
  return model;
}
WasmTorch.loadInWorker = loadInWorker;
