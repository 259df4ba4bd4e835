"""Issue 12 item 5 for the ``hf`` source: Hub files now come through our own fetcher, so a hostile Hub (a fault
proxy on 127.0.0.1 in front of flagai_hf's static Hub mirror) gets the same outcomes as our other sources: an
endless body or a Content-Length past the listed size stops at the listed size, a dribbling server at the
``file_deadline``, a wrong sha256 is caught; nothing loadable is left and the folder's lock stays intact."""

import pytest
from download_servers import (BODY_PAST_LISTED_SIZE, LENGTH_PAST_LISTED_SIZE, FakeHubMirror, FaultProxy, folder_files,
                              logits_of, tiny_bert_folder)

from flagai_hf import BertModel
from flagai_hf.download import ModelNotFoundError, markers

REPO = "org/tiny"


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    folder = tiny_bert_folder(tmp_path_factory.mktemp("source"))
    return folder_files(folder), logits_of(BertModel.from_pretrained(folder))


@pytest.fixture
def hub(source, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    with FakeHubMirror({REPO: dict(source[0])}) as mirror, FaultProxy(mirror.url) as proxy:
        monkeypatch.setenv("HF_ENDPOINT", proxy.url)
        yield proxy


def load(path, **options):
    return BertModel.from_pretrain(path, REPO, sources="hf", retry_backoff=0.01, download_retries=1, progress=False,
                                   **options)


def nothing_loadable(folder):
    """No weights in place and no completion marker (a part file may stay after a deadline, to be resumed)."""
    assert not (folder / "model.safetensors").exists()
    assert not markers.inspect(folder).state.loadable


@pytest.mark.parametrize("fault, message", [("endless", BODY_PAST_LISTED_SIZE), ("long", LENGTH_PAST_LISTED_SIZE)])
def test_a_body_past_the_listed_size_is_refused(hub, source, tmp_path, fault, message):
    size = len(source[0]["model.safetensors"])
    hub.faults["/model.safetensors"] = [fault] * 4
    with pytest.raises(ModelNotFoundError, match=r"hf: IntegrityError: model\.safetensors from Hugging Face Hub .*: "
                                                 + message.format(size=size, length=size + 1024)):
        load(tmp_path)
    folder = tmp_path / REPO
    nothing_loadable(folder)
    assert sum(path.stat().st_size for path in folder.rglob("*") if path.is_file()) < 2 * len(
        source[0]["model.safetensors"]) + (1 << 20)  # no endless file on disk


def test_a_dribbling_hub_fails_at_the_file_deadline(hub, tmp_path):
    hub.faults["/model.safetensors"] = ["dribble"] * 4
    with pytest.raises(ModelNotFoundError, match=r"hf: DeadlineExceeded: Downloading model\.safetensors from Hugging "
                                                 r"Face Hub .* did not finish within its 1\.5s deadline"):
        load(tmp_path, file_deadline=1.5, read_timeout=10)
    nothing_loadable(tmp_path / REPO)


def test_a_wrong_sha256_is_caught_and_a_clean_hub_still_loads(hub, source, tmp_path):
    hub.faults["/model.safetensors"] = ["corrupt"]  # one GET: an IntegrityError is not retried
    with pytest.raises(ModelNotFoundError, match=r"hf: IntegrityError: model\.safetensors from Hugging Face Hub .*"
                                                 r"sha256 \w+ differs from the advertised"):
        load(tmp_path)
    nothing_loadable(tmp_path / REPO)
    assert (tmp_path / REPO / ".flagai_hf.lock").exists()  # the lock file is ours, untouched
    model = load(tmp_path)  # the faults are spent: the next run downloads and verifies
    assert (logits_of(model) - source[1]).abs().max().item() == 0.0
    assert markers.inspect(tmp_path / REPO).state is markers.State.COMPLETE


def test_the_token_goes_to_the_hub_host_only_not_where_it_redirects(tmp_path):
    """``fetch`` sends a RemoteFile's Authorization header to its own host and drops it when redirected to another
    (the Hub's CDN): two servers on 127.0.0.1, different ports."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from flagai_hf.download.fetch import FetchOptions, RemoteFile, fetch

    seen = []

    def server(answer):
        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                seen.append((self.server.server_address[1], self.headers.get("Authorization")))
                answer(self)

        httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return httpd

    def cdn_answer(handler):
        handler.send_response(200)
        handler.send_header("Content-Length", "5")
        handler.end_headers()
        handler.wfile.write(b"hello")

    cdn = server(cdn_answer)

    def hub_answer(handler):
        handler.send_response(302)
        handler.send_header("Location", f"http://127.0.0.1:{cdn.server_address[1]}/blob")
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    hub = server(hub_answer)
    try:
        remote = RemoteFile(name="f.txt", url=f"http://127.0.0.1:{hub.server_address[1]}/resolve/f.txt", size=5,
                            headers=(("authorization", "Bearer secret"),))
        fetch(remote, tmp_path / "f.txt", "test", FetchOptions(progress=False, retries=0))
    finally:
        for httpd in (hub, cdn):
            httpd.shutdown()
            httpd.server_close()
    assert (tmp_path / "f.txt").read_bytes() == b"hello"
    assert seen == [(hub.server_address[1], "Bearer secret"), (cdn.server_address[1], None)]
