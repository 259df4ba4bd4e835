"""FlagAI's model API on top of transformers' ``PreTrainedConfig`` / ``PreTrainedModel``.

- ``FlagAIConfigMixin.from_flagai_dict`` / ``from_flagai_json``: build a config from a FlagAI or transformers
  ``config.json`` (each family's config translates FlagAI's key names in its ``__init__``), checking required keys.
- ``FlagAIModelMixin.init_from_json``: a randomly initialised model from such a file, kwargs overriding the config.
- ``FlagAIModelMixin.from_pretrain``: FlagAI's loader (``download_path/model_name``), implemented in
  ``flagai_hf.loading``; ``from_pretrained`` routes local folders in a foreign layout through it too.
- ``FlagAITokenizerMixin.from_pretrain``: the same folder resolution (and download) for a tokenizer.
- ``save_pretrained`` of every model and tokenizer writes a Hub-ready folder by default: ``auto_map`` entries and
  the flattened source files (``flagai_hf.export.hub_folder``), so the folder loads with ``trust_remote_code=True``
  where flagai_hf is not installed; ``save_pretrained(folder, hub_ready=False)`` writes transformers' files only.
- Tokenizers know the model's input limit: a tokenizer saved alongside a model (the folder holds both files) gets
  ``model_max_length`` from the config's position table (``max_position_embeddings`` / ``max_sequence_length`` /
  ``n_positions``) unless it has its own, and ``from_pretrained`` of a folder whose tokenizer has none reads it from
  the folder's ``config.json`` (`position_limit`), instead of transformers' "no limit" 1e30.
- ``FlagAIModelMixin.flagai_kwargs``: FlagAI's ``segment_ids`` name for ``token_type_ids``; other unknown forward
  kwargs are ignored with a warning, once per class and set of names.
"""

import json
import os

from huggingface_hub.errors import StrictDataclassError
from transformers.utils import logging

logger = logging.get_logger(__name__)

# transformers' "no limit" model_max_length (tokenization_utils_base.VERY_LARGE_INTEGER).
NO_LENGTH_LIMIT = int(1e30)
# config.json keys holding the rows of a model's position table: BERT / GLM (FlagAI's name for GLM), GPT2.
POSITION_KEYS = ("max_position_embeddings", "max_sequence_length", "n_positions")

# Keyword arguments transformers' machinery (Trainer, generate, pipelines) passes that our forwards don't need.
IGNORED_QUIETLY = {"output_attentions", "return_dict", "num_items_in_batch", "use_cache"}
_warned: set = set()


class FlagAIConfigMixin:
    """Adds ``from_flagai_dict`` / ``from_flagai_json`` to a family config (see the module docstring)."""

    # Keys a config file must define (transformers' name, then the FlagAI names accepted for it).
    required_keys: dict[str, tuple[str, ...]] = {}

    def check_sizes(self, sizes: dict[str, object], heads: tuple[str, str] | None = None,
                    layers: tuple[str, ...] = ()) -> None:
        """Refuse sizes no model can have, naming the key: each of ``sizes`` (key -> value) must be an integer
        (not a bool) >= 1, except the ``layers`` keys, >= 0 (an embeddings-only model works); ``heads =
        (heads_key, hidden_key)`` must divide evenly. Called by each family's ``__init__`` before any model is built."""
        for key, value in sizes.items():
            least = 0 if key in layers else 1
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ValueError(
                    f"{type(self).__name__}: {key} must be an integer >= {least}, got {value!r} "
                    f"({type(value).__name__})"
                )
        if heads is not None:
            heads_key, hidden_key = heads
            if sizes[hidden_key] % sizes[heads_key] != 0:
                raise ValueError(
                    f"{type(self).__name__}: {hidden_key} ({sizes[hidden_key]}) must be a multiple of "
                    f"{heads_key} ({sizes[heads_key]})"
                )

    @classmethod
    def from_flagai_dict(cls, config: dict, source: str = "config", **overrides):
        """Build the config from a FlagAI or transformers dict; ``overrides`` replace or extend its keys."""
        if not isinstance(config, dict):
            raise ValueError(f"{source} holds a JSON {type(config).__name__}; a config must be a JSON object")
        values = {**config, **overrides}
        for key, aliases in cls.required_keys.items():
            if not any(name in values for name in (key, *aliases)):
                names = " or ".join(repr(n) for n in (key, *aliases))
                raise ValueError(
                    f"{source} is missing the required key {names}; a {cls.model_type} config needs "
                    f"{', '.join(cls.required_keys)}"
                )
        values.pop("model_type", None)
        values.pop("architectures", None)
        values.pop("transformers_version", None)
        try:
            return cls(**values)
        except (TypeError, AttributeError, KeyError, IndexError, OverflowError, StrictDataclassError) as error:
            # transformers' own keys with the wrong type (``"id2label": 3``, ``"bos_token_id": "x"``) fail deep
            # inside PreTrainedConfig and its validators
            raise ValueError(f"{source} cannot be read as a {cls.__name__}: {type(error).__name__}: {error} "
                             f"(a key holds a value of the wrong type)") from error

    @classmethod
    def from_flagai_json(cls, config_file: str | os.PathLike, **overrides):
        with open(config_file, encoding="utf-8") as handle:
            config = json.load(handle)
        return cls.from_flagai_dict(config, source=str(config_file), **overrides)


