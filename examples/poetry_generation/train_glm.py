#!/usr/bin/env python
"""Tang poetry generation with GLM: 唐诗三百首 (title -> poem) -> Seq2SeqTrainer -> held-out perplexity -> sampling.

    python examples/poetry_generation/train_glm.py                   # tiny GLM from scratch, a few minutes on 2 cores
    python examples/poetry_generation/train_glm.py --config small    # 512 x 6, slower
    python examples/poetry_generation/train_glm.py --train_poems 16 --eval_poems 4 --max_steps 3 --output_dir /tmp/p

Steps:
1. the 313 poems of Debian fortunes-zh's ``tang300`` (``data.py``), 30 held out by a fixed hash of the title;
2. GLM blank filling, with FlagAI's poetry prompt: source = ``"<title>：<form>[gMASK]"`` (form = 五言绝句, 七言律诗,
   ... computed from the poem), target = the poem; ``GLMSeq2SeqCollator`` builds ``[CLS] source <|endoftext|> [sop]
   poem`` with GLM's 2-D positions and blank-infilling mask (GLM spec §8). (FlagAI's own fine-tunes used the causal
   "format A" ``[sop] title [sep] poem [eop]`` instead; the blank-filling layout is the one GLM was pretrained with
   and the one ``build_inputs_for_generation`` serves.) Poems longer than ``--max_target_length`` tokens are cut;
3. a randomly initialised ``GLMForConditionalGeneration`` (cog-pretrain vocabulary, 50,048 embedding rows) trained
   with ``Seq2SeqTrainer`` on the model's own loss (``labels``);
4. held-out loss and perplexity (token-weighted over every held-out poem token + eop; next to the perplexity of a
   smoothed unigram model of the training poems), and for a few held-out titles
   poems sampled with ``generate(do_sample=True, top_k, top_p)`` under a fixed seed, with the share of their phrases
   that have the requested length (5 or 7 characters);
5. everything written to ``<output_dir>/metrics.json``.

Everything runs offline (``HF_HUB_OFFLINE=1`` is set if unset).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from collections import Counter

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
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
_data = load_module("flagai_examples_poetry_generation_data", os.path.join(_HERE, "data.py"))

# Model sizes: (hidden_size, num_layers, num_attention_heads); the MLP is 4 x hidden. "large" is GLM-large-ch.
MODEL_SIZES = {
    "tiny": (128, 3, 4),
    "small": (512, 6, 8),
    "base": (768, 12, 12),
    "large": (1024, 24, 16),
}
SIZE_DEFAULTS = {"base": {"learning_rate": 2e-4}, "large": {"learning_rate": 1e-4}}

# The tokenizer's NFKC normalisation writes Chinese punctuation as ASCII; put it back for display.
_FULL_WIDTH = str.maketrans({",": "，", "?": "？", "!": "！", ";": "；", ":": "："})
PHRASE_LENGTH = {"五言": 5, "七言": 7}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    g = p.add_argument_group("model")
    g.add_argument("--config", choices=list(MODEL_SIZES), default="tiny",
                   help="model size (hidden x layers): tiny 128x3, small 512x6, base 768x12, large 1024x24 "
                        "(GLM-large-ch); randomly initialised")
    g.add_argument("--hidden_size", type=int, default=None, help="override the size's hidden size")
    g.add_argument("--num_layers", type=int, default=None, help="override the size's number of layers")
    g.add_argument("--num_heads", type=int, default=None, help="override the size's number of attention heads")
    g.add_argument("--dropout", type=float, default=0.1, help="embedding, attention and output dropout")
    g = p.add_argument_group("data")
    g.add_argument("--train_poems", type=int, default=-1, help="first N training poems (-1: all 283)")
    g.add_argument("--eval_poems", type=int, default=-1, help="first N held-out poems (-1: all 30)")
    g.add_argument("--max_target_length", type=int, default=64,
                   help="poem tokens including <|endofpiece|> (longer poems are cut; a 七言律诗 is ~50 tokens)")
    g = p.add_argument_group("training")
    add_training_options(g, epochs=12.0, learning_rates="1e-3; base 2e-4, large 1e-4",
                         output_dir=os.path.join("outputs", "poetry_generation"))
    g = p.add_argument_group("generation (sampling)")
    g.add_argument("--num_poems", type=int, default=6, help="held-out titles to write poems for")
    g.add_argument("--max_new_tokens", type=int, default=64)
    g.add_argument("--top_k", type=int, default=30)
    g.add_argument("--top_p", type=float, default=0.9)
    g.add_argument("--temperature", type=float, default=0.9)
    g.add_argument("--repetition_penalty", type=float, default=1.0,
                   help="> 1 penalises every token already present, the prompt and the punctuation included")
    args = p.parse_args(argv)
    if args.learning_rate is None:
        args.learning_rate = SIZE_DEFAULTS.get(args.config, {}).get("learning_rate", 1e-3)
    return args


# --------------------------------------------------------------------------------------------------------- data
def prompt(poem) -> str:
    """FlagAI's poetry source, ``"<title>：<form>"``, with the blank to fill."""
    return f"{poem.title}：{poem.form}[gMASK]"


