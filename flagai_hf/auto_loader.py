"""FlagAI's ``AutoLoader``: a model name and a task in, the right model class, its tokenizer and a pipeline out.

::

    loader = AutoLoader("ner-crf", "RoBERTa-base-ch", model_dir="./checkpoints", class_num=7)
    model, tokenizer = loader.get_model(), loader.get_tokenizer()   # BertForSequenceLabelingCRF, FlagAIBertTokenizer
    loader.get_pipeline()("6月15日，河南省文物考古研究所...")        # pipeline("flagai-ner", ...)
    Predictor(model, tokenizer).predict_ner(text, target=labels)    # FlagAI's Predictor

The task table is data: ``MODELS`` (FlagAI's model names -> family and tokenizer class) and ``TASKS`` (family ->
task name -> model class and pipeline task). Differences from FlagAI, on purpose:

- ``sequence-labeling-crf`` / ``-gp`` load the CRF / GlobalPointer heads, as ``ner-crf`` / ``ner-gp`` do (FlagAI loaded
  the softmax head for them); GLM's ``lm`` loads ``GLMModel``, which generates through the Predictor and the pipeline
  as FlagAI's did; task names also accept ``_`` for ``-`` (``sequence_labeling``), ``poetry-generation`` (FlagAI's
  table only knew ``poetry``), ``writing`` and ``blank-filling`` (``lm``);
- a fine-tuned ``model_dir/<model_name>-<task>`` folder is preferred when it exists locally; nothing is asked of the
  network to find out (FlagAI asked the ModelHub on every construction);
- ``device`` defaults to ``"cuda"`` when a GPU is present and ``"cpu"`` otherwise (FlagAI: always ``"cuda"``);
- an unknown model or task name is a ``ValueError`` listing the valid ones (FlagAI printed a line and returned a
  loader without a model).

``model_name`` is looked up case-insensitively; the folder keeps the given spelling (``model_dir/<model_name>``), as
in FlagAI. A name that extends a known one (``RoBERTa-base-ch-ner``, ``GLM-large-ch-poetry-generation``: FlagAI's
fine-tuned models) is a model of that family. Keyword arguments go to ``from_pretrain``: download options
(``sources``, ``hf_endpoint``, ``s3_endpoint``, ...; see ``flagai_hf.download.DownloadSettings``), ``torch_dtype``, and
config overrides such as ``class_num`` and ``inner_dim``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import pipeline
from transformers.utils import logging

from .download import SETTING_NAMES, markers
from .loading import download_folder
from .models.bert import (
    BertForMaskedLM,
    BertForSeq2seq,
    BertForSequenceClassification,
    BertForSequenceLabeling,
    BertForSequenceLabelingCRF,
    BertForSequenceLabelingGP,
    BertModel,
    FlagAIBertTokenizer,
)
from .models.glm import GLMChineseTokenizer, GLMEnglishTokenizer, GLMForSeq2Seq, GLMForSequenceClassification, GLMModel
from .models.gpt2 import FlagAIGPT2Tokenizer, GPT2Model
from .models.t5 import T5ChineseTokenizer, T5Model, T5SentencePieceTokenizer
from .ner_pipeline import TASK as NER_TASK
from .pipelines import TASK as TEXT2TEXT_TASK
from .predictor import as_generator

logger = logging.get_logger(__name__)


# ---------------------------------------------------------------------------------------------------------------------
# The task table
# ---------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelSpec:
    """A FlagAI model name: its family (the ``TASKS`` key) and the tokenizer class of its released checkpoint."""

    family: str
    tokenizer: type


@dataclass(frozen=True)
class TaskSpec:
    """What a task loads for a family: the model class and the pipeline task (with its default arguments)."""

    model_class: type
    pipeline_task: str
    pipeline_kwargs: dict = field(default_factory=dict)


# FlagAI's README models (MODEL_DICT), spelled as FlagAI's folders are.
MODELS: dict[str, ModelSpec] = {
    "GLM-large-ch": ModelSpec("glm", GLMChineseTokenizer),
    "GLM-large-en": ModelSpec("glm", GLMEnglishTokenizer),
    "GLM-large-en-generation": ModelSpec("glm", GLMEnglishTokenizer),
    "GLM-10b-ch": ModelSpec("glm", GLMChineseTokenizer),
    "RoBERTa-base-ch": ModelSpec("bert", FlagAIBertTokenizer),
    "BERT-base-en": ModelSpec("bert", FlagAIBertTokenizer),
    "GPT2-base-ch": ModelSpec("gpt2", FlagAIBertTokenizer),  # FlagAI's Chinese GPT2 uses the BERT vocab.txt
    "GPT2-base-en": ModelSpec("gpt2", FlagAIGPT2Tokenizer),
    "T5-base-ch": ModelSpec("t5", T5ChineseTokenizer),
    "T5-base-en": ModelSpec("t5", T5SentencePieceTokenizer),
}

_TOKEN_CLASSIFICATION = {"aggregation_strategy": "simple"}

# family -> FlagAI task name -> what it loads (FlagAI's ALL_TASK, with the -crf / -gp rows fixed).
TASKS: dict[str, dict[str, TaskSpec]] = {
    "bert": {
        "lm": TaskSpec(BertModel, "feature-extraction"),
        "seq2seq": TaskSpec(BertForSeq2seq, TEXT2TEXT_TASK),
        "title-generation": TaskSpec(BertForSeq2seq, TEXT2TEXT_TASK),
        "masklm": TaskSpec(BertForMaskedLM, "fill-mask"),
        "sequence-labeling": TaskSpec(BertForSequenceLabeling, "token-classification", _TOKEN_CLASSIFICATION),
        "ner": TaskSpec(BertForSequenceLabeling, "token-classification", _TOKEN_CLASSIFICATION),
        "sequence-labeling-crf": TaskSpec(BertForSequenceLabelingCRF, NER_TASK),
        "ner-crf": TaskSpec(BertForSequenceLabelingCRF, NER_TASK),
        "sequence-labeling-gp": TaskSpec(BertForSequenceLabelingGP, NER_TASK),
        "ner-gp": TaskSpec(BertForSequenceLabelingGP, NER_TASK),
        "embedding": TaskSpec(BertModel, "feature-extraction"),  # FlagAI's BertForEmbedding: mean of the last layer
        "classification": TaskSpec(BertForSequenceClassification, "text-classification"),
        "semantic-matching": TaskSpec(BertForSequenceClassification, "text-classification"),
    },
    "gpt2": {
        "lm": TaskSpec(GPT2Model, TEXT2TEXT_TASK),
        "seq2seq": TaskSpec(GPT2Model, TEXT2TEXT_TASK),
        "title-generation": TaskSpec(GPT2Model, TEXT2TEXT_TASK),
    },
    "t5": {
        "lm": TaskSpec(T5Model, TEXT2TEXT_TASK),
        "seq2seq": TaskSpec(T5Model, TEXT2TEXT_TASK),
        "title-generation": TaskSpec(T5Model, TEXT2TEXT_TASK),
    },
    "glm": {
        "lm": TaskSpec(GLMModel, TEXT2TEXT_TASK),  # generates through a GLMForSeq2Seq sharing its weights
        "seq2seq": TaskSpec(GLMForSeq2Seq, TEXT2TEXT_TASK),
        "poetry": TaskSpec(GLMForSeq2Seq, TEXT2TEXT_TASK),
        "title-generation": TaskSpec(GLMForSeq2Seq, TEXT2TEXT_TASK),
        "classification": TaskSpec(GLMForSequenceClassification, "text-classification"),
    },
}

# Task names FlagAI's documents and examples use for a row of the table.
TASK_ALIASES: dict[str, str] = {"poetry-generation": "poetry", "writing": "lm", "blank-filling": "lm"}

# FlagAI AutoLoader arguments that have no effect here, and why.
_IGNORED = {
    "load_pretrain_params": "weights are always loaded",
    "target_size": "FlagAI ignored it as well; the number of labels is class_num",
    "low_cpu_mem_usage": "loading always builds the model without allocating random weights first",
}
_UNSUPPORTED = ("lora_dir", "qlora_dir", "all_devices")  # Aquila-only options of FlagAI


def canonical_task(task_name: str) -> str:
    """FlagAI's spelling of a task name: lower case, ``-`` for ``_``, aliases resolved."""
    if not isinstance(task_name, str) or not task_name:
        raise ValueError(f"task_name must be a task name such as 'ner' or 'seq2seq'; got {task_name!r}")
    name = task_name.strip().lower().replace("_", "-")
    return TASK_ALIASES.get(name, name)


