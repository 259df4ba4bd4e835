"""The ``flagai-hf`` console command (``[project.scripts]`` in pyproject.toml).

    flagai-hf download MODEL_NAME [--download-path ./checkpoints] [--sources local,hf,modelhub,s3]
    flagai-hf env
    flagai-hf convert ...          # flagai_hf/conversion/convert.py (native <-> FlagAI layouts)
    flagai-hf export ...           # flagai_hf/conversion/export_hub.py (Hub-ready remote-code folder)
    flagai-hf serve-mirror ...     # flagai_hf/conversion/serve_mirror.py (HF_ENDPOINT mirror on 127.0.0.1)
    flagai-hf megatron-merge ...   # flagai_hf/conversion/convert_glm_megatron.py (Megatron shards -> native folder)

``download`` runs the resolution chain of ``from_pretrain`` (``flagai_hf.download``); ``env`` prints versions, the
download settings in effect (no secrets) and the cache locations. The conversion subcommands run the ``main(argv)`` of
their module in ``flagai_hf.conversion`` with the remaining arguments (``flagai-hf convert --help`` shows theirs).
"""

from __future__ import annotations

import argparse
import importlib
import platform
import sys
from pathlib import Path

CONVERSION_COMMANDS = {  # subcommand: its module in flagai_hf.conversion
    "convert": "convert",
    "export": "export_hub",
    "serve-mirror": "serve_mirror",
    "megatron-merge": "convert_glm_megatron",
}
SECRET_SETTINGS = {"hf_token", "s3_access_key_id", "s3_secret_access_key"}


def run_conversion(name: str, argv: list[str]):
    """Run the subcommand's ``main(argv)`` in this process."""
    return importlib.import_module(f"flagai_hf.conversion.{CONVERSION_COMMANDS[name]}").main(argv)


def download(model_name: str, download_path: str, sources: str | None) -> Path:
    """``download_path/model_name`` through ``from_pretrain``'s chain (local, hf, modelhub, s3)."""
    from .loading import download_folder

    options = {"sources": sources} if sources else {}
    try:
        folder = download_folder(download_path, model_name, options)
    except (ValueError, FileNotFoundError) as error:  # ModelNotFoundError lists every source tried and why
        raise SystemExit(f"error: {error}") from error
    print(folder)
    return folder


def environment() -> dict:
    """Versions, download settings in effect (secrets left out) and cache locations."""
    import huggingface_hub
    import huggingface_hub.constants as hub_constants
    import tokenizers
    import torch
    import transformers

    from .download import DownloadSettings

    settings = DownloadSettings.from_call()
    info = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
        "huggingface_hub": huggingface_hub.__version__,
        "flagai_hf": _version(),
        "sources": ",".join(settings.sources),
        "hf_endpoint": settings.hf_endpoint or hub_constants.ENDPOINT,
        "hf_hub_offline": bool(hub_constants.HF_HUB_OFFLINE),
        "modelhub_url": settings.modelhub_url,
        "s3_endpoint": settings.s3_endpoint,
        "s3_bucket": settings.s3_bucket,
        "s3_prefix": settings.s3_prefix,
        "hf_home": hub_constants.HF_HOME,
        "hf_hub_cache": hub_constants.HF_HUB_CACHE,
    }
    for key, value in info.items():
        print(f"{key:<16} {value}")
    return info


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("flagai_hf")
    except PackageNotFoundError:
        return "(not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="flagai-hf", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    p = commands.add_parser("download",
                            help="download a FlagAI model name or Hub repo id through from_pretrain's chain")
    p.add_argument("model_name", help="e.g. GLM-large-ch, RoBERTa-base-ch, or ORG/NAME")
    p.add_argument("--download-path", default="./checkpoints", help="the folder is DOWNLOAD_PATH/MODEL_NAME")
    p.add_argument("--sources", default=None, help="comma-separated subset of local,hf,modelhub,s3 "
                                                    "(default: FLAGAI_HF_SOURCES, else all)")
    commands.add_parser("env", help="versions, download settings and cache locations")
    for name, module in CONVERSION_COMMANDS.items():
        commands.add_parser(name, help=f"flagai_hf/conversion/{module}.py (its arguments follow)", add_help=False)
    return parser


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in CONVERSION_COMMANDS:
        return run_conversion(argv[0], argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "download":
        download(args.model_name, args.download_path, args.sources)
    elif args.command == "env":
        environment()
    else:
        parser.print_help()
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
