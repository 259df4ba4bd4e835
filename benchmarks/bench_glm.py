"""GLM: flagai_hf's ``GLMForConditionalGeneration`` at GLM-large-ch size (random weights): forward throughput with
eager vs sdpa attention, generation latency with vs without the K/V cache, and peak memory.

    PYTHONPATH=. python benchmarks/bench_glm.py                 # GLM-large-ch size, full run (~10 min when idle)
    PYTHONPATH=. python benchmarks/bench_glm.py --quick         # smoke run: small model, short inputs, few repeats
    PYTHONPATH=. python benchmarks/bench_glm.py --json out.json # also write every sample and the environment

1. Forward (``torch.inference_mode()``) at 1x512 and 4x256 tokens, fp32 and bf16, with a blank-filling mask
   (``attention_mask = [sep] * B``, sep = 3/4 of the length: bidirectional part A, causal part B). The eager and sdpa
   models (same weights) run alternately call by call; before timing, their logits are compared (fp32: max abs diff
   <= 1e-4, else the run stops; bf16: both are compared with the fp32 logits).
2. Greedy generation of 32 tokens after a 256-token context (with a [MASK]), batch 1, fp32, sdpa:
   the spec's §5 loop by hand, (a) with the cache (context once, then one token per step, ``position_ids``
   ``[[mask_pos], [k]]``) and (b) recomputing context + [sop] + generated tokens at every step (``sep`` mask);
   and ``model.generate(**inputs)`` with the spec's §8 inputs (``position_ids`` (1, 2, s + G),
   ``generation_attention_mask`` (1, 1, s + G, s + G)), ``use_cache=True`` vs ``False``. All four must produce the
   same tokens. The project requires the cache to be >= 3x faster.
3. Peak RSS per workload, each in a fresh subprocess (see benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import statistics
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

TOLERANCE_FP32 = 1e-4
NOISE = 0.07  # ratios within 1 +- NOISE are reported as noise
NOISY_SPREAD = 0.25  # (max - min) / median of either side's repeats above this: the verdict is marked noisy
REQUIRED_CACHE_SPEEDUP = 3.0

SIZES = {
    "large": dict(vocab_size=50048, hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                  max_position_embeddings=1024),  # GLM-large-ch, ~356M parameters
    "small": dict(vocab_size=50048, hidden_size=256, num_hidden_layers=4, num_attention_heads=4,
                  max_position_embeddings=512),
}
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
IMPLS = ("eager", "sdpa")
MASK_ID, SOP_ID = 50003, 50006  # [MASK] and <|startofpiece|> of the Chinese layout (the config's defaults)
CONTENT_IDS = (100, 50000)  # random context ids are drawn from here: no special tokens


@dataclass(frozen=True)
class Forward:
    batch: int
    seq: int
    dtype: str  # key of DTYPES

    @property
    def name(self) -> str:
        return f"forward {self.batch}x{self.seq} {self.dtype}"

    @property
    def tokens(self) -> int:
        return self.batch * self.seq

    @property
    def sep(self) -> int:
        return self.seq * 3 // 4


@dataclass(frozen=True)
class Generation:
    method: str  # "loop" (the spec's loop by hand) | "generate" (model.generate)
    use_cache: bool
    context: int
    new_tokens: int
    dtype: str = "fp32"
    impl: str = "sdpa"

    @property
    def name(self) -> str:
        what = "loop, cache" if self.method == "loop" and self.use_cache else \
            "loop, recompute" if self.method == "loop" else f"generate(use_cache={self.use_cache})"
        return f"{what}"

    @property
    def mask_pos(self) -> int:
        return self.context // 2


def forward_workloads(quick: bool) -> list[Forward]:
    shapes = [(1, 128), (2, 64)] if quick else [(1, 512), (4, 256)]
    return [Forward(b, t, dtype) for dtype in DTYPES for b, t in shapes]


def generation_workloads(quick: bool) -> list[Generation]:
    context, new = (64, 8) if quick else (256, 32)
    return [Generation(method, cache, context, new) for method in ("loop", "generate") for cache in (True, False)]


# ------------------------------------------------------------------------------------------------ models and inputs


def quiet_libraries() -> None:
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    logging.getLogger("flagai_hf").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")


def save_checkpoint(folder: Path, size: str) -> None:
    """A random GLM (seeded) saved with ``save_pretrained``: every model in the run loads these same weights."""
    from flagai_hf import GLMConfig, GLMForConditionalGeneration

    torch.manual_seed(0)
    GLMForConditionalGeneration(GLMConfig(**SIZES[size])).save_pretrained(folder)


def load_model(folder: Path, impl: str, dtype: str):
    from flagai_hf import GLMForConditionalGeneration

    model = GLMForConditionalGeneration.from_pretrained(folder, attn_implementation=impl)
    if model.config._attn_implementation != impl:
        raise RuntimeError(f"model runs {model.config._attn_implementation!r}, asked for {impl!r}")
    return model.to(DTYPES[dtype]).eval()


def forward_inputs(workload: Forward, seed: int = 0) -> dict:
    """Random ids, positions 0..T-1 with block positions 0, and the sep mask (one sep per sample)."""
    generator = torch.Generator().manual_seed(seed + workload.batch * 1000 + workload.seq)
    batch, length = workload.batch, workload.seq
    positions = torch.arange(length).expand(batch, length)
    return {
        "input_ids": torch.randint(*CONTENT_IDS, (batch, length), generator=generator),
        "position_ids": torch.stack([positions, torch.zeros_like(positions)], dim=1),  # (B, 2, T)
        "attention_mask": torch.tensor([workload.sep] * batch),
    }


def forward_fn(model, inputs):
    def run():
        with torch.inference_mode():
            return model(**inputs)

    return run


def context_ids(workload: Generation, seed: int = 0) -> torch.Tensor:
    """(1, s): random ids with one [MASK] at ``mask_pos``."""
    generator = torch.Generator().manual_seed(seed + workload.context)
    ids = torch.randint(*CONTENT_IDS, (1, workload.context), generator=generator)
    ids[0, workload.mask_pos] = MASK_ID
    return ids


def generation_inputs(workload: Generation) -> dict:
    """The spec's §8 inputs for ``generate``: context + [sop]; positions (1, 2, s + G) with the new tokens at
    ``mask_pos`` and block positions 1..G; the (1, 1, s + G, s + G) mask (context rows see the context, generated rows
    the context and the generated tokens up to themselves). G = the number of new tokens."""
    ids = context_ids(workload)
    s, g = workload.context, workload.new_tokens
    positions = torch.tensor([list(range(s)) + [workload.mask_pos] * g, [0] * s + list(range(1, g + 1))])[None]
    context_columns = torch.ones(s + g, s, dtype=torch.long)
    generated_columns = torch.cat([torch.zeros(s, g, dtype=torch.long), torch.ones(g, g, dtype=torch.long).tril()])
    mask = torch.cat([context_columns, generated_columns], dim=1)[None, None]
    return {"input_ids": torch.cat([ids, torch.tensor([[SOP_ID]])], dim=1), "position_ids": positions,
            "generation_attention_mask": mask}


def loop_generate(model, workload: Generation, inputs: dict, marks: list[float],
                  logits: list | None = None) -> torch.Tensor:
    """Greedy blank filling by hand (spec §5). Appends ``time.perf_counter()`` to ``marks`` after each new token.

    Cache: the context once (sep = s: bidirectional), then per step one token ([sop], then each new token) with
    ``position_ids = [[mask_pos], [k]]``, sep 0 (it sees every cached key) and ``cache=``. Recompute: at step k the
    whole context + [sop] + k - 1 generated tokens with sep = s (context bidirectional, the rest causal).
    ``logits``: when given, each step's next-token logits are appended (for the checks)."""
    s, g = workload.context, workload.new_tokens
    ids, positions = inputs["input_ids"], inputs["position_ids"]  # context + [sop]; (1, 2, s + g)
    generated = []
    with torch.inference_mode():
        if workload.use_cache:
            cache = model(ids[:, :s], position_ids=positions[..., :s], attention_mask=torch.tensor([s]),
                          use_cache=True).cache
            token, no_sep = ids[:, s:], torch.tensor([0])
            for k in range(1, g + 1):
                output = model(token, position_ids=positions[..., s + k - 1:s + k], attention_mask=no_sep,
                               cache=cache, use_cache=True)
                cache = output.cache
                token = output.logits[:, -1].argmax(-1, keepdim=True)
                if logits is not None:
                    logits.append(output.logits[:, -1].float())
                generated.append(token)
                marks.append(time.perf_counter())
        else:
            sep = torch.tensor([s])
            for _ in range(g):
                total = ids.shape[1]
                step = model(ids, position_ids=positions[..., :total], attention_mask=sep, use_cache=False).logits
                token = step[:, -1].argmax(-1, keepdim=True)
                if logits is not None:
                    logits.append(step[:, -1].float())
                generated.append(token)
                ids = torch.cat([ids, token], dim=1)
                marks.append(time.perf_counter())
    return torch.cat(generated, dim=1)


