"""hpoc.runtime.progress: one live progress line, plain in logs, in place on a terminal."""

from __future__ import annotations

import io
import json
import pickle
import re
from types import SimpleNamespace

import pytest

from hpoc.runtime.progress import Progress, counts, format_elapsed, format_line


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def log_progress(**kw):
    clock = Clock()
    stream = io.StringIO()
    progress = Progress(stream=stream, tty=False, clock=clock, **kw)
    return progress, stream, clock


def test_line_content():
    line = format_line(5, 2, 1, 1, total=9, metric="val_loss", best=0.123456,
                       best_trial="ab_00003", elapsed=3725)
    assert line == ("[hpoc] 01:02:05 | 6/9 trials finished (1 errored) | 2 running | "
                    "1 pending | best val_loss=0.1235 (ab_00003)")
    assert format_line(0, 0, 4) == "[hpoc] 00:00:00 | 0 trials finished | 0 running | 4 pending"
    assert "best" not in format_line(1, 0, 0, best=float("nan"))
    assert format_elapsed(-3) == "00:00:00" and format_elapsed(86400 * 2) == "48:00:00"


def test_log_lines_are_rate_limited():
    progress, stream, clock = log_progress(total=4, metric="loss", min_interval_s=10,
                                           heartbeat_s=300)
    assert progress.update(0, 2, 2)                    # the first state is always shown
    clock.now += 1
    assert not progress.update(1, 1, 2)                # changed, but too soon
    clock.now += 10
    assert progress.update(1, 1, 2, best=0.5, best_trial="t1")  # changed and due
    clock.now += 100
    assert not progress.update(1, 1, 2, best=0.5, best_trial="t1")  # nothing new
    clock.now += 300
    assert progress.update(1, 1, 2, best=0.5, best_trial="t1")  # heartbeat
    clock.now += 1
    assert progress.update(2, 0, 2, force=True)        # forced
    lines = stream.getvalue().splitlines()
    assert len(lines) == 4 and "\r" not in stream.getvalue()
    assert lines[1].startswith("[hpoc] 00:00:11 | 1/4 trials finished")
    assert lines[1].endswith("best loss=0.5 (t1)")


def test_close_prints_the_final_state_once():
    progress, stream, clock = log_progress(total=2, min_interval_s=10)
    progress.update(0, 2, 0)
    clock.now += 1
    progress.update(2, 0, 0)  # rate-limited away...
    progress.close()          # ...but the end state is never lost
    progress.close()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2 and lines[-1].startswith("[hpoc] 00:00:01 | 2/2 trials finished")


def test_the_tune_callback_prints_the_end_state_once():
    """The last line of a run was printed twice: once by the step, again at the end."""
    from hpoc.runtime.progress import tune_callback

    progress, stream, clock = log_progress(total=2, min_interval_s=10)
    callback = tune_callback(progress)
    trials = [SimpleNamespace(trial_id=f"t{i}", status="TERMINATED", last_result={}) for i in range(2)]
    callback.on_step_end(0, trials)
    clock.now += 30
    callback.on_experiment_end(trials)
    assert len(stream.getvalue().splitlines()) == 1
    # an end state the rate limit held back is printed at the end
    progress, stream, clock = log_progress(total=2, min_interval_s=10)
    callback = tune_callback(progress)
    callback.on_step_end(0, [SimpleNamespace(trial_id="t0", status="RUNNING", last_result={})])
    clock.now += 1
    callback.on_step_end(1, trials)
    callback.on_experiment_end(trials)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2 and "2/2 trials finished" in lines[-1]


def test_terminal_line_is_redrawn_in_place():
    clock = Clock()
    stream = io.StringIO()
    progress = Progress(total=3, stream=stream, tty=True, clock=clock)
    progress.update(0, 1, 2)
    clock.now += 1
    progress.update(1, 1, 1)
    progress.close()
    out = stream.getvalue()
    assert out.count("\r") == 2 and out.count("\x1b[K") == 2
    assert out.endswith("\n") and out.count("\n") == 1


def test_default_mode_follows_the_stream():
    class Tty(io.StringIO):
        def isatty(self):
            return True

    assert Progress(stream=Tty()).tty and Progress(stream=Tty()).min_interval_s < 1
    plain = Progress(stream=io.StringIO())
    assert not plain.tty and plain.min_interval_s >= 5


def test_broken_stream_never_raises():
    stream = io.StringIO()
    stream.close()
    progress = Progress(stream=stream, tty=False)
    assert progress.update(1, 0, 0)  # written "successfully" into the void
    progress.close()


