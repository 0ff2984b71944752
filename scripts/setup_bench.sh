#!/usr/bin/env bash
# Installs the ONNX Runtime Web peer for `make bench` / `wasm-torch bench` and tests/benchmark/test_bench.py;
# idempotent, safe to run before every `make test` / `make bench`.
#   - Node >= 18 and npm (apt), only when missing;
#   - onnxruntime-web, pinned exactly in bench/node/package.json and bench/node/package-lock.json,
#     installed with `npm ci` into bench/node/node_modules (git-ignored), only when the installed
#     version is not the pinned one.
set -euo pipefail
cd "$(dirname "$0")/.."
ORT_WEB_VERSION=1.30.0
export DEBIAN_FRONTEND=noninteractive

need_apt=()
if ! command -v node >/dev/null || [ "$(node -p 'process.versions.node.split(".")[0]')" -lt 18 ]; then
  need_apt+=(nodejs)
fi
command -v npm >/dev/null || need_apt+=(npm)
if [ ${#need_apt[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update
  $SUDO apt-get install -y "${need_apt[@]}"
fi

dest=bench/node
have=$(node -p "try{require('./$dest/node_modules/onnxruntime-web/package.json').version}catch{''}" 2>/dev/null || true)
if [ "$have" != "$ORT_WEB_VERSION" ]; then
  # --ignore-scripts: nothing in this tree needs an install script (protobufjs's only checks versions)
  (cd "$dest" && npm ci --ignore-scripts --no-audit --no-fund)
fi
echo "bench set-up ok: node $(node --version), onnxruntime-web $ORT_WEB_VERSION in $dest/node_modules"
