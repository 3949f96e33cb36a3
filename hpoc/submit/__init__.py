"""Submit a study through submitit: `hpoc.submit("study.hpo")` -> list of submitit jobs.

    jobs = hpoc.submit("examples/digits/study.hpo")             # SLURM when sbatch is here
    jobs = hpoc.submit("build/digits", cluster="local")         # this machine
    sub = hpoc.submit("study.hpo", dry_run=True)                # a Submission; nothing sent

A spec is compiled first into `out` (default `build/<study name>`, as `hpoc compile`), a
build directory or plan.json is used as it is. One job per shard; several shards on SLURM
are one job array (`executor.map_array`, `shards.parallel` at a time). Every job runs
`hpoc.submit.job.StudyJob`, which brings up the shard's own Ray cluster and runs the study
driver. Submitting a plan whose study is unfinished resumes it; one that is complete is
not submitted again (pass fresh=True to start over).

Submitted job ids are appended to `<build dir>/jobs.json` (read by `hpoc status`).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shlex
import shutil
import sys
import time
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hpoc.compiler import refusal
from hpoc.files import aside_path, write_atomic
from hpoc.submit.params import SubmitError, Submission, describe, job_comment
from hpoc.submit.queue import plan_in_use

__all__ = ["submit", "prepare", "load_target", "send", "SubmitError", "Submission", "Target", "JOBS_FILE"]

JOBS_FILE = "jobs.json"


def submit(target: str | os.PathLike, *, cluster: str | None = None, dry_run: bool = False,
           out: str | os.PathLike | None = None, fresh: bool = False, force: bool = False,
           retry_errored: str | None = None) -> Any:
    """Submit the study; returns the submitit jobs (one per shard), or the `Submission`
    that would be sent when `dry_run` is true (nothing is written then: its shards are
    those that did not run to the end, none for a complete study). Raises SubmitError (or
    SpecError for a spec with errors). `retry_errored` ("scratch" or "checkpoint", as
    `hpoc submit --retry-errored`) submits the shards with errored trials, whose jobs run
    only those again."""
    found = load_target(target, out)
    from hpoc.runtime.pipeline import workdir_gone

    if (why := workdir_gone(found.plan)) is not None:  # its jobs would all fail on it
        raise SubmitError(why)
    sub = prepare(found.plan, found.plan_path, cluster)
    if dry_run:
        return would_send(found.plan, sub, fresh, retry_errored)
    return send(found.plan, sub, fresh=fresh, force=force, build=found, retry=retry_errored)


def pick_cluster(plan: dict[str, Any], cluster: str | None) -> str:
    if cluster:
        return cluster
    return "slurm" if plan.get("slurm") is not None and shutil.which("sbatch") else "local"


def prepare(plan: dict[str, Any], plan_path: Path, cluster: str | None = None) -> Submission:
    return describe(plan, str(Path(plan_path).resolve()), pick_cluster(plan, cluster))


# ---------------------------------------------------------------- plan in

@dataclass
class Target:
    """A plan and where jobs will read it; `files` still to write (a compiled spec's build
    directory is written only once the submission passed its checks, so a refused one
    never changes the plan a queued job will read)."""

    plan: dict[str, Any]
    plan_path: Path
    files: dict[Path, tuple[str, bool]] = field(default_factory=dict)

    def write(self) -> None:
        for path, (text, executable) in self.files.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            _write(path, text, executable)
        self.files = {}


def load_target(target: str | os.PathLike, out: str | os.PathLike | None = None) -> Target:
    """The plan of a spec (compiled, not yet written), a build directory or a plan.json."""
    from hpoc.errors import HpocError
    from hpoc.plan import load, plan_file

    try:
        path = plan_file(target)
        if path.suffix == ".json":
            return Target(load(path), path.resolve())
    except HpocError as exc:
        raise SubmitError(str(exc)) from None
    return _compile(path, out)


def _compile(spec: Path, out: str | os.PathLike | None) -> Target:
    from hpoc import plan as plan_mod
    from hpoc.compiler import compile_path
    from hpoc.files import not_a_build_dir

    if out is not None and (why := not_a_build_dir(Path(out))):
        raise SubmitError(why)
    plan = compile_path(spec).plan
    text = plan_mod.dumps(plan)
    plan = json.loads(text)  # with its content hash, as jobs will read it
    folder = (Path(out) if out else Path("build") / plan["study"]["name"]).resolve()
    plan_path = folder / "plan.json"
    files = {plan_path: (text, False)}
    try:  # the other backend's scripts too, so the build directory matches `hpoc compile`
        from hpoc.compiler.render import RenderError, render_all

        for name, body in render_all(plan, plan_path=str(plan_path)).items():
            files[folder / name] = (body, True)
    except (ImportError, RenderError):
        pass
    return Target(plan, plan_path, files)


def _write(path: Path, text: str, executable: bool = False) -> None:
    write_atomic(path, text, mode=0o755 if executable else None)


# ---------------------------------------------------------------- checks before sending

def check_previous(plan: dict[str, Any], fresh: bool) -> str:
    """"fresh", "resume" or "done" for the study's storage; moves it aside when `fresh`.

    Refuses a storage that holds another plan's run (as the driver would, but before a
    job waits in the queue)."""
    if fresh:
        move_aside(plan)
        return "fresh"
    return previous_run(plan)[0]


def _refuse_live(plan: dict[str, Any]) -> list[Path]:
    """The study's experiment directories; SubmitError when a live run holds one (never
    move it aside or run a job beside it)."""
    from hpoc.runtime import runlock
    from hpoc.runtime.shards import experiment_dir

    dirs = [experiment_dir(plan, k) for k in range(plan["shards"]["count"])]
    for d in dirs:
        live = runlock.holder(d)
        if live:
            raise SubmitError(runlock.describe(d, live))
    return dirs


def move_aside(plan: dict[str, Any]) -> Path | None:
    """--fresh: the study's storage moved aside (where to), or None when there was none."""
    from hpoc.runtime.shards import study_root

    root = study_root(plan)
    if not root.exists() or not any(root.iterdir()):
        return None
    _refuse_live(plan)
    aside = aside_path(root)
    root.rename(aside)
    print(f"hpoc: moved the previous run to {aside}")
    return aside


