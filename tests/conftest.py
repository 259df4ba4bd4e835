"""Test-wide settings: offline, deterministic, transformers' caches in a temporary folder, examples/ importable."""

import os
import sys
import tempfile

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("HF_HOME", tempfile.mkdtemp(prefix="flagai_hf_tests_hf_home_"))
# examples/example_common.py (load_module) for the tests of the example scripts, as the scripts themselves import it
sys.path.append(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples"))

import pytest  # noqa: E402
import torch  # noqa: E402


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    """Tests that run an example in-process may apply its ``--threads``; later tests (and their comparisons with
    worker processes, which use torch's default) must not inherit it."""
    threads = torch.get_num_threads()
    yield
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
