"""Fuzz target: ``model.safetensors.index.json`` (``shards.read_index``, then ``shards.path_inside`` on every shard
name it maps to). Only ``ValueError`` naming the file or entry may come out; an accepted shard path stays inside the
folder."""

import json
import tempfile
from pathlib import Path

import atheris

from _harness import json_value, main

with atheris.instrument_imports(include=["flagai_hf"]):
    from flagai_hf.shards import path_inside, read_index

FOLDER = Path(tempfile.mkdtemp(prefix="fuzz_index_", dir="/dev/shm" if Path("/dev/shm").is_dir() else None))
INDEX = FOLDER / "model.safetensors.index.json"


def TestOneInput(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    if fdp.ConsumeBool():
        INDEX.write_bytes(fdp.ConsumeBytes(fdp.remaining_bytes()))
    else:
        weight_map = {fdp.ConsumeUnicodeNoSurrogates(8): (fdp.ConsumeUnicodeNoSurrogates(24) if fdp.ConsumeBool()
                                                           else json_value(fdp))
                      for _ in range(fdp.ConsumeIntInRange(0, 6))}
        payload = {"metadata": json_value(fdp), "weight_map": weight_map} if fdp.ConsumeBool() else json_value(fdp)
        INDEX.write_text(json.dumps(payload))
    try:
        weight_map = read_index(INDEX)
        for shard in set(weight_map.values()):
            path = path_inside(FOLDER, shard, f"{INDEX} weight_map entry")
            if not path.resolve().is_relative_to(FOLDER.resolve()):
                raise AssertionError(f"{shard!r} leads outside the folder")
    except ValueError:
        pass


if __name__ == "__main__":
    import sys

    main(sys.modules[__name__])
