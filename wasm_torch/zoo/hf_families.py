"""Hugging Face model families built from configs with random weights (no hub access).

Each family has two configs: `small` (a few layers of width 64: fast enough for `make test`) and
`real` (the widths, heads, head dims, key/value heads and MLP sizes of a public checkpoint of the
family, named in `checkpoint`, with the layer count cut to 2 and the vocabulary to 8192: every
layer is the same code, and the cut keeps the coverage report's run time and wasm32 memory in
bounds). Every model is wrapped to take plain tensors and return one tensor.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

Inputs = Callable[[torch.Generator], tuple[torch.Tensor, ...]]


@dataclass(frozen=True)
class HFFamily:
    name: str
    checkpoint: str  # the public checkpoint whose shapes `real` copies
    make: Callable[[str], nn.Module]  # size ("small" | "real") -> model
    inputs: Callable[[str], Inputs]  # size -> input maker


class TextHidden(nn.Module):
    """(input_ids, attention_mask) -> last_hidden_state."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


class DecoderHidden(nn.Module):
    """A decoder-only LM without its KV cache: input_ids -> last_hidden_state (causal attention)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, use_cache=False).last_hidden_state


class PixelHidden(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=pixel_values).last_hidden_state


class CLIPBoth(nn.Module):
    """CLIP text + vision towers and projections: (input_ids, attention_mask, pixels) -> logits."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, pixel_values: torch.Tensor) -> torch.Tensor:
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, pixel_values=pixel_values)
        return out.logits_per_image


class WhisperEncoderHidden(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_features: torch.Tensor) -> torch.Tensor:
        return self.model(input_features=input_features).last_hidden_state


class AudioHidden(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_values: torch.Tensor) -> torch.Tensor:
        return self.model(input_values=input_values).last_hidden_state


def _tokens(vocab: int, t: int, mask: bool = True) -> Inputs:
    def make(g: torch.Generator) -> tuple[torch.Tensor, ...]:
        ids = torch.randint(3, vocab, (2, t), generator=g)
        if not mask:
            return (ids,)
        m = torch.ones(2, t, dtype=torch.long)
        m[1, t - 3 :] = 0  # the second sequence is padded
        return ids, m

    return make


def _pixels(size: int) -> Inputs:
    return lambda g: (torch.randn(1, 3, size, size, generator=g),)


VOCAB = {"small": 500, "real": 8192}
SEQ = {"small": 12, "real": 128}


def _pick(size: str, small: dict[str, Any], real: dict[str, Any]) -> dict[str, Any]:
    return small if size == "small" else real


def _enc(cls_cfg: str, cls_model: str, small: dict, real: dict, **model_kw: Any) -> Callable[[str], nn.Module]:
    def make(size: str) -> nn.Module:
        import transformers

        cfg = getattr(transformers, cls_cfg)(**_pick(size, small, real), attn_implementation="eager")
        return TextHidden(getattr(transformers, cls_model)(cfg, **model_kw))

    return make


def _dec(cls_cfg: str, cls_model: str, small: dict, real: dict) -> Callable[[str], nn.Module]:
    def make(size: str) -> nn.Module:
        import transformers

        cfg = getattr(transformers, cls_cfg)(**_pick(size, small, real), attn_implementation="eager")
        return DecoderHidden(getattr(transformers, cls_model)(cfg))

    return make


_TOK = dict(pad_token_id=0, bos_token_id=1, eos_token_id=2)  # special ids inside every vocabulary
_BERT_SMALL = dict(vocab_size=500, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128)
_BERT_REAL = dict(vocab_size=8192, hidden_size=768, num_hidden_layers=2, num_attention_heads=12, intermediate_size=3072)
# decoders: hidden, heads, kv heads, MLP of the named checkpoint (RoPE, RMSNorm, SiLU-gated MLP, GQA)
_DEC_SMALL = dict(
    **_TOK, vocab_size=500, hidden_size=64, intermediate_size=160, num_hidden_layers=2, num_attention_heads=4,
    num_key_value_heads=2, max_position_embeddings=256,
)


def _dec_real(hidden: int, inter: int, heads: int, kv: int, **kw: Any) -> dict[str, Any]:
    return dict(
        **_TOK, vocab_size=8192, hidden_size=hidden, intermediate_size=inter, num_hidden_layers=2,
        num_attention_heads=heads, num_key_value_heads=kv, max_position_embeddings=2048, **kw,
    )


