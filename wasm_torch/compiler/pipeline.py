"""`lower()` and `compile()`: PyTorch model -> verified wasm artifact. Reads top to bottom as the stages run.

torch.export -> IR -> verify -> passes (each verified) -> memory plan -> C -> zig cc -> wasm
-> write to a temporary folder -> run it against PyTorch -> only then move it to out_dir
"""

from __future__ import annotations

import dataclasses
import functools
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from ..artifact import (
    Artifact,
    add_manifest_fields,
    check_target,
    publish,
    read_manifest,
)
from ..config import settings as load_settings
from ..errors import CompileError, QuantizationError, ValidationError
from ..runtime import WasmModule
from ..version import __version__
from . import multibuild
from .calibration import calibration_samples
from .check import VacuousCheckWarning, compare, reference_outputs, vacuous_message
from .codegen import generate_c
from .codegen.memory_plan import plan_memory
from .frontend import from_torch
from .ir import Graph, format_graph, verify
from .ir.index_inputs import index_inputs
from .options import CompileOptions
from .passes import PASSES
from .passes.quantize import quantize
from .quant_check import AgreementBar, check_agreement
from .write import write_compiled


def _stages(progress: bool | Callable[[str], None]) -> Callable[[str], Any]:
    if callable(progress):
        return progress
    if not progress:
        return lambda name: None
    from tqdm import tqdm

    bar = tqdm(total=8, desc="compile", unit="stage", leave=True)

    def step(name: str) -> None:
        bar.set_postfix_str(name)
        bar.update(1)
        if bar.n >= bar.total:
            bar.close()

    return step


@contextmanager
def _timed(timings: dict[str, float], name: str) -> Iterator[None]:
    t0 = time.perf_counter()
    yield
    timings[name] = round((time.perf_counter() - t0) * 1e3, 1)


@contextmanager
def _keep_mode(model: torch.nn.Module) -> Iterator[None]:
    """torch.export needs eval mode (export.py sets it); give the caller back the train/eval mode of
    every submodule exactly as it was, whatever happens in between."""
    modes = [(m, m.training) for m in model.modules()]
    try:
        yield
    finally:
        for m, training in modes:
            m.training = training  # per module, not .train(): that would recurse into the children


def run_passes(g: Graph, options: CompileOptions, calibration: list[dict[str, Any]] | None = None) -> Graph:
    """The passes `options` selects, in order; each result is verified, so a broken pass is caught
    where it happens. With options.quantize, the weights are quantized right after pack_conv
    (passes/quantize.py; calibration: the int8-static inputs, as calibration.calibration_samples gives them)."""
    for name, run_pass in PASSES:
        if name in options.passes:
            g = run_pass(g)
            verify(g, name)
        if name == "pack_conv" and options.quantize:  # 7-bit GEMM / conv weights for a relaxed build's dot
            g = quantize(g, options.quantize, calibration, seven_bit=options.relaxed)
            verify(g, "quantize")
    return g


def lower(
    model: torch.nn.Module,
    example_inputs: tuple | list | torch.Tensor,
    dynamic_shapes: Any = None,
    options: CompileOptions | None = None,
) -> Graph:
    """torch.export -> core ATen -> our IR -> the passes: the graph that code generation receives."""
    if isinstance(example_inputs, torch.Tensor):
        example_inputs = (example_inputs,)
    with _keep_mode(model):
        g = from_torch(model, tuple(example_inputs), dynamic_shapes)
    verify(g, "frontend")
    return run_passes(g, options or CompileOptions())


def _restores_mode(fn: Callable[..., Any]) -> Callable[..., Any]:
    """compile() traces and checks in eval mode; the caller gets its model's modes back."""

    @functools.wraps(fn)
    def wrapper(model: torch.nn.Module, *args: Any, **kwargs: Any) -> Any:
        with _keep_mode(model):
            return fn(model, *args, **kwargs)

    return wrapper


