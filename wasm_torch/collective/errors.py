"""The collective dynamics' errors, in the one exception tree (wasm_torch.errors).

    CollectiveError          bad parameters or inputs to a dynamic (a clear message naming the value)
    └── PrivacyBudgetExceeded  a release would spend more differential-privacy budget than is left

They subclass ValueError too, so callers that validate with `except ValueError` keep working.
"""

from __future__ import annotations

from ..errors import WasmTorchError


class CollectiveError(WasmTorchError, ValueError):
    """A parameter or input of a collective dynamic is out of its valid range."""


class PrivacyBudgetExceeded(CollectiveError):
    """The privacy accountant refused a release: it would exceed the budget of some record."""
