"""Bytes on the wire: strict JSON, canonical JSON, base64, Ed25519 keys and signed envelopes.

Every message a node, a job submitter or a peer coordinator sends is an envelope

    {"payload": "<JSON text>", "sig": "<base64 Ed25519 signature>"}

signed over `ENVELOPE_DOMAIN + payload bytes`. The receiver verifies the signature over the exact
bytes it then parses, so no canonical form is needed between Python and the browser. Payloads
always carry `type`, `from` (the sender's key id), `to` (the coordinator's key id, so a message for
one coordinator cannot be replayed at another), `ts` (ms since the epoch) and `nonce`; `schema`
checks every field strictly (exactly the named fields, exact types, bounded strings).

Key ids are those of wasm_torch.integrity.signing: `ed25519:` + the first 32 hex digits of
sha256(raw public key). Ledger entries, signed only by coordinators, use `canonical()` bytes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import time
from collections.abc import Mapping
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ed25519

from .errors import BadMessage, BadSignature, TooLarge

ENVELOPE_DOMAIN = b"wasm-torch-net/1 envelope\n"
MAX_STRING = 256  # ids, names, nonces, hashes: anything longer in a payload is refused
NONCE_BYTES = 16


# ---- JSON ---------------------------------------------------------------------------------------
def _no_constant(name: str) -> Any:
    raise ValueError(f"non-standard JSON constant {name}")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"duplicate key {k!r}")
        out[k] = v
    return out


def loads_strict(data: bytes | str, what: str = "message") -> Any:
    """Parse JSON refusing NaN/Infinity, duplicate keys and invalid UTF-8 (BadMessage names `what`)."""
    try:
        text = data.decode("utf-8") if isinstance(data, bytes | bytearray) else data
        return json.loads(text, parse_constant=_no_constant, object_pairs_hook=_unique_keys)
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise BadMessage(f"{what} is not valid JSON: {e}") from None


def canonical(obj: Any) -> bytes:
    """Sorted keys, no spaces, ASCII only, no floats allowed by the callers that sign it."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()


def dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), allow_nan=False)


