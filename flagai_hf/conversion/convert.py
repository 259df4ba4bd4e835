"""Convert a model folder between layouts: to a native flagai_hf folder, or to FlagAI's legacy layout.

    flagai-hf convert --to native SRC DST --model-class BertForSequenceLabeling [--class-num 7]
    flagai-hf convert --to flagai SRC DST [--model-class GLMForSequenceClassification]

SRC is any folder flagai_hf reads (native, FlagAI legacy, transformers BERT, THUDM GLM). ``--to native`` writes
``config.json`` (model_type ``flagai_bert``, ...), ``model.safetensors`` and the tokenizer files. ``--to flagai``
writes what FlagAI's ``from_pretrain`` reads: ``config.json`` with FlagAI's keys (``num_layers``, ``class_num``,
``layernorm_epsilon``, ...), ``pytorch_model.bin`` with the tensor names FlagAI's class saves (``model.`` prefixes,
``out_layer``, ``crf_layer.trans``, ``pool_layer``, ...) and the vocabulary files. The per-family layouts are data
(``Family.to_flagai``, e.g. ``flagai_hf/models/bert/convert_flagai_bert.py``); a family without one is refused.
``--model-class`` defaults to the class a native folder's config names (``architectures``).

Unknown tensor names, wrong shapes or missing backbone weights stop the conversion with the names listed.
"""

import argparse
import json
import shutil
import sys
from pathlib import Path

import torch

import flagai_hf

from ..loading import FAMILIES

# Files FlagAI's tokenizers read (flagai/data/tokenizer/uni_tokenizer): copied verbatim into a FlagAI folder.
FLAGAI_VOCABULARY_FILES = ("vocab.txt", "vocab.json", "merges.txt", "spiece.model", "cog-pretrain.model",
                           "special_tokens.txt")
# A transformers tokenizer's files: copied verbatim into a native folder when the family registers no tokenizer
# class for the source's vocabulary.
HF_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                      *FLAGAI_VOCABULARY_FILES)


def model_class(name: str | None, source: Path):
    """The flagai_hf class called ``name``, or the one a native ``config.json`` names in ``architectures``."""
    known = [cls for cls in flagai_hf.__all__ if hasattr(getattr(flagai_hf, cls), "from_pretrain")]
    if name is None:
        architectures = json.loads((source / "config.json").read_text()).get("architectures") or []
        name = architectures[0] if architectures else None
        if name not in known:
            raise SystemExit(f"{source}/config.json names no flagai_hf class ({architectures or 'no architectures'}): "
                             f"give --model-class, one of: {', '.join(known)}")
    if name not in known:
        raise SystemExit(f"Unknown --model-class {name!r}; choose one of: {', '.join(known)}")
    return getattr(flagai_hf, name)


def to_native(source: Path, destination: Path, model_class_name: str | None, **config_overrides) -> None:
    cls = model_class(model_class_name, source)
    model = cls.from_pretrain(source.parent, source.name, **config_overrides)
    model.save_pretrained(destination)
    write_tokenizer(source, destination, cls)
    _report(source, destination, model, "native")


def write_tokenizer(source: Path, destination: Path, cls) -> None:
    """The tokenizer of ``source`` in ``destination``: saved by the family's tokenizer class for the vocabulary
    file ``source`` holds, else transformers' tokenizer files copied as they are."""
    family = FAMILIES[cls.config_class.model_type]
    tokenizer = next((tokenizer_class for vocabulary, tokenizer_class in family.tokenizers.items()
                      if (source / vocabulary).is_file()), None)
    if tokenizer is not None:
        tokenizer.from_pretrained(source).save_pretrained(destination)
    else:
        _copy_present(source, destination, HF_TOKENIZER_FILES)


def to_flagai(source: Path, destination: Path, model_class_name: str | None, **config_overrides) -> None:
    cls = model_class(model_class_name, source)
    model_type = cls.config_class.model_type
    export = FAMILIES[model_type].to_flagai
    if export is None:
        with_layout = sorted(name for name, family in FAMILIES.items() if family.to_flagai is not None)
        raise SystemExit(f"No FlagAI layout is registered for the {model_type} family (Family.to_flagai), so "
                         f"{cls.__name__} cannot be written in FlagAI's format; families with one: "
                         f"{', '.join(with_layout)}")
    model = cls.from_pretrain(source.parent, source.name, **config_overrides)
    config, state_dict = export(model)
    destination.mkdir(parents=True, exist_ok=True)
    (destination / "config.json").write_text(json.dumps(config, indent=4, ensure_ascii=False) + "\n")
    torch.save(state_dict, destination / "pytorch_model.bin")
    _copy_present(source, destination, FLAGAI_VOCABULARY_FILES)
    layout = f"FlagAI {export.flagai_class(cls).name}" if hasattr(export, "flagai_class") else "FlagAI"
    _report(source, destination, model, layout)


def _copy_present(source: Path, destination: Path, names: tuple[str, ...]) -> None:
    for name in names:
        if (source / name).is_file():
            shutil.copyfile(source / name, destination / name)


def _report(source: Path, destination: Path, model, layout: str) -> None:
    print(f"{source} -> {destination} ({layout}): {type(model).__name__}, "
          f"{sum(p.numel() for p in model.parameters()):,} parameters")


CONVERTERS = {"native": to_native, "flagai": to_flagai}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--to", required=True, choices=sorted(CONVERTERS), help="the layout to write")
    parser.add_argument("source", type=Path)
    parser.add_argument("destination", type=Path)
    parser.add_argument("--model-class", help="e.g. BertModel, BertForSequenceLabeling, GLMForSeq2Seq (default: the "
                                              "class in a native folder's config.json)")
    parser.add_argument("--class-num", type=int, help="number of labels of a classification / labeling head")
    args = parser.parse_args(argv)
    overrides = {"class_num": args.class_num} if args.class_num is not None else {}
    try:
        CONVERTERS[args.to](args.source.resolve(), args.destination, args.model_class, **overrides)
    except (ValueError, FileNotFoundError) as error:  # bad names, shapes, missing files: the message says which
        raise SystemExit(f"error: {error}") from error


if __name__ == "__main__":
    sys.exit(main())
