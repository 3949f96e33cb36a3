"""The job script's teardown and signal handlers, run for real in bash (no SLURM needed).

The rendered script is cut into its sections; the Ray bring-up is replaced by a stand-in
step process and the study driver by a small bash script, while the teardown, signal and
driver sections run exactly as rendered. `scontrol` and `srun` are stand-ins that record
their arguments.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from hpoc.compiler.render import render_all
from slurm_plans import plan

FAKE_DRIVER = """#!/bin/bash
# stand-in for `python -m hpoc.runtime PLAN --shard N` (and for its --release-claim)
if [[ $* == *--release-claim* ]]; then
    kill -0 "$(<"$T/driver.pid")" 2>/dev/null && echo "driver still running" >> "$T/calls.log"
    echo "release $*" >> "$T/calls.log"
    exit 0
fi
echo "args: $*" >> "$T/driver.log"
echo "walltime requeue: ${HPOC_WALLTIME_REQUEUE:-}" >> "$T/driver.log"
trap 'echo got-usr2 >> "$T/driver.log"; [[ $ON_USR2 == ignore ]] || exit "$ON_USR2"' USR2
trap 'echo got-term >> "$T/driver.log"; [[ ${ON_TERM:-} == ignore ]] || exit 143' TERM
# Only now, as the driver heeds the signals from its first line (runtime/early.py): the
# tests signal the job once this file is there, and a loaded machine had USR2 kill a fake
# that had not yet reached its trap (140, not requeued: 60 s of waiting for the step).
echo "$$" > "$T/driver.pid"
# a fake step's trap set before this driver ends (the teardown signals the step at once)
[[ -z ${WAIT_FOR:-} ]] || until [[ -e $T/$WAIT_FOR ]]; do sleep 0.05; done
[[ -n ${EXIT_NOW:-} ]] && exit "$EXIT_NOW"
while :; do sleep 0.1; done
"""

# The teardown's word when the driver's graceful stop cannot end (its head is gone): the
# expected path after scancel, a requeue or the time limit, not a fault.
HEAD_GONE_STOP = "Ray's head has already stopped, so the study driver cannot stop gracefully; ending it"

RECORDER = """#!/bin/bash
echo "$(basename "$0") $*" >> "$T/calls.log"
"""


def section(script: str, start: str, end: str | None) -> str:
    i = script.index(start)
    return script[i:script.index(end, i)] if end else script[i:]


def harness(tmp_path: Path, grace_s: int = 60, stage: str = "driver") -> Path:
    script = render_all(plan(resume={"enabled": True, "retry_errored": True, "grace_s": grace_s}),
                        plan_path="/b/plan.json")["job.sbatch"]
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for tool in ("scontrol", "srun"):
        if (bin_dir / tool).exists():  # a test's own stand-in
            continue
        (bin_dir / tool).write_text(RECORDER)
        (bin_dir / tool).chmod(0o755)
    (tmp_path / "driver.sh").write_text(FAKE_DRIVER)
    prelude = f"""#!/bin/bash
set -eo pipefail
set -u
hpoc_nodes_wanted=2
hpoc_job_dir={tmp_path}/jobdir
mkdir -p "$hpoc_job_dir"
hpoc_job_ref=77_1
hpoc_head=node1
hpoc_log_dir={tmp_path}/logs
hpoc_py=(bash {tmp_path}/driver.sh)
hpoc_claimed=${{CLAIMED:-0}}  # what the check before Ray leaves
"""
    fake_bringup = f"""
