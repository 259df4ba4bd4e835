"""DDP scaling of the accelerate NER fine-tune (examples/train_accelerate.py): samples/s of one process against two
processes (DistributedDataParallel over gloo) on this machine's CPU cores, same model, data and global batch.

    PYTHONPATH=. python benchmarks/bench_ddp.py                   # tiny (128x2) and base (768x12) models
    PYTHONPATH=. python benchmarks/bench_ddp.py --quick           # tiny only, fewer steps
    PYTHONPATH=. python benchmarks/bench_ddp.py --json out.json   # also write every per-step sample

Each configuration is a fresh run of the training script (a subprocess; two processes through ``torchrun
--standalone --nproc_per_node 2``), no evaluation, no checkpoints. Configurations per model size:

* ``1 proc x 2 threads``: one process using both cores for its ops (the usual single-process run);
* ``1 proc x 1 thread``: one process on one core (what each DDP rank gets);
* ``2 procs x 1 thread``: DDP, each rank one core and half of the global batch, gradients all-reduced every step.

All three see the same global batches (seeded data order, global batch ``--global_batch``). samples/s = global batch /
median step time over the steps after ``--skip`` warm-up steps (forward, backward, all-reduce, AdamW). Rounds run the
configurations in rotated order; the table shows the median over rounds. ``scaling`` = samples/s of the configuration
/ samples/s of ``1 proc x 2 threads``: above 1.0, two processes use the two cores better than two threads in one
process do. CPU s/sample is the children's CPU time (user + system, whole run including start-up) per trained
sample. Other jobs on the machine change every number: the load average is printed before each run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

import common  # noqa: E402

SCRIPT = REPO / "examples" / "train_accelerate.py"

# size -> (model flags, optimizer steps, steps with --quick)
SIZES = {
    "tiny": (["--config", "tiny"], 40, 12),
    "base": (["--config", "base", "--learning_rate", "1e-4"], 12, 6),
}
# (name, processes, threads per process)
CONFIGS = [("1 proc x 2 threads", 1, 2), ("1 proc x 1 thread", 1, 1), ("2 procs x 1 thread", 2, 1)]


def command(processes: int, batch: int, steps: int, size_flags: list[str], output_dir: str, max_length: int) -> list[str]:
    train = [str(SCRIPT), *size_flags, "--max_steps", str(steps), "--batch_size", str(batch),
             "--train_sentences", str(max(steps * batch * processes, 64)), "--eval_sentences", "0",
             "--max_length", str(max_length), "--checkpoint_every", "-1", "--no_save_model", "--seed", "0",
             "--output_dir", output_dir]
    if processes == 1:
        return [sys.executable, *train]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes), *train]


def run_config(processes: int, threads: int, global_batch: int, steps: int, size_flags: list[str], skip: int,
               max_length: int) -> dict:
    """One training run; per-step samples/s from its metrics.jsonl and the CPU time of its processes."""
    with tempfile.TemporaryDirectory(prefix="bench_ddp_") as out:
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "HF_HUB_OFFLINE": "1",
               "TOKENIZERS_PARALLELISM": "false", "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        done = subprocess.run(command(processes, global_batch // processes, steps, size_flags, out, max_length),
                              env=env, capture_output=True, text=True, cwd=str(REPO))
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if done.returncode != 0:
            raise RuntimeError(f"run failed ({done.returncode}):\n{done.stderr[-4000:]}")
        with open(os.path.join(out, "metrics.jsonl"), encoding="utf-8") as f:
            records = [json.loads(line) for line in f]
    train = [r for r in records if r["kind"] == "train"]
    (summary,) = [r for r in records if r["kind"] == "summary"]
    if summary["processes"] != processes:
        raise RuntimeError(f"expected {processes} processes, the run had {summary['processes']}")
    timed = [r["step_seconds"] for r in train[skip:]]
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"median_step_s": statistics.median(timed), "samples_per_s": global_batch / statistics.median(timed),
            "step_seconds": [r["step_seconds"] for r in train], "losses": [r["loss"] for r in train],
            "wall_s": wall, "cpu_s": cpu, "cpu_s_per_sample": cpu / (global_batch * steps),
            "tokens_per_step": statistics.mean(r["tokens"] for r in train)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny model only, fewer steps, one round")
    parser.add_argument("--sizes", nargs="+", choices=sorted(SIZES), default=None, help="default: tiny base")
    parser.add_argument("--global_batch", type=int, default=16, help="sentences per optimizer step (even)")
    parser.add_argument("--max_length", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=None, help="rounds over the configurations (default 2, quick 1)")
    parser.add_argument("--skip", type=int, default=2, help="warm-up steps left out of the step-time median")
    parser.add_argument("--json", metavar="PATH", help="also write every sample to PATH")
    args = parser.parse_args(argv)
    if args.global_batch % 2:
        parser.error(f"--global_batch must be even (split over 2 processes), got {args.global_batch}")
    sizes = args.sizes or (["tiny"] if args.quick else ["tiny", "base"])
    rounds = args.rounds or (1 if args.quick else 2)

    env = common.environment_info()
    print(f"DDP scaling of examples/train_accelerate.py (BertForSequenceLabeling on MSRA, global batch "
          f"{args.global_batch}, max_length {args.max_length}); torch {env['torch']}, {env['cpu_count']} cores, "
          f"{env['cpu']}, load average {env['loadavg']}", flush=True)
    load = env["loadavg"]
    if load and load[0] >= 0.5:
        print(f"WARNING: machine busy (load average {load[0]:.1f} on {env['cpu_count']} cores): every configuration "
              f"shares the cores with other jobs, 2-thread runs worst (OpenMP threads wait for each other); "
              f"re-run when idle for clean scaling numbers.", flush=True)

    results = {}
    start = time.perf_counter()
    for size in sizes:
        size_flags, steps, quick_steps = SIZES[size]
        steps = quick_steps if args.quick else steps
        samples = {name: [] for name, _, _ in CONFIGS}
        for index in range(rounds):
            shift = index % len(CONFIGS)
            for name, processes, threads in CONFIGS[shift:] + CONFIGS[:shift]:
                load = common.load_average()
                result = run_config(processes, threads, args.global_batch, steps, size_flags, args.skip,
                                    args.max_length)
                result["loadavg_before"] = load
                samples[name].append(result)
                print(f"  {size:<5} {name:<20} round {index + 1}: {result['samples_per_s']:7.1f} samples/s "
                      f"(median step {result['median_step_s'] * 1000:.0f} ms, run {result['wall_s']:.0f} s, "
                      f"load {load[0] if load else '?'})", flush=True)
        results[size] = samples

    print()
    rows = []
    for size, samples in results.items():
        reference = statistics.median(r["samples_per_s"] for r in samples[CONFIGS[0][0]])
        one_thread = statistics.median(r["samples_per_s"] for r in samples[CONFIGS[1][0]])
        for name, _, _ in CONFIGS:
            rate = statistics.median(r["samples_per_s"] for r in samples[name])
            rows.append({"size": size, "config": name, "rate": f"{rate:.1f}",
                         "step": f"{args.global_batch / rate * 1000:.0f}",
                         "scaling": f"{rate / reference:.2f}", "vs1t": f"{rate / one_thread:.2f}",
                         "cpu": f"{statistics.median(r['cpu_s_per_sample'] for r in samples[name]):.3f}",
                         "spread": f"{_spread([r['samples_per_s'] for r in samples[name]]):.0%}"})
        first = [r["losses"] for r in samples[CONFIGS[0][0]]][0]
        ddp = [r["losses"] for r in samples[CONFIGS[2][0]]][0]
        worst = max(abs(a - b) / abs(a) for a, b in zip(first, ddp))
        print(f"{size}: loss curves 2 procs vs 1 proc, max relative difference {worst:.2g} (same global batches)")
    print(common.format_table(rows, [("size", "model"), ("config", "configuration"), ("rate", "samples/s"),
                                     ("step", "ms/step"), ("scaling", "vs 1p x 2t"), ("vs1t", "vs 1p x 1t"),
                                     ("cpu", "CPU s/sample"), ("spread", "spread")]))
    print(f"\nscaling = samples/s / samples/s of 1 proc x 2 threads (> 1: DDP uses the 2 cores better); spread = "
          f"(max - min) / median over rounds. Total {time.perf_counter() - start:.0f} s, load average now "
          f"{common.load_average()}.")
    if args.json:
        common.write_json(args.json, {"environment": env, "global_batch": args.global_batch,
                                      "max_length": args.max_length, "results": results})
    return 0


def _spread(values: list[float]) -> float:
    return (max(values) - min(values)) / statistics.median(values) if len(values) > 1 else 0.0


if __name__ == "__main__":
    sys.exit(main())
