"""Linear projections whose CPU float32 forward runs through oneDNN's matmul kernel.

``nn.Linear`` calls ``F.linear``, which on x86 CPUs goes to MKL's ``sgemm``. oneDNN (compiled into x86 torch wheels;
the kernel library ``torch.compile`` uses on CPU) computes the same product from the same row-major weight, and on
the machine we measured (AMD EPYC, 2 threads; benchmarks/README.md) it is faster at every forward shape: 2.2-2.8x on
the matrix-vector products of batch-1 decoding (GPT-2's 50257 x 768 output projection 12.9 -> 5.9 ms) and 1.1-1.9x
on the matrix-matrix products of whole forwards. For gradients it has no advantage (and the op has no autograd
formula), so the backward pass is ``F.linear``'s own: the same two aten matmuls and a sum.

``linear`` (and the ``Linear`` module built on it) takes oneDNN's path for CPU float32 inputs and weights when torch
has oneDNN, both are plain tensors (not subclasses such as FSDP's sharded DTensor weights, which dispatch through
``F.linear``), CPU autocast is off (autocast decides dtypes through ``F.linear``) and ``torch.compile`` is not
tracing (the compiler picks its own kernels); everything else (GPUs, bf16 / fp16 which reach oneDNN through ``F.linear``
anyway, float64) is ``F.linear``. Results equal ``F.linear``'s up to fp32 summation order.

``use_onednn_for_cpu(False)`` turns the path off for the whole process (every call then runs ``F.linear``), e.g. to
compare kernels or to get results bitwise identical to a plain ``nn.Linear`` model; it is read at call time.
"""

import torch
from torch import nn

_onednn_enabled = True


def use_onednn_for_cpu(enabled: bool = True) -> bool:
    """Switch oneDNN's CPU path on or off (see the module docstring); returns the previous setting."""
    global _onednn_enabled
    previous, _onednn_enabled = _onednn_enabled, bool(enabled)
    return previous


def onednn_for_cpu_enabled() -> bool:
    """Whether ``use_onednn_for_cpu`` currently lets CPU float32 forwards take oneDNN's path."""
    return _onednn_enabled


_PLAIN_TENSORS = (torch.Tensor, nn.Parameter)


def _takes_onednn_path(x: torch.Tensor, weight: torch.Tensor) -> bool:
    if torch.compiler.is_compiling():  # first: the rest are calls dynamo cannot trace (graph breaks)
        return False
    if not (type(x) in _PLAIN_TENSORS and type(weight) in _PLAIN_TENSORS):
        return False  # tensor subclasses (FSDP's sharded DTensor weights, ...) dispatch through F.linear
    return (_onednn_enabled and x.device.type == "cpu" and x.dtype == torch.float32 and weight.dtype == torch.float32
            and torch.backends.mkldnn.is_available() and not torch.is_autocast_enabled("cpu"))


def _onednn_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")


class _OneDNNLinearFunction(torch.autograd.Function):
    """oneDNN forward, ``F.linear``'s backward (oneDNN's op has no autograd formula of its own)."""

    @staticmethod
    def forward(x, weight, bias):
        return _onednn_linear(x, weight, bias)

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, weight, bias = inputs
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None

    @staticmethod
    def backward(ctx, grad_output):  # (..., out)
        x, weight = ctx.saved_tensors
        grad_x = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            grad_x = grad_output @ weight  # (..., out) @ (out, in) -> (..., in)
        if ctx.needs_input_grad[1] or (ctx.has_bias and ctx.needs_input_grad[2]):
            flat_grad = grad_output.reshape(-1, grad_output.shape[-1])  # (N, out)
            if ctx.needs_input_grad[1]:
                grad_weight = flat_grad.t() @ x.reshape(-1, x.shape[-1])  # (out, N) @ (N, in) -> (out, in)
            if ctx.has_bias and ctx.needs_input_grad[2]:
                grad_bias = flat_grad.sum(0)  # (out,)
        return grad_x, grad_weight, grad_bias


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``x @ weight^T + bias`` for ``x`` (..., in), ``weight`` (out, in), ``bias`` (out,) -> (..., out): ``F.linear``,
    with the forward through oneDNN for CPU float32 (see the module docstring)."""
    if not _takes_onednn_path(x, weight):
        return nn.functional.linear(x, weight, bias)
    needs_grad = torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad
                                              or (bias is not None and bias.requires_grad))
    if needs_grad:
        return _OneDNNLinearFunction.apply(x, weight, bias)
    return _onednn_linear(x, weight, bias)


class Linear(nn.Linear):
    """``nn.Linear`` (same parameters, names, initialisation and state dict) whose forward is ``linear`` above."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (..., in) -> (..., out)
        return linear(x, self.weight, self.bias)
