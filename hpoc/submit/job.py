"""What a submitit job runs on its nodes: one study shard on a Ray cluster of its own.

`StudyJob(plan_path, cluster)(shard)` runs in every task of the job (one task per node).
On SLURM, task 0 brings up the Ray head, waits for all nodes, runs the study driver
(`python -m hpoc.runtime PLAN --shard K`, the same command job.sbatch runs) and tears
its cluster down; the other tasks start a Ray worker each and return once task 0 ended or
the head is gone, also when their own Ray died before (task 0 then says so; the study goes
on with the nodes left). The bring-up is the SLURM backend's own: `hpoc.runtime.cluster.init` (private job
directory, fresh token), `python -m hpoc.runtime.node head|worker` (per-job port slot,
per-node temp dir, resources from the allocation), `cluster.wait_head` and
`preflight.check` (readiness by polling, token auth verified). Before any of it, task 0
asks what job.sbatch asks before Ray (hpoc/runtime/before.py): a shard that ran to the end
or that another run holds gets no cluster, and a go claims the shard for this job.
Teardown stops only the processes this job started.

The token reaches the other nodes through a 0700 directory in the job's log folder (all
tasks start at once from one srun, so there is no earlier step to hand it over); task 0
deletes it as soon as every node has joined. When task 0 ends, a `done` file there (kept:
the tasks poll for it) tells the other tasks to stop their Ray worker, or to stop waiting.

Survival: `grace_s` before the time limit SLURM sends USR2 (`--signal=USR2@grace`);
submitit calls `checkpoint`, which asks the driver to stop (Tune saves the experiment,
trials keep their checkpoints) and hands submitit the same job to requeue; a study that
finished meanwhile ends the job as a success. The Ray nodes ignore USR2 (SLURM signals
every process of the step: the driver too, which may end before `checkpoint` asks it).
SIGTERM (scancel, preemption, scontrol requeue) reaches every process at once and is a
hard kill for the study. The
requeued job - or any later submission of the same plan - resumes the study from its
storage (docs/resume.md).

With submitit's local executor the driver runs with an embedded Ray on this machine.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import submitit
from submitit.core.utils import UncompletedJobError

from hpoc.files import write_atomic
from hpoc.plan import EXIT_INTERRUPTED, EXIT_NO_PROGRESS, WALLTIME_REQUEUE
from hpoc.runtime.node_stop import KILL_WAIT_ENV, StopWaits, left_s, stop_waits

STOP_MARGIN_S = 10       # of the grace period, left for teardown after the driver stopped
HEAD_GONE_CHECKS = 3     # failed probes in a row before a worker decides the head is gone
POLL_S = 0.5
_HEEDED = {signal.SIGHUP, signal.SIGINT, signal.SIGTERM, signal.SIGUSR2}  # job.sbatch's list


class StudyJobError(Exception):
    """The shard did not finish; the message names the log to read."""


def _ignore_usr2() -> None:  # preexec_fn of the Ray node processes
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)


class StudyJob(submitit.helpers.Checkpointable):
    """The callable submitit pickles: `StudyJob(plan_path, cluster)(shard)`."""

    def __init__(self, plan_path: str, cluster: str = "slurm", *, grace_s: int | None = None,
                 local_cpus: int | None = None, retry_errored: str | None = None) -> None:
        self.plan_path = str(plan_path)
        self.cluster = cluster
        self.grace_s = grace_s
        self.local_cpus = local_cpus
        self.retry_errored = retry_errored  # rerun.SCRATCH/CHECKPOINT: `hpoc submit --retry-errored`
        self._driver: subprocess.Popen | None = None
        self._terminated = False  # SLURM sent SIGTERM: scancel, preemption, scontrol requeue
        self._term_at: float | None = None  # ... when (time.monotonic())
        self._lost: list[tuple[str, str]] | None = None  # ... or a node of the job it marked down
        self._walltime_stop = False  # USR2 stopped the study: SLURM's SIGTERM follows the requeue
        self._driver_rc: int | None = None  # the driver's exit status, once it has ended

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._driver = None
        self._terminated = False
        self._term_at = None
        self._lost = None
        self._walltime_stop = False
        self._driver_rc = None

    # ---------------------------------------------------------------- submitit hooks

    def __call__(self, shard: int = 0) -> dict[str, Any]:
        try:
            if self.cluster == "local":
                self._finish_at_walltime()
                return self._run_driver(shard, dict(os.environ), local=True)
            env = submitit.JobEnvironment()
            if env.global_rank == 0:
                self._finish_at_walltime()
                return self._head(shard, env)
            self._worker(env)
            return {"shard": shard, "role": "worker", "node": _node_name()}
        except StudyJobError as exc:
            _end_without_traceback(exc)
            raise

    def checkpoint(self, shard: int = 0) -> submitit.helpers.DelayedSubmission | None:
        """USR2 (the time limit is near): stop the driver gracefully, then requeue this job."""
        self._walltime_stop = True
        driver = self._driver
        if driver is not None and driver.poll() is None:
            # The job script's words (signals.j2), so that both kinds of job read alike.
            print("hpoc: time limit near (SIGUSR2): asking the study to checkpoint and stop", flush=True)
            driver.send_signal(signal.SIGUSR2)
            wait = max(1, (self.grace_s or 60) - STOP_MARGIN_S)
            if not _wait_gone(driver.pid, wait):
                print(f"hpoc: the study did not stop within {wait} s; it is stopped now", flush=True)
        rc = driver.poll() if driver is not None else self._driver_rc
        self._driver_rc = rc
        if rc == 0:  # not requeued, and the job ends as a success (_finish_at_walltime)
            print("hpoc: the study finished as the time limit came; the job ends", flush=True)
            return None
        if self.grace_s is None:  # resume disabled in the study: do not requeue
            return None
        if not _resumable(rc):
            if rc != EXIT_NO_PROGRESS:  # that one said why (walltime.py)
                print(f"hpoc: the study ended as the time limit came (driver exit status {rc}); "
                      "not requeued", flush=True)
            return None
        print(f"hpoc: requeueing job {_job_ref()} to resume the study", flush=True)
        # Without retry_errored: the requeued job resumes this run, errored trials as the
        # plan's `resume.retry_errored` says (a retry from scratch is not started over).
        fresh = StudyJob(self.plan_path, self.cluster, grace_s=self.grace_s, local_cpus=self.local_cpus)
        return submitit.helpers.DelayedSubmission(fresh, shard)

    def _finish_at_walltime(self) -> None:
        """submitit fails the job whose checkpoint does not requeue it: its USR2 handler
        raises "Job not requeued" into the job. A study that finished as the time limit came
        (its driver exited 0) ends the job as it would have a moment earlier: a success."""
        submitits = signal.getsignal(signal.SIGUSR2)
        if not callable(submitits):
            return

        def on_usr2(signum: int, frame: Any) -> None:
            try:
                submitits(signum, frame)
            except UncompletedJobError:
                if self._driver_rc != 0:
                    raise
                # The job goes on where the signal came: to its teardown and its result.

        signal.signal(signal.SIGUSR2, on_usr2)

    def _after_loss(self) -> str:
        if self.grace_s is None:  # resume off: the job asked for --no-requeue
            return "resume is off in the study, so it is not requeued"
        return "a requeued job, or the same plan submitted again, resumes the study"

    def _resumed_by(self, who: str) -> str:
        """`who` resumes a stopped study, unless resume is off in it (no grace_s): a run
        again then refuses the unfinished run (runtime/prior.py)."""
        if self.grace_s is None:
            return ("resume is off in the study, so it cannot go on: submitting it again with "
                    "--fresh starts it over")
        return who

    def _note_sigterm(self) -> None:
        """Remember SLURM's SIGTERM instead of submitit's "Bypassing signal" warnings: it
        reaches the Ray head too, and its end is then the job's cancellation, not a Ray
        failure to look for in the head's log. (The job goes on, as under submitit.)"""
        def on_term(signum: int, frame: Any) -> None:
            if not self._terminated and not self._walltime_stop:  # (the requeue's own SIGTERM)
                print("hpoc: terminated (SIGTERM): stopping the study", file=sys.stderr, flush=True)
            self._terminated = True
            if self._term_at is None:  # SLURM's SIGKILL follows KillWait later
                self._term_at = time.monotonic()

        signal.signal(signal.SIGTERM, on_term)
        signal.signal(signal.SIGCONT, signal.SIG_DFL)  # SLURM's, before its SIGTERM

    def _say_lost_nodes(self) -> None:
        """After SLURM's SIGTERM, once: the nodes it marked down, whose loss ends the job. Asked
        from the driver's loop, not in the signal handler: sinfo and scontrol may take seconds
        of the KillWait the driver needs to stop."""
        if not self._terminated or self._walltime_stop or self._lost is not None:
            return
        self._lost = _lost_nodes()
        for node, reason in self._lost:
            print(f"hpoc: SLURM lost {node} of this job (down: {reason}) and ends the job: "
                  f"{self._after_loss()}", file=sys.stderr, flush=True)

    # ---------------------------------------------------------------- the driver

    def _driver_cmd(self, shard: int, local: bool) -> list[str]:
        """The study driver, as job.sbatch runs it."""
        cmd = [sys.executable, "-m", "hpoc.runtime", self.plan_path, "--shard", str(shard)]
        if getattr(self, "retry_errored", None):  # (a job pickled by an older hpoc has none)
            from hpoc.runtime.rerun import CHECKPOINT

            cmd += ["--retry-errored"] + (["--from-checkpoint"] if self.retry_errored == CHECKPOINT else [])
        if local:
            cmd.append("--local")
            if self.local_cpus:
                cmd += ["--cpus", str(self.local_cpus)]
        return cmd

    def _run_driver(self, shard: int, env: dict[str, str], *, local: bool, head: subprocess.Popen | None = None,
                    head_log: Path | None = None, rdv: Path | None = None) -> dict[str, Any]:
        cmd = self._driver_cmd(shard, local)
        if local:
            env.pop("RAY_ADDRESS", None)
        if self.grace_s is not None:  # checkpoint() requeues: the driver stopped by USR2 says so
            env[WALLTIME_REQUEUE] = "1"
        print(f"hpoc: running shard {shard}: {' '.join(cmd)}", flush=True)
        print(progress_line(shard, self.plan_path), flush=True)
        started = time.time()
        self._driver = subprocess.Popen(cmd, env=env)
        waits = _waits()
        stop_s = waits.driver_s
        lost: set[Path] = set()  # worker nodes whose Ray stopped (their task says so in rdv)
        try:
            # Poll rather than block in wait(): a blocking wait holds Popen's lock, and the
            # checkpoint handler, which interrupts this frame, must see the driver end.
            while (rc := self._driver.poll()) is None:
                self._say_lost_nodes()
                if head is not None and head.poll() is not None:
                    # Without its head the driver would wait out Ray's GCS reconnect timeout,
                    # and its graceful stop too (Tune frees placement groups through the GCS).
                    stop_s = waits.head_down_s
                    if self._terminated and self._lost:
                        raise StudyJobError(", ".join(f"SLURM lost {node} (down: {reason})" for node, reason
                                                      in self._lost) + " and ended the job; the study stopped: "
                                            + self._after_loss())
                    if self._terminated:  # SLURM stopped every process of the job, Ray's too
                        raise StudyJobError("terminated (SIGTERM: scancel, a preemption or `scontrol "
                                            "requeue`); the study stopped: " + self._resumed_by(
                                                "a requeued job, or the same plan submitted again, "
                                                "resumes it"))
                    raise StudyJobError(f"the Ray head stopped (see {head_log}); stopping the study: "
                                        + self._resumed_by("submitting the same plan again resumes it"))
                for gone in set(rdv.glob("lost-*")) - lost if rdv is not None else ():
                    lost.add(gone)
                    node = gone.name.removeprefix("lost-")
                    print(f"hpoc: warning: the Ray worker on {node} stopped (see {head_log.parent}/ray-{node}.log); "
                          "the study goes on with the nodes left: its trials that ran there are retried from "
                          "their last checkpoint, as failure.max_retries allows", file=sys.stderr, flush=True)
                time.sleep(POLL_S)
        finally:
            driver, self._driver = self._driver, None
            if driver.poll() is None:  # we are being torn down: stop it first (a second for the head)
                _stop(driver, left_s(stop_s, os.environ.get(KILL_WAIT_ENV), self._term_at, 1))
            self._driver_rc = driver.poll()
        print(f"hpoc: study driver exited with status {rc}", flush=True)
        if rc == EXIT_NO_PROGRESS:
            raise StudyJobError(f"shard {shard}: the walltime stopped runs in a row before any trial "
                                "reported; not requeued (raise `slurm.time`; submitting again resumes it)")
        if rc == EXIT_INTERRUPTED:
            raise StudyJobError(f"shard {shard} was stopped by a signal before it finished; "
                                + self._resumed_by("submitting the same plan again resumes it"))
        if rc != 0:
            raise StudyJobError(f"shard {shard} failed (study driver exit status {rc}); "
                                "see this job's log")
        return {"shard": shard, "exit_code": rc, "wall_s": round(time.time() - started, 1)}

    # ---------------------------------------------------------------- task 0: head

    def _head(self, shard: int, env: Any) -> dict[str, Any]:
        from hpoc.plan import load
        from hpoc.runtime import before, cluster, preflight, runlock
        from hpoc.runtime.shards import experiment_dir

        t0 = time.time()
        plan = load(self.plan_path)
        slurm = plan["slurm"] or {}
        rdv, job_dir, log_dir = _paths(env)
        # All that may fail before the claim below: the `finally` that drops it comes after.
        timeout = _bringup_timeout()
        node = _node_name()
        head_log = log_dir / f"ray-{node}.log"
        shutil.rmtree(rdv, ignore_errors=True)
        rdv.mkdir(mode=0o700, parents=True)
        # As job.sbatch: nothing to do, or another run holds the shard, needs no Ray; a go
        # claims the shard for this job (its driver takes the claim over).
        if (edited := before.edited_spec(plan)) is not None:
            print(f"hpoc: warning: {edited}", file=sys.stderr, flush=True)
        code, why = before.check(plan, shard, claim_pid=os.getpid(),
                                 retry=getattr(self, "retry_errored", None))
        if code != before.GO:
            (rdv / "done").touch()  # left in place: the other tasks stop waiting for a head
            if code != before.DONE:
                raise StudyJobError(why)
            print(f"hpoc: nothing to do: {why}", flush=True)
            return {"shard": shard, "exit_code": 0, "wall_s": 0.0}
        head = None
        self._note_sigterm()
        try:
            try:
                token = cluster.init(job_dir)
            except SystemExit as exc:  # a full or read-only /tmp, said as the job script says it
                raise StudyJobError(str(exc).removeprefix("hpoc: ")) from None
            ray_env = dict(os.environ, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token))
            ray_env.pop("RAY_AUTH_TOKEN", None)
            restart = os.environ.get("SLURM_RESTART_COUNT", "0")  # a requeue appends to the log
            run_of = f" (requeued: restart {restart})" if restart not in ("", "0") else ""
            print(f"hpoc: job {env.job_id}{run_of}: starting Ray on {env.num_nodes} node(s); head on {node}",
                  flush=True)
            head = _start_node("head", job_dir, node, slurm, head_log, ray_env)
            try:
                address = cluster.wait_head(job_dir, timeout, head.pid, str(head_log))
            except SystemExit as exc:  # its CLI-style failure, said again as "hpoc: error: …"
                raise StudyJobError(str(exc).removeprefix("hpoc: ")) from None
            write_atomic(rdv / "token", token.read_text(), mode=0o600)
            write_atomic(rdv / "head.json", json.dumps({"address": address, "node": node}) + "\n")
            os.environ.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token))
            os.environ.pop("RAY_AUTH_TOKEN", None)
            try:
                nodes, cpus, gpus = preflight.check(
                    address, env.num_nodes, cpus_per_node=slurm.get("cpus_per_node"),
                    gpus_per_node=slurm.get("gpus_per_node") or 0, timeout=timeout)
            except preflight.NotReady as exc:
                raise StudyJobError(f"cluster not ready: {exc}; Ray's logs: {log_dir}") from None
            finally:
                (rdv / "token").unlink(missing_ok=True)  # every node has it (or never will)
            print(f"hpoc: cluster ready nodes={nodes} cpus={cpus:g} gpus={gpus:g} "
                  f"seconds={time.time() - t0:.1f}", flush=True)
            ray_env["RAY_ADDRESS"] = address
            return self._run_driver(shard, ray_env, local=False, head=head, head_log=head_log, rdv=rdv)
        finally:
            # Left in place (the token gone): the other tasks poll for it, and a signal
            # removed at once was missed, so they waited out the bring-up timeout.
            (rdv / "done").touch()
            for name in ("token", "head.json"):
                (rdv / name).unlink(missing_ok=True)
            if head is not None:
                print("hpoc: stopping Ray", flush=True)
                _stop_node(head, self._term_at)
            if os.environ.get("HPOC_KEEP_TMP") != "1":
                shutil.rmtree(job_dir, ignore_errors=True)
            runlock.release_claim(experiment_dir(plan, shard))  # unless a driver took it

    # ---------------------------------------------------------------- other tasks: workers

    def _worker(self, env: Any) -> None:
        from hpoc.plan import load
        from hpoc.runtime.node import answers

        plan = load(self.plan_path)
        rdv, job_dir, log_dir = _paths(env)
        timeout = _bringup_timeout()
        node = _node_name()
        deadline = time.monotonic() + timeout
        while not (rdv / "head.json").exists() or not (rdv / "token").exists():
            if (rdv / "done").exists():
                print(f"hpoc: task 0 ended without a Ray head for this job; worker on {node} exits",
                      flush=True)
                return
            if time.monotonic() > deadline:
                print(f"hpoc: no Ray head for this job within {timeout:g} s; worker on {node} exits",
                      flush=True)
                return
            time.sleep(POLL_S)
        head = json.loads((rdv / "head.json").read_text())
        token = (rdv / "token").read_text()
        ray_env = dict(os.environ, HPOC_RAY_TOKEN=token)
        ray_env.pop("RAY_AUTH_TOKEN", None)
        worker = _start_node("worker", job_dir, node, plan["slurm"] or {}, log_dir / f"ray-{node}.log",
                             ray_env, address=head["address"])
        print(f"hpoc: Ray worker on {node} joins {head['address']}", flush=True)
        try:
            misses, lost = 0, False
            # Until the job ends, also once this node's Ray has died: the job directory is
            # removed only then (on one host, the local test cluster, it is the head's too).
            while not (rdv / "done").exists() and rdv.exists():
                if not lost and worker.poll() is not None:
                    lost = True
                    (rdv / f"lost-{node}").touch()  # task 0 says so in the job's log: the study goes on
                    print(f"hpoc: Ray worker on {node} stopped on its own (see its ray-{node}.log)", flush=True)
                misses = 0 if answers(head["address"], timeout=2) else misses + 1
                if misses >= HEAD_GONE_CHECKS:
                    break
                time.sleep(POLL_S * 2)
        finally:
            _stop_node(worker)
            if os.environ.get("HPOC_KEEP_TMP") != "1":
                shutil.rmtree(job_dir, ignore_errors=True)
        print(f"hpoc: Ray worker on {node} stopped", flush=True)


