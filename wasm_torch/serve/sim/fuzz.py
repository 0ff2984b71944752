"""A seeded, deterministic HTTP fuzzer for the KServe v2 server: what `bench/fuzz_http.py` sends to a
real `wasm-torch serve` process and `tests/serve/test_serve_fuzz.py` to the in-process app.

    fz = HttpFuzzer(models, seed=0)        # models: {name: metadata as GET /v2/models/{name} gives it}
    for case in fz.cases(20_000): ...      # Case(label, method, path, body, headers)
    for raw in fz.raw_cases(500): ...      # RawCase(label, data, pause_s): bytes for a socket

Cases are drawn from one `random.Random(seed)`, so the same seed and models give the same cases.
About half start from a VALID request for a served model (random rows and sequence lengths, data
in range) and apply 1-3 mutations to its JSON tree (a node replaced by a hostile value: `[]`,
`{}`, a 5,000-digit integer, 1e308, a 40-deep list, a long string, ...; a key deleted, added,
duplicated or renamed; outputs listed 50 times) or to its bytes (flipped, inserted, truncated,
duplicated; a NaN literal; deep brackets); the rest are header mutations (Content-Length that
lies or is not ASCII digits, odd content types, bearer garbage, the binary extension's header), path and
method mutations (unknown models, traversal, versions, every route with the wrong verb) and
random JSON documents. `raw_cases` are byte-level HTTP requests for a socket: malformed request
lines, header floods just under and over typical caps, bodies cut short. The server must answer
every case with a status below 500 (or close the connection, for raw cases). `binary_cases` are
binary-tensor-extension requests, valid and lying (sizes, header length, cut or extra bytes), from a
random stream of their own so that `cases` did not change when they were added.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

Json = Any
# Integers over Python's 4,300-digit str<->int limit cannot even be built here without changing
# interpreter state, so they travel as this placeholder string and are spliced into the bytes.
_BIG = "\x00big-integer\x00"
_BIG_JSON, _BIG_DIGITS = json.dumps(_BIG).encode(), b"9" * 5000
NUMERIC_RANGE = {"BOOL": (0, 1), "UINT8": (0, 255), "INT8": (-128, 127), "INT64": (0, 3), "INT32": (0, 3)}
NUMPY_DTYPES = {"BOOL": "?", "UINT8": "u1", "INT8": "i1", "INT32": "<i4", "INT64": "<i8", "FP16": "<f2",
                "FP32": "<f4", "FP64": "<f8"}  # fmt: skip


@dataclass(frozen=True)
class Case:
    label: str
    method: str
    path: str
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()

    def header_bytes(self) -> list[tuple[bytes, bytes]]:
        """Headers as latin-1 bytes, as they go on the wire (clients refuse non-ASCII str values)."""
        return [(k.encode("latin-1"), v.encode("latin-1")) for k, v in self.headers]


@dataclass(frozen=True)
class RawCase:
    label: str
    data: bytes  # sent as is on a fresh connection (then the socket's write side stays open)
    pause_s: float = 0.0  # wait this long after sending, before reading


def _hostile_values(r: random.Random) -> list[Json]:
    return [
        None, True, False, 0, -1, 1.5, -0.0, 1e308, -1e308, 5e-324, 2**63, -(2**63) - 1, 2**64,
        _BIG, int("9" * 4299), -int("9" * 4299), "", "x" * r.randint(1, 300),
        "FP32", "INT64", "\u0000", "\ud7ff\ue000", "\ud800", "../../etc/passwd", [], {}, [[]], [{}], {"": {}},
        [1] * r.randint(0, 64), [[1, 2], [3]], [[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]],
        {"name": "x"}, {"datatype": []}, {"shape": {}}, [None] * 4, ["1"] * 4, [1.0e39] * 4,
    ]  # fmt: skip


def dumps(doc: Json) -> bytes:
    """JSON bytes of a (possibly hostile) document, with the big-integer placeholders spliced in."""
    return json.dumps(doc).encode().replace(_BIG_JSON, _BIG_DIGITS)


class HttpFuzzer:
    """Seeded request generator over the served models' metadata (see the module doc)."""

    def __init__(self, models: Mapping[str, Mapping[str, Any]], seed: int = 0, token: str | None = None):
        if not models:
            raise ValueError("the fuzzer needs the metadata of at least one served model")
        self.models, self.rng, self.token, self.seed = dict(models), random.Random(seed), token, seed
        self._kinds: list[tuple[float, Callable[[], Case]]] = [
            (0.10, self._valid),
            (0.40, self._tree_mutation),
            (0.15, self._byte_mutation),
            (0.10, self._header_mutation),
            (0.10, self._route_mutation),
            (0.10, self._outputs_mutation),
            (0.05, self._random_document),
        ]

    # --- valid requests ------------------------------------------------------------------------
    def valid_request(self, name: str) -> dict[str, Any]:
        r, meta = self.rng, self.models[name]
        rows, seq = r.randint(1, 4), r.randint(1, 8)
        tensors = []
        for spec in meta["inputs"]:
            shape = [d if d >= 0 else (rows if i == 0 else seq) for i, d in enumerate(spec["shape"])]
            count = 1
            for d in shape:
                count *= d
            dt = spec["datatype"]
            if dt.startswith("FP"):
                data: list[Any] = [round(r.gauss(0, 1), 4) for _ in range(count)]
            else:
                lo, hi = NUMERIC_RANGE.get(dt, (0, 3))
                data = [r.randint(lo, hi) for _ in range(count)]
                if dt == "BOOL":
                    data = [bool(v) for v in data]
            tensors.append({"name": spec["name"], "shape": shape, "datatype": dt, "data": data})
        req: dict[str, Any] = {"inputs": tensors}
        if r.random() < 0.3:
            req["id"] = f"fz-{r.randrange(10**6)}"
        if r.random() < 0.3:
            req["outputs"] = [{"name": o["name"]} for o in meta["outputs"]]
        return req

    def _infer_path(self, name: str) -> str:
        return (
            f"/v2/models/{name}/infer" if self.rng.random() < 0.8 else f"/v2/models/{name}/versions/1/infer"
        )

    def _auth(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.token}"),) if self.token else ()

    def _case(self, label: str, name: str, doc: Json, **kw: Any) -> Case:
        body = kw.pop("body", None)
        if body is None:
            body = dumps(doc)
        headers = (("content-type", "application/json"), *self._auth(), *kw.pop("headers", ()))
        return Case(label, kw.pop("method", "POST"), kw.pop("path", self._infer_path(name)), body, headers)

    def _valid(self) -> Case:
        name = self.rng.choice(sorted(self.models))
        return self._case("valid", name, self.valid_request(name))

    # --- mutations of valid requests ----------------------------------------------------------------
    def _nodes(self, doc: Json, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Json]]:
        yield path, doc
        if isinstance(doc, dict):
            for k, v in doc.items():
                yield from self._nodes(v, (*path, k))
        elif isinstance(doc, list) and len(doc) <= 16:  # do not walk long data arrays element by element
            for i, v in enumerate(doc):
                yield from self._nodes(v, (*path, i))

    def _mutate_tree(self, doc: Json) -> tuple[Json, str]:
        r = self.rng
        nodes = list(self._nodes(doc))
        path, node = r.choice(nodes)
        op = r.choice(["replace", "replace", "replace", "delete", "add", "duplicate", "wrap", "rename"])
        if not path or op == "replace":
            value = r.choice(_hostile_values(r))
            if not path:
                return value, "replace_root"
            parent = self._at(doc, path[:-1])
            parent[path[-1]] = value
            return doc, f"replace:{type(value).__name__}"
        parent = self._at(doc, path[:-1])
        key = path[-1]
        if op == "delete":
            del parent[key]
        elif op == "add" and isinstance(node, dict):
            node[r.choice(["extra", "binary_data", "parameters", "name", "", "__proto__"])] = r.choice(
                _hostile_values(r)
            )
        elif op == "duplicate" and isinstance(node, list) and node:
            node.append(node[r.randrange(len(node))])
        elif op == "wrap":
            parent[key] = [node]
        elif op == "rename" and isinstance(parent, dict):
            parent[str(key).upper() if r.random() < 0.5 else str(key) + "_"] = parent.pop(key)
        else:
            parent[key] = r.choice(_hostile_values(r))
        return doc, op

    @staticmethod
    def _at(doc: Json, path: tuple[Any, ...]) -> Json:
        for key in path:
            doc = doc[key]
        return doc

    def _tree_mutation(self) -> Case:
        name = self.rng.choice(sorted(self.models))
        doc: Json = self.valid_request(name)
        ops = []
        for _ in range(self.rng.randint(1, 3)):
            doc, op = self._mutate_tree(doc)
            ops.append(op)
        return self._case("tree:" + "+".join(ops), name, doc)

    def _byte_mutation(self) -> Case:
        r = self.rng
        name = r.choice(sorted(self.models))
        body = bytearray(json.dumps(self.valid_request(name)).encode())
        op = r.choice(["flip", "insert", "truncate", "duplicate", "nan", "digits", "brackets", "bom", "nul"])
        at = r.randrange(len(body))
        if op == "flip":
            body[at] ^= 1 << r.randrange(8)
        elif op == "insert":
            body[at:at] = bytes(r.randrange(256) for _ in range(r.randint(1, 8)))
        elif op == "truncate":
            del body[at:]
        elif op == "duplicate":
            end = min(len(body), at + r.randint(1, 64))
            body[at:at] = body[at:end]
        elif op == "nan":
            body[at:at] = r.choice([b"NaN,", b"Infinity,", b"-Infinity,", b"1e999,", b"-1e-999,"])
        elif op == "digits":
            body[at:at] = b"9" * r.choice([4300, 4301, 10_000]) + b","
        elif op == "brackets":
            depth = r.choice([33, 200, 5000])
            body[at:at] = b"[" * depth + b"]" * depth + b","
        elif op == "bom":
            body[0:0] = b"\xef\xbb\xbf"
        else:
            body[at:at] = b"\x00"
        return self._case("bytes:" + op, name, None, body=bytes(body))

    def _header_mutation(self) -> Case:
        r = self.rng
        name = r.choice(sorted(self.models))
        body = json.dumps(self.valid_request(name)).encode()
        choices: list[tuple[str, str]] = [
            ("content-length", str(len(body))),  # correct (httpx may add its own: both must agree)
            ("content-type", r.choice(["text/plain", "application/x-www-form-urlencoded", "", "\u00e9"])),
            (
                "authorization",
                r.choice(["Bearer", "Bearer  x", "Basic abc", "Bearer " + "a" * 2000, "bearer x"]),
            ),
            ("inference-header-content-length", r.choice(["0", "12", "x"])),
            ("x-request-id", "\u00ff" * r.randint(1, 100)),
            ("accept", r.choice(["*/*", "text/html", ""])),
            ("expect", "100-continue"),
        ]
        label, value = r.choice(choices)
        headers = ((label, value),)
        return self._case("header:" + label, name, None, body=body, headers=headers)

    def _route_mutation(self) -> Case:
        r = self.rng
        name = r.choice(sorted(self.models))
        body = json.dumps(self.valid_request(name)).encode()
        paths = [
            f"/v2/models/{name}X/infer", "/v2/models/../../etc/passwd/infer", "/v2/models/%2e%2e/infer",
            f"/v2/models/{name}/versions/2/infer", f"/v2/models/{name}%00/infer", "/v2/models//infer",
            "/v2/models/" + "a" * r.randint(100, 3000) + "/infer", f"/v2/models/{name}/infer/",
            f"/v2/models/{name}/ready", f"/v2/models/{name}", f"/v2/models/{name}/stats", "/v2",
            "/v2/health/live", "/v2/health/ready", "/v2/repository/index", "/metrics", "/openapi.json",
            "/docs", "/redoc", f"/v2/models/{name}/infer?x=" + "%" * r.randint(1, 20), "/%ff", "/\u00e9",
        ]  # fmt: skip
        method = r.choice(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"])
        if r.random() < 0.3:
            body = dumps(r.choice(_hostile_values(r)))
        return self._case(f"route:{method}", name, None, body=body, method=method, path=r.choice(paths))

    def _outputs_mutation(self) -> Case:
        r = self.rng
        name = r.choice(sorted(self.models))
        doc = self.valid_request(name)
        outs = [o["name"] for o in self.models[name]["outputs"]]
        kind = r.choice(["dupes", "many", "unknown", "mixed", "empty", "not_list", "params"])
        if kind == "dupes":
            doc["outputs"] = [{"name": outs[0]}] * r.choice([2, 50, 1000])
        elif kind == "many":
            doc["outputs"] = [{"name": f"o{i}"} for i in range(r.choice([10, 10_000]))]
        elif kind == "unknown":
            doc["outputs"] = [{"name": "nope"}]
        elif kind == "mixed":
            doc["outputs"] = [{"name": outs[0]}, {"name": outs[0], "parameters": {"binary_data": True}}]
        elif kind == "empty":
            doc["outputs"] = []
        elif kind == "not_list":
            doc["outputs"] = r.choice([{"name": outs[0]}, outs[0], 1, None])
        else:
            doc["outputs"] = [{"name": outs[0], "parameters": r.choice(_hostile_values(r))}]
        return self._case("outputs:" + kind, name, doc)

    def _random_document(self) -> Case:
        name = self.rng.choice(sorted(self.models))
        return self._case("random", name, self._random_json(4))

    def _random_json(self, depth: int) -> Json:
        r = self.rng
        if depth == 0 or r.random() < 0.3:
            return r.choice(_hostile_values(r))
        if r.random() < 0.5:
            return [self._random_json(depth - 1) for _ in range(r.randint(0, 4))]
        keys = ["inputs", "outputs", "id", "parameters", "name", "shape", "datatype", "data", "x"]
        return {r.choice(keys): self._random_json(depth - 1) for _ in range(r.randint(0, 4))}

    # --- the binary tensor extension (its own random stream: `cases` stays as it was) ---------------
    def binary_request(self, name: str, rng: random.Random) -> tuple[dict[str, Any], list[bytes]]:
        """A valid binary-extension request for `name`: the JSON header and each input's bytes."""
        doc = self.valid_request(name)
        blobs = []
        for t in doc["inputs"]:
            arr = np.asarray(t.pop("data"), dtype=NUMPY_DTYPES.get(t["datatype"], "<f4"))
            blobs.append(arr.tobytes())
            t["parameters"] = {"binary_data_size": len(blobs[-1])}
        if rng.random() < 0.5:
            doc["parameters"] = {"binary_data_output": True}
        return doc, blobs

    def binary_cases(self, n: int) -> Iterator[Case]:
        """Binary-extension requests, valid ones and ones mutated where the extension can lie: the
        header's length, a declared size, the tensor bytes (cut, extended, flipped, swapped, NaN),
        `data` beside a size, the header dropped. Drawn from a stream of their own (seeded from
        this fuzzer's seed), so adding them changed none of `cases`."""
        r = random.Random(self.seed * 7919 + 1)
        sub = HttpFuzzer(self.models, self.seed + 1_000_003, self.token)
        ops = ["valid", "length", "size", "cut", "extend", "flip", "swap", "nan", "data_too", "no_header", "zero_length"]
        for _ in range(n):
            name = r.choice(sorted(self.models))
            doc, blobs = sub.binary_request(name, r)
            op = r.choice(ops)
            if op == "size":
                t = r.choice(doc["inputs"])
                t["parameters"]["binary_data_size"] = r.choice(
                    [0, -1, 1, t["parameters"]["binary_data_size"] + r.choice([-8, -1, 1, 8]), 2**63, True, "8", 1.5]
                )
            elif op == "data_too":
                r.choice(doc["inputs"])["data"] = [0]
            elif op == "swap" and len(blobs) > 1:
                blobs.reverse()
            elif op == "nan":
                blobs[0] = b"\x00\x00\xc0\x7f" + blobs[0][4:]
            head = json.dumps(doc).encode()
            tail = b"".join(blobs)
            if op == "cut":
                tail = tail[: r.randrange(max(1, len(tail)))]
            elif op == "extend":
                tail += bytes(r.randint(1, 16))
            elif op == "flip" and tail:
                at = r.randrange(len(tail))
                tail = tail[:at] + bytes([tail[at] ^ (1 << r.randrange(8))]) + tail[at + 1 :]
            length = str(len(head))
            if op == "length":
                length = r.choice([str(len(head) + r.choice([-3, -1, 1, 5])), "0", str(len(head) + len(tail) + 1), "-1", " 7", "1e2"])
            elif op == "zero_length":
                length = "0"
            headers = (("content-type", "application/octet-stream"), *self._auth())
            if op != "no_header":
                headers = (*headers, ("inference-header-content-length", length))
            yield Case("binary:" + op, "POST", self._infer_path_with(r, name), head + tail, headers)

    @staticmethod
    def _infer_path_with(r: random.Random, name: str) -> str:
        return f"/v2/models/{name}/infer" if r.random() < 0.8 else f"/v2/models/{name}/versions/1/infer"

    # --- drivers --------------------------------------------------------------------------------
    def cases(self, n: int) -> Iterator[Case]:
        weights = [w for w, _ in self._kinds]
        for _ in range(n):
            (make,) = self.rng.choices([m for _, m in self._kinds], weights)
            yield make()

    def raw_cases(self, n: int) -> Iterator[RawCase]:
        """Byte-level HTTP/1.1 requests for a fresh socket each."""
        r = self.rng
        name = sorted(self.models)[0]
        body = json.dumps(self.valid_request(name)).encode()
        host = b"Host: fuzz\r\n"
        makers: list[Callable[[], RawCase]] = [
            lambda: RawCase("garbage_line", bytes(r.randrange(256) for _ in range(r.randint(1, 200))) + b"\r\n\r\n"),
            lambda: RawCase("bad_version", b"POST /v2/models/" + name.encode() + b"/infer HTTP/9.9\r\n" + host + b"\r\n"),
            lambda: RawCase("no_host", b"GET /v2/health/live HTTP/1.1\r\n\r\n"),
            lambda: RawCase("bad_header", b"GET /v2 HTTP/1.1\r\n" + host + b"X: a\x00b\r\n\r\n"),
            lambda: RawCase("cl_twice", b"POST /v2/models/" + name.encode() + b"/infer HTTP/1.1\r\n" + host
                            + b"Content-Length: 1\r\nContent-Length: 2\r\n\r\n{}"),
            lambda: RawCase("cl_and_chunked", b"POST /v2/models/" + name.encode() + b"/infer HTTP/1.1\r\n" + host
                            + b"Content-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n{}"),
            lambda: RawCase("bad_chunk", b"POST /v2/models/" + name.encode() + b"/infer HTTP/1.1\r\n" + host
                            + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n"),
            lambda: RawCase("chunked_ok", b"POST /v2/models/" + name.encode() + b"/infer HTTP/1.1\r\n" + host
                            + b"Transfer-Encoding: chunked\r\n\r\n" + f"{len(body):x}".encode() + b"\r\n" + body
                            + b"\r\n0\r\n\r\n"),
            lambda: RawCase("cl_superscript", b"POST /v2/models/" + name.encode() + b"/infer HTTP/1.1\r\n" + host
                            + b"Content-Length: \xb2\r\n\r\n{}"),
            lambda: RawCase("many_headers", b"GET /v2 HTTP/1.1\r\n" + host
                            + b"".join(b"X-%d: y\r\n" % i for i in range(r.choice([10, 500, 3000]))) + b"\r\n"),
            lambda: RawCase("long_header", b"GET /v2 HTTP/1.1\r\n" + host + b"X: " + b"a" * r.choice([1000, 20_000, 200_000])
                            + b"\r\n\r\n"),
            lambda: RawCase("long_target", b"GET /" + b"a" * r.choice([1000, 20_000, 100_000]) + b" HTTP/1.1\r\n" + host + b"\r\n"),
            lambda: RawCase("pipelined", (b"GET /v2/health/live HTTP/1.1\r\n" + host + b"\r\n") * r.randint(2, 20)),
            lambda: RawCase("http10", b"GET /v2 HTTP/1.0\r\n\r\n"),
        ]  # fmt: skip
        for _ in range(n):
            yield r.choice(makers)()
