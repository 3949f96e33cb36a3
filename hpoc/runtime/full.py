"""A disk that is full, out of inodes, or over its quota (ENOSPC, EDQUOT) while a study runs.

Every trial writes to the same storage: once one cannot, the others cannot either, and
retrying them only cuts more files short (Ray copies result.json, error files and
checkpoints into the storage in place, so a full disk leaves them empty or half written).
The driver stops the study at the first such failure instead, resumable once there is room.
"""

from __future__ import annotations

import errno
import os
import re
from typing import Any

SPACE, QUOTA = "no space left on a device", "disk quota exceeded"
_ERRNOS = {errno.ENOSPC: SPACE, errno.EDQUOT: QUOTA}
LOW_BYTES, FEW_INODES = 32 * 1024**2, 100  # less room than this: that disk may be the full one
# OSError's own words, and pyarrow's (`[errno 28] No space left on device`), which Ray's
# storage copies raise from a trial's worker: only the text reaches the driver
_TEXT = re.compile(r"\[errno (28|122)\]|No space left on device|Disk quota exceeded", re.I)


def kind(text: str | None) -> str | None:
    """What `text` (an error's) says ran out, in words, or None when it is another error."""
    m = _TEXT.search(text or "")
    if m is None:
        return None
    said = m.group(1) or ("28" if "space" in m.group(0).lower() else "122")
    return _ERRNOS[int(said)]


