"""`wasm-torch keygen | sign | verify | encrypt | rotate-key`: parsing for the integrity commands.

wasm-torch keygen keys/release [--alg ed25519|ml-dsa-65]     -> keys/release.key (0600) + .pub
wasm-torch keygen --keyring keys/ring.json --key-id 2026-01   -> adds a random AES-256 key to the keyring
wasm-torch sign out/m --key keys/release.key [--key keys/pq.key] [--name m] [--version 3]
wasm-torch verify out/m --trust keys/release.pub [--keyring keys/ring.json] [--releases releases.json]
wasm-torch encrypt out/m --keyring keys/ring.json --key-id 2026-01
wasm-torch rotate-key out/m [out/n ...] --old-keyring old.json --new-key-id 2026-02 [--new-keyring new.json]

Kept apart from cli.py so the main parser gains one line; the work is in signing.py / encryption.py.
Secrets are never printed: keygen prints file names and public fingerprints only.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def cmd_keygen(a: argparse.Namespace) -> int:
    if a.keyring:
        from .encryption import Keyring

        if not a.key_id:
            raise SystemExit("keygen --keyring FILE needs --key-id ID (the name the new AES key gets)")
        path = Path(a.keyring)
        ring = Keyring.load(path) if path.exists() else Keyring()
        if a.key_id in ring:
            raise SystemExit(f"{path} already has a key {a.key_id!r}; pick a new key id")
        ring.add(a.key_id)
        ring.save(path)
        print(f"added AES-256 key {a.key_id!r} to {path} (mode 0600; keys: {ring.ids})")
        return 0
    if not a.out:
        raise SystemExit("give an output stem (keygen keys/release) or --keyring FILE --key-id ID")
    from .signing import generate_key, key_id, write_private_key, write_public_key

    stem = Path(a.out)
    priv, pub = stem.with_name(stem.name + ".key"), stem.with_name(stem.name + ".pub")
    for p in (priv, pub):  # a key pair is replaced only when asked: a lost private key cannot be recovered
        if (p.exists() or p.is_symlink()) and not a.force:
            raise SystemExit(f"{p} exists; pass --force to overwrite the key pair {stem}")
    key = generate_key(a.alg)
    write_private_key(key, priv)
    write_public_key(key, pub)
    print(f"wrote {priv} (private, mode 0600) and {pub}\nkey id {key_id(key)}")
    return 0


def _version(text: str) -> int:
    if not text.isdigit() or len(text) > 15:
        raise argparse.ArgumentTypeError(f"{text!r} is not a release version (a non-negative integer)")
    return int(text)


def cmd_sign(a: argparse.Namespace) -> int:
    from .signing import key_id, load_private_key, sign_artifact

    keys = [load_private_key(k) for k in a.key]
    path = sign_artifact(a.artifact, keys, name=a.name, version=a.version)
    doc = json.loads(path.read_text())
    rel = doc["release"]
    print(f"wrote {path}: release {rel['name']!r} version {rel['version']}, covering {sorted(doc['covers'])}, "
          f"signed by {[key_id(k) for k in keys]}")  # fmt: skip
    return 0


def cmd_verify(a: argparse.Namespace) -> int:
    from .signing import verify_artifact

    v = verify_artifact(a.artifact, a.trust, name=a.name, store=a.releases)  # name None: the folder's name
    print(f"{a.artifact}: signature OK: release {v.release.name!r} version {v.release.version} (by {v.key_ids}); "
          f"covers {sorted(v.files)}; file hashes OK")  # fmt: skip
    if a.keyring:
        from ..artifact import ENCRYPTED_WEIGHTS, read_manifest_bytes
        from .encryption import Keyring, load_weights

        folder = Path(a.artifact)
        if (folder / ENCRYPTED_WEIGHTS).exists():
            load_weights(folder, read_manifest_bytes(folder), Keyring.load(a.keyring))
            print(f"{ENCRYPTED_WEIGHTS}: decrypts and matches the manifest's weights sha256")
    return 0


def cmd_encrypt(a: argparse.Namespace) -> int:
    from .encryption import Keyring, encrypt_artifact

    path = encrypt_artifact(a.artifact, Keyring.load(a.keyring), a.key_id, keep_plaintext=a.keep_plaintext)
    kept = " (weights.bin kept)" if a.keep_plaintext else "; weights.bin removed"
    print(f"wrote {path} under key {a.key_id!r}{kept}")
    return 0


def cmd_rotate(a: argparse.Namespace) -> int:
    from .encryption import Keyring, rotate_key

    old = Keyring.load(a.old_keyring)
    new = Keyring.load(a.new_keyring) if a.new_keyring else old
    for art in a.artifacts:
        was, now = rotate_key(art, old, new, a.new_key_id)
        print(f"{art}: re-encrypted from key {was!r} to {now!r}")
    return 0


def add_parsers(sub: Any) -> None:
    """Add the integrity subcommands to the main `wasm-torch` parser."""
    k = sub.add_parser("keygen", help="make a signing key pair, or add an AES key to a keyring")
    k.add_argument("out", nargs="?", help="output stem: writes OUT.key (0600) and OUT.pub")
    k.add_argument("--alg", default="ed25519", choices=["ed25519", "ml-dsa-65"])
    k.add_argument("--force", action="store_true", help="overwrite an existing OUT.key")
    k.add_argument("--keyring", help="add a random AES-256 key to this keyring file instead")
    k.add_argument("--key-id", help="name of the new AES key (with --keyring)")
    k.set_defaults(fn=cmd_keygen)
    s = sub.add_parser("sign", help="sign an artifact's manifest (writes signature.json)")
    s.add_argument("artifact")
    s.add_argument("--key", action="append", required=True, help="private key file (repeat for hybrid)")
    s.add_argument("--name", help="release name (default: the folder's name; a cascade member: CASCADE/MEMBER)")
    s.add_argument("--version", type=_version, help="release version, an integer that only goes up (default: "
                   "the signed version when nothing changed, +1 when the files changed, else 1)")  # fmt: skip
    s.set_defaults(fn=cmd_sign)
    v = sub.add_parser("verify", help="check an artifact's signatures and file hashes")
    v.add_argument("artifact")
    v.add_argument("--trust", action="append", required=True, help="trusted public key (repeat)")
    v.add_argument("--keyring", help="also decrypt weights.bin.enc in memory and check its hash")
    v.add_argument("--name", help="the release name it must be signed as (default: the folder's name; '*': any)")
    v.add_argument("--releases", help="release store for rollback protection (refuse older versions)")
    v.set_defaults(fn=cmd_verify)
    e = sub.add_parser("encrypt", help="encrypt weights.bin at rest (AES-256-GCM -> weights.bin.enc)")
    e.add_argument("artifact")
    e.add_argument("--keyring", required=True)
    e.add_argument("--key-id", required=True)
    e.add_argument("--keep-plaintext", action="store_true", help="do not delete weights.bin")
    e.set_defaults(fn=cmd_encrypt)
    r = sub.add_parser("rotate-key", help="re-encrypt weights.bin.enc under a new key, atomically")
    r.add_argument("artifacts", nargs="+")
    r.add_argument("--old-keyring", required=True, help="keyring holding the current key")
    r.add_argument("--new-key-id", required=True)
    r.add_argument("--new-keyring", help="keyring holding the new key (default: the old keyring)")
    r.set_defaults(fn=cmd_rotate)
