"""modules/linear.py: oneDNN's CPU float32 path gives F.linear's values and gradients (fp32 rounding), with and
without autograd; other dtypes, autocast and the switch take F.linear's path bitwise."""

from unittest import mock

import pytest
import torch
from torch import nn
from traced_graphs import forward_graph

from flagai_hf.modules import linear as linear_module
from flagai_hf.modules.linear import Linear, linear, use_onednn_for_cpu

needs_onednn = pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="torch built without oneDNN")


def make_layer(bias=True):
    layer = Linear(48, 80, bias=bias)
    reference = nn.Linear(48, 80, bias=bias)
    reference.load_state_dict(layer.state_dict())
    return layer, reference


def onednn_calls():
    """Patch the oneDNN op with a counting wrapper around the real one."""
    real = torch.ops.mkldnn._linear_pointwise
    return mock.patch.object(torch.ops.mkldnn, "_linear_pointwise", side_effect=real)


def test_linear_is_a_drop_in_nn_linear():
    layer, reference = make_layer()
    assert isinstance(layer, nn.Linear)
    assert list(layer.state_dict()) == ["weight", "bias"]
    assert layer.weight.shape == reference.weight.shape == (80, 48)


@needs_onednn
@pytest.mark.parametrize("shape", [(1, 48), (3, 7, 48), (2, 1, 5, 48), (0, 48), (48,)])
@pytest.mark.parametrize("bias", [True, False])
def test_inference_takes_onednn_and_equals_f_linear(shape, bias):
    layer, reference = make_layer(bias)
    x = torch.randn(shape)
    with torch.no_grad(), onednn_calls() as op:
        ours = layer(x)
    assert op.call_count == 1
    expected = reference(x)
    assert ours.shape == expected.shape and ours.dtype == torch.float32
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-5)


