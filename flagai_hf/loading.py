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

Cost before checks: before any model is built, the config is compared with the checkpoint's tensor names and shapes,
read from the file headers without loading any values (safetensors headers, a pickle memory-mapped, a sharded index
and its shards' headers; ``check_config_against_checkpoint``). A config asking for more or fewer layers than the
checkpoint holds, or for sizes its tensors do not have (a 1e12 vocabulary against a 50-token one), is refused at once,
naming the config key and the checkpoint tensor and shape, instead of building (and allocating) a model first.
``from_pretrained`` of our own layout (transformers' loader) runs the same check first, for a local folder, its
``subfolder=``, a weight ``variant=`` and a Hub id (its files fetched into the cache first; ``check_folder_before_build``).

Loading costs about the read: the model is built with its parameters on the meta device (created there, so no
memory and no random initialisation) and the checkpoint's tensors are assigned to it (safetensors: memory-mapped);
only what the checkpoint lacks is allocated and initialised.

A missing folder is downloaded first (``flagai_hf.download``: Hugging Face Hub, BAAI ModelHub, S3 mirrors; once per
machine, resumed, verified); a folder the downloader left unfinished is never loaded.
"""

import copy
import json
import pickle
import re
import zipfile
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn
from torch.overrides import TorchFunctionMode
from transformers import PreTrainedModel
from transformers import initialization as hf_init
from transformers.utils import logging

from .keymap import KeyMap
from .shards import INDEX_NAME, read_index, read_safetensors_shapes, read_sharded_safetensors

logger = logging.get_logger(__name__)


@dataclass
class Family:
    """How one model family's checkpoints are recognised and renamed."""

    keymap: KeyMap
    model_types: set[str] = field(default_factory=set)  # config.json model_type values of this family
    backbone_modules: tuple[str, ...] = ()  # top-level backbone modules whose weights must be present
    # ``{module path of a layer stack (our names, no base-model prefix): the config attribute giving its depth}``, e.g.
    # ``{"layers": "num_hidden_layers"}``: what ``check_config_against_checkpoint`` counts in the checkpoint.
    layer_stacks: dict[str, str] = field(default_factory=dict)
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
    shapes = read_weight_shapes(folder)  # from the headers; None for a layout only a family reader knows
    weights = read_weights(folder, family.weight_readers, config) if shapes is None else None
    check_config_against_checkpoint(cls, config, family.keymap.convert(shapes if shapes is not None else weights),
                                    family, folder)
    state_dict = family.keymap.convert(weights if weights is not None else read_weights(folder))
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


def read_weight_shapes(folder: Path, variant: str | None = None, root: Path | None = None,
                       safetensors: bool = True) -> dict[str, torch.Tensor] | None:
    """The folder's tensors as meta tensors (names, shapes, dtypes; no values read): the safetensors headers (single
    or sharded, the index followed as by ``read_weights``), or a zip-format pickle memory-mapped. ``None`` for a
    legacy (non-zip) pickle and the layouts only a family reader knows: their tensors must be read to be seen.
    ``variant``: transformers' weight-file variant (``model.fp16.safetensors``); ``root``: see ``shards.path_inside``
    (the Hugging Face cache); ``safetensors=False``: the pickle only (``from_pretrained(use_safetensors=False)``)."""
    single = folder / variant_name("model.safetensors", variant)
    if safetensors and single.is_file():
        return read_safetensors_shapes(single)
    index_name = variant_name(INDEX_NAME, variant)
    if safetensors and (folder / index_name).is_file():
        return read_sharded_safetensors(folder, shapes_only=True, index_name=index_name, root=root)
    pickled = folder / variant_name("pytorch_model.bin", variant)
    if pickled.is_file() and zipfile.is_zipfile(pickled):
        return {name: tensor.to("meta") for name, tensor in read_pickled_weights(pickled, mmap=True).items()}
    return None


def read_pickled_weights(path: Path, mmap: bool = False) -> dict[str, torch.Tensor]:
    """A pickled state dict, read with ``torch.load(weights_only=True)`` (no code runs) and unwrapped from FlagAI's
    Trainer format ``{"module": state_dict, ...}``. Memory-mapped only with ``mmap`` (to inspect shapes): a loaded
    model must not depend on a file that a later ``torch.save`` to the same path would truncate."""
    payload = torch_load_weights(path, accepted="a dict of tensors, possibly wrapped as {'module': ...}",
                                 **({"mmap": True} if mmap else {}))
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
    """Within: parameters are created on the meta device (shape and dtype only, so no memory and no cost for their
    random initialisation): ``torch.empty`` without a device, which torch's layers (``nn.Linear``, ``nn.Embedding``,
    ``nn.LayerNorm``) create their parameters with, makes meta tensors, and any other parameter an ``nn.Module``
    registers is moved there. Buffers stay real (they are not made with ``torch.empty``), so non-persistent ones
    (position ids, rotary tables) get their proper values from the constructor."""
    register_parameter = nn.Module.register_parameter

    def register_on_meta(module, name, param):
        register_parameter(module, name, param)
        if param is not None and param.device.type != "meta":
            module._parameters[name] = type(param)(param.to("meta"), requires_grad=param.requires_grad)

    nn.Module.register_parameter = register_on_meta
    try:
        with _EmptyOnMeta():
            yield
    finally:
        nn.Module.register_parameter = register_parameter


class _EmptyOnMeta(TorchFunctionMode):
    """``torch.empty`` calls that name no device make meta tensors (see ``_parameters_on_meta``)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.empty and kwargs.get("device") is None:
            kwargs = {**kwargs, "device": "meta"}
        return func(*args, **kwargs)


def check_config_against_checkpoint(cls, config, checkpoint: dict[str, torch.Tensor], family: Family, folder,
                                    ignore_mismatched_sizes: bool = False) -> None:
    """Refuse ``config`` for ``cls`` before any model is built when it cannot fit ``checkpoint`` (our tensor names,
    usually meta tensors read from the headers), naming the config key and the checkpoint tensors:

    - each layer stack of the family (``Family.layer_stacks``) must have as many layers as the checkpoint holds (more
      would be random layers, fewer a partial model); a stack the class lacks, or configured with 0 layers (an
      embeddings-only model), is left to ``_load_into``, which drops its tensors with a warning;
    - every checkpoint tensor with a place in the model must have the shape the config gives it. With
      ``ignore_mismatched_sizes`` (transformers' opt-in, e.g. for a changed label count) head tensors may differ
      (they are initialised anew); backbone tensors may not.

    The shapes the config gives are read from a probe: ``cls`` built on the meta device with at most 2 layers per
    stack (layer ``i >= 1`` has the shapes of layer 1), so the check costs milliseconds whatever the config asks."""
    prefix = cls.base_model_prefix
    probe_config = copy.deepcopy(config)
    stacks = {}
    for stack, key in family.layer_stacks.items():
        stacks[stack] = (key, getattr(config, key), re.compile(rf"^{re.escape(stack)}\.(\d+)\.(.*)$"))
        setattr(probe_config, key, min(getattr(config, key), 2))
    with hf_init.no_init_weights(), torch.device("meta"):
        probe = {name: tensor.shape for name, tensor in cls(probe_config).state_dict().items()}

    def probe_key(name: str) -> str | None:  # the probe's name for checkpoint tensor ``name``, if it has a place
        for stack, (_, depth, pattern) in stacks.items():
            match = pattern.match(name)
            if match:
                index = int(match.group(1))
                if index >= depth:
                    return None
                name = f"{stack}.{min(index, 1)}.{match.group(2)}"
                break
        return f"{prefix}.{name}" if f"{prefix}.{name}" in probe else name if name in probe else None

    for stack, (key, depth, pattern) in stacks.items():
        if depth == 0 or not any(name.startswith((f"{prefix}.{stack}.", f"{stack}.")) for name in probe):
            continue  # zero layers, or a stack the class lacks: its tensors are dropped with a warning
        held = sorted({int(match.group(1)) for match in map(pattern.match, checkpoint) if match})
        if depth > len(held) or held != list(range(depth)):
            holds = f"{len(held)} ({stack}.{held[0]} .. {stack}.{held[-1]})" if held else f"no {stack}"
            if held and held[-1] >= depth:  # fewer layers than the checkpoint: a partial model
                extra = sorted(name for name in checkpoint if (match := pattern.match(name)) and
                               int(match.group(1)) >= depth)
                listed = ", ".join(extra[:8]) + (f", and {len(extra) - 8} more" if len(extra) > 8 else "")
                raise ValueError(f"Checkpoint tensors in {folder} have no place in {cls.__name__} as configured: "
                                 f"config {key}={depth}, the checkpoint holds {holds} (a partial model would load; "
                                 f"refused before building it): {listed}")
            first = next(index for index in range(depth) if index not in set(held))
            raise ValueError(f"Checkpoint in {folder} lacks backbone weights of {cls.__name__}: config {key}={depth} "
                             f"asks for more layers than the checkpoint holds ({holds}), so {stack}.{first} and on "
                             f"would be random; set {key}={len(held)} (refused before building the model)")

    backbone = tuple(start for module in family.backbone_modules for start in (f"{prefix}.{module}.", f"{module}."))
    mismatched = []
    for name, tensor in checkpoint.items():
        key = probe_key(name)
        if key is None or probe[key] == tensor.shape:
            continue
        if ignore_mismatched_sizes and not key.startswith(backbone):
            continue
        wanted = tuple(probe[key])
        mismatched.append(f"{name}: checkpoint {tuple(tensor.shape)} vs model {wanted}"
                          f"{_config_keys_giving(config, wanted, tuple(tensor.shape))}")
    if mismatched:
        shown = "; ".join(mismatched[:6]) + (f"; and {len(mismatched) - 6} more" if len(mismatched) > 6 else "")
        raise ValueError(f"Checkpoint tensors in {folder} do not fit {cls.__name__}: {shown} (refused before "
                         "building the model: check these config keys against the checkpoint)")


def _config_keys_giving(config, wanted: tuple, held: tuple) -> str:
    """`` (config key=value, ...)`` for the config's integer sizes equal to a dimension in which ``wanted`` (from the
    config) differs from ``held`` (the checkpoint); empty when the dimension is derived (e.g. 3 * hidden)."""
    sizes = {dim for index, dim in enumerate(wanted) if index >= len(held) or held[index] != dim}
    keys = [f"{key}={value}" for key, value in config.to_dict().items()
            if isinstance(value, int) and not isinstance(value, bool) and value in sizes]
    return f" (config {', '.join(keys)})" if keys else ""


def variant_name(name: str, variant: str | None) -> str:
    """A weight file's name for transformers' ``variant`` (``model.safetensors`` -> ``model.fp16.safetensors``,
    ``model.safetensors.index.json`` -> ``model.safetensors.index.fp16.json``), as ``from_pretrained`` looks for it."""
    if variant is None:
        return name
    stem, extension = name.rsplit(".", 1)
    return f"{stem}.{variant}.{extension}"


def check_folder_before_build(cls, name_or_path, kwargs: dict) -> None:
    """``from_pretrained(name_or_path, **kwargs)`` for our own layout (transformers' loader builds the model): the
    config it will build, with the kwargs that override it, compared with the weight headers by
    ``check_config_against_checkpoint`` before anything is built. ``name_or_path`` is a local folder (its
    ``subfolder``) or a Hub id, whose config and weight files are first fetched into (or found in) the Hugging Face
    cache the way transformers fetches them (``hub_files_folder``), so transformers then reads the same files.
    ``variant`` and ``use_safetensors`` pick the weight files transformers picks. What it cannot judge the same way transformers will (a
    ``gguf_file`` or ``state_dict``, a config given as a path, no standard weight file, a Hub id that cannot be
    fetched, tensor names no key map knows) is left to transformers, which reports it."""
    if any(kwargs.get(name) is not None for name in ("gguf_file", "state_dict")):
        return
    family = FAMILIES.get(cls.config_class.model_type)
    if family is None:
        return
    variant = kwargs.get("variant")
    if Path(name_or_path).is_dir():
        folder, root = Path(name_or_path) / (kwargs.get("subfolder") or ""), None
        if not folder.is_dir():
            return
    else:
        found = hub_files_folder(str(name_or_path), kwargs, variant)
        if found is None:
            return
        folder, root = found
    shapes = read_weight_shapes(folder, variant=variant, root=root,
                                safetensors=kwargs.get("use_safetensors") is not False)
    if shapes is None:
        return
    config = kwargs.get("config")
    if config is None:
        overrides = {name: value for name, value in kwargs.items() if name not in _LOADER_KWARGS}
        config, _ = cls.config_class.from_pretrained(folder, return_unused_kwargs=True, **overrides)
    elif not isinstance(config, cls.config_class):
        return
    try:
        checkpoint = family.keymap.convert(shapes)
    except ValueError:
        return  # names no rule knows: transformers reports them as unexpected keys
    check_config_against_checkpoint(cls, config, checkpoint, family, folder,
                                    ignore_mismatched_sizes=bool(kwargs.get("ignore_mismatched_sizes")))


def hub_files_folder(repo_id: str, kwargs: dict, variant: str | None) -> tuple[Path, Path] | None:
    """``(folder, root)`` for Hub repository ``repo_id``: the cache snapshot folder (with ``subfolder``) holding its
    ``config.json`` and weight files, fetched with transformers' ``cached_file`` and the loader's own options
    (``cache_dir``, ``revision``, ``token``, ``local_files_only``, ``HF_HUB_OFFLINE``, ...), so that
    ``from_pretrained`` then finds them in the cache, and ``root`` the repository's cache folder (the snapshot's
    files are symlinks into its ``blobs/``). ``None`` when the repository, its config or its weights cannot be had:
    transformers' loader reports that itself."""
    from transformers.utils import cached_file

    options = {name: kwargs[name] for name in ("cache_dir", "force_download", "proxies", "token", "revision",
                                               "local_files_only", "subfolder") if kwargs.get(name) is not None}

    def fetch(name: str) -> Path | None:
        try:
            path = cached_file(repo_id, name, _raise_exceptions_for_missing_entries=False,
                               _raise_exceptions_for_connection_errors=False, **options)
        except (OSError, ValueError):  # no such repository, a gated one, an id that is not one: transformers says so
            return None
        return Path(path) if path is not None else None

    config = fetch("config.json")
    if config is None:
        return None
    folder = config.parent
    depth = len(Path(kwargs.get("subfolder") or "").parts)
    snapshot = folder.parents[depth - 1] if depth else folder
    root = snapshot.parent.parent  # models--owner--name/snapshots/<commit>
    if kwargs.get("use_safetensors") is not False and fetch(variant_name("model.safetensors", variant)):
        return folder, root
    index_name = variant_name(INDEX_NAME, variant)
    if kwargs.get("use_safetensors") is not False and fetch(index_name):
        for shard in sorted(set(read_index(folder / index_name).values())):
            if fetch(shard) is None:
                return None
        return folder, root
    if kwargs.get("use_safetensors") is not True and fetch(variant_name("pytorch_model.bin", variant)):
        return folder, root
    return None


# Keyword arguments of transformers' ``PreTrainedModel.from_pretrained`` that are not config overrides.
_LOADER_KWARGS = {
    "config", "cache_dir", "ignore_mismatched_sizes", "force_download", "local_files_only", "token", "revision",
    "use_safetensors", "weights_only", "fusion_config", "disable_mmap", "_commit_hash", "_from_auto",
    "_from_pipeline", "adapter_kwargs", "adapter_name", "allow_all_kernels", "attn_implementation", "device_map",
    "device_mesh", "distributed_config", "dtype", "generation_config", "gguf_file", "kernel_config", "key_mapping",
    "max_memory", "offload_buffers", "offload_folder", "output_loading_info", "proxies", "quantization_config",
    "state_dict", "subfolder", "torch_dtype", "tp_plan", "tp_size", "tqdm_class", "trust_remote_code",
    "use_kernels", "variant",
}


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
    still_empty = [name for name, tensor in (*model.named_parameters(), *model.named_buffers())
                   if tensor.device.type == "meta"]
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
