"""What the example scripts share: importing their sibling files by path, and the ``Trainer`` schedule and arguments
of the generation examples (title generation, poetry, text writing).

The scripts add ``examples/`` to the end of ``sys.path`` and ``from example_common import ...``; their own helper
files (each directory's ``data.py``, ``examples/metrics.py``) are loaded with ``load_module`` under unique names, so
two ``data.py`` files never collide, whether the scripts run as programs or are imported by the tests.
"""

from __future__ import annotations

import importlib.util
import math
import os
import sys

from transformers import TrainingArguments


def load_module(name: str, path: str):
    """Import the file ``path`` as module ``name`` (once per process; later calls return the same module)."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


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
    ``evaluate``, logs every ``--logging-steps``, no checkpoints (the scripts save the final model themselves)."""
    return arguments_class(
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
        **extra,
    )
