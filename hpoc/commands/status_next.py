"""What `hpoc status` suggests doing next, as commands to paste (the study's own paths in
them): resume or retry which shards, how, and what to do about jobs SLURM will not start or
holds. Reads only the status `hpoc.commands.status.gather` built."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

from hpoc.commands import joblogs
from hpoc.runtime.shards import index_ranges
from hpoc.site import ACTIVE


# Pending reasons that waiting does not end (EnforcePartLimits=NO, the default, lets sbatch
# take such a job, and it pends forever): reason -> (what is wrong, the spec's setting).
NEVER_STARTS = {
    "PartitionNodeLimit": ("more nodes than the partition allows", "nodes"),
    "PartitionTimeLimit": ("a longer time limit than the partition allows", "time"),
    "QOSMaxWallDurationPerJobLimit": ("a longer time limit than the QOS allows", "time"),
    "AssocMaxWallDurationPerJobLimit": ("a longer time limit than the account allows", "time"),
    "QOSMaxNodePerJobLimit": ("more nodes than the QOS allows", "nodes"),
    "AssocMaxNodesPerJobLimit": ("more nodes than the account allows", "nodes"),
    "QOSMaxCpuPerJobLimit": ("more CPUs than the QOS allows", "cpus_per_node"),
    "AssocMaxCpuPerJobLimit": ("more CPUs than the account allows", "cpus_per_node"),
    "QOSMaxGRESPerJob": ("more GPUs than the QOS allows", "gpus_per_node"),
    "AssocMaxGRESPerJob": ("more GPUs than the account allows", "gpus_per_node"),
    "QOSMaxMemoryPerJob": ("more memory than the QOS allows", "mem"),
    # no node of the partition has what one node of the job asks for (`cpus_per_node = 8` on 2-CPU
    # nodes), or the partition has fewer nodes than the job (`nodes = 5` of 3, no MaxNodes set)
    "PartitionConfig": ("more nodes than the partition has, or more CPUs, GPUs or memory than a node of it has",
                        "nodes`, `cpus_per_node`, `gpus_per_node` or `mem"),
    "BadConstraints": ("a constraint no node of the partition satisfies", "constraint"),
    "DependencyNeverSatisfied": ("a `--dependency` that can never be met", "extra"),
    "InvalidQOS": ("a QOS the account may not use", "qos"),
    "InvalidAccount": ("an account that is not valid here", "account"),
}


# A job's why that names a spec setting to change: the build as compiled fails the same way.
_SPEC_FIX = re.compile(r"cannot run hpoc|\bset slurm\.\w+")


def never_starts(job: dict[str, Any]) -> str | None:
    """What to do about a pending job that waiting will not start, or None."""
    if job.get("state") != "PENDING" or job.get("reason") not in NEVER_STARTS:
        return None
    what, key = NEVER_STARTS[job["reason"]]
    return (f"job {job['job_id']} will not start as asked ({job['reason']}: {what}): "
            f"`scancel {job['job_id']}`, change `{key}` in the spec's `slurm` block, compile and submit again")


def job_ranges(ids: list[str]) -> str:
    """Job ids as scancel takes them, an array's tasks as ranges: `800_[0-199] 812`."""
    tasks: dict[str, list[int]] = {}
    for job_id in ids:
        base, _, task = job_id.partition("_")
        tasks.setdefault(base, [])
        if task.isdigit():
            tasks[base].append(int(task))
    return " ".join(base if not ks else f"{base}_{ks[0]}" if len(ks) == 1
                    else f"{base}_[{index_ranges(ks)}]" for base, ks in tasks.items())


def never_start_steps(jobs: list[dict[str, Any]]) -> list[str]:
    """never_starts() of each job, jobs pending for the same reason as one step: every task
    of an array that asks for too long a time pends for it."""
    alike: dict[str, list[dict[str, Any]]] = {}
    for job in jobs:
        if never_starts(job) is not None:
            alike.setdefault(job["reason"], []).append(job)
    steps = []
    for reason, same in alike.items():
        if len(same) == 1:
            steps.append(str(never_starts(same[0])))
            continue
        what, key = NEVER_STARTS[reason]
        ids = job_ranges([j["job_id"] for j in same])
        steps.append(f"{len(same)} jobs ({ids}) will not start as asked ({reason}: {what}): `scancel {ids}`, "
                     f"change `{key}` in the spec's `slurm` block, compile and submit again")
    return steps


