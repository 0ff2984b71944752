"""`Generator`: a compiled text generator loaded and driven from Python — prefill, decode steps,
`generate()` and a streaming iterator. Needs only numpy + wasmtime (+ `tokenizers` for text).

    gen = wasm_torch.generate.load_generator("out/gpt2-gen", threads=2)
    ids = gen.generate([464, 2068], max_new_tokens=64)             # greedy, HF generate's tokens
    for token in gen.stream(prompt_ids, 64, Sampling(do_sample=True, top_p=0.9, seed=0)): ...
    for text in gen.stream_text("Once upon a time", 64): print(text, end="")

The module keeps the KV cache in its linear memory (the manifest's `state`); the host keeps only
`length`, how many positions of it are valid. `feed(ids)` runs the one entry point on T new tokens
at position `length` (prefill: T = the prompt, after `reset()`; a decode step: T = 1) and returns
the logits of the last one. Every id is checked against the vocabulary and every call against the
max context *before* the module runs (`InputError`, `ContextOverflow`), and `length` only moves
when a call succeeded: after a trap or a deadline the cache rows at and after `length` are written
again before anything reads them, so the generator stays usable.

One Generator is one sequence at a time (one wasm instance): not thread-safe; use one per thread
(the server keeps a pool).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..artifact import Manifest, TensorSpec
from ..artifact.files import read_verified
from ..errors import ArtifactError, ContextOverflow, InputError
from .sampling import Sampling
from .tokenizer import Tokenizer


@dataclass(frozen=True)
class GeneratorSpec:
    """The manifest's `generator` and `state` sections (checked by artifact/generation.py)."""

    max_context: int
    vocab_size: int
    input_ids: str
    past: str
    logits: str
    eos_token_ids: tuple[int, ...] = ()
    bos_token_id: int | None = None
    tokenizer: str | None = None
    state: tuple[TensorSpec, ...] = ()
    model: dict[str, Any] = field(default_factory=dict)

    @staticmethod
    def of(m: Manifest, where: str) -> GeneratorSpec:
        g = m.raw.get("generator")
        if g is None:
            raise ArtifactError(
                f"{where} is not a text generator (its manifest has no generator section): compile one with "
                "wasm_torch.compile_generator, or load a plain model with wasm_torch.load"
            )
        return GeneratorSpec(
            g["max_context"], g["vocab_size"], g["input_ids"], g["past"], g["logits"],
            tuple(g.get("eos_token_ids", ())), g.get("bos_token_id"), g.get("tokenizer"),
            tuple(TensorSpec.from_json(t) for t in m.raw["state"]), dict(g.get("model", {})),
        )  # fmt: skip


def token_ids(ids: Any, vocab_size: int, what: str = "prompt") -> list[int]:
    """Token ids as a list of ints: a sequence of ints, a 1-D integer array or one of shape [1, n],
    each in [0, vocab_size). Anything else is an InputError naming the first bad value."""
    if hasattr(ids, "detach") and hasattr(ids, "numpy"):  # a torch tensor, without importing torch
        ids = ids.detach().cpu().numpy()
    if isinstance(ids, (str, bytes)):
        raise InputError(f"{what}: token ids expected, got text (encode it with the generator's tokenizer)")
    if isinstance(ids, np.ndarray):
        arr = ids[0] if ids.ndim == 2 and ids.shape[0] == 1 else ids
        if arr.ndim != 1:
            raise InputError(f"{what}: token ids must be a 1-D sequence (or shape [1, n]), got shape {list(ids.shape)}")
        if arr.size and arr.dtype.kind not in "iu":
            raise InputError(f"{what}: token ids must be integers, got dtype {arr.dtype}")
        values: list[Any] = arr.tolist()
    else:
        try:
            values = list(ids)
        except TypeError:
            raise InputError(f"{what}: token ids must be a sequence of integers, not {type(ids).__name__}") from None
        if len(values) == 1 and isinstance(values[0], (list, tuple, np.ndarray)):  # shape [1, n]
            values = list(values[0])
    for i, t in enumerate(values):
        if isinstance(t, (list, tuple, np.ndarray)):
            raise InputError(f"{what}: token ids must be a 1-D sequence (or shape [1, n]); position {i} is a sequence")
        if isinstance(t, (bool, np.bool_)) or not isinstance(t, (int, np.integer)):
            raise InputError(f"{what}: token ids must be integers, got {type(t).__name__} at position {i}")
        if not 0 <= t < vocab_size:
            raise InputError(f"{what}: token id {t} at position {i} is outside the vocabulary [0, {vocab_size})")
    return [int(t) for t in values]


