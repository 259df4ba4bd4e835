"""examples/plot_metrics.py: reading both metrics formats and writing a PNG."""

import json
import os
import sys

import pytest
from example_common import load_module  # examples/ is on sys.path (tests/conftest.py)

PLOT = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "plot_metrics.py")


@pytest.fixture(scope="module")
def plot():
    return load_module("flagai_examples_plot_metrics", PLOT)


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def test_reads_jsonl_last_record_of_a_step_wins(plot, tmp_path):
    path = tmp_path / "metrics.jsonl"
    write_jsonl(path, [
        {"kind": "train", "step": 1, "loss": 2.0}, {"kind": "train", "step": 2, "loss": 1.9},
        {"kind": "train", "step": 3, "loss": 9.9},  # written by a killed run after its checkpoint...
        {"kind": "resume", "step": 2},
        {"kind": "train", "step": 3, "loss": 1.7},  # ...and redone by the resumed run
        {"kind": "eval", "step": 3, "eval_loss": 1.8, "f1": 0.25},
        {"kind": "summary", "step": 3},
    ])
    curves = plot.read_metrics(str(path))
    assert curves.train_loss == [(1, 2.0), (2, 1.9), (3, 1.7)]
    assert curves.eval_loss == [(3, 1.8)] and curves.eval_f1 == [(3, 0.25)]


def test_reads_trainer_metrics_json(plot, tmp_path):
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps({"loss_history": [{"step": 25, "loss": 1.5}, {"step": 50, "loss": 1.0}],
                                "eval_history": [{"step": 50, "eval_loss": 1.1, "eval_f1": 0.4}]}, indent=2))
    curves = plot.read_metrics(str(path))
    assert curves.train_loss == [(25, 1.5), (50, 1.0)]
    assert curves.eval_loss == [(50, 1.1)] and curves.eval_f1 == [(50, 0.4)]


def test_bad_files_are_named(plot, tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(ValueError, match="is empty"):
        plot.read_metrics(str(empty))
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"kind": "train", "step": 1, "loss": 1.0}\nnot json\n')
    with pytest.raises(ValueError, match=r"broken.jsonl:2: not a JSON object"):
        plot.read_metrics(str(broken))
    other = tmp_path / "other.json"
    other.write_text('{"f1": 0.5}')
    with pytest.raises(ValueError, match="without 'loss_history'"):
        plot.read_metrics(str(other))


def test_moving_average(plot):
    assert plot.moving_average([1.0, 3.0, 5.0, 7.0], 2) == [1.0, 2.0, 4.0, 6.0]
    assert plot.moving_average([4.0], 5) == [4.0]


def test_writes_png(plot, tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "metrics.jsonl"
    write_jsonl(path, [{"kind": "train", "step": s, "loss": 2.0 / s} for s in range(1, 21)]
                + [{"kind": "eval", "step": 10, "eval_loss": 0.3, "f1": 0.2},
                   {"kind": "eval", "step": 20, "eval_loss": 0.2, "f1": 0.4}])
    output = plot.main([str(path), "--smooth", "5"])
    assert output == str(tmp_path / "metrics.png")
    data = (tmp_path / "metrics.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_missing_matplotlib_message(plot, tmp_path, monkeypatch):
    path = tmp_path / "metrics.jsonl"
    write_jsonl(path, [{"kind": "train", "step": 1, "loss": 1.0}])
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` now raises ImportError
    with pytest.raises(ImportError, match=r"pip install matplotlib"):
        plot.plot_metrics(str(path))