def next_steps(status: dict[str, Any], target: str, plan: dict[str, Any] | None = None) -> list[str]:
    """What the user can do now, as commands (the study's own paths in them); `plan`, when
    at hand, names the pipeline step a fail-fast stop's error is in."""
    shards, build = status["shards"], status["build_dir"]
    steps = []
    # Jobs that ended the same way are one step: a 200-task array that failed on one import
    # said it 200 times.
    alike: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for s in shards:
        job = s["job"] or {}
        if job.get("why"):
            said = job["state"] if job.get("state") not in (None, "ENDED") else "ended"
            alike.setdefault((said, job["why"]), []).append(job)
    for (said, why), jobs in alike.items():
        if len(jobs) == 1:
            steps.append(f"job {jobs[0]['job_id']} {said}: {why} (its output: {jobs[0]['err']})")
        else:
            ids = job_ranges([j["job_id"] for j in jobs])  # an array's tasks: 800_[0-199]
            if len(ids) > 60:  # tasks of many arrays (resubmissions): the first ones
                ids = ", ".join(j["job_id"] for j in jobs[:3]) + (", …" if len(jobs) > 3 else "")
            steps.append(f"{len(jobs)} jobs ({ids}) {said}: {why} "
                         f"(the first one's output: {jobs[0]['err']})")
        if (fix := joblogs.advice(why)) is not None:
            steps.append(fix)
    if status.get("other_plan"):  # the states and results are that run's: nothing to resume
        from hpoc.runtime.marker import UPGRADE

        if status.get("ran_in"):  # this study, moved: not another spec's run
            from hpoc.runtime.marker import moved_help

            return steps + [moved_help(status["ran_in"])]
        if UPGRADE in status["other_plan"]:  # the spec is the same: the hpoc is not
            return steps + ["this hpoc cannot resume that run: resume it with the hpoc version that "
                            "started it, or move that run aside with `--fresh`"]
        return steps + ["this plan cannot run there: give the spec a `storage.name` of its own, "
                        "or move that run aside with `--fresh`"]
    steps += _pending_steps(shards, build, status["study"])
    # The driver stopped them (failfast.py): resuming alone fails again. Shards stopped by
    # the same error are one step: a broken trainer stops every task of an array.
    from hpoc.runtime.failfast import what_to_fix
    from hpoc.runtime.full import fresh_after, make_room
    from hpoc.runtime.summary import stopped_itself

    stopped_by: dict[tuple[Any, Any, str], list[tuple[int, list[str]]]] = {}
    for s in shards:
        if s.get("stopped"):  # alike: the same kind of stop, at the same place, on the same error
            why = [line.strip() for line in str(s["stopped"]).splitlines()] + [""]
            stop = s.get("stop") or {}
            stopped_by.setdefault((stop.get("kind"), stop.get("at"), why[1]), []).append((s["shard"], why))
    stops = {s["shard"]: s["stopped"] for s in shards if s.get("stopped")}
    dirs = {s["shard"]: s.get("experiment_dir") for s in shards}
    fresh_only: set[int] = set()  # stopped for room, their state cut short: no resume, --fresh
    for (kind, at, error), alike_shards in stopped_by.items():
        k, why = alike_shards[0]
        where = next((line[len("--> "):] for line in why if line.startswith("--> ")), None)
        said = next((line[len("help: "):] for line in why if line.startswith("help: ")), None)
        room = make_room(at) if kind == "disk_full" and at else None  # the group's key: its stop
        fresh = fresh_after(dirs[k]) if room and dirs.get(k) else None
        if fresh:
            fresh_only.update(j for j, _ in alike_shards if fresh_after(dirs[j]))
        ids = {j for j, _ in alike_shards}
        kept_failed = room and _keeps_failed(plan) and any(s["errored"] for s in shards if s["shard"] in ids)
        fix = f"{room}, then {fresh}" if fresh else f"{room}, then {_RETRY_FULL}" if kept_failed else \
            f"{said or room or what_to_fix(plan, where, why[1])}, then resume"
        if len(alike_shards) == 1:
            steps.append(f"shard {k} {stopped_itself(stops[k])}; {fix}")
        else:
            ranges = index_ranges([k for k, _ in alike_shards], ", ")
            on = f" on {error}" if error else ""
            steps.append(f"shards {ranges} stopped themselves{on} (shard {k}: {why[0]}); {fix}")
    if status.get("squeue_error"):  # its jobs may be queued: resubmitting would run them twice
        return steps + [f"squeue could not be asked ({status['squeue_error']}), so this study's "
                        "queued and running jobs are unknown: run `hpoc status` again where squeue "
                        "answers (SLURM_CONF set, the controller up) before resuming or submitting"]
    stopped = [s["shard"] for s in shards if s["shard"] not in fresh_only and (
               s["state"] in ("interrupted", "unknown", "extended")
               or (s["state"] == "not started" and status["state"] != "not started"))]
    grown = [s["grown"] for s in shards if s.get("grown")]
    if grown and status["state"] not in ("running", "queued"):  # else its jobs run them
        if status["state"] == "extended":  # nothing to resume: only the added trials to run
            run = _resume_command(status, stopped, target)
            run += " runs the added trials" if run.startswith("`") else ": it runs the added trials"
            stopped = []
        else:
            run = "the resume below runs the added trials too"
        steps.append(f"the spec extends the study ({grown[0]}): {run} (those that ran are kept)")
    ended = [s["job"] for s in shards if s["job"] and s["job"].get("state") not in ACTIVE]
    if status["state"] == "not started" and plan is not None and (moved := _left_behind(plan)):
        return steps + [moved]  # starting it would start it over at the old place
    if status["state"] == "not started" and ended and len(ended) == len([s for s in shards if s["job"]]):
        # Every job it had ended before a trial started (cancelled, failed at bring-up).
        again = _resume_command(status, [s["shard"] for s in shards], target)
        steps.append(_from_spec(again, "submit it", plan, build, alike) or "submit it again: " + again)
    elif status["state"] == "not started" and not any(s["job"] for s in shards) and build is not None:
        # Never submitted, or its jobs were cancelled while they pended (no output left).
        steps.append("submit it: " + _resume_command(status, [s["shard"] for s in shards], target))
    elif status["state"] == "not started" and not any(s["job"] for s in shards) and not status.get("spec_unknown"):
        spec = _spec_words(target)  # read from the spec, never run
        if status.get("slurm") is False:
            steps.append(f"start it: `hpoc run {spec} --local` {NO_SLURM}")
        else:
            steps.append(f"start it: `hpoc run {spec} --local` (or `hpoc submit {spec}`)")
    elif status["state"] == "not started" and status.get("spec_unknown"):
        steps.append("start it: `hpoc run SPEC --local` or `hpoc submit SPEC` (SPEC: the study file "
                     "whose storage this is)")
    elif stopped and status["state"] not in ("running", "queued") and status.get("resume") is False:
        where = shlex.quote(build) if build else _spec_words(target)  # the run refuses to restore
        again = f"hpoc run {where} --local --fresh" if not build and status.get("slurm") is False \
            else f"hpoc submit {where} --fresh"  # without a `slurm` block submit runs it here too
        steps.append("resume is off in the study, so its unfinished run cannot go on: "
                     f"`{again}` starts it over (the run so far is moved aside)")
    elif stopped and status["state"] not in ("running", "queued"):
        again = _resume_command(status, stopped, target)
        steps.append((_from_spec(again, "resume", plan, build, alike) or "resume: " + again)
                     + " (finished trials are kept; the others continue from their checkpoints)")
    elif stopped:
        steps.append(f"shard(s) {index_ranges(stopped, ', ')} stopped: once the other jobs end, "
                     + _resume_command(status, stopped, target) + " resumes them")
    if status["state"] == "finished":
        where = shlex.quote(build) if build else _spec_words(target)
        steps.append(f"results: hpoc results {where}; report: hpoc report {where} -o report.html")
        if any(s.get("ended") and not s.get("search_ended") for s in shards):  # docs/resume.md "More trials or more time"
            steps.append("raise `trials.time_budget` (or `trials.num_samples`) in the spec and run the "
                         "study again to extend it (the trials that ran are kept)")
        # with those cut short in their retry: Ray has them as finished, the retry does not
        errored = [s["shard"] for s in shards if s["errored"] or s.get("retry_cut")]
        cut = sum(s.get("retry_cut", 0) for s in shards)
        if errored:
            from hpoc.runtime.failfast import objective_fix

            among = f" ({cut} cut short in their retry)" if cut else ""
            # no trial reported the objective: the spec's objective may be the fix
            unreported = next(filter(None, (objective_fix(s.get("no_success_why") or "") for s in shards)), None)
            steps.append(f"{sum(s['errored'] for s in shards) + cut} errored trial(s){among}: "
                         + (f"{unreported}; then " if unreported else "once what made them fail is fixed, ")
                         + _retry_command(status, errored, target) + " runs only those again (finished "
                         "trials are kept)")
    return steps


