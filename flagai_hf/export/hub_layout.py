"""Put an exported folder where ``from_pretrained("ORG/NAME")`` finds it without reaching huggingface.co.

- `place_in_hf_cache`: a Hugging Face cache entry, read with ``HF_HUB_OFFLINE=1``::

      <cache>/models--ORG--NAME/refs/main                    the revision (40 hex digits)
      <cache>/models--ORG--NAME/snapshots/<revision>/...     the folder's files (plain copies)

  ``<cache>`` is ``HF_HUB_CACHE`` (default ``$HF_HOME/hub``); ``cache_dir=`` of ``from_pretrained`` works as well.
- `place_in_mirror`: ``<mirror>/ORG/NAME/...``, a directory that `flagai_hf.export.mirror.HubMirror` (or
  ``flagai-hf serve-mirror``) serves as an ``HF_ENDPOINT``.

The revision is a digest of the folder's file names and contents, so the same export gets the same revision.
"""

import hashlib
import re
import shutil
from pathlib import Path

_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*$")


def check_repo_id(repo_id: str) -> tuple[str, str]:
    """``(org, name)`` of an ``ORG/NAME`` repo id; ValueError for anything else."""
    if not isinstance(repo_id, str) or not _REPO_ID.match(repo_id) or ".." in repo_id:
        raise ValueError(f"repo id {repo_id!r} is not of the form ORG/NAME (letters, digits, '-', '_', '.')")
    org, name = repo_id.split("/")
    return org, name


def folder_files(folder: Path) -> list[Path]:
    """The files of ``folder`` (recursively), as paths relative to it, sorted."""
    return sorted(path.relative_to(folder) for path in folder.rglob("*") if path.is_file())


def folder_revision(folder: str | Path) -> str:
    """A 40-hex revision naming the folder's content: SHA-1 over each file's relative name and SHA-256."""
    folder = Path(folder)
    digest = hashlib.sha1()
    for relative in folder_files(folder):
        digest.update(relative.as_posix().encode() + b"\0")
        digest.update(file_sha256(folder / relative).encode() + b"\n")
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def place_in_hf_cache(folder: str | Path, repo_id: str, cache_dir: str | Path | None = None) -> Path:
    """Copy ``folder`` into the Hugging Face cache as the ``main`` revision of model repo ``repo_id``; returns the
    snapshot folder. ``cache_dir`` defaults to huggingface_hub's ``HF_HUB_CACHE``."""
    from huggingface_hub import constants

    folder = Path(folder)
    org, name = check_repo_id(repo_id)
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"{folder} has no config.json: export the model first")
    repo_dir = Path(cache_dir if cache_dir is not None else constants.HF_HUB_CACHE) / f"models--{org}--{name}"
    revision = folder_revision(folder)
    snapshot = repo_dir / "snapshots" / revision
    if snapshot.exists():
        shutil.rmtree(snapshot)
    shutil.copytree(folder, snapshot)
    (repo_dir / "refs").mkdir(parents=True, exist_ok=True)
    (repo_dir / "refs" / "main").write_text(revision)
    return snapshot


def place_in_mirror(folder: str | Path, repo_id: str, mirror_dir: str | Path) -> Path:
    """Copy ``folder`` to ``mirror_dir/ORG/NAME`` (replacing what was there); returns that folder."""
    folder = Path(folder)
    org, name = check_repo_id(repo_id)
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"{folder} has no config.json: export the model first")
    target = Path(mirror_dir) / org / name
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(folder, target)
    return target
