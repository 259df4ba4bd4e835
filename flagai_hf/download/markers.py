"""What a model folder holds: complete, a user's own folder, our interrupted download, or nothing.

Our downloader writes ``.flagai_hf_download.json`` before the first byte, streams each file to a
``*.flagai_hf.part`` name, and writes ``.flagai_hf_complete.json`` (every file with its size and sha256) last, then
removes the in-progress marker. So:

- completion marker, every listed file present with its size: **complete**, loaded;
- in-progress marker, part files, or huggingface_hub ``*.incomplete`` files and no completion marker: **interrupted**,
  resumed by the next download, never loaded;
- ``config.json`` and none of our markers: a **user's folder** (e.g. one FlagAI downloaded), loaded as it is;
- otherwise **missing**.
"""

import enum
import json
import os
from dataclasses import dataclass
from pathlib import Path

from .fetch import PART_SUFFIX

COMPLETE = ".flagai_hf_complete.json"
IN_PROGRESS = ".flagai_hf_download.json"


class State(enum.Enum):
    COMPLETE = "complete"
    USER = "user"
    INTERRUPTED = "interrupted"
    MISSING = "missing"

    @property
    def loadable(self) -> bool:
        return self in (State.COMPLETE, State.USER)


@dataclass
class FolderState:
    state: State
    reason: str


def inspect(folder: Path) -> FolderState:
    if not folder.is_dir():
        return FolderState(State.MISSING, f"{folder} does not exist")
    marker = folder / COMPLETE
    if marker.is_file():
        damaged = _damaged_files(folder, marker)
        if not damaged:
            return FolderState(State.COMPLETE, f"{folder} holds a verified download")
        return FolderState(State.INTERRUPTED, f"{folder} no longer matches its completion marker "
                                              f"({'; '.join(damaged)}): downloading again")
    leftovers = _leftovers(folder)
    if (folder / IN_PROGRESS).is_file() or leftovers:
        found = ", ".join([IN_PROGRESS] * (folder / IN_PROGRESS).is_file() + leftovers[:3])
        return FolderState(State.INTERRUPTED, f"{folder} holds an unfinished download ({found}; no {COMPLETE}): "
                                              f"not loaded, resumed from a network source")
    if (folder / "config.json").is_file():
        return FolderState(State.USER, f"{folder} holds a config.json (a local or FlagAI-downloaded folder)")
    present = sorted(p.name for p in folder.iterdir() if p.name != ".flagai_hf.lock")
    return FolderState(State.MISSING, f"{folder} has no config.json (holds: {', '.join(present) or 'nothing'})")


def begin(folder: Path, source: str, model_name: str) -> None:
    """Mark ``folder`` as being downloaded (before the first byte); it is no longer complete."""
    _write_json(folder / IN_PROGRESS, {"model_name": model_name, "source": source, "pid": os.getpid()})
    (folder / COMPLETE).unlink(missing_ok=True)


def finish(folder: Path, source: str, model_name: str, files: dict[str, dict]) -> None:
    """Write the completion marker (``files``: name -> {"size", "sha256"}) last, then drop the in-progress one."""
    (folder / COMPLETE).unlink(missing_ok=True)
    _write_json(folder / COMPLETE, {"model_name": model_name, "source": source, "files": files})
    (folder / IN_PROGRESS).unlink(missing_ok=True)


def _damaged_files(folder: Path, marker: Path) -> list[str]:
    try:
        files = json.loads(marker.read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return [f"{COMPLETE} is unreadable"]
    damaged = []
    for name, entry in files.items():
        path = folder / name
        if not path.is_file():
            damaged.append(f"{name} is missing")
        elif path.stat().st_size != entry.get("size"):
            damaged.append(f"{name} has {path.stat().st_size} bytes, {entry.get('size')} were verified")
    return damaged


def _leftovers(folder: Path) -> list[str]:
    parts = [str(p.relative_to(folder)) for p in folder.rglob(f"*{PART_SUFFIX}")]
    incomplete = folder / ".cache" / "huggingface" / "download"
    if incomplete.is_dir():
        parts += [str(p.relative_to(folder)) for p in incomplete.rglob("*.incomplete")]
    return sorted(parts)


def _write_json(path: Path, content: dict) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(content, indent=1, sort_keys=True))
    os.replace(temporary, path)
