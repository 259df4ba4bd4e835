"""Streamed, resumable, verified download of one file over HTTP(S).

``fetch(url, target, ...)`` writes to ``<target>.flagai_hf.part`` beside the target and resumes an existing part with
an HTTP ``Range`` request. Connection errors, read timeouts, 429/5xx answers and bodies shorter than announced are
retried (bounded, exponential backoff; a request that brought new bytes resets the count). The finished part is
checked against the advertised size and digests (sha256, or md5 for S3 ETags) and only then renamed onto the target
with ``os.replace``; a part that fails the check is deleted. Connect and read timeouts are separate.

Bounds, whatever the server does: a body is never written past the size the source listed (else the
``Content-Length``, else ``max_unverified_size``): a server sending more is refused and its part deleted. A file whose
source gave neither size nor digest must also pass a structure check of its type (``formats.check_whole``) before it
is moved into place. Every file has an overall deadline (``file_deadline``, all requests and retries together) and
every API call one of its own (``api_deadline``), on top of the per-read timeout: a server that dribbles bytes fails
when the deadline is spent.
"""

import hashlib
import http.client
import json
import os
import re
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin, urlsplit

from transformers.utils import logging

from .formats import check_whole

logger = logging.get_logger(__name__)

PART_SUFFIX = ".flagai_hf.part"
CHUNK = 1 << 20  # 1 MiB
RETRY_STATUSES = {408, 429, 500, 502, 503, 504}
REDIRECT_STATUSES = (301, 302, 303, 307, 308)
MAX_API_RESPONSE = 8 << 20  # bytes of one API answer (ModelHub file lists, download codes, Hub listings) read at most
MAX_API_REDIRECTS = 5  # redirects one API GET follows, each to the host it was sent to


class FetchError(OSError):
    """A download that failed for good (after retries where retrying made sense)."""

    status: int | None = None  # the HTTP status of the answer that ended an API call (``request``), if one did


class MissingRemoteFile(FetchError):
    """The server answered that the file does not exist (HTTP 404/410)."""


class IntegrityError(FetchError):
    """The downloaded bytes do not match the advertised size or digest."""


class DiskError(FetchError):
    """The local disk refused the bytes (no space left, read-only file system, quota, ...): the disk's fault, so
    neither retried nor handed to the next source."""


class DeadlineExceeded(FetchError):
    """A file or API call that did not finish within its overall deadline; not retried."""


class TransientFailure(Exception):
    """A transient failure worth another request."""


@dataclass(frozen=True)
class FetchOptions:
    connect_timeout: float = 10.0  # seconds to open the connection
    read_timeout: float = 60.0  # seconds without a byte before giving up on a request
    retries: int = 5  # failed requests in a row before giving up
    backoff: float = 1.0  # first wait between retries in seconds; doubled after each failure
    progress: bool = True  # a tqdm bar per file
    file_deadline: float = 6 * 3600.0  # seconds for one file, every request and retry included
    api_deadline: float = 120.0  # seconds for one API call (file list, download code), retries included
    max_unverified_size: int = 16 << 30  # bytes written at most for a file whose source listed no size


class Deadline:
    """The moment an operation must be done by; ``remaining()`` raises ``DeadlineExceeded`` once it has passed."""

    def __init__(self, seconds: float, what: str, setting: str):
        self.seconds, self.what, self.setting = seconds, what, setting
        self.end = time.monotonic() + seconds

    def remaining(self) -> float:
        left = self.end - time.monotonic()
        if left <= 0:
            raise DeadlineExceeded(f"{self.what} did not finish within its {self.seconds:g}s deadline (the "
                                   f"{self.setting} setting); stopped there")
        return left

    def timeout(self, limit: float) -> float:
        """A socket timeout: ``limit``, or less when the deadline is nearer."""
        return min(limit, self.remaining())


@dataclass(frozen=True)
class RemoteFile:
    """One file a source offers: where to get it and what it must be."""

    name: str  # path inside the model folder, already checked by names.check_file_name
    url: str
    size: int | None = None
    sha256: str | None = None  # hex
    md5: str | None = None  # hex (an S3 ETag of a single-part upload)
    headers: tuple[tuple[str, str], ...] = ()

    @property
    def checked_by(self) -> str:
        """What proves the downloaded file whole: its digest, its size, or (neither listed) its structure."""
        if self.sha256:
            return "sha256"
        if self.md5:
            return "md5"
        return "size" if self.size is not None else "structure"