class FlagAIModelMixin:
    """Adds FlagAI's ``init_from_json`` / ``from_pretrain`` and forward-kwarg handling to a ``PreTrainedModel``."""

    @classmethod
    def init_from_json(cls, config_file: str | os.PathLike = "./config.json", device: str = "cpu", **kwargs):
        """A randomly initialised model from a FlagAI or transformers config file; kwargs override the config
        (e.g. ``class_num=7``, ``checkpoint_activations=True``)."""
        config = cls.config_class.from_flagai_json(config_file, **kwargs)
        return cls(config).to(device)

    @classmethod
    def from_pretrain(cls, download_path: str | os.PathLike = "./checkpoints", model_name: str | None = None,
                      device: str = "cpu", **kwargs):
        """FlagAI's loader: ``download_path/model_name/`` holding a native, transformers or FlagAI checkpoint,
        downloaded there first (Hugging Face Hub, BAAI ModelHub, an S3 mirror) when it is missing; download options
        (``sources``, ``s3_endpoint``, timeouts, ...) are described in ``flagai_hf.download``, other kwargs override
        the config."""
        try:
            from flagai_hf.loading import from_pretrain
        except ImportError as error:  # remote-code copies of this file run without the flagai_hf package
            raise ImportError(
                "from_pretrain needs the flagai_hf package (pip install flagai_hf); use from_pretrained otherwise"
            ) from error
        return from_pretrain(cls, download_path, model_name, device=device, **kwargs)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        """transformers' loader, except that a local folder in another layout (a FlagAI folder, a transformers BERT,
        a THUDM GLM: its config.json has another or no ``model_type``) is converted by ``from_pretrain`` instead of
        loading with every weight missing; our layout (a local folder, its ``subfolder``, a ``variant``, a Hub id)
        has its config (with the kwargs overriding it) compared with the weight headers first, so a config that
        cannot fit is refused before anything is built (``flagai_hf.loading.check_folder_before_build``)."""
        try:
            from flagai_hf import loading
        except ImportError:  # remote-code copy without the flagai_hf package: transformers' loader as usual
            loading = None
        config_file = os.path.join(str(pretrained_model_name_or_path), "config.json")
        if not args and loading is not None:
            if os.path.isfile(config_file) and "config" not in kwargs and not kwargs.get("subfolder"):
                with open(config_file, encoding="utf-8") as handle:
                    model_type = json.load(handle).get("model_type")
                if model_type != cls.config_class.model_type:
                    return loading.load_folder(cls, pretrained_model_name_or_path, **kwargs)
            loading.check_folder_before_build(cls, pretrained_model_name_or_path, kwargs)
        return super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)

    def save_pretrained(self, save_directory, *args, hub_ready: bool = True, **kwargs):
        """transformers' ``save_pretrained``; with ``hub_ready`` (the default) the folder also gets ``config.json``'s
        ``auto_map`` for every head of the family and the model's source files (see the module docstring)."""
        result = super().save_pretrained(save_directory, *args, **kwargs)
        if hub_ready and _is_main_process(kwargs):
            _write_remote_code("write_model_code", self, save_directory)
        if _is_main_process(kwargs):
            limit_saved_tokenizer(save_directory)
        return result

    def post_init(self):
        super().post_init()
        if getattr(self.config, "checkpoint_activations", False) and self.supports_gradient_checkpointing:
            self.activation_checkpointing_enable()

    def flagai_kwargs(self, kwargs: dict, token_type_ids=None):
        """Return ``token_type_ids`` (or FlagAI's ``segment_ids``); warn once about kwargs this forward ignores."""
        segment_ids = kwargs.pop("segment_ids", None)
        if token_type_ids is None:
            token_type_ids = segment_ids
        unknown = sorted(name for name, value in kwargs.items() if name not in IGNORED_QUIETLY and value is not None)
        key = (type(self).__name__, tuple(unknown))
        if unknown and key not in _warned:
            _warned.add(key)
            logger.warning(f"{type(self).__name__}.forward ignores the keyword arguments: {', '.join(unknown)}")
        return token_type_ids


