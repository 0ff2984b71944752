"""Convolution: `aten.convolution` (1-d over a height-1 image, 2-d -> `conv2d`; transposed ->
`conv_transpose2d`, ops/conv_transpose.py) and adaptive max pooling (as max pooling when the output
divides the input)."""

from __future__ import annotations

import torch

from ....errors import UnsupportedOpError
from ..aten import rule
from ..context import Lowering


def lower_transposed(L: Lowering, fx: torch.fx.Node) -> str:
    """aten.convolution with transposed=True: 2-d directly, 1-d over a height-1 image."""
    x, w, b, stride, padding, dilation, _t, out_pad, groups = fx.args
    xv, wv = L.value(x), L.value(w)
    inputs = [xv, wv] + ([L.value(b)] if b is not None else [])
    nd = len(stride)
    if nd == 2:
        attrs = {
            "stride": tuple(stride),
            "padding": tuple(padding),
            "dilation": tuple(dilation),
            "output_padding": tuple(out_pad),
            "groups": groups,
        }
        return L.emit("conv_transpose2d", inputs, attrs)
    if nd != 1:
        raise UnsupportedOpError(f"{nd}-d transposed convolution (1-d and 2-d are supported)")
    xs, ws = L.type_of(xv).shape, L.type_of(wv).shape
    x4 = L.emit("reshape", [xv], {"shape": (xs[0], xs[1], 1, xs[2])})
    w4 = L.emit("reshape", [wv], {"shape": (ws[0], ws[1], 1, ws[2])})
    attrs = {
        "stride": (1, stride[0]),
        "padding": (0, padding[0]),
        "dilation": (1, dilation[0]),
        "output_padding": (0, out_pad[0]),
        "groups": groups,
    }
    y = L.emit("conv_transpose2d", [x4, w4, *inputs[2:]], attrs)
    return L.emit("reshape", [y], {"shape": L.shape_of(fx)})


@rule("adaptive_max_pool2d.default")
def _adaptive_max(L: Lowering, fx: torch.fx.Node) -> list:
    x = L.value(fx.args[0])
    H, W = L.type_of(x).shape[2:]
    oh, ow = L.shape_of(fx)[2:] if not isinstance(fx.meta["val"], (list, tuple)) else fx.meta["val"][0].shape[2:]
    if not all(isinstance(d, int) for d in (H, W, oh, ow)) or H % oh or W % ow:
        raise UnsupportedOpError(
            f"adaptive_max_pool2d from {H}x{W} to {oh}x{ow}: only output sizes that divide the input are supported"
        )
    k = (H // oh, W // ow)
    attrs = {"kernel": k, "stride": k, "padding": (0, 0), "dilation": (1, 1), "ceil_mode": False}
    return [L.emit("max_pool2d", [x], attrs), None]


@rule("convolution.default")
def _conv(L: Lowering, fx: torch.fx.Node) -> str:
    x, w, b, stride, padding, dilation, transposed, _out_pad, groups = fx.args
    if transposed:
        return lower_transposed(L, fx)
    if isinstance(padding, str):
        raise UnsupportedOpError(f"convolution with padding={padding!r}")
    xv, wv = L.value(x), L.value(w)
    inputs = [xv, wv] + ([L.value(b)] if b is not None else [])
    nd = len(stride)
    if nd == 2:
        return L.emit(
            "conv2d",
            inputs,
            {
                "stride": tuple(stride),
                "padding": tuple(padding),
                "dilation": tuple(dilation),
                "groups": groups,
            },
        )
    if nd != 1:
        raise UnsupportedOpError(f"{nd}-d convolution (conv1d and conv2d are supported)")
    # conv1d as conv2d over a height-1 image
    xs, ws = L.type_of(xv).shape, L.type_of(wv).shape
    x4 = L.emit("reshape", [xv], {"shape": (xs[0], xs[1], 1, xs[2])})
    w4 = L.emit("reshape", [wv], {"shape": (ws[0], ws[1], 1, ws[2])})
    y = L.emit(
        "conv2d",
        [x4, w4, *inputs[2:]],
        {
            "stride": (1, stride[0]),
            "padding": (0, padding[0]),
            "dilation": (1, dilation[0]),
            "groups": groups,
        },
    )
    return L.emit("reshape", [y], {"shape": L.shape_of(fx)})
