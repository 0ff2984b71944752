// wasm-torch-worker.mjs: the Web Worker side of loadInWorker() (see wasm-torch.mjs).
// Messages in: {id, op: "init", parts, opts} | {id, op: "run", inputs, opts} | {id, op: "stats"} |
// {id, op: "threadStats", clear}. A threaded build starts its helper threads from here (nested workers).
// Messages out: {id, result} | {id, error: {name, message}}; output buffers are transferred.
import { WasmTorch } from "./wasm-torch.mjs";

/** @type {WasmTorch|null} */
let model = null;

self.onmessage = async (ev) => {
  const { id, op } = ev.data;
  try {
    if (op === "init") {
      model = await WasmTorch.fromParts(ev.data.parts, ev.data.opts ?? {});
      const resources = (performance.getEntriesByType?.("resource") ?? []).map((e) => [e.name, e.encodedBodySize]);
      self.postMessage({ id, result: { memoryBytes: model.memoryBytes, resources, threads: model.threads, variant: model.variant } });
    } else if (op === "run") {
      if (!model) throw new Error("the worker has no model yet");
      const t0 = performance.now();
      const out = model.runSync(ev.data.inputs, ev.data.opts ?? {});
      const ms = performance.now() - t0;
      self.postMessage({ id, result: out, ms }, Object.values(out).map((o) => o.data.buffer));
    } else if (op === "stats") {
      self.postMessage({ id, result: model?.stats() ?? null });
    } else if (op === "threadStats") {
      self.postMessage({ id, result: model?.threadStats(!!ev.data.clear) ?? null });
    } else {
      throw new Error(`unknown op ${op}`);
    }
  } catch (e) {
    self.postMessage({ id, error: { name: e?.name ?? "Error", message: String(e?.message ?? e) } });
  }
};
