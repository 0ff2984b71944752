"""wordpiece.mjs gives the same ids as the Hugging Face tokenizer of all-MiniLM-L6-v2."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
JS = HERE.parents[1] / "wasm_torch" / "js"

SENTENCES = [
    "Hello, world!",
    "A man is playing a guitar.",
    "Café naïve résumé — déjà vu",
    "北京欢迎你 and 東京",
    "I'm 42 years old (really?!)",
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
    "emoji 🤗 test\tTAB\nnewline",
    "x" * 120,
    "",
    "  multiple   spaces  ",
    "ÅNGSTRÖM ŁÓDŹ Straße",
    "co-operate e.g. U.S.A. $5.00 50% #hashtag @user",
    "\u200bzero\u00a0width\u0007bell",
    "WebAssembly lets a compiled model run in a browser, an edge device or a sandboxed server.",
]


@pytest.fixture(scope="module")
def tok():
    from transformers import AutoTokenizer

    from wasm_torch.zoo.models import minilm_path

    return AutoTokenizer.from_pretrained(str(minilm_path()))


def test_wordpiece_matches_hf(node, tok, tmp_path):
    from wasm_torch.zoo.models import minilm_path

    (tmp_path / "s.json").write_text(json.dumps(SENTENCES))
    p = subprocess.run(
        [node, str(HERE / "tokenize.mjs"), str(JS), str(minilm_path() / "vocab.txt"), str(tmp_path / "s.json")],
        capture_output=True, text=True, timeout=60,
    )
    assert p.returncode == 0, p.stderr
    got = json.loads(p.stdout)
    for s, g in zip(SENTENCES, got, strict=True):
        assert g == tok(s)["input_ids"], f"{s!r}: js {g} != hf {tok(s)['input_ids']}"