def hf_generate(model, workload: Generation, inputs: dict, marks: list[float],
                logits: list | None = None, options: dict | None = None) -> torch.Tensor:
    """``model.generate(**inputs)``, greedy, exactly ``new_tokens`` (no eos); a stopping criterion that never stops
    records the time after each new token. ``logits``: when given, generate's raw logits of each step are appended
    (``output_logits=True``). ``options``: more ``generate`` arguments (e.g. ``cache_implementation``)."""
    from transformers import StoppingCriteria, StoppingCriteriaList

    class Clock(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            marks.append(time.perf_counter())
            return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)

    extra = {"output_logits": True, "return_dict_in_generate": True} if logits is not None else {}
    with torch.inference_mode():
        out = model.generate(**inputs, max_new_tokens=workload.new_tokens, do_sample=False, num_beams=1,
                             use_cache=workload.use_cache, eos_token_id=None, pad_token_id=model.config.pad_token_id,
                             stopping_criteria=StoppingCriteriaList([Clock()]), **extra, **(options or {}))
    if logits is not None:
        logits.extend(step.float() for step in out.logits)
        out = out.sequences
    return out[:, inputs["input_ids"].shape[1]:]


def generation_fn(model, workload: Generation, inputs: dict, record: list | None = None,
                  logits: list | None = None, options: dict | None = None):
    """A callable running one generation; appends ``(start, [time after each token])`` to ``record`` and, when
    ``logits`` is given, each step's logits to it. ``options``: ``hf_generate``'s (the generate method only)."""
    if options and workload.method == "loop":
        raise ValueError("generate() options given for the hand-written loop")
    run_one = loop_generate if workload.method == "loop" else functools.partial(hf_generate, options=options)

    def run():
        marks: list[float] = []
        start = time.perf_counter()
        tokens = run_one(model, workload, inputs, marks, logits)
        if record is not None:
            record.append((start, marks))
        return tokens

    return run


