"""Fuzz target: the BAAI ModelHub's answers (``modelhub.parse_file_list``: a Python-literal or JSON list of names;
``modelhub.parse_download_answer``: the downloadCode JSON with url, size, sha256, code).

Only the source's refusals may come out (``SourceUnavailable``, ``MissingRemoteFile``, ``UnsafeFileName``); what is
accepted must be safe: every name passes ``check_file_name``, a size is a non-negative int, a sha256 is 64 hex digits.
"""

import atheris

from _harness import json_value, main

with atheris.instrument_imports(include=["flagai_hf"]):
    from flagai_hf.download.fetch import MissingRemoteFile
    from flagai_hf.download.modelhub import parse_download_answer, parse_file_list
    from flagai_hf.download.names import UnsafeFileName, check_file_name
    from flagai_hf.download.sources import SourceUnavailable

REFUSALS = (SourceUnavailable, MissingRemoteFile, UnsafeFileName)
ANSWER_KEYS = ["code", "url", "size", "sha256", "files", "msg"]


def TestOneInput(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    which = fdp.ConsumeIntInRange(0, 2)
    try:
        if which == 0:
            for name in parse_file_list(fdp.ConsumeUnicodeNoSurrogates(fdp.remaining_bytes()), "hub", "m"):
                check_file_name(name, "the accepted list")  # must not raise: accepted means safe
            return
        if which == 1:
            body = fdp.ConsumeBytes(fdp.remaining_bytes())
        else:
            import json

            answer = {fdp.PickValueInList(ANSWER_KEYS): json_value(fdp) for _ in range(fdp.ConsumeIntInRange(0, 6))}
            body = json.dumps(answer).encode()
        remote = parse_download_answer(body, "hub", "m", "config.json")
    except REFUSALS:
        return
    size_ok = remote.size is None or (type(remote.size) is int and remote.size >= 0)
    sha_ok = remote.sha256 is None or (len(remote.sha256) == 64 and int(remote.sha256, 16) >= 0)
    if not (isinstance(remote.url, str) and remote.url and size_ok and sha_ok):
        raise AssertionError(f"accepted a bad answer: {remote}")


if __name__ == "__main__":
    import sys

    main(sys.modules[__name__])
