// wasm-torch-pool.mjs: intra-op threads for a threaded wasm-torch build (mirrors
// wasm_torch/runtime/threads.py). One shared WebAssembly.Memory, sized exactly and never growable:
//
//   [ stack 0 | data | weights | arena | stack 1 | ... | stack N-1 ]
//               ^W               ^A       ^ each helper thread's own stack
//
// The calling thread instantiates the leader (it runs wt_run); N-1 helpers (Web Workers, or Node
// worker_threads) instantiate the same module over the same memory and sit in wt_worker(tid)
// (wasm-torch-helper.mjs). Weights live once. Results are bit-identical whatever N.

const IS_NODE = typeof process !== "undefined" && !!process.versions?.node && typeof window === "undefined";
const PAGE = 65536;
export const CTL = { THREADS: 0, CAN_BLOCK: 1, QUIT: 2, RESET: 3, BUSY: 4, CHUNKS: 5, CLEAR: 6, FAILED: 7, JOBS: 8 };
const EXPORTS = ["__heap_base", "__stack_pointer", "wt_pool_ctl", "wt_worker"];
const align = (n, a = 64) => Math.ceil(n / a) * a;

/** May this thread block in Atomics.wait / memory.atomic.wait? Not a browser's main thread. */
export const canBlock = () => IS_NODE || typeof globalThis.WorkerGlobalScope !== "undefined";

/** __heap_base of a wasm binary: its export's global and that global's i32.const initializer. */
export function heapBase(bytes, err) {
  const b = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
  let p = 8;
  const uleb = () => {
    let r = 0, s = 0, x;
    do {
      if (p >= b.length) throw err("it ends in the middle of a section");
      x = b[p++];
      r += (x & 0x7f) * 2 ** s;
      s += 7;
    } while (x & 0x80 && s < 35);
    return r;
  };
  const sleb = () => {
    let r = 0, s = 0, x;
    do {
      x = b[p++];
      r |= (x & 0x7f) << s;
      s += 7;
    } while (x & 0x80 && s < 35);
    return s < 32 && x & 0x40 ? r | (-1 << s) : r;
  };
  const globals = [];
  let exp = null;
  while (p < b.length) {
    const id = b[p++], size = uleb(), end = p + size;
    if (end > b.length) throw err("a section runs past the end of the module");
    if (id === 6) {
      for (let n = uleb(), i = 0; i < n; i++) {
        p += 2; // type, mutability
        if (b[p++] !== 0x41) throw err("a global is not initialised by i32.const");
        globals.push(sleb());
        p++; // end
      }
    } else if (id === 7) {
      for (let n = uleb(), i = 0; i < n; i++) {
        const len = uleb(), name = new TextDecoder().decode(b.subarray(p, p + len));
        p += len;
        const kind = b[p++], idx = uleb();
        if (name === "__heap_base" && kind === 3) exp = idx;
      }
    }
    p = end;
  }
  if (exp === null || globals[exp] === undefined) throw err("it lacks an __heap_base global");
  return globals[exp];
}

/** Refuse a threaded build whose imports and exports are not exactly ours (before instantiating it). */
export function checkThreaded(module, entry, err) {
  const imports = WebAssembly.Module.imports(module);
  if (imports.length !== 1 || imports[0].module !== "env" || imports[0].name !== "memory" || imports[0].kind !== "memory") {
    throw err("a threaded build imports exactly env.memory");
  }
  const exports = WebAssembly.Module.exports(module).map((e) => `${e.name}:${e.kind}`).sort();
  const want = [...EXPORTS.map((n) => `${n}:${n.startsWith("__") ? "global" : "function"}`), `${entry}:function`].sort();
  if (JSON.stringify(exports) !== JSON.stringify(want)) throw err(`its exports must be exactly ${want.join(", ")}`);
}

/** Where everything goes in the shared memory, for `threads` threads. */
export function layout(heap, weightsBytes, arenaBytes, threads, stackBytes) {
  const W = align(heap), A = align(W + weightsBytes), stacks = align(A + arenaBytes, 16);
  const bytes = align(stacks + (threads - 1) * stackBytes, PAGE);
  return { W, A, stacks, bytes, pages: bytes / PAGE };
}

async function spawn(url, name) {
  if (IS_NODE) {
    const { Worker } = await import("node:worker_threads");
    const w = new Worker(url, { name });
    w.unref(); // idle helpers never keep a Node process alive
    return { post: (m) => w.postMessage(m), on: (fn) => w.on("message", fn), onError: (fn) => w.on("error", fn),
      terminate: () => w.terminate() };
  }
  const w = new Worker(url, { type: "module", name });
  return { post: (m) => w.postMessage(m), on: (fn) => w.addEventListener("message", (ev) => fn(ev.data)),
    onError: (fn) => w.addEventListener("error", (ev) => { ev.preventDefault?.(); fn(ev); }), terminate: () => w.terminate() };
}

/**
 * Start the helpers of a leader instance already running over `memory`: resolves when every helper
 * sits in wt_worker. Returns {errors, stats(), close()}.
 */
export async function startHelpers({ module, memory, ctl, threads, stacks, stackBytes, name, helperUrl }) {
  const url = helperUrl ?? new URL("./wasm-torch-helper.mjs", import.meta.url);
  const errors = [];
  const helpers = [];
  ctl(CTL.THREADS, threads);
  ctl(CTL.CAN_BLOCK, canBlock() ? 1 : 0);
  try {
    await Promise.all(Array.from({ length: threads - 1 }, async (_, i) => {
      const tid = i + 1;
      const h = await spawn(url, `wasm-torch-${name}-${tid}`);
      helpers.push(h);
      await new Promise((resolve, reject) => {
        h.on((m) => {
          if (m.ready) resolve();
          else if (m.error) {
            errors.push(m);
            if (m.fatal) reject(Object.assign(new Error(m.error.message), { name: m.error.name }));
          }
        });
        h.onError((e) => reject(new Error(`helper thread ${tid} failed to start: ${e?.message ?? e}`)));
        h.post({ module, memory, tid, stackTop: stacks + tid * stackBytes });
      });
    }));
  } catch (e) {
    ctl(CTL.QUIT, 0);
    helpers.forEach((h) => h.terminate());
    throw e;
  }
  let closed = false;
  return {
    errors,
    helpers: helpers.length,
    stats(clear = false) {
      const out = { threads, chunks: Array.from({ length: threads }, (_, t) => ctl(CTL.CHUNKS, t)), jobs: ctl(CTL.JOBS, 0) };
      if (clear) ctl(CTL.CLEAR, 0);
      return out;
    },
    /** After a trap of the leader: cancel the job, wait (spinning) for helpers inside a chunk. */
    recover(timeoutMs = 10_000) {
      ctl(CTL.RESET, 0);
      const end = performance.now() + timeoutMs;
      while (ctl(CTL.BUSY, 0) > 0) {
        if (performance.now() > end) return false;
      }
      return true;
    },
    close() {
      if (closed) return;
      closed = true;
      ctl(CTL.QUIT, 0);
      helpers.forEach((h) => h.terminate());
    },
  };
}
