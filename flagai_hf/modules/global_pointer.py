"""GlobalPointer span-classification head (Su Jianlin, https://kexue.fm/archives/8373).

Every (start, end) pair of tokens gets a score per span type:
``logits[b, c, i, j] = <q_c(i), k_c(j)> / sqrt(inner_dim)``, where ``q`` and ``k`` come from a
single linear projection and are rotated with rotary position embeddings (RoPE), so the score
depends on the tokens' relative position.  Spans ending before they start and spans touching
padding get a large negative score.

The parameter layout follows FlagAI's ``flagai/model/layers/global_pointer.py``: one
``dense = Linear(hidden_size, num_types * inner_dim * 2)`` whose output is split into
``num_types`` chunks of ``2 * inner_dim`` features, each chunk being ``[q | k]``.  A FlagAI
``gp.dense.weight`` / ``gp.dense.bias`` therefore loads unchanged.

Training uses the multi-label categorical cross-entropy (https://kexue.fm/archives/7359).
"""

from typing import List, Optional, Tuple

import torch
from torch import nn

from .linear import Linear

NEG_INF = -1e12  # score given to impossible spans; finite, so sums and losses stay finite

__all__ = [
    "GlobalPointer",
    "multilabel_categorical_crossentropy",
    "global_pointer_loss",
    "decode_spans",
    "NEG_INF",
]


def rotary_sin_cos(seq_len: int, dim: int, device=None) -> Tuple[torch.Tensor, torch.Tensor]:
    """Interleaved sinusoidal tables for RoPE, each (T, dim) in float32.

    Feature pair ``(2i, 2i+1)`` rotates with frequency ``10000 ** (-2i / dim)``; both features of
    a pair share the same sin/cos value (FlagAI stores sin at even and cos at odd indices of its
    position embedding and then repeats each of them twice, which gives these tables).
    """
    position = torch.arange(seq_len, dtype=torch.float32, device=device)  # (T,)
    inv_freq = torch.pow(10000.0, -torch.arange(0, dim, 2, dtype=torch.float32, device=device) / dim)  # (dim/2,)
    angles = position[:, None] * inv_freq[None, :]  # (T, dim/2)
    sin = torch.sin(angles).repeat_interleave(2, dim=-1)  # (T, dim)
    cos = torch.cos(angles).repeat_interleave(2, dim=-1)  # (T, dim)
    return sin, cos


def apply_rotary(x: torch.Tensor, sin: torch.Tensor, cos: torch.Tensor) -> torch.Tensor:
    """Rotate each feature pair ``(x[2i], x[2i+1])`` of x (B, T, C, D) by the position angle."""
    # (x0, x1, x2, x3, ...) -> (-x1, x0, -x3, x2, ...)
    rotated = torch.stack([-x[..., 1::2], x[..., 0::2]], dim=-1).reshape(x.shape)  # (B, T, C, D)
    return x * cos[:, None, :] + rotated * sin[:, None, :]  # tables broadcast as (T, 1, D)


