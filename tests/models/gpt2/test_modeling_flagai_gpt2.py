"""GPT2 family: parity with transformers' GPT2LMHeadModel (same weights; transformers and FlagAI checkpoint layouts),
the checkpoint layout decision, FlagAI's API, and clear errors."""

import json
import logging

import pytest
import torch
import transformers

import flagai_hf
from flagai_hf import FlagAIGPT2Config, GPT2LMHeadModel, GPT2Model
from flagai_hf.models.gpt2.convert_flagai_gpt2 import GPT2_FLAGAI_LAYOUT, GPT2_KEYMAP, checkpoint_layout

TINY = dict(vocab_size=99, n_embd=32, n_layer=2, n_head=4, n_positions=64, bos_token_id=98, eos_token_id=98)


def reference_model(impl="sdpa", **overrides) -> transformers.GPT2LMHeadModel:
    return transformers.GPT2LMHeadModel(transformers.GPT2Config(**{**TINY, **overrides},
                                                                attn_implementation=impl)).eval()


def padded_batch():
    """Right padding (row 1), left padding (row 2); labels are -100 on the padding and on row 2's first real token
    (predicted from a padding position, whose output is don't-care)."""
    ids = torch.randint(0, TINY["vocab_size"], (3, 11))
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    mask[2, :4] = 0
    labels = ids.masked_fill(mask == 0, -100)
    labels[2, 4] = -100
    return dict(input_ids=ids, attention_mask=mask), labels


def flagai_state_dict(reference: transformers.GPT2LMHeadModel) -> dict:
    """A FlagAI GPT2 checkpoint of ``reference``: nn.Linear layout, plus FlagAI's unused random ``lm_head``."""
    state = {}
    for name, tensor in reference.state_dict().items():
        if name.endswith(("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")):
            tensor = tensor.t()
        state[name] = tensor.clone()
    state["lm_head.weight"] = torch.randn_like(state["lm_head.weight"])
    return state


def write_flagai_folder(folder, state_dict, **config_overrides):
    folder.mkdir(parents=True)
    config = {"vocab_size": 99, "n_embd": 32, "n_layer": 2, "n_head": 4, "n_positions": 64, "n_inner": None,
              "activation_function": "gelu_new", "checkpoint_activations": False, **config_overrides}
    (folder / "config.json").write_text(json.dumps(config))
    torch.save({"module": state_dict}, folder / "pytorch_model.bin")


def assert_same_on_real_tokens(ours, reference, batch, labels, atol=1e-5):
    """Logits at real tokens and the loss agree (outputs at padding positions are don't-care)."""
    with torch.no_grad():
        expected = reference(**batch, labels=labels)
        actual = ours(**batch, labels=labels)
    real = batch["attention_mask"].bool()
    torch.testing.assert_close(actual.logits[real], expected.logits[real], atol=atol, rtol=0)
    torch.testing.assert_close(actual.loss, expected.loss, atol=atol, rtol=0)
    return (actual.logits[real] - expected.logits[real]).abs().max().item()


@pytest.mark.parametrize("impl", ["eager", "sdpa"])
@pytest.mark.parametrize("route", ["from_pretrain", "from_pretrained", "auto"])
def test_parity_from_a_transformers_folder(tmp_path, impl, route):
    reference = reference_model(impl)
    reference.save_pretrained(tmp_path / "gpt2")
    if route == "from_pretrain":
        ours = GPT2Model.from_pretrain(tmp_path, "gpt2", attn_implementation=impl)
    elif route == "from_pretrained":
        ours = GPT2LMHeadModel.from_pretrained(tmp_path / "gpt2", attn_implementation=impl)
    else:  # our native folder, through transformers' Auto class
        GPT2Model.from_pretrained(tmp_path / "gpt2").save_pretrained(tmp_path / "native")
        ours = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "native", attn_implementation=impl)
        assert type(ours) is GPT2LMHeadModel
    assert ours.config._attn_implementation == impl
    assert ours.lm_head.weight.data_ptr() == ours.embeddings.word_embeddings.weight.data_ptr()  # tied
    batch, labels = padded_batch()
    assert_same_on_real_tokens(ours, reference, batch, labels)


