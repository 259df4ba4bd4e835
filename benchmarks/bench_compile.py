"""torch.compile: ours eager, ours compiled, transformers eager and transformers compiled, same weights, one process,
alternating call by call, per family at the sizes of the other bench scripts.

    PYTHONPATH=. python benchmarks/bench_compile.py                  # the full run (idle: a few minutes)
    PYTHONPATH=. python benchmarks/bench_compile.py --quick          # smoke run: small models, short inputs
    PYTHONPATH=. python benchmarks/bench_compile.py --only gpt2,glm  # some families only

Workloads (fp32, sdpa): BERT-base forward 8x128 and 1x512; gpt2-small greedy decode of 64 tokens after 32 at batch 1
and 8; t5-base forward 8x128->32 and greedy generate 4x64 +32; GLM-large blank filling (spec §8 inputs, 32 tokens
after 256; per-token latency; transformers has no GLM, so no reference columns). Compiled = ``torch.compile(...,
fullgraph=True)`` with inductor: the module for forwards; for decoding, ``model.forward`` compiled and
``generate(cache_implementation="static")`` (fixed shapes at every decode step), eager decoding uses the default
DynamicCache. transformers' own automatic compile of static-cache generation is turned off (``disable_compile``) so
both sides compile the same way. A side whose fullgraph compile fails is compiled with graph breaks and marked ``*``.

Before timing, each compiled side's output is checked against its eager side (tokens equal, logits <= 1e-4) and ours
against transformers; a mismatch stops the run. ``compile s`` is the first call's time minus a steady call's (the
compile cost), reported apart from the steady medians. Ratios: ``speedup`` = eager / compiled time of one side;
``ours/ref`` = ref time / our time for the compiled sides (>= 1.0: ours is not slower).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(HERE.parent))  # the repository root, for flagai_hf without PYTHONPATH

import torch  # noqa: E402

import bench_bert  # noqa: E402
import bench_glm  # noqa: E402
import bench_gpt2  # noqa: E402
import bench_t5  # noqa: E402
import common  # noqa: E402

TOLERANCE_FP32 = 1e-4
FAMILIES = ("bert", "gpt2", "t5", "glm")


# --------------------------------------------------------------------------------------------------- the four sides


class Side:
    """One model run one way: ``run()`` does the workload once; ``compiled`` sides compile on their first call."""

    def __init__(self, model, work: Callable, compiled: bool, decode: bool):
        self.model, self.work, self.compiled, self.decode = model, work, compiled, decode
        self.graph_breaks = False
        self._callable = model
        if compiled:
            self._compiled = self._compile(fullgraph=True)

    def _compile(self, fullgraph: bool):
        target = self.model.forward if self.decode else self.model
        return torch.compile(target, fullgraph=fullgraph, backend="inductor")

    def run(self):
        with torch.inference_mode():
            if not self.compiled:
                return self.work(self.model, static=False)
            try:
                return self._run_compiled()
            except Exception:  # noqa: BLE001 - torch._dynamo's Unsupported and friends: compile with breaks instead
                if self.graph_breaks:
                    raise
                self.graph_breaks = True
                torch._dynamo.reset()
                self._compiled = self._compile(fullgraph=False)
                return self._run_compiled()

    def _run_compiled(self):
        if not self.decode:
            return self.work(self._compiled, static=True)
        self.model.forward = self._compiled  # generate() calls self.forward
        try:
            return self.work(self.model, static=True)
        finally:
            del self.model.forward


def forward_work(inputs: dict, output: Callable = lambda out: out.logits):
    def work(model, static):
        return output(model(**inputs))
    return work


def generate_work(inputs: dict, new_tokens: int, **options):
    def work(model, static):
        extra = {"cache_implementation": "static"} if static else {}
        return model.generate(**inputs, do_sample=False, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                              disable_compile=True, **extra, **options)
    return work


def same(a: torch.Tensor, b: torch.Tensor, what: str) -> str:
    if a.dtype in (torch.long, torch.int):
        if not torch.equal(a, b):
            raise SystemExit(f"{what}: tokens differ")
        return "="
    diff = common.max_abs_diff(a, b)
    if diff > TOLERANCE_FP32:
        raise SystemExit(f"{what}: outputs differ by {diff:.2e} > {TOLERANCE_FP32}")
    return f"{diff:.0e}"


# ----------------------------------------------------------------------------------------------- families and inputs


def bert_cases(folder: Path, quick: bool):
    size = "small" if quick else "base"
    bench_bert.save_reference_checkpoints(folder, size)
    models = {side: bench_bert.load_model(side, "forward", "sdpa", "fp32", folder) for side in ("ours", "ref")}
    for batch, seq in ([(2, 64), (1, 128)] if quick else [(8, 128), (1, 512)]):
        inputs = bench_bert.make_inputs(bench_bert.Workload("forward", batch, seq, "fp32", "sdpa"))
        work = forward_work(inputs, output=lambda out: out.last_hidden_state)
        yield f"bert-{size} forward {batch}x{seq}", models, work, False, batch * seq


def gpt2_cases(folder: Path, quick: bool):
    size = "quick" if quick else "small"
    ours, ref = bench_gpt2.load_pair(folder, size)
    prompt, new = (16, 16) if quick else (32, 64)
    for batch in ((1, 4) if quick else (1, 8)):
        inputs = bench_gpt2.make_inputs(bench_gpt2.Workload("generate", batch, prompt, new), ref.config.vocab_size)
        work = generate_work(inputs, new, pad_token_id=ref.config.eos_token_id)
        yield f"gpt2-{size} greedy {batch}x{prompt} +{new}", {"ours": ours, "ref": ref}, work, True, batch * new


def t5_cases(folder: Path, quick: bool):
    size = "small" if quick else "base"
    ref, ours = bench_t5.build_models(size, "sdpa")
    models = {"ours": ours, "ref": ref}
    inputs = bench_t5.make_inputs()
    forward = inputs["forward"]
    yield f"t5-{size} forward 8x128->32", models, forward_work(forward), False, forward["labels"].numel()
    source = inputs["generate"]
    new = 8 if quick else 32
    yield f"t5-{size} greedy 4x64 +{new}", models, generate_work(source, new), True, source["input_ids"].shape[0] * new


def glm_cases(folder: Path, quick: bool):
    size = "small" if quick else "large"
    bench_glm.save_checkpoint(folder / "glm", size)
    model = bench_glm.load_model(folder / "glm", "sdpa", "fp32")
    context, new = (64, 8) if quick else (256, 32)
    inputs = bench_glm.generation_inputs(bench_glm.Generation("generate", True, context, new))
    yield f"glm-{size} blank filling 1x{context} +{new}", {"ours": model}, generate_work(inputs, new,
                                                                                         eos_token_id=None), True, new


CASES = {"bert": bert_cases, "gpt2": gpt2_cases, "t5": t5_cases, "glm": glm_cases}


# ------------------------------------------------------------------------------------------------------------- runs


def measure(name: str, models: dict, work: Callable, decode: bool, tokens: int, repeats: int) -> dict:
    sides = {}
    for owner, model in models.items():
        sides[f"{owner} eager"] = Side(model, work, compiled=False, decode=decode)
        sides[f"{owner} compiled"] = Side(model, work, compiled=True, decode=decode)
    first, outputs = {}, {}
    for label, side in sides.items():  # the compiled sides compile here
        start = time.perf_counter()
        outputs[label] = side.run()
        first[label] = time.perf_counter() - start
    checks = [same(outputs[f"{owner} compiled"], outputs[f"{owner} eager"], f"{name}: {owner} compiled vs eager")
              for owner in models]
    if "ref" in models:
        checks.append(same(outputs["ours eager"], outputs["ref eager"], f"{name}: ours vs transformers"))
    timings = common.alternate({label: side.run for label, side in sides.items()}, warmup=1, repeats=repeats)
    row = {"workload": name, "checks": " ".join(checks), "load": " ".join(f"{x:.1f}" for x in common.load_average()
                                                                            or [])}
    per = "ms/token" if decode else "ms"  # decoding: per generated token (batch x new tokens)
    for owner in models:
        eager, compiled = timings[f"{owner} eager"].median, timings[f"{owner} compiled"].median
        scale = 1e3 / tokens if decode else 1e3
        mark = "*" if sides[f"{owner} compiled"].graph_breaks else ""
        row[f"{owner} eager"] = f"{eager * scale:.2f}"
        row[f"{owner} compiled"] = f"{compiled * scale:.2f}{mark}"
        row[f"{owner} speedup"] = f"{eager / compiled:.2f}x"
        row[f"{owner} compile s"] = f"{first[f'{owner} compiled'] - compiled:.1f}"
    if "ref" in models:
        row["ours/ref eager"] = f"{timings['ref eager'].median / timings['ours eager'].median:.2f}"
        row["ours/ref compiled"] = f"{timings['ref compiled'].median / timings['ours compiled'].median:.2f}"
    row["unit"] = per
    return row


COLUMNS = [("workload", "workload"), ("unit", "unit"), ("ours eager", "ours eager"),
           ("ours compiled", "ours compiled"), ("ref eager", "ref eager"), ("ref compiled", "ref compiled"),
           ("ours speedup", "ours speedup"), ("ref speedup", "ref speedup"), ("ours/ref eager", "ours/ref eager"),
           ("ours/ref compiled", "ours/ref compiled"), ("ours compile s", "compile s ours"),
           ("ref compile s", "compile s ref"), ("checks", "checks"), ("load", "loadavg")]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small models and inputs, 2 repeats (smoke run)")
    parser.add_argument("--only", default=",".join(FAMILIES), help=f"comma-separated families of {FAMILIES}")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats per side (default 5, quick 2)")
    parser.add_argument("--json", help="also write the rows and the environment here")
    args = parser.parse_args(argv)
    families = [family.strip() for family in args.only.split(",") if family.strip()]
    unknown = sorted(set(families) - set(FAMILIES))
    if unknown:
        parser.error(f"--only takes families of {FAMILIES}; got {unknown}")
    repeats = args.repeats or (2 if args.quick else 5)
    common.configure_torch(args.threads)
    bench_gpt2.quiet_libraries()
    info = common.environment_info()
    print(f"torch {torch.__version__}, {args.threads} threads, loadavg {common.load_average()}")
    print(common.machine_line(info))
    warning = common.busy_warning(args.threads)
    if warning:
        print(warning)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for family in families:
            for name, models, work, decode, tokens in CASES[family](Path(folder) / family, args.quick):
                torch._dynamo.reset()
                rows.append(measure(name, models, work, decode, tokens, repeats))
                print(common.format_table(rows[-1:], COLUMNS), flush=True)
    print("\n" + common.format_table(rows, COLUMNS))
    print("* = fullgraph failed, compiled with graph breaks. speedup = eager / compiled; ours/ref = ref / ours time.")
    if args.json:
        common.write_json(args.json, {"environment": info, "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