def lookup_model(model_name: str) -> tuple[str, ModelSpec]:
    """The known name (FlagAI's spelling) that ``model_name`` is or extends (case-insensitive), and its spec."""
    if not isinstance(model_name, str) or not model_name:
        raise ValueError(f"model_name must be one of {', '.join(MODELS)}; got {model_name!r}")
    wanted = model_name.lower()
    for name, spec in MODELS.items():
        if wanted == name.lower():
            return name, spec
    extended = [name for name in MODELS if wanted.startswith(name.lower() + "-")]
    if extended:
        name = max(extended, key=len)  # GLM-large-en-generation-x extends GLM-large-en-generation
        return name, MODELS[name]
    raise ValueError(f"Unknown model_name {model_name!r}. Known (case-insensitive; '<name>-<suffix>' for a "
                     f"fine-tuned copy): {', '.join(MODELS)}")


def lookup_task(family: str, task_name: str, model_name: str) -> TaskSpec:
    tasks = TASKS[family]
    task = canonical_task(task_name)
    if task in tasks:
        return tasks[task]
    every = sorted({name for family_tasks in TASKS.values() for name in family_tasks} | set(TASK_ALIASES))
    if task not in every:
        raise ValueError(f"Unknown task_name {task_name!r}. Known tasks: {', '.join(every)}")
    raise ValueError(f"{model_name} ({family}) does not support the task {task_name!r}; its tasks: "
                     f"{', '.join(tasks)}")


