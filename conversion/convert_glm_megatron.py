"""Convert a THUDM Megatron GLM checkpoint (model-parallel shards) into a native flagai_glm folder.

    python conversion/convert_glm_megatron.py SRC DST [--model-class GLMForConditionalGeneration] [--config CONFIG_JSON]

SRC holds ``mp_rank_XX_model_states.pt`` (directly, in ``release/``, or in the iteration that
``latest_checkpointed_iteration.txt`` names) and a FlagAI / THUDM ``config.json`` (``num_layers``, ``hidden_size``,
``num_attention_heads``, ``vocab_size``, ``max_sequence_length``, ...). THUDM's own checkpoints carry no config (the
architecture is in the training script's arguments): give one with ``--config``, which also replaces SRC's.
The shards are merged into one model (see ``flagai_hf/models/glm/megatron.py``); DST gets ``config.json`` and
``model.safetensors``, loadable with ``GLMForConditionalGeneration.from_pretrained(DST)``.
"""

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from convert_to_native import convert

from flagai_hf.models.glm.megatron import find_megatron_shards


def convert_megatron(source: Path, destination: Path, model_class: str = "GLMForConditionalGeneration",
                     config: Path | None = None) -> None:
    if config is None:
        if not (source / "config.json").is_file():
            raise SystemExit(f"{source} has no config.json (THUDM checkpoints carry none): give the model's "
                             "architecture with --config CONFIG_JSON")
        return convert(source, destination, model_class)
    shards = find_megatron_shards(source)
    if not shards:
        raise SystemExit(f"No Megatron shards mp_rank_XX_model_states.pt in {source}")
    with tempfile.TemporaryDirectory() as workspace:  # SRC's shards next to the given config, without copying them
        folder = Path(workspace) / source.name
        folder.mkdir()
        shutil.copyfile(config, folder / "config.json")
        for shard in shards:
            (folder / shard.name).symlink_to(shard.resolve())
        convert(folder, destination, model_class)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("destination", type=Path)
    parser.add_argument("--model-class", default="GLMForConditionalGeneration",
                        help="GLMForConditionalGeneration (default), GLMModel, GLMForSequenceClassification, ...")
    parser.add_argument("--config", type=Path, help="config.json to use instead of SRC's")
    args = parser.parse_args(argv)
    try:
        convert_megatron(args.source.resolve(), args.destination, args.model_class, args.config)
    except (ValueError, FileNotFoundError) as error:  # bad shards, names, shapes: the message says which
        raise SystemExit(f"error: {error}") from error


if __name__ == "__main__":
    sys.exit(main())
