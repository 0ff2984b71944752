"""The `wasm-torch` parser and entry point: builds the subcommands of every room, runs one, and
turns our errors into one line on stderr (status 2) instead of a traceback.

Each command group adds its own sub-parsers with `add_parsers(sub)`: compile/run/info, package,
serve and bench here in cli/, the integrity commands in integrity/cli.py, the edge network's in
net/cli.py, the tuner's in learn/cli.py, deploy's in deploy/cli.py. Heavy imports (torch, fastapi,
...) happen inside the command functions, so `wasm-torch --help` and the runtime commands work in a
runtime-only install.
"""

from __future__ import annotations

import sys

from ..analyze import cli as analyze_cli
from ..deploy import cli as deploy_cli
from ..errors import WasmTorchError
from ..integrity import cli as integrity_cli
from ..learn import cli as learn_cli
from ..net import cli as net_cli
from ..version import __version__
from . import bench as bench_cli
from . import compile as compile_cli
from . import package as package_cli
from . import serve as serve_cli
from .common import Parser

DESCRIPTION = """\
Compile PyTorch models to small, sandboxed WebAssembly modules, checked against PyTorch, and run
them from Python, Node, the browser or an HTTP server.

  wasm-torch compile mymodels.py:make --input-shape 1,3,32,32 -o out/net   # model -> out/net/
  wasm-torch compile mypkg.models:bert --input-shape 1,128 --dtype int64 --dynamic 0:1:seq:512 -o out/bert
  wasm-torch info out/net                          # what the artifact takes and returns; verifies hashes
  wasm-torch run out/net x.npy --save y.npy        # run it on .npy inputs
  wasm-torch serve out/ --port 8000                # KServe v2 over HTTP (the 'serve' extra)
  wasm-torch package out/net --web site/           # a static site that runs it in the browser

'wasm-torch COMMAND --help' explains a command and its options. A runtime-only install
(pip install wasm-torch) runs, inspects and packages artifacts; compiling needs
pip install 'wasm-torch[compile]', serving 'wasm-torch[serve]'. Docs: README.md and docs/.
"""


def build_parser() -> Parser:
    p = Parser(prog="wasm-torch", description=DESCRIPTION)
    p.add_argument("--version", action="version", version=f"wasm-torch {__version__}")
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND", parser_class=Parser)
    compile_cli.add_parsers(sub)  # compile, run, info
    package_cli.add_parsers(sub)
    serve_cli.add_parsers(sub)
    integrity_cli.add_parsers(sub)
    learn_cli.add_parsers(sub)
    deploy_cli.add_parsers(sub)
    net_cli.add_parsers(sub)
    analyze_cli.add_parsers(sub)  # pipeline info | run
    bench_cli.add_parsers(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    try:
        return a.fn(a)
    except WasmTorchError as e:  # ours: the message says what was wrong and what to do
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a file we were told to read or write: permission, disk full, ...
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
