"""Shared layers: attention kernels agree, masks, head splitting, cache lengths, blocks compose as documented, norms, embeddings, activations."""

import pytest
import torch
from torch import nn
from traced_graphs import forward_graph
from transformers import DynamicCache, StaticCache
from transformers.cache_utils import DynamicSlidingWindowLayer
from transformers.models.t5.modeling_t5 import T5LayerNorm

from flagai_hf import FlagAIGPT2Config
from flagai_hf.modules.activations import get_activation
from flagai_hf.modules.attention import SelfAttention, attention_bias, cached_key_length, split_heads
from flagai_hf.modules.blocks import PostNormBlock, PreNormBlock
from flagai_hf.modules.embeddings import TransformerEmbeddings
from flagai_hf.modules.mlp import MLP
from flagai_hf.modules.norm import RMSNorm


class Config:
    _attn_implementation = "eager"


def reference_attention(attention: SelfAttention, x: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
    """Multi-head attention written out with plain tensor ops, independently of the module's code path."""
    batch, length, hidden = x.shape
    heads, dim = attention.num_heads, attention.head_dim
    q, k, v = attention.query_key_value(x).split(hidden, dim=-1)
    q, k, v = (t.reshape(batch, length, heads, dim).transpose(1, 2) for t in (q, k, v))
    scores = q @ k.transpose(-1, -2) / dim**0.5
    if keep is not None:
        scores = scores.masked_fill(~keep, float("-inf"))
    out = (scores.softmax(-1) @ v).transpose(1, 2).reshape(batch, length, hidden)
    return attention.dense(out)


@pytest.mark.parametrize("impl", ["eager", "sdpa"])
def test_self_attention_matches_reference(impl):
    config = Config()
    config._attn_implementation = impl
    attention = SelfAttention(config, hidden_size=24, num_heads=3).eval()
    x = torch.randn(2, 5, 24)
    padding = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    with torch.no_grad():
        unmasked, _ = attention(x)
        masked, _ = attention(x, attention_bias(padding, x.dtype))
    torch.testing.assert_close(unmasked, reference_attention(attention, x, None), atol=1e-6, rtol=0)
    torch.testing.assert_close(masked, reference_attention(attention, x, padding.bool()[:, None, None, :]),
                               atol=1e-6, rtol=0)


def test_compiled_single_query_attention_is_written_out():
    """Compiled CPU inference with one query (a decoding step) under "sdpa" runs the written-out attention, which
    inductor fuses, instead of sdpa's opaque kernel; longer queries keep sdpa. Both equal the reference."""
    config = Config()
    config._attn_implementation = "sdpa"
    attention = SelfAttention(config, hidden_size=24, num_heads=3).eval()
    for length, uses_sdpa in ((1, False), (4, True)):
        x = torch.randn(2, length, 24)
        with torch.no_grad():
            assert ("scaled_dot_product" in forward_graph(attention, x)) == uses_sdpa
            out, _ = torch.compile(attention, fullgraph=True)(x)  # inductor's generated code
        torch.testing.assert_close(out, reference_attention(attention, x, None), atol=1e-6, rtol=0)


def test_attention_bias_shapes_and_fast_path():
    assert attention_bias(None, torch.float32) is None
    assert attention_bias(torch.ones(2, 4), torch.float32) is None  # nothing masked: the kernels' fast path
    bias = attention_bias(torch.tensor([[1, 0]]), torch.float32)
    assert bias.shape == (1, 1, 1, 2) and bias[0, 0, 0, 0] == 0 and bias[0, 0, 0, 1] == torch.finfo(torch.float32).min
    assert attention_bias(torch.tril(torch.ones(1, 3, 3)), torch.bfloat16).shape == (1, 1, 3, 3)
    assert attention_bias(torch.ones(1, 2, 3, 3, dtype=torch.bool).tril(), torch.float32).shape == (1, 2, 3, 3)
    with pytest.raises(ValueError, match="attention_mask must be 2-D"):
        attention_bias(torch.ones(1, 1, 1, 1, 1), torch.float32)


def test_split_heads_gives_views_of_each_part():
    fused = torch.randn(2, 5, 3 * 4 * 6)  # (B, T, 3 * heads * head_dim)
    query, key, value = split_heads(fused, 3, num_heads=4, head_dim=6)
    assert query.shape == key.shape == value.shape == (2, 4, 5, 6)
    assert query.data_ptr() == fused.data_ptr()  # views, no copy
    assert torch.equal(value[1, 2, 3], fused[1, 3, 2 * 24 + 2 * 6: 2 * 24 + 3 * 6])  # part 2, head 2, position 3
    with pytest.raises(ValueError, match="width 72 does not hold 2 x 4 heads x 6"):
        split_heads(fused, 2, num_heads=4, head_dim=6)


def test_cached_key_length_for_dynamic_static_and_sliding_caches():
    keys = torch.zeros(1, 2, 3, 4)  # (B, heads, T, head_dim): 3 cached positions
    assert cached_key_length(None, 5) == 5
    dynamic = DynamicCache()
    dynamic.update(keys, keys, 0)
    assert cached_key_length(dynamic, 1) == 4
    static = StaticCache(config=FlagAIGPT2Config(n_layer=1, n_embd=8, n_head=2), max_cache_len=16)
    static.update(keys, keys, 0)
    assert cached_key_length(static, 1) == 16  # unwritten slots included: the caller masks them
    sliding = DynamicCache()
    sliding.layers = [DynamicSlidingWindowLayer(sliding_window=2)]
    sliding.update(keys, keys, 0)
    with pytest.raises(ValueError, match="drops its oldest keys"):
        cached_key_length(sliding, 1)


def test_blocks_compose_as_documented():
    hidden = 16
    attention = SelfAttention(Config(), hidden, 2)
    mlp = MLP(hidden, 32, nn.GELU())
    norm_a, norm_b = nn.LayerNorm(hidden), nn.LayerNorm(hidden)
    x = torch.randn(2, 3, hidden)
    post = PostNormBlock(attention, mlp, norm_a, norm_b).eval()
    pre = PreNormBlock(attention, mlp, norm_a, norm_b).eval()
    with torch.no_grad():
        h = norm_a(x + attention(x)[0])
        torch.testing.assert_close(post(x), norm_b(h + mlp(h)))
        h = x + attention(norm_a(x))[0]
        torch.testing.assert_close(pre(x), h + mlp(norm_b(h)))


def test_rms_norm_matches_t5_layer_norm():
    ours, theirs = RMSNorm(8, eps=1e-6), T5LayerNorm(8, eps=1e-6)
    with torch.no_grad():
        ours.weight.uniform_(0.5, 1.5)
        theirs.weight.copy_(ours.weight)
    x = torch.randn(3, 4, 8) * 3
    torch.testing.assert_close(ours(x), theirs(x))
    torch.testing.assert_close(ours(x), ours.weight * x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6))


