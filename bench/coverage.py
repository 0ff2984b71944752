"""Op-coverage report: compile every model of the coverage zoo (wasm_torch/zoo/coverage.py) and
record, per model: compiled?, max relative error on a fresh input, wasm vs torch eager latency
(one thread, interleaved calls, medians), model.wasm code bytes, and the unsupported ops.

    .venv/bin/python bench/coverage.py                       # everything -> bench/results/coverage.json + docs/coverage.md
    .venv/bin/python bench/coverage.py --only resnet18,hf_llama --merge   # some models, merged into the JSON
    .venv/bin/python bench/coverage.py --markdown-only       # regenerate docs/coverage.md from the JSON

Each model runs in its own subprocess (a model that exhausts memory or crashes is one failed row,
not a lost run). Weights are random (batch-norm statistics calibrated, zero-initialised weights
re-initialised: see the zoo module), so outputs are not ~0. Relative error = max |wasm - torch| /
max |torch| over all outputs, on an input drawn with a different seed than the one traced with;
the goal is <= 1e-4. compile() runs without its own validation here, so that a model outside
tolerance still gets a measured error instead of a refusal. Latency figures are from a shared,
noisy machine: compare within a row (the ratio), not across runs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

ROOT = Path(__file__).resolve().parent.parent
GOAL = 1e-4
COMMAND = ".venv/bin/python bench/coverage.py"


def _interleaved(fn_a, fn_b, budget_s: float, min_rounds: int = 3, max_rounds: int = 9) -> tuple[float, float, int]:
    """Median ms of a and of b, called alternately (after one warm-up call each)."""
    fn_a(), fn_b()
    ta, tb = [], []
    start = time.perf_counter()
    while len(ta) < max_rounds and (len(ta) < min_rounds or time.perf_counter() - start < budget_s):
        t0 = time.perf_counter()
        fn_a()
        t1 = time.perf_counter()
        fn_b()
        t2 = time.perf_counter()
        ta.append((t1 - t0) * 1e3)
        tb.append((t2 - t1) * 1e3)
    return statistics.median(ta), statistics.median(tb), len(ta)


def rel_error(got: list, want: list) -> tuple[float, float]:
    import numpy as np

    err, scale = 0.0, 0.0
    for a, b in zip(got, want, strict=True):
        a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
        if a64.shape != b64.shape:
            return float("inf"), 0.0
        err = max(err, float(np.nanmax(np.abs(a64 - b64))) if a64.size else 0.0)
        scale = max(scale, float(np.nanmax(np.abs(b64))) if b64.size else 0.0)
    return (err / scale if scale > 0 else (0.0 if err == 0 else float("inf"))), scale


def run_one(name: str, size: str, budget_s: float) -> dict:
    """Compile and measure one model (in this process)."""
    import torch

    import wasm_torch
    from wasm_torch.compiler.check import reference_outputs
    from wasm_torch.errors import ExportError, UnsupportedOpError
    from wasm_torch.zoo.coverage import coverage_entries

    torch.set_num_threads(1)
    entry = coverage_entries(size)[name]
    row: dict = {"model": name, "zoo": entry.zoo, "note": entry.note}
    t0 = time.perf_counter()
    model, make_inputs = entry.build(seed=0)
    row["params"] = sum(p.numel() for p in model.parameters())
    example = make_inputs(torch.Generator().manual_seed(1))
    fresh = make_inputs(torch.Generator().manual_seed(2))
    row["input_shapes"] = [list(x.shape) for x in example]
    with tempfile.TemporaryDirectory(prefix="wt_cov_") as tmp:
        try:
            art = wasm_torch.compile(model, example, Path(tmp) / name, validate=False)
        except UnsupportedOpError as e:
            probs = getattr(e, "problems", None) or []
            row.update(status="unsupported", compiled=False, error=str(e).splitlines()[0][:300])
            row["unsupported"] = [
                {"op": p.op, "count": p.count, "first_line": p.first_line, "reason": p.reason, "suggestion": p.suggestion}
                for p in probs
            ] or [{"op": "?", "count": 1, "first_line": "", "reason": str(e)[:300], "suggestion": ""}]
            return row
        except ExportError as e:
            row.update(status="export-error", compiled=False, error=str(e)[:500])
            return row
        except Exception as e:  # a compiler bug or a limit: record it, the report names it
            row.update(status="error", compiled=False, error=f"{type(e).__name__}: {str(e)[:500]}")
            row["traceback"] = traceback.format_exc()[-2000:]
            return row
        row["compile_s"] = round(time.perf_counter() - t0, 1)
        row["code_bytes"] = art.code_bytes
        row["weights_bytes"] = art.weights_bytes
        row["compiled"] = True
        try:
            m = wasm_torch.load(art)
            arrays = [x.numpy() for x in fresh]
            got = m(*arrays)
            got = list(got) if isinstance(got, tuple) else [got]
            want = reference_outputs(model, fresh)
            rel, scale = rel_error(got, want)
            row.update(rel_err=rel, output_scale=scale, ok=rel <= GOAL)
            if rel > GOAL:  # is it ours, or float32 itself? both against a float64 run of torch
                row.update(float64_check(model, fresh, got, want))
            with torch.no_grad():
                t_wasm, t_torch, rounds = _interleaved(lambda: m(*arrays), lambda: model(*fresh), budget_s)
            row.update(wasm_ms=round(t_wasm, 3), torch_ms=round(t_torch, 3), rounds=rounds)
            row["status"] = "ok" if rel <= GOAL else "mismatch"
        except Exception as e:
            row.update(status="error", error=f"running: {type(e).__name__}: {str(e)[:500]}")
    return row


def float64_check(model, inputs, got: list, want: list) -> dict:
    """Relative errors of wasm and of torch float32 against torch in float64 (same weights)."""
    import copy

    from wasm_torch.compiler.check import reference_outputs

    try:
        m64 = copy.deepcopy(model).double()
        ref = reference_outputs(m64, tuple(x.double() if x.is_floating_point() else x for x in inputs))
    except Exception as e:  # a model that cannot run in float64 (dtype-pinned code)
        return {"float64_check": f"not possible: {type(e).__name__}: {str(e)[:120]}"}
    return {"wasm_vs_f64": rel_error(got, ref)[0], "torch_f32_vs_f64": rel_error(want, ref)[0]}


def _child(name: str, size: str, budget_s: float, out: Path) -> None:
    row = run_one(name, size, budget_s)
    out.write_text(json.dumps(row))


def run_all(names: list[str], size: str, budget_s: float, timeout_s: float, results: dict, save=None) -> dict:
    """Each model in its own subprocess; `save(results)` after every model (a long run keeps its rows)."""
    for k, name in enumerate(names):
        with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
            out = Path(f.name)
        cmd = [sys.executable, __file__, "--child", name, "--size", size, "--budget", str(budget_s), "--child-out", str(out)]
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
            if proc.returncode == 0 and out.stat().st_size:
                row = json.loads(out.read_text())
            else:
                row = {"model": name, "status": "error", "compiled": False,
                       "error": f"subprocess exit {proc.returncode}: {proc.stderr.strip()[-400:]}"}
        except subprocess.TimeoutExpired:
            row = {"model": name, "status": "error", "compiled": False, "error": f"timed out after {timeout_s:.0f} s"}
        finally:
            out.unlink(missing_ok=True)
        row["wall_s"] = round(time.perf_counter() - t0, 1)
        results[name] = row
        print(f"[{k + 1}/{len(names)}] {_line(row)}", flush=True)
        if save is not None:
            save(results)
    return results


def by_size(names: list[str], entries: dict) -> list[str]:
    """Smallest models first (parameters counted on the meta device, no memory): a run cut short
    has covered the most models."""
    import torch

    def params(n: str) -> int:
        try:
            with torch.device("meta"):
                return sum(p.numel() for p in entries[n].make().parameters())
        except Exception:
            return 1 << 62

    return sorted(names, key=params)


def _line(r: dict) -> str:
    s = f"{r['model']}: {r.get('status')}"
    if r.get("rel_err") is not None:
        s += f" rel {r['rel_err']:.2e} wasm {r.get('wasm_ms')} ms torch {r.get('torch_ms')} ms {r.get('code_bytes')} B"
    if r.get("unsupported"):
        s += " " + ", ".join(u["op"] for u in r["unsupported"])
    if r.get("error") and r.get("status") != "unsupported":
        s += " " + r["error"][:200]
    return s


# ---- markdown -------------------------------------------------------------------------------------
def _fmt_err(r: dict) -> str:
    return "" if r.get("rel_err") is None else f"{r['rel_err']:.1e}"


def markdown(doc: dict) -> str:
    rows = doc["results"]
    size = doc.get("size", "real")
    out = [
        "# Op coverage across public model zoos",
        "",
        "Generated by `bench/coverage.py` (do not edit by hand). Every torchvision classification and",
        "segmentation model at 224x224 (torchvision's model definitions, random weights), the Hugging Face",
        "families (built from configs with random weights: the widths, heads, head dims, key/value heads and",
        "MLP sizes of the checkpoint named in the note, cut to 2 layers and a vocabulary of 8192), a UNet and an",
        "audio conv stack. Batch-norm statistics are calibrated on random inputs and zero-initialised weights",
        "re-initialised (`wasm_torch/zoo/coverage.py`), so outputs are not ~0.",
        "",
        "- **rel. error**: max |wasm − torch| / max |torch| over all outputs, on an input drawn with a different",
        f"  seed than the traced one; the goal is ≤ {GOAL:g}.",
        "- **wasm / torch ms**: medians of interleaved calls, one thread each (torch eager,",
        "  `torch.set_num_threads(1)`); the last column is their ratio. Timings are noisy:",
        "  compare within a row.",
        "- **code**: bytes of model.wasm (the code only; weights are in weights.bin).",
        "",
        "Commands (each run merges its models into the report): "
        + "; ".join(f"`{c}`" for c in doc.get("commands", [doc.get("command", COMMAND)]))
        + f" (last run {doc.get('date', '')}, {doc.get('machine', '')}, size={size}).",
        "",
    ]
    run = [r for r in rows.values() if r.get("status") != "not run"]
    ok = [r for r in run if r.get("status") == "ok"]
    by_zoo: dict[str, list[dict]] = {}
    for r in rows.values():
        by_zoo.setdefault(r.get("zoo", "?"), []).append(r)
    out.append("| zoo | models | run | compile and match | failing | not run |")
    out.append("|---|---:|---:|---:|---:|---:|")
    for z, rs in sorted(by_zoo.items()):
        ran = [r for r in rs if r.get("status") != "not run"]
        good = [r for r in ran if r.get("status") == "ok"]
        out.append(f"| {z} | {len(rs)} | {len(ran)} | {len(good)} | {len(ran) - len(good)} | {len(rs) - len(ran)} |")
    out.append(f"| all | {len(rows)} | {len(run)} | {len(ok)} | {len(run) - len(ok)} | {len(rows) - len(run)} |")
    out += ["", "| model | zoo | compiled | rel. error | wasm ms | torch ms | wasm / torch | code bytes | unsupported ops / error |",
            "|---|---|---|---:|---:|---:|---:|---:|---|"]
    for r in sorted(rows.values(), key=lambda r: (r.get("zoo", ""), r["model"])):
        comp = {True: "yes", False: "no"}.get(r.get("compiled"), "–")
        ratio = f"{r['wasm_ms'] / r['torch_ms']:.2f}" if r.get("wasm_ms") and r.get("torch_ms") else ""
        why = ""
        if r.get("unsupported"):
            why = "; ".join(f"`{u['op']}` x{u['count']}" + (f" ({u['reason'][:80]})" if u.get("reason") else "") for u in r["unsupported"])
        elif r.get("status") == "mismatch":
            why = f"error above {GOAL:g}"
            if r.get("torch_f32_vs_f64") is not None:
                why += (
                    f"; vs float64 torch: wasm {r['wasm_vs_f64']:.1e}, torch float32 {r['torch_f32_vs_f64']:.1e}"
                    " (float32 rounding, not a wrong op, when the two are alike)"
                )
        elif r.get("status") not in ("ok", None):
            why = (r.get("error") or r.get("status", ""))[:160].replace("|", "/").replace("\n", " ")
        out.append(
            f"| {r['model']} | {r.get('zoo', '')} | {comp} | {_fmt_err(r)} | {r.get('wasm_ms', '')} | {r.get('torch_ms', '')} | "
            f"{ratio} | {r.get('code_bytes', '')} | {why} |"
        )
    failing = [r for r in run if r.get("status") != "ok"]
    out += ["", "## Still failing", ""]
    if not failing:
        out.append("None of the models run.")
    for r in failing:
        line = f"- **{r['model']}** ({r.get('status')}): " + (_line(r).split(": ", 1)[1])[:400]
        if r.get("status") == "mismatch":
            if r.get("torch_f32_vs_f64") is not None:
                line += (
                    f"; against torch in float64: wasm {r['wasm_vs_f64']:.1e}, torch float32 {r['torch_f32_vs_f64']:.1e}"
                    " — the same size: float32 rounding of a deep network, not a wrong op"
                    if r["wasm_vs_f64"] <= 2 * r["torch_f32_vs_f64"]
                    else f"; against torch in float64: wasm {r['wasm_vs_f64']:.1e}, torch float32 {r['torch_f32_vs_f64']:.1e}"
                )
            else:
                line += "; not yet compared with a float64 run (this run predates that check)"
        out.append(line)
    not_run = [r for r in rows.values() if r.get("status") == "not run"]
    if not_run:
        out += ["", "## Not run in this report", "", ", ".join(r["model"] for r in not_run) + "."]
        reasons = {r.get("error", "") for r in not_run}
        out += ["", "Why: " + "; ".join(sorted(x for x in reasons if x))]
    return "\n".join(out) + "\n" + NOTES


NOTES = """
## How the zoo is built

