"""GLM's THUDM Megatron checkpoints: model-parallel shards written here the way Megatron splits them, merged back,
loaded with from_pretrain / from_pretrained, converted with conversion/convert_glm_megatron.py; and the errors."""

import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from flagai_hf.models.glm import GLMConfig, GLMForConditionalGeneration
from flagai_hf.models.glm.megatron import find_megatron_shards, load_megatron_shard, merge_megatron_shards

REPO = Path(__file__).resolve().parents[3]
TINY = dict(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=40,
            pad_token_id=0, eos_token_id=1, sop_token_id=2, mask_token_ids=[3, 4, 5])
SPECIAL = dict(pad_token_id=0, eos_token_id=1, sop_token_id=2, mask_token_ids=[3, 4, 5])
FLAGAI_CONFIG = {"num_layers": 2, "vocab_size": 64, "hidden_size": 32, "num_attention_heads": 4,
                 "embedding_dropout_prob": 0.1, "attention_dropout_prob": 0.1, "output_dropout_prob": 0.1,
                 "max_sequence_length": 40, "max_memory_length": 0, "checkpoint_activations": False,
                 "checkpoint_num_layers": 1, "parallel_output": True, "relative_encoding": False,
                 "block_position_encoding": True, "output_predict": True, "spell_length": None,
                 "spell_func": "lstm", "attention_scale": 1.0, **SPECIAL}


def thudm_state_dict(model: GLMForConditionalGeneration) -> dict:
    """The model's weights under THUDM's names (the spec's §9), written out by hand."""
    names = {"embeddings.word_embeddings.weight": "word_embeddings.weight",
             "embeddings.position_embeddings.weight": "transformer.position_embeddings.weight",
             "embeddings.block_position_embeddings.weight": "transformer.block_position_embeddings.weight",
             "final_layernorm.weight": "transformer.final_layernorm.weight",
             "final_layernorm.bias": "transformer.final_layernorm.bias"}
    layer_names = {"attention_norm": "input_layernorm", "attention.query_key_value": "attention.query_key_value",
                   "attention.dense": "attention.dense", "mlp_norm": "post_attention_layernorm",
                   "mlp.dense_h_to_4h": "mlp.dense_h_to_4h", "mlp.dense_4h_to_h": "mlp.dense_4h_to_h"}
    state = {}
    for name, tensor in model.glm.state_dict().items():
        if name in names:
            state[names[name]] = tensor.clone()
            continue
        _, index, rest = name.split(".", 2)
        module, param = rest.rsplit(".", 1)
        state[f"transformer.layers.{index}.{layer_names[module]}.{param}"] = tensor.clone()
    return state


def megatron_split(state: dict, world_size: int) -> list[dict]:
    """Split an mp=1 state dict the way THUDM's mpu layers partition it over ``world_size`` ranks."""
    shards = [{} for _ in range(world_size)]
    for name, tensor in state.items():
        if "query_key_value" in name:
            # ColumnParallelLinear(stride=3), as mpu.layers._initialize_affine_weight: the [3H] output rows are cut
            # into 3 * world_size blocks and rank r takes blocks r, r + world_size, r + 2 * world_size (its q, k, v)
            blocks = torch.split(tensor, tensor.shape[0] // (3 * world_size), dim=0)
            parts = [torch.cat(blocks[rank::world_size], dim=0) for rank in range(world_size)]
        elif name == "word_embeddings.weight" or "dense_h_to_4h" in name:  # VocabParallel / ColumnParallel
            parts = torch.chunk(tensor, world_size, dim=0)
        elif name.endswith(("attention.dense.weight", "dense_4h_to_h.weight")):  # RowParallel: input columns
            parts = torch.chunk(tensor, world_size, dim=1)
        else:  # layer norms, position tables, RowParallel biases
            parts = [tensor] * world_size
        for rank, part in enumerate(parts):
            shards[rank][name] = part.clone()
    return shards


def write_megatron(folder: Path, shards: list[dict], config: dict | None = FLAGAI_CONFIG, tag: str | None = None):
    """Save shards as DeepSpeed / THUDM do: ``{folder}/{tag}/mp_rank_XX_model_states.pt`` with training state."""
    folder.mkdir(parents=True, exist_ok=True)
    if config is not None:
        (folder / "config.json").write_text(json.dumps(config))
    target = folder
    if tag is not None:
        (folder / "latest_checkpointed_iteration.txt").write_text(tag)
        target = folder / tag
        target.mkdir()
    for rank, module in enumerate(shards):
        torch.save({"module": module, "iteration": 1000, "mp_world_size": len(shards), "dp_world_size": 1,
                    "np_rng_state": np.random.get_state(), "random_rng_state": random.getstate(),
                    "torch_rng_state": torch.get_rng_state(), "client_lr_scheduler": {"num_iters": 1000}},
                   target / f"mp_rank_{rank:02d}_model_states.pt")
    return target


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(1)
    model = GLMForConditionalGeneration(GLMConfig(**TINY)).eval()
    with torch.no_grad():  # no zero biases or unit norms: every tensor's merge shows in the logits
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.05)
    return model


def logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=3).logits


@pytest.mark.parametrize("world_size", [1, 2, 4])
def test_merge_restores_the_original_tensors(model, world_size):
    original = thudm_state_dict(model)
    shards = megatron_split(original, world_size)
    if world_size > 1:  # really split: each rank holds a part
        assert shards[0]["transformer.layers.0.attention.query_key_value.weight"].shape == (96 // world_size, 32)
        assert shards[1]["transformer.layers.1.mlp.dense_4h_to_h.weight"].shape == (32, 128 // world_size)
    merged = merge_megatron_shards(shards, num_attention_heads=4)
    assert list(merged) == list(original)
    for name, tensor in original.items():
        assert torch.equal(merged[name], tensor), name


def test_merge_keeps_downstream_names(model):
    """THUDM's PoolingModel: the backbone under ``model.``, plain (replicated) pool_layer / multichoice_head."""
    original = {"model." + k: v for k, v in thudm_state_dict(model).items()}
    original.update({"pool_layer.weight": torch.randn(32, 32), "pool_layer.bias": torch.randn(32),
                     "multichoice_head.weight": torch.randn(3, 32), "multichoice_head.bias": torch.randn(3)})
    shards = megatron_split({k.removeprefix("model."): v for k, v in original.items()}, 2)
    shards = [{("model." + k if k.split(".")[0] not in ("pool_layer", "multichoice_head") else k): v
               for k, v in shard.items()} for shard in shards]
    merged = merge_megatron_shards(shards, num_attention_heads=4)
    assert all(torch.equal(merged[name], tensor) for name, tensor in original.items())


@pytest.mark.parametrize("world_size,layout", [(2, "flat"), (4, "flat"), (2, "release"), (4, "iteration")])
def test_from_pretrain_loads_a_megatron_folder(tmp_path, model, world_size, layout):
    shards = megatron_split(thudm_state_dict(model), world_size)
    folder = tmp_path / "GLM-large-ch"
    if layout == "release":
        write_megatron(folder, [], config=FLAGAI_CONFIG)
        write_megatron(folder / "release", shards, config=None)
    else:
        write_megatron(folder, shards, tag="250000" if layout == "iteration" else None)
        if layout == "iteration":  # an older iteration the tracker does not name
            write_megatron(folder / "1000", megatron_split(thudm_state_dict(model), 1), config=None)
    assert len(find_megatron_shards(folder)) == world_size

    ids = torch.randint(6, 64, (2, 7))
    loaded = GLMForConditionalGeneration.from_pretrain(tmp_path, "GLM-large-ch")
    torch.testing.assert_close(logits(loaded, ids), logits(model, ids), rtol=0, atol=0)
    # transformers' loader converts the foreign folder the same way
    again = GLMForConditionalGeneration.from_pretrained(folder)
    torch.testing.assert_close(logits(again, ids), logits(model, ids), rtol=0, atol=0)


def test_half_precision_shards(tmp_path, model):
    shards = [{k: v.half() for k, v in shard.items()} for shard in megatron_split(thudm_state_dict(model), 2)]
    write_megatron(tmp_path / "fp16", shards)
    assert GLMForConditionalGeneration.from_pretrain(tmp_path, "fp16").dtype == torch.float16  # the checkpoint's
    loaded = GLMForConditionalGeneration.from_pretrain(tmp_path, "fp16", dtype=torch.float32)
    reference = GLMForConditionalGeneration(GLMConfig(**TINY)).eval()
    reference.load_state_dict({k: v.half().float() for k, v in model.state_dict().items()})
    ids = torch.randint(6, 64, (1, 5))
    torch.testing.assert_close(logits(loaded, ids), logits(reference, ids), rtol=0, atol=0)


def run_cli(*args):
    return subprocess.run([sys.executable, str(REPO / "conversion" / "convert_glm_megatron.py"), *map(str, args)],
                          capture_output=True, text=True, cwd=REPO)


def test_cli_writes_a_native_folder(tmp_path, model):
    ids = torch.randint(6, 64, (2, 6))
    source = tmp_path / "megatron"
    write_megatron(source, megatron_split(thudm_state_dict(model), 4), tag="release")
    result = run_cli(source, tmp_path / "native")
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "native" / "config.json").read_text())["model_type"] == "flagai_glm"
    assert (tmp_path / "native" / "model.safetensors").is_file()
    native = GLMForConditionalGeneration.from_pretrained(tmp_path / "native").eval()
    torch.testing.assert_close(logits(native, ids), logits(model, ids), rtol=0, atol=0)

    # THUDM's own checkpoints have no config.json: it comes with --config
    bare = tmp_path / "thudm"
    write_megatron(bare, megatron_split(thudm_state_dict(model), 2), config=None, tag="250000")
    result = run_cli(bare, tmp_path / "native2")
    assert result.returncode != 0 and "--config" in result.stderr
    (tmp_path / "glm.json").write_text(json.dumps(FLAGAI_CONFIG))
    result = run_cli(bare, tmp_path / "native2", "--config", tmp_path / "glm.json", "--model-class", "GLMModel",
                     "--max-shard-size", "20KB")
    assert result.returncode == 0, result.stderr
    assert len(list((tmp_path / "native2").glob("model-*.safetensors"))) > 1  # streamed into several shards
    backbone = GLMForConditionalGeneration.from_pretrained(tmp_path / "native2").eval()
    torch.testing.assert_close(logits(backbone, ids), logits(model, ids), rtol=0, atol=0)
    assert not any(p.is_symlink() for p in (tmp_path / "native2").iterdir())


