"""Input embeddings: word + learned absolute position (+ token type), then an optional norm and dropout."""

import torch
from torch import nn

from .checks import check_input_ids


class TransformerEmbeddings(nn.Module):
    """``dropout(norm(word[ids] + position[pos] (+ token_type[types])))``.

    BERT uses token types and a LayerNorm; GPT2 uses neither (``type_vocab_size=0``, ``norm=None``). Ids outside the
    vocabulary and sequences longer than the position table raise a ``ValueError`` that gives both numbers, instead of
    an opaque index error (or, on GPU, a device-side assert).

    Args:
        vocab_size, hidden_size, max_position_embeddings: the table sizes.
        type_vocab_size: number of token types (0 = no token-type embedding).
        norm: a module applied to the summed embeddings, or ``None``.
        dropout: dropout probability applied last.
    """

    def __init__(self, vocab_size: int, hidden_size: int, max_position_embeddings: int, type_vocab_size: int = 0,
                 norm: nn.Module | None = None, dropout: float = 0.0):
        super().__init__()
        self.word_embeddings = nn.Embedding(vocab_size, hidden_size)
        self.position_embeddings = nn.Embedding(max_position_embeddings, hidden_size)
        self.token_type_embeddings = nn.Embedding(type_vocab_size, hidden_size) if type_vocab_size > 0 else None
        self.norm = norm
        self.dropout = nn.Dropout(dropout)

    def forward(
        self,
        input_ids: torch.Tensor | None = None,  # (B, T)
        token_type_ids: torch.Tensor | None = None,  # (B, T)
        position_ids: torch.Tensor | None = None,  # (B, T) or (1, T); default: past_length + arange(T)
        inputs_embeds: torch.Tensor | None = None,  # (B, T, h), instead of input_ids
        past_length: int = 0,
    ) -> torch.Tensor:  # (B, T, h)
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("Pass exactly one of input_ids or inputs_embeds")
        batch, length = check_input_ids(input_ids, inputs_embeds)
        if inputs_embeds is None:
            check_ids_in_range(input_ids, self.word_embeddings.num_embeddings, "input_ids", "vocab_size")
            inputs_embeds = self.word_embeddings(input_ids)

        max_positions = self.position_embeddings.num_embeddings
        if position_ids is None:
            if past_length + length > max_positions:
                raise ValueError(
                    f"The input has {past_length + length} positions ({past_length} cached + {length} new), more than "
                    f"max_position_embeddings={max_positions}; truncate it to {max_positions} tokens"
                )
            position_ids = torch.arange(past_length, past_length + length, device=inputs_embeds.device)[None, :]
        else:
            check_ids_in_range(position_ids, max_positions, "position_ids", "max_position_embeddings")
        embeddings = inputs_embeds + self.position_embeddings(position_ids)

        if self.token_type_embeddings is not None:
            if token_type_ids is None:
                token_type_ids = torch.zeros((batch, length), dtype=torch.long, device=inputs_embeds.device)
            check_ids_in_range(token_type_ids, self.token_type_embeddings.num_embeddings, "token_type_ids",
                               "type_vocab_size")
            embeddings = embeddings + self.token_type_embeddings(token_type_ids)
        elif token_type_ids is not None:
            raise ValueError("token_type_ids were given but this model has no token-type embeddings (type_vocab_size=0)")

        if self.norm is not None:
            embeddings = self.norm(embeddings)
        return self.dropout(embeddings)


def check_ids_in_range(ids: torch.Tensor, size: int, name: str, size_name: str) -> None:
    """Raise a ``ValueError`` naming the offending id and the table size when ``ids`` fall outside ``[0, size)``.

    Under ``torch.compile`` the same condition is an in-graph assertion (a ``RuntimeError`` naming the table and its
    size), since reading the ids' values on the host would break the graph."""
    if torch.compiler.is_compiling():
        torch._assert_async(((ids >= 0) & (ids < size)).all(), f"{name} contains an id outside [0, {size}) "
                                                               f"({size_name}={size})")
        return
    if ids.numel() == 0:
        return
    low, high = int(ids.min()), int(ids.max())
    if low < 0 or high >= size:
        bad = high if high >= size else low
        raise ValueError(f"{name} contains {bad}, outside [0, {size}) ({size_name}={size})")