def _vision(cls_cfg: str, cls_model: str, small: dict, real: dict, **model_kw: Any) -> Callable[[str], nn.Module]:
    def make(size: str) -> nn.Module:
        import transformers

        cfg = getattr(transformers, cls_cfg)(**_pick(size, small, real), attn_implementation="eager")
        return PixelHidden(getattr(transformers, cls_model)(cfg, **model_kw))

    return make


def _t5(size: str) -> nn.Module:
    from transformers import T5Config, T5EncoderModel

    small = dict(vocab_size=500, d_model=64, d_kv=16, d_ff=128, num_layers=2, num_heads=4)
    real = dict(vocab_size=8192, d_model=512, d_kv=64, d_ff=2048, num_layers=2, num_heads=8)  # t5-small
    return TextHidden(T5EncoderModel(T5Config(**_pick(size, small, real), attn_implementation="eager")))


def _clip(size: str) -> nn.Module:
    from transformers import CLIPConfig, CLIPModel

    if size == "small":
        text = dict(**_TOK, vocab_size=500, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4)
        vision = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, image_size=32, patch_size=8)
        proj = 32
    else:  # openai/clip-vit-base-patch32, 2 layers per tower
        text = dict(**_TOK, vocab_size=8192, hidden_size=512, intermediate_size=2048, num_hidden_layers=2, num_attention_heads=8)
        vision = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=2, num_attention_heads=12, image_size=224, patch_size=32)
        proj = 512
    cfg = CLIPConfig(text_config=text, vision_config=vision, projection_dim=proj, attn_implementation="eager")
    return CLIPBoth(CLIPModel(cfg))


def _clip_inputs(size: str) -> Inputs:
    def make(g: torch.Generator) -> tuple[torch.Tensor, ...]:
        t = 16 if size == "small" else 77
        ids = torch.randint(3, VOCAB[size], (2, t), generator=g)
        mask = torch.ones(2, t, dtype=torch.long)
        mask[1, t - 4 :] = 0
        px = torch.randn(1, 3, 32 if size == "small" else 224, 32 if size == "small" else 224, generator=g)
        return ids, mask, px

    return make


def _whisper(size: str) -> nn.Module:
    from transformers import WhisperConfig
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    small = dict(num_mel_bins=16, d_model=64, encoder_layers=2, encoder_attention_heads=4, encoder_ffn_dim=128,
                 decoder_layers=1, decoder_attention_heads=4, decoder_ffn_dim=128, max_source_positions=32, vocab_size=500,
                 pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=1)
    real = dict(num_mel_bins=80, d_model=384, encoder_layers=2, encoder_attention_heads=6, encoder_ffn_dim=1536,
                decoder_layers=1, decoder_attention_heads=6, decoder_ffn_dim=1536, max_source_positions=1500, vocab_size=8192,
                pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=1)
    cfg = WhisperConfig(**_pick(size, small, real), attn_implementation="eager")  # real: whisper-tiny
    return WhisperEncoderHidden(WhisperEncoder(cfg))


def _whisper_inputs(size: str) -> Inputs:
    mel, frames = (16, 64) if size == "small" else (80, 3000)
    return lambda g: (torch.randn(1, mel, frames, generator=g),)


def _wav2vec2(size: str) -> nn.Module:
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    small = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
                 conv_dim=(32, 32, 32), conv_stride=(5, 2, 2), conv_kernel=(10, 3, 3),
                 num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4)
    real = dict(hidden_size=768, num_hidden_layers=2, num_attention_heads=12, intermediate_size=3072)  # wav2vec2-base
    cfg = Wav2Vec2Config(**_pick(size, small, real), apply_spec_augment=False, attn_implementation="eager")
    return AudioHidden(Wav2Vec2Model(cfg))


def _wav2vec2_inputs(size: str) -> Inputs:
    n = 1600 if size == "small" else 16000  # one second of 16 kHz audio for the real config
    return lambda g: (torch.randn(1, n, generator=g),)


