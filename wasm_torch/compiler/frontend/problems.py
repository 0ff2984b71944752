"""Every reason a model cannot be lowered, gathered in one walk and reported in one error.

The frontend does not stop at the first op it cannot lower: it records the op (how often it occurs,
the first source line), marks what depends on it as unavailable, and goes on, so a user learns
every gap of a model at once. Where a rewrite exists the report says which.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ...errors import UnsupportedOpError

# op (or a kind of fx node) -> the rewrite that avoids it
SUGGESTIONS: dict[str, str] = {
    "cond": "torch.cond: compute both branches as tensors and pick with torch.where(pred, a, b)",
    "get_attr": "a sub-graph (torch.cond / torch.while_loop): compute both branches and pick with torch.where",
    "aten._local_scalar_dense.default": "a tensor read as a Python number (.item(), int(t), `if t:`): keep it a tensor "
    "and select with torch.where(cond, a, b)",
    "aten.item.default": "a tensor read as a Python number (.item(), `if t:`): keep it a tensor and select with torch.where",
    "aten.nonzero.default": "data-dependent output size (nonzero / boolean indexing): keep the full shape and mask "
    "with torch.where",
    "aten.masked_select.default": "data-dependent output size: multiply by the mask or use torch.where instead",
    "aten.unique_dim.default": "data-dependent output size (unique): not expressible with a static memory plan",
    "aten._unique2.default": "data-dependent output size (unique): not expressible with a static memory plan",
    "aten.native_dropout.default": "dropout in training mode: call model.eval() before compiling",
    "aten.bernoulli.p": "random sampling: wasm-torch compiles deterministic inference graphs (call model.eval())",
    "aten.rand.default": "random numbers: pass the noise as an input tensor instead",
    "aten.randn.default": "random numbers: pass the noise as an input tensor instead",
    "aten.upsample_bicubic2d.vec": "bicubic interpolation: use mode='bilinear'",
    "aten.grid_sampler_2d.default": "grid_sample is not supported: for a fixed grid precompute the indices and use gather",
}


@dataclass
class Problem:
    op: str
    count: int
    first_line: str
    reason: str  # what the lowering said ("" when the op has no lowering at all)
    suggestion: str = ""


@dataclass
class Problems:
    items: dict[tuple[str, str], Problem] = field(default_factory=dict)

    def add(self, op: str, line: str, reason: str = "") -> None:
        key = (op, reason)
        if key in self.items:
            self.items[key].count += 1
            return
        self.items[key] = Problem(op, 1, line, reason, SUGGESTIONS.get(op, ""))

    def __bool__(self) -> bool:
        return bool(self.items)

    def error(self, model_name: str, n_supported: int, doc: str) -> UnsupportedOpError:
        lines = [
            f"{model_name} uses {len(self.items)} op{'s' if len(self.items) != 1 else ''} wasm-torch cannot compile "
            "(all of them, each once):"
        ]
        for p in self.items.values():
            what = f"  - {p.op} x{p.count}" + (f" at {p.first_line}" if p.first_line else "")
            lines.append(what)
            lines.append(f"      {p.reason}" if p.reason else "      no lowering for this op")
            if p.suggestion:
                lines.append(f"      rewrite: {p.suggestion}")
        lines.append(f"Supported ops are listed in {doc} ({n_supported} ops).")
        err = UnsupportedOpError("\n".join(lines))
        err.problems = list(self.items.values())  # type: ignore[attr-defined]  # for reports (bench/coverage.py)
        return err
