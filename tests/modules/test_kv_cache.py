"""The in-place growing K/V cache (``flagai_hf.modules.kv_cache``): every operation leaves the same keys and values as
transformers' ``DynamicLayer``, appends within the reserved room write in place, and each generating family's
``generate()`` (greedy and beam search) gives the tokens and scores of a plain ``DynamicCache``."""

import pytest
import torch
from transformers import DynamicCache, EncoderDecoderCache
from transformers.cache_utils import DynamicLayer

import flagai_hf as F
from flagai_hf.modules.kv_cache import MIN_RESERVE, ReservedLayer, reserve_room

B, HEADS, DIM = 3, 2, 4


def states(length: int, generator: torch.Generator, batch: int = B) -> tuple[torch.Tensor, torch.Tensor]:
    return (torch.randn(batch, HEADS, length, DIM, generator=generator),
            torch.randn(batch, HEADS, length, DIM, generator=generator))


def assert_same(reserved: ReservedLayer, plain: DynamicLayer):
    assert reserved.get_seq_length() == plain.get_seq_length()
    assert reserved.get_mask_sizes(1) == plain.get_mask_sizes(1)
    if plain.get_seq_length():
        assert torch.equal(reserved.keys, plain.keys) and torch.equal(reserved.values, plain.values)


def test_appends_write_into_the_reserved_room_and_match_dynamic_layer():
    generator = torch.Generator().manual_seed(0)
    reserved, plain = ReservedLayer(), DynamicLayer()
    first = states(5, generator)
    for layer in (reserved, plain):
        returned = layer.update(*first)
    assert torch.equal(returned[0], first[0])
    buffer = reserved.key_buffer.data_ptr()
    assert reserved.key_buffer.shape[-2] == 5 + MIN_RESERVE
    for step in range(MIN_RESERVE):  # every append fits in the room: no new buffer, no copy of the cache
        new = states(1, generator)
        keys, values = reserved.update(*new)
        expected = plain.update(*new)
        assert torch.equal(keys, expected[0]) and torch.equal(values, expected[1])
        assert reserved.key_buffer.data_ptr() == buffer, step
    new = states(2, generator)  # past the room: a larger buffer, same contents
    reserved.update(*new), plain.update(*new)
    assert reserved.key_buffer.data_ptr() != buffer and reserved.key_buffer.shape[-2] > reserved.keys.shape[-2]
    assert_same(reserved, plain)


@pytest.mark.parametrize("operation", ["crop", "reorder", "repeat", "select", "reset", "dtype"])
def test_operations_that_replace_or_shorten_the_tensors(operation):
    generator = torch.Generator().manual_seed(1)
    reserved, plain = ReservedLayer(), DynamicLayer()
    for length in (6, 1, 1):
        new = states(length, generator)
        reserved.update(*new), plain.update(*new)
    for layer in (reserved, plain):
        if operation == "crop":
            layer.crop(-3)  # the next append overwrites the cropped positions
        elif operation == "reorder":
            layer.reorder_cache(torch.tensor([2, 0, 0]))
        elif operation == "repeat":
            layer.batch_repeat_interleave(2)
        elif operation == "select":
            layer.batch_select_indices(torch.tensor([0, 2]))
        elif operation == "reset":
            layer.reset()
    assert_same(reserved, plain)
    batch = plain.keys.shape[0] if plain.keys is not None and plain.keys.dim() == 4 else B
    buffers = []
    for _ in range(3):
        new = states(2, generator, batch)
        if operation == "dtype":  # a wider dtype promotes as torch.cat does
            new = tuple(tensor.double() for tensor in new)
        reserved.update(*new), plain.update(*new)
        assert_same(reserved, plain)
        buffers.append(reserved.key_buffer.data_ptr())
    assert buffers[1:] == buffers[:-1]  # the first append reserves (if it must), the next ones write in place


