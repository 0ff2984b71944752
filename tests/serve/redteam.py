"""A red-team corpus of bad infer requests (each must get a 4xx JSON error) and a benign one.

Models: "mlp" takes x FP32 (batch, 4); "tok" takes input_ids/attention_mask INT64 (batch, seq).
Each case is (label, method, path, content bytes, extra headers).
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator
from typing import Any

Case = tuple[str, str, str, bytes, dict[str, str]]
INFER = "/v2/models/mlp/infer"


def good(rows: int, rng: random.Random) -> dict[str, Any]:
    return {
        "inputs": [
            {
                "name": "x",
                "shape": [rows, 4],
                "datatype": "FP32",
                "data": [round(rng.gauss(0, 1), 4) for _ in range(rows * 4)],
            }
        ]
    }


def _inp(req: dict[str, Any]) -> dict[str, Any]:
    return req["inputs"][0]


def _set(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda r: _inp(r).__setitem__(key, value)


MUTATIONS: dict[str, Callable[[dict[str, Any]], Any]] = {
    # shapes
    "rank_low": lambda r: _inp(r).__setitem__("shape", [len(_inp(r)["data"])]),
    "rank_high": lambda r: _inp(r).__setitem__("shape", [*_inp(r)["shape"], 1]),
    "fixed_dim_wrong": lambda r: _inp(r).__setitem__("shape", [_inp(r)["shape"][0] * 2, 2]),
    "negative_dim": lambda r: _inp(r).__setitem__("shape", [-1, 4]),
    "zero_batch": lambda r: (_inp(r).__setitem__("shape", [0, 4]), _inp(r).__setitem__("data", [])),
    "float_dim": _set("shape", [1.0, 4]),
    "bool_dim": _set("shape", [True, 4]),
    "string_dim": _set("shape", ["1", 4]),
    "shape_not_list": _set("shape", "1x4"),
    "shape_missing": lambda r: _inp(r).pop("shape"),
    "count_mismatch": lambda r: _inp(r)["data"].append(1.0),
    "count_short": lambda r: _inp(r)["data"].pop(),
    "ragged_nested": _set("data", [[1.0, 2.0, 3.0, 4.0], [1.0]]),
    "nested_wrong_shape": _set("data", [[1.0, 2.0], [3.0, 4.0]]),
    # huge declared shapes, small bodies
    "huge_batch": _set("shape", [10**9, 4]),
    "huge_2_40": _set("shape", [2**40, 4]),
    "huge_2_62": _set("shape", [2**62, 4]),
    "huge_int_dim": _set("shape", [10**30, 4]),
    # datatypes and data kinds
    "datatype_fp64": _set("datatype", "FP64"),
    "datatype_int64": _set("datatype", "INT64"),
    "datatype_bytes": _set("datatype", "BYTES"),
    "datatype_unknown": _set("datatype", "FLOAT"),
    "datatype_lower": _set("datatype", "fp32"),
    "datatype_missing": lambda r: _inp(r).pop("datatype"),
    "data_strings": lambda r: _inp(r).__setitem__("data", [str(v) for v in _inp(r)["data"]]),
    "data_bools": lambda r: _inp(r).__setitem__("data", [True] * len(_inp(r)["data"])),
    "data_nulls": lambda r: _inp(r).__setitem__("data", [None] * len(_inp(r)["data"])),
    "data_objects": lambda r: _inp(r).__setitem__("data", [{}] * len(_inp(r)["data"])),
    "data_scalar": _set("data", 1.0),
    "data_missing": lambda r: _inp(r).pop("data"),
    "data_string": _set("data", "AAAA"),
    # protocol
    "no_inputs": lambda r: r.__setitem__("inputs", []),
    "inputs_not_list": lambda r: r.__setitem__("inputs", {"x": 1}),
    "inputs_missing": lambda r: r.pop("inputs"),
    "duplicate_input": lambda r: r["inputs"].append(dict(_inp(r))),
    "unknown_input": _set("name", "y"),
    "name_not_string": _set("name", 7),
    "unknown_field": lambda r: r.__setitem__("__proto__", {"polluted": True}),
    "unknown_input_field": _set("strides", [4, 1]),
    "binary_output_not_bool": lambda r: r.__setitem__("parameters", {"binary_data_output": "yes"}),
    "binary_input": _set("parameters", {"binary_data_size": 16}),  # and data, and no binary part
    "shared_memory": _set("parameters", {"shared_memory_region": "r0", "shared_memory_byte_size": 16}),
    "parameter_object": lambda r: r.__setitem__("parameters", {"priority": {"level": 1}}),
    "id_not_string": lambda r: r.__setitem__("id", 42),
    "id_too_long": lambda r: r.__setitem__("id", "i" * 1000),
    "unknown_output": lambda r: r.__setitem__("outputs", [{"name": "logits"}]),
    "outputs_not_list": lambda r: r.__setitem__("outputs", "y"),
    "parameters_not_object": lambda r: r.__setitem__("parameters", [1]),
}

RAW: dict[str, bytes] = {
    "nan_literal": b'{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":[NaN,1,2,3]}]}',
    "inf_literal": b'{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":[Infinity,1,2,3]}]}',
    "neg_inf_literal": b'{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":[-Infinity,1,2,3]}]}',
    "overflow_literal": b'{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":[1e999,1,2,3]}]}',
    "fp32_overflow": b'{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":[1e39,1,2,3]}]}',
    "deep_array": b"[" * 100_000 + b"]" * 100_000,
    "deep_object": b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
    "deep_data": b'{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":'
    + b"[" * 5000
    + b"1"
    + b"]" * 5000
    + b"}]}",
    "truncated": b'{"inputs":[{"name":"x","shape":[1,4]',
    "trailing_garbage": b'{"inputs":[]} xyz',
    "empty_body": b"",
    "top_level_array": b"[1,2,3]",
    "top_level_string": b'"hello"',
    "top_level_null": b"null",
    "bad_utf8": b'{"inputs":[{"name":"\xff\xfe","shape":[1,4]}]}',
    "utf16_bom": '{"inputs":[]}'.encode("utf-16"),
    "single_quotes": b"{'inputs': []}",
    "comment": b'{"inputs": [] /* hi */}',
}

PATHS = [
    "/v2/models/../../etc/passwd/infer",
    "/v2/models/..%2F..%2Fetc%2Fpasswd/infer",
    "/v2/models/%2e%2e/infer",
    "/v2/models/mlp%00/infer",
    "/v2/models/MLP/infer",
    "/v2/models/" + "a" * 5000 + "/infer",
    "/v2/models/mlp/versions/2/infer",
    "/v2/models/\u00e9t\u00e9/infer",
    "/v2/models/mlp;rm -rf/infer",
    "/v2/models/.mlp/infer",
]


def corpus(seed: int = 0, body_limit: int = 1 << 20) -> Iterator[Case]:
    rng = random.Random(seed)
    for name, mutate in MUTATIONS.items():
        for rows in (1, 2, 3, 5):
            req = good(rows, rng)
            mutate(req)
            yield f"{name}/{rows}", "POST", INFER, json.dumps(req).encode(), {}
    for name, raw in RAW.items():
        yield name, "POST", INFER, raw, {}
    for path in PATHS:
        yield "path:" + path[:40], "POST", path, json.dumps(good(1, rng)).encode(), {}
    # int64 range and wrong kinds on the two-input model
    tok = {
        "inputs": [
            {"name": "input_ids", "shape": [1, 2], "datatype": "INT64", "data": [2**63, 1]},
            {"name": "attention_mask", "shape": [1, 2], "datatype": "INT64", "data": [1, 1]},
        ]
    }
    yield "int64_overflow", "POST", "/v2/models/tok/infer", json.dumps(tok).encode(), {}
    tok["inputs"][0]["data"] = [1.5, 2]
    yield "int_with_floats", "POST", "/v2/models/tok/infer", json.dumps(tok).encode(), {}
    tok["inputs"][0]["data"] = [1, 2]
    tok["inputs"][1]["shape"] = [1, 3]
    yield "inconsistent_seq", "POST", "/v2/models/tok/infer", json.dumps(tok).encode(), {}
    # oversized bodies (declared and real)
    for factor in (1.01, 2, 10):
        size = int(body_limit * factor)
        yield f"oversized_{factor}", "POST", INFER, b"[" + b"1," * (size // 2) + b"1]", {}
    yield "lying_content_length", "POST", INFER, b"{}", {"content-length": str(body_limit * 4)}
    yield "binary_extension_empty_json", "POST", INFER, b"{}", {"inference-header-content-length": "2"}
    yield from binary_corpus()
    yield "wrong_method", "GET", INFER, b"", {}


# --- the binary tensor extension -----------------------------------------------------------------
def binary(head: dict[str, Any], *blobs: bytes, length: str | bytes | None = None) -> tuple[bytes, dict[str, Any]]:
    """A binary-extension request: the JSON header, then the blobs; the header's length unless given."""
    text = json.dumps(head).encode()
    return text + b"".join(blobs), {"inference-header-content-length": length or str(len(text))}


