"""Detached signatures over an artifact's manifest.json (Ed25519 and ML-DSA-65), checked before compile.

manifest.json pins the sha256 of model.wasm and weights.bin, so one signature over the exact bytes
of manifest.json covers the whole artifact. The signatures live beside it in signature.json:

    {"format": "wasm-torch-signature/1", "manifest_sha256": "<hex>",
     "signatures": [{"alg": "ed25519", "key_id": "ed25519:<32 hex>", "sig": "<base64>"},
                    {"alg": "ml-dsa-65", "key_id": "ml-dsa-65:<32 hex>", "sig": "<base64>"}]}

The signed message is `DOMAIN + manifest bytes` (ML-DSA also gets `DOMAIN` as its context string),
so a signature made here cannot be replayed as a signature over anything else.

Policy (`check`): for every algorithm among the trusted keys, at least one valid signature by a
trusted key of that algorithm is required. Trust an Ed25519 and an ML-DSA-65 key and an artifact
needs both (hybrid: it stays safe while either algorithm holds); trust only Ed25519 keys and one
Ed25519 signature is enough. A signature claiming a trusted key that does not verify rejects the
artifact (it was modified after signing); signatures by keys not in the trusted set are ignored.

Key files: private keys are PKCS#8 PEM written with mode 0600, public keys SubjectPublicKeyInfo PEM.
A key id is `<alg>:` + the first 32 hex digits of sha256 over the raw public key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, mldsa

from ..artifact import (
    ENCRYPTED_WEIGHTS,
    MANIFEST,
    SIGNATURE,
    WEIGHTS,
    read_manifest,
    read_manifest_bytes,
    verify_files,
)
from ..errors import KeyringError, SignatureError

FORMAT = "wasm-torch-signature/1"
DOMAIN = b"wasm-torch-manifest-signature/1"
MAX_SIGNATURE_FILE = 256 * 1024  # a few signatures of ~4.4 KB base64 each; anything bigger is hostile
ED25519, MLDSA65 = "ed25519", "ml-dsa-65"
ALGORITHMS = (ED25519, MLDSA65)

PrivateKey = ed25519.Ed25519PrivateKey | mldsa.MLDSA65PrivateKey
PublicKey = ed25519.Ed25519PublicKey | mldsa.MLDSA65PublicKey
TrustedKeys = Iterable[PublicKey | str | os.PathLike[str]]


# ---- keys ----------------------------------------------------------------------------------------
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


# ---- signing -------------------------------------------------------------------------------------
def _raw_sign(key: PrivateKey, message: bytes) -> bytes:
    if isinstance(key, mldsa.MLDSA65PrivateKey):
        return key.sign(message, DOMAIN)
    return key.sign(message)


def _raw_verify(key: PublicKey, sig: bytes, message: bytes) -> bool:
    try:
        if isinstance(key, mldsa.MLDSA65PublicKey):
            key.verify(sig, message, DOMAIN)
        else:
            key.verify(sig, message)
    except InvalidSignature:
        return False
    return True


def sign_artifact(folder: str | os.PathLike[str], keys: Sequence[PrivateKey]) -> Path:
    """Add (or replace) one signature per key in `folder/signature.json`. Returns its path.

    The files are checked against the manifest first: a signature vouches only for what was checked.
    """
    folder = Path(folder)
    if not keys:
        raise KeyringError("give at least one private key to sign with")
    manifest = read_manifest_bytes(folder)
    encrypted = (folder / ENCRYPTED_WEIGHTS).exists()  # its plaintext hash is checked at decryption
    verify_files(folder, read_manifest(folder, manifest), skip=(WEIGHTS,) if encrypted else ())
    digest = hashlib.sha256(manifest).hexdigest()
    existing: list[dict[str, str]] = []
    sig_path = folder / SIGNATURE
    if sig_path.exists():
        try:  # keep signatures by other keys that still cover this exact manifest
            doc = parse_signature_file(sig_path.read_bytes(), sig_path)
            if doc["manifest_sha256"] == digest:
                existing = [{f: e[f] for f in ("alg", "key_id", "sig")} for e in doc["signatures"]]
        except SignatureError:
            existing = []
    new_ids = {key_id(k) for k in keys}
    entries = [e for e in existing if e["key_id"] not in new_ids]
    for k in keys:
        sig = _raw_sign(k, DOMAIN + manifest)
        entries.append({"alg": algorithm(k), "key_id": key_id(k), "sig": base64.b64encode(sig).decode()})
    doc = {"format": FORMAT, "manifest_sha256": digest, "signatures": entries}
    tmp = sig_path.with_name(f".{SIGNATURE}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(doc, indent=1) + "\n")
    os.replace(tmp, sig_path)
    return sig_path


# ---- verification --------------------------------------------------------------------------------
def parse_signature_file(data: bytes, path: Path) -> dict[str, Any]:
    """Strictly parse signature.json: known fields only, canonical base64, so no byte is ignorable."""
    if len(data) > MAX_SIGNATURE_FILE:
        raise SignatureError(f"{path} is {len(data):,} bytes, over the {MAX_SIGNATURE_FILE:,}-byte limit")
    try:
        doc = json.loads(data.decode(), parse_constant=_reject_constant)
    except (UnicodeDecodeError, json.JSONDecodeError, ValueError) as e:
        raise SignatureError(f"{path} is not valid JSON ({e}); re-sign the artifact") from None
    if not isinstance(doc, dict) or set(doc) != {"format", "manifest_sha256", "signatures"}:
        raise SignatureError(f"{path}: expected exactly the fields format, manifest_sha256, signatures")
    if doc["format"] != FORMAT:
        raise SignatureError(f"{path}: format {doc['format']!r}, this runtime reads {FORMAT!r}")
    if not isinstance(doc["manifest_sha256"], str) or not isinstance(doc["signatures"], list):
        raise SignatureError(f"{path}: manifest_sha256 must be a string and signatures a list")
    for i, e in enumerate(doc["signatures"]):
        if not isinstance(e, dict) or set(e) != {"alg", "key_id", "sig"}:
            raise SignatureError(f"{path}: signature {i} must have exactly the fields alg, key_id, sig")
        if not all(isinstance(v, str) for v in e.values()):
            raise SignatureError(f"{path}: signature {i} fields must be strings")
        if e["alg"] not in ALGORITHMS:
            raise SignatureError(f"{path}: signature {i} has unknown alg {e['alg']!r}")
        try:
            raw = base64.b64decode(e["sig"], validate=True)
        except binascii.Error:
            raw = None
        if raw is None or base64.b64encode(raw).decode() != e["sig"]:
            raise SignatureError(f"{path}: signature {i} is not canonical base64; re-sign the artifact")
        e["raw"] = raw
    return doc


def _reject_constant(name: str) -> None:
    raise ValueError(f"non-standard JSON constant {name}")


def check(manifest: bytes, doc: dict[str, Any], trusted_keys: TrustedKeys, where: Path) -> list[str]:
    """Apply the policy (module docstring) to parsed signatures; returns the key ids that verified."""
    keys = trusted(trusted_keys)
    if not keys:
        raise SignatureError("signature verification needs at least one trusted public key (--trust)")
    if doc["manifest_sha256"] != hashlib.sha256(manifest).hexdigest():
        raise SignatureError(
            f"{where / SIGNATURE} was made for a different {MANIFEST} (sha256 differs): the manifest was "
            "modified after signing. Restore it or re-sign with `wasm-torch sign`."
        )
    by_id = {key_id(k): k for k in keys}
    verified: list[str] = []
    untrusted: list[str] = []
    algs_ok: set[str] = set()
    for e in doc["signatures"]:
        k = by_id.get(e["key_id"])
        if k is None:
            untrusted.append(e["key_id"])
            continue
        if e["alg"] != algorithm(k) or not _raw_verify(k, e["raw"], DOMAIN + manifest):
            raise SignatureError(
                f"{where}: the signature by trusted key {e['key_id']} does not verify over {MANIFEST}: "
                "the artifact was modified after signing (or signature.json is corrupt). Refusing to load it."
            )
        verified.append(e["key_id"])
        algs_ok.add(e["alg"])
    need = sorted({algorithm(k) for k in keys} - algs_ok)
    if need:
        if not verified:
            who = f"only by untrusted keys {untrusted}" if untrusted else "by no key"
            raise SignatureError(
                f"{where} is signed {who}; trusted keys are {sorted(by_id)}. "
                "Sign it with a trusted key or trust the signer's public key."
            )
        raise SignatureError(
            f"{where}: hybrid policy needs a valid signature by a trusted {' and '.join(need)} key as well "
            f"(verified: {verified}). Sign it with that key too: wasm-torch sign {where} --key KEY"
        )
    return verified


def verify_manifest(
    folder: str | os.PathLike[str], manifest: bytes, keys: TrustedKeys, require: bool = True
) -> list[str]:
    """Check signature.json against `manifest` (the exact bytes that will be parsed) before anything
    else is read. Unsigned artifacts pass only when `require` is False. Returns verified key ids."""
    folder = Path(folder)
    sig_path = folder / SIGNATURE
    if not sig_path.is_file():
        if require:
            raise SignatureError(
                f"{folder} is not signed ({SIGNATURE} is missing) and signatures are required; "
                f"sign it with `wasm-torch sign {folder} --key KEY`"
            )
        return []
    doc = parse_signature_file(sig_path.read_bytes(), sig_path)
    return check(manifest, doc, keys, folder)


def verify_artifact(folder: str | os.PathLike[str], keys: TrustedKeys) -> list[str]:
    """Signature plus every plaintext file's sha256 (what `wasm-torch verify` runs)."""
    folder = Path(folder)
    data = read_manifest_bytes(folder)
    ids = verify_manifest(folder, data, keys, require=True)
    encrypted = (folder / ENCRYPTED_WEIGHTS).exists()
    verify_files(folder, read_manifest(folder, data), skip=(WEIGHTS,) if encrypted else ())
    return ids
