"""GLM: an independent forward written from the spec's equations, mask forms, mems and cache, checkpoints, errors."""

import json
import math

import pytest
import torch
from torch import nn

from flagai_hf.models.glm import (
    GLMConfig,
    GLMForConditionalGeneration,
    GLMForMultipleChoice,
    GLMForSequenceClassification,
    GLMModel,
)
from flagai_hf.models.glm.modeling_flagai_glm import glm_attention_mask

TINY = dict(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=40,
            pad_token_id=0, eos_token_id=1, sop_token_id=2, mask_token_ids=[3, 4, 5])


def tiny_model(cls=GLMForConditionalGeneration, **overrides):
    return cls(GLMConfig(**{**TINY, **overrides})).eval()


def thudm_state_dict(model: GLMForConditionalGeneration) -> dict:
    """The model's weights under THUDM/FlagAI names (the spec's §9), written out by hand."""
    ours = model.glm.state_dict()
    names = {"embeddings.word_embeddings.weight": "word_embeddings.weight",
             "embeddings.position_embeddings.weight": "transformer.position_embeddings.weight",
             "embeddings.block_position_embeddings.weight": "transformer.block_position_embeddings.weight",
             "final_layernorm.weight": "transformer.final_layernorm.weight",
             "final_layernorm.bias": "transformer.final_layernorm.bias"}
    layer_names = {"attention_norm": "input_layernorm", "attention.query_key_value": "attention.query_key_value",
                   "attention.dense": "attention.dense", "mlp_norm": "post_attention_layernorm",
                   "mlp.dense_h_to_4h": "mlp.dense_h_to_4h", "mlp.dense_4h_to_h": "mlp.dense_4h_to_h"}
    state = {}
    for name, tensor in ours.items():
        if name in names:
            state[names[name]] = tensor.clone()
            continue
        _, index, rest = name.split(".", 2)
        module, param = rest.rsplit(".", 1)
        state[f"transformer.layers.{index}.{layer_names[module]}.{param}"] = tensor.clone()
    return state


def spec_forward(sd: dict, config: dict, input_ids, position_ids, mask, mems=None, gelu="tanh"):
    """GLM's forward pass from the spec (§3): plain tensor operations on THUDM-named weights."""
    H, n = config["hidden_size"], config["num_attention_heads"]
    d, L = H // n, config["num_hidden_layers"]
    layer_norm = lambda x, p: nn.functional.layer_norm(x, (H,), sd[p + ".weight"], sd[p + ".bias"], 1e-5)  # noqa
    linear = lambda x, p: x @ sd[p + ".weight"].T + sd[p + ".bias"]  # noqa: E731
    x = sd["word_embeddings.weight"][input_ids] + sd["transformer.position_embeddings.weight"][position_ids[:, 0]] \
        + sd["transformer.block_position_embeddings.weight"][position_ids[:, 1]]
    b, q, _ = x.shape
    hiddens = [x]
    for i in range(L):
        p = f"transformer.layers.{i}."
        h = layer_norm(x, p + "input_layernorm")
        full = torch.cat([layer_norm(mems[i], p + "input_layernorm"), h], 1) if mems is not None else h
        qkv = linear(full, p + "attention.query_key_value")
        query, key, value = qkv[..., :H], qkv[..., H:2 * H], qkv[..., 2 * H:]
        query = query[:, -q:]
        split = lambda t: t.reshape(b, t.shape[1], n, d).permute(0, 2, 1, 3)  # noqa: E731
        scores = split(query) @ (split(key).transpose(-1, -2) / math.sqrt(d))
        m = mask.float()
        scores = scores * m + (-65504.0) * (1.0 - m)
        context = (scores.softmax(-1) @ split(value)).permute(0, 2, 1, 3).reshape(b, q, H)
        x = x + linear(context, p + "attention.dense")
        inner = linear(layer_norm(x, p + "post_attention_layernorm"), p + "mlp.dense_h_to_4h")
        if gelu == "tanh":
            inner = 0.5 * inner * (1 + torch.tanh(0.7978845608028654 * inner * (1 + 0.044715 * inner * inner)))
        else:
            inner = 0.5 * inner * (1 + torch.erf(inner / math.sqrt(2)))
        x = x + linear(inner, p + "mlp.dense_4h_to_h")
        hiddens.append(x)
    final = layer_norm(x, "transformer.final_layernorm")
    logits = final @ sd["word_embeddings.weight"].T
    new_mems = [torch.cat([old, new], 1) for old, new in zip(mems, hiddens)] if mems is not None else hiddens
    return logits, new_mems