def _x(rows: int, size: int | Any | None = None, **extra: Any) -> dict[str, Any]:
    params = {"binary_data_size": rows * 16 if size is None else size}
    return {"inputs": [{"name": "x", "shape": [rows, 4], "datatype": "FP32", "parameters": params, **extra}]}


def _tok(ids: int, mask: int) -> dict[str, Any]:
    t = [
        {"name": n, "shape": [1, 2], "datatype": "INT64", "parameters": {"binary_data_size": size}}
        for n, size in (("input_ids", ids), ("attention_mask", mask))
    ]
    return {"inputs": t}


F32 = bytes(16)  # one row of 4 zeros
NAN = b"\x00\x00\xc0\x7f" + bytes(12)  # float32 NaN, then zeros
INF = b"\x00\x00\x80\x7f" + bytes(12)
BINARY: dict[str, tuple[bytes, dict[str, Any]]] = {
    # the header's length: not a byte count, zero, past the body, inside the JSON
    **{f"length_{k}": binary(_x(1), F32, length=v) for k, v in
       {"letters": "abc", "negative": "-5", "exponent": "1e3", "blank": " ",
        "hex": "0x10", "zero": "0", "past_body": "100000", "huge": "9" * 30}.items()},
    "length_superscript_byte": binary(_x(1), F32, length=b"\xb2"),  # "²" in latin-1: str.isdigit() says yes
    "length_inside_json": binary(_x(1), F32, length="10"),
    # lying sizes, truncation, leftovers
    "size_short": binary(_x(1, 12), F32),
    "size_long": binary(_x(1, 20), F32 + bytes(4)),
    "truncated": binary(_x(2), F32),
    "trailing_bytes": binary(_x(1), F32 + b"junk"),
    "no_binary_input_but_bytes": binary({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32",
                                                     "data": [0, 0, 0, 0]}]}, F32),
    "size_negative": binary(_x(1, -16), F32),
    "size_bool": binary(_x(1, True), F32),
    "size_float": binary(_x(1, 16.0), F32),
    "size_string": binary(_x(1, "16"), F32),
    "size_huge": binary(_x(1, 2**63), F32),
    "size_and_data": binary(_x(1, data=[0, 0, 0, 0]), F32),
    "size_without_header": (json.dumps(_x(1)).encode() + F32, {}),
    "huge_shape_small_body": binary({"inputs": [{"name": "x", "shape": [10**9, 4], "datatype": "FP32",
                                                 "parameters": {"binary_data_size": 16 * 10**9}}]}, F32),
    # two inputs: sizes swapped, one blob for both (overlap), one missing
    "two_sizes_swapped": binary(_tok(8, 24), bytes(16), bytes(16)),
    "two_share_one_blob": binary(_tok(16, 16), bytes(16)),
    "two_second_cut": binary(_tok(16, 16), bytes(16), bytes(8)),
    # values: non-finite floats, wrong datatype for the bytes
    "nan": binary(_x(1), NAN),
    "inf": binary(_x(1), INF),
    "datatype_int64": binary({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "INT64",
                                          "parameters": {"binary_data_size": 32}}]}, bytes(32)),
    # parameters of the outputs
    "output_binary_not_bool": binary({**_x(1), "outputs": [{"name": "y", "parameters": {"binary_data": 1}}]}, F32),
    "classification": binary({**_x(1), "outputs": [{"name": "y", "parameters": {"classification": 3}}]}, F32),
}  # fmt: skip


def binary_corpus() -> Iterator[Case]:
    for name, (body, headers) in BINARY.items():
        path = "/v2/models/tok/infer" if name.startswith("two_") else INFER
        yield "binary:" + name, "POST", path, body, headers


def benign(n: int = 200, seed: int = 1) -> Iterator[dict[str, Any]]:
    rng = random.Random(seed)
    for i in range(n):
        req = good(rng.randint(1, 8), rng)
        if i % 3 == 0:
            req["id"] = f"b{i}"
        if i % 5 == 0:
            req["outputs"] = [{"name": "y"}]
        yield req