FAMILIES: dict[str, HFFamily] = {
    f.name: f
    for f in [
        HFFamily("bert", "bert-base-uncased", _enc("BertConfig", "BertModel", _BERT_SMALL, _BERT_REAL, add_pooling_layer=False),
                 lambda s: _tokens(VOCAB[s], SEQ[s])),
        HFFamily("roberta", "roberta-base",
                 _enc("RobertaConfig", "RobertaModel", {**_BERT_SMALL, "pad_token_id": 1},
                      {**_BERT_REAL, "pad_token_id": 1, "max_position_embeddings": 514}, add_pooling_layer=False),
                 lambda s: _tokens(VOCAB[s], SEQ[s])),
        HFFamily("distilbert", "distilbert-base-uncased",
                 _enc("DistilBertConfig", "DistilBertModel",
                      dict(vocab_size=500, dim=64, n_layers=2, n_heads=4, hidden_dim=128),
                      dict(vocab_size=8192, dim=768, n_layers=2, n_heads=12, hidden_dim=3072)),
                 lambda s: _tokens(VOCAB[s], SEQ[s])),
        HFFamily("albert", "albert-base-v2",
                 _enc("AlbertConfig", "AlbertModel",
                      dict(vocab_size=500, embedding_size=32, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128),
                      dict(vocab_size=8192, embedding_size=128, hidden_size=768, num_hidden_layers=2, num_attention_heads=12, intermediate_size=3072),
                      add_pooling_layer=False),
                 lambda s: _tokens(VOCAB[s], SEQ[s])),
        HFFamily("t5_encoder", "t5-small", _t5, lambda s: _tokens(VOCAB[s], SEQ[s])),
        HFFamily("gpt2", "gpt2",
                 _dec("GPT2Config", "GPT2Model",
                      dict(**_TOK, vocab_size=500, n_embd=64, n_layer=2, n_head=4, n_positions=128),
                      dict(**_TOK, vocab_size=8192, n_embd=768, n_layer=2, n_head=12, n_positions=1024)),
                 lambda s: _tokens(VOCAB[s], SEQ[s], mask=False)),
        HFFamily("llama", "TinyLlama-1.1B", _dec("LlamaConfig", "LlamaModel", _DEC_SMALL, _dec_real(2048, 5632, 32, 4)),
                 lambda s: _tokens(VOCAB[s], SEQ[s], mask=False)),
        HFFamily("qwen2", "Qwen2-0.5B", _dec("Qwen2Config", "Qwen2Model", _DEC_SMALL, _dec_real(896, 4864, 14, 2)),
                 lambda s: _tokens(VOCAB[s], SEQ[s], mask=False)),
        HFFamily("mistral", "Mistral-7B (widths / 4)",
                 _dec("MistralConfig", "MistralModel", _DEC_SMALL, _dec_real(1024, 3584, 8, 2, head_dim=128)),
                 lambda s: _tokens(VOCAB[s], SEQ[s], mask=False)),
        HFFamily("phi3", "Phi-3-mini (widths / 3)",
                 _dec("Phi3Config", "Phi3Model", {**_DEC_SMALL, "num_key_value_heads": 4}, _dec_real(1024, 2730, 32, 32)),
                 lambda s: _tokens(VOCAB[s], SEQ[s], mask=False)),
        HFFamily("vit", "google/vit-base-patch16-224",
                 _vision("ViTConfig", "ViTModel",
                         dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128, image_size=32, patch_size=8),
                         dict(hidden_size=768, num_hidden_layers=2, num_attention_heads=12, intermediate_size=3072, image_size=224, patch_size=16),
                         add_pooling_layer=False),
                 lambda s: _pixels(32 if s == "small" else 224)),
        HFFamily("deit", "facebook/deit-small-patch16-224",
                 _vision("DeiTConfig", "DeiTModel",
                         dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128, image_size=32, patch_size=8),
                         dict(hidden_size=384, num_hidden_layers=2, num_attention_heads=6, intermediate_size=1536, image_size=224, patch_size=16),
                         add_pooling_layer=False),
                 lambda s: _pixels(32 if s == "small" else 224)),
        HFFamily("swin", "microsoft/swin-tiny-patch4-window7-224",
                 _vision("SwinConfig", "SwinModel",
                         dict(image_size=32, patch_size=2, embed_dim=16, depths=[2, 2], num_heads=[2, 4], window_size=4),
                         dict(image_size=224, patch_size=4, embed_dim=96, depths=[2, 2, 2, 2], num_heads=[3, 6, 12, 24], window_size=7),
                         add_pooling_layer=False),
                 lambda s: _pixels(32 if s == "small" else 224)),
        HFFamily("clip", "openai/clip-vit-base-patch32", _clip, _clip_inputs),
        HFFamily("whisper_encoder", "openai/whisper-tiny", _whisper, _whisper_inputs),
        HFFamily("wav2vec2", "facebook/wav2vec2-base", _wav2vec2, _wav2vec2_inputs),
    ]
}
