"""What a trial prints, kept in its directory (`stdout`, `stderr`) with a cap.

Tune's own `log_to_file` wrote every byte to the run's temp directory, then copied it to
the storage: a trainer printing every step filled the temp disk. The trial's process tees
its output here instead, straight into the trial's directory on the storage: past
CAP_BYTES a file moves to `<name>.1` (replacing the part before) and starts again, so at
most twice the cap is kept per file, the latest output always. The process's own streams
still get everything (Ray's worker logs, which session.py caps, and the terminal with -v).
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from typing import Any, Callable, Iterator, TextIO

CAP_BYTES = 16 * 2**20
STREAMS = ("stdout", "stderr")


class CappedLog:
    """A text file that, past `cap` bytes, moves to `<path>.1` and starts again."""

    def __init__(self, path: str, cap: int | None = None) -> None:
        self.path, self.cap = path, cap or CAP_BYTES
        self.rotated: Callable[[], None] | None = None  # told once `path` is a new file
        self._lock = threading.Lock()
        self._fh: TextIO = open(path, "a", encoding="utf-8", errors="replace")
        self._size = self._fh.tell()

    def write(self, text: str) -> None:
        data = text.encode("utf-8", "replace")
        if len(data) > self.cap:  # one huge write: its end, which is what is read
            data = data[-self.cap:]
            text = data.decode("utf-8", "replace")
        with self._lock:
            if self._fh.closed:
                return
            if self._size and self._size + len(data) > self.cap:
                self._fh.close()
                os.replace(self.path, self.path + ".1")
                self._fh = open(self.path, "w", encoding="utf-8", errors="replace")
                self._size = 0
                if self.rotated is not None:
                    self.rotated()
            self._fh.write(text)
            self._size += len(data)

    def flush(self) -> None:
        with self._lock:
            if not self._fh.closed:
                self._fh.flush()

    def close(self) -> None:
        with self._lock:
            self._fh.close()


class _Tee:
    """A stream that also writes to a CappedLog; anything else is the stream's."""

    def __init__(self, stream: Any, log: CappedLog) -> None:
        self._stream, self._log = stream, log

    def write(self, text: str) -> int:
        self._log.write(text)
        return self._stream.write(text)

    def flush(self) -> None:
        self._log.flush()
        self._stream.flush()

    def __getattr__(self, name: str) -> Any:  # fileno, isatty, encoding, buffer, ...
        return getattr(self._stream, name)


@contextlib.contextmanager
def kept(directory: str | None) -> Iterator[None]:
    """Tee this process's stdout and stderr into `directory` while the trial runs."""
    if not directory or type(sys.stdout).__name__ == "Tee":
        yield  # a trial of a run saved before: Tune's log_to_file keeps its output
        return
    logs = [CappedLog(os.path.join(directory, name)) for name in STREAMS]
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _Tee(saved[0], logs[0]), _Tee(saved[1], logs[1])
    try:
        with crash_stack(os.path.join(directory, "stderr")) as follow:
            logs[1].rotated = follow
            yield
    finally:
        sys.stdout, sys.stderr = saved
        for log in logs:
            log.close()


# The crash_stack blocks open in this process, the latest last (nested, or two threads'
# ending out of order): each one's crash file, for the ends faulthandler does not see
# (os._exit, a SIGTERM), the thread that runs its trial, and the process (not a forked
# child); what os._exit and faulthandler were before the first.
_blocks: list[dict[str, Any]] = []
_blocks_lock = threading.Lock()
_before: dict[str, Any] = {}
_real_exit = os._exit


def _block(thread: int) -> dict[str, Any] | None:
    """The open block of `thread` in this process, else the latest one, or None."""
    mine = [b for b in list(_blocks) if b.get("fh") is not None and b["pid"] == os.getpid()]
    return next((b for b in reversed(mine) if b["thread"] == thread), mine[-1] if mine else None)


def write_end(header: str, frame: Any = None, thread: int | None = None) -> bool:
    """Write `header` and Python's stack from `frame` (or of `thread`) to this process's
    crash file as faulthandler writes a crash, so crash.py reads it; False without one."""
    block = _block(threading.get_ident() if thread is None else thread)
    if block is None:
        return False
    fh = block["fh"]
    if frame is None:
        frame = sys._current_frames().get(thread if thread is not None else block["thread"])
    lines = [header, "", "Stack (most recent call first):"]
    while frame is not None:
        lines.append(f'  File "{frame.f_code.co_filename}", line {frame.f_lineno} in {frame.f_code.co_name}')
        frame = frame.f_back
    try:
        fh.write(("\n".join(lines) + "\n").encode("utf-8", "replace"))
        fh.flush()
    except (OSError, ValueError):
        return False
    return True


def _exit(code: int) -> None:
    """os._exit, that first says so: Ray tells only that the process's connection ended."""
    if _block(threading.get_ident()) is not None:  # not a forked child's (a DataLoader worker's)
        from hpoc.runtime.crash import exit_header

        with contextlib.suppress(Exception):
            write_end(exit_header(code), sys._getframe(1))
    _real_exit(code)


