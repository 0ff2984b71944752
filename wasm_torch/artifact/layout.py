"""The names and constants of an artifact folder: one place for each."""

FORMAT = "wasm-torch/1"
MANIFEST = "manifest.json"
WASM = "model.wasm"
WEIGHTS = "weights.bin"
ENCRYPTED_WEIGHTS = "weights.bin.enc"  # AES-256-GCM at rest instead of weights.bin (integrity/encryption.py)
SIGNATURE = "signature.json"  # detached signatures over manifest.json (integrity/signing.py)
ALIGN = 64  # every weight and every arena buffer starts at a multiple of this many bytes