# stand-in for the Ray steps: one long-running process per node
bash -c "${{FAKE_STEP:-sleep 300}}" >/dev/null 2>&1 &  # its output goes to ray-NODE.log
hpoc_steps+=("$!") hpoc_step_nodes+=(node1)
echo "$!" > {tmp_path}/step.pid
sleep 300 >/dev/null 2>&1 &
hpoc_steps+=("$!") hpoc_step_nodes+=(node2)
echo "$!" > {tmp_path}/worker.pid
"""
    if stage == "preflight":  # the preflight's python, until a signal ends it
        prelude += ("hpoc_t0=0 hpoc_timeout=300 RAY_ADDRESS=127.0.0.1:1\nhpoc_py=(python3 -c "
                    "'import os, pathlib, time; pathlib.Path(os.environ[\"T\"], \"pre.pid\").touch(); "
                    "time.sleep(60)')\n")
    rest = (section(script, "# ---- 5. preflight", "# ---- 6. the study") if stage == "preflight"
            else section(script, "# ---- 6. the study", None))
    # The tests' cue that the script holds the driver's PID (its traps stop that driver): the
    # driver's own driver.pid is not, as a loaded machine can run the new driver well before
    # the script's next line, and a signal then ended a job that knew of no driver (rc 1, and
    # the driver left running: 60 s for a pipe it held open).
    assert rest.count("hpoc_driver=$!\n") == (stage != "preflight")
    rest = rest.replace("hpoc_driver=$!\n", 'hpoc_driver=$!\n: > "$T/driver.known"\n')
    body = prelude + section(script, "# ---- teardown", "# ---- 3. Ray head") + fake_bringup + rest
    path = tmp_path / "job.sh"
    path.write_text(body)
    return path


def start(tmp_path: Path, grace_s: int = 60, start_new_session: bool = False, **env: str) -> subprocess.Popen:
    job = harness(tmp_path, grace_s)
    full_env = {**os.environ, "T": str(tmp_path), "PATH": f"{tmp_path}/bin:{os.environ['PATH']}",
                "SLURM_JOB_ID": "77", "ON_USR2": "75", **env}
    for key in ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_JOB_ID", "HPOC_KEEP_TMP"):
        if key not in env:
            full_env.pop(key, None)
    proc = subprocess.Popen(["bash", str(job)], env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=start_new_session)
    deadline = time.monotonic() + 20
    while not all((tmp_path / name).exists() for name in ("driver.pid", "driver.known", "step.pid", "worker.pid")):
        assert time.monotonic() < deadline and proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        time.sleep(0.05)
    return proc


def alive(pid_file: Path) -> bool:
    try:
        os.kill(int(pid_file.read_text()), 0)
    except ProcessLookupError:
        return False
    return True


def calls(tmp_path: Path) -> str:
    log = tmp_path / "calls.log"
    return log.read_text() if log.exists() else ""


def finish(proc: subprocess.Popen) -> tuple[int, str]:
    out, _ = proc.communicate(timeout=60)
    return proc.returncode, out


def test_usr2_asks_the_driver_to_checkpoint_then_requeues_and_tears_down(tmp_path):
    proc = start(tmp_path)
    proc.send_signal(signal.SIGUSR2)
    rc, out = finish(proc)
    assert rc == 75
    assert "got-usr2" in (tmp_path / "driver.log").read_text()
    # the driver's own last line says the job resumes itself (runtime/signals.py), not "run it again"
    assert "walltime requeue: 1" in (tmp_path / "driver.log").read_text()
    assert "time limit near (SIGUSR2)" in out and "requeueing job 77_1" in out
    assert "scontrol requeue 77_1" in calls(tmp_path)  # the array task, never the whole array
    assert not alive(tmp_path / "step.pid") and not alive(tmp_path / "driver.pid")
    assert "srun --overlap --export=ALL --nodes=2 --ntasks-per-node=1 rm -rf" in calls(tmp_path)
    assert not (tmp_path / "jobdir").exists()


@pytest.mark.parametrize("driver", [{"ON_USR2": "ignore"}, {"ON_USR2": "75"}])
def test_a_job_requeued_as_often_as_hpoc_submits_is_not_requeued_again(tmp_path, driver):
    """A driver that gives no status (never started, too slow to stop) had the job requeued
    at every time limit, without end: submitit stops at `max_num_timeout`, job.sbatch at
    the same count of SLURM's restarts."""
    from hpoc.plan import MAX_WALLTIME_REQUEUES

    proc = start(tmp_path, grace_s=12, SLURM_RESTART_COUNT=str(MAX_WALLTIME_REQUEUES), **driver)
    proc.send_signal(signal.SIGUSR2)
    rc, out = finish(proc)
    assert "scontrol requeue" not in calls(tmp_path) and "requeueing" not in out, out
    assert f"error: the job was requeued {MAX_WALLTIME_REQUEUES} times, the most hpoc lets it" in out, out
    assert rc == (1 if driver["ON_USR2"] == "ignore" else 75)
    assert not alive(tmp_path / "step.pid") and not alive(tmp_path / "driver.pid")


def test_the_sigterm_that_follows_a_requeue_does_not_cut_the_teardown_short(tmp_path):
    """SLURM answers `scontrol requeue` with SIGTERM to the batch shell, which then was in
    its teardown with the default action: it died there, leaving /tmp/hpoc-JOB (token and
    all) on every node. Here the SIGTERM lands while the teardown removes the job directory
    on the other nodes."""
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "srun").write_text(RECORDER + '[[ $* == *"rm -rf"* ]] && kill -TERM "$(<"$T/job.pid")"\n'
                                           "sleep 0.5\n")
    (tmp_path / "bin" / "srun").chmod(0o755)
    proc = start(tmp_path)
    (tmp_path / "job.pid").write_text(str(proc.pid))
    proc.send_signal(signal.SIGUSR2)
    rc, out = finish(proc)
    assert rc == 75 and "signal during teardown: finishing it first" in out, out
    assert not alive(tmp_path / "step.pid") and not (tmp_path / "jobdir").exists()


