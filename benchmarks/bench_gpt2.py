"""GPT2: flagai_hf's ``GPT2Model`` (the language model) against transformers' ``GPT2LMHeadModel``, same weights, same
inputs, one process, alternating call by call.

    PYTHONPATH=. python benchmarks/bench_gpt2.py                 # gpt2-small (124M, random weights)
    PYTHONPATH=. python benchmarks/bench_gpt2.py --quick         # smoke run: 4-layer 256-wide model, few repeats
    PYTHONPATH=. python benchmarks/bench_gpt2.py --json out.json # also write every sample and the environment

Workloads (fp32, sdpa): forward 8x128 and 1x512 (LM logits); one training step (forward with labels + backward +
AdamW) at 8x128; greedy generation of 64 new tokens from a 32-token prompt at batch 1 and batch 8
(``generate(do_sample=False, max_new_tokens=64, min_new_tokens=64)``, K/V cache). Before timing, both sides' logits
(<= 1e-4), loss and generated tokens are compared; a mismatch stops the run. ``ratio = reference time / our time``:
>= 1.0 means ours is not slower; differences under 5-7% are noise on this machine.

Our linear layers run CPU float32 forwards through oneDNN (``flagai_hf/modules/linear.py``); ``--aten-linear``
turns that off (``use_onednn_for_cpu(False)``), so both sides use the same matmul kernel and the ratio
shows the rest of the implementation alone.

Generation also times ``prepacked``: our model with ``prepack_linear_weights`` (fp32 weights served from a copy in
oneDNN's blocked layout; a twin of our model sharing its parameters, so +0.5 GB for the copies), checked for the same
tokens, and prints milliseconds per new token (``ms/token`` = median time / new tokens, prompt included) for all three.

    PYTHONPATH=. python benchmarks/bench_gpt2.py --only generate   # the decode figures alone (~2 min idle)
"""

from __future__ import annotations

import argparse
import copy
import logging
import sys
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(HERE.parent))  # the repository root, for flagai_hf without PYTHONPATH

import torch  # noqa: E402

import common  # noqa: E402

TOLERANCE_FP32 = 1e-4
NOISE = 0.07
SIZES = {
    "small": dict(n_layer=12, n_embd=768, n_head=12, vocab_size=50257, n_positions=1024),  # gpt2-small
    "quick": dict(n_layer=4, n_embd=256, n_head=4, vocab_size=50257, n_positions=1024),
}


@dataclass(frozen=True)
class Workload:
    kind: str  # "forward" | "train" | "generate"
    batch: int
    seq: int  # tokens (forward / train) or prompt length (generate)
    new_tokens: int = 0

    @property
    def name(self) -> str:
        if self.kind == "generate":
            return f"greedy generate {self.batch}x{self.seq} +{self.new_tokens}"
        return f"{'forward' if self.kind == 'forward' else 'train step'} {self.batch}x{self.seq}"

    @property
    def tokens(self) -> int:
        return self.batch * (self.new_tokens if self.kind == "generate" else self.seq)


def workloads(quick: bool) -> list[Workload]:
    if quick:
        return [Workload("forward", 2, 64), Workload("train", 2, 64), Workload("generate", 1, 16, 16),
                Workload("generate", 4, 16, 16)]
    return [Workload("forward", 8, 128), Workload("forward", 1, 512), Workload("train", 8, 128),
            Workload("generate", 1, 32, 64), Workload("generate", 8, 32, 64)]


def quiet_libraries() -> None:
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    logging.getLogger("flagai_hf").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")


def load_pair(folder: Path, size: str):
    """A seeded random transformers GPT-2 saved to ``folder/gpt2``; ours loads it through the key map."""
    import transformers

    from flagai_hf import GPT2Model

    torch.manual_seed(0)
    transformers.GPT2LMHeadModel(transformers.GPT2Config(**SIZES[size])).save_pretrained(folder / "gpt2")
    ref = transformers.GPT2LMHeadModel.from_pretrained(folder / "gpt2", attn_implementation="sdpa").eval()
    ours = GPT2Model.from_pretrain(folder, "gpt2", attn_implementation="sdpa").eval()
    common.touch_tensors(ref)
    common.touch_tensors(ours)
    return ours, ref


def make_inputs(workload: Workload, vocab_size: int) -> dict:
    generator = torch.Generator().manual_seed(workload.batch * 1000 + workload.seq)
    ids = torch.randint(0, vocab_size - 1, (workload.batch, workload.seq), generator=generator)
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    if workload.kind == "train":
        inputs["labels"] = ids
    return inputs


def workload_fn(model, workload: Workload, inputs: dict):
    if workload.kind == "forward":
        def run():
            with torch.inference_mode():
                return model(**inputs).logits
    elif workload.kind == "generate":
        def run():
            with torch.inference_mode():
                return model.generate(**inputs, do_sample=False, max_new_tokens=workload.new_tokens,
                                      min_new_tokens=workload.new_tokens, pad_token_id=model.config.eos_token_id)
    else:
        model.train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)

        def run():
            optimizer.zero_grad(set_to_none=True)
            loss = model(**inputs).loss
            loss.backward()
            optimizer.step()
            return loss
    return run


def prepacked_twin(model):
    """A copy of ``model``'s modules sharing its parameters, whose Linear layers serve inference from prepacked
    fp32 weights (``prepack_linear_weights``); ``model`` itself stays plain."""
    from flagai_hf.modules.linear import prepack_linear_weights

    twin = copy.deepcopy(model, memo={id(tensor): tensor for tensor in [*model.parameters(), *model.buffers()]})
    prepack_linear_weights(twin)
    return twin


