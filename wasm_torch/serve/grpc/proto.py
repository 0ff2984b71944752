"""The KServe v2 gRPC messages (`grpc_predict_v2.proto`, package `inference`), built at import time
into a private descriptor pool.

Why not generated `_pb2.py` stubs: stubs are tied to the protobuf version that generated them
(protobuf refuses gencode newer than its runtime and warns about older majors), and they register
`inference.*` in protobuf's default pool, where `tritonclient.grpc` registers its own
`inference.*` messages too: both in one process is a "duplicate symbol" error. A private pool
has neither problem, and this file is the readable schema.

The messages are the Open Inference Protocol's (ServerLive/Ready, ModelReady, ServerMetadata,
ModelMetadata, ModelInfer with typed contents and `raw_input_contents`), plus the model
repository RPCs (RepositoryIndex, RepositoryModelLoad, RepositoryModelUnload) with the field
numbers of Triton's `grpc_service.proto`, which `tritonclient.grpc` speaks; the test
`tests/serve/test_grpc.py` checks every field of every message against tritonclient's descriptors.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

PACKAGE = "inference"
SERVICE = "GRPCInferenceService"
FULL_SERVICE = f"{PACKAGE}.{SERVICE}"

# message -> [(field, number, type)]; type: a scalar ("bool", "int64", ...), "repeated T", a message
# ("InferParameter", nested as "Outer.Inner"), or "map<string, T>"; "oneof NAME:" before a field
# puts it in that oneof.
MESSAGES: dict[str, list[tuple[str, int, str]]] = {
    "ServerLiveRequest": [],
    "ServerLiveResponse": [("live", 1, "bool")],
    "ServerReadyRequest": [],
    "ServerReadyResponse": [("ready", 1, "bool")],
    "ModelReadyRequest": [("name", 1, "string"), ("version", 2, "string")],
    "ModelReadyResponse": [("ready", 1, "bool")],
    "ServerMetadataRequest": [],
    "ServerMetadataResponse": [("name", 1, "string"), ("version", 2, "string"), ("extensions", 3, "repeated string")],
    "ModelMetadataRequest": [("name", 1, "string"), ("version", 2, "string")],
    "ModelMetadataResponse.TensorMetadata": [
        ("name", 1, "string"), ("datatype", 2, "string"), ("shape", 3, "repeated int64"),
    ],
    "ModelMetadataResponse": [
        ("name", 1, "string"), ("versions", 2, "repeated string"), ("platform", 3, "string"),
        ("inputs", 4, "repeated ModelMetadataResponse.TensorMetadata"),
        ("outputs", 5, "repeated ModelMetadataResponse.TensorMetadata"),
    ],
    "ModelInferRequest.InferInputTensor": [
        ("name", 1, "string"), ("datatype", 2, "string"), ("shape", 3, "repeated int64"),
        ("parameters", 4, "map<string, InferParameter>"), ("contents", 5, "InferTensorContents"),
    ],
    "ModelInferRequest.InferRequestedOutputTensor": [
        ("name", 1, "string"), ("parameters", 2, "map<string, InferParameter>"),
    ],
    "ModelInferRequest": [
        ("model_name", 1, "string"), ("model_version", 2, "string"), ("id", 3, "string"),
        ("parameters", 4, "map<string, InferParameter>"),
        ("inputs", 5, "repeated ModelInferRequest.InferInputTensor"),
        ("outputs", 6, "repeated ModelInferRequest.InferRequestedOutputTensor"),
        ("raw_input_contents", 7, "repeated bytes"),
    ],
    "ModelInferResponse.InferOutputTensor": [
        ("name", 1, "string"), ("datatype", 2, "string"), ("shape", 3, "repeated int64"),
        ("parameters", 4, "map<string, InferParameter>"), ("contents", 5, "InferTensorContents"),
    ],
    "ModelInferResponse": [
        ("model_name", 1, "string"), ("model_version", 2, "string"), ("id", 3, "string"),
        ("parameters", 4, "map<string, InferParameter>"),
        ("outputs", 5, "repeated ModelInferResponse.InferOutputTensor"),
        ("raw_output_contents", 6, "repeated bytes"),
    ],
    "InferParameter": [
        ("bool_param", 1, "oneof parameter_choice: bool"), ("int64_param", 2, "oneof parameter_choice: int64"),
        ("string_param", 3, "oneof parameter_choice: string"), ("double_param", 4, "oneof parameter_choice: double"),
        ("uint64_param", 5, "oneof parameter_choice: uint64"),
    ],
    "InferTensorContents": [
        ("bool_contents", 1, "repeated bool"), ("int_contents", 2, "repeated int32"),
        ("int64_contents", 3, "repeated int64"), ("uint_contents", 4, "repeated uint32"),
        ("uint64_contents", 5, "repeated uint64"), ("fp32_contents", 6, "repeated float"),
        ("fp64_contents", 7, "repeated double"), ("bytes_contents", 8, "repeated bytes"),
    ],
    # --- the model repository (Triton's field numbers) ------------------------------------------
    "ModelRepositoryParameter": [
        ("bool_param", 1, "oneof parameter_choice: bool"), ("int64_param", 2, "oneof parameter_choice: int64"),
        ("string_param", 3, "oneof parameter_choice: string"), ("bytes_param", 4, "oneof parameter_choice: bytes"),
    ],
    "RepositoryIndexRequest": [("repository_name", 1, "string"), ("ready", 2, "bool")],
    "RepositoryIndexResponse.ModelIndex": [
        ("name", 1, "string"), ("version", 2, "string"), ("state", 3, "string"), ("reason", 4, "string"),
    ],
    "RepositoryIndexResponse": [("models", 1, "repeated RepositoryIndexResponse.ModelIndex")],
    "RepositoryModelLoadRequest": [
        ("repository_name", 1, "string"), ("model_name", 2, "string"),
        ("parameters", 3, "map<string, ModelRepositoryParameter>"),
    ],
    "RepositoryModelLoadResponse": [],
    "RepositoryModelUnloadRequest": [
        ("repository_name", 1, "string"), ("model_name", 2, "string"),
        ("parameters", 3, "map<string, ModelRepositoryParameter>"),
    ],
    "RepositoryModelUnloadResponse": [],
}  # fmt: skip

# rpc -> (request message, response message); all unary.
RPCS: dict[str, tuple[str, str]] = {
    "ServerLive": ("ServerLiveRequest", "ServerLiveResponse"),
    "ServerReady": ("ServerReadyRequest", "ServerReadyResponse"),
    "ModelReady": ("ModelReadyRequest", "ModelReadyResponse"),
    "ServerMetadata": ("ServerMetadataRequest", "ServerMetadataResponse"),
    "ModelMetadata": ("ModelMetadataRequest", "ModelMetadataResponse"),
    "ModelInfer": ("ModelInferRequest", "ModelInferResponse"),
    "RepositoryIndex": ("RepositoryIndexRequest", "RepositoryIndexResponse"),
    "RepositoryModelLoad": ("RepositoryModelLoadRequest", "RepositoryModelLoadResponse"),
    "RepositoryModelUnload": ("RepositoryModelUnloadRequest", "RepositoryModelUnloadResponse"),
}

F = descriptor_pb2.FieldDescriptorProto
SCALARS = {
    "bool": F.TYPE_BOOL, "string": F.TYPE_STRING, "bytes": F.TYPE_BYTES, "int32": F.TYPE_INT32,
    "int64": F.TYPE_INT64, "uint32": F.TYPE_UINT32, "uint64": F.TYPE_UINT64, "float": F.TYPE_FLOAT,
    "double": F.TYPE_DOUBLE,
}  # fmt: skip


def _camel(name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in name.split("_"))


def _set_type(field: Any, kind: str) -> None:
    if kind in SCALARS:
        field.type = SCALARS[kind]
    else:
        field.type = F.TYPE_MESSAGE
        field.type_name = f".{PACKAGE}.{kind}"


def file_descriptor() -> descriptor_pb2.FileDescriptorProto:
    """`grpc_predict_v2.proto` as a FileDescriptorProto (the service included)."""
    fd = descriptor_pb2.FileDescriptorProto(name="wasm_torch/grpc_predict_v2.proto", package=PACKAGE, syntax="proto3")
    made: dict[str, Any] = {}
    for full in sorted(MESSAGES, key=lambda m: m.count(".")):  # outer messages before nested ones
        outer, _, inner = full.rpartition(".")
        parent = made[outer].nested_type if outer else fd.message_type
        made[full] = parent.add(name=inner or full)
    for full, fields in MESSAGES.items():
        msg = made[full]
        oneofs: dict[str, int] = {}
        for name, number, spec in fields:
            f = msg.field.add(name=name, number=number, json_name=name[:1] + _camel(name)[1:])
            f.label = F.LABEL_OPTIONAL
            if spec.startswith("oneof "):
                group, _, spec = spec[len("oneof ") :].partition(": ")
                if group not in oneofs:
                    oneofs[group] = len(msg.oneof_decl)
                    msg.oneof_decl.add(name=group)
                f.oneof_index = oneofs[group]
            if spec.startswith("repeated "):
                f.label = F.LABEL_REPEATED
                spec = spec[len("repeated ") :]
            if spec.startswith("map<"):
                key, value = (t.strip() for t in spec[4:-1].split(","))
                entry = msg.nested_type.add(name=_camel(name) + "Entry")
                entry.options.map_entry = True
                k = entry.field.add(name="key", number=1, label=F.LABEL_OPTIONAL, json_name="key")
                _set_type(k, key)
                v = entry.field.add(name="value", number=2, label=F.LABEL_OPTIONAL, json_name="value")
                _set_type(v, value)
                f.label = F.LABEL_REPEATED
                _set_type(f, f"{full}.{entry.name}")
            else:
                _set_type(f, spec)
    service = fd.service.add(name=SERVICE)
    for rpc, (request, response) in RPCS.items():
        service.method.add(name=rpc, input_type=f".{PACKAGE}.{request}", output_type=f".{PACKAGE}.{response}")
    return fd


POOL = descriptor_pool.DescriptorPool()
FILE = POOL.Add(file_descriptor())


def message(name: str) -> Any:
    """The message class `inference.<name>` (e.g. "ModelInferRequest")."""
    return message_factory.GetMessageClass(POOL.FindMessageTypeByName(f"{PACKAGE}.{name}"))


ServerLiveResponse = message("ServerLiveResponse")
ServerReadyResponse = message("ServerReadyResponse")
ModelReadyRequest = message("ModelReadyRequest")
ModelReadyResponse = message("ModelReadyResponse")
ServerMetadataResponse = message("ServerMetadataResponse")
ModelMetadataRequest = message("ModelMetadataRequest")
ModelMetadataResponse = message("ModelMetadataResponse")
ModelInferRequest = message("ModelInferRequest")
ModelInferResponse = message("ModelInferResponse")
InferParameter = message("InferParameter")
RepositoryIndexRequest = message("RepositoryIndexRequest")
RepositoryIndexResponse = message("RepositoryIndexResponse")
RepositoryModelLoadRequest = message("RepositoryModelLoadRequest")
RepositoryModelLoadResponse = message("RepositoryModelLoadResponse")
RepositoryModelUnloadRequest = message("RepositoryModelUnloadRequest")
RepositoryModelUnloadResponse = message("RepositoryModelUnloadResponse")
