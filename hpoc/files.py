"""Writing files so that a crash or a full disk never leaves half of one behind, and reading
back those that others append to (a kill can cut their last line short)."""

from __future__ import annotations

import errno
import json
import os
import re
import time
from pathlib import Path
from typing import Any


def not_a_build_dir(out: Path) -> str | None:
    """Why `-o OUT` cannot be a build directory: it names a file (`-o build/s/plan.json` wrote
    build/s/plan.json/plan.json, and no build/s/job.sbatch); None when it can be one."""
    if out.exists() and not out.is_dir():
        return f"{out} exists and is not a directory"
    if not out.exists() and out.suffix in (".json", ".sbatch", ".sh", ".hpo", ".yaml", ".yml"):
        return (f"-o {out}: -o names the build directory, which plan.json and the job scripts are "
                f"written in, not a file: `-o {out.parent}`")
    return None


def missing_hint(name: str, suffixes: tuple[str, ...] | None = None) -> str | None:
    """The path meant by one that names nothing: unexpanded by a quoting shell, an unmatched
    glob, or a near name in the same directory (`study` for study.hpo, a typo); `suffixes`
    narrows the names offered."""
    if name.startswith("~") or "$" in name:
        what = "`~`" if name.startswith("~") else "the `$` variable"
        return f"the shell did not expand {what} (quoted?): leave it unquoted, or give the full path"
    if any(c in os.path.basename(name) for c in "*?["):  # an unmatched glob reaches us as typed
        return "no file matches this pattern (the shell passed it on as typed)"
    if os.path.islink(name):  # a dangling link: `ls` shows the name, so no near name is meant
        return f"it is a symbolic link to `{os.readlink(name)}`, which does not exist"
    import difflib

    directory, base = os.path.split(name.rstrip("/"))
    try:
        entries = [e for e in os.listdir(directory or ".") if suffixes is None or e.endswith(suffixes)]
    except OSError:
        return None
    near = difflib.get_close_matches(base, entries, n=1, cutoff=0.75)
    if not near:
        near = [e for e in entries if os.path.splitext(e)[0] == base][:1]
    return f"did you mean `{os.path.join(directory, near[0])}`?" if near else None


def write_atomic(path: str | os.PathLike[str], text: str, *, mode: int | None = None) -> Path:
    """Write `text` beside `path`, then rename it over `path`. `mode` (e.g. 0o755, or 0o600
    for a secret) sets the permissions; without it a file that exists keeps its own
    (`hpoc fmt --write`). The content is synced before the rename and the directory after:
    without that a node crash can leave the renamed file empty (ext4, XFS delay the data)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        # Created with `mode` already (the umask can only take bits away): a secret is
        # never readable by others, not even before the chmod below.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666 if mode is None else mode)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        if mode is not None:
            tmp.chmod(mode)
        else:
            keep_access(path, tmp)
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:  # its directory is missing or not one: nothing was left
            pass
        if isinstance(exc, OSError) and exc.filename == str(tmp):
            exc.filename = str(path)  # the user asked for `path`; the temporary name is ours
        raise
    _sync_dir(path.parent)
    return path


def keep_access(dest: str | os.PathLike[str], tmp: str | os.PathLike[str]) -> None:
    """Give `tmp` the mode and group of the `dest` it is renamed over (an in-place write kept
    them): a study folder opened to a project's group stays open (a new file gets the umask
    and the user's group). Only what the user may set: a group they are not in stays."""
    try:
        st = os.stat(dest)
    except OSError:
        return  # a new file (or none to read): the umask's
    try:
        os.chown(tmp, -1, st.st_gid)
    except PermissionError:
        pass
    os.chmod(tmp, st.st_mode & 0o7777)


def publish_tree(tmp: str | os.PathLike[str], final: str | os.PathLike[str]) -> None:
    """Rename the folder `tmp`, a whole copy (a checkpoint), to `final`, durably: each file
    and folder in it synced first, the folder holding `final` after. Without that a node
    crash can leave a complete-looking `final` with empty files (the copy was in the page
    cache only). `final` must not exist (os.rename of a folder over a non-empty one fails)."""
    for folder, _, names in os.walk(tmp, topdown=False):
        for name in names:
            path = os.path.join(folder, name)
            if not os.path.islink(path):
                _sync_file(path)
        _sync_dir(Path(folder))
    os.rename(tmp, final)
    _sync_dir(Path(final).parent)


def sync_copy(src: str | os.PathLike[str], dest: str | os.PathLike[str]) -> None:
    """Make `dest`, a copy of the folder `src` that another made and named (Ray's of a
    reported checkpoint, into the storage), durable where it is (`sync_names`)."""
    sync_names(dest, *tree_names(src))


def tree_names(src: str | os.PathLike[str]) -> tuple[list[str], list[str]]:
    """(files, folders) in the folder `src`, relative to it, links left out: what a copy of
    it holds, read before `src` goes (a reporter's temporary folder)."""
    files, folders = [], []
    for folder, _, names in os.walk(src):
        rel = os.path.relpath(folder, src)
        folders.append(rel)
        files += [os.path.normpath(os.path.join(rel, n)) for n in names
                  if not os.path.islink(os.path.join(folder, n))]
    return files, folders


def sync_names(dest: str | os.PathLike[str], files: list[str], folders: list[str]) -> None:
    """Sync `files` and `folders` (`tree_names`) of the copy `dest`, `dest` and the folder
    holding it. Without that a node crash can leave `dest` complete-looking with empty
    files. A file gone from `dest` (Ray's `keep` deleted the checkpoint since) has nothing
    left to sync."""
    for name in files:
        try:
            _sync_file(os.path.join(dest, name))
        except FileNotFoundError:
            pass
    for folder in reversed(folders):  # os.walk lists a folder before those in it
        _sync_dir(Path(os.path.normpath(os.path.join(dest, folder))))
    _sync_dir(Path(dest).parent)


