"""Moved to `wasm_torch.deploy.web`; this name is kept so code written for wasm-torch 0.1 still imports."""

from .deploy.web import package_site

__all__ = ["package_site"]
