"""Tune's saves of the experiment into the storage, each file replaced whole.

Tune writes its experiment state (`experiment_state-*.json`, the searcher's and the
variant generator's state) and the trials' logs into a staging folder on the driver's node
and copies that folder into the storage at every save (`_FilesystemSyncer`, whose upload is
`pyarrow.fs.copy_files`: ray/train/_internal/storage.py, Ray 2.60). That copy writes each
file in place, truncated first: a disk that filled or a quota met during it left the only
copy of the state cut short, and the study could not resume (all its trials lost to a
`--fresh`). Here, on a POSIX storage, each file is written beside its place and renamed
over it: a copy the disk cuts short is removed, and the last whole one stays, so the next
run resumes from the last save that fit.

A trial's file that fails at every save (a colleague's file, EACCES; a quota that stays
met) holds the state back for the rest of the study, and Ray only logs it: after
HELD_SAVES saves and HELD_S seconds held, the driver says it once and HELD names it for
`hpoc status`; a state still held back when the run ends is said then (ended()), as no
later save will take it whole. Skipping that file instead would let the state claim reports its trial's
result.json lacks, so the state stays held until the file goes.
"""

from __future__ import annotations

import errno
import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

from hpoc.files import _sync_dir, _sync_file, keep_access

TMP_SUFFIX = ".hpoc-up"  # not .json/.pkl: Tune's restore copies back only those
THREADS = 8
HELD = ".hpoc-held-back"  # in the storage's experiment folder while the state is held back
HELD_SAVES, HELD_S = 3, 600.0  # both: saves every few seconds, or one save that hit a passing full disk

_held: dict[str, Any] = {"since": None, "saves": 0, "said": False, "last": None}
_say: Callable[[str], None] | None = None


def upload(local_path: str, fs: Any, fs_path: str, exclude: Any = None) -> None:
    """Copy the folder `local_path` into `fs_path`, each file by a rename. The trials'
    files go first, and the state only once they all went: a state in the storage never
    names reports its trials' logs there lack. The first error is raised after the
    trials' files were all tried; a state held back long is said (_hold)."""
    del fs, exclude  # a local folder, nothing excluded (install() checks)
    top, nested = [], []
    for folder, _, names in os.walk(local_path):
        rel = os.path.relpath(folder, local_path)
        for name in sorted(names):
            (top if rel == "." else nested).append(os.path.normpath(os.path.join(rel, name)))

    def one(rel: str) -> tuple[str | None, tuple[str, OSError] | None]:
        """(the folder of the file if it was replaced, the file and its error)"""
        src, dest = os.path.join(local_path, rel), os.path.join(fs_path, rel)
        try:
            return (os.path.dirname(dest) if replace_whole(src, dest) else None), None
        except OSError as exc:
            return None, None if not os.path.exists(src) else (rel, exc)  # gone since the walk: nothing to save

    # In threads, as pyarrow copies: on a shared file system each file waits on the network.
    with ThreadPoolExecutor(THREADS) as pool:
        for batch in (nested, top):
            done = list(pool.map(one, batch))
            for folder in sorted({d for d, _ in done if d}):
                _sync_dir(Path(folder))  # the trials' renames durable before the state's
            first = next((e for _, e in done if e is not None), None)
            if first is not None:
                _hold(fs_path, *first)
                raise first[1]
    _hold(fs_path, None, None)


def _hold(fs_path: str, rel: str | None, exc: OSError | None) -> None:
    """Count the saves in a row that left the state as it was (rel: the file that failed;
    None: this save went whole); say it once it has lasted, and keep HELD as long."""
    held = os.path.join(fs_path, HELD)
    if rel is None:
        try:
            os.unlink(held)  # this run's, or one an earlier run left as it ended held
        except OSError:
            pass
        _held.update(since=None, saves=0, said=False, last=None)
        return
    now = time.time()
    _held["since"] = _held["since"] or now
    _held["saves"] += 1
    _held["last"] = (fs_path, rel, exc)
    if _held["said"] or _held["saves"] < HELD_SAVES or now - _held["since"] < HELD_S:
        return
    _tell(fs_path, rel, exc)


def ended() -> None:
    """At the run's end, Tune's last save done: a state it left held back is said now, held
    however briefly (no later save of this run will take it whole)."""
    if _held.get("last") is not None and not _held["said"]:
        _tell(*_held["last"])


def _tell(fs_path: str, rel: str, exc: OSError | None) -> None:
    """Say the state held back, once, and leave HELD beside it for `hpoc status`."""
    held = os.path.join(fs_path, HELD)
    _held["said"] = True
    line = held_words(fs_path, rel, exc, _held["saves"], time.time() - _held["since"])
    if _say is not None:
        _say(f"[hpoc] warning: {line}")
    try:
        with open(held, "w", encoding="utf-8") as fh:  # tiny: it may fit where the file did not
            fh.write(line + "\n")
    except OSError:
        pass


