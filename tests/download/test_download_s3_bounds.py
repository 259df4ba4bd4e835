"""Issue 12 item 5 for the S3 source: its listing and HEAD calls (boto3) are bounded like our other API calls. A
hostile S3 on 127.0.0.1 (bounded loops) that dribbles, stalls, answers without end, fails every time or lists keys
forever gets a clear error within the configured timeouts / deadline / retries / listing cap, and nothing is left in
the download folder."""

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

from flagai_hf import BertModel
from flagai_hf.download import DownloadSettings, ModelNotFoundError, fetch, s3
from flagai_hf.download.s3 import S3Source

pytest.importorskip("boto3")

BUCKET, MODEL = "models", "tiny"


class HostileS3(ThreadingHTTPServer):
    """ListObjectsV2 and HeadObject on 127.0.0.1 answering as ``mode`` says: ``"endless-keys"`` (every page full and
    truncated), ``"dribble"`` (2 bytes every 0.2 s, 30 s at most), ``"stall"`` (nothing for 3 s), ``"huge"`` (a
    listing body of up to 64 MiB), ``"503"`` (always), ``"ok"`` (one object). ``requests`` counts what was asked."""

    daemon_threads = True

    def __init__(self, mode: str):
        super().__init__(("127.0.0.1", 0), self.Handler)
        self.mode, self.requests, self.pages = mode, 0, 0
        self.url = f"http://127.0.0.1:{self.server_address[1]}"

    def __enter__(self):
        threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.shutdown()
        self.server_close()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_HEAD(self):
            self.server.requests += 1
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.send_header("ETag", '"' + "0" * 32 + '"')
            self.end_headers()

        def do_GET(self):
            server = self.server
            server.requests += 1
            if server.mode == "503":
                return self._send(503, b"<Error><Code>SlowDown</Code></Error>")
            if server.mode == "stall":
                time.sleep(3)
                return
            if server.mode == "dribble":
                self._start(200, None)
                for _ in range(150):
                    try:
                        self.wfile.write(b"<a")
                        self.wfile.flush()
                    except OSError:
                        return
                    time.sleep(0.2)
                return
            if server.mode == "huge":
                self._start(200, None)
                block = b"<Contents><Key>x</Key></Contents>" * 2000
                for _ in range((64 << 20) // len(block)):
                    try:
                        self.wfile.write(block)
                    except OSError:
                        return
                return
            prefix = parse_qs(urlsplit(self.path).query).get("prefix", [""])[0]
            server.pages += 1
            if server.mode == "endless-keys":
                count = 1000
                entries = "".join(f"<Contents><Key>{prefix}f{server.pages}-{i}</Key><Size>1</Size></Contents>"
                                  for i in range(count))
                more = f"<IsTruncated>true</IsTruncated><NextContinuationToken>t{server.pages}</NextContinuationToken>"
            else:
                count, entries = 1, f"<Contents><Key>{prefix}config.json</Key><Size>2</Size></Contents>"
                more = "<IsTruncated>false</IsTruncated>"
            self._send(200, (f'<?xml version="1.0" encoding="UTF-8"?><ListBucketResult xmlns="http://s3.amazonaws'
                             f'.com/doc/2006-03-01/"><Name>{BUCKET}</Name><Prefix>{prefix}</Prefix>'
                             f"<KeyCount>{count}</KeyCount><MaxKeys>1000</MaxKeys>{more}{entries}"
                             "</ListBucketResult>").encode())

        def _start(self, status, length):
            self.send_response(status)
            self.send_header("Content-Type", "application/xml")
            if length is not None:
                self.send_header("Content-Length", str(length))
            self.end_headers()

        def _send(self, status, body):
            self._start(status, len(body))
            self.wfile.write(body)


def settings(server, **options):
    return DownloadSettings(s3_endpoint=server.url, s3_bucket=BUCKET, s3_anonymous=True, retry_backoff=0.01,
                            progress=False, **options)


def test_a_listing_of_endless_keys_stops_at_the_cap():
    with HostileS3("endless-keys") as server:
        with pytest.raises(fetch.FetchError, match=rf"lists more than {s3.MAX_LISTED_OBJECTS} objects under "
                                                   rf"'{MODEL}/' \(model '{MODEL}'\).*check s3_prefix"):
            S3Source(settings(server)).plan(MODEL)
    assert server.pages == s3.MAX_LISTED_OBJECTS // s3.LIST_PAGE_SIZE + 1  # stopped at the first page past the cap


def test_a_dribbling_listing_ends_at_the_api_deadline(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)  # network sources allowed (to 127.0.0.1 only here)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    with HostileS3("dribble") as server:
        with pytest.raises(ModelNotFoundError, match=r"DeadlineExceeded: S3 mirror s3://models/ at http://127\.0"
                                                     r".*: ListObjectsV2 did not finish within its 1\.5s deadline "
                                                     r"\(the api_deadline setting\)"):
            BertModel.from_pretrain(tmp_path, MODEL, sources="s3", s3_endpoint=server.url, s3_bucket=BUCKET,
                                    s3_anonymous=True, api_deadline=1.5, read_timeout=10, progress=False)
    assert list(tmp_path.iterdir()) == []  # refused while listing: no folder, no lock


def test_an_endless_listing_body_is_read_up_to_the_api_cap(monkeypatch):
    monkeypatch.setattr(fetch, "MAX_API_RESPONSE", 1 << 20)
    with HostileS3("huge") as server:
        with pytest.raises(fetch.FetchError, match=r"the answer to GET http://127\.0\.0\.1:\d+/models\?\.\.\. is "
                                                   r"larger than 1048576 bytes"):
            S3Source(settings(server)).plan(MODEL)
    assert server.requests == 1  # not retried


@pytest.mark.parametrize("mode", ["503", "stall"])
def test_failing_requests_are_retried_as_configured_then_reported(mode):
    from botocore.exceptions import ClientError, HTTPClientError

    with HostileS3(mode) as server:
        with pytest.raises(ClientError if mode == "503" else HTTPClientError,
                           match=r"SlowDown|S3 mirror .*: timed out \(connect 10\.0s, read 0\.3s\)"):
            S3Source(settings(server, download_retries=2, read_timeout=0.3)).plan(MODEL)
    assert server.requests == 3  # download_retries=2: the first request and 2 retries


def test_a_well_behaved_listing_still_plans():
    with HostileS3("ok") as server:
        remotes = S3Source(settings(server)).plan(MODEL)
    assert [(remote.name, remote.size, remote.md5) for remote in remotes] == [("config.json", 2, "0" * 32)]
