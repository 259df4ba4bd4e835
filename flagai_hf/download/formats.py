"""Telling a whole file from a cut one by its structure, for files whose source listed neither size nor digest.

A server closing the connection says nothing about whether the body was complete, so such a file is accepted only
when its type carries its own length:

- ``*.safetensors``: the header parses and its tensors cover the file exactly (safetensors checks both);
- ``*.json``: UTF-8 JSON that parses to the end;
- ``*.bin`` / ``*.pt`` / ``*.pth``: a zip archive (torch.save's format since torch 1.6) whose central directory, at the
  very end of the file, lists every member with its size and CRC, and the members are all there.

Any other type (``vocab.txt``, a sentencepiece ``*.model``, a legacy non-zip pickle) cannot be told whole from cut,
and is refused without a listed size or digest.
"""

import json
import zipfile
from pathlib import Path

CHECKED_TYPES = (".safetensors", ".json", ".bin", ".pt", ".pth")


def check_whole(path: Path, name: str) -> str | None:
    """``None`` if ``path`` (downloaded as ``name``) is a whole file of its type, else what is wrong with it."""
    suffix = Path(name).suffix.lower()
    if suffix not in CHECKED_TYPES:
        return (f"a {suffix or 'suffix-less'} file cannot be checked for completeness by its structure (checked "
                f"types: {', '.join(CHECKED_TYPES)}): refused")
    try:
        if suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), "pt"):
                pass
        elif suffix == ".json":
            json.loads(path.read_bytes().decode("utf-8"))
        else:
            with zipfile.ZipFile(path) as archive:
                bad = archive.testzip()
            if bad is not None:
                return f"its zip member {bad!r} fails its CRC check (a damaged or cut file): refused"
    except Exception as error:  # noqa: BLE001 -- every parser's own error means the same: not a whole file
        return f"it is not a whole {suffix} file ({type(error).__name__}: {str(error)[:200]}): refused"
    return None