def default_device(device=None) -> torch.device:
    """``device``, else ``cuda`` when a GPU is present, else ``cpu``."""
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _is_local(folder: Path) -> bool:
    return markers.inspect(folder).state.loadable


def _has_tokenizer_files(folder: Path, tokenizer_class: type) -> bool:
    names = {"tokenizer.json", *getattr(tokenizer_class, "vocab_files_names", {}).values()}
    return any((folder / name).is_file() for name in names)


def load_tokenizer(model_name: str, folder: str | os.PathLike | None = None, **kwargs):
    """The tokenizer of ``model_name`` (any known name, case-insensitive) read from ``folder`` (default
    ``./checkpoints/<model_name>``), which is downloaded first when it holds neither a model nor the tokenizer's files.
    Download options (``sources``, ...) are taken out of ``kwargs``; the rest go to the tokenizer's
    ``from_pretrained``."""
    _, spec = lookup_model(model_name)
    folder = Path(folder) if folder is not None else Path("./checkpoints") / model_name
    download = {name: kwargs.pop(name) for name in list(kwargs) if name in SETTING_NAMES}
    if not _is_local(folder) and not _has_tokenizer_files(folder, spec.tokenizer):
        folder = download_folder(folder.parent, folder.name, download)
    return spec.tokenizer.from_pretrained(folder, **kwargs)


# ---------------------------------------------------------------------------------------------------------------------
# AutoLoader
# ---------------------------------------------------------------------------------------------------------------------


