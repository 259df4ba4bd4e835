"""BERT family: parity with transformers' BERT (same weights), real MiniLM weights, FlagAI checkpoints, UniLM, errors."""

import json
import logging

import pytest
import torch
import transformers
from material import minilm_dir

import flagai_hf
from flagai_hf import (
    BertForClsClassifier,
    BertForMaskedLM,
    BertForSeq2seq,
    BertForSequenceClassification,
    BertForSequenceLabeling,
    BertForSequenceLabelingCRF,
    BertForSequenceLabelingGP,
    BertModel,
    FlagAIBertConfig,
    FlagAIBertTokenizer,
)
from flagai_hf.models.bert.modeling_flagai_bert import unilm_attention_mask

TINY = dict(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
            max_position_embeddings=64, num_labels=5)

# (transformers class, our class, output compared)
PAIRS = [
    (transformers.BertModel, BertModel, "last_hidden_state"),
    (transformers.BertForMaskedLM, BertForMaskedLM, "logits"),
    (transformers.BertForTokenClassification, BertForSequenceLabeling, "logits"),
    (transformers.BertForSequenceClassification, BertForSequenceClassification, "logits"),
]


def padded_batch():
    ids = torch.randint(1, TINY["vocab_size"], (3, 11))
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    mask[2, 3:] = 0
    return dict(input_ids=ids, attention_mask=mask, token_type_ids=torch.randint(0, 2, ids.shape))


def save_reference(tmp_path, reference, name="m"):
    reference.save_pretrained(tmp_path / name)
    return tmp_path, name


@pytest.mark.parametrize("impl", ["eager", "sdpa"])
@pytest.mark.parametrize("theirs_cls, ours_cls, key", PAIRS, ids=[p[1].__name__ for p in PAIRS])
def test_parity_with_transformers_bert(tmp_path, impl, theirs_cls, ours_cls, key):
    reference = theirs_cls(transformers.BertConfig(**TINY, attn_implementation=impl)).eval()
    ours = ours_cls.from_pretrain(*save_reference(tmp_path, reference), attn_implementation=impl)
    assert ours.config._attn_implementation == impl
    batch = padded_batch()
    with torch.no_grad():
        expected = getattr(reference(**batch), key)
        actual = getattr(ours(**batch), key)
    torch.testing.assert_close(actual, expected, atol=1e-5, rtol=0)


def test_eager_equals_sdpa_with_padding():
    model = BertForSequenceLabeling(FlagAIBertConfig(**TINY)).eval()
    batch = padded_batch()
    with torch.no_grad():
        sdpa = model(**batch).logits
        model.set_attn_implementation("eager")
        eager = model(**batch).logits
    torch.testing.assert_close(sdpa, eager, atol=1e-6, rtol=0)


def test_losses_match_transformers(tmp_path):
    reference = transformers.BertForTokenClassification(transformers.BertConfig(**TINY)).eval()
    ours = BertForSequenceLabeling.from_pretrain(*save_reference(tmp_path, reference))
    batch = padded_batch()
    labels = torch.randint(0, TINY["num_labels"], batch["input_ids"].shape).masked_fill(
        batch["attention_mask"] == 0, -100)
    with torch.no_grad():
        torch.testing.assert_close(ours(**batch, labels=labels).loss, reference(**batch, labels=labels).loss,
                                   atol=1e-6, rtol=0)


@pytest.mark.parametrize("impl", ["eager", "sdpa"])
def test_real_minilm_matches_transformers(impl):
    folder = minilm_dir()
    tokenizer = transformers.BertTokenizer.from_pretrained(folder)
    sentences = ["A man is eating food.", "A man is eating a piece of bread.", "The stock market fell sharply today.",
                 "Two people walk along a quiet beach at sunset, talking about their plans."]
    batch = tokenizer(sentences, padding=True, return_tensors="pt")
    reference = transformers.BertModel.from_pretrained(folder, attn_implementation=impl).eval()
    ours = BertModel.from_pretrain(*folder.rsplit("/", 1), attn_implementation=impl)
    with torch.no_grad():
        expected = reference(**batch)
        actual = ours(**batch)
    real = batch["attention_mask"].bool()  # padding rows are don't-care outputs; they agree to 1e-4
    torch.testing.assert_close(actual.last_hidden_state[real], expected.last_hidden_state[real], atol=1e-5, rtol=0)
    torch.testing.assert_close(actual.last_hidden_state, expected.last_hidden_state, atol=1e-4, rtol=0)
    torch.testing.assert_close(actual.pooler_output, expected.pooler_output, atol=1e-5, rtol=0)

    # The mean-pooled sentence embeddings rank the paraphrase above the unrelated sentence.
    mask = batch["attention_mask"][..., None]
    embeddings = torch.nn.functional.normalize((actual.last_hidden_state * mask).sum(1) / mask.sum(1), dim=-1)
    similar, unrelated = embeddings[0] @ embeddings[1], embeddings[0] @ embeddings[2]
    assert similar > 0.6 and unrelated < 0.2


