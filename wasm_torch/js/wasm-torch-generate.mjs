// wasm-torch-generate.mjs: text generation with a generator artifact (wasm_torch.compile_generator) in Node,
// browsers and Web Workers. One WebAssembly instance holds the weights and the KV cache in its linear memory;
// the host keeps only how many cache positions are valid, runs the one entry point on the new tokens (the
// prompt for prefill, one token per decode step) and chooses the next token from the logits.
//
//   import { Generator } from "wasm-torch/generate";
//   const gen = await Generator.load("gpt2-gen/");
//   const ids = await gen.generate([464, 2068], { maxNewTokens: 64, onToken: (t) => console.log(t) });
//   const w = await loadGeneratorInWorker("gpt2-gen/");   // browsers: generation in a Web Worker, tokens streamed back
//
// Sampling has transformers' semantics and order (as wasm_torch/generate/sampling.py): repetition penalty,
// then with doSample temperature, top-k, top-p, one draw; greedy takes the first largest logit. Draws use a
// seeded xoshiro128** stream: a seed gives the same tokens on every run and host (the logits are bit-identical).
import { ArtifactError, InputError, WasmTorch, WasmTorchError, fetchArtifact } from "./wasm-torch.mjs";

export const GENERATOR_FORMAT = "wasm-torch-generator/1";
export class ContextOverflowError extends InputError {}

const isInt = (v) => Number.isInteger(v);

/** The manifest's generator section, checked against the rest of the manifest (as artifact/generation.py). */
export function generatorSpec(manifest, where = "manifest.json") {
  const g = manifest?.generator;
  const bad = (why) => new ArtifactError(`${where}: ${why}; recompile with wasm_torch.compile_generator`);
  if (!g || typeof g !== "object") throw bad("this artifact is not a text generator (no generator section)");
  if (g.format !== GENERATOR_FORMAT) throw bad(`generator.format is ${JSON.stringify(g.format)}, not ${GENERATOR_FORMAT}`);
  if (!isInt(g.max_context) || g.max_context < 1 || !isInt(g.vocab_size) || g.vocab_size < 1) {
    throw bad("generator.max_context and vocab_size must be positive integers");
  }
  const input = (n) => manifest.inputs.find((t) => t.name === n);
  const ids = input(g.input_ids), past = input(g.past);
  const logits = manifest.outputs.find((t) => t.name === g.logits);
  if (!ids || ids.dtype !== "int64" || ids.shape.length !== 2) throw bad("generator.input_ids must name an int64 [1, seq] input");
  if (!past || past.dtype !== "int64" || past.shape.length !== 1 || past.shape[0] !== 1) throw bad("generator.past must name an int64 [1] input");
  if (manifest.inputs.length !== 2) throw bad("a generator has exactly the inputs input_ids and past");
  if (!logits || logits.dtype !== "float32" || logits.shape[0] !== 1 || logits.shape[1] !== g.vocab_size) {
    throw bad(`generator.logits must name a float32 [1, ${g.vocab_size}] output`);
  }
  const eos = g.eos_token_ids ?? [];
  if (!Array.isArray(eos) || eos.length > 64 || !eos.every((t) => isInt(t) && t >= 0 && t < g.vocab_size)) {
    throw bad("generator.eos_token_ids must be token ids");
  }
  if (!Array.isArray(manifest.state) || manifest.state.length === 0) throw bad("a generator lists its KV cache as state");
  return { maxContext: g.max_context, vocabSize: g.vocab_size, inputIds: g.input_ids, past: g.past, logits: g.logits,
    eosTokenIds: eos, bosTokenId: g.bos_token_id ?? null, tokenizer: g.tokenizer ?? null, model: g.model ?? {} };
}

/** Token ids as a plain array of integers in [0, vocabSize); anything else is an InputError naming it. */
export function tokenIds(ids, vocabSize, what = "prompt") {
  if (typeof ids === "string") throw new InputError(`${what}: token ids expected, got text (tokenize it first)`);
  if (!ids || typeof ids[Symbol.iterator] !== "function") throw new InputError(`${what}: token ids must be an array`);
  const out = [];
  for (const v of ids) {
    const n = typeof v === "bigint" ? Number(v) : v;
    if (typeof n !== "number" || !Number.isInteger(n) || n < 0 || n >= vocabSize) {
      throw new InputError(`${what}: token id ${String(v)} at position ${out.length} is outside the vocabulary [0, ${vocabSize})`);
    }
    out.push(n);
  }
  return out;
}

