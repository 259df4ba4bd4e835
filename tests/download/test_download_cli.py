"""``flagai-hf download`` through from_pretrain's chain against a Hub mirror on 127.0.0.1 (tests/test_flagai_hf_cli.py
covers the other subcommands)."""

from download_servers import FakeHubMirror, folder_files, logits_of, tiny_bert_folder

from flagai_hf import BertModel, cli
from flagai_hf.download import markers


def test_download_subcommand_fetches_from_a_local_hub_mirror(tmp_path, monkeypatch, capsys):
    import huggingface_hub.constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    source = tiny_bert_folder(tmp_path / "source")
    with FakeHubMirror({"org/tiny": folder_files(source)}) as mirror:
        monkeypatch.setenv("HF_ENDPOINT", mirror.url)
        assert cli.main(["download", "org/tiny", "--download-path", str(tmp_path / "ckpt"), "--sources", "hf"]) == 0
    folder = tmp_path / "ckpt" / "org" / "tiny"
    assert capsys.readouterr().out.strip().endswith(str(folder))
    assert markers.inspect(folder).state.loadable
    assert (logits_of(BertModel.from_pretrained(folder)) - logits_of(BertModel.from_pretrained(source))).abs().max() == 0
