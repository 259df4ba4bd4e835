"""The Hugging Face Hub (or the mirror in ``HF_ENDPOINT``, read at call time), through our own fetcher.

The repository listing (``GET {endpoint}/api/models/{repo}/revision/{rev}?blobs=true``, what huggingface_hub's
``model_info(files_metadata=True)`` asks) is an API call like the ModelHub's (``fetch.request``): within
``api_deadline``, retries included, at most ``fetch.MAX_API_RESPONSE`` bytes, redirects followed on the Hub's own host
only. ``parse_listing`` checks it (commit, and each file's name, size, git blob id and LFS sha256) before anything is
written. Only the files a model folder needs are fetched (``names.select_hub_files``), from their ``resolve`` URLs
pinned to the listed commit (``hf_hub_url``): resumed, read no further than the listed size (a hard cap for a file
listed without one), within ``file_deadline``, written to a part file and moved into place only once its size and
sha256 (LFS files) are checked; the git blob id of the others is checked next, before the folder is marked complete.
The token (``hf_token``, else huggingface_hub's saved login / ``HF_TOKEN``) goes in the request headers, and is not
sent on to another host when the Hub redirects a file (its CDN); the listing call refuses such a redirect.
"""

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from .fetch import CHUNK, FetchError, IntegrityError, MissingRemoteFile, RemoteFile, request, sha256_of
from .formats import check_whole
from .names import check_file_name, hub_repo_id, select_hub_files
from .sources import OFFLINE, DownloadSettings, SourceUnavailable, download_files

DEFAULT_ENDPOINT = "https://huggingface.co"


@dataclass(frozen=True)
class ListedFile:
    """One file of a Hub listing, as checked by ``parse_listing`` (``None``: the listing did not give it)."""

    name: str  # passed names.check_file_name (any depth)
    size: int | None = None
    blob_id: str | None = None  # git object id, 40 lowercase hex digits
    lfs_sha256: str | None = None  # 64 lowercase hex digits, for files stored in LFS


class HubSource:
    def __init__(self, settings: DownloadSettings):
        self.settings = settings
        self.endpoint = (settings.hf_endpoint or DEFAULT_ENDPOINT).rstrip("/")
        self.label = f"Hugging Face Hub ({self.endpoint})"

    def describe(self) -> str:
        return self.label

    def plan(self, model_name: str) -> tuple:
        """(repo id, commit, the files to fetch, the listing by name), every listed name checked; nothing written."""
        import huggingface_hub.constants

        repo_id = hub_repo_id(model_name)
        if repo_id is None:
            raise SourceUnavailable(f"no Hugging Face repository is known for {model_name!r} (FlagAI's fine-tuned "
                                    f"'<name>-<task>' models are on the BAAI ModelHub only); pass a repo id "
                                    f"'org/name' as model_name to use the Hub")
        if huggingface_hub.constants.HF_HUB_OFFLINE:
            raise SourceUnavailable(f"{self.label}: {OFFLINE}")
        revision = self.settings.hf_revision or "main"
        url = f"{self.endpoint}/api/models/{repo_id}/revision/{quote(revision, safe='')}?blobs=true"
        try:
            body = request("GET", url, self.label, self.settings.fetch_options, headers=dict(self._auth()))
        except MissingRemoteFile as error:
            raise SourceUnavailable(f"{self.label} has no repository {repo_id!r} with a revision {revision!r} "
                                    f"({error})") from None
        except FetchError as error:  # unreachable, dribbling, too large, refused: the next source is tried
            hint = (" (a private or gated repository needs a token: hf_token, HF_TOKEN or the saved login)"
                    if error.status in (401, 403) else "")
            raise SourceUnavailable(f"{self.label} cannot list {repo_id!r}: {type(error).__name__}: {error}"
                                    f"{hint}") from None
        commit, files = parse_listing(body, self.label, repo_id)
        wanted = [check_file_name(name, self.label) for name in select_hub_files(list(files))]
        if "config.json" not in wanted:
            raise SourceUnavailable(f"{self.label}: {repo_id!r} has no config.json (files: "
                                    f"{', '.join(sorted(files)[:20])})")
        return repo_id, commit, wanted, files

    def download(self, plan: tuple, folder: Path) -> dict:
        from huggingface_hub import hf_hub_url

        repo_id, commit, wanted, files = plan
        auth = self._auth()
        remotes = [RemoteFile(name=name, url=hf_hub_url(repo_id, name, revision=commit, endpoint=self.endpoint),
                              size=files[name].size, sha256=files[name].lfs_sha256, headers=auth)
                   for name in wanted]
        manifest = download_files(remotes, folder, self.label, self.settings)
        for name in wanted:  # the git blob id of non-LFS files (the fetcher checked size and sha256)
            digest, checked_by = self._verify(folder / name, files[name])
            manifest[name] = {"size": (folder / name).stat().st_size, "sha256": digest, "checked_by": checked_by}
        return manifest

    def _auth(self) -> tuple[tuple[str, str], ...]:
        """The Authorization header for the token, if there is one (nothing else of huggingface_hub's headers)."""
        from huggingface_hub.utils import build_hf_headers

        return tuple((key, value) for key, value in build_hf_headers(token=self.settings.hf_token).items()
                     if key.lower() == "authorization")

    def _verify(self, path: Path, listed: ListedFile) -> tuple[str, str]:
        """The file's sha256 and what checked it: the listing's LFS sha256 or git blob id, else its size, else (a
        mirror listing neither) the structure of its type (``formats.check_whole``)."""
        size = path.stat().st_size
        if listed.size is not None and size != listed.size:
            self._reject(path, f"{size} bytes, the Hub lists {listed.size}")
        if listed.lfs_sha256:
            digest = sha256_of(path)
            if digest != listed.lfs_sha256:
                self._reject(path, f"sha256 {digest} differs from the Hub's {listed.lfs_sha256}")
            return digest, "sha256"
        if listed.blob_id:
            blob = hashlib.sha1(f"blob {size}\0".encode())  # git's object id of the file
            with open(path, "rb") as handle:
                for block in iter(lambda: handle.read(CHUNK), b""):
                    blob.update(block)
            if blob.hexdigest() != listed.blob_id:
                self._reject(path, f"git blob id {blob.hexdigest()} differs from the Hub's {listed.blob_id}")
            return sha256_of(path), "git blob id"
        if listed.size is not None:
            return sha256_of(path), "size"
        problem = check_whole(path, path.name)
        if problem:
            self._reject(path, f"the listing gives neither its size nor a digest, and {problem}")
        return sha256_of(path), "structure"

    def _reject(self, path: Path, problem: str):
        os.remove(path)
        raise IntegrityError(f"{path.name} from {self.label}: {problem}; the file was deleted")


