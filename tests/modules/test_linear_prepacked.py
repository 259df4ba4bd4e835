"""modules/linear.py's prepacked fp32 weights (prepack_linear_weights): inference forwards read a oneDNN-layout copy
that equals F.linear (<= 1e-5), is made again whenever the weight changes, never reaches the state dict and is never
used for training; tied output projections follow their embedding; GPT-2 generates the same tokens."""

import copy

import pytest
import torch
from test_linear import make_layer, needs_onednn  # the (Linear, nn.Linear) pair with one state dict
from torch import nn

from flagai_hf import FlagAIGPT2Config, GPT2Model
from flagai_hf.modules import linear as linear_module
from flagai_hf.modules.linear import Linear, prepack_linear_weights, prepacked_linear_weights

pytestmark = needs_onednn


def packed_copy(layer):
    cache = layer.__dict__.get("_prepacked")
    return None if cache is None else cache.packed


def reorders():
    """Count the reorders (one per made copy), running the real op."""
    from unittest import mock

    real = torch.ops.mkldnn._reorder_linear_weight
    return mock.patch.object(torch.ops.mkldnn, "_reorder_linear_weight", side_effect=real)


@pytest.mark.parametrize("shape", [(1, 48), (8, 48), (3, 7, 48), (48,), (0, 48)])
@pytest.mark.parametrize("bias", [True, False])
def test_prepacked_inference_equals_f_linear(shape, bias):
    layer, reference = make_layer(bias)
    assert prepack_linear_weights(layer) == 1
    x = torch.randn(shape)
    with torch.no_grad():
        ours = layer(x)
    assert packed_copy(layer) is not None and packed_copy(layer).is_mkldnn
    expected = nn.functional.linear(x, reference.weight, reference.bias)
    assert ours.shape == expected.shape
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-5)
    assert list(layer.state_dict()) == list(reference.state_dict())
    assert all(not tensor.is_mkldnn for tensor in layer.state_dict().values())


def test_copy_made_once_and_again_after_every_kind_of_weight_change():
    layer, reference = make_layer()
    prepack_linear_weights(layer)
    x = torch.randn(4, 48)

    def check():
        with torch.no_grad():
            torch.testing.assert_close(layer(x), reference(x), rtol=1e-5, atol=1e-5)

    with reorders() as op:
        check(), check()
        assert op.call_count == 1  # reused while the weight is unchanged
        with torch.no_grad():  # in-place update (bumps _version)
            layer.weight.mul_(2.0), reference.weight.mul_(2.0)
        check()
        new = {"weight": torch.randn(80, 48) * 0.1, "bias": torch.randn(80)}
        layer.load_state_dict(new), reference.load_state_dict(new)  # copy_ into the parameters
        check()
        layer.weight = nn.Parameter(torch.randn(80, 48))  # another parameter
        reference.weight = nn.Parameter(layer.weight.detach().clone())
        check()
        optimizer = torch.optim.SGD(layer.parameters(), lr=0.1)  # a training step: the plain weight, then a step
        layer.train()
        loss = layer(x).square().sum()
        loss.backward()
        optimizer.step()
        reference.load_state_dict(layer.state_dict())
        layer.eval()
        check()
        assert op.call_count == 5
        layer.weight.data = torch.randn(80, 48)  # other storage (data_ptr) without a version bump
        reference.weight.data = layer.weight.data.clone()
        check()
        assert op.call_count == 6


def test_training_forward_uses_the_parameter_and_its_gradient():
    layer, reference = make_layer()
    prepack_linear_weights(layer)
    x = torch.randn(5, 48, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_(True)
    with reorders() as op:
        layer(x).sum().backward()
    reference(x_ref).sum().backward()
    assert op.call_count == 0 and packed_copy(layer) is None
    torch.testing.assert_close(layer.weight.grad, reference.weight.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-5, atol=1e-5)


def test_other_dtypes_inference_mode_weights_and_autocast_take_the_plain_path():
    layer, _ = make_layer()
    prepack_linear_weights(layer)
    with reorders() as op, torch.no_grad():
        layer.double()(torch.randn(2, 48, dtype=torch.float64))
        layer.float()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            layer(torch.randn(2, 48))
    assert op.call_count == 0
    with torch.inference_mode():
        frozen = Linear(48, 8)  # parameters made under inference mode have no version counter
    prepack_linear_weights(frozen)
    with reorders() as op, torch.inference_mode():
        frozen(torch.randn(2, 48))
    assert op.call_count == 0


def test_copies_are_dropped_by_deepcopy_pickling_and_the_context_manager(tmp_path):
    layer, reference = make_layer()
    x = torch.randn(3, 48)
    with prepacked_linear_weights(layer) as count, torch.no_grad():
        layer(x)
        assert count == 1 and packed_copy(layer) is not None
        twin = copy.deepcopy(layer)
        assert packed_copy(twin) is None
        torch.testing.assert_close(twin(x), reference(x), rtol=1e-5, atol=1e-5)  # packs its own weight
        torch.save(layer, tmp_path / "layer.pt")
        loaded = torch.load(tmp_path / "layer.pt", weights_only=False)
        assert packed_copy(loaded) is None
        torch.testing.assert_close(loaded(x), reference(x), rtol=1e-5, atol=1e-5)
    assert "_prepacked" not in layer.__dict__


def tiny_gpt2():
    return GPT2Model(FlagAIGPT2Config(vocab_size=99, n_embd=32, n_layer=2, n_head=4, n_positions=64,
                                      bos_token_id=98, eos_token_id=98)).eval()


def test_gpt2_tied_head_follows_its_embedding_and_generates_the_same_tokens(tmp_path):
    model = tiny_gpt2()
    ids = torch.randint(0, 98, (2, 6))
    with torch.no_grad():
        plain_logits = model(ids).logits
        plain_tokens = model.generate(ids, max_new_tokens=5, do_sample=False)
    assert prepack_linear_weights(model) == 9  # 2 blocks x (qkv, dense, two MLP layers) + the tied lm_head
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, plain_logits, rtol=1e-5, atol=1e-5)
        assert torch.equal(model.generate(ids, max_new_tokens=5, do_sample=False), plain_tokens)
        assert model.lm_head.weight is model.embeddings.word_embeddings.weight
        model.embeddings.word_embeddings.weight.mul_(1.5)  # the tied table changes in place: the head's copy follows
        changed = model(ids).logits
    prepack_linear_weights(model, enabled=False)
    with torch.no_grad():
        torch.testing.assert_close(changed, model(ids).logits, rtol=1e-5, atol=1e-5)

    prepack_linear_weights(model)
    model.save_pretrained(tmp_path)  # the state dict is the plain one: saves and loads as usual
    loaded = GPT2Model.from_pretrained(tmp_path).eval()
    prepack_linear_weights(loaded)
    assert all(not tensor.is_mkldnn for tensor in loaded.state_dict().values())
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids).logits, changed, rtol=1e-5, atol=1e-5)
    assert linear_module.prepack_linear_weights(loaded, enabled=False) == 9
