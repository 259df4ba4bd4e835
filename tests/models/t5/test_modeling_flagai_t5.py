"""T5 parity with transformers: the same random weights in transformers' ``T5ForConditionalGeneration`` /
``T5EncoderModel`` and ours give the same logits, loss, encoder states and generated tokens (fp32, <= 1e-5)."""

import json

import pytest
import torch
import transformers
from safetensors.torch import save_file

from flagai_hf import FlagAIT5Config, T5EncoderModel, T5ForConditionalGeneration, T5Model
from flagai_hf.models.t5 import T5_KEYMAP
from flagai_hf.models.t5.modeling_flagai_t5 import relative_position_bucket

TOL = 1e-5
TINY = dict(vocab_size=64, d_model=32, d_kv=8, d_ff=48, num_layers=2, num_heads=4, relative_attention_num_buckets=8,
            relative_attention_max_distance=20, dropout_rate=0.0, decoder_start_token_id=0, pad_token_id=0,
            eos_token_id=1)
VARIANTS = {
    "t5-relu-tied": dict(feed_forward_proj="relu", tie_word_embeddings=True),
    "t5v1.1-gated-gelu-untied": dict(feed_forward_proj="gated-gelu", tie_word_embeddings=False),
}


def pair(variant: str, impl: str = "eager", **extra):
    """transformers' model with random weights, and ours holding the same weights (through our key map)."""
    kwargs = {**TINY, **VARIANTS[variant], **extra}
    reference = transformers.T5ForConditionalGeneration(transformers.T5Config(**kwargs)).eval()
    ours = T5Model(FlagAIT5Config(**kwargs)).eval()
    missing, unexpected = ours.load_state_dict(T5_KEYMAP.convert(reference.state_dict()), strict=False)
    assert not unexpected and set(missing) <= {"lm_head.weight"}  # tied: lm_head is shared.weight
    reference.set_attn_implementation(impl)
    ours.set_attn_implementation(impl)
    return reference, ours


def padded_batch():
    generator = torch.Generator().manual_seed(1)
    input_ids = torch.randint(2, 64, (3, 11), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 8:] = 0
    attention_mask[2, 5:] = 0
    input_ids = input_ids.masked_fill(attention_mask == 0, 0)
    labels = torch.randint(2, 64, (3, 7), generator=generator)
    labels[1, 5:] = -100
    return input_ids, attention_mask, labels


def max_diff(a, b) -> float:
    return (a - b).abs().max().item()


def test_relative_position_buckets_match_transformers():
    offsets = torch.arange(-300, 300)[None, :]
    for bidirectional in (True, False):
        for buckets, distance in ((32, 128), (8, 20)):
            ours = relative_position_bucket(offsets, bidirectional, buckets, distance)
            theirs = transformers.models.t5.modeling_t5.T5Attention._relative_position_bucket(
                offsets, bidirectional=bidirectional, num_buckets=buckets, max_distance=distance)
            assert torch.equal(ours, theirs)


