"""Convert a THUDM Megatron GLM checkpoint (model-parallel shards) into a native flagai_glm folder, streaming.

    flagai-hf megatron-merge SRC DST [--model-class GLMForConditionalGeneration] [--config CONFIG_JSON]
                             [--max-shard-size 2GB]

SRC holds ``mp_rank_XX_model_states.pt`` (directly, in ``release/``, or in the iteration that
``latest_checkpointed_iteration.txt`` names) and a FlagAI / THUDM ``config.json`` (``num_layers``, ``hidden_size``,
``num_attention_heads``, ``vocab_size``, ``max_sequence_length``, ...). THUDM's own checkpoints carry no config (the
architecture is in the training script's arguments): give one with ``--config``, which also replaces SRC's.

DST gets ``config.json``, sharded safetensors (``model-0000i-of-0000n.safetensors`` + ``model.safetensors.index.json``;
one ``model.safetensors`` when everything fits in one shard) in the checkpoint's dtype, and the tokenizer files SRC
has; it loads with ``GLMForConditionalGeneration.from_pretrained(DST)``. The conversion streams: the shards are
memory-mapped, every tensor is merged from its ranks' parts (``flagai_hf/models/glm/megatron.py``) only when the
output shard that holds it is written, and at most one output shard is in memory, so a 20 GB checkpoint converts
in about ``--max-shard-size`` plus one tensor of memory (GLM-10b: benchmarks/README.md). Names, shapes and the
position table are checked against the model class before anything is written. Tensors the checkpoint lacks (a
task head new to it) are not written: loading DST initialises them and says so.
"""

import argparse
import sys
from pathlib import Path

import torch

from ..loading import FAMILIES
from ..models.glm.megatron import MegatronShards, check_position_tables
from ..shards import write_sharded_safetensors
from .convert import model_class as find_model_class
from .convert import write_tokenizer


def convert_megatron(source: Path, destination: Path, model_class: str = "GLMForConditionalGeneration",
                     config: Path | None = None, max_shard_size: int | str = "2GB") -> None:
    config_file = config if config is not None else source / "config.json"
    if not config_file.is_file():
        raise SystemExit(f"{source} has no config.json (THUDM checkpoints carry none): give the model's "
                         "architecture with --config CONFIG_JSON")
    cls = find_model_class(model_class, source)
    glm_config = cls.config_class.from_flagai_json(config_file)
    shards = MegatronShards(source, glm_config.num_attention_heads)
    plan = shards.plan()  # THUDM name -> meta tensor of the merged shape
    check_position_tables(plan, glm_config, shards.paths[0].parent)
    names = native_names(cls, glm_config, plan, source)
    native_plan = {names[name]: tensor for name, tensor in plan.items() if name in names}
    thudm_name = {native: name for name, native in names.items()}
    write_sharded_safetensors(destination, native_plan, lambda native: shards.merged(thudm_name[native]),
                              max_shard_size=max_shard_size)
    dtypes = {tensor.dtype for tensor in native_plan.values() if tensor.is_floating_point()}
    glm_config.architectures = [cls.__name__]
    glm_config.dtype = dtypes.pop() if len(dtypes) == 1 else torch.float32
    glm_config.save_pretrained(destination)
    write_tokenizer(source, destination, cls)
    count = sum(tensor.numel() for tensor in native_plan.values())
    print(f"{source} -> {destination} (native, {len(shards.paths)} model-parallel shards merged): {cls.__name__}, "
          f"{count:,} parameters in the checkpoint, {glm_config.dtype}")


def native_names(cls, config, plan: dict[str, torch.Tensor], source: Path) -> dict[str, str]:
    """``{THUDM name: the name in cls's state dict}`` for the checkpoint's tensors (dropped ones left out), checked
    against ``cls`` built on the meta device: unknown names, wrong shapes and missing backbone tensors are errors."""
    family = FAMILIES[cls.config_class.model_type]
    with torch.device("meta"):
        expected = cls(config).state_dict()
    prefix = cls.base_model_prefix
    names, unused, mismatched = {}, [], []
    for name, tensor in plan.items():
        for ours in family.keymap.convert({name: tensor}):  # a rename (or nothing for a dropped buffer)
            key = f"{prefix}.{ours}" if f"{prefix}.{ours}" in expected else ours
            if key not in expected:
                unused.append(name)
            elif expected[key].shape != tensor.shape:
                mismatched.append(f"{name}: checkpoint {tuple(tensor.shape)} vs {cls.__name__} "
                                  f"{tuple(expected[key].shape)}")
            else:
                names[name] = key
    if mismatched or unused:
        raise ValueError(f"Checkpoint tensors in {source} do not fit {cls.__name__}: "
                         + "; ".join(mismatched + [f"{name}: not a tensor of {cls.__name__}" for name in unused]))
    backbone = tuple(start for module in family.backbone_modules for start in (f"{prefix}.{module}.", f"{module}."))
    missing = sorted(key for key in set(expected) - set(names.values()) if key.startswith(backbone))
    if missing:
        raise ValueError(f"Checkpoint in {source} lacks backbone weights of {cls.__name__}: {', '.join(missing)}")
    return names


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("destination", type=Path)
    parser.add_argument("--model-class", default="GLMForConditionalGeneration",
                        help="GLMForConditionalGeneration (default), GLMModel, GLMForSequenceClassification, ...")
    parser.add_argument("--config", type=Path, help="config.json to use instead of SRC's")
    parser.add_argument("--max-shard-size", default="2GB",
                        help="largest output shard, e.g. 2GB (default), 5GB, 500MB; also the memory it needs")
    args = parser.parse_args(argv)
    try:
        convert_megatron(args.source.resolve(), args.destination, args.model_class, args.config,
                         args.max_shard_size)
    except (ValueError, FileNotFoundError) as error:  # bad shards, names, shapes: the message says which
        raise SystemExit(f"error: {error}") from error


if __name__ == "__main__":
    sys.exit(main())
