"""Small helpers shared by the mechanism modules (config construction, head reshapes)."""

from __future__ import annotations

from dataclasses import fields
from typing import Any, TypeVar

from torch import Tensor

C = TypeVar("C")


def make_config(cls: type[C], config: C | None, overrides: dict[str, Any]) -> C:
    """Return `config` if given (no overrides allowed), else `cls(**overrides)`."""
    if config is not None:
        if overrides:
            raise TypeError(f"pass either a {cls.__name__} or keyword overrides, not both")
        if not isinstance(config, cls):
            raise TypeError(f"expected {cls.__name__}, got {type(config).__name__}")
        return config
    names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    unknown = set(overrides) - names
    if unknown:
        raise TypeError(f"unknown {cls.__name__} fields: {sorted(unknown)}")
    return cls(**overrides)


def split_heads(x: Tensor, heads: int) -> Tensor:
    """(B, T, H*Dh) -> (B, H, T, Dh)."""
    b, t, d = x.shape
    return x.reshape(b, t, heads, d // heads).transpose(1, 2)  # (B, H, T, Dh)


def merge_heads(x: Tensor) -> Tensor:
    """(B, H, T, Dh) -> (B, T, H*Dh)."""
    b, h, t, dh = x.shape
    return x.transpose(1, 2).reshape(b, t, h * dh)  # (B, T, H*Dh)
