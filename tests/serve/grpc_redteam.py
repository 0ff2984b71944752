"""The red-team corpus over gRPC: bad ModelInfer (and other) calls as raw message bytes.

Three sources: every JSON case of `redteam.corpus()` translated into a ModelInferRequest (typed
contents, and again as raw_input_contents) with tritonclient's own message classes, or sent as the
message bytes as they are when it cannot be one (malformed JSON is then a malformed protobuf
message); protobuf-level mutations of a valid message (truncation, flipped and random bytes, lying
length prefixes, deep nesting, fields of the wrong wire type); and protocol cases (lying raw
sizes, raw and typed together, unknown models and versions, shared memory, huge shapes, other RPCs
with garbage). Each case is (label, method, message bytes); every one must be answered with a
non-OK status other than INTERNAL / UNKNOWN / DATA_LOSS.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from typing import Any

import numpy as np
from tritonclient.grpc import service_pb2 as pb

from .redteam import corpus

GCase = tuple[str, str, bytes]
FIELD = {"FP32": "fp32_contents", "FP64": "fp64_contents", "INT64": "int64_contents", "INT32": "int_contents",
         "BOOL": "bool_contents", "UINT8": "uint_contents", "BYTES": "bytes_contents"}  # fmt: skip
NUMPY = {"FP32": np.float32, "FP64": np.float64, "INT64": np.int64, "INT32": np.int32, "BOOL": np.bool_}


def valid(rows: int = 2, seed: int = 0) -> Any:
    x = np.random.default_rng(seed).standard_normal((rows, 4)).astype(np.float32)
    m = pb.ModelInferRequest(model_name="mlp")
    t = m.inputs.add(name="input", datatype="FP32", shape=[rows, 4])
    t.contents.fp32_contents.extend(x.ravel().tolist())
    return m


def _flat(data: Any) -> list[Any]:
    if isinstance(data, list):
        return [v for item in data for v in _flat(item)]
    return [data]


def translate(doc: Any, model: str, raw: bool) -> bytes | None:
    """A JSON infer request as a ModelInferRequest, or None when it cannot be one (values that
    overflow the tensor's type included: numpy raises instead of warning)."""
    try:
        m = pb.ModelInferRequest(model_name=model, id=str(doc.get("id") or "")[:10_000])
        for t in doc["inputs"]:
            name = t["name"].replace("x", "input") if model == "mlp" else t["name"]  # the real mlp's name
            inp = m.inputs.add(name=name, datatype=t.get("datatype", ""), shape=t.get("shape", []))
            values = _flat(t.get("data", []))
            kind = t.get("datatype", "")
            if raw:
                with np.errstate(all="raise"):
                    m.raw_input_contents.append(np.asarray(values, dtype=NUMPY.get(kind, np.float32)).tobytes())
            else:
                getattr(inp.contents, FIELD.get(kind, "fp32_contents")).extend(values)
        for o in doc.get("outputs") or []:
            m.outputs.add(name=o["name"])
        return m.SerializeToString()
    except Exception:  # not representable (a string shape, a 2**63 id, a dict where a list goes, ...)
        return None


def json_cases() -> Iterator[GCase]:
    for label, method, path, content, _ in corpus(body_limit=1 << 20):
        if method != "POST" or "/infer" not in path:
            continue
        model = path.split("/")[3] if path.count("/") >= 4 else "mlp"
        try:
            doc = json.loads(content)
        except (ValueError, RecursionError):
            doc = None
        for raw in (False, True):
            msg = translate(doc, model, raw) if isinstance(doc, dict) else None
            if msg is not None:
                yield f"{label}/{'raw' if raw else 'typed'}", "ModelInfer", msg
        if msg is None and content:
            yield f"{label}/bytes", "ModelInfer", content[: 1 << 20]


def protobuf_mutations(seed: int = 0) -> Iterator[GCase]:
    rng = random.Random(seed)
    good = valid().SerializeToString()
    for cut in range(1, len(good), max(1, len(good) // 12)):
        yield f"truncated_{cut}", "ModelInfer", good[:cut]
    for i in range(40):
        b = bytearray(good)
        for _ in range(rng.randint(1, 6)):
            b[rng.randrange(len(b))] = rng.randrange(256)
        yield f"flipped_{i}", "ModelInfer", bytes(b)
    for i in range(10):
        yield f"random_{i}", "ModelInfer", rng.randbytes(rng.randint(1, 4096))
    yield "length_prefix_lies", "ModelInfer", b"\x0a\xff\xff\xff\xff\x0fmlp"  # model_name of 4 GB
    yield "wrong_wire_type", "ModelInfer", b"\x08\x01" + good  # field 1 (a string) as a varint
    yield "deep_unknown_nesting", "ModelInfer", _nested(200)
    yield "group_tags", "ModelInfer", b"\x0b" * 1000  # start-group tags, never ended
    yield "json_as_protobuf", "ModelInfer", b'{"inputs": []}'


def _nested(depth: int) -> bytes:
    """InferInputTensor.contents nested as unknown submessages `depth` levels deep (field 15)."""
    inner = b""
    for _ in range(depth):
        inner = b"\x7a" + _varint(len(inner)) + inner
    return inner


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def protocol_cases() -> Iterator[GCase]:
    x = np.zeros((2, 4), np.float32)

    def raw(*blobs: bytes, shape: tuple[int, ...] = (2, 4), datatype: str = "FP32", model: str = "mlp") -> bytes:
        m = pb.ModelInferRequest(model_name=model)
        m.inputs.add(name="input", datatype=datatype, shape=shape)
        m.raw_input_contents.extend(blobs)
        return m.SerializeToString()

    yield "raw_short", "ModelInfer", raw(x.tobytes()[:-4])
    yield "raw_long", "ModelInfer", raw(x.tobytes() + b"\0\0\0\0")
    yield "raw_two_for_one_input", "ModelInfer", raw(x.tobytes(), x.tobytes())
    yield "raw_nan", "ModelInfer", raw(np.full((2, 4), np.nan, np.float32).tobytes())
    yield "raw_inf", "ModelInfer", raw(np.full((2, 4), np.inf, np.float32).tobytes())
    yield "raw_huge_shape", "ModelInfer", raw(x.tobytes(), shape=(2**40, 4))
    yield "raw_negative_shape", "ModelInfer", raw(x.tobytes(), shape=(-2, 4))
    yield "raw_int64_for_fp32", "ModelInfer", raw(np.zeros((2, 4), np.int64).tobytes(), datatype="INT64")
    yield "raw_fp16", "ModelInfer", raw(np.zeros((2, 4), np.float16).tobytes(), datatype="FP16")
    yield "raw_bf16", "ModelInfer", raw(bytes(16), datatype="BF16")
    yield "raw_bytes_type", "ModelInfer", raw(b"\x03\0\0\0abc", shape=(1,), datatype="BYTES")
    both = valid()
    both.raw_input_contents.append(x.tobytes())
    yield "raw_and_typed", "ModelInfer", both.SerializeToString()
    wrong = valid()
    wrong.inputs[0].contents.int64_contents.extend([1] * 8)
    yield "typed_two_fields", "ModelInfer", wrong.SerializeToString()
    few = valid()
    del few.inputs[0].contents.fp32_contents[-1]
    yield "typed_count_short", "ModelInfer", few.SerializeToString()
    tok = pb.ModelInferRequest(model_name="tok")
    t = tok.inputs.add(name="input_ids", datatype="INT64", shape=[1, 2])
    t.contents.int64_contents.extend([1, 2])
    yield "tok_wrong_input_name", "ModelInfer", tok.SerializeToString()
    for name, ids in (("tok_id_past_vocabulary", [3, 50]), ("tok_id_negative", [-1, 2]), ("tok_id_huge", [2**62, 1])):
        m = pb.ModelInferRequest(model_name="tok")
        i = m.inputs.add(name="ids", datatype="INT64", shape=[1, 2])
        i.contents.int64_contents.extend(ids)
        yield name, "ModelInfer", m.SerializeToString()
    for name in ("nope", "../mlp", "mlp\x00", "", "m" * 5000, "MLP"):
        m = valid()
        m.model_name = name
        yield f"model_{name[:12]!r}", "ModelInfer", m.SerializeToString()
    v = valid()
    v.model_version = "2"
    yield "version_2", "ModelInfer", v.SerializeToString()
    for key in ("shared_memory_region", "classification"):
        m = valid()
        m.parameters[key].string_param = "r0"
        yield f"parameter_{key}", "ModelInfer", m.SerializeToString()
        m = valid()
        m.outputs.add(name="output_0").parameters[key].int64_param = 3
        yield f"output_parameter_{key}", "ModelInfer", m.SerializeToString()
    twice = valid()
    twice.outputs.add(name="output_0")
    twice.outputs.add(name="output_0")
    yield "output_twice", "ModelInfer", twice.SerializeToString()
    unknown = valid()
    unknown.outputs.add(name="logits")
    yield "output_unknown", "ModelInfer", unknown.SerializeToString()
    long_id = valid()
    long_id.id = "i" * 1000
    yield "id_too_long", "ModelInfer", long_id.SerializeToString()
    # other RPCs
    for method in ("ModelReady", "ModelMetadata", "RepositoryIndex", "RepositoryModelLoad", "RepositoryModelUnload"):
        yield f"{method}_garbage", method, b"\xff\xff\xff"
    yield "ModelMetadata_unknown", "ModelMetadata", pb.ModelMetadataRequest(name="nope").SerializeToString()
    yield "ModelReady_version", "ModelReady", pb.ModelReadyRequest(name="mlp", version="7").SerializeToString()
    load = pb.RepositoryModelLoadRequest(model_name="mlp")
    load.parameters["file:1/model.wasm"].bytes_param = b"\0asm"
    yield "load_with_uploaded_file", "RepositoryModelLoad", load.SerializeToString()
    load = pb.RepositoryModelLoadRequest(model_name="../../etc")
    yield "load_path_name", "RepositoryModelLoad", load.SerializeToString()
    yield "unload_unknown", "RepositoryModelUnload", pb.RepositoryModelUnloadRequest(model_name="nope").SerializeToString()
    yield "unimplemented_ModelConfig", "ModelConfig", pb.ModelConfigRequest(name="mlp").SerializeToString()


def grpc_corpus(seed: int = 0) -> Iterator[GCase]:
    yield from json_cases()
    yield from protobuf_mutations(seed)
    yield from protocol_cases()