# ---------------------------------------------------------------- helpers


def _end_without_traceback(error: StudyJobError) -> None:
    """The job's log ends with hpoc's line for a failure hpoc explained, not a traceback.

    submitit logs that the job raised and raises it again up to Python's top level: so the
    job fails, and its result file keeps the traceback (`job.exception()`). Only how the
    log shows it changes."""
    previous = sys.excepthook

    def hook(kind: Any, value: BaseException, tb: Any) -> None:
        if value is error:
            print(f"hpoc: error: {error}", file=sys.stderr, flush=True)
        else:
            previous(kind, value, tb)

    sys.excepthook = hook
    logging.getLogger("submitit").addFilter(
        lambda record: "triggered an exception" not in record.getMessage())


def _lost_nodes() -> list[tuple[str, str]]:
    """(node, SLURM's reason) for each node of this job SLURM has marked down (or the job's own
    reason NodeDown, for one that answers again already). A lost node ends
    the job (NODE_FAIL) with the same SIGTERM as scancel (job.sbatch: hpoc_lost_nodes)."""
    nodelist = os.environ.get("SLURM_JOB_NODELIST")
    if not nodelist:
        return []
    try:
        out = subprocess.run(["sinfo", "-h", "-N", "-n", nodelist, "-t", "down,fail,no_respond", "-o", "%N %E"],
                             capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    lost: dict[str, str] = {}  # a node of several partitions is listed once for each
    for line in out.splitlines():
        node, _, reason = line.strip().partition(" ")
        if node:
            lost.setdefault(node, reason.strip() or "no reason given")
    if not lost and (job := os.environ.get("SLURM_JOB_ID")):  # the node answers again already
        try:
            said = subprocess.run(["scontrol", "show", "job", "-o", job], capture_output=True, text=True,
                                  timeout=5).stdout
        except (OSError, subprocess.TimeoutExpired):
            said = ""
        if " Reason=NodeDown " in said:
            return [("a node", "NodeDown; its ray-<node>.log says which")]
    return list(lost.items())


def _node_name() -> str:
    return os.environ.get("SLURMD_NODENAME") or socket.gethostname()


def progress_line(shard: int, plan_path: str) -> str:
    """What the .out says of the trials' progress: it goes to this process's stderr, the
    task's .err (srun's --error, read back from /proc), and `hpoc status` follows it."""
    try:
        err = os.readlink("/proc/self/fd/2")
    except OSError:
        err = ""
    where = shlex.quote(err) if err.startswith("/") else "this task's .err"
    return (f"hpoc: shard {shard}: the trials' progress goes to {where}; "
            f"follow the study with: hpoc status {shlex.quote(os.path.dirname(plan_path))}")


def _paths(env: Any) -> tuple[Path, Path, Path]:
    """(rendezvous dir on the shared log folder, node-local job dir, log dir) of this run.

    A requeued job keeps its id, so the restart count tells its runs apart: a stale token
    or head address of an earlier run is never read. A job directory the job script would
    refuse (HPOC_TMP too long, say) fails the job here, before any Ray starts."""
    from hpoc.runtime.node import NodeError, job_dir, job_dir_name

    restart = int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0)
    raw_id = os.environ.get("SLURM_JOB_ID") or str(env.job_id)
    log_dir = Path(env.paths.folder)
    rdv = log_dir / f".hpoc-rdv.{restart}"
    name = job_dir_name({**os.environ, "SLURM_JOB_ID": raw_id})  # the job script's name
    try:
        return rdv, job_dir(os.environ, name), log_dir
    except NodeError as exc:
        raise StudyJobError(str(exc)) from None


