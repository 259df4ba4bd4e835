"""Small task heads shared by the encoder families: the [CLS] pooler and the masked-LM prediction head.

The structured heads live in their own files: ``crf.py`` (linear-chain CRF) and ``global_pointer.py`` (span scores).
"""

import torch
from torch import nn

from .linear import Linear


class Pooler(nn.Module):
    """``tanh(dense(h[:, 0]))``: the first token's state as a sentence vector (BERT's [CLS] pooler)."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.dense = Linear(hidden_size, hidden_size)
        self.activation = nn.Tanh()

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:  # (B, T, h) -> (B, h)
        return self.activation(self.dense(hidden_states[:, 0]))


class LMPredictionHead(nn.Module):
    """``decoder(norm(act(dense(h))))``: BERT's masked-LM / UniLM head. ``decoder`` may be tied to the word embeddings.

    Args:
        hidden_size, vocab_size: the sizes.
        activation: the transform's activation module.
        norm: the transform's norm module.
    """

    def __init__(self, hidden_size: int, vocab_size: int, activation: nn.Module, norm: nn.Module):
        super().__init__()
        self.dense = Linear(hidden_size, hidden_size)
        self.activation = activation
        self.norm = norm
        self.decoder = Linear(hidden_size, vocab_size)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:  # (B, T, h) -> (B, T, vocab)
        return self.decoder(self.norm(self.activation(self.dense(hidden_states))))


def positions_to_score(hidden_states: torch.Tensor, logits_to_keep: int | torch.Tensor) -> torch.Tensor:
    """The positions of ``hidden_states`` (B, T, h) an output projection scores: the last ``logits_to_keep`` (an int;
    0 = all of them), or those a 1-D index tensor names. ``generate()`` passes 1, so the prompt's step projects one
    position onto the vocabulary, not T."""
    if isinstance(logits_to_keep, int):
        return hidden_states[:, -logits_to_keep:]  # -0: every position
    return hidden_states[:, logits_to_keep]
