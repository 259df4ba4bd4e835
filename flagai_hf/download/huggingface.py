"""The Hugging Face Hub (or the mirror in ``HF_ENDPOINT``, read at call time) through huggingface_hub.

The repository listing (``model_info(files_metadata=True)``) gives each file's size and digest: the sha256 of LFS
files, the git blob id of the others. Only the files a model folder needs are fetched (``names.select_hub_files``),
from their ``resolve`` URLs pinned to the listed commit (``hf_hub_url``), through our own fetcher like every other
source: resumed, read no further than the listed size (a hard cap for a file listed without one), within
``file_deadline``, written to a part file and moved into place only once its size and sha256 (LFS files) are
checked; the git blob id of the others is checked next, before the folder is marked complete. The token
(``hf_token``, else huggingface_hub's saved login / ``HF_TOKEN``) goes in the request headers, and is not sent on to
another host when the Hub redirects (its CDN).
"""

import hashlib
import os
from pathlib import Path

from .fetch import CHUNK, IntegrityError, RemoteFile, sha256_of
from .formats import check_whole
from .names import check_file_name, hub_repo_id, select_hub_files
from .sources import DownloadSettings, SourceUnavailable, download_files

DEFAULT_ENDPOINT = "https://huggingface.co"


class HubSource:
    def __init__(self, settings: DownloadSettings):
        self.settings = settings
        self.endpoint = (settings.hf_endpoint or DEFAULT_ENDPOINT).rstrip("/")
        self.label = f"Hugging Face Hub ({self.endpoint})"

    def describe(self) -> str:
        return self.label

    def plan(self, model_name: str) -> tuple:
        """(repo id, commit, the files to fetch, the listing by name), every listed name checked; nothing written."""
        from huggingface_hub import HfApi

        repo_id = hub_repo_id(model_name)
        if repo_id is None:
            raise SourceUnavailable(f"no Hugging Face repository is known for {model_name!r} (FlagAI's fine-tuned "
                                    f"'<name>-<task>' models are on the BAAI ModelHub only); pass a repo id "
                                    f"'org/name' as model_name to use the Hub")
        api = HfApi(endpoint=self.endpoint, token=self.settings.hf_token)
        try:
            info = api.model_info(repo_id, revision=self.settings.hf_revision, files_metadata=True,
                                  timeout=self.settings.connect_timeout + self.settings.read_timeout)
        except Exception as error:  # noqa: BLE001 -- unreachable host, missing repo, gated repo, offline mode
            raise SourceUnavailable(f"{self.label} cannot list {repo_id!r}: {type(error).__name__}: "
                                    f"{str(error).splitlines()[0] if str(error) else ''}") from None
        siblings = {sibling.rfilename: sibling for sibling in info.siblings or []}
        for name in siblings:
            check_file_name(name, self.label, max_depth=name.count("/"))  # traversal checks on every listed name
        wanted = [check_file_name(name, self.label) for name in select_hub_files(list(siblings))]
        if "config.json" not in wanted:
            raise SourceUnavailable(f"{self.label}: {repo_id!r} has no config.json (files: "
                                    f"{', '.join(sorted(siblings)[:20])})")
        return repo_id, info.sha, wanted, siblings

    def download(self, plan: tuple, folder: Path) -> dict:
        from huggingface_hub import hf_hub_url
        from huggingface_hub.utils import build_hf_headers

        repo_id, commit, wanted, siblings = plan
        auth = tuple((key, value) for key, value in build_hf_headers(token=self.settings.hf_token).items()
                     if key.lower() == "authorization")
        remotes = []
        for name in wanted:
            sibling = siblings[name]
            lfs_sha256 = getattr(sibling.lfs, "sha256", None) if sibling.lfs is not None else None
            remotes.append(RemoteFile(name=name, url=hf_hub_url(repo_id, name, revision=commit,
                                                                endpoint=self.endpoint),
                                      size=sibling.size, sha256=lfs_sha256, headers=auth))
        manifest = download_files(remotes, folder, self.label, self.settings)
        for name in wanted:  # the git blob id of non-LFS files (the fetcher checked size and sha256)
            digest, checked_by = self._verify(folder / name, siblings[name])
            manifest[name] = {"size": (folder / name).stat().st_size, "sha256": digest, "checked_by": checked_by}
        return manifest

    def _verify(self, path: Path, sibling) -> tuple[str, str]:
        """The file's sha256 and what checked it: the listing's LFS sha256 or git blob id, else its size, else (a
        mirror listing neither) the structure of its type (``formats.check_whole``)."""
        size = path.stat().st_size
        if sibling.size is not None and size != sibling.size:
            self._reject(path, f"{size} bytes, the Hub lists {sibling.size}")
        lfs = sibling.lfs
        if lfs is not None and getattr(lfs, "sha256", None):
            digest = sha256_of(path)
            if digest != lfs.sha256:
                self._reject(path, f"sha256 {digest} differs from the Hub's {lfs.sha256}")
            return digest, "sha256"
        if sibling.blob_id:
            blob = hashlib.sha1(f"blob {size}\0".encode())  # git's object id of the file
            with open(path, "rb") as handle:
                for block in iter(lambda: handle.read(CHUNK), b""):
                    blob.update(block)
            if blob.hexdigest() != sibling.blob_id:
                self._reject(path, f"git blob id {blob.hexdigest()} differs from the Hub's {sibling.blob_id}")
            return sha256_of(path), "git blob id"
        if sibling.size is not None:
            return sha256_of(path), "size"
        problem = check_whole(path, path.name)
        if problem:
            self._reject(path, f"the listing gives neither its size nor a digest, and {problem}")
        return sha256_of(path), "structure"

    def _reject(self, path: Path, problem: str):
        os.remove(path)
        raise IntegrityError(f"{path.name} from {self.label}: {problem}; the file was deleted")
