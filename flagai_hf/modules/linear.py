"""Linear projections whose CPU float32 forward runs through oneDNN's matmul kernel.

``nn.Linear`` calls ``F.linear``, which on x86 CPUs goes to MKL's ``sgemm``. oneDNN (compiled into x86 torch wheels;
the kernel library ``torch.compile`` uses on CPU) computes the same product from the same row-major weight, and on
the machine we measured (AMD EPYC, 2 threads; benchmarks/README.md) it is faster at every forward shape: 2.2-2.8x on
the matrix-vector products of batch-1 decoding (GPT-2's 50257 x 768 output projection 12.9 -> 5.9 ms) and 1.1-1.9x
on the matrix-matrix products of whole forwards. The op has no autograd formula; the backward pass computes the same
two products as ``F.linear``'s (``grad @ W`` and ``grad^T @ x``, read as linears on transposed views) through the
same kernel, 1.7-2.3x faster than aten's matmuls at BERT / T5 training shapes, plus the bias gradient's sum.

``linear`` (and the ``Linear`` module built on it) takes oneDNN's path for CPU float32 inputs and weights when torch
has oneDNN, both are plain tensors (not subclasses such as FSDP's sharded DTensor weights, which dispatch through
``F.linear``) and CPU autocast is off (autocast decides dtypes through ``F.linear``); everything else (GPUs, bf16 /
fp16 which reach oneDNN through ``F.linear`` anyway, float64) is ``F.linear``. Results equal ``F.linear``'s up to fp32
summation order. Under ``torch.compile`` the same product is the custom op ``flagai_hf::onednn_linear``
(``compiled_onednn_linear``: a fake implementation for tracing and the autograd formula below), so compiled graphs run
oneDNN's kernel too instead of the aten matmuls the compiler would otherwise emit. The exception is an inference
product of a single row (batch-1 decoding): compiled, it is written as ``(x * weight).sum(-1)``, which inductor
generates as its own vectorised loop reading the weight once, faster than oneDNN's matrix-vector kernel on the
measured machine (GLM-large's 97 weights, 1.4 GB: 30-33 ms against 37.5 ms; benchmarks/README.md).

``use_onednn_for_cpu(False)`` turns the path off for the whole process (every call then runs ``F.linear``), e.g. to
compare kernels or to get results bitwise identical to a plain ``nn.Linear`` model; it is read at call time.

bfloat16 inference on CPU: batch-1 decoding of a large model is one matrix-vector product per weight, bound by how
fast the weights stream from memory. With row-major bf16 weights oneDNN reads them at a fraction of the machine's
bandwidth; in its own blocked layout (``AB16b64a2b``: 64 output rows x 32 inputs per block, input pairs interleaved)
it reads them at about the bandwidth (GLM-10b layers on the measured machine: benchmarks/README.md).
``packed_linear_weights(model)`` (a context manager; or ``pack_linear_weights`` / ``unpack_linear_weights``) puts
every ``Linear`` weight of a model that is a CPU bf16 tensor, not shared with another module, into that layout in
place (one weight at a time, so memory grows by one weight at most), and back. Packed layers are inference-only
(their parameters are frozen while packed, and a forward that needs gradients is refused); ``linear`` sends them to
oneDNN's kernel. Their state dict holds oneDNN tensors, so save after unpacking. Other layers are unaffected.

float32 decoding: ``prepack_linear_weights(model)`` (or ``with prepacked_linear_weights(model):``) lets each fp32
``Linear`` keep, beside its parameter, a copy of its weight reordered once into oneDNN's blocked layout (reordered for
8 rows; measured at 1 thread: a batch-8 768 -> 3072 product 0.43 -> 0.23 ms, GPT-2's 50257-row output projection at
batch 1 6.4 -> 4.0 ms, at 8 rows 11.0 -> 6.0 ms; no change at 256 rows). Inference forwards (no gradient needed)
take the copy; training forwards use the parameter. The copy is made again when the weight changes: another
parameter, an in-place update (``load_state_dict``, an optimizer step: ``_version``), other storage, dtype or device.
Writes through ``weight.data`` bypass the version counter: call ``prepack_linear_weights`` again after those. The
state dict is untouched (the copy is no parameter or buffer; ``deepcopy`` and pickling drop it). It is opt-in because
it costs a second copy of every fp32 weight it serves (GPT-2 small: +0.5 GB) and pays only for decoding-sized inputs.
"""

