"""BERT: flagai_hf's ``BertModel`` / ``BertForSequenceLabeling`` against transformers' ``BertModel`` /
``BertForTokenClassification``, same weights, same inputs, one process, alternating call by call.

    PYTHONPATH=. python benchmarks/bench_bert.py                 # bert-base, full run (~6 min on an idle machine)
    PYTHONPATH=. python benchmarks/bench_bert.py --quick         # smoke run: small model, short inputs, few repeats
    PYTHONPATH=. python benchmarks/bench_bert.py --json out.json # also write every sample and the environment

Workloads: inference forward at 8x128 and 1x512 tokens, fp32 and bf16, eager and sdpa attention; one training step
(forward + backward + AdamW) of 7-label token classification at 16x128 and 8x128, fp32, sdpa. Before any timing the
outputs of both sides are compared (fp32: max abs diff <= 1e-4, else the run stops). Peak memory is measured per
(side, workload) in a fresh subprocess (see benchmarks/README.md). ``ratio = reference time / our time``: >= 1.0
means ours is not slower; differences under 5-7% are noise on this machine.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(HERE.parent))  # the repository root, for flagai_hf without PYTHONPATH

import torch  # noqa: E402

import common  # noqa: E402

NUM_LABELS = 7
VOCAB_SIZE = 21128
TOLERANCE_FP32 = 1e-4
NOISE = 0.07  # ratios within 1 +- NOISE are reported as noise
NOISY_SPREAD = 0.25  # (max - min) / median of either side's repeats above this: the verdict is marked noisy

SIZES = {
    "base": dict(num_hidden_layers=12, hidden_size=768, num_attention_heads=12, intermediate_size=3072),
    "small": dict(num_hidden_layers=4, hidden_size=512, num_attention_heads=8, intermediate_size=2048),
}
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


@dataclass(frozen=True)
class Workload:
    kind: str  # "forward" | "train"
    batch: int
    seq: int
    dtype: str  # key of DTYPES
    impl: str  # attn_implementation

    @property
    def name(self) -> str:
        verb = "forward" if self.kind == "forward" else "train step"
        return f"{verb} {self.batch}x{self.seq} {self.dtype} {self.impl}"

    @property
    def tokens(self) -> int:
        return self.batch * self.seq


def workloads(quick: bool) -> list[Workload]:
    shapes = [(2, 64), (1, 128)] if quick else [(8, 128), (1, 512)]
    train_shapes = [(2, 64)] if quick else [(16, 128), (8, 128)]  # 16x128: issue 14's training shape
    out = [Workload("forward", b, t, dtype, impl)
           for dtype in DTYPES for impl in ("eager", "sdpa") for b, t in shapes]
    out.extend(Workload("train", b, t, "fp32", "sdpa") for b, t in train_shapes)
    return out


# ------------------------------------------------------------------------------------------------ models and inputs


def quiet_libraries() -> None:
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    logging.getLogger("flagai_hf").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")


def save_reference_checkpoints(folder: Path, size: str) -> None:
    """Random transformers checkpoints (seeded): ``folder/m`` (BertModel), ``folder/tc`` (token classification)."""
    import transformers

    config = transformers.BertConfig(vocab_size=VOCAB_SIZE, **SIZES[size])
    torch.manual_seed(0)
    transformers.BertModel(config).save_pretrained(folder / "m")
    torch.manual_seed(1)
    transformers.BertForTokenClassification(
        transformers.BertConfig(vocab_size=VOCAB_SIZE, num_labels=NUM_LABELS, **SIZES[size])
    ).save_pretrained(folder / "tc")


def load_model(side: str, kind: str, impl: str, dtype: str, folder: Path):
    """``side`` "ours" | "ref"; ``kind`` "forward" (BertModel from ``m``) | "train" (token classification, ``tc``)."""
    import transformers

    from flagai_hf import BertForSequenceLabeling, BertModel

    name = "m" if kind == "forward" else "tc"
    if side == "ours":
        cls = BertModel if kind == "forward" else BertForSequenceLabeling
        model = cls.from_pretrain(folder, name, attn_implementation=impl)
    else:
        cls = transformers.BertModel if kind == "forward" else transformers.BertForTokenClassification
        model = cls.from_pretrained(folder / name, attn_implementation=impl)
    if model.config._attn_implementation != impl:
        raise RuntimeError(f"{side} model runs {model.config._attn_implementation!r}, asked for {impl!r}")
    return model.to(DTYPES[dtype]).eval()


def make_inputs(workload: Workload, seed: int = 0) -> dict:
    """Unpadded batch of random ids (above the special tokens), all-ones mask, zero token types, random labels."""
    generator = torch.Generator().manual_seed(seed + workload.batch * 1000 + workload.seq)
    shape = (workload.batch, workload.seq)
    inputs = {
        "input_ids": torch.randint(1000, VOCAB_SIZE, shape, generator=generator),
        "attention_mask": torch.ones(shape, dtype=torch.long),
        "token_type_ids": torch.zeros(shape, dtype=torch.long),
    }
    if workload.kind == "train":
        inputs["labels"] = torch.randint(0, NUM_LABELS, shape, generator=generator)
    return inputs


def forward_fn(model, inputs):
    def run():
        with torch.inference_mode():
            return model(**inputs)

    return run


def train_step_fn(model, inputs):
    """One step: zero grads, forward with labels (dropout on), backward, AdamW update."""
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)

    def run():
        optimizer.zero_grad(set_to_none=True)
        loss = model(**inputs).loss
        loss.backward()
        optimizer.step()
        return loss

    return run


def prepare_worker(spec: dict):
    """Memory subprocess: load one side's model for one workload, return the workload callable."""
    common.configure_torch(spec["threads"], spec["aten_linear"])
    quiet_libraries()
    workload = Workload(**spec["workload"])
    model = load_model(spec["side"], workload.kind, workload.impl, workload.dtype, Path(spec["folder"]))
    common.touch_tensors(model)  # memory-mapped weights count as resident before the workload, on both sides
    inputs = make_inputs(workload)
    return forward_fn(model, inputs) if workload.kind == "forward" else train_step_fn(model, inputs)


