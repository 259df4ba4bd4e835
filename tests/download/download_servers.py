"""Servers for the download tests, on 127.0.0.1 only: a fake BAAI ModelHub (its REST API plus a file server with
injectable faults) and a tiny model to serve. Started and stopped by the tests."""

import hashlib
import json
import socket
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlsplit

import torch

from flagai_hf import BertModel, FlagAIBertConfig
from flagai_hf.export.mirror import HubMirror

# The fetcher's refusals of a body past the size the source listed, as every source's tests expect them (regexes;
# format with the listed ``size`` and the announced ``length``).
BODY_PAST_LISTED_SIZE = (r"the server sent more than {size} bytes \(the size the source listed\); stopped there and "
                         r"deleted the part file")
LENGTH_PAST_LISTED_SIZE = (r"the server announces {length} bytes \(Content-Length\), the source listed {size}: "
                           r"refused before reading the body")


def tiny_bert_folder(folder: Path) -> Path:
    """A tiny flagai_hf BERT saved with save_pretrained (weights and config only: the Hub source fetches no code
    files), plus a vocab file; returns the folder."""
    torch.manual_seed(0)
    config = FlagAIBertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                              intermediate_size=64, max_position_embeddings=64)
    BertModel(config).save_pretrained(folder, hub_ready=False)
    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    (folder / "vocab.txt").write_text("\n".join(special + [f"tok{i}" for i in range(99 - len(special))]) + "\n")
    return folder


def folder_files(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir()) if path.is_file()}


def logits_of(model) -> torch.Tensor:
    ids = torch.tensor([[1, 5, 7, 9, 2]])
    with torch.no_grad():
        return model(input_ids=ids)["logits"]


def weights_digest(model) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().contiguous().numpy().tobytes())
    return digest.hexdigest()


