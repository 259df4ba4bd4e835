"""T5: flagai_hf's ``T5Model`` against transformers' ``T5ForConditionalGeneration``, same random weights, one process,
alternating call by call.

    PYTHONPATH=. python benchmarks/bench_t5.py                  # t5-small, sdpa, fp32
    PYTHONPATH=. python benchmarks/bench_t5.py --size base      # t5-base
    PYTHONPATH=. python benchmarks/bench_t5.py --quick          # smoke run: fewer repeats
    PYTHONPATH=. python benchmarks/bench_t5.py --json out.json  # also write every sample and the environment

Workloads (fp32): forward (no grad) of 8x128 source tokens -> 32 target tokens; one training step (forward, backward,
AdamW) on the same shapes; greedy generation of exactly 32 new tokens from a 64-token prompt at batch 4, with the KV
cache. Before any timing, the logits of both sides are compared (max abs diff <= 1e-4, else the run stops) and the
greedy tokens must be equal. ``ratio = reference time / our time``: >= 1.0 means ours is not slower; differences under
5-7% are noise on this machine.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(HERE.parent))  # the repository root, for flagai_hf without PYTHONPATH

import torch  # noqa: E402

import common  # noqa: E402

TOLERANCE_FP32 = 1e-4
NOISE = 0.07
SIZES = {
    "small": dict(d_model=512, d_kv=64, d_ff=2048, num_layers=6, num_heads=8),
    "base": dict(d_model=768, d_kv=64, d_ff=3072, num_layers=12, num_heads=12),
}
VOCAB_SIZE = 32128


def quiet_libraries() -> None:
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    logging.getLogger("flagai_hf").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")


def build_models(size: str, impl: str):
    """transformers' T5 with seeded random weights, and ours holding the same weights (through the T5 key map)."""
    import transformers

    from flagai_hf import FlagAIT5Config, T5Model
    from flagai_hf.models.t5 import T5_KEYMAP

    kwargs = dict(vocab_size=VOCAB_SIZE, feed_forward_proj="relu", tie_word_embeddings=True, decoder_start_token_id=0,
                  **SIZES[size])
    torch.manual_seed(0)
    reference = transformers.T5ForConditionalGeneration(transformers.T5Config(**kwargs))
    ours = T5Model(FlagAIT5Config(**kwargs))
    missing, unexpected = ours.load_state_dict(T5_KEYMAP.convert(reference.state_dict()), strict=False)
    if unexpected or set(missing) - {"lm_head.weight"}:
        raise RuntimeError(f"weights did not transfer: missing {missing}, unexpected {unexpected}")
    for model in (reference, ours):
        model.set_attn_implementation(impl)
    return reference.eval(), ours.eval()


def make_inputs(seed: int = 0) -> dict:
    generator = torch.Generator().manual_seed(seed)
    return {
        "forward": dict(input_ids=torch.randint(100, VOCAB_SIZE, (8, 128), generator=generator),
                        attention_mask=torch.ones(8, 128, dtype=torch.long),
                        labels=torch.randint(100, VOCAB_SIZE, (8, 32), generator=generator)),
        "generate": dict(input_ids=torch.randint(100, VOCAB_SIZE, (4, 64), generator=generator),
                         attention_mask=torch.ones(4, 64, dtype=torch.long)),
    }


def check_outputs(reference, ours, inputs) -> float:
    with torch.inference_mode():
        diff = common.max_abs_diff(reference(**inputs["forward"]).logits, ours(**inputs["forward"]).logits)
        tokens = [model.generate(**inputs["generate"], max_new_tokens=8, do_sample=False)
                  for model in (reference, ours)]
    if diff > TOLERANCE_FP32:
        raise SystemExit(f"logits differ by {diff:.2e} > {TOLERANCE_FP32}: not benchmarking different models")
    if not torch.equal(*tokens):
        raise SystemExit("greedy tokens differ: not benchmarking different models")
    return diff


def workload_fns(model, inputs) -> dict:
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)

    def forward():
        model.eval()
        with torch.inference_mode():
            return model(**inputs["forward"]).logits

    def train_step():
        model.train()
        optimizer.zero_grad(set_to_none=True)
        model(**inputs["forward"]).loss.backward()
        optimizer.step()
        model.eval()

    def generate():
        with torch.inference_mode():
            return model.generate(**inputs["generate"], max_new_tokens=32, min_new_tokens=32, do_sample=False,
                                  use_cache=True)

    return {"forward 8x128->32": forward, "train step 8x128->32": train_step, "greedy 4x64 +32": generate}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=sorted(SIZES), default="small")
    parser.add_argument("--impl", choices=["eager", "sdpa"], default="sdpa")
    parser.add_argument("--quick", action="store_true", help="1 warm-up and 2 repeats")
    parser.add_argument("--warmup", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--threads", type=int, default=2)
    common.add_linear_option(parser)
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args(argv)
    warmup = args.warmup if args.warmup is not None else (1 if args.quick else 2)
    repeats = args.repeats if args.repeats is not None else (2 if args.quick else 5)

    common.configure_torch(args.threads, args.aten_linear)
    quiet_libraries()
    import flagai_hf  # noqa: F401

    env = common.environment_info()
    print(f"T5-{args.size} ({SIZES[args.size]}, vocab {VOCAB_SIZE}, {args.impl}, fp32): flagai_hf vs transformers")
    print(f"torch {env['torch']}, transformers {env['transformers']}, {env['threads']} threads, {env['cpu']}, "
          f"our CPU linears {env['our_cpu_linear']}, load average {env['loadavg']}; warm-up {warmup}, "
          f"repeats {repeats}, medians")
    print(common.machine_line(env), flush=True)
    warning = common.busy_warning(args.threads)
    if warning:
        print("WARNING: " + warning, flush=True)

    start = time.perf_counter()
    reference, ours = build_models(args.size, args.impl)
    inputs = make_inputs()
    diff = check_outputs(reference, ours, inputs)
    print(f"parity: max |logits diff| = {diff:.2e}, greedy tokens equal", flush=True)
    # training changes the weights: each side trains its own copy, so both keep doing the same work
    ours_fns, reference_fns = workload_fns(ours, inputs), workload_fns(reference, inputs)

    rows, results = [], {}
    for name in ours_fns:
        timings = common.alternate({"ours": ours_fns[name], "ref": reference_fns[name]}, warmup, repeats)
        ratio = timings["ref"].median / timings["ours"].median
        results[name] = timings
        rows.append({"workload": name, "ours": f"{timings['ours'].median:.3f}", "ref": f"{timings['ref'].median:.3f}",
                     "ratio": f"{ratio:.2f}",
                     "ratio_cpu": f"{timings['ref'].cpu_median / timings['ours'].cpu_median:.2f}",
                     "verdict": "noise" if abs(ratio - 1) < NOISE else ("faster" if ratio > 1 else "slower")})
        print(f"  {name}: ours {timings['ours'].median:.3f} s, ref {timings['ref'].median:.3f} s, ratio {ratio:.2f}",
              flush=True)

    print()
    print(common.format_table(rows, [("workload", "workload"), ("ours", "ours s"), ("ref", "transformers s"),
                                     ("ratio", "ratio"), ("ratio_cpu", "ratio(cpu)"), ("verdict", "verdict")]))
    print(f"\nratio = transformers median / our median (>= 1.0: ours not slower; within +-{NOISE:.0%}: noise). "
          f"Total {time.perf_counter() - start:.0f} s, load average now {common.load_average()}.")
    if args.json:
        common.write_json(args.json, {"environment": env, "size": args.size, "impl": args.impl,
                                      "parity_max_abs_diff": diff, "timings": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
