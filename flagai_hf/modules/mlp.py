"""The position-wise feed-forward layer: Linear -> activation -> Linear."""

import torch
from torch import nn

from .linear import Linear


class MLP(nn.Module):
    """``dense_4h_to_h(act(dense_h_to_4h(x)))``; the parameter names are Megatron's, as in FlagAI's checkpoints.

    Args:
        hidden_size: model width ``h``.
        intermediate_size: inner width (``4 * h`` in BERT, GPT2 and GLM).
        activation: the activation module (see ``activations.get_activation``).
        bias: whether both linears have a bias.
    """

    def __init__(self, hidden_size: int, intermediate_size: int, activation: nn.Module, bias: bool = True):
        super().__init__()
        self.dense_h_to_4h = Linear(hidden_size, intermediate_size, bias=bias)
        self.activation = activation
        self.dense_4h_to_h = Linear(intermediate_size, hidden_size, bias=bias)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:  # (B, T, h) -> (B, T, h)
        return self.dense_4h_to_h(self.activation(self.dense_h_to_4h(hidden_states)))