class GlobalPointer(nn.Module):
    """Scores every (start, end) span for ``num_types`` span types.

    Args:
        hidden_size: size of the encoder's hidden states.
        num_types: number of span (entity) types C.
        inner_dim: size of the per-type query/key vectors (must be even when ``rope``).
        rope: apply rotary position embeddings to queries and keys.
    """

    def __init__(self, hidden_size: int, num_types: int, inner_dim: int = 64, rope: bool = True):
        super().__init__()
        if rope and inner_dim % 2 != 0:
            raise ValueError(f"inner_dim must be even when rope=True, got {inner_dim}")
        self.hidden_size = hidden_size
        self.num_types = num_types
        self.inner_dim = inner_dim
        self.rope = rope
        self.dense = Linear(hidden_size, num_types * inner_dim * 2)

    def extra_repr(self) -> str:
        return f"num_types={self.num_types}, inner_dim={self.inner_dim}, rope={self.rope}"

    def forward(self, hidden_states: torch.Tensor,
                attention_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """hidden_states (B, T, H), attention_mask (B, T) of 1/0 or None -> float32 logits (B, C, T, T).

        ``logits[b, c, i, j]`` scores the span from token i to token j (inclusive) as type c.
        Entries with ``j < i`` or with a padded start/end are set to ``NEG_INF``.
        """
        if hidden_states.dim() != 3 or hidden_states.size(-1) != self.hidden_size:
            raise ValueError(
                f"hidden_states must have shape (batch, seq_len, {self.hidden_size}), "
                f"got {tuple(hidden_states.shape)}")
        batch_size, seq_len, _ = hidden_states.shape
        if attention_mask is not None and tuple(attention_mask.shape) != (batch_size, seq_len):
            raise ValueError(
                f"attention_mask shape {tuple(attention_mask.shape)} does not match hidden_states "
                f"shape {tuple(hidden_states.shape)}; expected {(batch_size, seq_len)}")

        projected = self.dense(hidden_states).float()  # (B, T, C * 2 * D)
        projected = projected.view(batch_size, seq_len, self.num_types, 2 * self.inner_dim)  # (B, T, C, 2D)
        q, k = projected[..., :self.inner_dim], projected[..., self.inner_dim:]  # (B, T, C, D) each

        if self.rope:
            sin, cos = rotary_sin_cos(seq_len, self.inner_dim, device=hidden_states.device)  # (T, D)
            q = apply_rotary(q, sin, cos)
            k = apply_rotary(k, sin, cos)

        logits = torch.einsum("bmcd,bncd->bcmn", q, k) / self.inner_dim ** 0.5  # (B, C, T, T)

        invalid = torch.ones(seq_len, seq_len, dtype=torch.bool, device=logits.device).tril(-1)  # (T, T): end < start
        invalid = invalid.expand(batch_size, seq_len, seq_len)  # (B, T, T)
        if attention_mask is not None:
            keep = attention_mask.bool()  # (B, T)
            invalid = invalid | ~(keep[:, :, None] & keep[:, None, :])  # padded start or end
        return logits.masked_fill(invalid[:, None], NEG_INF)  # (B, C, T, T)


def multilabel_categorical_crossentropy(y_pred: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
    """Multi-label categorical cross-entropy, one value per row.

    ``loss = log(1 + sum_{neg} exp(s)) + log(1 + sum_{pos} exp(-s))`` for scores ``s`` (N, K)
    and 0/1 targets (N, K); positive classes are pushed above 0 and negative ones below 0.
    Returns a float32 tensor of shape (N,).
    """
    if y_pred.shape != y_true.shape:
        raise ValueError(f"y_pred shape {tuple(y_pred.shape)} does not match y_true shape {tuple(y_true.shape)}")
    y_pred = y_pred.float()  # (N, K)
    positive = y_true.bool()  # (N, K)
    zeros = y_pred.new_zeros(y_pred.shape[:-1] + (1,))  # (N, 1): the "1 +" term
    neg_scores = y_pred.masked_fill(positive, NEG_INF)  # (N, K): negatives only
    pos_scores = (-y_pred).masked_fill(~positive, NEG_INF)  # (N, K): positives only
    neg_loss = torch.logsumexp(torch.cat([neg_scores, zeros], dim=-1), dim=-1)  # (N,)
    pos_loss = torch.logsumexp(torch.cat([pos_scores, zeros], dim=-1), dim=-1)  # (N,)
    return neg_loss + pos_loss


def global_pointer_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean multi-label loss of GlobalPointer logits (B, C, T, T) against 0/1 labels of the same shape."""
    if logits.shape != labels.shape or logits.dim() != 4:
        raise ValueError(
            f"logits and labels must both have shape (batch, num_types, seq_len, seq_len), "
            f"got {tuple(logits.shape)} and {tuple(labels.shape)}")
    batch_size, num_types = logits.shape[:2]
    y_pred = logits.reshape(batch_size * num_types, -1)  # (B*C, T*T)
    y_true = labels.reshape(batch_size * num_types, -1)  # (B*C, T*T)
    return multilabel_categorical_crossentropy(y_pred, y_true).mean()


def decode_spans(logits: torch.Tensor, threshold: float = 0.0) -> List[List[Tuple[int, int, int]]]:
    """For each batch item, the sorted list of ``(type_index, start, end)`` whose score > threshold."""
    if logits.dim() != 4:
        raise ValueError(f"logits must have shape (batch, num_types, seq_len, seq_len), got {tuple(logits.shape)}")
    hits = (logits.detach() > threshold).nonzero().tolist()  # rows of [b, c, start, end], lexicographic
    spans: List[List[Tuple[int, int, int]]] = [[] for _ in range(logits.size(0))]
    for b, c, start, end in hits:
        spans[b].append((c, start, end))
    return [sorted(s) for s in spans]
