"""GLM generate(): blank filling with a cache equals recomputation, beams, padded batches, stopping, format A."""

import pytest
import torch

from flagai_hf.models.glm import GLMConfig, GLMForConditionalGeneration

SOP, EOP, PAD, MASK = 2, 1, 0, 3
TINY = dict(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=64,
            pad_token_id=PAD, eos_token_id=EOP, sop_token_id=SOP, mask_token_ids=[MASK, 4, 5])


@pytest.fixture
def model():
    torch.manual_seed(0)
    return GLMForConditionalGeneration(GLMConfig(**TINY)).eval()


def blank_filling_inputs(contexts: list[list[int]], max_gen_length: int):
    """The spec's §8 inputs, built by hand: right-padded contexts, then [sop]; 2-D positions; the 4-D mask."""
    length = max(len(c) for c in contexts)
    input_ids, positions, masks = [], [], []
    for context in contexts:
        padded = context + [PAD] * (length - len(context))
        mask_position = next(i for i, t in enumerate(context) if t in (MASK, 4, 5))
        input_ids.append(padded + [SOP])
        positions.append([list(range(length)) + [mask_position] * max_gen_length,
                          [0] * length + list(range(1, max_gen_length + 1))])
        padding = torch.tensor([1] * len(context) + [0] * (length - len(context)))
        context_columns = padding.expand(length + max_gen_length, length)
        generated_columns = torch.cat([torch.zeros(length, max_gen_length),
                                       torch.ones(max_gen_length, max_gen_length).tril()])
        masks.append(torch.cat([context_columns, generated_columns], 1)[None])
    return {"input_ids": torch.tensor(input_ids), "position_ids": torch.tensor(positions),
            "generation_attention_mask": torch.stack(masks).long()}


def greedy_by_recomputation(model, inputs, steps):
    """Greedy decoding that re-runs the whole sequence with the sliced 4-D mask at every step."""
    ids = inputs["input_ids"]
    with torch.no_grad():
        for _ in range(steps):
            total = ids.shape[1]
            logits = model(input_ids=ids, position_ids=inputs["position_ids"][..., :total],
                           attention_mask=inputs["generation_attention_mask"][:, :, :total, :total]).logits
            ids = torch.cat([ids, logits[:, -1].argmax(-1, keepdim=True)], 1)
    return ids


def test_blank_filling_cache_equals_recomputation(model):
    inputs = blank_filling_inputs([[7, 8, MASK, 9, 10], [11, 12, 13, 14, 4, 15]], max_gen_length=8)
    kwargs = dict(max_new_tokens=8, do_sample=False, eos_token_id=None, pad_token_id=PAD)
    with torch.no_grad():
        cached = model.generate(**inputs, use_cache=True, **kwargs)
        recomputed = model.generate(**inputs, use_cache=False, **kwargs)
    assert torch.equal(cached, recomputed)
    assert torch.equal(cached, greedy_by_recomputation(model, inputs, 8))


def test_one_beam_equals_greedy_and_beams_run_with_cache(model):
    inputs = blank_filling_inputs([[7, 8, MASK, 9, 10]], max_gen_length=6)
    kwargs = dict(max_new_tokens=6, eos_token_id=None, pad_token_id=PAD)
    with torch.no_grad():
        greedy = model.generate(**inputs, do_sample=False, **kwargs)
        one_beam = model.generate(**inputs, num_beams=1, do_sample=False, **kwargs)
        beams_cached = model.generate(**inputs, num_beams=3, **kwargs)
        beams_recomputed = model.generate(**inputs, num_beams=3, use_cache=False, **kwargs)
    assert torch.equal(greedy, one_beam)
    assert torch.equal(beams_cached, beams_recomputed)


def test_each_sample_of_a_padded_batch_gets_its_own_tokens(model):
    contexts = [[7, 8, MASK, 9, 10, 16, 17], [11, 5, 12], [20, 21, 22, 4]]
    kwargs = dict(max_new_tokens=6, do_sample=False, eos_token_id=None, pad_token_id=PAD)
    with torch.no_grad():
        batch = model.generate(**blank_filling_inputs(contexts, 6), **kwargs)
        for row, context in enumerate(contexts):
            alone = model.generate(**blank_filling_inputs([context], 6), **kwargs)
            assert torch.equal(batch[row, -6:], alone[0, -6:]), row