def prepare_worker(spec: dict):
    """Memory subprocess: load the model for one workload, return the workload callable."""
    common.configure_torch(spec["threads"], spec["aten_linear"])
    quiet_libraries()
    if spec["kind"] == "forward":
        workload = Forward(**spec["workload"])
        model = load_model(Path(spec["folder"]), spec["impl"], workload.dtype)
        common.touch_tensors(model)
        return forward_fn(model, forward_inputs(workload))
    workload = Generation(**spec["workload"])
    model = load_model(Path(spec["folder"]), workload.impl, workload.dtype)
    common.touch_tensors(model)
    return generation_fn(model, workload, generation_inputs(workload))


# ------------------------------------------------------------------------------------------------------- forward


def check_forward(workload: Forward, models: dict, fp32_logits: dict) -> dict:
    """eager vs sdpa logits. fp32: max abs diff <= 1e-4 (else the run stops). bf16: each side against the fp32
    (sdpa) logits too; sdpa must not be much worse than eager (<= 1.5x + 0.01)."""
    inputs = forward_inputs(workload)
    logits = {impl: forward_fn(model, inputs)().logits.float() for impl, model in models.items()}
    result = {"eager_vs_sdpa": common.max_abs_diff(logits["eager"], logits["sdpa"]),
              "max_abs_logit": logits["eager"].abs().max().item()}
    key = (workload.batch, workload.seq)
    if workload.dtype == "fp32":
        fp32_logits[key] = logits["sdpa"]
        result["ok"] = result["eager_vs_sdpa"] <= TOLERANCE_FP32
        text = f"eager vs sdpa {result['eager_vs_sdpa']:.2e} (tolerance {TOLERANCE_FP32:.0e})"
    elif key in fp32_logits:
        for impl in IMPLS:
            result[f"{impl}_vs_fp32"] = common.max_abs_diff(logits[impl], fp32_logits[key])
        result["ok"] = result["sdpa_vs_fp32"] <= 1.5 * result["eager_vs_fp32"] + 1e-2
        text = (f"eager vs sdpa (both bf16) {result['eager_vs_sdpa']:.2e}; vs fp32 logits: eager "
                f"{result['eager_vs_fp32']:.2e}, sdpa {result['sdpa_vs_fp32']:.2e}")
    else:  # fp32 workloads filtered out
        result["ok"] = True
        text = f"eager vs sdpa (both bf16) {result['eager_vs_sdpa']:.2e}"
    text += f" (largest |logit| {result['max_abs_logit']:.2f})"
    print(f"  check {workload.name}: {text} -> {'ok' if result['ok'] else 'MISMATCH'}", flush=True)
    return result


