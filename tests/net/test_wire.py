"""Wire formats: strict JSON, envelopes (signature over the exact payload bytes), tensor bundles and
the canonical output bytes whose sha256 the quorum compares."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from wasm_torch.net import tensors
from wasm_torch.net.errors import BadMessage, BadSignature, TooLarge
from wasm_torch.net.wire import Signer, b64d, b64e, key_id_of, loads_strict, open_envelope

LEASE = {}


def test_strict_json():
    assert loads_strict(b'{"a": [1, 2]}') == {"a": [1, 2]}
    for bad in (b'{"a": NaN}', b'{"a": Infinity}', b'{"a": 1, "a": 2}', b"\xff", b"{", b"[" * 100_000):
        with pytest.raises(BadMessage):
            loads_strict(bad)


def test_base64_must_be_canonical():
    assert b64d(b64e(b"abc"), "x") == b"abc"
    for bad in ("YWJj\n", "YWJ", "YW Jj", "YWJi=", 5, None):
        with pytest.raises(BadMessage):
            b64d(bad, "x")
    with pytest.raises(TooLarge):
        b64d("A" * 400, "x", max_bytes=10)


def test_envelope_round_trip_and_tampering():
    s = Signer.generate()
    env = s.seal({"type": "lease"}, "ed25519:" + "1" * 32)
    e = open_envelope(json.dumps(env).encode(), 10_000, "lease", LEASE)
    e.verify(s.public_raw)
    assert e.sender == s.id == key_id_of(s.public_raw)
    with pytest.raises(BadSignature):
        e.verify(Signer.generate().public_raw)
    forged = dict(env, payload=env["payload"].replace('"lease"', '"lease" '))
    e2 = open_envelope(json.dumps(forged).encode(), 10_000, "lease", LEASE)
    with pytest.raises(BadSignature):
        e2.verify(s.public_raw)
    with pytest.raises(TooLarge):
        open_envelope(json.dumps(env).encode(), 10, "lease", LEASE)
    with pytest.raises(BadMessage, match="expected a 'result'"):
        open_envelope(json.dumps(env).encode(), 10_000, "result", {})
    p = json.loads(env["payload"])
    for change in ({"ts": "1"}, {"ts": True}, {"nonce": "short"}, {"from": "x" * 300}):
        bad = {"payload": json.dumps({**p, **change}), "sig": env["sig"]}
        with pytest.raises(BadMessage):
            open_envelope(json.dumps(bad).encode(), 10_000, "lease", LEASE)


def test_canonical_output_bytes_are_the_documented_layout():
    y = np.arange(6, dtype=np.float32).reshape(2, 3)
    i = np.array([[1, -2]], dtype=np.int64)
    named = [("output_0", y), ("output_1", i)]
    want = b'["output_0","float32",[2,3]]\n' + y.tobytes() + b'["output_1","int64",[1,2]]\n' + i.tobytes()
    assert tensors.canonical_bytes(named) == want
    assert tensors.output_hash(named) == hashlib.sha256(want).hexdigest()
    back = tensors.decode(tensors.encode(named), "t", 1 << 20)
    assert [(n, a.dtype, a.shape) for n, a in back] == [("output_0", np.float32, (2, 3)), ("output_1", np.int64, (1, 2))]
    assert tensors.output_hash(back) == tensors.output_hash(named)
    nan = [("o", np.array([np.nan], np.float32))]
    assert tensors.output_hash(nan) == tensors.output_hash([("o", np.frombuffer(nan[0][1].tobytes(), np.float32))])


@pytest.mark.parametrize(
    "bundle,err",
    [
        ([], BadMessage),
        ("x", BadMessage),
        ([{"name": "x", "dtype": "float32", "shape": [2], "data": b64e(bytes(4))}], BadMessage),
        ([{"name": "x", "dtype": "float16", "shape": [1], "data": b64e(bytes(2))}], BadMessage),
        ([{"name": "x", "dtype": "float32", "shape": [-1], "data": ""}], BadMessage),
        ([{"name": "x", "dtype": "float32", "shape": [True], "data": ""}], BadMessage),
        ([{"name": "x", "dtype": "float32", "shape": [1] * 9, "data": b64e(bytes(4))}], BadMessage),
        ([{"name": "", "dtype": "float32", "shape": [1], "data": b64e(bytes(4))}], BadMessage),
        ([{"name": "x", "dtype": "float32", "shape": [1], "data": b64e(bytes(4)), "more": 1}], BadMessage),
        ([{"name": "x", "dtype": "float32", "shape": [1 << 30], "data": ""}], TooLarge),
        ([{"name": "x", "dtype": "float32", "shape": [1 << 30, 1 << 30], "data": ""}], TooLarge),
    ],
)
def test_hostile_bundles(bundle, err):
    with pytest.raises(err):
        tensors.decode(bundle, "t", 1 << 20)
