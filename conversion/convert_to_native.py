"""Convert a FlagAI or transformers checkpoint folder into a native flagai_hf folder.

    python conversion/convert_to_native.py SRC_FOLDER DST_FOLDER --model-class BertForSequenceLabeling [--class-num 7]

SRC_FOLDER holds ``config.json`` and weights in any layout the family's key map knows (FlagAI's legacy layout,
transformers', or ours). DST_FOLDER gets ``config.json`` (model_type ``flagai_bert``, ...), ``model.safetensors`` and,
when SRC_FOLDER has a ``vocab.txt``, the tokenizer files. Unknown tensor names, wrong shapes or missing backbone
weights stop the conversion with the names listed.
"""

import argparse
import sys
from pathlib import Path

import flagai_hf

TOKENIZERS = {"vocab.txt": flagai_hf.FlagAIBertTokenizer}


def convert(source: Path, destination: Path, model_class: str, **config_overrides) -> None:
    if model_class not in flagai_hf.__all__ or not hasattr(getattr(flagai_hf, model_class), "from_pretrain"):
        known = [name for name in flagai_hf.__all__ if hasattr(getattr(flagai_hf, name), "from_pretrain")]
        raise SystemExit(f"Unknown --model-class {model_class!r}; choose one of: {', '.join(known)}")
    cls = getattr(flagai_hf, model_class)
    model = cls.from_pretrain(source.parent, source.name, **config_overrides)
    model.save_pretrained(destination)
    for vocabulary, tokenizer_class in TOKENIZERS.items():
        if (source / vocabulary).is_file():
            tokenizer_class.from_pretrained(source).save_pretrained(destination)
    print(f"{source} -> {destination}: {type(model).__name__}, {sum(p.numel() for p in model.parameters()):,} "
          f"parameters")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("destination", type=Path)
    parser.add_argument("--model-class", required=True, help="e.g. BertModel, BertForSequenceLabeling, BertForSeq2seq")
    parser.add_argument("--class-num", type=int, help="number of labels of a classification / labeling head")
    args = parser.parse_args(argv)
    overrides = {"class_num": args.class_num} if args.class_num is not None else {}
    convert(args.source.resolve(), args.destination, args.model_class, **overrides)


if __name__ == "__main__":
    sys.exit(main())