class Generator:
    """A loaded generator artifact (module docstring). Load options are `wasm_torch.load`'s."""

    def __init__(self, path: str | Path, *, threads: int | None = None, variant: str = "auto",
                 module: Any = None, **options: Any):  # fmt: skip
        """module: an instance already loaded from `path` (e.g. by the server's verifying factory)."""
        from ..runtime import load

        self.path = Path(path)
        if module is None:  # stateful: the KV cache must survive from call to call (runtime/module.py)
            module = load(path, threads=threads, variant=variant, stateful=True, **options)
        if not getattr(module, "stateful", False):
            raise ArtifactError(f"{path}: a generator needs its module loaded with stateful=True")
        self.module = module
        m = self.module.manifest
        self.spec = GeneratorSpec.of(m, str(self.path))
        self.name = m.name
        self.tokenizer: Tokenizer | None = None
        if self.spec.tokenizer is not None:
            try:
                data = read_verified(self.path, m, self.spec.tokenizer, options.get("verify", True))
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                raise ArtifactError(f"{self.path / self.spec.tokenizer} is not UTF-8 text") from None
            self.tokenizer = Tokenizer.from_str(text, str(self.path / self.spec.tokenizer))
        self.length = 0  # valid positions of the KV cache
        self.tokens: list[int] = []  # the ids at those positions

    # ---- the cache ------------------------------------------------------------------------------------
    @property
    def max_context(self) -> int:
        return self.spec.max_context

    @property
    def vocab_size(self) -> int:
        return self.spec.vocab_size

    def reset(self) -> None:
        """Start a new sequence (nothing is cleared: positions >= length are never read)."""
        self.length, self.tokens = 0, []

    def truncate(self, length: int) -> None:
        """Keep the first `length` positions (rewind, e.g. to regenerate from there); the rows after
        them are written again before anything reads them."""
        if isinstance(length, bool) or not isinstance(length, (int, np.integer)) or not 0 <= length <= self.length:
            raise InputError(f"{self.name}: truncate({length!r}): expected an integer in [0, {self.length}]")
        self.length, self.tokens = int(length), self.tokens[: int(length)]

    def feed(self, ids: Any) -> np.ndarray:
        """Run the new tokens `ids` at positions length.. and return the last one's logits [vocab]."""
        new = token_ids(ids, self.vocab_size, "tokens to feed")
        if not new:
            raise InputError(f"{self.name}: feed needs at least one token")
        if self.length + len(new) > self.max_context:
            raise ContextOverflow(
                f"{self.name}: {self.length} tokens in the cache + {len(new)} new = {self.length + len(new)} "
                f"exceeds the compiled max context of {self.max_context}; reset() or compile with a larger max_context"
            )
        s = self.spec
        out = self.module.run({s.input_ids: np.asarray([new], np.int64), s.past: np.asarray([self.length], np.int64)})
        self.length += len(new)
        self.tokens += new
        return out[s.logits][0]

    def prefill(self, ids: Any) -> np.ndarray:
        """A new sequence: reset, then run the prompt; returns the logits after its last token."""
        prompt = token_ids(ids, self.vocab_size)
        if not prompt:
            raise InputError(f"{self.name}: the prompt is empty (give at least one token, e.g. the BOS id)")
        self.reset()
        return self.feed(prompt)

    def step(self, token: int) -> np.ndarray:
        """One decode step: the logits after `token` at position length."""
        return self.feed([token])

    def cache(self, layer: int) -> tuple[np.ndarray, np.ndarray]:
        """Copies of layer `layer`'s cached keys [kv_heads, length, head_dim] and values [kv_heads,
        length, value_dim] (what the module wrote; for tests and inspection)."""
        if not 0 <= layer < len(self.spec.state) // 2:
            raise InputError(f"{self.name}: layer {layer} is outside [0, {len(self.spec.state) // 2})")
        kt, vt = self.spec.state[2 * layer], self.spec.state[2 * layer + 1]
        k = self.module.arena_view(kt.offset, kt.dtype, tuple(int(d) for d in kt.shape))
        v = self.module.arena_view(vt.offset, vt.dtype, tuple(int(d) for d in vt.shape))
        return k[0, :, :, : self.length].transpose(0, 2, 1).copy(), v[0, :, : self.length, :].copy()

    # ---- generation -----------------------------------------------------------------------------------
    def _stops(self, stop: Iterable[int] | None, stop_at_eos: bool) -> set[int]:
        stops = set(self.spec.eos_token_ids) if stop_at_eos else set()
        if stop is not None:
            stops |= set(token_ids(list(stop), self.vocab_size, "stop tokens"))
        return stops

    def stream(
        self,
        prompt: Any,
        max_new_tokens: int,
        sampling: Sampling | None = None,
        *,
        stop: Iterable[int] | None = None,
        stop_at_eos: bool = True,
    ) -> Iterator[int]:
        """New token ids one at a time, as each is chosen. Stops after max_new_tokens, or after
        yielding a stop token (the model's EOS ids unless stop_at_eos=False, plus `stop`). The
        prompt and the budget are checked before anything runs: the prompt plus max_new_tokens must
        fit the max context (ContextOverflow)."""
        ids = token_ids(prompt, self.vocab_size)
        if not ids:
            raise InputError(f"{self.name}: the prompt is empty (give at least one token, e.g. the BOS id)")
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, (int, np.integer)) or max_new_tokens < 0:
            raise InputError(f"{self.name}: max_new_tokens={max_new_tokens!r}: expected an integer >= 0")
        if len(ids) + int(max_new_tokens) > self.max_context:
            raise ContextOverflow(
                f"{self.name}: the prompt ({len(ids)} tokens) + max_new_tokens ({max_new_tokens}) = "
                f"{len(ids) + int(max_new_tokens)} exceeds the compiled max context of {self.max_context}"
            )
        sampling = sampling if sampling is not None else Sampling()
        if not isinstance(sampling, Sampling):
            raise InputError(f"sampling must be a Sampling, not {type(sampling).__name__}")
        stops = self._stops(stop, stop_at_eos)
        return self._run(ids, int(max_new_tokens), sampling, stops)

    def _run(self, ids: list[int], n: int, sampling: Sampling, stops: set[int]) -> Iterator[int]:
        if n == 0:
            return
        choose = sampling.chooser()
        logits = self.prefill(ids)
        for k in range(n):
            token = choose(logits, self.tokens)
            yield token
            if token in stops or k == n - 1:
                return
            logits = self.step(token)

    def generate(self, prompt: Any, max_new_tokens: int, sampling: Sampling | None = None, **kw: Any) -> list[int]:
        """The new token ids (see `stream`), as a list."""
        return list(self.stream(prompt, max_new_tokens, sampling, **kw))

    def _tok(self) -> Tokenizer:
        if self.tokenizer is None:
            raise InputError(
                f"{self.name} has no tokenizer: compile it with compile_generator(..., tokenizer=...) or pass token ids"
            )
        return self.tokenizer

    def stream_text(self, prompt: str | Sequence[int], max_new_tokens: int, sampling: Sampling | None = None,
                    **kw: Any) -> Iterator[str]:  # fmt: skip
        """Text pieces as they become complete (the prompt may be text or ids)."""
        tok = self._tok()
        ids = tok.encode(prompt) if isinstance(prompt, str) else prompt
        return tok.stream(self.stream(ids, max_new_tokens, sampling, **kw))

    def generate_text(self, prompt: str | Sequence[int], max_new_tokens: int, sampling: Sampling | None = None,
                      **kw: Any) -> str:  # fmt: skip
        return "".join(self.stream_text(prompt, max_new_tokens, sampling, **kw))

    def close(self) -> None:
        close = getattr(self.module, "close", None)
        if close is not None:
            close()

    def __enter__(self) -> Generator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Generator({self.name!r}, max_context={self.max_context}, vocab_size={self.vocab_size}, length={self.length})"


def load_generator(path: str | Path, **options: Any) -> Generator:
    """Load a generator artifact (compile_generator's output). Options: threads, variant and every
    option of wasm_torch.load (memory_limit, deadline per call, trusted_keys, ...)."""
    return Generator(path, **options)
