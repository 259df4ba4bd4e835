"""Loading a GLM-large-ch-sized checkpoint (~360M parameters, fp32 safetensors): flagai_hf's ``from_pretrain`` against
transformers' own ``from_pretrained`` of the same folder and against the raw read.

    PYTHONPATH=. python benchmarks/bench_loading.py                # GLM-large size, 3 runs per side
    PYTHONPATH=. python benchmarks/bench_loading.py --quick        # a 4-layer model, 2 runs per side (smoke run)
    PYTHONPATH=. python benchmarks/bench_loading.py --flagai-bin   # also a FlagAI pytorch_model.bin folder

Sides (each run is a fresh interpreter, so every side starts from the same state: libraries imported, nothing
loaded, the file in the page cache after the first run):

- ``ours``: ``GLMForConditionalGeneration.from_pretrain(dir, name)`` (flagai_hf.loading: build on the meta device,
  assign the checkpoint's tensors), without and with reading every tensor once afterwards (safetensors hands out
  memory-mapped tensors, read from the page cache on first use);
- ``transformers``: ``AutoModelForSeq2SeqLM.from_pretrained(folder)``, which reaches our registered class through
  transformers' loader; timed without and with reading every tensor once afterwards (it may leave weights as
  memory-mapped views that are read only on first use);
- ``raw read``: ``safetensors.torch.load_file`` plus summing every tensor: the floor for any loader;
- with ``--flagai-bin``: ``ours`` from a FlagAI legacy folder (pickle with FlagAI's names) against ``torch.load``
  of the same file plus summing every tensor.

Wall time is the median of the runs; peak RSS is the process's high-water mark during the load, absolute and as the
increase over the RSS before it (imports done), compared with the size of the weights.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(HERE.parent))  # the repository root, for flagai_hf without PYTHONPATH

import torch  # noqa: E402

import common  # noqa: E402

SIZES = {
    # GLM-large-ch (flagai-reference.md §3.1)
    "large": dict(vocab_size=50048, hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                  max_position_embeddings=1024),
    "quick": dict(vocab_size=50048, hidden_size=1024, num_hidden_layers=4, num_attention_heads=16,
                  max_position_embeddings=1024),
}
WORKER_FLAG = "--_load-worker"
RESULT_PREFIX = "LOAD-RESULT "


# ------------------------------------------------------------------------------------------------- the workloads


def load_ours(folder: Path):
    import flagai_hf

    return flagai_hf.GLMForConditionalGeneration.from_pretrain(folder.parent, folder.name)


def load_ours_touched(folder: Path):
    model = load_ours(folder)
    common.touch_tensors(model)
    return model


def load_transformers(folder: Path):
    import transformers

    import flagai_hf  # noqa: F401  (registers flagai_glm with the Auto classes)

    return transformers.AutoModelForSeq2SeqLM.from_pretrained(folder)


def load_transformers_touched(folder: Path):
    model = load_transformers(folder)
    common.touch_tensors(model)
    return model


def read_safetensors(folder: Path):
    from safetensors.torch import load_file

    tensors = load_file(folder / "model.safetensors")
    with torch.no_grad():
        for tensor in tensors.values():
            tensor.sum()
    return tensors


def read_pickle(folder: Path):
    tensors = torch.load(folder / "pytorch_model.bin", map_location="cpu", weights_only=True)
    with torch.no_grad():
        for tensor in tensors.values():
            tensor.sum()
    return tensors


SIDES = {
    "ours": load_ours,
    "ours + read all": load_ours_touched,
    "transformers": load_transformers,
    "transformers + read all": load_transformers_touched,
    "raw read (load_file + sum)": read_safetensors,
}
FLAGAI_SIDES = {
    "ours, FlagAI .bin": load_ours,
    "raw read (torch.load + sum)": read_pickle,
}


def worker(spec: dict) -> None:
    """One measurement in this fresh process: libraries imported first, then the load timed inside a MemoryProbe."""
    import transformers  # noqa: F401

    import flagai_hf  # noqa: F401
    from safetensors.torch import load_file  # noqa: F401

    common.configure_torch(spec["threads"])
    load = {**SIDES, **FLAGAI_SIDES}[spec["side"]]
    folder = Path(spec["folder"])
    with common.MemoryProbe() as probe:
        start = time.perf_counter()
        loaded = load(folder)
        wall = time.perf_counter() - start
    del loaded
    print(RESULT_PREFIX + json.dumps({"wall_s": wall, **probe.result()}), flush=True)


def measure(side: str, folder: Path, threads: int) -> dict:
    spec = {"side": side, "folder": str(folder), "threads": threads}
    done = subprocess.run([sys.executable, __file__, WORKER_FLAG, json.dumps(spec)], capture_output=True, text=True,
                          timeout=900)
    for line in reversed(done.stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            return json.loads(line[len(RESULT_PREFIX):])
    raise RuntimeError(f"{side} failed (exit {done.returncode}): {done.stderr.strip()[-2000:]}")


# ------------------------------------------------------------------------------------------------------ the folders


def write_folders(root: Path, size: dict, flagai_bin: bool) -> tuple[Path, Path | None, int]:
    """A native folder with random weights (safetensors), optionally its FlagAI legacy copy; returns the weights'
    size in bytes."""
    import flagai_hf
    from flagai_hf.loading import FAMILIES

    torch.manual_seed(0)
    model = flagai_hf.GLMForConditionalGeneration(flagai_hf.GLMConfig(**size))
    native = root / "GLM-large-ch"
    model.save_pretrained(native)
    weights = (native / "model.safetensors").stat().st_size
    flagai = None
    if flagai_bin:
        flagai = root / "GLM-large-ch-flagai"
        flagai.mkdir()
        config, state_dict = FAMILIES["flagai_glm"].to_flagai(model)
        (flagai / "config.json").write_text(json.dumps(config))
        torch.save(state_dict, flagai / "pytorch_model.bin")
    return native, flagai, weights


def check_same_weights(native: Path) -> float:
    """Largest difference between what ours and transformers' loader produce (must be 0: same tensors)."""
    ours, theirs = load_ours(native), load_transformers(native)
    theirs_state = theirs.state_dict()
    return max(common.max_abs_diff(tensor, theirs_state[name]) for name, tensor in ours.state_dict().items())


