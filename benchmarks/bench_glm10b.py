"""GLM-10b-ch on one machine: every figure of issue 13 from random weights of its size (or a slice of it).

    PYTHONPATH=. python benchmarks/bench_glm10b.py                         # full size: 48 layers, ~20 GB bf16
    PYTHONPATH=. python benchmarks/bench_glm10b.py --layers 2              # reduced scale: full width, 2 layers
    PYTHONPATH=. python benchmarks/bench_glm10b.py --layers 2 --hidden 64 --heads 4 --context 16 --new-tokens 4

Each step runs in a child process, so that its peak RSS (``ru_maxrss`` from ``os.wait4``) is its own; the load
average is printed with every figure. Files go to a temporary folder (``--tmp``, default the system's), and each
copy is deleted as soon as it is not needed: at most two copies of the weights exist at a time (the disk needs
2 x the weights, ~40 GB at full size).

1. ``write``: the sharded safetensors folder (``bench_glm10b_write.py --layout safetensors``, 4 GB shards).
2. ``read`` / ``load``: the files are made cold first (``fsync`` + ``posix_fadvise(DONTNEED)`` on every file, which
   evicts their pages from the page cache without root; ``cached`` says how much was left resident, from ``mincore``),
   then (a) read once with 16 MiB ``read``s (``cat > /dev/null``), (b) ``safetensors.load_file`` + touching every
   tensor, (c) ``GLMForConditionalGeneration.from_pretrained(folder)`` (transformers' loader, dtype "auto") + touching
   every parameter, (d) flagai_hf's ``load_folder`` (FlagAI's ``from_pretrain`` for non-native folders) + touching.
   Reported: seconds, ratio to (a), peak RSS / weights, the parameter dtypes (all bf16: no fp32 detour), the RSS that is
   file-backed vs anonymous after loading (mapped file pages = the checkpoint itself; anonymous = copies), major page
   faults, and the machine's swap use (``/proc/meminfo``).
3. ``generate``: blank filling, batch 1, bf16, ``generate()`` with the K/V cache: a ``--context`` (256) token random
   context with a ``[MASK]`` in the middle, ``--new-tokens`` (32) greedy tokens, the spec's §8 inputs; the Linear
   weights packed for oneDNN (``flagai_hf.modules.linear.packed_linear_weights``; ``--no-pack`` for the plain path),
   the other tensors copied out of the file mapping (so the checkpoint's pages are released). Reported: time to the
   first token, median seconds per later token, tokens/s after the first, the weight bytes streamed per second, and
   the check: the first ``--check-steps`` (4) tokens equal ``generate(use_cache=False)`` (a full recomputation at every
   step), with the logits' largest difference.
4. ``megatron``: the same weights as THUDM's 4-way ``mp_rank_0X_model_states.pt`` (written after the safetensors
   folder is deleted), converted by ``conversion/convert_glm_megatron.py`` (peak RSS; target <= 4 GB), then the
   2-layer slice check: logits (fp32) of our model built from the converted folder's layers 0-1 against a plain-torch
   forward of the spec's equations (in fp64) on tensors merged here from the four shards (<= 1e-5). The Megatron
   source is then deleted and every converted tensor compared with the writer's values.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import mmap
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(REPO))

import torch  # noqa: E402

import bench_glm10b_write as writer  # noqa: E402
import common  # noqa: E402

CHILD_FLAG = "--_child"
RESULT = "BENCH-RESULT "
GB = 1e9


# ------------------------------------------------------------------------------------------------- child processes


def run_child(args: list[str], what: str, timeout: float = 3600) -> dict:
    """Run ``python args...`` and return its result line (JSON) plus ``seconds``, ``peak_rss`` (bytes, the child's
    ``ru_maxrss``) and ``major_faults``; stops the run with the child's output when it fails."""
    start = time.perf_counter()
    process = subprocess.Popen([sys.executable, *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env={**os.environ, "PYTHONPATH": str(REPO)})
    timer = threading.Timer(timeout, process.kill)
    timer.start()
    try:
        output = process.stdout.read()
        _, status, usage = os.wait4(process.pid, 0)  # the child's own rusage (subprocess would discard it)
    finally:
        timer.cancel()
    process.returncode = code = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - start
    if code:
        raise SystemExit(f"{what} failed (exit {code}{', timed out' if code == -9 else ''}):\n{output[-3000:]}")
    result = {}
    for line in output.splitlines():
        if line.startswith(RESULT):
            result = json.loads(line[len(RESULT):])
    result.setdefault("seconds", seconds)
    result.update(peak_rss=usage.ru_maxrss * 1024, major_faults=usage.ru_majflt)
    return result


def child_result(payload: dict) -> None:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    payload.setdefault("peak_rss", usage.ru_maxrss * 1024)
    payload.setdefault("major_faults", usage.ru_majflt)
    print(RESULT + json.dumps(payload), flush=True)


def rss_split() -> dict:
    """This process's resident memory now: anonymous (copies) and file-backed (mapped checkpoint pages), bytes."""
    return {key: (common._status_kib(key) or 0) * 1024 for key in ("VmRSS", "RssAnon", "RssFile")}


def swap_used() -> int:
    info = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
    return (int(info["SwapTotal"].split()[0]) - int(info["SwapFree"].split()[0])) * 1024


def load_text() -> str:
    load = common.load_average()
    return "load " + ("/".join(f"{x:.2f}" for x in load) if load else "n/a")


# ------------------------------------------------------------------------------------------------------ cold files


def weight_files(folder: Path) -> list[Path]:
    return sorted(path for path in folder.rglob("*") if path.is_file() and path.suffix in (".safetensors", ".pt"))


def make_cold(folder: Path) -> float:
    """Evict ``folder``'s files from the page cache (flushed first: only clean pages are dropped); returns the
    fraction still cached afterwards (``mincore``), 0 when the eviction worked."""
    cached = total = 0
    for path in weight_files(folder):
        with open(path, "rb") as handle:
            os.fsync(handle.fileno())
            os.posix_fadvise(handle.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
            resident, pages = resident_pages(handle.fileno(), path.stat().st_size)
        cached, total = cached + resident, total + pages
    return cached / total if total else 0.0


_LIBC = ctypes.CDLL(None, use_errno=True)


def resident_pages(fd: int, size: int) -> tuple[int, int]:
    """How many of a file's pages are in the page cache (``mincore`` on a read-only mapping of it), and its page
    count."""
    import numpy

    pages = -(-size // mmap.PAGESIZE)
    if not size:
        return 0, 0
    with mmap.mmap(fd, size, prot=mmap.PROT_READ) as mapped:
        view = numpy.frombuffer(mapped, dtype=numpy.uint8)  # zero-copy: gives the mapping's address
        status = (ctypes.c_ubyte * pages)()
        failed = _LIBC.mincore(ctypes.c_void_p(view.__array_interface__["data"][0]), ctypes.c_size_t(size), status)
        del view
    return (0 if failed else sum(byte & 1 for byte in status)), pages


# ---------------------------------------------------------------------------------------------------- the children


def child_baseline() -> None:
    """The RSS of a child that imports what the loading children import (torch, transformers, flagai_hf)."""
    import transformers  # noqa: F401

    import flagai_hf  # noqa: F401

    child_result({})


def child_read(folder: Path) -> None:
    """(a) every weight file read once with 16 MiB reads, like ``cat > /dev/null``."""
    start, total = time.perf_counter(), 0
    buffer = bytearray(16 << 20)
    for path in weight_files(folder):
        with open(path, "rb", buffering=0) as handle:
            while count := handle.readinto(buffer):
                total += count
    child_result({"seconds": time.perf_counter() - start, "bytes": total})


def child_load(folder: Path, how: str) -> None:
    """(b) ``load_file`` + touch, (c) ``from_pretrained`` + touch, (d) ``load_folder`` + touch."""
    from bench_glm import quiet_libraries
    from safetensors.torch import load_file

    from flagai_hf import GLMForConditionalGeneration
    from flagai_hf.loading import load_folder

    quiet_libraries()
    start = time.perf_counter()
    if how == "load_file":
        tensors = [tensor for path in weight_files(folder) for tensor in load_file(path).values()]
        with torch.no_grad():
            for tensor in tensors:
                tensor.sum()
        dtypes = sorted({str(tensor.dtype) for tensor in tensors})
    else:
        load = GLMForConditionalGeneration.from_pretrained if how == "from_pretrained" else \
            (lambda path: load_folder(GLMForConditionalGeneration, path))
        model = load(folder)
        common.touch_tensors(model)
        dtypes = sorted({str(param.dtype) for param in model.parameters()})
    child_result({"seconds": time.perf_counter() - start, "dtypes": dtypes, **rss_split()})


def child_generate(folder: Path, spec: dict) -> None:
    """Blank filling through ``generate()`` with the cache, then the cache-free check of the first steps."""
    from bench_glm import Generation, generation_inputs, hf_generate, quiet_libraries

    from flagai_hf import GLMForConditionalGeneration
    from flagai_hf.models.glm.megatron import release_mapped_pages
    from flagai_hf.modules.linear import Linear, pack_linear_weights

    quiet_libraries()
    torch.set_num_threads(spec["threads"])
    start = time.perf_counter()
    model = GLMForConditionalGeneration.from_pretrained(folder, attn_implementation="sdpa")
    loaded = time.perf_counter() - start
    packed = 0
    if spec["pack"]:  # block by block; the plain weights' file pages are handed back as soon as each is packed
        for block in model.glm.layers:
            plain = [module.weight for module in block.modules() if isinstance(module, Linear)]
            packed += pack_linear_weights(block)
            for weight in plain:
                release_mapped_pages(weight)  # read-only file mapping: the pages are re-read if ever used again
            del plain
    with torch.no_grad():  # everything else out of the file mapping, so that the checkpoint's mapping is released
        for module in model.modules():
            for name, tensor in list(module._parameters.items()) + list(module._buffers.items()):
                if tensor is not None and not tensor.is_mkldnn:
                    tensor.data = tensor.data.clone()
    common.release_free_memory()
    prepared = time.perf_counter() - start
    weights = sum(p.numel() * p.element_size() for p in model.parameters())

    workload = Generation("generate", True, spec["context"], spec["new_tokens"], dtype="bf16")
    inputs = generation_inputs(workload)
    marks: list[float] = []
    logits: list[torch.Tensor] = []
    begin = time.perf_counter()
    tokens = hf_generate(model, workload, inputs, marks, logits)
    first = marks[0] - begin
    steps = [b - a for a, b in zip(marks, marks[1:])]
    after = (len(marks) - 1) / (marks[-1] - marks[0]) if len(marks) > 1 else float("nan")

    check = Generation("generate", False, spec["context"], spec["check_steps"], dtype="bf16")
    check_logits: list[torch.Tensor] = []
    check_begin = time.perf_counter()
    recomputed = hf_generate(model, check, generation_inputs(check), [], check_logits)
    check_seconds = time.perf_counter() - check_begin
    n = spec["check_steps"]
    logit_diff = max(float((a - b).abs().max()) for a, b in zip(logits[:n], check_logits))
    child_result({
        "load_seconds": loaded, "prepare_seconds": prepared, "packed_layers": packed, "weights": weights,
        "first_token_s": first, "next_token_s_median": statistics.median(steps) if steps else None,
        "tokens_per_s_after_first": after, "tokens": tokens[0].tolist(), "check_tokens": recomputed[0].tolist(),
        "tokens_equal": tokens[0, :n].tolist() == recomputed[0, :n].tolist(), "check_logit_diff": logit_diff,
        "check_seconds": check_seconds, "dtype": str(model.dtype), "rss_end": rss_split(),
    })


def child_slice_check(megatron: Path, converted: Path, spec: dict) -> None:
    """Logits of a 2-layer slice: our model (float32) from the converted folder vs the spec's equations in float64 on
    tensors merged here from the Megatron shards."""
    from safetensors import safe_open

    from flagai_hf import GLMConfig, GLMForConditionalGeneration
    from flagai_hf.modules.linear import use_onednn_for_cpu

    torch.set_num_threads(spec["threads"])
    config = json.loads((megatron / "config.json").read_text())
    layers = min(2, config["num_layers"])
    ranks = [torch.load(path, mmap=True, weights_only=True)["module"] for path in weight_files(megatron)]
    generator = torch.Generator().manual_seed(1)
    length = min(spec["context"], config["max_sequence_length"])
    ids = torch.randint(0, config["vocab_size"], (1, length), generator=generator)
    sep = length // 2

    reference = spec_forward(ranks, config, layers, ids, sep, mapped=True)  # float64: the exact answer
    plain_fp32 = spec_forward(ranks, config, layers, ids, sep, mapped=True, dtype=torch.float32)  # fp32's own error
    del ranks

    glm_config = GLMConfig.from_flagai_dict({**config, "num_layers": layers})
    kept = {}
    for path in weight_files(converted):
        with safe_open(path, framework="pt") as handle:
            for name in handle.keys():
                if ".layers." not in name or int(name.split(".layers.")[1].split(".")[0]) < layers:
                    kept[name] = float_copy(handle.get_tensor(name), mapped=True)
    with torch.device("meta"):
        model = GLMForConditionalGeneration(glm_config)
    model.load_state_dict(kept, strict=True, assign=True)
    model.tie_weights()
    model.eval()
    with torch.inference_mode():
        ours = model(ids, attention_mask=torch.tensor([sep])).logits[0]
        previous = use_onednn_for_cpu(False)  # the same model on F.linear (MKL): the kernels' share of the error
        try:
            ours_aten = model(ids, attention_mask=torch.tensor([sep])).logits[0]
        finally:
            use_onednn_for_cpu(previous)
    child_result({"layers": layers, "tokens": length, "max_abs_diff": float((ours.double() - reference).abs().max()),
                  "aten_linear_diff": float((ours_aten.double() - reference).abs().max()),
                  "plain_fp32_diff": float((plain_fp32.double() - reference).abs().max()),
                  "logit_scale": float(reference.abs().max())})


def float_copy(tensor: torch.Tensor, mapped: bool, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A ``dtype`` copy of ``tensor``; when it is ``mapped`` from a checkpoint file (read-only, never written), its file
    pages are then handed back, so that only the copies count in the RSS. (Never for other tensors: dropping the
    pages of ordinary memory would zero it.)"""
    from flagai_hf.models.glm.megatron import release_mapped_pages

    copy = tensor.to(dtype, copy=True)
    if mapped:
        release_mapped_pages(tensor)
    return copy


def spec_forward(ranks: list[dict], config: dict, layers: int, ids: torch.Tensor, sep: int,
                 mapped: bool = False, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """glm-spec §3 written out in plain torch (in ``dtype``: float64 by default, the exact answer to compare a float32
    model with) on the first ``layers`` layers, merging each tensor from the
    ranks' parts as THUDM's ``change_mp.py`` does (vocabulary rows, per-rank [q; k; v], MLP rows, row-parallel
    columns). ``mapped``: the ranks' tensors are memory-mapped (``torch.load(mmap=True)``), see ``float_copy``.
    Returns the logits (T, vocab)."""
    import torch.nn.functional as F

    def part(name):
        return [float_copy(rank[name], mapped, dtype) for rank in ranks]

    def rows(name):
        return torch.cat(part(name), 0)

    def columns(name):
        return torch.cat(part(name), 1)

    def qkv(name):
        pieces = [p.chunk(3, 0) for p in part(name)]
        return torch.cat([piece[i] for i in range(3) for piece in pieces], 0)

    hidden, heads = config["hidden_size"], config["num_attention_heads"]
    d, length = hidden // heads, ids.shape[1]
    word = rows("word_embeddings.weight")
    positions = torch.arange(length)
    x = word[ids[0]] + part("transformer.position_embeddings.weight")[0][positions] \
        + part("transformer.block_position_embeddings.weight")[0][torch.zeros_like(positions)]
    query, key = torch.arange(length)[:, None], torch.arange(length)[None, :]
    keep = ((key <= query) | (key < sep)).float()  # (T, T): GLM's sep mask

    def norm(x, prefix):
        return F.layer_norm(x, (hidden,), part(prefix + ".weight")[0], part(prefix + ".bias")[0], 1e-5)

    for index in range(layers):
        p = f"transformer.layers.{index}."
        h = norm(x, p + "input_layernorm")
        mixed = h @ qkv(p + "attention.query_key_value.weight").T + qkv(p + "attention.query_key_value.bias")
        q, k, v = (t.view(length, heads, d).transpose(0, 1) for t in mixed.split(hidden, -1))  # (heads, T, d)
        scores = q @ (k.transpose(-1, -2) / d**0.5)
        scores = scores * keep + (-65504.0) * (1.0 - keep)
        context = (scores.softmax(-1) @ v).transpose(0, 1).reshape(length, hidden)
        x = x + context @ columns(p + "attention.dense.weight").T + part(p + "attention.dense.bias")[0]
        h = norm(x, p + "post_attention_layernorm")
        inner = F.gelu(h @ rows(p + "mlp.dense_h_to_4h.weight").T + rows(p + "mlp.dense_h_to_4h.bias"),
                       approximate="tanh")
        x = x + inner @ columns(p + "mlp.dense_4h_to_h.weight").T + part(p + "mlp.dense_4h_to_h.bias")[0]
    return norm(x, "transformer.final_layernorm") @ word.T


def child_verify(converted: Path, spec: dict) -> None:
    """Every converted tensor against the writer's values for it (regenerated from the seed), one at a time."""
    from safetensors import safe_open

    from flagai_hf import GLMConfig, GLMForConditionalGeneration

    config = spec["config"]
    plan = writer.thudm_plan(config, writer.DTYPES[spec["dtype"]])
    names = writer.native_names(GLMForConditionalGeneration, GLMConfig.from_flagai_dict(config), plan, converted)
    thudm = {native: name for name, native in names.items()}
    wrong, seen = [], set()
    for path in weight_files(converted):  # one shard mapped at a time
        with safe_open(path, framework="pt") as handle:
            for native in handle.keys():
                seen.add(native)
                name = thudm.get(native)
                expected = None if name is None else writer.random_tensor(
                    name, plan[name].shape, plan[name].dtype, spec["seed"], config["num_layers"])
                if expected is None or not torch.equal(handle.get_tensor(native), expected):
                    wrong.append(native)
    child_result({"tensors": len(seen), "differing": wrong[:10], "missing": sorted(set(thudm) - seen)[:10]})


# ------------------------------------------------------------------------------------------------------ the driver


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", type=int, default=48)
    parser.add_argument("--hidden", type=int, default=4096)
    parser.add_argument("--heads", type=int, default=64)
    parser.add_argument("--vocab", type=int, default=50048)
    parser.add_argument("--positions", type=int, default=1024)
    parser.add_argument("--context", type=int, default=256)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--check-steps", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-shard-size", default="4GB", help="shards of the written and the converted folder")
    parser.add_argument("--no-pack", action="store_true", help="generate with plain bf16 Linear weights")
    parser.add_argument("--skip", action="append", default=[], choices=["load", "generate", "megatron"],
                        help="leave out a part (repeatable)")
    parser.add_argument("--tmp", type=Path, help="where the temporary folder goes (default: the system's)")
    parser.add_argument("--json", type=Path, help="also write every result here")
    parser.add_argument(CHILD_FLAG, nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    child = getattr(args, CHILD_FLAG.strip("-").replace("-", "_"))
    if child:
        return run_as_child(child)

    config = writer.flagai_config(args.layers, args.hidden, args.heads, args.vocab, args.positions)
    spec = {"context": args.context, "new_tokens": args.new_tokens, "check_steps": args.check_steps,
            "threads": args.threads, "pack": not args.no_pack, "seed": args.seed, "dtype": "bf16", "config": config}
    params = sum(t.numel() for t in writer.thudm_plan(config, torch.bfloat16).values())
    results: dict = {"config": config, "parameters": params, "spec": spec}
    print(f"GLM {args.layers} layers x {args.hidden} hidden, {args.heads} heads, vocab {args.vocab}: {params:,} "
          f"parameters, {params * 2 / GB:.2f} GB bf16; torch {torch.__version__}, {args.threads} threads, "
          f"{os.cpu_count()} CPUs, swap used {swap_used() / GB:.2f} GB; {load_text()}")
    root = Path(tempfile.mkdtemp(prefix="glm10b-", dir=args.tmp))
    me = str(Path(__file__).resolve())
    size_args = ["--layers", str(args.layers), "--hidden", str(args.hidden), "--heads", str(args.heads),
                 "--vocab", str(args.vocab), "--positions", str(args.positions), "--seed", str(args.seed)]
    try:
        folder = root / "safetensors"
        if not {"load", "generate"} <= set(args.skip):
            step = run_child([str(HERE / "bench_glm10b_write.py"), str(folder), "--layout", "safetensors",
                              "--max-shard-size", args.max_shard_size, *size_args], "write safetensors")
            size = sum(path.stat().st_size for path in weight_files(folder))
            results["write_safetensors"] = {**step, "bytes": size}
            print(f"write safetensors: {size / GB:.2f} GB in {len(weight_files(folder))} shards, "
                  f"{step['seconds']:.1f} s, peak RSS {step['peak_rss'] / GB:.2f} GB; {load_text()}")
        if "load" not in args.skip:
            results["load"] = run_loading(me, folder, size)
        if "generate" not in args.skip:
            results["generate"] = run_generation(me, folder, spec)
        shutil.rmtree(folder, ignore_errors=True)
        if "megatron" not in args.skip:
            results["megatron"] = run_megatron(me, root, spec, size_args, args.max_shard_size)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


def run_loading(me: str, folder: Path, size: int) -> dict:
    """Cold read vs the loaders; peak RSS is also given net of the RSS of a child that only imports the libraries
    (``baseline``), which matters at reduced scale."""
    baseline = run_child([me, CHILD_FLAG, "baseline"], "baseline")["peak_rss"]
    print(f"baseline: a child importing torch, transformers and flagai_hf peaks at {baseline / GB:.2f} GB RSS")
    results = {"baseline_rss": baseline}
    for how in ("read", "load_file", "from_pretrained", "load_folder"):
        cached = make_cold(folder)
        args = [me, CHILD_FLAG, "read", str(folder)] if how == "read" else [me, CHILD_FLAG, "load", str(folder), how]
        step = run_child(args, f"load ({how})")
        step["cached_before"] = cached
        results[how] = step
        ratio = step["seconds"] / results["read"]["seconds"]
        extra = "" if how == "read" else (f", {ratio:.2f}x the read, dtypes {','.join(step['dtypes'])}, RSS after: "
                                          f"file {step['RssFile'] / GB:.2f} GB + anonymous "
                                          f"{step['RssAnon'] / GB:.2f} GB")
        print(f"load {how:15s} (cold, {cached:.0%} cached before): {step['seconds']:.2f} s{extra}, peak RSS "
              f"{step['peak_rss'] / GB:.2f} GB = {step['peak_rss'] / size:.2f}x the weights "
              f"({(step['peak_rss'] - baseline) / size:.2f}x net of the imports), major faults "
              f"{step['major_faults']}, swap used {swap_used() / GB:.2f} GB; {load_text()}")
    return results


def run_generation(me: str, folder: Path, spec: dict) -> dict:
    step = run_child([me, CHILD_FLAG, "generate", str(folder), json.dumps(spec)], "generate")
    per_token = step["next_token_s_median"]
    print(f"generate {spec['context']}+{spec['new_tokens']} bf16 batch 1, cache, "
          f"{'packed' if spec['pack'] else 'plain'} linears ({step['packed_layers']}): first token "
          f"{step['first_token_s']:.2f} s, then {per_token:.3f} s/token = {step['tokens_per_s_after_first']:.2f} "
          f"tokens/s ({step['weights'] / per_token / GB:.1f} GB/s of weights); load + pack "
          f"{step['prepare_seconds']:.1f} s; peak RSS {step['peak_rss'] / GB:.2f} GB, at the end "
          f"{step['rss_end']['VmRSS'] / GB:.2f} GB (file {step['rss_end']['RssFile'] / GB:.2f} GB); {load_text()}")
    print(f"check: first {spec['check_steps']} tokens {'equal' if step['tokens_equal'] else 'DIFFER'} to "
          f"generate(use_cache=False) ({step['check_seconds']:.1f} s), logits differ by <= "
          f"{step['check_logit_diff']:.3g}; tokens {step['tokens'][:8]}... recomputed {step['check_tokens']}")
    return step


def run_megatron(me: str, root: Path, spec: dict, size_args: list[str], max_shard_size: str) -> dict:
    source, converted = root / "megatron", root / "converted"
    write = run_child([str(HERE / "bench_glm10b_write.py"), str(source), "--layout", "megatron", *size_args],
                      "write megatron")
    size = sum(path.stat().st_size for path in weight_files(source))
    print(f"write megatron: {size / GB:.2f} GB in 4 shards, {write['seconds']:.1f} s, peak RSS "
          f"{write['peak_rss'] / GB:.2f} GB; {load_text()}")
    make_cold(source)
    convert = run_child([str(REPO / "conversion" / "convert_glm_megatron.py"), str(source), str(converted),
                         "--max-shard-size", max_shard_size], "convert")
    print(f"convert: {convert['seconds']:.1f} s, peak RSS {convert['peak_rss'] / GB:.2f} GB (target <= 4 GB), "
          f"major faults {convert['major_faults']}; {load_text()}")
    check = run_child([me, CHILD_FLAG, "slice", str(source), str(converted), json.dumps(spec)], "slice check")
    print(f"{check['layers']}-layer slice, {check['tokens']} tokens: converted (fp32) vs spec forward (fp64) on the "
          f"merged shards, max |logit diff| {check['max_abs_diff']:.3g} (logits up to {check['logit_scale']:.3g}; "
          f"target <= 1e-5; "
          f"the same equations in fp32 differ from fp64 by {check['plain_fp32_diff']:.3g}, our model with F.linear "
          f"instead of oneDNN by {check['aten_linear_diff']:.3g}); peak RSS "
          f"{check['peak_rss'] / GB:.2f} GB; {load_text()}")
    shutil.rmtree(source, ignore_errors=True)
    verify = run_child([me, CHILD_FLAG, "verify", str(converted), json.dumps(spec)], "verify")
    print(f"converted folder: {verify['tensors']} tensors, {len(verify['differing'])} differ from the written "
          f"values {verify['differing']}, missing {verify['missing']}; {verify['seconds']:.1f} s")
    return {"write": write, "convert": convert, "slice": check, "verify": verify, "bytes": size}


def run_as_child(child: list[str]) -> None:
    what, rest = child[0], child[1:]
    if what == "baseline":
        child_baseline()
    elif what == "read":
        child_read(Path(rest[0]))
    elif what == "load":
        child_load(Path(rest[0]), rest[1])
    elif what == "generate":
        child_generate(Path(rest[0]), json.loads(rest[1]))
    elif what == "slice":
        child_slice_check(Path(rest[0]), Path(rest[1]), json.loads(rest[2]))
    elif what == "verify":
        child_verify(Path(rest[0]), json.loads(rest[1]))
    else:
        raise SystemExit(f"unknown child step {what!r}")


if __name__ == "__main__":
    main()
