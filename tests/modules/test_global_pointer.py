"""Tests for flagai_hf.modules.global_pointer."""

import math

import pytest
import torch

from flagai_hf.modules.global_pointer import (
    GlobalPointer,
    decode_spans,
    global_pointer_loss,
    multilabel_categorical_crossentropy,
)

VERY_NEGATIVE = -1e10


def _reference_logits(gp, hidden, rope=True):
    """Slow per-element GlobalPointer written from the paper/FlagAI layout (float64).

    For type c the dense output features [c*2D, c*2D + D) are the query and [c*2D + D, (c+1)*2D)
    the key; feature pair (2i, 2i+1) at position m is rotated by the angle m * 10000^(-2i/D).
    """
    weight = gp.dense.weight.detach().double()
    bias = gp.dense.bias.detach().double()
    out = hidden.double() @ weight.T + bias  # (B, T, C*2D)
    dim = gp.inner_dim
    batch, seq_len, _ = hidden.shape
    logits = torch.empty(batch, gp.num_types, seq_len, seq_len, dtype=torch.float64)

    def rotate(vec, pos):
        if not rope:
            return vec
        res = vec.clone()
        for i in range(dim // 2):
            theta = pos * 10000.0 ** (-2 * i / dim)
            a, b = vec[2 * i], vec[2 * i + 1]
            res[2 * i] = a * math.cos(theta) - b * math.sin(theta)
            res[2 * i + 1] = a * math.sin(theta) + b * math.cos(theta)
        return res

    for bi in range(batch):
        for c in range(gp.num_types):
            base = c * 2 * dim
            for m in range(seq_len):
                q = rotate(out[bi, m, base:base + dim], m)
                for n in range(seq_len):
                    k = rotate(out[bi, n, base + dim:base + 2 * dim], n)
                    logits[bi, c, m, n] = (q @ k) / math.sqrt(dim)
    return logits


@pytest.mark.parametrize("rope", [True, False])
def test_logits_match_reference_and_masking(rope):
    torch.manual_seed(0)
    gp = GlobalPointer(hidden_size=6, num_types=2, inner_dim=4, rope=rope)
    hidden = torch.randn(2, 5, 6)
    attention_mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    logits = gp(hidden, attention_mask)
    assert logits.shape == (2, 2, 5, 5) and logits.dtype == torch.float32

    reference = _reference_logits(gp, hidden, rope=rope)
    upper = torch.ones(5, 5, dtype=torch.bool).triu()  # start <= end
    keep = attention_mask.bool()
    valid = (upper & keep[:, :, None] & keep[:, None, :])[:, None].expand_as(logits)  # (B, C, T, T)
    torch.testing.assert_close(logits[valid].double(), reference[valid], rtol=1e-5, atol=1e-5)
    assert logits[valid].abs().max() < 100  # real scores are moderate
    assert (logits[~valid] < VERY_NEGATIVE).all()  # lower triangle and padded rows/cols
    # explicit spot checks: lower triangle, padded end, padded start
    assert logits[0, 1, 3, 1] < VERY_NEGATIVE
    assert logits[1, 0, 1, 3] < VERY_NEGATIVE
    assert logits[1, 0, 4, 4] < VERY_NEGATIVE

    # without a mask only the lower triangle is masked
    unmasked = gp(hidden, None)
    assert (unmasked[:, :, upper] > VERY_NEGATIVE).all()
    assert (unmasked[:, :, ~upper] < VERY_NEGATIVE).all()


def test_parameter_layout():
    gp = GlobalPointer(hidden_size=12, num_types=3, inner_dim=8)
    shapes = {name: tuple(p.shape) for name, p in gp.named_parameters()}
    assert shapes == {"dense.weight": (3 * 8 * 2, 12), "dense.bias": (3 * 8 * 2,)}
    with pytest.raises(ValueError, match="even"):
        GlobalPointer(hidden_size=12, num_types=3, inner_dim=7)
    with pytest.raises(ValueError, match=r"\(2, 5, 11\)"):
        gp(torch.randn(2, 5, 11))
    with pytest.raises(ValueError, match=r"attention_mask shape \(2, 4\)"):
        gp(torch.randn(2, 5, 12), torch.ones(2, 4))


def _brute_force_mcce(scores, targets):
    """log(1 + sum_neg exp(s)) + log(1 + sum_pos exp(-s)), pure python in double precision."""
    neg = sum(math.exp(s) for s, y in zip(scores, targets) if y == 0)
    pos = sum(math.exp(-s) for s, y in zip(scores, targets) if y == 1)
    return math.log1p(neg) + math.log1p(pos)


def test_multilabel_categorical_crossentropy_matches_formula():
    gen = torch.Generator().manual_seed(1)
    y_pred = torch.randn(6, 9, generator=gen) * 3
    y_true = (torch.rand(6, 9, generator=gen) > 0.7).float()
    y_true[0] = 0  # no positives
    y_true[1] = 1  # all positives
    loss = multilabel_categorical_crossentropy(y_pred, y_true)
    expected = [_brute_force_mcce(p, t) for p, t in zip(y_pred.double().tolist(), y_true.tolist())]
    assert loss.shape == (6,)
    torch.testing.assert_close(loss.double(), torch.tensor(expected, dtype=torch.float64), rtol=1e-5, atol=1e-6)


def test_global_pointer_loss_matches_formula_including_masked_logits():
    torch.manual_seed(2)
    gp = GlobalPointer(hidden_size=8, num_types=2, inner_dim=4)
    hidden = torch.randn(2, 4, 8)
    attention_mask = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]])
    logits = gp(hidden, attention_mask)
    labels = torch.zeros_like(logits)
    labels[0, 0, 0, 2] = 1
    labels[0, 1, 3, 3] = 1
    labels[1, 1, 1, 2] = 1
    loss = global_pointer_loss(logits, labels)
    rows = zip(logits.reshape(4, 16).double().tolist(), labels.reshape(4, 16).tolist())
    expected = sum(_brute_force_mcce(p, t) for p, t in rows) / 4
    assert loss.dim() == 0
    assert loss.item() == pytest.approx(expected, rel=1e-5)

    loss.backward()
    assert gp.dense.weight.grad is not None and torch.isfinite(gp.dense.weight.grad).all()
    assert gp.dense.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError):
        global_pointer_loss(logits, labels[:, :, :3])


