"""KServe v2 gRPC messages <-> validated numpy inputs and raw answers.

The same checks as REST (`protocol.py`), in the same order, before any compute: known model
inputs, each once; datatype equal to the model's; rank, fixed dims, consistent symbolic dims and
the element budget from the declared shapes *before* the data is touched; then the data:
`raw_input_contents` (one entry per input, exactly shape x element size bytes, little-endian,
viewed without a copy) or the typed `contents` field of the datatype (and no other), with its
element count and integer range checked; floats finite, booleans 0/1; requested outputs known,
each once. Parameters: the shared-memory and classification extensions are refused by name,
other values must be of the protocol's kinds and are ignored.

`decode_infer` is the boundary: any exception raised while validating a message becomes a
`RequestError` (INVALID_ARGUMENT), so no message can produce INTERNAL.

Answers carry every output in `raw_output_contents` (what Triton does and tritonclient reads),
so NaN/Inf, which JSON cannot carry, are returned as they are.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from wasm_torch.serve.binary import little_endian
from wasm_torch.serve.errors import RequestError, ServeError
from wasm_torch.serve.grpc import proto
from wasm_torch.serve.protocol import (
    MAX_ID_CHARS,
    UNSUPPORTED_PARAMETERS,
    V2_FROM_NUMPY,
    InferRequest,
    TensorSpecLike,
    check_datatype,
    check_values,
    match_shapes,
)

log = logging.getLogger("wasm_torch.serve")
# v2 datatype -> the typed `contents` field that carries it
CONTENTS_FIELD = {
    "BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents", "INT32": "int_contents",
    "INT64": "int64_contents", "UINT8": "uint_contents", "UINT16": "uint_contents", "UINT32": "uint_contents",
    "UINT64": "uint64_contents", "FP32": "fp32_contents", "FP64": "fp64_contents",
}  # fmt: skip
ALL_CONTENTS = (*dict.fromkeys(CONTENTS_FIELD.values()), "bytes_contents")
_FIELD_DTYPE = {
    "bool_contents": np.bool_, "int_contents": np.int32, "int64_contents": np.int64,
    "uint_contents": np.uint32, "uint64_contents": np.uint64, "fp32_contents": np.float32,
    "fp64_contents": np.float64,
}  # fmt: skip


def parse(cls: Any, raw: bytes, what: str) -> Any:
    """A message from bytes; malformed bytes are the client's fault (INVALID_ARGUMENT)."""
    try:
        return cls.FromString(raw)
    except Exception as exc:  # protobuf's DecodeError, or anything else a hostile message raises
        raise RequestError(f"the {what} message is not a valid protobuf message: {str(exc)[:100]}") from None


def check_parameters(params: Mapping[str, Any], where: str) -> None:
    for key in params:
        if key in UNSUPPORTED_PARAMETERS:
            raise RequestError(f"{where}.parameters[{key!r}]: {UNSUPPORTED_PARAMETERS[key]}")


def decode_infer(
    msg: Any, inputs: Sequence[TensorSpecLike], outputs: Sequence[TensorSpecLike], max_elements: int
) -> InferRequest:
    """A ModelInferRequest -> validated request, or RequestError (never any other exception)."""
    try:
        return _decode(msg, inputs, outputs, max_elements)
    except ServeError:
        raise
    except Exception as exc:
        log.warning("malformed gRPC request raised %s; answered INVALID_ARGUMENT", type(exc).__name__, exc_info=exc)
        raise RequestError(f"malformed request ({type(exc).__name__}); check it against the v2 schema") from exc


