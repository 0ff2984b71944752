"""The binary tensor data extension (REST), in process: requests built and answers parsed by
tritonclient's own HTTP codec, equal to the JSON path; mixed binary and JSON tensors; outputs as
binary per request or per output; the bytes viewed without a copy; gzip/deflate bodies; and a
corpus of lying, truncated, overlapping and malformed binary requests that all get a 4xx."""

from __future__ import annotations

import gzip
import json
import zlib

import numpy as np
import pytest
import tritonclient.http as th
from fastapi.testclient import TestClient

from wasm_torch.serve.app import create_app
from wasm_torch.serve.protocol import decode_request
from wasm_torch.serve.settings import ServeSettings

from .fakes import FakeModel, Spec, TokenModel, expected
from .redteam import BINARY, binary

LIMIT = 1 << 20
SETTINGS = ServeSettings(replicas=1, healing=False, max_queue_delay_s=0.001, max_body_bytes=LIMIT)
X = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)


class NanModel(FakeModel):
    def run(self, inputs):
        y = super().run(inputs)
        y["y"][0, 0] = np.nan
        return y


@pytest.fixture(scope="module")
def client():
    models = {
        "mlp": FakeModel,
        "tok": TokenModel,
        "half": lambda: FakeModel([Spec("x", "float16", ("batch", 4))]),
        "flags": lambda: FakeModel([Spec("x", "bool", ("batch", 4))]),
        "nan": NanModel,
    }
    with TestClient(create_app(models, SETTINGS, seed=0)) as c:
        yield c


def post(client, model: str, inputs, outputs=None, **kw):
    """POST a request made by tritonclient's codec; the answer parsed by it too."""
    body, json_size = th.InferenceServerClient.generate_request_body(inputs, outputs=outputs, **kw)
    headers = {} if json_size is None else {"Inference-Header-Content-Length": str(json_size)}
    r = client.post(f"/v2/models/{model}/infer", content=body, headers=headers)
    assert r.status_code == 200, r.text
    length = r.headers.get("inference-header-content-length")
    return r, th.InferenceServerClient.parse_response_body(r.content, header_length=int(length) if length else None)


def x_input(x: np.ndarray, binary_data: bool = True, dtype: str = "FP32") -> th.InferInput:
    i = th.InferInput("x", list(x.shape), dtype)
    i.set_data_from_numpy(x, binary_data=binary_data)
    return i


@pytest.mark.parametrize("binary_in", [True, False])
@pytest.mark.parametrize("binary_out", [True, False])
def test_tritonclient_codec_binary_on_and_off_gives_the_json_answer(client, binary_in, binary_out):
    outputs = [th.InferRequestedOutput("y", binary_data=binary_out)]
    r, result = post(client, "mlp", [x_input(X, binary_in)], outputs)
    np.testing.assert_array_equal(result.as_numpy("y"), expected(X))
    assert ("inference-header-content-length" in r.headers) == binary_out
    assert r.headers["content-type"].startswith("application/octet-stream" if binary_out else "application/json")
    plain = client.post("/v2/models/mlp/infer", json={"inputs": [
        {"name": "x", "shape": [3, 4], "datatype": "FP32", "data": X.ravel().tolist()}]})  # fmt: skip
    np.testing.assert_array_equal(np.asarray(plain.json()["outputs"][0]["data"], np.float32).reshape(3, 3), expected(X))


def test_default_request_asks_for_every_output_in_binary(client):
    """tritonclient without `outputs` sets binary_data_output: every output comes back raw."""
    r, result = post(client, "mlp", [x_input(X)])
    head = json.loads(r.content[: int(r.headers["inference-header-content-length"])])
    assert head["outputs"][0]["parameters"] == {"binary_data_size": 3 * 3 * 4} and "data" not in head["outputs"][0]
    np.testing.assert_array_equal(result.as_numpy("y"), expected(X))


def test_an_output_can_opt_out_of_the_requests_binary_default(client):
    ids = np.array([[1, 2, 3]], np.int64)
    mask = np.array([[1, 1, 0]], np.int64)
    a = th.InferInput("input_ids", [1, 3], "INT64")
    a.set_data_from_numpy(ids)  # binary
    b = th.InferInput("attention_mask", [1, 3], "INT64")
    b.set_data_from_numpy(mask, binary_data=False)  # JSON, in the same request
    r, result = post(client, "tok", [a, b], [th.InferRequestedOutput("emb", binary_data=False)])
    assert "inference-header-content-length" not in r.headers
    np.testing.assert_array_equal(result.as_numpy("emb"), [[3.0, 6.0, 9.0]])


