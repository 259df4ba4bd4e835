"""AutoLoader with a missing folder: download options reach from_pretrain (a local fake BAAI ModelHub), the model and
its tokenizer come from the downloaded folder, and a fine-tuned ``<name>-<task>`` on the hub is not looked for."""

import importlib.util
import os

import pytest
from autoloader_folders import checkpoints, one_thread  # noqa: F401

from flagai_hf import AutoLoader, BertForSequenceLabeling, BertForSequenceLabelingCRF, FlagAIBertTokenizer
from flagai_hf.download import markers

_SERVERS = os.path.join(os.path.dirname(__file__), "..", "download", "download_servers.py")
_spec = importlib.util.spec_from_file_location("flagai_hf_tests_download_servers", _SERVERS)
servers = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(servers)


@pytest.fixture
def hub(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    files = servers.folder_files(checkpoints() / "RoBERTa-base-ch")
    with servers.FakeModelHub({"RoBERTa-base-ch": files, "RoBERTa-base-ch-ner": dict(files)}) as server:
        yield server


def options(url):
    return {"sources": "local,modelhub", "modelhub_url": url, "retry_backoff": 0.01, "progress": False}


def test_download_then_local(hub, tmp_path):
    loader = AutoLoader("ner-crf", "RoBERTa-base-ch", model_dir=tmp_path, class_num=7, **options(hub.url))
    assert type(loader.get_model()) is BertForSequenceLabelingCRF
    assert type(loader.get_tokenizer()) is FlagAIBertTokenizer
    assert markers.inspect(tmp_path / "RoBERTa-base-ch").state is markers.State.COMPLETE
    # FlagAI asked the hub whether RoBERTa-base-ch-ner exists on every construction; only the disk is looked at here.
    assert {model for model, _ in hub.gets} == {"RoBERTa-base-ch"}
    closed = options(f"http://127.0.0.1:{servers.closed_port()}")
    again = AutoLoader("ner-crf", "RoBERTa-base-ch", model_dir=tmp_path, class_num=7, **closed)
    assert again.get_tokenizer()("北京")["input_ids"] == loader.get_tokenizer()("北京")["input_ids"]


def test_finetuned_name_downloads_that_model(hub, tmp_path):
    loader = AutoLoader("ner", "RoBERTa-base-ch-ner", model_dir=tmp_path, class_num=7, **options(hub.url))
    assert type(loader.get_model()) is BertForSequenceLabeling
    assert {model for model, _ in hub.gets} == {"RoBERTa-base-ch-ner"}  # tokenizer files came with it
    assert not (tmp_path / "RoBERTa-base-ch").exists()
