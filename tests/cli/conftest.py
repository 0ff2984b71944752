"""A tiny model module written into a temp folder that the CLI imports by name (MODULE:FACTORY)."""

from __future__ import annotations

import pytest

MODELS = '''
import torch


def tiny():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(6, 3), torch.nn.Tanh())


class Emb(torch.nn.Module):
    """Token ids (index a 50-row table) and a 0/1 mask: two integer inputs of different meaning."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.e = torch.nn.Embedding(50, 4)

    def forward(self, ids, mask):
        return self.e(ids) * mask[..., None]


def broken():
    raise RuntimeError("factory exploded")


def not_a_model():
    return 42


def with_inputs():
    torch.manual_seed(0)
    return torch.nn.Linear(3, 2), (torch.randn(4, 3),)
'''


@pytest.fixture
def models_dir(tmp_path, monkeypatch):
    (tmp_path / "clitest_models.py").write_text(MODELS)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path