# ----------------------------------------------------------------------------------------------------------- checks


def forward_outputs(output) -> tuple[torch.Tensor, torch.Tensor]:
    return output.last_hidden_state.float(), output.pooler_output.float()


def check_forward(workload: Workload, ours, ref, fp32_reference: dict) -> dict:
    """Max abs diffs of (last_hidden_state, pooler_output). fp32: ours vs ref must be <= 1e-4. bf16: both sides'
    error against the fp32 reference is reported (ours should be about as far off as transformers' own bf16)."""
    inputs = make_inputs(workload)
    ours_out = forward_outputs(forward_fn(ours, inputs)())
    ref_out = forward_outputs(forward_fn(ref, inputs)())
    result = {"ours_vs_ref": common.max_abs_diff(ours_out, ref_out)}
    key = (workload.batch, workload.seq, workload.impl)
    if workload.dtype == "fp32":
        fp32_reference[key] = ref_out
        result["ok"] = result["ours_vs_ref"] <= TOLERANCE_FP32
        text = f"ours vs ref {result['ours_vs_ref']:.2e} (tolerance {TOLERANCE_FP32:.0e})"
    else:
        truth = fp32_reference.get(key)
        if truth is None:  # fp32 workloads filtered out: compare bf16 sides only
            result["ok"] = True
            text = f"ours vs ref (both bf16) {result['ours_vs_ref']:.2e}"
        else:
            result["ours_vs_fp32"] = common.max_abs_diff(ours_out, truth)
            result["ref_vs_fp32"] = common.max_abs_diff(ref_out, truth)
            result["ok"] = result["ours_vs_fp32"] <= 1.5 * result["ref_vs_fp32"] + 1e-2
            text = (f"ours vs ref (both bf16) {result['ours_vs_ref']:.2e}; vs fp32 reference: ours "
                    f"{result['ours_vs_fp32']:.2e}, transformers {result['ref_vs_fp32']:.2e}")
    print(f"  check {workload.name}: {text} -> {'ok' if result['ok'] else 'MISMATCH'}", flush=True)
    return result


