"""Shared helpers for the side-by-side benchmarks (ours vs transformers): timing, memory, checks, tables.

Rules these helpers implement (see docs/performance-notes.md): both sides run in one process, alternating call by
call; 2 threads; at least 2 warm-ups and 5 timed repeats per side; medians are what the tables show. Peak memory is
measured per (side, workload) in a fresh subprocess, because a process's resident-set high-water mark and the
allocator's cached free memory make in-process numbers depend on whatever ran before.

Used by ``bench_bert.py``; written to be reused unchanged by the GPT2 / T5 / GLM benchmarks:

- ``configure_torch``, ``add_linear_option``, ``environment_info``: thread count, our linear kernel and the facts a
  result depends on (``machine_line``: the CPU and its measured kernel speeds, printed by every benchmark).
- ``alternate``: time several callables interleaved; returns a ``Timing`` (all samples, median, min) per name.
- ``max_abs_diff``: the largest elementwise difference of two tensors (or nested outputs), in float64.
- ``MemoryProbe`` / ``run_memory_worker`` / ``measure_in_subprocess``: peak RSS of one workload in a fresh process.
- ``format_table``, ``fmt_mib``, ``write_json``: output.
"""

from __future__ import annotations

import ctypes
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import torch

MIB = 1024 * 1024


# ----------------------------------------------------------------------------------------------------------- setup


def configure_torch(threads: int = 2, aten_linear: bool = False) -> None:
    """Pin torch's intra-op threads (the machine's 2 cores; inter-op threads are set once per process if possible) and
    choose our linear layers' CPU kernel: oneDNN (the default) or, with ``aten_linear``, ``F.linear`` as transformers
    uses (see flagai_hf/modules/linear.py)."""
    from flagai_hf.modules.linear import use_onednn_for_cpu

    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set, or parallel work already ran in this process
        pass
    use_onednn_for_cpu(not aten_linear)


def add_linear_option(parser) -> None:
    """``--aten-linear``: our linears use ``F.linear`` (MKL on x86), the same kernel as transformers, so the ratio shows
    the rest of the implementation alone."""
    parser.add_argument("--aten-linear", action="store_true",
                        help="our linear layers use F.linear (as transformers does) instead of oneDNN on CPU")


def fp32_matmul_precision() -> str:
    """torch's process-wide fp32 matmul setting for oneDNN ("none" = plain fp32); recorded with every result, and
    checked to be unchanged after loading our models (a library must not flip it silently)."""
    try:
        return str(torch.backends.mkldnn.matmul.fp32_precision)
    except AttributeError:  # older torch
        return "n/a"


