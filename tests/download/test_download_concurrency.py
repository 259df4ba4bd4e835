"""Several processes downloading one model at once (each file fetched once, identical weights everywhere), and a
download killed with SIGKILL that resumes where it stopped. The processes come from a forkserver that imported
flagai_hf once, so each starts in a blink."""

import multiprocessing
import os
import signal
import time

import pytest
from download_servers import FakeModelHub, folder_files, tiny_bert_folder, weights_digest
from download_worker import load_and_digest

from flagai_hf import BertModel
from flagai_hf.download import markers

MODEL = "tiny-bert"


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    folder = tiny_bert_folder(tmp_path_factory.mktemp("source"))
    return folder, folder_files(folder), weights_digest(BertModel.from_pretrained(folder))


@pytest.fixture(scope="module")
def context():
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["flagai_hf", "download_servers", "download_worker"])
    return context


@pytest.fixture(autouse=True)
def online(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


def test_four_processes_download_each_file_once(source, context, tmp_path):
    with FakeModelHub({MODEL: dict(source[1])}) as hub:
        hub.slow_delay = 0.02
        hub.faults[(MODEL, "model.safetensors")] = ["slow"]  # keep the first download going while the others ask
        with context.Pool(4) as pool:
            found = pool.starmap(load_and_digest, [(hub.url, str(tmp_path), MODEL)] * 4, chunksize=1)
    assert len({entry["pid"] for entry in found}) == 4
    # All four asked while the weights were still being downloaded: three of them waited on the lock.
    assert max(entry["started"] for entry in found) < hub.served_at[(MODEL, "model.safetensors")]
    assert {entry["digest"] for entry in found} == {source[2]}
    assert dict(hub.gets) == {(MODEL, name): 1 for name in source[1]}
    assert markers.inspect(tmp_path / MODEL).state is markers.State.COMPLETE


def test_download_killed_midway_resumes_byte_identical(source, context, tmp_path):
    weights = source[1]["model.safetensors"]
    part = tmp_path / MODEL / "model.safetensors.flagai_hf.part"
    with FakeModelHub({MODEL: dict(source[1])}) as hub:
        hub.slow_delay = 0.05  # ~190 chunks of 512 bytes: about 10 s for the whole file
        hub.faults[(MODEL, "model.safetensors")] = ["slow"]
        worker = context.Process(target=load_and_digest, args=(hub.url, str(tmp_path), MODEL))
        worker.start()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (part.exists() and part.stat().st_size >= 8192):
            time.sleep(0.05)
        os.kill(worker.pid, signal.SIGKILL)
        worker.join(timeout=30)
        assert worker.exitcode == -signal.SIGKILL
        kept = part.stat().st_size
        assert 0 < kept < len(weights)
        assert markers.inspect(tmp_path / MODEL).state is markers.State.INTERRUPTED
        with pytest.raises(FileNotFoundError, match="unfinished download"):
            BertModel.from_pretrain(tmp_path, MODEL, sources="local")

        model = BertModel.from_pretrain(tmp_path, MODEL, sources="local,modelhub", modelhub_url=hub.url,
                                        progress=False)
        assert hub.ranges == [(MODEL, "model.safetensors", f"bytes={kept}-")]
    assert (tmp_path / MODEL / "model.safetensors").read_bytes() == weights
    assert weights_digest(model) == source[2]
    assert markers.inspect(tmp_path / MODEL).state is markers.State.COMPLETE