def closed_port() -> int:
    """A local port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class FakeModelHub:
    """The ModelHub protocol (searchModleByName, searchModelFileByName, downloadCode) and a file server.

    ``models``: model name -> {file name -> bytes}. ``faults``: (model, file) -> list of fault names consumed one
    per GET: "500", "503", "drop" (close after half the body), "stall" (headers, then silence), "truncate"
    (announce and send only half), "corrupt" (flip one byte), "slow" (dribble the body, see ``slow_delay``),
    "endless" (the file, then zeros without end and no Content-Length), "endless-announced" (the same behind a
    Content-Length of 1 TB), "dribble" (2 bytes every 0.5 s), "cut" (half the body with no Content-Length). The
    endless and dribbling loops stop by themselves after ``ENDLESS_LIMIT`` bytes / ``DRIBBLE_STEPS`` steps, or when
    the client hangs up.
    ``api_faults``: API path (e.g. "/api/searchModelFileByName") -> "dribble" (answer 2 bytes every 0.5 s).
    ``listing_extra``: model -> extra names listed (hostile or missing ones); ``sha256``: also advertise digests;
    ``wrong_size``: (model, file) -> the size downloadCode gives (``None``: no size at all).
    """

    ENDLESS_LIMIT = 256 << 20
    DRIBBLE_STEPS = 120

    def __init__(self, models: dict[str, dict[str, bytes]], sha256: bool = False):
        self.models = models
        self.faults: dict[tuple[str, str], list[str]] = {}
        self.listing_extra: dict[str, list[str]] = {}
        self.advertise_sha256 = sha256
        self.wrong_size: dict[tuple[str, str], int | None] = {}
        self.api_faults: dict[str, str] = {}
        self.gets = Counter()  # (model, file) -> file GETs
        self.served_at: dict[tuple[str, str], float] = {}  # (model, file) -> when its last body was sent
        self.ranges: list[tuple[str, str, str]] = []  # (model, file, Range header) of ranged GETs
        self.slow_delay = 0.02
        self.stall_seconds = 5.0
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)

    def _handler(self):
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                parts = urlsplit(self.path)
                query = {key: values[0] for key, values in parse_qs(parts.query).items()}
                if hub.api_faults.get(parts.path) == "dribble":
                    self._dribble(None)
                elif parts.path == "/api/searchModleByName":
                    name = query.get("model_name", "")
                    model_id = f"{list(hub.models).index(name) + 100}" if name in hub.models else "null"
                    self._send(200, model_id.encode())
                elif parts.path == "/api/searchModelFileByName":
                    name = query.get("model_name", "")
                    listing = list(hub.models.get(name, {})) + hub.listing_extra.get(name, [])
                    self._send(200, repr(listing).encode())  # a Python literal, as the real hub answers
                elif parts.path.startswith("/files/"):
                    _, _, model, name = parts.path.split("/", 3)
                    self._file(unquote(model), unquote(name))
                else:
                    self._send(404, b"not found")

            def do_POST(self):
                if urlsplit(self.path).path != "/api/downloadCode":
                    return self._send(404, b"not found")
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if hub.api_faults.get("/api/downloadCode") == "dribble":
                    return self._dribble(None)
                names = {str(list(hub.models).index(name) + 100): name for name in hub.models}
                model = names.get(str(body["model_id"]))
                files = hub.models.get(model, {})
                name = body["checkpoint_name"]
                if name not in files:
                    answer = {"code": "40002", "files": list(files)}
                else:
                    answer = {"code": "0", "url": f"{hub.url}/files/{quote(model)}/{quote(name)}",
                              "size": hub.wrong_size.get((model, name), len(files[name]))}
                    if answer["size"] is None:
                        del answer["size"]
                    if hub.advertise_sha256:
                        answer["sha256"] = hashlib.sha256(files[name]).hexdigest()
                self._send(200, json.dumps(answer).encode(), "application/json")

            def _file(self, model, name):
                data = hub.models.get(model, {}).get(name)
                if data is None:
                    return self._send(404, b"no such file")
                with hub.lock:
                    hub.gets[(model, name)] += 1
                    queue = hub.faults.get((model, name), [])
                    fault = queue.pop(0) if queue else None
                    if self.headers.get("Range"):
                        hub.ranges.append((model, name, self.headers["Range"]))
                if fault in ("500", "503"):
                    return self._send(int(fault), b"server error")
                start = 0
                if self.headers.get("Range"):
                    start = int(self.headers["Range"].split("=")[1].split("-")[0])
                body = data[start:]
                if fault == "corrupt":
                    body = bytes([body[0] ^ 0xFF]) + body[1:]
                if fault in ("endless", "endless-announced", "dribble"):
                    return self._dribble(body) if fault == "dribble" else self._endless(body, fault)
                if fault == "cut":  # half the body, no Content-Length: the end cannot be told from a drop
                    self.send_response(200)
                    self.end_headers()
                    self.wfile.write(body[:len(body) // 2])
                    self.close_connection = True
                    return
                half = len(body) // 2
                announced = half if fault == "truncate" else len(body)
                self.send_response(206 if start else 200)
                self.send_header("Content-Length", str(announced))
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.end_headers()
                try:
                    if fault in ("drop", "truncate"):
                        self.wfile.write(body[:half])
                    elif fault == "stall":  # headers, then silence
                        self.wfile.flush()
                        time.sleep(hub.stall_seconds)
                    elif fault == "slow":
                        for offset in range(0, len(body), 512):
                            self.wfile.write(body[offset:offset + 512])
                            self.wfile.flush()
                            time.sleep(hub.slow_delay)
                    else:
                        self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass
                hub.served_at[(model, name)] = time.time()
                self.close_connection = True

            def _endless(self, body, fault):
                """The body, then zeros until ENDLESS_LIMIT or the client hangs up."""
                self.send_response(200)
                if fault == "endless-announced":
                    self.send_header("Content-Length", str(1 << 40))
                self.end_headers()
                zeros = bytes(64 << 10)
                try:
                    self.wfile.write(body)
                    for _ in range(hub.ENDLESS_LIMIT // len(zeros)):
                        self.wfile.write(zeros)
                except (BrokenPipeError, ConnectionResetError):
                    pass
                self.close_connection = True

            def _dribble(self, body):
                """2 bytes every 0.5 s (the file's, or an API answer's "[") for DRIBBLE_STEPS steps at most."""
                self.send_response(200)
                if body is not None:
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                data = body if body is not None else b"[" + b" " * (2 * hub.DRIBBLE_STEPS)
                try:
                    for step in range(hub.DRIBBLE_STEPS):
                        self.wfile.write(data[2 * step:2 * step + 2])
                        self.wfile.flush()
                        time.sleep(0.5)
                except (BrokenPipeError, ConnectionResetError):
                    pass
                self.close_connection = True

            def _send(self, status, body, content_type="text/plain"):
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        return Handler


class FakeHubMirror(HubMirror):
    """flagai_hf's static Hub mirror (``flagai_hf.export.mirror.HubMirror``: ``/api/models/<repo>``, ``HEAD``/``GET
    /<repo>/resolve/<rev>/<file>`` with Range support) over ``repos`` (repo id -> {file -> bytes}, editable while
    serving), with a fixed commit, GETs counted in ``gets`` and the (repo, file) pairs in ``corrupt`` served with one
    byte flipped."""

    COMMIT = "0123456789abcdef0123456789abcdef01234567"

    def __init__(self, repos: dict[str, dict[str, bytes]]):
        super().__init__(repos)
        self.gets = Counter()
        self.corrupt: set[tuple[str, str]] = set()

    def revision(self, repo: str) -> str:
        return self.COMMIT

    @staticmethod
    def is_lfs(name: str) -> bool:
        return name.endswith(".safetensors")

    def body(self, repo: str, name: str, data: bytes) -> bytes:
        self.gets[(repo, name)] += 1
        return bytes([data[0] ^ 0xFF]) + data[1:] if (repo, name) in self.corrupt else data


class FaultProxy:
    """A reverse proxy on 127.0.0.1 in front of another local HTTP server (moto's S3), injecting faults into GETs.

    ``faults``: a path suffix (e.g. "/model.safetensors", "/revision/main"; the query string is not part of the
    path) -> list of faults consumed one per GET of a matching path: an HTTP status ("503", "401", ...: that status,
    no body), "redirect:<Location>" (a 302 there), "drop" (close after half the body), "corrupt" (flip one byte),
    "long" (1 KiB more than the body, with a Content-Length saying so), "endless" (the body, then zeros without end:
    no Content-Length, 64 MiB at most), "dribble" (2 bytes every 0.25 s, 30 s at most). ``gets`` counts GETs per
    path; ``ranges`` lists (path, Range header) of ranged GETs."""

    def __init__(self, upstream: str):
        self.upstream = urlsplit(upstream)
        self.faults: dict[str, list[str]] = {}
        self.gets = Counter()
        self.ranges: list[tuple[str, str]] = []
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    __enter__ = FakeModelHub.__enter__
    __exit__ = FakeModelHub.__exit__

    def _handler(self):
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_HEAD(self):
                self._forward("HEAD")

            def do_GET(self):
                self._forward("GET")

            def _forward(self, method):
                import http.client

                path = urlsplit(self.path).path
                fault = None
                if method == "GET":
                    with proxy.lock:
                        proxy.gets[path] += 1
                        if self.headers.get("Range"):
                            proxy.ranges.append((path, self.headers["Range"]))
                        for suffix, queue in proxy.faults.items():
                            if path.endswith(suffix) and queue:
                                fault = queue.pop(0)
                if fault is not None and (fault.isdigit() or fault.startswith("redirect:")):
                    self.send_response(int(fault) if fault.isdigit() else 302)
                    if fault.startswith("redirect:"):
                        self.send_header("Location", fault.split(":", 1)[1])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                upstream = http.client.HTTPConnection(proxy.upstream.hostname, proxy.upstream.port, timeout=30)
                headers = {key: value for key, value in self.headers.items() if key.lower() != "host"}
                headers["Host"] = proxy.upstream.netloc
                upstream.request(method, self.path, headers=headers)
                response = upstream.getresponse()
                body = response.read()
                upstream.close()
                self.send_response(response.status)
                for key, value in response.getheaders():
                    if key.lower() not in ("transfer-encoding", "connection", "content-length", "server", "date"):
                        self.send_header(key, value)
                if fault == "long":
                    body += b"\0" * 1024
                length = response.getheader("Content-Length") if method == "HEAD" else str(len(body))
                if fault in ("endless", "dribble"):
                    length = None
                if length is not None:
                    self.send_header("Content-Length", length)
                self.end_headers()
                if method == "HEAD":
                    return
                if fault == "corrupt" and body:
                    body = bytes([body[0] ^ 0xFF]) + body[1:]
                if fault in ("endless", "dribble"):
                    self._without_end(body, fault)
                    return
                try:
                    self.wfile.write(body[:len(body) // 2] if fault == "drop" else body)
                except (BrokenPipeError, ConnectionResetError):
                    pass
                self.close_connection = True

            def _without_end(self, body, fault):
                self.close_connection = True
                blocks = [body] + [b"\0" * 65536] * 1024 if fault == "endless" else [b"ab"] * 120
                for block in blocks:
                    try:
                        self.wfile.write(block)
                        self.wfile.flush()
                    except OSError:
                        return
                    if fault == "dribble":
                        time.sleep(0.25)

        return Handler