// ---- sampling --------------------------------------------------------------------------------------
/** xoshiro128** seeded through splitmix32: uniform doubles in [0, 1) with 53 random bits. */
export function rng(seed) {
  let s = (seed ?? Math.floor(Math.random() * 2 ** 32)) >>> 0;
  const split = () => {
    s = (s + 0x9e3779b9) >>> 0;
    let z = s;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
    return (z ^ (z >>> 16)) >>> 0;
  };
  const st = [split(), split(), split(), split()];
  const next = () => {
    const x = Math.imul(st[1], 5);
    const r = Math.imul((x << 7) | (x >>> 25), 9) >>> 0;
    const t = (st[1] << 9) >>> 0;
    st[2] ^= st[0]; st[3] ^= st[1]; st[1] ^= st[2]; st[0] ^= st[3];
    st[2] = (st[2] ^ t) >>> 0;
    st[3] = ((st[3] << 11) | (st[3] >>> 21)) >>> 0;
    return r;
  };
  return () => ((next() >>> 5) * 67108864 + (next() >>> 6)) / 9007199254740992;
}

/** Check sampling options by name; returns them with defaults filled in. */
export function samplingOptions(o = {}) {
  const known = ["doSample", "temperature", "topK", "topP", "repetitionPenalty", "seed"];
  const unknown = Object.keys(o).filter((k) => !known.includes(k));
  if (unknown.length) throw new InputError(`unknown sampling options ${JSON.stringify(unknown)}; known: ${JSON.stringify(known)}`);
  const s = { doSample: false, temperature: 1, topK: 0, topP: 1, repetitionPenalty: 1, seed: null, ...o };
  const bad = (k, why) => new InputError(`sampling ${k}=${JSON.stringify(s[k])}: ${why}`);
  if (typeof s.doSample !== "boolean") throw bad("doSample", "expected true or false");
  for (const k of ["temperature", "repetitionPenalty"]) {
    if (typeof s[k] !== "number" || !Number.isFinite(s[k]) || !(s[k] > 0)) throw bad(k, "expected a finite number > 0");
  }
  if (!Number.isInteger(s.topK) || s.topK < 0) throw bad("topK", "expected an integer >= 0 (0 turns it off)");
  if (typeof s.topP !== "number" || !(s.topP > 0 && s.topP <= 1)) throw bad("topP", "expected a number in (0, 1]");
  if (s.seed !== null && (!Number.isInteger(s.seed) || s.seed < 0 || s.seed >= 2 ** 32)) throw bad("seed", "expected an integer in [0, 2**32) or null");
  return s;
}

/** The logits after repetition penalty and (when sampling) temperature, top-k, top-p; removed = -Infinity. */
export function processLogits(logits, context, s) {
  const x = Float64Array.from(logits);
  if (s.repetitionPenalty !== 1) {
    for (const t of new Set(context)) x[t] = x[t] < 0 ? x[t] * s.repetitionPenalty : x[t] / s.repetitionPenalty;
  }
  if (!s.doSample) return x;
  if (s.temperature !== 1) for (let i = 0; i < x.length; i++) x[i] /= s.temperature;
  if (s.topK > 0 && s.topK < x.length) {
    const kth = Float64Array.from(x).sort()[x.length - s.topK];
    for (let i = 0; i < x.length; i++) if (x[i] < kth) x[i] = -Infinity;
  }
  if (s.topP < 1) {
    const order = Array.from(x.keys()).sort((a, b) => x[a] - x[b] || a - b); // ascending, stable
    const p = softmax(order.map((i) => x[i]));
    let cum = 0;
    for (let k = 0; k < order.length - 1; k++) { // the most likely token always stays
      cum += p[k];
      if (cum <= 1 - s.topP) x[order[k]] = -Infinity;
    }
  }
  return x;
}

