"""AutoLoader around the task table: name lookup and errors, fine-tuned folder preference (disk only, no network),
device default, kwargs to the config and to the download settings, FlagAI-only arguments, aliases of task names."""

import json
import shutil
import socket

import pytest
import torch
from autoloader_folders import checkpoints, one_thread  # noqa: F401

import flagai_hf.auto_loader as auto_loader
from flagai_hf import (
    AutoLoader,
    BertForSequenceLabeling,
    BertModel,
    FlagAIBertTokenizer,
    GLMForSeq2Seq,
    GPT2Model,
)
from flagai_hf.download import ModelNotFoundError, markers

BIO = ["O", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-PER", "I-PER"]


@pytest.fixture
def model_dir(tmp_path):
    """A fresh folder with a copy of the tiny RoBERTa-base-ch (the tests below add folders next to it)."""
    shutil.copytree(checkpoints() / "RoBERTa-base-ch", tmp_path / "RoBERTa-base-ch")
    return tmp_path


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError("AutoLoader tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def save_finetuned(folder, with_tokenizer=True):
    torch.manual_seed(1)  # the new classifier head: the "fine-tuned" weights
    model = BertForSequenceLabeling.from_pretrain(checkpoints(), "RoBERTa-base-ch", id2label=dict(enumerate(BIO)))
    model.save_pretrained(folder)
    if with_tokenizer:
        FlagAIBertTokenizer.from_pretrained(checkpoints() / "RoBERTa-base-ch").save_pretrained(folder)
    return model


# ------------------------------------------------------------------------------------------------ names and errors


def test_unknown_model_lists_the_known_names():
    with pytest.raises(ValueError, match="Unknown model_name 'BERT-base-ch'") as error:
        AutoLoader("lm", "BERT-base-ch", model_dir=checkpoints())
    for name in ("GLM-large-ch", "GLM-10b-ch", "RoBERTa-base-ch", "BERT-base-en", "GPT2-base-ch", "T5-base-en"):
        assert name in str(error.value)


def test_unknown_task_lists_the_tasks():
    with pytest.raises(ValueError, match="Unknown task_name 'translation'") as error:
        AutoLoader("translation", "RoBERTa-base-ch", model_dir=checkpoints())
    for task in ("ner-crf", "semantic-matching", "title-generation", "poetry", "embedding", "masklm"):
        assert task in str(error.value)


def test_task_of_another_family_lists_this_familys_tasks():
    with pytest.raises(ValueError, match=r"GPT2-base-ch \(gpt2\) does not support the task 'ner'; its tasks: "
                                         r"lm, seq2seq, title-generation"):
        AutoLoader("ner", "GPT2-base-ch", model_dir=checkpoints())
    with pytest.raises(ValueError, match="does not support the task 'poetry'; its tasks: lm, seq2seq"):
        AutoLoader("poetry", "T5-base-ch", model_dir=checkpoints())


def test_case_insensitive_name_keeps_the_given_folder(tmp_path, no_network):
    shutil.copytree(checkpoints() / "RoBERTa-base-ch", tmp_path / "roberta-BASE-ch")
    loader = AutoLoader("lm", "roberta-BASE-ch", model_dir=tmp_path)
    assert type(loader.get_model()) is BertModel and loader.base_name == "RoBERTa-base-ch"
    assert loader.model_name == "roberta-BASE-ch"
    # The folder is looked up with the spelling given: FlagAI's RoBERTa-base-ch folder is not this one.
    with pytest.raises(ModelNotFoundError, match="roberta-base-CH"):
        AutoLoader("lm", "roberta-base-CH", model_dir=tmp_path)


def test_task_name_aliases():
    assert auto_loader.canonical_task("Sequence_Labeling") == "sequence-labeling"
    assert type(AutoLoader("poetry-generation", "GLM-large-ch", model_dir=checkpoints()).get_model()) is GLMForSeq2Seq
    assert type(AutoLoader("sequence_labeling", "RoBERTa-base-ch", model_dir=checkpoints(),
                           class_num=7).get_model()) is BertForSequenceLabeling
    assert type(AutoLoader("writing", "GPT2-base-ch", model_dir=checkpoints()).get_model()) is GPT2Model


def test_crf_and_gp_rows_load_their_heads():
    """FlagAI mapped sequence-labeling-crf / -gp to the softmax head; here they load the CRF / GP classes."""
    assert auto_loader.TASKS["bert"]["sequence-labeling-crf"].model_class.__name__ == "BertForSequenceLabelingCRF"
    assert auto_loader.TASKS["bert"]["sequence-labeling-gp"].model_class.__name__ == "BertForSequenceLabelingGP"


def test_get_task_name():
    loader = AutoLoader("lm", "GLM-large-en", model_dir=checkpoints())
    assert loader.get_task_name() == ["lm", "seq2seq", "poetry", "title-generation", "classification"]
    assert "ner-gp" in loader.get_task_name("bert")
    with pytest.raises(ValueError, match="Unknown family 'cpm'"):
        loader.get_task_name("cpm")


# ------------------------------------------------------------------------------------------------ fine-tuned folders


def test_prefers_a_local_finetuned_folder(model_dir, no_network):
    finetuned = save_finetuned(model_dir / "RoBERTa-base-ch-ner")
    loader = AutoLoader("ner", "RoBERTa-base-ch", model_dir=model_dir)
    assert loader.model_name == "RoBERTa-base-ch-ner" and loader.is_exist_finetuned_model()
    torch.testing.assert_close(loader.get_model().classifier.weight, finetuned.classifier.weight)
    assert loader.get_model().config.id2label == dict(enumerate(BIO))
    # Another task of the same model still loads the base folder.
    assert AutoLoader("ner-crf", "RoBERTa-base-ch", model_dir=model_dir, class_num=7).model_name == "RoBERTa-base-ch"


def test_finetuned_folder_under_flagai_table_spelling(model_dir):
    """The task as given (poetry-generation, FlagAI's ModelHub names) or as the table spells it (poetry)."""
    shutil.copytree(checkpoints() / "GLM-large-ch", model_dir / "GLM-large-ch-poetry")
    assert AutoLoader("poetry-generation", "GLM-large-ch", model_dir=model_dir).model_name == "GLM-large-ch-poetry"
    shutil.copytree(checkpoints() / "GLM-large-ch", model_dir / "GLM-large-ch-poetry-generation")
    loader = AutoLoader("poetry-generation", "GLM-large-ch", model_dir=model_dir)
    assert loader.model_name == "GLM-large-ch-poetry-generation"


def test_finetuned_folder_without_tokenizer_uses_the_base_tokenizer(model_dir):
    save_finetuned(model_dir / "RoBERTa-base-ch-ner", with_tokenizer=False)
    loader = AutoLoader("ner", "RoBERTa-base-ch", model_dir=model_dir)
    assert loader.model_name == "RoBERTa-base-ch-ner"
    assert loader.get_tokenizer()("北京")["input_ids"] == [101, 1266, 776, 102]


def test_unfinished_finetuned_download_is_not_preferred(model_dir):
    folder = model_dir / "RoBERTa-base-ch-ner"
    save_finetuned(folder)
    (folder / markers.IN_PROGRESS).write_text(json.dumps({"model_name": folder.name}))
    assert AutoLoader("ner", "RoBERTa-base-ch", model_dir=model_dir, class_num=7).model_name == "RoBERTa-base-ch"


def test_finetuned_model_name_given_directly(model_dir, no_network):
    save_finetuned(model_dir / "RoBERTa-base-ch-ner")
    loader = AutoLoader("ner", "RoBERTa-base-ch-ner", model_dir=model_dir)
    assert loader.base_name == "RoBERTa-base-ch" and loader.model_name == "RoBERTa-base-ch-ner"
    assert type(loader.get_model()) is BertForSequenceLabeling


# ------------------------------------------------------------------------------------------------ arguments


def test_device_defaults_to_cpu_without_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert auto_loader.default_device() == torch.device("cpu")
    assert AutoLoader("lm", "RoBERTa-base-ch", model_dir=checkpoints()).get_model().device.type == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert auto_loader.default_device() == torch.device("cuda")
    assert auto_loader.default_device("cpu") == torch.device("cpu")


def test_kwargs_reach_config_and_download_settings(model_dir):
    loader = AutoLoader("ner-gp", "RoBERTa-base-ch", model_dir=model_dir, class_num=4, inner_dim=6,
                        sources="local", torch_dtype=torch.float64)
    model = loader.get_model()
    assert model.config.num_labels == 4 and model.global_pointer.inner_dim == 6
    assert model.dtype == torch.float64
    with pytest.raises(ValueError, match="Unknown download source"):
        AutoLoader("lm", "RoBERTa-base-ch", model_dir=model_dir, sources="ftp")
    with pytest.raises(ModelNotFoundError, match="local"):
        AutoLoader("lm", "BERT-base-en", model_dir=model_dir, sources="local")


def test_flagai_only_arguments(model_dir):
    with pytest.raises(ValueError, match="lora_dir"):
        AutoLoader("lm", "RoBERTa-base-ch", model_dir=model_dir, lora_dir="./lora")
    loader = AutoLoader("classification", "RoBERTa-base-ch", model_dir=model_dir, load_pretrain_params=True,
                        target_size=5, class_num=3, low_cpu_mem_usage=True)
    assert loader.get_model().config.num_labels == 3
    assert not hasattr(loader.get_model().config, "target_size")


def test_inference_mode_and_model_max_length(model_dir):
    loader = AutoLoader("lm", "RoBERTa-base-ch", model_dir=model_dir, inference_mode=False, model_max_length=32)
    assert loader.get_model().training
    assert loader.get_tokenizer().model_max_length == 32


def test_only_download_config_builds_a_random_model(model_dir):
    loaded = AutoLoader("lm", "RoBERTa-base-ch", model_dir=model_dir).get_model()
    torch.manual_seed(5)
    fresh = AutoLoader("lm", "RoBERTa-base-ch", model_dir=model_dir, only_download_config=True,
                       torch_dtype=torch.float64).get_model()
    assert fresh.config.hidden_size == loaded.config.hidden_size and fresh.dtype == torch.float64
    assert not torch.equal(fresh.embeddings.word_embeddings.weight, loaded.embeddings.word_embeddings.weight)


def test_get_pipeline_is_built_once_and_accepts_overrides():
    loader = AutoLoader("ner", "RoBERTa-base-ch", model_dir=checkpoints(), id2label=dict(enumerate(BIO)))
    assert loader.get_pipeline() is loader.get_pipeline()
    assert loader.get_pipeline().task == "token-classification"
    other = loader.get_pipeline(aggregation_strategy="none")
    assert other is not loader.get_pipeline()
    assert all("entity" in token for token in other("北京欢迎你"))
