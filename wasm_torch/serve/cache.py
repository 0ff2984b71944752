"""An LRU result cache keyed by a hash of the inputs (inference is a pure function of them)."""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Mapping

import numpy as np


def input_digest(inputs: Mapping[str, np.ndarray]) -> bytes:
    """sha256 over names, dtypes, shapes and bytes of every input, in name order."""
    h = hashlib.sha256()
    for name in sorted(inputs):
        arr = np.ascontiguousarray(inputs[name])
        h.update(f"{name}\0{arr.dtype.str}\0{arr.shape}\0".encode())
        h.update(arr.tobytes())
    return h.digest()


class ResultCache:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: OrderedDict[bytes, dict[str, np.ndarray]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @property
    def enabled(self) -> bool:
        return self.capacity > 0

    def get(self, key: bytes) -> dict[str, np.ndarray] | None:
        with self._lock:
            value = self._items.get(key)
            if value is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return value

    def put(self, key: bytes, value: Mapping[str, np.ndarray]) -> None:
        if self.capacity <= 0:
            return
        frozen = {}
        for name, arr in value.items():
            copy = np.array(arr, copy=True)
            copy.flags.writeable = False
            frozen[name] = copy
        with self._lock:
            self._items[key] = frozen
            self._items.move_to_end(key)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        return len(self._items)

    @property
    def hit_rate(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0
