"""The BAAI ModelHub REST protocol, as FlagAI's ``file_utils.py`` speaks it.

1. ``GET {base}/api/searchModleByName?model_name=<name>`` (sic: "Modle") -> the model id, or the text ``null``;
2. ``GET {base}/api/searchModelFileByName?model_name=<name>`` -> a Python-literal list of file names (read with
   ``ast.literal_eval``, never ``eval``);
3. ``POST {base}/api/downloadCode`` with JSON ``{"model_id", "checkpoint_name"}`` per file -> JSON ``{code, url,
   size}``; ``code == '40002'`` means the file does not exist;
4. ``GET url`` (usually the hub's Kingsoft S3 storage) with the streamed, resumable, size-checked fetcher.
"""

import ast
import json
import re
from pathlib import Path
from urllib.parse import quote

from .fetch import MissingRemoteFile, RemoteFile, request
from .names import check_file_name
from .sources import DownloadSettings, SourceUnavailable, download_files

MISSING_FILE_CODE = "40002"


class ModelHubSource:
    def __init__(self, settings: DownloadSettings):
        self.settings = settings
        self.base = settings.modelhub_url.rstrip("/")
        self.label = f"BAAI ModelHub ({self.base})"

    def describe(self) -> str:
        return self.label

    def plan(self, model_name: str) -> list[RemoteFile]:
        """Every file of ``model_name`` with its URL and size (API calls only: nothing is written)."""
        model_id = self.model_id(model_name)
        return [self.remote_file(model_id, model_name, name) for name in self.file_names(model_name)]

    def download(self, remotes: list[RemoteFile], folder: Path) -> dict:
        return download_files(remotes, folder, self.label, self.settings)

    def model_id(self, model_name: str) -> str:
        text = self._get("searchModleByName", model_name).strip().strip('"')
        if not text or text == "null":
            raise SourceUnavailable(f"{self.label} has no model named {model_name!r}")
        return text

    def file_names(self, model_name: str) -> list[str]:
        return parse_file_list(self._get("searchModelFileByName", model_name), self.label, model_name)

    def remote_file(self, model_id: str, model_name: str, name: str) -> RemoteFile:
        body = request("POST", f"{self.base}/api/downloadCode", self.label, self.settings.fetch_options,
                       json_body={"model_id": model_id, "checkpoint_name": name})
        return parse_download_answer(body, self.label, model_name, name)

    def _get(self, endpoint: str, model_name: str) -> str:
        url = f"{self.base}/api/{endpoint}?model_name={quote(model_name)}"
        try:
            body = request("GET", url, self.label, self.settings.fetch_options)
        except MissingRemoteFile as error:
            raise SourceUnavailable(f"{self.label} does not serve {endpoint} ({error})") from None
        return _text(body, f"{self.label}: the answer to {endpoint}")


# The answers are untrusted bytes: each parser below returns what it promises or raises SourceUnavailable /
# MissingRemoteFile / UnsafeFileName naming the answer (fuzzed by fuzz/modelhub_answers.py).

def parse_file_list(text: str, label: str, model_name: str) -> list[str]:
    """searchModelFileByName's answer (a Python literal list, or JSON) -> the checked file names."""
    try:
        names = ast.literal_eval(text.strip())
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        try:
            names = json.loads(text)
        except (ValueError, RecursionError):
            names = None
    if not isinstance(names, (list, tuple)) or not names:
        raise SourceUnavailable(f"{label} answered the file list of {model_name!r} with {text[:200]!r}, "
                                f"not a non-empty list of file names")
    return [check_file_name(name, label) for name in names]


def parse_download_answer(body: bytes, label: str, model_name: str, name: str) -> RemoteFile:
    """downloadCode's JSON answer for file ``name`` -> where to fetch it and its size (and sha256, if given)."""
    try:
        answer = json.loads(body)
    except (ValueError, RecursionError):
        answer = None
    if not isinstance(answer, dict):
        raise SourceUnavailable(f"{label}: downloadCode for {name!r} answered {body[:200]!r}, not a JSON object")
    if str(answer.get("code")) == MISSING_FILE_CODE:
        offered = answer.get("files")
        raise MissingRemoteFile(f"{label} has no file {name!r} for {model_name!r} (code 40002)"
                                + (f"; it offers {str(offered)[:500]}" if offered else ""))
    url, size, sha256 = answer.get("url"), answer.get("size"), answer.get("sha256") or None
    if not url or not isinstance(url, str):
        raise SourceUnavailable(f"{label}: downloadCode for {name!r} gave no url (answer code "
                                f"{str(answer.get('code'))[:50]!r})")
    if size in (None, ""):
        size = None
    elif isinstance(size, int) and not isinstance(size, bool) and size >= 0:
        pass
    elif isinstance(size, str) and (digits := re.fullmatch(r"[ \t\r\n]*([0-9]{1,20})[ \t\r\n]*", size)):
        size = int(digits[1])  # ASCII digits only: int() and str.strip() accept other digits and spaces
    else:
        raise SourceUnavailable(f"{label}: downloadCode for {name!r} gave size {size!r}: a size is a "
                                f"non-negative integer")
    if sha256 is not None and not (isinstance(sha256, str) and re.fullmatch(r"[0-9a-fA-F]{64}", sha256)):
        raise SourceUnavailable(f"{label}: downloadCode for {name!r} gave sha256 {str(sha256)[:100]!r}: a sha256 "
                                f"is 64 hex digits")
    return RemoteFile(name=name, url=url, size=size, sha256=sha256)


def _text(body: bytes, what: str) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise SourceUnavailable(f"{what} is not UTF-8 text ({error})") from None