class AutoLoader:
    """Loads ``model_name`` for ``task_name`` (see the module docstring).

    Args:
        task_name: a FlagAI task, e.g. ``"lm"``, ``"seq2seq"``, ``"title-generation"``, ``"ner"``, ``"ner-crf"``,
            ``"semantic-matching"``, ``"embedding"``; ``get_task_name()`` lists a family's tasks.
        model_name: a FlagAI model name (``MODELS``), case-insensitive, or a fine-tuned ``<name>-<suffix>``.
        model_dir: the folder holding ``<model_name>/`` (downloaded there when missing).
        only_download_config: build a randomly initialised model from the folder's ``config.json`` instead of
            loading its weights (pretraining from scratch); the folder is downloaded whole when missing.
        device: where the model goes; default ``cuda`` if available, else ``cpu``.
        inference_mode: ``True`` (default) returns the model in eval mode, ``False`` in train mode.
        model_max_length: passed to the tokenizer.
        **kwargs: download options, ``torch_dtype``, and config overrides (``class_num``, ``inner_dim``, ...).
    """

    def __init__(self, task_name: str = "lm", model_name: str = "RoBERTa-base-ch",
                 model_dir: str | os.PathLike = "./checkpoints", only_download_config: bool = False, device=None,
                 inference_mode: bool = True, model_max_length: int | None = None, **kwargs):
        self.raw_name = model_name
        self.base_name, spec = lookup_model(model_name)
        self.family = spec.family
        self.task_name = canonical_task(task_name)
        self.task = lookup_task(spec.family, task_name, model_name)
        self.model_dir = Path(model_dir)
        self.device = default_device(device)
        kwargs = self._drop_flagai_only(kwargs)
        download = {name: value for name, value in kwargs.items() if name in SETTING_NAMES}  # for the tokenizer too

        self.model_name = self._local_finetuned(model_name, task_name) or model_name
        model_class = self.task.model_class
        if only_download_config:
            folder = download_folder(self.model_dir, self.model_name, kwargs)
            dtype = kwargs.pop("torch_dtype", None)
            self.model = model_class.init_from_json(folder / "config.json", device=self.device, **kwargs)
            if dtype is not None:
                self.model.to(dtype)
        else:
            self.model = model_class.from_pretrain(self.model_dir, self.model_name, device=self.device, **kwargs)
        self.model.train(not inference_mode)

        tokenizer_kwargs = {} if model_max_length is None else {"model_max_length": model_max_length}
        folder = self.model_dir / self.model_name
        if not _has_tokenizer_files(folder, spec.tokenizer):  # FlagAI: the tokenizer of the base model's folder
            folder = self.model_dir / model_name
        self.tokenizer = load_tokenizer(model_name, folder, **download, **tokenizer_kwargs)
        self._pipeline = None

    def _local_finetuned(self, model_name: str, task_name: str) -> str | None:
        """``<model_name>-<task>`` when that folder is complete under ``model_dir`` (the task as given, then as
        FlagAI's table spells it); ``None`` otherwise. Only the disk is looked at."""
        for task in dict.fromkeys((task_name, self.task_name)):
            candidate = f"{model_name}-{task}"
            if _is_local(self.model_dir / candidate):
                logger.info(f"AutoLoader: using the fine-tuned {candidate} found in {self.model_dir}")
                return candidate
        return None

    @staticmethod
    def _drop_flagai_only(kwargs: dict) -> dict:
        unsupported = sorted(name for name in _UNSUPPORTED if kwargs.get(name))
        if unsupported:
            raise ValueError(f"AutoLoader does not support {', '.join(unsupported)} (FlagAI's Aquila options); load "
                             "adapters with peft on the returned model instead")
        kwargs = {name: value for name, value in kwargs.items() if name not in _UNSUPPORTED}
        for name, reason in _IGNORED.items():
            if name in kwargs:
                kwargs.pop(name)
                logger.warning(f"AutoLoader ignores {name}: {reason}")
        return kwargs

    def get_model(self):
        return self.model

    def get_tokenizer(self):
        return self.tokenizer

    def get_pipeline(self, **kwargs):
        """The transformers pipeline for this task on the loaded model and tokenizer (built once; with ``kwargs``,
        which override the task's defaults, a new one each call)."""
        if self._pipeline is not None and not kwargs:
            return self._pipeline
        built = pipeline(self.task.pipeline_task, model=as_generator(self.model), tokenizer=self.tokenizer,
                         **{**self.task.pipeline_kwargs, **kwargs})
        if not kwargs:
            self._pipeline = built
        return built

    def get_task_name(self, brief_model_name: str | None = None) -> list[str]:
        """The tasks of a family (FlagAI's brief name: ``bert``, ``glm``, ``gpt2``, ``t5``; default: this model's)."""
        family = brief_model_name or self.family
        if family not in TASKS:
            raise ValueError(f"Unknown family {family!r}; families: {', '.join(TASKS)}")
        return list(TASKS[family])

    def is_exist_finetuned_model(self, raw_model_name: str | None = None, task_name: str | None = None) -> bool:
        """Whether ``model_dir/<raw_model_name>-<task_name>`` holds a complete model (looked up on disk only)."""
        name = f"{raw_model_name or self.raw_name}-{task_name or self.task_name}"
        return _is_local(self.model_dir / name)
