"""Export a flagai_hf model as a Hub-ready folder that loads with plain transformers and ``trust_remote_code=True``.

The folder holds ``model.safetensors``, ``config.json`` whose ``auto_map`` names every head class registered for
the family, ``generation_config.json``, the tokenizer's files with their own ``auto_map`` (``tokenizer_config.json``),
a model card ``README.md``, and the family's source files flattened with the shared ``modules/`` files they use
(`remote_code`). Which heads a family has is read from ``auto_registration.AUTO_MODELS``: registering a new head
there exports it too.
"""

import json
import shutil
from pathlib import Path

from transformers import GenerationConfig
from transformers.tokenization_utils_tokenizers import TokenizersBackend

from .. import __version__
from ..auto_registration import AUTO_MODELS, AUTO_TOKENIZERS
from .remote_code import PACKAGE_NAME, ExportError, check_remote_code, class_reference, write_flattened

# The Hub's pipeline tag of a model loaded through each Auto class (README metadata).
PIPELINE_TAGS = {
    "AutoModelForSeq2SeqLM": "text2text-generation",
    "AutoModelForCausalLM": "text-generation",
    "AutoModelForTokenClassification": "token-classification",
    "AutoModelForSequenceClassification": "text-classification",
    "AutoModelForMaskedLM": "fill-mask",
    "AutoModelForMultipleChoice": "multiple-choice",
    "AutoModel": "feature-extraction",
}


def family_heads(config_class: type) -> dict[str, type]:
    """``{Auto class name: model class}`` registered for ``config_class`` in ``AUTO_MODELS``."""
    heads: dict[str, type] = {}
    for auto_class, config, model_class in AUTO_MODELS:
        if config is config_class:
            if auto_class.__name__ in heads:
                raise ExportError(f"AUTO_MODELS maps {auto_class.__name__} to two classes of {config.__name__}")
            heads[auto_class.__name__] = model_class
    return heads


def family_tokenizers(config_class: type) -> list[type]:
    """The tokenizer classes ``AUTO_TOKENIZERS`` lists for ``config_class`` (default first)."""
    return [cls for config, default, other in AUTO_TOKENIZERS if config is config_class
            for cls in (default, other) if cls is not None]


def registered_heads(model) -> dict[str, type]:
    """`family_heads` of ``model``'s config; raises ExportError for a model of no registered family."""
    heads = family_heads(type(model.config))
    if not heads:
        families = sorted({config.model_type for _, config, _ in AUTO_MODELS})
        raise ExportError(f"{type(model).__name__} has config {type(model.config).__name__}, which no family "
                          f"registers in auto_registration.AUTO_MODELS; exportable model types: {', '.join(families)}")
    return heads


def model_auto_map(config_class: type) -> dict[str, str]:
    """``config.json``'s ``auto_map``: ``AutoConfig`` then every registered head of the family."""
    entries = {"AutoConfig": class_reference(config_class)}
    entries.update({name: class_reference(cls) for name, cls in family_heads(config_class).items()})
    return entries


def tokenizer_auto_map(tokenizer_class: type) -> dict[str, list]:
    """``tokenizer_config.json``'s ``auto_map``: the class in the fast slot for a tokenizers-backed class, else in the
    slow (python) slot, as transformers' ``AutoTokenizer`` reads them."""
    reference = class_reference(tokenizer_class)
    fast = issubclass(tokenizer_class, TokenizersBackend)
    return {"AutoTokenizer": [None, reference] if fast else [reference, None]}


def export_for_hub(model, folder: str | Path, tokenizer=None, repo_id: str | None = None,
                   overwrite: bool = False) -> Path:
    """Write ``model`` (and ``tokenizer``) to ``folder`` as a self-contained remote-code folder; returns the folder.

    Args:
        model: a flagai_hf model (any registered family; heads outside ``AUTO_MODELS`` load by class, not by Auto).
        folder: the output folder; it must be empty or absent unless ``overwrite=True`` (its content is replaced).
        tokenizer: the tokenizer to ship; flagai_hf tokenizers get an ``auto_map`` and their source files, vocabulary
            files (e.g. ``cog-pretrain.model``) are written by its ``save_pretrained``.
        repo_id: the Hub id the model card uses in its examples (default: the folder name).

    Raises:
        ExportError: a model of no registered family, a folder in use, or sources that do not flatten (the message
        names the file and import).
    """
    folder = Path(folder)
    heads = registered_heads(model)
    if folder.exists() and any(folder.iterdir()):
        if not overwrite:
            raise ExportError(f"{folder} is not empty; choose a new folder or pass overwrite=True")
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)

    model.save_pretrained(folder, hub_ready=False)
    if not (folder / "generation_config.json").is_file():
        # the family's defaults (GLM: stop at eop or eos), also for heads that do not generate themselves
        generation_config_class = getattr(model, "generation_config_class", GenerationConfig)
        generation_config_class.from_model_config(model.config).save_pretrained(folder)
    code_files = write_model_code(model, folder)
    if tokenizer is not None:
        if type(tokenizer).__module__.startswith(PACKAGE_NAME + "."):
            tokenizer.save_pretrained(folder, hub_ready=False)
            code_files = sorted(set(code_files) | set(write_tokenizer_code(tokenizer, folder)))
        else:
            tokenizer.save_pretrained(folder)

    (folder / "README.md").write_text(model_card(model, tokenizer, heads, repo_id or folder.name, code_files),
                                      encoding="utf-8")
    check_remote_code(folder)
    return folder