def check(workload: Workload, ours, ref, vocab_size: int) -> str:
    """Outputs agree before anything is timed (training: loss with dropout off, before any update)."""
    inputs = make_inputs(workload, vocab_size)
    if workload.kind == "generate":
        a, b = workload_fn(ours, workload, inputs)(), workload_fn(ref, workload, inputs)()
        if not torch.equal(a, b):
            raise SystemExit(f"{workload.name}: generated tokens differ")
        return "identical tokens"
    inputs["labels"] = inputs["input_ids"]
    with torch.no_grad():
        a, b = ours(**inputs), ref(**inputs)
    diff = common.max_abs_diff(a.logits, b.logits)
    loss_diff = abs(a.loss.item() - b.loss.item())
    if diff > TOLERANCE_FP32 or loss_diff > TOLERANCE_FP32:
        raise SystemExit(f"{workload.name}: logits differ by {diff:.2e}, loss by {loss_diff:.2e}")
    return f"logits max abs diff {diff:.2e}, loss diff {loss_diff:.2e}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--only", action="append", default=[], help="run workloads whose name contains this")
    parser.add_argument("--json", default=None)
    common.add_linear_option(parser)
    args = parser.parse_args(argv)
    common.configure_torch(args.threads, args.aten_linear)
    quiet_libraries()
    warmup = args.warmup if args.warmup is not None else (1 if args.quick else 2)
    repeats = args.repeats if args.repeats is not None else (2 if args.quick else 5)
    size = "quick" if args.quick else "small"
    warning = common.busy_warning(args.threads)
    env = common.environment_info()
    print(f"GPT2 benchmark ({size}: {SIZES[size]}), fp32, sdpa; {env['threads']} threads, torch {env['torch']}, "
          f"transformers {env['transformers']}; warm-up {warmup}, repeats {repeats}, medians; our CPU "
          f"linears: {env['our_cpu_linear']}")
    print(common.machine_line(env), flush=True)
    if warning:
        print(f"WARNING: {warning}", flush=True)

    selected = [w for w in workloads(args.quick) if not args.only or any(text in w.name for text in args.only)]
    rows, results, decode_rows = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        ours, ref = load_pair(Path(tmp), size)
        vocab = SIZES[size]["vocab_size"]
        for workload in selected:
            ours.eval(), ref.eval()
            print(f"  check {workload.name}: {check(workload, ours, ref, vocab)}", flush=True)
            inputs = make_inputs(workload, vocab)
            # Training updates the weights: it runs on copies, so later workloads still compare equal models.
            pair = (copy.deepcopy(ours), copy.deepcopy(ref)) if workload.kind == "train" else (ours, ref)
            sides = {"ours": workload_fn(pair[0], workload, inputs), "ref": workload_fn(pair[1], workload, inputs)}
            if workload.kind == "generate":
                twin = prepacked_twin(ours)
                print(f"  check {workload.name} prepacked: {check(workload, twin, ref, vocab)}", flush=True)
                sides["prepacked"] = workload_fn(twin, workload, inputs)
            timings = common.alternate(sides, warmup=warmup, repeats=repeats)
            del pair, sides
            twin = None
            o, r = timings["ours"], timings["ref"]
            p = timings.get("prepacked")
            ratio = r.median / o.median
            verdict = "ours faster" if ratio >= 1 + NOISE else "OURS SLOWER" if ratio <= 1 - NOISE else "same (noise)"
            rows.append({"workload": workload.name, "ours_s": f"{o.median:.3f}", "ref_s": f"{r.median:.3f}",
                         "ours_tps": f"{workload.tokens / o.median:,.1f}",
                         "ref_tps": f"{workload.tokens / r.median:,.1f}",
                         "ratio": f"{ratio:.3f}", "ratio_cpu": f"{r.cpu_median / o.cpu_median:.3f}",
                         "verdict": verdict})
            if workload.kind == "generate":
                per_token = {name: f"{1000 * timing.median / workload.new_tokens:.1f}"
                             for name, timing in timings.items()}
                decode_rows.append({"workload": workload.name, "ours_ms": per_token["ours"],
                                    "prepacked_ms": per_token["prepacked"], "ref_ms": per_token["ref"],
                                    "ratio": f"{r.median / p.median:.3f}",
                                    "ratio_cpu": f"{r.cpu_median / p.cpu_median:.3f}",
                                    "prepack_gain": f"{o.median / p.median:.3f}"})
            results.append({"workload": workload.name, **timings})
            print(f"  {workload.name}: ours {o.median:.3f} s, ref {r.median:.3f} s, ratio {ratio:.3f}", flush=True)
    print()
    print(common.format_table(rows, [("workload", "workload"), ("ours_s", "ours s"), ("ref_s", "ref s"),
                                     ("ours_tps", "ours tok/s"), ("ref_tps", "ref tok/s"), ("ratio", "ratio"),
                                     ("ratio_cpu", "ratio(cpu)"), ("verdict", "verdict")]))
    if decode_rows:
        print("\nms per new token (greedy decode; prepacked = prepack_linear_weights):")
        print(common.format_table(decode_rows, [("workload", "workload"), ("ours_ms", "ours ms/tok"),
                                                ("prepacked_ms", "prepacked ms/tok"), ("ref_ms", "ref ms/tok"),
                                                ("ratio", "ref/prepacked"), ("ratio_cpu", "ref/prepacked(cpu)"),
                                                ("prepack_gain", "ours/prepacked")]))
    print(f"\nratio = reference median / our median (>= 1.0: ours not slower; within +-{NOISE:.0%}: noise). "
          "Generation tok/s counts new tokens only. "
          f"Load average at the end: {common.load_average()}.")
    if args.json:
        common.write_json(args.json, {"environment": env, "size": SIZES[size], "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
