"""FlagAI's ``from_pretrain``: load ``download_path/model_name/`` whatever layout it holds.

A folder holds ``config.json`` and weights (``model.safetensors`` preferred, sharded safetensors, or a pickle
``pytorch_model.bin`` read with ``torch.load(weights_only=True)``, possibly wrapped in ``{"module": ...}``, or a layout
of the family's own ``weight_readers``, e.g. GLM's THUDM Megatron shards). Its layout
may be flagai_hf's own, transformers' (e.g. ``model_type: "bert"``) or FlagAI's legacy one (no ``model_type``); each
family registers a ``KeyMap`` that renames any of them to ours. Loading is strict about what matters:

- names no key map knows, tensors of the wrong shape, missing backbone weights, a missing weights file or a folder of
  another family are errors that name them (FlagAI silently kept random weights instead);
- missing head weights (fine-tuning a pretrained backbone) are initialised and reported in a warning;
- checkpoint tensors inside the backbone that the model has no place for (a config with fewer layers than the
  checkpoint) are an error that lists them; head tensors the chosen class has no use for (e.g. the MLM head when
  loading a classifier; the family's ``backbone_modules`` say what is not a head), and backbone modules the class
  lacks altogether (T5EncoderModel: the decoder), are dropped with a warning.

Loading costs about the read: the model is built with its parameters on the meta device (no memory, no random
initialisation) and the checkpoint's tensors are assigned to it (safetensors: memory-mapped); only what the checkpoint
lacks is allocated and initialised.

A missing folder is downloaded first (``flagai_hf.download``: Hugging Face Hub, BAAI ModelHub, S3 mirrors; once per
machine, resumed, verified); a folder the downloader left unfinished is never loaded.
"""

import json
import pickle
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as hf_init
from transformers.utils import logging

from .keymap import KeyMap
from .shards import INDEX_NAME, read_sharded_safetensors

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
    # How a model of the family is written back in FlagAI's legacy layout: ``to_flagai(model)`` returns
    # ``(config_dict, state_dict)`` with FlagAI's config keys and tensor names (e.g. ``keymap.FlagAILayout``).
    # ``None`` when nobody has described the family's FlagAI layout yet.
    to_flagai: Callable | None = None
    # ``{vocabulary file name: tokenizer class}``: the family's tokenizer for a folder holding that file (tried in
    # order; the converters use it to write a folder's tokenizer).
    tokenizers: dict[str, type] = field(default_factory=dict)


FAMILIES: dict[str, Family] = {}


def register_family(model_type: str, family: Family) -> None:
    FAMILIES[model_type] = family


def from_pretrain(cls, download_path="./checkpoints", model_name=None, device="cpu", **kwargs):
    """Load ``cls`` from ``download_path/model_name``, downloading the folder first when it is missing or unfinished.

    Download options (``sources``, ``modelhub_url``, ``s3_endpoint``, ``s3_bucket``, ``s3_prefix``, timeouts, ...; see
    ``flagai_hf.download.DownloadSettings``) are taken out of ``kwargs``; the remaining kwargs override the config.
    """
    folder = download_folder(download_path, model_name, kwargs)
    return load_folder(cls, folder, device=device, **kwargs)


def download_folder(download_path, model_name: str, kwargs: dict) -> Path:
    """``download_path/model_name``, downloaded first when missing or unfinished; the download options are popped
    from ``kwargs`` (see ``flagai_hf.download.DownloadSettings``)."""
    from .download import SETTING_NAMES, DownloadSettings, resolve

    settings = DownloadSettings.from_call(**{name: kwargs.pop(name) for name in list(kwargs) if name in SETTING_NAMES})
    return resolve(download_path, model_name, settings)


