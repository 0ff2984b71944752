"""KServe v2 (Open Inference Protocol) REST shapes: datatypes, metadata, strict request parsing.

Parsing is the guard's first line: every check here runs before any compute and before any
allocation proportional to a *declared* shape (the declared element count is checked against
the model spec and `max_elements` first, the data's real size second).

`decode_request` is the boundary: whatever a body holds, it either returns a validated request or
raises `RequestError` (400). An exception of any other class raised while validating client data
(a `TypeError` from an unhashable value, a `ValueError` from a 5,000-digit integer, ...) is a
malformed request by definition and is translated here, so no body can produce a 500.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from wasm_torch.serve.errors import NonFiniteOutput, RequestError, ResponseTooLarge, ServeError

log = logging.getLogger("wasm_torch.serve")
V2_FROM_NUMPY = {
    "bool": "BOOL",
    "uint8": "UINT8",
    "uint16": "UINT16",
    "uint32": "UINT32",
    "uint64": "UINT64",
    "int8": "INT8",
    "int16": "INT16",
    "int32": "INT32",
    "int64": "INT64",
    "float16": "FP16",
    "float32": "FP32",
    "float64": "FP64",
}
NUMPY_FROM_V2 = {v: k for k, v in V2_FROM_NUMPY.items()}
V2_DATATYPES = frozenset([*NUMPY_FROM_V2, "BYTES", "BF16"])
MAX_ID_CHARS = 256


class TensorSpecLike(Protocol):
    """What the server reads of a tensor spec (read-only: artifact specs are frozen dataclasses)."""

    @property
    def name(self) -> str: ...

    @property
    def dtype(self) -> str: ...

    @property
    def shape(self) -> tuple[int | str, ...]: ...


@dataclass
class InferRequest:
    inputs: dict[str, np.ndarray]
    id: str | None = None
    outputs: list[str] | None = None  # None = all outputs
    rows: int | None = None  # size of the shared symbolic first dim, if any


def tensor_metadata(spec: TensorSpecLike) -> dict[str, Any]:
    return {
        "name": spec.name,
        "datatype": V2_FROM_NUMPY.get(spec.dtype, spec.dtype.upper()),
        "shape": [d if isinstance(d, int) else -1 for d in spec.shape],
    }


def _reject_constant(name: str) -> float:
    raise RequestError(f"non-finite number {name!r} is not valid JSON; send finite numbers only")


_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_OPEN = np.zeros(256, np.int8)
_OPEN[[ord("["), ord("{")]] = 1
_OPEN[[ord("]"), ord("}")]] = -1


def json_depth(body: bytes) -> int:
    """Nesting depth of a VALID JSON document, from its bytes (strings removed first, so brackets
    inside them do not count). Linear: one regex pass and one cumulative sum."""
    if body.count(b"[") + body.count(b"{") <= 1:
        return body.count(b"[") + body.count(b"{")
    bare = _JSON_STRING.sub(b"", body)
    steps = _OPEN[np.frombuffer(bare, np.uint8)]
    return int(np.cumsum(steps, dtype=np.int32).max(initial=0))


def loads_strict(body: bytes, max_depth: int | None = None) -> Any:
    """json.loads that refuses NaN/Infinity literals, bad UTF-8, integers too long to convert
    and nesting deeper than `max_depth` (the envelope of an infer request takes 4 levels)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RequestError("request body is not valid UTF-8") from exc
    try:
        doc = json.loads(text, parse_constant=_reject_constant)
    except RecursionError as exc:
        raise RequestError("request JSON is nested too deeply") from exc
    except json.JSONDecodeError as exc:
        raise RequestError(f"request body is not valid JSON: {exc.msg} at position {exc.pos}") from exc
    except ValueError as exc:  # e.g. an integer literal over Python's 4,300-digit conversion limit
        raise RequestError(f"request body has a number JSON cannot carry here: {str(exc)[:100]}") from exc
    if max_depth is not None and body.count(b"[") + body.count(b"{") > max_depth:
        depth = json_depth(body)
        if depth > max_depth:
            raise RequestError(f"request JSON is nested {depth} levels deep; the limit is {max_depth}")
    return doc


