"""Fuzz target: server-given file names (``names.check_file_name``, ``names.select_hub_files``, ``hub_repo_id``).

A refused name raises ``UnsafeFileName``; an accepted one must stay inside the model folder: relative, no ``..``,
no control character or backslash, not the downloader's own files, within ``max_depth`` folders.
"""

import posixpath

import atheris

from _harness import main

with atheris.instrument_imports(include=["flagai_hf"]):
    from flagai_hf.download.names import RESERVED, UnsafeFileName, check_file_name, hub_repo_id, select_hub_files


def TestOneInput(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    depth = fdp.ConsumeIntInRange(0, 8)
    names = [fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 40)) for _ in range(fdp.ConsumeIntInRange(1, 6))]
    accepted = []
    for name in names:
        try:
            check_file_name(name, "fuzz", max_depth=depth)
        except UnsafeFileName:
            continue
        normal = posixpath.normpath(posixpath.join("/folder", name))
        if (not normal.startswith("/folder/") or "\\" in name or any(ord(c) < 32 or ord(c) == 127 for c in name)
                or RESERVED in name.lower() or name.count("/") > depth):
            raise AssertionError(f"accepted the unsafe name {name!r} (max_depth {depth})")
        accepted.append(name)
    chosen = select_hub_files(accepted)
    if not set(chosen) <= set(accepted) or any("/" in name for name in chosen):
        raise AssertionError(f"select_hub_files({accepted!r}) gave {chosen!r}")
    repo = hub_repo_id(names[0])
    if repo is not None and (".." in repo or repo.startswith("/") or "\\" in repo):
        raise AssertionError(f"hub_repo_id({names[0]!r}) gave {repo!r}")


if __name__ == "__main__":
    import sys

    main(sys.modules[__name__])
