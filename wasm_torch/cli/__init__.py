"""`wasm-torch` command line: parsing only; the work is delegated to the library.

main.py builds the parser from one module per command group (compile.py: compile/run/info,
package.py, serve.py, bench.py; integrity/, net/ and learn/ add theirs) and runs the command.
"""

from .main import build_parser, main

__all__ = ["build_parser", "main"]