# ------------------------------------------------------------------------------------------------------------ main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a 4-layer model and 2 runs per side")
    parser.add_argument("--runs", type=int, help="fresh-process runs per side (default 3, --quick 2)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--flagai-bin", action="store_true", help="also load a FlagAI pytorch_model.bin folder")
    parser.add_argument("--json", help="write every run and the environment to this file")
    args = parser.parse_args()
    runs = args.runs or (2 if args.quick else 3)
    common.configure_torch(args.threads)
    warning = common.busy_warning(args.threads)

    with tempfile.TemporaryDirectory() as workspace:
        native, flagai, weights = write_folders(Path(workspace), SIZES["quick" if args.quick else "large"],
                                                args.flagai_bin)
        difference = check_same_weights(native)
        if difference != 0:
            raise SystemExit(f"ours and transformers' loader give different weights (max abs diff {difference})")
        sides = [(side, native) for side in SIDES] + [(side, flagai) for side in FLAGAI_SIDES if flagai is not None]
        results = {side: [] for side, _ in sides}
        for index in range(runs):  # alternate the sides run by run
            for side, folder in sides[index % len(sides):] + sides[:index % len(sides)]:
                results[side].append(measure(side, folder, args.threads))

    raw = statistics.median(r["wall_s"] for r in results["raw read (load_file + sum)"])
    ours = statistics.median(r["wall_s"] for r in results["ours"])
    rows = []
    for side, runs_of_side in results.items():
        wall = statistics.median(r["wall_s"] for r in runs_of_side)
        peak = max(r["peak"] for r in runs_of_side)
        delta = max(r["delta"] for r in runs_of_side)
        rows.append({"side": side, "wall": f"{wall:.3f}", "vs_ours": f"{wall / ours:.2f}",
                     "vs_raw": f"{wall / raw:.2f}", "peak": common.fmt_mib(peak), "delta": common.fmt_mib(delta),
                     "delta_x": f"{delta / weights:.2f}", "peak_x": f"{peak / weights:.2f}"})
    print(f"GLM {'4-layer' if args.quick else 'large'}: weights {weights / common.MIB:,.0f} MiB fp32; "
          f"{runs} fresh-process runs per side, {args.threads} threads; same tensors as transformers' loader "
          f"(max abs diff {difference})")
    if warning:
        print(warning)
    print(common.format_table(rows, [("side", "loader"), ("wall", "wall s (median)"),
                                     ("vs_ours", "time / ours"), ("vs_raw", "time / raw read"),
                                     ("peak", "peak RSS MiB"), ("delta", "RSS increase MiB"),
                                     ("delta_x", "increase / weights"), ("peak_x", "peak / weights")]))
    if args.json:
        common.write_json(args.json, {"environment": common.environment_info(), "weights_bytes": weights,
                                      "runs": results})


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == WORKER_FLAG:
        worker(json.loads(sys.argv[2]))
    else:
        main()