def of_exception(exc: BaseException | None) -> str | None:
    """kind() of an exception or of one it was raised from (Tune's, around a worker's)."""
    seen, todo = set(), [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in _ERRNOS:
            return _ERRNOS[e.errno]
        if (said := kind(str(e))) is not None:
            return said
        todo += [e.__cause__, e.__context__]
    return None


def _statvfs(path: str | os.PathLike[str]) -> os.statvfs_result | None:
    """statvfs of `path`, or of its nearest existing parent; None where it cannot be read."""
    path = os.path.abspath(path)
    while not os.path.exists(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    try:
        return os.statvfs(path)
    except OSError:
        return None


def room(path: str | os.PathLike[str]) -> str | None:
    """`12.0 MiB and 1,900 inodes free` on the file system of `path`, or None where it cannot
    be read. A quota is not seen here: `statvfs` gives the file system's room, not the user's
    (`lfs quota`, `quota` say that)."""
    st = _statvfs(path)
    if st is None:
        return None
    space = f"{st.f_bavail * st.f_frsize / 1024**2:.1f} MiB"
    if not st.f_files:  # no inode count (some network file systems): space alone
        return f"{space} free"
    return f"{space} and {st.f_favail:,} inodes free"


def roomy(path: str | os.PathLike[str]) -> bool:
    """Whether the file system of `path` has room to spare, bytes and inodes (a quota aside)."""
    st = _statvfs(path)
    return (st is not None and st.f_bavail * st.f_frsize >= LOW_BYTES
            and (not st.f_files or st.f_favail >= FEW_INODES))


def of_storage(text: str | None, storage: str) -> str | None:
    """kind() of a trial's error when it is the storage that ran out: a quota (the storage is
    where quotas are), an error naming a path under it, or a storage without room to spare.
    A full /dev/shm or node /tmp is left to the retries and fail fast: it may pass."""
    what = kind(text)
    if what is None or what == QUOTA:
        return what
    under = os.path.join(os.path.abspath(storage), "")
    return what if under in (text or "") or not roomy(storage) else None


_NAMED = re.compile(r"""['"](/[^'"\n]+)['"]""")  # OSError's `: '/path'`, pyarrow's '/path'


def place(text: str | None, storage: str) -> str:
    """Where a trial's error says it found no room: the storage, unless the error names only
    paths outside it (a home quota met in ~/.cache): the folder of the first of them. Only
    the lines that say the disk was full count (a traceback's `File "/…/train.py"` does not)."""
    under = os.path.join(os.path.abspath(storage), "")
    named = [p for line in (text or "").splitlines() if _TEXT.search(line) for p in _NAMED.findall(line)]
    if not named or any(os.path.join(p, "").startswith(under) for p in named):
        return storage
    return os.path.dirname(named[0]) or named[0]


def stop_line(what: str, storage: str) -> str:
    """Why the study stops: what ran out, where, and the room there."""
    left = room(storage)
    return f"{what} writing under {storage}" + (f" ({left})" if left else "")


def make_room(at: str) -> str:
    """What `hpoc status` says to do about a stop for want of room at `at` (the summary's
    `stop.at`): free space there."""
    return f"free space and files under {at} (or ask for a larger quota)"


def hint(storage: str, again: str) -> str:
    """What to do: make room (or raise the quota), then `again` (the resume settings' step)."""
    return (f"  help: free space and files under {storage} (or ask for a larger quota; fewer "
            "files per trial: docs/results.md, \"Files per trial\"), then " + again)


def after_stop(exp: str, storage: str, again: str) -> str:
    """hint() for a run stopped for want of room in `exp`. Tune's saves replace each file
    whole (whole_upload.py), so the run resumes from the last save that fit; only a state
    an earlier hpoc let Ray save in place can be cut short, and then running again would
    refuse to resume (prior.py): --fresh."""
    return hint(storage, fresh_after(exp) or again)


def run_again(plan: dict[str, Any]) -> str:
    """How a study stopped for want of room goes on once there is room. Its trials that
    failed writing did nothing wrong: under `resume.retry_errored = false` a plain resume
    keeps them failed, and --fresh would lose every finished trial, so the retry it is."""
    from hpoc.runtime import failfast

    resume = plan["resume"]
    if not resume["enabled"] or resume["retry_errored"]:
        return failfast.run_again(plan)
    return ("run the same command again with --retry-errored --from-checkpoint "
            "(HPOC_RETRY_ERRORED=checkpoint for a job script): the study resumes, its finished "
            "trials kept, and the trials the full disk failed go on from their last checkpoint "
            "(a plain resume keeps them failed: `resume.retry_errored = false`)")


def fresh_after(exp: str) -> str | None:
    """The step after making room where the run in `exp` cannot resume (cut_state), or None."""
    cut = cut_state(exp)
    if cut is None:
        return None
    cut = cut.removesuffix(": the study cannot resume from it")
    return (f"pass --fresh to start the study over: {cut}, so the run cannot resume "
            "(`hpoc results` still reads its trials)")


def forget_error_pickle(trial: object, trial_dir: str | None) -> None:
    """Ray reads a failed trial's error.pkl back from the storage for the run's results (a
    resumed run's too), and a full disk leaves that copy empty or cut short: EOFError or
    UnpicklingError ended the driver. Without it Ray reads error.txt, as hpoc does."""
    meta = getattr(trial, "run_metadata", None)
    if getattr(meta, "pickled_error_filename", None):
        meta.pickled_error_filename = None  # saved with the experiment's state
    drop_cut_error_pickle(trial_dir)


def drop_cut_error_pickle(trial_dir: str | None) -> bool:
    """Remove a trial's `error.pkl` that a full disk left empty or cut short: Ray unpickles it
    for the run's results (EOFError, ending the driver) where the text of error.txt would do.
    Whether one was removed."""
    if not trial_dir:
        return False
    path = os.path.join(trial_dir, "error.pkl")
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError:
        return False
    try:
        import cloudpickle

        cloudpickle.loads(data)
        return False
    except Exception:  # noqa: BLE001 - EOFError, UnpicklingError, ...: not an error Ray can read
        pass
    try:
        os.unlink(path)
    except OSError:
        return False
    return True


# The experiment state Tune saves (TuneController.CKPT_FILE_TMPL and its searcher's files),
# each run under its own time stamp; Tune restores the newest of each.
_STATES = ("experiment_state-*.json", "search_gen_state-*.json", "searcher-state-*.pkl")


def cut_state(exp: str | os.PathLike[str]) -> str | None:
    """Why the run in `exp` cannot resume: the newest state file Tune would restore is cut
    short (a full disk as Tune saved it), or None. Tune meets such a file by starting the
    study over in the same directory, silently ("0 finished trials kept")."""
    import glob
    import json
    import pickletools

    for pattern in _STATES:
        files = sorted(glob.glob(os.path.join(glob.escape(str(exp)), pattern)))
        if not files:
            continue
        newest = files[-1]
        try:
            with open(newest, "rb") as fh:
                data = fh.read()
        except OSError:
            continue
        try:
            if not data.startswith(b"\x80"):  # search_gen_state-*.json is a pickle too
                json.loads(data)
            else:  # read up to its STOP, running none of it (pickletools raises ValueError)
                for _ in pickletools.genops(data):
                    pass
            continue
        except ValueError:  # JSONDecodeError is one; so is a pickle cut before its STOP
            pass
        return (f"{newest} is cut short ({len(data):,} bytes; a disk full or over its quota as "
                "Ray saved it in place, under an hpoc before its saves were replaced whole): "
                "the study cannot resume from it")
    return None


# Every state file Tune saves, one of each per run, and restores from the newest by name
# (max(): the name carries the run's time): the controller's, its searcher's, the variant
# generator's and the callbacks' (Ray 2.x, ray/tune/execution/experiment_state.py,
# ray/tune/utils/util.py _load_newest_checkpoint).
_RESTORED = _STATES + ("basic-variant-state-*.json", "callback-states-*.pkl")


def prune_states(exp: str | os.PathLike[str]) -> int:
    """Remove the state files of earlier runs that Tune no longer reads: a resume restores
    only the newest of each kind, and copies every .json/.pkl of the experiment to its
    staging folder and back, so each resume kept one more set. Called before the restore,
    once cut_state found the newest whole; the newest is never touched. How many went."""
    import glob

    gone = 0
    for pattern in _RESTORED:
        for older in sorted(glob.glob(os.path.join(glob.escape(str(exp)), pattern)))[:-1]:
            try:
                os.unlink(older)
                gone += 1
            except OSError:  # read-only, or gone meanwhile: it only costs its room
                pass
    return gone


def quiet_unhandled() -> None:
    """Ray's driver logs, with its whole traceback, the failure of a trial whose result Tune
    no longer waited for (`Unhandled error …`): after a stop for room, the other trials'
    failures of the same full disk, which the stop's line says. Those alone are left out."""
    from hpoc.runtime.raylet_lines import wrap_ray_worker

    def wrap(show: Any) -> Any:
        def handler(e: Exception) -> None:
            if kind(str(e)) is None:
                show(e)
        return handler

    wrap_ray_worker("_unhandled_error_handler", wrap)
