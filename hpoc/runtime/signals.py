"""The stop signals (the job script's before the walltime, a closed terminal, Ctrl-C) turned
into Tune's graceful stop, so that a stopped run keeps its checkpoints and resumes."""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

from hpoc.plan import WALLTIME_REQUEUE
from hpoc.runtime import early
from hpoc.runtime.exits import Interrupted, say
from hpoc.runtime.watch import STATE, stop_tune, tune_stopper

_STOP_SIGNALS = ("SIGTERM", "SIGUSR2", "SIGINT", "SIGHUP")
NO_RESUME = "resume is off in the study, so this run cannot go on: --fresh starts it over"


def requeues(signum: int | None) -> bool:
    """Whether this stop is the walltime's, in a job that requeues itself to resume."""
    return signum == signal.SIGUSR2 and os.environ.get(WALLTIME_REQUEUE) == "1"


def stopped_line(signum: int | None) -> str:
    """The driver's last word on a run a signal stopped: who resumes it."""
    if requeues(signum):
        return "[hpoc] stopped at the time limit (SIGUSR2); the job requeues itself and resumes the study"
    if not STATE.resume:  # running it again refuses the unfinished run (prior.py)
        return f"[hpoc] stopped by a signal; {NO_RESUME}"
    return "[hpoc] stopped by a signal; run the same plan again to resume"


def install_signals() -> dict[int, Any]:
    """SIGTERM/SIGUSR2/SIGINT -> Tune's own graceful stop (the handler it installs for
    SIGUSR1); a second Ctrl-C stops at once. A signal that came while the driver started
    (early.py) is the run's: `STATE.signal` says it, and the run does not start."""
    previous: dict[int, Any] = {}
    if (came := early.take()) is not None and STATE.signal is None:
        STATE.signal, STATE.before_start = came, True

    def handler(signum: int, frame: Any) -> None:
        first = STATE.signal is None
        if not first and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop now
        STATE.signal = signum
        name = signal.Signals(signum).name
        if first and STATE.all_ended():  # a Ctrl-C as the run ends: it ends as it would have
            STATE.late = True
            say(STATE.stream or sys.stderr, f"[hpoc] {name}: every trial has ended already; "
                                             "the run finishes as it is")
            return
        if STATE.defer:  # an exception inside ray.init would leave its processes behind
            if first:  # Ray may take a while yet: say that the signal was heard
                say(STATE.stream or sys.stderr, f"[hpoc] {name}: stopping once Ray has started "
                                                 "(a second Ctrl-C stops at once)")
            return
        if tune_stopper() is not None:
            if first:
                then = ("checkpoints are kept and the requeued job resumes" if requeues(signum)
                        else "checkpoints are kept and running the plan again resumes" if STATE.resume
                        else NO_RESUME)
                say(STATE.stream or sys.stderr, f"[hpoc] {name}: stopping; {then}")
                stop_tune(signum, frame)
            return
        raise Interrupted()

    for name in _STOP_SIGNALS:
        sig = getattr(signal, name, None)
        if sig is not None:
            try:
                previous[sig] = signal.signal(sig, handler)
            except ValueError:  # not the main thread
                pass
    return previous


def restore_signals(previous: dict[int, Any]) -> None:
    for sig, handler in previous.items():
        try:
            signal.signal(sig, handler)
        except (ValueError, TypeError):
            pass