def _put_back(plan: dict[str, Any], aside: Path) -> None:
    """Undo move_aside after a failed submission (unless something new is there)."""
    from hpoc.runtime.shards import study_root

    root = study_root(plan)
    if root.exists() and not any(root.iterdir()):
        root.rmdir()
    if aside.exists() and not root.exists():
        aside.rename(root)
        print(f"hpoc: the submission failed: moved the previous run back to {root}")


def previous_run(plan: dict[str, Any], retry: str | None = None) -> tuple[str, set[int]]:
    """check_previous's answer (without --fresh) and the shards that ran to the end (with
    `retry`, --retry-errored: to the end with no errored trial)."""
    from hpoc.runtime import marker, rerun
    from hpoc.runtime.shards import study_root
    from hpoc.runtime.summary import finished_run

    root = study_root(plan)
    digest = plan.get("content_hash")
    fp = marker.fingerprint(plan, digest) if digest else None
    if not root.exists() or not any(root.iterdir()):
        from hpoc.runtime.shards import experiment_dir

        if fp is not None and (why := marker.left_behind(fp, experiment_dir(plan, 0))) is not None:
            raise SubmitError(why)  # the project moved with its results: they are not at `root`
        return "fresh", set()
    dirs = _refuse_live(plan)
    done: set[int] = set()
    for k, d in enumerate(dirs):
        recorded = marker.here(marker.read(d), fp, d)  # moved since: as if it ran here
        parts = marker.differences(recorded, fp, d) if recorded and fp else None
        if parts is not None:
            raise SubmitError(
                marker.describe(d, recorded, fp, parts) + "\n  help: " + marker.remedy(recorded, fp, parts))
        summary = finished_run(d, recorded if fp else None, digest, fp)
        if summary is not None and not (retry and rerun.errored(d, summary)):
            done.add(k)
    return ("done" if len(done) == len(dirs) else "resume"), done


