"""from_pretrain through the BAAI ModelHub protocol (a local fake hub), with faults injected in the file server."""

import errno
import os

import pytest
from download_servers import FakeModelHub, closed_port, folder_files, logits_of, tiny_bert_folder

from flagai_hf import BertModel
from flagai_hf.download import ModelNotFoundError, markers

MODEL = "tiny-bert"


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    folder = tiny_bert_folder(tmp_path_factory.mktemp("source"))
    return folder, folder_files(folder), logits_of(BertModel.from_pretrained(folder))


@pytest.fixture
def hub(source, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with FakeModelHub({MODEL: dict(source[1])}) as server:
        yield server


def load(hub, path, **options):
    settings = {"sources": "local,modelhub", "modelhub_url": hub.url, "retry_backoff": 0.01, "progress": False,
                **options}
    return BertModel.from_pretrain(path, MODEL, **settings)


def assert_same_files(folder, files):
    for name, data in files.items():
        assert (folder / name).read_bytes() == data, name


def test_modelhub_download_loads_the_same_model(hub, source, tmp_path):
    model = load(hub, tmp_path)
    assert (logits_of(model) - source[2]).abs().max().item() == 0.0
    folder = tmp_path / MODEL
    assert markers.inspect(folder).state is markers.State.COMPLETE
    assert not (folder / markers.IN_PROGRESS).exists()
    assert_same_files(folder, source[1])
    assert set(hub.gets.values()) == {1} and len(hub.gets) == len(source[1])
    # A second call loads the verified folder without asking the network (the hub URL now points nowhere).
    again = load(hub, tmp_path, modelhub_url=f"http://127.0.0.1:{closed_port()}")
    assert (logits_of(again) - source[2]).abs().max().item() == 0.0


def test_dropped_connection_is_resumed_with_range(hub, source, tmp_path):
    hub.faults[(MODEL, "model.safetensors")] = ["drop", "drop"]
    load(hub, tmp_path)
    ranges = [header for model, name, header in hub.ranges if name == "model.safetensors"]
    assert len(ranges) == 2 and all(header.startswith("bytes=") and header != "bytes=0-" for header in ranges)
    assert_same_files(tmp_path / MODEL, source[1])


def test_server_errors_are_retried(hub, source, tmp_path):
    hub.faults[(MODEL, "config.json")] = ["500", "503", "503"]
    load(hub, tmp_path)
    assert hub.gets[(MODEL, "config.json")] == 4
    assert_same_files(tmp_path / MODEL, source[1])


def test_persistent_server_errors_give_up_with_a_clear_error(hub, tmp_path):
    hub.faults[(MODEL, "config.json")] = ["503"] * 10
    with pytest.raises(ModelNotFoundError, match=r"modelhub: FetchError: Downloading config.json .* failed 3 times"):
        load(hub, tmp_path, download_retries=2)
    assert hub.gets[(MODEL, "config.json")] == 3


def test_truncated_body_is_completed(hub, source, tmp_path):
    hub.faults[(MODEL, "model.safetensors")] = ["truncate"]
    load(hub, tmp_path)
    assert [name for _, name, _ in hub.ranges] == ["model.safetensors"]
    assert_same_files(tmp_path / MODEL, source[1])


def test_stalled_server_times_out_and_nothing_loads(hub, tmp_path):
    hub.stall_seconds = 3.0
    hub.faults[(MODEL, "model.safetensors")] = ["stall"] * 3
    with pytest.raises(ModelNotFoundError, match="read timeout"):
        load(hub, tmp_path, read_timeout=0.3, download_retries=1)
    state = markers.inspect(tmp_path / MODEL)
    assert state.state is markers.State.INTERRUPTED
    with pytest.raises(ModelNotFoundError, match="unfinished download"):
        BertModel.from_pretrain(tmp_path, MODEL, sources="local")


def test_corrupted_bytes_fail_the_digest_and_leave_nothing_loadable(source, tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with FakeModelHub({MODEL: dict(source[1])}, sha256=True) as hub:
        hub.faults[(MODEL, "model.safetensors")] = ["corrupt"]
        with pytest.raises(ModelNotFoundError, match="model.safetensors from BAAI ModelHub .*: sha256 .* differs"):
            load(hub, tmp_path)
    folder = tmp_path / MODEL
    assert not (folder / "model.safetensors").exists()
    assert not list(folder.glob("*.part"))
    assert not markers.inspect(folder).state.loadable
    with pytest.raises(ModelNotFoundError, match="unfinished download"):
        BertModel.from_pretrain(tmp_path, MODEL, sources="local")


def test_size_mismatch_is_an_error(hub, source, tmp_path):
    hub.wrong_size[(MODEL, "model.safetensors")] = len(source[1]["model.safetensors"]) - 10
    # The body is longer than the listed size: refused from its Content-Length, before a byte is written.
    with pytest.raises(ModelNotFoundError, match=r"model.safetensors from BAAI ModelHub .*: the server announces \d+ "
                                                 r"bytes \(Content-Length\), the source listed \d+"):
        load(hub, tmp_path)
    assert not (tmp_path / MODEL / "model.safetensors").exists()


def test_missing_file_is_named_with_its_source(hub, tmp_path):
    hub.listing_extra[MODEL] = ["extra_weights.bin"]
    with pytest.raises(ModelNotFoundError) as error:
        load(hub, tmp_path)
    assert "BAAI ModelHub (http://127.0.0.1:" in str(error.value)
    assert "has no file 'extra_weights.bin' for 'tiny-bert' (code 40002)" in str(error.value)


@pytest.mark.parametrize("name", ["../escape.txt", "/etc/passwd", "sub\\file.txt", "a/b/deep.txt", "", "sub/../x",
                                  "C:evil.txt", ".flagai_hf.lock", ".flagai_hf_complete.json",
                                  ".flagai_hf_download.json", "model.safetensors.flagai_hf.part", "sub/.FLAGAI_HF.lock"])
def test_hostile_file_names_are_refused(hub, tmp_path, name):
    """Refused while listing, before the folder or its lock exist: no empty folder, no lock is left behind."""
    hub.listing_extra[MODEL] = [name]
    with pytest.raises(ModelNotFoundError) as error:
        load(hub, tmp_path / "checkpoints")
    assert f"Refusing file name {name!r} from BAAI ModelHub" in str(error.value)
    assert list(tmp_path.iterdir()) == []  # not even download_path
    assert not hub.gets  # nothing was fetched


def test_damaged_complete_folder_is_downloaded_again(hub, source, tmp_path):
    load(hub, tmp_path)
    weights = tmp_path / MODEL / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])  # e.g. a disk that filled up while copying the folder
    assert markers.inspect(tmp_path / MODEL).state is markers.State.INTERRUPTED
    model = load(hub, tmp_path)
    assert (logits_of(model) - source[2]).abs().max().item() == 0.0
    assert hub.gets[(MODEL, "model.safetensors")] == 2 and hub.gets[(MODEL, "config.json")] == 1