def run_forward(selected: list[Forward], folder: Path, warmup: int, repeats: int) -> list[dict]:
    rows = []
    fp32_logits: dict = {}
    precision = common.fp32_matmul_precision()
    models = {impl: load_model(folder, impl, "fp32") for impl in IMPLS}
    if common.fp32_matmul_precision() != precision:
        raise RuntimeError(f"loading changed torch's fp32 matmul precision from {precision!r} to "
                           f"{common.fp32_matmul_precision()!r}; every model in the process would be affected")
    for dtype in DTYPES:
        group = [w for w in selected if w.dtype == dtype]
        if not group:
            continue
        start = time.perf_counter()
        if dtype != "fp32":
            models = {impl: model.to(DTYPES[dtype]) for impl, model in models.items()}
            common.release_free_memory()
        for workload in group:
            check = check_forward(workload, models, fp32_logits)
            if not check["ok"]:
                raise SystemExit(f"eager and sdpa logits differ for {workload.name}: {check}; not timing")
            inputs = forward_inputs(workload)
            timings = common.alternate({impl: forward_fn(model, inputs) for impl, model in models.items()},
                                       warmup=warmup, repeats=repeats)
            rows.append({"workload": workload, "check": check, "timing": timings, "loadavg": common.load_average()})
            e, s = timings["eager"], timings["sdpa"]
            print(f"  {workload.name}: eager {e.median * 1e3:,.0f} ms, sdpa {s.median * 1e3:,.0f} ms, "
                  f"sdpa/eager speed {e.median / s.median:.3f}, cpu {e.cpu_median / s.cpu_median:.3f} "
                  f"(spread eager {e.spread:.0%}, sdpa {s.spread:.0%})", flush=True)
        print(f"  [forward {dtype}: {time.perf_counter() - start:.0f} s]", flush=True)
    del models
    common.release_free_memory()
    return rows


# ---------------------------------------------------------------------------------------------------- generation


def step_stats(records: list, skip: int) -> dict:
    """From ``(start, marks)`` per run (the first ``skip`` runs are warm-ups, left out): the median time to the first
    token and the median time of each later token (over all steps of all timed runs)."""
    runs = records[skip:]
    firsts = [marks[0] - start for start, marks in runs]
    later = [b - a for _, marks in runs for a, b in zip(marks, marks[1:])]
    return {"first_token_s": statistics.median(firsts),
            "next_token_s": statistics.median(later) if later else float("nan"),
            "next_token_samples": len(later)}


