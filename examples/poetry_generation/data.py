"""Tang poems (唐诗三百首) from Debian's ``fortunes-zh`` for (title -> poem) generation.

The file is ``tang300`` of the Debian package ``fortunes-zh`` 2.98: 313 poems, 23,080 characters, public domain. It is
read from ``<repo>/.data/fortunes-zh/usr/share/games/fortunes/tang300`` (where ``bash scripts/setup.sh`` unpacks the
.deb without installing it) or from ``/usr/share/games/fortunes/tang300`` (``apt-get install fortunes-zh``).

Format (fortune): records separated by lines holding only ``%``; in each record the first line is the title in
``《》`` and the second ``作者：<author>``, both wrapped in ANSI colour escapes (``\\x1b[32m … \\x1b[m``), which are
stripped; the remaining lines are the poem, one couplet per line (``床前明月光，疑是地上霜。``).

`load_poems` returns `Poem` records (title, author, text = the lines concatenated, form). The **form** follows
FlagAI's poetry example sources (``"桃花：七言绝句"``): the poem's phrases (split at ``，。？！；：、``) all of 5 or 7
characters make it 五言 / 七言, with 4 phrases 绝句, 8 phrases 律诗, otherwise 古诗; anything else is 杂言.

Split (`split_poems`): a poem is held out when ``md5(title) mod 100 < 10`` (31 of 313 poems), fixed; poems sharing a
title (``杂诗`` x3) stay on one side.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass

SETUP_HINT = "bash scripts/setup.sh"
RELATIVE_PATH = os.path.join("usr", "share", "games", "fortunes")
REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
HELD_OUT_PERCENT = 10

ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")
PHRASE_SPLIT = re.compile(r"[，。？！；：、,.?!;:]")


@dataclass(frozen=True)
class Poem:
    title: str
    author: str
    text: str
    form: str  # 五言绝句, 七言律诗, 五言古诗, 杂言, ...


def fortune_path(name: str = "tang300") -> str:
    """The fortunes-zh file ``name`` (tang300, song100): the repository's ``.data`` copy, else the system one."""
    candidates = [os.path.join(REPO_ROOT, ".data", "fortunes-zh", RELATIVE_PATH, name),
                  os.path.join(os.sep, RELATIVE_PATH, name)]
    for path in candidates:
        if os.path.isfile(path):
            return path
    raise FileNotFoundError(
        f"The Tang poems ({name}, Debian package fortunes-zh) were not found at {' or '.join(candidates)}. Run "
        f"`{SETUP_HINT}` (it unpacks fortunes-zh into .data/ without installing it) or `apt-get install fortunes-zh`."
    )


def poem_form(text: str) -> str:
    """五言/七言 + 绝句 (4 phrases) / 律诗 (8) / 古诗 (other counts) when every phrase has 5 or 7 characters, else 杂言."""
    phrases = [p for p in PHRASE_SPLIT.split(text) if p]
    lengths = {len(p) for p in phrases}
    if len(lengths) != 1 or not lengths <= {5, 7}:
        return "杂言"
    size = "五言" if lengths == {5} else "七言"
    kind = {4: "绝句", 8: "律诗"}.get(len(phrases), "古诗")
    return size + kind


def parse_fortunes(content: str) -> list[Poem]:
    """Records of a fortunes-zh poetry file as `Poem` s (records without a ``《title》`` line and text are skipped)."""
    poems = []
    for record in re.split(r"^%\s*$", content, flags=re.MULTILINE):
        lines = [ANSI_ESCAPE.sub("", line).strip() for line in record.splitlines()]
        lines = [line for line in lines if line]
        if len(lines) < 3:
            continue
        title = re.search(r"《(.+?)》", lines[0])
        if title is None:
            continue
        author = lines[1].split("：", 1)[-1].strip() if lines[1].startswith("作者") else ""
        text = "".join(lines[2:] if author else lines[1:])
        poems.append(Poem(title=title.group(1), author=author, text=text, form=poem_form(text)))
    return poems


def load_poems(name: str = "tang300", path: str | None = None) -> list[Poem]:
    """All poems of the file, in file order (313 for tang300)."""
    with open(path or fortune_path(name), encoding="utf-8") as f:
        return parse_fortunes(f.read())


def is_held_out(title: str, percent: int = HELD_OUT_PERCENT) -> bool:
    return int(hashlib.md5(title.encode("utf-8")).hexdigest(), 16) % 100 < percent


def split_poems(poems: list[Poem], percent: int = HELD_OUT_PERCENT) -> tuple[list[Poem], list[Poem]]:
    """``(train, held_out)``, each in file order."""
    train, held_out = [], []
    for poem in poems:
        (held_out if is_held_out(poem.title, percent) else train).append(poem)
    return train, held_out


def load_split(train_limit: int | None = None, test_limit: int | None = None, name: str = "tang300"
               ) -> tuple[list[Poem], list[Poem]]:
    """The fixed train / held-out split, optionally cut to the first ``*_limit`` poems (``None`` / negative: all)."""
    train, held_out = split_poems(load_poems(name))
    if train_limit is not None and train_limit >= 0:
        train = train[:train_limit]
    if test_limit is not None and test_limit >= 0:
        held_out = held_out[:test_limit]
    return train, held_out


__all__ = ["Poem", "fortune_path", "poem_form", "parse_fortunes", "load_poems", "split_poems", "load_split"]
