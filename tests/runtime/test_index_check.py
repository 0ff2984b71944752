"""An out-of-range index names the input, the bad value, its position and the valid range."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import wasm_torch
from wasm_torch.errors import IndexOutOfRange, InputError
from wasm_torch.runtime.index_check import explain_bad_index, index_trap_message


def test_explain_names_first_bad_value_and_range():
    ids = np.array([[1, 2, 3], [4, 99, -11]])
    msg = explain_bad_index({"ids": 10}, ["x", "ids"], [np.zeros(3, np.float32), ids])
    assert msg is not None
    assert "'ids' has 99 at position (1, 1)" in msg and "2 values out of range" in msg and "0..9" in msg
    assert explain_bad_index({"ids": 10}, ["ids"], [np.array([0, 9])]) is None  # all valid
    assert "has -1 at position (1,)" in explain_bad_index({"ids": 10}, ["ids"], [np.array([0, -1])])


@pytest.mark.parametrize("raw", [None, [], "x", {"ids": "10"}, {"ids": True}, {"ids": -5}])
def test_malformed_manifest_field_still_gives_a_message(raw):
    msg = index_trap_message(raw, ["ids"], [np.array([1000])])
    assert "out of range" in msg


@pytest.mark.toolchain
@pytest.mark.wasm
def test_trap_message_end_to_end(tmp_path):
    emb = nn.Embedding(10, 4)
    m = wasm_torch.load(wasm_torch.compile(emb, (torch.tensor([1, 2]),), tmp_path / "emb"))
    assert m.manifest.raw["index_inputs"] == {"input": 10}
    with pytest.raises(IndexOutOfRange) as e:
        m(np.array([3, 10]))
    assert isinstance(e.value, InputError)
    assert "'input' has 10 at position (1,)" in str(e.value) and "0..9" in str(e.value)
    np.testing.assert_allclose(m(np.array([3, 9])), emb(torch.tensor([3, 9])).detach().numpy())  # still usable
