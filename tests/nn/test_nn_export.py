"""Every inference forward pass traces with torch.export (no data-dependent Python control flow) and the
exported program reproduces eager outputs — the precondition for compiling the mechanisms to wasm later."""

import pytest
import torch

from wasm_torch.zoo.mechanisms import mechanism_cases


def _cases():
    return mechanism_cases()


@pytest.mark.parametrize("name", sorted(_cases()))
def test_forward_exports_and_matches_eager(name):
    torch.manual_seed(1)
    module, args = _cases()[name]
    module.eval()
    program = torch.export.export(module, args)
    eager = module(*args)
    exported = program.module()(*args)
    if isinstance(eager, tuple):
        eager, exported = eager[0], exported[0]
    torch.testing.assert_close(exported, eager)
