"""The ``flagai-hf`` console command (flagai_hf/cli.py): --help, env, download (local folder, offline refusal) and
the conversion subcommands running conversion/*.py."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import flagai_hf
from flagai_hf import cli


def test_help_lists_every_subcommand():
    script = Path(sys.executable).with_name("flagai-hf")
    command = [str(script)] if script.is_file() else [sys.executable, "-m", "flagai_hf.cli"]
    result = subprocess.run([*command, "--help"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    for name in ("download", "env", "convert", "export", "serve-mirror", "megatron-merge"):
        assert name in result.stdout


def test_env_reports_versions_sources_and_caches(monkeypatch, capsys):
    monkeypatch.setenv("FLAGAI_HF_SOURCES", "local,s3")
    monkeypatch.setenv("FLAGAI_HF_S3_BUCKET", "my-bucket")
    info = cli.environment()
    assert info["torch"] == torch.__version__ and info["sources"] == "local,s3" and info["s3_bucket"] == "my-bucket"
    assert info["hf_hub_cache"] and not set(info) & cli.SECRET_SETTINGS
    assert "my-bucket" in capsys.readouterr().out


def _tiny_bert(folder: Path) -> Path:
    config = flagai_hf.FlagAIBertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                        intermediate_size=32, max_position_embeddings=16)
    flagai_hf.BertModel(config).save_pretrained(folder)
    return folder


def test_download_resolves_a_local_folder_and_refuses_offline(tmp_path, monkeypatch, capsys):
    _tiny_bert(tmp_path / "my-bert")
    assert cli.main(["download", "my-bert", "--download-path", str(tmp_path), "--sources", "local"]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "my-bert")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(SystemExit, match=r"(?s)Sources tried.*local.*hf: skipped: HF_HUB_OFFLINE=1"):
        cli.main(["download", "GLM-large-ch", "--download-path", str(tmp_path), "--sources", "local,hf"])
    with pytest.raises(SystemExit, match="Unknown download source"):
        cli.main(["download", "my-bert", "--download-path", str(tmp_path), "--sources", "ftp"])


def test_convert_subcommand_runs_the_conversion_script(tmp_path, capsys):
    config = flagai_hf.GLMConfig(vocab_size=64, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                                 max_position_embeddings=16, num_labels=3)
    flagai_hf.GLMForSequenceClassification(config).save_pretrained(tmp_path / "native")
    cli.main(["convert", "--to", "flagai", str(tmp_path / "native"), str(tmp_path / "flagai")])
    assert "FlagAI GLMForSequenceClassification" in capsys.readouterr().out
    assert json.loads((tmp_path / "flagai" / "config.json").read_text())["class_num"] == 3
    for name in ("export", "serve-mirror", "megatron-merge"):
        with pytest.raises(SystemExit) as exit_info:
            cli.main([name, "--help"])
        assert exit_info.value.code == 0
        assert "usage" in capsys.readouterr().out
