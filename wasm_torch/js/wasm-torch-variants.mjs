// wasm-torch-variants.mjs: which build of an artifact to run, and on how many threads.
// Mirrors wasm_torch/runtime/variants.py; the builds are described in the manifest's
// compiler.variants (docs/artifact-format.md), every field checked here before use.
//
//   simd128           model.wasm                  every engine with SIMD128
//   simd128-threads   model.threads.wasm          + wasm threads (shared memory, atomics): intra-op threads
//   relaxed           model.relaxed.wasm          + relaxed SIMD (fused multiply-add)
//   relaxed-threads   model.relaxed-threads.wasm  both
//
// variant "auto" takes the fastest build the engine supports, "simd128" only builds whose
// results are bit-identical to model.wasm on every host (threads never change results).

export const MAX_THREADS = 64; // = WT_MAX_THREADS (kernels/wt_threads.h)
export const DEFAULT_MAX_THREADS = 8;
const NAME_RE = /^[a-z0-9][a-z0-9-]{0,31}$/;
const FILE_RE = /^model(\.[a-z0-9-]{1,32})?\.wasm$/;
const KEYS = ["deterministic", "features", "file", "flags", "name", "threads"];
const THREAD_KEYS = ["max_threads", "stack_bytes"];

// A tiny module per feature that validates only on an engine that has it.
const PROBES = {
  relaxed_simd: new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0, 1, 8, 1, 96, 3, 123, 123, 123, 1, 123, 3, 2, 1, 0, 10, 13,
    1, 11, 0, 32, 0, 32, 1, 32, 2, 253, 133, 2, 11]),
  threads: new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 127, 3, 2, 1, 0, 5, 4, 1, 3, 1, 1, 10, 10, 1,
    8, 0, 65, 0, 254, 16, 2, 0, 11]),
};

const IS_NODE = typeof process !== "undefined" && !!process.versions?.node && typeof window === "undefined";

function validates(bytes) {
  try {
    return WebAssembly.validate(bytes);
  } catch {
    return false;
  }
}

/** Why wasm threads cannot run here, or null when they can. */
export function threadsBlocker() {
  if (!validates(PROBES.threads)) return "this JavaScript engine lacks WebAssembly threads";
  if (typeof SharedArrayBuffer === "undefined" || (!IS_NODE && globalThis.crossOriginIsolated !== true)) {
    return "this page is NOT cross-origin isolated, so SharedArrayBuffer and shared WebAssembly memory are off";
  }
  if (!IS_NODE && typeof Worker === "undefined") return "Web Workers are unavailable here";
  return null;
}

/** The build features this engine can run: "simd128" (assumed: checked by the loader), "relaxed_simd", "threads". */
export function engineFeatures() {
  const have = new Set(["simd128"]);
  if (validates(PROBES.relaxed_simd)) have.add("relaxed_simd");
  if (threadsBlocker() === null) have.add("threads");
  return have;
}

/** The machine's cores (hardwareConcurrency / availableParallelism), at most DEFAULT_MAX_THREADS. */
export async function defaultThreads() {
  let n = globalThis.navigator?.hardwareConcurrency;
  if (!n && IS_NODE) {
    const os = await import("node:os");
    n = os.availableParallelism?.() ?? os.cpus().length;
  }
  return Math.max(1, Math.min(n || 1, DEFAULT_MAX_THREADS));
}

const PLAIN = { name: "simd128", file: "model.wasm", features: ["simd128"], threads: false, deterministic: true,
  stack_bytes: 0, max_threads: 1 };

