"""Checked study → plan dict (docs/plan.md). Pure: no I/O besides path arithmetic."""

from __future__ import annotations

import os
from typing import Any

from hpoc.compiler.check import Checked
from hpoc.plan import PLAN_VERSION

# Spec-side span paths whose plan key has another name.
_SPAN_RENAMES = {
    "slurm.array.shards": "shards.count",
    "slurm.array.parallel": "shards.parallel",
    "slurm.array": "shards",
    "resume.grace": "resume.grace_s",
    "trials.time_budget": "trials.time_budget_s",
    "trials.time_limit": "trials.time_limit_s",
    "resources.deepspeed.config": "resources.deepspeed.config_file",
}


def build_plan(checked: Checked, *, file: str, fmt: str, sha256: str, workdir: str,
               words: dict[str, str] | None = None, pipe_key: str | None = None) -> dict[str, Any]:
    """The plan for a checked study (caller has made sure `checked.ok`)."""
    s = checked.sections
    workdir = os.path.abspath(workdir)
    storage = dict(s["storage"])
    storage["path"] = os.path.normpath(os.path.join(workdir, storage["path"]))  # `~`, `$X`: see rules
    base = os.path.basename(file)
    spans = {}
    for path, span in sorted(checked.spans.items()):
        spans[_SPAN_RENAMES.get(path, path)] = f"{base}:{span.line}:{span.col}"
    return {
        "plan_version": PLAN_VERSION,
        "source": {"file": base, "format": fmt, "sha256": sha256, "workdir": workdir,
                   "words": dict(sorted(words.items())) if words is not None else None,
                   "pipe_key": pipe_key},
        "study": s["study"],
        "pipeline": s["pipeline"],
        "space": s["space"],
        "objective": s["objective"],
        "trials": s["trials"],
        "search": s["search"],
        "scheduler": s["scheduler"],
        "resources": s["resources"],
        "training": s["training"],
        "failure": s["failure"],
        "checkpoint": s["checkpoint"],
        "resume": s["resume"],
        "storage": storage,
        "loggers": s["loggers"],
        "shards": s["shards"],
        "slurm": s["slurm"],
        "spans": spans,
    }