def run_generation(selected: list[Generation], folder: Path, warmup: int, repeats: int) -> dict:
    """Check that every workload produces the same greedy tokens (this first call is also the first warm-up), then
    time them all, alternating call by call."""
    start = time.perf_counter()
    first = selected[0]
    model = load_model(folder, first.impl, first.dtype)
    inputs = generation_inputs(first)
    records = {w.name: [] for w in selected}
    fns = {w.name: generation_fn(model, w, inputs, records[w.name]) for w in selected}
    tokens, logits = {}, {}
    for w in selected:
        check_start = time.perf_counter()
        logits[w.name] = []
        tokens[w.name] = generation_fn(model, w, inputs, records[w.name], logits[w.name])()
        print(f"  check run {w.name}: {time.perf_counter() - check_start:.1f} s, {tokens[w.name].shape[1]} tokens",
              flush=True)
    reference = tokens[selected[0].name]
    same = {name: bool(t.shape == reference.shape and torch.equal(t, reference)) for name, t in tokens.items()}
    for name, t in tokens.items():
        if t.shape[1] != first.new_tokens or len(logits[name]) != first.new_tokens:
            raise SystemExit(f"{name} produced {t.shape[1]} tokens, expected {first.new_tokens}")
    # The tokens can repeat with random weights (tied embeddings: a token tends to predict itself), so the logits of
    # every step are compared as well.
    reference_logits = torch.cat(logits[selected[0].name])
    logit_diffs = {name: common.max_abs_diff(torch.cat(steps), reference_logits) for name, steps in logits.items()}
    print(f"  check: greedy tokens identical across {', '.join(tokens)}: {all(same.values())} "
          f"(tokens {reference[0, :8].tolist()}{'...' if reference.shape[1] > 8 else ''}); max |logit diff| over all "
          f"steps vs {selected[0].name}: " + ", ".join(f"{n} {d:.1e}" for n, d in logit_diffs.items()
                                                       if n != selected[0].name), flush=True)
    tolerance = TOLERANCE_FP32 if first.dtype == "fp32" else 5e-2
    if max(logit_diffs.values()) > tolerance:
        raise SystemExit(f"generation logits differ by more than {tolerance:.0e}: {logit_diffs}; not timing")
    if not all(same.values()):
        for name, t in tokens.items():
            differs = (t != reference).nonzero()
            print(f"    {name}: {t[0].tolist()}" + (f" (first difference at step {differs[0, 1].item() + 1})"
                                                     if len(differs) else ""), flush=True)
        raise SystemExit("generation paths disagree; not timing")
    timings = common.alternate(fns, warmup=max(warmup - 1, 0), repeats=repeats)
    skip = 1 + max(warmup - 1, 0)  # the check run and the warm-ups
    rows = []
    for w in selected:
        rows.append({"workload": w, "timing": timings[w.name], **step_stats(records[w.name], skip),
                     "same_tokens": same[w.name], "logit_diff": logit_diffs[w.name]})
        t = timings[w.name]
        print(f"  {w.name}: {t.median:.2f} s for {w.new_tokens} tokens ({t.median / w.new_tokens * 1e3:,.0f} ms/token,"
              f" spread {t.spread:.0%})", flush=True)
    del model
    common.release_free_memory()
    print(f"  [generation: {time.perf_counter() - start:.0f} s]", flush=True)
    return {"rows": rows, "tokens": reference[0].tolist()}


# -------------------------------------------------------------------------------------------------------- memory


def run_memory(forward_rows: list[dict], generation_rows: list[dict], folder: Path, threads: int,
               aten_linear: bool) -> None:
    script = str(Path(__file__).resolve())
    for row in forward_rows:
        workload = row["workload"]
        row["memory"] = {}
        for impl in IMPLS:
            spec = {"kind": "forward", "impl": impl, "workload": asdict(workload), "folder": str(folder),
                    "threads": threads, "calls": 2, "aten_linear": aten_linear}
            row["memory"][impl] = common.measure_in_subprocess(script, spec)
        print(f"  memory {workload.name}: " + "; ".join(f"{impl} {memory_text(m)}"
                                                         for impl, m in row["memory"].items()), flush=True)
    for row in generation_rows:
        workload = row["workload"]
        spec = {"kind": "generation", "workload": asdict(workload), "folder": str(folder), "threads": threads,
                "calls": 1, "aten_linear": aten_linear}
        row["memory"] = common.measure_in_subprocess(script, spec, timeout=1800)
        print(f"  memory {workload.name}: {memory_text(row['memory'])}", flush=True)