def active_jobs(plan: dict[str, Any]) -> list[str]:
    """Ids of queued or running jobs of this study (by the comment hpoc gives them)."""
    from hpoc.submit.queue import ask_squeue

    # Completing jobs are on their way out (their Ray stops); everything else counts.
    mine = job_comment(plan)
    rows = ask_squeue("%i|%k", "-t", "PD,R,S,CF,RQ,RH,RF,RS,SI,SO,ST")
    if isinstance(rows, str):  # no answer (a hung controller): not waited for twice
        return []
    found = [line.split("|", 1)[0] for line in rows if line.partition("|")[2].strip() == mine]
    return found + [j for j in _sbatched(plan) if j not in found]


def _sbatched(plan: dict[str, Any]) -> list[str]:
    """Ids of jobs that `sbatch job.sbatch` sent from any build directory of this study's
    storage: they carry no hpoc comment, and a submission beside them would stop on the
    node against their run lock."""
    from hpoc.submit.queue import queued_jobs, study_jobs

    jobs = queued_jobs()
    if isinstance(jobs, str):  # squeue not answering: the run lock still guards each shard
        return []
    jobs = [j for j in jobs if Path(j["script"]).name == "job.sbatch"]
    # an array once (squeue -r lists each task): `scancel 77` stops its tasks
    ids = [j["job_id"].split("_")[0] for j in study_jobs(plan, jobs)] if jobs else []
    return sorted(set(ids), key=ids.index)


# ---------------------------------------------------------------- sending

def make_executor(sub: Submission) -> Any:
    import submitit

    if sub.cluster == "slurm":
        executor = submitit.SlurmExecutor(folder=sub.folder, max_num_timeout=sub.max_num_timeout,
                                          python=sub.python)
    else:
        executor = submitit.LocalExecutor(folder=sub.folder, max_num_timeout=sub.max_num_timeout)
    executor.update_parameters(**sub.parameters)
    return executor


def spec_of(plan: dict[str, Any]) -> str:
    """The plan's spec as the user pastes it into a shell (a directory may have a space)."""
    source = plan.get("source") or {}
    return shlex.quote(os.path.join(source.get("workdir") or ".", source.get("file") or "study.hpo"))