def test_the_sigterm_slurm_sends_the_whole_job_after_a_requeue_leaves_no_terminated_line(tmp_path):
    """SLURM signals every process of the batch step, not only the shell: the teardown's
    foreground command of the moment (a sleep while the Ray steps stop, the claim's release,
    rm) died, and bash wrote "Terminated" to the job's .err, which reads as the job failing."""
    (tmp_path / "bin").mkdir()
    # SLURM's answer to the requeue, to the whole job (its process group here), once the
    # teardown stops the Ray steps (not "0.3 s later", which a loaded machine made any time)
    (tmp_path / "bin" / "scontrol").write_text(RECORDER + (
        'setsid bash -c \'for _ in {1..600}; do [[ -e $T/stopping ]] && break; sleep 0.05; done\n'
        'kill -TERM -- -"$(<"$T/job.pid")"; touch "$T/sent"\' >/dev/null 2>&1 &\n'))
    (tmp_path / "bin" / "scontrol").chmod(0o755)
    # Ray takes a while to stop: until that SIGTERM has reached the job
    proc = start(tmp_path, start_new_session=True, CLAIMED="1",
                 FAKE_STEP="trap 'touch $T/stopping; until [[ -e $T/sent ]]; do sleep 0.1; done; exit 0' TERM; "
                           "sleep 300 & wait")
    (tmp_path / "job.pid").write_text(str(proc.pid))
    proc.send_signal(signal.SIGUSR2)
    rc, out = finish(proc)
    assert rc == 75 and "signal during teardown: finishing it first" in out, out
    assert "Terminated" not in out, out
    assert "requeue failed" not in out and "scontrol requeue 77_1" in calls(tmp_path)
    assert "release -m hpoc.runtime" in calls(tmp_path)
    assert not alive(tmp_path / "step.pid") and not (tmp_path / "jobdir").exists()


def test_sigterms_while_the_ray_nodes_stop_leave_the_teardown_whole(tmp_path):
    """The teardown's waits were `$(hpoc_left_s ...)`: a child, forked as the nodes stop,
    that SLURM's SIGTERM to every process of the job killed (seen after a requeue, 1 run in
    30 under load). The empty wait was a syntax error that ended the teardown there: the
    Ray steps not waited for, the job directory (token included) left. SIGTERMs every
    millisecond, for a second, make that instant certain."""
    (tmp_path / "bin").mkdir()
    storm = ("import os, signal, sys, time\nend = time.monotonic() + 1\nwhile time.monotonic() < end:\n"
             "    os.killpg(int(sys.argv[1]), signal.SIGTERM)\n    time.sleep(0.001)\n")
    (tmp_path / "storm.py").write_text(storm)
    # the storm, from outside the job (its own session), once the teardown stops the steps
    (tmp_path / "bin" / "scontrol").write_text(RECORDER + (
        'setsid bash -c \'for _ in {1..600}; do [[ -e $T/stopping ]] && break; sleep 0.05; done\n'
        'python3 "$T/storm.py" "$(<"$T/job.pid")"; touch "$T/sent"\' >/dev/null 2>&1 &\n'))
    (tmp_path / "bin" / "scontrol").chmod(0o755)
    proc = start(tmp_path, start_new_session=True,
                 FAKE_STEP="trap 'touch $T/stopping; until [[ -e $T/sent ]]; do sleep 0.1; done; exit 0' TERM; "
                           "sleep 300 & wait")
    (tmp_path / "job.pid").write_text(str(proc.pid))
    proc.send_signal(signal.SIGUSR2)
    rc, out = finish(proc)
    assert (tmp_path / "sent").exists(), out  # the storm came while the teardown waited
    assert rc == 75 and "syntax error" not in out, out
    assert not alive(tmp_path / "step.pid") and not (tmp_path / "jobdir").exists(), out