def memory_text(m: dict) -> str:
    if "error" in m:
        return f"ERROR {m['error']}"
    return f"peak {common.fmt_mib(m['peak'])} MiB (+{common.fmt_mib(m['delta'])} over loaded)"


def memory_cell(m: dict | None, key: str) -> str:
    return common.fmt_mib(m[key]) if m and "error" not in m else "-"


# -------------------------------------------------------------------------------------------------------- tables


def verdict(speed: float, spread: float) -> str:
    text = "sdpa faster" if speed >= 1 + NOISE else "SDPA SLOWER" if speed <= 1 - NOISE else "same (noise)"
    return text + (" (noisy)" if spread > NOISY_SPREAD else "")


def forward_table(rows: list[dict]) -> str:
    lines = []
    for row in rows:
        w, t, mem = row["workload"], row["timing"], row.get("memory", {})
        e, s = t["eager"], t["sdpa"]
        check = row["check"]
        diff = f"{check['eager_vs_sdpa']:.1e}"
        if "sdpa_vs_fp32" in check:
            diff += f" (fp32: {check['eager_vs_fp32']:.1e}/{check['sdpa_vs_fp32']:.1e})"
        lines.append({
            "workload": w.name, "sep": str(w.sep),
            "eager_ms": f"{e.median * 1e3:,.0f}", "sdpa_ms": f"{s.median * 1e3:,.0f}",
            "eager_tps": f"{w.tokens / e.median:,.0f}", "sdpa_tps": f"{w.tokens / s.median:,.0f}",
            "speed": f"{e.median / s.median:.3f}", "speed_min": f"{e.min / s.min:.3f}",
            "speed_cpu": f"{e.cpu_median / s.cpu_median:.3f}",
            "verdict": verdict(e.median / s.median, max(e.spread, s.spread)), "diff": diff,
            "eager_peak": memory_cell(mem.get("eager"), "peak"), "sdpa_peak": memory_cell(mem.get("sdpa"), "peak"),
            "eager_delta": memory_cell(mem.get("eager"), "delta"),
            "sdpa_delta": memory_cell(mem.get("sdpa"), "delta"),
        })
    columns = [("workload", "workload"), ("sep", "sep"), ("eager_ms", "eager ms"), ("sdpa_ms", "sdpa ms"),
               ("eager_tps", "eager tok/s"), ("sdpa_tps", "sdpa tok/s"), ("speed", "sdpa/eager"),
               ("speed_min", "(min)"), ("speed_cpu", "(cpu)"), ("verdict", "verdict"),
               ("diff", "max|logit diff|"), ("eager_peak", "eager peak MiB"), ("sdpa_peak", "sdpa peak MiB"),
               ("eager_delta", "eager +MiB"), ("sdpa_delta", "sdpa +MiB")]
    return common.format_table(lines, columns)


def cache_speedups(rows: list[dict]) -> dict:
    """no-cache median / cache median, for the hand loop and for generate()."""
    by = {(r["workload"].method, r["workload"].use_cache): r["timing"] for r in rows}
    out = {}
    for method in ("loop", "generate"):
        if (method, True) in by and (method, False) in by:
            slow, fast = by[(method, False)], by[(method, True)]
            out[method] = {"speedup": slow.median / fast.median, "speedup_min": slow.min / fast.min,
                           "speedup_cpu": slow.cpu_median / fast.cpu_median}
    return out