@_restores_mode
def compile(
    model: torch.nn.Module,
    example_inputs: tuple | list | torch.Tensor,
    out_dir: str | Path,
    *,
    dynamic_shapes: Any = None,
    options: CompileOptions | None = None,
    name: str | None = None,
    atol: float = 1e-4,
    rtol: float = 1e-3,
    validate: bool = True,
    progress: bool | Callable[[str], None] = False,
    stages: Any = None,
    quantize: str | None = None,
    calibration: Any = None,
    min_cosine: float | None = None,
    min_top1: float | None = None,
) -> Artifact:
    """Compile `model` to a wasm artifact folder at `out_dir`, checked against PyTorch first.

    example_inputs: the tensors to trace with (a tuple, or one tensor). dynamic_shapes: torch.export's
    own format, e.g. {"ids": {1: Dim("seq", max=512)}}; every dynamic dim needs a max. options: the
    compiler's choices (`CompileOptions`; the defaults are what we measured to be best). The artifact
    is written only if wasm and PyTorch agree on example_inputs within atol + rtol·|torch| (else
    ValidationError with the max abs and relative errors). stages: an int k (or analyze.PartitionOptions)
    splits the model into k pipeline stages: out_dir gets stage_0..stage_k-1 and pipeline.json.
    When PyTorch's outputs are all within tolerance of zero the check proves little and
    `VacuousCheckWarning` says so. The model is traced and checked in eval mode; every submodule's
    train/eval mode is restored afterwards. out_dir is replaced only if it is new, empty or an earlier
    artifact (never a folder of yours: ArtifactError).

    quantize: "fp16" | "int8" | "int8-static" (the same as CompileOptions(quantize=...)): weights in
    reduced precision (docs/quantization.md); calibration: int8-static's inputs, a list of samples shaped
    like example_inputs. The check against PyTorch is then an agreement bar instead of atol/rtol:
    cosine >= min_cosine (default per format) and, when given, argmax agreement >= min_top1.
    """
    if isinstance(example_inputs, torch.Tensor):
        example_inputs = (example_inputs,)
    example_inputs = tuple(example_inputs)
    options = _with_quantize(options or CompileOptions(), quantize, calibration)
    bar = AgreementBar.for_format(options.quantize, min_cosine, min_top1) if options.quantize else None
    if stages is not None and options.quantize:
        raise CompileError("stages and quantize together are not supported yet: compile the stages in float32")
    out_dir = Path(out_dir)
    name = name or out_dir.name or type(model).__name__
    check_target(out_dir)  # before the work, so an output folder publish() would refuse fails fast
    cfg = load_settings()
    step = _stages(progress)
    t: dict[str, float] = {}

    with _timed(t, "export"):  # torch.export -> core ATen -> our IR
        g = from_torch(model, example_inputs, dynamic_shapes)
        verify(g, "frontend")
    step("export")
    with _timed(t, "passes"):
        samples = calibration_samples(calibration, g) if calibration is not None else None
        g = run_passes(g, options, samples)
    step("passes")
    if stages is not None:  # min-cut pipeline stages, one artifact each (compiler/partition.py)
        from .partition import compile_pipeline

        return compile_pipeline(g, model, example_inputs, out_dir, stages, options=options, name=name,
                                atol=atol, rtol=rtol, validate=validate)
    with _timed(t, "plan"):  # static memory plan: arena offsets reused by liveness, weight offsets
        plan = plan_memory(g)
    step("plan")
    with _timed(t, "codegen"):
        c_source = generate_c(g, plan, options, header=f"generated by wasm-torch {__version__} for {name}")
    step("codegen")
    with _timed(t, "build"):  # zig cc -> wasm32 + SIMD128 (+ threads, relaxed SIMD), cached by content hash
        built = multibuild.build(c_source, cfg, options)
        wasm = built["simd128"]
    step("build")

    tmp = Path(
        tempfile.mkdtemp(prefix=".wasm_torch_", dir=out_dir.parent if out_dir.parent.exists() else None)
    )
    try:
        with _timed(t, "write"):
            write_compiled(tmp, g, plan, wasm, name, options)
            multibuild.write(tmp, built, options)  # model.threads.wasm, model.relaxed.wasm, ... beside it
            if indices := index_inputs(g):  # lets the runtime explain an out-of-range index
                add_manifest_fields(tmp, {"index_inputs": indices})
            if cfg.debug >= 2:  # WASM_TORCH_DEBUG=2: keep the intermediates next to the artifact
                (tmp / "model.c").write_text(c_source)
                (tmp / "graph.txt").write_text(format_graph(g))
        step("write")
        report: dict[str, Any] = {
            "timings_ms": t,
            "ops": g.op_counts(),
            "arena_bytes": plan.arena_bytes,
            "arena_unplanned_bytes": plan.unplanned_bytes,
        }
        if validate:  # refuse to write an artifact that disagrees with PyTorch
            with _timed(t, "validate"):
                report["validation"] = _validate(model, example_inputs, tmp, atol, rtol, bar, options.quantize)
            add_manifest_fields(tmp, {"validation": report["validation"]})
            with _timed(t, "validate_variants"):  # threaded builds bit-identical, relaxed within tolerance
                agree = None if bar is None else (lambda got, want, what: check_agreement(got, want, options.quantize, bar, what))
                multibuild.record(tmp, multibuild.validate(model, example_inputs, tmp, options, atol, rtol, agree))
        step("validate")
        publish(tmp, out_dir)  # replaces out_dir only if it is empty or one of our artifacts
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    step("done")
    return Artifact(out_dir, read_manifest(out_dir), report)


