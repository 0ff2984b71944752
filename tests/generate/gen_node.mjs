// Test helper: drive wasm-torch-generate.mjs in Node.   node gen_node.mjs job.json  ->  JSON on stdout
// job = {module, bpe, artifact, tokenizer?, greedy: [{prompt, n}], sampled: {prompt, n, opts},
//        logits: [{logits, context, opts}], encode: [text], threads?}
import { readFileSync } from "node:fs";

const job = JSON.parse(readFileSync(process.argv[2], "utf8"));
const { Generator, processLogits } = await import(job.module);
const { BpeTokenizer } = await import(job.bpe);
const out = { greedy: [], errors: {} };
const gen = await Generator.load(job.artifact.endsWith("/") ? job.artifact : job.artifact + "/", { threads: job.threads ?? 1 });
try {
  out.variant = gen.model.variant;
  out.threads = gen.model.threads;
  for (const { prompt, n } of job.greedy) {
    const events = [];
    const ids = await gen.generate(prompt, { maxNewTokens: n, onToken: (t, i) => events.push([t, i, gen.length]) });
    out.greedy.push({ ids, events });
  }
  const s = job.sampled;
  out.sampled = [await gen.generate(s.prompt, { maxNewTokens: s.n, ...s.opts }), await gen.generate(s.prompt, { maxNewTokens: s.n, ...s.opts })];
  out.processed = job.logits.map(({ logits, context, opts }) =>
    Array.from(processLogits(Float64Array.from(logits), context, { doSample: false, temperature: 1, topK: 0, topP: 1, repetitionPenalty: 1, seed: null, ...opts }),
      (v) => (Number.isFinite(v) ? v : null)));
  const tryIt = (name, fn) => {
    try {
      fn();
      out.errors[name] = null;
    } catch (e) {
      out.errors[name] = `${e.name}: ${e.message}`;
    }
  };
  tryIt("overflow", () => gen.stream([1, 2, 3], { maxNewTokens: gen.maxContext }));
  tryIt("bad_id", () => gen.stream([1, gen.vocabSize], { maxNewTokens: 2 }));
  tryIt("negative_id", () => gen.feed([-1]));
  tryIt("float_id", () => gen.feed([1.5]));
  tryIt("empty", () => gen.prefill([]));
  tryIt("text", () => gen.stream("hello", { maxNewTokens: 2 }));
  tryIt("bad_top_p", () => gen.stream([1], { maxNewTokens: 2, topP: 0 }));
  tryIt("unknown_option", () => gen.stream([1], { maxNewTokens: 2, beams: 4 }));
  tryIt("feed_overflow", () => { gen.reset(); gen.feed(Array(gen.maxContext + 1).fill(1)); });
  out.after_errors = await gen.generate(job.greedy[0].prompt, { maxNewTokens: 5 });
  if (job.tokenizer) {
    const tok = BpeTokenizer.fromJSON(JSON.parse(readFileSync(job.tokenizer, "utf8")));
    out.encoded = job.encode.map((t) => tok.encode(t));
    out.decoded = out.greedy.map((g) => tok.decode(g.ids));
    out.streamed = out.greedy.map((g) => { const s = tok.stream(); return g.ids.map((t) => s.push(t)).join("") + s.finish(); });
  }
} finally {
  gen.close();
}
console.log(JSON.stringify(out));
