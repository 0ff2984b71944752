"""Merkle roots over ledger entries, so two coordinators compare whole ledgers with one hash.

Hashing (the RFC 6962 shape): leaf = sha256(0x00 + entry hash), node = sha256(0x01 + left + right);
an odd node at the end of a level is carried up unchanged; the root of nothing is sha256(b"").

`MerkleLog` is one issuer's tree with leaf i = the entry with seq i + 1; a seq not (yet) held is a
zero leaf (32 zero bytes). Positions are fixed by seq, so entries may arrive in any order and two
replicas holding the same entries have the same tree. The
ledger root is the Merkle root over sha256(issuer id + issuer root) for the issuers in sorted order.
"""

from __future__ import annotations

import hashlib

EMPTY = hashlib.sha256(b"").digest()
ZERO = bytes(32)


def leaf(entry_hash: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + entry_hash).digest()


def node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def root_of(leaves: list[bytes]) -> bytes:
    """Root over already-hashed leaves (leaf() applied)."""
    if not leaves:
        return EMPTY
    level = leaves
    while len(level) > 1:
        nxt = [node(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


def _pair(below: list[bytes], j: int) -> bytes:
    left = below[2 * j]
    return node(left, below[2 * j + 1]) if 2 * j + 1 < len(below) else left


class MerkleLog:
    """One issuer's entries as a Merkle tree over seq positions. `put` only records the leaf; `root`
    recomputes the nodes above changed leaves (O(k log n) for k changes, or one pass over the tree
    when many changed: a bulk merge costs about one rebuild)."""

    def __init__(self) -> None:
        self.levels: list[list[bytes]] = [[]]
        self.count = 0
        self.dirty: set[int] = set()
        self.grown_from: int | None = None  # level 0 grew from this length since the last root()

    def __len__(self) -> int:
        return self.count

    @property
    def width(self) -> int:
        """The highest seq the tree has a position for (= the highest seq ever put)."""
        return len(self.levels[0])

    def put(self, seq: int, entry_hash: bytes) -> None:
        """Insert or replace the entry at `seq` (>= 1)."""
        i = seq - 1
        base = self.levels[0]
        if i >= len(base):
            if self.grown_from is None:
                self.grown_from = len(base)
            base.extend([ZERO] * (i + 1 - len(base)))
        if base[i] == ZERO:
            self.count += 1
        base[i] = leaf(entry_hash)
        self.dirty.add(i)

    def root(self) -> bytes:
        if self.dirty or self.grown_from is not None:
            self._flush()
        if not self.levels[0]:
            return EMPTY
        return self.levels[-1][0]

    def _flush(self) -> None:
        base = self.levels[0]
        n = len(base)
        if self.grown_from is not None or len(self.dirty) * 16 > n:
            self.levels = [base]
            level = base
            while len(level) > 1:
                level = [_pair(level, j) for j in range((len(level) + 1) // 2)]
                self.levels.append(level)
        else:
            idx = self.dirty
            k = 0
            while len(self.levels[k]) > 1:
                idx = {i // 2 for i in idx}
                below, above = self.levels[k], self.levels[k + 1]
                for j in idx:
                    above[j] = _pair(below, j)
                k += 1
        self.dirty = set()
        self.grown_from = None


def ledger_root(issuer_roots: dict[str, bytes]) -> bytes:
    return root_of([leaf(hashlib.sha256(i.encode() + r).digest()) for i, r in sorted(issuer_roots.items())])
