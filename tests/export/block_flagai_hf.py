"""Imported first by the fresh-process workers: from then on ``import flagai_hf`` fails (even when it is installed,
e.g. editable in CI), so only the exported files can be used."""

import importlib
import importlib.abc
import sys


class BlockFlagAIHF(importlib.abc.MetaPathFinder):
    """Refuses ``import flagai_hf`` (even when it is installed, e.g. editable in CI)."""

    def find_spec(self, name, path=None, target=None):
        if name == "flagai_hf" or name.startswith("flagai_hf."):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked: only the exported files may be used)",
                                      name=name)
        return None


sys.meta_path.insert(0, BlockFlagAIHF())


def check_blocked() -> None:
    """Stop the worker if flagai_hf can be imported after all: its checks would not test the exported files."""
    try:
        importlib.import_module("flagai_hf")
    except ImportError:
        pass
    else:
        raise SystemExit("flagai_hf is importable: the check would not test the exported files")
