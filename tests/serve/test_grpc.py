"""KServe v2 gRPC in process: our messages are wire-compatible with tritonclient's (every field of
every message and every RPC checked against its descriptors), both sets load in one process, the
codec checks typed and raw contents like REST checks JSON, and the service shares the app's guard
(rate limit -> RESOURCE_EXHAUSTED with retry-after, anomaly rejection) and its metrics."""

from __future__ import annotations

import socket

import grpc
import numpy as np
import pytest
import tritonclient.grpc as tg
from fastapi.testclient import TestClient
from tritonclient.grpc import service_pb2 as triton
from tritonclient.utils import InferenceServerException

from wasm_torch.serve.app import create_app
from wasm_torch.serve.errors import RequestError
from wasm_torch.serve.grpc import proto
from wasm_torch.serve.grpc.codec import decode_infer, encode_infer
from wasm_torch.serve.grpc.service import CODE_BY_STATUS, grpc_code, peer_host
from wasm_torch.serve.settings import ServeSettings

from .fakes import FakeModel, Spec, expected

X = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_every_message_and_rpc_matches_tritonclients_descriptors():
    """Same full names, field names, numbers, types and labels: what tritonclient sends, we read."""
    ours, theirs = proto.FILE, triton.DESCRIPTOR

    def fields(d):
        return {f.name: (f.number, f.type, f.label, f.message_type.full_name if f.message_type else None)
                for f in d.fields}  # fmt: skip

    def walk(d):
        yield d
        for n in d.nested_types:
            if not n.GetOptions().map_entry:
                yield from walk(n)

    checked = 0
    for top in ours.message_types_by_name.values():
        for d in walk(top):
            other = theirs.pool.FindMessageTypeByName(d.full_name)
            assert fields(d) == {k: v for k, v in fields(other).items() if k in fields(d)}, d.full_name
            missing = set(fields(other)) - set(fields(d))
            assert not missing, f"{d.full_name}: tritonclient has fields we lack: {missing}"
            checked += 1
    assert checked == len(proto.MESSAGES) == 26
    service = ours.services_by_name[proto.SERVICE]
    triton_service = theirs.services_by_name[proto.SERVICE]
    for m in service.methods:
        t = triton_service.methods_by_name[m.name]
        assert (m.input_type.full_name, m.output_type.full_name) == (t.input_type.full_name, t.output_type.full_name)
    assert {m.name for m in service.methods} >= {
        "ServerLive", "ServerReady", "ModelReady", "ServerMetadata", "ModelMetadata", "ModelInfer",
    }  # fmt: skip


def test_a_message_made_by_tritonclient_reads_the_same_with_ours():
    x = tg.InferInput("x", [3, 4], "FP32")
    x.set_data_from_numpy(X)
    theirs = triton.ModelInferRequest(model_name="m", id="q", inputs=[x._get_tensor()])
    theirs.raw_input_contents.append(x._get_content())
    theirs.parameters["priority"].int64_param = 2
    ours = proto.ModelInferRequest.FromString(theirs.SerializeToString())
    assert ours.SerializeToString() == theirs.SerializeToString()
    req = decode_infer(ours, FakeModel().inputs, FakeModel().outputs, 1 << 20)
    np.testing.assert_array_equal(req.inputs["x"], X)
    assert req.id == "q" and req.outputs is None


def test_typed_contents_are_checked_like_json_data():
    specs = [Spec("a", "int8", ("batch", 2)), Spec("b", "float32", ("batch", 2))]

    def msg(a_values, b_values, a_field="int_contents"):
        m = proto.ModelInferRequest(model_name="m")
        a = m.inputs.add(name="a", datatype="INT8", shape=[1, 2])
        getattr(a.contents, a_field).extend(a_values)
        b = m.inputs.add(name="b", datatype="FP32", shape=[1, 2])
        b.contents.fp32_contents.extend(b_values)
        return m

    req = decode_infer(msg([-128, 127], [1.5, 2.5]), specs, [], 1 << 20)
    assert req.inputs["a"].dtype == np.int8 and req.inputs["a"].tolist() == [[-128, 127]]
    for bad, word in [
        (msg([128, 0], [1, 2]), "outside the INT8 range"),
        (msg([1], [1, 2]), "has 1 elements"),
        (msg([1, 2], [float("nan"), 2]), "not finite"),
        (msg([1, 2], [1, 2], a_field="int64_contents"), "goes in contents.int_contents"),
    ]:
        with pytest.raises(RequestError, match=word):
            decode_infer(bad, specs, [], 1 << 20)
    half = proto.ModelInferRequest(model_name="m")
    half.inputs.add(name="x", datatype="FP16", shape=[1, 4]).contents.fp32_contents.extend([1, 2, 3, 4])
    with pytest.raises(RequestError, match="raw_input_contents"):
        decode_infer(half, [Spec("x", "float16", ("batch", 4))], [], 1 << 20)