function softmax(x) {
  let m = -Infinity;
  for (const v of x) if (v > m) m = v;
  const e = Array.from(x, (v) => Math.exp(v - m));
  const sum = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / sum);
}

/** A function (logits, context) -> next token id for these sampling options. */
export function chooser(opts = {}) {
  const s = samplingOptions(opts);
  const u = s.doSample ? rng(s.seed) : null;
  return (logits, context) => {
    const x = processLogits(logits, context, s);
    if (!u) {
      let best = 0;
      for (let i = 1; i < x.length; i++) if (x[i] > x[best]) best = i;
      return best;
    }
    const p = softmax(x);
    const target = u();
    let cum = 0;
    for (let i = 0; i < p.length; i++) {
      cum += p[i];
      if (cum > target && p[i] > 0) return i;
    }
    for (let i = p.length - 1; i >= 0; i--) if (p[i] > 0) return i;
    return 0;
  };
}

// ---- the generator ---------------------------------------------------------------------------------
export class Generator {
  /** Load a generator artifact folder (the options of WasmTorch.load: verify, fetch, memoryLimit, threads, variant). */
  static async load(src, opts = {}) {
    return new Generator(await WasmTorch.load(src, opts));
  }

  /** From what fetchArtifact returned (the Web Worker side). */
  static async fromParts(parts, opts = {}) {
    return new Generator(await WasmTorch.fromParts(parts, opts));
  }

  constructor(model) {
    this.model = model;
    this.name = model.name;
    this.spec = generatorSpec(model.manifest, `${model.base ?? ""}manifest.json`);
    this.length = 0; // valid KV-cache positions
    this.tokens = []; // the ids at those positions
  }

  get maxContext() { return this.spec.maxContext; }
  get vocabSize() { return this.spec.vocabSize; }

  /** Start a new sequence (positions >= length are never read, so nothing is cleared). */
  reset() {
    this.length = 0;
    this.tokens = [];
  }

  /** Run new tokens at positions length..; returns the last one's logits (a Float32Array copy). */
  feed(ids) {
    const t = tokenIds(ids, this.vocabSize, "tokens to feed");
    if (t.length === 0) throw new InputError(`${this.name}: feed needs at least one token`);
    if (this.length + t.length > this.maxContext) {
      throw new ContextOverflowError(
        `${this.name}: ${this.length} tokens in the cache + ${t.length} new = ${this.length + t.length} exceeds ` +
          `the compiled max context of ${this.maxContext}; reset() or compile with a larger max_context`,
      );
    }
    const s = this.spec;
    const out = this.model.runSync({
      [s.inputIds]: { data: BigInt64Array.from(t, BigInt), shape: [1, t.length] },
      [s.past]: { data: BigInt64Array.of(BigInt(this.length)), shape: [1] },
    });
    this.length += t.length;
    this.tokens.push(...t);
    return out[s.logits].data;
  }

  prefill(ids) {
    const t = tokenIds(ids, this.vocabSize);
    if (t.length === 0) throw new InputError(`${this.name}: the prompt is empty (give at least one token, e.g. the BOS id)`);
    this.reset();
    return this.feed(t);
  }

  step(token) {
    return this.feed([token]);
  }

  /** Check the prompt and budget (before anything runs); returns the iterator of new token ids. */
  stream(prompt, opts = {}) {
    const { maxNewTokens = 16, stop = [], stopAtEos = true, ...sampling } = opts;
    const ids = tokenIds(prompt, this.vocabSize);
    if (ids.length === 0) throw new InputError(`${this.name}: the prompt is empty (give at least one token, e.g. the BOS id)`);
    if (!Number.isInteger(maxNewTokens) || maxNewTokens < 0) {
      throw new InputError(`${this.name}: maxNewTokens=${JSON.stringify(maxNewTokens)}: expected an integer >= 0`);
    }
    if (ids.length + maxNewTokens > this.maxContext) {
      throw new ContextOverflowError(
        `${this.name}: the prompt (${ids.length} tokens) + maxNewTokens (${maxNewTokens}) = ${ids.length + maxNewTokens} ` +
          `exceeds the compiled max context of ${this.maxContext}`,
      );
    }
    const choose = chooser(sampling);
    const stops = new Set([...(stopAtEos ? this.spec.eosTokenIds : []), ...tokenIds(stop, this.vocabSize, "stop tokens")]);
    const self = this;
    return (function* () {
      if (maxNewTokens === 0) return;
      let logits = self.prefill(ids);
      for (let k = 0; k < maxNewTokens; k++) {
        const token = choose(logits, self.tokens);
        yield token;
        if (stops.has(token) || k === maxNewTokens - 1) return;
        logits = self.step(token);
      }
    })();
  }