@pytest.mark.parametrize("impl", ["eager", "sdpa"])
def test_parity_from_a_flagai_linear_layout_folder(tmp_path, impl):
    reference = reference_model(impl)
    write_flagai_folder(tmp_path / "GPT2-base-en", flagai_state_dict(reference))
    ours = GPT2Model.from_pretrain(tmp_path, "GPT2-base-en", attn_implementation=impl)
    assert ours.config.tie_word_embeddings  # FlagAI's unused lm_head was dropped, not loaded untied
    batch, labels = padded_batch()
    assert_same_on_real_tokens(ours, reference, batch, labels)
    # FlagAI folders also go through transformers-style from_pretrained.
    again = GPT2Model.from_pretrained(tmp_path / "GPT2-base-en", attn_implementation=impl)
    assert_same_on_real_tokens(again, reference, batch, labels)


def test_unpadded_batch_and_hidden_states_match_transformers(tmp_path):
    reference = reference_model()
    reference.save_pretrained(tmp_path / "m")
    ours = GPT2Model.from_pretrain(tmp_path, "m")
    ids = torch.randint(0, 99, (2, 13))
    with torch.no_grad():
        expected = reference(input_ids=ids, labels=ids, output_hidden_states=True)
        actual = ours(input_ids=ids, labels=ids, output_hidden_states=True)
        plain = ours(input_ids=ids)
    torch.testing.assert_close(actual.logits, expected.logits, atol=1e-5, rtol=0)
    torch.testing.assert_close(actual.loss, expected.loss, atol=1e-5, rtol=0)
    assert len(actual.hidden_states) == len(expected.hidden_states) == 3
    for mine, theirs in zip(actual.hidden_states, expected.hidden_states):
        torch.testing.assert_close(mine, theirs, atol=1e-5, rtol=0)
    # Without output_hidden_states, FlagAI's contract: hidden_states is the last hidden state (B, T, h).
    torch.testing.assert_close(plain.hidden_states, expected.hidden_states[-1], atol=1e-5, rtol=0)
    assert plain.cache is None


def test_attention_scaling_variants_match_transformers(tmp_path):
    reference = reference_model("eager", scale_attn_weights=False, scale_attn_by_inverse_layer_idx=True)
    reference.save_pretrained(tmp_path / "m")
    ours = GPT2Model.from_pretrain(tmp_path, "m", attn_implementation="eager")
    batch, labels = padded_batch()
    assert_same_on_real_tokens(ours, reference, batch, labels)


def test_loss_ignores_minus_100_and_is_the_shifted_cross_entropy():
    model = GPT2Model(FlagAIGPT2Config(**TINY)).eval()
    ids = torch.randint(0, 99, (2, 9))
    labels = ids.clone()
    labels[0, 5:] = -100
    with torch.no_grad():
        out = model(input_ids=ids, labels=labels)
    log_probs = out.logits[:, :-1].log_softmax(-1)
    picked = [-log_probs[b, t, labels[b, t + 1]] for b in range(2) for t in range(8) if labels[b, t + 1] != -100]
    torch.testing.assert_close(out.loss, torch.stack(picked).mean())


def test_eager_equals_sdpa_with_padding_and_cache():
    model = GPT2Model(FlagAIGPT2Config(**TINY)).eval()
    batch, _ = padded_batch()
    with torch.no_grad():
        sdpa = model(**batch).logits
        model.set_attn_implementation("eager")
        eager = model(**batch).logits
    real = batch["attention_mask"].bool()
    torch.testing.assert_close(sdpa[real], eager[real], atol=1e-6, rtol=0)


@pytest.mark.parametrize("impl", ["eager", "sdpa"])
def test_incremental_decoding_with_a_cache_equals_one_pass(impl):
    """Prefill 5 tokens, then 3 at once, then 1: the logits equal a single pass over all 9 tokens."""
    model = GPT2Model(FlagAIGPT2Config(**TINY, attn_implementation=impl)).eval()
    ids = torch.randint(0, 99, (2, 9))
    with torch.no_grad():
        full = model(input_ids=ids).logits
        first = model(input_ids=ids[:, :5], use_cache=True)
        second = model(input_ids=ids[:, 5:8], past_key_values=first.cache)  # FlagAI's name for the cache
        third = model(input_ids=ids[:, 8:], cache=second.cache)
    torch.testing.assert_close(torch.cat([first.logits, second.logits, third.logits], 1), full, atol=1e-5, rtol=0)
    assert third.cache.get_seq_length() == 9


