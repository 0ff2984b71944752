"""Shared fixtures. Compiling is the slow part, so compiled artifacts are cached per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory: pytest.TempPathFactory):
    """compile_once(name, model, inputs, dynamic_shapes=None) -> artifact, memoised by name."""
    import wasm_torch

    root: Path = tmp_path_factory.mktemp("artifacts")
    made: dict[str, object] = {}

    def compile_once(name: str, model, inputs, dynamic_shapes=None, **kw):
        if name not in made:
            made[name] = wasm_torch.compile(model, inputs, root / name, dynamic_shapes=dynamic_shapes, **kw)
        return made[name]

    return compile_once