  /**
   * Generate new token ids; opts: maxNewTokens, doSample, temperature, topK, topP, repetitionPenalty, seed,
   * stop (ids), stopAtEos (default true), onToken(token, index) — called as each token is chosen (awaited
   * when it returns a promise, so a page can render between tokens).
   */
  async generate(prompt, opts = {}) {
    const { onToken, ...rest } = opts;
    const out = [];
    for (const token of this.stream(prompt, rest)) {
      out.push(token);
      if (onToken) await onToken(token, out.length - 1);
    }
    return out;
  }

  stats() {
    return { ...this.model.stats(), length: this.length, maxContext: this.maxContext };
  }

  close() {
    this.model.close?.();
  }
}

// ---- in a Web Worker -------------------------------------------------------------------------------
const ERRORS = { ContextOverflowError, InputError, ArtifactError };

/** A generator running in a Web Worker: generate() streams tokens back through onToken; the page never blocks. */
export class WorkerGenerator {
  #worker;
  #pending = new Map();
  #next = 1;

  constructor(worker, info) {
    this.#worker = worker;
    Object.assign(this, info);
    worker.onmessage = (ev) => {
      const { id, token, index, result, error } = ev.data;
      const p = this.#pending.get(id);
      if (!p) return;
      if (token !== undefined) {
        p.onToken?.(token, index);
        return;
      }
      this.#pending.delete(id);
      if (error) p.reject(new (ERRORS[error.name] ?? WasmTorchError)(error.message));
      else p.resolve(result);
    };
    worker.onerror = (ev) => {
      ev.preventDefault?.();
      const err = new WasmTorchError(`wasm-torch generator worker failed: ${ev.message ?? "script error"}`);
      for (const p of this.#pending.values()) p.reject(err);
      this.#pending.clear();
    };
  }

  _post(msg, extra = {}, transfer = []) {
    const id = this.#next++;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject, ...extra });
      this.#worker.postMessage({ id, ...msg }, transfer);
    });
  }

  /** Same options as Generator.generate; onToken runs on this thread as the worker streams tokens. */
  generate(prompt, opts = {}) {
    const { onToken, ...rest } = opts;
    return this._post({ op: "generate", prompt: Array.from(prompt), opts: rest }, { onToken });
  }

  stats() {
    return this._post({ op: "stats" });
  }

  terminate() {
    this.#worker.terminate();
  }
}

/**
 * Load a generator and run it in a Web Worker (browsers; in Node, without Worker, it runs on this thread).
 * The page downloads and verifies the files; the worker instantiates them and generates.
 * @param {string|URL} src @param {{workerUrl?: string|URL, verify?: boolean, threads?: number, variant?: string}} [opts]
 */
export async function loadGeneratorInWorker(src, opts = {}) {
  if (typeof Worker === "undefined") return Generator.load(src, opts);
  const parts = await fetchArtifact(src, opts);
  generatorSpec(parts.manifest, `${parts.base}manifest.json`);
  const url = opts.workerUrl ?? new URL("./wasm-torch-generate-worker.mjs", import.meta.url);
  const worker = new Worker(url, { type: "module", name: `wasm-torch-generate-${parts.manifest.name}` });
  const gen = new WorkerGenerator(worker, { manifest: parts.manifest, name: parts.manifest.name, bytes: parts.bytes });
  try {
    const info = await gen._post({ op: "init", parts, opts: { memoryLimit: opts.memoryLimit } }, {}, [parts.weights.buffer]);
    Object.assign(gen, info);
  } catch (e) {
    gen.terminate();
    throw e;
  }
  return gen;
}