@contextlib.contextmanager
def crash_stack(path: str, fresh: bool = False) -> Iterator[Callable[[], None]]:
    """Python's stack of a crash (a segfault, an abort in a C extension) appended to `path`
    (emptied first if `fresh`): Ray's worker writes it to its own log, in the temp directory
    a local run removes, and the trial's line could only say that its process died
    (crash.py reads it). Yields what to call once `path` was rotated (CappedLog): the stack
    went on into the file moved to `.1`, and was lost with it at the next rotation. Only
    within the block: a rotation after it (another thread's write) changes nothing. A call
    of os._exit is written there too (write_end)."""
    import faulthandler

    held: list[Any] = []
    lock, ended = threading.Lock(), False

    def follow() -> None:
        with lock:
            if not ended:
                _follow()

    def _follow() -> None:
        try:
            fh = open(path, "wb" if fresh and not held else "ab")  # its own descriptor
        except OSError:
            return
        with _blocks_lock:
            if _blocks and _blocks[-1] is block:  # an earlier block's rotation leaves the latest's
                faulthandler.enable(file=fh, all_threads=False)
            block["fh"] = fh
        for old in held:
            old.close()
        held[:] = [fh]

    block: dict[str, Any] = {"thread": threading.get_ident(), "pid": os.getpid(), "path": path, "fresh": fresh}
    with _blocks_lock:
        if not _blocks:
            _before.update(faulthandler=faulthandler.is_enabled(), exit=os._exit)
            os._exit = _exit
        _blocks.append(block)
    follow()
    try:
        yield follow
    finally:
        with lock:
            ended = True
        with _blocks_lock:
            _blocks[:] = [b for b in _blocks if b is not block]  # not remove(): equal dicts
            latest = next((b for b in reversed(_blocks) if b.get("fh") is not None), None)
            if not _blocks:
                os._exit = _before["exit"]
            if held:
                faulthandler.disable()
                if latest is not None:  # a block still open: its file again
                    faulthandler.enable(file=latest["fh"], all_threads=False)
                elif _before["faulthandler"] and sys.__stderr__ is not None:  # Ray's, on the worker's own stderr
                    faulthandler.enable(file=sys.__stderr__, all_threads=False)
                held[0].close()


@contextlib.contextmanager
def rank_crash(directory: str | None, rank: int) -> Iterator[None]:
    """A crash of this rank of a multi-worker trial (whose output goes to Ray's logs only)
    in `<directory>/rank-<k>.crash`, emptied for each attempt; removed when the rank ends
    without one (a rank killed with its group leaves it empty)."""
    from hpoc.runtime.crash import rank_file

    if not directory:
        yield
        return
    path = os.path.join(directory, rank_file(rank))
    try:
        with crash_stack(path, fresh=True):
            yield
    finally:
        _drop_if_empty(path)


def recording() -> bool:
    """Whether this process has a crash file open (a crash_stack block) for write_end."""
    return _block(threading.get_ident()) is not None


def set_aside_rank_crashes() -> list[dict[str, Any]]:
    """Remove the empty crash files of the rank_crash blocks open in this process (rank_term:
    Ray may end it any moment, without a crash); the blocks, for put_back."""
    aside = []
    for block in list(_blocks):
        if block["fresh"] and block["pid"] == os.getpid() and block.get("fh") is not None:
            with contextlib.suppress(OSError):
                if os.path.getsize(block["path"]) == 0:
                    os.remove(block["path"])
                    aside.append(block)
    return aside


def put_back(blocks: list[dict[str, Any]]) -> None:
    """Open the crash files set aside again, for write_end (the removed file's descriptor
    stays open: faulthandler may still write to it)."""
    for block in blocks:
        if any(b is block for b in list(_blocks)):  # not one that ended meanwhile
            with contextlib.suppress(OSError):
                block["fh"] = open(block["path"], "ab")


def drop_empty_rank_crashes(directory: str | None, workers: int) -> None:
    """Remove the empty `rank-<k>.crash` of ranks that ended with their failed group (killed,
    os._exit): rank_crash could not, and they hold no crash."""
    from hpoc.runtime.crash import rank_file

    for rank in range(workers if directory else 0):
        _drop_if_empty(os.path.join(directory, rank_file(rank)))


def drop_empty_crashes_in(directory: str | None) -> None:
    """Remove every empty `rank-<k>.crash` of a trial's directory (watch.sweep_rank_crashes)."""
    with contextlib.suppress(OSError):
        for name in os.listdir(directory) if directory else []:
            if name.startswith("rank-") and name.endswith(".crash"):
                _drop_if_empty(os.path.join(directory, name))


def _drop_if_empty(path: str) -> None:
    with contextlib.suppress(OSError):
        if os.path.getsize(path) == 0:
            os.remove(path)
