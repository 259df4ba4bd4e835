"""The accelerate training loop, shared by ``examples/train_accelerate.py`` (BERT NER) and
``examples/distributed/train_glm.py`` (GLM with FSDP2 / DeepSpeed): the loop itself (``train_loop``), the seeded
per-epoch data order, the loop position saved with every checkpoint, checkpoint rotation and ``resume``, the
``metrics.jsonl`` log, tensor digests and the AdamW weight-decay groups. Nothing here depends on a model family or a
task: a script brings its model, data, per-batch loss and evaluation.

``add_loop_arguments`` defines the command-line options the loop and a script's schedule read (batch, accumulation,
steps, optimizer, precision, seed, checkpoints, evaluation interval, output folder); ``check_loop_arguments`` rejects
bad values.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import os
import re
import shutil
import time
from collections.abc import Callable
from typing import NamedTuple

import torch
from accelerate import Accelerator
from torch.utils.data import DataLoader, Sampler
from tqdm.auto import tqdm

METRICS_FILE = "metrics.jsonl"
CHECKPOINT_DIR = "checkpoints"
_CHECKPOINT_NAME = re.compile(r"^step_(\d+)$")

# ------------------------------------------------------------------------------------------------------- arguments
def add_loop_arguments(parser: argparse.ArgumentParser, *, item: str, batch_size: int, learning_rate: float,
                       output_dir: str) -> tuple:
    """Add the groups "training" and "checkpoints and outputs" with the options ``train_loop``, ``resume`` and the
    scripts' schedules read; ``item`` names a training example in the help ("sentences", "pairs"). Returns the two
    groups, for a script's own options."""
    g = parser.add_argument_group("training")
    g.add_argument("--batch_size", type=int, default=batch_size, help=f"{item} per micro-batch and process")
    g.add_argument("--gradient_accumulation_steps", type=int, default=1, help="micro-batches per optimizer step")
    g.add_argument("--epochs", type=float, default=1.0, help="training epochs (ignored when --max_steps > 0)")
    g.add_argument("--max_steps", type=int, default=-1, help="optimizer steps; > 0 overrides --epochs")
    g.add_argument("--learning_rate", type=float, default=learning_rate)
    g.add_argument("--weight_decay", type=float, default=0.01)
    g.add_argument("--warmup", type=float, default=0.06, help="warm-up steps (>= 1) or fraction of the steps (< 1)")
    g.add_argument("--max_grad_norm", type=float, default=1.0, help="gradient clipping (0: off)")
    g.add_argument("--mixed_precision", choices=["no", "bf16", "fp16"], default=None,
                   help="compute dtype (default: what `accelerate launch` / the accelerate config says, else no)")
    g.add_argument("--cpu", action="store_true", help="train on the CPU even when a GPU is visible")
    g.add_argument("--seed", type=int, default=42, help="model initialisation and data order")
    training = g
    g = parser.add_argument_group("checkpoints and outputs")
    g.add_argument("--output_dir", default=output_dir)
    g.add_argument("--checkpoint_every", type=int, default=0,
                   help="save_state every N optimizer steps (0: only after the last step; -1: never)")
    g.add_argument("--keep_checkpoints", type=int, default=2, help="keep the last K checkpoints")
    g.add_argument("--resume", nargs="?", const="latest", default=None,
                   help="resume from the latest checkpoint of --output_dir (or from the given checkpoint folder); "
                        "starts from scratch when there is none yet")
    g.add_argument("--eval_every", type=int, default=0, help="evaluate every N steps (0: only at the end)")
    g.add_argument("--no_save_model", action="store_true", help="skip save_pretrained of the final model")
    return training, g


def check_loop_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace,
                         positive: tuple[str, ...] = ()) -> None:
    """``parser.error`` for a count below 1 (the loop's and the script's ``positive`` ones) or a bad interval."""
    for name in ("batch_size", "gradient_accumulation_steps", "keep_checkpoints", *positive):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    if args.checkpoint_every < -1:
        parser.error(f"--checkpoint_every must be >= -1 (-1: never, 0: at the end), got {args.checkpoint_every}")


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


class Schedule(NamedTuple):
    global_batch: int  # examples per optimizer step: batch_size x gradient_accumulation_steps x processes
    steps_per_epoch: int
    total_steps: int
    warmup_steps: int


def training_data(args, examples, collator, world: int) -> tuple[EpochPermutationSampler, DataLoader, Schedule]:
    """The training DataLoader, micro-batches of ``--batch_size`` in ``EpochPermutationSampler`` order (from ``--seed``
    and the epoch, cut to whole global batches), and the schedule it implies (``--max_steps`` or ``--epochs``,
    ``--warmup`` steps or fraction of the steps)."""
    global_batch = args.batch_size * args.gradient_accumulation_steps * world
    sampler = EpochPermutationSampler(len(examples), args.seed, multiple_of=global_batch)
    loader = DataLoader(examples, batch_size=args.batch_size, sampler=sampler, collate_fn=collator,
                        generator=torch.Generator().manual_seed(args.seed))  # leaves the global RNG alone
    steps_per_epoch = len(sampler) // global_batch
    total_steps = args.max_steps if args.max_steps > 0 else math.ceil(steps_per_epoch * args.epochs)
    warmup_steps = int(args.warmup) if args.warmup >= 1 else math.ceil(args.warmup * total_steps)
    return sampler, loader, Schedule(global_batch, steps_per_epoch, total_steps, warmup_steps)


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


