// wordpiece.mjs: the BERT WordPiece tokenizer (uncased, as all-MiniLM-L6-v2 uses) from a vocab.txt,
// giving the same ids as Hugging Face's BertTokenizer / BertTokenizerFast. No dependencies.
//
//   const tok = WordPiece.fromText(await (await fetch("vocab.txt")).text());
//   const { ids, mask } = tok.encode("Hello world");   // BigInt64Array [CLS] ... [SEP]

const isWhitespace = (c) => c === " " || c === "\t" || c === "\n" || c === "\r" || /\p{Zs}/u.test(c);
const isControl = (c) => c !== "\t" && c !== "\n" && c !== "\r" && /\p{C}/u.test(c);
const isPunct = (c) => {
  const cp = c.codePointAt(0);
  return (cp >= 33 && cp <= 47) || (cp >= 58 && cp <= 64) || (cp >= 91 && cp <= 96) || (cp >= 123 && cp <= 126) ||
    /\p{P}/u.test(c);
};
const isCJK = (cp) =>
  (cp >= 0x4e00 && cp <= 0x9fff) || (cp >= 0x3400 && cp <= 0x4dbf) || (cp >= 0x20000 && cp <= 0x2a6df) ||
  (cp >= 0x2a700 && cp <= 0x2b73f) || (cp >= 0x2b740 && cp <= 0x2b81f) || (cp >= 0x2b820 && cp <= 0x2ceaf) ||
  (cp >= 0xf900 && cp <= 0xfaff) || (cp >= 0x2f800 && cp <= 0x2fa1f);

export class WordPiece {
  /** @param {string[]} tokens vocab in id order @param {{lowercase?: boolean, maxLength?: number}} [opts] */
  constructor(tokens, opts = {}) {
    this.vocab = new Map(tokens.map((t, i) => [t, i]));
    this.tokens = tokens;
    this.lowercase = opts.lowercase ?? true;
    this.maxLength = opts.maxLength ?? 512;
    for (const s of ["[CLS]", "[SEP]", "[UNK]", "[PAD]"]) {
      if (!this.vocab.has(s)) throw new Error(`vocab.txt lacks the special token ${s}`);
    }
  }

  /** @param {string} text contents of vocab.txt, one token per line */
  static fromText(text, opts) {
    const lines = text.split("\n").map((l) => l.replace(/\r$/, ""));
    if (lines.at(-1) === "") lines.pop();
    return new WordPiece(lines, opts);
  }

  /** BasicTokenizer: clean, split CJK, lowercase + strip accents, split on whitespace and punctuation. */
  basic(text) {
    let clean = "";
    for (const c of text.normalize("NFC")) {
      const cp = c.codePointAt(0);
      if (cp === 0 || cp === 0xfffd || isControl(c)) continue;
      clean += isWhitespace(c) ? " " : isCJK(cp) ? ` ${c} ` : c;
    }
    const out = [];
    for (let word of clean.split(" ").filter(Boolean)) {
      if (this.lowercase) word = word.toLowerCase().normalize("NFD").replace(/\p{Mn}/gu, "");
      let cur = "";
      for (const c of word) {
        if (isPunct(c)) {
          if (cur) out.push(cur);
          out.push(c);
          cur = "";
        } else cur += c;
      }
      if (cur) out.push(cur);
    }
    return out;
  }

  /** Greedy longest-match-first WordPiece of one basic token. */
  wordpiece(word) {
    const chars = Array.from(word);
    if (chars.length > 100) return ["[UNK]"];
    const pieces = [];
    for (let start = 0; start < chars.length; ) {
      let end = chars.length;
      let found = null;
      while (start < end) {
        const sub = (start > 0 ? "##" : "") + chars.slice(start, end).join("");
        if (this.vocab.has(sub)) {
          found = sub;
          break;
        }
        end--;
      }
      if (found === null) return ["[UNK]"];
      pieces.push(found);
      start = end;
    }
    return pieces;
  }

  /** @param {string} text @returns {string[]} word pieces without special tokens */
  tokenize(text) {
    return this.basic(text).flatMap((w) => this.wordpiece(w));
  }

  /**
   * [CLS] pieces [SEP], truncated to maxLength; ids and attention mask as BigInt64Array.
   * @param {string} text @param {{maxLength?: number}} [opts]
   */
  encode(text, opts = {}) {
    const max = opts.maxLength ?? this.maxLength;
    const ids = this.tokenize(text).map((t) => this.vocab.get(t)).slice(0, max - 2);
    const all = [this.vocab.get("[CLS]"), ...ids, this.vocab.get("[SEP]")];
    return {
      ids: BigInt64Array.from(all, BigInt),
      mask: new BigInt64Array(all.length).fill(1n),
      tokens: all.map((i) => this.tokens[i]),
    };
  }
}
export default WordPiece;
