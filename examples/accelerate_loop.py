"""The accelerate training loop's reusable pieces, shared by ``examples/train_accelerate.py`` (BERT NER) and
``examples/distributed/train_glm.py`` (GLM with FSDP2 / DeepSpeed): the seeded per-epoch data order, the loop position
saved with every checkpoint, checkpoint rotation and resume discovery, the ``metrics.jsonl`` log, tensor digests and
the AdamW weight-decay groups. Nothing here depends on a model family or a task.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil

import torch
from accelerate import Accelerator
from torch.utils.data import Sampler

METRICS_FILE = "metrics.jsonl"
CHECKPOINT_DIR = "checkpoints"
_CHECKPOINT_NAME = re.compile(r"^step_(\d+)$")

# ------------------------------------------------------------------------------------------------------ data order
class EpochPermutationSampler(Sampler[int]):
    """Sentence indices of one epoch: a permutation drawn from ``(seed, epoch)``, cut to a multiple of ``multiple_of``.

    The order depends only on the seed and the epoch (never on the global RNG or the number of processes), so a
    resumed run and runs with different process counts see the same global batches. ``multiple_of`` is the global
    batch size: every process then gets the same number of full micro-batches and no sample is repeated to even
    them out. Set ``epoch`` before iterating (accelerate's ``set_epoch`` is deliberately not used: it does not reach
    a sampler wrapped by ``skip_first_batches`` in a multi-process run).
    """

    def __init__(self, num_samples: int, seed: int, multiple_of: int):
        if num_samples < multiple_of:
            raise ValueError(f"{num_samples} training sentences are fewer than one global batch of {multiple_of} "
                             f"(batch_size x gradient_accumulation_steps x processes); use more sentences or a "
                             f"smaller batch")
        self.num_samples = num_samples
        self.seed = seed
        self.usable = num_samples - num_samples % multiple_of
        self.epoch = 0

    def __iter__(self):
        order = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return iter(torch.randperm(self.num_samples, generator=order)[: self.usable].tolist())

    def __len__(self) -> int:
        return self.usable


class TrainState:
    """Where the loop is: optimizer steps done (the epoch and the position in it follow from the global batch).
    Saved with every checkpoint through ``register_for_checkpointing``."""

    def __init__(self, global_batch: int):
        self.step = 0
        self.global_batch = global_batch

    def state_dict(self) -> dict:
        return {"step": self.step, "global_batch": self.global_batch}

    def load_state_dict(self, state: dict) -> None:
        if int(state["global_batch"]) != self.global_batch:
            raise ValueError(
                f"the checkpoint was written with a global batch of {state['global_batch']} sentences, this run has "
                f"{self.global_batch} (batch_size x gradient_accumulation_steps x processes); resume with the same "
                f"global batch, or the data position and the schedule would not continue the same run")
        self.step = int(state["step"])


# ----------------------------------------------------------------------------------------------------- checkpoints
def list_checkpoints(root: str) -> list[tuple[int, str]]:
    """Complete checkpoints under ``root`` as ``(step, path)``, oldest first (temporary folders are ignored)."""
    if not os.path.isdir(root):
        return []
    found = [(int(m.group(1)), os.path.join(root, name)) for name in os.listdir(root)
             if (m := _CHECKPOINT_NAME.match(name)) and os.path.isdir(os.path.join(root, name))]
    return sorted(found)


def save_checkpoint(accelerator: Accelerator, root: str, step: int, keep: int) -> str:
    """``save_state`` into ``root/step_<step>`` through a temporary folder, then drop all but the last ``keep``."""
    final = os.path.join(root, f"step_{step}")
    partial = os.path.join(root, f".partial_step_{step}")
    if accelerator.is_main_process:
        shutil.rmtree(partial, ignore_errors=True)
        os.makedirs(partial)
    accelerator.wait_for_everyone()
    accelerator.save_state(partial)  # every process writes its RNG state; the main process the rest
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        shutil.rmtree(final, ignore_errors=True)
        os.replace(partial, final)  # a checkpoint folder exists only once it is complete
        for _, old in list_checkpoints(root)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def resolve_resume(args, root: str) -> str | None:
    if args.resume is None:
        return None
    if args.resume != "latest":
        if not os.path.isdir(args.resume):
            raise FileNotFoundError(f"--resume {args.resume}: no such checkpoint folder")
        return args.resume
    found = list_checkpoints(root)
    return found[-1][1] if found else None


# --------------------------------------------------------------------------------------------------------- metrics
class MetricsLog:
    """``metrics.jsonl`` in the output folder, appended to by the main process only (one JSON object per line)."""

    def __init__(self, path: str, enabled: bool):
        self.path, self.enabled = path, enabled

    def append(self, record: dict) -> None:
        if self.enabled:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps(record, ensure_ascii=False) + "\n")

    def truncate_after(self, step: int) -> None:
        """Drop the step records past ``step`` (written by a run killed after its last checkpoint) and summaries."""
        if not self.enabled or not os.path.isfile(self.path):
            return
        with open(self.path, encoding="utf-8") as f:
            records = [json.loads(line) for line in f if line.strip()]
        kept = [r for r in records if r.get("kind") != "summary" and r.get("step", 0) <= step]
        with open(self.path, "w", encoding="utf-8") as f:
            f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in kept)


def weights_digest(model: torch.nn.Module) -> dict[str, str]:
    """SHA-256 of every tensor of ``model``'s state dict (its bytes on the CPU)."""
    return state_dict_digest(model.state_dict())


def state_dict_digest(state_dict: dict[str, torch.Tensor]) -> dict[str, str]:
    """SHA-256 of every tensor of ``state_dict`` (its bytes on the CPU)."""
    digest = {}
    for name, tensor in state_dict.items():
        data = tensor.detach().cpu().contiguous()
        digest[name] = hashlib.sha256(data.view(torch.uint8).numpy().tobytes() if data.numel() else b"").hexdigest()
    return digest


# ------------------------------------------------------------------------------------------------------- optimizer
def optimizer_groups(model, weight_decay: float) -> list[dict]:
    """AdamW groups: weight decay on matrices, none on biases and norm weights."""
    decay, no_decay = [], []
    for param in model.parameters():
        (no_decay if param.ndim < 2 else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
