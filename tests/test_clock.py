"""One time record per trial, read by the stall and the time-limit checks: what an attempt's
start and a report keep or reset (the checks themselves: test_timelimit.py and
test_runtime_study.py)."""

from __future__ import annotations

from types import SimpleNamespace

from hpoc.runtime import clock, stall, timelimit


def _trial(tid="a"):
    return SimpleNamespace(trial_id=tid, status="RUNNING", checkpoint=None, last_result={})


def test_a_retry_is_named_quiet_again_from_its_longest_epoch_but_stopped_only_once():
    now = [0.0]
    times, trial = clock.TrialTimes(10_000, clock=lambda: now[0]), _trial()
    times.started(trial)
    now[0] = 120.0
    times.reported("a", {"time_this_iter_s": 120.0, "time_total_s": 120.0})
    now[0] = 1321.0
    assert stall.quiet(times, [trial]) == [(trial, 1201.0, 120.0)]
    assert stall.quiet(times, [trial]) == []  # named once
    times.reported("a", {"time_this_iter_s": 1.0, "time_total_s": 240.0})
    now[0] = 2522.0
    assert stall.quiet(times, [trial]) == [(trial, 1201.0, 120.0)]  # once more, after a report
    times.started(trial)  # a retry from scratch: quiet for 10 of the epochs the first attempt took
    assert (times.of("a").reports, times.of("a").run_s) == (0, 0.0)
    now[0] = 3723.0
    assert stall.quiet(times, [trial]) == [(trial, 1201.0, 120.0)]
    now[0] = 12_522.0
    assert timelimit.due(times, [trial]) == [trial]
    times.started(trial)
    now[0] = 30_000.0
    assert timelimit.due(times, [trial]) == []  # each trial is stopped once in a run


def test_a_report_without_rays_running_time_does_not_restart_the_count():
    now = [0.0]
    times, trial = clock.TrialTimes(10, clock=lambda: now[0]), _trial()
    times.started(trial)
    now[0] = 6.0
    times.reported("a", {"training_iteration": 1})
    assert times.of("a").reports == 1
    now[0] = 10.0
    assert timelimit.due(times, [trial]) == [trial]
