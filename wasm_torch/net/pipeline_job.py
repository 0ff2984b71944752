"""Running a partitioned model (`compile(..., stages=k)`) as a pipeline of jobs on the edge network.

    from wasm_torch.net.client import Http
    from wasm_torch.net.pipeline_job import run_pipeline
    from wasm_torch.net.wire import Signer

    ys = run_pipeline(Http(URL), Signer.from_file("me.key"), "out/mlp2", [x], batch=4)

    wasm-torch job pipeline out/mlp2 x.npy --coordinator URL --key me.key --batch 4 -o y.npy

Every stage folder is an ordinary signed artifact and is uploaded once. The inputs are split along
axis 0 into micro-batches of `batch` rows; each (stage, micro-batch) is one job of one task. Stage 0's
jobs go out first; as soon as stage j's job for micro-batch m is done — its task validated by quorum,
its canonical outputs fetched and their hash checked — the stages that read stage j's outputs are
submitted for m. So stage j+1 of micro-batch m runs while stage j of micro-batch m+1 does, on
whichever nodes lease them (a node fetches only the stage artifact of the task it leased).

Outputs are bit-identical to the local `Pipeline` and to the unsplit artifact: every task pins the
deterministic simd128 build (`params.pinned_variant`) and the partition runs the unsplit model's own
kernels. Everything that can be checked before spending credit is checked before the first job:
pipeline.json and every stage manifest hash (`read_pipeline`), every stage file against its manifest,
a signature on every stage (the coordinator verifies it against its trusted publishers), the
coordinator's sha of each upload against pipeline.json's pin, the input names, rows and the shapes
the first stages accept. A job whose task failed, or that is not done within `timeout` seconds, is a
`PipelineJobError` naming the stage, micro-batch and job id (jobs already submitted keep running: the
coordinator has no cancel).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..analyze.pipeline_manifest import PipelineManifest, read_pipeline
from ..artifact import SIGNATURE, verify_files
from ..errors import ArtifactError, IntegrityError
from . import tensors
from .client import Http, Refused
from .errors import BadMessage, NetError, Unreachable
from .submit import upload_artifact
from .wire import Signer, b64e
from .work import bind_shapes

MAX_OUTPUT_BYTES = 1 << 30  # per task, as fetch_outputs


class PipelineJobError(NetError):
    """A stage job of a pipeline failed, timed out or was refused (stage, micro_batch, job say which)."""

    def __init__(self, message: str, *, stage: int, micro_batch: int | None, job: str | None) -> None:
        super().__init__(message)
        self.stage, self.micro_batch, self.job = stage, micro_batch, job


@dataclass(frozen=True)
class PipelineEvent:
    """One step of a pipeline run, passed to `progress`: a stage job submitted or done."""

    kind: str  # "submitted" | "done"
    stage: int
    micro_batch: int
    job: str
    done: int  # stage jobs done so far
    total: int  # stage jobs in the whole run (stages × micro-batches)
    in_flight: tuple[tuple[int, int], ...]  # (stage, micro-batch) of every job submitted and not done


def _check_stages(pm: PipelineManifest) -> None:
    """Every stage signed and its files (wasm, weights, builds) those its pinned manifest lists."""
    unsigned = [(j, pm.path / st.dir) for j, st in enumerate(pm.stages) if not (pm.path / st.dir / SIGNATURE).is_file()]
    if unsigned:
        j, folder = unsigned[0]
        more = f" (and {len(unsigned) - 1} more stage(s))" if len(unsigned) > 1 else ""
        raise ArtifactError(f"stage {j} ({folder}) is not signed{more}; nodes run only signed artifacts: sign every "
                            f"stage first: wasm-torch sign {folder} --key PUBLISHER.key")  # fmt: skip
    for j, (st, m) in enumerate(zip(pm.stages, pm.stage_manifests, strict=True)):
        try:
            verify_files(pm.path / st.dir, m)
        except ArtifactError as e:
            raise type(e)(f"stage {j}: {e}; recompile the pipeline (compile(..., stages=k)) and sign it again") from None


def _micro_batches(pm: PipelineManifest, inputs: Sequence[np.ndarray], batch: int) -> list[dict[str, np.ndarray]]:
    if type(batch) is not int or batch < 1:
        raise BadMessage(f"batch must be an integer >= 1 (rows per micro-batch), got {batch!r}")
    names = pm.input_names
    if len(inputs) != len(names):
        raise BadMessage(f"{pm.name} takes {len(names)} inputs {names}; got {len(inputs)}")
    dtypes: dict[str, str] = {}  # the dtype the (checked) manifest of a stage reading the input wants
    for st, m in zip(pm.stages, pm.stage_manifests, strict=True):
        for spec in m.inputs:
            src = dict(st.inputs)[spec.name]
            if src.stage is None:
                dtypes[src.name] = spec.dtype
    arrays = []
    for n, a in zip(names, inputs, strict=True):
        a = np.asarray(a)
        if a.dtype == object:
            raise BadMessage(f"input {n!r} is an object array; pass numeric arrays")
        if n in dtypes:
            if not np.can_cast(a.dtype, dtypes[n], casting="same_kind"):
                raise BadMessage(f"input {n!r} is {a.dtype}; the model takes {dtypes[n]} (convert it first)")
            a = a.astype(dtypes[n], copy=False)
        arrays.append(a)
    rows = arrays[0].shape[0] if arrays and arrays[0].ndim else 0
    if not rows or any(a.ndim == 0 or a.shape[0] != rows for a in arrays):
        got = {n: list(a.shape) for n, a in zip(names, arrays, strict=True)}
        raise BadMessage(f"every input needs the same number (>= 1) of rows on axis 0 to be split into "
                         f"micro-batches; got shapes {got}")  # fmt: skip
    return [{n: a[i : i + batch] for n, a in zip(names, arrays, strict=True)} for i in range(0, rows, batch)]


def _check_shapes(pm: PipelineManifest, batches: list[dict[str, np.ndarray]]) -> None:
    """Stages fed only by model inputs must accept every micro-batch's shapes (checked before any job)."""
    for j, (st, m) in enumerate(zip(pm.stages, pm.stage_manifests, strict=True)):
        if any(src.stage is not None for _, src in st.inputs):
            continue
        seen = set()
        for mb in batches:
            shapes = {name: tuple(mb[src.name].shape) for name, src in st.inputs}
            key = tuple(sorted(shapes.items()))
            if key in seen:
                continue
            seen.add(key)
            try:
                bind_shapes(m, shapes)
            except BadMessage as e:
                raise BadMessage(f"stage {j} ({pm.path / st.dir}) cannot take a micro-batch of shapes {shapes}: "
                                 f"{e}; check the input shapes and that the rows per micro-batch (batch) are "
                                 "within the compiled range") from None  # fmt: skip