def _decode(
    msg: Any, inputs: Sequence[TensorSpecLike], outputs: Sequence[TensorSpecLike], max_elements: int
) -> InferRequest:
    if len(msg.id) > MAX_ID_CHARS:
        raise RequestError(f"request.id must be at most {MAX_ID_CHARS} characters")
    check_parameters(msg.parameters, "request")
    specs = {s.name: s for s in inputs}
    tensors = list(msg.inputs)
    if len(tensors) != len(specs):
        raise RequestError(f"the model takes {len(specs)} input(s) {list(specs)}, got {len(tensors)}")
    raw = list(msg.raw_input_contents)
    if raw and len(raw) != len(tensors):
        raise RequestError(
            f"raw_input_contents has {len(raw)} entries for {len(tensors)} inputs; give one per input, in order"
        )
    seen: set[str] = set()
    declared: list[tuple[TensorSpecLike, list[int]]] = []
    for i, t in enumerate(tensors):
        if t.name not in specs:
            raise RequestError(f"inputs[{i}].name must be one of {list(specs)}")
        if t.name in seen:
            raise RequestError(f"input {t.name!r} is given more than once")
        seen.add(t.name)
        where = f"input {t.name!r}"
        check_datatype(t.datatype, specs[t.name], where)
        check_parameters(t.parameters, where)
        if raw and t.HasField("contents"):
            raise RequestError(f"{where} has typed contents but the request uses raw_input_contents; use one")
        declared.append((specs[t.name], list(t.shape)))
    symbols = match_shapes(declared, max_elements)
    arrays = {}
    for i, (t, (spec, shape)) in enumerate(zip(tensors, declared, strict=True)):
        where = f"input {spec.name!r}"
        arr = _raw(raw[i], shape, spec.dtype, where) if raw else _typed(t, shape, spec.dtype, where)
        arrays[spec.name] = check_values(arr, spec.dtype, where)
    wanted = _requested(msg.outputs, outputs)
    first = inputs[0].shape[0] if inputs[0].shape else None
    rows = symbols.get(first) if isinstance(first, str) else None
    names = wanted if wanted is not None else [o.name for o in outputs]
    return InferRequest(arrays, msg.id or None, wanted, rows, frozenset(names), True)


def _raw(buf: bytes, shape: list[int], dtype: str, where: str) -> np.ndarray:
    dt = little_endian(dtype)
    need = math.prod(shape) * dt.itemsize
    if len(buf) != need:
        raise RequestError(
            f"{where}: raw_input_contents holds {len(buf)} bytes but shape {shape} of "
            f"{V2_FROM_NUMPY[dtype]} needs {need}"
        )
    return np.frombuffer(buf, dt, math.prod(shape)).reshape(shape)


def _typed(t: Any, shape: list[int], dtype: str, where: str) -> np.ndarray:
    datatype = V2_FROM_NUMPY[dtype]
    field = CONTENTS_FIELD.get(datatype)
    if field is None:
        raise RequestError(f"{where}: {datatype} must be sent in raw_input_contents (no typed contents field)")
    others = [f for f in ALL_CONTENTS if f != field and len(getattr(t.contents, f))]
    if others:
        raise RequestError(f"{where}: {datatype} data goes in contents.{field}, not {others}")
    values = getattr(t.contents, field)
    count = math.prod(shape)
    if len(values) != count:
        raise RequestError(f"{where}: contents.{field} has {len(values)} elements but shape {shape} needs {count}")
    arr = np.array(values, dtype=_FIELD_DTYPE[field])
    target = np.dtype(dtype)
    if target.kind in "iu" and arr.size:
        info = np.iinfo(target)
        if arr.min() < info.min or arr.max() > info.max:
            raise RequestError(f"{where}: contents.{field} has values outside the {datatype} range")
    return arr.astype(target, copy=False).reshape(shape)


def _requested(items: Sequence[Any], outputs: Sequence[TensorSpecLike]) -> list[str] | None:
    if not items:
        return None
    names = [o.name for o in outputs]
    wanted: list[str] = []
    for i, item in enumerate(items):
        if item.name not in names:
            raise RequestError(f"outputs[{i}].name must be one of {names}")
        if item.name in wanted:
            raise RequestError(f"output {item.name!r} is requested more than once")
        check_parameters(item.parameters, f"outputs[{i}]")
        wanted.append(item.name)
    return wanted


def encode_infer(
    model: str, version: str, req: InferRequest, results: Mapping[str, np.ndarray]
) -> Any:
    """The ModelInferResponse: every output in raw_output_contents (little-endian, row-major)."""
    msg = proto.ModelInferResponse(model_name=model, model_version=version, id=req.id or "")
    for name in req.outputs if req.outputs is not None else list(results):
        arr = np.asarray(results[name])
        out = msg.outputs.add(name=name, datatype=V2_FROM_NUMPY.get(arr.dtype.name, arr.dtype.name.upper()))
        out.shape.extend(arr.shape)
        msg.raw_output_contents.append(np.ascontiguousarray(arr, dtype=little_endian(arr.dtype.name)).tobytes())
    return msg


def tensor_metadata(spec: TensorSpecLike, into: Any) -> None:
    into.add(
        name=spec.name,
        datatype=V2_FROM_NUMPY.get(spec.dtype, spec.dtype.upper()),
        shape=[d if isinstance(d, int) else -1 for d in spec.shape],
    )

