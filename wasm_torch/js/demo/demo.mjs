// The demo page's logic: load MiniLM in a Web Worker, embed the sentences, rank them for a query.
// window.__demo exposes state for the browser test (ranking, embeddings, timings, errors).
import { WasmTorch } from "./wasm-torch.mjs";
import { WordPiece } from "./wordpiece.mjs";
import { embed, rank } from "./embed.mjs";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const demo = (window.__demo = { ready: false, error: null, timings: {}, queries: [] });
const kb = (n) => (n >= 1e6 ? `${(n / 1e6).toFixed(1)} MB` : `${(n / 1e3).toFixed(1)} kB`);

function status(text, isError = false) {
  $("status").textContent = text;
  $("status").className = isError ? "error" : "";
}

function figures(rows) {
  $("figures").replaceChildren(...rows.map(([k, v]) => {
    const tr = document.createElement("tr");
    tr.innerHTML = "<td></td><td></td>";
    tr.children[0].textContent = k;
    tr.children[1].textContent = v;
    return tr;
  }));
}

/** Bytes downloaded (Resource Timing, each URL once): code (page, JS, wasm, manifest), vocab, weights. */
function downloaded(model) {
  const files = new Map(model.workerResources ?? []);
  for (const e of performance.getEntriesByType("resource")) files.set(e.name, e.encodedBodySize || e.decodedBodySize || 0);
  const nav = performance.getEntriesByType("navigation")[0];
  if (nav) files.set(nav.name, nav.encodedBodySize || 0);
  const by = { code: 0, vocab: 0, weights: 0, files: Object.fromEntries(files) };
  for (const [url, n] of files) {
    if (url.endsWith("/weights.bin")) by.weights += n;
    else if (url.endsWith("/vocab.txt")) by.vocab += n;
    else by.code += n;
  }
  return by;
}

/** The models this site offers (models.json: the same network in float32 / fp16 / int8 ...), and the
 * one ?model=<label> picks (default: the first). A site without models.json has ./model/ only. */
async function chooseModel() {
  const r = await fetch("./models.json");
  const models = r.ok ? await r.json() : [{ label: "default", path: "./model/", format: "float32" }];
  const want = params.get("model") ?? models[0].label;
  const chosen = models.find((m) => m.label === want);
  if (!chosen) throw new Error(`?model=${want}: this site has ${models.map((m) => m.label).join(", ")}`);
  const links = models.map((m) => {
    const a = document.createElement(m === chosen ? "strong" : "a");
    a.textContent = `${m.label} (${m.format}, weights ${kb(m.weights_bytes)})`;
    if (m !== chosen) {
      const u = new URL(location.href);
      u.searchParams.set("model", m.label);
      a.href = u.toString();
    }
    return a;
  });
  if (models.length > 1) $("models").replaceChildren("Model: ", ...links.flatMap((a, i) => (i ? [" · ", a] : [a])));
  return { models, chosen };
}

async function main() {
  const t0 = performance.now();
  // ?threads=N: intra-op threads (default: the cores, at most 8, on a cross-origin isolated page);
  // ?workers=N: N single-threaded instances instead; ?variant=simd128 for the deterministic build;
  // ?model=<label>: another build of the model (models.json: e.g. its int8 weights).
  const opts = {};
  if (params.get("threads")) opts.threads = Number(params.get("threads"));
  if (params.get("workers")) opts.workers = Number(params.get("workers"));
  if (params.get("variant")) opts.variant = params.get("variant");
  const { models, chosen } = await chooseModel();
  demo.models = models;
  demo.modelLabel = chosen.label;
  const [model, vocab] = await Promise.all([
    params.get("worker") === "0" ? WasmTorch.load(chosen.path, opts) : WasmTorch.loadInWorker(chosen.path, opts),
    fetch("./vocab.txt").then((r) => {
      if (!r.ok) throw new Error(`vocab.txt could not be fetched: HTTP ${r.status}`);
      return r.text();
    }),
  ]);
  const seqMax = model.manifest.symbols?.[0]?.max ?? 512;
  const tok = WordPiece.fromText(vocab, { maxLength: seqMax });
  const loaded = performance.now();
  const docs = $("docs").value.split("\n").map((s) => s.trim()).filter(Boolean);
  const tEmb = performance.now();
  const embs = await Promise.all(docs.map((d) => embed(model, tok, d)));
  const done = performance.now();
  Object.assign(demo, { model, tok, docs, embeddings: embs.map((e) => Array.from(e)), ready: true });
  demo.timings = { loadMs: loaded - t0, embedDocsMs: done - tEmb, firstLoadMs: done, threads: model.threads ?? 1,
    workers: model.workers ?? 0, variant: model.variant };
  demo.threadStats = model.threadStats ? await model.threadStats() : null; // chunks each thread ran
  demo.bytes = downloaded(model);
  const plural = (n, w) => `${n} ${w}${n > 1 ? "s" : ""}`;
  const mode = model.workers
    ? `${plural(model.workers, "worker")}, ${plural(model.threads, "thread")} each, ${model.variant} build`
    : `main thread, ${plural(model.threads, "thread")}`;
  status(`Ready: ${docs.length} sentences embedded with the ${chosen.label} model (${mode}${crossOriginIsolated ? ", cross-origin isolated" : ""}).`);
  const base = [
    ["first load (page start → sentences embedded)", `${done.toFixed(0)} ms`],
    ["model download + verify + compile + instantiate", `${(loaded - t0).toFixed(0)} ms`],
    [`embedding ${docs.length} sentences`, `${(done - tEmb).toFixed(0)} ms`],
    ["downloaded: loader + wasm (+ page)", kb(demo.bytes.code)],
    ["downloaded: vocab.txt", kb(demo.bytes.vocab)],
    [`downloaded: weights.bin (${chosen.label}, ${chosen.format})`, kb(demo.bytes.weights)],
    ...models.filter((m) => m !== chosen).map((m) => [`weights.bin of ${m.label} (${m.format}), not loaded`, kb(m.weights_bytes)]),
  ];
  figures(base);
  $("query").disabled = $("go").disabled = false;
  $("query").focus();
  $("search").onsubmit = async (ev) => {
    ev.preventDefault();
    const q = $("query").value;
    const t = performance.now();
    const qe = await embed(model, tok, q);
    const ranking = rank(qe, embs);
    const ms = performance.now() - t;
    demo.queries.push({ query: q, ms, embedding: Array.from(qe), ranking });
    $("results").replaceChildren(...ranking.map((r) => {
      const li = document.createElement("li");
      li.dataset.index = r.index;
      li.innerHTML = `<span class="score">${r.score.toFixed(3)}</span>`;
      li.append(docs[r.index]);
      return li;
    }));
    figures([[`last query (tokenize + embed + rank)`, `${ms.toFixed(1)} ms`], ...base]);
  };
}

main().catch((e) => {
  demo.error = `${e.name}: ${e.message}`;
  status(`Could not start the demo: ${demo.error}`, true);
  console.error(e);
});
