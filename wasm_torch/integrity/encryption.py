"""AES-256-GCM encryption of weights.bin at rest, a keyring, and key rotation.

weights.bin.enc replaces weights.bin; manifest.json is not touched (it still pins the sha256 of the
plaintext weights, so a signature over it stays valid through encryption and rotation):

    MAGIC (8 bytes)  header length (uint32 LE)  header (JSON)  chunk 0 || tag 0  ...  chunk n-1 || tag n-1

    header = {"format": "wasm-torch-enc/1", "alg": "AES-256-GCM", "key_id": "2026-01",
              "key_check": "<16 hex>", "nonce_prefix": "<16 hex>", "chunk_bytes": 4194304,
              "plain_bytes": 90271936, "manifest_sha256": "<hex>"}

Chunk i (plaintext `chunk_bytes` long, the last one shorter) is sealed with nonce = nonce_prefix (8
random bytes, new for every file written) || i (uint32 big-endian) and
AAD = DOMAIN || sha256(magic, length, header) || sha256(this artifact's manifest.json) || i || last.
So a header edit, a reordered, dropped or appended chunk, or a file copied from another artifact
fails authentication; `key_check` (HMAC of a constant under the key) tells a wrong key apart from a
tampered file. Decryption happens in memory at load; the plaintext is never written to disk.

Keyring: key id -> 32 random bytes, a JSON file written with mode 0600
(`{"format": "wasm-torch-keyring/1", "keys": {"<id>": "<base64>"}}`) or `WASM_TORCH_KEYS`
(`id:base64[,id:base64...]`, read by config.py). Keys are never printed: repr shows ids only.

Rotation re-encrypts under a new key into a temporary file in the same folder, checks it decrypts,
then renames it over weights.bin.enc (atomic on POSIX): a crash at any point leaves either the old
or the new file, each loadable with its own key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import re
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..artifact import (
    ENCRYPTED_WEIGHTS,
    MANIFEST,
    WEIGHTS,
    open_regular,
    read_manifest,
    read_manifest_bytes,
    strictjson,
    verify_bytes,
)
from ..artifact.layout import MAX_MEMORY_BYTES
from ..config import Settings
from ..errors import ArtifactError, DecryptionError, KeyringError
from .signing import write_secret

MAGIC = b"WTENC/1\n"
FORMAT = "wasm-torch-enc/1"
KEYRING_FORMAT = "wasm-torch-keyring/1"
DOMAIN = b"wasm-torch-weights-aead/1"
CHUNK_BYTES = 4 * 1024 * 1024
MAX_HEADER = 4096
TAG = 16
MAX_ENCRYPTED_BYTES = MAX_MEMORY_BYTES + (1 << 24)  # plaintext fits wasm32 memory; headers and tags on top
KEY_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
HEADER_FIELDS = {
    "format",
    "alg",
    "key_id",
    "key_check",
    "nonce_prefix",
    "chunk_bytes",
    "plain_bytes",
    "manifest_sha256",
}


def _key_check(key: bytes) -> str:
    return hmac.new(key, b"wasm-torch key check", hashlib.sha256).hexdigest()[:16]


class Keyring:
    """key id -> 32-byte AES key. `repr` and errors show key ids, never key bytes."""

    def __init__(self, keys: Mapping[str, bytes] | None = None) -> None:
        self._keys: dict[str, bytes] = {}
        for kid, key in (keys or {}).items():
            self.add(kid, key)

    def __repr__(self) -> str:
        return f"Keyring(ids={self.ids})"

    @property
    def ids(self) -> list[str]:
        return sorted(self._keys)

    def __contains__(self, key_id: object) -> bool:
        return key_id in self._keys

    def __len__(self) -> int:
        return len(self._keys)

    def add(self, key_id: str, key: bytes | None = None) -> None:
        """Add a key (a fresh random one if `key` is None)."""
        if not KEY_ID_RE.match(key_id):
            raise KeyringError(
                f"invalid key id {key_id!r}: use 1-64 of A-Z a-z 0-9 _ . - (no leading symbol)"
            )
        key = os.urandom(32) if key is None else bytes(key)
        if len(key) != 32:
            raise KeyringError(f"key {key_id!r} is {len(key)} bytes; AES-256 needs exactly 32")
        if key_id in self._keys and not hmac.compare_digest(self._keys[key_id], key):
            raise KeyringError(f"key id {key_id!r} is already in the keyring with a different key")
        self._keys[key_id] = key

    def get(self, key_id: str) -> bytes:
        if key_id not in self._keys:
            raise KeyringError(
                f"the keyring has no key {key_id!r} (it has {self.ids}): pass the keyring that holds it "
                "(--keyring FILE, or WASM_TORCH_KEYRING / WASM_TORCH_KEYS)"
            )
        return self._keys[key_id]

    def merged(self, other: Keyring) -> Keyring:
        out = Keyring(self._keys)
        for kid in other.ids:
            out.add(kid, other.get(kid))
        return out

    # ---- files and environment ----------------------------------------------------------------
    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Keyring:
        path = Path(path)
        if not path.is_file():
            raise KeyringError(
                f"keyring file {path} does not exist (create one with `wasm-torch keygen --keyring FILE --key-id ID`)"
            )
        if os.name == "posix" and path.stat().st_mode & 0o077:
            raise KeyringError(
                f"keyring {path} is readable by other users (mode {path.stat().st_mode & 0o777:o}); "
                f"run chmod 600 {path}"
            )
        try:
            doc = json.loads(path.read_bytes().decode())
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise KeyringError(f"keyring {path} is not valid JSON ({e.__class__.__name__})") from None
        if (
            not isinstance(doc, dict)
            or doc.get("format") != KEYRING_FORMAT
            or not isinstance(doc.get("keys"), dict)
        ):
            raise KeyringError(
                f"keyring {path}: expected {{'format': {KEYRING_FORMAT!r}, 'keys': {{id: base64}}}}"
            )
        return cls({kid: _b64key(kid, v, str(path)) for kid, v in doc["keys"].items()})

    @classmethod
    def from_inline(cls, text: str) -> Keyring:
        """`id:base64[,id:base64...]` (the WASM_TORCH_KEYS format)."""
        ring = cls()
        for item in filter(None, (s.strip() for s in text.split(","))):
            kid, sep, b64 = item.partition(":")
            if not sep:
                raise KeyringError("WASM_TORCH_KEYS must look like id:base64[,id:base64...]")
            ring.add(kid, _b64key(kid, b64, "WASM_TORCH_KEYS"))
        return ring

    @classmethod
    def from_settings(cls, settings: Settings) -> Keyring:
        ring = cls.load(settings.keyring_file) if settings.keyring_file else cls()
        return ring.merged(cls.from_inline(settings.keyring_inline)) if settings.keyring_inline else ring

    def save(self, path: str | os.PathLike[str]) -> Path:
        doc = {
            "format": KEYRING_FORMAT,
            "keys": {k: base64.b64encode(v).decode() for k, v in self._keys.items()},
        }
        write_secret(Path(path), (json.dumps(doc, indent=1) + "\n").encode())
        return Path(path)


def _b64key(kid: str, value: Any, where: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True) if isinstance(value, str) else b""
    except binascii.Error:
        raise KeyringError(f"{where}: key {kid!r} is not valid base64") from None


def as_keyring(keyring: Keyring | str | os.PathLike[str] | None, settings: Settings) -> Keyring:
    if isinstance(keyring, Keyring):
        return keyring
    return Keyring.load(keyring) if keyring is not None else Keyring.from_settings(settings)


# ---- the file format -----------------------------------------------------------------------------
def _aad(header_digest: bytes, manifest_digest: bytes, i: int, last: bool) -> bytes:
    return DOMAIN + header_digest + manifest_digest + struct.pack(">IB", i, int(last))


def _chunks(plain_bytes: int, chunk_bytes: int) -> int:
    return max(1, -(-plain_bytes // chunk_bytes))


def encrypt_bytes(
    plain: bytes | memoryview, key_id: str, key: bytes, manifest: bytes, chunk_bytes: int = CHUNK_BYTES
) -> bytes:
    """The bytes of a weights.bin.enc for `plain`, bound to the artifact whose manifest is `manifest`."""
    prefix = os.urandom(8)
    mdigest = hashlib.sha256(manifest).digest()
    header = {
        "format": FORMAT,
        "alg": "AES-256-GCM",
        "key_id": key_id,
        "key_check": _key_check(key),
        "nonce_prefix": prefix.hex(),
        "chunk_bytes": chunk_bytes,
        "plain_bytes": len(plain),
        "manifest_sha256": mdigest.hex(),
    }
    hb = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    head = MAGIC + struct.pack("<I", len(hb)) + hb
    hdigest = hashlib.sha256(head).digest()
    aead, view, n = AESGCM(key), memoryview(plain), _chunks(len(plain), chunk_bytes)
    parts = [head]
    for i in range(n):
        piece = view[i * chunk_bytes : (i + 1) * chunk_bytes]
        parts.append(
            aead.encrypt(prefix + struct.pack(">I", i), piece, _aad(hdigest, mdigest, i, i == n - 1))
        )
    return b"".join(parts)


def read_header(f: BinaryIO, path: Path) -> tuple[dict[str, Any], bytes]:
    """(header, the raw magic+length+header bytes). Strict: known fields and types only."""
    head = f.read(len(MAGIC) + 4)
    if len(head) < len(MAGIC) + 4 or head[: len(MAGIC)] != MAGIC:
        raise DecryptionError(f"{path} is not a wasm-torch encrypted weights file (bad magic)")
    (n,) = struct.unpack("<I", head[len(MAGIC) :])
    if n > MAX_HEADER:
        raise DecryptionError(f"{path}: header length {n} is over {MAX_HEADER}; the file is corrupt")
    hb = f.read(n)
    h = strictjson.loads(hb, f"{path}: the header", max_bytes=MAX_HEADER, error=DecryptionError,
                         fix="the file is corrupt")  # fmt: skip
    ok = isinstance(h, dict) and set(h) == HEADER_FIELDS
    ok = ok and all(type(h[k]) is int and 0 <= h[k] <= MAX_ENCRYPTED_BYTES for k in ("chunk_bytes", "plain_bytes"))
    ok = ok and all(isinstance(h[k], str) for k in HEADER_FIELDS - {"chunk_bytes", "plain_bytes"})
    if not ok or h["format"] != FORMAT or h["alg"] != "AES-256-GCM" or h["chunk_bytes"] < 1:
        raise DecryptionError(
            f"{path}: unsupported or corrupt header (this runtime reads {FORMAT}, AES-256-GCM)"
        )
    try:
        if len(bytes.fromhex(h["nonce_prefix"])) != 8:
            raise ValueError
    except ValueError:
        raise DecryptionError(f"{path}: corrupt nonce in the header") from None
    return h, head + hb


def decrypt_file(path: Path, keyring: Keyring, manifest: bytes) -> bytearray:
    """Authenticate and decrypt weights.bin.enc into memory (never to disk). The file must be a regular
    file inside its folder (no link, FIFO or device) of at most 4 GiB plus framing."""
    f, size = open_regular(path.parent, path.name, max_bytes=MAX_ENCRYPTED_BYTES)
    with f:
        return decrypt_stream(f, size, path, keyring, manifest)


def decrypt_stream(f: BinaryIO, total: int, path: Path, keyring: Keyring, manifest: bytes) -> bytearray:
    """Decrypt `total` bytes of weights.bin.enc read from `f` (`path` only names it in errors)."""
    mdigest = hashlib.sha256(manifest).digest()
    h, head = read_header(f, path)
    if h["manifest_sha256"] != mdigest.hex():
        raise DecryptionError(
            f"{path} was encrypted for a different artifact (its manifest sha256 differs from "
            f"{MANIFEST} here): weights files cannot be swapped between artifacts"
        )
    key = keyring.get(h["key_id"])
    if not hmac.compare_digest(_key_check(key), h["key_check"]):
        raise DecryptionError(
            f"{path}: the keyring's key {h['key_id']!r} is not the key this file was encrypted with "
            "(wrong key). Use the keyring that encrypted it."
        )
    size, chunk = h["plain_bytes"], h["chunk_bytes"]
    n = _chunks(size, chunk)
    expected = len(head) + size + n * TAG
    if total != expected:
        raise DecryptionError(f"{path} is {total:,} bytes, expected {expected:,}: truncated or extended")
    aead, prefix, hdigest = AESGCM(key), bytes.fromhex(h["nonce_prefix"]), hashlib.sha256(head).digest()
    out = bytearray(size)
    for i in range(n):
        lo, hi = i * chunk, min(size, (i + 1) * chunk)
        sealed = f.read(hi - lo + TAG)
        try:
            out[lo:hi] = aead.decrypt(
                prefix + struct.pack(">I", i), sealed, _aad(hdigest, mdigest, i, i == n - 1)
            )
        except InvalidTag:
            raise DecryptionError(
                f"{path}: chunk {i} failed authentication: the ciphertext or header was modified, or the "
                "file belongs to another artifact. Restore it from a trusted copy."
            ) from None
    return out


def key_id_of(folder: str | os.PathLike[str]) -> str:
    path = Path(folder) / ENCRYPTED_WEIGHTS
    f, _ = open_regular(path.parent, path.name, max_bytes=MAX_ENCRYPTED_BYTES)
    with f:
        return str(read_header(f, path)[0]["key_id"])


# ---- artifact operations -------------------------------------------------------------------------
def _write_atomic(folder: Path, data: bytes) -> Path:
    """Write `data` to a fsynced temp file beside weights.bin.enc (`_commit` renames it into place)."""
    tmp = folder / f".{ENCRYPTED_WEIGHTS}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return tmp


def _commit(folder: Path, tmp: Path) -> None:
    os.replace(tmp, folder / ENCRYPTED_WEIGHTS)
    if hasattr(os, "O_DIRECTORY"):  # make the rename durable
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _clean_temp(folder: Path) -> None:
    for stale in folder.glob(f".{ENCRYPTED_WEIGHTS}.tmp*"):
        stale.unlink(missing_ok=True)


def encrypt_artifact(
    folder: str | os.PathLike[str],
    keyring: Keyring,
    key_id: str,
    keep_plaintext: bool = False,
    chunk_bytes: int = CHUNK_BYTES,
) -> Path:
    """Encrypt weights.bin to weights.bin.enc under `key_id`, check it decrypts, then delete weights.bin."""
    folder = Path(folder)
    manifest_bytes = read_manifest_bytes(folder)
    manifest = read_manifest(folder, manifest_bytes)
    plain_path = folder / WEIGHTS
    if not plain_path.exists():
        raise ArtifactError(f"{plain_path} is missing (already encrypted? use `wasm-torch rotate-key`)")
    plain = plain_path.read_bytes()
    verify_bytes(folder, manifest, WEIGHTS, plain)  # never encrypt weights that do not match the manifest
    _clean_temp(folder)
    tmp = _write_atomic(
        folder, encrypt_bytes(plain, key_id, keyring.get(key_id), manifest_bytes, chunk_bytes)
    )
    try:
        if decrypt_file(tmp, keyring, manifest_bytes) != plain:
            raise DecryptionError(f"{tmp} did not decrypt to {WEIGHTS}; nothing was changed")
        _commit(folder, tmp)
    finally:
        tmp.unlink(missing_ok=True)
    if not keep_plaintext:
        plain_path.unlink()  # note: unlinking does not scrub the old blocks from the disk
    return folder / ENCRYPTED_WEIGHTS


def rotate_key(
    folder: str | os.PathLike[str], old: Keyring, new: Keyring, new_key_id: str
) -> tuple[str, str]:
    """Re-encrypt weights.bin.enc from its current key (found in `old`) to `new_key_id` (in `new`).

    Atomic: the new file replaces the old one by rename only after it decrypted and matched the
    manifest's sha256. Returns (old key id, new key id).
    """
    folder = Path(folder)
    manifest_bytes = read_manifest_bytes(folder)
    manifest = read_manifest(folder, manifest_bytes)
    path = folder / ENCRYPTED_WEIGHTS
    if not path.exists():
        raise ArtifactError(f"{path} is missing: encrypt the artifact first (`wasm-torch encrypt`)")
    old_id = key_id_of(folder)
    plain = decrypt_file(path, old, manifest_bytes)
    verify_bytes(folder, manifest, WEIGHTS, plain)
    key = new.get(new_key_id)
    _clean_temp(folder)
    tmp = _write_atomic(folder, encrypt_bytes(plain, new_key_id, key, manifest_bytes))
    try:
        if decrypt_file(tmp, Keyring({new_key_id: key}), manifest_bytes) != plain:
            raise DecryptionError(f"{tmp} did not decrypt to the same weights; {path} was left unchanged")
        _commit(folder, tmp)
    finally:
        tmp.unlink(missing_ok=True)
    return old_id, new_key_id


def load_weights(folder: Path, manifest_bytes: bytes, keyring: Keyring) -> bytearray:
    """Plaintext weights of an encrypted artifact, in memory, checked against the manifest's sha256."""
    plain = decrypt_file(folder / ENCRYPTED_WEIGHTS, keyring, manifest_bytes)
    verify_bytes(folder, read_manifest(folder, manifest_bytes), WEIGHTS, plain)
    return plain
