"""Keep wasmtime's trap handling intact in a process that runs Ray. Import before `import ray`.

wasmtime turns a wasm trap (out-of-range index, unreachable, out-of-bounds access) into a Python
exception by catching SIGILL/SIGSEGV in its own signal handler and resuming at the trap site. Two
handlers Ray installs on top of it break that: the C++ core's failure signal handler (absl),
installed when `ray.init` connects — disabled by RAY_DISABLE_FAILURE_SIGNAL_HANDLER, which Ray
reads once, at import — and Python's `faulthandler`, which `ray.init` enables if nothing has yet
(`init_ray` below turns it off again, restoring the handlers that were there before). Either one
turns a trap into a crash of the whole process (SIGILL, exit 132) instead of an `IndexOutOfRange`
answered with a 4xx. Ray's worker processes inherit the variable; there Ray's handlers are
installed before any wasm module is created, so wasmtime's sit on top and chain to them.
"""

from __future__ import annotations

import faulthandler
import os
from typing import Any

os.environ.setdefault("RAY_DISABLE_FAILURE_SIGNAL_HANDLER", "1")


def init_ray(**kwargs: Any) -> None:
    """`ray.init(**kwargs)` without leaving Python's faulthandler above wasmtime's handlers."""
    import ray

    had_faulthandler = faulthandler.is_enabled()
    ray.init(**kwargs)
    if not had_faulthandler and faulthandler.is_enabled():
        faulthandler.disable()
