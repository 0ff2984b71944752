"""Real KServe v2 clients against a real `wasm-torch serve` process (REST on one port, gRPC on
another): tritonclient.http with binary data on and off, tritonclient.grpc, default settings;
answers equal to PyTorch; bad input raises the client's exception with a 4xx / INVALID_ARGUMENT;
bearer tokens, metrics and the audit log shared by both protocols; and the red-team corpus over
gRPC (grpc_redteam.py): never INTERNAL or UNKNOWN, and the server keeps serving."""

from __future__ import annotations

import json

import grpc
import numpy as np
import pytest
import torch
import tritonclient.grpc as tg
import tritonclient.http as th
from tritonclient.utils import InferenceServerException

from wasm_torch.serve.audit import verify_chain

from .conftest import VOCAB, start_server, stop_server
from .grpc_redteam import grpc_corpus, protocol_cases

pytestmark = [pytest.mark.toolchain, pytest.mark.wasm]
TOKEN = "kserve-test-token"
BAD_CODES = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.DATA_LOSS}


@pytest.fixture(scope="module")
def served(model_dir, tmp_path_factory):
    log = tmp_path_factory.mktemp("kserve") / "server.log"
    audit = log.with_name("audit.jsonl")
    s = start_server(model_dir, log, "--replicas", "1", "--token", TOKEN, "--audit-log", str(audit))
    try:
        yield s, audit
    finally:
        stop_server(s.proc)


AUTH_HEADER = ("authorization", f"Bearer {TOKEN}")


def auth() -> dict[str, str]:
    """A fresh headers dict per call: tritonclient.http's infer() adds Inference-Header-Content-Length
    to the dict it is given, so a shared dict would carry one request's header length into the next."""
    return dict([AUTH_HEADER])


def http(served) -> th.InferenceServerClient:
    return th.InferenceServerClient(served[0].url.removeprefix("http://"))


def grpc_client(served) -> tg.InferenceServerClient:
    return tg.InferenceServerClient(served[0].grpc_url)


def rows(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 4)).astype(np.float32)


def torch_mlp(compiled, x: np.ndarray) -> np.ndarray:
    return compiled["mlp"][1](torch.from_numpy(x)).detach().numpy()


@pytest.mark.parametrize("binary", [True, False])
def test_tritonclient_http_binary_on_and_off_equals_torch(served, compiled, binary):
    c = http(served)
    assert c.is_server_live() and c.is_server_ready(headers=auth()) and c.is_model_ready("mlp", headers=auth())
    meta = c.get_model_metadata("mlp", headers=auth())
    assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}]
    assert "binary_tensor_data" in c.get_server_metadata()["extensions"]
    for n in (1, 3, 16):
        x = rows(n, n)
        i = th.InferInput("input", list(x.shape), "FP32")
        i.set_data_from_numpy(x, binary_data=binary)
        outputs = [th.InferRequestedOutput("output_0", binary_data=binary)]
        r = c.infer("mlp", [i], outputs=outputs, headers=auth(), request_id=f"r{n}")
        np.testing.assert_allclose(r.as_numpy("output_0"), torch_mlp(compiled, x), rtol=1e-4, atol=1e-5)
        assert r.get_response()["id"] == f"r{n}"
    default = th.InferInput("input", [2, 4], "FP32")
    default.set_data_from_numpy(rows(2))  # every default: binary in, binary out
    np.testing.assert_allclose(c.infer("mlp", [default], headers=auth()).as_numpy("output_0"),
                               torch_mlp(compiled, rows(2)), rtol=1e-4, atol=1e-5)  # fmt: skip


def test_tritonclient_grpc_defaults_equal_torch(served, compiled):
    c = grpc_client(served)
    assert c.is_server_live() and c.is_server_ready()
    assert c.is_model_ready("mlp", headers=auth())
    meta = c.get_model_metadata("mlp", headers=auth(), as_json=True)
    assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": ["-1", "4"]}]
    for n in (1, 5, 64):
        x = rows(n, n)
        i = tg.InferInput("input", list(x.shape), "FP32")
        i.set_data_from_numpy(x)  # raw_input_contents
        r = c.infer("mlp", [i], headers=auth())
        np.testing.assert_allclose(r.as_numpy("output_0"), torch_mlp(compiled, x), rtol=1e-4, atol=1e-5)
    ids = np.array([[1, 2, 3, 49]], np.int64)
    i = tg.InferInput("ids", [1, 4], "INT64")
    i.set_data_from_numpy(ids)
    want = compiled["tok"][1](torch.from_numpy(ids)).detach().numpy()
    np.testing.assert_allclose(c.infer("tok", [i], headers=auth()).as_numpy("output_0"), want, rtol=1e-4, atol=1e-5)


