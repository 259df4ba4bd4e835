"""Optional low-precision inference for the package's ``Linear`` layers (off by default; fp32 is never changed
unless you call this).

``quantize_linear_weights(model, "bf16")`` stores each ``Linear`` weight as bf16 and runs the product in bf16 with
fp32 accumulation (oneDNN), casting the output back to the input's dtype, so activations stay fp32 outside the
linears. ``quantize_linear_weights(model, "int8")`` stores weight-only int8 with one fp32 scale per output channel
(symmetric, ``scale = max|w_row| / 127``, kept as bf16) and runs ``torch.ops.aten._weight_int8pack_mm``.
``dequantize_linear_weights`` (or leaving the ``low_precision_linear_weights`` block) drops the low-precision copies:
the fp32 parameters are never changed, so the model is bitwise what it was (and this path saves no memory; it is
about speed).

A tied output projection (an lm_head sharing the word-embedding table) is quantized too: its low-precision copy is
the layer's own, and the embedding keeps reading the fp32 parameter. Quantized layers have no gradient (a clear error
when a forward needs one) and a quantized model refuses ``state_dict()`` (dequantize first), so no low-precision
weights are ever saved by accident.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn

from .linear import Linear, _onednn_linear, onednn_bf16_available

MODES = ("bf16", "int8")


def _int8_weight(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(out, in) fp32 -> int8 (out, in) and bf16 per-output-channel scales (out,)."""
    scales = weight.abs().amax(dim=1).clamp(min=1e-12) / 127.0
    q = torch.round(weight / scales[:, None]).clamp(-127, 127).to(torch.int8)
    return q.contiguous(), scales.to(torch.bfloat16).contiguous()


def _quantized_forward(module: nn.Module, x: torch.Tensor) -> torch.Tensor:  # (..., in) -> (..., out)
    if torch.is_grad_enabled() and x.requires_grad:
        raise RuntimeError(f"This Linear layer is quantized ({module._lp_mode}, quantize_linear_weights) and has no "
                           "gradient: call dequantize_linear_weights(model) to train")
    flat = x.reshape(-1, x.shape[-1])  # (N, in)
    if module._lp_mode == "bf16":
        flat = flat.to(torch.bfloat16)
        if module._lp_weight.is_mkldnn:  # oneDNN blocked layout, as pack_linear_weights uses: ~2x at batch 1-8
            out = _onednn_linear(flat, module._lp_weight, None)
        else:
            out = nn.functional.linear(flat, module._lp_weight)  # fp32 accumulation
        out = out.to(x.dtype)
    else:
        # bf16 activations and scales: torch's fast CPU path (its fp32-input path is ~10x slower than fp32 matmul)
        out = torch.ops.aten._weight_int8pack_mm(flat.to(torch.bfloat16).contiguous(), module._lp_weight,
                                                 module._lp_scales).to(x.dtype)
    if module._lp_bias is not None:
        out = out + module._lp_bias
    return out.view(*x.shape[:-1], out.shape[-1])


def _refuse_state_dict(module, *args, **kwargs):
    raise RuntimeError("This model has quantized Linear weights (quantize_linear_weights): call "
                       "dequantize_linear_weights(model) before state_dict()/save_pretrained")


def quantize_linear_weights(model: nn.Module, mode: str) -> int:
    """Quantize every CPU float32 ``Linear`` weight of ``model`` for inference; ``mode`` is "bf16" or "int8".
    Returns the number of quantized layers."""
    if mode not in MODES:
        raise ValueError(f"quantize_linear_weights: mode must be one of {MODES}; got {mode!r}")
    count = 0
    for module in model.modules():
        if not isinstance(module, Linear) or hasattr(module, "_lp_mode"):
            continue
        weight = module.weight.detach()
        if weight.dtype != torch.float32 or weight.device.type != "cpu" or weight.is_mkldnn:
            continue
        module._lp_mode = mode
        if mode == "bf16":
            bf16 = weight.to(torch.bfloat16).contiguous()
            if onednn_bf16_available():
                bf16 = torch.ops.mkldnn._reorder_linear_weight(bf16, 1)  # batch-size hint 1
            module._lp_weight, module._lp_scales = bf16, None
        else:
            module._lp_weight, module._lp_scales = _int8_weight(weight)
        module._lp_bias = None if module.bias is None else module.bias.detach()
        module.forward = _quantized_forward.__get__(module)
        module._lp_hook = module.register_state_dict_pre_hook(_refuse_state_dict)
        count += 1
    return count


def dequantize_linear_weights(model: nn.Module) -> int:
    """Undo ``quantize_linear_weights``: the original fp32 parameters back (bitwise). Returns the layer count."""
    count = 0
    for module in model.modules():
        if not hasattr(module, "_lp_mode"):
            continue
        module._lp_hook.remove()
        for name in ("forward", "_lp_mode", "_lp_weight", "_lp_scales", "_lp_bias", "_lp_hook"):
            module.__dict__.pop(name, None)
        count += 1
    return count


@contextmanager
def low_precision_linear_weights(model: nn.Module, mode: str):
    """``with low_precision_linear_weights(model, "int8"): model.generate(...)``; yields the layer count."""
    count = quantize_linear_weights(model, mode)
    try:
        yield count
    finally:
        dequantize_linear_weights(model)
