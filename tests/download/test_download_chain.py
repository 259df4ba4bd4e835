"""The resolution chain: local folders (complete, a user's, unfinished), the Hugging Face Hub through a local mirror,
offline mode, unknown names, settings from arguments and the environment, and the file-name checks."""

import json

import pytest
from download_servers import FakeHubMirror, closed_port, folder_files, logits_of, tiny_bert_folder

from flagai_hf import BertModel
from flagai_hf.download import (KNOWN_NAMES, DownloadSettings, ModelNotFoundError, UnsafeFileName, check_file_name,
                                markers)
from flagai_hf.download.names import select_hub_files


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    folder = tiny_bert_folder(tmp_path_factory.mktemp("source"))
    return folder, folder_files(folder), logits_of(BertModel.from_pretrained(folder))


@pytest.fixture
def online(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)


def test_a_users_folder_loads_without_network(source, tmp_path):
    folder = tmp_path / "RoBERTa-base-ch"  # e.g. what FlagAI downloaded: config.json + weights, none of our markers
    folder.mkdir()
    for name, data in source[1].items():
        (folder / name).write_bytes(data)
    assert markers.inspect(folder).state is markers.State.USER
    model = BertModel.from_pretrain(tmp_path, "RoBERTa-base-ch")  # HF_HUB_OFFLINE=1 in the tests
    assert (logits_of(model) - source[2]).abs().max().item() == 0.0


def test_unknown_name_lists_known_names_and_every_source(tmp_path):
    with pytest.raises(ModelNotFoundError) as error:
        BertModel.from_pretrain(tmp_path, "GLM-huge-xx")
    message = str(error.value)
    assert "'GLM-huge-xx' is not a known model name" in message
    assert all(name in message for name in KNOWN_NAMES)
    for source in ("local", "hf", "modelhub", "s3"):
        assert f"  - {source}: " in message
    assert "skipped: HF_HUB_OFFLINE=1" in message


