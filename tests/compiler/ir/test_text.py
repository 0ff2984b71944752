"""IR text: format_graph(values=True) and parse_graph give back an equal graph, and the parser
evaluates nothing (it reads Python syntax trees, accepting only literals, dims and steps)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.export import Dim

from wasm_torch.compiler import lower
from wasm_torch.compiler.frontend import from_torch
from wasm_torch.compiler.ir import Graph, format_graph, parse_graph
from wasm_torch.errors import GraphError
from wasm_torch.zoo import build


def _same(a: Graph, b: Graph) -> None:
    assert (a.inputs, a.outputs, a.types, a.symbols) == (b.inputs, b.outputs, b.types, b.symbols)
    assert [(n.op, n.inputs, n.outputs, n.attrs) for n in a.nodes] == [
        (n.op, n.inputs, n.outputs, n.attrs) for n in b.nodes
    ]
    assert a.consts.keys() == b.consts.keys()
    for k in a.consts:
        assert a.consts[k].dtype == b.consts[k].dtype
        np.testing.assert_array_equal(a.consts[k], b.consts[k])


class CausalBlock(nn.Module):
    """Symbolic sequence length, causal attention, an elementwise chain (fused steps), an arange."""

    def __init__(self):
        super().__init__()
        self.qkv, self.pos = nn.Linear(8, 24), nn.Embedding(16, 8)

    def forward(self, x):
        x = x + self.pos(torch.arange(x.shape[1]))
        q, k, v = self.qkv(x).view(x.shape[0], x.shape[1], 3, 2, 4).permute(2, 0, 3, 1, 4)
        y = nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        y = y.transpose(1, 2).reshape(x.shape)
        return torch.tanh(y * 2 + 1) * y


def _case(name):
    if name == "causal":
        return CausalBlock().eval(), (torch.randn(1, 5, 8),), {"x": {1: Dim("seq", max=16)}}
    return build(name)[:3]


@pytest.mark.parametrize("name", ["cnn", "causal"])  # conv/pool attrs; symbols, attention, fused steps
def test_round_trip_before_and_after_the_passes(name):
    model, inputs, dynamic = _case(name)
    for g in (from_torch(model, inputs, dynamic), lower(model, inputs, dynamic)):
        text = format_graph(g, values=True)
        back = parse_graph(text)
        _same(g, back)
        assert format_graph(back, values=True) == text
    if name == "causal":  # the lowered graph exercised what it is meant to
        ops = {n.op for n in g.nodes}
        assert g.symbols and {"attention", "fused_elementwise"} <= ops, ops


def test_constants_can_come_from_a_dict():
    g = parse_graph("input x: f32[2]\nconst w: f32[2]\ny: f32[2] = add(x, w)\nreturn y", {"w": np.ones(2)})
    assert g.consts["w"].dtype == np.float32


@pytest.mark.parametrize(
    "text",
    [
        "input x: f32[2]\ny: f32[2] = relu(x, a=__import__('os').system('true'))\nreturn y",
        "input x: f32[2]\ny: f32[2] = relu(x, a=open('/etc/passwd'))\nreturn y",
        "input x: f32[2]\ny: f32[2] = relu(x, a=(lambda: 1)())\nreturn y",
        "input x: f32[2]\ny: f32[2] = relu(x.attr)\nreturn y",
        "input x: f32[2]\ny: f32[2] = relu(x",
        "input x: q99[2]\nreturn x",
        "input x: f32[2]\nconst w: f32[3] = [1.0, 2.0]\nreturn x",
        "input x: f32[2]\nconst w: f32[2]\nreturn x",
        "input x: f32[2]\nthis is not IR\nreturn x",
        "input x: f32[2]",
    ],
)
def test_malformed_text_is_a_graph_error(text):
    with pytest.raises(GraphError):
        parse_graph(text)