def test_progress_pickles_without_its_stream():
    """Ray pickles callbacks into its experiment state."""
    progress, _, _ = log_progress(total=3, metric="m")
    progress.update(1, 1, 1)
    copy = pickle.loads(pickle.dumps(progress))
    assert copy.total == 3 and copy.metric == "m" and copy.stream is not None


def test_a_progress_restored_in_the_next_run_counts_its_time_from_then(monkeypatch):
    """Tune.restore unpickles the earlier run's callbacks: the first line of a resumed run
    said 00:00:56, the time since the earlier run had started, and went to stderr whatever
    stream the run was given."""
    now = [100.0]
    progress = Progress(total=2, stream=io.StringIO(), tty=False, clock=_Clock(now))
    progress.update(0, 1, 1)
    now[0] = 156.0  # the next run restores it 56 s later
    from hpoc.runtime.watch import STATE

    run_stream = io.StringIO()  # the resumed run's own (run_study's `progress`), not stderr
    monkeypatch.setattr(STATE, "stream", run_stream)
    copy = pickle.loads(pickle.dumps(progress))
    assert copy.update(0, 0, 2)  # its first line is due, though the state is unchanged
    assert run_stream.getvalue().startswith("[hpoc] 00:00:00 |"), run_stream.getvalue()


def test_counts_from_trials():
    def trial(tid, status, value=None):
        return SimpleNamespace(trial_id=tid, status=status,
                               last_result={} if value is None else {"val_loss": value})

    trials = [trial("a", "TERMINATED", 0.5), trial("b", "RUNNING", 0.3),
              trial("c", "ERROR", 0.1), trial("d", "PENDING"), trial("e", "PAUSED")]
    got = counts(trials, "val_loss", "min", total=8)
    assert got == {"done": 1, "running": 1, "pending": 1 + 3, "errored": 1, "paused": 1,
                   "best": 0.3, "best_trial": "b"}  # an errored trial is never "best"
    assert counts(trials, "val_loss", "max")["best_trial"] == "a"


def test_trials_a_scheduler_paused_are_paused_while_the_run_goes_on():
    """PBT pauses trials at each perturbation while others train: `hpoc status` and
    `hpoc results` call them paused at that moment, and so does the live line."""
    def trial(tid, status):
        return SimpleNamespace(trial_id=tid, status=status, last_result={"val_loss": 0.5})

    trials = [trial("a", "RUNNING"), trial("b", "PAUSED"), trial("c", "PAUSED"), trial("d", "PENDING")]
    got = counts(trials, "val_loss", "min", total=4)
    assert (got["running"], got["paused"], got["pending"]) == (1, 2, 1)


def test_paused_trials_after_a_stop_are_neither_finished_nor_pending():
    def trial(tid, status):
        return SimpleNamespace(trial_id=tid, status=status, last_result={"val_loss": 0.5})

    trials = [trial("a", "TERMINATED"), trial("b", "PAUSED"), trial("c", "PAUSED")]
    got = counts(trials, "val_loss", "min", total=3, stopped=True)
    assert (got["done"], got["paused"], got["pending"]) == (1, 2, 0)
    line = format_line(**{k: v for k, v in got.items() if k not in ("best", "best_trial")},
                       total=3)
    assert "1/3 trials finished | 0 running | 0 pending | 2 paused" in line
    assert "paused" not in format_line(1, 0, 0, total=1)


def test_the_driver_shows_trials_stopped_by_a_signal_as_paused(monkeypatch):
    """Tune marks the trials it stopped TERMINATED; the progress line must not count them
    as finished (it said "2/2 trials finished" after Ctrl-C)."""
    from hpoc.runtime import watch

    def trial(tid, status, reported=True):
        # Ray's last_result before the first report: the trial id and auto-filled keys.
        return SimpleNamespace(trial_id=tid, status=status,
                               last_result={"trial_id": tid, "val_loss": 0.5, "training_iteration": 1}
                               if reported else {"trial_id": tid, "date": "2026-11-28", "pid": 7})

    trials = [trial("a", "TERMINATED"), trial("b", "TERMINATED"), trial("c", "TERMINATED", False)]
    monkeypatch.setattr(watch, "STATE", watch._State(signal=2, ended={"a"}))
    seen, stopped = watch._as_seen(trials)
    assert stopped and [t.status for t in seen] == ["TERMINATED", "PAUSED", "PENDING"]
    got = counts(seen, "val_loss", "min", total=3, stopped=True)
    assert (got["done"], got["paused"], got["pending"]) == (1, 1, 1)


