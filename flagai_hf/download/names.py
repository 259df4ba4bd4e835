"""FlagAI's model names, their Hugging Face repositories, and the checks every server-given file name passes."""

import re

# FlagAI's pretrained model names (the folder names under ``download_path``) -> the Hugging Face repository holding
# the same weights.
HUB_REPOS: dict[str, str] = {
    "GLM-large-ch": "BAAI/glm-large-chinese",
    "GLM-large-en": "BAAI/glm-large",
    "GLM-10b-ch": "BAAI/glm-10b-chinese",
    "RoBERTa-base-ch": "hfl/chinese-roberta-wwm-ext",
    "BERT-base-en": "google-bert/bert-base-uncased",
    "GPT2-base-ch": "uer/gpt2-chinese-cluecorpussmall",
    "GPT2-base-en": "openai-community/gpt2",
    "T5-base-ch": "imxly/t5-pegasus",
    "T5-base-en": "google-t5/t5-base",
}

# Fine-tuned ``<name>-<task>`` models FlagAI published on the BAAI ModelHub only (no Hugging Face repository).
MODELHUB_ONLY: tuple[str, ...] = (
    "RoBERTa-base-ch-ner",
    "RoBERTa-base-ch-title-generation",
    "RoBERTa-base-ch-semantic-matching",
    "GLM-large-ch-title-generation",
    "GLM-large-ch-poetry-generation",
    "GLM-large-ch-blank-filling",
)

KNOWN_NAMES: tuple[str, ...] = (*HUB_REPOS, *MODELHUB_ONLY)

_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# The downloader's own files in a model folder (the lock, the in-progress / complete markers and their temporaries,
# ``*.flagai_hf.part``) all carry this: a server-given name holding it could replace the held lock or fake a marker.
RESERVED = ".flagai_hf"


def hub_repo_id(model_name: str) -> str | None:
    """The Hugging Face repo id for a FlagAI name (any case, as FlagAI's AutoLoader accepted) or a repo id given
    directly (``org/name``); ``None`` if none."""
    for name, repo in HUB_REPOS.items():
        if name.lower() == model_name.lower():
            return repo
    if _REPO_ID.match(model_name) and ".." not in model_name:
        return model_name
    return None


def is_known(model_name: str) -> bool:
    return model_name.lower() in {name.lower() for name in KNOWN_NAMES} or hub_repo_id(model_name) is not None


class UnsafeFileName(ValueError):
    """A server offered a file name that could escape the model folder."""


def check_file_name(name, source: str, max_depth: int = 1) -> str:
    """``name`` if it is a safe relative path (at most ``max_depth`` folder levels), else ``UnsafeFileName``.

    Refused: empty names, absolute paths, ``..`` or ``.`` parts, backslashes, control characters, drive letters,
    names with more than ``max_depth`` folders, and the downloader's own file names (any part holding
    ``.flagai_hf``, in any case: ``.flagai_hf.lock``, the markers, ``*.flagai_hf.part``).
    """
    problem = None
    if not isinstance(name, str) or not name.strip():
        problem = "is empty or not a string"
    elif "\\" in name:
        problem = "contains a backslash"
    elif _CONTROL.search(name):
        problem = "contains a control character"
    elif name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        problem = "is an absolute path"
    else:
        parts = name.split("/")
        if any(part in ("", ".", "..") for part in parts):
            problem = "has an empty, '.' or '..' part"
        elif any(RESERVED in part.lower() for part in parts):
            problem = f"is one of the downloader's own file names (holds {RESERVED!r}: lock, markers, part files)"
        elif len(parts) - 1 > max_depth:
            problem = f"is nested {len(parts) - 1} folders deep (at most {max_depth} allowed)"
    if problem:
        raise UnsafeFileName(
            f"Refusing file name {name!r} from {source}: it {problem}. File names must be relative paths inside the "
            f"model folder, with '/' separators, at most {max_depth} folder level(s), and no '..'."
        )
    return name


def check_model_name(model_name) -> str:
    """The model name becomes a folder under ``download_path``: it must stay inside it."""
    if not isinstance(model_name, str) or not model_name:
        raise ValueError("from_pretrain needs model_name: a FlagAI name (e.g. 'GLM-large-ch') or a Hub repo id")
    check_file_name(model_name, "the model_name argument")
    return model_name


_WEIGHT_FORMATS = (  # by preference: the first format a repository has is the one downloaded
    re.compile(r"^model(-\d+-of-\d+)?\.safetensors$|^model\.safetensors\.index\.json$"),
    re.compile(r"^pytorch_model(-\d+-of-\d+)?\.bin$|^pytorch_model\.bin\.index\.json$"),
    re.compile(r"^mp_rank_\d+_model_states\.pt$"),
)
_SIDE_FILES = re.compile(r"\.(json|txt|model)$|^vocab\b|^merges\b")


def select_hub_files(names: list[str]) -> list[str]:
    """From a Hugging Face repository listing, the files a model folder needs: config, tokenizer files and weights
    in one format (safetensors, else pytorch pickles, else Megatron shards). Other frameworks' weights
    (TensorFlow, Flax, ONNX, Core ML, ...), remote code and nested folders are left out."""
    top = [name for name in names if "/" not in name]
    weights: list[str] = []
    for pattern in _WEIGHT_FORMATS:
        weights = [name for name in top if pattern.match(name)]
        if weights:
            break
    all_weights = {name for name in top for pattern in _WEIGHT_FORMATS if pattern.match(name)}
    side = [name for name in top if _SIDE_FILES.search(name) and name not in all_weights]
    return sorted(set(side) | set(weights))
