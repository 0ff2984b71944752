"""A partitioned model run as a pipeline of jobs on the edge network (net/pipeline_job.py): a real
coordinator and real node processes; outputs bit-identical to the local Pipeline and to the unsplit
artifact; stage jobs of different micro-batches in flight at once; unsigned, tampered and malformed
inputs refused before anything reaches the coordinator; a job that times out or whose task fails is
an error naming stage, micro-batch and job; stage outputs altered at rest on the coordinator are
refused; the CLI path once, and its hostile flags."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from wasm_torch.analyze.partition import PartitionOptions
from wasm_torch.analyze.pipeline_manifest import read_pipeline
from wasm_torch.cli import main
from wasm_torch.errors import ArtifactError, IntegrityError
from wasm_torch.net import economy
from wasm_torch.net.client import Http
from wasm_torch.net.errors import BadMessage
from wasm_torch.net.pipeline_job import PipelineEvent, PipelineJobError, fetch_task_outputs, run_pipeline
from wasm_torch.net.wire import b64d, b64e

pytestmark = [pytest.mark.toolchain, pytest.mark.wasm]
IN, HID, OUT, MAX_ROWS, STAGES = 16, 32, 16, 8, 3
DEAD = "http://127.0.0.1:9"  # nothing listens: reaching it would raise Unreachable, not the error we expect


@pytest.fixture(scope="module")
def staged(tmp_path_factory, keys):
    """(pipeline folder with every stage signed by 'publisher', unsplit artifact, torch model, publisher .pub)."""
    import torch
    from torch.export import Dim

    import wasm_torch
    from wasm_torch.integrity.signing import load_private_key, sign_artifact

    torch.manual_seed(0)
    layers = [torch.nn.Linear(IN, HID), torch.nn.ReLU(), torch.nn.Linear(HID, HID), torch.nn.ReLU(),
              torch.nn.Linear(HID, HID), torch.nn.ReLU(), torch.nn.Linear(HID, OUT)]  # fmt: skip
    model = torch.nn.Sequential(*layers).eval()
    root = tmp_path_factory.mktemp("pipejob")
    example, dyn = (torch.randn(4, IN),), ({0: Dim("batch", min=1, max=MAX_ROWS)},)
    pipe = wasm_torch.compile(model, example, root / "mlp3", dynamic_shapes=dyn, stages=PartitionOptions(STAGES, 0.5))
    whole = wasm_torch.compile(model, example, root / "whole", dynamic_shapes=dyn)
    priv, pub, _ = keys.make("publisher")  # the key the coordinator trusts
    for st in pipe.stages:
        sign_artifact(st.path, [load_private_key(priv)])
    return Path(pipe.path), Path(whole.path), model, pub


def _rows(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, IN)).astype(np.float32)


def _local(staged, x: np.ndarray, batch: int) -> tuple[np.ndarray, np.ndarray]:
    """The same micro-batches through the local Pipeline and through the unsplit artifact (simd128 build)."""
    from wasm_torch.analyze.runner import Pipeline
    from wasm_torch.runtime import load

    chunks = [x[i : i + batch] for i in range(0, len(x), batch)]
    pipe = np.concatenate(Pipeline(staged[0], variant="simd128").run_many([(c,) for c in chunks], threads=2))
    whole = load(staged[1], variant="simd128", threads=1)
    return pipe, np.concatenate([whole(c) for c in chunks])


def _grant(http: Http, coord_signer, account: str, credits: float) -> None:
    to = http.get("/v1/info")["coordinator"]
    msg = {"type": "grant", "account": account, "amount": int(credits * economy.MICRO), "note": "pipeline"}
    http.post("/v1/ledger/grant", coord_signer.seal(msg, to))


def _copy(staged, tmp_path: Path) -> Path:
    dst = tmp_path / "copy"
    shutil.copytree(staged[0], dst)
    return dst


def test_pipeline_on_the_network_is_bit_identical_and_overlaps(staged, procs, keys, tmp_path, capsys):
    folder, _, model, pub = staged
    ckey, _, coord_signer = keys.make("pipe-coord")
    url, _ = procs.coordinator("C", ckey, pub, extra=["--param", "poll_s=0.2", "--param", "max_replicas=3"])
    http = Http(url)
    owner_key, _, owner = keys.make("pipe-owner")
    _grant(http, coord_signer, owner.id, 100)

    # no node yet: the first stage job cannot finish -> an error naming stage, micro-batch and job
    with pytest.raises(PipelineJobError, match=r"stage 0 \(stage_0\), micro-batch 0, job job-\w+: not done within") as e:
        run_pipeline(http, owner, folder, [_rows(2, 0)], batch=2, timeout=1.0)
    assert (e.value.stage, e.value.micro_batch) == (0, 0) and e.value.job.startswith("job-")

    # nodes that cannot run anything (1 MB of memory): the task fails on max_replicas nodes -> an error
    broken = [procs.node(f"broken{i}", [url], keys.make(f"pipe-broken{i}")[0], pub, extra=["--memory-limit", "1"])
              for i in range(3)]  # fmt: skip
    with pytest.raises(PipelineJobError, match=r"stage 0 \(stage_0\), micro-batch 0, job job-\w+: 1 task\(s\) failed"):
        run_pipeline(http, owner, folder, [_rows(2, 1)], batch=2, timeout=90)
    for p in broken:
        p.terminate()
        p.wait(timeout=20)

    # two honest nodes (each task takes them >= 0.3 s, so a stage job outlasts the client's poll):
    # 10 rows in micro-batches of 3 (the last has 1 row) through 3 stages
    for i in range(2):
        procs.node(f"n{i}", [url], keys.make(f"pipe-node{i}")[0], pub, extra=["--fault", "slow=0.3"])
    x = _rows(10, 2)
    events: list[PipelineEvent] = []
    (y,) = run_pipeline(http, owner, folder, [x], batch=3, timeout=120, progress=events.append)
    pipe_y, whole_y = _local(staged, x, 3)
    assert y.dtype == np.float32 and y.shape == (10, OUT)
    assert np.array_equal(y, pipe_y) and np.array_equal(y, whole_y)
    import torch

    with torch.no_grad():
        assert np.abs(y - model(torch.from_numpy(x)).numpy()).max() < 1e-4

    # every (stage, micro-batch) job submitted once and done once; stage j+1 of m only after stage j of m
    order = [(e.kind, e.stage, e.micro_batch) for e in events]
    assert sorted(order) == sorted((k, j, m) for k in ("submitted", "done") for j in range(STAGES) for m in range(4))
    for j in range(1, STAGES):
        for m in range(4):
            assert order.index(("done", j - 1, m)) < order.index(("submitted", j, m))
    # each job is one validated task; on the coordinator's clock, a later stage's job was already
    # submitted while an earlier stage's job of another micro-batch was still running
    jobs = {(e.stage, e.micro_batch): http.get(f"/v1/jobs/{e.job}") for e in events if e.kind == "done"}
    assert all((s["status"], s["done"], s["failed"]) == ("done", 1, 0) for s in jobs.values())
    overlaps = [(a, b) for a, sa in jobs.items() for b, sb in jobs.items()
                if a[0] > b[0] and a[1] < b[1] and sa["created_ms"] < sb["finished_ms"]]  # fmt: skip
    assert overlaps, {k: (s["created_ms"], s["finished_ms"]) for k, s in jobs.items()}

    # canonical outputs altered at rest on the coordinator (its hash kept) are refused, as are outputs
    # that are not the stage's
    last = next(e for e in reversed(events) if e.kind == "done")
    want = [(o.name, o.dtype) for o in read_pipeline(folder).stage_manifests[last.stage].outputs]
    assert [n for n, _ in fetch_task_outputs(http, last.job, want)] == [n for n, _ in want]
    with pytest.raises(BadMessage, match="are not the stage's"):
        fetch_task_outputs(http, last.job, [("other", "float32")])
    with sqlite3.connect(procs.root / "C.db") as db:
        (blob,) = db.execute("select outputs from tasks where job=?", (last.job,)).fetchone()
        bundle = json.loads(blob)
        arr = np.frombuffer(b64d(bundle[0]["data"], "t", 1 << 20), np.float32).copy()
        arr[0] += 1.0
        bundle[0]["data"] = b64e(arr.tobytes())
        db.execute("update tasks set outputs=? where job=?", (json.dumps(bundle).encode(), last.job))
    with pytest.raises(BadMessage, match="do not match their quorum-validated hash"):
        fetch_task_outputs(http, last.job, want)

    # the CLI, once: micro-batches of 4 (4, 4, 2)
    x2 = _rows(10, 3)
    np.save(tmp_path / "x.npy", x2, allow_pickle=False)
    capsys.readouterr()
    assert main(["job", "pipeline", str(folder), str(tmp_path / "x.npy"), "--coordinator", url, "--key",
                 str(owner_key), "--batch", "4", "-o", str(tmp_path / "y.npy")]) == 0  # fmt: skip
    got = capsys.readouterr()
    assert "wrote" in got.out and "stage 2 micro-batch 2 done" in got.err
    y2 = np.load(tmp_path / "y.npy", allow_pickle=False)
    assert all(np.array_equal(y2, ref) for ref in _local(staged, x2, 4))


def test_unsigned_stage_is_refused_before_anything_is_sent(staged, tmp_path):
    folder = _copy(staged, tmp_path)
    (folder / "stage_1" / "signature.json").unlink()
    with pytest.raises(ArtifactError, match=r"stage 1 \(.*stage_1\) is not signed.*wasm-torch sign .*stage_1"):
        run_pipeline(Http(DEAD, attempts=1), _signer(), folder, [_rows(4, 0)], batch=2)


def _signer():
    from wasm_torch.net.wire import Signer

    return Signer.generate()


@pytest.mark.parametrize("where, words", [
    ("stage_1/manifest.json", "does not match pipeline.json"),  # the manifest pinned by pipeline.json
    ("stage_0/weights.bin", "stage 0: .*weights.bin"),  # a file pinned by the stage manifest
    ("stage_2/model.wasm", "stage 2: .*model.wasm"),
])  # fmt: skip
def test_tampered_stage_is_refused_before_anything_is_sent(staged, tmp_path, where, words):
    folder = _copy(staged, tmp_path)
    f = folder / where
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0x01
    f.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match=words):
        run_pipeline(Http(DEAD, attempts=1), _signer(), folder, [_rows(4, 0)], batch=2)


def test_tampered_pipeline_json_is_refused(staged, tmp_path):
    folder = _copy(staged, tmp_path)
    text = (folder / "pipeline.json").read_text()
    (folder / "pipeline.json").write_text(text.replace('"stage": 0', '"stage": 2', 1))  # a forward reference
    with pytest.raises(ArtifactError, match="does not run before it"):
        run_pipeline(Http(DEAD, attempts=1), _signer(), folder, [_rows(4, 0)], batch=2)


@pytest.mark.parametrize("inputs, batch, words", [
    (lambda: [], 1, "takes 1 inputs"),
    (lambda: [_rows(4, 0), _rows(4, 1)], 1, "takes 1 inputs"),
    (lambda: [np.float32(1.0)], 1, "same number"),
    (lambda: [np.zeros((0, IN), np.float32)], 1, "same number"),
    (lambda: [_rows(4, 0)], 0, "batch must be an integer >= 1"),
    (lambda: [_rows(4, 0)], 2.5, "batch must be an integer >= 1"),
    (lambda: [_rows(20, 0)], MAX_ROWS + 1, r"cannot take a micro-batch of shapes \{'input': \(9, 16\)\}.*outside the compiled range"),
    (lambda: [np.zeros((4, IN + 1), np.float32)], 2, "stage 0 .*axis 1: 17 != 16"),
    (lambda: [np.array([[object()]] * 2)], 1, "object array"),
    (lambda: [np.ones((4, IN), np.complex64)], 1, "is complex64; the model takes float32"),
])  # fmt: skip
def test_malformed_inputs_are_refused_before_anything_is_sent(staged, inputs, batch, words):
    with pytest.raises(BadMessage, match=words):
        run_pipeline(Http(DEAD, attempts=1), _signer(), staged[0], inputs(), batch=batch)


def _cli(args: list[str], capsys) -> tuple[int, str]:
    try:
        code = main(args)
    except SystemExit as e:  # argparse's own usage errors
        code = e.code if isinstance(e.code, int) else 2
    out = capsys.readouterr()
    return code, out.out + out.err


@pytest.mark.parametrize("extra, words", [
    (["--batch", "0"], "expected a int > 0"),
    (["--batch", "lots"], "expected a int > 0"),
    (["--timeout", "-1"], "expected a float > 0"),
    (["--timeout", "nan"], "expected a float > 0"),
    (["X=pickled"], "not a .npy array"),
    (["X=npz"], ".npz archive"),
    (["X=missing"], "No such file"),
    (["P=unsigned"], "is not signed"),
    (["P=not-a-pipeline"], "is not a pipeline folder"),
])  # fmt: skip
def test_cli_hostile_flags_and_files_exit_2(staged, keys, tmp_path, capsys, extra, words):
    priv, _, _ = keys.make("pipe-cli")
    x = tmp_path / "x.npy"
    np.save(x, _rows(4, 0), allow_pickle=False)
    np.save(tmp_path / "pickled.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    np.savez(tmp_path / "a.npz", x=_rows(2, 0))
    unsigned = _copy(staged, tmp_path)
    (unsigned / "stage_0" / "signature.json").unlink()
    files = {"X=pickled": tmp_path / "pickled.npy", "X=npz": tmp_path / "a.npz", "X=missing": tmp_path / "nope.npy"}
    folder = {"P=unsigned": unsigned, "P=not-a-pipeline": staged[1]}.get(extra[0], staged[0])
    xs = files.get(extra[0], x)
    flags = [f for f in extra if "=" not in f or f.startswith("--")]
    code, text = _cli(["job", "pipeline", str(folder), str(xs), "--coordinator", DEAD, "--key", str(priv),
                       "-o", str(tmp_path / "y.npy"), *flags], capsys)  # fmt: skip
    assert code == 2 and words in text and "Traceback" not in text, text
    assert not (tmp_path / "y.npy").exists()


def test_the_pipeline_client_imports_no_torch_sympy_or_compiler():
    code = ("import sys, wasm_torch.net.pipeline_job, wasm_torch.net.cli; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'sympy') "
            "or m.startswith('wasm_torch.compiler')))")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]", out.stdout
