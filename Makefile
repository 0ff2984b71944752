# Two commands do everything on a fresh machine: `make demo` and `make test`.
# Both create .venv and install the pinned dependencies first (requirements*.txt).
PY ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export OMP_NUM_THREADS ?= 1

.PHONY: demo test lint bench clean venv browser bench-setup

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -r requirements-dev.txt
	$(BIN)/pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $@

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/python examples/demo_minilm.py

lint: $(STAMP)
	$(BIN)/ruff check .

# Node and Debian's Chromium (+ playwright-core from npm) for the JS runtime tests; idempotent.
browser:
	bash scripts/setup_browser.sh

# onnxruntime-web (pinned, npm ci) into bench/node/node_modules for the peer benchmark and its test.
bench-setup:
	bash scripts/setup_bench.sh

test: $(STAMP) lint browser bench-setup
	$(BIN)/python -m pytest -q

# Benchmarks (timed figures live here, never in tests). First the peer comparison (ours vs ONNX
# Runtime Web, ONNX Runtime, PyTorch -> bench/results/latest.{json,png}, docs/benchmarks.md), then
# the zoo report (sizes, errors, wasm vs PyTorch eager) and the other benches.
bench: $(STAMP) bench-setup
	$(BIN)/wasm-torch bench --out bench/results/latest.json
	$(BIN)/python bench/zoo_report.py --out bench/results/zoo.json
	$(BIN)/python bench/gemm.py --out bench/results/gemm.json
	$(BIN)/python bench/mechanisms.py --out bench/results/mechanisms.json
	$(BIN)/python bench/serve_balancing.py
	$(BIN)/python bench/serve_recovery.py
	$(BIN)/python bench/serve_throughput.py --requests 60 --rounds 2 --duration 30  # ~6 min; the defaults take ~20
	$(BIN)/python bench/serve_cascade.py
	$(BIN)/python bench/serve_circadian.py

clean:
	rm -rf $(VENV) out build .pytest_cache
