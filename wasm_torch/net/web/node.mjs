// node.mjs: the browser node. Registers an Ed25519 identity (WebCrypto; kept in IndexedDB so the node
// keeps its reputation across visits), leases tasks from the coordinator that served this page, runs
// them in a Web Worker (node-worker.mjs) and returns signed results. Same protocol as wasm_torch/net/node.py:
// every request is an envelope {payload: "<JSON text>", sig: base64 Ed25519 over DOMAIN + payload}.
// Query options: ?name=NAME &max=N (stop after N results) &fresh=1 (new identity) &trust=<key_id>:<raw b64>.
// window.__node exposes the state for people (the page) and tests.
const DOMAIN = "wasm-torch-net/1 envelope\n";
const enc = new TextEncoder();
const q = new URLSearchParams(location.search);
const state = (window.__node = {
  id: null, coordinator: null, ready: false, done: 0, refused: 0, failed: 0, units: [], hashes: {}, errors: [],
  stopped: false, log: [],
});

function show() {
  const el = document.getElementById("status");
  if (el) {
    el.textContent = `node ${state.id ?? "…"}\ncoordinator ${state.coordinator ?? "…"}\n` +
      `results accepted ${state.done}, refused ${state.refused}, failed ${state.failed}\n` +
      (state.errors.length ? `last error: ${state.errors.at(-1)}` : "");
  }
}
function note(msg) {
  state.log.push(msg);
  if (state.log.length > 200) state.log.shift();
  show();
}

const hex = (u8) => Array.from(u8, (b) => b.toString(16).padStart(2, "0")).join("");
function b64(u8) {
  let s = "";
  for (let i = 0; i < u8.length; i += 0x8000) s += String.fromCharCode.apply(null, u8.subarray(i, i + 0x8000));
  return btoa(s);
}

// ---- identity --------------------------------------------------------------------------------
function idb() {
  return new Promise((resolve, reject) => {
    const r = indexedDB.open("wasm-torch-node", 1);
    r.onupgradeneeded = () => r.result.createObjectStore("keys");
    r.onsuccess = () => resolve(r.result);
    r.onerror = () => reject(r.error);
  });
}
async function keys() {
  let db = null;
  try {
    db = await idb();
    if (!q.get("fresh")) {
      const got = await new Promise((res, rej) => {
        const r = db.transaction("keys").objectStore("keys").get("node");
        r.onsuccess = () => res(r.result);
        r.onerror = () => rej(r.error);
      });
      if (got) return got;
    }
  } catch (e) {
    note(`IndexedDB unavailable (${e}); this identity lasts for this visit only`);
  }
  const pair = await crypto.subtle.generateKey({ name: "Ed25519" }, false, ["sign", "verify"]);
  const raw = new Uint8Array(await crypto.subtle.exportKey("raw", pair.publicKey));
  const rec = { privateKey: pair.privateKey, raw };
  if (db && !q.get("fresh")) db.transaction("keys", "readwrite").objectStore("keys").put(rec, "node");
  return rec;
}

// ---- protocol --------------------------------------------------------------------------------
class Refused extends Error {
  constructor(status, message) {
    super(`HTTP ${status}: ${message}`);
    this.status = status;
  }
}
let me;
async function seal(payload) {
  const nonce = hex(crypto.getRandomValues(new Uint8Array(16)));
  const text = JSON.stringify({ ...payload, from: state.id, to: state.coordinator, ts: Date.now(), nonce });
  const sig = new Uint8Array(await crypto.subtle.sign("Ed25519", me.privateKey, enc.encode(DOMAIN + text)));
  return { payload: text, sig: b64(sig) };
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
async function post(path, payload, { until = Infinity } = {}) {
  let delay = 200;
  for (;;) {
    let r;
    try {
      r = await fetch(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(await seal(payload)) });
    } catch (e) {
      r = null;
    }
    if (r && r.status < 500) {
      if (r.status === 204) return null;
      const body = await r.json().catch(() => ({}));
      if (!r.ok) throw new Refused(r.status, body.error ?? r.statusText);
      return body;
    }
    if (Date.now() > until) throw new Error(`${path}: coordinator unreachable`);
    await sleep(delay);
    delay = Math.min(5000, delay * 2);
  }
}

