"""Detached signatures over a release statement (Ed25519 and ML-DSA-65), checked before compile.

signature.json, beside the files it covers:

    {"format": "wasm-torch-signature/2",
     "release": {"name": "minilm", "version": 3},
     "covers": {"manifest.json": "<sha256 hex>"},
     "signatures": [{"alg": "ed25519", "key_id": "ed25519:<32 hex>", "sig": "<base64>"},
                    {"alg": "ml-dsa-65", "key_id": "ml-dsa-65:<32 hex>", "sig": "<base64>"}]}

Each signature is over `DOMAIN + canonical JSON of {format, release, covers}` (sorted keys, no
spaces; ML-DSA also gets DOMAIN as its context string), so it binds:

- every file that determines behaviour: `manifest.json` (which pins model.wasm, weights.bin and any
  other listed file); for a cascade folder `cascade.json` (threshold, score, members) and each
  member's `manifest.json`; for a pipeline folder `pipeline.json` (which pins its stages). Every
  one of those present in the folder must be covered, or the signature is refused;
- the release name: a load checks it against the name it is loading under (by default the folder's
  name, `<cascade>/<member>` for a cascade member), so two signed folders swapped on disk are refused;
- the version: with a release store (releases.py) an older or conflicting release is refused.

Policy (`check`): for every algorithm among the trusted keys, at least one valid signature by a
trusted key of that algorithm is required (hybrid: trust an Ed25519 and an ML-DSA-65 key and an
artifact needs both). A signature claiming a trusted key that does not verify rejects the artifact;
signatures by keys not in the trusted set are ignored. signature.json is parsed strictly: known
fields only, no duplicate keys or entries, canonical base64, nothing after the JSON value.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import mldsa

from ..artifact import (
    CASCADE,
    ENCRYPTED_WEIGHTS,
    MANIFEST,
    PIPELINE,
    SIGNATURE,
    WEIGHTS,
    read_manifest,
    read_regular,
    strictjson,
    verify_files,
)
from ..artifact.layout import MAX_MANIFEST_BYTES, MAX_SMALL_FILE_BYTES, NAME_RE
from ..errors import ArtifactError, KeyringError, SignatureError
from .keys import (  # re-exported: the key API has always been reachable from here
    ALGORITHMS,
    ED25519,
    MLDSA65,
    PrivateKey,
    PublicKey,
    TrustedKeys,
    algorithm,
    generate_key,
    key_id,
    load_private_key,
    load_public_key,
    trusted,
    write_private_key,
    write_public_key,
    write_secret,
)
from .releases import Release, ReleaseStore, as_store

FORMAT = "wasm-torch-signature/2"
DOMAIN = b"wasm-torch-release-signature/2\n"
MAX_SIGNATURE_FILE = 256 * 1024  # a few signatures of ~4.4 KB base64 each; anything bigger is hostile
MAX_SIGNATURES = 16
MAX_VERSION = (1 << 53) - 1
ANY_NAME = "*"  # verify_release(name=ANY_NAME): accept any release name (the caller binds it otherwise)
BEHAVIOUR_FILES = (MANIFEST, CASCADE, PIPELINE)
KEY_ID_RE = re.compile(r"^(ed25519|ml-dsa-65):[0-9a-f]{32}$")
_PART = NAME_RE.pattern[1:-1]
RELEASE_NAME_RE = re.compile(rf"^{_PART}(/{_PART})?$")
COVER_RE = re.compile(rf"^({_PART}/)?({'|'.join(re.escape(f) for f in BEHAVIOUR_FILES)})$")
_SHA = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class SignatureDoc:
    release: Release
    covers: dict[str, str]  # relative path -> sha256 hex
    entries: list[tuple[str, str, bytes]]  # (alg, key id, raw signature)

    @property
    def statement(self) -> bytes:
        return statement(self.release, self.covers)


@dataclass(frozen=True)
class Verified:
    """A signature that passed: who signed which release, and the exact bytes that were checked."""

    release: Release
    key_ids: list[str]
    files: dict[str, bytes]  # covered relative path -> the bytes whose sha256 matched
    statement_sha256: str


def statement(release: Release, covers: Mapping[str, str]) -> bytes:
    return strictjson.dumps_canonical({"format": FORMAT, "release": release.to_json(), "covers": dict(covers)})


# ---- what a folder is called and what its signature must cover -----------------------------------
def default_release_name(folder: str | os.PathLike[str], manifest: bytes | None = None) -> str | None:
    """The name a folder is loaded under: its own name; `<cascade>/<member>` inside a cascade folder;
    None (any name) for a content-addressed copy whose folder name is the sha256 of its manifest.json."""
    path = Path(os.path.abspath(folder))
    if manifest is not None and path.name == hashlib.sha256(manifest).hexdigest():
        return None
    if (path.parent / CASCADE).is_file():
        return f"{path.parent.name}/{path.name}"
    return path.name


def _cascade_members(folder: Path) -> list[str]:
    raw = strictjson.loads(read_regular(folder, CASCADE, max_bytes=MAX_SMALL_FILE_BYTES), str(folder / CASCADE),
                           max_bytes=MAX_SMALL_FILE_BYTES)  # fmt: skip
    members = [raw.get(k) if isinstance(raw, dict) else None for k in ("small", "large")]
    for m in members:
        if not isinstance(m, str) or not NAME_RE.match(m) or m in (".", ".."):
            raise ArtifactError(
                f"{folder / CASCADE}: member {str(m)[:80]!r} is not a sub-folder name; a signed cascade keeps "
                "its members inside its own folder (e.g. \"small\": \"small\")"
            )
    return members  # type: ignore[return-value]


def covered_paths(folder: str | os.PathLike[str]) -> list[str]:
    """The files a signature of `folder` must cover (module docstring)."""
    folder = Path(folder)
    present = [f for f in BEHAVIOUR_FILES if (folder / f).exists() or (folder / f).is_symlink()]
    if not present:
        raise ArtifactError(f"{folder} holds none of {list(BEHAVIOUR_FILES)}: it is not something to sign")
    out = list(present)
    if CASCADE in present:
        out += [f"{m}/{MANIFEST}" for m in _cascade_members(folder)]
    return out


def read_covered(folder: Path, rel: str) -> bytes:
    sub, _, name = rel.rpartition("/")
    limit = MAX_MANIFEST_BYTES if name == MANIFEST else MAX_SMALL_FILE_BYTES
    return read_regular(folder / sub if sub else folder, name, max_bytes=limit)


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


def _existing(folder: Path) -> SignatureDoc | None:
    try:
        return parse_signature_file(read_regular(folder, SIGNATURE, max_bytes=MAX_SIGNATURE_FILE), folder / SIGNATURE)
    except ArtifactError:
        return None


def sign_artifact(
    folder: str | os.PathLike[str],
    keys: Sequence[PrivateKey],
    *,
    name: str | None = None,
    version: int | None = None,
) -> Path:
    """Sign `folder` (an artifact, a cascade — members too — or a pipeline); returns signature.json's path.

    name: the release name (default: default_release_name). version: default the version already
    signed here when the covered files are unchanged, one more when they changed, else 1. Files are
    checked against their manifest first: a signature vouches only for what was checked. Signatures
    by other keys over the identical statement are kept (sign with one key, then another)."""
    folder = Path(folder)
    if not keys:
        raise KeyringError("give at least one private key to sign with")
    covers: dict[str, bytes] = {rel: read_covered(folder, rel) for rel in covered_paths(folder)}
    name = name if name is not None else default_release_name(folder, covers.get(MANIFEST))
    if name is None or not RELEASE_NAME_RE.match(name):
        raise ArtifactError(f"release name {name!r} is not valid: give --name NAME (letters, digits, '_', '.', '-')")
    if CASCADE in covers:
        for m in _cascade_members(folder):  # members first: the cascade pins their manifests
            sign_artifact(folder / m, keys, name=f"{name}/{m}", version=version)
            covers[f"{m}/{MANIFEST}"] = read_covered(folder, f"{m}/{MANIFEST}")
    if MANIFEST in covers:
        encrypted = (folder / ENCRYPTED_WEIGHTS).exists()  # its plaintext hash is checked at decryption
        verify_files(folder, read_manifest(folder, covers[MANIFEST]), skip=(WEIGHTS,) if encrypted else ())
    digests = {rel: hashlib.sha256(data).hexdigest() for rel, data in covers.items()}
    old = _existing(folder)
    if version is None:
        same_name = old is not None and old.release.name == name
        version = 1 if not same_name else old.release.version + (old.covers != digests)  # type: ignore[union-attr]
    if type(version) is not int or not 0 <= version <= MAX_VERSION:
        raise ArtifactError(f"release version {version!r} must be an integer in [0, {MAX_VERSION}]")
    release = Release(name, version)
    message = DOMAIN + statement(release, digests)
    entries: list[dict[str, str]] = []
    new_ids = {key_id(k) for k in keys}
    if old is not None and old.release == release and old.covers == digests:
        entries = [{"alg": a, "key_id": i, "sig": base64.b64encode(s).decode()} for a, i, s in old.entries
                   if i not in new_ids]  # fmt: skip
    for k in keys:
        entries.append({"alg": algorithm(k), "key_id": key_id(k), "sig": base64.b64encode(_raw_sign(k, message)).decode()})
    doc = {"format": FORMAT, "release": release.to_json(), "covers": digests, "signatures": entries}
    sig_path = folder / SIGNATURE
    tmp = sig_path.with_name(f".{SIGNATURE}.tmp{os.getpid()}")
    tmp.write_bytes(strictjson.dumps_canonical(doc) + b"\n")
    os.replace(tmp, sig_path)
    return sig_path


# ---- verification --------------------------------------------------------------------------------
def parse_signature_file(data: bytes, path: Path | str) -> SignatureDoc:
    """Strictly parse signature.json (module docstring); every problem is a SignatureError."""
    fix = "re-sign the artifact with `wasm-torch sign`"
    doc = strictjson.loads(data, str(path), max_bytes=MAX_SIGNATURE_FILE, error=SignatureError, fix=fix)

    def bad(why: str) -> SignatureError:
        return SignatureError(f"{path}: {why}; {fix}")

    if not isinstance(doc, dict) or set(doc) != {"format", "release", "covers", "signatures"}:
        if isinstance(doc, dict) and doc.get("format") == "wasm-torch-signature/1":
            raise bad("this is a version-1 signature, which does not bind the model name and version")
        raise bad("expected exactly the fields format, release, covers, signatures")
    if doc["format"] != FORMAT:
        raise bad(f"format {str(doc['format'])[:40]!r}, this runtime reads {FORMAT!r}")
    rel = doc["release"]
    if not isinstance(rel, dict) or set(rel) != {"name", "version"}:
        raise bad("release must be exactly {name, version}")
    if not isinstance(rel["name"], str) or not RELEASE_NAME_RE.match(rel["name"]):
        raise bad(f"release name {str(rel['name'])[:80]!r} is not a model name")
    if type(rel["version"]) is not int or not 0 <= rel["version"] <= MAX_VERSION:
        raise bad(f"release version {str(rel['version'])[:40]} is not an integer in [0, {MAX_VERSION}]")
    covers = doc["covers"]
    if not isinstance(covers, dict) or not 0 < len(covers) <= 16:
        raise bad("covers must map 1 to 16 files to their sha256")
    for p, h in covers.items():
        if not COVER_RE.match(p) or not isinstance(h, str) or not _SHA.match(h):
            raise bad(f"covers entry {p[:80]!r} is not a covered file with a sha256")
    sigs = doc["signatures"]
    if not isinstance(sigs, list) or len(sigs) > MAX_SIGNATURES:
        raise bad(f"signatures must be a list of at most {MAX_SIGNATURES}")
    entries: list[tuple[str, str, bytes]] = []
    for i, e in enumerate(sigs):
        if not isinstance(e, dict) or set(e) != {"alg", "key_id", "sig"} or not all(isinstance(v, str) for v in e.values()):
            raise bad(f"signature {i} must have exactly the string fields alg, key_id, sig")
        if e["alg"] not in ALGORITHMS or not KEY_ID_RE.match(e["key_id"]) or not e["key_id"].startswith(e["alg"] + ":"):
            raise bad(f"signature {i} has an unknown algorithm or a malformed key id")
        if any(e["key_id"] == k for _, k, _ in entries):
            raise bad(f"signature {i} repeats key {e['key_id']}")
        try:
            raw = base64.b64decode(e["sig"], validate=True)
        except binascii.Error:
            raw = None
        if raw is None or base64.b64encode(raw).decode() != e["sig"]:
            raise bad(f"signature {i} is not canonical base64")
        entries.append((e["alg"], e["key_id"], raw))
    if bytes(data) != strictjson.dumps_canonical(doc) + b"\n":
        raise bad("it is not in canonical form (sorted keys, no spaces, one final newline), so bytes of it "
                  "could change without changing its meaning")
    return SignatureDoc(Release(rel["name"], rel["version"]), dict(covers), entries)


def check(message: bytes, doc: SignatureDoc, trusted_keys: TrustedKeys, where: Path | str) -> list[str]:
    """Apply the policy (module docstring) to `doc` over `message`; returns the key ids that verified."""
    keys = trusted(trusted_keys)
    if not keys:
        raise SignatureError("signature verification needs at least one trusted public key (--trust)")
    by_id = {key_id(k): k for k in keys}
    verified: list[str] = []
    untrusted: list[str] = []
    algs_ok: set[str] = set()
    for alg, kid, sig in doc.entries:
        k = by_id.get(kid)
        if k is None:
            untrusted.append(kid)
            continue
        if alg != algorithm(k) or not _raw_verify(k, sig, DOMAIN + message):
            raise SignatureError(
                f"{where}: the signature by trusted key {kid} does not verify: the artifact was modified after "
                "signing (or signature.json is corrupt). Refusing to load it."
            )
        verified.append(kid)
        algs_ok.add(alg)
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


def verify_release(
    folder: str | os.PathLike[str],
    keys: TrustedKeys,
    *,
    name: str | None = None,
    require: bool = True,
    store: ReleaseStore | str | os.PathLike[str] | None = None,
    have: Mapping[str, bytes] | None = None,
    signature: bytes | None = None,
) -> Verified | None:
    """Check `folder/signature.json` before anything else is trusted. Returns None for an unsigned
    folder when `require` is False.

    name: the release name expected (None: default_release_name; ANY_NAME: any). store: a release
    store for rollback protection. have: covered files already read (e.g. manifest.json bytes that
    will be parsed next), so what is verified is exactly what is used. signature: signature.json's
    bytes when already read (else it is read from the folder)."""
    folder = Path(folder)
    sig_path = folder / SIGNATURE
    if signature is None and not sig_path.exists() and not sig_path.is_symlink():
        if require:
            raise SignatureError(
                f"{folder} is not signed ({SIGNATURE} is missing) and signatures are required; "
                f"sign it with `wasm-torch sign {folder} --key KEY`"
            )
        return None
    try:
        if signature is None:
            signature = read_regular(folder, SIGNATURE, max_bytes=MAX_SIGNATURE_FILE)
        doc = parse_signature_file(signature, sig_path)
    except SignatureError:
        raise
    except ArtifactError as e:
        raise SignatureError(str(e)) from None
    files = dict(have or {})
    for rel in BEHAVIOUR_FILES:
        if (rel in files or (folder / rel).exists()) and rel not in doc.covers:
            raise SignatureError(f"{sig_path} does not cover {rel}; re-sign the folder with `wasm-torch sign`")

    def compare(rel: str) -> None:
        if hashlib.sha256(files[rel]).hexdigest() != doc.covers[rel]:
            raise SignatureError(
                f"{folder / rel} was modified after signing (its sha256 differs from {SIGNATURE}). "
                "Restore it or re-sign with `wasm-torch sign`."
            )

    for rel in doc.covers.keys() & files.keys():  # bytes in hand: a cheap check before the signatures
        compare(rel)
    message = doc.statement
    ids = check(message, doc, keys, folder)
    for rel in doc.covers.keys() - files.keys():  # read other covered files only for a trusted statement
        files[rel] = read_covered(folder, rel)
        compare(rel)
    expected = default_release_name(folder, files.get(MANIFEST)) if name is None else name
    if expected not in (None, ANY_NAME) and doc.release.name != expected:
        raise SignatureError(
            f"{folder} is signed as release {doc.release.name!r}, but it is being loaded as {expected!r}: "
            "a signed folder was renamed or swapped with another. Restore the right folder, or load it "
            "under its signed name."
        )
    digest = hashlib.sha256(message).hexdigest()
    s = as_store(store)
    if s is not None:
        s.admit(doc.release, digest, ids, str(folder))
    return Verified(doc.release, ids, files, digest)


def verify_manifest(
    folder: str | os.PathLike[str], manifest: bytes, keys: TrustedKeys, require: bool = True, **kw: Any
) -> list[str]:
    """verify_release for an artifact whose manifest.json bytes are already read; returns key ids."""
    v = verify_release(folder, keys, require=require, have={MANIFEST: manifest}, **kw)
    return [] if v is None else v.key_ids


def verify_artifact(
    folder: str | os.PathLike[str],
    keys: TrustedKeys,
    *,
    name: str | None = ANY_NAME,
    store: ReleaseStore | str | os.PathLike[str] | None = None,
) -> Verified:
    """Signature plus every plaintext file's sha256 (what `wasm-torch verify` runs); cascade members
    are verified too. name: as in verify_release, but any name by default (the result tells it)."""
    folder = Path(folder)
    v = verify_release(folder, keys, name=name, store=store)
    assert v is not None  # require=True
    if MANIFEST in v.files:
        encrypted = (folder / ENCRYPTED_WEIGHTS).exists()
        verify_files(folder, read_manifest(folder, v.files[MANIFEST]), skip=(WEIGHTS,) if encrypted else ())
    if CASCADE in v.files:
        for m in _cascade_members(folder):
            verify_artifact(folder / m, keys, name=f"{v.release.name}/{m}")
    return v


__all__ = [
    "ALGORITHMS",
    "ANY_NAME",
    "DOMAIN",
    "ED25519",
    "FORMAT",
    "MLDSA65",
    "Release",
    "ReleaseStore",
    "SignatureDoc",
    "Verified",
    "check",
    "covered_paths",
    "default_release_name",
    "generate_key",
    "key_id",
    "load_private_key",
    "load_public_key",
    "parse_signature_file",
    "sign_artifact",
    "statement",
    "trusted",
    "verify_artifact",
    "verify_manifest",
    "verify_release",
    "write_private_key",
    "write_public_key",
    "write_secret",
]
