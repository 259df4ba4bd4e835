"""conversion/convert_to_native.py and conversion/convert.py: FlagAI folders become native folders that load with
from_pretrained, and native folders become FlagAI folders."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import transformers
from material import chinese_vocab

import flagai_hf

REPO = Path(__file__).resolve().parents[1]


def test_flagai_folder_converts_to_native(tmp_path):
    config = transformers.BertConfig(vocab_size=21128, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                     intermediate_size=64, num_labels=3)
    reference = transformers.BertForTokenClassification(config).eval()
    state = {k.replace("bert.", "model.", 1).replace("classifier.", "final_dense."): v  # FlagAI's names
             for k, v in reference.state_dict().items()}
    source = tmp_path / "RoBERTa-base-ch-ner"
    source.mkdir()
    flagai_config = {k: v for k, v in config.to_dict().items() if k not in ("model_type", "architectures")}
    (source / "config.json").write_text(json.dumps(flagai_config))
    torch.save({"module": state}, source / "pytorch_model.bin")
    (source / "vocab.txt").write_text(Path(chinese_vocab()).read_text(encoding="utf-8"), encoding="utf-8")

    destination = tmp_path / "native"
    result = subprocess.run([sys.executable, str(REPO / "conversion" / "convert_to_native.py"), str(source),
                             str(destination), "--model-class", "BertForSequenceLabeling", "--class-num", "3"],
                            capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert json.loads((destination / "config.json").read_text())["model_type"] == "flagai_bert"
    assert {"model.safetensors", "tokenizer.json", "vocab.txt"} <= {p.name for p in destination.iterdir()}

    model = transformers.AutoModelForTokenClassification.from_pretrained(destination).eval()
    assert isinstance(model, flagai_hf.BertForSequenceLabeling)
    batch = transformers.AutoTokenizer.from_pretrained(destination)(["北京欢迎你"], return_tensors="pt")
    with torch.no_grad():
        torch.testing.assert_close(model(**batch).logits, reference(**batch).logits, atol=1e-5, rtol=0)

    bad = subprocess.run([sys.executable, str(REPO / "conversion" / "convert_to_native.py"), str(source),
                          str(tmp_path / "x"), "--model-class", "NoSuchModel"], capture_output=True, text=True, cwd=REPO)
    assert bad.returncode != 0 and "choose one of: " in bad.stderr and "BertForSequenceLabeling" in bad.stderr


def test_cli_converts_native_to_flagai_and_back(tmp_path):
    config = flagai_hf.GLMConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                 max_position_embeddings=16, num_labels=3)
    torch.manual_seed(0)
    flagai_hf.GLMForSequenceClassification(config).save_pretrained(tmp_path / "native")
    script = str(REPO / "conversion" / "convert.py")

    result = subprocess.run([sys.executable, script, "--to", "flagai", str(tmp_path / "native"),
                             str(tmp_path / "flagai")], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert "FlagAI GLMForSequenceClassification" in result.stdout
    written = json.loads((tmp_path / "flagai" / "config.json").read_text())
    assert written["num_layers"] == 2 and written["class_num"] == 3 and "model_type" not in written
    state = torch.load(tmp_path / "flagai" / "pytorch_model.bin", weights_only=True)
    assert {"model.word_embeddings.weight", "pool_layer.weight", "multichoice_head.bias"} <= set(state)

    # the same entry point in-process (a subprocess start costs seconds on this machine)
    spec = importlib.util.spec_from_file_location("conversion_convert_cli", script)
    convert = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(convert)
    convert.main(["--to", "native", str(tmp_path / "flagai"), str(tmp_path / "again"),
                  "--model-class", "GLMForSequenceClassification"])
    model = transformers.AutoModelForSequenceClassification.from_pretrained(tmp_path / "again")
    assert torch.equal(model.classifier.weight, state["multichoice_head.weight"])

    state["model.transformer.layers.0.attention.rotary.weight"] = torch.zeros(2)
    torch.save(state, tmp_path / "flagai" / "pytorch_model.bin")
    with pytest.raises(SystemExit, match="unknown names: model.transformer.layers.0.attention.rotary.weight"):
        convert.main(["--to", "native", str(tmp_path / "flagai"), str(tmp_path / "x"),
                      "--model-class", "GLMForSequenceClassification"])
