"""`wasm-torch package`: a static web site that runs an artifact in the browser (deploy/web.py).

Needs only the runtime install: the site is the artifact's files, the JS runtime and a demo page.
"""

from __future__ import annotations

import argparse
from typing import Any

from .common import existing_dir, existing_file, fail


def cmd_package(a: argparse.Namespace) -> int:
    from ..deploy.web import package_site

    also: dict[str, str] = {}
    for item in a.also or []:
        label, _, path = item.partition("=")
        if not label or not path or label in also:
            fail(a, f"--also {item!r}: expected LABEL=ARTIFACT (e.g. int8=out/minilm-int8), each label once")
        also[label] = path
    site = package_site(a.artifact, a.web, vocab=a.vocab, also=also)
    print(f"wrote {site}/  ->  python {site}/serve.py 8000  then open http://127.0.0.1:8000/")
    return 0


def add_parsers(sub: Any) -> None:
    k = sub.add_parser("package", help="write a static web site that runs an artifact in the browser")
    k.add_argument("artifact", type=existing_dir, help="artifact folder (from wasm-torch compile)")
    k.add_argument("--web", required=True, metavar="SITE", help="output folder for the site")
    k.add_argument(
        "--vocab",
        type=existing_file,
        help="WordPiece vocab.txt for the text demo page (default: MiniLM's, if the artifact is minilm)",
    )
    k.add_argument(
        "--also",
        action="append",
        metavar="LABEL=ARTIFACT",
        help="another build of the same model the page offers (?model=LABEL), e.g. int8=out/minilm-int8 (repeat)",
    )
    k.set_defaults(fn=cmd_package, parser=k)