import weakref
from collections.abc import Iterator
from contextlib import contextmanager

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
    if not (type(x) in _PLAIN_TENSORS and type(weight) in _PLAIN_TENSORS):
        return False  # tensor subclasses (FSDP's sharded DTensor weights, ...) dispatch through F.linear
    return (_onednn_enabled and x.device.type == "cpu" and x.dtype == torch.float32 and weight.dtype == torch.float32
            and _has_onednn() and not torch.is_autocast_enabled("cpu"))


def _has_onednn() -> bool:
    """Whether torch was built with oneDNN: ``torch.backends.mkldnn.is_available()``, which dynamo does not trace, so
    a traced call reads the flag it returns."""
    return torch._C._has_mkldnn if torch.compiler.is_compiling() else torch.backends.mkldnn.is_available()


def _onednn_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")


@torch.library.custom_op("flagai_hf::onednn_linear", mutates_args=())
def compiled_onednn_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``_onednn_linear`` as an op ``torch.compile`` keeps in its graphs (one opaque call: the compiler cannot trace
    into oneDNN's op, and without this it would pick aten's matmuls instead), with the autograd formula below."""
    if x.numel() == 0 or weight.numel() == 0:  # oneDNN's kernel refuses empty products
        return nn.functional.linear(x, weight, bias)
    return _onednn_linear(x, weight, bias)


@compiled_onednn_linear.register_fake
def _(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    return x.new_empty((*x.shape[:-1], weight.shape[0]))  # (..., out)


def _compiled_matrix_vector(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``linear`` of a single input row (x holds ``in`` elements) while compiling, written as a product and a sum
    over ``in``, which inductor turns into one vectorised loop that streams the weight once (see the module
    docstring)."""
    out = (x.unsqueeze(-2) * weight).sum(-1)  # (..., 1, in) * (out, in) -> (..., out)
    return out if bias is None else out + bias