@pytest.mark.parametrize("impl", ["eager", "sdpa"])
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_forward_parity_padded(variant, impl):
    reference, ours = pair(variant, impl)
    input_ids, attention_mask, labels = padded_batch()
    with torch.no_grad():
        theirs = reference(input_ids=input_ids, attention_mask=attention_mask, labels=labels)
        mine = ours(input_ids=input_ids, attention_mask=attention_mask, labels=labels)
    assert max_diff(mine.logits, theirs.logits) <= TOL
    assert abs(mine.loss.item() - theirs.loss.item()) <= TOL
    assert max_diff(mine.encoder_last_hidden_state, theirs.encoder_last_hidden_state) <= TOL
    assert mine.hidden_states.shape == (3, 7, 32)  # the decoder's last hidden state, FlagAI style
    assert set(mine.keys()) >= {"loss", "logits", "hidden_states", "encoder_last_hidden_state"}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_decoder_inputs_and_hidden_state_tuples_match(variant):
    reference, ours = pair(variant)
    input_ids, attention_mask, labels = padded_batch()
    decoder_input_ids = reference.prepare_decoder_input_ids_from_labels(labels)
    assert torch.equal(ours.prepare_decoder_input_ids_from_labels(labels), decoder_input_ids)
    decoder_attention_mask = (labels != -100).long()
    with torch.no_grad():
        theirs = reference(input_ids=input_ids, attention_mask=attention_mask, decoder_input_ids=decoder_input_ids,
                           decoder_attention_mask=decoder_attention_mask, output_hidden_states=True)
        mine = ours(input_ids=input_ids, attention_mask=attention_mask, decoder_input_ids=decoder_input_ids,
                    decoder_attention_mask=decoder_attention_mask, output_hidden_states=True)
    assert max_diff(mine.logits, theirs.logits) <= TOL
    assert len(mine.hidden_states) == len(theirs.decoder_hidden_states) == 3
    for a, b in zip(mine.hidden_states, theirs.decoder_hidden_states):
        assert max_diff(a, b) <= TOL
    for a, b in zip(mine.encoder_hidden_states, theirs.encoder_hidden_states):
        assert max_diff(a, b) <= TOL


def test_tied_head_scales_and_untied_does_not():
    _, tied = pair("t5-relu-tied")
    assert tied.lm_head.weight is tied.shared.weight and tied.config.scales_decoder_outputs
    untied = T5Model(FlagAIT5Config(**TINY, feed_forward_proj="gated-gelu", tie_word_embeddings=False)).eval()
    assert untied.lm_head.weight is not untied.shared.weight and not untied.config.scales_decoder_outputs
    input_ids, attention_mask, labels = padded_batch()
    with torch.no_grad():
        out = untied(input_ids=input_ids, attention_mask=attention_mask, labels=labels)
    expected = out.hidden_states @ untied.lm_head.weight.T  # no d_model ** -0.5 before an untied head
    assert max_diff(out.logits, expected) <= TOL


@pytest.mark.parametrize("impl", ["eager", "sdpa"])
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_generate_matches_transformers(variant, impl):
    reference, ours = pair(variant, impl)
    input_ids, attention_mask, _ = padded_batch()
    for options in (dict(), dict(num_beams=3), dict(do_sample=True, top_k=5)):
        results = []
        for model, use_cache in ((reference, True), (ours, True), (ours, False)):
            torch.manual_seed(7)
            results.append(model.generate(input_ids=input_ids, attention_mask=attention_mask, max_new_tokens=8,
                                          use_cache=use_cache, **options))
        assert torch.equal(results[0], results[1]), options
        assert torch.equal(results[1], results[2]), options


@pytest.mark.parametrize("impl", ["eager", "sdpa"])
def test_static_cache_equals_the_dynamic_cache_and_transformers(impl):
    """generate(cache_implementation="static"): the decoder masks the preallocated cache's unwritten slots, so every
    step's scores equal the growing cache's, and the tokens equal transformers' with its static cache."""
    reference, ours = pair("t5-relu-tied", impl)
    input_ids, attention_mask, _ = padded_batch()
    kwargs = dict(input_ids=input_ids, attention_mask=attention_mask, max_new_tokens=8, min_new_tokens=8,
                  do_sample=False, output_scores=True, return_dict_in_generate=True)
    with torch.no_grad():
        static = ours.generate(cache_implementation="static", **kwargs)
        dynamic = ours.generate(**kwargs)
        expected = reference.generate(cache_implementation="static", **kwargs)
    assert torch.equal(static.sequences, dynamic.sequences)
    assert torch.equal(static.sequences, expected.sequences)
    for step, (a, b) in enumerate(zip(static.scores, dynamic.scores)):
        torch.testing.assert_close(a, b, rtol=TOL, atol=TOL, msg=f"step {step}")  # -inf (suppressed eos) equal too


