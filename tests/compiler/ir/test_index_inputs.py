"""Which inputs are indices and into how many rows: found through reshapes and casts, smallest
table wins, float and non-index integer inputs are not reported."""

from __future__ import annotations

import torch
from torch import nn

from wasm_torch.compiler import lower
from wasm_torch.compiler.ir.index_inputs import index_inputs


class TwoTables(nn.Module):
    def __init__(self):
        super().__init__()
        self.big, self.small = nn.Embedding(100, 4), nn.Embedding(30, 4)
        self.pos = nn.Embedding(16, 4)

    def forward(self, ids, mask, x):
        flat = ids.reshape(-1).to(torch.int32)  # through a reshape and a cast
        e = self.big(flat).reshape(*ids.shape, 4) + self.small(ids)
        p = self.pos(torch.arange(ids.shape[1]))  # an index computed inside: not an input
        return (e + p) * mask[..., None] + x


def test_index_inputs_follow_movement_and_take_the_smallest_table():
    ids = torch.randint(0, 30, (2, 5))
    g = lower(TwoTables().eval(), (ids, torch.ones(2, 5, dtype=torch.int64), torch.randn(2, 5, 4)))
    assert index_inputs(g) == {"ids": 30}


def test_gather_index_input():
    class G(nn.Module):
        def forward(self, x, i):
            return torch.gather(x, 1, i)

    g = lower(G(), (torch.randn(3, 7), torch.randint(0, 7, (3, 2))))
    assert index_inputs(g) == {"i": 7}
