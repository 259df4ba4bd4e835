"""Tests for flagai_hf.modules.crf.CRF against brute-force enumeration of all tag paths."""

import itertools
import math

import pytest
import torch

from flagai_hf.modules.crf import CRF

# Masks used by the random cases (T = 5); every row style the CRF has to handle.
MASKS_T5 = [
    [1, 1, 1, 1, 1],  # full
    [1, 1, 1, 0, 0],  # right padding
    [0, 0, 1, 1, 1],  # left padding
    [0, 1, 0, 1, 1],  # [CLS] masked plus a hole
    [1, 0, 0, 1, 0],  # holes, two kept positions
    [0, 0, 0, 1, 0],  # a single kept position
    [0, 0, 0, 0, 0],  # nothing kept
]


def _brute_force_row(emissions, transitions, mask):
    """All (score, path) pairs of one row, path = tags on the unmasked positions (float64, pure python)."""
    positions = [t for t, keep in enumerate(mask) if keep]
    num_tags = len(transitions)
    results = []
    for path in itertools.product(range(num_tags), repeat=len(positions)):
        score = sum(emissions[t][y] for t, y in zip(positions, path))
        score += sum(transitions[a][b] for a, b in zip(path[:-1], path[1:]))
        results.append((score, path))
    return positions, results


def _logsumexp(values):
    top = max(values)
    return top + math.log(sum(math.exp(v - top) for v in values))


def _random_case(seed, num_tags, seq_len, masks):
    gen = torch.Generator().manual_seed(seed)
    batch = len(masks)
    emissions = torch.randn(batch, seq_len, num_tags, generator=gen) * 2.0
    tags = torch.randint(0, num_tags, (batch, seq_len), generator=gen)
    mask = torch.tensor(masks, dtype=torch.bool)
    tags = tags.masked_fill(~mask, -100)  # masked labels are ignored, like HF's -100
    torch.manual_seed(seed)
    crf = CRF(num_tags)
    with torch.no_grad():
        crf.transitions.copy_(torch.randn(num_tags, num_tags, generator=gen))
    return crf, emissions, tags, mask


def _cases():
    for seed in range(4):
        for num_tags in (3, 4):
            yield seed, num_tags, 5, MASKS_T5
    # shorter sequences, random masks
    for seed in range(4, 8):
        gen = torch.Generator().manual_seed(seed)
        seq_len = 1 + seed % 4
        masks = (torch.rand(5, seq_len, generator=gen) > 0.35).long().tolist()
        yield seed, 3, seq_len, masks


CASES = list(_cases())


@pytest.mark.parametrize("seed,num_tags,seq_len,masks", CASES)
def test_viterbi_matches_brute_force(seed, num_tags, seq_len, masks):
    crf, emissions, _, mask = _random_case(seed, num_tags, seq_len, masks)
    decoded = crf.decode(emissions, mask)
    assert decoded.dtype == torch.long and decoded.shape == (len(masks), seq_len)
    em, tr = emissions.double().tolist(), crf.transitions.detach().double().tolist()
    for b in range(len(masks)):
        positions, results = _brute_force_row(em[b], tr, masks[b])
        expected = [-100] * seq_len
        if positions:
            _, best_path = max(results)
            for t, y in zip(positions, best_path):
                expected[t] = y
        assert decoded[b].tolist() == expected, f"row {b} mask {masks[b]}"


@pytest.mark.parametrize("seed,num_tags,seq_len,masks", CASES)
def test_nll_matches_brute_force(seed, num_tags, seq_len, masks):
    crf, emissions, tags, mask = _random_case(seed, num_tags, seq_len, masks)
    nll = crf.neg_log_likelihood(emissions, tags, mask, reduction="none")
    assert nll.shape == (len(masks),) and nll.dtype == torch.float32
    em, tr = emissions.double().tolist(), crf.transitions.detach().double().tolist()
    expected = []
    for b in range(len(masks)):
        positions, results = _brute_force_row(em[b], tr, masks[b])
        if not positions:
            expected.append(0.0)
            continue
        gold_path = tuple(tags[b, t].item() for t in positions)
        gold = next(score for score, path in results if path == gold_path)
        expected.append(_logsumexp([score for score, _ in results]) - gold)
    torch.testing.assert_close(nll.double(), torch.tensor(expected, dtype=torch.float64), rtol=1e-5, atol=1e-4)
    assert all(v >= -1e-5 for v in nll.tolist())  # log Z >= any path score


def test_gradient_equals_marginals_minus_gold():
    """d NLL / d emissions[b, t, c] = P(y_t = c) - [gold_t = c] at unmasked positions, 0 elsewhere."""
    crf, emissions, tags, mask = _random_case(11, 3, 5, MASKS_T5)
    emissions.requires_grad_(True)
    crf.neg_log_likelihood(emissions, tags, mask, reduction="sum").backward()

    em, tr = emissions.detach().double().tolist(), crf.transitions.detach().double().tolist()
    expected = torch.zeros(emissions.shape, dtype=torch.float64)
    for b in range(len(MASKS_T5)):
        positions, results = _brute_force_row(em[b], tr, MASKS_T5[b])
        if not positions:
            continue
        log_z = _logsumexp([s for s, _ in results])
        for score, path in results:
            prob = math.exp(score - log_z)
            for t, y in zip(positions, path):
                expected[b, t, y] += prob
        for t in positions:
            expected[b, t, tags[b, t]] -= 1.0
    torch.testing.assert_close(emissions.grad.double(), expected, rtol=1e-4, atol=1e-5)

    grad_t = crf.transitions.grad
    assert grad_t is not None and torch.isfinite(grad_t).all() and grad_t.abs().sum() > 0


