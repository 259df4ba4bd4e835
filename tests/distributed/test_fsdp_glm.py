"""FSDP2 for real on CPU: examples/distributed/train_glm.py fine-tunes a tiny GLM (hidden 32, 2 blocks, GLM-large-ch's
50,048-row embedding) on People's Daily titles in 2 gloo processes, sharded by accelerate's FSDP2 (full shard, one
unit per block, activation checkpointing, sharded DCP checkpoints).

- The 2-process run is started from examples/distributed/glm10b_fsdp.yaml itself (`accelerate launch --config_file`,
  overriding only the process count and precision); its loss at every step (across an epoch boundary) equals a
  1-process, unsharded run of the same global batch of 8.
- Each rank's gathered (full) weights are identical, and close to the 1-process run's.
- The step-3 sharded checkpoint (mid-epoch), resumed by a fresh pair of processes started with plain `torchrun --fsdp`,
  continues bitwise: losses, weights, and the final sharded model and AdamW state.
- With DeepSpeed installed (it is not a test dependency), the same against ZeRO-3 from glm10b_deepspeed_zero3.yaml.

One intra-op thread per process, no dropout: CPU results are then bitwise reproducible from run to run.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from accelerate_runs import REPO, assert_bitwise_equal, records, run_env

SCRIPT = os.path.join(REPO, "examples", "distributed", "train_glm.py")
FSDP_YAML = os.path.join(REPO, "examples", "distributed", "glm10b_fsdp.yaml")
DEEPSPEED_YAML = os.path.join(REPO, "examples", "distributed", "glm10b_deepspeed_zero3.yaml")
STEPS, RESUME_AT = 6, 3  # 32 pairs / global batch 8 = 4 steps per epoch: step 3 is mid-epoch, 5-6 the next epoch
TINY = ["--train_pairs", "32", "--eval_pairs", "8", "--max_source_length", "32", "--max_target_length", "16",
        "--hidden_size", "32", "--num_layers", "2", "--num_heads", "2", "--learning_rate", "3e-3", "--warmup", "2",
        "--max_steps", str(STEPS), "--checkpoint_every", str(RESUME_AT), "--keep_checkpoints", "2", "--seed", "3"]
TIMEOUT = 240  # seconds per run, on a loaded 2-core machine


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def one_process(output_dir) -> list[str]:
    return [sys.executable, SCRIPT, *TINY, "--batch_size", "8", "--output_dir", str(output_dir)]


def accelerate_launch(config_file: str, output_dir, *args: str) -> list[str]:
    """2 processes from an accelerate config (the GLM-10b one, with only the process count and precision changed)."""
    return [sys.executable, "-m", "accelerate.commands.launch", "--config_file", config_file, "--num_processes", "2",
            "--mixed_precision", "no", "--main_process_port", str(free_port()),
            SCRIPT, *TINY, "--batch_size", "4", "--output_dir", str(output_dir), *args]


def torchrun(output_dir, *args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
            "--master_port", str(free_port()), SCRIPT, *TINY, "--batch_size", "4", "--output_dir", str(output_dir),
            *args]


def run_together(*commands: list[str]) -> None:
    """Run the commands at the same time (each is mostly single-threaded start-up); fail with the first one's output
    that exits non-zero."""
    processes = [subprocess.Popen(c, env=run_env(), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  text=True) for c in commands]
    try:
        outputs = [p.communicate(timeout=TIMEOUT)[0] for p in processes]
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
                p.wait()
    for command, process, output in zip(commands, processes, outputs):
        if process.returncode != 0:
            raise AssertionError(f"{' '.join(command)} exited with {process.returncode}:\n{output[-6000:]}")


def losses(output_dir) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in records(output_dir, "train")}


def digest(output_dir, rank: int) -> dict[str, str]:
    with open(os.path.join(output_dir, f"weights_digest_rank{rank}.json"), encoding="utf-8") as f:
        return json.load(f)


def dcp_contents(folder, tmp_path) -> tuple[dict[str, torch.Tensor], dict[str, object]]:
    """A torch.distributed.checkpoint folder (every rank's shards) as whole tensors and the other values (optimizer
    hyper-parameters, step counts), each flattened to dotted keys."""
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

    target = tmp_path / (os.path.basename(os.path.dirname(folder)) + "_" + os.path.basename(folder) + ".pt")
    dcp_to_torch_save(folder, target)
    tensors, others = {}, {}

    def walk(prefix, value):
        if isinstance(value, dict):
            for key, item in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), item)
        elif isinstance(value, torch.Tensor):
            tensors[prefix] = value
        else:
            others[prefix] = value

    walk("", torch.load(target, weights_only=True))
    return tensors, others


@pytest.fixture(scope="module")
def fsdp_runs(tmp_path_factory):
    one = tmp_path_factory.mktemp("one_process")
    two = tmp_path_factory.mktemp("fsdp_two_processes")
    resumed = tmp_path_factory.mktemp("fsdp_resumed")
    run_together(one_process(one), accelerate_launch(FSDP_YAML, two))
    run_together(torchrun(resumed, "--fsdp", "--resume", str(two / "checkpoints" / f"step_{RESUME_AT}")))
    return one, two, resumed


def test_two_fsdp_processes_compute_the_one_process_losses(fsdp_runs):
    one, two, _ = fsdp_runs
    (summary,) = records(two, "summary")
    assert (summary["processes"], summary["distributed_type"], summary["enabled_on_cpu_by_script"]) == \
        (2, "FSDP", "FSDP")
    assert records(one, "summary")[0]["distributed_type"] == "NO"
    reference, sharded = losses(one), losses(two)
    assert list(sharded) == list(range(1, STEPS + 1)) and sharded[STEPS] < sharded[1]
    worst = max(abs(sharded[s] - reference[s]) / reference[s] for s in reference)
    assert worst <= 1e-5, f"per-step losses differ by up to {worst:.2e} (relative)"
    (eval_one,), (eval_two,) = records(one, "eval"), records(two, "eval")
    assert eval_one["eval_tokens"] == eval_two["eval_tokens"]
    assert abs(eval_one["eval_loss"] - eval_two["eval_loss"]) <= 1e-5 * eval_one["eval_loss"]


def test_checkpoint_is_sharded_across_the_ranks(fsdp_runs):
    _, two, _ = fsdp_runs
    model_dir = two / "checkpoints" / f"step_{STEPS}" / "pytorch_model_fsdp_0"
    shards = sorted(p for p in os.listdir(model_dir) if p.endswith(".distcp"))
    assert len(shards) == 2, shards  # one file per rank
    full_bytes = os.path.getsize(two / "model" / "model.safetensors")
    for shard in shards:  # each rank wrote about half of the weights, not a replica
        assert os.path.getsize(model_dir / shard) < 0.75 * full_bytes


def test_ranks_gather_identical_full_weights(fsdp_runs):
    one, two, _ = fsdp_runs
    assert digest(two, 0) == digest(two, 1)
    sharded, reference = load_file(two / "model" / "model.safetensors"), load_file(one / "model" / "model.safetensors")
    assert sharded.keys() == reference.keys()
    worst = max((sharded[k] - reference[k]).abs().max().item() for k in reference)
    assert worst <= 1e-4, f"FSDP and 1-process weights differ by up to {worst:.2e} after {STEPS} AdamW steps"


def test_sharded_checkpoint_resumes_bitwise(fsdp_runs, tmp_path):
    _, two, resumed = fsdp_runs
    (resume,) = records(resumed, "resume")
    assert resume["step"] == RESUME_AT
    continued, uninterrupted = losses(resumed), losses(two)
    assert list(continued) == list(range(RESUME_AT + 1, STEPS + 1))
    assert all(continued[s] == uninterrupted[s] for s in continued), (continued, uninterrupted)  # exactly
    assert digest(resumed, 0) == digest(two, 0) and digest(resumed, 1) == digest(two, 1)
    for part in ("pytorch_model_fsdp_0", "optimizer_0"):  # the final sharded checkpoints, whole
        ours, our_values = dcp_contents(resumed / "checkpoints" / f"step_{STEPS}" / part, tmp_path)
        theirs, their_values = dcp_contents(two / "checkpoints" / f"step_{STEPS}" / part, tmp_path)
        assert len(ours) > 0 and our_values == their_values
        assert_bitwise_equal(ours, theirs, part)


def test_deepspeed_zero3_on_cpu(tmp_path):
    """ZeRO-3 from the GLM-10b DeepSpeed config: 1-process losses, identical gathered weights, bitwise resume."""
    pytest.importorskip("deepspeed", reason="DeepSpeed is not a test dependency (pip install deepspeed)")
    one, zero3, resumed = tmp_path / "one", tmp_path / "zero3", tmp_path / "zero3_resumed"
    run_together(one_process(one), accelerate_launch(DEEPSPEED_YAML, zero3))
    run_together(accelerate_launch(DEEPSPEED_YAML, resumed, "--resume",
                                   str(zero3 / "checkpoints" / f"step_{RESUME_AT}")))
    assert records(zero3, "summary")[0]["distributed_type"] == "DEEPSPEED"
    reference, sharded, continued = losses(one), losses(zero3), losses(resumed)
    assert max(abs(sharded[s] - reference[s]) / reference[s] for s in reference) <= 1e-5
    assert digest(zero3, 0) == digest(zero3, 1)
    assert all(continued[s] == sharded[s] for s in continued) and len(continued) == STEPS - RESUME_AT
    assert digest(resumed, 0) == digest(zero3, 0)