def cpu_description() -> str:
    """The CPU's name, x86 family / model and wide-vector features, e.g. "AMD EPYC (family 25, model 17; avx512f
    avx512_bf16)": two machines that both call themselves "AMD EPYC" can differ twofold in fp32 matmul peak (a core
    that runs AVX-512 at full width or in two halves), and the ratios against transformers' MKL kernels with them."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if not line.strip():
                    break  # the first processor's block is enough
                key, _, value = line.partition(":")
                fields[key.strip()] = value.strip()
    except OSError:
        return platform.processor() or ""
    flags = fields.get("flags", "").split()
    features = " ".join(flag for flag in ("avx512f", "avx512_bf16", "amx_tile") if flag in flags)
    return (f"{fields.get('model name', platform.processor())} (family {fields.get('cpu family', '?')}, model "
            f"{fields.get('model', '?')}; {features or 'no avx512'})")


_machine_speed: dict | None = None


def machine_speed() -> dict:
    """This machine's kernel speeds, measured once per process (about a second, at the configured threads): an fp32
    1024 x 1024 x 1024 product through MKL (``F.linear``, what transformers runs) and oneDNN (our linears), GFLOP/s,
    and the read bandwidth of a 256 MiB ``sum``, GB/s. A compute-bound forward's ratio against transformers is about
    the first two's ratio; a batch-1 decode step's floor is its weight bytes over the third."""
    global _machine_speed
    if _machine_speed is None:
        x, w = torch.randn(1024, 1024), torch.randn(1024, 1024)
        big = torch.ones(64 * MIB)  # 256 MiB of float32
        kernels = {"mkl_gflops": lambda: torch.nn.functional.linear(x, w), "read_gbs": big.sum}
        if torch.backends.mkldnn.is_available():
            kernels["onednn_gflops"] = lambda: torch.ops.mkldnn._linear_pointwise(x, w, None, "none", [], "")
        work = {"mkl_gflops": 2 * 1024**3 / 1e9, "onednn_gflops": 2 * 1024**3 / 1e9, "read_gbs": big.numel() * 4 / 1e9}
        timings = alternate(kernels, warmup=2, repeats=7, collect_garbage=False)
        _machine_speed = {name: round(work[name] / timing.median, 1) for name, timing in timings.items()}
    return _machine_speed


def machine_line(env: dict) -> str:
    speed = env["machine_speed"]
    return (f"machine: {env['cpu']}; fp32 1024^3 product MKL {speed['mkl_gflops']} GFLOP/s, oneDNN "
            f"{speed.get('onednn_gflops', '-')} GFLOP/s; 256 MiB read {speed['read_gbs']} GB/s")


def environment_info() -> dict:
    """What a timing depends on: versions, threads, matmul precision setting, CPU, its kernel speeds and its load."""
    import transformers

    from flagai_hf.modules.linear import onednn_for_cpu_enabled

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "threads": torch.get_num_threads(),
        "cpu": cpu_description(),
        "cpu_count": os.cpu_count(),
        "machine_speed": machine_speed(),
        "fp32_matmul_precision": fp32_matmul_precision(),
        "our_cpu_linear": "oneDNN" if onednn_for_cpu_enabled() else "F.linear",
        "loadavg": load_average(),
    }


def busy_warning(threads: int) -> str | None:
    """A warning when other processes already occupy the CPUs (1-minute load average, taken before we start).

    With ``threads`` OpenMP threads per op, every parallel region waits for its slowest thread; when the scheduler
    shares the cores with other processes, that wait can inflate 2-thread timings many-fold and make ratios
    meaningless. ``--threads 1`` is then the more reliable comparison (both sides just get a share of one core).
    """
    load = load_average()
    cores = os.cpu_count() or 1
    if load is None or load[0] < 0.5:
        return None
    text = (f"machine busy: load average {load[0]:.1f} on {cores} cores before this run; wall times include waiting "
            f"for a core, compare the ratio(cpu) column too")
    if threads > 1:
        text += (f". With {threads} threads, timings can be inflated several-fold by OpenMP threads waiting for "
                 f"each other and ratios favour code with fewer parallel ops; re-run when idle, or compare with "
                 f"--threads 1")
    return text + "."


def load_average() -> list[float] | None:
    """The 1/5/15-minute load averages: other processes on the machine show up here (and in noisier timings)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


# ---------------------------------------------------------------------------------------------------------- timing


@dataclass
class Timing:
    """Seconds per timed repeat of one callable: wall clock (``samples``) and this process's CPU time (``cpu``).

    Wall time is what users see. CPU time (all threads of the process, ``time.process_time``) does not count the
    time the process waited for a core, so on a machine shared with other jobs it is the steadier measure of the
    work done; with 1 thread it is the compute time itself, with more it also counts threads spinning at barriers.
    """

    samples: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def min(self) -> float:
        return min(self.samples)

    @property
    def cpu_median(self) -> float:
        return statistics.median(self.cpu)

    @property
    def spread(self) -> float:
        """(max - min) / median of the wall times: how noisy the repeats were."""
        return (max(self.samples) - min(self.samples)) / self.median if self.samples else float("nan")

    def to_dict(self) -> dict:
        return {"median_s": self.median, "min_s": self.min, "cpu_median_s": self.cpu_median, "spread": self.spread,
                "samples_s": self.samples, "cpu_samples_s": self.cpu}


