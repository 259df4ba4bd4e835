"""Convert a FlagAI or transformers checkpoint folder into a native flagai_hf folder.

    python conversion/convert_to_native.py SRC_FOLDER DST_FOLDER --model-class BertForSequenceLabeling [--class-num 7]

The same as ``python conversion/convert.py --to native ...`` (see convert.py; ``--to flagai`` goes back). SRC_FOLDER
holds ``config.json`` and weights in any layout the family's key map knows (FlagAI's legacy layout, transformers',
or ours). DST_FOLDER gets ``config.json`` (model_type ``flagai_bert``, ...), ``model.safetensors`` and the tokenizer
files. Unknown tensor names, wrong shapes or missing backbone weights stop the conversion with the names listed.
"""

import argparse
import sys
from pathlib import Path

from flagai_hf.conversion.convert import to_native


def convert(source: Path, destination: Path, model_class: str, **config_overrides) -> None:
    to_native(source, destination, model_class, **config_overrides)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("destination", type=Path)
    parser.add_argument("--model-class", required=True, help="e.g. BertModel, BertForSequenceLabeling, BertForSeq2seq")
    parser.add_argument("--class-num", type=int, help="number of labels of a classification / labeling head")
    args = parser.parse_args(argv)
    overrides = {"class_num": args.class_num} if args.class_num is not None else {}
    try:
        convert(args.source.resolve(), args.destination, args.model_class, **overrides)
    except (ValueError, FileNotFoundError) as error:
        raise SystemExit(f"error: {error}") from error


if __name__ == "__main__":
    sys.exit(main())
