// wasm-torch-helper.mjs: one intra-op thread of a threaded wasm-torch build, in a Web Worker or a
// Node worker_threads Worker (started by wasm-torch-pool.mjs; the protocol is kernels/wt_threads.h).
// Message in (once): {module, memory, tid, stackTop}: the compiled threaded build, the shared memory,
// this thread's id (1..N-1) and the top of its own stack region.
// Messages out: {ready, tid} once instantiated (then it sits in wt_worker, claiming chunks of every
// parallel step); {error, tid} when a chunk trapped (the chunk is counted done and failed, so the
// leader traps too and the call fails; this thread keeps serving); {done, tid} when the pool quit.
const IS_NODE = typeof process !== "undefined" && !!process.versions?.node && typeof window === "undefined";
const CTL_FAILED = 7;

let post;
let listen;
if (IS_NODE) {
  const { parentPort } = await import("node:worker_threads");
  post = (m) => parentPort.postMessage(m);
  listen = (fn) => parentPort.once("message", fn);
} else {
  post = (m) => self.postMessage(m);
  listen = (fn) => {
    self.onmessage = (ev) => fn(ev.data);
  };
}

listen(async ({ module, memory, tid, stackTop }) => {
  let ex;
  try {
    ex = (await WebAssembly.instantiate(module, { env: { memory } })).exports;
  } catch (e) {
    post({ error: { name: "ArtifactError", message: `thread ${tid} could not instantiate the module: ${e?.message ?? e}` }, tid, fatal: true });
    return;
  }
  post({ ready: true, tid });
  for (;;) {
    ex.__stack_pointer.value = stackTop;
    try {
      ex.wt_worker(tid); // returns only when the pool quits
      post({ done: true, tid });
      return;
    } catch (e) {
      ex.__stack_pointer.value = stackTop;
      ex.wt_pool_ctl(CTL_FAILED, tid);
      post({ error: { name: "TrapError", message: String(e?.message ?? e) }, tid });
    }
  }
});
