"""Issue 12 item 5 c/d for the ``hf`` source: its repository listing is our own API call (``fetch.request``), so a
hostile Hub (a fault proxy on 127.0.0.1 in front of flagai_hf's static Hub mirror) gets the bounds of every other API
call: a dribbling listing stops at ``api_deadline``, an endless one at ``fetch.MAX_API_RESPONSE``, a 401 is not
retried, a redirect off the Hub's host is refused (the token stays), and nothing is created in ``download_path``.
``parse_listing`` refuses every malformed listing, naming the field."""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from download_servers import FakeHubMirror, FaultProxy, closed_port, folder_files, logits_of, tiny_bert_folder

from flagai_hf import BertModel
from flagai_hf.download import DownloadSettings, FetchError, ModelNotFoundError, UnsafeFileName, fetch, markers
from flagai_hf.download.huggingface import HubSource, ListedFile, parse_listing
from flagai_hf.download.sources import SourceUnavailable

REPO = "org/tiny"
LISTING = "/api/models/org/tiny/revision/main"  # the path the proxy sees (the query string ?blobs=true aside)
COMMIT = "a" * 40


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    folder = tiny_bert_folder(tmp_path_factory.mktemp("source"))
    return folder_files(folder), logits_of(BertModel.from_pretrained(folder))


@pytest.fixture
def online(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)


@pytest.fixture
def hub(source, online, monkeypatch):
    with FakeHubMirror({REPO: dict(source[0])}) as mirror, FaultProxy(mirror.url) as proxy:
        monkeypatch.setenv("HF_ENDPOINT", proxy.url)
        yield proxy


def load(path, model_name=REPO, **options):
    options = {"sources": "hf", "retry_backoff": 0.01, "download_retries": 1, "progress": False, **options}
    return BertModel.from_pretrain(path, model_name, **options)


def nothing_created(download_path):
    """No model folder, no lock: the listing is refused before anything is written."""
    assert list(download_path.iterdir()) == []


@pytest.fixture
def recording_server():
    """Start servers on 127.0.0.1 answering GETs with ``answer(handler)``; each GET's (port, Authorization) goes to
    ``seen``."""
    seen, servers = [], []

    def start(answer):
        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                seen.append((self.server.server_address[1], self.headers.get("Authorization")))
                answer(self)

        httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        servers.append(httpd)
        return httpd

    yield start, seen
    for httpd in servers:
        httpd.shutdown()
        httpd.server_close()


# -- the call's bounds -------------------------------------------------------------------------------------------------

def test_a_dribbling_listing_fails_at_the_api_deadline(hub, tmp_path):
    hub.faults[LISTING] = ["dribble"] * 4
    started = time.monotonic()
    with pytest.raises(ModelNotFoundError, match=r"hf: Hugging Face Hub \(.*\) cannot list 'org/tiny': "
                                                 r"DeadlineExceeded: .*GET .*/api/models/org/tiny/revision/main"
                                                 r"\?\.\.\. did not finish within its 1\.5s deadline \(the "
                                                 r"api_deadline"):
        load(tmp_path, api_deadline=1.5, read_timeout=10)
    assert time.monotonic() - started < 6
    nothing_created(tmp_path)


def test_an_endless_listing_is_refused_at_the_cap(hub, tmp_path):
    hub.faults[LISTING] = ["endless"] * 4
    with pytest.raises(ModelNotFoundError, match=rf"hf: Hugging Face Hub \(.*\) cannot list 'org/tiny': FetchError: "
                                                 rf".* is larger than {fetch.MAX_API_RESPONSE} bytes \(the most an "
                                                 rf"API answer may be\): refused"):
        load(tmp_path)
    assert hub.gets[LISTING] == 1  # not retried
    nothing_created(tmp_path)


def test_a_missing_repository_is_named(hub, tmp_path):
    with pytest.raises(ModelNotFoundError, match=r"hf: Hugging Face Hub \(.*\) has no repository 'org/missing' with "
                                                 r"a revision 'main' \(.*HTTP 404"):
        load(tmp_path, "org/missing")
    assert hub.gets["/api/models/org/missing/revision/main"] == 1
    nothing_created(tmp_path)


def test_a_401_is_a_clear_error_and_not_retried(hub, tmp_path):
    hub.faults[LISTING] = ["401"] * 3
    with pytest.raises(ModelNotFoundError, match=r"hf: Hugging Face Hub \(.*\) cannot list 'org/tiny': FetchError: "
                                                 r".*HTTP 401 Unauthorized for GET .* \(a private or gated repository "
                                                 r"needs a token: hf_token, HF_TOKEN or the saved login\)"):
        load(tmp_path, download_retries=3)
    assert hub.gets[LISTING] == 1
    nothing_created(tmp_path)


def test_a_transient_failure_of_the_listing_is_retried(hub, source, tmp_path):
    hub.faults[LISTING] = ["503"]
    model = load(tmp_path)
    assert hub.gets[LISTING] == 2
    assert (logits_of(model) - source[1]).abs().max().item() == 0.0


