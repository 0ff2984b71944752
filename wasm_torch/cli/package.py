"""`wasm-torch package`: a static web site that runs an artifact in the browser (deploy/web.py).

Needs only the runtime install: the site is the artifact's files, the JS runtime and a demo page.
"""

from __future__ import annotations

import argparse
from typing import Any

from .common import existing_dir, existing_file


def cmd_package(a: argparse.Namespace) -> int:
    from ..deploy.web import package_site

    site = package_site(a.artifact, a.web, vocab=a.vocab)
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
    k.set_defaults(fn=cmd_package, parser=k)