def cancel_in_preflight(tmp_path: Path) -> tuple[int, str]:
    """The job script cancelled while it waits for the head's GCS (its first command of the
    preflight section): SIGTERM to every process, as SLURM sends it."""
    job = harness(tmp_path, stage="preflight")
    env = {**os.environ, "T": str(tmp_path), "PATH": f"{tmp_path}/bin:{os.environ['PATH']}", "SLURM_JOB_ID": "77"}
    proc = subprocess.Popen(["bash", str(job)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    deadline = time.monotonic() + 20
    while not (tmp_path / "pre.pid").exists():
        assert time.monotonic() < deadline and proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGTERM)  # as SLURM signals every process of the job
    return finish(proc)


def test_scancel_during_the_bring_up_leaves_no_terminated_line(tmp_path):
    """scancel while the preflight waited for the nodes: SLURM's SIGTERM killed its python,
    the script's foreground command, and bash wrote "Terminated" above hpoc's own line."""
    rc, out = cancel_in_preflight(tmp_path)
    assert rc == 143 and "hpoc: terminated (SIGTERM)" in out, out
    assert "Terminated" not in out, out
    assert not alive(tmp_path / "step.pid") and not (tmp_path / "jobdir").exists()


def test_scancel_while_the_script_waits_for_the_head_keeps_the_teardowns_lines(tmp_path):
    """The wait for the head's GCS was a function call with its stdout sent to /dev/null: the
    SIGTERM trap, and the teardown after it, ran inside that call, so "stopping Ray on 2
    node(s)" went to /dev/null, not to the job's .out (seen after a scancel during bring-up)."""
    rc, out = cancel_in_preflight(tmp_path)
    assert rc == 143 and "hpoc: stopping Ray on 2 node(s)" in out, out


def test_scancel_whose_signal_reaches_the_waited_command_first_is_still_said(tmp_path):
    """SLURM signals every process of the job at once: the bring-up command the script
    waited for could die of it first and end the script through `set -e`, before bash ran
    its SIGTERM trap. The signal then arrived in the teardown, and the job's .err said only
    "signal during teardown: finishing it first": not that it was terminated, nor which
    node SLURM had lost."""
    job = harness(tmp_path, stage="preflight")
    text = job.read_text()
    # the preflight's python, dead of SLURM's SIGTERM before the batch shell gets its own
    late = ("import subprocess; subprocess.Popen([\"bash\", \"-c\", \"sleep 0.3; kill -TERM $0\", "
            "str(os.getppid())]); os._exit(143)")
    assert "time.sleep(60)" in text
    job.write_text(text.replace("time.sleep(60)", late))
    env = {**os.environ, "T": str(tmp_path), "PATH": f"{tmp_path}/bin:{os.environ['PATH']}", "SLURM_JOB_ID": "77",
           "FAKE_STEP": "trap 'sleep 1.5; exit 0' TERM; sleep 300 & wait"}  # Ray takes a while to stop
    proc = subprocess.Popen(["bash", str(job)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    rc, out = finish(proc)
    assert rc == 143 and "hpoc: terminated (SIGTERM)" in out, out
    assert "signal during teardown" not in out and "Terminated" not in out, out
    assert not (tmp_path / "jobdir").exists()


@pytest.mark.parametrize("code", ["0", "1"])
def test_usr2_after_the_study_is_complete_does_not_requeue(tmp_path, code):
    """Finished (0) or failed (1: every trial errored) as the signal came: nothing to resume."""
    proc = start(tmp_path, ON_USR2=code)
    proc.send_signal(signal.SIGUSR2)
    rc, out = finish(proc)
    assert rc == int(code) and "requeue" not in calls(tmp_path)
    assert not alive(tmp_path / "step.pid")


@pytest.mark.parametrize("code", ["1", "140"])
def test_a_study_that_ended_as_usr2_came_says_it_is_not_requeued(tmp_path, code):
    """A driver USR2 killed as Python started (140: it had no word of its own) ended the
    job with no line at all; `hpoc submit`'s job says this, in the same words."""
    proc = start(tmp_path, ON_USR2=code)
    proc.send_signal(signal.SIGUSR2)
    rc, out = finish(proc)
    assert rc == int(code) and "scontrol requeue" not in calls(tmp_path)
    assert f"hpoc: the study ended as the time limit came (driver exit status {code}); not requeued" in out, out


def test_a_driver_that_ignores_usr2_is_stopped_after_the_grace_period(tmp_path):
    proc = start(tmp_path, grace_s=12, ON_USR2="ignore")  # waits 12 - 10 = 2 s
    t0 = time.monotonic()
    proc.send_signal(signal.SIGUSR2)
    rc, out = finish(proc)
    # bash's SECONDS counts whole seconds: a 2 s wait ends after 1 to 2 s
    assert 0.9 < time.monotonic() - t0 < 30
    assert rc == 1 and "scontrol requeue 77_1" in calls(tmp_path)
    log = (tmp_path / "driver.log").read_text()
    assert "got-usr2" in log and "got-term" in log  # teardown stopped it
    assert not alive(tmp_path / "driver.pid") and not alive(tmp_path / "step.pid")


def test_sigterm_stops_driver_and_steps(tmp_path):
    proc = start(tmp_path)
    proc.send_signal(signal.SIGTERM)
    rc, out = finish(proc)
    assert rc == 143 and "terminated (SIGTERM)" in out
    assert "got-term" in (tmp_path / "driver.log").read_text()
    assert not alive(tmp_path / "driver.pid") and not alive(tmp_path / "step.pid")
    assert "requeue" not in calls(tmp_path)


def test_sigterm_with_the_head_gone_gives_the_driver_seconds_not_20(tmp_path):
    """scancel and the time limit signal every step at once: the head's srun ends with the
    script's SIGTERM, and the driver's graceful stop then hangs without the GCS. The job
    waited 20 s for it, and SLURM's SIGKILL (KillWait, 30 s) came before the job directory
    was removed."""
    proc = start(tmp_path, ON_TERM="ignore")
    t0 = time.monotonic()
    os.kill(int((tmp_path / "step.pid").read_text()), signal.SIGTERM)
    proc.send_signal(signal.SIGTERM)
    rc, out = finish(proc)
    assert time.monotonic() - t0 < 10
    assert rc == 143 and HEAD_GONE_STOP in out and "did not stop within" not in out, out
    assert not alive(tmp_path / "driver.pid") and not (tmp_path / "jobdir").exists()
    # bash's own "line 102: 15691 Killed  ... -m hpoc.runtime ..." read in .err like an
    # out-of-memory kill; the line above already says what happened.
    assert "Killed" not in out, out


def test_sigterm_with_the_heads_gcs_gone_gives_the_driver_seconds_not_20(tmp_path):
    """The head's srun outlives its GCS while Ray shuts down (seconds, on the local
    cluster): the GCS no longer taking connections counts as the head gone."""
    import socket

    with socket.socket() as s:  # a port nothing listens on once closed
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = start(tmp_path, ON_TERM="ignore", RAY_ADDRESS=f"127.0.0.1:{port}")
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    rc, out = finish(proc)
    assert time.monotonic() - t0 < 10
    assert rc == 143 and HEAD_GONE_STOP in out and "did not stop within" not in out, out
    assert not alive(tmp_path / "driver.pid") and not alive(tmp_path / "step.pid")


def test_under_a_short_killwait_the_teardown_ends_before_slurms_sigkill(tmp_path):
    """The teardown gave a driver that does not stop 20 s whatever the site: where SLURM's
    SIGKILL follows its SIGTERM after 5 s (KillWait), it came first, and the job directory
    (token included) stayed. Its waits shrink with KillWait (node_stop.stop_waits)."""
    proc = start(tmp_path, ON_TERM="ignore", HPOC_KILL_WAIT="5")
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    rc, out = finish(proc)
    assert time.monotonic() - t0 < 5, out
    assert rc == 143 and "the study driver did not stop within 3 s; killing it" in out, out
    assert not alive(tmp_path / "driver.pid") and not (tmp_path / "jobdir").exists()


def test_under_a_short_killwait_the_whole_teardown_ends_before_slurms_sigkill(tmp_path):
    """Each wait fitted KillWait alone, not all of them together: at KillWait = 5 the driver
    got 3 s, then the Ray nodes 10 s and the other nodes' `srun rm -rf` 30 s, and SLURM's
    SIGKILL came long before the job directory was removed. Each is now cut to what is
    left since SLURM's SIGTERM."""
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "srun").write_text(RECORDER + "exec sleep 60\n")  # refused: hangs
    (tmp_path / "bin" / "srun").chmod(0o755)
    proc = start(tmp_path, ON_TERM="ignore", HPOC_KILL_WAIT="5",
                 FAKE_STEP="trap '' TERM; while :; do sleep 0.1; done")  # a node that hangs
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    rc, out = finish(proc)
    assert time.monotonic() - t0 < 4.5, out
    assert rc == 143 and "the study driver did not stop within 3 s; killing it" in out, out
    assert not alive(tmp_path / "driver.pid") and not alive(tmp_path / "step.pid")
    assert not (tmp_path / "jobdir").exists()


def test_under_a_short_killwait_slurm_questions_that_hang_leave_the_teardown_its_time(tmp_path):
    """On SIGTERM the job asks sinfo and scontrol which nodes SLURM lost, 5 s each at most:
    with slurmctld slow to answer, that alone outlasted a KillWait of 5 s and SLURM's
    SIGKILL came before the teardown had begun."""
    (tmp_path / "bin").mkdir()
    for tool in ("sinfo", "scontrol"):
        (tmp_path / "bin" / tool).write_text("#!/bin/bash\nexec sleep 60\n")
        (tmp_path / "bin" / tool).chmod(0o755)
    proc = start(tmp_path, HPOC_KILL_WAIT="5", SLURM_JOB_NODELIST="node[1-2]")
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    rc, out = finish(proc)
    assert time.monotonic() - t0 < 4.5, out
    assert rc == 143 and not (tmp_path / "jobdir").exists(), out


def test_the_teardown_keeps_its_waits_when_no_sigterm_came(tmp_path):
    """The cut applies from SLURM's SIGTERM on only: a study that ended keeps the full waits
    (the other nodes' `srun rm -rf` is not skipped)."""
    proc = start(tmp_path, EXIT_NOW="0", HPOC_KILL_WAIT="5")
    rc, out = finish(proc)
    assert rc == 0 and "srun --overlap" in calls(tmp_path), out


@pytest.mark.parametrize("code", ["0", "3"])
def test_normal_exit_passes_the_driver_status_on_and_tears_down(tmp_path, code):
    proc = start(tmp_path, EXIT_NOW=code)
    rc, out = finish(proc)
    assert rc == int(code) and f"study driver exited with status {code}" in out
    assert "args: -m hpoc.runtime /b/plan.json --shard 0" in (tmp_path / "driver.log").read_text()
    assert not alive(tmp_path / "step.pid") and not (tmp_path / "jobdir").exists()


@pytest.mark.parametrize("claimed", ["1", "0"])
def test_the_teardown_frees_the_jobs_claim_on_its_shard_once_the_driver_stopped(tmp_path, claimed):
    """A claim taken before Ray (and not yet taken over by a driver that started) must not
    outlive a job whose Ray failed; no claim, nothing to free."""
    proc = start(tmp_path, CLAIMED=claimed, SLURM_ARRAY_TASK_ID="2")
    os.kill(int((tmp_path / "step.pid").read_text()), signal.SIGKILL)
    rc, out = finish(proc)
    assert rc == 1 and "got-term" in (tmp_path / "driver.log").read_text()
    released = [ln for ln in calls(tmp_path).splitlines() if ln.startswith(("release", "driver"))]
    assert released == (["release -m hpoc.runtime /b/plan.json --shard 2 --release-claim"]
                        if claimed == "1" else [])


def test_array_tasks_run_their_own_shard(tmp_path):
    proc = start(tmp_path, EXIT_NOW="0", SLURM_ARRAY_TASK_ID="3")
    finish(proc)
    assert "--shard 3" in (tmp_path / "driver.log").read_text()


def test_a_lost_head_step_ends_the_job_at_once(tmp_path):
    # Without the watch the driver would wait for Ray's GCS reconnect timeout (60 s).
    proc = start(tmp_path)
    t0 = time.monotonic()
    os.kill(int((tmp_path / "step.pid").read_text()), signal.SIGKILL)
    rc, out = finish(proc)
    assert time.monotonic() - t0 < 10
    assert rc == 1
    assert f"the Ray head on node1 stopped (see {tmp_path}/logs/ray-node1.log)" in out
    assert "got-term" in (tmp_path / "driver.log").read_text()  # the teardown stopped the driver
    assert not alive(tmp_path / "driver.pid") and not (tmp_path / "jobdir").exists()
    assert "requeue" not in calls(tmp_path)


def test_a_lost_worker_step_is_said_once_naming_its_node_and_the_study_goes_on(tmp_path):
    """A worker node's Ray gone (its raylet killed, the node lost): Tune retries its trials
    on the nodes left, and the job log said nothing of it but Ray's own noise."""
    proc = start(tmp_path)
    os.kill(int((tmp_path / "worker.pid").read_text()), signal.SIGKILL)
    time.sleep(2)
    assert alive(tmp_path / "driver.pid")  # the study goes on
    proc.send_signal(signal.SIGTERM)
    rc, out = finish(proc)
    line = (f"hpoc: warning: the Ray worker on node2 stopped (see {tmp_path}/logs/ray-node2.log); the study goes on "
            "with the nodes left: its trials that ran there are retried from their last checkpoint, as "
            "failure.max_retries allows\n")
    assert rc == 143 and out.count(line) == 1 and "the Ray head" not in out, out


@pytest.mark.parametrize("down", ["node2 Not responding\nnode2 Not responding\n", ""])
def test_a_job_slurm_ends_for_a_lost_node_names_the_node(tmp_path, down):
    """SLURM ends a job one of whose nodes went down (NODE_FAIL) with a SIGTERM: the job
    said `terminated (SIGTERM)`, as for scancel, and no node."""
    sinfo = tmp_path / "bin" / "sinfo"
    sinfo.parent.mkdir(exist_ok=True)
    sinfo.write_text(f'#!/bin/bash\necho "sinfo $*" >> "$T/calls.log"\nprintf "{down}"\n')
    sinfo.chmod(0o755)
    proc = start(tmp_path, SLURM_JOB_NODELIST="node[1-2]")
    proc.send_signal(signal.SIGTERM)
    rc, out = finish(proc)
    assert rc == 143 and "terminated (SIGTERM)" in out
    assert "-n node[1-2]" in calls(tmp_path)
    lost = ("hpoc: SLURM lost node2 of this job (down: Not responding) and ends the job: a requeued job, or "
            "the job submitted again, resumes the study\n")
    assert out.count(lost) == (1 if down else 0), out
    assert "SLURM lost" in out or not down


def test_a_lost_node_back_already_is_still_said_from_the_jobs_reason(tmp_path):
    """A node that answers again at once (slurmd alive, ReturnToService=2) is no longer down
    when the job's SIGTERM comes: sinfo names none, the job's own reason still says NodeDown."""
    for tool, text in (("sinfo", ""), ("scontrol", "JobId=77 JobState=COMPLETING Reason=NodeDown Dependency=(null)")):
        (tmp_path / "bin").mkdir(exist_ok=True)
        (tmp_path / "bin" / tool).write_text(f'#!/bin/bash\necho "{tool} $*" >> "$T/calls.log"\necho "{text}"\n')
        (tmp_path / "bin" / tool).chmod(0o755)
    proc = start(tmp_path, SLURM_JOB_NODELIST="node[1-2]")
    proc.send_signal(signal.SIGTERM)
    rc, out = finish(proc)
    assert rc == 143 and "scontrol show job -o 77" in calls(tmp_path)
    assert (f"hpoc: SLURM lost a node of this job (NodeDown; its ray-<node>.log in {tmp_path}/logs says which) "
            "and ends the job: a requeued job, or the job submitted again, resumes the study\n") in out, out


def test_a_driver_stuck_without_its_head_is_killed_after_a_few_seconds(tmp_path):
    """The real driver's graceful stop hangs once the head's GCS is gone (Tune frees its
    placement groups through it); the job waited 20 s for it before killing it."""
    proc = start(tmp_path, ON_TERM="ignore")
    t0 = time.monotonic()
    os.kill(int((tmp_path / "step.pid").read_text()), signal.SIGKILL)
    rc, out = finish(proc)
    assert time.monotonic() - t0 < 8
    assert rc == 1 and "the Ray head on node1 stopped" in out
    assert "got-term" in (tmp_path / "driver.log").read_text()  # asked first, then killed
    assert HEAD_GONE_STOP in out and "did not stop within" not in out, out
    assert not alive(tmp_path / "driver.pid") and not (tmp_path / "jobdir").exists()


@pytest.mark.parametrize("restarts, task, said", [
    (None, None, "hpoc: job 77: starting Ray"),
    ("0", None, "hpoc: job 77: starting Ray"),
    ("2", None, "hpoc: job 77 (requeued: restart 2): starting Ray"),
    # An array task: its .out file, squeue and `hpoc submit`'s job say 76_1; "job 77" alone
    # read as another job's output.
    ("2", "1", "hpoc: job 76_1 (id 77) (requeued: restart 2): starting Ray")])
def test_a_requeued_jobs_output_says_which_run_of_it_follows(tmp_path, restarts, task, said):
    """A requeued job appends to the same .out: its runs' lines ran together, each starting
    with the same "hpoc: job 77: starting Ray", with nothing to tell them apart."""
    script = render_all(plan(), plan_path="/b/plan.json")["job.sbatch"]
    lines = (section(script, "hpoc_job_ref=", "# Node-local directory")
             + section(script, "# A requeued job appends", "hpoc_start_node head"))
    env = {"PATH": os.environ["PATH"], "SLURM_JOB_ID": "77", **({"SLURM_RESTART_COUNT": restarts} if restarts else {}),
           **({"SLURM_ARRAY_JOB_ID": "76", "SLURM_ARRAY_TASK_ID": task} if task else {})}
    run = subprocess.run(["bash", "-c", "set -eu\nhpoc_nodes=(node1)\n" + lines], env=env, capture_output=True,
                         text=True, timeout=30)
    assert run.returncode == 0 and run.stdout == f"{said} on 1 node(s): node1\n", run.stderr


def test_a_sigterm_that_comes_while_the_ray_nodes_stop_cuts_their_wait_to_killwait(tmp_path):
    """A study that ended gives the Ray nodes their full wait (10 s under KillWait = 5); the
    time limit or a scancel coming meanwhile left that wait as it was, and SLURM's SIGKILL,
    KillWait after its SIGTERM, came before the job directory was removed."""
    proc = start(tmp_path, EXIT_NOW="0", HPOC_KILL_WAIT="5", WAIT_FOR="step.ready",  # a node that hangs
                 FAKE_STEP="trap 'touch $T/stopping' TERM; touch $T/step.ready; while :; do sleep 0.1; done")
    deadline = time.monotonic() + 20  # until the teardown waits for the nodes (not "1 s on")
    while not (tmp_path / "stopping").exists():
        assert time.monotonic() < deadline, "the teardown did not stop the nodes"
        time.sleep(0.05)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    rc, out = finish(proc)
    assert time.monotonic() - t0 < 4.5, out
    assert "signal during teardown" in out and "terminated (SIGTERM)" not in out, out  # it came there
    assert not alive(tmp_path / "step.pid") and not (tmp_path / "jobdir").exists(), out


# SLURM signals every process of the job one by one (its cgroup's list), not a process
# group: a process that put itself in a group of its own (GNU timeout does) gets it too.
SLURM_KILL = """import os, signal, sys
sid, sig = int(sys.argv[1]), getattr(signal, sys.argv[2] if len(sys.argv) > 2 else "SIGTERM")
for pid in [int(d) for d in os.listdir("/proc") if d.isdigit() and int(d) != os.getpid()]:
    try:
        if os.getsid(pid) == sid:
            os.kill(pid, sig)
    except OSError:
        pass
"""


def slurm_kill(session: int, sig: str = "SIGTERM") -> None:
    subprocess.run(["python3", "-c", SLURM_KILL, str(session), sig], check=True, timeout=30)


def function(script: str, name: str) -> str:
    start = script.index(f"{name}() {{")
    return script[start:script.index("\n}\n", start) + 3]


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_a_sigterm_to_every_process_never_kills_a_shielded_command_unrun_nor_passes_the_shell_by(tmp_path, sig):
    """hpoc_shielded forked, and the child ignored SIGTERM only from its first line: a
    SIGTERM just before it killed the command unrun (the claim's release, rm, `scontrol
    requeue`), about 1 in 10 in a loop of calls. Nor may the shell, ignoring the signal while
    it forks, miss it: its trap cuts the teardown's waits to KillWait. SIGINT likewise
    (Ctrl-C under salloc, `scancel --full --signal=INT`): one lost there left the job running."""
    script = render_all(plan(), plan_path="/b/plan.json")["job.sbatch"]
    body = ("".join(function(script, name) for name in ("hpoc_shielded", "hpoc_traps_back", "hpoc_watched"))
            + "hpoc_watch='' hpoc_term_at='' calls=0 got=0\n"
            + "hpoc_on_term='hpoc_term_at=$SECONDS got=1'\ntrap \"$hpoc_on_term\" TERM\n"
            + "hpoc_on_int='hpoc_int_at=$SECONDS got=1'\ntrap \"$hpoc_on_int\" INT\n"
            + 'run() { calls=$((calls + 1)); hpoc_shielded sh -c \'echo >> "$T/ran"\'; }\n'
            + 'run\n: > "$T/looping"\nuntil ((got)); do run; done\necho "calls $calls"\n')
    (tmp_path / "t.sh").write_text(body)
    lost, unrun = 0, 0
    for trial in range(40):
        for name in ("looping", "ran"):
            (tmp_path / name).unlink(missing_ok=True)
        proc = subprocess.Popen(["bash", str(tmp_path / "t.sh")], env={**os.environ, "T": str(tmp_path)},
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
        deadline = time.monotonic() + 20
        while not (tmp_path / "looping").exists():
            assert time.monotonic() < deadline and proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            time.sleep(0.002)
        time.sleep(trial % 8 * 0.001)
        slurm_kill(proc.pid, sig)
        try:
            out, _ = proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:  # the shell never saw it
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            lost += 1
            continue
        finally:
            with contextlib.suppress(ProcessLookupError):  # the watch's sleep (the teardown's to kill)
                os.killpg(proc.pid, signal.SIGKILL)
        ran = (tmp_path / "ran").read_text().count("\n")
        unrun += out != f"calls {ran}\n"
    assert (lost, unrun) == (0, 0)


def test_slurm_questions_after_sigterm_outlive_a_second_one(tmp_path):
    """The lost node's question ran as `timeout 5 sinfo`: GNU timeout handles SIGTERM and
    passes it on, so SLURM's signal to every process (a second scancel, or a requeue's)
    killed sinfo and the job said no node."""
    (tmp_path / "bin").mkdir()
    (tmp_path / "slurm_kill.py").write_text(SLURM_KILL)
    (tmp_path / "bin" / "sinfo").write_text(
        '#!/bin/bash\n[[ -e $T/sent ]] || { touch "$T/sent"; python3 "$T/slurm_kill.py" "$(<"$T/job.pid")"; }\n'
        'sleep 0.5\necho "node2 Not responding"\n')
    (tmp_path / "bin" / "sinfo").chmod(0o755)
    proc = start(tmp_path, start_new_session=True, SLURM_JOB_NODELIST="node[1-2]")
    (tmp_path / "job.pid").write_text(str(proc.pid))
    proc.send_signal(signal.SIGTERM)
    rc, out = finish(proc)
    assert rc == 143 and out.count("SLURM lost node2 of this job (down: Not responding)") == 1, out
    assert out.count("hpoc: terminated (SIGTERM)") == 1 and (tmp_path / "sent").exists(), out
    assert not (tmp_path / "jobdir").exists(), out


def test_a_shielded_command_with_a_timeout_leaves_no_killed_line(tmp_path):
    """hpoc_shielded's timer, killed once its command ended, made bash write "line N: PID
    Killed ( sleep ...)" to the job's .err now and then (read as the OOM killer's)."""
    script = render_all(plan(), plan_path="/b/plan.json")["job.sbatch"]
    body = ("set -eo pipefail\nset -u\n"
            + "".join(function(script, name) for name in ("hpoc_shielded", "hpoc_traps_back", "hpoc_watched"))
            + "hpoc_watch='' hpoc_term_at='' hpoc_on_term='exit 143'\nhpoc_traps_back\n"
            + "for i in $(seq 60); do hpoc_shielded --quiet --timeout 30 true; done\n"
            + 'out=$(hpoc_shielded --timeout 30 echo hi)\n'
            + 'hpoc_shielded --timeout 1 sleep 30 || echo "timed out $?"\n'
            + 'kill -KILL "$hpoc_watch"; wait "$hpoc_watch" 2>/dev/null || :\n'
            + 'echo "out $out"\n')
    (tmp_path / "t.sh").write_text(body)
    proc = subprocess.Popen(["bash", str(tmp_path / "t.sh")], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=30)
    finally:
        with contextlib.suppress(ProcessLookupError):  # the timers' sleeps
            os.killpg(proc.pid, signal.SIGKILL)
    assert out == "timed out 137\nout hi\n", out


def session_processes(sid: int) -> list[str]:
    """Command lines of the processes still in session `sid`."""
    left = []
    for d in os.listdir("/proc"):
        with contextlib.suppress(OSError):
            if d.isdigit() and os.getsid(int(d)) == sid:
                left.append(Path(f"/proc/{d}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip())
    return [c for c in left if c]  # (a zombie has no command line)


def test_a_shielded_commands_timer_leaves_no_process_behind(tmp_path):
    """The timer of `hpoc_shielded --timeout 30` was `(sleep 30; kill …) &`: killed once its
    command ended, its sleep lived on for up to 30 s after the job, which can keep SLURM's
    step (or the node's epilog) waiting for the job's last process."""
    script = render_all(plan(), plan_path="/b/plan.json")["job.sbatch"]
    body = ("set -eo pipefail\nset -u\n"
            + "".join(function(script, name) for name in ("hpoc_shielded", "hpoc_traps_back", "hpoc_watched"))
            + "hpoc_watch='' hpoc_term_at='' hpoc_int_at='' hpoc_on_term='exit 143'\nhpoc_traps_back\n"
            + "for i in 1 2 3; do hpoc_shielded --quiet --timeout 30 true; done\n"
            + 'hpoc_shielded --timeout 1 sleep 30 || echo "timed out $?"\n'
            + 'kill -KILL "$hpoc_watch"; wait "$hpoc_watch" 2>/dev/null || :\necho done\n')
    (tmp_path / "t.sh").write_text(body)
    proc = subprocess.Popen(["bash", str(tmp_path / "t.sh")], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=30)
        left = session_processes(proc.pid)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    assert out == "timed out 137\ndone\n", out
    assert left == [], left
