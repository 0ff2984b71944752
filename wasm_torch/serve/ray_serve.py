"""Moved to `wasm_torch.serve.ray.app`; this name is kept so code written for wasm-torch 0.1 still imports."""

from .ray.app import build_ray_app, run

__all__ = ["build_ray_app", "run"]