def test_tokenizer_from_pretrain_downloads_the_folder_once(hub, source, tmp_path):
    from flagai_hf import FlagAIBertTokenizer

    tokenizer = FlagAIBertTokenizer.from_pretrain(tmp_path, MODEL, sources="local,modelhub", modelhub_url=hub.url,
                                                  progress=False)
    assert tokenizer("tok1 tok22 tok3")["input_ids"] == FlagAIBertTokenizer.from_pretrained(source[0])("tok1 tok22 tok3")[
        "input_ids"]
    model = load(hub, tmp_path)  # the model finds the folder the tokenizer completed: no second download
    assert (logits_of(model) - source[2]).abs().max().item() == 0.0
    assert set(hub.gets.values()) == {1}


def test_a_listed_lock_name_never_replaces_the_held_lock(hub, tmp_path):
    """A server listing the downloader's own lock file (or a marker) is refused before any byte is fetched: the lock
    stays the empty file that the lock library holds, and nothing loadable is left."""
    hub.models[MODEL] = {**hub.models[MODEL], ".flagai_hf.lock": b"server bytes"}
    folder = tmp_path / MODEL
    folder.mkdir()
    (folder / ".flagai_hf.lock").touch()  # the lock an earlier download left
    inode = (folder / ".flagai_hf.lock").stat().st_ino
    with pytest.raises(ModelNotFoundError, match=r"Refusing file name '.flagai_hf.lock' from BAAI ModelHub .*"
                                                 r"downloader's own file names"):
        load(hub, tmp_path)
    assert (folder / ".flagai_hf.lock").read_bytes() == b"" and (folder / ".flagai_hf.lock").stat().st_ino == inode
    assert sorted(p.name for p in folder.iterdir()) == [".flagai_hf.lock"]
    assert not hub.gets and not markers.inspect(folder).state.loadable