def load_folder(cls, folder, device="cpu", dtype=None, **kwargs):
    """Build ``cls`` from ``folder`` (any layout its family knows), then move it to ``device`` / ``dtype``.

    The model is built with its parameters on the meta device (no memory, no random initialisation) and the
    checkpoint's tensors are assigned in place, so loading costs about the read; only the parameters the checkpoint
    lacks (new heads) are allocated and initialised with the model's ``_init_weights``.

    ``dtype=None`` (or ``"auto"``, transformers' default) keeps the checkpoint's dtype when all its floating tensors
    share one 16- or 32-bit dtype, so a bf16 checkpoint loads as the memory-mapped bf16 tensors themselves, with no
    float32 copy; other checkpoints (float64, mixed dtypes) load in float32. Give ``dtype`` to cast.
    """
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
    if dtype is None or dtype == "auto":
        dtype = checkpoint_dtype(state_dict)
    _untie_if_checkpoint_differs(cls, config, state_dict)
    with hf_init.no_init_weights(), _parameters_on_meta():
        model = cls(config)
    _load_into(model, state_dict, family, folder, dtype=dtype)
    model.eval()
    return model.to(device=device, dtype=dtype) if dtype is not None else model.to(device)


def checkpoint_dtype(state_dict: dict[str, torch.Tensor]) -> torch.dtype:
    """The dtype ``load_folder`` gives a model by default: the checkpoint's floating dtype when every floating tensor
    has the same one and it is bf16, fp16 or fp32; float32 otherwise (float64, or a mix)."""
    found = {tensor.dtype for tensor in state_dict.values() if tensor.is_floating_point()}
    single = found.pop() if len(found) == 1 else None
    return single if single in (torch.bfloat16, torch.float16, torch.float32) else torch.float32


def read_weights(folder: Path, readers: tuple[Callable, ...] = (), config=None) -> dict[str, torch.Tensor]:
    """The folder's tensors: safetensors (single or sharded, memory-mapped; a sharded folder's index is followed
    exactly, see ``flagai_hf.shards``) by preference, else a pickle read safely, else what one of the family's
    ``readers`` finds (called with ``folder`` and ``config``)."""
    single = folder / "model.safetensors"
    if single.is_file():
        return load_file(single)
    if (folder / INDEX_NAME).is_file():  # each tensor from the shard the index names, inside the folder
        return read_sharded_safetensors(folder)
    pickled = folder / "pytorch_model.bin"
    if pickled.is_file():
        return read_pickled_weights(pickled)
    for reader in readers:
        state_dict = reader(folder, config)
        if state_dict is not None:
            return state_dict
    also = "".join(f" or what {reader.__name__} reads" for reader in readers)
    raise FileNotFoundError(
        f"No weights in {folder}: expected model.safetensors, model.safetensors.index.json or pytorch_model.bin"
        f"{also} (found {', '.join(sorted(p.name for p in folder.iterdir()))})"
    )


def read_pickled_weights(path: Path) -> dict[str, torch.Tensor]:
    """A pickled state dict, read with ``torch.load(weights_only=True)`` (no code runs) and unwrapped from FlagAI's
    Trainer format ``{"module": state_dict, ...}``. Not memory-mapped: the model must not depend on a file that a
    later ``torch.save`` to the same path would truncate."""
    payload = torch_load_weights(path, accepted="a dict of tensors, possibly wrapped as {'module': ...}")
    if not isinstance(payload, dict):
        raise ValueError(f"{path} holds a {type(payload).__name__}; expected a state dict (name -> tensor)")
    for wrapper in ("module", "state_dict", "model"):  # FlagAI's Trainer saves {"module": state_dict, ...}
        if isinstance(payload.get(wrapper), dict):
            payload = payload[wrapper]
            break
    not_tensors = sorted(str(name) for name, value in payload.items() if not isinstance(value, torch.Tensor))
    if not_tensors:
        raise ValueError(f"{path} is not a state dict of tensors: {', '.join(not_tensors)} are not tensors")
    return payload


