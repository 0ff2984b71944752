"""What every `wasm-torch` command shares: the help formatter, argument types that reject bad values
with a message naming the flag, and the check for an optional extra.

Argument types raise `argparse.ArgumentTypeError`, so argparse prints the subcommand's usage and
"argument --dtype: ..." and exits with status 2, never a traceback. Checks that need more than one
argument call `fail(a, message)`, which does the same from inside a command.
"""

from __future__ import annotations

import argparse
import importlib.util
import re
from pathlib import Path
from typing import Any, NoReturn

from ..errors import DependencyError

# What each extra brings (pyproject.toml [project.optional-dependencies]): module names to look for.
EXTRAS: dict[str, tuple[str, ...]] = {
    "compile": ("torch", "sympy", "ziglang", "tqdm"),
    "serve": ("fastapi", "uvicorn", "prometheus_client"),
}


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the description's line breaks and appends '(default: X)' to every option that has a
    default worth showing (not None, False or an empty list)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            "%(default)" in text
            or default is argparse.SUPPRESS
            or default is None
            or default is False
            or default == []
            or not action.option_strings
            or isinstance(action, argparse._HelpAction | argparse._VersionAction)
        ):
            return text
        return f"{text} (default: %(default)s)"


class Parser(argparse.ArgumentParser):
    """ArgumentParser whose subcommands (ours and other rooms') all use `HelpFormatter`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)


def fail(a: argparse.Namespace, message: str) -> NoReturn:
    """Exit with the subcommand's usage and `message` (status 2), like a bad flag would."""
    parser = getattr(a, "parser", None)
    if isinstance(parser, argparse.ArgumentParser):
        parser.error(message)
    raise SystemExit(f"error: {message}")


def require_extra(extra: str, command: str) -> None:
    """Raise DependencyError naming the extra to install if any of its modules is missing."""
    missing = [m for m in EXTRAS[extra] if importlib.util.find_spec(m) is None]
    if missing:
        raise DependencyError(
            f"`wasm-torch {command}` needs the '{extra}' extra, which is not installed (missing: "
            f"{', '.join(missing)}). Install it with: pip install 'wasm-torch[{extra}]' "
            f"(from a checkout: pip install -e '.[{extra}]')"
        )


# ---- argument types ------------------------------------------------------------------------------
def positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if v <= 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {v}")
    return v


def non_negative_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {v}")
    return v


def positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not v > 0 or v == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text!r}")
    return v


def non_negative_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not v >= 0 or v == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}")
    return v


def shape(text: str) -> tuple[int, ...]:
    """'1,128' -> (1, 128); every size a whole number > 0."""
    parts = [p.strip() for p in text.split(",")]
    if not text.strip() or not all(re.fullmatch(r"\d+", p) for p in parts):
        raise argparse.ArgumentTypeError(f"expected comma-separated sizes like 1,128, got {text!r}")
    dims = tuple(int(p) for p in parts)
    if any(d == 0 for d in dims):
        raise argparse.ArgumentTypeError(f"sizes must be > 0, got {text!r}")
    if len(dims) > 8 or any(d > 1 << 31 for d in dims):
        raise argparse.ArgumentTypeError(f"{text!r}: at most 8 axes, each below 2**31")
    return dims


def dtype_name(text: str) -> str:
    """A lower-case torch dtype name (checked against what the compiler supports when used)."""
    name = text.strip().lower().removeprefix("torch.")
    if not re.fullmatch(r"[a-z][a-z0-9]*", name):
        raise argparse.ArgumentTypeError(f"expected a dtype name like float32 or int64, got {text!r}")
    return name


class DynamicDim(tuple):
    """INPUT:AXIS:NAME:MAX, parsed: (input index, axis, name, max)."""

    @property
    def input(self) -> int:
        return self[0]

    @property
    def axis(self) -> int:
        return self[1]

    @property
    def name(self) -> str:
        return self[2]

    @property
    def max(self) -> int:
        return self[3]


def dynamic_dim(text: str) -> DynamicDim:
    parts = text.split(":")
    usage = "expected INPUT:AXIS:NAME:MAX, e.g. 0:1:seq:512 (input 0, axis 1, named seq, at most 512)"
    if len(parts) != 4:
        raise argparse.ArgumentTypeError(f"{usage}; got {text!r} ({len(parts)} fields)")
    i, axis, name, hi = parts
    if not re.fullmatch(r"\d+", i) or not re.fullmatch(r"-?\d+", axis):
        raise argparse.ArgumentTypeError(f"{usage}; INPUT and AXIS must be whole numbers in {text!r}")
    if not name.isidentifier():
        raise argparse.ArgumentTypeError(f"{usage}; NAME must be an identifier like seq or batch in {text!r}")
    if not re.fullmatch(r"\d+", hi) or int(hi) < 2:
        raise argparse.ArgumentTypeError(f"{usage}; MAX must be a whole number >= 2 in {text!r}")
    if int(hi) > 1 << 31:
        raise argparse.ArgumentTypeError(f"MAX must be below 2**31 in {text!r}")
    return DynamicDim((int(i), int(axis), name, int(hi)))


def existing_file(text: str) -> Path:
    p = Path(text)
    if not p.exists():
        raise argparse.ArgumentTypeError(f"{text}: no such file")
    if not p.is_file():
        raise argparse.ArgumentTypeError(f"{text}: not a file")
    return p


def existing_dir(text: str) -> Path:
    p = Path(text)
    if not p.exists():
        raise argparse.ArgumentTypeError(f"{text}: no such folder")
    if not p.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: not a folder (expected an artifact folder)")
    return p


def load_npy(path: Path, what: str = "input") -> Any:
    """A .npy file as a numpy array, without ever unpickling; a clear error for anything else."""
    import numpy as np

    from ..errors import InputError

    try:
        arr = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise InputError(f"{what} file {path}: no such file") from None
    except (ValueError, OSError, EOFError) as e:
        why = "object arrays and pickled data are never loaded" if "pickle" in str(e) else str(e)
        raise InputError(
            f"{what} file {path} is not a readable .npy array ({why}); save inputs with numpy.save, "
            "numeric or bool dtypes only"
        ) from None
    if not isinstance(arr, np.ndarray):  # np.load returns an NpzFile for .npz archives
        close = getattr(arr, "close", None)
        if close is not None:
            close()
        raise InputError(f"{what} file {path} is a .npz archive; save each input as its own .npy file")
    return arr