- **torchvision without its C extension.** PyPI's torchvision 0.28.0 (the release for torch 2.13.0)
  ships `_C.so` linked against CUDA libraries that the CPU torch lacks: `import torchvision` fails
  while registering its detection ops, and installed in site-packages it breaks transformers too
  (which imports torchvision whenever it is installed). `scripts/setup_torchvision.sh` installs the
  pinned wheel with `--no-deps` into `.venv/vendor/torchvision-0.28.0` (off `sys.path`; torch is not
  touched), and `wasm_torch/zoo/torchvision_models.py` imports only `torchvision.models` from there
  under a stand-in parent package, so `torchvision/__init__.py` never runs; the stand-in is removed
  from `sys.modules` afterwards. Classification and segmentation models need none of the C ops.
- **Hugging Face** (`wasm_torch/zoo/hf_families.py`): each family from a config, random weights,
  eager attention, no hub access. `small` configs (width 64, 2 layers) are what `make test` compiles
  (`tests/compiler/test_zoo_coverage.py`); the report uses the shapes of a public checkpoint.
- **Random weights made meaningful** (`wasm_torch/zoo/coverage.py::prepare`): batch-norm running
  statistics calibrated on random inputs (two batches, cumulative average), all-zero weights
  (torchvision ViT's head, for one) re-initialised.

## Dtypes: float16, bfloat16, float64

wasm-torch computes in float32 (and the integer types). It never changes a dtype silently:

- float16 / bfloat16 / float64 **inputs** are refused at compile time with the fix ("trace and call with
  float32 inputs (x.float())"): the compiled module would otherwise take float32 where the model
  was traced with another type.
- float16 / bfloat16 / float64 **parameters or buffers** are refused with "compile a float32 model
  (model.float())", except when every use of one is a cast to float32 (a float64 table a model
  converts before use): then the constant is stored as those float32 values, which is exactly what
  torch computes with (tested bit for bit).
- an op that produces one of these types inside the graph (`x.double()`) is reported like an
  unsupported op.

## Unsupported ops: one report

`compile()` walks the whole graph before it gives up and raises one `UnsupportedOpError` listing
every op it cannot lower (count, first source line, the lowering's reason when the op is known but
a variant is not, and a rewrite where one exists: `torch.cond` or `.item()` -> `torch.where`, data-
dependent sizes -> masks, dropout -> `model.eval()`). An op that only consumes the result of an
unsupported op is not reported, unless it is unsupported itself. A data-dependent Python `if` fails in torch.export itself; that
ExportError now says to use `torch.where`. The structured list is `err.problems` (used by this
report). Tests: `tests/compiler/test_unsupported_report.py`.
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(ROOT / "bench/results/coverage.json"))
    ap.add_argument("--doc", default=str(ROOT / "docs/coverage.md"))
    ap.add_argument("--size", default="real", choices=["real", "small"])
    ap.add_argument("--only", default="", help="comma-separated model names")
    ap.add_argument("--zoo", default="", help="comma-separated zoos (torchvision-classification, huggingface, ...)")
    ap.add_argument("--merge", action="store_true", help="keep the other rows of an existing --out")
    ap.add_argument("--budget", type=float, default=20.0, help="seconds of timed calls per model (min 3 rounds)")
    ap.add_argument("--timeout", type=float, default=1800.0, help="seconds per model before it counts as failed")
    ap.add_argument("--markdown-only", action="store_true")
    ap.add_argument("--smallest-first", action="store_true", help="run models in order of parameter count")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--child-out", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        _child(a.child, a.size, a.budget, Path(a.child_out))
        return 0
    out = Path(a.out)
    if a.markdown_only:
        Path(a.doc).write_text(markdown(json.loads(out.read_text())))
        return 0

    from wasm_torch.zoo.coverage import coverage_entries

    entries = coverage_entries(a.size)
    names = list(entries)
    if a.only:
        want = [n.strip() for n in a.only.split(",") if n.strip()]
        unknown = [n for n in want if n not in entries]
        if unknown:
            print(f"unknown models {unknown}; known: {sorted(entries)}", file=sys.stderr)
            return 2
        names = want
    if a.zoo:
        zoos = {z.strip() for z in a.zoo.split(",")}
        names = [n for n in names if entries[n].zoo in zoos]
    results: dict = {}
    commands: list[str] = []
    if a.merge and out.exists():
        previous = json.loads(out.read_text())
        results = previous.get("results", {})
        commands = previous.get("commands", [previous["command"]] if "command" in previous else [])
    for n, e in entries.items():  # every model appears in the report, run or not
        results.setdefault(n, {"model": n, "zoo": e.zoo, "status": "not run", "error": "not selected in this run"})
    if a.smallest_first:
        names = by_size(names, entries)
    command = COMMAND + (" " + " ".join(sys.argv[1:]) if sys.argv[1:] else "")
    commands = [c for c in commands if c != command] + [command]

    def save(res: dict) -> None:
        doc = {
            "command": command,
            "commands": commands,
            "date": time.strftime("%Y-%m-%d"),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, load avg {os.getloadavg()[0]:.1f}",
            "size": a.size,
            "goal_rel_err": GOAL,
            "results": res,
        }
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc, indent=1, default=float))
        tmp.replace(out)
        Path(a.doc).write_text(markdown(doc))

    save(results)
    run_all(names, a.size, a.budget, a.timeout, results, save)
    print(f"wrote {out} and {a.doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