def fused_flagai_state_dict(reference: transformers.BertPreTrainedModel, head: dict) -> dict:
    """A FlagAI checkpoint of ``reference``: fused query_key_value, ``model.`` prefix, FlagAI head names."""
    state = {}
    for name, tensor in reference.bert.state_dict().items():
        if ".attention.self.key." in name or ".attention.self.value." in name or name.endswith("position_ids"):
            continue
        if ".attention.self.query." in name:
            parts = [reference.bert.state_dict()[name.replace("query", which)] for which in ("query", "key", "value")]
            name, tensor = name.replace("query", "query_key_value"), torch.cat(parts, 0)
        state["model." + name.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias",
                                                                                          "LayerNorm.beta")] = tensor
    state.update(head)
    return state


def write_flagai_folder(folder, state_dict, wrap=True, **config_overrides):
    folder.mkdir(parents=True)
    config = {"vocab_size": 99, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
              "intermediate_size": 37, "max_position_embeddings": 64, "type_vocab_size": 2,
              "layernorm_epsilon": 1e-12, "hidden_act": "gelu", "hidden_dropout_prob": 0.1,
              "attention_probs_dropout_prob": 0.1, "initializer_range": 0.02, **config_overrides}
    (folder / "config.json").write_text(json.dumps(config))
    torch.save({"module": state_dict} if wrap else state_dict, folder / "pytorch_model.bin")


def test_flagai_labeling_checkpoint_loads(tmp_path):
    reference = transformers.BertForTokenClassification(transformers.BertConfig(**TINY)).eval()
    head = {"final_dense.weight": reference.classifier.weight, "final_dense.bias": reference.classifier.bias}
    write_flagai_folder(tmp_path / "RoBERTa-base-ch-ner", fused_flagai_state_dict(reference, head), class_num=5)
    ours = BertForSequenceLabeling.from_pretrain(tmp_path, "RoBERTa-base-ch-ner")
    batch = padded_batch()
    with torch.no_grad():
        torch.testing.assert_close(ours(**batch).logits, reference(**batch).logits, atol=1e-5, rtol=0)


def test_flagai_classifier_crf_and_gp_heads_load(tmp_path):
    reference = transformers.BertForSequenceClassification(transformers.BertConfig(**TINY)).eval()
    out_layer = {"out_layer.weight": reference.classifier.weight, "out_layer.bias": reference.classifier.bias}
    write_flagai_folder(tmp_path / "cls", fused_flagai_state_dict(reference, out_layer), class_num=5)
    ours = BertForClsClassifier.from_pretrain(tmp_path, "cls")
    batch = padded_batch()
    with torch.no_grad():
        torch.testing.assert_close(ours(**batch).logits, reference(**batch).logits, atol=1e-5, rtol=0)

    transitions = torch.randn(5, 5)
    crf_head = {"final_dense.weight": torch.randn(5, 32), "final_dense.bias": torch.randn(5),
                "crf_layer.trans": transitions}
    write_flagai_folder(tmp_path / "crf", fused_flagai_state_dict(reference, crf_head), wrap=False, class_num=5)
    crf = BertForSequenceLabelingCRF.from_pretrain(tmp_path, "crf")
    assert torch.equal(crf.crf.transitions.detach(), transitions)
    assert torch.equal(crf.classifier.bias.detach(), crf_head["final_dense.bias"])

    gp_head = {"gp.dense.weight": torch.randn(5 * 8 * 2, 32), "gp.dense.bias": torch.randn(5 * 8 * 2)}
    write_flagai_folder(tmp_path / "gp", fused_flagai_state_dict(reference, gp_head), class_num=5, inner_dim=8)
    gp = BertForSequenceLabelingGP.from_pretrain(tmp_path, "gp")
    assert torch.equal(gp.global_pointer.dense.weight.detach(), gp_head["gp.dense.weight"])
    assert gp(**padded_batch()).logits.shape == (3, 5, 11, 11)


