"""Bounded downloads against hostile servers on 127.0.0.1 (issue 12 item 5 a, b, c, h): a body never passes the
listed size or the cap, a file listed with neither size nor digest must prove itself whole, a dribbling server
fails at the deadline, and a refused listing leaves nothing on disk. Each time: the error names the file, nothing
loadable is left, the lock is untouched."""

import json
import time

import pytest
from download_servers import BODY_PAST_LISTED_SIZE, LENGTH_PAST_LISTED_SIZE, logits_of
from test_download_modelhub import MODEL, hub, source  # noqa: F401 -- the fake hub serving a tiny BERT, and its files
from test_download_modelhub import load as load_once

from flagai_hf import BertModel
from flagai_hf.download import ModelNotFoundError, markers

WEIGHTS = "model.safetensors"


def load(hub, path, **options):
    return load_once(hub, path, **{"download_retries": 1, **options})


def disk_use(folder):
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def assert_nothing_loadable(tmp_path, *, parts_allowed=False):
    folder = tmp_path / MODEL
    assert not (folder / WEIGHTS).exists()
    if not parts_allowed:
        assert not list(folder.glob("*.flagai_hf.part"))
    assert (folder / ".flagai_hf.lock").read_bytes() == b""  # the lock is the lock library's empty file
    assert not markers.inspect(folder).state.loadable
    with pytest.raises(ModelNotFoundError, match="unfinished download"):
        BertModel.from_pretrain(tmp_path, MODEL, sources="local")


@pytest.mark.parametrize("fault, message", [("endless", BODY_PAST_LISTED_SIZE),
                                            ("endless-announced", LENGTH_PAST_LISTED_SIZE)])
def test_a_body_longer_than_the_listed_size_is_cut_there_and_refused(hub, source, tmp_path, fault, message):
    size = len(source[1][WEIGHTS])
    hub.faults[(MODEL, WEIGHTS)] = [fault] * 3
    with pytest.raises(ModelNotFoundError, match=rf"{WEIGHTS} from BAAI ModelHub .*: " +
                       message.format(size=size, length=1 << 40)):
        load(hub, tmp_path)
    assert hub.gets[(MODEL, WEIGHTS)] == 1  # a lying server is not asked again
    assert disk_use(tmp_path / MODEL) < sum(map(len, source[1].values())) + 4096  # never past the listed sizes
    assert_nothing_loadable(tmp_path)


@pytest.mark.parametrize("fault, message", [
    ("endless", r"the server sent more than 1048576 bytes \(max_unverified_size, the cap on a file whose source listed "
                r"no size"),
    ("endless-announced", r"the server announces 1099511627776 bytes \(Content-Length\), more than max_unverified_size "
                          r"\(1048576\), the cap on a file whose source listed no size: refused before reading"),
])
def test_an_endless_body_without_a_listed_size_stops_at_the_cap(hub, tmp_path, fault, message):
    hub.wrong_size[(MODEL, WEIGHTS)] = None  # downloadCode gives no size (and the hub no digest)
    hub.faults[(MODEL, WEIGHTS)] = [fault]
    cap = 1 << 20
    with pytest.raises(ModelNotFoundError, match=rf"{WEIGHTS} from BAAI ModelHub .*: {message}"):
        load(hub, tmp_path, max_unverified_size=cap)
    assert disk_use(tmp_path / MODEL) < cap + 4096
    assert_nothing_loadable(tmp_path)


def test_a_file_with_neither_size_nor_digest_is_checked_by_its_structure(hub, source, tmp_path):
    for name in ("config.json", WEIGHTS):
        hub.wrong_size[(MODEL, name)] = None
    model = load(hub, tmp_path)
    assert (logits_of(model) - source[2]).abs().max().item() == 0.0
    files = json.loads((tmp_path / MODEL / markers.COMPLETE).read_text())["files"]
    assert {name: entry["checked_by"] for name, entry in files.items()} == {
        "config.json": "structure", WEIGHTS: "structure", "vocab.txt": "size"}


def test_a_cut_file_with_neither_size_nor_digest_is_refused(hub, tmp_path):
    hub.wrong_size[(MODEL, WEIGHTS)] = None
    hub.faults[(MODEL, WEIGHTS)] = ["cut"]  # half the body, then the connection closes as if it were the end
    with pytest.raises(ModelNotFoundError, match=rf"{WEIGHTS} from BAAI ModelHub .*: the source gave neither its size "
                                                 rf"nor a digest, and it is not a whole .safetensors file"):
        load(hub, tmp_path)
    assert_nothing_loadable(tmp_path)


def test_a_file_type_without_a_structure_check_needs_a_size_or_digest(hub, tmp_path):
    hub.wrong_size[(MODEL, "vocab.txt")] = None
    with pytest.raises(ModelNotFoundError, match=r"vocab.txt from BAAI ModelHub .*: the source gave neither its size "
                                                 r"nor a digest, and a .txt file cannot be checked for completeness"):
        load(hub, tmp_path)
    assert not (tmp_path / MODEL / "vocab.txt").exists()
    assert not markers.inspect(tmp_path / MODEL).state.loadable


def test_a_dribbling_file_server_fails_at_the_file_deadline(hub, tmp_path):
    hub.faults[(MODEL, WEIGHTS)] = ["dribble"] * 3  # 2 bytes every 0.5 s: no read ever times out
    started = time.monotonic()
    with pytest.raises(ModelNotFoundError, match=rf"DeadlineExceeded: Downloading {WEIGHTS} from BAAI ModelHub .* did "
                                                 rf"not finish within its 1.5s deadline \(the file_deadline setting\)"):
        load(hub, tmp_path, file_deadline=1.5, read_timeout=10)
    assert time.monotonic() - started < 30  # functional bound: the deadline held (the server would go on 60 s)
    assert hub.gets[(MODEL, WEIGHTS)] == 1
    assert_nothing_loadable(tmp_path, parts_allowed=True)  # the part stays for a later resume, never loaded


@pytest.mark.parametrize("endpoint", ["/api/searchModelFileByName", "/api/downloadCode"])
def test_a_dribbling_api_answer_fails_at_the_api_deadline(hub, tmp_path, endpoint):
    hub.api_faults[endpoint] = "dribble"
    started = time.monotonic()
    with pytest.raises(ModelNotFoundError, match=r"DeadlineExceeded: BAAI ModelHub .*: (GET|POST) .* did not finish "
                                                 r"within its 1s deadline \(the api_deadline setting\)"):
        load(hub, tmp_path, api_deadline=1.0, read_timeout=10)
    assert time.monotonic() - started < 30
    assert list(tmp_path.iterdir()) == []  # the listing failed: no folder, no lock
    assert not hub.gets
