// node-worker.mjs: the browser node's Web Worker. Fetches an artifact by content hash, verifies it
// (manifest sha256 == the artifact id; an Ed25519 signature by a trusted publisher over the release
// statement that covers that manifest; then every file's sha256 through wasm-torch.mjs), runs the task
// with the JS runtime on the deterministic build the task pins (model.wasm), and returns the outputs,
// their canonical sha256 and the work units (evalDim of manifest work.flops at the bound shapes).
// Messages in:  {id, op: "run", task, publishers: [{key_id, raw}]}
// Messages out: {id, result: {hash, units, outputs, ms}} | {id, error: {name, message}}
import { WasmTorch, evalDim, fetchArtifact, sha256 } from "/js/wasm-torch.mjs";
import { b64decode, decodeBundle, encodeBundle, outputHash } from "/web/tensors.mjs";

const RELEASE_DOMAIN = new TextEncoder().encode("wasm-torch-release-signature/2\n");
const models = new Map(); // artifact sha -> {model, manifest}

class NodeError extends Error {
  constructor(name, message) {
    super(message);
    this.name = name;
  }
}

async function bytes(url) {
  const r = await fetch(url);
  if (!r.ok) throw new NodeError("ArtifactError", `${url}: HTTP ${r.status}`);
  return new Uint8Array(await r.arrayBuffer());
}

/** Canonical JSON as wasm_torch/artifact/strictjson.dumps_canonical writes it: sorted keys, no spaces. */
function canonical(v) {
  if (Array.isArray(v)) return `[${v.map(canonical).join(",")}]`;
  if (v && typeof v === "object") {
    return `{${Object.keys(v).sort().map((k) => `${JSON.stringify(k)}:${canonical(v[k])}`).join(",")}}`;
  }
  return JSON.stringify(v);
}

/** wasm_torch/integrity/signing.py (format 2) for Ed25519 publishers: the signed statement is
 * DOMAIN + canonical {format, release, covers}; covers["manifest.json"] must be this manifest's sha256;
 * at least one valid signature by a trusted key is needed, and a signature claiming a trusted key that
 * does not verify rejects the artifact. The release name is not bound: the copy is content-addressed. */
async function verifySignature(sha, sigBytes, publishers) {
  let doc;
  try {
    doc = JSON.parse(new TextDecoder().decode(sigBytes));
  } catch (e) {
    throw new NodeError("SignatureError", `signature.json is not valid JSON: ${e.message}`);
  }
  if (doc?.format !== "wasm-torch-signature/2" || !Array.isArray(doc.signatures) || !doc.covers ||
      typeof doc.covers !== "object" || typeof doc.release?.name !== "string" || !Number.isInteger(doc.release?.version)) {
    throw new NodeError("SignatureError", "signature.json is not a wasm-torch-signature/2 document");
  }
  if (doc.covers["manifest.json"] !== sha) throw new NodeError("SignatureError", "signature.json does not cover this manifest");
  const release = { name: doc.release.name, version: doc.release.version };
  const statement = canonical({ format: doc.format, release, covers: doc.covers });
  if (/[^\x20-\x7e]/.test(statement)) throw new NodeError("SignatureError", "signature.json has non-ASCII text");
  const text = new TextEncoder().encode(statement);
  const message = new Uint8Array(RELEASE_DOMAIN.length + text.length);
  message.set(RELEASE_DOMAIN, 0);
  message.set(text, RELEASE_DOMAIN.length);
  const trusted = new Map(publishers.map((p) => [p.key_id, p.raw]));
  let ok = 0;
  for (const s of doc.signatures) {
    const raw = trusted.get(s?.key_id);
    if (!raw || s.alg !== "ed25519") continue;
    const key = await crypto.subtle.importKey("raw", b64decode(raw), { name: "Ed25519" }, false, ["verify"]);
    const valid = await crypto.subtle.verify("Ed25519", key, b64decode(s.sig), message);
    if (!valid) throw new NodeError("SignatureError", `the signature by trusted key ${s.key_id} does not verify: tampered artifact`);
    ok++;
  }
  if (!ok) throw new NodeError("SignatureError", "the artifact is not signed by a trusted publisher key; refusing to run it");
}

/** The task's pinned build must be the deterministic model.wasm build (what fetchArtifact loads). */
function checkVariant(manifest, variant) {
  const variants = manifest.compiler?.variants;
  if (!Array.isArray(variants)) {
    if (variant !== "simd128") throw new NodeError("ArtifactError", `artifact has no ${variant} build`);
    return;
  }
  const v = variants.find((x) => x?.name === variant);
  if (!v || v.file !== "model.wasm" || v.deterministic !== true) {
    throw new NodeError("ArtifactError", `task pins build ${variant}, which this browser node cannot run deterministically`);
  }
}

async function load(sha, variant, publishers) {
  const key = `${sha}/${variant}`;
  if (models.has(key)) return models.get(key);
  const base = `/v1/artifacts/${sha}/`;
  const manifestBytes = await bytes(base + "manifest.json");
  if ((await sha256(manifestBytes)) !== sha) throw new NodeError("IntegrityError", "manifest does not hash to the artifact id");
  await verifySignature(sha, await bytes(base + "signature.json"), publishers);
  // fetchArtifact re-reads manifest.json: hand it the exact bytes that were verified
  const verifiedFetch = (url) =>
    String(url).endsWith("/manifest.json") ? Promise.resolve(new Response(manifestBytes)) : fetch(url);
  // the pinned deterministic build on one thread (never "auto", which would pick relaxed SIMD)
  const opts = { fetch: verifiedFetch, variant, threads: 1 };
  const parts = await fetchArtifact(new URL(base, self.location.href).href, opts);
  checkVariant(parts.manifest, variant);
  if ((parts.variant?.file ?? "model.wasm") !== "model.wasm") {
    throw new NodeError("ArtifactError", `the runtime chose ${parts.variant.file}, not the pinned model.wasm`);
  }
  const model = await WasmTorch.fromParts(parts, { threads: 1 });
  const entry = { model, manifest: parts.manifest };
  models.set(key, entry);
  return entry;
}

async function run(task, publishers) {
  const { model, manifest } = await load(task.artifact, task.variant, publishers);
  const named = decodeBundle(task.inputs);
  const inputs = Object.fromEntries(named.map(([n, t]) => [n, { data: t.data, shape: t.shape }]));
  const syms = {};
  for (const s of manifest.symbols ?? []) {
    const spec = manifest.inputs.find((i) => i.name === s.input);
    if (spec && inputs[spec.name]) syms[s.name] = inputs[spec.name].shape[s.axis];
  }
  const t0 = performance.now();
  const out = model.runSync(inputs);
  const ms = performance.now() - t0;
  const outs = manifest.outputs.map((o) => [o.name, out[o.name]]);
  const units = Math.max(1, evalDim(manifest.work.flops, syms));
  return { hash: await outputHash(outs), units, outputs: encodeBundle(outs), ms };
}

self.onmessage = async (ev) => {
  const { id, op } = ev.data;
  try {
    if (op !== "run") throw new Error(`unknown op ${op}`);
    self.postMessage({ id, result: await run(ev.data.task, ev.data.publishers) });
  } catch (e) {
    self.postMessage({ id, error: { name: e?.name ?? "Error", message: String(e?.message ?? e) } });
  }
};
