"""A trial whose process died, in the user's terms.

Ray reports a trial process that died (a segfault in a C extension, `os.abort()`,
`os._exit()`, the kernel's OOM killer, a SIGKILL) with one paragraph that lists every
cause it can think of. The trial's process writes Python's stack of a crash into its
`stderr` (output.crash_stack), and of a call of os._exit or a SIGTERM (output.write_end):
with it the trial's line says what ended the process and where, in the study's code;
without it, what Ray's words or the OOM killer's count (oom.py) tell, else that the
process died without a Python error.

Each rank of a multi-worker trial writes its crash to `rank-<k>.crash` in the trial's
directory (its output goes to Ray's logs only); the rank that died is read from Ray's
error: Ray Train's `[Rank k Error Snippet]`, or the `RANK_NOTE` a warm group adds.
"""

from __future__ import annotations

import itertools
import os
import re

from hpoc.files import read_tail
from hpoc.runtime.retry import latest

# Ray's words for a worker process gone (ActorDiedError, WorkerCrashedError) in error.txt
_DIED = re.compile(r"The actor is dead because its worker process has died|"
                   r"The actor died unexpectedly before finishing this task|"
                   r"The worker died unexpectedly while executing this task")
_FATAL = "Fatal Python error: "
# what the process writes of the ends faulthandler does not see (output.write_end): Ray
# gives no exit code of os._exit, and a warm group's rank ignored SIGTERM (signals run in
# the main thread, which waits in Ray's C++ task loop)
_OWN = "hpoc: "
SIGTERM_HEADER = _OWN + "was terminated by SIGTERM: a `kill`, the job scheduler or a memory watchdog sent it"
# the first line of a crash's record: faulthandler's, or the process's own
# the trial's process saw the OOM killer kill on the dead rank's node meanwhile (oom.py)
OOM_NOTE = "hpoc: the kernel's OOM killer killed a process on the node of the rank that died, during the trial"
# Ray's own words of a worker its SIGTERM handler ended, or that exited with a code
_RAY_SIGTERM = "The process receives a SIGTERM."
_RAY_EXIT = re.compile(r"\b(?:Exit code: |exits with an exit code )(\d+)\.")
_HEADER = re.compile(r"^(?:" + re.escape(_FATAL) + r"|" + re.escape(_OWN) +
                     r"(?=exited with code|was terminated by)).*$", re.MULTILINE)
# what faulthandler writes after its first line: no other output may follow a crash
_STACK_LINE = re.compile(r"(Current thread|Thread) 0x[0-9a-fA-F]+|\s+File \"|\s+<no Python frame>|"
                         r"\s+\.\.\.|Extension modules:|Python runtime state:|Garbage-collecting|"
                         r"Stack \(most recent call first\)")
_TAIL_BYTES = 64 * 1024
_FRAMES = 12
# Ray Train's error of a worker group: one snippet per failed rank
_SNIPPET = re.compile(r"^\[Rank (\d+) Error Snippet\]:$", re.MULTILINE)
# which rank died: pool.py adds it to a warm group rank's death, with_crash beside a rank's stack
RANK_NOTE = "hpoc: the process of rank {rank} of the trial died"
_NOTE = re.compile("^" + re.escape(RANK_NOTE).replace(r"\{rank\}", r"(\d+)") + "$", re.MULTILINE)


def note_rank(exc: BaseException, rank: int) -> None:
    """Name the rank whose death `exc` is, for dead_rank (Python 3.10 has no exception
    notes: the trial's line then names no rank)."""
    add = getattr(exc, "add_note", None)
    if add is not None:
        add(RANK_NOTE.format(rank=rank))


def exit_header(code: int) -> str:
    """The record's first line of a process that called os._exit(code)."""
    return f"{_OWN}exited with code {code}: it called os._exit({code})"


def called_exit(text: str) -> bool:
    """Whether `text`'s last crash record is its process's own os._exit call (exit_header):
    the trainer's doing, which a retry repeats, not the cluster's."""
    at = _last_header(text)
    first = text[at:].split("\n", 1)[0] if at >= 0 else ""
    return first.startswith(_OWN + "exited with code ") and "it called os._exit(" in first


