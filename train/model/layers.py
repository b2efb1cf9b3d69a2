"""Transformer building blocks of HRM: casted linear/embedding, RoPE, attention, SwiGLU, post-norm blocks.

Weights stay float32; every layer casts them to the activation dtype (`forward_dtype`,
bfloat16 on GPU), so optimizers see full-precision parameters.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

try:  # optional fast path; scaled_dot_product_attention is the default
    from flash_attn import flash_attn_func  # type: ignore[import-not-found]
except ImportError:
    flash_attn_func = None

CosSin = tuple[torch.Tensor, torch.Tensor]


def trunc_normal_init_(tensor: torch.Tensor, std: float = 1.0, bound: float = 2.0) -> torch.Tensor:
    """Truncated normal at +-bound standard deviations whose *actual* std is `std`.

    Truncation shrinks the spread; JAX's LeCun init compensates, and so do we, by sampling
    a wider normal before cutting it.
    """
    with torch.no_grad():
        if std == 0:
            return tensor.zero_()
        normal = torch.distributions.Normal(0.0, 1.0)
        a, b = torch.tensor(-bound), torch.tensor(bound)
        mass = normal.cdf(b) - normal.cdf(a)
        pdf_a, pdf_b = normal.log_prob(a).exp(), normal.log_prob(b).exp()
        var = 1 - (b * pdf_b - a * pdf_a) / mass - ((pdf_b - pdf_a) / mass) ** 2
        wide = std / math.sqrt(float(var))
        return nn.init.trunc_normal_(tensor, mean=0.0, std=wide, a=-bound * wide, b=bound * wide)


def rms_norm(x: torch.Tensor, eps: float) -> torch.Tensor:
    """Parameter-free RMSNorm computed in float32 (bf16 squares lose too much)."""
    dtype = x.dtype
    x = x.float()
    x = x * torch.rsqrt(x.square().mean(-1, keepdim=True) + eps)
    return x.to(dtype)


class CastedLinear(nn.Module):
    """Linear layer with LeCun truncated-normal weights, zero bias, cast to the input dtype."""

    def __init__(self, in_features: int, out_features: int, bias: bool, init_std: float | None = None):
        super().__init__()
        std = 1.0 / math.sqrt(in_features) if init_std is None else init_std
        self.weight = nn.Parameter(trunc_normal_init_(torch.empty(out_features, in_features), std=std))
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = self.bias.to(x.dtype) if self.bias is not None else None
        return F.linear(x, self.weight.to(x.dtype), bias)


class CastedEmbedding(nn.Module):
    """Embedding table kept in float32 and looked up in `cast_to`."""

    def __init__(self, num_embeddings: int, dim: int, init_std: float, cast_to: torch.dtype):
        super().__init__()
        self.cast_to = cast_to
        self.embedding_weight = nn.Parameter(trunc_normal_init_(torch.empty(num_embeddings, dim), std=init_std))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return F.embedding(ids, self.embedding_weight.to(self.cast_to))


class RotaryEmbedding(nn.Module):
    """Precomputed cos/sin tables for a fixed sequence length (shapes stay static)."""

    def __init__(self, head_dim: int, max_positions: int, base: float):
        super().__init__()
        inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
        freqs = torch.outer(torch.arange(max_positions, dtype=torch.float32), inv_freq)
        # Halves layout (x1 | x2) rather than interleaved pairs: same rotation, cheaper slicing.
        angles = torch.cat((freqs, freqs), dim=-1)
        self.register_buffer("cos", angles.cos(), persistent=False)
        self.register_buffer("sin", angles.sin(), persistent=False)

    def forward(self) -> CosSin:
        return self.cos, self.sin


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def apply_rope(q: torch.Tensor, k: torch.Tensor, cos_sin: CosSin) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotate q, k of shape (B, S, heads, head_dim) in float32, return them in their dtype."""
    cos, sin = (t.unsqueeze(-2) for t in cos_sin)
    dtype = q.dtype
    q32, k32 = q.to(cos.dtype), k.to(cos.dtype)
    q_out = q32 * cos + _rotate_half(q32) * sin
    k_out = k32 * cos + _rotate_half(k32) * sin
    return q_out.to(dtype), k_out.to(dtype)


class Attention(nn.Module):
    """Non-causal multi-head self-attention (every cell of the puzzle sees every other)."""

    def __init__(self, hidden_size: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = hidden_size // num_heads
        self.qkv_proj = CastedLinear(hidden_size, 3 * hidden_size, bias=False)
        self.o_proj = CastedLinear(hidden_size, hidden_size, bias=False)

    def forward(self, x: torch.Tensor, cos_sin: CosSin | None) -> torch.Tensor:
        batch, seq, hidden = x.shape
        qkv = self.qkv_proj(x).view(batch, seq, 3, self.num_heads, self.head_dim)
        q, k, v = qkv.unbind(dim=2)
        if cos_sin is not None:
            q, k = apply_rope(q, k, cos_sin)
        if flash_attn_func is not None and x.is_cuda and x.dtype in (torch.float16, torch.bfloat16):
            out = flash_attn_func(q, k, v, causal=False)
            out = out[0] if isinstance(out, tuple) else out
        else:
            # SDPA wants (B, heads, S, head_dim); it picks flash/mem-efficient kernels on GPU.
            out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                                 is_causal=False).transpose(1, 2)
        return self.o_proj(out.reshape(batch, seq, hidden))


def _round_up(value: int, multiple: int) -> int:
    return -(value // -multiple) * multiple


class SwiGLU(nn.Module):
    """SwiGLU MLP; the inner width is 2/3 * expansion * hidden rounded up to `multiple_of`
    (256 in the reference: tensor-core friendly, but 4x the nominal width of a 64-wide CPU model)."""

    def __init__(self, hidden_size: int, expansion: float, multiple_of: int):
        super().__init__()
        inner = _round_up(round(expansion * hidden_size * 2 / 3), multiple_of)
        self.gate_up_proj = CastedLinear(hidden_size, 2 * inner, bias=False)
        self.down_proj = CastedLinear(inner, hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up_proj(x).chunk(2, dim=-1)
        return self.down_proj(F.silu(gate) * up)


class Block(nn.Module):
    """Post-norm transformer block: x = norm(x + attn(x)); x = norm(x + mlp(x))."""

    def __init__(self, hidden_size: int, num_heads: int, expansion: float, eps: float, mlp_multiple_of: int):
        super().__init__()
        self.self_attn = Attention(hidden_size, num_heads)
        self.mlp = SwiGLU(hidden_size, expansion, mlp_multiple_of)
        self.eps = eps

    def forward(self, x: torch.Tensor, cos_sin: CosSin | None) -> torch.Tensor:
        x = rms_norm(x + self.self_attn(x, cos_sin), self.eps)
        return rms_norm(x + self.mlp(x), self.eps)


class ReasoningModule(nn.Module):
    """One recurrent level (H or L): add the injected input to the state, then run the blocks."""

    def __init__(self, num_layers: int, hidden_size: int, num_heads: int, expansion: float, eps: float,
                 mlp_multiple_of: int):
        super().__init__()
        self.layers = nn.ModuleList(Block(hidden_size, num_heads, expansion, eps, mlp_multiple_of)
                                    for _ in range(num_layers))

    def forward(self, state: torch.Tensor, injection: torch.Tensor, cos_sin: CosSin | None) -> torch.Tensor:
        x = state + injection
        for layer in self.layers:
            x = layer(x, cos_sin)
        return x