def _compiled_product(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a @ b`` (M, K) @ (K, N) through the op itself (so a compiled backward stays differentiable)."""
    return compiled_onednn_linear(a, b.t(), None)


def _onednn_product(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a @ b`` for 2-D ``a`` (M, K) and ``b`` (K, N) through oneDNN's linear kernel, whose weight is ``b^T`` (N, K):
    a transposed view, which the kernel reads in place. An empty product (K = 0 for a batch without rows) is aten's:
    the kernel refuses it."""
    if a.numel() == 0 or b.numel() == 0:
        return a @ b
    return _onednn_linear(a, b.t(), None)


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
        # oneDNN's op has no autograd formula, so a differentiable backward (create_graph=True, grad mode on here)
        # takes aten's matmuls.
        return _linear_grads(ctx, grad_output, torch.matmul if torch.is_grad_enabled() else _onednn_product)


def _linear_grads(ctx, grad_output: torch.Tensor, product) -> tuple:
    """The gradients of ``x @ weight^T + bias`` for ``grad_output`` (..., out) from the tensors ``setup_context`` saved;
    both products are ``product(a, b) = a @ b`` on transposed views (no copies)."""
    x, weight = ctx.saved_tensors
    grad_x = grad_weight = grad_bias = None
    flat_grad = grad_output.reshape(-1, grad_output.shape[-1])  # (N, out)
    if ctx.needs_input_grad[0]:
        grad_x = product(flat_grad, weight).view(*grad_output.shape[:-1], weight.shape[1])  # (N, out) @ (out, in)
    if ctx.needs_input_grad[1]:
        grad_weight = product(flat_grad.t(), x.reshape(-1, x.shape[-1]))  # (out, N) @ (N, in) -> (out, in)
    if ctx.has_bias and ctx.needs_input_grad[2]:
        grad_bias = flat_grad.sum(0)  # (out,)
    return grad_x, grad_weight, grad_bias


compiled_onednn_linear.register_autograd(lambda ctx, grad_output: _linear_grads(ctx, grad_output, _compiled_product),
                                         setup_context=_OneDNNLinearFunction.setup_context)


def _needs_grad(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> bool:
    """Whether autograd must record this product (grad mode on and an input that requires a gradient)."""
    return torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad
                                        or (bias is not None and bias.requires_grad))


def onednn_bf16_available() -> bool:
    """Whether oneDNN's bf16 kernels (and its blocked bf16 weight layout) run on this CPU (AVX-512 bf16 or AMX)."""
    return torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``x @ weight^T + bias`` for ``x`` (..., in), ``weight`` (out, in), ``bias`` (out,) -> (..., out): ``F.linear``,
    with the forward through oneDNN for CPU float32 and for packed bf16 weights (see the module docstring)."""
    if weight.is_mkldnn:
        return _packed_linear(x, weight, bias)
    if not _takes_onednn_path(x, weight):
        return nn.functional.linear(x, weight, bias)
    if torch.compiler.is_compiling():
        if x.numel() == x.shape[-1] and not _needs_grad(x, weight, bias):  # one row: a decoding step's product
            return _compiled_matrix_vector(x, weight, bias)
        return compiled_onednn_linear(x, weight, bias)
    if _needs_grad(x, weight, bias):
        return _OneDNNLinearFunction.apply(x, weight, bias)
    return _onednn_linear(x, weight, bias)


class Linear(nn.Linear):
    """``nn.Linear`` (same parameters, names, initialisation and state dict) whose forward is ``linear`` above."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (..., in) -> (..., out)
        prepacked = self.__dict__.get("_prepacked")  # prepack_linear_weights (see the module docstring)
        if prepacked is not None and _takes_prepacked_path(x, self.weight, self.bias):
            return _packed_linear(x, prepacked.packed_for(self.weight), self.bias)
        return linear(x, self.weight, self.bias)


def _packed_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``linear`` for a weight in oneDNN's blocked layout (``pack_linear_weights``): inference only."""
    if torch.is_grad_enabled() and x.requires_grad:
        raise RuntimeError("This linear layer's weight is packed for oneDNN inference (pack_linear_weights) and has "
                           "no gradient: unpack it (unpack_linear_weights) to train")
    if x.dtype != weight.dtype or x.device.type != "cpu":
        raise ValueError(f"A packed {weight.dtype} linear weight (pack_linear_weights) takes CPU {weight.dtype} "
                         f"inputs; got {x.device.type} {x.dtype}")
    flat = x.reshape(-1, x.shape[-1])  # (N, in): oneDNN's 2-D product, also for (..., in) inputs
    out = _onednn_linear(flat, weight, bias)  # (N, out)
    return out.view(*x.shape[:-1], weight.shape[0])


def _packable(model: nn.Module) -> Iterator[Linear]:
    """The ``Linear`` layers of ``model`` whose weight is a plain CPU bf16 tensor that no other module shares (a tied
    output projection is also read as an embedding table, so it keeps its layout)."""
    owners: dict[int, int] = {}
    for module in model.modules():
        for param in module._parameters.values():
            if param is not None:
                owners[id(param)] = owners.get(id(param), 0) + 1
    for module in model.modules():
        weight = module._parameters.get("weight") if isinstance(module, Linear) else None
        if (weight is not None and not weight.is_mkldnn and type(weight) in _PLAIN_TENSORS
                and weight.device.type == "cpu" and weight.dtype == torch.bfloat16 and owners[id(weight)] == 1):
            yield module


def pack_linear_weights(model: nn.Module) -> int:
    """Put the bf16 CPU ``Linear`` weights of ``model`` into oneDNN's blocked layout for batch-1 inference, one at a
    time (see the module docstring); their parameters are frozen until ``unpack_linear_weights``. Returns how many
    layers were packed (0 without oneDNN bf16 support, e.g. a CPU without AVX-512)."""
    if not onednn_bf16_available():
        return 0
    packed = 0
    for module in list(_packable(model)):
        module._unpacked_requires_grad = {name: param.requires_grad for name, param in module.named_parameters()}
        with torch.no_grad():
            blocked = torch.ops.mkldnn._reorder_linear_weight(module.weight.detach(), 1)  # batch-size hint 1
        module.weight = nn.Parameter(blocked, requires_grad=False)
        module.requires_grad_(False)
        packed += 1
    return packed


def unpack_linear_weights(model: nn.Module) -> int:
    """Undo ``pack_linear_weights``: every packed weight back to a plain (out, in) tensor (a new copy, one at a time),
    trainable again as before. Returns how many layers were unpacked."""
    unpacked = 0
    for module in model.modules():
        weight = module._parameters.get("weight") if isinstance(module, Linear) else None
        if weight is None or not weight.is_mkldnn:
            continue
        requires_grad = getattr(module, "_unpacked_requires_grad", {})
        module.weight = nn.Parameter(weight.to_dense(), requires_grad=requires_grad.get("weight", True))
        for name, param in module.named_parameters():
            param.requires_grad_(requires_grad.get(name, True))
        module.__dict__.pop("_unpacked_requires_grad", None)
        unpacked += 1
    return unpacked


@contextmanager
def packed_linear_weights(model: nn.Module):
    """``with packed_linear_weights(model): model.generate(...)``: bf16 CPU linear weights packed for oneDNN within
    the block, plain again after it (see ``pack_linear_weights``). Yields the number of packed layers."""
    count = pack_linear_weights(model)
    try:
        yield count
    finally:
        unpack_linear_weights(model)


_PREPACK_ROWS = 8  # oneDNN's row-count hint for the reorder: its layout for 8 rows also serves 1 row best (measured)


class _PrepackedWeight:
    """A ``Linear`` weight's copy in oneDNN's blocked fp32 layout and the state of the weight it was made from
    (``prepack_linear_weights``); made again whenever that state changes."""

    __slots__ = ("source", "state", "packed")

    def __init__(self):
        self.source, self.state, self.packed = None, None, None

    def __deepcopy__(self, memo):  # a copied module packs its own (copied) weight on first use
        return _PrepackedWeight()

    def __reduce__(self):  # pickling (torch.save of a module) drops the copy
        return _PrepackedWeight, ()

    def packed_for(self, weight: torch.Tensor) -> torch.Tensor:
        state = (weight._version, weight.data_ptr(), weight.dtype, weight.device, weight.shape)
        if self.source is None or self.source() is not weight or self.state != state:
            self.packed = None  # free the stale copy before making the new one
            with torch.no_grad():
                self.packed = torch.ops.mkldnn._reorder_linear_weight(weight.detach(), _PREPACK_ROWS)
            self.source, self.state = weakref.ref(weight), state  # a weak reference: a replaced weight is freed
        return self.packed


def _takes_prepacked_path(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> bool:
    """An inference forward that ``linear`` would send to oneDNN with a plain fp32 weight (not an inference-mode
    tensor, which has no version counter to watch); not while compiling (the copy's bookkeeping does not trace)."""
    if torch.compiler.is_compiling() or weight.is_mkldnn or not _takes_onednn_path(x, weight) or weight.is_inference():
        return False
    if bias is not None and (type(bias) not in _PLAIN_TENSORS or bias.dtype != torch.float32):
        return False
    return not _needs_grad(x, weight, bias)


def prepack_linear_weights(model: nn.Module, enabled: bool = True) -> int:
    """Let every ``Linear`` of ``model`` serve fp32 inference forwards from a copy of its weight in oneDNN's blocked
    layout, made on first use and again after the weight changes (see the module docstring); ``enabled=False``
    drops the copies. Calling it again also drops them (after writes through ``weight.data``). Returns how many
    layers it set."""
    count = 0
    for module in model.modules():
        if isinstance(module, Linear):
            module.__dict__.pop("_prepacked", None)
            if enabled:
                module.__dict__["_prepacked"] = _PrepackedWeight()
            count += 1
    return count


@contextmanager
def prepacked_linear_weights(model: nn.Module):
    """``with prepacked_linear_weights(model): model.generate(...)``: fp32 weights served from oneDNN-layout copies
    within the block (``prepack_linear_weights``), the copies freed after it. Yields the number of layers set."""
    count = prepack_linear_weights(model)
    try:
        yield count
    finally:
        prepack_linear_weights(model, enabled=False)
