"""Cascade router (the honest "Tiny Dancer"): a small classifier answers when it is confident,
otherwise the request goes to a large one.

    cascade/cascade.json   {"format": "wasm-torch-cascade/1", "small": "small", "large": "large",
                            "threshold": 0.97, "score": "max_prob", "output": "output_0"}
    cascade/small/, cascade/large/   two compiled artifact folders with the same inputs

Confidence is the small model's max softmax probability (`max_prob`, the default) or the margin
between its two largest probabilities (`margin`); a row is answered by the small model when its
confidence is >= the threshold. `calibrate_threshold` picks that threshold on held-out data: the
smallest one whose cascade accuracy on the calibration set is at least the large model's accuracy
there minus a tolerance (so it maximises the share the small model answers under that constraint).

Served as one model: a folder holding `cascade.json` is picked up by the registry; its outputs are
the answering model's logits plus `cascade_model` (INT32 per row: 0 small, 1 large) and
`cascade_confidence` (FP32 per row).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from wasm_torch.artifact import TensorSpec, read_regular
from wasm_torch.artifact.layout import MAX_SMALL_FILE_BYTES
from wasm_torch.errors import ArtifactError, IntegrityError

CASCADE_FILE = "cascade.json"
FORMAT = "wasm-torch-cascade/1"
SCORES = ("max_prob", "margin")
MODEL_OUTPUT, CONFIDENCE_OUTPUT = "cascade_model", "cascade_confidence"
_KEYS = {"format", "small", "large", "threshold", "score", "output", "calibration"}


# --- confidence and calibration (pure numpy) ---------------------------------------------------
def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def confidence(logits: np.ndarray, score: str = "max_prob") -> np.ndarray:
    """Per-row confidence in [0, 1] from (rows, classes) logits."""
    if score == "max_prob":  # max softmax probability = 1 / sum(exp(z - max z))
        z = np.asarray(logits, dtype=np.float64)
        return 1.0 / np.exp(z - z.max(axis=-1, keepdims=True)).sum(axis=-1)
    if score == "margin":
        top2 = np.sort(softmax(logits), axis=-1)[..., -2:]
        return top2[..., 1] - top2[..., 0]
    raise ValueError(f"unknown cascade score {score!r}; use one of {list(SCORES)}")


@dataclass(frozen=True)
class Calibration:
    threshold: float  # answer with the small model when confidence >= threshold (inf: never)
    small_fraction: float  # share of calibration rows the small model answers at that threshold
    cascade_accuracy: float  # on the calibration rows
    large_accuracy: float
    small_accuracy: float
    tolerance: float
    rows: int

    def to_json(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["threshold"] = None if math.isinf(self.threshold) else self.threshold
        return d


def calibrate_threshold(
    conf: Sequence[float] | np.ndarray,
    small_correct: Sequence[bool] | np.ndarray,
    large_correct: Sequence[bool] | np.ndarray,
    tolerance: float = 0.0,
) -> Calibration:
    """The smallest threshold t with cascade accuracy(t) >= large accuracy - tolerance.

    Candidates are the observed confidences (accept conf >= t) and +inf (always defer, which is
    exactly the large model, so a feasible t always exists). Ties at t are accepted together.
    """
    c = np.asarray(conf, dtype=np.float64)
    s, g = np.asarray(small_correct, dtype=bool), np.asarray(large_correct, dtype=bool)
    if not (c.ndim == 1 and c.shape == s.shape == g.shape and c.size > 0):
        raise ValueError("conf, small_correct and large_correct must be equal-length, non-empty 1-D arrays")
    if not np.isfinite(c).all():
        raise ValueError("confidences must be finite")
    if not 0.0 <= tolerance < 1.0:
        raise ValueError(f"tolerance must be in [0, 1), got {tolerance}")
    n = c.size
    order = np.argsort(-c, kind="stable")  # most confident first
    cs, ss, gs = c[order], s[order], g[order]
    # accepting the k most confident rows: correct = small on them + large on the rest
    small_cum = np.concatenate([[0], np.cumsum(ss)])
    large_rest = np.concatenate([[0], np.cumsum(gs)])
    correct = small_cum + (large_rest[-1] - large_rest)  # index k = number accepted
    target = gs.mean() - tolerance
    best_k = 0
    for k in range(1, n + 1):  # only cut between distinct confidences (ties go together)
        if k < n and cs[k] == cs[k - 1]:
            continue
        if correct[k] / n >= target - 1e-12:
            best_k = k
    threshold = math.inf if best_k == 0 else float(cs[best_k - 1])
    return Calibration(
        threshold=threshold,
        small_fraction=best_k / n,
        cascade_accuracy=float(correct[best_k] / n),
        large_accuracy=float(gs.mean()),
        small_accuracy=float(ss.mean()),
        tolerance=tolerance,
        rows=n,
    )


# --- the config file ---------------------------------------------------------------------------
@dataclass(frozen=True)
class CascadeConfig:
    folder: Path
    small: Path
    large: Path
    threshold: float
    score: str = "max_prob"
    output: str | None = None  # which output holds the logits (default: the small model's first)
    calibration: dict[str, Any] = field(default_factory=dict)  # informational


def _bad(path: Path, what: str) -> ArtifactError:
    return ArtifactError(f"{path}: {what}")


def read_config(folder: str | os.PathLike[str], data: bytes | None = None) -> CascadeConfig:
    """Read and check `folder/cascade.json`; member paths are relative to `folder`. `data`: the bytes
    of cascade.json already read (and signature-checked), so exactly those are used."""
    folder = Path(folder)
    path = folder / CASCADE_FILE
    if data is None and not path.exists():
        raise _bad(path, "not found; write it with wasm_torch.serve.cascade.write_config")
    try:  # a regular file inside the folder, at most 1 MiB (no link, FIFO or device)
        data = read_regular(folder, CASCADE_FILE, max_bytes=MAX_SMALL_FILE_BYTES) if data is None else data
        raw = json.loads(data.decode(), parse_constant=lambda c: math.nan)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError, ValueError) as exc:
        raise _bad(path, f"is not valid JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise _bad(path, "must hold a JSON object")
    if raw.get("format") != FORMAT:
        raise _bad(path, f"'format' must be {FORMAT!r}, got {raw.get('format')!r}")
    unknown = sorted(set(raw) - _KEYS)
    if unknown:
        raise _bad(path, f"unknown keys {unknown}; allowed: {sorted(_KEYS)}")
    members = {}
    for key in ("small", "large"):
        rel = raw.get(key)
        if not isinstance(rel, str) or not rel:
            raise _bad(path, f"{key!r} must name the {key} model's artifact folder (relative to {folder})")
        member = Path(rel) if Path(rel).is_absolute() else folder / rel
        if not (member / "manifest.json").is_file():
            raise _bad(
                path, f"{key!r} = {rel!r}: {member} is not a compiled artifact folder (no manifest.json)"
            )
        members[key] = member
    if members["small"].resolve() == members["large"].resolve():
        raise _bad(path, "'small' and 'large' name the same folder")
    threshold = raw.get("threshold")
    if threshold is None:
        threshold = math.inf  # calibration found no threshold: always use the large model
    if isinstance(threshold, bool) or not isinstance(threshold, int | float) or math.isnan(threshold):
        raise _bad(path, f"'threshold' must be a number in [0, 1] or null, got {threshold!r}")
    if not (0.0 <= threshold <= 1.0 or math.isinf(threshold)):
        raise _bad(path, f"'threshold' must be in [0, 1] (or null for 'always large'), got {threshold}")
    score = raw.get("score", "max_prob")
    if score not in SCORES:
        raise _bad(path, f"'score' must be one of {list(SCORES)}, got {score!r}")
    output = raw.get("output")
    if output is not None and not isinstance(output, str):
        raise _bad(path, f"'output' must be an output name, got {output!r}")
    calibration = raw.get("calibration", {})
    if not isinstance(calibration, dict):
        raise _bad(path, "'calibration' must be an object")
    return CascadeConfig(
        folder, members["small"], members["large"], float(threshold), score, output, calibration
    )


def write_config(
    folder: str | os.PathLike[str],
    small: str,
    large: str,
    threshold: float,
    score: str = "max_prob",
    output: str | None = None,
    calibration: Mapping[str, Any] | None = None,
) -> Path:
    """Write `folder/cascade.json` (atomically) and check it reads back."""
    folder = Path(folder)
    body: dict[str, Any] = {
        "format": FORMAT,
        "small": small,
        "large": large,
        "threshold": None if math.isinf(threshold) else float(threshold),
        "score": score,
    }
    if output is not None:
        body["output"] = output
    if calibration:
        body["calibration"] = dict(calibration)
    tmp = folder / (CASCADE_FILE + ".tmp")
    tmp.write_text(json.dumps(body, indent=1, allow_nan=False))
    tmp.replace(folder / CASCADE_FILE)
    read_config(folder)
    return folder / CASCADE_FILE


# --- the servable model ------------------------------------------------------------------------
def _spec_key(s: Any) -> tuple[str, str, tuple[Any, ...]]:
    return (s.name, str(s.dtype), tuple(s.shape))


class CascadeModel:
    """Two loaded models behind the runtime contract (`inputs`, `outputs`, `run`, `stats`).

    Not thread-safe (like a WasmModule): the server gives each replica its own instance.
    """

    def __init__(
        self,
        small: Any,
        large: Any,
        threshold: float,
        score: str = "max_prob",
        output: str | None = None,
        name: str = "cascade",
    ) -> None:
        if score not in SCORES:
            raise ValueError(f"unknown cascade score {score!r}; use one of {list(SCORES)}")
        self.small, self.large, self.threshold, self.score, self.name = small, large, threshold, score, name
        if [_spec_key(s) for s in small.inputs] != [_spec_key(s) for s in large.inputs]:
            raise ArtifactError(
                f"cascade {name!r}: the small and large models must take the same inputs; got "
                f"{[_spec_key(s) for s in small.inputs]} and {[_spec_key(s) for s in large.inputs]}"
            )
        self.inputs = list(small.inputs)
        out = output or small.outputs[0].name
        spec = {s.name: s for s in small.outputs}.get(out)
        big = {s.name: s for s in large.outputs}.get(out)
        if spec is None or big is None:
            raise ArtifactError(f"cascade {name!r}: output {out!r} must exist in both models")
        if len(spec.shape) != 2 or tuple(spec.shape) != tuple(big.shape) or spec.dtype != "float32":
            raise ArtifactError(
                f"cascade {name!r}: output {out!r} must be float32 logits of shape (rows, classes), "
                f"equal in both models; got {spec.dtype}{list(spec.shape)} and {big.dtype}{list(big.shape)}"
            )
        for member in (small, large):
            rows = spec.shape[0]
            sym = {s.name: s for s in getattr(getattr(member, "manifest", None), "symbols", [])}.get(rows)
            if sym is not None and sym.min > 1:
                raise ArtifactError(
                    f"cascade {name!r}: the batch dim {rows!r} of {member.name!r} has min {sym.min}; the "
                    "large model gets only the deferred rows, so compile with Dim(..., min=1)"
                )
        self.output = out
        rows = spec.shape[0]
        self.outputs = [
            TensorSpec(out, "float32", tuple(spec.shape)),
            TensorSpec(MODEL_OUTPUT, "int32", (rows,)),
            TensorSpec(CONFIDENCE_OUTPUT, "float32", (rows,)),
        ]
        self.answered = {"small": 0, "large": 0}

    def route(self, conf: np.ndarray) -> np.ndarray:
        """True where the large model must answer."""
        return ~(conf >= self.threshold)

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        logits = np.asarray(self.small.run(dict(inputs))[self.output], dtype=np.float32)
        conf = confidence(logits, self.score)
        defer = self.route(conf)
        idx = np.flatnonzero(defer)
        if idx.size:
            logits = logits.copy()  # never write into a member's buffer
            logits[idx] = self.large.run({k: np.asarray(v)[idx] for k, v in inputs.items()})[self.output]
        self.answered["large"] += int(idx.size)
        self.answered["small"] += int(defer.size - idx.size)
        return {
            self.output: logits,
            MODEL_OUTPUT: defer.astype(np.int32),
            CONFIDENCE_OUTPUT: conf.astype(np.float32),
        }

    def __call__(self, *arrays: np.ndarray) -> dict[str, np.ndarray]:
        return self.run(dict(zip([s.name for s in self.inputs], arrays, strict=True)))

    def stats(self) -> dict[str, Any]:
        small, large = self.small.stats(), self.large.stats()
        return {
            "calls": small.get("calls", 0),
            "memory_bytes": int(small.get("memory_bytes", 0)) + int(large.get("memory_bytes", 0)),
            "answered_small": self.answered["small"],
            "answered_large": self.answered["large"],
        }


def _verified_config(folder: Path, integrity: Mapping[str, Any] | None) -> tuple[bytes | None, dict[str, str]]:
    """With trusted keys: check the cascade's signature.json (it covers cascade.json and each member's
    manifest.json) and return the verified cascade.json bytes and the member manifest hashes it pins."""
    keys = (integrity or {}).get("trusted_keys")
    require = (integrity or {}).get("require_signed", keys is not None)
    if keys is None and not require:
        return None, {}
    from wasm_torch.config import settings
    from wasm_torch.integrity.signing import verify_release

    store = (integrity or {}).get("releases") or settings().release_store
    v = verify_release(folder, keys or [], require=require, store=store)
    if v is None:  # unsigned, and signatures are optional
        return None, {}
    pins = {rel.rsplit("/", 1)[0]: hashlib.sha256(data).hexdigest() for rel, data in v.files.items() if "/" in rel}
    return v.files[CASCADE_FILE], pins


def cascade_factory(
    folder: str | os.PathLike[str],
    member_factory: Callable[[Path], Callable[[], Any]],
    integrity: Mapping[str, Any] | None = None,
) -> Callable[[], CascadeModel]:
    """A factory of fresh cascades for the server. The config is read and checked now, so a bad
    `cascade.json` fails at start-up; `member_factory(path)` makes the loader of one member (the
    registry passes its own, so members are sandboxed and verified like any served model).
    `integrity`: the `wasm_torch.load` options (trusted_keys, require_signed): the cascade's own
    signature is checked, and every member instance must run the manifest it pins."""
    folder = Path(folder)
    data, pins = _verified_config(folder, integrity)
    cfg = read_config(folder, data)
    if pins and set(pins) != {p.name for p in (cfg.small, cfg.large)}:
        raise IntegrityError(f"{folder / CASCADE_FILE}: its signature does not pin both members' manifests")
    make_small, make_large = member_factory(cfg.small), member_factory(cfg.large)
    name = folder.resolve().name

    def member(make_one: Callable[[], Any], path: Path) -> Any:
        m = make_one()
        if pins and getattr(m, "manifest_sha256", None) != pins[path.name]:
            raise IntegrityError(
                f"cascade {name!r}: member {path.name!r} does not run the manifest.json the cascade's signature "
                "pins (the member folder was changed or swapped after signing)"
            )
        return m

    def make() -> CascadeModel:
        small, large = member(make_small, cfg.small), member(make_large, cfg.large)
        return CascadeModel(small, large, cfg.threshold, cfg.score, cfg.output, name)

    return make


def load_cascade(folder: str | os.PathLike[str], **options: Any) -> CascadeModel:
    """In-process API: load both members with `wasm_torch.load(path, **options)`."""
    import wasm_torch

    return cascade_factory(folder, lambda p: lambda: wasm_torch.load(p, **options), options)()
