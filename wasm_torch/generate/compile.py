"""`compile_generator`: a Hugging Face causal LM -> one verified generator artifact with a KV cache.

    art = wasm_torch.compile_generator(model, "out/gpt2-gen", max_context=256, tokenizer="path/to/hf-folder")
    gen = wasm_torch.generate.load_generator(art)

Stages (the same compiler as `wasm_torch.compile`, around one traced generation step):

1. trace.py wraps the model as `(input_ids [1, seq], past [1], caches...) -> (logits [1, V], caches'...)`
   with seq in [1, max_context]: prefill and decode step are one entry point at seq = T and 1;
2. torch.export -> IR -> the passes; every attention layer is one `kv_attention` node whose cache
   outputs update its cache inputs in place (OpDef.inplace);
3. the memory plan keeps the caches (graph inputs that are never freed) in bytes of their own in the
   arena, sized for max_context: they persist between calls; C, zig cc, every build variant;
4. the manifest lists input_ids and past as inputs, the logits as the only output, the caches as
   `state` and the `generator` section (artifact/generation.py), plus tokenizer.json when given;
5. validation (validate.py) against the model itself with transformers' own KV cache: a prompt and
   decode steps, logits within atol + rtol·|torch|, every build variant too; only then is the folder
   published to out_dir.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.export import Dim

from ..artifact import (
    Artifact,
    add_manifest_fields,
    check_target,
    file_entry,
    publish,
    read_manifest,
)
from ..artifact.generation import GENERATOR_FORMAT
from ..compiler import multibuild
from ..compiler.codegen import generate_c
from ..compiler.codegen.memory_plan import MemoryPlan, plan_memory
from ..compiler.ir import Graph
from ..compiler.ir.index_inputs import index_inputs
from ..compiler.options import CompileOptions
from ..compiler.pipeline import lower
from ..compiler.write import tensor_spec, write_compiled
from ..config import settings as load_settings
from ..errors import CompileError
from ..version import __version__
from .tokenizer import TOKENIZER_FILE, Tokenizer
from .trace import generation_step
from .validate import validate_generator

INPUT_IDS, PAST, LOGITS = "input_ids", "past", "logits"


def _token_ids(config: Any, key: str, vocab: int) -> list[int]:
    v = getattr(config, key, None)
    vs = v if isinstance(v, (list, tuple)) else [v]
    return sorted({int(x) for x in vs if isinstance(x, int) and not isinstance(x, bool) and 0 <= x < vocab})


def _tokenizer(tokenizer: Any) -> Tokenizer | None:
    if tokenizer is None:
        return None
    if isinstance(tokenizer, Tokenizer):
        return tokenizer
    if isinstance(tokenizer, (str, Path)):
        return Tokenizer.from_file(tokenizer)
    backend = getattr(tokenizer, "backend_tokenizer", None) or getattr(tokenizer, "_tokenizer", None)
    if backend is not None and hasattr(backend, "to_str"):  # a transformers fast tokenizer
        return Tokenizer.from_str(backend.to_str(), type(tokenizer).__name__)
    if hasattr(tokenizer, "to_str"):  # a tokenizers.Tokenizer
        return Tokenizer.from_str(tokenizer.to_str(), type(tokenizer).__name__)
    raise CompileError(
        f"tokenizer: expected a Hugging Face folder or tokenizer.json path, a tokenizers.Tokenizer or a fast "
        f"transformers tokenizer, not {type(tokenizer).__name__}"
    )


def _write(folder: Path, g: Graph, plan: MemoryPlan, wasm: bytes, name: str, options: CompileOptions,
           state: list[str], generator: dict[str, Any]) -> None:  # fmt: skip
    """The generator artifact: ids + cache position in, logits out, the KV cache as its state."""
    state_specs = [tensor_spec(g, plan, v, f"kv_{i // 2}_{'kv'[i % 2]}") for i, v in enumerate(state)]
    model = {**generator.get("model", {}), "layers": len(state) // 2}
    write_compiled(folder, g, plan, wasm, name, options,
                   inputs=[(g.inputs[0], INPUT_IDS), (g.inputs[1], PAST)], outputs=[(g.outputs[0], LOGITS)],
                   extra={"state": [t.to_json() for t in state_specs], "generator": {**generator, "model": model}})  # fmt: skip


def compile_generator(
    model: torch.nn.Module,
    out_dir: str | Path,
    *,
    max_context: int = 256,
    tokenizer: Any = None,
    options: CompileOptions | None = None,
    name: str | None = None,
    validate: bool = True,
    atol: float = 1e-4,
    rtol: float = 1e-3,
    check_steps: int = 8,
    progress: Callable[[str], None] | None = None,
) -> Artifact:
    """Compile a Hugging Face causal LM (GPT2LMHeadModel, LlamaForCausalLM, Qwen2ForCausalLM, ...,
    float32) into a generator artifact at `out_dir` (module docstring).

    max_context: the most tokens one sequence may hold (prompt + generated); the KV cache and the
    arena are planned for it. tokenizer: a Hugging Face folder or tokenizer.json, a tokenizers.Tokenizer
    or a fast transformers tokenizer, copied into the artifact (text in and out). options: the
    compiler's CompileOptions (threads / relaxed build variants included by default). The artifact
    is written only if its logits agree with the model's (with transformers' DynamicCache) on a
    prompt and `check_steps` decode steps within atol + rtol·|torch|; out_dir is replaced only if it
    is new, empty or an earlier artifact.
    """
    step_cb = progress or (lambda s: None)
    options = options or CompileOptions()
    out_dir = Path(out_dir)
    name = name or out_dir.name or type(model).__name__
    check_target(out_dir)
    tok = _tokenizer(tokenizer)
    cfg = load_settings()
    t: dict[str, float] = {}
    t0 = time.perf_counter()
    with generation_step(model, max_context) as step:
        caches = step.empty_caches()
        n = min(8, max_context)
        example = (torch.zeros(1, n, dtype=torch.int64), torch.zeros(1, dtype=torch.int64), *caches)
        dynamic = ({1: Dim("seq", min=1, max=max_context)}, None, tuple(None for _ in caches))
        g = lower(step, example, dynamic, options)
        layers = step.layers
    t["export_and_passes"] = time.perf_counter() - t0
    step_cb("lowered")
    if len(g.inputs) != 2 + len(caches) or len(g.outputs) != 1 + len(caches):
        raise CompileError(f"the traced generation step has inputs {g.inputs} and outputs {g.outputs}")
    vocab = int(g.types[g.outputs[0]].shape[-1])
    t0 = time.perf_counter()
    plan = plan_memory(g)
    c_source = generate_c(g, plan, options, header=f"generated by wasm-torch {__version__} for generator {name}")
    built = multibuild.build(c_source, cfg, options)
    t["plan_codegen_build"] = time.perf_counter() - t0
    step_cb("built")
    gen_config = getattr(model, "generation_config", None)
    eos = _token_ids(gen_config, "eos_token_id", vocab) or _token_ids(model.config, "eos_token_id", vocab)
    bos = (_token_ids(gen_config, "bos_token_id", vocab) or _token_ids(model.config, "bos_token_id", vocab) or [None])[0]
    generator = {
        "format": GENERATOR_FORMAT, "max_context": max_context, "vocab_size": vocab,
        "input_ids": INPUT_IDS, "past": PAST, "logits": LOGITS, "eos_token_ids": eos,
        "model": {"class": type(model).__name__, "model_type": str(getattr(model.config, "model_type", "")),
                  "heads": layers[0].heads, "kv_heads": layers[0].kv_heads, "head_dim": layers[0].head_dim},
    }  # fmt: skip
    if bos is not None:
        generator["bos_token_id"] = bos
    tmp = Path(tempfile.mkdtemp(prefix=".wasm_torch_", dir=out_dir.parent if out_dir.parent.exists() else None))
    try:
        _write(tmp, g, plan, built["simd128"], name, options, list(g.inputs[2:]), generator)
        multibuild.write(tmp, built, options)
        fields: dict[str, Any] = {}
        if indices := {k: v for k, v in index_inputs(g).items() if k == g.inputs[0]}:
            fields["index_inputs"] = {INPUT_IDS: next(iter(indices.values()))}
        if tok is not None:
            (tmp / TOKENIZER_FILE).write_text(tok.to_str(), encoding="utf-8")
            raw = read_manifest(tmp).raw
            fields["files"] = {**raw["files"], TOKENIZER_FILE: file_entry(tmp / TOKENIZER_FILE)}
            fields["generator"] = {**raw["generator"], "tokenizer": TOKENIZER_FILE}
        if fields:
            add_manifest_fields(tmp, fields)
        report: dict[str, Any] = {"timings_s": {k: round(v, 2) for k, v in t.items()}, "ops": g.op_counts(),
                                  "arena_bytes": plan.arena_bytes}  # fmt: skip
        if validate:
            t0 = time.perf_counter()
            report["validation"] = validate_generator(model, tmp, options, atol, rtol, check_steps)
            add_manifest_fields(tmp, {"validation": report["validation"]})
            report["timings_s"]["validate"] = round(time.perf_counter() - t0, 2)
        step_cb("validated")
        publish(tmp, out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return Artifact(out_dir, read_manifest(out_dir), report)
