"""A Hugging Face causal LM as one traceable generation step: (input_ids, past, caches) -> (logits, caches').

The model's own code runs unchanged. Transformers calls every attention layer's softmax(QKᵀ)V
through its attention interface (`config._attn_implementation`); we register one more implementation,
`wasm_torch_kv`, which hands q, k, v to `torch.ops.wasm_torch.kv_attention` together with that
layer's cache and the number of tokens already in it (`past`). Everything else — embeddings, RoPE
from `position_ids = past + arange(T)`, RMSNorm / LayerNorm, MLPs, the LM head on the last
position only (`logits_to_keep=1`) — is the model's forward. No attention mask is built: mask
creation returns None for an implementation it does not know (what vLLM's transformers backend
relies on too), and the kernel masks causally by position.

    with generation_step(model, max_context=256) as step:   # restores the model's attention setting
        logits, *caches = step(input_ids, past, *step.empty_caches())

Works for models that route attention through the interface (GPT-2, Llama, Qwen2, Mistral, Phi-3,
...); one that does not, or that asks for a feature the kernel lacks (sliding windows inside the
context, soft-capping, attention sinks), is refused by name.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..compiler.frontend.rules.kv_cache import kv_attention  # noqa: F401  (registers torch.ops.wasm_torch)
from ..compiler.ops.kv_attention import CACHE_ALIGN
from ..errors import ExportError

ATTENTION = "wasm_torch_kv"
# attention-function keyword arguments the kernel implements (or that do not change the result)
_NEUTRAL = {"dropout", "scaling", "position_ids", "is_causal", "output_attentions", "use_cache", "cache_position",
            "wasm_torch_kv", "attention_mask", "layer_idx"}  # fmt: skip


@dataclass(frozen=True)
class LayerShape:
    """One attention layer's heads and head dims, as the probe saw them."""

    heads: int
    kv_heads: int
    head_dim: int
    value_dim: int


def cache_stride(max_context: int) -> int:
    return -(-max_context // CACHE_ALIGN) * CACHE_ALIGN


class _Step:
    """The per-call state the attention function reads: past, the caches, what it wrote."""

    def __init__(self, past: torch.Tensor, caches: tuple[torch.Tensor, ...] | None, max_context: int):
        self.past, self.caches, self.max_context = past, caches, max_context
        self.new: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self.shapes: dict[int, LayerShape] = {}

    def attend(self, module: nn.Module, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scaling: Any) -> torch.Tensor:
        layer = getattr(module, "layer_idx", None)
        if not isinstance(layer, int) or layer in self.new:
            raise ExportError(
                f"{type(module).__name__} has no distinct integer layer_idx: wasm-torch needs it to give each "
                "attention layer its own KV cache"
            )
        B, Hq, D = q.shape[0], q.shape[1], q.shape[3]
        Hkv, Dv = k.shape[1], v.shape[3]
        self.shapes[layer] = LayerShape(Hq, Hkv, D, Dv)
        if self.caches is None:  # the probe: caches of the right shape, empty
            CS = cache_stride(self.max_context)
            kc, vc = q.new_zeros((B, Hkv, D, CS)), q.new_zeros((B, Hkv, CS, Dv))
        else:
            if 2 * layer + 1 >= len(self.caches):
                raise ExportError(f"attention layer {layer} has no cache (the probe saw {len(self.caches) // 2} layers)")
            kc, vc = self.caches[2 * layer], self.caches[2 * layer + 1]
        scale = float(D**-0.5 if scaling is None else scaling)
        out, kc, vc = torch.ops.wasm_torch.kv_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), self.past, kc, vc, scale, self.max_context
        )
        self.new[layer] = (kc, vc)
        return out  # [B, T, Hq, Dv]: the layout transformers' attention functions return


def _attention(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, attention_mask: Any,
               **kwargs: Any) -> tuple[torch.Tensor, None]:  # fmt: skip
    """The `wasm_torch_kv` attention implementation (transformers' AttentionInterface signature)."""
    step = kwargs.get("wasm_torch_kv")
    if not isinstance(step, _Step):
        raise ExportError("the wasm_torch_kv attention implementation runs only inside wasm_torch.generate's trace")
    extra = sorted(k for k, v in kwargs.items() if k not in _NEUTRAL and v is not None and v is not False)
    if extra or attention_mask is not None:
        what = extra or ["an attention mask"]
        raise ExportError(
            f"{type(module).__name__} asks its attention for {what}, which wasm-torch's KV-cache kernel does not "
            "implement (it computes causal softmax attention over the whole context)"
        )
    return step.attend(module, query, key, value, kwargs.get("scaling")), None