def test_native_round_trip_and_untied_output_embedding(tmp_path):
    model = GPT2Model(FlagAIGPT2Config(**TINY)).eval()
    model.save_pretrained(tmp_path / "tied")
    ids = torch.randint(0, 99, (2, 7))
    for loaded in (GPT2Model.from_pretrained(tmp_path / "tied"), GPT2Model.from_pretrain(tmp_path, "tied")):
        with torch.no_grad():
            assert torch.equal(loaded(input_ids=ids).logits, model(input_ids=ids).logits)

    untied = GPT2Model(FlagAIGPT2Config(**TINY, tie_word_embeddings=False)).eval()
    assert untied.lm_head.weight.data_ptr() != untied.embeddings.word_embeddings.weight.data_ptr()
    untied.save_pretrained(tmp_path / "untied")
    for loaded in (GPT2Model.from_pretrained(tmp_path / "untied"), GPT2Model.from_pretrain(tmp_path, "untied")):
        assert torch.equal(loaded.lm_head.weight, untied.lm_head.weight)
        with torch.no_grad():
            assert torch.equal(loaded(input_ids=ids).logits, untied(input_ids=ids).logits)


# --- the checkpoint layout ----------------------------------------------------------------------------------------


def test_layout_is_decided_once_per_checkpoint():
    reference = reference_model()
    conv1d = reference.state_dict()
    linear = flagai_state_dict(reference)
    assert checkpoint_layout(conv1d) == "conv1d"
    assert checkpoint_layout(linear) == "linear"
    assert checkpoint_layout(GPT2Model(FlagAIGPT2Config(**TINY)).state_dict()) is None  # our names

    # Both layouts convert to the same tensors (attn.c_proj is square: it must follow the checkpoint's layout).
    from_conv1d, from_linear = GPT2_KEYMAP.convert(conv1d), GPT2_KEYMAP.convert(linear)
    assert "lm_head.weight" not in from_linear  # FlagAI's unused head
    for name, tensor in from_linear.items():
        assert torch.equal(tensor, from_conv1d[name]), name
    torch.testing.assert_close(from_conv1d["layers.0.attention.dense.weight"],
                               reference.transformer.h[0].attn.c_proj.weight.t())
    # A transformers checkpoint keeps its lm_head (identical to wte when tied).
    assert torch.equal(from_conv1d["lm_head.weight"], from_conv1d["embeddings.word_embeddings.weight"])

    mixed = dict(conv1d)
    mixed["transformer.h.1.attn.c_attn.weight"] = conv1d["transformer.h.1.attn.c_attn.weight"].t()
    with pytest.raises(ValueError, match="mixes Conv1D and Linear layouts"):
        GPT2_KEYMAP.convert(mixed)
    broken = dict(conv1d)
    broken["transformer.h.0.attn.c_attn.weight"] = torch.zeros(32, 32)
    with pytest.raises(ValueError, match=r"transformer.h.0.attn.c_attn.weight has shape \(32, 32\)"):
        GPT2_KEYMAP.convert(broken)


def test_old_transformers_checkpoints_with_mask_buffers_load(tmp_path):
    reference = reference_model()
    state = {name: tensor.clone() for name, tensor in reference.state_dict().items()}
    for index in range(TINY["n_layer"]):
        state[f"transformer.h.{index}.attn.bias"] = torch.ones(1, 1, 64, 64).tril().bool()
        state[f"transformer.h.{index}.attn.masked_bias"] = torch.tensor(-1e4)
    folder = tmp_path / "old"
    folder.mkdir()
    reference.config.to_json_file(folder / "config.json")
    torch.save(state, folder / "pytorch_model.bin")
    ours = GPT2Model.from_pretrain(tmp_path, "old")
    batch, labels = padded_batch()
    assert_same_on_real_tokens(ours, reference, batch, labels)


def test_written_flagai_layout_has_flagai_names_and_loads_back(tmp_path):
    reference = reference_model()
    model = GPT2Model(FlagAIGPT2Config(**TINY)).eval()
    config, state = GPT2_FLAGAI_LAYOUT(model)
    assert set(state) == set(flagai_state_dict(reference))  # exactly the names FlagAI's GPT2Model saves
    assert state["transformer.h.0.attn.c_attn.weight"].shape == (96, 32)  # nn.Linear layout
    assert torch.equal(state["lm_head.weight"], state["transformer.wte.weight"])
    assert {"n_head", "n_embd", "n_layer", "n_positions", "vocab_size", "n_inner", "activation_function",
            "checkpoint_activations"} <= set(config)
    write_flagai_folder(tmp_path / "flagai", state, **config)
    loaded = GPT2Model.from_pretrain(tmp_path, "flagai")
    ids = torch.randint(0, 99, (2, 7))
    with torch.no_grad():
        assert torch.equal(loaded(input_ids=ids).logits, model(input_ids=ids).logits)
    with pytest.raises(ValueError, match="untied lm_head"):
        GPT2_FLAGAI_LAYOUT(GPT2Model(FlagAIGPT2Config(**TINY, tie_word_embeddings=False)))