def part_path(target: Path) -> Path:
    return target.with_name(target.name + PART_SUFFIX)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def verify(path: Path, remote: RemoteFile, source: str) -> str:
    """The sha256 of ``path`` after checking its size and digests against ``remote``; ``IntegrityError`` if off."""
    size = path.stat().st_size
    if remote.size is not None and size != remote.size:
        raise IntegrityError(f"{remote.name} from {source}: got {size} bytes, the source advertised {remote.size}")
    sha256, md5 = hashlib.sha256(), hashlib.md5()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            sha256.update(block)
            if remote.md5:
                md5.update(block)
    if remote.sha256 and sha256.hexdigest() != remote.sha256.lower():
        raise IntegrityError(f"{remote.name} from {source}: sha256 {sha256.hexdigest()} differs from the advertised "
                             f"{remote.sha256}")
    if remote.md5 and md5.hexdigest() != remote.md5.lower():
        raise IntegrityError(f"{remote.name} from {source}: md5 {md5.hexdigest()} differs from the advertised "
                             f"{remote.md5} (ETag)")
    if remote.checked_by == "structure":  # the server's word that the body ended is no proof
        problem = check_whole(path, remote.name)
        if problem:
            raise IntegrityError(f"{remote.name} from {source}: the source gave neither its size nor a digest, and "
                                 f"{problem}")
    return sha256.hexdigest()


def fetch(remote: RemoteFile, target: Path, source: str, options: FetchOptions = FetchOptions()) -> str:
    """Download ``remote`` to ``target`` (resuming a part file left by an earlier run); returns its sha256.
    Within ``options.file_deadline`` or ``DeadlineExceeded`` (the part file stays, for the next run to resume)."""
    deadline = Deadline(options.file_deadline, f"Downloading {remote.name} from {source}", "file_deadline")
    target.parent.mkdir(parents=True, exist_ok=True)
    part = part_path(target)
    resumed = part.exists() and part.stat().st_size > 0
    _download_part(remote, part, source, options, deadline)
    try:
        digest = verify(part, remote, source)
    except IntegrityError:
        part.unlink(missing_ok=True)
        if not resumed:
            raise
        # The part kept from an earlier run may hold another server's bytes: one fresh download from zero.
        logger.warning(f"{remote.name} from {source}: resumed file failed verification; downloading it again")
        _download_part(remote, part, source, options, deadline)
        try:
            digest = verify(part, remote, source)
        except IntegrityError:
            part.unlink(missing_ok=True)
            raise
    os.replace(part, target)
    return digest


def _download_part(remote: RemoteFile, part: Path, source: str, options: FetchOptions, deadline: Deadline) -> None:
    """Append to ``part`` until it holds the whole body, retrying transient failures."""
    failures = 0
    bar = _progress_bar(remote, part, options)
    try:
        while True:
            have = part.stat().st_size if part.exists() else 0
            if remote.size is not None and have > remote.size:
                part.unlink()
                have = 0
            if remote.size is not None and have == remote.size and have > 0:
                return
            try:
                complete, received = _request_into(remote, part, have, source, options, bar, deadline)
            except TransientFailure as error:
                received = part.stat().st_size - have if part.exists() else 0
                failures = 0 if received > 0 else failures + 1
                if failures > options.retries:
                    raise FetchError(f"Downloading {remote.name} from {source} failed {failures} times in a row "
                                     f"(last: {error}); url {_redact(remote.url)}") from None
                wait = options.backoff * 2 ** max(failures - 1, 0)
                count = f"failure {failures}/{options.retries}" if failures else "resuming after new bytes"
                logger.warning(f"{remote.name} from {source}: {error}; retrying in {wait:.1f}s ({count})")
                time.sleep(min(wait, deadline.remaining()))
                continue
            if complete:
                return
    finally:
        if bar is not None:
            bar.close()


