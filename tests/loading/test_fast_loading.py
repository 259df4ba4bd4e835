"""Loading builds the model without random initialisation (parameters on the meta device) and assigns the
checkpoint's tensors; what the checkpoint lacks is initialised as in a fresh model, tied weights are re-tied,
non-persistent buffers keep their constructor values, and nothing stays on the meta device."""

import json

import pytest
import torch

import flagai_hf
from flagai_hf.loading import load_folder
from flagai_hf.models.bert import BertPreTrainedModel

BERT = {"vocab_size": 60, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
        "max_position_embeddings": 32, "initializer_range": 0.02}
GLM = {"vocab_size": 60, "hidden_size": 32, "num_layers": 2, "num_attention_heads": 4, "max_sequence_length": 16}


def save(tmp_path, model, name="model"):
    model.save_pretrained(tmp_path / name)
    return tmp_path / name


def all_real(model):
    return all(t.device.type == "cpu" for t in [*model.parameters(), *model.buffers()])


def test_full_checkpoint_loads_identically_without_initialising(tmp_path, monkeypatch):
    torch.manual_seed(0)
    reference = flagai_hf.BertForSequenceLabelingCRF(flagai_hf.FlagAIBertConfig(**BERT, num_labels=4)).eval()
    save(tmp_path, reference)
    calls = []
    original = BertPreTrainedModel._init_weights
    monkeypatch.setattr(BertPreTrainedModel, "_init_weights", lambda self, module: calls.append(module) or
                        original(self, module))
    model = flagai_hf.BertForSequenceLabelingCRF.from_pretrain(tmp_path, "model")
    assert calls == []  # nothing randomly initialised: every tensor comes from the checkpoint
    assert all_real(model)
    for key, tensor in reference.state_dict().items():
        assert torch.equal(model.state_dict()[key], tensor), key
    ids = torch.randint(1, 60, (2, 7))
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=ids).logits, reference(input_ids=ids).logits, atol=0, rtol=0)


def test_missing_heads_are_initialised_like_a_fresh_model(tmp_path):
    torch.manual_seed(0)
    folder = save(tmp_path, flagai_hf.BertModel(flagai_hf.FlagAIBertConfig(**BERT)))
    model = load_folder(flagai_hf.BertForSequenceLabelingCRF, folder, class_num=6)
    assert all_real(model)
    weight, bias, transitions = model.classifier.weight, model.classifier.bias, model.crf.transitions
    assert weight.shape == (6, 32) and torch.isfinite(weight).all()
    assert 0.01 < weight.std().item() < 0.03  # _init_weights: normal(0, initializer_range=0.02)
    assert torch.equal(bias, torch.zeros(6))
    assert transitions.abs().max() <= 0.1 and transitions.abs().max() > 0  # FlagAI's uniform(-0.1, 0.1)
    assert weight.requires_grad and transitions.requires_grad

    torch.manual_seed(0)
    glm_folder = save(tmp_path, flagai_hf.GLMModel(flagai_hf.GLMConfig(**GLM)), "glm")
    classifier = load_folder(flagai_hf.GLMForSequenceClassification, glm_folder, class_num=3)
    assert all_real(classifier)
    assert 0.01 < classifier.classifier.weight.std().item() < 0.03
    assert torch.equal(classifier.pooler.dense.bias, torch.zeros(32))


def test_tied_weights_are_retied_and_differing_ones_stay_untied(tmp_path):
    torch.manual_seed(0)
    folder = save(tmp_path, flagai_hf.BertForMaskedLM(flagai_hf.FlagAIBertConfig(**BERT)))
    model = load_folder(flagai_hf.BertForMaskedLM, folder)
    assert model.lm_head.decoder.weight is model.bert.embeddings.word_embeddings.weight

    untied = flagai_hf.BertForSeq2seq(flagai_hf.FlagAIBertConfig(**BERT, tie_word_embeddings=False))
    with torch.no_grad():
        untied.lm_head.decoder.weight.normal_()
    seq2seq_folder = save(tmp_path, untied, "unilm")
    model = load_folder(flagai_hf.BertForSeq2seq, seq2seq_folder)
    assert model.lm_head.decoder.weight is not model.bert.embeddings.word_embeddings.weight
    assert torch.equal(model.lm_head.decoder.weight, untied.lm_head.decoder.weight)