# ---- base64 -------------------------------------------------------------------------------------
def b64e(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def b64d(text: Any, what: str, max_bytes: int | None = None) -> bytes:
    """Decode canonical standard base64 (what b64e writes); anything else is a BadMessage."""
    if not isinstance(text, str):
        raise BadMessage(f"{what} must be a base64 string, got {type(text).__name__}")
    if max_bytes is not None and len(text) > (max_bytes + 2) // 3 * 4:
        raise TooLarge(f"{what} is over its {max_bytes:,}-byte limit")
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise BadMessage(f"{what} is not valid base64") from None
    if base64.b64encode(raw).decode("ascii") != text:
        raise BadMessage(f"{what} is not canonical base64")
    return raw


# ---- keys ---------------------------------------------------------------------------------------
def key_id_of(raw_public: bytes) -> str:
    """Same fingerprint as wasm_torch.integrity.signing.key_id, from the 32 raw public key bytes."""
    return "ed25519:" + hashlib.sha256(raw_public).hexdigest()[:32]


def public_from_raw(raw: bytes, what: str = "public key") -> ed25519.Ed25519PublicKey:
    if len(raw) != 32:
        raise BadMessage(f"{what} must be 32 raw Ed25519 bytes, got {len(raw)}")
    try:
        return ed25519.Ed25519PublicKey.from_public_bytes(raw)
    except ValueError as e:
        raise BadMessage(f"{what} is not an Ed25519 public key: {e}") from None


def verify_raw(public_raw: bytes, sig: bytes, message: bytes) -> bool:
    try:
        public_from_raw(public_raw).verify(sig, message)
    except (InvalidSignature, BadMessage):
        return False
    return True


class Signer:
    """An Ed25519 private key with its id; signs envelopes and ledger entries."""

    def __init__(self, key: ed25519.Ed25519PrivateKey) -> None:
        if not isinstance(key, ed25519.Ed25519PrivateKey):
            raise BadSignature("the network signs with Ed25519 keys (wasm-torch keygen --alg ed25519)")
        self.key = key
        self.public_raw = key.public_key().public_bytes_raw()
        self.id = key_id_of(self.public_raw)

    @classmethod
    def generate(cls) -> Signer:
        return cls(ed25519.Ed25519PrivateKey.generate())

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> Signer:
        from ..integrity.signing import load_private_key

        return cls(load_private_key(path))  # type: ignore[arg-type]

    def sign(self, message: bytes) -> bytes:
        return self.key.sign(message)

    def seal(self, payload: Mapping[str, Any], to: str) -> dict[str, str]:
        """An envelope for coordinator `to`; fills in from/to/ts/nonce."""
        body = {**payload, "from": self.id, "to": to, "ts": now_ms(), "nonce": os.urandom(NONCE_BYTES).hex()}
        text = dumps(body)
        return {"payload": text, "sig": b64e(self.sign(ENVELOPE_DOMAIN + text.encode()))}


def now_ms() -> int:
    return int(time.time() * 1000)


# ---- envelopes ----------------------------------------------------------------------------------
class Envelope:
    """A parsed (not yet verified) envelope: the payload text, its fields and the signature bytes."""

    def __init__(self, text: str, payload: dict[str, Any], sig: bytes) -> None:
        self.text, self.payload, self.sig = text, payload, sig

    @property
    def sender(self) -> str:
        return self.payload["from"]

    def verify(self, public_raw: bytes) -> None:
        if not verify_raw(public_raw, self.sig, ENVELOPE_DOMAIN + self.text.encode()):
            raise BadSignature(
                f"the signature on this {self.payload.get('type')!r} message does not verify with the key "
                f"of {self.sender}: the message was forged or altered"
            )


BASE_FIELDS = {"type": str, "from": str, "to": str, "ts": int, "nonce": str}


def open_envelope(body: bytes, max_bytes: int, kind: str, fields: Mapping[str, Any]) -> Envelope:
    """Parse an envelope whose payload must be of `kind` with exactly BASE_FIELDS + `fields`."""
    if len(body) > max_bytes:
        raise TooLarge(f"message of {len(body):,} bytes is over the {max_bytes:,}-byte limit")
    outer = loads_strict(body, "the request body")
    if not isinstance(outer, dict) or set(outer) != {"payload", "sig"}:
        raise BadMessage('the body must be an envelope {"payload": "<JSON text>", "sig": "<base64>"}')
    if not isinstance(outer["payload"], str):
        raise BadMessage("envelope payload must be a JSON string")
    sig = b64d(outer["sig"], "envelope sig", 64)
    if len(sig) != 64:
        raise BadSignature("an Ed25519 signature is 64 bytes")
    payload = loads_strict(outer["payload"], "the envelope payload")
    if not isinstance(payload, dict):
        raise BadMessage("the envelope payload must be a JSON object")
    if payload.get("type") != kind:
        raise BadMessage(f"expected a {kind!r} message, got type {payload.get('type')!r}")
    schema(payload, {**BASE_FIELDS, **fields}, f"{kind} message")
    if len(payload["nonce"]) < 16:
        raise BadMessage("nonce must be at least 16 characters")
    return Envelope(outer["payload"], payload, sig)


def schema(obj: Any, fields: Mapping[str, Any], what: str) -> dict[str, Any]:
    """Exactly these fields with these types. A type may be a tuple; `list`/`dict` values are shallow;
    `int` excludes bool; strings are capped at MAX_STRING unless the field type is `LongStr`."""
    if not isinstance(obj, dict):
        raise BadMessage(f"{what} must be a JSON object")
    missing, extra = sorted(set(fields) - set(obj)), sorted(set(obj) - set(fields))
    if missing or extra:
        raise BadMessage(f"{what}: missing fields {missing}, unexpected fields {extra}")
    for name, want in fields.items():
        v = obj[name]
        types = want if isinstance(want, tuple) else (want,)
        ok = any(_is(v, t) for t in types)
        if not ok:
            names = "/".join(getattr(t, "__name__", str(t)) for t in types)
            raise BadMessage(f"{what}: field {name!r} must be {names}, got {type(v).__name__}")
        if isinstance(v, str) and LongStr not in types and len(v) > MAX_STRING:
            raise BadMessage(f"{what}: field {name!r} is longer than {MAX_STRING} characters")
    return obj


class LongStr(str):
    """Marker type for schema(): a string field without the MAX_STRING cap (size-checked elsewhere)."""


def _is(v: Any, t: Any) -> bool:
    if t is int:
        return isinstance(v, int) and not isinstance(v, bool)
    if t is LongStr:
        return isinstance(v, str)
    if t is float:
        return isinstance(v, int | float) and not isinstance(v, bool)
    if t is None:
        return v is None
    return isinstance(v, t)


def is_hex_digest(value: Any) -> bool:
    """A sha256 spelled as we spell it: 64 lowercase hex digits."""
    return isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)


def hex_digest(value: Any, what: str) -> str:
    if not is_hex_digest(value):
        raise BadMessage(f"{what} must be 64 lowercase hex digits (a sha256)")
    return value