def test_incremental_decoding_equals_full_forward_with_deeper_decoder():
    model = T5Model(FlagAIT5Config(**TINY, num_decoder_layers=3)).eval()
    input_ids, attention_mask, labels = padded_batch()
    decoder_input_ids = model.prepare_decoder_input_ids_from_labels(labels)
    with torch.no_grad():
        full = model(input_ids=input_ids, attention_mask=attention_mask, decoder_input_ids=decoder_input_ids,
                     use_cache=False).logits
        first = model(input_ids=input_ids, attention_mask=attention_mask, decoder_input_ids=decoder_input_ids[:, :4],
                      use_cache=True)
        rest = model(encoder_outputs=(first.encoder_last_hidden_state,), attention_mask=attention_mask,
                     decoder_input_ids=decoder_input_ids[:, 4:], cache=first.cache)
    assert max_diff(torch.cat([first.logits, rest.logits], dim=1), full) <= TOL
    greedy = model.generate(input_ids=input_ids, attention_mask=attention_mask, max_new_tokens=6, num_beams=2)
    assert torch.equal(greedy, model.generate(input_ids=input_ids, attention_mask=attention_mask, max_new_tokens=6,
                                              num_beams=2, use_cache=False))


@pytest.mark.parametrize("impl", ["eager", "sdpa"])
def test_encoder_model_matches_transformers(impl):
    kwargs = {**TINY, **VARIANTS["t5v1.1-gated-gelu-untied"]}
    reference = transformers.T5EncoderModel(transformers.T5Config(**kwargs)).eval()
    ours = T5EncoderModel(FlagAIT5Config(**kwargs)).eval()
    ours.load_state_dict(T5_KEYMAP.convert(reference.state_dict()))
    reference.set_attn_implementation(impl)
    ours.set_attn_implementation(impl)
    input_ids, attention_mask, _ = padded_batch()
    with torch.no_grad():
        theirs = reference(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mine = ours(input_ids=input_ids, attention_mask=attention_mask)
    assert max_diff(mine.last_hidden_state, theirs) <= TOL
    assert mine.logits is mine.last_hidden_state


def test_gradient_checkpointing_gives_the_same_gradients():
    _, model = pair("t5v1.1-gated-gelu-untied")
    input_ids, attention_mask, labels = padded_batch()
    model.train()

    def gradients():
        model.zero_grad()
        model(input_ids=input_ids, attention_mask=attention_mask, labels=labels).loss.backward()
        return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}

    plain = gradients()
    model.activation_checkpointing_enable()
    checkpointed = gradients()
    assert plain.keys() == checkpointed.keys() and len(plain) > 10
    for name in plain:
        assert max_diff(plain[name], checkpointed[name]) <= 1e-6, name


