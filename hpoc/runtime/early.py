"""The stop signals that come while the driver is still starting (Python's imports may take
seconds on a loaded node), before its own handlers (signals.py) are in place.

Their default action killed the driver with 128+N, which the job script cannot tell from
the driver's own "stopped before any trial started" exit: `hold` remembers the first one
instead, and `install_signals` stops the run with it. Standard library only: this runs
before any other import of `python -m hpoc.runtime`.
"""

from __future__ import annotations

import signal
from typing import Any

HELD = ("SIGTERM", "SIGUSR2", "SIGHUP")  # SIGINT's default already raises KeyboardInterrupt
_pending: list[int] = []


def hold() -> None:
    for name in HELD:
        sig = getattr(signal, name, None)
        # one ignored on entry stays so: the job's teardown runs the claim's release shielded
        # from SLURM's SIGTERM to every process of the job (hpoc_shielded)
        if sig is not None and signal.getsignal(sig) is not signal.SIG_IGN:
            signal.signal(sig, _remember)


def _remember(signum: int, frame: Any) -> None:
    if not _pending:
        _pending.append(signum)


def release() -> None:
    """Back to the default actions, for the short checks that are not a run (--before-ray,
    --release-claim): a signal that came meanwhile ends the process as it would have."""
    for name in HELD:
        sig = getattr(signal, name, None)
        if sig is not None and signal.getsignal(sig) is _remember:
            signal.signal(sig, signal.SIG_DFL)
    if (came := take()) is not None:
        signal.raise_signal(came)


def take() -> int | None:
    """The signal that came before the driver's handlers, once."""
    return _pending.pop() if _pending else None
