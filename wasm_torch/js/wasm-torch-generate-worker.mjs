// wasm-torch-generate-worker.mjs: the Web Worker side of loadGeneratorInWorker() (wasm-torch-generate.mjs).
// Messages in: {id, op: "init", parts, opts} | {id, op: "generate", prompt, opts} | {id, op: "stats"}.
// Messages out: {id, token, index} for every generated token as it is chosen, then {id, result} |
// {id, error: {name, message}}.
import { Generator } from "./wasm-torch-generate.mjs";

/** @type {Generator|null} */
let gen = null;

self.onmessage = async (ev) => {
  const { id, op } = ev.data;
  try {
    if (op === "init") {
      gen = await Generator.fromParts(ev.data.parts, ev.data.opts ?? {});
      self.postMessage({ id, result: { maxContext: gen.maxContext, vocabSize: gen.vocabSize, threads: gen.model.threads,
        variant: gen.model.variant, memoryBytes: gen.model.memoryBytes } });
    } else if (op === "generate") {
      if (!gen) throw new Error("the worker has no generator yet");
      const t0 = performance.now();
      const ids = await gen.generate(ev.data.prompt, {
        ...(ev.data.opts ?? {}),
        onToken: (token, index) => self.postMessage({ id, token, index }),
      });
      self.postMessage({ id, result: { ids, ms: performance.now() - t0 } });
    } else if (op === "stats") {
      self.postMessage({ id, result: gen?.stats() ?? null });
    } else {
      throw new Error(`unknown op ${op}`);
    }
  } catch (e) {
    self.postMessage({ id, error: { name: e?.name ?? "Error", message: String(e?.message ?? e) } });
  }
};
