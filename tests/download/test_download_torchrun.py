"""Every rank of a ``torchrun --nproc_per_node 2`` job (gloo, CPU) calls from_pretrain on an empty folder: each file
is fetched once and both ranks load identical weights."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from download_servers import FakeModelHub, folder_files, tiny_bert_folder, weights_digest

from flagai_hf import BertModel

MODEL = "tiny-bert"
WORKER = Path(__file__).with_name("download_worker.py")
ROOT = Path(__file__).resolve().parents[2]


def test_torchrun_ranks_download_once(tmp_path):
    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.exists():
        pytest.skip("torchrun is not installed beside this Python")
    source = tiny_bert_folder(tmp_path / "source")
    files = folder_files(source)
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "OMP_NUM_THREADS": "1", "TRANSFORMERS_VERBOSITY": "error"}
    env.pop("HF_HUB_OFFLINE", None)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with FakeModelHub({MODEL: files}) as hub:
        hub.faults[(MODEL, "model.safetensors")] = ["slow"]
        command = [str(torchrun), "--nproc_per_node", "2", "--master_addr", "127.0.0.1", "--master_port", str(port),
                   str(WORKER), hub.url, str(tmp_path / "checkpoints"), MODEL]
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
        assert done.returncode == 0, done.stderr[-3000:]
    found = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert sorted(entry["rank"] for entry in found) == ["0", "1"]
    assert {entry["digest"] for entry in found} == {weights_digest(BertModel.from_pretrained(source))}
    assert dict(hub.gets) == {(MODEL, name): 1 for name in files}
