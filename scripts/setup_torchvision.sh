#!/usr/bin/env bash
# Installs torchvision's model definitions (pure Python) for the op-coverage zoo (wasm_torch/zoo/
# torchvision_models.py, bench/coverage.py, tests/compiler/test_zoo_coverage.py); idempotent.
#
# Why not a line in requirements-dev.txt: PyPI's torchvision 0.28.0 (the release pinned to our
# torch==2.13.0) ships a C extension linked against CUDA libraries the CPU torch does not have, and
# `import torchvision` then fails in its op registrations. Installed in site-packages it also breaks
# transformers, which imports torchvision whenever it is installed. So the wheel goes into its own
# folder, off sys.path, with --no-deps (torch stays exactly as pinned), and the loader imports only
# torchvision.models from it, never torchvision/__init__.py, so the C extension is never loaded.
set -euo pipefail
cd "$(dirname "$0")/.."
TORCHVISION_VERSION=0.28.0
dest=.venv/vendor/torchvision-$TORCHVISION_VERSION
if [ ! -f "$dest/torchvision/models/__init__.py" ]; then
  rm -rf "$dest.tmp"
  .venv/bin/pip install -q --disable-pip-version-check --no-deps --no-compile \
    --target "$dest.tmp" "torchvision==$TORCHVISION_VERSION"
  mv "$dest.tmp" "$dest"
fi
echo "torchvision set-up ok: torchvision $TORCHVISION_VERSION model definitions in $dest"
