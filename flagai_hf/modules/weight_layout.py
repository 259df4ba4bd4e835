"""An opt-in memory layout for ``nn.Linear`` weights that speeds up memory-bound decoding (batch 1, KV cache).

``nn.Linear`` keeps its weight as (out, in), row-major, and computes ``x @ W^T``. At batch 1 every product is a
matrix-vector product that reads the whole weight once; on CPUs the BLAS reads a weight stored *input-major*
(``W^T`` contiguous, (in, out), the layout of transformers' GPT-2 ``Conv1D``) at a markedly higher bandwidth — on the
50257 x 768 output projection of GPT-2 about twice as fast.

``to_input_major`` re-stores a weight in that layout *in place*: the parameter keeps its shape (out, in), its values
and its identity (tied weights stay tied, optimizers keep working); only its strides change, to ``(1, out)``, so
``W^T`` is contiguous. ``F.linear`` then runs ``addmm(b, x, W^T)`` on the contiguous (in, out) matrix. Results are
the same products summed in a possibly different order: equal to fp32 rounding. ``to_row_major`` restores the
standard layout. Nothing here is global: only the modules passed in change.

A model using the layout registers ``standard_layout_state_dict`` as a state-dict post-hook: ``state_dict()`` then
returns the standard (contiguous, row-major) layout, as ``save_pretrained``, ``safetensors`` and checkpointing code
expect; each re-stored weight is copied for that (shared weights once, so ties stay visible).
"""

from collections.abc import Iterable

import torch
from torch import nn


def is_input_major(weight: torch.Tensor) -> bool:
    """Whether a 2-D weight (out, in) is stored input-major: ``weight.t()`` is contiguous and ``weight`` is not."""
    return weight.dim() == 2 and not weight.is_contiguous() and weight.t().is_contiguous()


def to_input_major(linears: Iterable[nn.Linear]) -> int:
    """Re-store each Linear's weight input-major (see the module docstring); returns how many weights changed.

    One weight is copied at a time, so the extra memory is that of the largest weight, briefly. A weight shared by
    several modules (tied embeddings) is re-stored once; every module keeps seeing the same parameter.
    """
    changed = 0
    for linear in _unique_weights(linears):
        if not is_input_major(linear.weight):
            with torch.no_grad():
                linear.weight.data = linear.weight.data.t().contiguous().t()  # (out, in) view of an (in, out) copy
            changed += 1
    return changed


def to_row_major(linears: Iterable[nn.Linear]) -> int:
    """Undo ``to_input_major``: each weight back to contiguous (out, in); returns how many weights changed."""
    changed = 0
    for linear in _unique_weights(linears):
        if not linear.weight.is_contiguous():
            with torch.no_grad():
                linear.weight.data = linear.weight.data.contiguous()
            changed += 1
    return changed


def standard_layout_state_dict(module: nn.Module, state_dict: dict, prefix: str, local_metadata: dict) -> None:
    """State-dict post-hook: replace the non-contiguous tensors under ``prefix`` by contiguous copies (tensors shared
    under several names get one shared copy). Parameters (``state_dict(keep_vars=True)``) are left as they are."""
    copies = {}
    for name, tensor in state_dict.items():
        if name.startswith(prefix) and not isinstance(tensor, nn.Parameter) and not tensor.is_contiguous():
            key = (tensor.data_ptr(), tensor.shape, tensor.stride())
            if key not in copies:
                copies[key] = tensor.contiguous()
            state_dict[name] = copies[key]


def _unique_weights(linears: Iterable[nn.Linear]) -> list[nn.Linear]:
    """The Linears passed in, one per distinct weight tensor; anything but an ``nn.Linear`` is an error."""
    seen, unique = set(), []
    for linear in linears:
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"expected nn.Linear modules, got {type(linear).__name__}")
        if id(linear.weight) not in seen:
            seen.add(id(linear.weight))
            unique.append(linear)
    return unique