def test_the_chain_goes_on_to_the_next_source(hub, tmp_path):
    hub.faults[LISTING] = ["endless"]
    with pytest.raises(ModelNotFoundError) as error:
        load(tmp_path, sources="hf,modelhub", modelhub_url=f"http://127.0.0.1:{closed_port()}")
    message = str(error.value)
    assert "  - hf: Hugging Face Hub (" in message and "larger than 8388608 bytes" in message
    assert "  - modelhub: FetchError: BAAI ModelHub" in message and "Connection refused" in message
    nothing_created(tmp_path)


def test_offline_mode_lists_nothing(hub, monkeypatch):
    """huggingface_hub's own offline flag (read when it was imported) is respected even when the environment
    variable is gone: no request is sent."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(SourceUnavailable, match=r"Hugging Face Hub \(.*\): skipped: HF_HUB_OFFLINE=1"):
        HubSource(DownloadSettings(hf_endpoint=hub.url)).plan(REPO)
    assert not hub.gets


# -- redirects and the token -------------------------------------------------------------------------------------------

def test_a_redirect_to_another_host_is_refused_and_the_token_stays(recording_server, online):
    start, seen = recording_server

    def other_answer(handler):
        handler.send_response(200)
        handler.send_header("Content-Length", "2")
        handler.end_headers()
        handler.wfile.write(b"{}")

    other = start(other_answer)

    def hub_answer(handler):
        handler.send_response(302)
        handler.send_header("Location", f"http://127.0.0.1:{other.server_address[1]}{handler.path}")
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    hub = start(hub_answer)
    settings = DownloadSettings(hf_endpoint=f"http://127.0.0.1:{hub.server_address[1]}", hf_token="hf_secret",
                                download_retries=0)
    with pytest.raises(SourceUnavailable, match=rf"cannot list 'org/tiny': FetchError: .*redirects to "
                                                rf"http://127.0.0.1:{other.server_address[1]}/api/models/org/tiny/"
                                                rf"revision/main\?\.\.\., off its scheme, host and port: refused"):
        HubSource(settings).plan(REPO)
    assert seen == [(hub.server_address[1], "Bearer hf_secret")]  # the Hub got the token; the other host nothing


def test_a_same_host_redirect_is_followed(hub, source, tmp_path):
    hub.faults[LISTING] = [f"redirect:{LISTING}?blobs=true&moved=1"]
    model = load(tmp_path)
    assert hub.gets[LISTING] == 2
    assert (logits_of(model) - source[1]).abs().max().item() == 0.0


@pytest.mark.parametrize("location, followed", [
    ("http://hub.test/api/x", False),  # https -> http
    ("https://hub.test:8443/api/x", False),  # another port
    ("https://cdn.test/api/x", False),  # another host
    ("/api/elsewhere", True),
    ("https://HUB.test:443/api/x", True),  # the same origin, spelled differently
])
def test_an_api_redirect_stays_on_its_scheme_host_and_port(monkeypatch, location, followed):
    asked = []

    def exchange(method, url, headers, body, source, options, deadline):
        asked.append(url)
        if len(asked) == 1:
            return 302, "Found", [("Location", location)], b""
        return 200, "OK", [], b"done"

    monkeypatch.setattr(fetch, "exchange", exchange)
    options = fetch.FetchOptions(retries=0)
    if followed:
        assert fetch.request("GET", "https://hub.test/api/models", "hub", options) == b"done"
        assert len(asked) == 2
    else:
        with pytest.raises(FetchError, match=r"hub: GET https://hub.test/api/models redirects to .*, off its scheme, "
                                             r"host and port: refused"):
            fetch.request("GET", "https://hub.test/api/models", "hub", options)
        assert asked == ["https://hub.test/api/models"]


def test_at_most_five_redirects_are_followed(monkeypatch):
    asked = []

    def exchange(method, url, headers, body, source, options, deadline):
        asked.append(url)
        return 307, "Temporary Redirect", [("location", f"/again/{len(asked)}")], b""

    monkeypatch.setattr(fetch, "exchange", exchange)
    with pytest.raises(FetchError, match=r"redirected more than 5 times: refused"):
        fetch.request("GET", "http://hub.test/api", "hub", fetch.FetchOptions(retries=0))
    assert len(asked) == 6


# -- a clean Hub -------------------------------------------------------------------------------------------------------

def test_a_clean_hub_downloads_with_the_lock_and_the_marker(hub, source, tmp_path):
    model = load(tmp_path, hf_revision="v1.0/rc")
    assert hub.gets["/api/models/org/tiny/revision/v1.0%2Frc"] == 1  # the revision is one quoted path segment
    assert (logits_of(model) - source[1]).abs().max().item() == 0.0
    folder = tmp_path / REPO
    assert (folder / ".flagai_hf.lock").exists()
    assert markers.inspect(folder).state is markers.State.COMPLETE
    marker = json.loads((folder / markers.COMPLETE).read_text())
    checked = {name: entry["checked_by"] for name, entry in marker["files"].items()}
    assert checked["model.safetensors"] == "sha256" and checked["config.json"] == "git blob id"


# -- parse_listing -----------------------------------------------------------------------------------------------------

def listing(*siblings, sha=COMMIT) -> dict:
    return {"id": REPO, "sha": sha, "siblings": list(siblings)}


LFS = {"sha256": "B" * 64, "size": 7, "pointerSize": 130}


def test_a_good_listing_is_parsed_into_records():
    body = json.dumps(listing({"rfilename": "config.json", "size": 3, "blobId": "C" * 40},
                              {"rfilename": "model.safetensors", "size": 7, "blobId": "d" * 40, "lfs": LFS},
                              {"rfilename": "sub/dir/notes.txt"})).encode()
    commit, files = parse_listing(body, "hub", REPO)
    assert commit == COMMIT
    assert files == {
        "config.json": ListedFile("config.json", size=3, blob_id="c" * 40),
        "model.safetensors": ListedFile("model.safetensors", size=7, blob_id="d" * 40, lfs_sha256="b" * 64),
        "sub/dir/notes.txt": ListedFile("sub/dir/notes.txt"),
    }


GOOD = {"rfilename": "config.json", "size": 3}


@pytest.mark.parametrize("answer, problem", [
    (b"not json", r"is b'not json', not a JSON object"),
    (b"\xff\xfe\x00", r"is b'\\xff\\xfe\\x00', not a JSON object"),
    ([GOOD], r"not a JSON object"),
    ({"siblings": []}, r"gives no commit \(sha\)"),
    (listing(sha=5), r": sha is 5: it must be 40 hex digits"),
    (listing(sha="g" * 40), r": sha is 'g{40}': it must be 40 hex digits"),
    (listing(sha="a" * 39), r": sha is 'a{39}': it must be 40 hex digits"),
    (listing(sha="a" * 40 + "\n"), r": sha is 'a{40}\\n': it must be 40 hex digits"),
    ({"sha": COMMIT}, r": siblings is None, not a list"),
    ({"sha": COMMIT, "siblings": {"config.json": 3}}, r": siblings is \{'config.json': 3\}, not a list"),
    (listing(GOOD, 3), r": siblings\[1\] is 3, not an object"),
    (listing({"size": 3}), r": siblings\[0\]\.rfilename is None, not a non-empty string"),
    (listing({"rfilename": ""}), r": siblings\[0\]\.rfilename is '', not a non-empty string"),
    (listing({"rfilename": 7}), r": siblings\[0\]\.rfilename is 7, not a non-empty string"),
    (listing(GOOD, GOOD), r": siblings\[1\]\.rfilename 'config.json' is listed twice"),
    (listing({"rfilename": "a", "size": -1}), r": siblings\[0\]\.size is -1: a size is a non-negative integer"),
    (listing({"rfilename": "a", "size": True}), r": siblings\[0\]\.size is True: a size is a non-negative integer"),
    (listing({"rfilename": "a", "size": 1.0}), r": siblings\[0\]\.size is 1\.0: a size is a non-negative integer"),
    (listing({"rfilename": "a", "size": "12"}), r": siblings\[0\]\.size is '12': a size is a non-negative integer"),
    (listing({"rfilename": "a", "blobId": "x"}), r": siblings\[0\]\.blobId is 'x': it must be 40 hex digits"),
    (listing({"rfilename": "a", "blobId": 5}), r": siblings\[0\]\.blobId is 5: it must be 40 hex digits"),
    (listing({"rfilename": "a", "size": 7, "lfs": "b" * 64}), r": siblings\[0\]\.lfs is 'b{64}', not an object"),
    (listing({"rfilename": "a", "size": 7, "lfs": {"size": 7}}), r": siblings\[0\]\.lfs gives no sha256"),
    (listing({"rfilename": "a", "size": 7, "lfs": {**LFS, "sha256": "b" * 63}}),
     r": siblings\[0\]\.lfs\.sha256 is 'b{63}': it must be 64 hex digits"),
    (listing({"rfilename": "a", "size": 8, "lfs": LFS}), r": siblings\[0\]\.lfs\.size is 7, its size 8: they must "
                                                          r"agree"),
    (listing({"rfilename": "a", "size": 7, "lfs": {**LFS, "size": -7}}),
     r": siblings\[0\]\.lfs\.size is -7: a size is a non-negative integer"),
])
def test_a_malformed_listing_is_refused_naming_the_field(answer, problem):
    body = answer if isinstance(answer, bytes) else json.dumps(answer).encode()
    with pytest.raises(SourceUnavailable, match=rf"^hub: the listing of 'org/tiny'.*{problem}"):
        parse_listing(body, "hub", REPO)


@pytest.mark.parametrize("name", ["../config.json", "a/../../b", "/etc/passwd", "a\\b", ".flagai_hf.lock",
                                  "model.safetensors.flagai_hf.part", "a//b", "bad\x00name"])
def test_an_unsafe_name_is_refused(name):
    body = json.dumps(listing(GOOD, {"rfilename": name, "size": 1})).encode()
    with pytest.raises(UnsafeFileName, match=r"Refusing file name .* from hub"):
        parse_listing(body, "hub", REPO)
