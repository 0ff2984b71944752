"""What a task is, computed the same way everywhere: bound shapes, work units and the build variant.

Work units = the floating-point operations the compiler counted from the IR, recorded in the
manifest as `"work": {"flops": <int or dimension expression>}` and evaluated with
wasm_torch.artifact.eval_dim at the task's bound symbols. No timing, no fuel, no self-report: two
hosts (wasmtime in Python, V8 in a browser via evalDim in wasm-torch.mjs) compute the same integer,
so credit can be neither inflated nor disputed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..artifact import Manifest, eval_dim
from ..errors import ArtifactError
from .errors import BadMessage


def pinned_build(manifest: Manifest, variant: str) -> Any:
    """The manifest's build called `variant` (runtime.variants.parse_variants checks the record), which
    must be deterministic: only builds whose results are bit-identical on every host can be compared
    by hash. Relaxed-SIMD builds are not; tasks pin `simd128` (model.wasm), which every artifact has."""
    from ..runtime.variants import parse_variants

    specs = parse_variants(manifest, f"{manifest.name}/manifest.json")
    for s in specs:
        if s.name == variant:
            if not s.deterministic:
                raise BadMessage(f"build {variant!r} of {manifest.name} is not deterministic across hosts")
            return s
    raise BadMessage(f"{manifest.name} has no {variant!r} build (it has {[s.name for s in specs]})")


def bind_shapes(manifest: Manifest, shapes: Mapping[str, Sequence[int]]) -> dict[str, int]:
    """Symbol values from input shapes, with the runtime's checks (rank, fixed sizes, agreeing and
    in-range dynamic sizes, derived sizes), without instantiating anything."""
    names = [s.name for s in manifest.inputs]
    if sorted(shapes) != sorted(names):
        raise BadMessage(f"inputs are {names}, got {sorted(shapes)}")
    sym_names = {s.name for s in manifest.symbols}
    syms: dict[str, int] = {}
    for spec in manifest.inputs:
        got = list(shapes[spec.name])
        if len(got) != len(spec.shape):
            raise BadMessage(f"input {spec.name!r} expects rank {len(spec.shape)} {list(spec.shape)}, got {got}")
        for axis, (want, g) in enumerate(zip(spec.shape, got, strict=True)):
            if isinstance(want, int):
                if want != g:
                    raise BadMessage(f"input {spec.name!r} axis {axis}: {g} != {want}")
            elif want in sym_names and syms.setdefault(want, g) != g:
                raise BadMessage(f"dimension {want!r} is {syms[want]} in one input and {g} in {spec.name!r}")
    for s in manifest.symbols:
        v = syms.get(s.name)
        if v is None or not s.min <= v <= s.max:
            raise BadMessage(f"dimension {s.name!r}={v} is outside the compiled range [{s.min}, {s.max}]")
    for spec in manifest.inputs:
        for want, g in zip(spec.shape, shapes[spec.name], strict=True):
            if isinstance(want, str) and want not in syms and eval_dim(want, syms) != g:
                raise BadMessage(f"input {spec.name!r}: axis size {g} != {want}")
    return syms


def output_shapes(manifest: Manifest, syms: Mapping[str, int]) -> list[tuple[str, str, list[int]]]:
    return [(o.name, o.dtype, [eval_dim(d, dict(syms)) for d in o.shape]) for o in manifest.outputs]


def has_work(manifest: Manifest) -> bool:
    w = manifest.raw.get("work")
    return isinstance(w, dict) and isinstance(w.get("flops"), int | str) and not isinstance(w.get("flops"), bool)


def work_units(manifest: Manifest, syms: Mapping[str, int]) -> int:
    """Counted flops of one run at these symbol values (>= 1)."""
    if not has_work(manifest):
        raise ArtifactError(
            f"{manifest.name}: manifest.json has no work estimate (field work.flops); recompile the model "
            "with a wasm-torch that records it, then sign it again"
        )
    try:
        flops = eval_dim(manifest.raw["work"]["flops"], dict(syms))
    except (ArtifactError, SyntaxError, ZeroDivisionError, RecursionError) as e:
        raise ArtifactError(f"{manifest.name}: work.flops cannot be evaluated: {e}") from None
    return max(1, int(flops))


def describe_inputs(named: Sequence[tuple[str, Any]]) -> dict[str, list[int]]:
    return {n: list(a.shape) for n, a in named}