def fetch_task_outputs(http: Http, job: str, want: Sequence[tuple[str, str]]) -> list[tuple[str, np.ndarray]]:
    """The canonical outputs of a one-task job that is done: decoded strictly, checked against the
    quorum-validated hash and against `want` (the stage manifest's output names and dtypes, in order)."""
    page = http.get(f"/v1/jobs/{job}/outputs?start=0&limit=1")["tasks"]
    if len(page) != 1 or page[0]["status"] != "done" or page[0]["outputs"] is None:
        raise BadMessage("the coordinator reports the job done but has no canonical output for its task")
    named = tensors.decode(page[0]["outputs"], f"job {job} outputs", MAX_OUTPUT_BYTES)
    if tensors.output_hash(named) != page[0]["hash"]:
        raise BadMessage("the outputs do not match their quorum-validated hash")
    got = [(n, a.dtype.name) for n, a in named]
    if got != list(want):
        raise BadMessage(f"outputs {got} are not the stage's {list(want)}")
    return named


class _Run:
    """The state of one pipeline run: which (stage, micro-batch) jobs are waiting, running, done."""

    def __init__(self, http: Http, signer: Signer, pm: PipelineManifest, shas: list[str],
                 batches: list[dict[str, np.ndarray]], priority: bool, timeout: float, poll: float,
                 max_in_flight: int, progress: Callable[[PipelineEvent], None] | None) -> None:  # fmt: skip
        self.http, self.signer, self.pm, self.shas, self.batches = http, signer, pm, shas, batches
        self.priority, self.timeout, self.poll, self.max_in_flight = priority, timeout, poll, max_in_flight
        self.progress = progress
        self.k = len(pm.stages)
        self.deps = [{src.stage for _, src in st.inputs if src.stage is not None} for st in pm.stages]
        self.made: list[dict[tuple[int, str], np.ndarray]] = [{} for _ in batches]
        self.done = [[False] * self.k for _ in batches]
        self.running: dict[tuple[int, int], tuple[str, float]] = {}  # (stage, m) -> (job id, submitted at)
        self.n_done = 0
        self.coordinator = str(http.get("/v1/info")["coordinator"])

    def _event(self, kind: str, j: int, m: int, job: str) -> None:
        if self.progress is not None:
            self.progress(PipelineEvent(kind, j, m, job, self.n_done, self.k * len(self.batches),
                                        tuple(sorted(self.running))))  # fmt: skip

    def _feeds(self, j: int, m: int) -> list[tuple[str, np.ndarray]]:
        ins = dict(self.pm.stages[j].inputs)  # in the stage manifest's input order, as the coordinator wants
        out = []
        for spec in self.pm.stage_manifests[j].inputs:
            src = ins[spec.name]
            out.append((spec.name, self.batches[m][src.name] if src.stage is None else self.made[m][(src.stage, src.name)]))
        return out

    def submit(self, j: int, m: int) -> None:
        payload = {"type": "job", "pubkey": b64e(self.signer.public_raw), "artifact": self.shas[j],
                   "tasks": [tensors.encode(self._feeds(j, m))], "priority": self.priority}  # fmt: skip
        try:
            got = self.http.post("/v1/jobs", self.signer.seal(payload, self.coordinator))
        except Refused as e:
            raise PipelineJobError(f"stage {j}, micro-batch {m}: the coordinator refused the job: {e.message} "
                                   f"(HTTP {e.status})", stage=j, micro_batch=m, job=None) from None  # fmt: skip
        job = str(got["job"])
        self.running[(j, m)] = (job, time.monotonic())
        self._event("submitted", j, m, job)

    def _fail(self, j: int, m: int, job: str, why: str) -> PipelineJobError:
        return PipelineJobError(f"stage {j} ({self.pm.stages[j].dir}), micro-batch {m}, job {job}: {why}",
                                stage=j, micro_batch=m, job=job)  # fmt: skip

    def check(self, j: int, m: int) -> bool:
        """Poll one running job; on done, fetch and check its outputs. True when it finished."""
        job, t0 = self.running[(j, m)]
        try:
            s = self.http.get(f"/v1/jobs/{job}")
        except Unreachable as e:  # a coordinator restart: keep polling until the job's timeout
            if time.monotonic() - t0 > self.timeout:
                raise self._fail(j, m, job, f"the coordinator is unreachable: {e}") from None
            return False
        if s["failed"]:
            raise self._fail(j, m, job, f"{s['failed']} task(s) failed (no quorum of nodes agreed on the outputs "
                                        "or every node that tried it failed); see the coordinator's /v1/status")  # fmt: skip
        if s["status"] != "done":
            if time.monotonic() - t0 > self.timeout:
                raise self._fail(j, m, job, f"not done within {self.timeout:g} s ({s['done']}/{s['tasks']} tasks "
                                            f"done, {s['running']} running); are nodes connected? raise --timeout")  # fmt: skip
            return False
        want = [(o.name, o.dtype) for o in self.pm.stage_manifests[j].outputs]
        try:
            named = fetch_task_outputs(self.http, job, want)
        except BadMessage as e:
            raise self._fail(j, m, job, str(e)) from None
        for name, arr in named:
            self.made[m][(j, name)] = arr
        del self.running[(j, m)]
        self.done[m][j] = True
        self.n_done += 1
        self._event("done", j, m, job)
        return True

    def ready(self) -> list[tuple[int, int]]:
        """(stage, micro-batch) jobs whose inputs exist, oldest micro-batch first, within the window."""
        active = [m for m in range(len(self.batches)) if not all(self.done[m])]
        window = set(active[: self.max_in_flight])
        return [(j, m) for m in sorted(window) for j in range(self.k)
                if not self.done[m][j] and (j, m) not in self.running and all(self.done[m][d] for d in self.deps[j])]  # fmt: skip

    def run(self) -> list[np.ndarray]:
        while self.n_done < self.k * len(self.batches):
            progressed = False
            for j, m in self.ready():
                self.submit(j, m)
            for j, m in sorted(self.running, key=lambda t: (t[1], t[0])):
                if self.check(j, m):  # done: its readers (and a newly admitted micro-batch) go out now
                    progressed = True
                    for jj, mm in self.ready():
                        self.submit(jj, mm)
            if not progressed:
                time.sleep(self.poll)
        return self.collect()

    def collect(self) -> list[np.ndarray]:
        outs: list[np.ndarray] = []
        for _, src in self.pm.outputs:
            parts = [mb[src.name] if src.stage is None else made[(src.stage, src.name)]
                     for mb, made in zip(self.batches, self.made, strict=True)]  # fmt: skip
            outs.append(np.concatenate(parts, axis=0))
        return outs


