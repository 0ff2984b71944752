// The text-generation demo: ./generator/ (a wasm_torch.compile_generator artifact) runs in a Web Worker
// (loadGeneratorInWorker); tokens stream back one by one and are decoded to text here with the artifact's
// tokenizer.json (byte-level BPE: bpe.mjs; any other tokenizer: the prompt is token ids, the output ids).
// Test hooks: ?prompt=...&n=...&auto=1 runs at once; window.__demo holds every run (ids, text, arrival times).
import { BpeTokenizer } from "./bpe.mjs";
import { loadGeneratorInWorker } from "./wasm-torch-generate.mjs";

const $ = (id) => document.getElementById(id);
const demo = (window.__demo = { ready: false, error: null, runs: [], done: false });
const params = new URLSearchParams(location.search);

function fail(e) {
  demo.error = `${e.name}: ${e.message}`;
  $("status").textContent = `Error: ${demo.error}`;
  $("status").className = "error";
  console.error(e);
}

let gen, tok = null;
try {
  const t0 = performance.now();
  gen = await loadGeneratorInWorker("./generator/", { threads: Number(params.get("threads") ?? 1) });
  const spec = gen.manifest.generator;
  if (spec.tokenizer) {
    try {
      tok = BpeTokenizer.fromJSON(await (await fetch(`./generator/${spec.tokenizer}`)).json());
    } catch (e) {
      console.warn(`tokenizer not usable in the browser (${e.message}): prompts are token ids`);
    }
  }
  if (!tok) $("prompt").value = "1, 2, 3";
  demo.ready = true;
  demo.loadMs = performance.now() - t0;
  Object.assign(demo, { inWorker: typeof gen.terminate === "function", threads: gen.threads, variant: gen.variant });
  $("title").textContent = `wasm-torch: ${gen.name}`;
  $("status").textContent = `loaded in ${demo.loadMs.toFixed(0)} ms (${gen.variant}, ${gen.threads} thread(s), ` +
    `max context ${spec.max_context} tokens${tok ? "" : ", prompts as token ids"})`;
  $("go").disabled = false;
} catch (e) {
  fail(e);
}

function promptIds(text) {
  if (tok) return tok.encode(text);
  return text.split(/[\s,]+/).filter(Boolean).map(Number);
}

async function run(text, n, sampling) {
  const out = $("out");
  out.replaceChildren(Object.assign(document.createElement("span"), { className: "prompt", textContent: text }));
  const body = out.appendChild(document.createElement("span"));
  const stream = tok?.stream();
  const r = { prompt: text, ids: [], text: "", times: [] };
  const t0 = performance.now();
  r.result = await gen.generate(promptIds(text), {
    maxNewTokens: n, ...sampling,
    onToken: (token) => { // runs on this thread as each token arrives from the worker
      r.ids.push(token);
      r.times.push(performance.now() - t0);
      const piece = stream ? stream.push(token) : ` ${token}`;
      r.text += piece;
      body.textContent += piece;
    },
  });
  if (stream) r.text += stream.finish();
  body.textContent = r.text;
  r.ms = performance.now() - t0;
  const rate = r.ids.length > 1 ? ((r.ids.length - 1) / ((r.times.at(-1) - r.times[0]) / 1e3)).toFixed(1) : "-";
  $("meta").textContent = `${r.ids.length} tokens in ${r.ms.toFixed(0)} ms; first token after ${r.times[0]?.toFixed(0)} ms, then ${rate} tokens/s`;
  demo.runs.push(r);
  return r;
}

$("form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  $("go").disabled = true;
  try {
    const sampling = $("sample").checked
      ? { doSample: true, temperature: Number($("temperature").value), topP: Number($("topP").value), seed: Number($("seed").value) }
      : {};
    await run($("prompt").value, Number($("n").value), sampling);
  } catch (e) {
    fail(e);
  } finally {
    $("go").disabled = false;
  }
});

if (demo.ready && params.get("auto") === "1") {
  try {
    if (params.has("prompt")) $("prompt").value = params.get("prompt");
    await run($("prompt").value, Number(params.get("n") ?? 32), {});
  } catch (e) {
    fail(e);
  }
}
demo.done = true;