def test_reserve_room_switches_only_empty_plain_dynamic_layers():
    cache = DynamicCache()
    reserve_room(cache)
    cache.update(*states(2, torch.Generator().manual_seed(2)), 0)
    assert type(cache.layers[0]) is ReservedLayer

    used = DynamicCache()
    used.update(*states(2, torch.Generator().manual_seed(3)), 0)
    reserve_room(used)
    assert type(used.layers[0]) is DynamicLayer  # holds keys already: left as it is

    both = EncoderDecoderCache(DynamicCache(), DynamicCache())
    reserve_room(both)
    both.self_attention_cache.update(*states(1, torch.Generator().manual_seed(4)), 0)
    both.cross_attention_cache.update(*states(1, torch.Generator().manual_seed(4)), 0)
    assert type(both.self_attention_cache.layers[0]) is ReservedLayer
    assert type(both.cross_attention_cache.layers[0]) is DynamicLayer  # written once: nothing to reserve


GLM = dict(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=300,
           pad_token_id=0, eos_token_id=1, sop_token_id=2, mask_token_ids=[3, 4, 5])
GPT2 = dict(vocab_size=99, n_embd=32, n_layer=2, n_head=4, n_positions=300, bos_token_id=98, eos_token_id=98)
T5 = dict(vocab_size=64, d_model=32, d_kv=8, d_ff=48, num_layers=2, num_heads=4, relative_attention_num_buckets=8,
          relative_attention_max_distance=20, decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
MODELS = {
    "gpt2": lambda: F.GPT2LMHeadModel(F.FlagAIGPT2Config(**GPT2)),
    "glm": lambda: F.GLMForConditionalGeneration(F.GLMConfig(**GLM)),
    "t5": lambda: F.T5ForConditionalGeneration(F.FlagAIT5Config(**T5)),
}


def plain_cache(name: str):
    return EncoderDecoderCache(DynamicCache(), DynamicCache()) if name == "t5" else DynamicCache()


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("beams", [1, 3])
def test_generate_equals_a_plain_dynamic_cache(name, beams):
    torch.manual_seed(0)
    model = MODELS[name]().eval()
    ids = torch.randint(6, 60, (2, 7), generator=torch.Generator().manual_seed(5))
    mask = torch.ones_like(ids)
    mask[1, :2] = 0  # a left-padded row
    # 150 new tokens: past the first buffer's room (prompt + MIN_RESERVE), so a buffer is replaced on the way.
    settings = dict(max_new_tokens=150, min_new_tokens=150, num_beams=beams, do_sample=False, output_scores=True,
                    return_dict_in_generate=True, pad_token_id=0)
    ours = model.generate(ids, attention_mask=mask, **settings)
    reference = model.generate(ids, attention_mask=mask, cache=plain_cache(name), **settings)
    assert torch.equal(ours.sequences, reference.sequences)
    for step, (a, b) in enumerate(zip(ours.scores, reference.scores)):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5, msg=f"step {step}")
    cache = ours.past_key_values
    self_attention = cache.self_attention_cache if name == "t5" else cache
    assert all(type(layer) is ReservedLayer for layer in self_attention.layers)


def test_glm_logits_to_keep():
    torch.manual_seed(0)
    model = MODELS["glm"]().eval()
    ids = torch.randint(6, 60, (2, 9), generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        full = model(ids, attention_mask=4).logits
        last = model(ids, attention_mask=4, logits_to_keep=1).logits
        picked = model(ids, attention_mask=4, logits_to_keep=torch.tensor([0, 5])).logits
    assert last.shape == (2, 1, 64)
    torch.testing.assert_close(last, full[:, -1:], rtol=0, atol=1e-6)
    torch.testing.assert_close(picked, full[:, [0, 5]], rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="logits_to_keep=0"):
        model(ids, attention_mask=4, labels=ids, logits_to_keep=1)
    with pytest.raises(ValueError, match="logits_to_keep=0"):
        model(ids, attention_mask=4, target_ids=ids, logits_to_keep=1)


def test_glm_generate_scores_only_the_last_position_of_the_prompt():
    torch.manual_seed(0)
    model = MODELS["glm"]().eval()
    shapes = []
    model.register_forward_hook(lambda module, args, output: shapes.append(tuple(output.logits.shape)))
    model.generate(torch.randint(6, 60, (1, 10)), max_new_tokens=3, do_sample=False)
    assert shapes == [(1, 1, 64)] * 3