# The listing is untrusted bytes: parse_listing returns what it promises or raises SourceUnavailable /
# UnsafeFileName naming the field (fuzzed by fuzz/hub_listing.py).

def parse_listing(body: bytes, source: str, repo_id: str) -> tuple[str, dict[str, ListedFile]]:
    """The Hub's listing of ``repo_id`` (JSON ``{"sha", "siblings": [{"rfilename", "size", "blobId", "lfs":
    {"sha256", "size"}}]}``) -> (the commit, the files by name). ``size``, ``blobId`` and ``lfs`` may be left out
    (a mirror listing less); what is there must be well formed."""
    what = f"{source}: the listing of {repo_id!r}"
    try:
        listing = json.loads(body)
    except (ValueError, RecursionError):
        listing = None
    if not isinstance(listing, dict):
        raise SourceUnavailable(f"{what} is {body[:200]!r}, not a JSON object")
    commit = _hex(listing.get("sha"), 40, f"{what}: sha")
    if commit is None:
        raise SourceUnavailable(f"{what} gives no commit (sha)")
    siblings = listing.get("siblings")
    if not isinstance(siblings, list):
        raise SourceUnavailable(f"{what}: siblings is {_short(siblings)}, not a list")
    files: dict[str, ListedFile] = {}
    for index, sibling in enumerate(siblings):
        field = f"{what}: siblings[{index}]"
        if not isinstance(sibling, dict):
            raise SourceUnavailable(f"{field} is {_short(sibling)}, not an object")
        name = sibling.get("rfilename")
        if not isinstance(name, str) or not name:
            raise SourceUnavailable(f"{field}.rfilename is {_short(name)}, not a non-empty string")
        check_file_name(name, source, max_depth=name.count("/"))  # traversal checks on every listed name
        if name in files:
            raise SourceUnavailable(f"{field}.rfilename {name!r} is listed twice")
        size = _size(sibling.get("size"), f"{field}.size")
        lfs, lfs_sha256 = sibling.get("lfs"), None
        if lfs is not None:
            if not isinstance(lfs, dict):
                raise SourceUnavailable(f"{field}.lfs is {_short(lfs)}, not an object")
            lfs_sha256 = _hex(lfs.get("sha256"), 64, f"{field}.lfs.sha256")
            if lfs_sha256 is None:
                raise SourceUnavailable(f"{field}.lfs gives no sha256")
            lfs_size = _size(lfs.get("size"), f"{field}.lfs.size")
            if lfs_size != size:
                raise SourceUnavailable(f"{field}.lfs.size is {lfs_size}, its size {size}: they must agree")
        files[name] = ListedFile(name=name, size=size, blob_id=_hex(sibling.get("blobId"), 40, f"{field}.blobId"),
                                 lfs_sha256=lfs_sha256)
    return commit, files


def _size(value, field: str) -> int | None:
    """A listed size: ``None`` (not given) or an int >= 0 (not a bool, not a float)."""
    if value is not None and (type(value) is not int or value < 0):
        raise SourceUnavailable(f"{field} is {_short(value)}: a size is a non-negative integer")
    return value


def _hex(value, digits: int, field: str) -> str | None:
    """A listed digest: ``None`` (not given) or ``digits`` hex digits, returned in lowercase."""
    if value is not None and not (isinstance(value, str) and re.fullmatch(f"[0-9a-fA-F]{{{digits}}}", value)):
        raise SourceUnavailable(f"{field} is {_short(value)}: it must be {digits} hex digits")
    return None if value is None else value.lower()


def _short(value) -> str:
    return repr(value)[:100]
