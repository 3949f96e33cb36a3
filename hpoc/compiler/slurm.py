"""The `slurm` block against the trial's resources: per-node counts and their defaults,
walltime, job arrays, the container, `extra` sbatch options and the interpreter."""

from __future__ import annotations

import ast
import math
import os
import re
import shlex
from typing import Any

from hpoc.compiler import tables as T
from hpoc.compiler.check import (RESOURCES, SHARDS, SLURM, SLURM_TIME, VALUE, WARN_ARRAY, WARN_DOWNLOAD,
                                  WARN_NODE_LOCAL, WARN_RESOURCES, WARN_SETUP, WARN_TIME, WARN_WALLTIME,
                                  Checker)
from hpoc.compiler.shell_syntax import HERE_DOC, setup_syntax_error
from hpoc.compiler.values import expand_path, fmt_number, item_spans, setting_value
from hpoc.plan.space import grid_bound, total_trials


MIN_RUN_S = 180  # seconds of a job before its walltime signal, below which HP808 warns


def _concurrency(ch: Checker, out: dict[str, Any], s: dict[str, Any], by_cpu: int, by_gpu: int,
                 driver: float) -> None:
    """`max_concurrent` above what the job holds at once: Ray queues the rest without a word
    (0.7 of a GPU each is one trial per GPU, not two; the default `cpus_per_node` fits one trial).
    `by_cpu`, `by_gpu`: the workers a node holds by its CPUs, by its GPUs."""
    r, cap = out["resources"], out["trials"]["max_concurrent"]
    workers, cpw, gpw = r["workers"], r["cpus_per_worker"], r["gpus_per_worker"]
    nodes, cpn, gpn = s["nodes"], s["cpus_per_node"], s["gpus_per_node"]
    cpus = workers * cpw + driver  # one trial's
    # Trials at once by the CPUs (whole workers on a node, and all the trials' CPUs), by the GPUs
    cpu_held = min(by_cpu * nodes // workers, math.floor(nodes * cpn / cpus + 1e-9))
    gpu_held = by_gpu * nodes // workers
    held = min(cpu_held, gpu_held)
    if cap is None or cap <= held:
        return
    each = f"{fmt_number(cpw)} CPU" + ("s" if cpw != 1 else "")
    if gpw:
        each += f", {fmt_number(gpw)} GPU" + ("s" if gpw != 1 else "")
    each = f"{workers} workers × ({each})" if workers > 1 else each
    fixes = []  # what makes room for `cap` trials, all of them together
    if cpu_held < cap:
        fixes.append(f"raise `slurm.cpus_per_node` to {math.ceil(max(math.ceil(cap * workers / nodes) * cpw, cap * cpus / nodes) - 1e-9)}"
                     + _fewer_cpus(cap, workers, cpw, nodes, cpn, driver))
    if gpw and gpu_held < cap:
        share = math.floor(gpn / math.ceil(cap / nodes) * 100 + 1e-9) / 100  # two decimals, rounded down to fit
        fixes.append(f"lower `gpus_per_worker` to {fmt_number(share)} (trials share a GPU)"
                     if workers == 1 and share >= 1 / 16 else "raise `slurm.gpus_per_node` or `slurm.nodes`")
    help = f"lower `max_concurrent` to {held}; or, for {cap} at once, {' and '.join(fixes)}"
    ch.warn(WARN_RESOURCES, f"`max_concurrent = {cap}`, but the job holds {held} trial(s) at once "
                            f"({each} each; {nodes} node(s) × ({fmt_number(cpn)} CPUs, {gpn} GPUs)): "
                            "the others wait", ch.spans.get("trials.max_concurrent"), help=help)  # fmt: skip


def _fewer_cpus(cap: int, workers: int, cpw: float, nodes: int, cpn: int, driver: float) -> str:
    """" (or lower `cpus_per_worker` to N: ...)" where only the trials' drivers (0.01 CPU each)
    keep `cap` trials off the nodes: a node of `cpn` cores has no `cpn + 1` to raise to."""
    fewer = cpw - 1
    if driver and fewer >= 1 and math.ceil(cap * workers / nodes) * cpw <= cpn \
            and cap * (workers * fewer + driver) <= nodes * cpn + 1e-9:
        return (f" (or lower `cpus_per_worker` to {fmt_number(fewer)}: each trial's driver takes "
                f"{fmt_number(driver)} CPU beside its workers)")
    return ""


def check_slurm(ch: Checker, out: dict[str, Any], block: Any, workdir: str | None) -> None:
    s = out.pop("slurm")
    if block is None:
        out["slurm"] = None
        out["shards"] = {"count": 1, "parallel": 1}
        return
    driver = _node_defaults(s, out["resources"])
    # A count that is an error already has its default standing in: no fit is judged on it.
    counts_known = not ch.invalid & {"slurm.nodes", "slurm.gpus_per_node", "slurm.cpus_per_node",
                                     "resources.workers", "resources.cpus_per_worker", "resources.gpus_per_worker"}
    _gpu_type(ch, s, counts_known)
    if counts_known:
        _trial_fits(ch, out, s, driver)
    _walltime(ch, out, s)
    _site_names(ch, s, block)
    _extra(ch, s, out["resume"]["enabled"], block)
    _setup(ch, s, block)
    _python(ch, s, block)
    _container(ch, out, s, workdir)
    _node_local_storage(ch, out["storage"]["path"])
    _downloads(ch, out, workdir)
    out["shards"] = _shards(ch, out, s)
    out["slurm"] = s


def _node_defaults(s: dict[str, Any], r: dict[str, Any]) -> float:
    """Fill in the per-node counts left to hpoc: room for the trial's workers spread evenly,
    whole workers per node (a worker's CPUs and GPUs cannot be split between nodes), and for
    a distributed trial's driver beside them. Returns the CPUs of that driver."""
    workers, cpw, gpw = r["workers"], r["cpus_per_worker"], r["gpus_per_worker"]
    spread = math.ceil(workers / s["nodes"])
    driver = T.TRIAL_DRIVER_CPU if workers > 1 else 0
    if s["gpus_per_node"] is None:
        s["gpus_per_node"] = math.ceil(spread * gpw) if gpw else 0
    if s["cpus_per_node"] is None:
        s["cpus_per_node"] = max(1, math.ceil(spread * cpw + driver))
    return driver


def _gpu_type(ch: Checker, s: dict[str, Any], counts_known: bool) -> None:
    """A `gpu_type` needs a request for GPUs to carry it."""
    if s["gpu_type"] is not None and s["gpus_per_node"] == 0 and counts_known:  # `--gres=gpu:a100:0` asks for nothing
        ch.error(VALUE, f'`gpu_type` is "{s["gpu_type"]}", but the job asks for no GPUs',
                 ch.spans.get("slurm.gpu_type"), notes=("`slurm.gpus_per_node` is 0",),
                 help="set `gpus_per_node` (or `gpus_per_worker` in `resources`), or remove `gpu_type`")  # fmt: skip
    elif s["gpu_type"] is not None and s["gpu_request"] == "none":  # no request to carry the type
        ch.error(VALUE, f'`gpu_type` is "{s["gpu_type"]}", but `gpu_request = none` asks for no GPUs',
                 ch.spans.get("slurm.gpu_type"),
                 help="remove `gpu_type`, or set `gpu_request` to `gres` or `per_node`")  # fmt: skip


def _trial_fits(ch: Checker, out: dict[str, Any], s: dict[str, Any], driver: float) -> None:
    """A worker fits on a node, a trial's workers (and its driver) in the job, and as many
    trials at once as `max_concurrent` asks for."""
    r = out["resources"]
    workers, cpw, gpw = r["workers"], r["cpus_per_worker"], r["gpus_per_worker"]
    nodes, gpn, cpn = s["nodes"], s["gpus_per_node"], s["cpus_per_node"]
    gspan = ch.spans.get("resources.gpus_per_worker")
    if gpw == 0 and gpn > 0 and "slurm.gpus_per_node" in ch.spans:  # asked for, not the default
        ch.warn(WARN_RESOURCES, f"the job asks for {gpn} GPU{'s' * (gpn != 1)} per node, but trials use none "
                                "(`resources.gpus_per_worker` is 0): they train on the CPU while the GPUs sit idle",
                ch.spans.get("slurm.gpus_per_node"),
                help="set `gpus_per_worker` in `resources` (1, or 0.5 for two trials a GPU), or remove "
                     "`gpus_per_node`")  # fmt: skip
    if gpw > 0 and gpn == 0:
        ch.error(RESOURCES, f"trials need GPUs (`gpus_per_worker = {gpw}`) but the job has none",
                 gspan, notes=("`slurm.gpus_per_node` is 0",),
                 help="set `gpus_per_node` in `slurm`, or `gpus_per_worker = 0`")  # fmt: skip
    elif gpw > gpn:
        ch.error(RESOURCES, f"a worker needs {gpw} GPUs but a node has {gpn}", gspan,
                 help="lower `gpus_per_worker` or raise `slurm.gpus_per_node`")  # fmt: skip
    elif cpw > cpn:
        ch.error(RESOURCES, f"a worker needs {cpw} CPUs but a node has {cpn}",
                 ch.spans.get("resources.cpus_per_worker"),
                 help="lower `cpus_per_worker` or raise `slurm.cpus_per_node`")  # fmt: skip
    else:
        by_cpu = math.floor(cpn / cpw + 1e-9)  # workers a node holds
        by_gpu = math.floor(gpn / gpw + 1e-9) if gpw > 0 else by_cpu  # no GPUs: no bound of their own
        per_node = min(by_cpu, by_gpu)
        # The driver's CPUs come first, on one of the nodes: Ray never places the last
        # worker where they left too little, and the trial waits for it forever.
        with_driver = min(math.floor((cpn - driver) / cpw + 1e-9), per_node)
        if per_node * (nodes - 1) + with_driver < workers:
            # Enough in total but for the driver: say so, or "48 CPUs, more than 48" puzzles.
            by_driver = per_node * nodes >= workers
            ch.error(
                RESOURCES,
                f"one trial needs {workers} workers × ({fmt_number(cpw)} CPUs, {fmt_number(gpw)} GPUs) "
                f"= {fmt_number(workers * cpw)} CPUs, {fmt_number(workers * gpw)} GPUs"
                + (f", plus {fmt_number(driver)} CPU for the trial's driver" if by_driver else "")
                + f", more than the job's {nodes} node(s) × ({cpn} CPUs, {gpn} GPUs) can hold",
                ch.spans.get("resources.workers"),
                notes=(f"a node fits {per_node} worker(s)"
                       + (f", the node that also runs the driver {with_driver}" if by_driver else ""),),
                help="leave room for the driver: lower `cpus_per_worker` or raise `slurm.cpus_per_node`"
                if by_driver else "lower `workers`, or raise `slurm.nodes`, `gpus_per_node` or `cpus_per_node`",
            )  # fmt: skip
        else:
            _concurrency(ch, out, s, by_cpu, by_gpu, driver)
            by_cpus = math.floor(nodes * cpn / (workers * cpw + driver) + 1e-9)  # trials, all their CPUs
            if not _idle_nodes(ch, out, s, min(by_cpus, per_node * nodes // workers)):
                cpu_held = min(by_cpu * nodes // workers, by_cpus)
                gpu_held = by_gpu * nodes // workers
                if not _idle_gpus(ch, out, s, cpu_held, gpu_held, driver) \
                        and not _idle_cpus(ch, out, s, by_cpu, by_gpu, driver):
                    _unshared_gpus(ch, out, s, cpu_held, gpu_held)


HEBO = "hebo"  # the `limit` of `_at_once` that is HEBO's own, not a setting of the study


def _at_once(ch: Checker, out: dict[str, Any], s: dict[str, Any]) -> tuple[int, str, str]:
    """(the trials a job may run at once by `max_concurrent` (else HEBO's own limit) and the
    trials there are, the setting that bounds them, that bound as said)."""
    shards = (s.get("array") or {}).get("shards") or 1
    # A shard's: each runs on nodes of its own; Optuna's shards share the budget, a fast one takes more
    trials = total_trials(out) if out["search"]["algorithm"] == "optuna" else math.ceil(total_trials(out) / shards)
    cap = out["trials"]["max_concurrent"]
    # (a `max_concurrent` that is an error is still one written: no "without `max_concurrent`")
    if cap is None and out["search"]["algorithm"] == "hebo" and "trials.max_concurrent" not in ch.invalid:
        # Ray's HEBOSearch hands out its points_to_evaluate first, all of them, then 8 at a time;
        # a shard's searcher has every `shards`-th point (hpoc/runtime/search.py search_cap)
        points = (out["search"].get("options") or {}).get("points_to_evaluate") or []
        own = max(T.HEBO_MAX_CONCURRENT, len(points[::shards]))
        if own < trials:
            return own, HEBO, "HEBO's own limit without `max_concurrent`"
    limit = "max_concurrent" if cap is not None and cap < trials else "num_samples"
    return min(trials, cap or trials), limit, \
        f"`{limit}`" + (f" over {shards} shards" if limit == "num_samples" and shards > 1 else "")


def _idle_nodes(ch: Checker, out: dict[str, Any], s: dict[str, Any], held: int) -> bool:
    """Nodes no trial can ever reach: fewer trials at once (`max_concurrent`, or the trials
    there are) than the job has nodes for. Each worker takes one node at most, so the rest
    are held, and charged, for the whole job. Whether it warned."""
    if grid_bound(out["space"]) > T.MAX_GRID_POINTS or "trials.num_samples" in ch.invalid:
        return False
    workers, nodes = out["resources"]["workers"], s["nodes"]
    at_once, limit, why = _at_once(ch, out, s)
    busy = at_once * workers
    if busy >= nodes or at_once >= held:  # every node in use, or the nodes' room is the limit
        return False
    ch.warn(WARN_RESOURCES, f"the job holds {nodes} nodes, but at most {at_once} trial{'s' * (at_once > 1)} of "
                            f"{workers} worker{'s' * (workers > 1)} run{'s' * (at_once == 1)} at once ({why}): "
                            f"{nodes - busy} node{'s sit' if nodes - busy > 1 else ' sits'} idle for the whole job",
            ch.spans.get("slurm.nodes"), help=f"lower `slurm.nodes` to {busy}, or "
                                              + (_more(limit, held) if limit == HEBO else f"raise `{limit}`"))  # fmt: skip
    return True


def _idle_gpus(ch: Checker, out: dict[str, Any], s: dict[str, Any], cpu_held: int, gpu_held: int,
               driver: float) -> bool:
    """GPUs of `slurm.gpus_per_node` that the trials at once leave unused (`gpus_per_node = 4`
    for trials of 1 GPU under `max_concurrent = 2`), held and charged for the whole job, as
    wholly unused ones are. `cpu_held`, `gpu_held`: the trials the job's CPUs, GPUs hold."""
    r = out["resources"]
    workers, cpw, gpw = r["workers"], r["cpus_per_worker"], r["gpus_per_worker"]
    nodes, gpn, cpn = s["nodes"], s["gpus_per_node"], s["cpus_per_node"]
    if not gpw or "slurm.gpus_per_node" not in ch.spans or grid_bound(out["space"]) > T.MAX_GRID_POINTS \
            or "trials.num_samples" in ch.invalid:
        return False  # hpoc's own gpus_per_node fits the trial
    wanted, limit, why = _at_once(ch, out, s)
    if limit == "num_samples" and "trials.num_samples" not in ch.spans and cpu_held >= wanted:
        return False  # the default single trial: a first try, not the study's size
    at_once = min(wanted, cpu_held)
    if at_once >= gpu_held:
        return False  # the GPUs are the limit: what is left is less than a trial's
    idle = nodes * gpn - math.ceil(at_once * workers * gpw - 1e-9)
    if idle < 1:
        return False
    fit = math.ceil(math.ceil(at_once * workers / nodes) * gpw - 1e-9)  # GPUs a node needs
    if cpu_held < wanted:  # the CPUs hold fewer trials than the GPUs
        why = f"the job's CPUs: `cpus_per_node = {fmt_number(cpn)}`"
        more = min(wanted, gpu_held)
        need = math.ceil(max(math.ceil(more * workers / nodes) * cpw, more * (workers * cpw + driver) / nodes) - 1e-9)
        instead = f"raise `slurm.cpus_per_node` to {need}" + _fewer_cpus(more, workers, cpw, nodes, cpn, driver)
    else:
        instead = _more(limit, gpu_held)
    each = fmt_number(workers * gpw)
    ch.warn(WARN_RESOURCES, f"the job holds {nodes * gpn} GPUs ({nodes} node{'s' * (nodes > 1)} × {gpn}), but at most "
                            f"{at_once} trial{'s' * (at_once > 1)} of {each} GPU{'s' * (each != '1')} "
                            f"run{'s' * (at_once == 1)} at once ({why}): {idle} GPU{'s sit' if idle > 1 else ' sits'} "
                            "idle for the whole job", ch.spans.get("slurm.gpus_per_node"),
            help=f"lower `slurm.gpus_per_node` to {fit}, or {instead}")  # fmt: skip
    return True


def _more(limit: str, to: int) -> str:
    """The help that runs `to` trials at once where `limit` bounds them to fewer."""
    if limit == HEBO:  # batch BO: a batch of `to` suggestions from the results so far, said neutrally
        return (f"set `max_concurrent = {to}` (HEBO then suggests {to} trials at a time: more at once, "
                "each batch chosen from fewer results)")
    return f"raise `{limit}`" + (f" to {to}" if limit == "max_concurrent" else "")


def _idle_cpus(ch: Checker, out: dict[str, Any], s: dict[str, Any], by_cpu: int, by_gpu: int,
               driver: float) -> bool:
    """CPUs that HEBO's own limit leaves unused (`search hebo` without `max_concurrent` runs 8
    trials at once on 32 CPUs), where no node or GPU is wholly idle (said as those). A
    `max_concurrent` of the study's own is its choice. `by_cpu`, `by_gpu`: the workers a node
    holds by its CPUs, by its GPUs."""
    r = out["resources"]
    workers, cpw = r["workers"], r["cpus_per_worker"]
    nodes, cpn = s["nodes"], s["cpus_per_node"]
    if "trials.num_samples" in ch.invalid:
        return False
    at_once, limit, why = _at_once(ch, out, s)
    cpus = workers * cpw + driver  # one trial's

    def held(n: int) -> int:  # trials `n` of the nodes hold at once
        return min(by_cpu * n // workers, by_gpu * n // workers, math.floor(n * cpn / cpus + 1e-9))

    idle = math.floor(nodes * cpn - at_once * cpus + 1e-9)
    if limit != HEBO or at_once >= held(nodes) or idle < 1:
        return False
    fewer = next(n for n in range(1, nodes + 1) if held(n) >= at_once)
    need = math.ceil(max(math.ceil(at_once * workers / nodes) * cpw, at_once * cpus / nodes) - 1e-9)
    lower = f"lower `slurm.nodes` to {fewer}" if fewer < nodes else f"lower `slurm.cpus_per_node` to {need}"
    each = fmt_number(workers * cpw)
    ch.warn(WARN_RESOURCES, f"the job holds {fmt_number(nodes * cpn)} CPUs ({nodes} node{'s' * (nodes > 1)} × "
                            f"{fmt_number(cpn)}), but at most {at_once} trials of {each} CPU{'s' * (each != '1')} run "
                            f"at once ({why}): {idle} CPU{'s sit' if idle > 1 else ' sits'} idle for the whole job",
            ch.spans.get("slurm.cpus_per_node") or ch.spans.get("slurm.nodes"),
            help=f"{lower}, or {_more(limit, held(nodes))}")  # fmt: skip
    return True


def _unshared_gpus(ch: Checker, out: dict[str, Any], s: dict[str, Any], cpu_held: int, gpu_held: int) -> None:
    """A fraction of a GPU (`gpus_per_worker = 0.25`) is for trials to share one; where the
    job's CPUs hold fewer trials than the shares (`cpus_per_node` left at its default, room
    for one trial), each GPU trains one at a time. `max_concurrent` above them is said apart
    (HEBO's own limit is no choice of the study's: the shares it holds are said here)."""
    r = out["resources"]
    gpw, cpw, nodes, cpn = r["gpus_per_worker"], r["cpus_per_worker"], s["nodes"], s["cpus_per_node"]
    wanted, limit, _ = _at_once(ch, out, s)
    more = min(wanted, gpu_held)
    if not 0 < gpw < 1 or r["workers"] > 1 or limit not in ("num_samples", HEBO) \
            or "trials.num_samples" not in ch.spans or cpu_held >= more or cpu_held >= math.floor(1 / gpw + 1e-9) * nodes:
        return  # (several workers with a fraction: refused, HP501; else each GPU full already)
    default = "slurm.cpus_per_node" not in ch.spans
    per_node = math.ceil(more / nodes)
    ch.warn(WARN_RESOURCES, f"trials of {fmt_number(gpw)} GPUs share a GPU, but the job's CPUs hold {cpu_held} "
                            f"trial{'s' * (cpu_held > 1)} at once (`cpus_per_node` = {fmt_number(cpn)}"
                            + (", the default: room for one trial" if default else "")
                            + f"): the GPUs train {cpu_held} at a time, not the {more} their shares hold",
            ch.spans.get("slurm.cpus_per_node") or ch.spans.get("resources.gpus_per_worker"),
            help=f"set `slurm.cpus_per_node = {math.ceil(per_node * cpw - 1e-9)}` ({per_node} trials of "
                 f"{fmt_number(cpw)} CPU{'s' * (cpw != 1)} at once)")  # fmt: skip


def _walltime(ch: Checker, out: dict[str, Any], s: dict[str, Any]) -> None:
    """The job's `time` against resume's grace period and a trial's time limit."""
    t = s.pop("time")
    s["time"], s["time_s"] = (t["time"], t["time_s"]) if t else (None, None)
    grace = out["resume"]["grace_s"]
    if "resume.grace" in ch.invalid:
        pass  # its error is reported; the default standing in says nothing of the walltime
    elif out["resume"]["enabled"] and grace < 1:  # `--signal=B:USR2@0` would never warn the job
        ch.error(SLURM_TIME, "resume needs a `grace` of at least 1 s to save before the walltime",
                 ch.spans.get("resume.grace"), help="the default is 2m; or set `enabled = false`")  # fmt: skip
    elif s["time_s"] is not None and out["resume"]["enabled"] and grace >= s["time_s"]:
        ch.error(SLURM_TIME, f"resume grace time ({grace} s) must be shorter than the walltime ({s['time']})",
                 ch.spans.get("resume.grace", ch.spans.get("slurm.time")),
                 help="lower `resume { grace = ... }` or raise `slurm.time`")  # fmt: skip
    elif s["time_s"] is not None and out["resume"]["enabled"] and s["time_s"] - grace < MIN_RUN_S:
        # Each run spends about a minute bringing Ray up and restoring before it trains: with
        # less left before USR2 it may requeue forever without finishing an epoch.
        least = MIN_RUN_S + grace
        ch.warn(WARN_WALLTIME, f"the job has {s['time_s'] - grace} s before the walltime signal "
                               f"(`time` {s['time']} minus `resume.grace` {grace} s); starting Ray and the "
                               "study takes about a minute, so each run may be requeued before a trial "
                               "trains an epoch, over and over",
                ch.spans.get("slurm.time"),
                help=f"raise `slurm.time` to {least // 3600:02d}:{least % 3600 // 60:02d}:{least % 60:02d} "
                     "or more, or lower `resume { grace = ... }`")  # fmt: skip
    budget = out["trials"]["time_budget_s"]
    if budget is not None and s["time_s"] is not None and budget > s["time_s"] and not out["resume"]["enabled"]:
        ch.warn(WARN_TIME, f"`time_budget` ({budget:g} s) is longer than the job's walltime ({s['time']}), and resume "
                           "is off: the walltime ends the study first, unsaved", ch.spans.get("trials.time_budget"),
                help="turn `resume` on (requeued jobs go on with the budget), raise `slurm.time`, or lower "
                     "`time_budget`")  # fmt: skip
    limit = out["trials"]["time_limit_s"]
    if limit is not None and s["time_s"] is not None and limit >= s["time_s"]:
        ch.warn(WARN_TIME, f"a trial's `time_limit` ({limit:g} s) is not shorter than the job's walltime "
                           f"({s['time']}): the walltime stops the trial first",
                ch.spans.get("trials.time_limit"), help="lower `time_limit`, or raise `slurm.time`")  # fmt: skip


# Each node's own: what a job's nodes write there, the login node never sees
NODE_LOCAL = ("/tmp", "/var/tmp", "/dev/shm")


def _downloads(ch: Checker, out: dict[str, Any], workdir: str | None) -> None:
    """A getter or splitter that downloads its data (`download=True`) in a study for compute
    nodes, which usually have no internet: every run failed loading the data, or waited on a
    firewall that drops the packets, once the job had waited in the queue."""
    from hpoc.compiler.pysource import target_tree

    for role in ("getter", "splitter"):
        target = ((out.get("pipeline") or {}).get(role) or {}).get("target") or ""
        found = target_tree(target, workdir)
        if found is None:
            continue
        lines = sorted({node.lineno for node in ast.walk(found[1]) if isinstance(node, ast.Call) and any(
            k.arg == "download" and isinstance(k.value, ast.Constant) and k.value.value is True
            for k in node.keywords)})
        if lines:
            at = ", ".join(f"{os.path.relpath(found[0], workdir)}:{n}" for n in lines[:3])
            ch.warn(WARN_DOWNLOAD, f"the {role} downloads its data (`download=True`, {at}), and the study runs "
                                   "on compute nodes, which usually have no internet",
                    ch.spans.get(f"pipeline.{role}"),
                    help="fetch it once on a login node (`hpoc data fetch NAME --root DIR`; `hpoc data "
                         "list` names the datasets it knows) and read it from there with `download=False`")
            return  # one step's line says it


def _node_local_storage(ch: Checker, path: str) -> None:
    """A storage path in each node's own /tmp: the trials of a job are scattered and gone."""
    if os.path.isabs(path) and any(path == top or path.startswith(top + "/") for top in NODE_LOCAL):
        ch.warn(WARN_NODE_LOCAL, f"`storage.path` {path} is node-local on a cluster: each node of the job writes "
                                 "its trials to its own, and the login node (`hpoc status`, `hpoc results`) sees none",
                ch.spans.get("storage.path"),
                help='put it on a file system every node shares ("$SCRATCH/hpo", "$WORK/hpo"); /tmp serves only '
                     "a SLURM cluster that is this one machine")  # fmt: skip


def _container(ch: Checker, out: dict[str, Any], s: dict[str, Any], workdir: str | None) -> None:
    """The image as a path from the study's directory, and what the job binds into it."""
    c = s["container"]
    if c is not None and c["image"] and "://" not in c["image"]:
        image = expand_path(ch, c["image"], "slurm.container.image") or c["image"]
        if workdir and not os.path.isabs(image):
            image = os.path.normpath(os.path.join(workdir, image))
        c["image"] = image
    if c is not None:  # the job binds these into the container (the build directory: hpoc compile)
        for what, path, span in (("the study's directory", workdir, ch.spans.get("slurm.container")),
                                 ("`storage.path`", out["storage"]["path"], ch.spans.get("storage.path"))):
            if path and not T.bindable(path):
                ch.error(VALUE, f'the container cannot bind {what} "{path}": {c["runtime"]} reads `,` and `:` '
                         "in --bind as separators", span or ch.spans.get("slurm.container"),
                         help="use a path without `,` and `:`")  # fmt: skip


def _shards(ch: Checker, out: dict[str, Any], s: dict[str, Any]) -> dict[str, int]:
    """The job array: shards, each with trials of its own, and how many run at once."""
    arr = s.pop("array") or {"shards": 1, "parallel": None}
    count = arr["shards"]
    parallel = arr["parallel"] if arr["parallel"] is not None else count
    if parallel > count:
        ch.error(SHARDS, f"`parallel` ({parallel}) cannot exceed `shards` ({count})",
                 ch.spans.get("slurm.array.parallel"))  # fmt: skip
        parallel = count
    trials = total_trials(out) if grid_bound(out["space"]) <= T.MAX_GRID_POINTS else count  # else HP304
    if trials < count and "trials.num_samples" not in ch.invalid:  # not the default standing in for an error
        ch.error(SHARDS, f"{count} shards but only {trials} trial{'s' if trials != 1 else ''}: some shards would be empty",
                 ch.spans.get("slurm.array.shards", ch.spans.get("slurm.array")),
                 help="lower `shards` or raise `trials.num_samples`")  # fmt: skip
    if count > T.SLURM_MAX_ARRAY_SIZE:  # sbatch refuses `--array=0-1499` under the default
        ch.warn(WARN_ARRAY, f"{count} shards make a job array of {count} tasks; SLURM's default MaxArraySize "
                            f"({T.SLURM_MAX_ARRAY_SIZE}) allows at most {T.SLURM_MAX_ARRAY_SIZE}",
                ch.spans.get("slurm.array.shards", ch.spans.get("slurm.array")),
                notes=("sites may raise it: `scontrol show config | grep MaxArraySize` shows this cluster's",),
                help=f"lower `shards` to {T.SLURM_MAX_ARRAY_SIZE} or fewer, unless the site allows more")  # fmt: skip
    return {"count": count, "parallel": parallel}


def _site_names(ch: Checker, s: dict[str, Any], block: Any) -> None:
    """Names the site gives (partition, account, qos, constraint) as sbatch would read them."""
    for key in ("partition", "account", "qos", "constraint"):
        # copied with its option from a job script's header: "--partition=gpu", "-p gpu"
        if s[key] is not None and (flag := re.match(r"\s*--?[A-Za-z][\w-]*(?:=|\s+)(\S.*)?$", s[key])):
            value = setting_value(block, key)
            ch.error(VALUE, f'`{key}` "{s[key]}" is an sbatch option, not a name: hpoc writes the option itself',
                     value.span if value is not None else ch.spans.get(f"slurm.{key}"),
                     help=f'write `{key} = "{(flag[1] or "").strip()}"`' if flag[1] else "write the name alone")
            continue
        # pasted with a space: "gpu ", "booster, develbooster" (values with other spaces go through quoted)
        if s[key] is not None and s[key].strip() and (s[key] != s[key].strip(" ") or re.search(r" ,|, ", s[key])):
            value = setting_value(block, key)
            ch.error(VALUE, f"`{key}` has a space around a name: SLURM's names have none, and sbatch refuses the job",
                     value.span if value is not None else ch.spans.get(f"slurm.{key}"),
                     help=f'write `{key} = "{s[key].replace(" ", "")}"`')  # fmt: skip
        # sbatch reads `\` in an #SBATCH line as an escape, even inside quotes: `a\b` asks for `ab`
        if s[key] is not None and "\\" in s[key]:
            value = setting_value(block, key)
            ch.error(VALUE, f"`{key}` must not contain `\\`: sbatch drops it from #SBATCH lines, even quoted",
                     value.span if value is not None else ch.spans.get(f"slurm.{key}"),
                     help="write the name as the site spells it (`sinfo`, `sacctmgr show assoc`)")  # fmt: skip
    if s["partition"] is not None and "*" in s["partition"]:  # pasted from sinfo's `batch*`
        value = setting_value(block, "partition")
        ch.error(VALUE, f'`partition` "{s["partition"]}": the `*` is sinfo\'s mark of the default partition, '
                        "not part of its name", value.span if value is not None else ch.spans.get("slurm.partition"),
                 help=f'write `partition = "{s["partition"].replace("*", "")}"`')  # fmt: skip


def _extra(ch: Checker, s: dict[str, Any], resume: bool, block: Any) -> None:
    """`extra` may add #SBATCH options, but not ones hpoc writes (the last line would win)."""
    spans = item_spans(block, "extra") or [ch.spans.get("slurm.extra")] * len(s["extra"])
    for flag, span in zip(s["extra"], spans):
        name = T.sbatch_option(flag)
        if not name:
            pasted = re.match(r"\s*#SBATCH\s+(-\S.*)", flag)  # a job script's header line
            ch.error(VALUE, f'`extra` holds #SBATCH options such as "--exclusive", not "{flag}"', span,
                     help=f'write "{pasted[1].strip()}": hpoc writes the `#SBATCH` itself' if pasted else None)
            continue
        given, name = name, _unabbreviated(name, resume)
        shown = f"`{given}`" if given == name else f"`{given}` (short for `{name}`)"
        gres = _gres(flag) if name == "--gres" else None
        if gres and not any(_is_gpu(g) for g in gres):  # a site's node-local disk: `nvme:100`
            from hpoc.compiler import render  # jinja2: not for every `hpoc check`
            if (own := render.gpu_option(s)) and own[0] == "gres":
                ch.error(SLURM, f"`extra` sets {shown}, which hpoc writes for the GPUs (`{own[1]}`): "
                                "this line would replace it", span,
                         help=f"set `gpu_request = per_node` (the GPUs as `--gpus-per-node`) and keep "
                              f"`--gres={','.join(gres)}` here")  # fmt: skip
        elif name in T.MANAGED_SBATCH:
            help = f"set `{T.MANAGED_SBATCH[name]}` instead"
            if name in T.TASK_SBATCH:  # a site's one-task-per-GPU template: not hpoc's layout
                help = ("remove it: the job runs one task per node, its Ray node, which starts each "
                        "trial's processes itself (`resources { workers = ... }`); `nodes` sets the node count")
            elif T.MANAGED_SBATCH[name] == "gpus_per_node":
                help += (" (and `gpu_type` for typed GPUs: `gpu:a100:4`)" if name == "--gres" else
                         ", with `gpu_request = per_node` to have it written as `--gpus-per-node=N`")
                if others := ",".join(g for g in gres or () if not _is_gpu(g)):
                    help += f"; ask for `{others}` as `--gres={others}` here, with `gpu_request = per_node`"
            ch.error(SLURM, f"`extra` sets {shown}, which hpoc writes from `{T.MANAGED_SBATCH[name]}`",
                     span, help=help)  # fmt: skip
        elif name == "--signal" and not resume:  # no trap for it: the shell (or Ray) dies at once
            ch.error(SLURM, f"`extra` sets {shown}, which would stop the job early: its script handles only "
                            "resume's signal before the walltime", span,
                     help="to save the study before the walltime, turn `resume` on (`grace` says when); "
                          "else remove it")  # fmt: skip
        elif name in T.OWNED_SBATCH or (resume and name in T.RESUME_SBATCH):
            why, help = T.OWNED_SBATCH.get(name) or T.RESUME_SBATCH[name]
            ch.error(SLURM, f"`extra` sets {shown}, {why}", span, help=help)
        elif name in T.MEM_PER_SBATCH and s["mem"] is not None:
            ch.error(SLURM, f"`extra` sets {shown}, which sbatch refuses together with `mem`", span,
                     help=f"remove `mem`, or remove `{given}`")  # fmt: skip
        elif not given.startswith("--"):  # the job script writes `#SBATCH <flag>` as given
            ch.error(VALUE, f"`extra` takes long options: `{given}` is a short one", span,
                     help="write its long form, e.g. `--nodelist=...` for `-w`; see `man sbatch`")  # fmt: skip
        elif problem := _sbatch_words(flag):
            ch.error(VALUE, f'`extra` option "{flag}" {problem}', span,
                     help=f"quote the value, as on a command line: \"{given}='...'\"")  # fmt: skip


# `conda activate` is a shell function that `conda init` defines in ~/.bashrc, which a batch
# job's bash never reads; these lines define it (or activate without it).
_CONDA_ACTIVATE = re.compile(r"\b(conda|mamba|micromamba)\s+activate\b")
_CONDA_HOOK = re.compile(r"shell\.bash\s+hook|shell\s+hook|(conda|mamba)\.sh\b|\.bashrc\b|\bbash\s+-i\b")
_HOOKS = {"conda": 'eval \\"$(conda shell.bash hook)\\"', "mamba": 'eval \\"$(mamba shell hook --shell bash)\\"',
          "micromamba": 'eval \\"$(micromamba shell hook --shell bash)\\"'}


def _setup(ch: Checker, s: dict[str, Any], block: Any) -> None:
    """`#SBATCH` lines pasted into `setup` from a job script's header: sbatch reads none past the
    script's first command, so they would be comments there. A `conda activate` before
    anything defines conda's shell functions fails in the job, after the queue."""
    spans = item_spans(block, "setup") or [ch.spans.get("slurm.setup")] * len(s["setup"])
    hooked = loaded = False
    for line, span in zip(s["setup"], spans):
        activate = _CONDA_ACTIVATE.search(line)
        if activate and not hooked and not _CONDA_HOOK.search(line[:activate.start()]):
            tool = activate[1]
            unless = " (unless a module loaded before it defines them, as some sites' conda modules do)" \
                if loaded else ""
            ch.warn(WARN_SETUP, f'`setup` line "{line.strip()}" needs {tool}\'s shell functions, which a batch '
                                f"job's non-interactive bash lacks{unless}: it fails with \"CondaError: Run "
                                f"'{tool} init' before '{tool} activate'\"", span,
                    help=f'set them up first: `setup = ["{_HOOKS[tool]}", "{line.strip()}"]`, or set `python` '
                         'to the environment\'s interpreter ("<env>/bin/python")')  # fmt: skip
        hooked = hooked or bool(_CONDA_HOOK.search(line))
        loaded = loaded or bool(re.match(r"\s*(module\s+(load|add)|ml)\s", line))
        if re.match(r"\s*#SBATCH\b", line):
            option = line.strip()[len("#SBATCH"):].strip()
            ch.error(SLURM, f'`setup` line "{line.strip()}" is an #SBATCH directive: sbatch reads them only before '
                            "the script's first command, and setup runs later", span,
                     help=f'give the option in `extra`: `extra = ["{option}"]`')  # fmt: skip
    broken = setup_syntax_error(s["setup"])
    if broken is not None:
        index, why = broken
        help = ("each line is a whole command (or the lines together, as `if ...; then`, `...`, `fi`): "
                "close what it opens")
        if why.startswith(HERE_DOC) and index is not None:
            what = (f'line "{s["setup"][index].strip()}" starts a here-document, which the job script cannot end: '
                    f"it indents setup lines, and bash ends one only at `{why[len(HERE_DOC):]}` alone at a "
                    "line's start")
            help = "write the file with one command per line: `printf '%s\\n' 'line 1' 'line 2' > file`"
        elif index is not None:
            what = f'line "{s["setup"][index].strip()}" is not complete bash: {why}'
        else:
            what = ("lines are not complete bash: something they open (`if`, `for`, `case`, `(`, `{`) is still "
                    "open after the last one")
        ch.error(VALUE, f"`setup` {what}",
                 ch.spans.get("slurm.setup") if index is None else spans[index], help=help)


def _gres(flag: str) -> list[str]:
    """The generic resources of "--gres=nvme:100,gpu:4" (or "--gres gpu:4"), quotes dropped."""
    value = re.split(r"[=\s]", flag.strip(), maxsplit=1)[1:] or [""]
    value = value[0].strip().strip("'\"")
    return [g for g in value.split(",") if g]


def _is_gpu(gres: str) -> bool:
    """`gpu`, `gpu:4`, `gpu:a100:4`: the GPUs hpoc asks for itself."""
    return gres.split(":", 1)[0] == "gpu"


def _python(ch: Checker, s: dict[str, Any], block: Any) -> None:
    """The job runs `"$python" -m ...` as one quoted word: no shell expands `~` or `$HOME` there."""
    python = expand_path(ch, s["python"], "slurm.python")
    if python is None:
        return
    s["python"] = python
    # `python3 -X dev`, `python3; x`: a command line; a path with a space is one program
    if python != python.strip() or re.search(r"[^\S ]", python) or \
            " " in python and re.search(r" -|[;|&<>`]", python):
        value = setting_value(block, "python")
        ch.error(VALUE, "`python` must be one program, not a command line",
                 value.span if value is not None else ch.spans.get("slurm.python"),
                 help="give interpreter options through `env` (e.g. PYTHONDEVMODE = \"1\") or a wrapper script")  # fmt: skip


def _sbatch_words(flag: str) -> str | None:
    """Why sbatch would refuse `#SBATCH <flag>`, or None: it splits the line into words as a
    shell does (quotes kept together, `#` starting a comment) and refuses a word too many
    ("Invalid directive found in batch script: b" for `--comment=a b`)."""
    try:
        words = shlex.split(flag, comments=True)
    except ValueError:
        return "has a quote that is not closed: sbatch would refuse the job script"
    allowed = 1 if "=" in words[0] else 2  # `--name=value`, or `--name value`
    if len(words) > allowed:
        return (f"is {len(words)} words to sbatch, which refuses the job script "
                f'("Invalid directive found in batch script: {words[allowed]}")')
    return None


def _unabbreviated(name: str, resume: bool) -> str:
    """sbatch accepts any unambiguous prefix of a long option (`--out` for `--output`)."""
    managed = [*T.MANAGED_SBATCH, *T.OWNED_SBATCH, *T.MEM_PER_SBATCH, *(T.RESUME_SBATCH if resume else ("--signal",))]
    if name in managed or not name.startswith("--") or len(name) < 4:
        return name
    longer = [m for m in managed if m.startswith(name)]
    return longer[0] if len(longer) == 1 else name
