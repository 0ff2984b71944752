// bpe.mjs: byte-level BPE (GPT-2's scheme) from a Hugging Face tokenizer.json, for Node and browsers.
//
//   const tok = BpeTokenizer.fromJSON(await (await fetch("gen/tokenizer.json")).json());
//   const ids = tok.encode("Once upon a time");
//   const text = tok.stream(); text.push(id) -> the text that became complete ("" inside a split character)
//
// Encoding: split on the added (special) tokens, then GPT-2's regex pre-tokenizer, bytes mapped to
// printable characters (bytes_to_unicode), merges applied lowest rank first, pieces looked up in the
// vocabulary — what the `tokenizers` package does for a model of type BPE with a ByteLevel
// pre-tokenizer (tests/generate/test_js.py compares the two). Decoding maps the characters back to
// bytes and decodes UTF-8 (streaming: a character split over tokens waits for its last byte).
// Any other tokenizer (SentencePiece / Metaspace, WordPiece, normalizers) is an UnsupportedError.
import { InputError, UnsupportedError } from "./wasm-torch.mjs";

const GPT2_SPLIT = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu;

/** GPT-2's reversible byte -> printable character table. */
function bytesToUnicode() {
  const bs = [];
  for (let b = 33; b <= 126; b++) bs.push(b);
  for (let b = 161; b <= 172; b++) bs.push(b);
  for (let b = 174; b <= 255; b++) bs.push(b);
  const cs = [...bs];
  let n = 0;
  for (let b = 0; b < 256; b++) {
    if (!bs.includes(b)) {
      bs.push(b);
      cs.push(256 + n++);
    }
  }
  const enc = new Array(256);
  bs.forEach((b, i) => (enc[b] = String.fromCodePoint(cs[i])));
  return enc;
}

const BYTE_TO_CHAR = bytesToUnicode();
const CHAR_TO_BYTE = new Map(BYTE_TO_CHAR.map((c, b) => [c, b]));

function byteLevel(step) {
  return step?.type === "ByteLevel" ? step : null;
}

export class BpeTokenizer {
  /** From a parsed tokenizer.json; refuses what this encoder does not implement, by name. */
  static fromJSON(doc) {
    const model = doc?.model;
    if (model?.type !== "BPE") throw new UnsupportedError(`tokenizer model ${JSON.stringify(model?.type)} is not BPE`);
    const pre = byteLevel(doc.pre_tokenizer) ??
      (doc.pre_tokenizer?.type === "Sequence" && doc.pre_tokenizer.pretokenizers.length === 1
        ? byteLevel(doc.pre_tokenizer.pretokenizers[0]) : null);
    if (!pre || pre.use_regex === false) throw new UnsupportedError("only a ByteLevel pre-tokenizer (GPT-2's regex) is supported");
    if (doc.normalizer) throw new UnsupportedError(`normalizer ${JSON.stringify(doc.normalizer.type)} is not supported`);
    if (!byteLevel(doc.decoder)) throw new UnsupportedError("only a ByteLevel decoder is supported");
    if (model.dropout || model.continuing_subword_prefix || model.end_of_word_suffix || model.byte_fallback) {
      throw new UnsupportedError("BPE dropout, subword prefixes/suffixes and byte fallback are not supported");
    }
    return new BpeTokenizer(model, doc.added_tokens ?? [], !!pre.add_prefix_space, !!model.ignore_merges);
  }

  constructor(model, added, addPrefixSpace, ignoreMerges) {
    this.vocab = new Map(Object.entries(model.vocab));
    this.ranks = new Map();
    model.merges.forEach((m, i) => {
      const [a, b] = Array.isArray(m) ? m : m.split(" ");
      this.ranks.set(`${a} ${b}`, i);
    });
    this.idToToken = [];
    for (const [t, id] of this.vocab) this.idToToken[id] = t;
    this.added = added.map((a) => ({ id: a.id, content: a.content, special: !!a.special }));
    for (const a of this.added) this.idToToken[a.id] = a.content;
    this.special = new Set(this.added.filter((a) => a.special).map((a) => a.id));
    this.addPrefixSpace = addPrefixSpace;
    this.ignoreMerges = ignoreMerges;
    this.cache = new Map();
  }

  get vocabSize() {
    return this.idToToken.length;
  }

  #word(word) {
    const hit = this.cache.get(word);
    if (hit) return hit;
    if (this.ignoreMerges && this.vocab.has(word)) return [this.vocab.get(word)];
    let parts = Array.from(word);
    while (parts.length > 1) {
      let best = -1, rank = Infinity;
      for (let i = 0; i < parts.length - 1; i++) {
        const r = this.ranks.get(`${parts[i]} ${parts[i + 1]}`);
        if (r !== undefined && r < rank) {
          rank = r;
          best = i;
        }
      }
      if (best < 0) break;
      const a = parts[best], b = parts[best + 1];
      const next = [];
      for (let i = 0; i < parts.length; i++) { // merge every occurrence of this pair, left to right
        if (i < parts.length - 1 && parts[i] === a && parts[i + 1] === b) {
          next.push(a + b);
          i++;
        } else next.push(parts[i]);
      }
      parts = next;
    }
    const ids = parts.map((p) => {
      const id = this.vocab.get(p);
      if (id === undefined) throw new UnsupportedError(`the vocabulary has no token for ${JSON.stringify(p)} (and no unk token)`);
      return id;
    });
    if (this.cache.size < 65536) this.cache.set(word, ids);
    return ids;
  }

  #plain(text, out) {
    const utf8 = new TextEncoder();
    if (this.addPrefixSpace && text.length && !text.startsWith(" ")) text = " " + text;
    for (const m of text.matchAll(GPT2_SPLIT)) {
      const word = Array.from(utf8.encode(m[0]), (b) => BYTE_TO_CHAR[b]).join("");
      out.push(...this.#word(word));
    }
  }

  /** Token ids of `text` (added tokens matched literally first). */
  encode(text) {
    if (typeof text !== "string") throw new InputError(`text to encode must be a string, got ${typeof text}`);
    const out = [];
    let rest = text;
    while (rest.length) {
      let at = -1, hit = null;
      for (const a of this.added) {
        const i = rest.indexOf(a.content);
        if (i >= 0 && (at < 0 || i < at || (i === at && a.content.length > hit.content.length))) {
          at = i;
          hit = a;
        }
      }
      if (at < 0) {
        this.#plain(rest, out);
        break;
      }
      if (at > 0) this.#plain(rest.slice(0, at), out);
      out.push(hit.id);
      rest = rest.slice(at + hit.content.length);
    }
    return out;
  }

  /** Incremental decoder: push(id) -> complete text so far ("" while a character is split); special tokens skipped. */
  stream({ skipSpecialTokens = true } = {}) {
    const dec = new TextDecoder("utf-8");
    const self = this;
    return {
      push(id) {
        if (skipSpecialTokens && self.special.has(id)) return "";
        const t = self.idToToken[id];
        if (t === undefined) throw new InputError(`token id ${id} is not in the vocabulary`);
        const isAdded = self.added.some((a) => a.id === id);
        const bytes = isAdded ? new TextEncoder().encode(t) : Uint8Array.from(Array.from(t), (c) => CHAR_TO_BYTE.get(c) ?? 63);
        return dec.decode(bytes, { stream: true });
      },
      finish() {
        return dec.decode();
      },
    };
  }

  decode(ids, opts = {}) {
    const s = this.stream(opts);
    return ids.map((id) => s.push(id)).join("") + s.finish();
  }
}