def test_trials_a_resumed_run_restored_finished_stay_finished_after_a_signal(monkeypatch):
    """A study interrupted twice (walltime, requeue, walltime): the second run's summary
    called every trial finished in the first run PAUSED (hpoc status: done 6 of 37)."""
    from hpoc.runtime import watch

    def trial(tid, status):
        return SimpleNamespace(trial_id=tid, status=status,
                               last_result={"val_loss": 0.5, "training_iteration": 2})

    restored = [trial("old", "TERMINATED"), trial("new", "RUNNING")]
    monkeypatch.setattr(watch, "STATE", watch._State())
    watch._make_events().on_step_end(1, restored)  # Tune's first step of the resumed run
    watch.STATE.signal = 12
    stopped = [restored[0], trial("new", "TERMINATED")]  # Tune stopped "new" at the signal
    seen, _ = watch._as_seen(stopped)
    assert [t.status for t in seen] == ["TERMINATED", "PAUSED"]


def test_the_driver_writes_the_statuses_it_sees_when_one_changes(monkeypatch, tmp_path):
    """For `hpoc status` during the run: Ray's saved state lags the live line by seconds."""
    from hpoc.runtime import watch

    def trial(tid, status):
        return SimpleNamespace(trial_id=tid, status=status, last_result={})

    monkeypatch.setattr(watch, "STATE", watch._State(experiment=tmp_path))
    monkeypatch.setattr(watch, "LIVE_EVERY_S", 0.0)
    events = watch._make_events()
    events.on_step_end(1, [trial("a", "RUNNING"), trial("b", "PENDING")])
    live = tmp_path / ".hpoc-trials.json"
    assert json.loads(live.read_text())["trials"] == {"a": "RUNNING", "b": "PENDING"}
    live.unlink()
    events.on_step_end(2, [trial("a", "RUNNING"), trial("b", "PENDING")])
    assert not live.exists()  # unchanged: not written again
    events.on_step_end(3, [trial("a", "PAUSED"), trial("b", "RUNNING")])
    assert json.loads(live.read_text())["trials"] == {"a": "PAUSED", "b": "RUNNING"}


@pytest.mark.ray
def test_lines_printed_during_a_real_ray_run(tmp_path_factory):
    """The Ray Tune callback fed the printer during the generated study."""
    from results_fixtures import study_data

    data = study_data(tmp_path_factory)
    lines = data.progress_log.read_text().splitlines()
    summary = json.loads((data.single / "summary.json").read_text())
    assert len(lines) >= 3
    assert all(re.match(r"^\[hpoc\] \d\d:\d\d:\d\d \| \d+/8 trials finished", ln) for ln in lines)
    errors = summary["status_counts"].get("ERROR", 0)
    assert lines[-1].startswith("[hpoc] ") and "| 8/8 trials finished" in lines[-1]
    assert f"({errors} errored)" in lines[-1] and "0 running | 0 pending" in lines[-1]
    best = summary["best"]
    assert best is not None
    # Both rank the trials that did not fail by their last report.
    assert f"best val_loss={best['metrics']['val_loss']:.4g} ({best['trial_id']})" in lines[-1]


class _Clock:
    """A picklable clock that reads `now[0]` (Progress keeps its clock)."""

    def __init__(self, now):
        self.now = now

    def __call__(self):
        return self.now[0]


def test_trials_a_fail_fast_stop_caught_before_their_retry_are_failed_not_paused(monkeypatch, tmp_path):
    """The study stopped itself (fail fast) while trials waited for their retry: the summary,
    `hpoc status` and `hpoc results` called them paused or pending, with no error."""
    from hpoc.runtime import summary as summary_mod
    from hpoc.runtime import watch

    def trial(tid, status, reported):
        return SimpleNamespace(trial_id=tid, status=status, config={}, path=None, local_path=None,
                               error_file=None, error_msg=None,
                               last_result={"trial_id": tid, "training_iteration": 1} if reported
                               else {"trial_id": tid})

    trials = [trial("a", "ERROR", False), trial("b", "PENDING", True), trial("c", "PENDING", False),
              trial("d", "TERMINATED", True)]  # d: running a retry that had reported, stopped
    monkeypatch.setattr(watch, "STATE", watch._State(
        failed="all 3 trials failed", ended={"a"},
        retrying={"b": "RuntimeError: expected Long", "c": "RuntimeError: expected Long"}))
    seen, stopped = watch._as_seen(trials)
    assert stopped and [t.status for t in seen] == ["ERROR", "ERROR", "ERROR", "PAUSED"]
    plan = {"study": {"name": "s"}, "space": {"params": [], "constants": {}},
            "objective": {"metrics": [{"name": "loss", "mode": "min"}]}}
    built = summary_mod.build(plan, 0, seen, wall_s=1.0, interrupted=True, experiment_dir=tmp_path,
                              plan_hash="sha256:0", stopped=watch.STATE.failed,
                              cut_short=watch.retry_failures(interrupted=True))
    assert built["status_counts"] == {"ERROR": 3, "PAUSED": 1}
    assert [t["error"] for t in built["trials"][1:3]] == ["RuntimeError: expected Long"] * 2
    # a stop by a signal leaves them to the next run: paused or pending, as before
    watch.STATE.failed, watch.STATE.signal = None, 12
    assert [t.status for t in watch._as_seen(trials)[0]] == ["ERROR", "PAUSED", "PENDING", "PAUSED"]
    assert watch.retry_failures(interrupted=True) == {}


def test_a_trial_whose_objective_goes_nan_or_inf_is_said_once_as_it_reports(monkeypatch):
    """A diverged trial went unsaid until `hpoc results` showed `nan`; without a scheduler it
    trained on to its last epoch meanwhile."""
    from hpoc.runtime import watch

    out = io.StringIO()
    monkeypatch.setattr(watch, "STATE", watch._State(stream=out, params=["lr"], objective="val_loss"))
    a = SimpleNamespace(trial_id="a", status="RUNNING", config={"lr": 0.5}, last_result={})
    b = SimpleNamespace(trial_id="b", status="RUNNING", config={"lr": 0.001}, last_result={})
    events = watch._make_events()
    events.on_trial_result(1, [a, b], a, {"val_loss": 0.7, "epoch": 1})
    events.on_trial_result(1, [a, b], b, {"val_loss": 0.9, "epoch": 1})
    assert out.getvalue() == ""
    events.on_trial_result(2, [a, b], a, {"val_loss": float("inf"), "epoch": 2})
    events.on_trial_result(3, [a, b], a, {"val_loss": float("nan"), "epoch": 3})  # said once
    events.on_trial_result(2, [a, b], b, {"val_loss": 0.8, "epoch": 2})
    assert out.getvalue() == (
        "[hpoc] trial a (lr=0.5) diverged: `val_loss` is inf at epoch 2; it ranks last "
        "(a smaller learning rate?)\n")


def test_a_line_said_while_the_terminal_line_is_drawn_goes_on_its_own_line():
    """A line the driver says (a trial failed; a state held back, said from Ray's sync
    thread) while the live line is on a terminal without its newline: the live line is
    cleared first and drawn again below it, not run into the said line's start."""
    import threading

    from hpoc.runtime.exits import say

    clock = Clock()
    stream = io.StringIO()
    progress = Progress(total=3, stream=stream, tty=True, clock=clock)
    progress.update(0, 1, 2)
    drawn = stream.getvalue()
    thread = threading.Thread(target=say, args=(stream, "[hpoc] warning: held back"))
    thread.start()
    thread.join()
    out = stream.getvalue()[len(drawn):]
    screen = [line.rsplit("\r", 1)[-1].replace("\x1b[K", "") for line in (drawn + out).split("\n")]
    assert screen == ["[hpoc] warning: held back", progress._line]
    progress.close()
    say(stream, "[hpoc] done")  # the live line ended: said as ever
    assert stream.getvalue().endswith("\n[hpoc] done\n")
    other = io.StringIO()
    say(other, "x")  # another stream than the live line's
    assert other.getvalue() == "x\n"


def test_a_run_that_raises_with_the_terminal_line_drawn_ends_it_before_its_error(monkeypatch):
    """Tune's fit raised (a full disk) with the live line drawn: Tune never ended the line,
    so the error said after it drew the stale line again below, with no newline, and the
    shell's prompt ran into it."""
    from hpoc.runtime import study
    from hpoc.runtime.exits import StudyError

    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)

    def fails(*args):
        Progress(total=3, stream=stream, tty=True, clock=Clock()).update(0, 1, 2)
        raise StudyError("the disk is full", 1)

    monkeypatch.setattr(study, "_run", fails)
    assert study.run_study({"study": {"name": "s"}}, study.RunOptions(progress=stream)) == 1
    screen = [line.rsplit("\r", 1)[-1].replace("\x1b[K", "") for line in stream.getvalue().split("\n")]
    assert screen[1:] == ["error: the disk is full", ""] and screen[0].startswith("[hpoc] 00:00:00 | 0/3")
    stream.truncate(0)
    study.say(stream, "x")  # nothing drawn again after
    assert stream.getvalue().endswith("x\n")
