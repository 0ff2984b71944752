"""Append-only, hash-chained audit log (JSON lines).

Each record carries `prev` (the previous record's hash) and `hash` = sha256 over the canonical
JSON of the record without `hash`. Editing, deleting or reordering any line breaks the chain at
that line, which `verify_chain` reports. (A chain shows tampering; it cannot stop someone who
can rewrite the whole file — ship the latest hash elsewhere for that.)
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

from wasm_torch.serve.errors import ServeError


class AuditLogBroken(ServeError, ValueError):
    """The audit log on disk fails its hash chain: the server refuses to extend it (start-up error)."""

GENESIS = "0" * 64


def _digest(record: dict[str, Any]) -> str:
    body = json.dumps(record, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(body.encode()).hexdigest()


class AuditLog:
    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._prev = GENESIS
        self._seq = 0
        if self.path.exists() and self.path.stat().st_size:
            ok, count, last = verify_chain(self.path)
            if not ok:
                raise AuditLogBroken(
                    f"audit log {self.path} is broken at record {count}; refusing to extend it "
                    "(keep it as evidence and start a new log file)"
                )
            self._prev, self._seq = last, count

    def append(self, event: str, **fields: Any) -> str:
        with self._lock:
            record = {
                "seq": self._seq,
                "ts": round(time.time(), 6),
                "event": event,
                **fields,
                "prev": self._prev,
            }
            record["hash"] = _digest(record)
            line = json.dumps(record, sort_keys=True, separators=(",", ":"), allow_nan=False)
            with self.path.open("a", encoding="utf-8") as f:
                f.write(line + "\n")
                f.flush()
            self._prev, self._seq = record["hash"], self._seq + 1
            return record["hash"]

    @property
    def head(self) -> str:
        return self._prev


def verify_chain(path: str | os.PathLike[str]) -> tuple[bool, int, str]:
    """(intact?, number of valid records before the first bad one, hash of the last valid one)."""
    prev, count = GENESIS, 0
    with Path(path).open(encoding="utf-8") as f:
        for line in f:
            try:
                record = json.loads(line)
                claimed = record.pop("hash")
            except (ValueError, KeyError, AttributeError):
                return False, count, prev
            if record.get("prev") != prev or record.get("seq") != count or _digest(record) != claimed:
                return False, count, prev
            prev, count = claimed, count + 1
    return True, count, prev