def spec_sep_mask(batch, q, m, sep):
    i, j = torch.arange(q)[:, None], torch.arange(q)[None, :]
    block = ((j <= i) | (j < sep)).float().expand(batch, q, q)
    return torch.cat([torch.ones(batch, q, m), block], -1)[:, None]


def blank_filling_positions(batch, context, generated, mask_position):
    positions = torch.cat([torch.arange(context), torch.full((generated,), mask_position)])
    blocks = torch.cat([torch.zeros(context, dtype=torch.long), torch.arange(1, generated + 1)])
    return torch.stack([positions, blocks])[None].expand(batch, 2, context + generated)


@pytest.mark.parametrize("impl", ["eager", "sdpa"])
@pytest.mark.parametrize("gelu", ["tanh", "erf"])
def test_forward_loss_and_mems_match_the_spec_equations(impl, gelu):
    model = tiny_model(hidden_act="gelu_tanh" if gelu == "tanh" else "gelu", attn_implementation=impl)
    sd = thudm_state_dict(model)
    ids = torch.randint(6, 64, (2, 9))
    positions = blank_filling_positions(2, 6, 3, mask_position=4)
    labels = torch.randint(6, 64, (2, 9))
    with torch.no_grad():
        out = model(input_ids=ids, position_ids=positions, attention_mask=torch.tensor([6, 6]), labels=labels,
                    return_memory=True)
    logits, mems = spec_forward(sd, TINY, ids, positions, spec_sep_mask(2, 9, 0, 6), gelu=gelu)
    torch.testing.assert_close(out.logits, logits, atol=1e-5, rtol=0)
    torch.testing.assert_close(out.loss, nn.functional.cross_entropy(logits.reshape(-1, 64), labels.reshape(-1)),
                               atol=1e-5, rtol=0)
    assert len(out.mems) == 3
    for ours, expected in zip(out.mems, mems):
        torch.testing.assert_close(ours, expected, atol=1e-5, rtol=0)

    # A second segment with those memories: every query sees every memory position.
    next_ids = torch.randint(6, 64, (2, 4))
    next_positions = torch.stack([torch.arange(9, 13), torch.zeros(4, dtype=torch.long)])[None].expand(2, 2, 4)
    with torch.no_grad():
        second = model(input_ids=next_ids, position_ids=next_positions, attention_mask=0, mems=out.mems)
    logits2, mems2 = spec_forward(sd, TINY, next_ids, next_positions, spec_sep_mask(2, 4, 9, 0), mems=mems, gelu=gelu)
    torch.testing.assert_close(second.logits, logits2, atol=1e-5, rtol=0)
    assert [m.shape[1] for m in second.mems] == [13, 13, 13]
    for ours, expected in zip(second.mems, mems2):
        torch.testing.assert_close(ours, expected, atol=1e-5, rtol=0)


def test_mask_forms():
    model = tiny_model(GLMModel)
    ids = torch.randint(6, 64, (2, 6))
    with torch.no_grad():
        sep = model(input_ids=ids, attention_mask=torch.tensor([3, 5])).logits
        four_d = model(input_ids=ids, attention_mask=torch.stack([spec_sep_mask(1, 6, 0, 3)[0],
                                                                  spec_sep_mask(1, 6, 0, 5)[0]]).long()).logits
        scalar = model(input_ids=ids, attention_mask=3).logits
        causal = model(input_ids=ids).logits
        causal_explicit = model(input_ids=ids, attention_mask=0).logits
    torch.testing.assert_close(sep, four_d, atol=1e-6, rtol=0)
    torch.testing.assert_close(scalar[0], sep[0], atol=1e-6, rtol=0)
    torch.testing.assert_close(causal, causal_explicit)

    # A 2-D padding mask is bidirectional over the non-pad keys: pads change nothing for the real tokens.
    padded = torch.cat([ids, torch.zeros(2, 3, dtype=torch.long)], 1)
    padding = torch.cat([torch.ones(2, 6), torch.zeros(2, 3)], 1).long()
    with torch.no_grad():
        bidirectional = model(input_ids=ids, attention_mask=6).logits
        with_pads = model(input_ids=padded, attention_mask=padding).logits
    torch.testing.assert_close(with_pads[:, :6], bidirectional, atol=1e-6, rtol=0)
    keep = glm_attention_mask(padding, 2, 9, 0, "cpu")
    assert keep.shape == (2, 1, 9, 9) and keep[:, :, :, 6:].sum() == 0 and keep[:, :, :, :6].all()


