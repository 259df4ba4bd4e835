"""A small static Hugging Face Hub mirror: serve model folders at an ``HF_ENDPOINT`` (standard library only).

It answers what ``huggingface_hub`` 2.x asks an endpoint for when transformers loads a repo id:

- ``GET /api/models/ORG/NAME`` and ``.../revision/REV``: the repo's info (``sha``, ``siblings`` with sizes, git blob
  ids and, for LFS-type files such as ``*.safetensors``, their sha256);
- ``GET /api/models/ORG/NAME/tree/REV[/PATH]``: a folder listing (transformers looks for ``additional_chat_templates``);
- ``HEAD`` / ``GET /ORG/NAME/resolve/REV/FILE``: the file, with ``X-Repo-Commit``, ``ETag`` and ``Content-Length``
  headers and ``Range`` support; a missing repo or file is a 404 with ``X-Error-Code`` (``RepoNotFound`` /
  ``EntryNotFound``), which the client turns into its usual errors at once (no retries).

Any revision name (``main``, a branch, the commit) resolves to the repo's single revision: a digest of its content
for a directory, so a client cache notices a re-export. Repos come from a directory laid out as ``ROOT/ORG/NAME/``
(see `flagai_hf.export.hub_layout.place_in_mirror`) or from a mapping ``{"ORG/NAME": {file: bytes}}`` (read at each
request, so it may change while serving). Bind it to 127.0.0.1 (the default): it has no authentication.

    with HubMirror("mirror_dir") as mirror:          # or: flagai-hf serve-mirror mirror_dir --port 8080
        os.environ["HF_ENDPOINT"] = mirror.url       # before huggingface_hub is imported (it reads it once)
"""

import hashlib
import json
import threading
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from .hub_layout import folder_files, folder_revision


def git_blob_id(data: bytes) -> str:
    """The git object id of a file's content (what the Hub reports for files not stored in LFS)."""
    return hashlib.sha1(f"blob {len(data)}\0".encode() + data).hexdigest()


