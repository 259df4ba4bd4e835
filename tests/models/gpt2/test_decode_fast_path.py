"""GPT2Model.optimize_for_decoding(): the input-major weight layout gives transformers' greedy tokens and the default
path's logits (<= 1e-5), keeps weights tied and shapes standard, saves the standard layout, trains like the default
layout, and can be undone."""

import copy

import pytest
import safetensors.torch
import torch
import transformers
from torch import nn

from flagai_hf import GPT2Model
from flagai_hf.modules.weight_layout import is_input_major, to_input_major, to_row_major

TINY = dict(vocab_size=99, n_embd=32, n_layer=2, n_head=4, n_positions=64, bos_token_id=98, eos_token_id=98)
ROWS = [[5, 17, 33, 2, 71, 9, 40], [12, 8, 90], [44, 45, 46, 47, 3]]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """transformers' GPT-2, ours with the same weights, and an optimised copy of ours."""
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("gpt2")
    reference = transformers.GPT2LMHeadModel(transformers.GPT2Config(**TINY)).eval()
    reference.save_pretrained(folder / "m")
    ours = GPT2Model.from_pretrain(folder, "m").eval()
    fast = copy.deepcopy(ours).optimize_for_decoding()
    return reference, ours, fast


def linears(model):
    return [module for module in model.modules() if isinstance(module, nn.Linear)]


def left_padded(rows, pad=0):
    length = max(len(row) for row in rows)
    ids = torch.tensor([[pad] * (length - len(row)) + row for row in rows])
    mask = torch.tensor([[0] * (length - len(row)) + [1] * len(row) for row in rows])
    return ids, mask


def test_layout_changes_in_place_and_keeps_tying(models):
    _, ours, fast = models
    assert not ours.is_optimized_for_decoding and fast.is_optimized_for_decoding
    assert fast.lm_head.weight is fast.embeddings.word_embeddings.weight
    for linear in linears(fast):
        assert is_input_major(linear.weight), linear
        assert linear.weight.t().is_contiguous()
    for (name, a), (_, b) in zip(ours.named_parameters(), fast.named_parameters()):
        assert a.shape == b.shape and torch.equal(a, b), name
    # no second copy of any weight: storage = parameters, and the tied matrix is stored once
    total = sum(p.untyped_storage().nbytes() for p in fast.parameters())
    assert total == sum(p.numel() * p.element_size() for p in fast.parameters())


@pytest.mark.parametrize("rows", [ROWS[:1], ROWS], ids=["batch1", "left-padded-batch3"])
def test_greedy_tokens_equal_transformers(models, rows):
    reference, ours, fast = models
    ids, mask = left_padded(rows)
    kwargs = dict(attention_mask=mask, max_new_tokens=16, min_new_tokens=16, do_sample=False, pad_token_id=0)
    with torch.no_grad():
        expected = reference.generate(ids, **kwargs)
        assert torch.equal(fast.generate(ids, **kwargs), expected)
        assert torch.equal(ours.generate(ids, **kwargs), expected)


def test_logits_and_cached_steps_match_default_path(models):
    reference, ours, fast = models
    ids, mask = left_padded(ROWS)
    with torch.no_grad():
        a, b, r = ours(input_ids=ids, attention_mask=mask), fast(input_ids=ids, attention_mask=mask), \
            reference(input_ids=ids, attention_mask=mask)
        assert (a.logits - b.logits).abs().max().item() <= 1e-5
        keep = mask.bool()
        assert (b.logits - r.logits)[keep].abs().max().item() <= 1e-5
        # three single-token cached steps, as generate() runs them
        out = fast(input_ids=ids, attention_mask=mask, use_cache=True)
        cache, step_ids, step_mask = out.cache, ids, mask
        for _ in range(3):
            next_token = out.logits[:, -1:].argmax(-1)
            step_ids = torch.cat([step_ids, next_token], 1)
            step_mask = torch.cat([step_mask, torch.ones_like(next_token)], 1)
            out = fast(input_ids=next_token, attention_mask=step_mask, cache=cache, use_cache=True)
            full = ours(input_ids=step_ids, attention_mask=step_mask)
            assert (out.logits[:, -1] - full.logits[:, -1]).abs().max().item() <= 1e-5


