"""Client side of jobs: upload a signed artifact, split inputs into tasks, submit, watch, fetch.

    wasm-torch job submit out/mlp x.npy --coordinator URL --key keys/me.key [--batch 1] [--priority] [--watch]
    wasm-torch job watch JOB --coordinator URL
    wasm-torch job fetch JOB --coordinator URL -o y.npy

Inputs are .npy files (allow_pickle=False), one per model input, split along axis 0 into tasks of
--batch rows. Outputs come back per task and are concatenated along axis 0 in task order.
"""

from __future__ import annotations

import hashlib
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from ..artifact import MANIFEST, SIGNATURE, read_manifest, read_manifest_bytes
from ..errors import ArtifactError
from . import tensors
from .client import Http, Refused
from .errors import BadMessage
from .wire import Signer, b64e


def upload_artifact(http: Http, folder: str | Path) -> str:
    """Upload the artifact if the coordinator does not have it; returns its id (sha256 of manifest)."""
    folder = Path(folder)
    if not (folder / SIGNATURE).exists():
        raise ArtifactError(f"{folder} is not signed; sign it first: wasm-torch sign {folder} --key PUBLISHER.key")
    manifest = read_manifest_bytes(folder)
    sha = hashlib.sha256(manifest).hexdigest()
    try:
        http.raw(f"/v1/artifacts/{sha}/{MANIFEST}")
        return sha
    except Refused as e:
        if e.status != 404:
            raise
    names = [MANIFEST, SIGNATURE, *read_manifest(folder, manifest).raw["files"]]
    files = {n: b64e((folder / n).read_bytes()) for n in names}
    got = http.post("/v1/artifacts", {"files": files})
    return str(got["sha"])


def split(arrays: Sequence[np.ndarray], names: Sequence[str], batch: int) -> list[list[dict[str, Any]]]:
    """Task bundles: rows [i, i+batch) of every input."""
    if batch < 1:
        raise BadMessage("--batch must be >= 1")
    n = arrays[0].shape[0] if arrays and arrays[0].ndim else 0
    if not n or any(a.ndim == 0 or a.shape[0] != n for a in arrays):
        raise BadMessage("every input needs the same number of rows (axis 0) to be split into tasks")
    return [tensors.encode([(nm, a[i : i + batch]) for nm, a in zip(names, arrays, strict=True)])
            for i in range(0, n, batch)]  # fmt: skip


def submit_job(
    http: Http, signer: Signer, artifact: str | Path, inputs: Sequence[np.ndarray], batch: int = 1, priority: bool = False
) -> dict[str, Any]:
    sha = upload_artifact(http, artifact)
    m = read_manifest(artifact)
    names = [s.name for s in m.inputs]
    if len(inputs) != len(names):
        raise BadMessage(f"{m.name} takes {len(names)} inputs {names}; got {len(inputs)} files")
    arrays = [np.ascontiguousarray(a).astype(s.dtype, copy=False) for a, s in zip(inputs, m.inputs, strict=True)]
    coordinator = str(http.get("/v1/info")["coordinator"])
    payload = {"type": "job", "pubkey": b64e(signer.public_raw), "artifact": sha,
               "tasks": split(arrays, names, batch), "priority": priority}  # fmt: skip
    return dict(http.post("/v1/jobs", signer.seal(payload, coordinator)))


def watch(http: Http, job: str, every: float = 1.0, out: TextIO | None = None,
          stop: Callable[[dict[str, Any]], bool] | None = None, timeout: float | None = None) -> dict[str, Any]:  # fmt: skip
    """Print a progress bar until the job is done (or `timeout` seconds pass)."""
    out = out or sys.stdout
    t0 = time.monotonic()
    while True:
        s = http.get(f"/v1/jobs/{job}")
        n, done, failed = s["tasks"], s["done"], s["failed"]
        width = 40
        fill = int(width * (done + failed) / max(1, n))
        end = s["finished_ms"] or s.get("now_ms") or int(time.time() * 1000)
        rate = done / max(1e-3, (end - s["created_ms"]) / 1000)
        out.write(f"\r{job} [{'#' * fill}{'.' * (width - fill)}] {done}/{n} done, {failed} failed, "
                  f"{s['running']} running, {rate:.1f} tasks/s, spent {s['spent'] / 1e6:.6f} cr ")  # fmt: skip
        out.flush()
        if s["status"] == "done" or (stop and stop(s)):
            out.write("\n")
            return dict(s)
        if timeout is not None and time.monotonic() - t0 > timeout:
            out.write("\n")
            return dict(s)
        time.sleep(every)


def fetch_outputs(http: Http, job: str) -> list[np.ndarray]:
    """Canonical outputs of every task, concatenated along axis 0 in task order."""
    status = http.get(f"/v1/jobs/{job}")
    per_task: list[list[np.ndarray]] = []
    start = 0
    while start < status["tasks"]:
        page = http.get(f"/v1/jobs/{job}/outputs?start={start}&limit=500")["tasks"]
        if not page:
            break
        for t in page:
            if t["status"] != "done":
                raise BadMessage(f"task {t['idx']} of {job} is {t['status']}; no canonical output")
            named = tensors.decode(t["outputs"], f"task {t['idx']} outputs", 1 << 30)
            if tensors.output_hash(named) != t["hash"]:
                raise BadMessage(f"task {t['idx']}: outputs do not match their canonical hash")
            per_task.append([a for _, a in named])
        start = page[-1]["idx"] + 1
    if len(per_task) != status["tasks"]:
        raise BadMessage(f"{job}: {len(per_task)} of {status['tasks']} task outputs available")
    return [np.concatenate([t[k] for t in per_task], axis=0) for k in range(len(per_task[0]))]
