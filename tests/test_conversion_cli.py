"""conversion/convert_to_native.py: a FlagAI BERT folder becomes a native folder that loads with from_pretrained."""

import json
import subprocess
import sys
from pathlib import Path

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
