"""Pydantic models of the KServe v2 REST shapes, used for the OpenAPI document only.

Requests are parsed by `protocol.py` (strict JSON, spec checks) rather than by pydantic, so the
infer endpoint's request schema is injected into the OpenAPI document here.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

TensorData = list[Any]


class Error(BaseModel):
    error: str


class Live(BaseModel):
    live: bool


class Ready(BaseModel):
    ready: bool


class ModelReady(BaseModel):
    name: str
    ready: bool


class ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str]


class TensorMetadata(BaseModel):
    name: str
    datatype: str
    shape: list[int] = Field(description="-1 marks a variable (symbolic) dimension")


class ModelMetadata(BaseModel):
    name: str
    versions: list[str] | None = None
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]


class RequestInput(BaseModel):
    name: str
    shape: list[int]
    datatype: str = Field(description="BOOL, UINT8..UINT64, INT8..INT64, FP16, FP32, FP64")
    parameters: dict[str, Any] | None = None
    data: TensorData = Field(description="row-major values, flat or nested to match shape")


class RequestOutput(BaseModel):
    name: str
    parameters: dict[str, Any] | None = None


class InferenceRequest(BaseModel):
    id: str | None = None
    parameters: dict[str, Any] | None = None
    inputs: list[RequestInput]
    outputs: list[RequestOutput] | None = None


class ResponseOutput(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, Any] | None = None
    data: TensorData


class InferenceResponse(BaseModel):
    model_name: str
    model_version: str | None = None
    id: str | None = None
    parameters: dict[str, Any] | None = None
    outputs: list[ResponseOutput]


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": Error, "description": text}
    for code, text in [
        (400, "Bad request (malformed JSON, shape/datatype mismatch, non-finite)"),
        (401, "Missing or invalid bearer token"),
        (404, "Unknown model"),
        (413, "Body larger than the limit"),
        (422, "Over a sandbox limit or anomalous"),
        (429, "Rate limited"),
        (500, "Model trapped or internal error"),
        (503, "No replica available"),
        (504, "Deadline or timeout"),
    ]
}


def inject_infer_schema(openapi: dict[str, Any]) -> dict[str, Any]:
    schema = InferenceRequest.model_json_schema(ref_template="#/components/schemas/{model}")
    components = openapi.setdefault("components", {}).setdefault("schemas", {})
    components.update(schema.pop("$defs", {}))
    components["InferenceRequest"] = schema
    body = {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/InferenceRequest"}}},
    }
    for path, ops in openapi.get("paths", {}).items():
        if path.endswith("/infer") and "post" in ops:
            ops["post"]["requestBody"] = body
    return openapi