# --- FlagAI's API ---------------------------------------------------------------------------------------------------


def test_init_from_json_with_a_flagai_config_and_ignored_inputs(tmp_path, caplog):
    config_file = tmp_path / "config.json"
    config_file.write_text(json.dumps({"vocab_size": 99, "n_embd": 32, "n_layer": 2, "n_head": 4, "n_positions": 64,
                                       "n_inner": None, "activation_function": "gelu_new",
                                       "checkpoint_activations": False, "hidden_size": 32}))
    model = GPT2Model.init_from_json(config_file, n_inner=48).eval()
    assert model.config.num_hidden_layers == 2 and model.config.hidden_size == 32
    assert model.config.max_position_embeddings == 64 and model.config.num_attention_heads == 4
    assert model.layers[0].mlp.dense_h_to_4h.out_features == 48
    assert model.config.eos_token_id == 50256 and model.config.pad_token_id is None

    ids = torch.randint(1, 99, (2, 6))
    with torch.no_grad(), caplog.at_level(logging.WARNING):
        plain = model(input_ids=ids).logits
        # GPT2-base-ch's BERT tokenizer returns token types: accepted and ignored, like FlagAI.
        with_types = model(input_ids=ids, token_type_ids=torch.ones_like(ids), segment_ids=torch.ones_like(ids),
                           not_a_gpt2_input=1).logits
    assert torch.equal(plain, with_types)
    warnings = [r.getMessage() for r in caplog.records if "ignores the keyword arguments" in r.getMessage()]
    assert warnings == ["GPT2Model.forward ignores the keyword arguments: not_a_gpt2_input"]


def test_pad_token_id_masks_padding_when_no_mask_is_given():
    """FlagAI masked id 0 (its BERT-vocabulary pad); here the config's pad_token_id decides."""
    model = GPT2Model(FlagAIGPT2Config(**TINY, pad_token_id=0)).eval()
    ids = torch.tensor([[5, 6, 7, 0, 0], [8, 9, 10, 11, 12]])
    with torch.no_grad():
        inferred = model(input_ids=ids).logits
        explicit = model(input_ids=ids, attention_mask=(ids != 0).long()).logits
    torch.testing.assert_close(inferred, explicit)


def test_gradient_checkpointing_gives_identical_gradients(tmp_path):
    config_file = tmp_path / "config.json"
    FlagAIGPT2Config(**TINY, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0).to_json_file(config_file)
    plain = GPT2Model.init_from_json(config_file)
    checkpointed = GPT2Model.init_from_json(config_file, checkpoint_activations=True)
    checkpointed.load_state_dict(plain.state_dict())
    assert checkpointed.is_activation_checkpointing and not plain.is_activation_checkpointing
    plain.train(), checkpointed.train()
    calls = []
    checkpointed.layers[0].mlp.register_forward_pre_hook(lambda *_: calls.append(1))
    batch, labels = padded_batch()
    plain(**batch, labels=labels).loss.backward()
    checkpointed(**batch, labels=labels).loss.backward()
    assert len(calls) == 2  # the block ran again in the backward pass
    for (name, a), (_, b) in zip(plain.named_parameters(), checkpointed.named_parameters()):
        torch.testing.assert_close(a.grad, b.grad, atol=1e-6, rtol=0, msg=name)


def test_initialisation_follows_gpt2():
    """normal(0, initializer_range), the residual projections scaled by 1 / sqrt(2 * n_layer), LayerNorms at 1 / 0."""
    model = GPT2Model(FlagAIGPT2Config(**{**TINY, "n_embd": 64, "n_layer": 8, "n_head": 4}))
    layer = model.layers[3]
    assert abs(layer.attention.query_key_value.weight.std().item() - 0.02) < 0.002
    assert abs(layer.mlp.dense_h_to_4h.weight.std().item() - 0.02) < 0.002
    assert abs(layer.attention.dense.weight.std().item() - 0.005) < 0.0007  # 0.02 / sqrt(16)
    assert abs(layer.mlp.dense_4h_to_h.weight.std().item() - 0.005) < 0.0007
    assert torch.equal(layer.attention_norm.weight, torch.ones(64)) and not layer.mlp.dense_h_to_4h.bias.any()


