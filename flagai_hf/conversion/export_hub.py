"""Export a model as a Hub-ready folder that loads with transformers alone (``trust_remote_code=True``).

    flagai-hf export SRC_FOLDER_OR_FLAGAI_NAME OUT [--model-class X]
                     [--repo-id ORG/NAME [--hf-cache DIR | --mirror DIR]] [--download-path DIR]

SRC is any folder flagai_hf reads (native, FlagAI legacy, transformers BERT, THUDM GLM) or a FlagAI model name
(``GLM-large-ch``), downloaded to ``--download-path/NAME`` first as ``from_pretrain`` does. OUT receives
``model.safetensors``, ``config.json`` (``auto_map`` of every head of the family), ``generation_config.json``, the
tokenizer files (with their ``auto_map``), ``README.md`` and the model code (see ``flagai_hf.export``).

With ``--repo-id`` the folder is also placed where ``from_pretrained("ORG/NAME", trust_remote_code=True)`` finds it
without huggingface.co:
- ``--hf-cache DIR``: a Hugging Face cache (``DIR/models--ORG--NAME/``; DIR is the ``HF_HUB_CACHE``, by default
  ``$HF_HOME/hub``); load with ``HF_HUB_OFFLINE=1``;
- ``--mirror DIR``: ``DIR/ORG/NAME/``; serve DIR with ``flagai-hf serve-mirror DIR`` and set
  ``HF_ENDPOINT`` to its address.
"""

import argparse
import sys
from pathlib import Path

from transformers import AutoTokenizer

from ..export import ExportError, check_repo_id, export_for_hub, place_in_hf_cache, place_in_mirror
from ..loading import FAMILIES, download_folder
from .convert import model_class


def source_tokenizer(cls, folder: Path):
    """The folder's tokenizer: what its ``tokenizer_config.json`` names, else the family's tokenizer for the
    vocabulary file it holds; ``None`` if it has neither."""
    if (folder / "tokenizer_config.json").is_file():
        return AutoTokenizer.from_pretrained(folder)
    family = FAMILIES[cls.config_class.model_type]
    for vocabulary, tokenizer_class in family.tokenizers.items():
        if (folder / vocabulary).is_file():
            return tokenizer_class.from_pretrained(folder)
    return None


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", help="a model folder, or a FlagAI model name to download")
    parser.add_argument("out", type=Path, help="the folder to write (must be empty or absent)")
    parser.add_argument("--model-class", help="e.g. GLMForConditionalGeneration, BertForSequenceLabeling (default: "
                                              "the class a native folder's config.json names)")
    parser.add_argument("--repo-id", help="ORG/NAME: the Hub id of the export (model card; --hf-cache / --mirror)")
    place = parser.add_mutually_exclusive_group()
    place.add_argument("--hf-cache", type=Path, help="also place the export in this Hugging Face cache (HF_HUB_CACHE)")
    place.add_argument("--mirror", type=Path, help="also place the export in this mirror directory (DIR/ORG/NAME)")
    parser.add_argument("--download-path", default="./checkpoints", help="where a FlagAI model name is downloaded")
    args = parser.parse_args(argv)
    if (args.hf_cache or args.mirror) and not args.repo_id:
        parser.error("--hf-cache and --mirror need --repo-id ORG/NAME")
    try:
        if args.repo_id:
            check_repo_id(args.repo_id)
        source = Path(args.source)
        if not source.is_dir():
            source = download_folder(args.download_path, args.source, {})
        cls = model_class(args.model_class, source)
        model = cls.from_pretrain(source.parent, source.name)
        tokenizer = source_tokenizer(cls, source)
        folder = export_for_hub(model, args.out, tokenizer, repo_id=args.repo_id)
    except (ExportError, ValueError, FileNotFoundError) as error:  # the message names the file, import or key
        raise SystemExit(f"error: {error}") from error
    files = sorted(path.name for path in folder.iterdir())
    print(f"{args.source} -> {folder}: {type(model).__name__}"
          f"{', tokenizer ' + type(tokenizer).__name__ if tokenizer is not None else ', no tokenizer found'}; "
          f"{len(files)} files: {', '.join(files)}")
    if args.hf_cache:
        snapshot = place_in_hf_cache(folder, args.repo_id, args.hf_cache)
        print(f"placed in the Hugging Face cache: {snapshot} (load with HF_HUB_OFFLINE=1 HF_HUB_CACHE={args.hf_cache})")
    if args.mirror:
        target = place_in_mirror(folder, args.repo_id, args.mirror)
        print(f"placed in the mirror: {target} (serve with flagai-hf serve-mirror {args.mirror})")


if __name__ == "__main__":
    sys.exit(main())
