"""The brief, deterministic run of every fuzz target (what CI runs: tests/fuzz/test_fuzz_targets.py).

One process imports every target once (flagai_hf and torch load once), then forks one child per target, which
fuzzes it under atheris for ``--runs`` inputs from the fixed ``--seed``, its regression corpus ``fuzz/corpus/<target>``
first. New inputs and crash files go to a temporary folder, never into the repository. Prints one line per target
(``<target>: ok`` or ``<target>: FAILED`` and the end of its log) and exits 1 if any failed.

    python fuzz/run_all.py [--runs 400] [--seed 1] [target ...]
"""

import argparse
import importlib
import os
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _harness import CORPUS  # noqa: E402

# Tokenizer targets first: the first import of flagai_hf and transformers' tokenizer layers happens under their
# instrumentation, so those stay instrumented for coverage in every child.
TARGETS = ("tokenizer_bert", "tokenizer_glm", "tokenizer_gpt2", "tokenizer_t5",
           "config_json", "modelhub_answers", "hub_listing", "safetensors_index", "file_names")
MAX_LEN = 512  # bytes per input in the brief run (libFuzzer's default is 4096)


def run(name: str, module, runs: int, seed: int) -> tuple[bool, str]:
    """Fuzz one target in a forked child; (passed, the child's log)."""
    import atheris

    work = Path(tempfile.mkdtemp(prefix=f"fuzz_{name}_"))
    (work / "corpus").mkdir()
    log = work / "log.txt"
    pid = os.fork()
    if pid == 0:  # the child: it fuzzes, then ends (libFuzzer itself ends it on a finding)
        code = 70  # setup failed
        try:
            with open(log, "w") as handle:
                os.dup2(handle.fileno(), 1)
                os.dup2(handle.fileno(), 2)
            if hasattr(module, "prepare"):
                module.prepare()
            seeds = [str(CORPUS / name)] if (CORPUS / name).is_dir() else []
            argv = [name, str(work / "corpus"), *seeds, f"-seed={seed}", f"-atheris_runs={runs}",
                    f"-max_len={MAX_LEN}", f"-artifact_prefix={work}/", "-timeout=60", "-rss_limit_mb=3000"]
            atheris.Setup(argv, module.TestOneInput)
            atheris.Fuzz()
            code = 0
        except SystemExit as end:  # libFuzzer's own exit: 0 once -atheris_runs inputs passed
            code = end.code if isinstance(end.code, int) else 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    text = log.read_text(errors="replace")
    crashes = sorted(path.name for path in work.iterdir() if path.name.startswith(("crash-", "timeout-", "oom-")))
    return os.waitstatus_to_exitcode(status) == 0 and not crashes, text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("targets", nargs="*", metavar="target", help=f"some of {', '.join(TARGETS)} (default: all)")
    parser.add_argument("--runs", type=int, default=400, help="inputs per target (default 400)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    targets = args.targets or list(TARGETS)
    unknown = sorted(set(targets) - set(TARGETS))
    if unknown:
        parser.error(f"unknown target(s) {', '.join(unknown)}: the targets are {', '.join(TARGETS)}")
    modules = {name: importlib.import_module(name) for name in TARGETS if name in targets}
    failed = []
    for name, module in modules.items():
        passed, text = run(name, module, args.runs, args.seed)
        done = [line for line in text.splitlines() if line.startswith("Done ")]
        print(f"{name}: {'ok' if passed else 'FAILED'} ({done[-1] if done else 'no Done line'})", flush=True)
        if not passed:
            failed.append(name)
            lines = [line for line in text.splitlines() if not line.startswith("INFO: Instrumenting")]
            print("\n".join(lines[-60:]), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
