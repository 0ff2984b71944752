"""Lowering rules by family, registered into the one table of `frontend/aten.py` with its `rule()`.

aten.py holds the original core set; the families here were added for model-zoo coverage:
`resize` (interpolation), `norms` (group / instance / training-mode batch norm, vector norms),
`writes` (slice/select/index/scatter writes, copy, as_strided, flip, repeat, sort),
`elementwise` (fmod, pow with a scalar base, round, trunc, sign, expm1, log2, elu, clamp by tensors),
`conv` (convolution, plain and transposed, adaptive max pooling), `kv_cache` (`torch.ops.wasm_torch.kv_attention`,
the KV-cache attention of text generation).
"""

from . import conv, elementwise, kv_cache, norms, resize, writes

__all__ = ["conv", "elementwise", "kv_cache", "norms", "resize", "writes"]
