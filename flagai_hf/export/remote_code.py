"""The ``trust_remote_code`` files of an exported folder: which sources a family needs, flattened into one directory.

transformers loads remote code from ONE flat directory and follows only sibling imports (``from .x import y``;
``transformers.dynamic_module_utils.get_relative_imports``). In the package, family files reach shared layers as
``from ...modules.attention import SelfAttention`` and other families as ``from ..bert.tokenization_flagai_bert
import ...``. The exporter therefore

1. starts from the files defining the family's config, every model class registered for it in
   ``auto_registration.AUTO_MODELS`` and the exported tokenizer's class,
2. follows their relative imports (read from the syntax tree, so imports inside functions count too) to the closure of
   files they need, all inside the flagai_hf package,
3. copies each file under its own name (names must be unique) with every relative import rewritten to
   ``from .<file> import``,

and `check_remote_code` verifies the result with transformers' own resolver (``get_relative_import_files``,
``check_imports``), as ``from_pretrained(..., trust_remote_code=True)`` will run it.
"""

import ast
import json
import re
import sys
from pathlib import Path

from transformers.dynamic_module_utils import check_imports, get_imports, get_relative_import_files

PACKAGE_DIR = Path(__file__).resolve().parent.parent  # flagai_hf/
PACKAGE_NAME = PACKAGE_DIR.name

# The first line of a relative import: indentation, the dotted module.
_RELATIVE_FROM = re.compile(r"^(\s*)from\s+(\.+)([\w.]*)\s+import\b")


class ExportError(ValueError):
    """The model or its source files cannot be exported as a self-contained remote-code folder."""


def source_file(cls: type) -> Path:
    """The file of the flagai_hf module that defines ``cls``."""
    module = sys.modules.get(cls.__module__)
    path = Path(getattr(module, "__file__", "") or "").resolve()
    if not path.is_file() or PACKAGE_DIR not in path.parents:
        raise ExportError(f"{cls.__module__}.{cls.__name__} is not defined in a file of the {PACKAGE_NAME} package "
                          f"({path}); only flagai_hf classes are exported as remote code")
    return path


def class_reference(cls: type) -> str:
    """``"<file stem>.<ClassName>"``: how ``auto_map`` names a class of the flattened folder."""
    return f"{source_file(cls).stem}.{cls.__name__}"


def relative_imports(path: Path) -> list[tuple[int, Path]]:
    """``(line number, imported file)`` of every relative import in ``path``.

    Raises ExportError for forms a flat folder cannot hold: ``from . import x`` (a module imported as a name),
    ``from .package import x`` (a package's ``__init__``), or a target outside the flagai_hf package."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.ImportFrom) or node.level == 0:
            continue
        where = f"{path.relative_to(PACKAGE_DIR.parent)}:{node.lineno}"
        if not node.module:
            raise ExportError(f"{where}: 'from {'.' * node.level} import ...' cannot be exported (transformers copies "
                              "only files named in 'from .<file> import <name>'); import the names from their file")
        base = path.parent
        for _ in range(node.level - 1):
            base = base.parent
        target = base.joinpath(*node.module.split(".")).with_suffix(".py")
        if not target.is_file():
            raise ExportError(f"{where}: 'from {'.' * node.level}{node.module} import ...' does not name a file "
                              f"({target} does not exist; importing from a package's __init__ cannot be exported); "
                              "import from the file that defines the names")
        if PACKAGE_DIR not in target.resolve().parents:
            raise ExportError(f"{where}: the relative import leaves the {PACKAGE_NAME} package ({target})")
        found.append((node.lineno, target.resolve()))
    return found


def needed_files(classes: list[type]) -> list[Path]:
    """The files defining ``classes`` and, transitively, every file they import relatively (first-seen order)."""
    order: list[Path] = []
    pending = [source_file(cls) for cls in classes]
    while pending:
        path = pending.pop(0)
        if path in order:
            continue
        order.append(path)
        pending.extend(target for _, target in relative_imports(path))
    by_name: dict[str, Path] = {}
    for path in order:
        if path.name in by_name:
            raise ExportError(f"{by_name[path.name]} and {path} would both be exported as {path.name}: the remote-code "
                              "folder is flat, so the files it needs must have distinct names")
        by_name[path.name] = path
    return order


def flattened_source(path: Path) -> str:
    """``path``'s text with every relative import rewritten to the flat sibling form ``from .<file> import``."""
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    for lineno, target in relative_imports(path):
        line = lines[lineno - 1]
        match = _RELATIVE_FROM.match(line)
        if match is None:  # e.g. "from .x import y" after a ';' or a line continuation
            raise ExportError(f"{path}:{lineno}: put the relative import at the start of its own line "
                              f"(found {line.strip()!r}) so that the flattening can rewrite it")
        lines[lineno - 1] = f"{match.group(1)}from .{target.stem} import" + line[match.end():]
    return "".join(lines)