def check_train(workload: Workload, ours, ref) -> dict:
    """Dropout off: loss, logits and gradients (classifier, word embeddings, layer-0 fused QKV vs cat(q, k, v),
    last layer's MLP output) of both sides must agree before the training step is timed."""
    inputs = make_inputs(workload)
    outs = {}
    for side, model in (("ours", ours), ("ref", ref)):
        model.eval()
        model.zero_grad(set_to_none=True)
        output = model(**inputs)
        output.loss.backward()
        outs[side] = output
    last = len(ref.bert.encoder.layer) - 1
    ref_attention = ref.bert.encoder.layer[0].attention.self
    grads = {
        "classifier.weight": (ours.classifier.weight.grad, ref.classifier.weight.grad),
        "word_embeddings": (ours.bert.embeddings.word_embeddings.weight.grad,
                            ref.bert.embeddings.word_embeddings.weight.grad),
        "layer0 qkv": (ours.bert.layers[0].attention.query_key_value.weight.grad,
                       torch.cat([ref_attention.query.weight.grad, ref_attention.key.weight.grad,
                                  ref_attention.value.weight.grad])),
        f"layer{last} mlp out": (ours.bert.layers[last].mlp.dense_4h_to_h.weight.grad,
                                 ref.bert.encoder.layer[last].output.dense.weight.grad),
    }
    result = {
        "loss": abs(outs["ours"].loss.item() - outs["ref"].loss.item()),
        "logits": common.max_abs_diff(outs["ours"].logits, outs["ref"].logits),
        "grad_rel": {name: common.max_abs_diff(a, b) / max(b.abs().max().item(), 1e-30)
                     for name, (a, b) in grads.items()},
    }
    result["ok"] = (result["loss"] <= TOLERANCE_FP32 and result["logits"] <= TOLERANCE_FP32
                    and max(result["grad_rel"].values()) <= 1e-3)
    for model in (ours, ref):
        model.zero_grad(set_to_none=True)
    grads_text = ", ".join(f"{k} {v:.1e}" for k, v in result["grad_rel"].items())
    print(f"  check {workload.name} (dropout off): loss diff {result['loss']:.2e}, logits {result['logits']:.2e}, "
          f"grads (max abs diff / max abs) {grads_text} -> {'ok' if result['ok'] else 'MISMATCH'}", flush=True)
    return result


# ------------------------------------------------------------------------------------------------------------- main


def run_timings(selected: list[Workload], folder: Path, warmup: int, repeats: int, train_repeats: int) -> list[dict]:
    rows = []
    fp32_reference: dict = {}
    precision = common.fp32_matmul_precision()
    groups: dict[tuple, list[Workload]] = {}
    for workload in selected:  # training updates the weights: each training workload starts from fresh models
        shape = (workload.batch, workload.seq) if workload.kind == "train" else ()
        groups.setdefault((workload.kind, workload.dtype, workload.impl, *shape), []).append(workload)
    for (kind, dtype, impl, *_), group in groups.items():
        start = time.perf_counter()
        ours = load_model("ours", kind, impl, dtype, folder)
        ref = load_model("ref", kind, impl, dtype, folder)
        if common.fp32_matmul_precision() != precision:
            raise RuntimeError(f"loading changed torch's fp32 matmul precision from {precision!r} to "
                               f"{common.fp32_matmul_precision()!r}; both sides would be affected")
        for workload in group:
            inputs = make_inputs(workload)
            if kind == "forward":
                check = check_forward(workload, ours, ref, fp32_reference)
                fns = {"ours": forward_fn(ours, inputs), "ref": forward_fn(ref, inputs)}
                n = repeats
            else:
                check = check_train(workload, ours, ref)
                fns = {"ours": train_step_fn(ours, inputs), "ref": train_step_fn(ref, inputs)}
                n = train_repeats
            if not check["ok"]:
                raise SystemExit(f"outputs of ours and transformers differ for {workload.name}: {check}; not timing")
            timings = common.alternate(fns, warmup=warmup, repeats=n)
            row = {"workload": workload, "check": check, "timing": timings, "loadavg": common.load_average()}
            rows.append(row)
            o, r = timings["ours"], timings["ref"]
            print(f"  {workload.name}: ours {o.median * 1e3:,.1f} ms, ref {r.median * 1e3:,.1f} ms, "
                  f"ratio {r.median / o.median:.3f}, cpu ratio {r.cpu_median / o.cpu_median:.3f} "
                  f"(spread ours {o.spread:.0%}, ref {r.spread:.0%})", flush=True)
        print(f"  [{kind} {dtype} {impl}: {time.perf_counter() - start:.0f} s]", flush=True)
        del ours, ref
        common.release_free_memory()
    return rows