def generation_table(rows: list[dict]) -> str:
    speedups = cache_speedups(rows)
    lines = []
    for row in rows:
        w, t = row["workload"], row["timing"]
        speed = speedups.get(w.method)
        lines.append({
            "workload": w.name, "total": f"{t.median:.2f}", "spread": f"{t.spread:.0%}",
            "ms_token": f"{t.median / w.new_tokens * 1e3:,.0f}", "tps": f"{w.new_tokens / t.median:.2f}",
            "first": f"{row['first_token_s'] * 1e3:,.0f}", "next": f"{row['next_token_s'] * 1e3:,.0f}",
            "speedup": (f"{speed['speedup']:.1f}x (min {speed['speedup_min']:.1f}x, cpu {speed['speedup_cpu']:.1f}x)"
                        if speed and w.use_cache else ""),
            "same": "yes" if row["same_tokens"] else "NO", "diff": f"{row['logit_diff']:.1e}",
            "peak": memory_cell(row.get("memory"), "peak"), "delta": memory_cell(row.get("memory"), "delta"),
        })
    columns = [("workload", "generation"), ("total", "total s"), ("spread", "spread"), ("ms_token", "ms/token"),
               ("tps", "tok/s"), ("first", "1st token ms"), ("next", "next ms/token"),
               ("speedup", "cache speed-up"), ("same", "same tokens"),
               ("diff", "max|logit diff|"), ("peak", "peak MiB"), ("delta", "+MiB")]
    return common.format_table(lines, columns)


# ------------------------------------------------------------------------------------------------------------- main


