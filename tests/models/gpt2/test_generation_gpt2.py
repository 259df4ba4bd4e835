"""GPT2 generate(): the same tokens as transformers' GPT2LMHeadModel (greedy, beams, seeded sampling), cache vs no
cache, left-padded batches, and pipeline("text-generation") with the real GPT-2 tokenizer."""

import pytest
import torch
import transformers
from material import gpt2_vocab_files, wnut_tweets

from flagai_hf import FlagAIGPT2Config, FlagAIGPT2Tokenizer, GPT2Model

TINY = dict(vocab_size=99, n_embd=32, n_layer=2, n_head=4, n_positions=64, bos_token_id=98, eos_token_id=98)


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """transformers' model and ours with the same random weights (loaded through the key map)."""
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("gpt2")
    reference = transformers.GPT2LMHeadModel(transformers.GPT2Config(**TINY)).eval()
    reference.save_pretrained(folder / "m")
    return reference, GPT2Model.from_pretrain(folder, "m")


def left_padded(rows: list[list[int]], pad: int = 0):
    length = max(len(row) for row in rows)
    ids = torch.tensor([[pad] * (length - len(row)) + row for row in rows])
    mask = torch.tensor([[0] * (length - len(row)) + [1] * len(row) for row in rows])
    return ids, mask


ROWS = [[5, 17, 33, 2, 71, 9, 40], [12, 8, 90], [44, 45, 46, 47, 3]]


@pytest.mark.parametrize("settings", [
    dict(do_sample=False),
    dict(do_sample=False, num_beams=3),
    dict(do_sample=True, top_k=20, temperature=0.8),
    dict(do_sample=True, top_p=0.9, num_return_sequences=2),
], ids=["greedy", "beam3", "sample-top_k", "sample-top_p"])
def test_generate_matches_transformers(pair, settings):
    reference, ours = pair
    ids, mask = left_padded(ROWS)
    kwargs = dict(attention_mask=mask, max_new_tokens=12, pad_token_id=0, **settings)
    with torch.no_grad():
        torch.manual_seed(1)
        expected = reference.generate(ids, **kwargs)
        torch.manual_seed(1)
        actual = ours.generate(ids, **kwargs)
    assert torch.equal(actual, expected)


@pytest.mark.parametrize("impl", ["eager", "sdpa"])
@pytest.mark.parametrize("num_beams", [1, 3])
def test_cache_equals_recomputation(pair, impl, num_beams):
    _, ours = pair
    ours.set_attn_implementation(impl)
    ids, mask = left_padded(ROWS)
    kwargs = dict(attention_mask=mask, max_new_tokens=10, do_sample=False, num_beams=num_beams, pad_token_id=0,
                  eos_token_id=None)
    with torch.no_grad():
        cached = ours.generate(ids, use_cache=True, **kwargs)
        recomputed = ours.generate(ids, use_cache=False, **kwargs)
    ours.set_attn_implementation("sdpa")
    assert torch.equal(cached, recomputed)


@pytest.mark.parametrize("impl", ["eager", "sdpa"])
@pytest.mark.parametrize("rows", [ROWS[:1], ROWS], ids=["one-unpadded-row", "left-padded-batch"])
def test_static_cache_equals_the_dynamic_cache_and_transformers(pair, impl, rows):
    """generate(cache_implementation="static"): the unwritten slots of the preallocated cache are masked, so every
    step's scores equal the growing cache's, and the tokens equal transformers' with its static cache."""
    reference, ours = pair
    ours.set_attn_implementation(impl)
    ids, mask = left_padded(rows)
    kwargs = dict(attention_mask=mask, max_new_tokens=10, do_sample=False, pad_token_id=0, eos_token_id=None,
                  output_scores=True, return_dict_in_generate=True)
    with torch.no_grad():
        static = ours.generate(ids, cache_implementation="static", **kwargs)
        dynamic = ours.generate(ids, **kwargs)
        expected = reference.generate(ids, cache_implementation="static", **kwargs)
    ours.set_attn_implementation("sdpa")
    assert torch.equal(static.sequences, dynamic.sequences)
    assert torch.equal(static.sequences, expected.sequences)
    for step, (a, b) in enumerate(zip(static.scores, dynamic.scores)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5, msg=f"step {step}")


def test_greedy_equals_a_written_out_loop(pair):
    _, ours = pair
    prompt = torch.tensor([ROWS[0]])
    sequence = prompt
    with torch.no_grad():
        for _ in range(8):
            next_token = ours(input_ids=sequence).logits[:, -1].argmax(-1, keepdim=True)
            sequence = torch.cat([sequence, next_token], 1)
        generated = ours.generate(prompt, max_new_tokens=8, do_sample=False, eos_token_id=None, pad_token_id=0)
    assert torch.equal(generated, sequence)


def test_left_padded_batch_rows_equal_the_rows_alone(pair):
    _, ours = pair
    ids, mask = left_padded(ROWS)
    kwargs = dict(max_new_tokens=10, do_sample=False, pad_token_id=0, eos_token_id=None)
    with torch.no_grad():
        batch = ours.generate(ids, attention_mask=mask, **kwargs)
        for index, row in enumerate(ROWS):
            alone = ours.generate(torch.tensor([row]), **kwargs)
            assert torch.equal(batch[index, -10:], alone[0, -10:]), index


def test_generation_beyond_the_position_table_stops_there_with_a_warning(pair, caplog):
    _, ours = pair
    from transformers.utils import logging as hf_logging
    hf_logging.enable_propagation()
    try:
        out = ours.generate(torch.tensor([ROWS[0]]), max_new_tokens=60, min_new_tokens=60, do_sample=False,
                            pad_token_id=0)
    finally:
        hf_logging.disable_propagation()
    assert out.shape[1] == 65  # 64 positions fed, the last token predicted from position 63
    assert "GPT2Model.generate stops at the position table (64 positions): 65 tokens returned" in caplog.text


def test_text_generation_pipeline_with_the_real_tokenizer():
    torch.manual_seed(0)
    model = GPT2Model(FlagAIGPT2Config(**{**TINY, "vocab_size": 50257, "bos_token_id": 50256,
                                          "eos_token_id": 50256})).eval()
    tokenizer = FlagAIGPT2Tokenizer(*gpt2_vocab_files())
    generator = transformers.pipeline("text-generation", model=model, tokenizer=tokenizer)
    prompt = wnut_tweets(limit=1)[0]
    out = generator(prompt, max_new_tokens=8, do_sample=False, return_full_text=True)
    encoded = tokenizer(prompt, return_tensors="pt")
    with torch.no_grad():
        direct = model.generate(**encoded, max_new_tokens=8, do_sample=False, pad_token_id=50256)
    assert out[0]["generated_text"] == tokenizer.decode(direct[0])
    assert out[0]["generated_text"].startswith(prompt)
    assert direct.shape[1] > encoded["input_ids"].shape[1]
