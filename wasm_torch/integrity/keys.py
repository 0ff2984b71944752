"""Signing keys: Ed25519 and ML-DSA-65 key pairs, their files and fingerprints (used by signing.py).

Private keys are PKCS#8 PEM written atomically with mode 0600 (never world- or group-readable, not
even briefly); loading one that other users can read is refused. Public keys are
SubjectPublicKeyInfo PEM. A key id is `<alg>:` + the first 32 hex digits of sha256 over the raw
public key.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, mldsa

from ..errors import KeyringError

ED25519, MLDSA65 = "ed25519", "ml-dsa-65"
ALGORITHMS = (ED25519, MLDSA65)

PrivateKey = ed25519.Ed25519PrivateKey | mldsa.MLDSA65PrivateKey
PublicKey = ed25519.Ed25519PublicKey | mldsa.MLDSA65PublicKey
TrustedKeys = Iterable[PublicKey | str | os.PathLike[str]]


def generate_key(alg: str = ED25519) -> PrivateKey:
    if alg == ED25519:
        return ed25519.Ed25519PrivateKey.generate()
    if alg == MLDSA65:
        return mldsa.MLDSA65PrivateKey.generate()
    raise KeyringError(f"unknown signature algorithm {alg!r}; choose one of {list(ALGORITHMS)}")


def algorithm(key: PrivateKey | PublicKey) -> str:
    if isinstance(key, ed25519.Ed25519PrivateKey | ed25519.Ed25519PublicKey):
        return ED25519
    if isinstance(key, mldsa.MLDSA65PrivateKey | mldsa.MLDSA65PublicKey):
        return MLDSA65
    raise KeyringError(f"{type(key).__name__} keys are not supported; use Ed25519 or ML-DSA-65")


def key_id(key: PrivateKey | PublicKey) -> str:
    """`<alg>:<first 32 hex of sha256(raw public key)>` — the fingerprint printed by keygen."""
    pub = key.public_key() if hasattr(key, "private_bytes") else key
    return f"{algorithm(pub)}:{hashlib.sha256(pub.public_bytes_raw()).hexdigest()[:32]}"


def write_private_key(key: PrivateKey, path: str | os.PathLike[str]) -> Path:
    """PKCS#8 PEM, created with mode 0600 (never world- or group-readable, not even briefly)."""
    path = Path(path)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    write_secret(path, pem)
    return path


def write_secret(path: Path, data: bytes) -> None:
    """Write `data` to `path` atomically with mode 0600 (a temp file in the same folder, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # in case the file already existed with wider permissions
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_public_key(key: PrivateKey | PublicKey, path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    pub = key.public_key() if hasattr(key, "private_bytes") else key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(
        pub.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return path


def load_private_key(path: str | os.PathLike[str]) -> PrivateKey:
    path = Path(path)
    data = _read_key_file(path)
    if b"PUBLIC KEY" in data:
        raise KeyringError(f"{path} is a public key; signing needs the private key (the .key file)")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as e:
        raise KeyringError(f"{path} is not an unencrypted PKCS#8 PEM private key ({e})") from None
    if os.name == "posix" and path.stat().st_mode & 0o077:
        raise KeyringError(
            f"{path} is readable by other users (mode {path.stat().st_mode & 0o777:o}); run chmod 600 {path}"
        )
    algorithm(key)  # reject RSA/EC/... with a clear message
    return key  # type: ignore[return-value]


def load_public_key(path: str | os.PathLike[str]) -> PublicKey:
    path = Path(path)
    data = _read_key_file(path)
    if b"PRIVATE KEY" in data:
        raise KeyringError(f"{path} is a private key; trust the public key (the .pub file) instead")
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as e:
        raise KeyringError(f"{path} is not a PEM public key ({e})") from None
    algorithm(key)
    return key  # type: ignore[return-value]


def _read_key_file(path: Path) -> bytes:
    if not path.is_file():
        raise KeyringError(f"key file {path} does not exist (create keys with `wasm-torch keygen`)")
    if path.stat().st_size > 64 * 1024:
        raise KeyringError(f"{path} is too large to be a key file")
    return path.read_bytes()


def trusted(keys: TrustedKeys) -> list[PublicKey]:
    """Public key objects from key objects and/or paths of .pub files."""
    out: list[PublicKey] = []
    for k in keys:
        if isinstance(k, ed25519.Ed25519PublicKey | mldsa.MLDSA65PublicKey):
            out.append(k)
        elif isinstance(k, str | os.PathLike):
            out.append(load_public_key(k))
        else:
            raise KeyringError(f"cannot trust a {type(k).__name__}: give .pub paths or public key objects")
    return out
