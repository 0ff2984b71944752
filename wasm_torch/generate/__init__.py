"""Text generation: decoder LMs compiled with a KV cache, generated from Python, JS and the server.

    art = wasm_torch.compile_generator(hf_model, "out/gen", max_context=256, tokenizer="hf-folder")
    gen = wasm_torch.generate.load_generator("out/gen", threads=2)
    gen.generate(prompt_ids, max_new_tokens=64)                   # greedy: HF generate's tokens
    for piece in gen.stream_text("Once upon a time", 64, Sampling(do_sample=True, top_p=0.9, seed=1)):
        print(piece, end="", flush=True)

compile.py / trace.py / validate.py are the compile side (torch, transformers); generator.py,
sampling.py and tokenizer.py run with numpy + wasmtime (+ tokenizers) only. docs/generate.md.
"""

from __future__ import annotations

from typing import Any

from .generator import Generator, GeneratorSpec, load_generator
from .sampling import Sampling
from .tokenizer import Tokenizer


def compile_generator(model: Any, out_dir: Any, **options: Any) -> Any:
    """Compile a Hugging Face causal LM into a generator artifact: see generate/compile.py."""
    from .compile import compile_generator as _compile

    return _compile(model, out_dir, **options)


__all__ = ["Generator", "GeneratorSpec", "Sampling", "Tokenizer", "compile_generator", "load_generator"]