def main(argv=None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if argv and argv[0] == common.WORKER_FLAG:
        spec = json.loads(argv[1])
        common.run_memory_worker(spec, prepare_worker, calls=spec.get("calls", 2))
        return 0

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: small model (4 layers, 256 wide), forward 1x128 / 2x64, generation of 8 "
                             "tokens after 64, 1 warm-up, 2 repeats")
    parser.add_argument("--size", choices=sorted(SIZES), default=None, help="model size (default: large)")
    parser.add_argument("--json", metavar="PATH", help="also write all results (every sample) to PATH")
    parser.add_argument("--warmup", type=int, default=None, help="forward warm-up calls per side (default 2, quick 1)")
    parser.add_argument("--repeats", type=int, default=None, help="timed forward repeats per side (default 5)")
    parser.add_argument("--gen-warmup", type=int, default=None,
                        help="generation warm-ups per workload, the token check run included (default 1)")
    parser.add_argument("--gen-repeats", type=int, default=None, help="timed generations per workload (default 3)")
    parser.add_argument("--only", metavar="TEXT", action="append",
                        help="run only workloads whose name contains TEXT (repeatable): e.g. 'forward', 'bf16', "
                             "'1x512', 'generat' (all four generation workloads)")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2, the machine's cores)")
    common.add_linear_option(parser)
    args = parser.parse_args(argv)
    size = args.size or ("small" if args.quick else "large")
    warmup = args.warmup if args.warmup is not None else (1 if args.quick else 2)
    repeats = args.repeats if args.repeats is not None else (2 if args.quick else 5)
    gen_warmup = args.gen_warmup if args.gen_warmup is not None else 1
    gen_repeats = args.gen_repeats if args.gen_repeats is not None else (2 if args.quick else 3)
    if gen_warmup < 1:
        parser.error("--gen-warmup must be >= 1 (the token check run is the first warm-up)")

    common.configure_torch(args.threads, args.aten_linear)
    quiet_libraries()
    import flagai_hf  # noqa: F401  (imported before the environment is recorded)

    def wanted(name: str) -> bool:
        return not args.only or any(s in name for s in args.only)

    forwards = [w for w in forward_workloads(args.quick) if wanted(w.name)]
    generations = generation_workloads(args.quick)
    if not any(wanted("generation " + w.name) for w in generations):
        generations = []
    if not forwards and not generations:
        parser.error(f"--only {args.only} matches no workload")
    env = common.environment_info()
    params = SIZES[size]
    print(f"GLM-{size} ({params['num_hidden_layers']} layers, hidden {params['hidden_size']}, "
          f"{params['num_attention_heads']} heads, vocab {params['vocab_size']}; random weights), flagai_hf")
    print(f"torch {env['torch']}, transformers {env['transformers']}, {env['threads']} threads, {env['cpu']}, "
          f"fp32_precision={env['fp32_matmul_precision']}, our CPU linears {env['our_cpu_linear']}, "
          f"load average {env['loadavg']}")
    print(common.machine_line(env))
    print(f"forward: warm-up {warmup}, repeats {repeats}, medians; generation: warm-up {gen_warmup} (the token check "
          f"run), repeats {gen_repeats}, medians", flush=True)
    warning = common.busy_warning(args.threads)
    if warning:
        print("WARNING: " + warning, flush=True)

    start = time.perf_counter()
    generation: dict = {"rows": []}
    with tempfile.TemporaryDirectory(prefix="bench_glm_") as tmp:
        folder = Path(tmp)
        save_checkpoint(folder, size)
        print(f"  [random checkpoint saved: {time.perf_counter() - start:.0f} s]", flush=True)
        forward_rows = run_forward(forwards, folder, warmup, repeats) if forwards else []
        if generations:
            generation = run_generation(generations, folder, gen_warmup, gen_repeats)
        if not args.no_memory:
            print("peak memory (fresh subprocess per workload; forward: 2 calls, generation: 1 call):", flush=True)
            run_memory(forward_rows, generation["rows"], folder, args.threads, args.aten_linear)
    elapsed = time.perf_counter() - start

    print()
    if forward_rows:
        print(f"Forward, torch.inference_mode(), blank-filling sep mask (sep = 3/4 of the length); warm-up {warmup}, "
              f"median of {repeats}")
        print(forward_table(forward_rows))
        print("sdpa/eager = eager median / sdpa median (> 1: sdpa faster; within +-7%: noise); (min): fastest repeats; "
              "(cpu): process CPU time. max|logit diff|: eager vs sdpa (bf16: and each vs the fp32 logits).")
        print()
    speedups = {}
    if generation["rows"]:
        w = generation["rows"][0]["workload"]
        print(f"Generation: greedy, batch 1, {w.context}-token context ([MASK] at {w.mask_pos}), {w.new_tokens} new "
              f"tokens, {w.dtype} {w.impl}; {gen_warmup} warm-up (the token check), median of {gen_repeats}")
        print(generation_table(generation["rows"]))
        speedups = cache_speedups(generation["rows"])
        print("ms/token = total / new tokens (context encoding included); 1st token = time to the first new token; "
              "next = median time of each later token; cache speed-up = no-cache median / cache median (total time); "
              f"max|logit diff| = every step's logits vs {generation['rows'][0]['workload'].name}.")
        for method, s in speedups.items():
            ok = s["speedup"] >= REQUIRED_CACHE_SPEEDUP
            judged = ("not judged (--quick: the context and generation are too short for the requirement)"
                      if args.quick else f"{'meets' if ok else 'FAILS'} the required >= {REQUIRED_CACHE_SPEEDUP:.0f}x")
            print(f"cache speed-up ({method}): {s['speedup']:.1f}x -> {judged}")
        print()
    print("peak MiB = process peak RSS during the workload (fresh subprocess); +MiB = peak minus RSS after loading. "
          f"Total {elapsed:.0f} s, load average now {common.load_average()}.")

    if args.json:
        payload = {
            "benchmark": "glm", "size": size, "config": params,
            "settings": {"warmup": warmup, "repeats": repeats, "gen_warmup": gen_warmup, "gen_repeats": gen_repeats,
                         "quick": args.quick},
            "environment": env, "busy_warning": warning, "elapsed_s": elapsed,
            "forward": [
                {"workload": row["workload"].name, **asdict(row["workload"]), "sep": row["workload"].sep,
                 "tokens": row["workload"].tokens, "eager": row["timing"]["eager"].to_dict(),
                 "sdpa": row["timing"]["sdpa"].to_dict(),
                 "sdpa_speedup": row["timing"]["eager"].median / row["timing"]["sdpa"].median,
                 "check": row["check"], "memory_bytes": row.get("memory"), "loadavg": row["loadavg"]}
                for row in forward_rows
            ],
            "generation": [
                {"workload": row["workload"].name, **asdict(row["workload"]), "timing": row["timing"].to_dict(),
                 "first_token_s": row["first_token_s"], "next_token_s": row["next_token_s"],
                 "same_tokens": row["same_tokens"], "logit_diff": row["logit_diff"],
                 "memory_bytes": row.get("memory")}
                for row in generation["rows"]
            ],
            "cache_speedup": speedups, "generated_tokens": generation.get("tokens"),
        }
        common.write_json(args.json, payload)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