def _request_into(remote: RemoteFile, part: Path, have: int, source: str, options: FetchOptions, bar,
                  deadline: Deadline) -> tuple[bool, int]:
    """One GET (following redirects) appending to ``part`` from byte ``have``; returns (complete, bytes received).
    Never writes past ``_body_limit``: a server sending more is refused (``IntegrityError``, part deleted)."""
    headers = {"Accept-Encoding": "identity", "User-Agent": "flagai_hf", **dict(remote.headers)}
    if have:
        headers["Range"] = f"bytes={have}-"
    url = remote.url
    for _ in range(10):  # redirects
        connection, sock, response = _open(url, headers, options, deadline)
        try:
            if response.status in REDIRECT_STATUSES and response.getheader("Location"):
                target = urljoin(url, response.getheader("Location"))
                if urlsplit(target).netloc != urlsplit(url).netloc:  # credentials stay with the host they are for
                    headers = {key: value for key, value in headers.items() if key.lower() != "authorization"}
                url = target
                continue
            if response.status in (404, 410):
                raise MissingRemoteFile(f"{remote.name}: the server answered HTTP {response.status} "
                                        f"for {_redact(url)}")
            if response.status in RETRY_STATUSES:
                raise TransientFailure(f"HTTP {response.status}")
            if response.status == 416 and have and remote.size == have:
                return True, 0
            if response.status == 416:  # our part is not a prefix of what the server has
                part.unlink(missing_ok=True)
                raise TransientFailure("HTTP 416 (range not satisfiable): restarting from the first byte")
            if response.status not in (200, 206):
                raise FetchError(f"{remote.name}: unexpected HTTP {response.status} {response.reason} "
                                 f"for {_redact(url)}")
            start = _start_offset(response, have)
            announced = _announced_end(response, start, remote, source, part, options)
            expected_end = announced if announced is not None else remote.size
            limit, why = _body_limit(remote, announced, options)
            mode = "ab" if start else "wb"
            if bar is not None and start == 0 and have:
                bar.reset(total=remote.size)
            received = 0
            with _open_part(part, mode, remote) as handle:
                try:
                    while True:
                        sock.settimeout(deadline.timeout(options.read_timeout))
                        block = response.read1(CHUNK) if hasattr(response, "read1") else response.read(CHUNK)
                        if not block:
                            break
                        if start + received + len(block) > limit:
                            handle.close()
                            part.unlink(missing_ok=True)
                            raise IntegrityError(f"{remote.name} from {source}: the server sent more than {limit} "
                                                 f"bytes ({why}); stopped there and deleted the part file")
                        _write(handle, block, part, remote)
                        received += len(block)
                        if bar is not None:
                            bar.update(len(block))
                except FetchError:  # DiskError, IntegrityError, DeadlineExceeded: final
                    raise
                except (socket.timeout, TimeoutError) as error:
                    deadline.remaining()  # the deadline, not the read timeout, when it is spent
                    raise TransientFailure(f"no data for {options.read_timeout}s (read timeout)") from error
                except (http.client.IncompleteRead, ConnectionError, OSError) as error:
                    raise TransientFailure(f"connection dropped after {start + received} bytes ({error})") from error
            end = start + received
            if expected_end is not None and end < expected_end:
                raise TransientFailure(f"body ended at byte {end}, expected {expected_end}")
            if remote.size is not None and end < remote.size:
                raise TransientFailure(f"body ended at byte {end} of {remote.size}")
            return True, received
        finally:
            connection.close()
    raise FetchError(f"{remote.name}: too many redirects from {_redact(remote.url)}")


def _announced_end(response, start: int, remote: RemoteFile, source: str, part: Path,
                   options: FetchOptions) -> int | None:
    """Where the server says the body ends (``Content-Length``), refused when past the size the source listed (or,
    none listed, past ``max_unverified_size``)."""
    length = response.getheader("Content-Length")
    if length is None:
        return None
    if not re.fullmatch(r"[0-9]{1,20}", length.strip(" \t")):  # ASCII digits: str.isdigit() also takes "²"
        raise TransientFailure(f"unreadable Content-Length {length!r}")
    end = start + int(length)
    if remote.size is not None and end > remote.size:
        part.unlink(missing_ok=True)
        raise IntegrityError(f"{remote.name} from {source}: the server announces {end} bytes (Content-Length), the "
                             f"source listed {remote.size}: refused before reading the body")
    if remote.size is None and end > options.max_unverified_size:
        part.unlink(missing_ok=True)
        raise IntegrityError(f"{remote.name} from {source}: the server announces {end} bytes (Content-Length), more "
                             f"than max_unverified_size ({options.max_unverified_size}), the cap on a file whose "
                             f"source listed no size: refused before reading the body")
    return end


