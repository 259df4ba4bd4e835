"""Multi-head self-attention with a fused ``query_key_value`` projection.

The attention kernel is looked up in transformers' registry by ``config._attn_implementation`` ("eager", "sdpa", or
any function registered with ``AttentionInterface``), with ``eager_attention_forward`` below as the fallback. So one
module serves every backend, and users switch with ``from_pretrained(..., attn_implementation=...)`` or
``model.set_attn_implementation(...)``.

Masks reaching the kernels are *additive* float tensors broadcastable to ``(B, heads, Tq, Tk)`` (0 = attend, the
dtype's minimum = masked) or ``None`` (attend everywhere). ``attention_bias`` builds them from the 0/1 masks users pass.
"""

from collections.abc import Callable

import torch
from torch import nn
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

from .checks import known_all_true
from .linear import Linear


def eager_attention_forward(
    module: nn.Module,
    query: torch.Tensor,  # (B, heads, Tq, head_dim)
    key: torch.Tensor,  # (B, heads, Tk, head_dim)
    value: torch.Tensor,  # (B, heads, Tk, head_dim)
    attention_mask: torch.Tensor | None,  # additive, broadcastable to (B, heads, Tq, Tk), or bool (True = attend)
    scaling: float,
    dropout: float = 0.0,
    **kwargs,
) -> tuple[torch.Tensor, torch.Tensor]:
    """softmax(q k^T * scaling + mask) v, written out; returns ``(output (B, Tq, heads, head_dim), probs)``."""
    scores = torch.matmul(query, key.transpose(-1, -2)) * scaling  # (B, heads, Tq, Tk)
    if attention_mask is not None:
        if attention_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attention_mask, torch.finfo(scores.dtype).min)
        else:
            scores = scores + attention_mask
    probs = nn.functional.softmax(scores, dim=-1)
    probs = nn.functional.dropout(probs, p=dropout, training=module.training)
    output = torch.matmul(probs, value).transpose(1, 2).contiguous()  # (B, Tq, heads, head_dim)
    return output, probs


def attention_kernel(module: nn.Module, query: torch.Tensor) -> Callable:
    """The attention function ``module.config._attn_implementation`` names in transformers' registry
    (``eager_attention_forward`` when it names none), for ``query`` (B, heads, Tq, head_dim).

    One exception: a compiled CPU inference step with a single query per sequence (decoding) runs the written-out
    attention under "sdpa", which inductor fuses into the step's own kernels; sdpa's CPU flash kernel is an opaque call
    that cost about 200 us a layer there (GLM-large decoding, benchmarks/README.md). Same result up to fp32 rounding.
    """
    implementation = module.config._attn_implementation
    if (implementation == "sdpa" and query.shape[-2] == 1 and query.device.type == "cpu" and not module.training
            and torch.compiler.is_compiling()):
        return eager_attention_forward
    return ALL_ATTENTION_FUNCTIONS.get_interface(implementation, eager_attention_forward)


def split_heads(fused: torch.Tensor, parts: int, num_heads: int, head_dim: int) -> tuple[torch.Tensor, ...]:
    """Split a fused projection (B, T, parts * heads * head_dim), laid out ``[q | k | v]`` (or ``[k | v]``), into
    ``parts`` views (B, heads, T, head_dim).

    Views only; slicing the last dimension (rather than a 5-D permute) keeps the backward a plain concatenation.
    """
    batch, length, width = fused.shape
    if width != parts * num_heads * head_dim:
        raise ValueError(f"a fused projection of width {width} does not hold {parts} x {num_heads} heads x {head_dim}")
    return tuple(part.view(batch, length, num_heads, head_dim).transpose(1, 2)  # (B, T, heads, d) -> (B, heads, T, d)
                 for part in fused.split(num_heads * head_dim, dim=-1))


def cached_key_length(cache, new_tokens: int) -> int:
    """How many key slots the attention sees once this step's keys are in ``cache`` (a transformers ``Cache`` of
    self-attention layers, or None): cached + new for a growing ``DynamicCache``, the whole preallocated length for a
    ``StaticCache``. Slots not written yet lie after every query's position, so a causal mask over this length
    covers them. Caches that drop their oldest keys (sliding windows) are refused."""
    if cache is None:
        return new_tokens
    length, offset = cache.get_mask_sizes(new_tokens, 0)
    if offset:
        raise ValueError(f"{type(cache).__name__} drops its oldest keys (offset {offset}); this model attends to every "
                         "cached position: use a DynamicCache or a StaticCache")
    return int(length)


