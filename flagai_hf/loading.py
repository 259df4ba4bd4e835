"""FlagAI's ``from_pretrain``: load ``download_path/model_name/`` whatever layout it holds.

A folder holds ``config.json`` and weights (``model.safetensors`` preferred, sharded safetensors, or a pickle
``pytorch_model.bin`` read with ``torch.load(weights_only=True)``, possibly wrapped in ``{"module": ...}``, or a layout
of the family's own ``weight_readers``, e.g. GLM's THUDM Megatron shards). Its layout
may be flagai_hf's own, transformers' (e.g. ``model_type: "bert"``) or FlagAI's legacy one (no ``model_type``); each
family registers a ``KeyMap`` that renames any of them to ours. Loading is strict about what matters:

- names no key map knows, tensors of the wrong shape, missing backbone weights, a missing weights file or a folder of
  another family are errors that name them (FlagAI silently kept random weights instead);
- missing head weights (fine-tuning a pretrained backbone) are initialised and reported in a warning;
- checkpoint tensors the chosen class has no use for (e.g. the MLM head when loading a classifier) are reported.

Downloading missing folders (Hugging Face Hub, BAAI ModelHub, S3 mirrors) is not implemented yet: only local folders.
"""

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file
from transformers.utils import logging

from .keymap import KeyMap

logger = logging.get_logger(__name__)


@dataclass
class Family:
    """How one model family's checkpoints are recognised and renamed."""

    keymap: KeyMap
    model_types: set[str] = field(default_factory=set)  # config.json model_type values of this family
    backbone_modules: tuple[str, ...] = ()  # top-level backbone modules whose weights must be present
    # Other checkpoint layouts of the family (e.g. GLM's Megatron shards), tried when the folder has none of the
    # standard weight files: ``reader(folder, config)`` returns the state dict, or ``None`` when it finds none of its
    # files there.
    weight_readers: tuple[Callable, ...] = ()


FAMILIES: dict[str, Family] = {}


def register_family(model_type: str, family: Family) -> None:
    FAMILIES[model_type] = family


def from_pretrain(cls, download_path="./checkpoints", model_name=None, device="cpu", **kwargs):
    """Load ``cls`` from the local folder ``download_path/model_name``; kwargs override the config."""
    if not model_name:
        raise ValueError("from_pretrain needs model_name: the folder under download_path holding the model")
    folder = Path(download_path) / model_name
    if not (folder / "config.json").is_file():
        present = sorted(p.name for p in Path(download_path).iterdir()) if Path(download_path).is_dir() else []
        raise FileNotFoundError(
            f"No model folder {folder} (with a config.json). Downloading is not available yet: place the model there. "
            f"{download_path} holds: {', '.join(present) or 'nothing'}"
        )
    return load_folder(cls, folder, device=device, **kwargs)


def load_folder(cls, folder, device="cpu", dtype=None, **kwargs):
    """Build ``cls`` from ``folder`` (any layout its family knows), then move it to ``device`` / ``dtype``."""
    folder = Path(folder)
    dtype = kwargs.pop("torch_dtype", dtype)
    model_type = cls.config_class.model_type
    family = FAMILIES[model_type]
    with open(folder / "config.json", encoding="utf-8") as handle:
        config_dict = json.load(handle)
    found = config_dict.get("model_type")
    if found is not None and found not in family.model_types | {model_type}:
        raise ValueError(
            f"{folder} holds a {found!r} model; {cls.__name__} loads {', '.join(sorted(family.model_types))} folders"
        )

    config = cls.config_class.from_flagai_dict(config_dict, source=str(folder / "config.json"), **kwargs)
    state_dict = family.keymap.convert(read_weights(folder, family.weight_readers, config))
    _untie_if_checkpoint_differs(cls, config, state_dict)
    model = cls(config)
    _load_into(model, state_dict, family, folder)
    model.eval()
    return model.to(device=device, dtype=dtype) if dtype is not None else model.to(device)


def read_weights(folder: Path, readers: tuple[Callable, ...] = (), config=None) -> dict[str, torch.Tensor]:
    """The folder's tensors: safetensors (single or sharded) by preference, else a pickle read safely, else what one
    of the family's ``readers`` finds (called with ``folder`` and ``config``)."""
    single = folder / "model.safetensors"
    if single.is_file():
        return load_file(single)
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        return {name: tensor for shard in shards for name, tensor in load_file(folder / shard).items()}
    pickle = folder / "pytorch_model.bin"
    if pickle.is_file():
        state_dict = torch.load(pickle, map_location="cpu", weights_only=True)
        for wrapper in ("module", "state_dict", "model"):  # FlagAI's Trainer saves {"module": state_dict, ...}
            if isinstance(state_dict.get(wrapper), dict):
                state_dict = state_dict[wrapper]
                break
        return state_dict
    for reader in readers:
        state_dict = reader(folder, config)
        if state_dict is not None:
            return state_dict
    also = "".join(f" or what {reader.__name__} reads" for reader in readers)
    raise FileNotFoundError(
        f"No weights in {folder}: expected model.safetensors, model.safetensors.index.json or pytorch_model.bin"
        f"{also} (found {', '.join(sorted(p.name for p in folder.iterdir()))})"
    )


def _untie_if_checkpoint_differs(cls, config, state_dict) -> None:
    """A checkpoint whose output embedding differs from its input embedding loads untied (FlagAI's UniLM head)."""
    prefix = cls.base_model_prefix + "."
    for target, source in (getattr(cls, "_tied_weights_keys", None) or {}).items():
        source = source[len(prefix):] if source.startswith(prefix) else source
        if target in state_dict and source in state_dict and not torch.equal(state_dict[target], state_dict[source]):
            config.tie_word_embeddings = False


def _load_into(model, state_dict, family: Family, folder: Path) -> None:
    expected = model.state_dict()
    tied = set(getattr(model, "all_tied_weights_keys", {}) or {})
    prefix = model.base_model_prefix
    loaded, unused, mismatched = {}, [], []
    for name, tensor in state_dict.items():
        key = f"{prefix}.{name}" if f"{prefix}.{name}" in expected else name  # backbone names inside a head model
        if key not in expected:
            unused.append(name)
        elif expected[key].shape != tensor.shape:
            mismatched.append(f"{key}: checkpoint {tuple(tensor.shape)} vs model {tuple(expected[key].shape)}")
        else:
            loaded[key] = tensor
    if mismatched:
        raise ValueError(f"Checkpoint tensors in {folder} do not fit {type(model).__name__}: " + "; ".join(mismatched))

    missing = sorted(set(expected) - set(loaded) - tied)
    backbone = tuple(start for module in family.backbone_modules for start in (f"{prefix}.{module}.", f"{module}."))
    missing_backbone = [name for name in missing if name.startswith(backbone)]
    if missing_backbone:
        raise ValueError(
            f"Checkpoint in {folder} lacks backbone weights of {type(model).__name__}: {', '.join(missing_backbone)}"
        )
    model.load_state_dict(loaded, strict=False)
    if missing:
        logger.warning(f"{type(model).__name__}: newly initialised (not in {folder}): {', '.join(missing)}")
    if unused:
        logger.info(f"{type(model).__name__}: unused checkpoint tensors in {folder}: {', '.join(sorted(unused))}")
