"""fold_constants, simplify, eliminate_dead_code, propagate_shapes: before and after."""

from __future__ import annotations

import numpy as np

from wasm_torch.compiler.ir import parse_graph
from wasm_torch.compiler.passes.dce import eliminate_dead_code
from wasm_torch.compiler.passes.fold import fold_constants
from wasm_torch.compiler.passes.shapes import propagate_shapes
from wasm_torch.compiler.passes.simplify import simplify


def test_fold_pretransposes_a_constant_weight(check_pass):
    h = check_pass(
        fold_constants,
        """
        input x: f32[1, 2]
        const w: f32[3, 2] = [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]
        wt: f32[2, 3] = permute(w, perm=(1, 0))
        y: f32[1, 3] = matmul(x, wt)
        return y
        """,
        """
        input x: f32[1, 2]
        const w: f32[3, 2]
        const wt: f32[2, 3]
        y: f32[1, 3] = matmul(x, wt)
        return y
        """,
    )
    np.testing.assert_array_equal(h.consts["wt"], [[1, 3, 5], [2, 4, 6]])


def test_fold_leaves_a_bloating_expand_and_symbolic_nodes_alone(check_pass):
    text = """
        symbol n in [1, 64] = x.shape[0]
        input x: f32[n]
        const c: f32[1] = [2.0]
        big: f32[4096] = expand(c, shape=(4096,))
        r: i64[n] = arange(start=0, end=n, step=1, dtype='i64')
        s: f32[4096] = relu(big)
        return s, r
        """
    g = parse_graph(text)
    h = fold_constants(g)
    assert "big" not in h.consts and "r" not in h.consts  # 16 KB from 4 bytes, and depends on n
    assert [n.op for n in h.nodes] == ["expand", "arange", "relu"]


def test_simplify_merges_reshapes_and_drops_no_op_casts(check_pass):
    check_pass(
        simplify,
        """
        input x: f32[3, 2]
        const one: f32[] = 1.0
        a: f32[6] = reshape(x, shape=(6,))
        b: f32[2, 3] = reshape(a, shape=(2, 3))
        c: f32[2, 3] = cast(b, dtype='f32')
        d: f32[2, 3] = reshape(c, shape=(2, 3))
        y: f32[2, 3] = add(d, one)
        return y
        """,
        """
        input x: f32[3, 2]
        const one: f32[] = 1.0
        a: f32[6] = reshape(x, shape=(6,))
        b: f32[2, 3] = reshape(x, shape=(2, 3))
        y: f32[2, 3] = add(b, one)
        return y
        """,
    )


def test_simplify_keeps_a_no_op_that_is_a_graph_output(check_pass):
    check_pass(
        simplify,
        """
        input x: f32[2, 3]
        y: f32[2, 3] = reshape(x, shape=(2, 3))
        return y
        """,
        """
        input x: f32[2, 3]
        y: f32[2, 3] = reshape(x, shape=(2, 3))
        return y
        """,
    )


def test_dce_drops_unused_nodes_and_constants(check_pass):
    check_pass(
        eliminate_dead_code,
        """
        input x: f32[4]
        const unused: f32[4] = [1.0, 2.0, 3.0, 4.0]
        const two: f32[] = 2.0
        dead: f32[4] = add(x, unused)
        y: f32[4] = mul(x, two)
        return y
        """,
        """
        input x: f32[4]
        const two: f32[] = 2.0
        y: f32[4] = mul(x, two)
        return y
        """,
    )


def test_propagate_shapes_repairs_stale_types(check_pass):
    check_pass(
        propagate_shapes,
        """
        symbol b in [1, 8] = x.shape[0]
        input x: f32[b, 3]
        y: f32[7] = relu(x)
        z: f32[1] = reshape(y, shape=(3, b))
        return z
        """,
        """
        symbol b in [1, 8] = x.shape[0]
        input x: f32[b, 3]
        y: f32[b, 3] = relu(x)
        z: f32[3, b] = reshape(y, shape=(3, b))
        return z
        """,
        same_meaning=False,  # the input graph is wrong on purpose: that is what the pass repairs
    )
