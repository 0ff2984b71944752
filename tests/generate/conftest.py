"""Fixtures for text generation: small random-weight causal LMs and their compiled generators.

Compiling is the slow part (torch.export of a transformers model, ~15 s each), so each generator
is compiled once per session: a GPT-2 with a byte-level BPE tokenizer trained here (every build
variant: threads and relaxed SIMD) and a Llama-style model (RoPE, RMSNorm, grouped-query attention
with 4 query / 2 key-value heads, SiLU-gated MLP; threaded build). Weights are random with
initializer_range 0.1, which gives varied greedy continuations (at 0.02 GPT-2 repeats one token).
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import transformers

from wasm_torch.compiler import CompileOptions

MAX_CONTEXT = 96
CORPUS = [
    "Once upon a time there was a small model that compiled itself to WebAssembly.",
    "The quick brown fox jumps over the lazy dog; the dog sleeps, the fox runs.",
    "Caf\u00e9, na\u00efve, fa\u00e7ade, \u00fcber, \u00c5ngstr\u00f6m \u2014 and emoji \U0001f600\U0001f680 split over tokens.",
    "Tokens stream one at a time from the browser, from Node and from the server.",
    "\u6f22\u5b57\u3068\u3072\u3089\u304c\u306a \u0440\u0443\u0441\u0441\u043a\u0438\u0439 \u0627\u0644\u0639\u0631\u0628\u064a\u0629",
] * 4


def train_tokenizer(vocab_size: int = 384):
    """A byte-level BPE tokenizer (GPT-2's scheme) trained on CORPUS, `<|endoftext|>` = id 0."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)  # fmt: skip
    tok.train_from_iterator(CORPUS, trainer)
    return tok


def gpt2(vocab: int, eos: int | None = None) -> torch.nn.Module:
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(vocab_size=vocab, n_embd=64, n_layer=2, n_head=4, n_positions=128,
                                  bos_token_id=eos, eos_token_id=eos, initializer_range=0.1)  # fmt: skip
    return transformers.GPT2LMHeadModel(cfg).eval()


def llama(vocab: int = 384, eos: int | None = None) -> torch.nn.Module:
    torch.manual_seed(1)
    cfg = transformers.LlamaConfig(vocab_size=vocab, hidden_size=64, intermediate_size=160, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                                   bos_token_id=eos, eos_token_id=eos, initializer_range=0.1)  # fmt: skip
    return transformers.LlamaForCausalLM(cfg).eval()


@dataclass
class Compiled:
    path: Path
    model: torch.nn.Module
    report: dict


@pytest.fixture(scope="session")
def tokenizer():
    return train_tokenizer()


@pytest.fixture(scope="session")
def gpt2_gen(tmp_path_factory, tokenizer) -> Compiled:
    """GPT-2 (learned positions, LayerNorm, GELU, tied LM head), with tokenizer.json; every build variant."""
    from wasm_torch.generate import compile_generator

    model = gpt2(tokenizer.get_vocab_size())
    out = tmp_path_factory.mktemp("gen") / "gpt2"
    art = compile_generator(model, out, max_context=MAX_CONTEXT, tokenizer=tokenizer,
                            options=CompileOptions(threads=True, relaxed=True))
    return Compiled(Path(art.path), model, art.report)


@pytest.fixture(scope="session")
def llama_gen(tmp_path_factory) -> Compiled:
    from wasm_torch.generate import compile_generator

    model = llama()
    out = tmp_path_factory.mktemp("gen") / "llama"
    art = compile_generator(model, out, max_context=MAX_CONTEXT, options=CompileOptions(relaxed=False))
    return Compiled(Path(art.path), model, art.report)


@pytest.fixture
def copy_of(tmp_path):
    """copy_of(compiled) -> a private copy of the artifact folder (for tests that tamper with it)."""

    def make(c: Compiled, name: str = "copy") -> Path:
        dst = tmp_path / name
        shutil.copytree(c.path, dst)
        return dst

    return make


@pytest.fixture(scope="session")
def node() -> str:
    """The node executable (>= 18): missing is a failure, never a skip (`make test` installs it)."""
    exe = shutil.which("node")
    if exe is None:
        pytest.fail("node is not installed: run scripts/setup_browser.sh (or apt-get install -y nodejs)")
    major = int(subprocess.run([exe, "--version"], capture_output=True, text=True).stdout.strip()[1:].split(".")[0])
    if major < 18:
        pytest.fail(f"node >= 18 is needed, found v{major}")
    return exe