# A stop for want of room under `resume.retry_errored = false` (full.run_again says the same).
_RETRY_FULL = ("resume with --retry-errored --from-checkpoint (HPOC_RETRY_ERRORED=checkpoint for a "
               "job script): a plain resume keeps the trials the full disk failed failed "
               "(`resume.retry_errored = false`)")


def _keeps_failed(plan: dict[str, Any] | None) -> bool:
    """Whether a plain resume keeps the study's errored trials failed."""
    resume = (plan or {}).get("resume") or {}
    return bool(resume.get("enabled")) and resume.get("retry_errored") is False


def _left_behind(plan: dict[str, Any]) -> str | None:
    """marker.left_behind as one step: the project moved with its results, and the spec
    names the old place by an absolute `storage.path`."""
    from hpoc.plan import plan_hash
    from hpoc.runtime import marker
    from hpoc.runtime.shards import experiment_dir

    why = marker.left_behind(marker.fingerprint(plan, plan_hash(plan)), experiment_dir(plan, 0))
    return why.replace("\n  help: ", "; ") if why else None


def _pending_steps(shards: list[dict[str, Any]], build: str | None, study: str) -> list[str]:
    """What to do about queued jobs that waiting will not start, or start late."""
    steps = never_start_steps([s["job"] for s in shards if s["job"]])
    held: dict[str, list[dict[str, Any]]] = {}  # by array: a lost node requeues its tasks together
    for s in shards:
        job = s["job"] or {}
        if job.get("state") == "PENDING" and job.get("reason") == "BeginTime":
            held.setdefault(str(job["job_id"]).split("_")[0], []).append(job)
    # `--hold` in `extra`: an array's tasks as one step
    on_hold = [str(job["job_id"]) for s in shards if (job := s["job"] or {}).get("state") == "PENDING"
               and job.get("reason") == "JobHeldUser"]
    if on_hold:
        ids, many = job_ranges(on_hold), len(on_hold) > 1
        steps.append(f"job{'s' * many} {ids} {'are' if many else 'is'} held (JobHeldUser: `--hold`, or "
                     f"`scontrol hold`): `scontrol release {ids}` lets {'them' if many else 'it'} start")
    for jobs in held.values():
        ids = job_ranges([j["job_id"] for j in jobs])
        # A job that never ran has no .err: it was submitted with `--begin`, not requeued.
        if build and not any(Path(joblogs.err_file(build, study, j)).exists() for j in jobs):
            many = len(jobs) > 1
            steps.append(f"job{'s' * many} {ids} wait{'' if many else 's'} for the begin time "
                         f"{'they were' if many else 'it was'} submitted with (`--begin`; "
                         f"`squeue -j {jobs[0]['job_id']} -o %S` says when): `scontrol update JobId={ids} "
                         f"StartTime=now` starts {'them' if many else 'it'} now")
            continue
        # Why SLURM requeued it (a lost node, say): its last run's .err, appended to
        # (an `hpoc submit` job's: submitit's task-0 log).
        ended = joblogs.why(joblogs.err_file(build, study, jobs[0])) if build else None
        if len(jobs) == 1:
            steps.append(f"job {ids} waits for its begin time: SLURM holds a requeued job about "
                         f"2 minutes (`scontrol update JobId={ids} StartTime=now` starts it sooner)"
                         + (f"; its last run ended: {ended}" if ended else ""))
        else:
            steps.append(f"{len(jobs)} jobs ({ids}) wait for their begin time: SLURM holds a requeued "
                         f"job about 2 minutes (`scontrol update JobId={ids} StartTime=now` starts "
                         "them sooner)" + (f"; the first one's last run ended: {ended}" if ended else ""))
    return steps