def _body_limit(remote: RemoteFile, announced: int | None, options: FetchOptions) -> tuple[int, str]:
    """The byte offset no body may pass, and why: the listed size, else the Content-Length, else the cap."""
    if remote.size is not None:
        return remote.size, "the size the source listed"
    if announced is not None:
        return announced, "its Content-Length"
    return options.max_unverified_size, ("max_unverified_size, the cap on a file whose source listed no size; "
                                         "raise it if the file is really larger")


def _disk_error(error: OSError, part: Path, remote: RemoteFile) -> DiskError:
    return DiskError(error.errno, f"Cannot write {remote.name} to {part}: {error.strerror or error}. This is the local "
                                  f"disk's fault (free space, or pass another download_path), not the server's: "
                                  f"not retried")


def _open_part(part: Path, mode: str, remote: RemoteFile):
    try:
        return open(part, mode)
    except OSError as error:
        raise _disk_error(error, part, remote) from error


def _write(handle, block: bytes, part: Path, remote: RemoteFile) -> None:
    try:
        handle.write(block)
        handle.flush()
    except OSError as error:
        raise _disk_error(error, part, remote) from error


def _open(url: str, headers: dict, options: FetchOptions, deadline: Deadline):
    """Connect (``connect_timeout``), send the GET and read the status line (``read_timeout``), both cut short by
    ``deadline``; returns (connection, its socket, response)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise FetchError(f"Unsupported URL scheme {parts.scheme!r} in {_redact(url)}: only http and https")
    kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    connection = kind(parts.hostname, parts.port, timeout=deadline.timeout(options.connect_timeout))
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    try:
        connection.connect()
        sock = connection.sock  # kept: http.client drops connection.sock when the answer closes the connection
        sock.settimeout(deadline.timeout(options.read_timeout))
        connection.request("GET", path, headers=headers)
        return connection, sock, connection.getresponse()
    except DeadlineExceeded:
        connection.close()
        raise
    except (socket.timeout, TimeoutError) as error:
        connection.close()
        deadline.remaining()
        raise TransientFailure(f"timed out connecting to or waiting for {parts.netloc}") from error
    except (ConnectionError, http.client.HTTPException, OSError) as error:
        connection.close()
        raise TransientFailure(f"cannot reach {parts.netloc}: {error}") from error


def _start_offset(response, have: int) -> int:
    """Where the body starts: ``have`` for a matching 206, 0 for a 200 (the server ignored our Range)."""
    if response.status == 200:
        return 0
    content_range = response.getheader("Content-Range", "")  # "bytes 100-199/200"
    try:
        first = int(content_range.split()[1].split("-")[0])
    except (IndexError, ValueError):
        raise TransientFailure(f"206 answer with an unreadable Content-Range {content_range!r}") from None
    if first != have:
        raise TransientFailure(f"asked for bytes from {have}, the server sent from {first}")
    return have


def _progress_bar(remote: RemoteFile, part: Path, options: FetchOptions):
    if not options.progress:
        return None
    from tqdm.auto import tqdm

    initial = part.stat().st_size if part.exists() else 0
    return tqdm(total=remote.size, initial=initial, unit="B", unit_scale=True, unit_divisor=1024,
                desc=remote.name, leave=False)


def _redact(url: str) -> str:
    """The URL without its query string (pre-signed URLs carry credentials there)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}" + ("?..." if parts.query else "")


def request(method: str, url: str, source: str, options: FetchOptions, json_body=None,
            headers: dict | None = None) -> bytes:
    """The body of a small API call (``json_body`` sent as JSON, ``headers`` added to ours), retrying transient
    failures; ``MissingRemoteFile`` for 404/410, ``FetchError`` otherwise (with ``status`` for an HTTP error).
    A GET follows redirects to its own host only (``_exchange_following``). At most ``MAX_API_RESPONSE`` bytes are
    read, and the whole call, redirects and retries included, ends within ``options.api_deadline``
    (``DeadlineExceeded``)."""
    body = None if json_body is None else json.dumps(json_body).encode()
    headers = {"User-Agent": "flagai_hf", "Accept": "application/json, text/plain", **(headers or {})}
    if body is not None:
        headers["Content-Type"] = "application/json"
    deadline = Deadline(options.api_deadline, f"{source}: {method} {_redact(url)}", "api_deadline")
    failures = 0
    while True:
        try:
            status, reason, data = _exchange_following(method, url, headers, body, source, options, deadline)
        except TransientFailure as exc:
            error = str(exc)
        else:
            if status in (404, 410):
                raise MissingRemoteFile(f"{source}: HTTP {status} for {method} {_redact(url)}")
            if status < 400:
                return data
            if status not in RETRY_STATUSES:
                refused = FetchError(f"{source}: HTTP {status} {reason} for {method} {_redact(url)}")
                refused.status = status
                raise refused
            error = f"HTTP {status}"
        failures += 1
        if failures > options.retries:
            raise FetchError(f"{source}: {method} {_redact(url)} failed {failures} times (last: {error})")
        time.sleep(min(options.backoff * 2 ** (failures - 1), deadline.remaining()))