def _register() -> None:
    from transformers import AttentionInterface

    AttentionInterface.register(ATTENTION, _attention)


class GenerationStep(nn.Module):
    """forward(input_ids [1, T] int64, past [1] int64, k_0, v_0, k_1, v_1, ...) -> (logits [1, V], k_0', v_0', ...)."""

    def __init__(self, lm: nn.Module, max_context: int, layers: list[LayerShape] | None = None):
        super().__init__()
        self.lm, self.max_context = lm, max_context
        self.layers = layers or []

    def forward(self, input_ids: torch.Tensor, past: torch.Tensor, *caches: torch.Tensor) -> tuple[torch.Tensor, ...]:
        T = input_ids.shape[1]
        positions = (past + torch.arange(T, device=input_ids.device)).unsqueeze(0)
        step = _Step(past, caches if self.layers else None, self.max_context)
        out = self.lm(input_ids=input_ids, position_ids=positions, use_cache=False, logits_to_keep=1, wasm_torch_kv=step)
        logits = out.logits[:, -1, :]
        if self.layers and sorted(step.new) != list(range(len(self.layers))):
            raise ExportError(
                f"{type(self.lm).__name__} ran attention in layers {sorted(step.new)}, not 0..{len(self.layers) - 1}"
            )
        self.seen = step.shapes
        return (logits, *(c for layer in sorted(step.new) for c in step.new[layer]))

    def empty_caches(self) -> list[torch.Tensor]:
        CS = cache_stride(self.max_context)
        out = []
        for s in self.layers:
            out += [torch.zeros(1, s.kv_heads, s.head_dim, CS), torch.zeros(1, s.kv_heads, CS, s.value_dim)]
        return out


def _check_model(model: nn.Module, max_context: int) -> None:
    config = getattr(model, "config", None)
    if config is None or not hasattr(model, "set_attn_implementation"):
        raise ExportError(
            f"{type(model).__name__} is not a Hugging Face causal LM (no config / set_attn_implementation); "
            "compile_generator takes e.g. GPT2LMHeadModel, LlamaForCausalLM, Qwen2ForCausalLM"
        )
    can = getattr(model, "_can_set_attn_implementation", None)
    if callable(can) and not can():
        raise ExportError(
            f"{type(model).__name__} does not route attention through transformers' AttentionInterface, "
            "so wasm-torch cannot give it a KV cache"
        )
    limit = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
    if isinstance(limit, int) and max_context > limit:
        raise ExportError(f"max_context={max_context} exceeds the model's {limit} positions (max_position_embeddings)")
    window = getattr(config, "sliding_window", None)
    if isinstance(window, int) and max_context > window and getattr(config, "use_sliding_window", True):
        raise ExportError(
            f"max_context={max_context} exceeds the model's sliding window of {window} tokens, which the KV-cache "
            f"kernel does not implement: compile with max_context <= {window}"
        )


@contextmanager
def generation_step(model: nn.Module, max_context: int) -> Iterator[GenerationStep]:
    """The model wrapped as a `GenerationStep` whose layer shapes are probed; the model's attention
    implementation and train/eval mode are restored on exit."""
    if not isinstance(max_context, int) or isinstance(max_context, bool) or not 2 <= max_context <= 1 << 20:
        raise ExportError(f"max_context={max_context!r}: expected an integer in [2, {1 << 20}]")
    _check_model(model, max_context)
    _register()
    before = model.config._attn_implementation
    modes = [(m, m.training) for m in model.modules()]
    try:
        try:
            model.set_attn_implementation(ATTENTION)
        except (ValueError, KeyError, TypeError) as e:
            raise ExportError(f"{type(model).__name__} refused the {ATTENTION} attention implementation: {e}") from e
        if model.config._attn_implementation != ATTENTION:
            raise ExportError(f"{type(model).__name__} did not take the {ATTENTION} attention implementation")
        model.eval()
        step = GenerationStep(model, max_context)
        with torch.no_grad():
            step(torch.zeros(1, 2, dtype=torch.int64), torch.zeros(1, dtype=torch.int64))
        shapes = step.seen
        if not shapes or sorted(shapes) != list(range(len(shapes))):
            raise ExportError(f"{type(model).__name__}: the probe saw attention layers {sorted(shapes)}")
        step.layers = [shapes[i] for i in range(len(shapes))]
        yield step
    finally:
        if model.config._attn_implementation != before:
            model.set_attn_implementation(before)
        for m, training in modes:
            m.training = training