def write_flattened(classes: list[type], folder: Path) -> list[str]:
    """Copy the files ``classes`` need into ``folder``, flattened; returns the written file names."""
    names = []
    for path in needed_files(classes):
        (folder / path.name).write_text(flattened_source(path), encoding="utf-8")
        names.append(path.name)
    return names


def auto_map_entries(folder: Path) -> dict[str, str]:
    """``{"<Auto class>": "<file stem>.<Class>"}`` from ``config.json`` and ``tokenizer_config.json`` of ``folder``
    (a tokenizer entry's slow and fast slots both counted)."""
    entries = {}
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    entries.update(config.get("auto_map") or {})
    tokenizer_config = folder / "tokenizer_config.json"
    if tokenizer_config.is_file():
        slots = (json.loads(tokenizer_config.read_text(encoding="utf-8")).get("auto_map") or {}).get("AutoTokenizer")
        for index, reference in enumerate(slots or []):
            if reference is not None:
                entries[f"AutoTokenizer[{index}]"] = reference
    return entries


def check_remote_code(folder: str | Path) -> list[str]:
    """Check an exported folder the way ``from_pretrained(folder, trust_remote_code=True)`` will read it.

    For every ``auto_map`` entry: its file exists and defines the class; transformers' ``get_relative_import_files``
    finds every file it imports (all present in the folder); ``check_imports`` finds every package they import
    installed, and none of them imports ``flagai_hf`` outside a ``try:`` block. Every ``.py`` file of the folder
    must be reached this way. Returns the reached file names (sorted); raises ExportError listing the problems.
    """
    folder = Path(folder).resolve()
    problems: list[str] = []
    reached: set[Path] = set()
    entries = auto_map_entries(folder)
    if not entries:
        problems.append(f"{folder}/config.json has no auto_map")
    for auto_class, reference in entries.items():
        module, _, class_name = reference.rpartition(".")
        path = folder / f"{module}.py"
        if not path.is_file():
            problems.append(f"auto_map {auto_class} -> {reference}: {path.name} is missing")
            continue
        if class_name not in _defined_names(path):
            problems.append(f"auto_map {auto_class} -> {reference}: {path.name} defines no {class_name}")
        reached.add(path)
        try:
            reached.update(Path(name) for name in get_relative_import_files(str(path)))
        except FileNotFoundError as error:  # the resolver reads each imported file: one is missing
            problems.append(f"{Path(error.filename).name} is imported (relative import, reached from {path.name}) "
                            f"but not in {folder}; transformers would look for {error.filename}")
    for path in sorted(reached):
        if not path.is_file():
            problems.append(f"{path.name} is imported (relative import) but not in {folder}; transformers would look "
                            f"for {path}")
            continue
        try:
            check_imports(str(path))
        except ImportError as error:
            problems.append(f"{path.name}: {error}")
        if PACKAGE_NAME in get_imports(str(path)):
            problems.append(f"{path.name} imports {PACKAGE_NAME} outside a try: block; remote code must run without "
                            "the package (put such imports in try/except ImportError)")
    unreached = sorted(p.name for p in folder.glob("*.py") if p not in reached)
    if unreached:
        problems.append(f"{', '.join(unreached)} not reached from auto_map by transformers' import resolver (it would "
                        "not be downloaded with the folder)")
    if problems:
        raise ExportError(f"{folder} is not a self-contained remote-code folder:\n  " + "\n  ".join(problems))
    return sorted(p.name for p in reached)


def _defined_names(path: Path) -> set[str]:
    """Top-level class names and assigned names of a source file (``GPT2LMHeadModel = GPT2Model`` counts)."""
    names = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(target.id for target in node.targets if isinstance(target, ast.Name))
    return names
