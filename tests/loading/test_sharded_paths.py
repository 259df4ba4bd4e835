"""Sharded safetensors folders: weight_map followed exactly and kept inside the folder; the Megatron tracker's tag
kept inside the folder; unreadable pickles (0 bytes, not tensors) named; sharded save and load per family."""

import json
import os

import pytest
import torch
from safetensors.torch import save_file

import flagai_hf
from flagai_hf.loading import read_weights
from flagai_hf.models.glm.megatron import find_megatron_shards, load_megatron_shard
from flagai_hf.shards import INDEX_NAME

A, B = {"a": torch.ones(2)}, {"b": torch.zeros(3)}


def sharded(tmp_path, weight_map, shards=(("one.safetensors", A), ("two.safetensors", B))):
    folder = tmp_path / "model"
    folder.mkdir()
    for name, tensors in shards:
        save_file(tensors, folder / name)
    (folder / INDEX_NAME).write_text(json.dumps({"weight_map": weight_map}))
    return folder


def test_weight_map_is_followed(tmp_path):
    tensors = read_weights(sharded(tmp_path, {"a": "one.safetensors", "b": "two.safetensors"}))
    assert torch.equal(tensors["a"], A["a"]) and torch.equal(tensors["b"], B["b"])


@pytest.mark.parametrize("entry", ["../outside.safetensors", "/etc/passwd"])
def test_weight_map_entries_outside_the_folder_are_refused(tmp_path, entry):
    folder = sharded(tmp_path, {"a": "one.safetensors", "b": entry})
    with pytest.raises(ValueError, match=r"weight_map entry 'b'"):
        read_weights(folder)


def test_weight_map_symlink_out_is_refused(tmp_path):
    save_file(B, tmp_path / "elsewhere.safetensors")
    folder = sharded(tmp_path, {"a": "one.safetensors", "b": "link.safetensors"}, shards=(("one.safetensors", A),))
    os.symlink(tmp_path / "elsewhere.safetensors", folder / "link.safetensors")
    with pytest.raises(ValueError, match="outside"):
        read_weights(folder)


def test_tensor_mapped_to_a_shard_that_lacks_it(tmp_path):
    with pytest.raises(ValueError, match=r"maps b to one.safetensors, which does not hold them"):
        read_weights(sharded(tmp_path, {"a": "one.safetensors", "b": "one.safetensors"}))


def test_tensor_in_a_shard_but_mapped_elsewhere(tmp_path):
    shards = (("one.safetensors", {**A, **B}), ("two.safetensors", B))
    with pytest.raises(ValueError, match=r"one.safetensors holds tensors that .* b \(mapped to two.safetensors\)"):
        read_weights(sharded(tmp_path, {"a": "one.safetensors", "b": "two.safetensors"}, shards=shards))


@pytest.mark.parametrize("tag", ["../outside", "/tmp"])
def test_megatron_tracker_outside_the_folder_is_refused(tmp_path, tag):
    (tmp_path / "outside").mkdir()
    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / "latest_checkpointed_iteration.txt").write_text(tag)
    with pytest.raises(ValueError, match="checkpoint tag in .*latest_checkpointed_iteration.txt"):
        find_megatron_shards(folder)


def test_empty_and_non_tensor_pickles_are_named(tmp_path):
    empty = tmp_path / "mp_rank_00_model_states.pt"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match=r"mp_rank_00_model_states.pt is empty \(0 bytes\)"):
        load_megatron_shard(empty)
    (tmp_path / "pytorch_model.bin").write_bytes(b"")
    with pytest.raises(ValueError, match=r"pytorch_model.bin is empty"):
        read_weights(tmp_path)
    torch.save({"module": {"x": torch.nn.Linear(1, 1)}}, empty)
    with pytest.raises(ValueError, match=r"mp_rank_00_model_states.pt holds objects other than tensors"):
        load_megatron_shard(empty)


FAMILIES = {
    "bert": (flagai_hf.BertModel, flagai_hf.FlagAIBertConfig, dict(vocab_size=50, hidden_size=16,
                                                                  num_hidden_layers=2, num_attention_heads=2)),
    "glm": (flagai_hf.GLMForConditionalGeneration, flagai_hf.GLMConfig,
            dict(vocab_size=64, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                 max_position_embeddings=16, pad_token_id=0, eos_token_id=1, sop_token_id=2,
                 mask_token_ids=[3, 4, 5])),
    "gpt2": (flagai_hf.GPT2LMHeadModel, flagai_hf.FlagAIGPT2Config,
             dict(vocab_size=50, n_embd=16, n_layer=2, n_head=2, n_positions=16)),
    "t5": (flagai_hf.T5ForConditionalGeneration, flagai_hf.FlagAIT5Config,
           dict(vocab_size=50, d_model=16, d_kv=8, d_ff=32, num_layers=2, num_heads=2)),
}


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_sharded_save_and_load(tmp_path, family):
    cls, config_class, sizes = FAMILIES[family]
    torch.manual_seed(0)
    model = cls(config_class(**sizes)).eval()
    model.save_pretrained(tmp_path / "model", max_shard_size="8KB")
    assert (tmp_path / "model" / INDEX_NAME).is_file()
    assert len(list((tmp_path / "model").glob("model-*.safetensors"))) > 1
    for loaded in (cls.from_pretrained(tmp_path / "model"), cls.from_pretrain(tmp_path, "model")):
        for name, tensor in model.state_dict().items():
            assert torch.equal(loaded.state_dict()[name], tensor), name