/** The builds a manifest declares (model.wasm always among them); throws `err(message)` on a malformed record. */
export function parseVariants(manifest, where, err) {
  const raw = manifest.compiler?.variants;
  if (raw === undefined) return [PLAIN];
  const bad = (why) => err(`${where}: compiler.variants ${why}; recompile the model`);
  if (!Array.isArray(raw) || raw.length < 1 || raw.length > 8) throw bad("must be a list of 1 to 8 builds");
  const out = [];
  raw.forEach((v, i) => {
    const at = `[${i}]`;
    if (!v || typeof v !== "object" || Array.isArray(v)) throw bad(`${at} is not an object`);
    const want = [...KEYS, ...(v.threads === true ? THREAD_KEYS : [])].sort();
    if (JSON.stringify(Object.keys(v).sort()) !== JSON.stringify(want)) throw bad(`${at} must have exactly the keys ${want}`);
    if (typeof v.name !== "string" || !NAME_RE.test(v.name)) throw bad(`${at}.name is not a plain lowercase name`);
    if (typeof v.file !== "string" || !FILE_RE.test(v.file)) throw bad(`${at}.file is not model[.<name>].wasm`);
    if (!manifest.files?.[v.file]) throw bad(`${at}.file ${v.file} is not listed (with its sha256) in files`);
    if (!Array.isArray(v.features) || v.features.length < 1 || v.features.length > 8 ||
        !v.features.every((f) => typeof f === "string" && NAME_RE.test(f.replace(/_/g, "-")))) {
      throw bad(`${at}.features must be a list of 1 to 8 plain names`);
    }
    if (v.threads !== v.features.includes("threads")) throw bad(`${at}.threads must be true exactly with the threads feature`);
    if (typeof v.deterministic !== "boolean" || !v.flags || typeof v.flags !== "object") {
      throw bad(`${at}.deterministic must be a boolean and flags an object`);
    }
    if (v.threads) {
      if (!Number.isInteger(v.stack_bytes) || v.stack_bytes < 65536 || v.stack_bytes > 64 << 20 || v.stack_bytes % 16) {
        throw bad(`${at}.stack_bytes must be a multiple of 16 in [65536, 67108864]`);
      }
      if (!Number.isInteger(v.max_threads) || v.max_threads < 1 || v.max_threads > MAX_THREADS) {
        throw bad(`${at}.max_threads must be an integer in [1, ${MAX_THREADS}]`);
      }
    }
    if (out.some((o) => o.name === v.name || o.file === v.file)) throw bad(`${at} repeats a name or a file`);
    if (v.file === "model.wasm" && (v.threads || v.features.join() !== "simd128" || !v.deterministic)) {
      throw bad(`${at}: model.wasm must be the plain, deterministic simd128 build`);
    }
    out.push({ name: v.name, file: v.file, features: [...v.features], threads: v.threads, deterministic: v.deterministic,
      stack_bytes: v.threads ? v.stack_bytes : 0, max_threads: v.threads ? v.max_threads : 1 });
  });
  if (!out.some((s) => s.file === "model.wasm")) out.unshift(PLAIN);
  return out;
}

/**
 * The build to run `threads` threads with. Returns {spec, threads, fallback} where fallback (a string) says
 * why fewer threads than asked will run. Throws `err(message)` for an unknown or unrunnable named build.
 */
export function chooseVariant(specs, threads, variant, have, where, err) {
  const runnable = specs.filter((s) => s.features.every((f) => have.has(f)));
  const names = specs.map((s) => s.name);
  if (variant !== "auto" && variant !== "simd128") {
    const pick = specs.find((s) => s.name === variant);
    if (!pick) throw err(`${where} has no "${variant}" build (it has ${names.join(", ")}); use variant "auto"`);
    if (!runnable.includes(pick)) {
      throw err(`the "${variant}" build needs engine features ${pick.features.filter((f) => !have.has(f)).join(", ")}`);
    }
    if (threads > 1 && !pick.threads) throw err(`the "${variant}" build is single-threaded: pass threads: 1`);
    return { spec: pick, threads: pick.threads ? threads : 1, fallback: null };
  }
  let pool = variant === "simd128" ? runnable.filter((s) => s.deterministic) : runnable;
  const rank = (s, t) => [s.features.includes("relaxed_simd") ? 1 : 0, s.threads === t > 1 ? 1 : 0, -s.features.length];
  const best = (list, t) => list.reduce((a, b) => {
    const ra = rank(a, t), rb = rank(b, t);
    for (let i = 0; i < 3; i++) if (ra[i] !== rb[i]) return rb[i] > ra[i] ? b : a;
    return a;
  });
  let fallback = null;
  if (threads > 1) {
    const threaded = pool.filter((s) => s.threads && s.max_threads >= threads);
    if (threaded.length) return { spec: best(threaded, threads), threads, fallback };
    fallback = !have.has("threads")
      ? threadsBlocker() ?? "the engine lacks wasm threads"
      : `the artifact has no threaded build for ${threads} threads (its builds: ${names.join(", ")})`;
  }
  pool = pool.length ? pool : runnable;
  return { spec: best(pool, 1), threads: 1, fallback };
}
