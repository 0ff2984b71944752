"""The binary tensor data extension of KServe v2 REST (what `tritonclient.http` sends by default).

A request with the header `Inference-Header-Content-Length: N` carries a JSON header in its first
N bytes and, after it, the raw bytes of every input whose `parameters.binary_data_size` is set, one
after the other in the order of `inputs` (little-endian, row-major, no padding):

    {"inputs":[{"name":"x","shape":[2,4],"datatype":"FP32","parameters":{"binary_data_size":32}}]}<32 bytes>

Strict: the header value must be ASCII digits within the body; each declared size must equal
shape x element size exactly (a lying size is refused before any byte is read); the sections must
cover the rest of the body exactly (truncated -> 400, bytes left over -> 400). Sections are
consecutive by construction, so they cannot overlap. Every section becomes a read-only
`np.frombuffer` view of the request body, so the bytes are copied once, by the runtime, straight
into the module's linear memory.

Answers: outputs asked for as binary (`binary_data_output` on the request, or `binary_data` on an
output) are sent the same way: `parameters.binary_data_size` in the JSON header, the bytes after it,
and the header's length in `Inference-Header-Content-Length`.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from wasm_torch.serve.errors import RequestError

HEADER = "inference-header-content-length"
_DIGITS = re.compile(r"[0-9]{1,19}")  # ASCII digits only: str.isdigit() also accepts "²"
V2_NAMES = {
    "bool": "BOOL", "uint8": "UINT8", "uint16": "UINT16", "uint32": "UINT32", "uint64": "UINT64",
    "int8": "INT8", "int16": "INT16", "int32": "INT32", "int64": "INT64",
    "float16": "FP16", "float32": "FP32", "float64": "FP64",
}  # fmt: skip


def split_body(body: bytes, header_length: str | None) -> tuple[bytes, memoryview | None]:
    """(JSON header, binary part or None). Without the header the whole body is JSON."""
    if header_length is None:
        return body, None
    text = header_length.strip()
    if not _DIGITS.fullmatch(text):
        raise RequestError(f"the {HEADER} header must be a decimal byte count, got {text[:40]!r}")
    n = int(text)
    if not 0 < n <= len(body):
        raise RequestError(
            f"the {HEADER} header says the JSON header is {n} bytes but the body has {len(body)}; "
            "it must be between 1 and the body's length"
        )
    return body[:n], memoryview(body)[n:]  # the JSON header is copied (small), the tensors are not


def little_endian(dtype: str) -> np.dtype[Any]:
    return np.dtype(dtype).newbyteorder("<")


def binary_sections(
    declared: Sequence[tuple[str, list[int], str, int | None]], binary: memoryview | bytes | None
) -> dict[str, np.ndarray]:
    """Views of the binary part for each (where, shape, dtype, declared size) with a size, in order.

    Every size is checked against its shape before any byte is read, then the sections must tile
    the binary part exactly."""
    wanted = [(w, shape, dtype, size) for w, shape, dtype, size in declared if size is not None]
    if wanted and binary is None:
        raise RequestError(
            f"{wanted[0][0]} declares parameters.binary_data_size but the request has no "
            f"{HEADER} header saying where its JSON ends"
        )
    have = 0 if binary is None else len(binary)
    offset = 0
    plan = []
    for where, shape, dtype, size in wanted:
        dt = little_endian(dtype)
        need = math.prod(shape) * dt.itemsize
        if size != need:
            raise RequestError(
                f"{where}: binary_data_size is {size} bytes but shape {shape} of "
                f"{V2_NAMES.get(dt.name, dt.name)} needs {need}"
            )
        if offset + size > have:
            raise RequestError(
                f"{where}: the binary data is truncated: it needs bytes {offset}..{offset + size} after the "
                f"JSON header, and only {have} arrived"
            )
        plan.append((where, shape, dt, offset))
        offset += size
    if offset != have:
        raise RequestError(
            f"{have - offset} byte(s) after the last binary tensor that no input declared; "
            "each binary input needs parameters.binary_data_size"
        )
    return {
        where: np.frombuffer(binary, dt, math.prod(shape), off).reshape(shape)  # type: ignore[arg-type]
        for where, shape, dt, off in plan
    }


def response_parts(
    head: Mapping[str, Any],
    results: Mapping[str, np.ndarray],
    names: Sequence[str],
    binary: frozenset[str],
    json_data: Any,
) -> tuple[list[bytes | memoryview], int]:
    """The answer with the outputs in `binary` as raw bytes: (parts to join, JSON header length).

    `json_data(name, array) -> list` renders an output that stays JSON (checked finite there)."""
    outputs = []
    blobs: list[bytes | memoryview] = []
    for name in names:
        arr = np.asarray(results[name])
        meta: dict[str, Any] = {
            "name": name,
            "datatype": V2_NAMES.get(arr.dtype.name, arr.dtype.name.upper()),
            "shape": list(arr.shape),
        }
        if name in binary:
            raw = np.ascontiguousarray(arr, dtype=little_endian(arr.dtype.name))
            meta["parameters"] = {"binary_data_size": raw.nbytes}
            blobs.append(memoryview(raw).cast("B"))
        else:
            meta["data"] = json_data(name, arr)
        outputs.append(meta)
    header = json.dumps({**head, "outputs": outputs}, allow_nan=False, separators=(",", ":")).encode()
    return [header, *blobs], len(header)