def test_embeddings_sum_and_errors():
    embeddings = TransformerEmbeddings(10, 4, max_position_embeddings=6, type_vocab_size=2).eval()
    ids, types = torch.tensor([[1, 2, 3]]), torch.tensor([[0, 1, 1]])
    expected = (embeddings.word_embeddings(ids) + embeddings.position_embeddings(torch.arange(3))[None]
                + embeddings.token_type_embeddings(types))
    torch.testing.assert_close(embeddings(ids, types), expected)
    shifted = embeddings(ids, types, past_length=2)  # positions continue after a cache
    torch.testing.assert_close(shifted - expected, (embeddings.position_embeddings(torch.arange(2, 5))
                                                    - embeddings.position_embeddings(torch.arange(3)))[None])
    with pytest.raises(ValueError, match=r"input_ids contains -1, outside \[0, 10\)"):
        embeddings(torch.tensor([[-1]]))
    with pytest.raises(ValueError, match=r"7 positions \(2 cached \+ 5 new\).*max_position_embeddings=6"):
        embeddings(torch.ones(1, 5, dtype=torch.long), past_length=2)
    with pytest.raises(ValueError, match="position_ids contains 6"):
        embeddings(ids, position_ids=torch.tensor([[0, 1, 6]]))
    gpt_style = TransformerEmbeddings(10, 4, max_position_embeddings=6)
    with pytest.raises(ValueError, match="no token-type embeddings"):
        gpt_style(ids, types)


def test_activation_names():
    x = torch.linspace(-3, 3, 7)
    torch.testing.assert_close(get_activation("gelu")(x), nn.functional.gelu(x))
    torch.testing.assert_close(get_activation("gelu_impl")(x), nn.functional.gelu(x, approximate="tanh"))
    with pytest.raises(ValueError, match="Unknown activation 'swishy'; known activations: .*gelu"):
        get_activation("swishy")
