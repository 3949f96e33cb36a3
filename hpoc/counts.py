"""Counts said as words, for people (JSON and CSV keep their keys): `2 errors`, `1 error`.

A status word that is a noun takes its plural; the others are states (`2 completed`,
`2 paused`, `2 time limit`: stopped by it) and read right as they are."""

from __future__ import annotations

_PLURALS = {"error": "errors", "trial": "trials"}


def plural(n: int, word: str) -> str:
    """`word` as it reads after the count `n`."""
    return word if n == 1 else _PLURALS.get(word, word)


def counted(n: int, word: str) -> str:
    return f"{n} {plural(n, word)}"
