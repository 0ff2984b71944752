"""torchvision's model definitions without its C extension.

PyPI's torchvision 0.28.0 (the release built for our pinned torch 2.13.0) ships `_C.so` linked
against CUDA libraries the CPU build of torch lacks; `import torchvision` then fails while
registering its detection ops, and with torchvision in site-packages transformers breaks too (it
imports torchvision whenever it is installed). The model definitions themselves are plain Python.

So `scripts/setup_torchvision.sh` installs the pinned wheel with `--no-deps` into its own folder
(`.venv/vendor/torchvision-0.28.0`, off sys.path), and `models()` imports `torchvision.models` from
there under a stand-in parent package: `torchvision/__init__.py` (which loads `_C` and registers
the C ops) never runs. `torchvision.extension` still tries to load `_C`, fails quietly and reports
"no ops", which the classification and segmentation models never need (detection heads' NMS and
RoIAlign would). The stand-in is removed from `sys.modules` again, so nothing else in the process
(transformers) sees a torchvision.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import sys
import types
from pathlib import Path

from ..errors import WasmTorchError

TORCHVISION_VERSION = "0.28.0"
SETUP = "bash scripts/setup_torchvision.sh"


class TorchvisionMissing(WasmTorchError):
    """The vendored torchvision model definitions are not installed."""


def vendor_dir() -> Path:
    return Path(sys.prefix) / "vendor" / f"torchvision-{TORCHVISION_VERSION}"


_CACHE: dict[str, types.ModuleType] = {}


def models() -> types.ModuleType:
    """`torchvision.models` of the pinned release, imported without the C extension."""
    if "models" in _CACHE:
        return _CACHE["models"]
    pkg_dir = vendor_dir() / "torchvision"
    if not (pkg_dir / "models" / "__init__.py").is_file():
        raise TorchvisionMissing(
            f"torchvision {TORCHVISION_VERSION} model definitions not found in {vendor_dir()}; "
            f"install them with `{SETUP}` (make test and make bench do)"
        )
    if "torchvision" in sys.modules and not getattr(sys.modules["torchvision"], "_wt_stand_in", False):
        mod = importlib.import_module("torchvision.models")  # a working torchvision is already imported
        _CACHE["models"] = mod
        return mod
    saved = {k: v for k, v in sys.modules.items() if k == "torchvision" or k.startswith("torchvision.")}
    spec = importlib.machinery.ModuleSpec("torchvision", None, is_package=True)
    spec.submodule_search_locations = [str(pkg_dir)]
    parent = importlib.util.module_from_spec(spec)
    parent.__path__ = [str(pkg_dir)]
    parent.__version__ = TORCHVISION_VERSION
    parent._wt_stand_in = True
    sys.modules["torchvision"] = parent
    try:
        mod = importlib.import_module("torchvision.models")
    finally:  # leave sys.modules as it was: the classes keep their modules alive
        for k in [k for k in sys.modules if k == "torchvision" or k.startswith("torchvision.")]:
            del sys.modules[k]
        sys.modules.update(saved)
    _CACHE["models"] = mod
    return mod


def classification_names() -> list[str]:
    """Every classification model builder torchvision registers (e.g. resnet18, vit_b_16)."""
    m = models()
    return sorted(m.list_models(module=m))


def segmentation_names() -> list[str]:
    m = models()
    return sorted(m.list_models(module=m.segmentation))
