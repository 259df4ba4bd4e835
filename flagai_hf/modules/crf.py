"""Linear-chain conditional random field (CRF) used by the sequence-labelling heads.

The layer holds a single ``(C, C)`` transition matrix, ``transitions[i, j]`` being the
score of moving from tag ``i`` to tag ``j``.  There are no start/end transitions, which
matches FlagAI's ``CRFLayer`` (its ``trans`` parameter maps 1:1 onto ``transitions``).

Masking semantics: positions where ``mask`` is False are *skipped*.  The tag path of a
sequence is the sequence of its unmasked positions, and a transition links every
unmasked position to the next unmasked one.  The mask may therefore contain holes
(e.g. ``[CLS]`` or non-first sub-word positions) and may start anywhere (left padding).
A row without any unmasked position has a loss of 0 and decodes to all ``-100``.

Implementation: each row is first *compacted* (a stable sort moves its unmasked
positions to the front, keeping their order), after which the usual right-padded
forward algorithm and Viterbi recursion apply; decoded tags are scattered back.
All arithmetic is done in float32.
"""

from typing import Optional

import torch
from torch import nn

from .checks import check_values

IGNORE_INDEX = -100

__all__ = ["CRF", "IGNORE_INDEX"]


class CRF(nn.Module):
    """Linear-chain CRF over ``num_tags`` tags with a learned transition matrix."""

    def __init__(self, num_tags: int):
        super().__init__()
        if num_tags < 1:
            raise ValueError(f"num_tags must be >= 1, got {num_tags}")
        self.num_tags = num_tags
        self.transitions = nn.Parameter(torch.empty(num_tags, num_tags))  # (C, C)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.uniform_(self.transitions, -0.1, 0.1)

    def extra_repr(self) -> str:
        return f"num_tags={self.num_tags}"

    # ------------------------------------------------------------------ helpers

    def _check_inputs(self, emissions: torch.Tensor, mask: Optional[torch.Tensor],
                      tags: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Validate shapes and return ``mask`` as a bool tensor of shape (B, T)."""
        if emissions.dim() != 3:
            raise ValueError(
                f"emissions must have shape (batch, seq_len, num_tags), got {tuple(emissions.shape)}")
        if emissions.size(-1) != self.num_tags:
            raise ValueError(
                f"emissions has {emissions.size(-1)} tags in its last dim (shape {tuple(emissions.shape)}), "
                f"but the CRF was built with num_tags={self.num_tags}")
        batch_shape = tuple(emissions.shape[:2])
        if tags is not None and tuple(tags.shape) != batch_shape:
            raise ValueError(
                f"tags shape {tuple(tags.shape)} does not match emissions shape {tuple(emissions.shape)}; "
                f"expected {batch_shape}")
        if mask is None:
            return torch.ones(batch_shape, dtype=torch.bool, device=emissions.device)
        if tuple(mask.shape) != batch_shape:
            raise ValueError(
                f"mask shape {tuple(mask.shape)} does not match emissions shape {tuple(emissions.shape)}; "
                f"expected {batch_shape}")
        return mask.bool()

    @staticmethod
    def _compact(mask: torch.Tensor) -> torch.Tensor:
        """Permutation (B, T) that moves each row's unmasked positions to the front, in order."""
        return torch.argsort((~mask).to(torch.int32), dim=1, stable=True)  # (B, T)

    # --------------------------------------------------------------- training

    def neg_log_likelihood(self, emissions: torch.Tensor, tags: torch.Tensor,
                           mask: Optional[torch.Tensor], reduction: str = "mean") -> torch.Tensor:
        """``log Z - score(gold path)`` per sequence, reduced by ``"mean"``, ``"sum"`` or ``"none"``.

        Args:
            emissions: (B, T, C) unary scores.
            tags: (B, T) gold tags; values at masked positions are ignored (may be -100).
            mask: (B, T) bool, True at positions that belong to the path (None = all True).
            reduction: "mean" (over the B rows), "sum" or "none" (returns shape (B,)).
        """
        if reduction not in ("mean", "sum", "none"):
            raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
        mask = self._check_inputs(emissions, mask, tags)
        emissions = emissions.float()  # (B, T, C)
        transitions = self.transitions.float()  # (C, C)
        tags = tags.long().masked_fill(~mask, 0)  # (B, T)
        check_values(((tags >= 0) & (tags < self.num_tags)).all(),
                     f"tags at unmasked positions must lie in [0, {self.num_tags})")

        batch_size, seq_len, _ = emissions.shape
        if seq_len == 0:
            nll = emissions.new_zeros(batch_size)
        else:
            order = self._compact(mask)  # (B, T)
            mask = mask.gather(1, order)  # (B, T), each row is 1...1 0...0
            tags = tags.gather(1, order)  # (B, T)
            emissions = emissions.gather(1, order.unsqueeze(-1).expand_as(emissions))  # (B, T, C)
            gold = self._gold_score(emissions, tags, mask, transitions)  # (B,)
            log_z = self._log_partition(emissions, mask, transitions)  # (B,)
            nll = torch.where(mask.any(dim=1), log_z - gold, torch.zeros_like(gold))  # (B,)

        if reduction == "mean":
            return nll.mean() if batch_size > 0 else nll.sum()
        if reduction == "sum":
            return nll.sum()
        return nll

    @staticmethod
    def _gold_score(emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor,
                    transitions: torch.Tensor) -> torch.Tensor:
        """Score of the gold path on compacted inputs (mask is left-aligned)."""
        maskf = mask.float()  # (B, T)
        unary = emissions.gather(2, tags.unsqueeze(-1)).squeeze(-1)  # (B, T)
        pair = transitions[tags[:, :-1], tags[:, 1:]]  # (B, T-1)
        # mask[:, t] implies mask[:, t-1] after compaction, so mask[:, 1:] selects real transitions.
        return (unary * maskf).sum(1) + (pair * maskf[:, 1:]).sum(1)  # (B,)

    @staticmethod
    def _log_partition(emissions: torch.Tensor, mask: torch.Tensor,
                       transitions: torch.Tensor) -> torch.Tensor:
        """Forward algorithm on compacted inputs: log of the sum over all paths, (B,)."""
        alpha = emissions[:, 0]  # (B, C)
        for t in range(1, emissions.size(1)):
            # (B, C_prev, 1) + (1, C_prev, C_next) -> logsumexp over C_prev -> (B, C_next)
            step = torch.logsumexp(alpha.unsqueeze(2) + transitions.unsqueeze(0), dim=1) + emissions[:, t]
            alpha = torch.where(mask[:, t].unsqueeze(1), step, alpha)  # (B, C)
        return torch.logsumexp(alpha, dim=1)  # (B,)

    # --------------------------------------------------------------- inference

    @torch.no_grad()
    def decode(self, emissions: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
        """Viterbi decoding.

        Returns a LongTensor (B, T) with the best tag at unmasked positions and -100 elsewhere.
        """
        mask = self._check_inputs(emissions, mask)
        emissions = emissions.float()  # (B, T, C)
        transitions = self.transitions.float()  # (C, C)
        batch_size, seq_len, num_tags = emissions.shape
        out = torch.full((batch_size, seq_len), IGNORE_INDEX, dtype=torch.long, device=emissions.device)
        if seq_len == 0 or batch_size == 0:
            return out

        order = self._compact(mask)  # (B, T)
        cmask = mask.gather(1, order)  # (B, T), left-aligned
        cem = emissions.gather(1, order.unsqueeze(-1).expand_as(emissions))  # (B, T, C)

        identity = torch.arange(num_tags, device=emissions.device).expand(batch_size, num_tags)  # (B, C)
        score = cem[:, 0]  # (B, C)
        backpointers = []  # T-1 tensors of (B, C): best previous tag for each current tag
        for t in range(1, seq_len):
            # (B, C_prev, 1) + (1, C_prev, C_next) -> max over C_prev -> (B, C_next)
            best, prev = (score.unsqueeze(2) + transitions.unsqueeze(0)).max(dim=1)
            step_mask = cmask[:, t].unsqueeze(1)  # (B, 1)
            score = torch.where(step_mask, best + cem[:, t], score)
            # Past the end of a row the path stays put, so backtracking passes straight through.
            backpointers.append(torch.where(step_mask, prev, identity))

        last = score.argmax(dim=1)  # (B,)
        path = [last]
        for prev in reversed(backpointers):
            last = prev.gather(1, last.unsqueeze(1)).squeeze(1)  # (B,)
            path.append(last)
        path.reverse()
        ctags = torch.stack(path, dim=1)  # (B, T), compacted order
        ctags = ctags.masked_fill(~cmask, IGNORE_INDEX)
        return out.scatter_(1, order, ctags)  # back to the original positions
