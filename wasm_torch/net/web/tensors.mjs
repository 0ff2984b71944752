// tensors.mjs: tensor bundles and canonical output bytes, the browser twin of wasm_torch/net/tensors.py.
// bundle item: {name, dtype, shape, data: base64 of raw little-endian C-order bytes}
// canonical bytes per output, in manifest order: JSON.stringify([name, dtype, shape]) + "\n" + raw bytes;
// two nodes agree on a task exactly when sha256 over these bytes is equal.

export const TYPED = {
  float32: Float32Array, int64: BigInt64Array, int32: Int32Array, uint8: Uint8Array, int8: Int8Array, bool: Uint8Array,
};

if (new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1) {
  throw new Error("wasm-torch network nodes need a little-endian host");
}

export function b64encode(u8) {
  let s = "";
  for (let i = 0; i < u8.length; i += 0x8000) s += String.fromCharCode.apply(null, u8.subarray(i, i + 0x8000));
  return btoa(s);
}

export function b64decode(text) {
  const s = atob(text);
  const u8 = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) u8[i] = s.charCodeAt(i);
  return u8;
}

export const bytesOf = (data) => new Uint8Array(data.buffer, data.byteOffset, data.byteLength);

/** bundle -> [[name, {data, shape, dtype}]] (typed arrays on fresh, aligned buffers) */
export function decodeBundle(bundle) {
  if (!Array.isArray(bundle)) throw new Error("a tensor bundle must be a list");
  return bundle.map((t) => {
    const T = TYPED[t.dtype];
    if (!T) throw new Error(`unsupported dtype ${t.dtype}`);
    const raw = b64decode(t.data);
    const n = t.shape.reduce((a, d) => a * d, 1);
    if (raw.length !== n * T.BYTES_PER_ELEMENT) throw new Error(`tensor ${t.name}: ${raw.length} bytes for shape ${t.shape}`);
    const data = new T(raw.buffer.slice(0));
    return [t.name, { data, shape: t.shape, dtype: t.dtype }];
  });
}

/** [[name, {data, shape, dtype}]] -> bundle */
export function encodeBundle(named) {
  return named.map(([name, t]) => ({ name, dtype: t.dtype, shape: t.shape, data: b64encode(bytesOf(t.data)) }));
}

export function canonicalBytes(named) {
  const enc = new TextEncoder();
  const parts = named.map(([name, t]) => [enc.encode(JSON.stringify([name, t.dtype, t.shape]) + "\n"), bytesOf(t.data)]);
  const total = parts.reduce((a, [h, b]) => a + h.length + b.length, 0);
  const out = new Uint8Array(total);
  let o = 0;
  for (const [h, b] of parts) {
    out.set(h, o);
    o += h.length;
    out.set(b, o);
    o += b.length;
  }
  return out;
}

export async function sha256hex(bytes) {
  const d = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return Array.from(d, (b) => b.toString(16).padStart(2, "0")).join("");
}

export const outputHash = (named) => sha256hex(canonicalBytes(named));
