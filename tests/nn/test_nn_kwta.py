"""k-WTA against a sort-based oracle."""

import numpy as np
import pytest
import torch

from wasm_torch.nn.kwta import KWinnerTakeAll


@pytest.mark.parametrize("dim", [-1, 1])
def test_exactly_the_k_largest_survive(dim):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 9, 12, generator=g)
    y = KWinnerTakeAll(k=3, dim=dim)(x)
    xn = np.moveaxis(x.numpy(), dim, -1)
    yn = np.moveaxis(y.numpy(), dim, -1)
    order = np.argsort(-xn, axis=-1)
    expected = np.zeros_like(xn)
    np.put_along_axis(expected, order[..., :3], np.take_along_axis(xn, order[..., :3], -1), -1)
    np.testing.assert_array_equal(yn, expected)
    assert ((yn != 0).sum(-1) == 3).all()


def test_threshold_mask_and_normalized_outputs():
    x = torch.tensor([[0.5, -1.0, 2.0, 0.05, 1.0, 0.01]])
    torch.testing.assert_close(
        KWinnerTakeAll(k=4, threshold=0.1)(x), torch.tensor([[0.5, 0.0, 2.0, 0.0, 1.0, 0.0]])
    )
    torch.testing.assert_close(KWinnerTakeAll(k=2, output="mask")(x), torch.tensor([[0.0, 0, 1, 0, 1, 0]]))
    torch.testing.assert_close(
        KWinnerTakeAll(k=2, output="normalized")(x), torch.tensor([[0.0, 0, 2 / 3, 0, 1 / 3, 0]])
    )
    torch.testing.assert_close(KWinnerTakeAll(k=50)(x), x)  # k larger than the axis keeps everything


def test_gradient_reaches_only_winners():
    x = torch.randn(3, 10, generator=torch.Generator().manual_seed(1), requires_grad=True)
    y = KWinnerTakeAll(k=2)(x)
    y.sum().backward()
    torch.testing.assert_close(x.grad, (y != 0).float())


def test_ties_still_give_exactly_k_winners():
    x = torch.tensor([[1.0, 3.0, 3.0, 3.0, 0.5], [2.0, 2.0, 2.0, 2.0, 2.0]])
    m = KWinnerTakeAll(k=2, output="mask")(x)
    assert (m.sum(-1) == 2).all()
    assert m[0, [0, 4]].sum() == 0  # the two winners of row 0 come from the tied maxima
