"""The manifest sections of a text generator (wasm_torch/generate): `state` and `generator`, strictly.

A generator is an ordinary `wasm-torch/1` artifact — one entry `wt_run(W, A, seq)` that runs T new
tokens (T = the prompt for prefill, 1 for a decode step) — plus two sections:

    "state": [{"name": "caches_0", "dtype": "float32", "shape": [1, 12, 64, 1024], "offset": 1048576}, ...]
    "generator": {"format": "wasm-torch-generator/1", "max_context": 1024, "vocab_size": 50257,
                  "input_ids": "input_ids", "past": "past", "logits": "output_0",
                  "eos_token_ids": [50256], "bos_token_id": 50256, "tokenizer": "tokenizer.json",
                  "model": {...informational...}}

`state` tensors are arena buffers the module reads and updates in place on every call (the KV
cache) and nobody else touches: the host never writes or reads them as inputs or outputs, so they
keep their contents between calls. `check_generation` (called by schema.check_manifest) refuses a
state tensor that is symbolic, leaves the arena or overlaps an input, an output or another state
tensor, and a `generator` section whose names, dtypes, shapes or token ids disagree with the rest
of the manifest. Either both sections are present or neither.
"""

from __future__ import annotations

import itertools
from typing import Any

from .dims import eval_dim
from .layout import MAX_DIM, MAX_TENSORS, NAME_RE

GENERATOR_FORMAT = "wasm-torch-generator/1"
GENERATOR_REQUIRED = {"format", "max_context", "vocab_size", "input_ids", "past", "logits"}
GENERATOR_OPTIONAL = {"eos_token_ids", "bos_token_id", "pad_token_id", "tokenizer", "model"}
MAX_STOP_IDS = 64
ITEMSIZE = {"float32": 4, "int64": 8, "int32": 4, "uint8": 1, "int8": 1, "bool": 1}


def _span(t: dict[str, Any], at_max: dict[str, int]) -> tuple[int, int]:
    n = 1
    for d in t["shape"]:
        n *= eval_dim(d, at_max)
    return t["offset"], t["offset"] + n * ITEMSIZE[t["dtype"]]


def _disjoint(c: Any, state: list[tuple[str, dict[str, Any]]], others: list[tuple[str, dict[str, Any]]],
              syms: list[dict[str, Any]]) -> None:  # fmt: skip
    """No state tensor shares a byte with another state tensor, an input or an output (symbols at
    their max). Inputs and outputs may share bytes with each other, as in any artifact."""
    at_max = {s["name"]: s["max"] for s in syms}
    spans = sorted((*_span(t, at_max), f, True) for f, t in state)
    for (_, end, f1, _), (start, _, f2, _) in itertools.pairwise(spans):
        if start < end:
            raise c.bad(f2, f"overlaps {f1} in the arena (state must have bytes of its own)")
    for f, t in others:
        lo, hi = _span(t, at_max)
        for slo, shi, sf, _ in spans:
            if lo < shi and slo < hi:
                raise c.bad(sf, f"overlaps {f} in the arena (state must have bytes of its own)")


def check_generation(c: Any, raw: dict[str, Any], syms: list[dict[str, Any]], arena: int, tensors: Any,
                     extent: Any) -> None:  # fmt: skip
    """`c`: schema._Ctx; tensors / extent: schema's tensor-list parser and arena-extent check."""
    if ("state" in raw) != ("generator" in raw):
        raise c.bad("state / generator", "must be present together (a generator and its KV cache)")
    if "state" not in raw:
        return
    state = tensors(c, raw["state"], "state", {s["name"] for s in syms})
    if not state:
        raise c.bad("state", "is empty")
    inputs = {t["name"]: t for t in raw["inputs"]}
    outputs = {t["name"]: t for t in raw["outputs"]}
    for i, t in enumerate(state):
        if any(type(d) is not int for d in t["shape"]):
            raise c.bad(f"state[{i}].shape", "must be integers (state does not change size)")
        if t["name"] in inputs or t["name"] in outputs:
            raise c.bad(f"state[{i}].name", f"{t['name']!r} is also an input or output name")
        extent(c, t, f"state[{i}]", syms, arena)
    others = [*((f"inputs[{i}]", t) for i, t in enumerate(raw["inputs"])),
              *((f"outputs[{i}]", t) for i, t in enumerate(raw["outputs"]))]  # fmt: skip
    _disjoint(c, [(f"state[{i}]", t) for i, t in enumerate(state)], others, syms)

    g = c.obj(raw["generator"], "generator", GENERATOR_REQUIRED, GENERATOR_OPTIONAL)
    if g["format"] != GENERATOR_FORMAT:
        raise c.bad("generator.format", f"= {str(g['format'])[:40]!r}, this runtime reads {GENERATOR_FORMAT!r}")
    ctx = c.int_(g["max_context"], "generator.max_context", 1, MAX_DIM)
    vocab = c.int_(g["vocab_size"], "generator.vocab_size", 1, MAX_DIM)
    ids = inputs.get(g["input_ids"]) if isinstance(g["input_ids"], str) else None
    sym = {s["name"]: s for s in syms}
    seq = ids["shape"][1] if ids is not None and len(ids["shape"]) == 2 else None
    if ids is None or ids["dtype"] != "int64" or ids["shape"][0] != 1 or seq not in sym:
        raise c.bad("generator.input_ids", "must name an int64 input of shape [1, seq] with a symbol seq")
    if sym[seq]["min"] != 1 or sym[seq]["max"] != ctx:
        raise c.bad("generator.max_context", f"must equal the max of {seq!r} ({sym[seq]['max']}), whose min must be 1")
    past = inputs.get(g["past"]) if isinstance(g["past"], str) else None
    if past is None or past["dtype"] != "int64" or past["shape"] != [1] or len(inputs) != 2:
        raise c.bad("generator.past", "must name an int64 input of shape [1]; the inputs are input_ids and past")
    logits = outputs.get(g["logits"]) if isinstance(g["logits"], str) else None
    if logits is None or logits["dtype"] != "float32" or logits["shape"] != [1, vocab]:
        raise c.bad("generator.logits", f"must name a float32 output of shape [1, {vocab}]")
    stops = c.list_(g.get("eos_token_ids", []), "generator.eos_token_ids", MAX_STOP_IDS)
    for i, s in enumerate(stops):
        c.int_(s, f"generator.eos_token_ids[{i}]", 0, vocab - 1)
    for k in ("bos_token_id", "pad_token_id"):
        if g.get(k) is not None:
            c.int_(g[k], f"generator.{k}", 0, vocab - 1)
    tok = g.get("tokenizer")
    if tok is not None and (not isinstance(tok, str) or not NAME_RE.match(tok) or tok not in raw["files"]):
        raise c.bad("generator.tokenizer", "must name a file listed in files")
    if "model" in g and not isinstance(g["model"], dict):
        raise c.bad("generator.model", "must be an object")
    if len(state) > MAX_TENSORS:
        raise c.bad("state", f"has more than {MAX_TENSORS} tensors")