# ------------------------------------------------------------------------------------------------------------ loop
def resume(accelerator: Accelerator, args, root: str, state: TrainState, log: MetricsLog) -> bool:
    """``--resume``: ``load_state`` of the checkpoint ``resolve_resume`` finds (model, optimizer, scheduler, RNG
    states, ``state``) and drop the metric records written after it; returns whether a checkpoint was loaded."""
    resume_from = resolve_resume(args, root)
    if resume_from is None:
        if args.resume is not None:
            accelerator.print(f"--resume: no checkpoint in {root} yet; starting from scratch")
        return False
    accelerator.load_state(resume_from)
    log.truncate_after(state.step)
    log.append({"kind": "resume", "step": state.step, "checkpoint": os.path.abspath(resume_from)})
    accelerator.print(f"resumed from {resume_from} at step {state.step}")
    return True


def train_loop(accelerator: Accelerator, args, model, optimizer, scheduler, train_loader, sampler, state: TrainState,
               log: MetricsLog, *, loss_sum: Callable, steps_per_epoch: int, total_steps: int, checkpoint_root: str,
               resumed: bool = False, evaluate: Callable[[], dict] | None = None) -> dict:
    """Optimizer steps from ``state.step`` to ``total_steps``; returns ``{"train_seconds", "samples_per_s"}``.

    One step takes ``args.gradient_accumulation_steps`` micro-batches per process; ``loss_sum(model, batch)`` is the
    loss summed over the batch's labelled tokens (``batch["labels"] != -100``), and the gradient is that of the sum
    over the global batch divided by its labelled-token count (counted across processes first), so any process count
    with the same global batch gives the same losses and gradients. Each epoch is ``sampler``'s permutation for
    ``(seed, epoch)``; after a resume the micro-batches of the epoch already used are skipped. Logs a ``train`` record
    per step, an ``eval`` record (``evaluate()``) every ``args.eval_every`` steps, checkpoints every
    ``args.checkpoint_every`` steps and after the last one (unless -1).
    """
    world = accelerator.num_processes
    global_batch = state.global_batch
    model.train()
    progress = tqdm(total=total_steps, initial=state.step, desc="train", disable=not accelerator.is_local_main_process)
    last_checkpoint_step = state.step if resumed else -1
    timed_seconds, timed_samples = 0.0, 0
    t_start = time.perf_counter()
    while state.step < total_steps:  # one pass per (rest of an) epoch
        epoch, done_in_epoch = divmod(state.step, steps_per_epoch)  # done_in_epoch > 0 only right after a resume
        sampler.epoch = epoch
        loader = train_loader
        if done_in_epoch:
            loader = accelerator.skip_first_batches(train_loader, done_in_epoch * args.gradient_accumulation_steps)
        batches = iter(loader)
        for _ in range(min(steps_per_epoch - done_in_epoch, total_steps - state.step)):
            t_step = time.perf_counter()
            window = [next(batches) for _ in range(args.gradient_accumulation_steps)]
            local_count = sum((batch["labels"] != -100).sum() for batch in window)
            global_count = accelerator.reduce(local_count.to(accelerator.device), "sum").clamp(min=1)
            loss_total = torch.zeros((), device=accelerator.device)
            for i, batch in enumerate(window):
                last = i == len(window) - 1
                with contextlib.nullcontext() if last else accelerator.no_sync(model):  # reduce once per step
                    batch_loss = loss_sum(model, batch)
                    # DDP / FSDP / ZeRO average gradients over the processes: scaling by `world` makes the result the
                    # gradient of (sum of the token losses of the global batch) / (its labelled tokens).
                    accelerator.backward(batch_loss * world / global_count)
                loss_total += batch_loss.detach()
            if args.max_grad_norm > 0:
                accelerator.clip_grad_norm_(model.parameters(), args.max_grad_norm)
            lr = scheduler.get_last_lr()[0]
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            loss = (accelerator.reduce(loss_total, "sum") / global_count).item()
            seconds = time.perf_counter() - t_step
            state.step += 1
            if state.step > 1:  # the first step pays one-time costs (allocations, DDP buckets)
                timed_seconds += seconds
                timed_samples += global_batch
            log.append({"kind": "train", "step": state.step, "epoch": epoch, "loss": loss, "lr": lr,
                        "tokens": int(global_count.item()), "samples": global_batch, "step_seconds": seconds,
                        "samples_per_s": global_batch / seconds})
            progress.update(1)
            progress.set_postfix(loss=f"{loss:.4f}")

            if args.eval_every and state.step % args.eval_every == 0 and state.step < total_steps and evaluate:
                log.append({"kind": "eval", "step": state.step, **evaluate()})
            if args.checkpoint_every > 0 and state.step % args.checkpoint_every == 0 and state.step < total_steps:
                save_checkpoint(accelerator, checkpoint_root, state.step, args.keep_checkpoints)
                last_checkpoint_step = state.step
        if state.step % steps_per_epoch == 0:
            next(batches, None)  # the epoch is used up: let the loader finish its iteration (accelerate's bookkeeping)
    progress.close()
    train_seconds = time.perf_counter() - t_start
    if args.checkpoint_every >= 0 and last_checkpoint_step != state.step:
        save_checkpoint(accelerator, checkpoint_root, state.step, args.keep_checkpoints)
    return {"train_seconds": train_seconds,
            "samples_per_s": timed_samples / timed_seconds if timed_seconds else None}
