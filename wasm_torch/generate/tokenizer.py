"""Text <-> token ids with the `tokenizers` package (a Hugging Face `tokenizer.json`), and streaming text.

    tok = Tokenizer.from_file("tokenizer.json")      # or from_pretrained_folder("path/to/hf-folder")
    ids = tok.encode("Hello")
    for piece in tok.stream(id_iterator): ...         # text as it becomes complete

`stream` turns a stream of token ids into text pieces, emitting new text only once it does not end
in a partial UTF-8 character (byte-level BPE splits multi-byte characters over tokens); the pieces
concatenate to `decode(all ids)` (the incremental scheme vLLM uses).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

from ..errors import ArtifactError, InputError

MAX_TOKENIZER_BYTES = 64 << 20
TOKENIZER_FILE = "tokenizer.json"


class Tokenizer:
    def __init__(self, backend: object):
        self._tok = backend

    @staticmethod
    def from_str(text: str, where: str = TOKENIZER_FILE) -> Tokenizer:
        try:
            from tokenizers import Tokenizer as _HF
        except ImportError as e:  # pragma: no cover - a dependency of the package
            raise ArtifactError(f"reading {where} needs the `tokenizers` package (pip install tokenizers): {e}") from e
        try:
            return Tokenizer(_HF.from_str(text))
        except Exception as e:  # tokenizers raises its own Exception subclass for a malformed file
            raise ArtifactError(f"{where} is not a tokenizer.json the tokenizers package can read: {e}") from None

    @staticmethod
    def from_file(path: str | Path) -> Tokenizer:
        p = Path(path)
        if p.is_dir():
            p = p / TOKENIZER_FILE
        if not p.is_file():
            raise ArtifactError(f"{p} is missing: a Hugging Face model folder keeps its tokenizer in {TOKENIZER_FILE}")
        if p.stat().st_size > MAX_TOKENIZER_BYTES:
            raise ArtifactError(f"{p} is larger than {MAX_TOKENIZER_BYTES:,} bytes")
        return Tokenizer.from_str(p.read_text(encoding="utf-8"), str(p))

    def to_str(self) -> str:
        return self._tok.to_str()  # type: ignore[attr-defined]

    @property
    def vocab_size(self) -> int:
        return int(self._tok.get_vocab_size(with_added_tokens=True))  # type: ignore[attr-defined]

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        if not isinstance(text, str):
            raise InputError(f"text to encode must be a string, not {type(text).__name__}")
        return list(self._tok.encode(text, add_special_tokens=add_special_tokens).ids)  # type: ignore[attr-defined]

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = True) -> str:
        return self._tok.decode(list(ids), skip_special_tokens=skip_special_tokens)  # type: ignore[attr-defined]

    def token_text(self, token: int) -> str | None:
        return self._tok.id_to_token(int(token))  # type: ignore[attr-defined]

    def stream(self, ids: Iterable[int], skip_special_tokens: bool = True) -> Iterator[str]:
        """Text pieces for a stream of token ids; their concatenation is decode(ids) (see TextStream)."""
        text = TextStream(self, skip_special_tokens)
        for t in ids:
            if piece := text.push(t):
                yield piece
        if tail := text.finish():
            yield tail


class TextStream:
    """Incremental detokenizer: push(token) -> the text that became complete ("" while a character
    is split over tokens). The ids of the last emitted piece are decoded again with the new ones and
    only the difference is emitted, so a tokenizer that strips or merges at the start of a decode
    (SentencePiece's leading space) still concatenates to decode(ids); finish() returns the rest."""

    def __init__(self, tokenizer: Tokenizer, skip_special_tokens: bool = True):
        self.tok, self.skip = tokenizer, skip_special_tokens
        self.ids: list[int] = []
        self.prefix = self.read = 0  # ids[prefix:read]: the tokens of the last emitted piece

    def _diff(self) -> tuple[str, str]:
        before = self.tok.decode(self.ids[self.prefix : self.read], self.skip)
        return before, self.tok.decode(self.ids[self.prefix :], self.skip)

    def push(self, token: int) -> str:
        self.ids.append(int(token))
        before, text = self._diff()
        if len(text) > len(before) and not text.endswith("\ufffd"):  # not inside a split character
            self.prefix, self.read = self.read, len(self.ids)
            return text[len(before) :]
        return ""

    def finish(self) -> str:
        """Whatever is left (even a lone partial character) at the end of the stream."""
        before, text = self._diff()
        self.prefix = self.read = len(self.ids)
        return text[len(before) :] if len(text) > len(before) else ""
