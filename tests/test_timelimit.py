"""`trials.time_limit`: when a trial is due (without Ray; the end-to-end run is in
test_runtime_study.py)."""

from __future__ import annotations

from types import SimpleNamespace

from hpoc.runtime import clock, timelimit


def _trial(tid, status="RUNNING", checkpoint=None, last_result=None):
    return SimpleNamespace(trial_id=tid, status=status, checkpoint=checkpoint, last_result=last_result or {})


def test_a_trial_is_due_at_its_limit_even_without_a_report_and_only_once():
    now = [0.0]
    times = clock.TrialTimes(10, clock=lambda: now[0])
    hung, busy = _trial("a"), _trial("b")
    times.started(hung)
    times.started(busy)
    now[0] = 6.0
    times.reported("b", {"time_total_s": 4.0})  # started late: Ray counted 4 s of it
    now[0] = 9.9
    assert timelimit.due(times, [hung, busy]) == []
    now[0] = 10.0
    assert timelimit.due(times, [hung, busy]) == [hung]  # never reported: counted from its start
    now[0] = 11.9
    assert timelimit.due(times, [hung, busy]) == []      # said once; busy is at 4 + 5.9 s
    now[0] = 12.0
    assert timelimit.due(times, [hung, busy]) == [busy]


def test_a_retry_from_a_checkpoint_goes_on_from_its_time_and_one_from_scratch_starts_over():
    now = [0.0]
    times = clock.TrialTimes(10, clock=lambda: now[0])
    resumed = _trial("a", checkpoint=object(), last_result={"time_total_s": 8.0})
    fresh = _trial("b", last_result={"time_total_s": 8.0})  # the failed attempt's last report
    times.started(resumed)
    times.started(fresh)
    now[0] = 2.0
    assert timelimit.due(times, [resumed, fresh]) == [resumed]


def test_no_limit_stops_nothing_and_only_running_trials_are_due():
    times = clock.TrialTimes(None, clock=lambda: 1e9)
    times.started(_trial("a"))
    assert timelimit.due(times, [_trial("a")]) == []
    times = clock.TrialTimes(1, clock=lambda: 0.0)
    paused = _trial("p", status="PAUSED")
    times.started(paused)
    times.clock = lambda: 5.0
    assert timelimit.due(times, [paused]) == []


def test_trials_stopped_at_their_limit_before_a_report_are_not_blamed_on_the_trainer(tmp_path):
    """A hung first epoch stopped at the limit is no trainer that never calls self.report()."""
    from hpoc.runtime import summary
    from runtime_plans import make_plan, write_toy

    plan = make_plan(write_toy(tmp_path / "study"), tmp_path / "results")

    def last_line(*trials):
        built = summary.build(plan, 0, list(trials), wall_s=1.0, interrupted=False,
                              experiment_dir=tmp_path, plan_hash="sha256:0")
        return summary.describe_best(built).splitlines()[-1]

    def trial(tid, limited):
        path = tmp_path / tid
        path.mkdir()
        if limited:
            timelimit.record(str(path), 5.0)
        return SimpleNamespace(trial_id=tid, status="TERMINATED", config={}, last_result={}, path=str(path),
                               local_path=str(path), error_file=None, error_msg=None)

    assert last_line(trial("a", True), trial("b", True)) == (
        "no trial reported the objective metric `val_accuracy`: 2 trial(s) reached their time limit "
        "(`trials.time_limit`) before their first report")
    assert last_line(trial("c", True), trial("d", False)) == (
        "no trial reported the objective metric `val_accuracy`: 1 trial(s) ended without reporting "
        "once (does the trainer's `train()` call `self.report(metrics, epoch=epoch)` every epoch?); "
        "1 reached the time limit first")