def test_fp16_and_bool_inputs_travel_as_raw_bytes(client):
    h = X.astype(np.float16)
    _, result = post(client, "half", [x_input(h, dtype="FP16")])
    np.testing.assert_array_equal(result.as_numpy("y"), expected(h.astype(np.float32)))
    flags = X > 0
    _, result = post(client, "flags", [x_input(flags, dtype="BOOL")])
    np.testing.assert_array_equal(result.as_numpy("y"), expected(flags.astype(np.float32)))
    bad, headers = binary({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "BOOL",
                                       "parameters": {"binary_data_size": 4}}]}, b"\x00\x01\x02\x01")  # fmt: skip
    r = client.post("/v2/models/flags/infer", content=bad, headers=headers)
    assert r.status_code == 400 and "BOOL" in r.json()["error"]


def test_binary_tensors_are_views_of_the_request_body_not_copies():
    body, headers = binary({"inputs": [{"name": "x", "shape": [3, 4], "datatype": "FP32",
                                        "parameters": {"binary_data_size": 48}}]}, X.tobytes())  # fmt: skip
    spec = FakeModel().inputs
    req = decode_request(body, spec, [], 1 << 20, 32, headers["inference-header-content-length"])
    x = req.inputs["x"]
    np.testing.assert_array_equal(x, X)
    assert np.shares_memory(x, np.frombuffer(body, np.uint8)) and not x.flags.writeable


def test_nan_outputs_travel_in_binary_but_are_refused_as_json(client):
    _, result = post(client, "nan", [x_input(X)])
    assert np.isnan(result.as_numpy("y")[0, 0])
    body, n = th.InferenceServerClient.generate_request_body(
        [x_input(X)], outputs=[th.InferRequestedOutput("y", binary_data=False)]
    )
    r = client.post("/v2/models/nan/infer", content=body, headers={"Inference-Header-Content-Length": str(n)})
    assert r.status_code == 422 and "NaN" in r.json()["error"]


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_compressed_bodies_are_inflated_within_the_body_limit(client, encoding):
    body, n = th.InferenceServerClient.generate_request_body([x_input(X)])
    packed = gzip.compress(body) if encoding == "gzip" else zlib.compress(body)
    headers = {"Content-Encoding": encoding, "Inference-Header-Content-Length": str(n)}
    r = client.post("/v2/models/mlp/infer", content=packed, headers=headers)
    assert r.status_code == 200, r.text
    bomb = gzip.compress(b" " * (4 * LIMIT)) if encoding == "gzip" else zlib.compress(b" " * (4 * LIMIT))
    assert len(bomb) < LIMIT // 50  # small on the wire, 4x the limit inflated
    r = client.post("/v2/models/mlp/infer", content=bomb, headers={"Content-Encoding": encoding})
    assert r.status_code == 413 and "decompresses" in r.json()["error"]
    r = client.post("/v2/models/mlp/infer", content=packed[:-7], headers=headers)
    assert r.status_code == 400
    r = client.post("/v2/models/mlp/infer", content=b"not compressed", headers=headers)
    assert r.status_code == 400 and encoding in r.json()["error"]


def test_unknown_content_encoding_is_415(client):
    r = client.post("/v2/models/mlp/infer", content=b"{}", headers={"Content-Encoding": "br"})
    assert r.status_code == 415 and "gzip" in r.json()["error"]


