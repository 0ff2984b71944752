"""The strict manifest schema and JSON reader (malformed artifacts, item 5): every field typed and
bounded, unknown and duplicate keys refused, numbers bounded; every problem an ArtifactError that
names the field, never a raw KeyError / TypeError / RecursionError / OverflowError."""

from __future__ import annotations

import copy
import json

import pytest

from wasm_torch.artifact import Manifest, eval_dim, parse_manifest_bytes, strictjson
from wasm_torch.artifact.dims import parse_dim
from wasm_torch.errors import ArtifactError


def parse(raw: object) -> Manifest:
    return parse_manifest_bytes(json.dumps(raw).encode(), "m.json")


def valid(corpus) -> dict:
    m = corpus.manifest()
    m["files"] = {"model.wasm": {"sha256": "a" * 64, "bytes": 10}, "weights.bin": {"sha256": "b" * 64, "bytes": 64}}
    return m


def test_the_hand_made_manifest_parses_to_typed_specs(corpus):
    m = parse(valid(corpus))
    assert m.name == "valid" and m.entry == "wt_run" and m.file("weights.bin") == ("b" * 64, 64)
    assert [(s.name, s.shape, s.offset) for s in m.outputs] == [("y", ("batch", 4), 128)]
    assert [(s.name, s.min, s.max) for s in m.symbols] == [("batch", 1, 8)]


def test_every_manifest_edit_of_the_corpus_is_refused_with_its_field(corpus):
    """Each edit from the attack corpus, applied in memory: an ArtifactError, nothing else. (Dropping
    the symbol *and* making the shapes static is a consistent manifest: the module check refuses it.)"""
    for name, (_, edit) in corpus._manifest_edits().items():
        if name == "dropped_symbol_static_shapes":
            continue
        m = valid(corpus)
        out = edit(m)
        with pytest.raises(ArtifactError) as e:
            parse(out if isinstance(out, list) else m)
        assert len(str(e.value)) > 30, (name, str(e.value))


@pytest.mark.parametrize(
    "text, why",
    [
        ('{"a": 1, "a": 2}', "duplicate key"),
        ('{"a": {"b": 1, "b": 1}}', "duplicate key"),
        ('{"a": NaN}', "NaN"),
        ('{"a": -Infinity}', "Infinity"),
        ('{"a": 1e400}', "out of range"),
        ('{"a": ' + "9" * 4300 + "}", "digits"),
        ('{"a": ' + "9" * 20 + "}", "digits"),
        ("[" * 50_000 + "]" * 50_000, "nested too deeply"),
        ('{"a": 1} x', "Extra data"),
        ('{"a": 1}{"b": 2}', "Extra data"),
        ("\ufeff{}", "BOM"),
    ],
)
def test_strict_json_refuses(text, why):
    with pytest.raises(ArtifactError, match=why):
        strictjson.loads(text.encode(), "f.json", max_bytes=1 << 20)


def test_strict_json_limits_and_canonical_form():
    with pytest.raises(ArtifactError, match="over the 10-byte limit"):
        strictjson.loads(b'{"a": 12345}', "f.json", max_bytes=10)
    with pytest.raises(ArtifactError, match="not UTF-8"):
        strictjson.loads(b'{"a": "\xff"}', "f.json", max_bytes=100)
    assert strictjson.loads(b'{"a": [1, 2.5, "x", null, true]}', "f", max_bytes=100) == {"a": [1, 2.5, "x", None, True]}
    assert strictjson.dumps_canonical({"b": 1, "a": [1, "é"]}) == b'{"a":[1,"\\u00e9"],"b":1}'


def test_types_are_exact_and_numbers_bounded(corpus):
    base = valid(corpus)
    for path, value, why in [
        (("memory", "arena_bytes"), True, "must be an integer"),
        (("memory", "arena_bytes"), 256.0, "must be an integer"),
        (("memory", "arena_bytes"), 1 << 33, "outside"),
        (("memory", "weights_bytes"), -1, "outside"),
        (("memory", "align"), 32, "the format uses 64"),
        (("name",), "a/b", "not a model name"),
        (("name",), "x" * 129, "not a model name"),
        (("entry",), "__heap_base", "reserved"),
    ]:
        m = copy.deepcopy(base)
        target = m if len(path) == 1 else m[path[0]]
        target[path[-1]] = value
        with pytest.raises(ArtifactError, match=why):
            parse(m)


def test_a_manifest_built_in_python_is_checked_too(corpus):
    """Manifest(raw) runs the schema wherever it is built (the edge network builds one from a database row)."""
    m = valid(corpus)
    m["inputs"][0]["shape"] = ["batch", "(batch // 0)"]
    with pytest.raises(ArtifactError, match="division by zero"):
        Manifest(m)
    assert Manifest(valid(corpus)).name == "valid"


def test_dimension_expressions_are_bounded():
    syms = {"seq": 7, "batch": 2}
    assert eval_dim("((seq * 12) // (5)) + max(batch, 3) - min(seq, 1) % 2", syms) == 16 + 3 - 1
    assert eval_dim("(-((-(seq)) // (2)))", syms) == 4  # ceil division as the compiler prints it
    for expr, why in [
        ("seq ** 2", "not allowed"),
        ("__import__('os')", "not allowed"),
        ("seq.real", "not allowed"),
        ("(" * 300 + "1" + ")" * 300, "not an expression|nesting"),
        ("+".join(["seq"] * 1000), "terms|nesting"),
        ("x" * 5000, "characters"),
        ("seq // (batch - 2)", "division by zero"),
        ("seq % 0", "division by zero"),
        ("seq * 4611686018427387903 * 4", "out of range"),
        ("max()", "not allowed"),
        ("1.5", "not a non-negative integer"),
    ]:
        with pytest.raises(ArtifactError, match=why):
            eval_dim(expr, syms)
    with pytest.raises(ArtifactError, match="unknown symbols"):
        parse_dim("seq + width", ["seq"])
    with pytest.raises(ArtifactError, match="integer or an expression"):
        parse_dim(4.0, ["seq"])  # type: ignore[arg-type]


@pytest.mark.toolchain
@pytest.mark.wasm
def test_a_real_compiled_manifest_passes(artifacts):
    """The compiler's own output (dynamic batch) satisfies the schema it is read with."""
    import torch
    from torch.export import Dim

    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3)).eval()
    art = artifacts("schema_mlp", model, (torch.randn(2, 4),), dynamic_shapes=({0: Dim("batch", min=1, max=16)},))
    raw = (art.path / "manifest.json").read_bytes()
    assert parse_manifest_bytes(raw, "m").symbols[0].max == 16