def test_stops_at_end_of_piece(model):
    inputs = blank_filling_inputs([[7, 8, MASK, 9, 10]], max_gen_length=8)
    with torch.no_grad():
        free = model.generate(**inputs, max_new_tokens=8, do_sample=False, eos_token_id=None, pad_token_id=PAD)
        stop_token = int(free[0, inputs["input_ids"].shape[1] + 2])  # pretend the 3rd generated token is the eop
        stopped = model.generate(**inputs, max_new_tokens=8, do_sample=False, eos_token_id=stop_token,
                                 pad_token_id=PAD)
    first = (free[0, inputs["input_ids"].shape[1]:] == stop_token).nonzero()[0, 0].item()
    assert stopped.shape[1] == inputs["input_ids"].shape[1] + first + 1
    assert torch.equal(stopped[0], free[0, :stopped.shape[1]])


def test_sampling_is_reproducible_and_cache_independent(model):
    inputs = blank_filling_inputs([[7, 8, MASK, 9, 10], [11, 4, 12]], max_gen_length=8)
    kwargs = dict(max_new_tokens=8, do_sample=True, top_k=10, top_p=0.9, temperature=0.8, repetition_penalty=1.3,
                  eos_token_id=None, pad_token_id=PAD)
    with torch.no_grad():
        torch.manual_seed(3)
        cached = model.generate(**inputs, use_cache=True, **kwargs)
        torch.manual_seed(3)
        recomputed = model.generate(**inputs, use_cache=False, **kwargs)
    assert torch.equal(cached, recomputed)


def test_generation_past_the_prepared_length_stops_there_with_a_warning(model, caplog):
    inputs = blank_filling_inputs([[7, 8, MASK]], max_gen_length=3)
    from transformers.utils import logging as hf_logging
    hf_logging.enable_propagation()
    try:
        out = model.generate(**inputs, max_new_tokens=6, do_sample=False, eos_token_id=None, pad_token_id=PAD)
    finally:
        hf_logging.disable_propagation()
    assert out.shape[1] == 4 + 3  # context + [sop], then the 3 tokens the positions were built for
    assert "stops at the position table (6 positions)" in caplog.text


def format_a_positions(attention_mask, new_tokens):
    """FlagAI's causal "format A" positions for the prompt and ``new_tokens`` more: the real tokens counted from 0
    (left padding skipped), block positions 0 -- written out, since a plain source means blank filling."""
    mask = torch.cat([attention_mask, torch.ones(attention_mask.shape[0], new_tokens, dtype=torch.long)], 1)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    return torch.stack([positions, torch.zeros_like(positions)], 1)


def test_format_a_causal_generation(model):
    prompt = torch.tensor([[SOP, 7, 8, 9, 30]])  # [sop] source [sep], FlagAI's title/poetry fine-tune layout
    with torch.no_grad():
        generated = model.generate(prompt, position_ids=format_a_positions(torch.ones_like(prompt), 6),
                                   max_new_tokens=6, do_sample=False, eos_token_id=None, pad_token_id=PAD)
        ids = prompt
        for _ in range(6):  # causal recomputation: sep = 0, positions 0..n-1, block positions 0
            ids = torch.cat([ids, model(input_ids=ids, attention_mask=0).logits[:, -1].argmax(-1, keepdim=True)], 1)
    assert torch.equal(generated, ids)

    # Left padding: the padded row gets the tokens it gets alone.
    batch = torch.tensor([[PAD, PAD, SOP, 7, 8], [SOP, 11, 12, 13, 14]])
    attention = (batch != PAD).long()
    with torch.no_grad():
        both = model.generate(batch, attention_mask=attention, position_ids=format_a_positions(attention, 5),
                              max_new_tokens=5, do_sample=False, eos_token_id=None, pad_token_id=PAD)
        alone = model.generate(batch[:1, 2:], position_ids=format_a_positions(attention[:1, 2:], 5),
                               max_new_tokens=5, do_sample=False, eos_token_id=None, pad_token_id=PAD)
    assert torch.equal(both[0, -5:], alone[0, -5:])
