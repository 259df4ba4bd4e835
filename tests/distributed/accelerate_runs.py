"""Launching examples/train_accelerate.py from the tests: one process, two processes (DDP over gloo), and reading what a
run leaves behind (metrics.jsonl, the checkpoints, the per-rank weight digests).

Every run is a tiny NER fine-tune (hidden 32, 2 layers, 64 MSRA sentences of at most 32 tokens) with one intra-op
thread per process: on this shared 2-core machine, 2 OpenMP threads waiting for each other make steps 30x slower, and
a fixed thread count keeps CPU results bitwise reproducible from run to run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import torch
from safetensors.torch import load_file

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SCRIPT = os.path.join(REPO, "examples", "train_accelerate.py")

TINY = ["--train_sentences", "64", "--eval_sentences", "16", "--max_length", "32", "--hidden_size", "32",
        "--num_layers", "2", "--num_heads", "2", "--learning_rate", "3e-3", "--warmup", "2"]


def run_env() -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")}
    for key in ("ACCELERATE_MIXED_PRECISION", "ACCELERATE_USE_CPU", "LOCAL_RANK", "RANK", "WORLD_SIZE",
                "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)  # a launcher around pytest must not leak into the runs
    return env


def single_command(args: list[str]) -> list[str]:
    return [sys.executable, SCRIPT, *TINY, *args]


def two_process_command(args: list[str]) -> list[str]:
    """``accelerate launch --multi_gpu --num_processes 2`` (on a CPU-only machine: 2 gloo processes via torchrun)."""
    return [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
            "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "0",
            SCRIPT, *TINY, *args]


def run(command: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
    done = subprocess.run(command, env=run_env(), capture_output=True, text=True, timeout=timeout, cwd=REPO)
    if done.returncode != 0:
        raise AssertionError(f"{' '.join(command)} exited with {done.returncode}:\n{done.stdout[-3000:]}\n"
                             f"{done.stderr[-5000:]}")
    return done


def records(output_dir, kind: str) -> list[dict]:
    with open(os.path.join(output_dir, "metrics.jsonl"), encoding="utf-8") as f:
        return [r for r in map(json.loads, f) if r.get("kind") == kind]


def checkpoint_steps(output_dir) -> list[int]:
    root = os.path.join(output_dir, "checkpoints")
    if not os.path.isdir(root):
        return []
    return sorted(int(name[len("step_"):]) for name in os.listdir(root) if name.startswith("step_"))


def load_checkpoint(path) -> dict[str, dict]:
    """The tensors of a save_state folder: model weights, optimizer state (flattened), scheduler state."""
    model = load_file(os.path.join(path, "model.safetensors"))
    optimizer = torch.load(os.path.join(path, "optimizer.bin"), weights_only=True)
    scheduler = torch.load(os.path.join(path, "scheduler.bin"), weights_only=True)
    flat_optimizer = {}
    for param_id, slots in optimizer["state"].items():
        for slot, value in slots.items():
            flat_optimizer[f"{param_id}.{slot}"] = torch.as_tensor(value)
    return {"model": model, "optimizer": flat_optimizer, "optimizer_groups": optimizer["param_groups"],
            "scheduler": scheduler}


def assert_bitwise_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], what: str) -> None:
    assert a.keys() == b.keys(), f"{what}: different entries {sorted(set(a) ^ set(b))}"
    differing = [name for name in a if not torch.equal(a[name], b[name])]
    assert not differing, f"{what}: {len(differing)} of {len(a)} tensors differ, e.g. {differing[:5]}"