def test_flagai_mlm_head_and_untied_unilm_decoder(tmp_path):
    reference = transformers.BertForMaskedLM(transformers.BertConfig(**TINY)).eval()
    predictions = {k: v for k, v in reference.state_dict().items() if k.startswith("cls.")}
    write_flagai_folder(tmp_path / "mlm", fused_flagai_state_dict(reference, predictions))
    ours = BertForMaskedLM.from_pretrain(tmp_path, "mlm")
    batch = padded_batch()
    with torch.no_grad():
        torch.testing.assert_close(ours(**batch).logits, reference(**batch).logits, atol=1e-5, rtol=0)
    assert ours.config.tie_word_embeddings

    # FlagAI's BertForSeq2seq decoder is its own tensor: it must load untied, not be overwritten by the embeddings.
    decoder = torch.randn(99, 32)
    predictions["cls.predictions.decoder.weight"] = decoder
    write_flagai_folder(tmp_path / "unilm", fused_flagai_state_dict(reference, predictions))
    unilm = BertForSeq2seq.from_pretrain(tmp_path, "unilm")
    assert not unilm.config.tie_word_embeddings
    assert torch.equal(unilm.lm_head.decoder.weight.detach(), decoder)
    assert not torch.equal(unilm.bert.embeddings.word_embeddings.weight.detach(), decoder)


def test_save_pretrained_round_trip_is_exact(tmp_path):
    for cls in (BertForSequenceLabeling, BertForSequenceClassification, BertForMaskedLM, BertForSeq2seq,
                BertForSequenceLabelingCRF, BertForSequenceLabelingGP):
        model = cls(FlagAIBertConfig(**TINY)).eval()
        model.save_pretrained(tmp_path / cls.__name__)
        loaded = cls.from_pretrained(tmp_path / cls.__name__).eval()
        batch = padded_batch()
        with torch.no_grad():
            assert torch.equal(model(**batch).logits, loaded(**batch).logits), cls.__name__
        # Our own native folder also goes through FlagAI's from_pretrain unchanged.
        again = cls.from_pretrain(tmp_path, cls.__name__)
        with torch.no_grad():
            assert torch.equal(model(**batch).logits, again(**batch).logits), cls.__name__


def test_init_from_json_and_flagai_kwargs(tmp_path, caplog):
    config_file = tmp_path / "config.json"
    config_file.write_text(json.dumps({"vocab_size": 99, "hidden_size": 32, "num_hidden_layers": 2,
                                       "num_attention_heads": 4, "layernorm_epsilon": 1e-6}))
    model = BertForSequenceLabelingGP.init_from_json(config_file, class_num=3, inner_dim=16)
    assert model.config.num_labels == 3 and model.config.inner_dim == 16
    assert model.config.layer_norm_eps == 1e-6 and model.config.intermediate_size == 128
    assert model.global_pointer.dense.out_features == 3 * 16 * 2

    labeling = BertForSequenceLabeling.init_from_json(config_file, class_num=4).eval()
    ids = torch.randint(1, 99, (2, 6))
    segments = torch.tensor([[0, 0, 0, 1, 1, 1]] * 2)
    with caplog.at_level(logging.WARNING):
        via_segment_ids = labeling(input_ids=ids, segment_ids=segments, mems=None, not_a_flagai_input=1).logits
        labeling(input_ids=ids, segment_ids=segments, not_a_flagai_input=1)
    warnings = [r.getMessage() for r in caplog.records if "ignores the keyword arguments" in r.getMessage()]
    assert warnings == ["BertForSequenceLabeling.forward ignores the keyword arguments: not_a_flagai_input"]
    torch.testing.assert_close(via_segment_ids, labeling(input_ids=ids, token_type_ids=segments).logits)
    assert not torch.allclose(via_segment_ids, labeling(input_ids=ids).logits)


def test_missing_attention_mask_masks_pad_ids_like_flagai():
    model = BertForSequenceLabeling(FlagAIBertConfig(**TINY)).eval()
    ids = torch.tensor([[5, 6, 7, 0, 0]])
    with torch.no_grad():
        inferred = model(input_ids=ids).logits
        explicit = model(input_ids=ids, attention_mask=(ids != 0).long()).logits
    torch.testing.assert_close(inferred, explicit)


