// embed.mjs: sentence embeddings and cosine ranking on top of wasm-torch.mjs and wordpiece.mjs
// (mean pooling over the attention mask, then L2 normalisation, as sentence-transformers does).

/** Mean-pool a [1, seq, dim] hidden state over the mask and L2-normalise it. */
export function meanPool(hidden, shape, mask) {
  const [, seq, dim] = shape;
  const e = new Float32Array(dim);
  let n = 0;
  for (let t = 0; t < seq; t++) {
    if (!mask[t]) continue;
    n++;
    for (let d = 0; d < dim; d++) e[d] += hidden[t * dim + d];
  }
  let norm = 0;
  for (let d = 0; d < dim; d++) {
    e[d] /= Math.max(n, 1e-9);
    norm += e[d] * e[d];
  }
  norm = Math.sqrt(norm) || 1;
  for (let d = 0; d < dim; d++) e[d] /= norm;
  return e;
}

export const cosine = (a, b) => {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
};

/**
 * Embed one text: tokenize, run the model (anything with run(inputs) -> {output_0}), mean-pool.
 * @param {{run: Function}} model @param {import("./wordpiece.mjs").WordPiece} tok @param {string} text
 */
export async function embed(model, tok, text) {
  const { ids, mask } = tok.encode(text);
  const out = await model.run({ input_ids: { data: ids, shape: [1, ids.length] },
    attention_mask: { data: mask, shape: [1, mask.length] } });
  const h = Object.values(out)[0];
  return meanPool(h.data, h.shape, mask);
}

/** Indices and scores of `docs` sorted by cosine similarity to `q`, best first. */
export function rank(q, docs) {
  return docs.map((d, i) => ({ index: i, score: cosine(q, d) })).sort((a, b) => b.score - a.score);
}