def alternate(funcs: dict[str, Callable[[], object]], warmup: int = 2, repeats: int = 5,
              collect_garbage: bool = True) -> dict[str, Timing]:
    """Run every callable ``warmup`` times, then ``repeats`` timed rounds, interleaved call by call.

    The order rotates each round (A B, B A, A B, ...), so slow drifts in the machine's speed (other processes, clock
    changes) fall on both sides alike. Returns one ``Timing`` per name (wall and CPU seconds of every repeat).
    ``collect_garbage``: a ``gc.collect()`` before each timed call (off for millisecond kernels, where a collection
    with transformers imported costs more than the kernel).
    """
    names = list(funcs)
    for index in range(warmup):
        for name in _rotated(names, index):
            funcs[name]()
    timings = {name: Timing() for name in names}
    for index in range(repeats):
        for name in _rotated(names, index):
            if collect_garbage:
                gc.collect()
            cpu_start, start = time.process_time(), time.perf_counter()
            funcs[name]()
            wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
            timings[name].samples.append(wall)
            timings[name].cpu.append(cpu)
    return timings


def _rotated(names: Sequence[str], index: int) -> list[str]:
    shift = index % len(names)
    return list(names[shift:]) + list(names[:shift])


# ---------------------------------------------------------------------------------------------------------- checks


def max_abs_diff(a, b) -> float:
    """Largest ``|a - b|`` over two tensors (compared in float64), or over same-structured tuples/lists of them."""
    if isinstance(a, (tuple, list)):
        if len(a) != len(b):
            raise ValueError(f"outputs differ in length: {len(a)} vs {len(b)}")
        return max((max_abs_diff(x, y) for x, y in zip(a, b)), default=0.0)
    if a.shape != b.shape:
        raise ValueError(f"outputs differ in shape: {tuple(a.shape)} vs {tuple(b.shape)}")
    return (a.detach().double() - b.detach().double()).abs().max().item()


# ---------------------------------------------------------------------------------------------------------- memory


def _status_kib(key: str) -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def current_rss() -> int:
    """Resident set size of this process now, in bytes."""
    kib = _status_kib("VmRSS")
    if kib is not None:
        return kib * 1024
    import resource  # not Linux: fall back to the peak (an over-estimate of "now")

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def reset_peak_rss() -> bool:
    """Reset the kernel's resident-set high-water mark (``VmHWM``) to the current RSS; False where unsupported.

    Linux >= 4.0 does this on ``echo 5 > /proc/self/clear_refs``; after it, ``VmHWM`` (and ``ru_maxrss``) report the
    peak since the reset rather than since the process started.
    """
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as handle:
            handle.write("5")
    except OSError:
        return False
    hwm, rss = _status_kib("VmHWM"), _status_kib("VmRSS")
    return hwm is not None and rss is not None and hwm <= rss + 1024  # reset took effect (allow 1 MiB of drift)


def peak_rss_since_reset() -> int | None:
    kib = _status_kib("VmHWM")
    return kib * 1024 if kib is not None else None


def touch_tensors(module: torch.nn.Module) -> None:
    """Read every parameter and buffer once. transformers' ``from_pretrained`` can leave weights as memory-mapped
    views of the safetensors file, which become resident only when first read; without this, the first forward
    would be charged for faulting in the whole model."""
    with torch.no_grad():
        for tensor in [*module.parameters(), *module.buffers()]:
            if tensor.numel():
                tensor.detach().sum()


