"""Pack constant convolution weights into GEMM panels at compile time (for wt_conv2d_packed_f32).

A grouped conv is, per image and group, the GEMM out[oc][p] = Wg[oc][k] · col[k][p] with
k = (c, kh, kw) and p = (oh, ow); NCHW output makes the weights the left operand. So the weights,
not the activations, are packed: `conv2d(x, W, b)` with a constant float32 W of shape
(OC, C/groups, KH, KW) becomes `conv2d_packed(x, Wp, b)` with Wp of shape (groups, ceil(ocg/MR), K, MR):
panel j, row k, lane r holds Wg[j*MR + r][k] (zero past ocg), so the kernel's MR x 8 tile reads MR
consecutive floats per k. The node's second output is the kernel's scratch: the arena bytes for one
weight panel splatted to 4 lanes and one packed block of im2col (at most KC rows x as many pixels as
keep the block within BUDGET floats), sized here and placed by the memory plan like any other
value, live only during the conv.

Depthwise convs (one input channel per group) become `dwconv2d(x, W, b)`, for their own kernel
(kernels/wt_dwconv.h; a GEMM would have K = KH*KW and no reuse), whose scratch holds one zero-padded
input plane.
"""

from __future__ import annotations

import numpy as np

from ..ir.graph import Dim, Graph, Node, TensorType, dim

# Must equal WT_CONV_MR / WT_CONV_KC / WT_CONV_BUDGET in kernels/wt_conv.h (tests/compiler/test_conv.py checks).
MR = 4  # output channels per panel
KC = 512  # rows of k per block
BUDGET = 65536  # floats of packed input per block
DW_SLACK = 32  # = WT_DW_SLACK in kernels/wt_dwconv.h


def pack_conv_weights(w: np.ndarray, groups: int) -> np.ndarray:
    """(OC, C/groups, KH, KW) -> (groups, ceil(ocg/MR), K, MR), zero rows past ocg."""
    oc = w.shape[0]
    ocg, k = oc // groups, int(np.prod(w.shape[1:]))
    panels = -(-ocg // MR)
    padded = np.zeros((groups, panels * MR, k), np.float32)
    padded[:, :ocg] = w.reshape(groups, ocg, k)
    return np.ascontiguousarray(padded.reshape(groups, panels, MR, k).transpose(0, 1, 3, 2))


def block_pixels(kc: int, pixels: int) -> int:
    """wt_conv_block_pixels: every pixel (rounded up to 8) if kc rows of them fit BUDGET, else what fits."""
    every = -(-pixels // 8) * 8
    return every if kc * every <= BUDGET else max(64, BUDGET // kc // 8 * 8)


def scratch_floats(k: int, pixels: Dim, flat: bool) -> int:
    """Floats the kernel needs at once: one weight panel's kc rows splatted to 4 lanes, plus kc rows of
    one block of packed input (flat 1x1 convs read x itself and pack only a trailing partial panel)."""
    kc = min(k, KC)
    if flat:
        cols = 8 if not isinstance(pixels, int) or pixels % 8 else 0
    else:
        cols = block_pixels(kc, pixels if isinstance(pixels, int) else 1 << 30)
    return kc * (4 * MR + cols)


def dw_scratch_floats(x: TensorType, kernel: tuple[int, int], attrs: dict) -> Dim:
    """wt_dw_scratch: the zero-padded input plane (+ slack) when the vector path applies, else 0."""
    (kh, kw), (_, sw), (ph, pw) = kernel, attrs["stride"], attrs["padding"]
    if sw > 2 or kh * kw > 64:
        return 0
    return dim((x.shape[2] + 2 * ph) * (x.shape[3] + 2 * pw) + DW_SLACK)


def pack_conv(g: Graph) -> Graph:
    consts, types = dict(g.consts), dict(g.types)
    nodes = []
    for n in g.nodes:
        if n.op != "conv2d" or types[n.inputs[0]].dtype != "f32":
            nodes.append(n)
            continue
        x, w, a = types[n.inputs[0]], n.inputs[1], n.attrs
        oc, cg, kh, kw = types[w].shape
        tmp = f"{n.outputs[0]}_scratch"
        if cg == 1 and a["groups"] == x.shape[1]:  # depthwise: its own kernel, no packing
            scratch = dw_scratch_floats(x, (kh, kw), a)
            types[tmp] = TensorType("f32", (scratch,))
            nodes.append(Node("dwconv2d", n.inputs, (n.outputs[0], tmp), {**a, "scratch": scratch}, n.source))
            continue
        if w not in consts:  # runtime weights: the reference kernel
            nodes.append(n)
            continue
        name = f"{w}_cpacked{a['groups']}"
        if name not in consts:
            consts[name] = pack_conv_weights(consts[w], a["groups"])
            types[name] = TensorType("f32", tuple(consts[name].shape))
        ot = types[n.outputs[0]]
        flat = (kh, kw) == (1, 1) and tuple(a["stride"]) == (1, 1) and tuple(a["padding"]) == (0, 0)
        scratch = scratch_floats(cg * kh * kw, ot.shape[2] * ot.shape[3], flat)
        attrs = {**a, "oc": oc, "kernel": (kh, kw), "scratch": scratch}
        types[tmp] = TensorType("f32", (scratch,))
        nodes.append(
            Node("conv2d_packed", (n.inputs[0], name, *n.inputs[2:]), (n.outputs[0], tmp), attrs, n.source)
        )
    return g.replace(nodes=tuple(nodes), consts=consts, types=types)