def _start_node(role: str, job_dir: Path, node: str, slurm: dict[str, Any], log: Path,
                env: dict[str, str], address: str | None = None) -> subprocess.Popen:
    from hpoc.compiler.render import node_gpus

    cmd = [sys.executable, "-m", "hpoc.runtime.node", role, "--job-dir", str(job_dir),
           "--node-name", node]
    if slurm.get("interface"):
        cmd += ["--interface", slurm["interface"]]
    if (gpus := node_gpus(slurm)) is not None:  # gpu_request = none: SLURM tells no count
        cmd += ["--gpus", str(gpus)]
    if address:
        cmd += ["--address", address]
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        return subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, preexec_fn=_ignore_usr2)


def _stop(proc: subprocess.Popen, wait_s: float) -> None:
    """TERM, wait, KILL: `ray start --block` takes its own children down on TERM."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=wait_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _stop_node(proc: subprocess.Popen, term_at: float | None = None) -> None:
    """Stop a Ray node within the site's share of KillWait, and within what is left of it
    since SLURM's SIGTERM (at `term_at`): its SIGKILL after a scancel must not come before
    the job directory is removed."""
    _stop(proc, left_s(_waits().nodes_s, os.environ.get(KILL_WAIT_ENV), term_at))


def _waits() -> StopWaits:
    """The teardown's waits under the site's KillWait, as job.sbatch's (node_stop.py)."""
    return stop_waits(os.environ.get(KILL_WAIT_ENV))


