"""Modern Hopfield retrieval: attention identity, energy descent, nearest-pattern retrieval, hierarchy."""

import torch
import torch.nn.functional as F

from wasm_torch.nn.hopfield import HierarchicalHopfield, ModernHopfield, hopfield_energy, hopfield_update


def bipolar(n, d, g):
    return torch.randint(0, 2, (n, d), generator=g).double() * 2 - 1


def flip(x, frac, g):
    mask = torch.rand(x.shape, generator=g) < frac
    return torch.where(mask, -x, x)


def test_one_update_is_attention_with_scale_beta():
    g = torch.Generator().manual_seed(0)
    xi = torch.randn(2, 5, 16, generator=g, dtype=torch.float64)
    x = torch.randn(2, 30, 16, generator=g, dtype=torch.float64)
    torch.testing.assert_close(
        hopfield_update(xi, x, x, 0.7), F.scaled_dot_product_attention(xi, x, x, scale=0.7)
    )


def test_energy_never_increases():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(40, 8, generator=g, dtype=torch.float64)
    xi = 3 * torch.randn(10, 8, generator=g, dtype=torch.float64)
    energies = [hopfield_energy(xi, x, 0.5)]
    for _ in range(15):
        xi = hopfield_update(xi, x, x, 0.5)
        energies.append(hopfield_energy(xi, x, 0.5))
    e = torch.stack(energies)
    assert (e[1:] <= e[:-1] + 1e-12).all()
    assert (e[-1] < e[0] - 1e-3).all()
    assert (e >= -1e-9).all()  # the energy is bounded below by 0 (Ramsauer et al., Lemma A1)


def test_module_iterates_the_update_and_levels_chain():
    g = torch.Generator().manual_seed(5)
    x = torch.randn(2, 20, 6, generator=g, dtype=torch.float64)
    xi = torch.randn(2, 3, 6, generator=g, dtype=torch.float64)
    expected = xi
    for _ in range(3):
        expected = hopfield_update(expected, x, x, 0.3)
    torch.testing.assert_close(ModernHopfield(beta=0.3, steps=3)(xi, x), expected)
    k1, v1 = (
        torch.randn(9, 6, generator=g, dtype=torch.float64),
        torch.randn(9, 4, generator=g, dtype=torch.float64),
    )
    net = HierarchicalHopfield([(x[0], None), (k1, v1)], betas=[0.3, 0.7], steps=3)
    lvl0, lvl1 = net(xi[0])
    torch.testing.assert_close(lvl0, expected[0])
    torch.testing.assert_close(lvl1, hopfield_update(expected[0], k1, v1, 0.7))  # hetero level: one step


def test_noisy_cue_retrieves_the_nearest_stored_pattern():
    g = torch.Generator().manual_seed(2)
    x = bipolar(64, 128, g)
    target = torch.randint(0, 64, (200,), generator=g)
    cue = flip(x[target], 0.25, g)
    nearest = (cue @ x.T).argmax(-1)  # oracle: maximal overlap
    assert (nearest == target).all()
    out = ModernHopfield(beta=1.0, steps=1)(cue.unsqueeze(0), x.unsqueeze(0)).squeeze(0)
    torch.testing.assert_close(out, x[target], atol=1e-3, rtol=0)
    # a stored pattern is a fixed point
    torch.testing.assert_close(hopfield_update(x, x, x, 1.0), x, atol=1e-9, rtol=0)


def test_three_level_hierarchy_item_category_supercategory():
    g = torch.Generator().manual_seed(3)
    items, cats, supers = bipolar(96, 128, g), bipolar(12, 64, g), bipolar(3, 32, g)
    cat_of = torch.arange(96) % 12
    super_of = torch.arange(12) % 3
    net = HierarchicalHopfield(
        [(items, None), (items, cats[cat_of]), (cats, supers[super_of])], betas=[1.0, 1.0, 1.0], steps=2
    )
    target = torch.randint(0, 96, (300,), generator=g)
    cue = flip(items[target], 0.3, g)
    top2 = (cue @ items.T).topk(2, dim=-1)
    clear = top2.values[:, 0] > top2.values[:, 1]  # drop the few cues exactly tied between two items
    assert clear.double().mean() > 0.95
    nearest = top2.indices[clear, 0]  # oracle for level 0: the stored item with maximal overlap
    lvl0, lvl1, lvl2 = (o[clear] for o in net(cue))
    assert ((lvl0 @ items.T).argmax(-1) == nearest).all()
    assert ((lvl1 @ cats.T).argmax(-1) == cat_of[nearest]).all()
    torch.testing.assert_close(lvl2, supers[super_of[cat_of[nearest]]], atol=1e-3, rtol=0)
    target = target[clear]
    assert (nearest == target).double().mean() > 0.9  # 30 % flipped bits: most cues stay nearest their item


def test_learnable_memories_receive_gradients():
    g = torch.Generator().manual_seed(4)
    keys = torch.randn(5, 4, generator=g)
    net = HierarchicalHopfield([(keys, torch.randn(5, 3, generator=g))], betas=1.0, learnable=True)
    net(torch.randn(2, 4, generator=g))[-1].sum().backward()
    assert net.keys0.grad is not None and net.values0.grad.abs().sum() > 0