class HubMirror:
    """Serve ``root`` (a directory of ``ORG/NAME/`` folders, or ``{"ORG/NAME": {file: bytes}}``) on ``host:port``
    (port 0: any free port; see ``url``). Use as a context manager, or call ``start()`` / ``stop()``, or
    ``serve_forever()`` in the foreground."""

    def __init__(self, root: str | Path | Mapping[str, Mapping[str, bytes]], host: str = "127.0.0.1", port: int = 0):
        if isinstance(root, Mapping):
            self.repos, self.root = root, None
        else:
            self.repos, self.root = None, Path(root)
            if not self.root.is_dir():
                raise FileNotFoundError(f"mirror directory {self.root} does not exist")
        self.server = ThreadingHTTPServer((host, port), self._handler())
        self.server.daemon_threads = True
        self.url = f"http://{host}:{self.server.server_address[1]}"
        self.thread: threading.Thread | None = None
        self._revisions: dict[str, tuple[tuple, str]] = {}  # repo -> (file stats, revision): hash each export once

    # -- content ------------------------------------------------------------------------------------------------------

    def repo_ids(self) -> list[str]:
        if self.root is None:
            return sorted(self.repos)
        return sorted(f"{org.name}/{repo.name}" for org in self.root.iterdir() if org.is_dir()
                      for repo in org.iterdir() if repo.is_dir())

    def _repo_dir(self, repo: str) -> Path | None:
        parts = repo.split("/")
        if len(parts) != 2 or any(part in ("", ".", "..") for part in parts):
            return None
        path = self.root / parts[0] / parts[1]
        return path if path.is_dir() else None

    def has_repo(self, repo: str) -> bool:
        return repo in self.repos if self.root is None else self._repo_dir(repo) is not None

    def file_names(self, repo: str) -> list[str]:
        if self.root is None:
            return list(self.repos[repo])
        return [relative.as_posix() for relative in folder_files(self._repo_dir(repo))]

    def read(self, repo: str, name: str) -> bytes | None:
        """The file's bytes, or ``None`` when the repo has no such file."""
        if self.root is None:
            return self.repos.get(repo, {}).get(name)
        if name not in self.file_names(repo):  # only names listed in the folder: no path escapes
            return None
        return (self._repo_dir(repo) / name).read_bytes()

    def revision(self, repo: str) -> str:
        """The repo's commit id (40 hex digits)."""
        if self.root is None:
            digest = hashlib.sha1()
            for name, data in sorted(self.repos[repo].items()):
                digest.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
            return digest.hexdigest()
        folder = self._repo_dir(repo)
        stats = tuple((name, (folder / name).stat().st_size, (folder / name).stat().st_mtime_ns)
                      for name in self.file_names(repo))
        cached = self._revisions.get(repo)
        if cached is None or cached[0] != stats:
            cached = self._revisions[repo] = (stats, folder_revision(folder))
        return cached[1]

    @staticmethod
    def is_lfs(name: str) -> bool:
        return name.endswith((".safetensors", ".bin", ".model", ".pt"))

    def etag(self, name: str, data: bytes) -> str:
        return hashlib.sha256(data).hexdigest() if self.is_lfs(name) else git_blob_id(data)

    def info(self, repo: str) -> dict:
        """What ``GET /api/models/<repo>`` answers."""
        siblings = []
        for name in self.file_names(repo):
            data = self.read(repo, name)
            entry = {"rfilename": name, "size": len(data), "blobId": git_blob_id(data)}
            if self.is_lfs(name):
                entry["lfs"] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 130}
            siblings.append(entry)
        return {"id": repo, "modelId": repo, "sha": self.revision(repo), "private": False, "disabled": False,
                "gated": False, "siblings": siblings}

    def tree(self, repo: str, folder: str, recursive: bool) -> list[dict] | None:
        """What ``GET /api/models/<repo>/tree/<rev>/<folder>`` answers: the files (and, unless ``recursive``, the
        sub-folders) under ``folder``; ``None`` when there is no such folder."""
        prefix = f"{folder.strip('/')}/" if folder.strip("/") else ""
        names = [name for name in self.file_names(repo) if name.startswith(prefix)]
        if prefix and not names:
            return None
        entries, folders = [], set()
        for name in names:
            rest = name[len(prefix):]
            if "/" in rest and not recursive:
                folders.add(prefix + rest.split("/")[0])
                continue
            data = self.read(repo, name)
            entry = {"type": "file", "path": name, "size": len(data), "oid": git_blob_id(data)}
            if self.is_lfs(name):
                entry["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 130}
            entries.append(entry)
        entries += [{"type": "directory", "path": path, "oid": hashlib.sha1(path.encode()).hexdigest()}
                    for path in sorted(folders)]
        return entries

    def body(self, repo: str, name: str, data: bytes) -> bytes:
        """The bytes a GET sends (a hook for subclasses, e.g. tests that corrupt or count downloads)."""
        return data

    # -- serving ------------------------------------------------------------------------------------------------------

    def start(self) -> "HubMirror":
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        if self.thread is not None:
            self.thread.join(timeout=5)

    def serve_forever(self) -> None:
        try:
            self.server.serve_forever(poll_interval=0.2)
        finally:
            self.server.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def _handler(self):
        mirror = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_HEAD(self):
                self._serve(head=True)

            def do_GET(self):
                self._serve(head=False)

            def _serve(self, head: bool):
                path = unquote(urlsplit(self.path).path)
                if path.startswith("/api/models/"):
                    parts = path[len("/api/models/"):].strip("/").split("/")
                    repo = "/".join(parts[:2])
                    if not mirror.has_repo(repo):
                        return self._send(404, b'{"error": "Repository not found"}', {"X-Error-Code": "RepoNotFound"},
                                          head)
                    if len(parts) >= 4 and parts[2] == "tree":  # /api/models/ORG/NAME/tree/REV[/PATH]
                        query = parse_qs(urlsplit(self.path).query)
                        recursive = query.get("recursive", ["false"])[0].lower() == "true"
                        listing = mirror.tree(repo, "/".join(parts[4:]), recursive)
                        if listing is None:
                            return self._send(404, b'{"error": "Entry not found"}', {"X-Error-Code": "EntryNotFound"},
                                              head)
                        return self._send(200, json.dumps(listing).encode(), {"Content-Type": "application/json"},
                                          head)
                    return self._send(200, json.dumps(mirror.info(repo)).encode(),
                                      {"Content-Type": "application/json"}, head)
                if "/resolve/" not in path:
                    return self._send(404, b"not found", {}, head)
                repo, rest = path.lstrip("/").split("/resolve/", 1)
                if not mirror.has_repo(repo):
                    return self._send(404, b"Repository not found", {"X-Error-Code": "RepoNotFound"}, head)
                name = rest.split("/", 1)[1] if "/" in rest else ""
                data = mirror.read(repo, name)
                if data is None:
                    return self._send(404, b"Entry not found", {"X-Error-Code": "EntryNotFound"}, head)
                headers = {"X-Repo-Commit": mirror.revision(repo), "ETag": f'"{mirror.etag(name, data)}"',
                           "Accept-Ranges": "bytes"}
                if not head:
                    data = mirror.body(repo, name, data)
                start = 0
                if self.headers.get("Range"):
                    start = int(self.headers["Range"].split("=")[1].split("-")[0])
                    headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
                self._send(206 if start else 200, data[start:], headers, head)

            def _send(self, status: int, body: bytes, headers: dict, head: bool = False):
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if not head:
                    try:
                        self.wfile.write(body)
                    except (BrokenPipeError, ConnectionResetError):
                        pass

        return Handler


__all__ = ["HubMirror", "git_blob_id"]
