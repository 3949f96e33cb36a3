"""What hpoc's driver does without: a local run's Ray API server and autoscaler monitor, and
Tune's usage tag of the callbacks.

`ray.init()` on the head starts, besides the GCS and the raylet, an API server (a dashboard
process; with `include_dashboard=False` it loads only the usage-stats module, and usage
stats are off under hpoc) and an autoscaler monitor (it answers `ray status` and scales
clusters that have an autoscaling config). A local run uses neither: its cluster is this
machine, private to the run (its own temp dir, token), and hpoc checks the capacity itself.
Yet `ray.init` waits until the API server has started (seconds of Python imports on a busy
machine), and `ray.shutdown` waits a second for the monitor to stop. Measured on two cores:
about 3 s of each local run's start and stop (docs/performance.md, benchmarks/local_run.py).

Ray has no setting for either, so `ray.init` runs with both start steps skipped (the
`ray start` of a SLURM job is not concerned: it starts its own processes). HPOC_LOCAL_RAY=full
starts Ray as it comes, e.g. to ask `ray status` about a local run. Another Ray whose node
class lacks these steps starts as it comes.

Tune's `fit()` tags which logger callbacks a study uses, for Ray's usage statistics; to name
them it imports MLflow's, W&B's, Comet's and Aim's integrations - MLflow itself, about a
second of the driver's start where MLflow is installed. With usage statistics off (hpoc's
default, RAY_USAGE_STATS_ENABLED=0, on a local run and in a job) nothing reads that tag, so
the driver does not make it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

ENV = "HPOC_LOCAL_RAY"
SKIPPED = ("start_api_server", "start_monitor")


def wanted() -> bool:
    return os.environ.get(ENV, "").strip().lower() != "full"


@contextlib.contextmanager
def lean_head(enabled: bool = True) -> Iterator[bool]:
    """Within: a head node that Ray starts in this process skips SKIPPED. Yields whether it
    does (False: disabled, or a Ray without those steps)."""
    node_cls = _node_class() if enabled else None
    if node_cls is None or not all(callable(getattr(node_cls, name, None)) for name in SKIPPED):
        yield False
        return
    saved = {name: node_cls.__dict__.get(name) for name in SKIPPED}

    def skip(self, *args, **kwargs) -> None:
        return None

    for name in SKIPPED:
        setattr(node_cls, name, skip)
    try:
        yield True
    finally:
        for name, original in saved.items():
            if original is None:  # inherited: the class had no own attribute
                delattr(node_cls, name)
            else:
                setattr(node_cls, name, original)


def _node_class() -> type | None:
    try:
        from ray._private.node import Node
    except ImportError:
        return None
    return Node


def skip_callback_tag() -> bool:
    """With Ray's usage statistics off, Tune's callback tag becomes a no-op (the driver's
    MLflow import goes with it). Returns whether it is skipped."""
    if os.environ.get("RAY_USAGE_STATS_ENABLED", "").strip() != "0":
        return False
    try:
        from ray.air._internal import usage
    except ImportError:
        return False
    if callable(getattr(usage, "tag_callbacks", None)):
        usage.tag_callbacks = _no_tag
        return True
    return False


def _no_tag(callbacks: object = None) -> bool:
    return False