def _wait_gone(pid: int, timeout: float) -> bool:
    """Wait until process `pid` has ended (a zombie counts: its parent reaps it later)."""
    from hpoc.runtime.cluster import alive

    deadline = time.monotonic() + timeout
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def _bringup_timeout() -> float:
    """HPOC_BRINGUP_TIMEOUT, seconds (default 300), as the job script reads it."""
    text = os.environ.get("HPOC_BRINGUP_TIMEOUT", "300")
    try:
        return float(text)
    except ValueError:
        raise StudyJobError(f"HPOC_BRINGUP_TIMEOUT={text!r} is not a number of seconds") from None


def _resumable(rc: int | None) -> bool:
    """As job.sbatch's USR2 trap: whether the driver, asked to stop at the walltime, left its
    shard for a requeued job. Yes when it stopped resumable, gave no word (not started yet,
    too slow to stop) or a signal killed it as it stopped (-N: the OOM killer, a crash),
    from Tune's last saved state. Not a study that ended (finished 0, failed 1, refused 2),
    one stopped before any trial started (its own 128+N: nothing to resume), nor one the
    walltime keeps stopping idle (EXIT_NO_PROGRESS), nor one a stop signal it heeds killed
    (-N: it came before Python ran the driver's first line, runtime/early.py), as bash's
    128+N cannot be told from the driver's own."""
    return rc is None or rc == EXIT_INTERRUPTED or (rc < 0 and -rc not in _HEEDED)


def _job_ref() -> str:
    """This job as scontrol and squeue name it: an array task is JOBID_TASK."""
    array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    return f"{array}_{task}" if array and task else os.environ.get("SLURM_JOB_ID", "")