def run_memory(rows: list[dict], folder: Path, threads: int, aten_linear: bool) -> None:
    for row in rows:
        workload = row["workload"]
        row["memory"] = {}
        for side in ("ours", "ref"):
            spec = {"side": side, "workload": asdict(workload), "folder": str(folder), "threads": threads,
                    "aten_linear": aten_linear}
            row["memory"][side] = common.measure_in_subprocess(str(Path(__file__).resolve()), spec)
        mem = row["memory"]
        text = "; ".join(
            f"{side} " + (f"peak {common.fmt_mib(m['peak'])} MiB (+{common.fmt_mib(m['delta'])} over loaded)"
                          if "error" not in m else f"ERROR {m['error']}")
            for side, m in mem.items())
        print(f"  memory {workload.name}: {text}", flush=True)


def verdict(ratio: float, spread: float) -> str:
    text = "ours faster" if ratio >= 1 + NOISE else "OURS SLOWER" if ratio <= 1 - NOISE else "same (noise)"
    return text + (" (noisy)" if spread > NOISY_SPREAD else "")


def table(rows: list[dict]) -> str:
    lines = []
    for row in rows:
        w, t = row["workload"], row["timing"]
        o, r = t["ours"], t["ref"]
        mem = row.get("memory", {})

        def memory(side, key):
            m = mem.get(side)
            return common.fmt_mib(m[key]) if m and "error" not in m else "-"

        ratio = r.median / o.median
        lines.append({
            "workload": w.name,
            "ours_ms": f"{o.median * 1e3:,.1f}",
            "ref_ms": f"{r.median * 1e3:,.1f}",
            "ours_tps": f"{w.tokens / o.median:,.0f}",
            "ref_tps": f"{w.tokens / r.median:,.0f}",
            "ratio": f"{ratio:.3f}",
            "ratio_min": f"{r.min / o.min:.3f}",
            "ratio_cpu": f"{r.cpu_median / o.cpu_median:.3f}",
            "verdict": verdict(ratio, max(o.spread, r.spread)),
            "ours_peak": memory("ours", "peak"),
            "ref_peak": memory("ref", "peak"),
            "ours_delta": memory("ours", "delta"),
            "ref_delta": memory("ref", "delta"),
        })
    columns = [("workload", "workload"), ("ours_ms", "ours ms"), ("ref_ms", "ref ms"),
               ("ours_tps", "ours tok/s"), ("ref_tps", "ref tok/s"), ("ratio", "ratio"),
               ("ratio_min", "ratio(min)"), ("ratio_cpu", "ratio(cpu)"), ("verdict", "verdict"),
               ("ours_peak", "ours peak MiB"), ("ref_peak", "ref peak MiB"),
               ("ours_delta", "ours +MiB"), ("ref_delta", "ref +MiB")]
    return common.format_table(lines, columns)