def test_bad_input_raises_the_clients_exception_with_a_clear_4xx(served):
    h, g = http(served), grpc_client(served)
    x = np.zeros((2, 5), np.float32)
    hi, gi = th.InferInput("input", [2, 5], "FP32"), tg.InferInput("input", [2, 5], "FP32")
    hi.set_data_from_numpy(x)
    gi.set_data_from_numpy(x)
    with pytest.raises(InferenceServerException) as e:
        h.infer("mlp", [hi], headers=auth())
    assert e.value.status() == "400" and "dim 1 is 5" in e.value.message()
    with pytest.raises(InferenceServerException) as e:
        g.infer("mlp", [gi], headers=auth())
    assert e.value.status() == "StatusCode.INVALID_ARGUMENT" and "dim 1 is 5" in e.value.message()
    ids = np.array([[1, VOCAB]], np.int64)  # past the vocabulary: a trap in the module, the client's fault
    ti = tg.InferInput("ids", [1, 2], "INT64")
    ti.set_data_from_numpy(ids)
    with pytest.raises(InferenceServerException) as e:
        g.infer("tok", [ti], headers=auth())
    assert e.value.status() == "StatusCode.INVALID_ARGUMENT"
    with pytest.raises(InferenceServerException) as e:
        g.infer("nope", [gi], headers=auth())
    assert e.value.status() == "StatusCode.NOT_FOUND"


def test_tokens_guard_both_protocols_and_probes_stay_open(served):
    g = grpc_client(served)
    assert g.is_server_live() and g.is_server_ready()  # probes: no token needed, as in REST
    x = tg.InferInput("input", [1, 4], "FP32")
    x.set_data_from_numpy(rows(1))
    for headers in (None, {"authorization": "Bearer wrong"}):
        with pytest.raises(InferenceServerException) as e:
            g.infer("mlp", [x], headers=headers)
        assert e.value.status() == "StatusCode.UNAUTHENTICATED"
        with pytest.raises(InferenceServerException) as e:
            g.get_model_metadata("mlp", headers=headers)
        assert e.value.status() == "StatusCode.UNAUTHENTICATED"
    with pytest.raises(InferenceServerException) as e:
        http(served).get_model_metadata("mlp")
    assert e.value.status() == "401"


def test_metrics_and_audit_count_both_protocols(served):
    s, audit = served
    h, g = http(served), grpc_client(served)
    for client, mod in ((h, th), (g, tg)):
        i = mod.InferInput("input", [1, 4], "FP32")
        i.set_data_from_numpy(rows(1))
        client.infer("mlp", [i], headers=auth(), request_id="audited")
    text = s.metrics(auth())
    for proto in ("http", "grpc"):
        assert f'wasm_torch_inference_requests_total{{code="200",model="mlp",protocol="{proto}"}}' in text
    assert 'wasm_torch_grpc_requests_total{code="OK",method="ModelInfer"}' in text
    records = [json.loads(line) for line in audit.read_text().splitlines()]
    audited = {r["protocol"] for r in records if r.get("id") == "audited" and r["status"] == 200}
    assert audited == {"http", "grpc"}
    assert verify_chain(audit)[0]


def _call(served, method: str, message: bytes) -> grpc.StatusCode:
    with grpc.insecure_channel(served[0].grpc_url) as channel:
        rpc = channel.unary_unary(f"/inference.GRPCInferenceService/{method}")  # raw bytes both ways
        try:
            rpc(message, metadata=(AUTH_HEADER,), timeout=60)
        except grpc.RpcError as e:
            assert e.details(), (method, e.code())
            return e.code()
    return grpc.StatusCode.OK


def test_the_red_team_corpus_over_grpc_never_gets_internal_and_the_server_keeps_serving(served, compiled):
    s = served[0]
    cases = list(grpc_corpus())
    assert len(cases) >= 300
    codes: dict[str, grpc.StatusCode] = {}
    with grpc.insecure_channel(s.grpc_url) as channel:
        for label, method, message in cases:
            rpc = channel.unary_unary(f"/inference.GRPCInferenceService/{method}")
            try:
                rpc(message, metadata=(AUTH_HEADER,), timeout=60)
                codes[label] = grpc.StatusCode.OK
            except grpc.RpcError as e:
                codes[label] = e.code()
    bad = {label: code for label, code in codes.items() if code in BAD_CODES}
    assert bad == {}
    # the protocol cases are all refused (a mutation or a translated JSON case may be valid)
    refused = {label for label, *_ in protocol_cases() if codes[label] != grpc.StatusCode.OK}
    assert refused == {label for label, *_ in protocol_cases()}
    assert codes["unimplemented_ModelConfig"] == grpc.StatusCode.UNIMPLEMENTED
    assert codes["model_'nope'"] == grpc.StatusCode.NOT_FOUND
    assert codes["raw_short"] == grpc.StatusCode.INVALID_ARGUMENT
    assert codes["load_with_uploaded_file"] in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.PERMISSION_DENIED)
    # still serving, and the server's own count of errors has no 5xx and no INTERNAL
    test_tritonclient_grpc_defaults_equal_torch(served, compiled)
    text = s.metrics(auth())
    assert 'code="5' not in text and 'code="INTERNAL"' not in text and 'code="UNKNOWN"' not in text


def test_an_oversized_grpc_message_is_resource_exhausted(served):
    msg = _call(served, "ModelInfer", b"\x0a\x03mlp" + b"\x3a\x80\x80\x80\x05" + bytes(10 << 20))  # 10 MiB raw blob
    assert msg == grpc.StatusCode.RESOURCE_EXHAUSTED
