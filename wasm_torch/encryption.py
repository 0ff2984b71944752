"""Moved to `wasm_torch.integrity.encryption`; this name is kept so code written for wasm-torch 0.1 still imports."""

from .integrity.encryption import Keyring, encrypt_artifact, load_weights, rotate_key

__all__ = ["Keyring", "encrypt_artifact", "load_weights", "rotate_key"]