// ---- the worker ------------------------------------------------------------------------------
const worker = new Worker("/web/node-worker.mjs", { type: "module" });
let nextId = 1;
const pending = new Map();
worker.onerror = (ev) => {
  ev.preventDefault?.();
  const err = new Error(`the node worker failed: ${ev.message ?? "script error"}`);
  for (const [id, p] of pending) {
    pending.delete(id);
    p.reject(err);
  }
};
worker.onmessage = (ev) => {
  const p = pending.get(ev.data.id);
  pending.delete(ev.data.id);
  if (ev.data.error) p.reject(Object.assign(new Error(ev.data.error.message), { name: ev.data.error.name }));
  else p.resolve(ev.data.result);
};
const inWorker = (msg) => new Promise((resolve, reject) => {
  const id = nextId++;
  pending.set(id, { resolve, reject });
  worker.postMessage({ id, ...msg });
});

// ---- main loop -------------------------------------------------------------------------------
async function main() {
  const info = await (await fetch("/v1/info")).json();
  state.coordinator = info.coordinator;
  const publishers = q.get("trust")
    ? q.getAll("trust").map((t) => ({ key_id: t.split(":").slice(0, 2).join(":"), raw: t.split(":").slice(2).join(":") }))
    : info.publishers;
  me = await keys();
  state.id = "ed25519:" + hex(new Uint8Array(await crypto.subtle.digest("SHA-256", me.raw))).slice(0, 32);
  let standing = await post("/v1/nodes/register", { type: "register", pubkey: b64(me.raw), name: q.get("name") ?? "browser", kind: "browser", stake: 0 });
  state.ready = true;
  note(`registered (probation ${standing.probation})`);
  let nextBeat = 0;
  const max = Number(q.get("max") ?? Infinity);
  while (state.done < max) {
    try {
      if (Date.now() >= nextBeat) {
        standing = await post("/v1/nodes/heartbeat", { type: "heartbeat" });
        // the coordinator spreads heartbeats over the period (Kuramoto coupling): move ours as it says
        const shift = Math.max(-standing.heartbeat_s / 2, Math.min(standing.heartbeat_s / 2, Number(standing.phase_shift_s) || 0));
        nextBeat = Date.now() + (standing.heartbeat_s + shift) * 1000;
      }
      const task = await post("/v1/tasks/lease", { type: "lease" });
      if (!task) {
        await sleep(standing.poll_s * 1000);
        continue;
      }
      let result;
      try {
        result = await inWorker({ op: "run", task, publishers });
      } catch (e) {
        state.failed++;
        state.errors.push(`${e.name}: ${e.message}`);
        const reason = /Signature|Integrity|Artifact/.test(e.name) ? "untrusted" : "error";
        await post("/v1/tasks/fail", { type: "fail", assignment: task.assignment, reason }).catch(() => {});
        continue;
      }
      await post("/v1/tasks/result", {
        type: "result", assignment: task.assignment, task: task.task, hash: result.hash, units: result.units, outputs: result.outputs,
      }, { until: task.deadline_ms + 5000 });
      state.done++;
      state.units.push([task.task, result.units]);
      state.hashes[task.task] = result.hash;
      show();
    } catch (e) {
      if (e instanceof Refused) {
        state.refused++;
        state.errors.push(e.message);
        if (e.status === 404) {
          standing = await post("/v1/nodes/register", { type: "register", pubkey: b64(me.raw), name: q.get("name") ?? "browser", kind: "browser", stake: 0 });
        }
        await sleep(Math.max(1000, (standing.poll_s ?? 1) * 1000));
      } else {
        state.errors.push(String(e?.message ?? e));
        await sleep(1000);
      }
      show();
    }
  }
  state.stopped = true;
  note("stopped");
}

main().catch((e) => {
  state.errors.push(`fatal: ${e?.message ?? e}`);
  state.fatal = String(e?.stack ?? e);
  show();
});
