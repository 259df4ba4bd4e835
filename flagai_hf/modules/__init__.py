"""Shared layers, blocks and heads used by more than one model family (one flat folder; files import each other only
as ``from .x import y`` so that exported remote-code folders keep working)."""
