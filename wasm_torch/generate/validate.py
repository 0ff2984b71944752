"""Checking a generator artifact against the model it came from, before it is published.

The oracle is the Hugging Face model itself with its own KV cache (`use_cache=True`): a random
prompt, then decode steps fed the token the model itself chose, so both sides see the same ids.
Every call's logits must agree within atol + rtol·|torch| (compiler/check.py's `compare`, the
same rule `wasm_torch.compile` uses) — or, with fp16 / int8 weights (`CompileOptions(quantize=...)`),
reach that format's agreement bar (cosine with PyTorch float32, compiler/quant_check.py). Every build variant runs the same calls: the threaded builds
must reproduce model.wasm bit for bit on 2 threads, the relaxed-SIMD ones agree with torch within
the tolerance (what compiler/multibuild.py requires of a plain artifact).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..compiler.check import compare
from ..compiler.multibuild import VALIDATION_THREADS, variants_of
from ..compiler.options import CompileOptions
from ..compiler.quant_check import AgreementBar, check_agreement
from ..errors import ValidationError
from .generator import Generator


def reference_logits(model: torch.nn.Module, prompt: list[int], steps: int) -> tuple[list[np.ndarray], list[int]]:
    """The model's logits after the prompt and after each of `steps` greedy tokens (transformers' KV cache),
    and those tokens."""
    outs, fed = [], []
    with torch.no_grad():
        out = model(input_ids=torch.tensor([prompt]), use_cache=True)
        for k in range(steps + 1):
            logits = out.logits[0, -1].float().numpy().copy()
            outs.append(logits)
            if k == steps:
                break
            token = int(np.argmax(logits))
            fed.append(token)
            out = model(input_ids=torch.tensor([[token]]), past_key_values=out.past_key_values, use_cache=True)
    return outs, fed


def wasm_logits(gen: Generator, prompt: list[int], fed: list[int]) -> list[np.ndarray]:
    outs = [gen.prefill(prompt)]
    outs += [gen.step(t) for t in fed]
    return outs


def validate_generator(model: torch.nn.Module, folder: Path, options: CompileOptions, atol: float, rtol: float,
                       check_steps: int) -> dict[str, Any]:  # fmt: skip
    """Raises ValidationError (the artifact is then not published); returns the report for the manifest."""
    from ..runtime.variants import engine_features

    model.eval()
    with Generator(folder, threads=1, variant="simd128") as gen:
        n = gen.max_context
        prompt_len = max(1, min(6, n - 1))
        steps = max(0, min(check_steps, n - prompt_len))
        rng = np.random.default_rng(0)
        prompt = [int(x) for x in rng.integers(0, gen.vocab_size, prompt_len)]
        want, fed = reference_logits(model, prompt, steps)
        got = wasm_logits(gen, prompt, fed)
    greedy = [int(np.argmax(g)) for g in got] == [int(np.argmax(w)) for w in want]
    fmt = options.quantize
    if fmt:  # reduced-precision weights: the format's agreement bar (compiler/quant_check.py), not a tolerance
        bar = AgreementBar.for_format(fmt)
        agree = check_agreement(got, want, fmt, bar, "the generator")
        agree.pop("outputs", None)
        report: dict[str, Any] = {**agree, "prompt_tokens": prompt_len, "decode_steps": steps,
                                  "greedy_tokens_agree": greedy}  # fmt: skip
        res = {"ok": True}
    else:
        res = compare(got, want, atol, rtol)
        report = {
            "ok": bool(res["ok"]), "prompt_tokens": prompt_len, "decode_steps": steps,
            "max_abs_err": res["max_abs_err"], "scale": res["scale"], "rel_err": res["rel_err"],
            "max_rel_err": res["max_rel_err"], "atol": atol, "rtol": rtol, "greedy_tokens_agree": greedy,
        }  # fmt: skip
    if not res["ok"]:
        raise ValidationError(
            f"the generator's logits disagree with the model's (transformers' KV cache) beyond atol={atol}, "
            f"rtol={rtol}: max abs error {res['max_abs_err']:.3g} at logit scale {res['scale']:.3g} over a "
            f"{prompt_len}-token prompt and {steps} decode steps. The artifact was not written; please report a bug."
        )
    have = engine_features()
    variants: dict[str, str] = {}
    for v in variants_of(options):
        if v.name == "simd128":
            continue
        if not set(v.features) <= have:
            variants[v.name] = "not checked: this wasmtime lacks " + ", ".join(sorted(set(v.features) - have))
            continue
        threads = VALIDATION_THREADS if v.threads else 1
        with Generator(folder, threads=threads, variant=v.name) as vgen:
            vgot = wasm_logits(vgen, prompt, fed)
        if v.deterministic:
            if not all(a.tobytes() == b.tobytes() for a, b in zip(vgot, got, strict=True)):
                raise ValidationError(
                    f"the {v.name} build on {threads} threads does not reproduce model.wasm's logits bit for bit; "
                    "the artifact was not written. Please report a bug."
                )
            variants[v.name] = f"bit-identical to simd128 on {threads} threads"
        elif fmt:
            vagree = check_agreement(vgot, want, fmt, AgreementBar.for_format(fmt), f"the {v.name} build")
            variants[v.name] = f"cosine vs PyTorch float32 {vagree['cosine']:.6f}"
        else:
            vres = compare(vgot, want, atol, rtol)
            if not vres["ok"]:
                raise ValidationError(
                    f"the {v.name} build disagrees with the model beyond atol={atol}, rtol={rtol} (max abs error "
                    f"{vres['max_abs_err']:.3g}); compile with CompileOptions(relaxed=False) or report a bug"
                )
            variants[v.name] = f"max abs error vs PyTorch {vres['max_abs_err']:.3g}"
    if variants:
        report["variants"] = variants
    return report
