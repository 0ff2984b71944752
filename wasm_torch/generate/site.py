"""A static site that generates text in the browser from a generator artifact (the in-browser demo).

    site/
      index.html, generate-demo.mjs     the demo page: prompt in, tokens streamed out of a Web Worker
      wasm-torch*.mjs, bpe.mjs           the JS runtime + generation (wasm-torch-generate*.mjs) + byte-level BPE
      generator/                         the artifact (manifest.json, model*.wasm, weights.bin, tokenizer.json),
                                         hashes checked before copying; signature.json when signed
      serve.py, _headers                 a static server / host config sending COOP/COEP (threads in the page)

    package_generator_site("out/gpt2-gen", "site/")   then   python site/serve.py 8000

Nothing here imports torch or the compiler.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from ..artifact import MANIFEST, SIGNATURE, read_manifest, verify_files
from ..deploy.web import HEADERS, JS_DIR, RUNTIME_FILES, SERVE_PY
from ..errors import ArtifactError

GENERATE_FILES = ("wasm-torch-generate.mjs", "wasm-torch-generate-worker.mjs", "bpe.mjs")
SITE_FILES = {"index.html", "generate-demo.mjs", *RUNTIME_FILES, *GENERATE_FILES, "serve.py", "_headers", "generator"}


def package_generator_site(artifact_dir: str | Path, site_dir: str | Path) -> Path:
    """Write the demo site for `artifact_dir` (a compile_generator artifact) into `site_dir`, which
    must be new, empty or an earlier such site (nothing else in it is ever overwritten)."""
    art, site = Path(artifact_dir), Path(site_dir)
    manifest = read_manifest(art)
    if "generator" not in manifest.raw:
        raise ArtifactError(f"{art} is not a text generator (compile one with wasm_torch.compile_generator)")
    if site.is_symlink() or (site.exists() and not site.is_dir()):
        raise ArtifactError(f"{site} exists and is not a folder; give a new folder for the site")
    if site.is_dir():
        foreign = sorted(p.name for p in site.iterdir() if p.name not in SITE_FILES)
        if foreign:
            raise ArtifactError(
                f"{site} holds files this packager did not write ({', '.join(foreign[:6])}): refusing to "
                "overwrite it; give a new or empty folder"
            )
    verify_files(art, manifest)  # never ship a tampered artifact
    out = site / "generator"
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    for name in (MANIFEST, *manifest.raw["files"]):
        shutil.copyfile(art / name, out / name)
    if (art / SIGNATURE).exists():
        shutil.copyfile(art / SIGNATURE, out / SIGNATURE)
    for name in (*RUNTIME_FILES, *GENERATE_FILES):
        shutil.copyfile(JS_DIR / name, site / name)
    shutil.copyfile(JS_DIR / "demo" / "generate.html", site / "index.html")
    shutil.copyfile(JS_DIR / "demo" / "generate-demo.mjs", site / "generate-demo.mjs")
    (site / "serve.py").write_text(SERVE_PY.format(headers=HEADERS))
    (site / "_headers").write_text("/*\n" + "".join(f"  {k}: {v}\n" for k, v in HEADERS.items()))
    return site