def test_answers_carry_raw_little_endian_bytes_tritonclient_reads():
    req = decode_infer(_request(X), FakeModel().inputs, FakeModel().outputs, 1 << 20)
    answer = encode_infer("mlp", "1", req, {"y": expected(X)})
    result = tg.InferResult(triton.ModelInferResponse.FromString(answer.SerializeToString()))
    np.testing.assert_array_equal(result.as_numpy("y"), expected(X))


def _request(x: np.ndarray, model: str = "mlp") -> object:
    m = proto.ModelInferRequest(model_name=model)
    m.inputs.add(name="x", datatype="FP32", shape=list(x.shape))
    m.raw_input_contents.append(x.tobytes())
    return m


def test_status_mapping_never_says_internal_for_a_client_fault():
    for status, code in CODE_BY_STATUS.items():
        assert code not in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN), status
    assert grpc_code(422, "fuel_exhausted") == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert grpc_code(500, "trap") == grpc.StatusCode.INTERNAL
    assert peer_host("ipv4:127.0.0.1:5000") == "127.0.0.1" and peer_host("ipv6:[::1]:5000") == "::1"


@pytest.fixture
def served():
    """An app with gRPC on a free port, run by TestClient (its lifespan starts the gRPC service)."""
    made = []

    def make(**settings):
        port = free_port()
        s = ServeSettings(replicas=1, healing=False, max_queue_delay_s=0.001, grpc_port=port, **settings)
        client = TestClient(create_app({"mlp": FakeModel}, s, seed=0))
        client.__enter__()
        made.append(client)
        return client, tg.InferenceServerClient(f"127.0.0.1:{port}"), port

    yield make
    for c in made:
        c.__exit__(None, None, None)


def _infer(g: tg.InferenceServerClient, x: np.ndarray = X, headers=None):
    i = tg.InferInput("x", list(x.shape), "FP32")
    i.set_data_from_numpy(x)
    return g.infer("mlp", [i], headers=headers)


def test_grpc_shares_the_rate_limit_with_rest_and_sends_retry_after(served):
    """One token, one bucket, whichever protocol spends it (burst 2 at 0.5/s)."""
    rest, g, port = served(rate_limit_per_s=0.5, rate_limit_burst=2, auth_tokens=frozenset({"tok"}))
    np.testing.assert_array_equal(_infer(g, headers={"authorization": "Bearer tok"}).as_numpy("y"), expected(X))
    body = {"inputs": [{"name": "x", "shape": [3, 4], "datatype": "FP32", "data": X.ravel().tolist()}]}
    assert rest.post("/v2/models/mlp/infer", json=body, headers={"authorization": "Bearer tok"}).status_code == 200
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")
        with pytest.raises(grpc.RpcError) as e:
            call(_request(X).SerializeToString(), metadata=(("authorization", "Bearer tok"),), timeout=30)
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "rate limit" in e.value.details()
    assert int(dict(e.value.trailing_metadata())["retry-after"]) >= 1
    r = rest.post("/v2/models/mlp/infer", json=body, headers={"authorization": "Bearer tok"})
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1


def test_grpc_answers_count_in_the_apps_metrics(served):
    rest, g, _ = served()
    _infer(g)
    with pytest.raises(InferenceServerException):
        _infer(g, np.zeros((2, 5), np.float32))
    text = rest.get("/metrics").text
    assert 'wasm_torch_inference_requests_total{code="200",model="mlp",protocol="grpc"} 1.0' in text
    assert 'wasm_torch_inference_requests_total{code="400",model="mlp",protocol="grpc"} 1.0' in text
    assert 'wasm_torch_grpc_requests_total{code="INVALID_ARGUMENT",method="ModelInfer"} 1.0' in text


def test_a_per_model_body_limit_applies_to_grpc_messages(served):
    _, g, _ = served(model_settings={"mlp": {"max_body_bytes": 1024}})
    _infer(g, X)
    with pytest.raises(InferenceServerException) as e:
        _infer(g, np.zeros((64, 4), np.float32))  # 1 KiB of raw data, plus the message around it
    assert e.value.status() == "StatusCode.RESOURCE_EXHAUSTED" and "1024-byte limit" in e.value.message()


def test_a_taken_grpc_port_is_a_clear_error_before_start_up(tmp_path):
    from wasm_torch.errors import WasmTorchError
    from wasm_torch.serve.grpc.service import check_port_free

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        with pytest.raises(WasmTorchError, match="--grpc-port"):
            check_port_free("127.0.0.1", s.getsockname()[1])
