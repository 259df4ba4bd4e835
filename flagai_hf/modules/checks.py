"""Checks on tensor values that stay inside a ``torch.compile`` graph.

Reading a tensor's values on the host (``bool(t.any())``, ``int(t.max())``) makes dynamo break the graph. Eagerly
these helpers do exactly that, so bad input raises the usual ``ValueError``; while compiling they become in-graph
assertions (a ``RuntimeError`` with the same message when the compiled code runs) or skip a shortcut that only saves
work.
"""

import torch


def check_values(holds: torch.Tensor, message: str) -> None:
    """Raise ``ValueError(message)`` unless the 0-d bool tensor ``holds`` is true; under ``torch.compile`` an in-graph
    assertion with the same message."""
    if torch.compiler.is_compiling():
        torch._assert_async(holds, message)
    elif not bool(holds):
        raise ValueError(message)


def known_all_true(mask: torch.Tensor) -> bool:
    """Whether every element of ``mask`` is known to be true, so a caller may drop the mask (a fast path). Never
    while compiling: the mask is then kept, which gives the same result without reading its values on the host."""
    return not torch.compiler.is_compiling() and bool(mask.all())