# On a login node "or `hpoc submit`" read as "or send it to SLURM": without a `slurm`
# block it runs the whole study on the machine it is typed on.
NO_SLURM = ("(the spec has no `slurm` block: `hpoc submit` would run it on this machine too; "
            "add one to submit it to SLURM)")


def _from_spec(again: str, what: str, plan: dict[str, Any] | None, build: str | None,
               ended: dict[tuple[str, str], Any]) -> str | None:
    """The step that compiles the spec again first, when a job `ended` naming a spec setting
    to fix (the build as compiled fails the same way); else None. `again`: the command."""
    spec = _source_spec(plan)
    if not spec or build is None or not any(joblogs.advice(why) or _SPEC_FIX.search(why) for _, why in ended):
        return None
    build_q = shlex.quote(str(build))
    if again.startswith("`hpoc submit"):
        again_ = " again" if what == "submit it" else ""
        return f"once the spec is fixed, {what}{again_} from the spec: `hpoc submit {spec} -o {build_q}`"
    return f"once the spec is fixed, compile it again: `hpoc compile {spec} -o {build_q}`, then {what}: {again}"


def _source_spec(plan: dict[str, Any] | None) -> str | None:
    """The spec a plan was compiled from, as a command takes it (with its `--pipe-key`)."""
    source = (plan or {}).get("source") or {}
    if not (source.get("workdir") and source.get("file")):
        return None
    key = source.get("pipe_key")
    return shlex.quote(str(Path(source["workdir"]) / source["file"])) + (
        f" --pipe-key {shlex.quote(key)}" if key else "")