class FlagAITokenizerMixin:
    """Adds FlagAI's ``from_pretrain`` to a tokenizer: the model folder's tokenizer files, downloaded if needed, and
    the Hub-ready ``save_pretrained``."""

    def save_pretrained(self, save_directory, *args, hub_ready: bool = True, **kwargs):
        """transformers' ``save_pretrained``; with ``hub_ready`` (the default) ``tokenizer_config.json`` also gets an
        ``auto_map`` and the folder the tokenizer's source files (see the module docstring)."""
        result = super().save_pretrained(save_directory, *args, **kwargs)
        if hub_ready:
            _write_remote_code("write_tokenizer_code", self, save_directory)
        limit_saved_tokenizer(save_directory)
        return result

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        """transformers' loader; a tokenizer without a ``model_max_length`` of its own gets the position table size of
        the folder's ``config.json`` (`position_limit`)."""
        tokenizer = super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)
        if kwargs.get("model_max_length") is None and tokenizer.model_max_length >= NO_LENGTH_LIMIT:
            config_file = folder_file(pretrained_model_name_or_path, "config.json", kwargs)
            limit = position_limit(_read_json(config_file)) if config_file else None
            if limit is not None:
                tokenizer.model_max_length = limit
        return tokenizer

    @classmethod
    def from_pretrain(cls, download_path: str | os.PathLike = "./checkpoints", model_name: str | None = None,
                      **kwargs):
        """The tokenizer of ``download_path/model_name/`` (resolved and downloaded like the model's
        ``from_pretrain``); other kwargs go to ``from_pretrained``."""
        try:
            from flagai_hf.loading import download_folder
        except ImportError as error:  # remote-code copies of this file run without the flagai_hf package
            raise ImportError(
                "from_pretrain needs the flagai_hf package (pip install flagai_hf); use from_pretrained otherwise"
            ) from error
        return cls.from_pretrained(download_folder(download_path, model_name, kwargs), **kwargs)


def position_limit(config: dict | None) -> int | None:
    """The longest input a model's position table takes, from its ``config.json`` content (``None``: no table, e.g.
    T5's relative positions, or no config). GLM's tables have one more row than ``max_sequence_length``, for the
    block positions of a span that follows a full-length context; the limit is ``max_sequence_length``."""
    if not isinstance(config, dict):
        return None
    for key in POSITION_KEYS:
        value = config.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def limit_saved_tokenizer(folder) -> None:
    """Give the tokenizer saved in ``folder`` the position limit of the model saved there (whichever was saved first),
    unless it has a limit of its own."""
    tokenizer_file = os.path.join(str(folder), "tokenizer_config.json")
    tokenizer_config = _read_json(tokenizer_file)
    limit = position_limit(_read_json(os.path.join(str(folder), "config.json")))
    if tokenizer_config is None or limit is None:
        return
    current = tokenizer_config.get("model_max_length")
    if current is not None and current < NO_LENGTH_LIMIT:
        return
    tokenizer_config["model_max_length"] = limit
    with open(tokenizer_file, "w", encoding="utf-8") as handle:
        handle.write(json.dumps(tokenizer_config, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def _read_json(path) -> dict | None:
    try:
        with open(path, encoding="utf-8") as handle:
            content = json.load(handle)
    except (OSError, ValueError):
        return None
    return content if isinstance(content, dict) else None


def folder_file(folder_or_repo, name: str, load_kwargs: dict) -> str | None:
    """The path of file ``name`` of a local folder or a Hub repo (downloaded or cached, with the loader's options
    in ``load_kwargs``), or ``None`` where there is none."""
    path = os.path.join(str(folder_or_repo), load_kwargs.get("subfolder") or "", name)
    if os.path.isfile(path):
        return path
    if os.path.isdir(str(folder_or_repo)):
        return None
    from transformers.utils import cached_file

    options = {key: load_kwargs[key] for key in ("cache_dir", "revision", "token", "local_files_only", "subfolder",
                                                  "force_download", "proxies") if load_kwargs.get(key) is not None}
    try:
        return cached_file(str(folder_or_repo), name, _raise_exceptions_for_missing_entries=False,
                           _raise_exceptions_for_connection_errors=False, **options)
    except (OSError, ValueError):
        return None


def _is_main_process(save_kwargs: dict) -> bool:
    return save_kwargs.get("is_main_process", True)


def _write_remote_code(writer: str, obj, save_directory) -> None:
    """Run ``flagai_hf.export.hub_folder.<writer>(obj, save_directory)``; a class the exporter cannot ship (a
    subclass defined outside flagai_hf, say) leaves a plain transformers folder, with a warning."""
    try:
        from flagai_hf.export import hub_folder
    except ImportError:  # a remote-code copy of this file, run without the package: transformers' own files only
        return
    try:
        getattr(hub_folder, writer)(obj, save_directory)
    except hub_folder.ExportError as error:
        logger.warning(f"{save_directory} was saved without remote code (it needs flagai_hf to load): {error}")
