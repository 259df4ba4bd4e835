"""Fuzz target: the Hugging Face Hub's repository listing (``huggingface.parse_listing``: the JSON of
``/api/models/<repo>/revision/<rev>?blobs=true`` with ``sha`` and ``siblings`` of ``rfilename``, ``size``,
``blobId``, ``lfs``), as raw bytes or as listings built from plausible and random values.

Only the source's refusals may come out (``SourceUnavailable``, ``UnsafeFileName``); what is accepted must be safe:
the commit is 40 hex digits, every name passes ``check_file_name``, a size is a non-negative int, a blob id is 40
hex digits, an LFS sha256 64.
"""

import json
import re

import atheris
from _harness import json_value, main

with atheris.instrument_imports(include=["flagai_hf"]):
    from flagai_hf.download.huggingface import parse_listing
    from flagai_hf.download.names import UnsafeFileName, check_file_name
    from flagai_hf.download.sources import SourceUnavailable

REFUSALS = (SourceUnavailable, UnsafeFileName)
NAMES = ["config.json", "model.safetensors", "vocab.txt", "sub/a.txt", "../x", ".flagai_hf.lock", "", "a\\b"]


def plausible(fdp, kind: str):
    """A value that often passes (the right type and length), else a random JSON value."""
    if fdp.ConsumeIntInRange(0, 3) == 0:
        return json_value(fdp)
    if kind == "name":
        return fdp.PickValueInList(NAMES) if fdp.ConsumeBool() else fdp.ConsumeUnicodeNoSurrogates(12)
    if kind == "size":
        return fdp.ConsumeIntInRange(0, 1 << 40)
    digits = {"sha": 40, "blobId": 40, "sha256": 64}[kind]
    return "".join(fdp.PickValueInList(list("0123456789abcdefABCDEF")) for _ in range(digits))


def sibling(fdp) -> dict:
    entry = {key: plausible(fdp, kind) for key, kind in (("rfilename", "name"), ("size", "size"),
                                                          ("blobId", "blobId")) if fdp.ConsumeIntInRange(0, 4)}
    if fdp.ConsumeBool():
        entry["lfs"] = {"sha256": plausible(fdp, "sha256"),
                        "size": entry.get("size") if fdp.ConsumeIntInRange(0, 3) else plausible(fdp, "size")}
    return entry


def TestOneInput(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    if fdp.ConsumeIntInRange(0, 3) == 0:
        body = fdp.ConsumeBytes(fdp.remaining_bytes())
    else:
        listing = {"sha": plausible(fdp, "sha"), "siblings": [sibling(fdp) for _ in range(fdp.ConsumeIntInRange(0, 5))]}
        for _ in range(fdp.ConsumeIntInRange(0, 2)):  # a field replaced or removed
            key = fdp.PickValueInList(["sha", "siblings", "id"])
            listing[key] = json_value(fdp)
        body = json.dumps(listing).encode()
    try:
        commit, files = parse_listing(body, "hub", "org/repo")
    except REFUSALS:
        return
    if not (isinstance(commit, str) and re.fullmatch(r"[0-9a-f]{40}", commit)):
        raise AssertionError(f"accepted the commit {commit!r}")
    for name, listed in files.items():
        check_file_name(name, "the accepted listing", max_depth=name.count("/"))  # must not raise
        size_ok = listed.size is None or (type(listed.size) is int and listed.size >= 0)
        blob_ok = listed.blob_id is None or re.fullmatch(r"[0-9a-f]{40}", listed.blob_id)
        lfs_ok = listed.lfs_sha256 is None or re.fullmatch(r"[0-9a-f]{64}", listed.lfs_sha256)
        if not (listed.name == name and size_ok and blob_ok and lfs_ok):
            raise AssertionError(f"accepted a bad file record: {listed}")


if __name__ == "__main__":
    import sys

    main(sys.modules[__name__])