def make_job(plan: dict[str, Any], sub: Submission, retry: str | None = None) -> Any:
    from hpoc.submit.job import StudyJob

    grace = sub.parameters.get("signal_delay_s")
    local_cpus = None
    if sub.cluster == "local":
        local_cpus = max(1, (os.cpu_count() or 1) // max(1, len(sub.shards)))
    return StudyJob(sub.plan_path, sub.cluster, grace_s=grace, local_cpus=local_cpus,
                    retry_errored=retry)


def send(plan: dict[str, Any], sub: Submission, *, fresh: bool = False, force: bool = False,
         build: Target | None = None, retry: str | None = None) -> list[Any]:
    if sub.cluster == "slurm" and shutil.which("sbatch") is None:  # submitit would call it a bug
        raise SubmitError(
            "`sbatch` is not on PATH here, so nothing can be submitted to SLURM\n"
            "  help: submit from the cluster's login node, with its SLURM commands on PATH "
            f"(`module load slurm` at some sites); to run it on this machine: `hpoc run {spec_of(plan)} "
            "--local` (or --cluster local)")
    if sub.cluster == "slurm" and not force:
        running = active_jobs(plan)
        if running:
            raise SubmitError(
                f"study `{plan['study']['name']}` already has job(s) {', '.join(running)} queued or "
                "running; a second job would run the same shards at once\n"
                "  help: wait for them, `scancel` them, or pass --force")
    if build is not None and not force:
        text = build.files.get(Path(sub.plan_path), ("", False))[0]
        in_use, unchecked = plan_in_use(Path(sub.plan_path), text) if text else (None, None)
        if in_use:
            raise SubmitError(in_use + ", or pass --force")
        if unchecked:
            print(f"warning: {unchecked}", file=sys.stderr)
    aside = move_aside(plan) if fresh else None
    state, note = unfinished(plan, sub, fresh, retry)
    if build is not None:
        build.write()
    if state == "done":
        return []
    if note:
        print(f"hpoc: {note}")
    said = io.StringIO()  # submitit prints sbatch's refusal before raising it: said once, below
    try:
        with contextlib.redirect_stderr(said):
            executor = make_executor(sub)
            job = make_job(plan, sub, retry)
            if len(sub.shards) == 1:
                jobs = [executor.submit(job, sub.shards[0])]
            else:
                jobs = executor.map_array(job, sub.shards)
    except BaseException as exc:  # sbatch refused (a wrong partition, say): --fresh undone
        refused = type(exc).__name__ == "FailedJobError"
        sys.stderr.write(said.getvalue().replace(f"{exc}\n", "") if refused else said.getvalue())
        if aside is not None:
            _put_back(plan, aside)
        if refused:  # submitit's: sbatch said no
            why = refusal.reasons(str(exc)) or ["(no message)"]
            if "Socket timed out" in str(exc):  # a slow controller may have taken the job before it
                raise SubmitError(
                    f"sbatch got no answer from SLURM in time ({why[-1]}): the job may have been submitted all "
                    f"the same\n  help: `hpoc status {shlex.quote(str(Path(sub.plan_path).parent))}` (or `squeue "
                    "--me`) shows whether it was, before you submit again") from None
            if refusal.unreachable(str(exc)):  # no answer about the job: the spec is not at fault
                raise SubmitError(
                    f"sbatch could not ask SLURM, nothing was submitted: {why[-1]}\n  help: submit from the "
                    "cluster's login node, where `sinfo` answers, or try again when the SLURM controller "
                    "is back") from None
            from hpoc.site.sbatch_env import what_to_check

            check = what_to_check("\n".join(why), plan)
            raise SubmitError(f"sbatch refused the job, nothing was submitted: {'; '.join(why)}\n"
                              f"  help: {check}") from None
        raise
    sys.stderr.write(said.getvalue())
    record_jobs(Path(sub.plan_path).parent, sub, jobs, state)
    return jobs


def unfinished(plan: dict[str, Any], sub: Submission, fresh: bool,
               retry: str | None = None) -> tuple[str, str | None]:
    """What `send` (and `hpoc submit --dry-run`) sends: the start ("fresh", "resume", or
    "done": nothing) and, keeping in `sub` only the shards that did not run to the end,
    the line that says which were dropped. `fresh` moves nothing aside here."""
    state, finished = ("fresh", set()) if fresh else previous_run(plan, retry)
    if state == "done":
        return state, None
    return state, skip_finished(sub, finished)


def would_send(plan: dict[str, Any], sub: Submission, fresh: bool,
               retry: str | None = None) -> Submission:
    """`sub` as `send` would send it (no shards for a complete study), moving nothing."""
    state, note = unfinished(plan, sub, fresh, retry)
    if state == "done":
        sub.shards = []
    elif note:
        sub.notes.append(note)
    return sub


def skip_finished(sub: Submission, finished: set[int]) -> str | None:
    """Drop from `sub` the shards that ran to the end (a job for one would start a cluster
    only to stop it); the line that says so, or None."""
    if not finished:
        return None
    sub.shards = [k for k in sub.shards if k not in finished]
    from hpoc.runtime.shards import index_ranges

    return f"shard(s) {index_ranges(finished, ', ')} ran to the end: not submitted again"


def record_jobs(build_dir: Path, sub: Submission, jobs: list[Any], state: str) -> None:
    path = build_dir / JOBS_FILE
    try:
        records = json.loads(path.read_text())
    except (OSError, ValueError):
        records = []
    records.append({
        "cluster": sub.cluster, "submitted": round(time.time(), 3), "start": state,
        "study_id": sub.study_id,  # the storage: a recompiled build dir may hold another
        "jobs": [{"job_id": str(j.job_id), "shard": k} for j, k in zip(jobs, sub.shards)],
        "folder": sub.folder,
    })
    _write(path, json.dumps(records, indent=2) + "\n")


def read_jobs(build_dir: Path) -> list[dict[str, Any]]:
    try:
        records = json.loads((Path(build_dir) / JOBS_FILE).read_text())
    except (OSError, ValueError):
        return []
    return records if isinstance(records, list) else []


# `import hpoc.submit` binds the *module* to `hpoc.submit`, shadowing the lazy function
# of the same name in `hpoc/__init__.py`; calling the module calls `submit`, so
# `hpoc.submit("study.hpo")` works either way.
class _CallableModule(types.ModuleType):
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return submit(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
