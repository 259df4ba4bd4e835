"""Kill and resume: a run SIGKILLed by the test once a mid-epoch checkpoint exists, then restarted with --resume, ends
bitwise identical (model, optimizer and scheduler state, loss at every step) to a run that was never interrupted.

Dropout is on and gradients are accumulated, so the RNG states, the data position (skip_first_batches) and the
accumulation windows all have to be restored exactly."""

import os
import signal
import subprocess
import time

import pytest

from accelerate_runs import (assert_bitwise_equal, checkpoint_steps, load_checkpoint, records, run, run_env,
                             single_command)

STEPS = 24  # 64 sentences / global batch 8 = 8 steps per epoch; checkpoints every 3 steps fall inside epochs
ARGS = ["--max_steps", str(STEPS), "--batch_size", "4", "--gradient_accumulation_steps", "2", "--dropout", "0.1",
        "--checkpoint_every", "3", "--keep_checkpoints", "2", "--eval_every", "12", "--seed", "5"]
KILL_AFTER_CHECKPOINT = 6


def kill_after_checkpoint(output_dir, step: int, timeout: float = 120) -> int:
    """Start a run, SIGKILL it as soon as ``checkpoints/step_<step>`` exists; return the latest checkpoint left."""
    process = subprocess.Popen(single_command([*ARGS, "--output_dir", str(output_dir)]), env=run_env(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    target = os.path.join(output_dir, "checkpoints", f"step_{step}")
    deadline = time.monotonic() + timeout
    try:
        while not os.path.isdir(target):
            if process.poll() is not None:
                raise AssertionError(f"the run ended (exit {process.returncode}) before step {step} was "
                                     f"checkpointed:\n{process.stderr.read()[-3000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no checkpoint at step {step} after {timeout:.0f} s")
            time.sleep(0.002)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stderr.close()
    assert process.returncode == -signal.SIGKILL, f"the run was not killed (exit {process.returncode})"
    return max(checkpoint_steps(output_dir))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    reference = tmp_path_factory.mktemp("uninterrupted")
    resumed = tmp_path_factory.mktemp("killed_and_resumed")
    run(single_command([*ARGS, "--output_dir", str(reference)]))
    killed_at = kill_after_checkpoint(resumed, KILL_AFTER_CHECKPOINT)
    run(single_command([*ARGS, "--output_dir", str(resumed), "--resume"]))
    return reference, resumed, killed_at


def test_kill_landed_mid_run(runs):
    _, _, killed_at = runs
    assert KILL_AFTER_CHECKPOINT <= killed_at < STEPS
    assert killed_at % 8 != 0  # resumed inside an epoch: batches had to be skipped


def test_resumed_run_logged_every_step_once(runs):
    reference, resumed, killed_at = runs
    (resume,) = records(resumed, "resume")
    assert resume["step"] == killed_at
    ref_steps, res_steps = records(reference, "train"), records(resumed, "train")
    assert [r["step"] for r in res_steps] == list(range(1, STEPS + 1))
    assert [r["loss"] for r in res_steps] == [r["loss"] for r in ref_steps]  # exactly, step by step
    assert [(r["step"], r["eval_loss"], r["f1"]) for r in records(resumed, "eval")] == \
        [(r["step"], r["eval_loss"], r["f1"]) for r in records(reference, "eval")]
    assert len(records(resumed, "summary")) == 1


def test_final_state_is_bitwise_identical(runs):
    reference, resumed, _ = runs
    ref = load_checkpoint(reference / "checkpoints" / f"step_{STEPS}")
    res = load_checkpoint(resumed / "checkpoints" / f"step_{STEPS}")
    assert_bitwise_equal(ref["model"], res["model"], "model weights")
    assert len(ref["optimizer"]) == 3 * len(ref["model"])  # AdamW: step, exp_avg, exp_avg_sq per parameter
    assert_bitwise_equal(ref["optimizer"], res["optimizer"], "optimizer state")
    assert ref["optimizer_groups"] == res["optimizer_groups"]
    assert ref["scheduler"] == res["scheduler"]
    assert (reference / "weights_digest_rank0.json").read_text() == (resumed / "weights_digest_rank0.json").read_text()


def test_only_the_last_checkpoints_are_kept(runs):
    reference, resumed, _ = runs
    assert checkpoint_steps(reference) == [STEPS - 3, STEPS]
    assert checkpoint_steps(resumed) == [STEPS - 3, STEPS]
    assert not [name for name in os.listdir(resumed / "checkpoints") if name.startswith(".partial")]