def main(argv=None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if argv and argv[0] == common.WORKER_FLAG:
        common.run_memory_worker(json.loads(argv[1]), prepare_worker)
        return 0

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 2x64 / 1x128 inputs, 1 warm-up, 2 repeats, --size small unless given")
    parser.add_argument("--size", choices=sorted(SIZES), default=None, help="model size (default: base)")
    parser.add_argument("--json", metavar="PATH", help="also write all results (every sample) to PATH")
    parser.add_argument("--warmup", type=int, default=None, help="warm-up calls per side (default 2, quick 1)")
    parser.add_argument("--repeats", type=int, default=None, help="timed forward repeats per side (default 7)")
    parser.add_argument("--train-repeats", type=int, default=None, help="timed training steps per side (default 5)")
    parser.add_argument("--only", metavar="TEXT", action="append",
                        help="run only workloads whose name contains TEXT (repeatable), e.g. --only bf16")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2, the machine's cores)")
    common.add_linear_option(parser)
    args = parser.parse_args(argv)
    size = args.size or ("small" if args.quick else "base")
    warmup = args.warmup if args.warmup is not None else (1 if args.quick else 2)
    repeats = args.repeats if args.repeats is not None else (2 if args.quick else 7)
    train_repeats = args.train_repeats if args.train_repeats is not None else (2 if args.quick else 5)

    common.configure_torch(args.threads, args.aten_linear)
    quiet_libraries()
    import flagai_hf  # noqa: F401  (registers the Auto classes; imported before the environment is recorded)

    selected = [w for w in workloads(args.quick) if not args.only or any(s in w.name for s in args.only)]
    if not selected:
        parser.error(f"--only {args.only} matches no workload")
    env = common.environment_info()
    print(f"BERT-{size} ({SIZES[size]}, vocab {VOCAB_SIZE}): flagai_hf vs transformers")
    print(f"torch {env['torch']}, transformers {env['transformers']}, {env['threads']} threads, {env['cpu']}, "
          f"fp32_precision={env['fp32_matmul_precision']}, our CPU linears {env['our_cpu_linear']}, "
          f"load average {env['loadavg']}")
    print(common.machine_line(env))
    print(f"warm-up {warmup}, repeats {repeats} (train {train_repeats}), medians; ratio = ref time / our time",
          flush=True)
    warning = common.busy_warning(args.threads)
    if warning:
        print("WARNING: " + warning, flush=True)

    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench_bert_") as tmp:
        folder = Path(tmp)
        save_reference_checkpoints(folder, size)
        rows = run_timings(selected, folder, warmup, repeats, train_repeats)
        if not args.no_memory:
            print("peak memory (fresh subprocess per side and workload):", flush=True)
            run_memory(rows, folder, args.threads, args.aten_linear)
    elapsed = time.perf_counter() - start

    print()
    print(table(rows))
    print(f"\nratio = reference median / our median (>= 1.0: ours not slower; within +-{NOISE:.0%}: noise). "
          f"ratio(min) uses the fastest repeat of each side, ratio(cpu) the median process CPU time. "
          f"peak = process peak RSS during the workload; "
          f"+MiB = peak minus RSS after loading. Total {elapsed:.0f} s, load average now {common.load_average()}.")

    if args.json:
        payload = {
            "benchmark": "bert", "size": size, "config": {**SIZES[size], "vocab_size": VOCAB_SIZE},
            "settings": {"warmup": warmup, "repeats": repeats, "train_repeats": train_repeats, "quick": args.quick},
            "environment": env, "busy_warning": warning, "elapsed_s": elapsed,
            "results": [
                {"workload": row["workload"].name, **asdict(row["workload"]), "tokens": row["workload"].tokens,
                 "ours": row["timing"]["ours"].to_dict(), "ref": row["timing"]["ref"].to_dict(),
                 "ratio": row["timing"]["ref"].median / row["timing"]["ours"].median,
                 "ratio_cpu": row["timing"]["ref"].cpu_median / row["timing"]["ours"].cpu_median,
                 "check": row["check"], "memory_bytes": row.get("memory"), "loadavg": row["loadavg"]}
                for row in rows
            ],
        }
        common.write_json(args.json, payload)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
