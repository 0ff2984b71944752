"""Tensor bundles on the wire and the canonical bytes whose sha256 the quorum compares.

A bundle is a JSON list, one item per tensor in manifest order:

    [{"name": "x", "dtype": "float32", "shape": [1, 64], "data": "<base64 of raw little-endian C-order>"}]

The canonical bytes of a list of outputs are, for each output in manifest order,

    JSON([name, dtype, shape]) + "\\n" + raw little-endian bytes

(JSON without spaces, as both Python's json.dumps(separators=(",", ":")) and JavaScript's
JSON.stringify write it). Two nodes agree on a task exactly when the sha256 of these bytes is equal;
wasm_torch/net/web/tensors.mjs computes the same bytes in the browser.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from .errors import BadMessage, TooLarge
from .wire import b64d, b64e

DTYPES = ("float32", "int64", "int32", "uint8", "int8", "bool")
MAX_RANK = 8


def encode(named: Sequence[tuple[str, np.ndarray]]) -> list[dict[str, Any]]:
    out = []
    for name, arr in named:
        a = np.ascontiguousarray(arr)
        if a.dtype.name not in DTYPES:
            raise BadMessage(f"tensor {name!r} has dtype {a.dtype}; the network carries {list(DTYPES)}")
        a = a.astype(a.dtype.newbyteorder("<"), copy=False)
        out.append({"name": name, "dtype": a.dtype.name, "shape": list(a.shape), "data": b64e(a.tobytes())})
    return out


def decode(bundle: Any, what: str, max_bytes: int) -> list[tuple[str, np.ndarray]]:
    """Strictly decode a bundle: known dtypes, non-negative int shapes, data length == shape × itemsize,
    at most `max_bytes` of tensor data in total."""
    if not isinstance(bundle, list) or not bundle:
        raise BadMessage(f"{what} must be a non-empty list of tensors")
    if len(bundle) > 64:
        raise BadMessage(f"{what} has {len(bundle)} tensors; at most 64")
    total = 0
    out: list[tuple[str, np.ndarray]] = []
    for i, t in enumerate(bundle):
        if not isinstance(t, dict) or set(t) != {"name", "dtype", "shape", "data"}:
            raise BadMessage(f"{what}[{i}] must have exactly the fields name, dtype, shape, data")
        name, dtype, shape = t["name"], t["dtype"], t["shape"]
        if not isinstance(name, str) or not 0 < len(name) <= 128:
            raise BadMessage(f"{what}[{i}].name must be a non-empty string of at most 128 characters")
        if dtype not in DTYPES:
            raise BadMessage(f"{what}[{i}] ({name}): dtype {dtype!r} is not one of {list(DTYPES)}")
        if (
            not isinstance(shape, list)
            or len(shape) > MAX_RANK
            or not all(isinstance(d, int) and not isinstance(d, bool) and 0 <= d < 2**31 for d in shape)
        ):
            raise BadMessage(f"{what}[{i}] ({name}): shape must be a list of at most {MAX_RANK} ints >= 0")
        dt = np.dtype(dtype).newbyteorder("<")
        n = int(np.prod(shape, dtype=object)) * dt.itemsize
        total += n
        if total > max_bytes:
            raise TooLarge(f"{what}: tensor data over the {max_bytes:,}-byte limit")
        raw = b64d(t["data"], f"{what}[{i}].data", max_bytes)
        if len(raw) != n:
            raise BadMessage(f"{what}[{i}] ({name}): {len(raw)} bytes of data for shape {shape} {dtype} ({n})")
        out.append((name, np.frombuffer(raw, dtype=dt).reshape(shape).astype(dtype, copy=False)))
    return out


def canonical_bytes(named: Sequence[tuple[str, np.ndarray]]) -> bytes:
    parts = []
    for name, arr in named:
        a = np.ascontiguousarray(arr)
        head = json.dumps([name, a.dtype.name, list(a.shape)], separators=(",", ":"))
        parts.append(head.encode() + b"\n" + a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes())
    return b"".join(parts)


def output_hash(named: Sequence[tuple[str, np.ndarray]]) -> str:
    return hashlib.sha256(canonical_bytes(named)).hexdigest()


def nbytes(named: Sequence[tuple[str, np.ndarray]]) -> int:
    return sum(int(a.nbytes) for _, a in named)
