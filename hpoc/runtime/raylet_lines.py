"""Ray's driver prints what the raylet reports, `(raylet) A worker died or was killed …`,
from a thread that `log_to_driver=False` does not stop (`listen_error_messages` in
ray/_private/worker.py, Ray 2.x). Without -v a local run's terminal got that paragraph
between hpoc's lines, which already say which trial failed and how. Ray has no setting for
it, so the printer that thread calls is wrapped; the raylet's other reports still show.
Ray's report gives no exit status of the worker (its "connection error code 2" is the
socket's end of file), so hpoc's trial line has none to add."""

from __future__ import annotations

from typing import Any, Callable

WORKER_DIED = "A worker died or was killed"
_QUIET = {"on": False}  # this process's latest run says (a -v run after a quiet one shows them)


def wrap_ray_worker(attr: str, wrap: Callable[[Callable[..., Any]], Callable[..., Any]]) -> None:
    """Replace `ray._private.worker.<attr>` (a printer of Ray's driver) by `wrap(it)`, once
    per process; with another Ray, whose worker lacks it, its lines show as they are."""
    try:
        from ray._private import worker
    except ImportError:
        return
    show = getattr(worker, attr, None)
    if show is None or getattr(show, "hpoc_quiet", False):
        return
    wrapped = wrap(show)
    wrapped.hpoc_quiet = True  # type: ignore[attr-defined]
    setattr(worker, attr, wrapped)


def quiet_worker_deaths(on: bool = True) -> None:
    _QUIET["on"] = on

    def wrap(show: Callable[..., Any]) -> Callable[..., Any]:
        def print_to_stdstream(data: dict[str, Any], ignore_prefix: bool) -> None:
            if data.get("pid") == "raylet" and _QUIET["on"]:
                lines = [ln for ln in data.get("lines") or [] if not str(ln).startswith(WORKER_DIED)]
                if not lines:
                    return
                data = {**data, "lines": lines}
            show(data, ignore_prefix)
        return print_to_stdstream

    wrap_ray_worker("print_to_stdstream", wrap)