@pytest.mark.parametrize("impl", ["eager", "sdpa"])
def test_cache_step_by_step_equals_one_shot(impl):
    model = tiny_model(attn_implementation=impl)
    context, generated = 7, 5
    ids = torch.randint(6, 64, (2, context + generated))
    positions = blank_filling_positions(2, context, generated, mask_position=3)
    with torch.no_grad():
        one_shot = model(input_ids=ids, position_ids=positions, attention_mask=context).logits
        out = model(input_ids=ids[:, :context], position_ids=positions[:, :, :context], attention_mask=context,
                    use_cache=True)
        steps = [out.logits]
        for t in range(context, context + generated):
            out = model(input_ids=ids[:, t:t + 1], position_ids=positions[:, :, t:t + 1], attention_mask=0,
                        cache=out.cache, use_cache=True)
            steps.append(out.logits)
    torch.testing.assert_close(torch.cat(steps, 1), one_shot, atol=1e-5, rtol=0)


def test_eager_equals_sdpa():
    model = tiny_model()
    ids = torch.randint(6, 64, (3, 8))
    with torch.no_grad():
        results = []
        for impl in ("sdpa", "eager"):
            model.set_attn_implementation(impl)
            results.append(model(input_ids=ids, attention_mask=torch.tensor([2, 8, 0])).logits)
    torch.testing.assert_close(results[0], results[1], atol=1e-6, rtol=0)


def test_flagai_seq2seq_loss_form():
    model = tiny_model()
    ids = torch.randint(6, 64, (2, 6))
    targets = torch.randint(6, 64, (2, 6))
    loss_mask = torch.tensor([[0, 0, 0, 1, 1, 1], [0, 0, 0, 0, 1, 1]])
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=3, target_ids=targets, loss_mask=loss_mask)
        per_token = nn.functional.cross_entropy(out.logits.reshape(-1, 64), targets.reshape(-1), reduction="none")
    torch.testing.assert_close(out.loss, (per_token * loss_mask.reshape(-1)).sum() / loss_mask.sum())
    labels = targets.masked_fill(loss_mask == 0, -100)
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=ids, attention_mask=3, labels=labels).loss, out.loss)


def test_multiple_choice_and_classification_heads():
    choice_model = tiny_model(GLMForMultipleChoice)
    ids = torch.randint(6, 64, (1, 8))
    choice_ids = torch.tensor([[[10, 11], [12, -100]]])
    choice_indices = torch.tensor([[[5, 6], [7, -100]]])
    with torch.no_grad():
        out = choice_model(input_ids=ids, attention_mask=5, choice_ids=choice_ids, choice_indices=choice_indices,
                           labels=torch.tensor([1]))
        log_probs = choice_model.glm(input_ids=ids, attention_mask=5).logits.log_softmax(-1)[0]
    expected = torch.stack([log_probs[5, 10] + log_probs[6, 11], log_probs[7, 12]])
    torch.testing.assert_close(out.logits[0], expected)
    torch.testing.assert_close(out.loss, nn.functional.cross_entropy(expected[None], torch.tensor([1])))

    classifier = tiny_model(GLMForSequenceClassification, num_labels=3)
    out = classifier(input_ids=ids, attention_mask=8, labels=torch.tensor([2]))
    assert out.logits.shape == (1, 3) and out.loss.ndim == 0