def _with_quantize(options: CompileOptions, quantize: str | None, calibration: Any) -> CompileOptions:
    """options with compile(quantize=...) applied; calibration only with int8-static."""
    if quantize is not None:
        if options.quantize not in (None, quantize):
            raise CompileError(f"quantize={quantize!r} but options.quantize={options.quantize!r}: give one")
        options = dataclasses.replace(options, quantize=quantize)
    if calibration is not None and options.quantize != "int8-static":
        raise QuantizationError(
            f"calibration inputs are used by quantize='int8-static' only (quantize={options.quantize!r}): "
            "pass quantize='int8-static', or leave calibration out"
        )
    return options


def _validate(
    model: torch.nn.Module, inputs: tuple, folder: Path, atol: float, rtol: float,
    bar: AgreementBar | None = None, fmt: str | None = None,
) -> dict[str, Any]:
    want = reference_outputs(model, inputs)
    mod = WasmModule(folder)
    got = mod(*[x.detach().cpu().numpy() for x in inputs])
    got = list(got) if isinstance(got, tuple) else [got]
    if bar is not None and fmt is not None:  # reduced-precision weights: cosine / top-1 instead of atol/rtol
        return check_agreement(got, want, fmt, bar)
    res = compare(got, want, atol, rtol)
    res.update(atol=atol, rtol=rtol)
    if (msg := vacuous_message(res, atol, rtol)) is not None:
        warnings.warn(msg, VacuousCheckWarning, stacklevel=4)
    if not res["ok"]:
        raise ValidationError(
            f"wasm output disagrees with PyTorch beyond atol={atol}, rtol={rtol}: max abs error "
            f"{res['max_abs_err']:.3g} at output scale {res['scale']:.3g} (error relative to scale "
            f"{res['rel_err'] if res['rel_err'] is None else format(res['rel_err'], '.3g')}; max elementwise "
            f"relative error {res['max_rel_err']:.3g}). "
            "The artifact was not written. "
            "If the model is numerically sensitive, pass a larger atol/rtol; otherwise please report a bug."
        )
    return res


__all__ = ["compile", "lower", "run_passes"]
