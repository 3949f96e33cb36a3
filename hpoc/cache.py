"""A private per-user cache for work that comes out the same on every start (the built
parser, plans already validated), so that commands on a login node answer at once.

$XDG_CACHE_HOME/hpoc or ~/.cache/hpoc: the package's own directory may be read-only, and a
shared /tmp is writable by others. $HOME is often shared between login and compute nodes
running other Pythons, so entries name what they depend on. Losing the cache costs time,
never correctness: every failure here means "no cache".
"""

from __future__ import annotations

import os


def cache_dir() -> str | None:
    """The cache directory (made 0700), or None when it is not ours or not writable."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    path = os.path.join(base, "hpoc")
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
        if os.stat(path).st_uid != os.getuid() or not os.access(path, os.W_OK):
            return None
    except OSError:
        return None
    return path


def known(book: str, key: str) -> bool:
    """Whether `key` was noted in `book` (by any recent run of this user)."""
    path = cache_dir()
    if path is None:
        return False
    try:
        with open(os.path.join(path, book), encoding="ascii") as fh:
            return key in fh.read().split()
    except (OSError, ValueError):
        return False


def note(book: str, key: str, keep: int = 256) -> None:
    """Note `key` in `book`, which keeps the last `keep` keys (a bounded file, replaced
    whole: a reader never sees half of it; two runs noting at once may lose one key)."""
    path = cache_dir()
    if path is None:
        return
    target = os.path.join(path, book)
    try:
        with open(target, encoding="ascii") as fh:
            keys = [k for k in fh.read().split() if k != key]
    except (OSError, ValueError):
        keys = []
    tmp = f"{target}.tmp{os.getpid()}"
    try:
        with open(tmp, "w", encoding="ascii") as fh:
            fh.write("".join(f"{k}\n" for k in [*keys, key][-keep:]))
        os.replace(tmp, target)
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass
