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

from wasm_torch.serve.answers import (  # the answer's side; these names stay importable from here
    MAX_ID_CHARS,
    check_response_size,
    encode_binary_response,
    encode_outputs,
    encode_response,
    response_bytes_bound,
)
from wasm_torch.serve.binary import V2_NAMES, binary_sections, split_body
from wasm_torch.serve.errors import RequestError, ServeError

log = logging.getLogger("wasm_torch.serve")
V2_FROM_NUMPY = V2_NAMES  # numpy dtype name -> v2 datatype (the one table, in binary.py)
NUMPY_FROM_V2 = {v: k for k, v in V2_FROM_NUMPY.items()}
V2_DATATYPES = frozenset([*NUMPY_FROM_V2, "BYTES", "BF16"])


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
    binary_outputs: frozenset[str] = frozenset()  # outputs to answer as binary data (REST extension)
    binary_default: bool = False  # request-level `binary_data_output`: outputs not named follow it


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
        hint = " (binary tensor data needs the Inference-Header-Content-Length header)" if exc.msg == "Extra data" else ""
        raise RequestError(f"request body is not valid JSON: {exc.msg} at position {exc.pos}{hint}") from exc
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
    header_length: str | None = None,
) -> InferRequest:
    """Bytes -> validated request, or RequestError. Never any other exception (see the module doc).

    `header_length` is the `Inference-Header-Content-Length` header of the binary tensor extension
    (`binary.py`): the first that many bytes are the JSON header, the rest the inputs' raw bytes."""
    try:
        head, tail = split_body(body, header_length)
        return parse_infer_request(loads_strict(head, max_depth), inputs, outputs, max_elements, tail)
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


# Parameters we act on, per place, with their type; every other key must hold a bool, number or
# string (the protocol's parameter values) and is ignored, except the extensions we refuse by name.
REQUEST_PARAMETERS: dict[str, type] = {"binary_data_output": bool}
INPUT_PARAMETERS: dict[str, type] = {"binary_data_size": int}
OUTPUT_PARAMETERS: dict[str, type] = {"binary_data": bool}
UNSUPPORTED_PARAMETERS = {
    "shared_memory_region": "the shared-memory extension is not supported; send the tensor in the request",
    "shared_memory_byte_size": "the shared-memory extension is not supported; send the tensor in the request",
    "shared_memory_offset": "the shared-memory extension is not supported; send the tensor in the request",
    "classification": "the classification extension is not supported; request the raw output",
}


def _parameters(params: Any, where: str, known: Mapping[str, type]) -> dict[str, Any]:
    """The known parameters of `params` (type-checked); unknown ones are checked and ignored."""
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise RequestError(f"{where}.parameters must be an object")
    out: dict[str, Any] = {}
    for key, value in params.items():
        if key in UNSUPPORTED_PARAMETERS:
            raise RequestError(f"{where}.parameters.{key}: {UNSUPPORTED_PARAMETERS[key]}")
        if key in known:
            want = known[key]
            if type(value) is not want or (want is int and value < 0):
                kind = "a boolean" if want is bool else "an integer >= 0"
                raise RequestError(f"{where}.parameters.{key} must be {kind}, got {_shown(value)}")
            out[key] = value
        elif not isinstance(value, bool | int | float | str):
            raise RequestError(f"{where}.parameters.{str(key)[:40]!r} must be a boolean, number or string")
    return out


def _shown(value: Any) -> str:
    text = json.dumps(value) if isinstance(value, bool | int | float | str) else type(value).__name__
    return text[:40]


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
    binary: bytes | memoryview | None = None,
) -> InferRequest:
    """Validate a decoded v2 infer request against the model's specs; numpy arrays out.

    `binary` is the part of the body after the JSON header (binary tensor extension, `binary.py`):
    inputs with `parameters.binary_data_size` take their bytes from it, in order, without a copy."""
    if not isinstance(payload, dict):
        raise RequestError("request body must be a JSON object")
    _check_keys(payload, {"id", "parameters", "inputs", "outputs"}, "request")
    params = _parameters(payload.get("parameters"), "request", REQUEST_PARAMETERS)
    rid = payload.get("id")
    if rid is not None and (not isinstance(rid, str) or len(rid) > MAX_ID_CHARS):
        raise RequestError(f"request.id must be a string of at most {MAX_ID_CHARS} characters")
    tensors = payload.get("inputs")
    if not isinstance(tensors, list) or not tensors:
        raise RequestError("request.inputs must be a non-empty list")
    specs = {s.name: s for s in inputs}
    if len(tensors) != len(specs):
        raise RequestError(f"the model takes {len(specs)} input(s) {list(specs)}, got {len(tensors)}")
    declared: list[tuple[dict[str, Any], TensorSpecLike, list[int], int | None]] = []
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
        check_datatype(tensor.get("datatype"), spec, where)
        size = _parameters(tensor.get("parameters"), where, INPUT_PARAMETERS).get("binary_data_size")
        if size is not None and "data" in tensor:
            raise RequestError(f"{where} has both data and parameters.binary_data_size; send one of them")
        if size is None and "data" not in tensor:
            raise RequestError(f"{where}.data is required (or parameters.binary_data_size with binary data)")
        shape = _shape(tensor.get("shape"), where)
        _match_shape(shape, spec, symbols, where)
        total += math.prod(shape)
        if total > max_elements:
            raise RequestError(f"request declares more than {max_elements} elements")
        declared.append((tensor, spec, shape, size))
    sections = binary_sections(
        [(f"input {spec.name!r}", shape, spec.dtype, size) for _, spec, shape, size in declared], binary
    )
    arrays = {}
    for tensor, spec, shape, size in declared:
        where = f"input {spec.name!r}"
        if size is None:
            arrays[spec.name] = _to_array(tensor["data"], shape, spec.dtype, where)
        else:
            arrays[spec.name] = check_values(sections[where], spec.dtype, where)
    first = inputs[0].shape[0] if inputs[0].shape else None
    rows = symbols.get(first) if isinstance(first, str) else None
    wanted, binary_named = _requested_outputs(payload.get("outputs"), outputs)
    default = params.get("binary_data_output", False)
    names = wanted if wanted is not None else [o.name for o in outputs]
    as_binary = frozenset(n for n in names if binary_named.get(n, default))
    return InferRequest(arrays, rid, wanted, rows, as_binary, default)


def check_datatype(datatype: Any, spec: TensorSpecLike, where: str) -> None:
    """The request's datatype string is a v2 datatype and the model's (also used by gRPC)."""
    want = V2_FROM_NUMPY.get(spec.dtype)
    if not isinstance(datatype, str) or datatype not in V2_DATATYPES:
        shown = datatype if isinstance(datatype, str) else type(datatype).__name__
        raise RequestError(f"{where}.datatype must be a KServe v2 datatype, got {str(shown)[:40]!r}")
    if datatype != want:
        raise RequestError(f"{where}.datatype is {datatype} but the model expects {want}")


def match_shapes(
    shapes: Sequence[tuple[TensorSpecLike, list[int]]], max_elements: int
) -> dict[str, int]:
    """Ranks, fixed dims, consistent symbolic dims and the element budget of declared shapes
    (before any data is touched); returns the symbols' values."""
    symbols: dict[str, int] = {}
    total = 0
    for spec, shape in shapes:
        where = f"input {spec.name!r}"
        _match_shape(_shape(shape, where), spec, symbols, where)
        total += math.prod(shape)
        if total > max_elements:
            raise RequestError(f"request declares more than {max_elements} elements")
    return symbols


def check_values(arr: np.ndarray, dtype: str, where: str) -> np.ndarray:
    """Raw tensor bytes already viewed as `dtype`: the value checks JSON data gets while parsing
    (floats finite; booleans 0 or 1). Returns `arr` itself: no copy."""
    kind = np.dtype(dtype).kind
    if kind == "f" and arr.size and not np.isfinite(arr).all():
        raise RequestError(f"{where} has values that are not finite in {V2_FROM_NUMPY[dtype]}")
    if kind == "b" and arr.size and arr.view(np.uint8).max() > 1:
        raise RequestError(f"{where} has BOOL bytes other than 0 and 1")
    return arr


def _requested_outputs(
    value: Any, outputs: Sequence[TensorSpecLike]
) -> tuple[list[str] | None, dict[str, bool]]:
    """(names, or None for all; each named output's `binary_data` parameter where given)."""
    if value is None:
        return None, {}
    names = [o.name for o in outputs]
    if not isinstance(value, list):
        raise RequestError("request.outputs must be a list")
    if len(value) > len(names):
        raise RequestError(f"request.outputs lists {len(value)} outputs; the model has {len(names)}: {names}")
    wanted: list[str] = []
    binary: dict[str, bool] = {}
    for i, item in enumerate(value):
        name = item.get("name") if isinstance(item, dict) else None
        if not isinstance(name, str) or name not in names:
            raise RequestError(f"outputs[{i}].name must be one of {names}")
        if name in wanted:
            raise RequestError(f"output {name!r} is requested more than once")
        _check_keys(item, {"name", "parameters"}, f"outputs[{i}]")
        flag = _parameters(item.get("parameters"), f"outputs[{i}]", OUTPUT_PARAMETERS).get("binary_data")
        if flag is not None:
            binary[name] = flag
        wanted.append(name)
    return wanted, binary


__all__ = [
    "InferRequest", "check_response_size", "decode_request", "encode_binary_response", "encode_outputs",
    "encode_response", "loads_strict", "parse_infer_request", "response_bytes_bound", "tensor_metadata",
]  # fmt: skip
