"""KServe v2 answers: the size bound computed from the output shapes before anything is encoded,
and the encoders — JSON written in chunks (the event loop runs between them) and the binary tensor
extension. `encode_outputs` is the readable reference `encode_response` must equal byte for byte.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np

from wasm_torch.serve.binary import V2_NAMES, response_parts
from wasm_torch.serve.errors import NonFiniteOutput, ResponseTooLarge

MAX_ID_CHARS = 256  # the longest request id accepted (protocol.py) and echoed back
V2_FROM_NUMPY = V2_NAMES


# Longest JSON text of one element per numpy kind, plus its comma: a float is at most
# "-1.2345678901234567e-308" (24 characters), an int64/uint64 at most 20, a bool "false".
_CHARS = {"f": 25, "i": 21, "u": 21, "b": 6}


def response_bytes_bound(
    results: Mapping[str, np.ndarray], wanted: list[str] | None, binary: frozenset[str] = frozenset()
) -> int:
    """An upper bound on the size of the answer, computed from shapes alone (no encoding): JSON
    text for the outputs sent as JSON, their exact byte size for the outputs sent as binary."""
    names = wanted if wanted is not None else list(results)

    def body(n: str) -> int:
        arr = np.asarray(results[n])
        if n in binary:
            return arr.nbytes + 32
        return _CHARS.get(arr.dtype.kind, 32) * arr.size

    return 256 + 6 * MAX_ID_CHARS + sum(200 + 12 * np.ndim(results[n]) + body(n) for n in names)


def check_response_size(
    results: Mapping[str, np.ndarray],
    wanted: list[str] | None,
    limit: int,
    binary: frozenset[str] = frozenset(),
) -> int:
    """The size bound, or ResponseTooLarge before any of it is encoded."""
    bound = response_bytes_bound(results, wanted, binary)
    if bound > limit:
        what = "bytes" if binary else "bytes of JSON"
        raise ResponseTooLarge(
            f"the answer could be up to {bound:,} {what}, over the {limit:,}-byte response limit; "
            "send fewer rows, or request fewer outputs with 'outputs'"
            + ("" if binary else ", or ask for binary outputs (binary_data_output)")
        )
    return bound


def encode_outputs(results: Mapping[str, np.ndarray], wanted: list[str] | None) -> list[dict[str, Any]]:
    """The response's `outputs` as Python objects (the readable reference of `encode_response`)."""
    out = []
    for name in wanted if wanted is not None else list(results):
        arr = _finite(name, results[name])
        out.append(
            {
                "name": name,
                "datatype": V2_FROM_NUMPY.get(arr.dtype.name, arr.dtype.name.upper()),
                "shape": list(arr.shape),
                "data": arr.ravel().tolist(),
            }
        )
    return out


def _finite(name: str, value: np.ndarray) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise NonFiniteOutput(f"output {name!r} contains NaN or Inf, which JSON cannot carry")
    return arr


ENCODE_CHUNK = 1 << 15  # elements per json.dumps call: each call holds the GIL only briefly


def encode_response(
    model: str,
    version: str,
    request_id: str | None,
    results: Mapping[str, np.ndarray],
    wanted: list[str] | None,
) -> bytes:
    """The infer response as JSON bytes, equal to json.dumps of the reference objects but written in
    chunks of ENCODE_CHUNK elements, so a worker thread encoding a big answer lets the event loop
    run between chunks (one json.dumps of millions of numbers would hold the GIL throughout)."""
    head: dict[str, Any] = {"model_name": model, "model_version": version}
    if request_id is not None:
        head["id"] = request_id
    parts = [_dumps(head)[:-1], b',"outputs":[']
    for i, name in enumerate(wanted if wanted is not None else list(results)):
        arr = _finite(name, results[name])
        meta = {"name": name, "datatype": V2_FROM_NUMPY.get(arr.dtype.name, arr.dtype.name.upper()),
                "shape": list(arr.shape)}  # fmt: skip
        parts += [b"," if i else b"", _dumps(meta)[:-1], b',"data":[']
        flat = arr.ravel()
        for j, start in enumerate(range(0, flat.size, ENCODE_CHUNK)):
            chunk = _dumps(flat[start : start + ENCODE_CHUNK].tolist())
            parts += [b"," if j else b"", chunk[1:-1]]
        parts.append(b"]}")
    parts.append(b"]}")
    return b"".join(parts)


def _dumps(value: Any) -> bytes:
    return json.dumps(value, allow_nan=False, separators=(",", ":")).encode()


def encode_binary_response(
    model: str,
    version: str,
    request_id: str | None,
    results: Mapping[str, np.ndarray],
    wanted: list[str] | None,
    binary: frozenset[str],
) -> tuple[bytes, int]:
    """The answer with the outputs in `binary` as raw bytes after the JSON header (binary tensor
    extension): (body, JSON header length for `Inference-Header-Content-Length`). Outputs sent as
    binary may hold NaN/Inf (raw floats carry them); outputs sent as JSON may not."""
    head: dict[str, Any] = {"model_name": model, "model_version": version}
    if request_id is not None:
        head["id"] = request_id
    names = wanted if wanted is not None else list(results)
    parts, header_length = response_parts(
        head, results, names, binary, lambda name, arr: _finite(name, arr).ravel().tolist()
    )
    return b"".join(parts), header_length

