"""Issue 12 (items 1 and 4): sizes no model can have are refused by the config class, naming the key, before any
model is built; integer/bool checkpoint tensors for floating parameters and casts that overflow to inf are refused,
naming the tensor."""

import json

import pytest
import torch
from safetensors.torch import save_file

import flagai_hf

BERT = {"vocab_size": 50, "hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
        "max_position_embeddings": 16}
# (config class, valid sizes, key to break)
FAMILIES = [
    (flagai_hf.FlagAIBertConfig, BERT),
    (flagai_hf.GLMConfig, {"vocab_size": 50, "hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
                           "max_position_embeddings": 16}),
    (flagai_hf.FlagAIGPT2Config, {"vocab_size": 50, "n_embd": 16, "n_layer": 1, "n_head": 2, "n_positions": 16}),
    (flagai_hf.FlagAIT5Config, {"vocab_size": 50, "d_model": 16, "d_kv": 8, "d_ff": 32, "num_layers": 1,
                                "num_heads": 2}),
]
LAYERS = {"FlagAIBertConfig": "num_hidden_layers", "GLMConfig": "num_hidden_layers", "FlagAIGPT2Config": "n_layer",
          "FlagAIT5Config": "num_layers"}


@pytest.mark.parametrize("config_class, sizes", FAMILIES, ids=lambda x: getattr(x, "__name__", ""))
@pytest.mark.parametrize("bad", [-1, 1.5, True, "2"], ids=repr)
def test_impossible_layer_count_is_refused_naming_the_key(config_class, sizes, bad):
    key = LAYERS[config_class.__name__]
    config_class(**sizes)  # the valid sizes build
    config_class(**{**sizes, key: 0})  # no layers: an embeddings-only model, which works
    with pytest.raises(ValueError, match=rf"{key} must be an integer >= 0, got {bad!r}"):
        config_class(**{**sizes, key: bad})


@pytest.mark.parametrize("config_class, sizes", FAMILIES[:3], ids=lambda x: getattr(x, "__name__", ""))
def test_heads_not_dividing_hidden_is_refused(config_class, sizes):
    heads = next(k for k in ("num_attention_heads", "n_head") if k in sizes)
    with pytest.raises(ValueError, match=rf"must be a multiple of {heads} \(3\)"):
        config_class(**{**sizes, heads: 3})


def test_zero_heads_is_refused_not_a_division_by_zero():
    with pytest.raises(ValueError, match=r"num_heads must be an integer >= 1, got 0"):
        flagai_hf.FlagAIT5Config(**{**FAMILIES[3][1], "num_heads": 0})


def test_config_json_that_is_not_an_object_is_refused(tmp_path):
    path = tmp_path / "config.json"
    path.write_text("[1, 2]")
    with pytest.raises(ValueError, match=r"config.json holds a JSON list; a config must be a JSON object"):
        flagai_hf.BertModel.init_from_json(path)


def folder_with(tmp_path, state, config=BERT):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(config))
    save_file(state, folder / "model.safetensors")
    return folder


def bert_state():
    torch.manual_seed(0)
    return flagai_hf.BertModel(flagai_hf.FlagAIBertConfig(**BERT)).state_dict()


def test_kwarg_override_with_impossible_size_is_refused_before_reading_weights(tmp_path):
    folder = folder_with(tmp_path, bert_state())
    with pytest.raises(ValueError, match=r"num_hidden_layers must be an integer >= 0, got -1"):
        flagai_hf.BertModel.from_pretrain(tmp_path, "model", num_hidden_layers=-1)
    with pytest.raises(ValueError, match=r"hidden_size must be an integer >= 1, got -16"):
        flagai_hf.BertModel.from_pretrained(folder, hidden_size=-16)


@pytest.mark.parametrize("dtype", [torch.int64, torch.bool])
def test_integer_or_bool_tensor_for_a_float_parameter_is_refused(tmp_path, dtype):
    state = bert_state()
    name = "embeddings.word_embeddings.weight"
    state[name] = torch.ones_like(state[name], dtype=dtype)
    folder_with(tmp_path, state)
    with pytest.raises(ValueError, match=rf"{name} in .* is {dtype}; the parameter is floating"):
        flagai_hf.BertModel.from_pretrain(tmp_path, "model")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_float64_overflowing_the_cast_is_refused(tmp_path, dtype):
    state = {name: tensor.double() for name, tensor in bert_state().items()}
    name = "layers.0.attention.query_key_value.weight"
    state[name][0, 0] = 1e300
    folder_with(tmp_path, state)
    with pytest.raises(ValueError, match=rf"{name} in .* overflows when cast from torch.float64 to {dtype}"):
        flagai_hf.BertModel.from_pretrain(tmp_path, "model", dtype=dtype)
    # float32 cannot hold 1e300 either: the model's own dtype is checked too
    with pytest.raises(ValueError, match=rf"{name} .* overflows when cast from torch.float64 to torch.float32"):
        flagai_hf.BertModel.from_pretrain(tmp_path, "model")


def test_float64_within_range_loads(tmp_path):
    state = {name: tensor.double() for name, tensor in bert_state().items()}
    folder_with(tmp_path, state)
    model = flagai_hf.BertModel.from_pretrain(tmp_path, "model", dtype=torch.float16)
    assert model.embeddings.word_embeddings.weight.dtype == torch.float16


def test_fewer_layers_than_the_checkpoint_is_refused_listing_the_unused_tensors(tmp_path):
    torch.manual_seed(0)
    state = flagai_hf.BertModel(flagai_hf.FlagAIBertConfig(**{**BERT, "num_hidden_layers": 2})).state_dict()
    folder_with(tmp_path, state)  # config.json says 1 layer, the checkpoint holds 2
    with pytest.raises(ValueError, match=r"have no place in BertModel as configured.*layers\.1\.attention"):
        flagai_hf.BertModel.from_pretrain(tmp_path, "model")
    (tmp_path / "model" / "config.json").write_text(json.dumps({**BERT, "num_hidden_layers": 2}))
    with pytest.raises(ValueError, match=r"have no place in BertModel.*layers\.1\."):  # a kwarg override too
        flagai_hf.BertModel.from_pretrain(tmp_path, "model", num_hidden_layers=1)


def test_a_task_head_loaded_into_the_base_model_is_dropped_with_a_warning(tmp_path, caplog):
    torch.manual_seed(0)
    config = flagai_hf.FlagAIBertConfig(**BERT, num_labels=3)
    head_model = flagai_hf.BertForSequenceClassification(config)
    head_model.save_pretrained(tmp_path / "model")
    from transformers.utils import logging as hf_logging
    hf_logging.enable_propagation()
    try:
        model = flagai_hf.BertModel.from_pretrain(tmp_path, "model")
    finally:
        hf_logging.disable_propagation()
    assert "not used by this class (dropped)" in caplog.text
    assert torch.equal(model.embeddings.word_embeddings.weight,
                       head_model.bert.embeddings.word_embeddings.weight)