def test_every_unreachable_source_is_reported(tmp_path, online, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{closed_port()}")
    with pytest.raises(ModelNotFoundError) as error:
        BertModel.from_pretrain(tmp_path, "BERT-base-en", modelhub_url=f"http://127.0.0.1:{closed_port()}",
                                download_retries=0, progress=False)
    message = str(error.value)
    assert "  - local: " in message and "does not exist" in message
    assert "  - hf: Hugging Face Hub (http://127.0.0.1:" in message and "cannot list 'google-bert/bert-base-uncased'" \
        in message
    assert "  - modelhub: FetchError: BAAI ModelHub" in message and "Connection refused" in message
    assert "  - s3: not configured" in message
    assert "not a known model name" not in message
    assert not markers.inspect(tmp_path / "BERT-base-en").state.loadable


def test_hub_mirror_download_is_verified_and_marked_complete(source, tmp_path, online, monkeypatch):
    repo_files = {**source[1], "tf_model.h5": b"tensorflow weights", "onnx/model.onnx": b"onnx", "README.md": b"#"}
    with FakeHubMirror({"google-bert/bert-base-uncased": repo_files}) as mirror:
        monkeypatch.setenv("HF_ENDPOINT", mirror.url)  # read at call time
        model = BertModel.from_pretrain(tmp_path, "BERT-base-en", sources="local,hf", progress=False)
        assert (logits_of(model) - source[2]).abs().max().item() == 0.0
        assert set(name for _, name in mirror.gets) == set(source[1])  # no TF / ONNX / README
        marker = json.loads((tmp_path / "BERT-base-en" / markers.COMPLETE).read_text())
        assert marker["source"] == "hf" and set(marker["files"]) == set(source[1])

        # A repo id given directly, and a corrupted LFS file caught by its sha256.
        mirror.repos["org/tiny"] = dict(source[1])
        mirror.corrupt.add(("org/tiny", "model.safetensors"))
        with pytest.raises(ModelNotFoundError, match=r"hf: IntegrityError: model.safetensors from Hugging Face Hub "
                                                     r".*sha256 .* differs from the advertised"):
            BertModel.from_pretrain(tmp_path, "org/tiny", sources="hf", progress=False)
        assert not (tmp_path / "org" / "tiny" / "model.safetensors").exists()
        assert not markers.inspect(tmp_path / "org" / "tiny").state.loadable


def test_fine_tuned_names_skip_the_hub_with_a_reason(tmp_path, online, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{closed_port()}")
    with pytest.raises(ModelNotFoundError, match=r"hf: no Hugging Face repository is known for 'RoBERTa-base-ch-ner'"):
        BertModel.from_pretrain(tmp_path, "RoBERTa-base-ch-ner", sources="hf")


def test_settings_come_from_arguments_then_environment(monkeypatch):
    monkeypatch.setenv("FLAGAI_HF_SOURCES", "s3, local")
    monkeypatch.setenv("FLAGAI_HF_S3_BUCKET", "env-bucket")
    monkeypatch.setenv("FLAGAI_HF_S3_PREFIX", "env/prefix")
    monkeypatch.setenv("FLAGAI_HF_MODELHUB_URL", "http://modelhub.example")
    monkeypatch.setenv("FLAGAI_HF_READ_TIMEOUT", "7.5")
    settings = DownloadSettings.from_call(s3_bucket="argument-bucket")
    assert settings.sources == ("s3", "local")
    assert (settings.s3_bucket, settings.s3_prefix) == ("argument-bucket", "env/prefix")
    assert settings.modelhub_url == "http://modelhub.example" and settings.read_timeout == 7.5
    monkeypatch.delenv("FLAGAI_HF_SOURCES")
    assert DownloadSettings.from_call().sources == ("local", "hf", "modelhub", "s3")
    with pytest.raises(ValueError, match="Unknown download source.*'ftp'.*local, hf, modelhub, s3"):
        DownloadSettings.from_call(sources="local,ftp")
    monkeypatch.setenv("FLAGAI_HF_RETRIES", "many")
    with pytest.raises(ValueError, match="FLAGAI_HF_RETRIES='many' is not a int"):
        DownloadSettings.from_call()


def test_local_only_reports_an_unfinished_folder(tmp_path):
    folder = tmp_path / "GLM-large-ch"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "pytorch_model.bin.flagai_hf.part").write_bytes(b"partial")
    assert markers.inspect(folder).state is markers.State.INTERRUPTED
    with pytest.raises(ModelNotFoundError, match="holds an unfinished download"):
        BertModel.from_pretrain(tmp_path, "GLM-large-ch", sources="local")


@pytest.mark.parametrize("name", ["..", "../x", "/abs", "a\\b", "a/b/c", "", "a//b", "./a", "x\x00y", "D:/x"])
def test_unsafe_file_names_are_refused(name):
    with pytest.raises(UnsafeFileName, match="from test-source"):
        check_file_name(name, "test-source")


def test_safe_file_names_pass():
    assert check_file_name("config.json", "s") == "config.json"
    assert check_file_name("sub/vocab.txt", "s") == "sub/vocab.txt"
    with pytest.raises(ValueError, match="model_name"):
        BertModel.from_pretrain("./checkpoints", "../outside")


def test_hub_file_selection_keeps_one_weight_format():
    listing = ["config.json", "vocab.txt", "tokenizer.json", "tokenizer_config.json", "model.safetensors",
               "pytorch_model.bin", "tf_model.h5", "flax_model.msgpack", "rust_model.ot", "README.md", ".gitattributes",
               "onnx/model.onnx", "coreml/fill-mask/float32_model.mlpackage/Manifest.json", "training_args.bin"]
    assert select_hub_files(listing) == ["config.json", "model.safetensors", "tokenizer.json",
                                         "tokenizer_config.json", "vocab.txt"]
    glm = ["config.json", "pytorch_model.bin", "cog-pretrain.model", "modeling_glm.py", "tokenizer_config.json"]
    assert select_hub_files(glm) == ["cog-pretrain.model", "config.json", "pytorch_model.bin", "tokenizer_config.json"]
    sharded = ["config.json", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
               "model.safetensors.index.json", "pytorch_model.bin"]
    assert select_hub_files(sharded) == ["config.json", "model-00001-of-00002.safetensors",
                                         "model-00002-of-00002.safetensors", "model.safetensors.index.json"]


def test_flagai_names_map_to_hub_repos_in_any_case():
    from flagai_hf.download.names import hub_repo_id, is_known

    assert hub_repo_id("roberta-base-ch") == hub_repo_id("RoBERTa-base-ch") == "hfl/chinese-roberta-wwm-ext"
    assert hub_repo_id("GPT2-base-en") == "openai-community/gpt2"
    assert hub_repo_id("org/name") == "org/name" and hub_repo_id("no-such-model") is None
    assert is_known("glm-large-ch-title-generation") and not is_known("no-such-model")
