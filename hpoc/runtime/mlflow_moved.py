"""An MLflow file store moved (or copied) with its study, repointed where it is now.

MLflow records each experiment's and run's artifact folder in its `meta.yaml` as an absolute
path (`artifact_location: file:///old/proj/results/s/mlruns/1`). A study moved since kept
logging its artifacts there, resumed and added trials alike: into the original of a `cp -r`,
or a folder recreated at (or refused by) the old place. The driver of a resumed moved study
rewrites those paths into the old store to the same place in this one, before a trial logs.
No MLflow import: its meta.yaml files are text, one `key: value` a line.
"""

from __future__ import annotations

import urllib.parse
from pathlib import Path
from typing import Any, Mapping

from hpoc.files import write_atomic

_KEYS = ("artifact_location", "artifact_uri")


def moved_root(was: Path, exp: Path) -> tuple[Path, Path] | None:
    """(the folder that moved, where it was): `exp` and `was` without the names they end in
    alike (`/new/proj/results/s` and `/old/proj/results/s` → `/new/proj`, `/old/proj`)."""
    new, old = Path(exp).parts, Path(was).parts
    k = 0
    while k < min(len(new), len(old)) - 1 and new[-1 - k] == old[-1 - k]:
        k += 1
    if new[: len(new) - k] == old[: len(old) - k]:
        return None
    return Path(*new[: len(new) - k]), Path(*old[: len(old) - k])


def repoint(plan: Mapping[str, Any], was: Path, exp: Path) -> None:
    """Each MLflow file store of the plan's loggers that lies in what moved (`exp`, which
    was `was`): its artifact paths into the old place made paths into this one."""
    from hpoc.runtime.tracking import _file_root, _loggers, mlflow_uri

    roots = moved_root(was, exp)
    if roots is None:
        return
    new_root, old_root = roots
    for logger in _loggers(plan, "mlflow"):
        uri = mlflow_uri(plan, logger)
        if not uri.startswith("file:"):
            continue
        store = _file_root(uri)
        try:
            old_store = old_root / store.relative_to(new_root)
        except ValueError:  # a store outside what moved: its paths are still true
            continue
        for meta in [*store.glob("*/meta.yaml"), *store.glob("*/*/meta.yaml")]:
            _rewrite(meta, old_store, store)


def _rewrite(meta: Path, old_store: Path, store: Path) -> None:
    try:
        lines = meta.read_text(encoding="utf-8").splitlines(keepends=True)
    except (OSError, UnicodeDecodeError):
        return
    changed = False
    for i, line in enumerate(lines):
        key, sep, value = line.partition(": ")
        if key not in _KEYS or not sep:
            continue
        text = value.strip().strip("'\"")
        is_uri = text.startswith("file:")
        path = Path(urllib.parse.unquote(urllib.parse.urlsplit(text).path) if is_uri else text)
        try:
            rel = path.relative_to(old_store)
        except ValueError:
            continue
        now = store / rel
        lines[i] = f"{key}: {now.as_uri() if is_uri else now}\n"
        changed = True
    if changed:
        try:
            write_atomic(meta, "".join(lines))
        except OSError:  # a store this user cannot write: its artifacts fail as before
            pass


def repoint_seen(plan: Mapping[str, Any], seen: Any, exp: Path) -> None:
    """`repoint` for a run that resumes `exp`, by the marker as its driver read it
    (marker.Seen): a directory moved since its last run (marker.moved)."""
    from hpoc.runtime import marker

    if seen.recorded and (was := marker.moved(seen.recorded, seen.fp, exp)) is not None:
        repoint(plan, was, exp)