def test_holes_equal_removed_positions():
    """Skipping semantics: masking a position is the same as deleting it from the sequence."""
    gen = torch.Generator().manual_seed(3)
    crf = CRF(4)
    emissions = torch.randn(1, 6, 4, generator=gen)
    tags = torch.tensor([[-100, 2, -100, 0, 3, -100]])
    mask = tags != -100
    kept = mask[0]
    full = crf.neg_log_likelihood(emissions, tags, mask, reduction="none")
    short = crf.neg_log_likelihood(emissions[:, kept], tags[:, kept], torch.ones(1, 3, dtype=torch.bool),
                                   reduction="none")
    torch.testing.assert_close(full, short)
    decoded = crf.decode(emissions, mask)
    assert decoded[0, ~kept].tolist() == [-100, -100, -100]
    assert decoded[0, kept].tolist() == crf.decode(emissions[:, kept], None)[0].tolist()


def test_reduction_modes_and_all_masked_row():
    crf, emissions, tags, mask = _random_case(5, 3, 5, MASKS_T5)
    per_row = crf.neg_log_likelihood(emissions, tags, mask, reduction="none")
    assert per_row[-1].item() == 0.0  # the all-masked row
    torch.testing.assert_close(crf.neg_log_likelihood(emissions, tags, mask, reduction="sum"), per_row.sum())
    torch.testing.assert_close(crf.neg_log_likelihood(emissions, tags, mask), per_row.mean())
    assert crf.decode(emissions, mask)[-1].tolist() == [-100] * 5


def test_mask_none_means_all_positions_and_int_mask_accepted():
    crf, emissions, tags, _ = _random_case(6, 3, 4, [[1, 1, 1, 1]] * 2)
    ones = torch.ones(2, 4, dtype=torch.long)  # HF-style integer attention mask
    torch.testing.assert_close(crf.neg_log_likelihood(emissions, tags, None),
                               crf.neg_log_likelihood(emissions, tags, ones))
    assert torch.equal(crf.decode(emissions, None), crf.decode(emissions, ones))


def test_bf16_emissions_give_float32_loss():
    crf, emissions, tags, mask = _random_case(7, 4, 5, MASKS_T5)
    emissions_bf16 = emissions.bfloat16()
    loss = crf.neg_log_likelihood(emissions_bf16, tags, mask, reduction="none")
    assert loss.dtype == torch.float32
    reference = crf.neg_log_likelihood(emissions_bf16.float(), tags, mask, reduction="none")
    torch.testing.assert_close(loss, reference)
    assert torch.equal(crf.decode(emissions_bf16, mask), crf.decode(emissions_bf16.float(), mask))


def test_parameter_layout_and_init():
    torch.manual_seed(0)
    crf = CRF(7)
    assert [name for name, _ in crf.named_parameters()] == ["transitions"]
    assert crf.transitions.shape == (7, 7)
    assert crf.transitions.abs().max().item() <= 0.1
    assert crf.transitions.std().item() > 0.02  # really uniform(-0.1, 0.1), not zeros


def test_transition_direction():
    """transitions[i, j] scores moving from tag i to tag j."""
    crf = CRF(2)
    with torch.no_grad():
        crf.transitions.zero_()
        crf.transitions[0, 1] = 10.0  # 0 -> 1 is strongly preferred; 1 -> 0 is not
    emissions = torch.zeros(1, 2, 2)
    assert crf.decode(emissions, None).tolist() == [[0, 1]]


def test_shape_errors():
    crf = CRF(3)
    emissions = torch.randn(2, 4, 3)
    tags = torch.zeros(2, 4, dtype=torch.long)
    mask = torch.ones(2, 4, dtype=torch.bool)
    with pytest.raises(ValueError, match=r"\(2, 4, 5\)"):
        crf.neg_log_likelihood(torch.randn(2, 4, 5), tags, mask)
    with pytest.raises(ValueError, match="num_tags=3"):
        crf.decode(torch.randn(2, 4, 5), mask)
    with pytest.raises(ValueError, match=r"\(2, 4\)"):
        crf.decode(torch.randn(2, 4), mask)
    with pytest.raises(ValueError, match=r"tags shape \(2, 3\)"):
        crf.neg_log_likelihood(emissions, tags[:, :3], mask)
    with pytest.raises(ValueError, match=r"mask shape \(2, 5\)"):
        crf.neg_log_likelihood(emissions, tags, torch.ones(2, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"mask shape \(4, 2\)"):
        crf.decode(emissions, torch.ones(4, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match="reduction"):
        crf.neg_log_likelihood(emissions, tags, mask, reduction="avg")
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        crf.neg_log_likelihood(emissions, torch.full((2, 4), 3), mask)
    # out-of-range tags are fine where masked
    ok = crf.neg_log_likelihood(emissions, torch.full((2, 4), -100), torch.zeros(2, 4, dtype=torch.bool))
    assert ok.item() == 0.0
