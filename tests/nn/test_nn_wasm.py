"""Every exported mechanism case compiled to wasm through wasm_torch.compile, checked against its torch forward."""

import pytest

import wasm_torch
from wasm_torch.compiler.check import compare, reference_outputs
from wasm_torch.zoo.mechanisms import mechanism_cases

COMPILED = [
    "btsp_recall",
    "differential",
    "eprop_inference",
    "flash_causal",
    "gat",
    "gcn",
    "hdc_attention",
    "hopfield",
    "hyperbolic",
    "hyperbolic_frechet",
    "kuramoto",
    "kwta",
    "local_global",
    "mamba",
    "moe",
    "multihead",
    "performer_causal",
    "predictive",
    "sage_max",
    "sdpa",
    "sparse_fixed",
    "workspace",
]


@pytest.mark.toolchain
@pytest.mark.parametrize("name", COMPILED)
def test_mechanism_compiles_to_wasm_and_matches_torch(name, tmp_path):
    model, inputs = mechanism_cases()[name]
    model.eval()
    art = wasm_torch.compile(model, inputs, tmp_path / name)  # validates on the example inputs
    got = wasm_torch.load(art)(*[x.numpy() for x in inputs])
    got = list(got) if isinstance(got, tuple) else [got]
    assert compare(got, reference_outputs(model, inputs), 1e-4, 1e-3)["ok"]