def _exchange_following(method: str, url: str, headers: dict, body: bytes | None, source: str,
                        options: FetchOptions, deadline: Deadline) -> tuple[int, str, bytes]:
    """``exchange``, following a GET's redirects (at most ``MAX_API_REDIRECTS``) as long as they stay on the scheme,
    host and port it was sent to: a redirect elsewhere is refused (``FetchError``), so the request's headers (a
    token) never reach another server. Other methods' answers are returned as they come."""
    where = url
    for _ in range(MAX_API_REDIRECTS + 1):
        status, reason, answer_headers, data = exchange(method, where, headers, body, source, options, deadline)
        location = next((value for key, value in answer_headers if key.lower() == "location"), None)
        if method != "GET" or status not in REDIRECT_STATUSES or not location:
            return status, reason, data
        target = urljoin(where, location)
        if _origin(target) != _origin(url):
            raise FetchError(f"{source}: {method} {_redact(url)} redirects to {_redact(target)}, off its scheme, host "
                             f"and port: refused (the request's credentials stay with the host they are for)")
        where = target
    raise FetchError(f"{source}: {method} {_redact(url)} redirected more than {MAX_API_REDIRECTS} times: refused")


def _origin(url: str) -> tuple:
    """(scheme, host, port) of ``url``, the port filled in for http and https."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:  # a port out of range or not a number: never the same origin
        return parts.scheme, parts.hostname, parts.netloc
    return parts.scheme, parts.hostname, port or {"http": 80, "https": 443}.get(parts.scheme)


def exchange(method: str, url: str, headers: dict, body: bytes | None, source: str, options: FetchOptions,
             deadline: Deadline) -> tuple[int, str, list[tuple[str, str]], bytes]:
    """One request of an API call and its answer ``(status, reason, headers, body)``: connecting within
    ``connect_timeout``, each read within ``read_timeout``, all of it within ``deadline`` (``DeadlineExceeded``),
    the body read up to ``MAX_API_RESPONSE`` bytes (``FetchError`` past it). A timeout or a dropped connection is a
    ``TransientFailure``; retrying is the caller's (``request``; the S3 source's boto3 client)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise FetchError(f"Unsupported URL scheme {parts.scheme!r} in {_redact(url)}: only http and https")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    connection = kind(parts.hostname, parts.port, timeout=deadline.timeout(options.connect_timeout))
    try:
        connection.connect()
        sock = connection.sock
        sock.settimeout(deadline.timeout(options.read_timeout))
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        data = _read_capped(sock, response, options, deadline)
    except DeadlineExceeded:
        raise
    except (socket.timeout, TimeoutError) as error:
        deadline.remaining()
        raise TransientFailure(f"timed out (connect {options.connect_timeout}s, "
                               f"read {options.read_timeout}s)") from error
    except (ConnectionError, http.client.HTTPException, OSError) as error:
        raise TransientFailure(f"cannot reach {parts.netloc} ({error})") from error
    finally:
        connection.close()
    if len(data) > MAX_API_RESPONSE:
        raise FetchError(f"{source}: the answer to {method} {_redact(url)} is larger than {MAX_API_RESPONSE} bytes "
                         "(the most an API answer may be): refused")
    return response.status, response.reason, response.getheaders(), data


def _read_capped(sock, response, options: FetchOptions, deadline: Deadline) -> bytes:
    """An API answer's body, up to ``MAX_API_RESPONSE + 1`` bytes, each read cut short by ``deadline``."""
    data = bytearray()
    while len(data) <= MAX_API_RESPONSE:
        sock.settimeout(deadline.timeout(options.read_timeout))
        block = response.read1(MAX_API_RESPONSE + 1 - len(data))
        if not block:
            break
        data += block
    return bytes(data)
