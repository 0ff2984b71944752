"""Strict JSON for every file an artifact folder holds (manifest, signature, cascade, release store).

Python's json module accepts things a hostile file can use: duplicate keys (the last one wins, so
two readers may disagree on what a file says), NaN/Infinity, integers of any length (a 4,300-digit
one raises a ValueError from deep inside, a 4,000-digit one is a slow bignum), nesting deep
enough to raise RecursionError. `loads` refuses all of them with one error class named by the
caller, and never lets a foreign exception out.
"""

from __future__ import annotations

import json
import math
from typing import Any

from ..errors import ArtifactError

MAX_INT_DIGITS = 19  # enough for any int64; the schema bounds the values further


class _Refused(ValueError):
    pass


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise _Refused(f"duplicate key {k[:64]!r}")
        out[k] = v
    return out


def _int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise _Refused(f"integer with {len(text)} digits (at most {MAX_INT_DIGITS})")
    return int(text)


def _float(text: str) -> float:
    if len(text) > 64:
        raise _Refused(f"number with {len(text)} characters")
    v = float(text)
    if not math.isfinite(v):
        raise _Refused(f"number {text[:32]} is out of range")
    return v


def _constant(name: str) -> Any:
    raise _Refused(f"non-standard JSON constant {name}")


def loads(
    data: bytes, where: str, *, max_bytes: int, error: type[ArtifactError] = ArtifactError, fix: str = ""
) -> Any:
    """Parse UTF-8 JSON bytes strictly; any problem raises `error` naming `where` (and `fix`, what to do)."""
    hint = f"; {fix}" if fix else ""
    if len(data) > max_bytes:
        raise error(f"{where} is {len(data):,} bytes, over the {max_bytes:,}-byte limit{hint}")
    try:
        text = bytes(data).decode("utf-8")
    except UnicodeDecodeError as e:
        raise error(f"{where} is not UTF-8 ({e.reason} at byte {e.start}){hint}") from None
    try:
        return json.loads(
            text, object_pairs_hook=_pairs, parse_int=_int, parse_float=_float, parse_constant=_constant
        )
    except _Refused as e:
        raise error(f"{where} is refused: {e}{hint}") from None
    except RecursionError:
        raise error(f"{where} is nested too deeply to be valid{hint}") from None
    except ValueError as e:  # json.JSONDecodeError: syntax, trailing bytes, a BOM
        raise error(f"{where} is not valid JSON ({e}){hint}") from None


def dumps_canonical(obj: Any) -> bytes:
    """One byte string per value: sorted keys, no spaces, ASCII (what signatures are made over)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()