def test_gradient_checkpointing_gives_identical_gradients(tmp_path):
    config_file = tmp_path / "config.json"
    FlagAIBertConfig(**TINY, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0).to_json_file(config_file)
    plain = BertForSequenceLabeling.init_from_json(config_file)
    checkpointed = BertForSequenceLabeling.init_from_json(config_file, checkpoint_activations=True)
    checkpointed.load_state_dict(plain.state_dict())
    assert checkpointed.is_activation_checkpointing and not plain.is_activation_checkpointing
    plain.train(), checkpointed.train()

    calls = []
    checkpointed.bert.layers[0].mlp.register_forward_pre_hook(lambda *_: calls.append(1))
    batch = padded_batch()
    labels = torch.randint(0, 5, batch["input_ids"].shape)
    plain(**batch, labels=labels).loss.backward()
    checkpointed(**batch, labels=labels).loss.backward()
    assert len(calls) == 2  # the block ran again in the backward pass
    for (name, a), (_, b) in zip(plain.named_parameters(), checkpointed.named_parameters()):
        torch.testing.assert_close(a.grad, b.grad, atol=1e-6, rtol=0, msg=name)

    other = BertForSequenceLabeling(FlagAIBertConfig(**TINY))
    other.gradient_checkpointing_enable()
    assert other.is_activation_checkpointing


# --- UniLM ---------------------------------------------------------------------------------------------------------


def test_unilm_mask_semantics():
    types = torch.tensor([[0, 0, 0, 1, 1]])
    mask = unilm_attention_mask(types, past_length=0)[0, 0].int()
    expected = torch.tensor([[1, 1, 1, 0, 0],
                             [1, 1, 1, 0, 0],
                             [1, 1, 1, 0, 0],
                             [1, 1, 1, 1, 0],
                             [1, 1, 1, 1, 1]])
    assert torch.equal(mask, expected)
    assert unilm_attention_mask(torch.ones(1, 2, dtype=torch.long), past_length=3)[0, 0].int().tolist() == \
        [[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]]
    with pytest.raises(ValueError, match="target tokens"):
        unilm_attention_mask(torch.zeros(1, 1, dtype=torch.long), past_length=3)


def test_unilm_loss_counts_target_tokens_only():
    model = BertForSeq2seq(FlagAIBertConfig(**TINY)).eval()
    ids = torch.randint(1, 99, (1, 8))
    types = torch.tensor([[0, 0, 0, 0, 1, 1, 1, 1]])
    with torch.no_grad():
        out = model(input_ids=ids, token_type_ids=types, labels=ids)
    log_probs = out.logits[0, 3:7].log_softmax(-1)  # positions 3..6 predict target tokens 4..7
    expected = -log_probs.gather(-1, ids[0, 4:8, None]).mean()
    torch.testing.assert_close(out.loss, expected)


@pytest.mark.parametrize("impl", ["eager", "sdpa"])
def test_unilm_generate_cache_equals_recompute(impl):
    model = BertForSeq2seq(FlagAIBertConfig(**TINY, attn_implementation=impl)).eval()
    prompt = torch.randint(4, 99, (2, 6))
    kwargs = dict(max_new_tokens=8, do_sample=False, pad_token_id=0, eos_token_id=None)
    with torch.no_grad():
        cached = model.generate(prompt, use_cache=True, **kwargs)
        recomputed = model.generate(prompt, use_cache=False, **kwargs)
    assert torch.equal(cached, recomputed)
    # And both equal a hand-written loop that re-encodes source + target with the UniLM mask each step.
    sequence = prompt.clone()
    types = torch.zeros_like(prompt)
    with torch.no_grad():
        for _ in range(8):
            next_token = model(input_ids=sequence, token_type_ids=types).logits[:, -1].argmax(-1, keepdim=True)
            sequence = torch.cat([sequence, next_token], 1)
            types = torch.cat([types, torch.ones_like(next_token)], 1)
    assert torch.equal(cached, sequence)


def test_unilm_beam_search_runs_with_cache():
    model = BertForSeq2seq(FlagAIBertConfig(**TINY)).eval()
    prompt = torch.randint(4, 99, (1, 5))
    with torch.no_grad():
        a = model.generate(prompt, num_beams=3, max_new_tokens=5, pad_token_id=0, use_cache=True)
        b = model.generate(prompt, num_beams=3, max_new_tokens=5, pad_token_id=0, use_cache=False)
    assert torch.equal(a, b)


