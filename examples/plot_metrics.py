#!/usr/bin/env python
"""Plot a training run's metrics file as a PNG: training loss (and held-out loss) per step, held-out F1 per step.

    python examples/plot_metrics.py outputs/ner_accelerate/metrics.jsonl              # -> .../metrics.png
    python examples/plot_metrics.py outputs/ner/metrics.json --output ner.png --smooth 20

Reads either format the examples write:

* ``metrics.jsonl`` of ``examples/train_accelerate.py``: one JSON object per line, ``{"kind": "train", "step",
  "loss"}`` and ``{"kind": "eval", "step", "eval_loss", "f1", ...}`` (other kinds are ignored; when a step appears
  twice the last record wins);
* ``metrics.json`` of the Trainer examples (``examples/ner/run_ner.py``): ``loss_history`` ``[{"step", "loss"}]`` and
  ``eval_history`` ``[{"step", "eval_loss", "eval_f1"}]``.

Needs matplotlib (``pip install matplotlib``, or the ``examples`` extra of flagai_hf).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass, field


@dataclass
class Curves:
    """The series of one run, each a list of ``(step, value)`` sorted by step."""

    train_loss: list[tuple[int, float]] = field(default_factory=list)
    eval_loss: list[tuple[int, float]] = field(default_factory=list)
    eval_f1: list[tuple[int, float]] = field(default_factory=list)


def _by_step(pairs: dict[int, float]) -> list[tuple[int, float]]:
    return sorted(pairs.items())


def read_metrics(path: str) -> Curves:
    """Curves from a ``metrics.jsonl`` (train_accelerate) or ``metrics.json`` (Trainer examples) file."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if not text.strip():
        raise ValueError(f"{path} is empty")
    try:
        document = json.loads(text)
    except json.JSONDecodeError:
        document = None  # several lines of JSON: metrics.jsonl
    train, eval_loss, eval_f1 = {}, {}, {}
    if isinstance(document, dict) and "kind" not in document:  # one JSON document: the Trainer examples
        if "loss_history" not in document:
            raise ValueError(f"{path}: a JSON object without 'loss_history'; expected run_ner.py's metrics.json "
                             f"or train_accelerate.py's metrics.jsonl")
        for entry in document["loss_history"]:
            train[int(entry["step"])] = float(entry["loss"])
        for entry in document.get("eval_history", []):
            if "eval_loss" in entry:
                eval_loss[int(entry["step"])] = float(entry["eval_loss"])
            if "eval_f1" in entry:
                eval_f1[int(entry["step"])] = float(entry["eval_f1"])
    else:
        for line_no, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}:{line_no}: not a JSON object ({error.msg})") from None
            kind = record.get("kind")
            if kind == "train":
                train[int(record["step"])] = float(record["loss"])
            elif kind == "eval":
                eval_loss[int(record["step"])] = float(record["eval_loss"])
                if "f1" in record:
                    eval_f1[int(record["step"])] = float(record["f1"])
    if not train and not eval_loss:
        raise ValueError(f"{path} holds no training or evaluation records")
    return Curves(_by_step(train), _by_step(eval_loss), _by_step(eval_f1))


def moving_average(values: list[float], window: int) -> list[float]:
    """Trailing mean over the last ``window`` values (shorter at the start)."""
    out, total = [], 0.0
    for i, value in enumerate(values):
        total += value
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise ImportError("plotting needs matplotlib, which is not installed: pip install matplotlib "
                          "(or pip install 'flagai_hf[examples]')") from None
    matplotlib.use("Agg", force=True)  # files only, no display needed
    import matplotlib.pyplot as plt

    return plt


def plot_metrics(path: str, output: str | None = None, smooth: int = 1, title: str | None = None) -> str:
    """Write the PNG for the metrics file ``path`` (default: next to it, ``.png``) and return its path.

    Left panel: training loss per step (raw, plus a ``smooth``-step moving average when ``smooth > 1``) and the
    held-out loss; right panel (only when the file has F1 values): held-out entity F1.
    """
    curves = read_metrics(path)
    plt = _pyplot()
    output = output or os.path.splitext(path)[0] + ".png"
    panels = 2 if curves.eval_f1 else 1
    fig, axes = plt.subplots(1, panels, figsize=(6 * panels, 4), squeeze=False)
    ax = axes[0][0]
    if curves.train_loss:
        steps, losses = zip(*curves.train_loss)
        ax.plot(steps, losses, color="tab:blue", alpha=0.35 if smooth > 1 else 1.0, linewidth=1, label="train loss")
        if smooth > 1:
            ax.plot(steps, moving_average(list(losses), smooth), color="tab:blue", linewidth=2,
                    label=f"train loss ({smooth}-step mean)")
    if curves.eval_loss:
        steps, losses = zip(*curves.eval_loss)
        ax.plot(steps, losses, "o-", color="tab:orange", label="held-out loss")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("cross-entropy per labelled token")
    ax.grid(alpha=0.3)
    ax.legend()
    if curves.eval_f1:
        ax = axes[0][1]
        steps, f1 = zip(*curves.eval_f1)
        ax.plot(steps, f1, "o-", color="tab:green", label="held-out entity F1")
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("F1")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title or os.path.basename(os.path.dirname(os.path.abspath(path))) or path)
    fig.tight_layout()
    fig.savefig(output, dpi=100)
    plt.close(fig)
    return output


def plot_runs(paths: dict[str, str], output: str, title: str | None = None) -> str:
    """Overlay several runs' metrics files (``{run name: path}``) in one PNG and return its path.

    Left panel: each run's training loss per step; right panel: each run's held-out entity F1 per step.
    """
    plt = _pyplot()
    fig, (loss_ax, f1_ax) = plt.subplots(1, 2, figsize=(12, 4))
    for (name, path), color in zip(paths.items(), plt.rcParams["axes.prop_cycle"].by_key()["color"]):
        curves = read_metrics(path)
        if curves.train_loss:
            loss_ax.plot(*zip(*curves.train_loss), color=color, linewidth=1, label=f"{name}: train loss")
        if curves.eval_loss:
            loss_ax.plot(*zip(*curves.eval_loss), "o--", color=color, label=f"{name}: held-out loss")
        if curves.eval_f1:
            f1_ax.plot(*zip(*curves.eval_f1), "o-", color=color, label=f"{name}: held-out entity F1")
    loss_ax.set_ylabel("cross-entropy per labelled token")
    f1_ax.set_ylabel("F1")
    f1_ax.set_ylim(0, 1)
    for ax in (loss_ax, f1_ax):
        ax.set_xlabel("optimizer step")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title or ", ".join(paths))
    fig.tight_layout()
    fig.savefig(output, dpi=100)
    plt.close(fig)
    return output


def main(argv=None) -> str:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("metrics", help="metrics.jsonl (train_accelerate.py) or metrics.json (run_ner.py)")
    p.add_argument("--output", default=None, help="PNG path (default: the metrics file with .png)")
    p.add_argument("--smooth", type=int, default=1, help="also draw a moving average over this many steps")
    p.add_argument("--title", default=None)
    args = p.parse_args(argv)
    if args.smooth < 1:
        p.error(f"--smooth must be >= 1, got {args.smooth}")
    output = plot_metrics(args.metrics, args.output, args.smooth, args.title)
    print(f"wrote {output}")
    return output


if __name__ == "__main__":
    main(sys.argv[1:])