def _spec_words(target: str) -> str:
    """The spec as the commands suggested take it: with the `--pipe-key` it was read with."""
    from hpoc.yaml import PIPE_KEY, is_yaml

    key = PIPE_KEY.get()
    extra = f" --pipe-key {shlex.quote(key)}" if key and is_yaml(target) else ""
    return shlex.quote(target) + extra


def _retry_command(status: dict[str, Any], errored: list[int], target: str) -> str:
    """The command that runs the errored trials of these shards again (docs/resume.md)."""
    return _resume_command(status, errored, target, retry=True)


def _resume_command(status: dict[str, Any], stopped: list[int], target: str,
                    retry: bool = False) -> str:
    build = status["build_dir"]
    flag, env = (" --retry-errored", "HPOC_RETRY_ERRORED=1 ") if retry else ("", "")
    if build is None:
        t = "SPEC" if status.get("spec_unknown") else _spec_words(target)
        if retry and status.get("slurm") is False:  # `hpoc submit` would run it here too
            return f"`hpoc run {t} --local{flag}`"
        if retry:
            return f"`hpoc run {t} --local{flag}` (or `hpoc submit {t}{flag}`" + (
                "; SPEC: the study file that ran it)" if t == "SPEC" else ")")
        return f"run the study again as you started it (`hpoc run {t} --local`, `hpoc submit`)"
    if status.get("submitted_by_hpoc") or not (Path(build) / "job.sbatch").is_file():
        return f"`hpoc submit {shlex.quote(build)}{flag}`"
    script = shlex.quote(f"{build}/job.sbatch")  # the user pastes it into a shell
    if len(status["shards"]) == 1:
        return f"`{env}sbatch {script}`"
    # `--array` on the command line replaces the script's, `%P` (shards at once) included.
    parallel = status.get("parallel") or len(stopped)
    limit = f"%{parallel}" if parallel < len(stopped) else ""
    return f"`{env}sbatch --array={index_ranges(stopped)}{limit} {script}`"