WHY = {  # what the error names, for the main kinds of lie
    "length_letters": "inference-header-content-length", "length_zero": "between 1 and the body",
    "length_past_body": "between 1 and the body", "size_short": "needs 16", "size_long": "needs 16",
    "truncated": "truncated", "trailing_bytes": "after the last binary tensor", "size_negative": "integer >= 0",
    "size_bool": "integer >= 0", "size_and_data": "both data", "size_without_header": "needs the inference-header-content-length",
    "two_sizes_swapped": "needs 16", "two_share_one_blob": "truncated", "two_second_cut": "truncated",
    "nan": "not finite", "inf": "not finite", "datatype_int64": "expects FP32",
    "classification": "classification extension", "output_binary_not_bool": "must be a boolean",
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(BINARY))
def test_hostile_binary_requests_get_a_4xx_naming_the_problem(client, name):
    body, headers = BINARY[name]
    path = "/v2/models/tok/infer" if name.startswith("two_") else "/v2/models/mlp/infer"
    r = client.post(path, content=body, headers=headers)
    assert 400 <= r.status_code < 500, (name, r.status_code, r.text[:200])
    assert isinstance(r.json()["error"], str) and r.json()["error"]
    assert WHY.get(name, "").lower() in r.json()["error"].lower(), (name, r.json()["error"])


def test_after_the_hostile_corpus_the_server_serves_and_counted_no_5xx(client):
    for name, (body, headers) in BINARY.items():
        client.post("/v2/models/tok/infer" if name.startswith("two_") else "/v2/models/mlp/infer",
                    content=body, headers=headers)  # fmt: skip
    _, result = post(client, "mlp", [x_input(X)])
    np.testing.assert_array_equal(result.as_numpy("y"), expected(X))
    assert 'code="5' not in client.get("/metrics").text


def test_lying_sizes_are_refused_before_any_byte_is_read():
    """The declared size is checked against the shape first: a 16 GB claim with 16 bytes of body
    is a clear 400 about the size, not an allocation."""
    body, headers = BINARY["huge_shape_small_body"]
    with pytest.raises(Exception, match="more than"):
        decode_request(body, FakeModel().inputs, [], 1 << 22, 32, headers["inference-header-content-length"])
    body, headers = BINARY["size_short"]
    with pytest.raises(Exception, match="needs 16"):
        decode_request(body, FakeModel().inputs, [], 1 << 22, 32, headers["inference-header-content-length"])


class ImageModel(FakeModel):
    """(batch, 3, 224, 224) FP32 -> (batch, 3): the mean of each channel."""

    def __init__(self) -> None:
        super().__init__([Spec("images", "float32", ("batch", 3, 224, 224))], [Spec("means", "float32", ("batch", 3))])

    def run(self, inputs):
        self._check(inputs)
        return {"means": inputs["images"].mean(axis=(2, 3), dtype=np.float64).astype(np.float32)}


def test_a_16_image_batch_over_8_mib_passes_with_a_raised_per_model_limit():
    """16 x 3 x 224 x 224 FP32 = 9.6 MB of binary data: 413 under the 8 MiB default, 200 for the
    model whose limit is raised in `model_settings` (REST binary and gRPC alike)."""
    import socket

    import tritonclient.grpc as tg

    images = np.random.default_rng(1).random((16, 3, 224, 224), dtype=np.float32)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = ServeSettings(replicas=1, healing=False, grpc_port=port,
                             model_settings={"big": {"max_body_bytes": 32 << 20}})  # fmt: skip
    with TestClient(create_app({"small": ImageModel, "big": ImageModel}, settings, seed=0)) as c:
        i = th.InferInput("images", list(images.shape), "FP32")
        i.set_data_from_numpy(images)
        body, n = th.InferenceServerClient.generate_request_body([i])
        headers = {"Inference-Header-Content-Length": str(n)}
        assert len(body) > 8 << 20
        r = c.post("/v2/models/small/infer", content=body, headers=headers)
        assert r.status_code == 413 and "8388608-byte limit" in r.json()["error"]
        r = c.post("/v2/models/big/infer", content=body, headers=headers)
        result = th.InferenceServerClient.parse_response_body(
            r.content, header_length=int(r.headers["inference-header-content-length"])
        )
        np.testing.assert_allclose(result.as_numpy("means"), images.mean(axis=(2, 3)), rtol=1e-5)
        g = tg.InferenceServerClient(f"127.0.0.1:{port}")
        gi = tg.InferInput("images", list(images.shape), "FP32")
        gi.set_data_from_numpy(images)
        np.testing.assert_allclose(g.infer("big", [gi]).as_numpy("means"), images.mean(axis=(2, 3)), rtol=1e-5)
        with pytest.raises(Exception, match="RESOURCE_EXHAUSTED"):
            g.infer("small", [gi])