class BertWithBuffers(flagai_hf.BertModel):
    """A model with a non-persistent buffer (like position ids) and a persistent one."""

    def __init__(self, config):
        super().__init__(config)
        self.register_buffer("position_ids", torch.arange(config.max_position_embeddings)[None], persistent=False)
        self.register_buffer("scale", torch.full((1,), 3.0))


def test_non_persistent_buffers_get_their_constructor_values(tmp_path):
    torch.manual_seed(0)
    folder = save(tmp_path, flagai_hf.BertModel(flagai_hf.FlagAIBertConfig(**BERT)))
    model = load_folder(BertWithBuffers, folder)
    assert all_real(model)
    assert torch.equal(model.position_ids, torch.arange(32)[None])
    assert torch.equal(model.scale, torch.full((1,), 3.0))


def test_dtype_is_applied_to_loaded_and_new_tensors(tmp_path):
    torch.manual_seed(0)
    folder = save(tmp_path, flagai_hf.BertModel(flagai_hf.FlagAIBertConfig(**BERT)))
    model = load_folder(flagai_hf.BertForSequenceClassification, folder, dtype=torch.bfloat16, class_num=2)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}


def test_loading_stays_strict(tmp_path):
    torch.manual_seed(0)
    folder = save(tmp_path, flagai_hf.BertModel(flagai_hf.FlagAIBertConfig(**BERT)))
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "hidden_size": 64, "intermediate_size": 128}))
    with pytest.raises(ValueError, match=r"do not fit BertModel: .*embeddings\.word_embeddings\.weight: checkpoint "
                                         r"\(60, 32\) vs model \(60, 64\)"):
        load_folder(flagai_hf.BertModel, folder)
    (folder / "config.json").write_text(json.dumps({**config, "num_hidden_layers": 3}))
    with pytest.raises(ValueError, match=r"lacks backbone weights of BertModel: config num_hidden_layers=3 .* layers\.2 and on"):
        load_folder(flagai_hf.BertModel, folder)


def test_changing_loaded_weights_leaves_the_checkpoint_file_alone(tmp_path):
    """safetensors hands out memory-mapped tensors: writes to the model must go to private copies, not the file."""
    from safetensors.torch import load_file

    torch.manual_seed(0)
    folder = save(tmp_path, flagai_hf.BertModel(flagai_hf.FlagAIBertConfig(**BERT)))
    before = load_file(folder / "model.safetensors")
    model = load_folder(flagai_hf.BertModel, folder)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(1.0)
    after = load_file(folder / "model.safetensors")
    for name, tensor in before.items():
        assert torch.equal(after[name], tensor), name
    assert not torch.equal(model.embeddings.word_embeddings.weight, before["embeddings.word_embeddings.weight"])


def test_tensors_sharing_storage_in_a_pickle_do_not_alias_untied_parameters(tmp_path):
    torch.manual_seed(0)
    model = flagai_hf.BertForSeq2seq(flagai_hf.FlagAIBertConfig(**BERT, tie_word_embeddings=False))
    state = model.state_dict()
    state["lm_head.decoder.weight"] = state["bert.embeddings.word_embeddings.weight"]  # one storage, two names
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({**model.config.to_dict(), "model_type": "flagai_bert"}))
    torch.save(state, folder / "pytorch_model.bin")
    loaded = load_folder(flagai_hf.BertForSeq2seq, folder)
    decoder, embeddings = loaded.lm_head.decoder.weight, loaded.bert.embeddings.word_embeddings.weight
    assert torch.equal(decoder, embeddings)
    assert decoder is not embeddings  # untied (config): changing one must not change the other
    with torch.no_grad():
        decoder.add_(1.0)
    assert not torch.equal(decoder, embeddings)
