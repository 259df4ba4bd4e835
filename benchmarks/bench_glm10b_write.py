"""Write a GLM-10b-ch-sized checkpoint of random weights, tensor by tensor, in two layouts with the same values.

    PYTHONPATH=. python benchmarks/bench_glm10b_write.py DEST --layout safetensors   # transformers' sharded layout
    PYTHONPATH=. python benchmarks/bench_glm10b_write.py DEST --layout megatron      # THUDM's 4-way mp_rank_0X files
    PYTHONPATH=. python benchmarks/bench_glm10b_write.py DEST --layers 2 --hidden 512 --heads 8   # a smaller model

Full size (the defaults): 48 layers, hidden 4096, 64 heads, vocab 50048, 1024 positions: 9,879,633,920 parameters,
19.76 GB in bf16. Nothing holds the model in memory: every tensor is generated from its own seed (the run's
``--seed`` and the tensor's THUDM name), written, and dropped, so memory stays at about one tensor (the 16384 x 4096
MLP weight: 134 MB in bf16) and either layout can be rewritten with the same values later.

- ``safetensors``: ``config.json`` (native ``flagai_glm``, ``GLMForConditionalGeneration``) and
  ``model-0000i-of-0000n.safetensors`` + ``model.safetensors.index.json`` with the names ``save_pretrained`` writes
  (``glm.embeddings.word_embeddings.weight``, ...), shards of ``--max-shard-size`` (default 4GB; streamed by
  ``flagai_hf.shards.write_sharded_safetensors``).
- ``megatron``: THUDM's release layout, ``latest_checkpointed_iteration.txt`` ("release") and
  ``release/mp_rank_0X_model_states.pt`` for X < ``--world-size`` (default 4), each ``torch.save({"module": state
  dict})`` of that rank's part with THUDM's names, split as THUDM's model parallelism splits them
  (``flagai_hf/models/glm/megatron.py``: vocabulary rows, per-rank ``[q; k; v]`` blocks, MLP rows, row-parallel
  input columns, the rest replicated), plus a FlagAI-keys ``config.json`` next to it. The ``.pt`` archives are
  first written by ``torch.save`` under ``torch.serialization.skip_data()`` (tensors allocated but never touched, so
  no memory used; the archive gets every record at its final offset, bytes left empty), then each merged tensor is
  generated once and its ranks' parts written into the four files at their records' offsets.

Values: matrices ~ N(0, 0.02) (the output projections of each block 0.02 / sqrt(2 x layers), as GLM initialises
them), biases ~ N(0, 0.02), layer-norm weights 1 + N(0, 0.02), so a forward pass stays finite in bf16 through 48
layers. Megatron merging (``merge_megatron_shards``) of the megatron layout gives the safetensors layout's tensors
exactly; ``bench_glm10b.py`` relies on that to compare the converted folder with a reference.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
import zlib
from pathlib import Path

import torch

from flagai_hf import GLMConfig, GLMForConditionalGeneration  # noqa: E402
from flagai_hf.conversion.convert_glm_megatron import native_names  # noqa: E402  (the converter's name checks)
from flagai_hf.models.glm.megatron import COLUMNS, QKV, REPLICATED, ROWS, partition_of  # noqa: E402
from flagai_hf.shards import write_sharded_safetensors  # noqa: E402

GLM10B = {"num_layers": 48, "hidden_size": 4096, "num_attention_heads": 64, "vocab_size": 50048,
          "max_sequence_length": 1024}
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def flagai_config(num_layers=48, hidden_size=4096, num_attention_heads=64, vocab_size=50048,
                  max_sequence_length=1024) -> dict:
    """GLM-10b-ch's FlagAI / THUDM config keys (the architecture of THUDM/glm-10b-chinese), sizes overridable."""
    return {"num_layers": num_layers, "vocab_size": vocab_size, "hidden_size": hidden_size,
            "num_attention_heads": num_attention_heads, "embedding_dropout_prob": 0.1,
            "attention_dropout_prob": 0.1, "output_dropout_prob": 0.1, "max_sequence_length": max_sequence_length,
            "max_memory_length": 0, "checkpoint_activations": False, "checkpoint_num_layers": 1,
            "parallel_output": True, "relative_encoding": False, "block_position_encoding": True,
            "output_predict": True, "spell_length": None, "spell_func": "lstm", "attention_scale": 1.0}