def _last_header(text: str) -> int:
    """Where the last crash record's first line starts in `text`, or -1."""
    found = None
    for found in _HEADER.finditer(text):
        pass
    return found.start() if found else -1


def rank_file(rank: int) -> str:
    """The file of a trial's directory where rank `rank` writes Python's stack of a crash."""
    return f"rank-{rank}.crash"


def dead_rank(text: str | None) -> int | None:
    """The rank of a multi-worker trial whose process died, from its latest failure, or None
    (a one-worker trial, another error)."""
    text = latest(text or "")
    note = _NOTE.search(text)
    if note:
        return int(note.group(1))
    parts = _SNIPPET.split(text)  # [before, rank, snippet, rank, snippet, ...]
    for rank, snippet in zip(parts[1::2], parts[2::2]):
        if _DIED.search(snippet):
            return int(rank)
    return None


def died(text: str | None) -> bool:
    """Whether an error text (its latest failure) is Ray's for a trial process that died."""
    return bool(text and _DIED.search(latest(text)))


def crash(directory: str | None, rank: int | None = None) -> str | None:
    """Python's stack of the crash that ended the trial's process (of `rank`'s, if given),
    from the end of `<directory>/stderr` (`rank-<k>.crash`) with nothing printed after it (a
    later attempt's death is not this one's), or None."""
    if not directory:
        return None
    name = "stderr" if rank is None else rank_file(rank)
    tail = read_tail(os.path.join(directory, name), _TAIL_BYTES) or ""
    at = _last_header(tail)
    if at < 0:
        return None
    first, *rest = tail[at:].strip().splitlines()
    if any(line.strip() and not _STACK_LINE.match(line) for line in rest):
        return None
    # the crashing thread's innermost frames: an error text is kept to its last 4000 characters
    frames = [line for line in itertools.takewhile(lambda ln: ln.strip(), rest[1:]) if "File" in line]
    return "\n".join([first, *frames[:_FRAMES]])


def with_crash(text: str | None, directory: str | None) -> str | None:
    """`text` with the crash's stack after it, when `text` says the trial's process died,
    and the rank's note (kept with the stack when the text is cut to its end, summary.py)."""
    if not died(text):
        return text
    rank = dead_rank(text)
    stack = crash(directory, rank)
    note = "" if rank is None else "\n" + RANK_NOTE.format(rank=rank)
    return f"{text}{note}\n{stack}" if stack else f"{text}{note}"


def stack_of(text: str) -> str | None:
    """The crash stack `with_crash` put after an error text of a process that died, or None."""
    if not died(text):
        return None
    at = _last_header(latest(text))
    return latest(text)[at:] if at >= 0 else None


def died_line(text: str) -> str | None:
    """The trial's error line for a process that died, or None for any other error."""
    if not died(text):
        return None
    rank = dead_rank(text)
    who = "the trial's process" if rank is None else f"the process of the trial's rank {rank}"
    text = latest(text)
    at = _last_header(text)
    if at >= 0:
        first = text[at:].splitlines()[0].strip()
        what = f"crashed: {first[len(_FATAL):]}" if first.startswith(_FATAL) else first[len(_OWN):]
        where = "at the end of the trial's stderr" if rank is None else f"in the trial's {rank_file(rank)}"
        return f"{who} {what} (Python's stack of it is {where})"
    if _RAY_SIGTERM in text:
        return f"{who} {SIGTERM_HEADER[len(_OWN):]}"
    code = _RAY_EXIT.search(text)
    if code:
        return f"{who} exited with code {code.group(1)}"
    if OOM_NOTE in text:
        return (f"{who} was killed by the kernel's OOM killer (it killed a process on that node while "
                "the trial ran): give the trial more memory, or make it use less")
    return (f"{who} died without a Python error: killed (the kernel's OOM killer, "
            "a signal) or it exited outside Python (exit() in C code, os._exit())")
