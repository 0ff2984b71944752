"""KServe v2 gRPC (`inference.GRPCInferenceService`) for `wasm-torch serve`: the messages
(`proto.py`), request/answer conversion (`codec.py`) and the service over the app's `Server`
(`service.py`). Needs `grpcio` (and its `protobuf`)."""
