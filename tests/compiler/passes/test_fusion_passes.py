"""fuse_elementwise and fuse_attention: before and after."""

from __future__ import annotations

from wasm_torch.compiler.ir.op import Step
from wasm_torch.compiler.passes.fuse_attention import fuse_attention
from wasm_torch.compiler.passes.fuse_elementwise import fuse_elementwise

CHAIN = """
input x: f32[2, 3]
const two: f32[] = 2.0
const one: f32[] = 1.0
a: f32[2, 3] = mul(x, two)
b: f32[2, 3] = add(a, one)
c: f32[2, 3] = tanh(b)
y: f32[2, 3] = mul(c, x)
return y{extra}
"""


def test_fuse_elementwise_makes_one_node_with_a_program(check_pass):
    h = check_pass(
        fuse_elementwise,
        CHAIN.format(extra=""),
        """
        input x: f32[2, 3]
        const two: f32[] = 2.0
        const one: f32[] = 1.0
        y: f32[2, 3] = fused_elementwise(x, two, one, program=(Step('mul', (0, 1)), Step('add', (3, 2)), Step('tanh', (4,)), Step('mul', (5, 0))))
        return y
        """,
    )
    assert h.nodes[0].attrs["program"][2] == Step("tanh", (4,))


def test_fuse_elementwise_materialises_a_graph_output(check_pass):
    h = check_pass(fuse_elementwise, CHAIN.format(extra=", b"))
    assert [n.op for n in h.nodes] == ["fused_elementwise", "fused_elementwise"]
    assert h.nodes[0].outputs == ("b",)  # computed once, read by the output and the second group


SDPA = """
input q: f32[1, 1, 2, 4]
input k: f32[1, 1, 3, 4]
input v: f32[1, 1, 3, 4]
const cq: f32[] = 0.7071067690849304
const ck: f32[] = 0.7071067690849304
qs: f32[1, 1, 2, 4] = mul(q, cq)
kt: f32[1, 1, 4, 3] = permute(k, perm=(0, 1, 3, 2))
ks: f32[1, 1, 4, 3] = mul(kt, ck)
q3: f32[1, 2, 4] = reshape(qs, shape=(1, 2, 4))
k3: f32[1, 4, 3] = reshape(ks, shape=(1, 4, 3))
s3: f32[1, 2, 3] = matmul(q3, k3)
s: f32[1, 1, 2, 3] = reshape(s3, shape=(1, 1, 2, 3))
p: f32[1, 1, 2, 3] = softmax(s, axis=3)
p3: f32[1, 2, 3] = reshape(p, shape=(1, 2, 3))
v3: f32[1, 3, 4] = reshape(v, shape=(1, 3, 4))
o3: f32[1, 2, 4] = matmul(p3, v3)
y: f32[1, 1, 2, 4] = reshape(o3, shape=(1, 1, 2, 4))
return y{extra}
"""


def test_fuse_attention_replaces_scores_softmax_and_matmuls(check_pass):
    h = check_pass(fuse_attention, SDPA.format(extra=""))
    att = [n for n in h.nodes if n.op == "attention"]
    assert len(att) == 1 and att[0].inputs == ("q", "k", "v") and att[0].outputs == ("y",)
    assert abs(att[0].attrs["scale"] - 0.5) < 1e-6 and att[0].attrs["causal"] is False
    assert not any(n.op in ("softmax", "matmul") for n in h.nodes)


def test_fuse_attention_leaves_a_model_that_returns_its_weights(check_pass):
    h = check_pass(fuse_attention, SDPA.format(extra=", p"))
    assert not any(n.op == "attention" for n in h.nodes)
    assert [n.op for n in h.nodes].count("softmax") == 1
