"""`hpoc submit SPEC|BUILD|PLAN`: submit a study through submitit.

    hpoc submit study.hpo                  # SLURM (one job, or a job array for shards)
    hpoc submit study.hpo --dry-run        # what would be submitted; nothing is
    hpoc submit study.hpo --cluster local  # the same jobs on this machine
    hpoc submit build/digits --wait        # and wait until they end

Submitting an unfinished study resumes it; a finished one is not submitted again, unless
`--retry-errored` asks its errored trials to run again (only the shards that have some).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from typing import Any

HELP = "submit a study to SLURM (or this machine) through submitit"

_DONE = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED",
         "BOOT_FAIL", "DEADLINE", "FINISHED", "INTERRUPTED"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("target", metavar="SPEC|BUILD|PLAN",
                   help="study file (.hpo, .yaml), build directory or plan.json")
    p.add_argument("--cluster", choices=["slurm", "local"],
                   help="where to run (default: slurm when sbatch is available and the study "
                        "has a slurm block, else local)")
    p.add_argument("--dry-run", action="store_true",
                   help="print the exact submission (parameters and sbatch script); submit nothing")
    p.add_argument("-o", "--out", metavar="DIR",
                   help="where a spec is compiled (default: build/<study name>)")
    p.add_argument("--fresh", action="store_true",
                   help="move the study's previous results aside and start over")
    from hpoc.commands.run import add_retry_arguments

    add_retry_arguments(p)
    p.add_argument("--force", action="store_true",
                   help="submit even if jobs of this study are already queued or running")
    p.add_argument("--wait", action="store_true", default=None,
                   help="wait until the jobs end (default for --cluster local)")
    p.add_argument("--no-wait", dest="wait", action="store_false",
                   help="return once submitted, also for --cluster local")


def run(args: argparse.Namespace) -> int:
    from hpoc.errors import run_reporting

    return run_reporting(lambda: _run(args))


def _run(args: argparse.Namespace) -> int:
    from hpoc.commands.run import retry_mode
    from hpoc.errors import HpocError
    from hpoc.submit import SubmitError, load_target, prepare, send, spec_of, would_send

    retry = retry_mode(args)
    try:
        found = load_target(args.target, args.out)
        plan = found.plan
        _warn_edited_spec(found)
        replaced = _other_build(found, args)
        sub = prepare(plan, found.plan_path, args.cluster)
        if args.cluster is None and sub.cluster == "local" and plan.get("slurm") is not None:
            # a login shell without the site's SLURM module would otherwise run the study here
            print("hpoc: note: no `sbatch` on PATH: the study runs on this machine (--cluster local), "
                  f"as `hpoc run {spec_of(plan)} --local` would; to run it on SLURM, submit it from the "
                  "cluster's login node, with its SLURM commands on PATH (`module load slurm` at some sites)",
                  file=sys.stderr)
        if sub.cluster == "slurm":
            from hpoc.site import sbatch_env

            for line in sbatch_env.overrides(plan):
                print(f"hpoc: warning: {sbatch_env.advice(line)}", file=sys.stderr)
        if args.dry_run:
            if replaced:
                print(replaced, file=sys.stderr)
            if not would_send(plan, sub, args.fresh, retry).shards:
                print(f"dry run: study `{plan['study']['name']}` is complete; nothing would be "
                      f"submitted ({_nothing_to_do(plan, retry)})")
                return 0
            print(render_dry_run(sub))
            return 0
        jobs = send(plan, sub, fresh=args.fresh, force=args.force, build=found, retry=retry)
    except SubmitError as exc:
        raise HpocError(str(exc)) from None
    if replaced and not found.files:  # written: the submission passed its checks
        print(replaced, file=sys.stderr)
    if not jobs:
        print(f"study `{plan['study']['name']}` is complete; nothing submitted "
              f"(`hpoc status`, `hpoc results`; {_nothing_to_do(plan, retry)})")
        return 0
    print(describe_jobs(plan, sub, jobs))
    if sub.cluster == "slurm":
        warn_never_starts(plan, jobs)
    wait = args.wait if args.wait is not None else sub.cluster == "local"
    if not wait:
        return 0
    return wait_for(jobs, sub)


def warn_never_starts(plan: dict[str, Any], jobs: list[Any]) -> None:
    """Jobs SLURM took but will not start: a site that does not enforce partition limits at
    submission (EnforcePartLimits=NO, the default) queues a `time` above the partition's,
    or more nodes than it has. Said now, not when `hpoc status` is asked: from the
    partition's limits (squeue may not give the reason yet), else from the reason squeue
    gives (a QOS's limits)."""
    from hpoc.commands.status import slurm_states
    from hpoc.commands.status_next import job_ranges, never_start_steps
    from hpoc.site.partition import never_fits

    ids = [str(job.job_id) for job in jobs]
    if never := never_fits(plan):
        for why, change in never:  # a 200-task array: its ids as ranges
            print(f"hpoc: warning: job{'s' * (len(ids) > 1)} {job_ranges(ids)} will not start: {why}: "
                  f"`scancel {job_ranges(ids)}`, {change}, compile and submit again", file=sys.stderr)
        return
    states = slurm_states(ids)
    for said in never_start_steps([{"job_id": job_id, **states.get(job_id, {})} for job_id in ids]):
        print(f"hpoc: warning: {said}", file=sys.stderr)


def _other_build(found: Any, args: argparse.Namespace) -> str | None:
    """The note `hpoc compile` gives when a spec's build replaces another study's."""
    from pathlib import Path

    from hpoc.commands.compile import other_build

    if not found.files:  # a build or plan.json: nothing is written over
        return None
    out = Path(args.out) if args.out else found.plan_path.parent
    return other_build(out, found.plan["study"]["name"], dry_run=args.dry_run)


def _warn_edited_spec(found: Any) -> None:
    """A build's plan whose spec was edited since `hpoc compile`: the jobs run the plan as
    compiled (each job says so in its log too; here, before they wait in the queue)."""
    from hpoc.runtime.before import edited_spec

    if found.files:  # a spec, compiled just now: nothing older to differ from
        return
    build = shlex.quote(str(found.plan_path.parent))
    if (edited := edited_spec(found.plan, runs="the jobs run", build=build)) is not None:
        print(f"hpoc: warning: {edited}", file=sys.stderr)


def _nothing_to_do(plan: dict[str, Any], retry: str | None) -> str:
    """What a complete study offers instead of a submission (as `hpoc status` says it)."""
    from hpoc.runtime import rerun
    from hpoc.runtime.shards import experiment_dir

    exps = [experiment_dir(plan, k) for k in range(plan["shards"]["count"])]
    if retry:
        return "no shard has an errored trial to retry"
    if any(rerun.errored(exp) for exp in exps):
        return "--retry-errored runs its errored trials again, --fresh starts over"
    return "--fresh starts over"


def describe_jobs(plan: dict[str, Any], sub: Any, jobs: list[Any]) -> str:
    from pathlib import Path

    folder = sub.folder
    lines = [f"submitted study `{plan['study']['name']}` ({sub.cluster}): "
             f"{len(jobs)} job(s) for {len(sub.shards)} shard(s)"]
    from hpoc.commands.status import SHARD_LINES
    from hpoc.runtime.shards import index_ranges

    sent = list(zip(jobs, sub.shards))
    for job, shard in sent[:SHARD_LINES]:  # a 200-task array printed 200 lines
        where = folder.replace("%j", str(job.job_id))
        lines.append(f"  shard {shard}: job {job.job_id}  logs {where}/")
    build = shlex.quote(str(Path(sub.plan_path).parent))  # to paste
    if rest := sent[SHARD_LINES:]:
        lines.append(f"  … {len(rest)} more: shards {index_ranges([k for _, k in rest], ', ')}, jobs "
                     f"{rest[0][0].job_id} to {rest[-1][0].job_id} (`hpoc status {build} --all` lists them)")
    lines.append(f"  plan: {sub.plan_path}")
    lines.append(f"  progress: hpoc status {build}")
    return "\n".join(lines)


def render_dry_run(sub: Any) -> str:
    lines = [
        "dry run: nothing submitted",
        f"cluster:    {sub.cluster} (submitit {sub.executor})",
        f"plan:       {sub.plan_path}",
        f"shards:     {len(sub.shards)}" + (f" as one job array, {sub.array_parallelism} at a time"
                                            if sub.array else ""),
        f"folder:     {sub.folder}  (%j = job id: job logs, submitit files, ray-<node>.log)",
        f"python:     {sub.python}",
        f"requeues:   up to {sub.max_num_timeout} time limits",
        "parameters (executor.update_parameters):",
    ]
    for key in sorted(sub.parameters):
        value = sub.parameters[key]
        if key == "setup":
            lines.append("  setup:")
            lines.extend(f"    {line}" for line in value)
        else:
            lines.append(f"  {key} = {json.dumps(value)}")
    lines.extend(f"note: {n}" for n in sub.notes)
    if sub.cluster == "slurm":
        lines.append("sbatch script (as submitit writes it; %j is the job id):")
        lines.append(sbatch_text(sub))
    return "\n".join(lines)


def sbatch_text(sub: Any) -> str:
    from submitit.slurm.slurm import _make_sbatch_string

    params = dict(sub.parameters)
    if sub.array:
        params["map_count"] = len(sub.shards)
    command = " ".join([sub.python, "-u -m submitit.core._submit", shlex.quote(sub.folder)])
    return _make_sbatch_string(command=command, folder=sub.folder, **params)


def wait_for(jobs: list[Any], sub: Any) -> int:
    """Poll until every job ended; 0 when all shards finished."""
    print("waiting for the job(s) to end (Ctrl-C stops waiting, not the jobs)", file=sys.stderr)
    try:
        while True:
            states = [_state(job, sub) for job in jobs]
            if all(s in _DONE for s in states):
                break
            time.sleep(2)
    except KeyboardInterrupt:
        print("stopped waiting; the job(s) go on", file=sys.stderr)
        return 130
    failed, finished = 0, []
    for job, shard in zip(jobs, sub.shards):
        ok, text = outcome(job)
        if ok and len(jobs) > 1:
            finished.append((shard, str(job.job_id)))  # said once: a line per shard of an array
            continue
        print(f"shard {shard}: job {job.job_id}: {text}", file=sys.stderr)
        failed += not ok
    if finished:
        from hpoc.commands.status_next import job_ranges
        from hpoc.runtime.shards import index_ranges

        shards, ids = index_ranges([k for k, _ in finished], ", "), job_ranges([i for _, i in finished])
        print(f"shard{'s' * (len(finished) > 1)} {shards}: job{'s' * (len(finished) > 1)} {ids}: finished",
              file=sys.stderr)
    return 1 if failed else 0


def outcome(job: Any) -> tuple[bool, str]:
    """(finished?, one line) from the result file task 0 of a job wrote."""
    from submitit.core.utils import pickle_load

    from hpoc.commands import joblogs

    task0 = job.task(0)
    path = task0.paths.result_pickle
    if not path.exists():  # never ran (the nodes' python lacks submitit), or killed
        if (why := joblogs.why(str(task0.paths.stderr))) is None:
            return False, f"ended without a result (killed?); log: {task0.paths.stdout}"
        fix = joblogs.advice(why)
        return False, f"ended without a result: {why}{f'; {fix}' if fix else ''} (log: {task0.paths.stderr})"
    kind, value = pickle_load(path)
    if kind == "success":
        return True, "finished"
    last = [ln for ln in str(value).strip().splitlines() if ln.strip()][-1:] or ["failed"]
    said = last[0].removeprefix("hpoc.submit.job.StudyJobError: ")  # hpoc's own words: no class path
    return False, f"{said} (log: {task0.paths.stdout})"


def _state(job: Any, sub: Any) -> str:
    if sub.cluster == "local":
        return str(job.state).upper()
    from hpoc.commands.status import slurm_states

    return slurm_states([str(job.job_id)]).get(str(job.job_id), {}).get("state", "UNKNOWN")