def decode_request(
    body: bytes,
    inputs: Sequence[TensorSpecLike],
    outputs: Sequence[TensorSpecLike],
    max_elements: int,
    max_depth: int | None = None,
) -> InferRequest:
    """Bytes -> validated request, or RequestError. Never any other exception (see the module doc)."""
    try:
        return parse_infer_request(loads_strict(body, max_depth), inputs, outputs, max_elements)
    except ServeError:
        raise
    except Exception as exc:  # a malformed request we had no specific message for: still a 400
        log.warning(
            "malformed request raised %s while parsing; answered 400", type(exc).__name__, exc_info=exc
        )
        raise RequestError(
            f"malformed request ({type(exc).__name__}); check it against the v2 schema"
        ) from exc


def _check_keys(obj: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = set(obj) - allowed
    if unknown:
        raise RequestError(f"{where}: unknown field(s) {sorted(unknown)}; allowed: {sorted(allowed)}")


def _check_parameters(params: Any, where: str) -> None:
    if params is None:
        return
    if not isinstance(params, dict):
        raise RequestError(f"{where}.parameters must be an object")
    for key in ("binary_data", "binary_data_size", "binary_data_output"):
        if params.get(key):
            raise RequestError(f"{where}: the binary tensor extension is not supported; send JSON data")


def _shape(value: Any, where: str) -> list[int]:
    if not isinstance(value, list) or not all(type(d) is int for d in value):
        raise RequestError(f"{where}.shape must be a list of integers")
    if any(d < 0 for d in value):
        raise RequestError(f"{where}.shape has a negative dimension: {value}")
    return value


def _match_shape(shape: list[int], spec: TensorSpecLike, symbols: dict[str, int], where: str) -> None:
    if len(shape) != len(spec.shape):
        raise RequestError(f"{where}: rank {len(shape)} but the model expects shape {list(spec.shape)}")
    for i, (got, want) in enumerate(zip(shape, spec.shape, strict=True)):
        if isinstance(want, int):
            if got != want:
                raise RequestError(f"{where}: dim {i} is {got} but the model expects {want}")
            continue
        if got < 1:
            raise RequestError(f"{where}: dim {i} ({want}) must be at least 1, got {got}")
        if symbols.setdefault(want, got) != got:
            raise RequestError(
                f"{where}: dim {i} ({want}) is {got} but another input has {want}={symbols[want]}"
            )


def _to_array(data: Any, shape: list[int], dtype: str, where: str) -> np.ndarray:
    if not isinstance(data, list):
        if shape == [] and isinstance(data, int | float | bool):
            data = [data]
        else:
            raise RequestError(f"{where}.data must be a (flat or nested) list of numbers")
    try:
        raw = np.array(data)
    except (ValueError, OverflowError, RecursionError) as exc:
        raise RequestError(f"{where}.data is ragged or not numeric: {str(exc)[:120]}") from exc
    kind, target = raw.dtype.kind, np.dtype(dtype)
    ok = {"b": "b", "i": "iu", "u": "iu", "f": "iuf"}[target.kind]
    if kind not in ok:
        got = {"b": "booleans", "i": "integers", "u": "integers", "f": "floats"}.get(kind, "non-numbers")
        raise RequestError(f"{where}.data holds {got} but the datatype is {V2_FROM_NUMPY[dtype]}")
    count = math.prod(shape)
    if raw.size != count:
        raise RequestError(f"{where}.data has {raw.size} elements but shape {shape} needs {count}")
    if raw.ndim > 1 and list(raw.shape) != shape:
        raise RequestError(f"{where}.data is nested as {list(raw.shape)} but shape says {shape}")
    if target.kind in "iu" and raw.size:
        info = np.iinfo(target)
        if raw.min() < info.min or raw.max() > info.max:
            raise RequestError(f"{where}.data has values outside the {V2_FROM_NUMPY[dtype]} range")
    with np.errstate(over="ignore", invalid="ignore"):
        arr = raw.astype(target).reshape(shape)
    if target.kind == "f" and not np.isfinite(arr).all():
        raise RequestError(f"{where}.data has values that are not finite in {V2_FROM_NUMPY[dtype]}")
    return arr


def parse_infer_request(
    payload: Any,
    inputs: Sequence[TensorSpecLike],
    outputs: Sequence[TensorSpecLike],
    max_elements: int,
) -> InferRequest:
    """Validate a decoded v2 infer request against the model's specs; numpy arrays out."""
    if not isinstance(payload, dict):
        raise RequestError("request body must be a JSON object")
    _check_keys(payload, {"id", "parameters", "inputs", "outputs"}, "request")
    _check_parameters(payload.get("parameters"), "request")
    rid = payload.get("id")
    if rid is not None and (not isinstance(rid, str) or len(rid) > MAX_ID_CHARS):
        raise RequestError(f"request.id must be a string of at most {MAX_ID_CHARS} characters")
    tensors = payload.get("inputs")
    if not isinstance(tensors, list) or not tensors:
        raise RequestError("request.inputs must be a non-empty list")
    specs = {s.name: s for s in inputs}
    if len(tensors) != len(specs):
        raise RequestError(f"the model takes {len(specs)} input(s) {list(specs)}, got {len(tensors)}")
    declared: list[tuple[dict[str, Any], TensorSpecLike, list[int]]] = []
    symbols: dict[str, int] = {}
    total = 0
    for i, tensor in enumerate(tensors):
        where = f"inputs[{i}]"
        if not isinstance(tensor, dict):
            raise RequestError(f"{where} must be an object")
        _check_keys(tensor, {"name", "shape", "datatype", "parameters", "data"}, where)
        name = tensor.get("name")
        if not isinstance(name, str) or name not in specs:
            raise RequestError(f"{where}.name must be one of {list(specs)}")
        if any(t is not tensor and isinstance(t, dict) and t.get("name") == name for t in tensors):
            raise RequestError(f"input {name!r} is given more than once")
        where = f"input {name!r}"
        spec = specs[name]
        want = V2_FROM_NUMPY.get(spec.dtype)
        datatype = tensor.get("datatype")
        if not isinstance(datatype, str) or datatype not in V2_DATATYPES:
            shown = datatype if isinstance(datatype, str) else type(datatype).__name__
            raise RequestError(f"{where}.datatype must be a KServe v2 datatype, got {str(shown)[:40]!r}")
        if datatype != want:
            raise RequestError(f"{where}.datatype is {datatype} but the model expects {want}")
        _check_parameters(tensor.get("parameters"), where)
        if "data" not in tensor:
            raise RequestError(f"{where}.data is required")
        shape = _shape(tensor.get("shape"), where)
        _match_shape(shape, spec, symbols, where)
        total += math.prod(shape)
        if total > max_elements:
            raise RequestError(f"request declares more than {max_elements} elements")
        declared.append((tensor, spec, shape))
    arrays = {
        spec.name: _to_array(t["data"], shape, spec.dtype, f"input {spec.name!r}")
        for t, spec, shape in declared
    }
    first = inputs[0].shape[0] if inputs[0].shape else None
    rows = symbols.get(first) if isinstance(first, str) else None
    return InferRequest(arrays, rid, _requested_outputs(payload.get("outputs"), outputs), rows)


def _requested_outputs(value: Any, outputs: Sequence[TensorSpecLike]) -> list[str] | None:
    if value is None:
        return None
    names = [o.name for o in outputs]
    if not isinstance(value, list):
        raise RequestError("request.outputs must be a list")
    if len(value) > len(names):
        raise RequestError(f"request.outputs lists {len(value)} outputs; the model has {len(names)}: {names}")
    wanted: list[str] = []
    for i, item in enumerate(value):
        name = item.get("name") if isinstance(item, dict) else None
        if not isinstance(name, str) or name not in names:
            raise RequestError(f"outputs[{i}].name must be one of {names}")
        if name in wanted:
            raise RequestError(f"output {name!r} is requested more than once")
        _check_keys(item, {"name", "parameters"}, f"outputs[{i}]")
        _check_parameters(item.get("parameters"), f"outputs[{i}]")
        wanted.append(name)
    return wanted


# Longest JSON text of one element per numpy kind, plus its comma: a float is at most
# "-1.2345678901234567e-308" (24 characters), an int64/uint64 at most 20, a bool "false".
_CHARS = {"f": 25, "i": 21, "u": 21, "b": 6}


def response_bytes_bound(results: Mapping[str, np.ndarray], wanted: list[str] | None) -> int:
    """An upper bound on the JSON size of the answer, computed from shapes alone (no encoding)."""
    names = wanted if wanted is not None else list(results)
    return (
        256
        + 6 * MAX_ID_CHARS
        + sum(
            200
            + 12 * np.ndim(results[n])
            + _CHARS.get(np.asarray(results[n]).dtype.kind, 32) * np.size(results[n])
            for n in names
        )
    )


def check_response_size(results: Mapping[str, np.ndarray], wanted: list[str] | None, limit: int) -> int:
    """The size bound, or ResponseTooLarge before any of it is encoded."""
    bound = response_bytes_bound(results, wanted)
    if bound > limit:
        raise ResponseTooLarge(
            f"the answer could be up to {bound:,} bytes of JSON, over the {limit:,}-byte response limit; "
            "send fewer rows, or request fewer outputs with 'outputs'"
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