def examples(poems) -> list[dict]:
    return [{"source": prompt(p), "target": p.text} for p in poems]


def display(text: str) -> str:
    return text.translate(_FULL_WIDTH)


def phrase_length_accuracy(poems: list[str], forms: list[str]) -> float | None:
    """Share of the generated phrases (split at punctuation) with the form's length (5 for 五言, 7 for 七言)."""
    hits = total = 0
    for text, form in zip(poems, forms):
        want = PHRASE_LENGTH.get(form[:2])
        if want is None:
            continue
        phrases = [p for p in _data.PHRASE_SPLIT.split(text) if p]
        hits += sum(len(p) == want for p in phrases)
        total += len(phrases)
    return hits / total if total else None


def unigram_perplexity(train_poems, eval_poems, tokenizer, max_target_length: int, alpha: float = 0.1) -> float:
    """Reference point: the held-out perplexity of token frequencies of the training poems (add-``alpha``
    smoothing over the 50,048-row vocabulary), on the same tokens as the model's (poem + eop, cut alike)."""
    def tokens(poem):
        return (tokenizer(poem.text, add_special_tokens=False)["input_ids"] + [tokenizer.eop_token_id])[
            :max_target_length]

    counts = Counter(t for poem in train_poems for t in tokens(poem))
    total, vocab = sum(counts.values()), 50048
    nll = [-math.log((counts[t] + alpha) / (total + alpha * vocab)) for poem in eval_poems for t in tokens(poem)]
    return math.exp(sum(nll) / len(nll)) if nll else float("nan")