def write_model_code(model, folder: str | Path) -> list[str]:
    """Make the saved model folder ``folder`` loadable with ``trust_remote_code=True``: ``config.json``'s
    ``auto_map`` (every head of the family) and the flattened source files; returns the code file names.

    ``save_pretrained`` of every flagai_hf model calls this (``hub_ready=True``, the default), and so does
    `export_for_hub`. Raises ExportError for a model of no registered family or a class outside the package."""
    folder = Path(folder)
    config_class = type(model.config)
    heads = registered_heads(model)
    auto_map = model_auto_map(config_class)
    names = write_flattened([config_class, type(model), *heads.values()], folder)
    _update_json(folder / "config.json", auto_map=auto_map)
    return names


def write_tokenizer_code(tokenizer, folder: str | Path) -> list[str]:
    """The tokenizer half of `write_model_code`: ``tokenizer_config.json``'s ``auto_map`` and the flattened source
    files of the tokenizer class; returns the code file names (``save_pretrained`` of every flagai_hf tokenizer
    calls this by default)."""
    folder = Path(folder)
    auto_map = tokenizer_auto_map(type(tokenizer))
    names = write_flattened([type(tokenizer)], folder)
    _update_json(folder / "tokenizer_config.json", auto_map=auto_map)
    return names


def _update_json(path: Path, **entries) -> None:
    content = json.loads(path.read_text(encoding="utf-8"))
    content.update(entries)
    path.write_text(json.dumps(content, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")


def model_card(model, tokenizer, heads: dict[str, type], repo_id: str, code_files: list[str]) -> str:
    """The README: Hub metadata, how to load the folder with and without flagai_hf, and what its files are."""
    config = model.config
    auto_class = next((name for name, cls in heads.items() if cls is type(model) and name != "AutoModel"),
                      "AutoModel" if heads.get("AutoModel") is type(model) else None)
    parameters = sum(p.numel() for p in model.parameters())
    tags = "\n".join(f"- {tag}" for tag in (PACKAGE_NAME, config.model_type, "custom_code"))
    pipeline_line = f"pipeline_tag: {PIPELINE_TAGS[auto_class]}\n" if auto_class in PIPELINE_TAGS else ""
    if auto_class is None:
        load_line = (f"# {type(model).__name__} has no Auto class: load it with flagai_hf (below)\n"
                     f"model = AutoModel.from_pretrained(\"{repo_id}\", trust_remote_code=True)  # the backbone")
        auto_import = "AutoModel"
    else:
        load_line = f"model = {auto_class}.from_pretrained(\"{repo_id}\", trust_remote_code=True)"
        auto_import = auto_class
    tokenizer_lines = ""
    if tokenizer is not None:
        auto_import += ", AutoTokenizer"
        tokenizer_lines = f"tokenizer = AutoTokenizer.from_pretrained(\"{repo_id}\", trust_remote_code=True)\n"
    head_rows = "\n".join(f"| `{name}` | `{cls.__name__}` |" for name, cls in heads.items())
    return f"""---
library_name: transformers
{pipeline_line}tags:
{tags}
---

# {repo_id}

`{type(model).__name__}` (model type `{config.model_type}`, {parameters:,} parameters), exported by
`{PACKAGE_NAME}` {__version__}, which implements the FlagAI model family (GLM, BERT, GPT2, T5) as Hugging Face
Transformers models.

## Use with transformers alone

The model code ships in this repository, so loading needs `trust_remote_code=True` (read the `.py` files first):

```python
from transformers import {auto_import}

{tokenizer_lines}{load_line}
```

Every head of the family loads from the same files (weights of a head this checkpoint lacks are newly initialised):

| Auto class | class |
|---|---|
{head_rows}

## Use with {PACKAGE_NAME}

With `{PACKAGE_NAME}` installed and imported, its own registered classes are used instead of the copies here:

```python
from {PACKAGE_NAME} import {type(model).__name__}  # importing {PACKAGE_NAME} registers its classes

model = {type(model).__name__}.from_pretrained("{repo_id}")
```

## Files

- `config.json` (with `auto_map`), `generation_config.json`, `model.safetensors`
- tokenizer: {"`tokenizer_config.json` and the vocabulary files" if tokenizer is not None else "none exported"}
- model code (flattened copies of {PACKAGE_NAME}'s sources): {", ".join(f"`{name}`" for name in code_files)}
"""
