"""The peer benchmark as a script, same as `wasm-torch bench` (docs/benchmarks.md):

.venv/bin/python bench/suite.py [--models mlp,resnet18] [--quick] [--out bench/results/latest.json]
"""

from __future__ import annotations

import sys

from wasm_torch.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
