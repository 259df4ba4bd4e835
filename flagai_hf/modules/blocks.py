"""Transformer blocks built from layers passed in (torchtune style): a block never branches on the model family.

Both blocks are ``GradientCheckpointingLayer``s, so ``model.gradient_checkpointing_enable()`` (or
``activation_checkpointing_enable()``) recomputes them in the backward pass. ``hidden_states`` must be passed
positionally for that.
"""

import torch
from torch import nn
from transformers.modeling_layers import GradientCheckpointingLayer


class PostNormBlock(GradientCheckpointingLayer):
    """Post-LN block (BERT)::

        x ──┬── attention ── dropout ──(+)── attention_norm ──┬── mlp ── dropout ──(+)── mlp_norm ──▶
            └─────────────────────────────┘                   └───────────────────────┘

    Args:
        attention: self-attention taking ``(hidden_states, attention_mask, cache=...)`` and returning ``(out, probs)``.
        mlp: the feed-forward layer.
        attention_norm, mlp_norm: the norms applied after each residual sum.
        dropout: dropout on each sub-layer's output before the residual sum.
    """

    def __init__(self, attention: nn.Module, mlp: nn.Module, attention_norm: nn.Module, mlp_norm: nn.Module,
                 dropout: float = 0.0):
        super().__init__()
        self.attention = attention
        self.attention_norm = attention_norm
        self.mlp = mlp
        self.mlp_norm = mlp_norm
        self.dropout = nn.Dropout(dropout)

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None, cache=None,
                **kwargs) -> torch.Tensor:  # (B, T, h) -> (B, T, h)
        attended, _ = self.attention(hidden_states, attention_mask, cache=cache, **kwargs)
        hidden_states = self.attention_norm(hidden_states + self.dropout(attended))
        return self.mlp_norm(hidden_states + self.dropout(self.mlp(hidden_states)))


class PreNormBlock(GradientCheckpointingLayer):
    """Pre-LN block (GPT2, GLM)::

        x ──┬── attention_norm ── attention ── dropout ──(+)──┬── mlp_norm ── mlp ── dropout ──(+)──▶
            └─────────────────────────────────────────────┘   └───────────────────────────────────┘

    Args: as ``PostNormBlock``; the norms are applied to each sub-layer's input instead.
    """

    def __init__(self, attention: nn.Module, mlp: nn.Module, attention_norm: nn.Module, mlp_norm: nn.Module,
                 dropout: float = 0.0):
        super().__init__()
        self.attention_norm = attention_norm
        self.attention = attention
        self.mlp_norm = mlp_norm
        self.mlp = mlp
        self.dropout = nn.Dropout(dropout)

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None, cache=None,
                **kwargs) -> torch.Tensor:  # (B, T, h) -> (B, T, h)
        attended, _ = self.attention(self.attention_norm(hidden_states), attention_mask, cache=cache, **kwargs)
        hidden_states = hidden_states + self.dropout(attended)
        return hidden_states + self.dropout(self.mlp(self.mlp_norm(hidden_states)))