def thudm_plan(config: dict, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Every tensor of the merged (mp = 1) checkpoint, THUDM names in THUDM's order, as meta tensors (glm-spec §9)."""
    hidden, rows = config["hidden_size"], config["max_sequence_length"] + 1
    shapes = {"word_embeddings.weight": (config["vocab_size"], hidden),
              "transformer.position_embeddings.weight": (rows, hidden),
              "transformer.block_position_embeddings.weight": (rows, hidden)}
    for index in range(config["num_layers"]):
        layer = f"transformer.layers.{index}."
        shapes.update({
            layer + "input_layernorm.weight": (hidden,), layer + "input_layernorm.bias": (hidden,),
            layer + "attention.query_key_value.weight": (3 * hidden, hidden),
            layer + "attention.query_key_value.bias": (3 * hidden,),
            layer + "attention.dense.weight": (hidden, hidden), layer + "attention.dense.bias": (hidden,),
            layer + "post_attention_layernorm.weight": (hidden,), layer + "post_attention_layernorm.bias": (hidden,),
            layer + "mlp.dense_h_to_4h.weight": (4 * hidden, hidden), layer + "mlp.dense_h_to_4h.bias": (4 * hidden,),
            layer + "mlp.dense_4h_to_h.weight": (hidden, 4 * hidden), layer + "mlp.dense_4h_to_h.bias": (hidden,),
        })
    shapes.update({"transformer.final_layernorm.weight": (hidden,), "transformer.final_layernorm.bias": (hidden,)})
    return {name: torch.empty(shape, dtype=dtype, device="meta") for name, shape in shapes.items()}


def random_tensor(name: str, shape, dtype: torch.dtype, seed: int, num_layers: int) -> torch.Tensor:
    """The values of tensor ``name`` (a THUDM name): the same for the same ``seed`` in every layout and run."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(name.encode()))
    tensor = torch.randn(shape, generator=generator, dtype=dtype)
    if name.endswith(("attention.dense.weight", "dense_4h_to_h.weight")):
        return tensor.mul_(0.02 / math.sqrt(2 * num_layers))
    tensor.mul_(0.02)
    return tensor.add_(1.0) if name.endswith("layernorm.weight") else tensor


def rank_parts(name: str, tensor: torch.Tensor, world_size: int) -> list[torch.Tensor]:
    """How THUDM's model parallelism splits merged tensor ``name`` over ``world_size`` ranks (inverse of
    ``flagai_hf.models.glm.megatron.merge_tensor``)."""
    kind = partition_of(name)
    if kind == REPLICATED:
        return [tensor] * world_size
    if kind == QKV:  # rank r: [q_r; k_r; v_r], its heads' rows of each third
        thirds = [part.chunk(world_size, dim=0) for part in tensor.chunk(3, dim=0)]
        return [torch.cat([third[rank] for third in thirds], dim=0) for rank in range(world_size)]
    if kind in (ROWS, COLUMNS):
        return list(tensor.chunk(world_size, dim=0 if kind == ROWS else 1))
    raise ValueError(f"{name}: not a GLM tensor THUDM's model parallelism knows")


def write_safetensors_folder(folder: Path, config: dict, dtype: torch.dtype, seed: int,
                             max_shard_size: str = "4GB") -> dict:
    """The native folder (``config.json`` + sharded safetensors, transformers' names); returns the index."""
    glm_config = GLMConfig.from_flagai_dict(config)
    plan = thudm_plan(config, dtype)
    names = native_names(GLMForConditionalGeneration, glm_config, plan, folder)  # THUDM -> ours, checked
    native_plan = {names[name]: tensor for name, tensor in plan.items()}
    thudm = {native: name for name, native in names.items()}
    layers = config["num_layers"]
    index = write_sharded_safetensors(
        folder, native_plan,
        lambda native: random_tensor(thudm[native], native_plan[native].shape, dtype, seed, layers),
        max_shard_size=max_shard_size)
    glm_config.architectures = [GLMForConditionalGeneration.__name__]
    glm_config.dtype = dtype
    glm_config.save_pretrained(folder)
    return index


def write_megatron_folder(folder: Path, config: dict, dtype: torch.dtype, seed: int, world_size: int = 4) -> list:
    """THUDM's release layout of the same weights, ``world_size``-way model parallel; returns the shard paths."""
    if config["num_attention_heads"] % world_size or config["vocab_size"] % world_size:
        raise ValueError(f"--world-size {world_size} must divide the heads ({config['num_attention_heads']}) and "
                         f"the vocabulary ({config['vocab_size']})")
    release = folder / "release"
    release.mkdir(parents=True, exist_ok=True)
    plan = thudm_plan(config, dtype)
    paths = [release / f"mp_rank_{rank:02d}_model_states.pt" for rank in range(world_size)]
    offsets = [_write_skeleton(path, plan, rank, world_size) for rank, path in enumerate(paths)]
    files = [os.open(path, os.O_WRONLY) for path in paths]
    try:
        for name, meta in plan.items():
            tensor = random_tensor(name, meta.shape, dtype, seed, config["num_layers"])
            for rank, part in enumerate(rank_parts(name, tensor, world_size)):
                data = part.contiguous().reshape(-1).view(torch.uint8).numpy()
                if os.pwrite(files[rank], memoryview(data), offsets[rank][name]) != data.nbytes:
                    raise OSError(f"short write of {name} into {paths[rank]}")
            del tensor
    finally:
        for handle in files:
            os.close(handle)
    (folder / "latest_checkpointed_iteration.txt").write_text("release")
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    return paths


def _write_skeleton(path: Path, plan: dict[str, torch.Tensor], rank: int, world_size: int) -> dict[str, int]:
    """``torch.save({"module": rank's state dict})`` without the bytes (``skip_data``), from untouched
    ``torch.empty`` tensors; returns each tensor's byte offset in the file, checked against where ``torch.load``
    (``mmap=True``) places it."""
    parts = {name: rank_parts(name, meta, world_size)[rank] for name, meta in plan.items()}
    state = {name: torch.empty(part.shape, dtype=part.dtype) for name, part in parts.items()}  # never touched
    with torch.serialization.skip_data():
        torch.save({"module": state}, path)
    del state
    reader = torch._C.PyTorchFileReader(str(path))
    offsets = {name: reader.get_record_offset(f"data/{key}") for key, name in enumerate(plan)}  # pickling order
    loaded = torch.load(path, mmap=True, weights_only=True)["module"]
    start = {name: tensor.untyped_storage().data_ptr() for name, tensor in loaded.items()}
    first = next(iter(plan))
    wrong = [name for name in plan if start[name] - start[first] != offsets[name] - offsets[first]
             or loaded[name].shape != parts[name].shape]
    if wrong:
        raise RuntimeError(f"{path}: torch.save placed {', '.join(wrong[:3])} elsewhere than expected")
    return offsets


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("destination", type=Path, help="folder to create (must not exist)")
    parser.add_argument("--layout", choices=["safetensors", "megatron"], default="safetensors")
    parser.add_argument("--layers", type=int, default=GLM10B["num_layers"])
    parser.add_argument("--hidden", type=int, default=GLM10B["hidden_size"])
    parser.add_argument("--heads", type=int, default=GLM10B["num_attention_heads"])
    parser.add_argument("--vocab", type=int, default=GLM10B["vocab_size"])
    parser.add_argument("--positions", type=int, default=GLM10B["max_sequence_length"])
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="bf16")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-shard-size", default="4GB", help="safetensors layout: largest shard (default 4GB)")
    parser.add_argument("--world-size", type=int, default=4, help="megatron layout: model-parallel ranks (default 4)")
    args = parser.parse_args(argv)
    if args.destination.exists():
        raise SystemExit(f"error: {args.destination} exists; give a new folder")
    config = flagai_config(args.layers, args.hidden, args.heads, args.vocab, args.positions)
    start = time.perf_counter()
    if args.layout == "safetensors":
        write_safetensors_folder(args.destination, config, DTYPES[args.dtype], args.seed, args.max_shard_size)
    else:
        write_megatron_folder(args.destination, config, DTYPES[args.dtype], args.seed, args.world_size)
    size = sum(path.stat().st_size for path in args.destination.rglob("*") if path.is_file())
    print(f"wrote {args.destination} ({args.layout}, {size / 1e9:.2f} GB) in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