# --- bad input ------------------------------------------------------------------------------------------------------


def test_bad_input_gives_clear_errors(tmp_path):
    model = BertForSequenceLabeling(FlagAIBertConfig(**TINY)).eval()
    with pytest.raises(ValueError, match=r"input_ids contains 99, outside \[0, 99\)"):
        model(input_ids=torch.tensor([[1, 99]]))
    with pytest.raises(ValueError, match="65 positions.*max_position_embeddings=64"):
        model(input_ids=torch.ones(1, 65, dtype=torch.long))
    with pytest.raises(ValueError, match="token_type_ids contains 2"):
        model(input_ids=torch.ones(1, 3, dtype=torch.long), token_type_ids=torch.full((1, 3), 2))
    with pytest.raises(ValueError, match="attention_mask must be 2-D"):
        model(input_ids=torch.ones(1, 3, dtype=torch.long), attention_mask=torch.ones(3))
    with pytest.raises(ValueError, match="exactly one of input_ids or inputs_embeds"):
        model()
    with pytest.raises(ValueError, match="multiple of num_attention_heads"):
        FlagAIBertConfig(hidden_size=30, num_attention_heads=4)


def test_bad_checkpoints_give_clear_errors(tmp_path):
    reference = transformers.BertForTokenClassification(transformers.BertConfig(**TINY))
    # A tensor of the wrong shape (the config says 7 labels, the checkpoint has 5).
    reference.save_pretrained(tmp_path / "five")
    config = json.loads((tmp_path / "five" / "config.json").read_text())
    with pytest.raises(ValueError, match=r"classifier.weight: checkpoint \(5, 32\) vs model \(7, 32\)"):
        BertForSequenceLabeling.from_pretrain(tmp_path, "five", num_labels=7)

    # Unknown tensor names are refused by name.
    state = fused_flagai_state_dict(reference, {"mystery_head.weight": torch.zeros(2)})
    write_flagai_folder(tmp_path / "unknown", state)
    with pytest.raises(ValueError, match="unknown names: mystery_head.weight"):
        BertModel.from_pretrain(tmp_path, "unknown")

    # Missing backbone weights are an error, not random weights.
    state = fused_flagai_state_dict(reference, {})
    del state["model.encoder.layer.1.output.dense.weight"]
    write_flagai_folder(tmp_path / "truncated", state)
    with pytest.raises(ValueError, match=r"lacks backbone weights.*layers.1.mlp.dense_4h_to_h.weight"):
        BertModel.from_pretrain(tmp_path, "truncated")

    # A config missing a required key names it.
    del config["num_attention_heads"]
    (tmp_path / "five" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="missing the required key 'num_attention_heads'"):
        BertModel.from_pretrain(tmp_path, "five")

    # No weights file, no folder, a folder of another family.
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "config.json").write_text(json.dumps(TINY))
    with pytest.raises(FileNotFoundError, match="No weights in"):
        BertModel.from_pretrain(tmp_path, "empty")
    with pytest.raises(FileNotFoundError, match="(?s)Could not load or download 'RoBERTa-base-ch'.*hf: skipped"):
        BertModel.from_pretrain(tmp_path, "RoBERTa-base-ch")  # HF_HUB_OFFLINE=1: no network source is tried
    (tmp_path / "gpt").mkdir()
    (tmp_path / "gpt" / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    with pytest.raises(ValueError, match="holds a 'gpt2' model"):
        BertModel.from_pretrain(tmp_path, "gpt")


def test_public_names():
    assert flagai_hf.BertForClsClassifier is BertForSequenceClassification
    assert "FlagAIBertTokenizer" in flagai_hf.__all__ and FlagAIBertTokenizer is flagai_hf.FlagAIBertTokenizer


def test_from_pretrained_on_a_transformers_bert_folder_converts(tmp_path):
    """Without the conversion every weight would be missing and silently random."""
    reference = transformers.BertForTokenClassification(transformers.BertConfig(**TINY)).eval()
    reference.save_pretrained(tmp_path / "hf")
    ours = BertForSequenceLabeling.from_pretrained(tmp_path / "hf")
    batch = padded_batch()
    with torch.no_grad():
        torch.testing.assert_close(ours(**batch).logits, reference(**batch).logits, atol=1e-5, rtol=0)
