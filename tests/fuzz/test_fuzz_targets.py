"""The brief fuzz run in CI: every target in fuzz/ under atheris, deterministic (fixed seed, 300 inputs each, its
regression corpus fuzz/corpus/<target> first), in one subprocess that forks one child per target (fuzz/run_all.py).
A finding fails the target's test with the fuzzer's report; the longer run is described in fuzz/README.md."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FUZZ = ROOT / "fuzz"
TARGETS = sorted(path.stem for path in FUZZ.glob("*.py") if not path.stem.startswith("_") and path.stem != "run_all")

pytest.importorskip("atheris")


@pytest.fixture(scope="module")
def brief_run():
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, str(FUZZ / "run_all.py"), "--runs", "300", "--seed", "1"], cwd=ROOT,
                            env=env, capture_output=True, text=True, timeout=540)
    lines = [line for line in result.stdout.splitlines() if not line.startswith("INFO: Instrumenting")]
    status = {match[1]: match[2] for line in lines if (match := re.match(r"^(\w+): (ok|FAILED) ", line))}
    return status, "\n".join(lines[-80:]) + result.stderr[-3000:]


def test_every_target_file_is_run():
    sys.path.insert(0, str(FUZZ))
    try:
        from run_all import TARGETS as RUN
    finally:
        sys.path.pop(0)
    assert sorted(RUN) == TARGETS


@pytest.mark.parametrize("target", TARGETS)
def test_fuzz_target_finds_nothing(brief_run, target):
    status, log = brief_run
    assert status.get(target) == "ok", f"{target}: {status.get(target, 'not run')}\n{log}"
