"""Ray's driver prints what the raylet reports, `(raylet) A worker died or was killed …`,
from a thread that `log_to_driver=False` does not stop (`listen_error_messages` in
ray/_private/worker.py, Ray 2.x). Without -v a local run's terminal got that paragraph
between hpoc's lines, which already say which trial failed and how. Ray has no setting for
it, so the printer that thread calls is wrapped; the raylet's other reports still show.
Ray's report gives no exit status of the worker (its "connection error code 2" is the
socket's end of file), so hpoc's trial line has none to add."""

from __future__ import annotations

from typing import Any

WORKER_DIED = "A worker died or was killed"
_QUIET = {"on": False}  # this process's latest run says (a -v run after a quiet one shows them)


def quiet_worker_deaths(on: bool = True) -> None:
    _QUIET["on"] = on
    try:
        from ray._private import worker
    except ImportError:  # another Ray: its lines show as they are
        return
    show = getattr(worker, "print_to_stdstream", None)
    if show is None or getattr(show, "hpoc_quiet", False):
        return

    def print_to_stdstream(data: dict[str, Any], ignore_prefix: bool) -> None:
        if data.get("pid") == "raylet" and _QUIET["on"]:
            lines = [ln for ln in data.get("lines") or [] if not str(ln).startswith(WORKER_DIED)]
            if not lines:
                return
            data = {**data, "lines": lines}
        show(data, ignore_prefix)

    print_to_stdstream.hpoc_quiet = True  # type: ignore[attr-defined]
    worker.print_to_stdstream = print_to_stdstream
