"""pack_weights, fuse_epilogue, fold_conv_bn, pack_conv: before and after."""

from __future__ import annotations

import numpy as np

from wasm_torch.compiler.passes.conv_bn import fold_conv_bn
from wasm_torch.compiler.passes.fuse_epilogue import fuse_epilogue
from wasm_torch.compiler.passes.pack_conv import pack_conv
from wasm_torch.compiler.passes.pack_weights import PANEL, pack, pack_weights

W = np.arange(6, dtype=np.float32).reshape(2, 3) / 7  # (K=2, N=3)


def test_pack_weights_packs_a_constant_right_operand(check_pass):
    h = check_pass(
        pack_weights,
        """
        input x: f32[4, 2]
        const w: f32[2, 3]
        const b: f32[3] = [0.5, -1.0, 2.0]
        y: f32[4, 3] = matmul(x, w, b)
        return y
        """,
        f"""
        input x: f32[4, 2]
        const w: f32[2, 3]
        const b: f32[3]
        const w_packed: f32[1, 2, {PANEL}]
        y: f32[4, 3] = matmul_packed(x, w_packed, b, n=3)
        return y
        """,
        consts={"w": W},
    )
    np.testing.assert_array_equal(h.consts["w_packed"], pack(W))


def test_pack_weights_leaves_activation_times_activation(check_pass):
    check_pass(
        pack_weights,
        """
        input x: f32[4, 2]
        input w: f32[2, 3]
        y: f32[4, 3] = matmul(x, w)
        return y
        """,
        """
        input x: f32[4, 2]
        input w: f32[2, 3]
        y: f32[4, 3] = matmul(x, w)
        return y
        """,
    )


EPILOGUE = """
input x: f32[4, 2]
const wp: f32[1, 2, 16]
const b: f32[3] = [0.5, -1.0, 2.0]
m: f32[4, 3] = matmul_packed(x, wp, n=3)
a: f32[4, 3] = add(m, b)
y: f32[4, 3] = relu(a)
return y{extra}
"""


def test_fuse_epilogue_folds_bias_and_activation(check_pass):
    check_pass(
        fuse_epilogue,
        EPILOGUE.format(extra=""),
        """
        input x: f32[4, 2]
        const wp: f32[1, 2, 16]
        const b: f32[3]
        y: f32[4, 3] = matmul_packed(x, wp, b, n=3, act='relu')
        return y
        """,
        consts={"wp": pack(W)},
    )


def test_fuse_epilogue_keeps_a_value_that_is_also_an_output(check_pass):
    g = check_pass(fuse_epilogue, EPILOGUE.format(extra=", a"), consts={"wp": pack(W)})
    assert [n.op for n in g.nodes] == ["matmul_packed", "relu"]  # `a` is needed as it is
    assert g.nodes[0].attrs.get("act") is None


CONV_BN = """
input x: f32[1, 2, 3, 3]
const w: f32[2, 2, 1, 1] = [[[[1.0]], [[2.0]]], [[[-1.0]], [[0.5]]]]
const cb: f32[2] = [0.1, 0.2]
const scale: f32[2, 1, 1] = [[[2.0]], [[0.5]]]
const shift: f32[2, 1, 1] = [[[1.0]], [[-3.0]]]
c: f32[1, 2, 3, 3] = conv2d(x, w, cb, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1)
m: f32[1, 2, 3, 3] = mul(c, scale)
a: f32[1, 2, 3, 3] = add(m, shift)
y: f32[1, 2, 3, 3] = relu(a)
return y{extra}
"""


def test_fold_conv_bn_into_weights_bias_and_activation(check_pass):
    h = check_pass(
        fold_conv_bn,
        CONV_BN.format(extra=""),
        """
        input x: f32[1, 2, 3, 3]
        const w: f32[2, 2, 1, 1]
        const cb: f32[2]
        const scale: f32[2, 1, 1]
        const shift: f32[2, 1, 1]
        const c_wfold: f32[2, 2, 1, 1]
        const c_bfold: f32[2]
        y: f32[1, 2, 3, 3] = conv2d(x, c_wfold, c_bfold, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1, act='relu')
        return y
        """,
    )
    np.testing.assert_allclose(h.consts["c_bfold"], [0.1 * 2 + 1, 0.2 * 0.5 - 3])


def test_fold_conv_bn_stops_at_a_shared_value(check_pass):
    h = check_pass(fold_conv_bn, CONV_BN.format(extra=", m"))
    assert [n.op for n in h.nodes][-2:] == ["add", "relu"]  # m is an output: the chain after it stays


def test_pack_conv_and_depthwise(check_pass):
    h = check_pass(
        pack_conv,
        """
        input x: f32[1, 2, 4, 4]
        const w: f32[3, 2, 3, 3]
        const dw: f32[3, 1, 3, 3]
        c: f32[1, 3, 4, 4] = conv2d(x, w, _, stride=(1, 1), padding=(1, 1), dilation=(1, 1), groups=1)
        d: f32[1, 3, 4, 4] = conv2d(c, dw, _, stride=(1, 1), padding=(1, 1), dilation=(1, 1), groups=3)
        return d
        """,
        consts={
            "w": np.random.default_rng(0).standard_normal((3, 2, 3, 3)).astype(np.float32),
            "dw": np.random.default_rng(1).standard_normal((3, 1, 3, 3)).astype(np.float32),
        },
    )
    assert [n.op for n in h.nodes] == ["conv2d_packed", "dwconv2d"]
    assert all(len(n.outputs) == 2 and n.attrs["scratch"] > 0 for n in h.nodes)  # kernel scratch as a value
    assert h.nodes[1].inputs[0] == "c"