def release_free_memory() -> None:
    """Collect garbage and hand the C allocator's free pages back to the OS (glibc ``malloc_trim``).

    Loading a model leaves freed buffers (the checkpoint's tensors, the fp32 copy before a bf16 cast) cached by the
    allocator; without trimming they would inflate the baseline and be silently reused by the workload.
    """
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class _RSSSampler(threading.Thread):
    """Fallback when the high-water mark cannot be reset: sample RSS every ``interval`` seconds, keep the maximum."""

    def __init__(self, interval: float = 0.002):
        super().__init__(daemon=True)
        self.interval = interval
        self.peak = current_rss()
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.peak = max(self.peak, current_rss())
            self._stop_event.wait(self.interval)

    def stop(self) -> int:
        self._stop_event.set()
        self.join()
        self.peak = max(self.peak, current_rss())
        return self.peak


class MemoryProbe:
    """Peak RSS of the code inside ``with MemoryProbe() as probe:``, relative to the RSS at entry.

    On entry: garbage is collected, the allocator trimmed, the kernel's high-water mark reset (or, where that is not
    possible, a sampling thread started) and the baseline RSS recorded. ``probe.result()`` gives bytes:
    ``baseline`` (the process before the workload: interpreter, libraries, model, inputs), ``peak`` (the highest RSS
    while the workload ran) and ``delta = peak - baseline`` (what the workload itself needed on top).
    """

    def __enter__(self) -> MemoryProbe:
        release_free_memory()
        self.baseline = current_rss()
        self._sampler = None
        self.method = "VmHWM after clear_refs"
        if not reset_peak_rss():
            self.method = "RSS sampled every 2 ms"
            self._sampler = _RSSSampler()
            self._sampler.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._sampler is not None:
            self.peak = self._sampler.stop()
        else:
            self.peak = max(peak_rss_since_reset() or 0, current_rss())

    def result(self) -> dict:
        return {"baseline": self.baseline, "peak": self.peak, "delta": self.peak - self.baseline,
                "method": self.method}


WORKER_FLAG = "--_memory-worker"
_RESULT_PREFIX = "MEMORY-RESULT "


def run_memory_worker(spec: dict, prepare: Callable[[dict], Callable[[], object]], calls: int = 2) -> None:
    """Body of a memory subprocess: ``prepare(spec)`` loads the model and inputs and returns the workload callable;
    it then runs ``calls`` times inside a ``MemoryProbe`` (the first call's one-time allocations and, for training,
    the optimizer state created by the first step both count). Prints the result for ``measure_in_subprocess``."""
    step = prepare(spec)
    with MemoryProbe() as probe:
        for _ in range(calls):
            step()
    print(_RESULT_PREFIX + json.dumps(probe.result()), flush=True)


def measure_in_subprocess(script: str, spec: dict, timeout: float = 600, env: dict | None = None) -> dict:
    """Run ``python script --_memory-worker SPEC_JSON`` in a fresh interpreter and return its ``MemoryProbe`` result
    (bytes), or ``{"error": ...}`` when the worker fails."""
    command = [sys.executable, script, WORKER_FLAG, json.dumps(spec)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, **(env or {})})
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    for line in reversed(done.stdout.splitlines()):
        if line.startswith(_RESULT_PREFIX):
            return json.loads(line[len(_RESULT_PREFIX):])
    tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
    return {"error": f"exit code {done.returncode}: " + " | ".join(tail)}


# ---------------------------------------------------------------------------------------------------------- output


def fmt_mib(value: float | None) -> str:
    return "-" if value is None else f"{value / MIB:,.0f}"


def format_table(rows: list[dict], columns: list[tuple[str, str]]) -> str:
    """A fixed-width text table; ``columns`` are ``(key, header)``; the first column is left-aligned."""
    cells = [[header for _, header in columns]] + [[str(row.get(key, "")) for key, _ in columns] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]

    def render(line):
        return "  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(line, widths)))

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([render(cells[0]), rule] + [render(line) for line in cells[1:]])


def write_json(path: str, payload: dict) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(payload, handle, indent=2, default=_json_default)
        handle.write("\n")


def _json_default(value):
    if isinstance(value, Timing):
        return value.to_dict()
    if hasattr(value, "__dataclass_fields__"):
        return asdict(value)
    if isinstance(value, torch.dtype):
        return str(value).replace("torch.", "")
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