def held_words(fs_path: str, rel: str, exc: OSError | None, saves: int, seconds: float) -> str:
    """One line: which file, its error, what to do, and how old a resume's state is."""
    code = getattr(exc, "errno", None)
    if code in (errno.EACCES, errno.EPERM, errno.EROFS):
        todo = "fix its permissions in the storage (or remove it there)"
    elif code in (errno.ENOSPC, errno.EDQUOT):
        todo = "free space in the storage (or raise the quota)"
    else:
        todo = "fix what refuses it"
    why = exc.strerror if exc is not None and exc.strerror else str(exc)
    try:  # said at the run's end too, on the driver's own thread: never an error of its own
        states = [os.path.join(fs_path, n) for n in os.listdir(fs_path) if n.startswith("experiment_state-")] \
            if os.path.isdir(fs_path) else []
        stamp = max((os.path.getmtime(p) for p in states), default=None)
        since = ("a resume starts from the state of "
                 + time.strftime("%Y-%m-%d %H:%M", time.localtime(stamp)) if stamp is not None
                 else "no state was saved yet: a resume would start over")
    except OSError:
        since = "a resume starts from the last state saved"
    last = f"last {saves} saves" if saves > 1 else "last save"
    return (f"the experiment state was not saved for the {last} ({seconds / 60:.0f} min): "
            f"{rel} could not be written to {fs_path} ({why}); {todo}; until then {since}")


def replace_whole(src: str, dest: str) -> bool:
    """`dest` becomes a copy of `src`, or stays as it was; whether it was replaced. A
    `dest` equal to `src` (a finished trial's logs, at every save) is left alone: no
    write, nor room for a copy. A `src` written as it was copied is left for the next
    save: the copy may be cut (Tune writes its next state in place while an upload runs)."""
    before = _written(src)
    if _same(src, dest):
        return False
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    tmp = os.path.join(os.path.dirname(dest), f".{os.path.basename(dest)}{TMP_SUFFIX}")
    try:
        shutil.copyfile(src, tmp)
        if _written(src) != before or os.path.getsize(tmp) != before[0]:
            os.unlink(tmp)
            return False
        keep_access(dest, tmp)
        # On disk before it is named: a node crash leaves the old file or the new one, never
        # an empty one; and Lustre and NFS clients report a quota only as the data goes out.
        _sync_file(tmp)
        os.replace(tmp, dest)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return True


def _written(path: str) -> tuple[int, int, int]:
    st = os.stat(path)
    return st.st_size, st.st_mtime_ns, st.st_ino


def remove_leftovers(exp: str | os.PathLike[str]) -> int:
    """Remove the copies a driver killed mid-save left beside their files (they count
    against the quota, unread); called before a resumed run's first save. How many went."""
    import glob

    gone = 0
    for pattern in (f".*{TMP_SUFFIX}", f"*/.*{TMP_SUFFIX}"):
        for path in glob.glob(os.path.join(glob.escape(str(exp)), pattern)):
            try:
                os.unlink(path)
                gone += 1
            except OSError:
                pass
    return gone


def _same(src: str, dest: str, chunk: int = 1 << 20) -> bool:
    try:
        if os.path.getsize(src) != os.path.getsize(dest):
            return False
        with open(src, "rb") as a, open(dest, "rb") as b:
            while True:
                x = a.read(chunk)
                if x != b.read(chunk):
                    return False
                if not x:
                    return True
    except OSError:
        return False


def install(say: Callable[[str], None] | None = None) -> bool:
    """Make Tune's syncer upload folders to a local or shared POSIX storage by upload();
    other file systems (S3, ...) and uploads with exclusions stay Ray's. Once per process;
    whether it is in place (False: this Ray's syncer is not the one this was written for).
    `say`: how the driver writes a line (a state held back long is said there)."""
    global _say
    _say = say
    try:
        from pyarrow.fs import LocalFileSystem
        from ray.train._internal import storage
    except ImportError:
        return False
    syncer = getattr(storage, "_FilesystemSyncer", None)
    command: Callable[..., Any] | None = getattr(syncer, "_sync_up_command", None)
    if command is None:
        return False
    if getattr(command, "hpoc_whole", False):
        return True

    def _sync_up_command(self: Any, local_path: str, uri: str, exclude: Any = None) -> Any:
        fn, kwargs = command(self, local_path, uri, exclude)
        if (fn is storage._upload_to_fs_path and not exclude and isinstance(kwargs.get("fs"), LocalFileSystem)
                and os.path.isdir(local_path)):
            return upload, kwargs
        return fn, kwargs

    _sync_up_command.hpoc_whole = True  # type: ignore[attr-defined]
    syncer._sync_up_command = _sync_up_command  # type: ignore[union-attr]
    return True