def test_decode_spans_threshold_and_order():
    logits = torch.full((2, 2, 3, 3), -5.0)
    logits[0, 1, 0, 2] = 3.0
    logits[0, 0, 1, 1] = 0.5
    logits[0, 0, 0, 1] = 0.0  # not strictly above the threshold
    logits[1, 1, 2, 2] = 1.5
    assert decode_spans(logits) == [[(0, 1, 1), (1, 0, 2)], [(1, 2, 2)]]
    assert decode_spans(logits, threshold=1.0) == [[(1, 0, 2)], [(1, 2, 2)]]
    assert decode_spans(logits, threshold=10.0) == [[], []]


def test_fit_recovers_known_spans():
    torch.manual_seed(0)
    batch, seq_len, hidden_size, num_types = 2, 8, 16, 2
    hidden = torch.randn(batch, seq_len, hidden_size)
    attention_mask = torch.ones(batch, seq_len, dtype=torch.long)
    attention_mask[1, 6:] = 0
    spans = [
        [(0, 1, 3), (0, 6, 7), (1, 5, 5)],
        [(0, 4, 5), (1, 0, 2), (1, 2, 2)],
    ]
    labels = torch.zeros(batch, num_types, seq_len, seq_len)
    for b, row in enumerate(spans):
        for c, start, end in row:
            labels[b, c, start, end] = 1

    gp = GlobalPointer(hidden_size, num_types, inner_dim=8)
    optimizer = torch.optim.Adam(gp.parameters(), lr=0.02)
    for _ in range(300):
        optimizer.zero_grad()
        loss = global_pointer_loss(gp(hidden, attention_mask), labels)
        loss.backward()
        optimizer.step()

    assert loss.item() < 0.05
    with torch.no_grad():
        assert decode_spans(gp(hidden, attention_mask)) == spans


def test_rope_score_depends_only_on_relative_position():
    torch.manual_seed(3)
    hidden_size, seq_len = 8, 12
    gp = GlobalPointer(hidden_size, num_types=2, inner_dim=16)
    start_vec, end_vec = torch.randn(hidden_size), torch.randn(hidden_size)
    filler = torch.randn(seq_len, hidden_size)

    def score(start, end):
        hidden = filler.clone()
        hidden[start], hidden[end] = start_vec, end_vec
        with torch.no_grad():
            return gp(hidden[None])[0, :, start, end]  # (C,)

    base = score(1, 4)
    for offset in (1, 3, 7):
        torch.testing.assert_close(score(1 + offset, 4 + offset), base, rtol=1e-4, atol=1e-4)
    # ... but the distance matters
    assert (score(1, 6) - base).abs().max() > 1e-2

    # without RoPE the score ignores positions altogether
    gp.rope = False
    torch.testing.assert_close(score(1, 6), score(1, 4))
