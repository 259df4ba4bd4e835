"""bf16 matrix-vector products at GLM-10b's layer width: how fast each CPU kernel streams the weights.

    PYTHONPATH=. python benchmarks/bench_glm10b_linear.py                 # 2 layers of 4096-wide weights (805 MB)
    PYTHONPATH=. python benchmarks/bench_glm10b_linear.py --rows 1 256 --threads 1

Batch-1 decoding of GLM-10b reads each of its ~20 GB of weights once per token, so tokens/s = bandwidth / 20 GB. One
block's four products (query_key_value 12288 x 4096, dense 4096 x 4096, dense_h_to_4h 16384 x 4096, dense_4h_to_h
4096 x 16384: 403 MB in bf16, far beyond the 32 MB L3) are run for ``--layers`` blocks with ``--rows`` input rows,
random bf16 weights and biases, by each kernel:

- ``F.linear``: what bf16 layers call without packing (aten -> oneDNN matmul on the row-major weight);
- ``oneDNN plain``: ``torch.ops.mkldnn._linear_pointwise`` on the row-major weight;
- ``oneDNN packed``: the same op on the weight reordered by ``torch.ops.mkldnn._reorder_linear_weight`` into
  oneDNN's blocked layout (what ``flagai_hf.modules.linear.pack_linear_weights`` does);
- ``addmm``: ``torch.addmm(bias, x, W^T)`` with 2-D ``x``;
- ``stream``: ``sum`` over the same weights: the bandwidth this process gets right now (the ceiling).

Kernels alternate round by round (rotated order), ``--repeats`` rounds after ``--warmup``; the table gives the median
milliseconds per pass over all blocks, GB/s of weights, and that as a fraction of ``stream`` measured in the same
rounds (the steadier figure on a shared machine). Results of every kernel are compared with ``F.linear``'s first.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(HERE.parent))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import common  # noqa: E402


def block_shapes(hidden: int) -> list[tuple[int, int]]:
    return [(3 * hidden, hidden), (hidden, hidden), (4 * hidden, hidden), (hidden, 4 * hidden)]


def kernels() -> dict:
    def pointwise(x, w, b):
        return torch.ops.mkldnn._linear_pointwise(x, w, b, "none", [], "")

    return {
        "F.linear": (lambda x, w, b: F.linear(x, w, b), False),
        "oneDNN plain": (pointwise, False),
        "oneDNN packed": (pointwise, True),
        "addmm": (lambda x, w, b: torch.addmm(b, x, w.t()), False),
        "stream": (lambda x, w, b: w.sum(), False),
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hidden", type=int, default=4096)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--rows", type=int, nargs="+", default=[1], help="input rows (1 = decoding)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    generator = torch.Generator().manual_seed(0)
    shapes = block_shapes(args.hidden)
    plain = [[(torch.randn(out, inp, generator=generator, dtype=torch.bfloat16) * 0.02,
               torch.randn(out, generator=generator, dtype=torch.bfloat16) * 0.02) for out, inp in shapes]
             for _ in range(args.layers)]
    packed = [[(torch.ops.mkldnn._reorder_linear_weight(w, 1), b) for w, b in block] for block in plain]
    nbytes = sum(w.numel() * w.element_size() for block in plain for w, _ in block)
    print(f"{args.layers} blocks of {args.hidden}-wide bf16 weights: {nbytes / 1e6:.0f} MB; {args.threads} threads; "
          f"torch {torch.__version__}; load {common.load_average()}")
    for rows in args.rows:
        inputs = {inp: torch.randn(rows, inp, generator=generator, dtype=torch.bfloat16) for _, inp in shapes}
        table = run(kernels(), plain, packed, inputs, shapes, args.warmup, args.repeats)
        print(f"\n{rows} input row(s); load {common.load_average()}")
        print(f"{'kernel':15s} {'ms':>9s} {'GB/s':>7s} {'of stream':>10s} {'max |diff| vs F.linear':>24s}")
        for name, row in table.items():
            print(f"{name:15s} {row['ms']:9.2f} {nbytes / row['ms'] / 1e6:7.1f} {row['of_stream']:10.2f} "
                  f"{row['diff']:24.3g}")


def run(candidates: dict, plain, packed, inputs, shapes, warmup: int, repeats: int) -> dict:
    with torch.inference_mode():
        x0 = inputs[shapes[0][1]]
        expected = F.linear(x0, *plain[0][0]).float()
        diffs = {name: 0.0 if name == "stream" else float((fn(x0, *(packed if pack else plain)[0][0]).float()
                                                          - expected).abs().max())
                 for name, (fn, pack) in candidates.items()}
        samples: dict[str, list[float]] = {name: [] for name in candidates}
        names = list(candidates)
        for round_index in range(warmup + repeats):
            order = names[round_index % len(names):] + names[:round_index % len(names)]
            for name in order:
                fn, pack = candidates[name]
                weights = packed if pack else plain
                start = time.perf_counter()
                for block in weights:
                    for (w, b), (_, inp) in zip(block, shapes):
                        fn(inputs[inp], w, b)
                if round_index >= warmup:
                    samples[name].append(time.perf_counter() - start)
    stream = samples["stream"]
    return {name: {"ms": statistics.median(times) * 1e3,
                   "of_stream": statistics.median(s / t for s, t in zip(stream, times)), "diff": diffs[name]}
            for name, times in samples.items()}


if __name__ == "__main__":
    main()