def test_save_after_optimising_writes_standard_layout(models, tmp_path):
    _, ours, fast = models
    fast.save_pretrained(tmp_path / "saved")
    stored = safetensors.torch.load_file(tmp_path / "saved" / "model.safetensors")
    for name, tensor in ours.state_dict().items():
        if name in stored:
            assert stored[name].is_contiguous() and torch.equal(stored[name], tensor), name
    assert "lm_head.weight" in stored or "embeddings.word_embeddings.weight" in stored
    reloaded = GPT2Model.from_pretrained(tmp_path / "saved").eval()
    assert not reloaded.is_optimized_for_decoding
    for (name, a), (_, b) in zip(ours.state_dict().items(), reloaded.state_dict().items()):
        assert torch.equal(a, b), name
    # the state dict of the optimised model is in the standard layout; the tied matrix stays one tensor
    state = fast.state_dict()
    for (name, a), (_, b) in zip(ours.state_dict().items(), state.items()):
        assert b.is_contiguous() and a.shape == b.shape and torch.equal(a, b), name
    assert state["lm_head.weight"] is state["embeddings.word_embeddings.weight"]
    assert fast.is_optimized_for_decoding


def test_training_in_optimised_layout_matches_default(models):
    _, ours, _ = models
    torch.manual_seed(3)
    default, fast = copy.deepcopy(ours).train(), copy.deepcopy(ours).optimize_for_decoding().train()
    ids = torch.randint(1, TINY["vocab_size"], (2, 12))
    steps = []
    for model in (default, fast):
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
        for _ in range(2):
            optimizer.zero_grad()
            torch.manual_seed(4)  # same dropout masks on both sides
            model(input_ids=ids, labels=ids).loss.backward()
            optimizer.step()
        steps.append(dict(model.named_parameters()))
    grads = [(name, p.grad) for name, p in default.named_parameters()]
    for name, grad in grads:
        other = steps[1][name].grad
        assert (grad - other).abs().max().item() <= 1e-5, name
    for name, parameter in steps[0].items():
        assert (parameter - steps[1][name]).abs().max().item() <= 1e-5, name
    assert fast.lm_head.weight is fast.embeddings.word_embeddings.weight


def test_disabling_restores_row_major(models):
    _, ours, fast = models
    restored = copy.deepcopy(fast).optimize_for_decoding(False)
    assert not restored.is_optimized_for_decoding
    assert all(linear.weight.is_contiguous() for linear in linears(restored))
    for (name, a), (_, b) in zip(ours.state_dict().items(), restored.state_dict().items()):
        assert torch.equal(a, b), name


def test_output_projection_only(models):
    reference, ours, fast = models
    head_only = copy.deepcopy(fast).optimize_for_decoding(blocks=False)  # from the full layout to the head only
    assert head_only.is_optimized_for_decoding
    assert all(linear.weight.is_contiguous() for linear in linears(head_only.layers))
    assert is_input_major(head_only.lm_head.weight)
    ids, mask = left_padded(ROWS)
    kwargs = dict(attention_mask=mask, max_new_tokens=16, min_new_tokens=16, do_sample=False, pad_token_id=0)
    with torch.no_grad():
        assert torch.equal(head_only.generate(ids, **kwargs), reference.generate(ids, **kwargs))
        logits = head_only(input_ids=ids, attention_mask=mask).logits
        assert (logits - ours(input_ids=ids, attention_mask=mask).logits).abs().max().item() <= 1e-5
    full_again = head_only.optimize_for_decoding()
    assert all(is_input_major(linear.weight) for linear in linears(full_again))


def test_layout_helpers():
    linear = nn.Linear(4, 6)
    expected = linear(torch.ones(2, 4))
    assert to_input_major([linear, linear]) == 1  # a weight listed twice is re-stored once
    assert to_input_major([linear]) == 0
    assert linear.weight.stride() == (1, 6)
    assert torch.allclose(linear(torch.ones(2, 4)), expected, atol=1e-6)
    assert to_row_major([linear]) == 1 and linear.weight.is_contiguous()
    with pytest.raises(TypeError, match="expected nn.Linear modules, got Conv1d"):
        to_input_major([nn.Conv1d(2, 2, 1)])