@pytest.mark.parametrize("size", [-5, "-5", 12.5, True, "12 bytes"])
def test_a_negative_or_non_integer_size_is_refused(hub, tmp_path, size):
    hub.wrong_size[(MODEL, "config.json")] = size
    with pytest.raises(ModelNotFoundError, match=rf"downloadCode for 'config.json' gave size {size!r}: a size is a "
                                                 rf"non-negative integer"):
        load(hub, tmp_path)
    assert not hub.gets and list(tmp_path.iterdir()) == []  # refused while listing: no folder, no lock


class _FullDisk:
    """A part file whose disk fills up after ``room`` bytes (``os.write``-level ENOSPC, as a full disk raises it)."""

    def __init__(self, path, mode, room):
        self.handle, self.room = open(path, mode), room

    def write(self, block):
        if self.handle.tell() + len(block) > self.room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return self.handle.write(block)

    def flush(self):
        self.handle.flush()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.handle.close()


def test_a_full_disk_is_the_disks_fault_and_not_retried(hub, tmp_path, monkeypatch):
    from flagai_hf.download import DiskError, fetch

    monkeypatch.setattr(fetch, "open", lambda path, mode: open(path, mode) if "r" in mode else _FullDisk(path, mode, 4096),
                        raising=False)
    with pytest.raises(DiskError, match=r"Cannot write model.safetensors to .*model.safetensors.flagai_hf.part: No "
                                        r"space left on device. This is the local disk's fault") as error:
        load(hub, tmp_path, sources="local,modelhub,s3", s3_bucket="never-asked")
    assert error.value.errno == errno.ENOSPC
    assert hub.gets[(MODEL, "model.safetensors")] == 1  # not retried as a dropped connection
    assert not markers.inspect(tmp_path / MODEL).state.loadable


def test_a_read_only_disk_is_named(hub, tmp_path, monkeypatch):
    from flagai_hf.download import DiskError, fetch

    def read_only(path, mode):
        if "r" in mode:
            return open(path, mode)
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))

    monkeypatch.setattr(fetch, "open", read_only, raising=False)
    with pytest.raises(DiskError, match=r"Cannot write config.json to .*: Read-only file system") as error:
        load(hub, tmp_path)
    assert error.value.errno == errno.EROFS and sum(hub.gets.values()) == 1


def test_an_oversized_api_answer_is_refused_unread(hub, tmp_path, monkeypatch):
    from flagai_hf.download import fetch

    monkeypatch.setattr(fetch, "MAX_API_RESPONSE", 4096)
    hub.listing_extra[MODEL] = [f"file{i}.txt" for i in range(2000)]  # a ~26 kB file list
    with pytest.raises(ModelNotFoundError, match=r"modelhub: FetchError: BAAI ModelHub .*: the answer to GET "
                                                 r".*searchModelFileByName\?\.\.\. is larger than 4096 bytes"):
        load(hub, tmp_path)
    assert not hub.gets and not markers.inspect(tmp_path / MODEL).state.loadable