def test_public_names():
    assert flagai_hf.GPT2LMHeadModel is GPT2Model and flagai_hf.FlagAIGPT2Config is FlagAIGPT2Config
    for name in ("GPT2Model", "GPT2LMHeadModel", "FlagAIGPT2Config", "FlagAIGPT2Tokenizer"):
        assert name in flagai_hf.__all__
    config = FlagAIGPT2Config(**TINY)
    assert config.model_type == "flagai_gpt2"
    assert {"hidden_states", "cache", "past_key_values"} <= set(config.keys_to_ignore_at_inference)


# --- bad input ------------------------------------------------------------------------------------------------------


def test_bad_input_gives_clear_errors():
    model = GPT2Model(FlagAIGPT2Config(**TINY)).eval()
    with pytest.raises(ValueError, match=r"input_ids contains 99, outside \[0, 99\)"):
        model(input_ids=torch.tensor([[1, 99]]))
    with pytest.raises(ValueError, match="65 positions.*max_position_embeddings=64"):
        model(input_ids=torch.ones(1, 65, dtype=torch.long))
    cache = model(input_ids=torch.ones(1, 60, dtype=torch.long), use_cache=True).cache
    with pytest.raises(ValueError, match=r"65 positions \(60 cached \+ 5 new\).*max_position_embeddings=64"):
        model(input_ids=torch.ones(1, 5, dtype=torch.long), cache=cache)
    with pytest.raises(ValueError, match=r"position_ids contains 64, outside \[0, 64\)"):
        model(input_ids=torch.ones(1, 2, dtype=torch.long), position_ids=torch.tensor([[63, 64]]))
    with pytest.raises(ValueError, match="attention_mask must be a 2-D padding mask"):
        model(input_ids=torch.ones(1, 3, dtype=torch.long), attention_mask=torch.ones(1, 1, 3, 3))
    with pytest.raises(ValueError, match=r"attention_mask must be \(batch, cached \+ new tokens\) = \(1, 3\)"):
        model(input_ids=torch.ones(1, 3, dtype=torch.long), attention_mask=torch.tensor([[1, 1, 1, 0]]))
    with pytest.raises(TypeError, match="must be a transformers Cache"):
        model(input_ids=torch.ones(1, 3, dtype=torch.long), past_key_values=((torch.zeros(1),),))
    with pytest.raises(ValueError, match="exactly one of input_ids or inputs_embeds"):
        model()
    with pytest.raises(ValueError, match="multiple of n_head"):
        FlagAIGPT2Config(n_embd=30, n_head=4)
    with pytest.raises(ValueError, match=r"hidden_size \(32\) and n_embd \(64\) differ"):
        FlagAIGPT2Config(n_embd=64, hidden_size=32, n_head=4)
    with pytest.raises(ValueError, match="do_layer_norm_before=False is not supported"):
        FlagAIGPT2Config(do_layer_norm_before=False)


def test_bad_checkpoints_give_clear_errors(tmp_path):
    reference = reference_model()
    reference.save_pretrained(tmp_path / "gpt2")
    with pytest.raises(ValueError,
                       match=r"layers.0.mlp.dense_h_to_4h.weight: checkpoint \(128, 32\) vs model \(64, 32\)"):
        GPT2Model.from_pretrain(tmp_path, "gpt2", n_inner=64)
    with pytest.raises(ValueError, match=r"embeddings.position_embeddings.weight: checkpoint \(64, 32\) vs model"):
        GPT2Model.from_pretrain(tmp_path, "gpt2", n_positions=128)

    state = flagai_state_dict(reference)
    del state["transformer.h.1.mlp.c_proj.weight"]
    write_flagai_folder(tmp_path / "truncated", state)
    with pytest.raises(ValueError, match=r"lacks backbone weights.*layers.1.mlp.dense_4h_to_h.weight"):
        GPT2Model.from_pretrain(tmp_path, "truncated")

    state = flagai_state_dict(reference)
    state["transformer.h.0.attn.mystery.weight"] = torch.zeros(2)
    write_flagai_folder(tmp_path / "unknown", state)
    with pytest.raises(ValueError, match="unknown names: transformer.h.0.attn.mystery.weight"):
        GPT2Model.from_pretrain(tmp_path, "unknown")

    write_flagai_folder(tmp_path / "no_heads", flagai_state_dict(reference), n_head=None)
    config = json.loads((tmp_path / "no_heads" / "config.json").read_text())
    del config["n_head"]
    (tmp_path / "no_heads" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="missing the required key 'n_head' or 'num_attention_heads'"):
        GPT2Model.from_pretrain(tmp_path, "no_heads")

    (tmp_path / "bert").mkdir()
    (tmp_path / "bert" / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ValueError, match="holds a 'bert' model"):
        GPT2Model.from_pretrain(tmp_path, "bert")