def test_transformers_folder_loads_through_from_pretrain_and_from_pretrained(tmp_path):
    reference, _ = pair("t5-relu-tied")
    reference.save_pretrained(tmp_path / "t5-tiny")
    input_ids, attention_mask, labels = padded_batch()
    with torch.no_grad():
        expected = reference(input_ids=input_ids, attention_mask=attention_mask, labels=labels).logits
    for model in (T5Model.from_pretrain(str(tmp_path), "t5-tiny"),
                  T5ForConditionalGeneration.from_pretrained(tmp_path / "t5-tiny"),
                  transformers.AutoModelForSeq2SeqLM.from_pretrained(tmp_path / "t5-tiny")):
        if isinstance(model, T5Model):
            with torch.no_grad():
                logits = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels).logits
            assert max_diff(logits, expected) <= TOL
    encoder = T5EncoderModel.from_pretrain(str(tmp_path), "t5-tiny")
    with torch.no_grad():
        states = encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        theirs = reference.get_encoder()(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    assert max_diff(states, theirs) <= TOL


def test_flagai_legacy_folder_with_untied_head_loads(tmp_path):
    """FlagAI's T5-PEGASUS layout: config.json without model_type, pytorch_model.bin {"module": transformers names}
    with a separate lm_head: it loads untied and unscaled."""
    kwargs = {**TINY, "feed_forward_proj": "gated-gelu"}
    reference = transformers.T5ForConditionalGeneration(transformers.T5Config(**kwargs)).eval()
    state = {name: tensor.clone() for name, tensor in reference.state_dict().items()}
    state["lm_head.weight"] = torch.randn_like(state["shared.weight"])
    folder = tmp_path / "T5-base-ch"
    folder.mkdir()
    torch.save({"module": state}, folder / "pytorch_model.bin")
    (folder / "config.json").write_text(json.dumps({**kwargs}))
    model = T5Model.from_pretrain(str(tmp_path), "T5-base-ch")
    assert not model.config.tie_word_embeddings and not model.config.scales_decoder_outputs
    assert torch.equal(model.lm_head.weight, state["lm_head.weight"])
    input_ids, attention_mask, labels = padded_batch()
    with torch.no_grad():
        out = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels)
    assert max_diff(out.logits, out.hidden_states @ state["lm_head.weight"].T) <= TOL


def test_native_round_trip_and_auto_classes(tmp_path):
    _, ours = pair("t5v1.1-gated-gelu-untied")
    ours.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == "flagai_t5"
    for loader in (transformers.AutoModel, transformers.AutoModelForSeq2SeqLM, T5Model):
        loaded = loader.from_pretrained(tmp_path)
        assert type(loaded) is T5Model
        for name, tensor in ours.state_dict().items():
            assert torch.equal(tensor, loaded.state_dict()[name]), name


def test_bad_input_errors(tmp_path):
    _, model = pair("t5-relu-tied")
    input_ids, attention_mask, labels = padded_batch()
    too_big = input_ids.clone()
    too_big[0, 0] = 64
    with pytest.raises(ValueError, match=r"input_ids contains 64, outside \[0, 64\)"):
        model(input_ids=too_big, labels=labels)
    with pytest.raises(ValueError, match="decoder_input_ids contains 99"):
        model(input_ids=input_ids, decoder_input_ids=torch.full((3, 2), 99))
    with pytest.raises(ValueError, match="needs decoder_input_ids"):
        model(input_ids=input_ids)
    with pytest.raises(ValueError, match=r"attention_mask must be \(batch, 3\)"):
        model(input_ids=input_ids, decoder_input_ids=labels[:, :3].clamp(min=0), decoder_attention_mask=attention_mask)
    with pytest.raises(ValueError, match="feed_forward_proj"):
        FlagAIT5Config(feed_forward_proj="gelu-gated")
    with pytest.raises(ValueError, match="missing the required key 'd_model'"):
        FlagAIT5Config.from_flagai_dict({"vocab_size": 10, "num_layers": 1, "num_heads": 2})

    # a checkpoint whose tensors do not fit, and one with a name no rule knows
    state = model.state_dict()
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({**TINY, "model_type": "t5"}))
    wrong = dict(state)
    wrong["encoder.layers.0.mlp.wi.weight"] = torch.zeros(7, 32)
    save_file({k: v.contiguous() for k, v in wrong.items() if k != "lm_head.weight"}, folder / "model.safetensors")
    with pytest.raises(ValueError, match="encoder.layers.0.mlp.wi.weight"):
        T5Model.from_pretrain(str(tmp_path), "bad")
    unknown = {k: v.contiguous() for k, v in state.items() if k != "lm_head.weight"}
    unknown["encoder.block.0.layer.3.Adapter.weight"] = torch.zeros(2)
    save_file(unknown, folder / "model.safetensors")
    with pytest.raises(ValueError, match="encoder.block.0.layer.3.Adapter.weight"):
        T5Model.from_pretrain(str(tmp_path), "bad")