def torch_load_weights(path: Path, accepted: str, **options):
    """``torch.load(path, weights_only=True, map_location="cpu", **options)``, with its failures as ``ValueError``s
    naming the file: an empty file, a file that is not a torch checkpoint, and a pickle holding objects other than
    tensors (refused by ``weights_only``; ``accepted`` says what is)."""
    if path.stat().st_size == 0:
        raise ValueError(f"{path} is empty (0 bytes): a truncated or unfinished copy? Expected {accepted}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True, **options)
    except pickle.UnpicklingError as error:
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ValueError(
            f"{path} holds objects other than tensors, which are not loaded (pickle files are read with "
            f"torch.load(weights_only=True)), or is not a pickle at all; accepted: {accepted}. torch says: {message}"
        ) from error
    except (RuntimeError, EOFError) as error:  # a damaged zip archive, a truncated legacy pickle
        raise ValueError(f"{path} is not a readable torch checkpoint ({type(error).__name__}: "
                         f"{str(error).splitlines()[0] if str(error) else 'truncated'}); expected {accepted}") from error


@contextmanager
def _parameters_on_meta():
    """Within: parameters registered by any ``nn.Module`` are moved to the meta device (shape and dtype only, so no
    memory and no cost for their random initialisation); buffers stay real, so non-persistent ones (position ids,
    rotary tables) get their proper values from the constructor."""
    register_parameter = nn.Module.register_parameter

    def register_on_meta(module, name, param):
        register_parameter(module, name, param)
        if param is not None and param.device.type != "meta":
            module._parameters[name] = type(param)(param.to("meta"), requires_grad=param.requires_grad)

    nn.Module.register_parameter = register_on_meta
    try:
        yield
    finally:
        nn.Module.register_parameter = register_parameter


def _untie_if_checkpoint_differs(cls, config, state_dict) -> None:
    """A checkpoint whose output embedding differs from its input embedding loads untied (FlagAI's UniLM head)."""
    prefix = cls.base_model_prefix + "."
    for target, source in (getattr(cls, "_tied_weights_keys", None) or {}).items():
        source = source[len(prefix):] if source.startswith(prefix) else source
        if target in state_dict and source in state_dict and not torch.equal(state_dict[target], state_dict[source]):
            config.tie_word_embeddings = False


def _load_into(model, state_dict, family: Family, folder: Path, dtype: torch.dtype | None = None) -> None:
    """Assign the checkpoint's tensors to ``model`` (built by ``load_folder`` with parameters on the meta device),
    initialise the parameters it lacks, and re-tie the tied ones. Floating tensors are cast to ``dtype`` (default:
    the model's own dtype)."""
    expected = model.state_dict()
    tied = set(getattr(model, "all_tied_weights_keys", {}) or {})
    prefix = model.base_model_prefix
    loaded, unused, mismatched, addresses = {}, [], [], set()
    for name, tensor in state_dict.items():
        key = f"{prefix}.{name}" if f"{prefix}.{name}" in expected else name  # backbone names inside a head model
        if key not in expected:
            unused.append(name)
        elif expected[key].shape != tensor.shape:
            mismatched.append(f"{key}: checkpoint {tuple(tensor.shape)} vs model {tuple(expected[key].shape)}")
        else:
            tensor = _cast_checked(key, tensor, expected[key].dtype, dtype, folder)
            if tensor.data_ptr() in addresses:  # a pickle of a tied model: parameters must not alias unless tied
                tensor = tensor.clone()
            addresses.add(tensor.data_ptr())
            loaded[key] = tensor
    if mismatched:
        raise ValueError(f"Checkpoint tensors in {folder} do not fit {type(model).__name__}: " + "; ".join(mismatched))

    backbone = tuple(start for module in family.backbone_modules for start in (f"{prefix}.{module}.", f"{module}."))
    # A backbone module the class lacks altogether (T5EncoderModel: the decoder) is dropped like a head.
    present = tuple(start for start in backbone if any(key.startswith(start) for key in expected))
    unused_backbone = sorted(name for name in unused if name.startswith(present))
    if unused_backbone:  # e.g. a config asking for fewer layers than the checkpoint holds: a partial model
        raise ValueError(
            f"Checkpoint tensors in {folder} have no place in {type(model).__name__} as configured (a partial model "
            f"would load; check the config's sizes against the checkpoint): {', '.join(unused_backbone)}"
        )
    missing = sorted(set(expected) - set(loaded) - tied)
    missing_backbone = [name for name in missing if name.startswith(backbone)]
    if missing_backbone:
        raise ValueError(
            f"Checkpoint in {folder} lacks backbone weights of {type(model).__name__}: {', '.join(missing_backbone)}"
        )
    model.load_state_dict(loaded, strict=False, assign=True)
    for name, param in model.named_parameters(remove_duplicate=False):
        if name in loaded:
            param._is_hf_initialized = True  # transformers' init functions leave flagged tensors alone
    _initialise_missing(model, missing)
    model.tie_weights(recompute_mapping=False)
    still_empty = [name for name, param in model.named_parameters() if param.device.type == "meta"]
    if still_empty:
        raise RuntimeError(f"{type(model).__name__}: no value for {', '.join(still_empty)} (not in {folder}, "
                           "not initialised, not tied)")
    if missing:
        logger.warning(f"{type(model).__name__}: newly initialised (not in {folder}): {', '.join(missing)}")
    if unused:  # only head tensors get here (a task checkpoint loaded into the base model or another head)
        logger.warning(f"{type(model).__name__}: checkpoint head tensors in {folder} not used by this class "
                       f"(dropped): {', '.join(sorted(unused))}")


def _cast_checked(key: str, tensor: torch.Tensor, model_dtype: torch.dtype, dtype: torch.dtype | None,
                  folder: Path) -> torch.Tensor:
    """``tensor`` cast for parameter ``key``: to ``dtype`` (when given and the tensor is floating) else the model's
    ``model_dtype``. Integer / bool tensors for a floating parameter, and casts whose result is not finite where the
    source was (float64 beyond the fp16/bf16 range), are refused naming the tensor."""
    if model_dtype.is_floating_point and not tensor.is_floating_point():
        raise ValueError(f"Checkpoint tensor {key} in {folder} is {tensor.dtype}; the parameter is floating "
                         f"({model_dtype}) and only floating tensors are loaded into it")
    wanted = dtype if dtype is not None and tensor.is_floating_point() else model_dtype
    cast = tensor.to(wanted)
    if cast.dtype != tensor.dtype and cast.is_floating_point():
        if bool((torch.isfinite(tensor) & ~torch.isfinite(cast)).any()):
            raise ValueError(f"Checkpoint tensor {key} in {folder} overflows when cast from {tensor.dtype} to "
                             f"{cast.dtype} (values beyond its range become inf); save it in a dtype that fits")
    return cast


def _initialise_missing(model: PreTrainedModel, missing: list[str]) -> None:
    """Allocate the parameters named in ``missing`` (still on the meta device) and initialise them as a fresh model
    would: the module's own ``reset_parameters``, then the ``_init_weights`` of the innermost ``PreTrainedModel`` that
    holds the module. Tensors loaded from the checkpoint carry ``_is_hf_initialized`` and are left alone."""
    owners = {}  # module -> innermost PreTrainedModel holding it

    def visit(module, owner):
        owners[module] = owner
        for child in module.children():
            visit(child, child if isinstance(child, PreTrainedModel) else owner)

    visit(model, model)
    to_initialise = []
    for name in missing:
        module_name, _, attribute = name.rpartition(".")
        module = model.get_submodule(module_name)
        param = module._parameters.get(attribute)
        if param is None or param.device.type != "meta":
            continue  # a persistent buffer: it keeps the constructor's value
        module._parameters[attribute] = type(param)(torch.empty_like(param, device="cpu"),
                                                    requires_grad=param.requires_grad)
        if module not in to_initialise:
            to_initialise.append(module)
    with torch.no_grad(), hf_init.guard_torch_init_functions():
        for module in to_initialise:
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
            owners[module]._init_weights(module)
