"""Two-process DDP (accelerate launch --multi_gpu over gloo on the CPU) against one process with the same global
batch: same loss at every step, same held-out loss, identical weights on both ranks, near-identical final weights."""

import json

import pytest
from safetensors.torch import load_file

from accelerate_runs import records, run, single_command, two_process_command

STEPS = 10  # 64 sentences / global batch 8 = 8 steps per epoch: the run crosses an epoch boundary
RELATIVE_TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    single = tmp_path_factory.mktemp("single")
    ddp = tmp_path_factory.mktemp("ddp")
    common = ["--max_steps", str(STEPS), "--seed", "3"]
    run(single_command([*common, "--batch_size", "8", "--output_dir", str(single)]))
    # 2 processes x 2 sentences x 2 accumulated micro-batches = the same global batch of 8
    run(two_process_command([*common, "--batch_size", "2", "--gradient_accumulation_steps", "2",
                             "--output_dir", str(ddp)]), timeout=240)
    return single, ddp


def test_two_processes_really_ran(runs):
    _, ddp = runs
    (summary,) = records(ddp, "summary")
    assert summary["processes"] == 2 and summary["distributed_type"] == "MULTI_CPU"
    assert summary["global_batch"] == 8
    assert (ddp / "checkpoints" / f"step_{STEPS}" / "random_states_1.pkl").is_file()  # rank 1's RNG state


def test_loss_curve_matches_single_process(runs):
    single, ddp = runs
    one, two = records(single, "train"), records(ddp, "train")
    assert [r["step"] for r in one] == [r["step"] for r in two] == list(range(1, STEPS + 1))
    assert [r["tokens"] for r in one] == [r["tokens"] for r in two]  # the same sentences in every global batch
    for a, b in zip(one, two):
        assert b["loss"] == pytest.approx(a["loss"], rel=RELATIVE_TOLERANCE), f"step {a['step']}"
        assert b["lr"] == pytest.approx(a["lr"], rel=1e-12)
    assert one[-1]["loss"] < one[0]["loss"]  # it trains
    (eval_one,), (eval_two,) = records(single, "eval"), records(ddp, "eval")
    assert eval_one["eval_sentences"] == eval_two["eval_sentences"] == 16  # no sentence counted twice
    assert eval_two["eval_loss"] == pytest.approx(eval_one["eval_loss"], rel=RELATIVE_TOLERANCE)


def test_ranks_hold_identical_weights(runs):
    _, ddp = runs
    rank0 = json.loads((ddp / "weights_digest_rank0.json").read_text())
    rank1 = json.loads((ddp / "weights_digest_rank1.json").read_text())
    assert len(rank0) > 10 and rank0 == rank1


def test_final_weights_match_single_process(runs):
    single, ddp = runs
    one, two = load_file(single / "model" / "model.safetensors"), load_file(ddp / "model" / "model.safetensors")
    assert one.keys() == two.keys()
    worst = max((one[k] - two[k]).abs().max().item() for k in one)
    assert worst < 1e-4, f"max abs weight difference {worst}"
    print(f"max abs difference of the final weights, 2 processes vs 1: {worst:.3g}")
