"""One live progress line for a running study.

On a terminal the line is redrawn in place; in a batch log (SLURM output file) it is printed
as a plain line, only when something changed and at most every `min_interval_s` seconds, plus
a heartbeat every `heartbeat_s` so a quiet job still shows it is alive.

    progress = Progress(total=8, metric="val_loss", mode="min")
    progress.update(done=3, running=2, pending=3, errored=0, best=0.21, best_trial="a1_00002")
    progress.close()

`tune_callback(progress)` feeds it from Ray Tune (imports Ray only when called).
"""

from __future__ import annotations

import math
import shutil
import sys
import time
from typing import Any, Callable, TextIO

# (stream, line): the live line on a terminal without its newline, for said_over()
_ON_SCREEN: tuple[Any, str] | None = None


def format_elapsed(seconds: float) -> str:
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours:02d}:{rest // 60:02d}:{rest % 60:02d}"


def format_line(done: int, running: int, pending: int, errored: int = 0, *,
                total: int | None = None, metric: str | None = None,
                best: float | None = None, best_trial: str | None = None,
                elapsed: float = 0.0, prefix: str = "hpoc", paused: int = 0) -> str:
    finished = done + errored
    count = f"{finished}/{total} trials finished" if total else f"{finished} trials finished"
    if errored:
        count += f" ({errored} errored)"
    parts = [f"[{prefix}] {format_elapsed(elapsed)}", count, f"{running} running",
             f"{pending} pending"]
    if paused:  # by a scheduler (PBT) or a stop: neither finished nor waiting to start
        parts.append(f"{paused} paused")
    if best is not None and math.isfinite(best):
        name = metric or "best"
        parts.append(f"best {name}={best:.4g}" + (f" ({best_trial})" if best_trial else ""))
    return " | ".join(parts)


class Progress:
    def __init__(self, total: int | None = None, metric: str | None = None, mode: str = "min",
                 stream: TextIO | None = None, min_interval_s: float | None = None,
                 heartbeat_s: float = 300.0, tty: bool | None = None,
                 clock: Callable[[], float] = time.monotonic, prefix: str = "hpoc") -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.tty = _isatty(self.stream) if tty is None else tty
        self.total, self.metric, self.mode, self.prefix = total, metric, mode, prefix
        self.min_interval_s = (0.25 if self.tty else 10.0) if min_interval_s is None \
            else min_interval_s
        self.heartbeat_s = heartbeat_s
        self.clock = clock
        self.started = clock()
        self._last_print: float | None = None
        self._printed_state: tuple | None = None
        self._state: tuple | None = None
        self._line = ""
        self._drawn = False  # a TTY line is on screen without its newline

    def update(self, done: int, running: int, pending: int, errored: int = 0,
               best: float | None = None, best_trial: str | None = None,
               elapsed: float | None = None, force: bool = False, paused: int = 0) -> bool:
        """Record the current counts; print if due. Returns whether a line was written."""
        now = self.clock()
        self._state = (done, running, pending, errored, paused, best, best_trial)
        self._line = format_line(done, running, pending, errored, total=self.total,
                                 metric=self.metric, best=best, best_trial=best_trial,
                                 elapsed=now - self.started if elapsed is None else elapsed,
                                 prefix=self.prefix, paused=paused)
        since = None if self._last_print is None else now - self._last_print
        changed = self._state != self._printed_state
        due = (force or since is None or (changed and since >= self.min_interval_s)
               or since >= self.heartbeat_s)
        if not due:
            return False
        self._write(self._line)
        self._last_print, self._printed_state = now, self._state
        return True

    def close(self) -> None:
        """Print the final state if it was not printed yet; end the TTY line."""
        if self._state is not None and self._state != self._printed_state:
            self._write(self._line)
            self._printed_state = self._state
        if self.tty and self._drawn:
            _off_screen(self.stream)
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False

    # Ray pickles callbacks into the experiment state; an open stream cannot be pickled.
    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["stream"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        # Unpickled by Tuner.restore, in the next run: its clock starts now (the earlier
        # run's start read as 00:00:56 on the first line of a run just resumed, and means
        # nothing in another process or after a reboot), and nothing is on screen yet.
        from hpoc.runtime.watch import STATE  # this run's stream (RunOptions.progress)

        self.__dict__.update(state)
        if self.stream is None:
            self.stream = STATE.stream or sys.stderr
            self.tty = _isatty(self.stream)
        self.started = self.clock()
        self._last_print = self._printed_state = None
        self._drawn = False

    def _write(self, line: str) -> None:
        try:
            if self.tty:
                global _ON_SCREEN
                width = shutil.get_terminal_size((120, 20)).columns
                _ON_SCREEN = (self.stream, line[: max(20, width - 1)])
                self.stream.write("\r" + _ON_SCREEN[1] + "\x1b[K")
                self._drawn = True
            else:
                self.stream.write(line + "\n")
            self.stream.flush()
        except (OSError, ValueError):
            pass  # a closed or broken log stream must never stop the study


def _off_screen(stream: Any) -> None:
    global _ON_SCREEN
    if _ON_SCREEN is not None and _ON_SCREEN[0] is stream:
        _ON_SCREEN = None


def leave(stream: Any) -> None:
    """End the live line left drawn on `stream` by a run that raised (Tune never ended it):
    what is said next goes below it, with nothing drawn again after."""
    if _ON_SCREEN is not None and _ON_SCREEN[0] is stream:
        _off_screen(stream)
        try:
            stream.write("\n")
            stream.flush()
        except (OSError, ValueError):
            pass


def said_over(stream: Any, text: str) -> str:
    """What to write to `stream` to say the line `text`: on a terminal that shows the live
    line without its newline, that line cleared, `text`, and the live line drawn again below
    it (else the two ran together on one line). One string: written by one write, a line
    said from another thread (whole_upload's, in Ray's sync thread) cannot split it."""
    shown = _ON_SCREEN
    if shown is None or shown[0] is not stream:
        return text + "\n"
    return "\r\x1b[K" + text + "\n\r" + shown[1] + "\x1b[K"


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def counts(trials: list[Any], metric: str | None, mode: str = "min",
           total: int | None = None, stopped: bool = False) -> dict[str, Any]:
    """Progress.update() keyword arguments from Ray Tune Trial objects; trials the searcher
    has not created yet count as pending when `total` is known. PAUSED trials (by a
    scheduler such as PBT, or by a stop) are paused, as `hpoc status` and `hpoc results`
    call them at the same moment. `stopped` changes nothing now; callbacks pickled into an
    experiment by an earlier hpoc still pass it."""
    out: dict[str, Any] = {"done": 0, "running": 0, "pending": 0, "errored": 0, "paused": 0,
                           "best": None, "best_trial": None}
    key = {"TERMINATED": "done", "ERROR": "errored", "RUNNING": "running", "PAUSED": "paused"}
    for trial in trials:
        out[key.get(trial.status, "pending")] += 1
        result = trial.last_result or {}
        # A PBT/PB2 trial that exploits another holds the donor's last result until it
        # reports again: the value is the donor's (counted with the donor), not its own.
        own = result.get("trial_id") in (None, trial.trial_id)
        value = result.get(metric) if metric and own else None
        if isinstance(value, (int, float)) and not isinstance(value, bool) \
                and math.isfinite(value) and trial.status != "ERROR":
            if out["best"] is None or (value < out["best"] if mode == "min"
                                       else value > out["best"]):
                out["best"], out["best_trial"] = float(value), trial.trial_id
    if total:
        out["pending"] += max(0, total - len(trials))
    return out


def tune_callback(progress: Progress, view: Callable[[list], tuple[list, bool]] | None = None):
    """A ray.tune.Callback that drives `progress` (pass it in RunConfig(callbacks=[...])).

    `view(trials) -> (trials, stopped)` shows the trials as the driver sees them: after a
    stop, Tune calls the trials it stopped TERMINATED, the driver PAUSED. It must be a
    module-level function: Ray pickles the callback into the experiment state."""
    from ray.tune import Callback

    def line(trials: list) -> dict[str, Any]:
        trials, stopped = view(trials) if view else (trials, False)
        return counts(trials, progress.metric, progress.mode, progress.total, stopped)

    class ProgressCallback(Callback):
        def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
            progress.update(**line(trials))

        def on_experiment_end(self, trials: list, **info: Any) -> None:
            # the end state once: a line already showing it is not printed again
            progress.update(**line(trials))
            progress.close()

    return ProgressCallback()
