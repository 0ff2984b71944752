"""The compiler's search space, read off `wasm_torch.compiler.options` (never a list of our own).

`search_space()` gives {knob: choices}; `CompileOptions.from_choices(point)` turns one point into
options. The default of each knob is found, not assumed: it is the choice that leaves
`CompileOptions()` unchanged. Knobs added to the options later (threads, SIMD variants,
quantization, kernel variants) join the search without a change here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ..errors import LearningError
from .space import Knob, SearchSpace, _jsonable


class CompileSpace(SearchSpace):
    """A SearchSpace over CompileOptions, able to turn a configuration back into options."""

    def __init__(self) -> None:
        from ..compiler import options as opts

        self._options = opts.CompileOptions
        raw = opts.CompileOptions.search_space() if hasattr(opts.CompileOptions, "search_space") else opts.search_space()
        default = opts.CompileOptions()
        self._values: dict[str, dict[str, Any]] = {}  # knob -> JSON text of a choice -> the choice
        knobs = []
        for name, choices in raw.items():
            shown = [_jsonable(c) for c in choices]
            self._values[name] = {json.dumps(j): c for j, c in zip(shown, choices, strict=True)}
            same = [j for j, c in zip(shown, choices, strict=True) if self._build({name: c}) == default]
            if len(same) != 1:
                raise LearningError(
                    f"cannot tell the default of knob {name!r}: {len(same)} of its choices {shown} leave "
                    "CompileOptions() unchanged (expected exactly one)"
                )
            knobs.append(Knob(name, tuple(shown), same[0]))
        super().__init__(knobs)

    def _build(self, point: Mapping[str, Any]) -> Any:
        return self._options.from_choices(dict(point))

    def to_options(self, config: Mapping[str, Any]) -> Any:
        """The CompileOptions for a configuration of this space (defaults for missing knobs)."""
        cfg = self.complete(config)
        return self._build({k: self._values[k][json.dumps(v)] for k, v in cfg.items()})