@needs_onednn
def test_inference_mode_non_contiguous_input_and_weight():
    layer, reference = make_layer()
    x = torch.randn(7, 3, 48).transpose(0, 1)  # (3, 7, 48), not contiguous
    with torch.inference_mode(), onednn_calls() as op:
        ours = layer(x)
        shared = linear(x, layer.weight.t().contiguous().t(), layer.bias)  # a weight with transposed strides
    assert op.call_count == 2
    torch.testing.assert_close(ours, reference(x), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(shared, reference(x), rtol=1e-5, atol=1e-5)


@needs_onednn
def test_frozen_layer_with_grad_mode_on_takes_onednn():
    layer, reference = make_layer()
    layer.requires_grad_(False)
    x = torch.randn(4, 48)
    with onednn_calls() as op:
        ours = layer(x)
    assert op.call_count == 1 and not ours.requires_grad
    torch.testing.assert_close(ours, reference(x), rtol=1e-5, atol=1e-5)


@needs_onednn
@pytest.mark.parametrize("shape", [(5, 48), (2, 3, 48), (48,)])
@pytest.mark.parametrize("bias", [True, False])
def test_training_forward_onednn_gradients_equal_f_linear(shape, bias):
    layer, reference = make_layer(bias)
    x = torch.randn(shape, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_()
    with onednn_calls() as op:
        out = layer(x)
    assert op.call_count == 1 and out.requires_grad
    out.square().sum().backward()
    expected = reference(x_ref)
    expected.square().sum().backward()
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(layer.weight.grad, reference.weight.grad, rtol=1e-5, atol=1e-5)
    if bias:
        torch.testing.assert_close(layer.bias.grad, reference.bias.grad, rtol=1e-5, atol=1e-5)


@needs_onednn
def test_backward_products_take_onednn_and_equal_f_linear():
    layer, reference = make_layer()
    x = torch.randn(6, 5, 48).transpose(0, 1).requires_grad_()  # (5, 6, 48), not contiguous
    x_ref = x.detach().clone().requires_grad_()
    out = layer(x)
    with onednn_calls() as op:
        out.square().sum().backward()
    assert op.call_count == 2  # grad @ W and grad^T @ x
    reference(x_ref).square().sum().backward()
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(layer.weight.grad, reference.weight.grad, rtol=1e-5, atol=1e-5)


@needs_onednn
def test_backward_of_an_empty_batch_and_a_differentiable_backward():
    layer, reference = make_layer()
    empty = torch.randn(0, 48, requires_grad=True)
    layer(empty).sum().backward()
    assert empty.grad.shape == (0, 48) and not layer.weight.grad.any()
    layer.zero_grad()
    x = torch.randn(4, 48, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_()
    (grad_x,) = torch.autograd.grad(layer(x).square().sum(), x, create_graph=True)  # a gradient penalty
    (grad_ref,) = torch.autograd.grad(reference(x_ref).square().sum(), x_ref, create_graph=True)
    grad_x.square().sum().backward()
    grad_ref.square().sum().backward()
    torch.testing.assert_close(layer.weight.grad, reference.weight.grad, rtol=1e-5, atol=1e-5)


@needs_onednn
def test_gradients_only_where_needed():
    layer, _ = make_layer()
    layer.weight.requires_grad_(False)
    x = torch.randn(4, 48, requires_grad=True)
    layer(x).sum().backward()
    assert layer.weight.grad is None and x.grad is not None and layer.bias.grad is not None
    frozen, _ = make_layer()
    frozen.requires_grad_(False)
    y = torch.randn(4, 48, requires_grad=True)
    frozen(y).sum().backward()
    assert frozen.weight.grad is None and y.grad is not None


def test_autocast_runs_f_linear():
    layer, reference = make_layer()
    x = torch.randn(3, 48)
    with torch.autocast("cpu", dtype=torch.bfloat16), torch.no_grad(), onednn_calls() as op:
        ours, expected = layer(x), reference(x)
    assert op.call_count == 0 and ours.dtype == torch.bfloat16 and torch.equal(ours, expected)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float64])
def test_other_dtypes_run_f_linear(dtype):
    layer, reference = make_layer()
    layer, reference = layer.to(dtype), reference.to(dtype)
    x = torch.randn(3, 48, dtype=dtype)
    with torch.no_grad(), onednn_calls() as op:
        ours = layer(x)
    assert op.call_count == 0
    assert torch.equal(ours, reference(x))


def test_switch_off_gives_f_linear_bitwise():
    layer, reference = make_layer()
    x = torch.randn(6, 48)
    previous = use_onednn_for_cpu(False)
    try:
        assert previous is True
        with torch.no_grad(), onednn_calls() as op:
            ours = layer(x)
        assert op.call_count == 0 and torch.equal(ours, reference(x))
    finally:
        use_onednn_for_cpu(previous)
    assert linear_module._onednn_enabled


def test_without_onednn_runs_f_linear():
    layer, reference = make_layer()
    x = torch.randn(2, 48)
    with mock.patch.object(torch.backends.mkldnn, "is_available", return_value=False), torch.no_grad():
        assert torch.equal(layer(x), reference(x))


@pytest.mark.parametrize("x_shape, bias", [((5, 48), True), ((2, 3, 48), False), ((0, 48), True)])
def test_compiled_op_registration(x_shape, bias):
    """``flagai_hf::onednn_linear``: its fake implementation, autograd formula and schema agree with the kernel
    (torch.library.opcheck runs it eagerly, under fake tensors and through AOT autograd), and it equals F.linear."""
    layer, reference = make_layer()
    x = torch.randn(x_shape, requires_grad=True)
    b = layer.bias if bias else None
    torch.library.opcheck(linear_module.compiled_onednn_linear, (x, layer.weight, b))
    torch.testing.assert_close(linear_module.compiled_onednn_linear(x, layer.weight, b),
                               torch.nn.functional.linear(x, layer.weight, b), rtol=1e-5, atol=1e-6)


def test_compiled_graphs_call_onednn():
    """A traced forward and backward hold the custom op (oneDNN's kernel) where eager runs oneDNN, and aten's
    product where eager runs F.linear (float64)."""
    graphs = []

    def capture(graph_module, example_inputs):
        from torch._dynamo.backends.common import aot_autograd

        def keep(module, _):
            graphs.append(module)
            return module
        return aot_autograd(fw_compiler=keep, bw_compiler=keep)(graph_module, example_inputs)

    layer, reference = make_layer()
    x = torch.randn(4, 48, requires_grad=True)
    compiled = torch.compile(layer, fullgraph=True, backend=capture)
    out = compiled(x)
    out.sum().backward()
    forward, backward = (str(module.graph) for module in graphs)
    assert forward.count("flagai_hf.onednn_linear") == 1 and backward.count("flagai_hf.onednn_linear") == 2
    torch.testing.assert_close(out, reference(x), rtol=1e-5, atol=1e-6)
    graphs.clear()
    torch.compile(layer.double(), fullgraph=True, backend=capture)(x.detach().double())
    assert "flagai_hf.onednn_linear" not in str(graphs[0].graph)


def test_compiled_single_row_inference_is_a_product_and_sum():
    """Compiled, an inference product of one row (batch-1 decoding) is written as ``(x * weight).sum(-1)`` (which
    inductor generates as its own matrix-vector loop), equal to F.linear; several rows, or a row that needs
    gradients, keep the oneDNN op."""
    layer, reference = make_layer()
    with torch.no_grad():
        for shape in ((1, 48), (1, 1, 48)):
            graph = forward_graph(layer, torch.randn(shape))
            assert "flagai_hf.onednn_linear" not in graph and "aten.sum" in graph
        assert "flagai_hf.onednn_linear" in forward_graph(layer, torch.randn(2, 48))
    assert "flagai_hf.onednn_linear" in forward_graph(layer, torch.randn(1, 48, requires_grad=True))
    torch._dynamo.reset()
    compiled = torch.compile(layer, fullgraph=True)  # inductor's generated loop
    with torch.inference_mode():
        for shape in ((1, 48), (1, 1, 48)):
            x = torch.randn(shape)
            torch.testing.assert_close(compiled(x), reference(x), rtol=1e-5, atol=1e-6)


class _TaggedTensor(torch.Tensor):
    """A trivial tensor subclass, standing in for FSDP's DTensor weights (which oneDNN's op refuses to mix)."""


def test_tensor_subclasses_run_f_linear():
    layer, reference = make_layer()
    x = torch.randn(3, 48)
    with torch.no_grad(), onednn_calls() as op:
        ours = linear(x.as_subclass(_TaggedTensor), layer.weight, layer.bias)
        also = linear(x, layer.weight.detach().as_subclass(_TaggedTensor), layer.bias)
    assert op.call_count == 0
    assert torch.equal(ours.as_subclass(torch.Tensor), reference(x)) and torch.equal(also.as_subclass(torch.Tensor),
                                                                                     reference(x))


# --------------------------------------------------------------- bf16 weights packed for oneDNN (pack_linear_weights)

needs_onednn_bf16 = pytest.mark.skipif(
    not (torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()),
    reason="oneDNN bf16 kernels need AVX-512 (or newer) on this CPU")


class _Tied(nn.Module):
    """A bf16 block with a projection whose weight is also an embedding table (like a tied output head)."""

    def __init__(self):
        super().__init__()
        self.inner = Linear(48, 80)
        self.outer = Linear(80, 48)
        self.embedding = nn.Embedding(48, 80)
        self.head = Linear(80, 48, bias=False)
        self.head.weight = self.embedding.weight  # (48, 80): shared
        self.plain = nn.Linear(48, 48)  # torch's own module: never packed (its forward is F.linear)


@needs_onednn_bf16
@pytest.mark.parametrize("shape", [(1, 48), (3, 7, 48), (48,), (0, 48)])
def test_packed_bf16_layer_equals_f_linear(shape):
    layer, reference = make_layer()
    layer, reference = layer.to(torch.bfloat16), reference.to(torch.bfloat16)
    x = torch.randn(shape, dtype=torch.bfloat16)
    with linear_module.packed_linear_weights(layer) as count, torch.inference_mode():
        assert count == 1 and layer.weight.is_mkldnn and not layer.weight.requires_grad
        ours = layer(x)
    assert ours.shape == reference(x).shape and ours.dtype == torch.bfloat16
    torch.testing.assert_close(ours.float(), reference(x).float(), rtol=1e-2, atol=1e-2)  # bf16 rounding at most
    assert not layer.weight.is_mkldnn and torch.equal(layer.weight, reference.weight)  # unpacked bitwise
    assert layer.weight.requires_grad and layer.bias.requires_grad


@needs_onednn_bf16
def test_packing_skips_shared_fp32_and_torch_modules_and_refuses_training():
    model = _Tied().to(torch.bfloat16)
    model.inner.float()
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    assert linear_module.pack_linear_weights(model) == 1  # only `outer`: inner is fp32, head is tied
    assert model.outer.weight.is_mkldnn and not model.head.weight.is_mkldnn and not model.plain.weight.is_mkldnn
    assert model.head.weight is model.embedding.weight
    x = torch.randn(2, 80, dtype=torch.bfloat16, requires_grad=True)
    with pytest.raises(RuntimeError, match="packed for oneDNN inference .* unpack it"):
        model.outer(x)
    with pytest.raises(ValueError, match="takes CPU torch.bfloat16 inputs; got cpu torch.float32"), torch.no_grad():
        model.outer(x.detach().float())
    assert linear_module.unpack_linear_weights(model) == 1
    assert all(torch.equal(before[name], tensor) for name, tensor in model.state_dict().items())


@needs_onednn_bf16
def test_packed_glm_generates_the_plain_tokens():
    from flagai_hf import GLMConfig, GLMForConditionalGeneration

    model = GLMForConditionalGeneration(GLMConfig(vocab_size=96, hidden_size=64, num_layers=2, num_attention_heads=4,
                                                  max_sequence_length=32, pad_token_id=0, eos_token_id=None,
                                                  sop_token_id=5, mask_token_ids=[3])).to(torch.bfloat16).eval()
    ids = torch.randint(6, 96, (1, 9))
    with torch.inference_mode():
        plain = model(ids).logits
        plain_tokens = model.generate(ids, max_new_tokens=4, do_sample=False)
        with linear_module.packed_linear_weights(model) as count:
            packed = model(ids).logits
            packed_tokens = model.generate(ids, max_new_tokens=4, do_sample=False)
    assert count == 8  # 2 blocks x (query_key_value, dense, dense_h_to_4h, dense_4h_to_h); the output head is tied
    torch.testing.assert_close(packed.float(), plain.float(), rtol=2e-2, atol=2e-2)
    assert torch.equal(packed_tokens, plain_tokens)