def test_missing_rank_is_an_error(tmp_path, model):
    target = write_megatron(tmp_path / "gap", megatron_split(thudm_state_dict(model), 4), tag="release")
    (target / "mp_rank_01_model_states.pt").unlink()
    with pytest.raises(FileNotFoundError, match=r"lacks model-parallel shards mp_rank_01_model_states\.pt "
                                                r"\(it holds ranks 00, 02, 03\)"):
        find_megatron_shards(tmp_path / "gap")
    with pytest.raises(FileNotFoundError, match="mp_rank_01"):
        GLMForConditionalGeneration.from_pretrain(tmp_path, "gap")
    result = run_cli(tmp_path / "gap", tmp_path / "out")
    assert result.returncode != 0 and "mp_rank_01_model_states.pt" in result.stderr

    (tmp_path / "gap" / "latest_checkpointed_iteration.txt").write_text("2000\n")
    with pytest.raises(FileNotFoundError, match="names checkpoint '2000'"):
        find_megatron_shards(tmp_path / "gap")


def test_ambiguous_iterations_and_empty_folders(tmp_path, model):
    for iteration in ("1000", "2000"):
        write_megatron(tmp_path / "runs" / iteration, megatron_split(thudm_state_dict(model), 1), config=None)
    with pytest.raises(ValueError, match=r"several iterations \(1000, 2000\)"):
        find_megatron_shards(tmp_path / "runs")
    assert find_megatron_shards(tmp_path / "runs" / "2000")  # THUDM's --load of an iteration folder itself
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "config.json").write_text(json.dumps(FLAGAI_CONFIG))
    assert find_megatron_shards(tmp_path / "empty") == []
    with pytest.raises(FileNotFoundError, match="or what read_megatron_folder reads"):
        GLMForConditionalGeneration.from_pretrain(tmp_path, "empty")