def padding_mask_for_generate(self, attention_mask: torch.Tensor | None = None, **kwargs) -> torch.Tensor | None:
    """``create_masks_for_generate`` for models that build their own causal mask from a 2-D padding mask.

    With a static cache, ``generate()`` asks the model for the 4-D mask of each step through this hook; these models
    take the (B, cached + new) padding mask as it is and mask the cache's unwritten slots themselves."""
    return attention_mask


def attention_bias(mask: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    """Turn a user mask (1/True = attend, 0/False = masked) into an additive float mask for the kernels.

    Accepted shapes: ``(B, Tk)`` padding masks, ``(B, Tq, Tk)`` and ``(B, 1 or heads, Tq, Tk)`` full masks. Returns
    ``(B, 1, 1, Tk)``, ``(B, 1, Tq, Tk)`` or the 4-D shape, or ``None`` when nothing is masked (the fast path).
    """
    if mask is None:
        return None
    if mask.dim() == 2:
        mask = mask[:, None, None, :]  # (B, 1, 1, Tk)
    elif mask.dim() == 3:
        mask = mask[:, None, :, :]  # (B, 1, Tq, Tk)
    elif mask.dim() != 4:
        raise ValueError(
            f"attention_mask must be 2-D (batch, keys), 3-D (batch, queries, keys) or 4-D "
            f"(batch, 1 or heads, queries, keys); got shape {tuple(mask.shape)}"
        )
    keep = mask.bool() if mask.dtype != torch.bool else mask
    if known_all_true(keep):
        return None
    bias = torch.zeros(keep.shape, dtype=dtype, device=keep.device)
    return bias.masked_fill_(~keep, torch.finfo(dtype).min)


class SelfAttention(nn.Module):
    """Multi-head self-attention: fused ``query_key_value`` projection, kernel dispatch, output projection ``dense``.

    Args:
        config: the model config; only ``config._attn_implementation`` is read (it selects the kernel).
        hidden_size: model width ``h``; ``query_key_value`` maps h -> 3h laid out as ``[q | k | v]``.
        num_heads: attention heads; ``head_dim = h // num_heads``.
        dropout: dropout on the attention probabilities (training only).
        is_causal: whether the kernel may assume a causal pattern when no mask is given (sdpa reads it).
        layer_idx: this layer's index in a KV cache.
        bias: whether the projections have biases.
    """

    def __init__(
        self,
        config,
        hidden_size: int,
        num_heads: int,
        dropout: float = 0.0,
        is_causal: bool = False,
        layer_idx: int | None = None,
        bias: bool = True,
    ):
        super().__init__()
        if hidden_size % num_heads != 0:
            raise ValueError(f"hidden_size ({hidden_size}) must be a multiple of num_attention_heads ({num_heads})")
        self.config = config
        self.num_heads = num_heads
        self.head_dim = hidden_size // num_heads
        self.scaling = self.head_dim**-0.5
        self.dropout = dropout
        self.is_causal = is_causal  # read by transformers' sdpa kernel: must be False for bidirectional encoders
        self.layer_idx = layer_idx
        self.query_key_value = Linear(hidden_size, 3 * hidden_size, bias=bias)
        self.dense = Linear(hidden_size, hidden_size, bias=bias)

    def project(self, hidden_states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Queries, keys and values of ``hidden_states`` (B, T, h), each (B, heads, T, head_dim)."""
        return split_heads(self.query_key_value(hidden_states), 3, self.num_heads, self.head_dim)

    def forward(
        self,
        hidden_states: torch.Tensor,  # (B, T, h)
        attention_mask: torch.Tensor | None = None,  # additive, see `attention_bias`
        cache=None,  # a transformers `Cache`; this layer appends its keys/values at `layer_idx`
        **kwargs,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        batch, length, hidden = hidden_states.shape
        query, key, value = self.project(hidden_states)
        if cache is not None:
            key, value = cache.update(key, value, self.layer_idx)  # (B, heads, past + T, head_dim)

        output, probs = attention_kernel(self, query)(
            self,
            query,
            key,
            value,
            attention_mask,
            dropout=self.dropout if self.training else 0.0,
            scaling=self.scaling,
            **kwargs,
        )
        output = output.reshape(batch, length, hidden)  # (B, T, heads, head_dim) -> (B, T, h)
        return self.dense(output), probs
