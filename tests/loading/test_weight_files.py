"""Which weight file a folder loads from, and pickle safety: safetensors win over a pickle, pickles are read with
``weights_only=True`` and anything but tensors is refused with a clear error (no code in them runs)."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import flagai_hf
from flagai_hf.loading import read_weights

CONFIG = {"vocab_size": 50, "hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
          "max_position_embeddings": 16}


class NotATensor:
    """A class instance in a pickle: torch.load(weights_only=True) must not build it."""


class RunsCode:
    """Unpickling this would create a file: proof that a pickle's code does not run."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def native_state(seed: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return flagai_hf.BertModel(flagai_hf.FlagAIBertConfig(**CONFIG)).state_dict()


def folder_with(tmp_path, **files) -> Path:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(CONFIG))
    for name, payload in files.items():
        if name == "safetensors":
            save_file(payload, folder / "model.safetensors")
        else:
            torch.save(payload, folder / "pytorch_model.bin")
    return folder


def test_safetensors_are_preferred_over_a_differing_pickle(tmp_path):
    safe, pickled = native_state(0), native_state(1)
    name = "embeddings.word_embeddings.weight"
    assert not torch.equal(safe[name], pickled[name])
    folder = folder_with(tmp_path, safetensors=safe, pickle=pickled)
    model = flagai_hf.BertModel.from_pretrain(tmp_path, "model")
    for key, tensor in model.state_dict().items():
        assert torch.equal(tensor, safe[key]), key


def test_pickle_wrapped_in_module_loads(tmp_path):
    state = native_state(2)
    folder = folder_with(tmp_path, pickle={"module": state, "iteration": 7})
    assert read_weights(folder).keys() == state.keys()
    model = flagai_hf.BertModel.from_pretrain(tmp_path, "model")
    assert torch.equal(model.embeddings.word_embeddings.weight, state["embeddings.word_embeddings.weight"])


def test_pickle_with_a_class_instance_is_refused(tmp_path):
    folder = folder_with(tmp_path, pickle={"module": {**native_state(0), "extra": NotATensor()}})
    with pytest.raises(ValueError, match="holds objects other than tensors.*weights_only=True"):
        flagai_hf.BertModel.from_pretrain(tmp_path, "model")
    with pytest.raises(ValueError, match="holds objects other than tensors"):
        read_weights(folder)


def test_pickle_code_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    folder_with(tmp_path, pickle={"module": {"embeddings.word_embeddings.weight": RunsCode(marker)}})
    with pytest.raises(ValueError, match="holds objects other than tensors"):
        flagai_hf.BertModel.from_pretrain(tmp_path, "model")
    assert not marker.exists()


def test_state_dict_with_non_tensor_values_names_them(tmp_path):
    folder = folder_with(tmp_path, pickle={**native_state(0), "step": 3, "note": "x"})
    with pytest.raises(ValueError, match="not a state dict of tensors: note, step are not tensors"):
        read_weights(folder)


def test_pickle_of_a_list_is_refused(tmp_path):
    folder = folder_with(tmp_path, pickle=[torch.zeros(2)])
    with pytest.raises(ValueError, match="holds a list; expected a state dict"):
        read_weights(folder)