def test_thudm_and_flagai_folders_load(tmp_path):
    model = tiny_model()
    sd = thudm_state_dict(model)
    flagai_config = {"num_layers": 2, "vocab_size": 64, "hidden_size": 32, "num_attention_heads": 4,
                     "embedding_dropout_prob": 0.1, "attention_dropout_prob": 0.1, "output_dropout_prob": 0.1,
                     "max_sequence_length": 40, "max_memory_length": 0, "checkpoint_activations": False,
                     "checkpoint_num_layers": 1, "parallel_output": True, "relative_encoding": False,
                     "block_position_encoding": True, "output_predict": True, "spell_length": None,
                     "spell_func": "lstm", "attention_scale": 1.0}
    (tmp_path / "GLM-large-ch").mkdir()
    (tmp_path / "GLM-large-ch" / "config.json").write_text(json.dumps(flagai_config))
    torch.save({"module": {"model." + k: v for k, v in sd.items()}}, tmp_path / "GLM-large-ch" / "pytorch_model.bin")
    hub_config = {**flagai_config, "model_type": "glm", "architectures": ["GLMModel"]}
    (tmp_path / "hub").mkdir()
    (tmp_path / "hub" / "config.json").write_text(json.dumps(hub_config))
    torch.save({"glm." + k: v for k, v in sd.items()}, tmp_path / "hub" / "pytorch_model.bin")

    ids = torch.randint(6, 64, (2, 6))
    with torch.no_grad():
        expected = model(input_ids=ids, attention_mask=3).logits
        for name in ("GLM-large-ch", "hub"):
            loaded = GLMForConditionalGeneration.from_pretrain(tmp_path, name, pad_token_id=0, eos_token_id=1,
                                                               sop_token_id=2, mask_token_ids=[3, 4, 5])
            torch.testing.assert_close(loaded(input_ids=ids, attention_mask=3).logits, expected)


def test_bad_input_gives_clear_errors():
    model = tiny_model()
    ids = torch.randint(6, 64, (2, 5))
    with pytest.raises(ValueError, match=r"position_ids contains 41, outside \[0, 41\)"):
        model(input_ids=ids, position_ids=torch.full((2, 2, 5), 41))
    with pytest.raises(ValueError, match=r"position_ids must be \(batch, 2, 5\)"):
        model(input_ids=ids, position_ids=torch.zeros(2, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="mems must be 3 tensors"):
        model(input_ids=ids, mems=[torch.zeros(2, 4, 32)] * 2)
    with pytest.raises(ValueError, match="mems are for batch 1"):
        model(input_ids=ids, mems=[torch.zeros(1, 4, 32)] * 3)
    with pytest.raises(ValueError, match="one sep per sample: expected 2 values, got 3"):
        model(input_ids=ids, attention_mask=torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match=r"2-D GLM attention_mask is a key-padding mask"):
        model(input_ids=ids, attention_mask=torch.ones(2, 4))
    with pytest.raises(ValueError, match="input_ids contains 64"):
        model(input_ids=torch.full((1, 2), 64))


def test_from_pretrained_on_a_thudm_hub_folder_converts_and_takes_overrides(tmp_path):
    model = tiny_model()
    hub_config = {"num_layers": 2, "vocab_size": 64, "hidden_size": 32, "num_attention_heads": 4,
                  "max_sequence_length": 40, "model_type": "glm", "architectures": ["GLMModel"],
                  "output_predict": True, "block_position_encoding": True, "pad_token_id": 0, "eos_token_id": 1,
                  "sop_token_id": 2, "mask_token_ids": [3, 4, 5]}
    (tmp_path / "hub").mkdir()
    (tmp_path / "hub" / "config.json").write_text(json.dumps(hub_config))
    torch.save(thudm_state_dict(model), tmp_path / "hub" / "pytorch_model.bin")  # bare names, as the Hub saved them
    ids = torch.randint(6, 64, (2, 6))
    loaded = GLMForConditionalGeneration.from_pretrained(tmp_path / "hub")
    with torch.no_grad():
        torch.testing.assert_close(loaded(input_ids=ids, attention_mask=3).logits,
                                   model(input_ids=ids, attention_mask=3).logits)
    exact_gelu = GLMForConditionalGeneration.from_pretrained(tmp_path / "hub", hidden_act="gelu")
    assert exact_gelu.config.hidden_act == "gelu"
    with torch.no_grad():
        assert not torch.allclose(exact_gelu(input_ids=ids).logits, loaded(input_ids=ids).logits, atol=1e-6)