def _sync_file(path: str) -> None:
    """fsync `path`; a file system that cannot (EINVAL) leaves it as it is, a failed write-back
    (EIO, ENOSPC) is raised: the copy is not whole."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno != errno.EINVAL:
            raise
    finally:
        os.close(fd)


def _sync_dir(directory: Path) -> None:
    """Make a rename in `directory` durable; a file system that cannot sync a directory
    (EINVAL, some network ones) or one not readable here leaves the rename as it is."""
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def read_tail(path: str | os.PathLike[str], size: int) -> str | None:
    """The last `size` bytes of a log as text (a cut character replaced), or None where it
    cannot be read: what a log's end says, however long the log grew."""
    try:
        with open(path, "rb") as fh:
            fh.seek(max(0, os.fstat(fh.fileno()).st_size - size))
            return fh.read().decode("utf-8", "replace")
    except OSError:
        return None


def read_json_object(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The JSON object a small file holds (a marker, a record, summary.json), or None where
    the file is missing, unreadable, cut short or holds something else."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def read_json_lines(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The JSON objects of a JSON-lines file (Ray Tune's `result.json`), oldest first.
    Lines that are not a whole JSON object are skipped: a trial killed mid-write leaves
    half a line. A file missing or unreadable reads as no lines."""
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    rows = []
    for line in text.splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def saved_trials(path: str | os.PathLike[str]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(trial, run metadata) of each trial in one `experiment_state-*.json` Ray Tune saved.
    Ray rewrites it atomically, but a copy may be cut short: what cannot be read is skipped
    (an unreadable file reads as no trials)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return []
    out = []
    for item in (data.get("trial_data") or []) if isinstance(data, dict) else []:
        try:
            trial = json.loads(item[0]) if isinstance(item, list) else item
            meta = json.loads(item[1]) if isinstance(item, list) and len(item) > 1 else {}
        except (TypeError, ValueError, IndexError):
            continue
        if isinstance(trial, dict) and trial.get("trial_id"):
            out.append((trial, meta if isinstance(meta, dict) else {}))
    return out


def newest_state(exp: str | os.PathLike[str]) -> Path | None:
    """The experiment state Ray saved last in `exp` (its name carries the time)."""
    files = sorted(Path(exp).glob("experiment_state-*.json"))
    return files[-1] if files else None


# Touched in a trial's directory by the driver each time an attempt of it starts: before its
# first report (and before Ray first saves its state) nothing else says that it runs.
STARTED = ".hpoc-started"


def mark_started(directory: str | None) -> None:
    if not directory:
        return
    try:
        Path(directory).mkdir(parents=True, exist_ok=True)
        (Path(directory) / STARTED).touch()
    except OSError:
        pass  # status then shows it pending until its first report, as before


# The trials' statuses as the driver sees them, rewritten by it when one changes during a
# run: Ray saves its experiment state only every few seconds, and `hpoc status` read from
# that alone lagged the live progress line (a trial PBT paused still running, say). It names
# its run (the lock's `started`) and when it was written: Ray copies a resumed run's staging
# folder over the storage, and an earlier run's file with it, under a new mtime.
LIVE = ".hpoc-trials.json"


def write_live(exp: str | os.PathLike[str] | None, run_started: float | None,
               statuses: dict[str, str]) -> None:
    if exp is None:
        return
    try:
        write_atomic(Path(exp) / LIVE, json.dumps({"run_started": run_started, "written": time.time(),
                                                   "trials": statuses}))
    except OSError:
        pass  # status then reads Ray's saved state alone, as before


def read_live(exp: str | os.PathLike[str]) -> tuple[dict[str, str], float | None, float] | None:
    """(trial id -> status, the run's start, when written), or None."""
    try:
        data = json.loads((Path(exp) / LIVE).read_text(encoding="utf-8"))
        trials, run, written = data["trials"], data.get("run_started"), float(data["written"])
    except (OSError, UnicodeDecodeError, ValueError, TypeError, KeyError, AttributeError):
        return None
    if not isinstance(trials, dict):
        return None
    return ({str(k): v for k, v in trials.items() if isinstance(v, str)},
            float(run) if isinstance(run, (int, float)) else None, written)


def trial_path(trial: Any) -> str | None:
    """A Tune trial's directory, or None before it has one."""
    for attr in ("path", "local_path"):
        try:
            value = getattr(trial, attr)
        except Exception:  # Ray raises when storage is not set up yet
            continue
        if value:
            return str(value)
    return None


_ASIDE = re.compile(r"(.+)\.prev-\d{8}-\d{6}(?:-\d+)?$")


def aside_path(path: Path) -> Path:
    """Where `--fresh` moves an earlier run: `<name>.prev-<date>-<time>` beside it (`-2`,
    `-3`, ... after it when runs were moved aside within the same second)."""
    base = path.with_name(f"{path.name}.prev-{time.strftime('%Y%m%d-%H%M%S')}")
    aside, n = base, 1
    while aside.exists():
        n += 1
        aside = base.with_name(f"{base.name}-{n}")
    return aside


def moved_aside_from(path: Path) -> Path | None:
    """The path an `aside_path` was made from, or None for any other name."""
    m = _ASIDE.match(path.name)
    return path.with_name(m.group(1)) if m else None