def test_mismatched_replicated_tensors_are_an_error(model):
    shards = megatron_split(thudm_state_dict(model), 4)
    shards[2]["transformer.layers.1.post_attention_layernorm.weight"] = \
        shards[2]["transformer.layers.1.post_attention_layernorm.weight"] + 1e-3
    with pytest.raises(ValueError, match=r"transformer\.layers\.1\.post_attention_layernorm\.weight should be the "
                                         r"same on every model-parallel rank, but ranks 2 differ"):
        merge_megatron_shards(shards, 4)
    shards = megatron_split(thudm_state_dict(model), 2)
    shards[1]["transformer.layers.0.mlp.dense_4h_to_h.bias"] = torch.randn(32)  # RowParallel bias: not split
    with pytest.raises(ValueError, match=r"dense_4h_to_h\.bias should be the same"):
        merge_megatron_shards(shards, 4)


def test_unknown_or_inconsistent_names_are_an_error(tmp_path, model):
    shards = megatron_split(thudm_state_dict(model), 2)
    for shard in shards:
        shard["prompt_spell.lstm_head.weight_ih_l0"] = torch.zeros(4, 4)
        shard["transformer.r_w_bias"] = torch.zeros(4, 8)
    with pytest.raises(ValueError, match=r"unknown names \(not GLM's\): prompt_spell\.lstm_head\.weight_ih_l0, "
                                         r"transformer\.r_w_bias"):
        merge_megatron_shards(shards, 4)
    write_megatron(tmp_path / "unknown", shards)
    with pytest.raises(ValueError, match="prompt_spell"):
        GLMForConditionalGeneration.from_pretrain(tmp_path, "unknown")

    shards = megatron_split(thudm_state_dict(model), 2)
    del shards[1]["transformer.final_layernorm.bias"]
    with pytest.raises(ValueError, match=r"only rank 0 has \['transformer\.final_layernorm\.bias'\]"):
        merge_megatron_shards(shards, 4)


def test_shapes_and_heads_are_checked(model):
    shards = megatron_split(thudm_state_dict(model), 2)
    with pytest.raises(ValueError, match="2 model-parallel shards cannot split 3 attention heads"):
        merge_megatron_shards(shards, 3)
    shards[1]["transformer.layers.0.attention.query_key_value.weight"] = torch.zeros(45, 32)
    with pytest.raises(ValueError, match=r"query_key_value\.weight: shards of shapes \[\(48, 32\), \(45, 32\)\]"):
        merge_megatron_shards(shards, 4)
    shards = megatron_split(thudm_state_dict(model), 2)
    shards[1]["transformer.layers.0.attention.dense.weight"] = torch.zeros(30, 16)
    with pytest.raises(ValueError, match=r"attention\.dense\.weight: shards .* cannot be joined on dim 1"):
        merge_megatron_shards(shards, 4)


def test_short_position_tables_are_refused(tmp_path, model):
    """An old checkpoint trained with max_sequence_length=20 (21 rows) under a config of 40."""
    original = thudm_state_dict(model)
    for name in ("transformer.position_embeddings.weight", "transformer.block_position_embeddings.weight"):
        original[name] = original[name][:21].clone()
    write_megatron(tmp_path / "short", megatron_split(original, 2))
    with pytest.raises(ValueError, match=r"position_embeddings\.weight has 21 rows, but max_sequence_length=40 needs "
                                         r"41\. The checkpoint was trained with max_sequence_length=20"):
        GLMForConditionalGeneration.from_pretrain(tmp_path, "short")
    loaded = GLMForConditionalGeneration.from_pretrain(tmp_path, "short", max_sequence_length=20)
    assert loaded.config.max_position_embeddings == 20
    assert torch.equal(loaded.glm.embeddings.position_embeddings.weight, original[
        "transformer.position_embeddings.weight"])


def test_shard_without_module_is_an_error(tmp_path):
    torch.save({"model": {}}, tmp_path / "mp_rank_00_model_states.pt")
    with pytest.raises(ValueError, match="no 'module' state dict"):
        load_megatron_shard(tmp_path / "mp_rank_00_model_states.pt")