def run_pipeline(
    http: Http,
    signer: Signer,
    pipeline_dir: str | Path,
    inputs: Sequence[np.ndarray],
    batch: int = 1,
    *,
    priority: bool = False,
    timeout: float = 600.0,
    poll: float = 0.1,
    max_in_flight: int | None = None,
    progress: Callable[[PipelineEvent], None] | None = None,
) -> list[np.ndarray]:
    """Run the pipeline folder on the network; the model outputs, micro-batches concatenated on axis 0.

    inputs: one array per model input (pipeline.json order), split into micro-batches of `batch` rows.
    timeout: seconds one stage job may take from submission to done. max_in_flight: micro-batches
    with jobs out at once (default: stages + 2). progress: called on every job submitted or done."""
    if not timeout > 0 or not poll > 0:
        raise BadMessage(f"timeout and poll must be > 0 seconds, got {timeout!r} and {poll!r}")
    pm = read_pipeline(pipeline_dir)  # every stage manifest against its pinned sha256
    _check_stages(pm)
    batches = _micro_batches(pm, inputs, batch)
    _check_shapes(pm, batches)
    window = len(pm.stages) + 2 if max_in_flight is None else max_in_flight
    if type(window) is not int or window < 1:
        raise BadMessage(f"max_in_flight must be an integer >= 1, got {max_in_flight!r}")
    shas = []
    for j, st in enumerate(pm.stages):
        try:
            sha = upload_artifact(http, pm.path / st.dir)
        except Refused as e:
            raise PipelineJobError(f"stage {j} ({pm.path / st.dir}): the coordinator refused the artifact: "
                                   f"{e.message} (HTTP {e.status})", stage=j, micro_batch=None, job=None) from None  # fmt: skip
        if sha != st.manifest_sha256:
            raise IntegrityError(f"{pm.path / st.dir}: the uploaded manifest.json (sha256 {sha[:16]}…) is not the "
                                 f"one pipeline.json pins ({st.manifest_sha256[:16]}…); it changed during the run")  # fmt: skip
        shas.append(sha)
    run = _Run(http, signer, pm, shas, batches, priority, timeout, poll, window, progress)
    return run.run()


__all__ = ["PipelineEvent", "PipelineJobError", "run_pipeline"]
