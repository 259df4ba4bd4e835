"""Pieces of examples/train_accelerate.py tested in-process: the data order, checkpoint discovery, the metrics log (the
loop's pieces live in examples/accelerate_loop.py, shared with examples/distributed/train_glm.py)."""

import argparse
import json
import os

import pytest
from example_common import load_module  # examples/ is on sys.path (tests/conftest.py)

from accelerate_runs import SCRIPT


@pytest.fixture(scope="module")
def script():
    return load_module("flagai_examples_train_accelerate", SCRIPT)


@pytest.fixture(scope="module")
def loop():
    return load_module("accelerate_loop", os.path.join(os.path.dirname(SCRIPT), "accelerate_loop.py"))


def test_epoch_permutation_is_seeded_and_cut_to_global_batches(loop):
    sampler = loop.EpochPermutationSampler(70, seed=1, multiple_of=8)
    assert len(sampler) == 64
    first = list(sampler)
    assert len(first) == 64 and len(set(first)) == 64 and max(first) < 70
    assert list(loop.EpochPermutationSampler(70, seed=1, multiple_of=8)) == first  # same seed, same order
    sampler.epoch = 1
    second = list(sampler)
    assert second != first and len(set(second)) == 64
    sampler.epoch = 0
    assert list(sampler) == first  # the order depends on (seed, epoch) only
    assert list(loop.EpochPermutationSampler(70, seed=2, multiple_of=8)) != first


def test_too_few_sentences_for_one_global_batch(loop):
    with pytest.raises(ValueError, match=r"7 training sentences are fewer than one global batch of 8"):
        loop.EpochPermutationSampler(7, seed=0, multiple_of=8)


def test_checkpoints_listed_by_step_and_partial_ones_ignored(loop, tmp_path):
    for name in ("step_9", "step_10", "step_2", ".partial_step_12", "other"):
        (tmp_path / name).mkdir()
    (tmp_path / "step_11").write_text("not a folder")
    assert [step for step, _ in loop.list_checkpoints(str(tmp_path))] == [2, 9, 10]
    assert loop.list_checkpoints(str(tmp_path / "missing")) == []
    args = argparse.Namespace(resume="latest")
    assert loop.resolve_resume(args, str(tmp_path)) == os.path.join(str(tmp_path), "step_10")
    assert loop.resolve_resume(argparse.Namespace(resume=None), str(tmp_path)) is None
    with pytest.raises(FileNotFoundError, match="no such checkpoint folder"):
        loop.resolve_resume(argparse.Namespace(resume=str(tmp_path / "nope")), str(tmp_path))


def test_metrics_log_drops_records_after_the_resumed_step(loop, tmp_path):
    path = tmp_path / "metrics.jsonl"
    log = loop.MetricsLog(str(path), enabled=True)
    for step in range(1, 6):
        log.append({"kind": "train", "step": step, "loss": 1.0 / step})
    log.append({"kind": "eval", "step": 4, "eval_loss": 0.5})
    log.append({"kind": "summary", "step": 5})
    log.truncate_after(3)
    kept = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(r["kind"], r["step"]) for r in kept] == [("train", 1), ("train", 2), ("train", 3)]
    loop.MetricsLog(str(tmp_path / "other.jsonl"), enabled=False).append({"kind": "train", "step": 1})
    assert not (tmp_path / "other.jsonl").exists()  # only the main process writes


def test_bad_arguments_are_rejected(script, capsys):
    with pytest.raises(SystemExit):
        script.parse_args(["--batch_size", "0"])
    assert "--batch_size must be >= 1, got 0" in capsys.readouterr().err


def test_resuming_with_another_global_batch_is_refused(loop):
    saved = loop.TrainState(global_batch=16)
    saved.step = 7
    restored = loop.TrainState(global_batch=16)
    restored.load_state_dict(saved.state_dict())
    assert restored.step == 7
    with pytest.raises(ValueError, match=r"global batch of 16 sentences, this run has 8"):
        loop.TrainState(global_batch=8).load_state_dict(saved.state_dict())