# ------------------------------------------------------------------------------------------------------- model
def build_model(args, tokenizer) -> GLMForConditionalGeneration:
    hidden, layers, heads = MODEL_SIZES[args.config]
    config = GLMConfig(
        vocab_size=50048,  # the released GLM-large-ch embedding: 50,000 pieces + command tokens, padded to 64
        hidden_size=args.hidden_size or hidden,
        num_hidden_layers=args.num_layers or layers,
        num_attention_heads=args.num_heads or heads,
        max_position_embeddings=512,
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
    return GLMForConditionalGeneration(config)


@torch.no_grad()
def held_out_loss(model, collator, dataset, batch_size: int) -> tuple[float, int]:
    """Mean cross-entropy per target token (poem tokens + eop) over the whole held-out set, and the token count."""
    model.eval()
    total, count = 0.0, 0
    for start in range(0, len(dataset), batch_size):
        batch = collator(dataset[start:start + batch_size])
        n = int((batch["labels"] != -100).sum())
        total += float(model(**batch).loss) * n  # the model's loss is the mean over its labelled tokens
        count += n
    return total / max(count, 1), count


@torch.no_grad()
def sample_poems(model, tokenizer, poems, args) -> list[str]:
    model.eval()
    inputs = tokenizer([prompt(p) for p in poems], return_tensors="pt", padding=True, padding_side="right")
    inputs = tokenizer.build_inputs_for_generation(inputs, max_gen_length=args.max_new_tokens + 1)
    torch.manual_seed(args.seed)
    output = model.generate(**inputs, max_new_tokens=args.max_new_tokens, do_sample=True, top_k=args.top_k,
                            top_p=args.top_p, temperature=args.temperature,
                            repetition_penalty=args.repetition_penalty, eos_token_id=tokenizer.eop_token_id,
                            pad_token_id=tokenizer.pad_token_id)
    texts = []
    for row in output[:, inputs["input_ids"].shape[1]:].tolist():
        if tokenizer.eop_token_id in row:
            row = row[:row.index(tokenizer.eop_token_id)]
        texts.append(display(tokenizer.decode(row, skip_special_tokens=True).strip()))
    return texts


# --------------------------------------------------------------------------------------------------------- main
def main(argv=None) -> dict:
    args = parse_args(argv)
    t_start = start_run(args)

    train_poems, eval_poems = _data.load_split(args.train_poems, args.eval_poems)
    tokenizer = GLMChineseTokenizer()
    train_dataset, eval_dataset = examples(train_poems), examples(eval_poems)
    print(f"data: {len(train_poems)} training poems, {len(eval_poems)} held-out poems (tang300), "
          f"{time.perf_counter() - t_start:.1f}s")

    model = build_model(args, tokenizer)
    config = model.config
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: GLMForConditionalGeneration {config.hidden_size}x{config.num_hidden_layers} "
          f"({config.num_attention_heads} heads), {n_params / 1e6:.1f}M parameters "
          f"({config.vocab_size * config.hidden_size / 1e6:.1f}M in the tied embedding), randomly initialised")

    collator = GLMSeq2SeqCollator(tokenizer, max_source_length=64, max_target_length=args.max_target_length)
    total_steps, eval_steps = training_schedule(len(train_dataset), args)
    training_args = trainer_arguments(args, total_steps, eval_steps, evaluate=bool(eval_dataset),
                                      arguments_class=Seq2SeqTrainingArguments,
                                      remove_unused_columns=False)  # the collator needs "source" / "target"
    trainer = Seq2SeqTrainer(model=model, args=training_args, data_collator=collator, train_dataset=train_dataset,
                             eval_dataset=eval_dataset if eval_dataset else None, processing_class=tokenizer)
    train_result, train_seconds, loss_history, eval_history = train_with_history(trainer)

    eval_loss, eval_tokens = held_out_loss(model, collator, eval_dataset, args.batch_size)
    perplexity = math.exp(eval_loss) if eval_tokens else float("nan")
    print(f"training: {trainer.state.global_step} steps in {train_seconds:.0f}s, loss "
          f"{loss_history[0]['loss']:.3f} -> {loss_history[-1]['loss']:.3f}; held-out loss {eval_loss:.3f} "
          f"per token ({eval_tokens} tokens), perplexity {perplexity:.1f}")
    unigram = unigram_perplexity(train_poems, eval_poems, tokenizer, args.max_target_length)
    print(f"unigram baseline (training-poem token frequencies): held-out perplexity {unigram:.1f}")

    t_gen = time.perf_counter()
    chosen = eval_poems[:args.num_poems]
    generated = sample_poems(model, tokenizer, chosen, args) if chosen else []
    generate_seconds = time.perf_counter() - t_gen
    samples = [{"title": p.title, "form": p.form, "author": p.author, "reference": p.text, "generated": g}
               for p, g in zip(chosen, generated)]
    length_accuracy = phrase_length_accuracy(generated, [p.form for p in chosen])
    for s in samples:
        print(f"  《{s['title']}》（{s['form']}）: {s['generated']}")

    if args.save_model:
        model_dir = save_model(model, tokenizer, args.output_dir)
        print(f"saved the model and tokenizer to {model_dir}")

    metrics = {
        "task": "poetry generation (title：form -> poem), tang300",
        "eval_loss": eval_loss,
        "eval_perplexity": perplexity,
        "eval_tokens": eval_tokens,
        "unigram_perplexity": unigram,
        "eval_poems": len(eval_poems),
        "train_poems": len(train_poems),
        "train_loss": train_result.training_loss,
        "final_loss": loss_history[-1]["loss"] if loss_history else None,
        "loss_history": loss_history,
        "eval_history": eval_history,
        "global_step": trainer.state.global_step,
        "phrase_length_accuracy": length_accuracy,
        "samples": samples,
        "generation": {"do_sample": True, "top_k": args.top_k, "top_p": args.top_p, "temperature": args.temperature,
                       "repetition_penalty": args.repetition_penalty, "seed": args.seed},
        "model": {"config": args.config, "hidden_size": config.hidden_size, "num_layers": config.num_hidden_layers,
                  "num_heads": config.num_attention_heads, "vocab_size": config.vocab_size, "parameters": n_params},
    }
    return write_metrics(metrics, args, t_start, train_seconds, generate_seconds)


if __name__ == "__main__":
    main(sys.argv[1:])
