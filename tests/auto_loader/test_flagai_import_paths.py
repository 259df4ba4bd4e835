"""FlagAI's import paths as thin aliases: migrating code changes only the package name."""

import pytest
from autoloader_folders import checkpoints, one_thread  # noqa: F401

import flagai_hf
from flagai_hf.auto_loader import MODELS


def test_auto_loader_and_predictor_paths():
    from flagai_hf.auto_model.auto_loader import AutoLoader
    from flagai_hf.model.predictor.predictor import Predictor

    assert AutoLoader is flagai_hf.AutoLoader and Predictor is flagai_hf.Predictor


def test_model_paths():
    from flagai_hf.model import bert_model, glm_model, gpt2_model, t5_model

    assert glm_model.GLMModel is flagai_hf.GLMModel and glm_model.GLMForSeq2Seq is flagai_hf.GLMForSeq2Seq
    assert glm_model.GLMForSequenceClassification is flagai_hf.GLMForSequenceClassification
    assert bert_model.BertForMaskLM is flagai_hf.BertForMaskedLM
    assert bert_model.BertForClsClassifier is flagai_hf.BertForSequenceClassification
    assert bert_model.BertForEmbedding is flagai_hf.BertModel
    for name in ("BertModel", "BertForSeq2seq", "BertForSequenceLabeling", "BertForSequenceLabelingCRF",
                 "BertForSequenceLabelingGP"):
        assert getattr(bert_model, name) is getattr(flagai_hf, name)
    assert gpt2_model.GPT2Model is flagai_hf.GPT2Model and t5_model.T5Model is flagai_hf.T5Model


@pytest.mark.parametrize("name", [name for name in MODELS if name != "GLM-large-en-generation"])
def test_tokenizer_from_pretrained_picks_the_family_tokenizer(name):
    from flagai_hf.data.tokenizer import Tokenizer

    tokenizer = Tokenizer.from_pretrained(name.lower(), cache_dir=checkpoints() / name)
    assert type(tokenizer) is MODELS[name].tokenizer
    assert len(tokenizer("hello")["input_ids"]) > 0


def test_tokenizer_default_folder(tmp_path, monkeypatch):
    """Without cache_dir, FlagAI read ./checkpoints/<name>."""
    from flagai_hf.data.tokenizer import Tokenizer

    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "BERT-base-en").symlink_to(checkpoints() / "BERT-base-en")
    monkeypatch.chdir(tmp_path)
    assert Tokenizer.from_pretrained("BERT-base-en")("hello world")["input_ids"] == [101, 7592, 2088, 102]
    with pytest.raises(ValueError, match="Unknown model_name 'gpt3'"):
        Tokenizer.from_pretrained("gpt3")
