"""Sharded studies: one global budget in a shared Optuna journal, no configuration twice."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from runtime_plans import make_plan, write_toy
from submit_support import hpoc, log_tail, reports, wait_done, write_study

TESTS = Path(__file__).parent


def sharded_plan(tmp_path: Path, shards: int = 3, num_samples: int = 10):
    return make_plan(write_toy(tmp_path / "w"), tmp_path / "res",
                     search={"algorithm": "optuna", "options": {"seed": 0, "sampler": "tpe"}},
                     shards={"count": shards, "parallel": shards},
                     trials={"num_samples": num_samples, "max_concurrent": 2})


def searcher(plan, shard: int):
    from hpoc.runtime.search import make_searcher

    s, _, total = make_searcher(plan, shard)
    s.set_search_properties(None, None, {})
    return s, total


# A shard's searcher, asking until Optuna's global budget says stop; run as its own process.
ASKER = r'''
import json, os, random, sys, time
sys.path.insert(0, sys.argv[3])
from test_shards import searcher
plan = json.load(open(sys.argv[1])); shard = int(sys.argv[2])
wait = sys.argv[4] if len(sys.argv) > 4 else None  # a file: start once it exists
while wait and not os.path.exists(wait):
    time.sleep(0.02)
s, _ = searcher(plan, shard)
got = []
for i in range(100):
    tid = f"s{shard}_{i}"
    cfg = s.suggest(tid)
    if len(sys.argv) > 5:  # signal: this shard has asked (its first ask may find the budget taken)
        open(sys.argv[5], "w").close()
    if cfg == s.FINISHED:
        break
    got.append(tid)
    time.sleep(random.random() * 0.05)
    s.on_trial_complete(tid, {"val_accuracy": random.random(), "training_iteration": 1})
print(json.dumps(got))
'''


def test_concurrent_shards_draw_exactly_the_study_budget(tmp_path):
    plan = sharded_plan(tmp_path, shards=3, num_samples=10)
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(json.dumps(plan))
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0")
    procs = [subprocess.Popen([sys.executable, "-c", ASKER, str(plan_file), str(k), str(TESTS)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for k in range(3)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    ran = [json.loads(o[0].strip().splitlines()[-1]) for o in outs]
    assert sum(len(r) for r in ran) == 10  # the study's budget, not 3 x 10

    from hpoc.runtime.shards import journal_trials

    rows = journal_trials(plan)
    counted = [r for r in rows if not r["extra"]]
    assert len(counted) == 10 and all(r["state"] == "COMPLETE" for r in counted)
    assert sorted(r["ray_trial"] for r in counted) == sorted(t for r in ran for t in r)
    # every ask beyond the budget was marked and failed, never run
    assert all(r["extra"] == "over budget" and r["state"] == "FAIL" for r in rows if r["extra"])
    configs = {json.dumps(r["params"], sort_keys=True) for r in counted}
    assert len(configs) == 10


def test_a_shard_killed_after_asking_hands_the_orphaned_trial_to_its_next_run(tmp_path):
    plan = sharded_plan(tmp_path, shards=2, num_samples=3)
    first, total = searcher(plan, 0)
    assert total == 3  # Tune's count is an upper bound; the journal decides
    a = first.suggest("a")
    first.on_trial_complete("a", {"val_accuracy": 0.5, "training_iteration": 1})
    first.save(str(tmp_path / "state.pkl"))       # Ray saved its experiment here...
    b = first.suggest("b")                         # ...then asked once more and died
    del first

    again, _ = searcher(plan, 0)
    again.restore(str(tmp_path / "state.pkl"))
    c = again.suggest("c")
    assert c == b and c != a                       # same parameters: the orphan, not a new ask
    other, _ = searcher(plan, 1)
    d = other.suggest("d")                          # the last trial of the budget
    assert again.suggest("e") == again.FINISHED and other.suggest("f") == other.FINISHED

    from hpoc.runtime.shards import journal_trials

    rows = [r for r in journal_trials(plan) if not r["extra"]]
    assert len(rows) == 3
    assert {r["ray_trial"] for r in rows} == {"a", "c", "d"} and d not in (a, b)


def test_a_retried_trial_that_succeeds_teaches_the_sampler(tmp_path):
    plan = sharded_plan(tmp_path, shards=2, num_samples=2)
    s, _ = searcher(plan, 0)
    cfg = s.suggest("t")
    s.on_trial_complete("t", None, error=True)       # errored...
    s.on_trial_complete("t", {"val_accuracy": 0.9, "training_iteration": 2})  # ...retried, done

    from hpoc.runtime.shards import journal_trials

    rows = journal_trials(plan)
    failed = next(r for r in rows if r["ray_trial"] == "t" and not r["extra"])
    record = next(r for r in rows if r["extra"] == "retry")
    assert failed["state"] == "FAIL" and record["state"] == "COMPLETE"
    assert record["params"] == failed["params"] and record["values"] == [0.9]
    assert {k: cfg[k] for k in record["params"]} == record["params"]
    assert len([r for r in rows if not r["extra"]]) == 1  # the record is not a budget trial


@pytest.mark.slurm
@pytest.mark.slow
def test_an_array_of_two_optuna_shards_shares_one_study_and_one_budget(tmp_path):
    spec = write_study(tmp_path / "s", "sharded", shards=2, parallel=2, num_samples=6,
                       max_concurrent=1, epochs=2, sleep=1.0)
    run = hpoc("submit", str(spec), "-o", str(tmp_path / "build"), cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert "2 job(s) for 2 shard(s)" in run.stdout
    jobs = [line.split("job ")[1].split()[0] for line in run.stdout.splitlines() if "shard " in line
            and " job " in line]
    assert len(jobs) == 2 and jobs[0].endswith("_0") and jobs[1].endswith("_1")
    records = wait_done(jobs, 420, tmp_path / "build")
    assert all(r["JobState"] == "COMPLETED" for r in records), log_tail(tmp_path / "build")

    root = tmp_path / "s" / "results" / "sharded"
    per_shard = {k: reports(root / f"shard-{k}") for k in (0, 1)}
    assert all(per_shard.values()), "each shard ran trials"  # both shards took part
    assert sum(len(v) for v in per_shard.values()) == 6      # the study's budget
    configs = [json.dumps(json.loads((root / f"shard-{k}" / name / "params.json").read_text()),
                          sort_keys=True) for k, trials in per_shard.items() for name in trials]
    assert len(set(configs)) == 6                            # no configuration twice

    from hpoc.plan import load
    from hpoc.runtime.shards import journal_trials

    rows = [r for r in journal_trials(load(tmp_path / "build" / "plan.json")) if not r["extra"]]
    assert len(rows) == 6 and {r["shard"] for r in rows} == {0, 1}
    assert all(r["state"] == "COMPLETE" for r in rows)
    # Each shard's sampler learnt from the other shard's results: the journal records what
    # was complete, per shard, when each trial was asked.
    for k in (0, 1):
        saw_other = [r["seen"].get(str(1 - k), 0) for r in rows if r["shard"] == k]
        assert max(saw_other) > 0, (k, rows)

    status = json.loads(hpoc("status", str(tmp_path / "build"), "--json", cwd=tmp_path).stdout)
    assert status["state"] == "finished" and status["totals"]["done"] == 6
    assert status["journal"]["trials"] == 6


def test_a_shard_that_starts_with_the_budget_spent_ends_before_its_ray_cluster(tmp_path):
    """Array tasks that waited for `parallel` found the budget spent only after bringing a
    Ray cluster up (a minute of the allocation, each); they end before, counted finished."""
    from hpoc.runtime import before, marker
    from hpoc.runtime.shards import experiment_dir
    from hpoc.runtime.summary import exit_code, finished_run

    plan = sharded_plan(tmp_path, shards=3, num_samples=2)
    s, _ = searcher(plan, 0)
    s.suggest("a")
    assert before.check(plan, 2) == (before.GO, "")  # a trial left to ask
    s.suggest("b")
    s.on_trial_complete("a", {"val_accuracy": 0.5, "training_iteration": 1})
    code, why = before.check(plan, 2)
    assert code == before.DONE and why == ("shard 2: the other shards have already asked for all 2 trial(s) "
                                    "of the study's shared budget (`trials.num_samples`)"), why
    exp = experiment_dir(plan, 2)
    summary = finished_run(exp, marker.read(exp), None)
    assert summary is not None and summary["budget_taken"] and exit_code(summary) == 0
    # a shard of its own that asked and was stopped before running its trial runs it
    assert before.check(plan, 0)[0] == before.GO


def test_the_check_before_ray_reads_the_shards_marker_once(tmp_path, monkeypatch):
    """200 array tasks start together on one shared filesystem: each asks for its shard's
    marker once, not once for the verdict and again for the shared budget."""
    from hpoc.runtime import before, marker

    plan = sharded_plan(tmp_path, shards=3, num_samples=2)
    s, _ = searcher(plan, 0)
    s.suggest("a")
    s.suggest("b")
    s.on_trial_complete("a", {"val_accuracy": 0.5, "training_iteration": 1})
    s.on_trial_complete("b", {"val_accuracy": 0.6, "training_iteration": 1})
    reads = []
    real = marker.read
    monkeypatch.setattr(marker, "read", lambda exp: reads.append(exp) or real(exp))
    assert before.check(plan, 2)[0] == before.DONE  # the budget is spent: recorded finished
    assert len(reads) == 1, reads
    reads.clear()
    assert before.check(plan, 2)[0] == before.DONE  # and then a finished shard, by its marker
    assert len(reads) == 1, reads


def test_points_to_evaluate_that_fill_the_budget_all_run(tmp_path):
    """A sharded Optuna study with as many `points_to_evaluate` as `num_samples` (the
    compiler allows that many) ran none: the queued points counted as budget taken, so the
    first ask said FINISHED, and the check before Ray recorded the other shards finished."""
    from hpoc.runtime import before

    plan = sharded_plan(tmp_path, shards=2, num_samples=2)
    points = [{"lr": 0.01, "hidden": 8}, {"lr": 0.02, "hidden": 16}]
    plan["search"]["options"]["points_to_evaluate"] = points
    s, _ = searcher(plan, 0)  # shard 0 queues the points
    assert before.check(plan, 1)[0] == before.GO  # they are not taken yet
    a = s.suggest("a")
    assert a != s.FINISHED and {k: a[k] for k in ("lr", "hidden")} == points[0], a
    other, _ = searcher(plan, 1)
    b = other.suggest("b")
    assert b != other.FINISHED and {k: b[k] for k in ("lr", "hidden")} == points[1], b
    assert s.suggest("c") == s.FINISHED and other.suggest("d") == other.FINISHED  # the budget, no more


def test_shards_racing_queued_points_never_run_more_than_the_budget(tmp_path, monkeypatch):
    """The check before an ask does not count queued points (WAITING): only the rank check
    after it holds the budget, and it must count them. Shard 1 read the journal before
    shard 0 queued the budget's 2 points, then asked: it made a new trial (#2) beside
    them. Counted by rank, the points take the budget and #2 is extra; a rank that left
    WAITING points out let #2 and both points run, 3 trials of a budget of 2."""
    import optuna

    from hpoc.runtime.shards import journal_trials

    plan = sharded_plan(tmp_path, shards=2, num_samples=2)
    plan["search"]["options"]["points_to_evaluate"] = [{"lr": 0.01, "hidden": 8}, {"lr": 0.02, "hidden": 16}]
    late, _ = searcher(plan, 1)
    first, _ = searcher(plan, 0)  # shard 0 queues the points
    with monkeypatch.context() as m:  # shard 1's ask read the journal before they were queued
        m.setattr(optuna.study.Study, "_pop_waiting_trial_id", lambda self: None)
        assert late.suggest("x") == late.FINISHED
    ran = [first.suggest("a"), first.suggest("b")]
    assert all(c != first.FINISHED for c in ran), ran
    assert [{k: c[k] for k in ("lr", "hidden")} for c in ran] == plan["search"]["options"]["points_to_evaluate"]
    assert first.suggest("c") == first.FINISHED and late.suggest("y") == late.FINISHED
    counted = [r for r in journal_trials(plan) if not r["extra"]]
    assert len(counted) == 2 and {r["ray_trial"] for r in counted} == {"a", "b"}, counted


def test_status_does_not_count_queued_points_as_asked(tmp_path):
    """`hpoc status` of a sharded Optuna study whose shard 0 had queued its 2
    `points_to_evaluate` said `optuna journal: 2 trial(s) asked, 0 complete (shard 0: 0,
    shard 1: 0)` before any shard asked for one: the shards' counts did not add up, and
    the budget read as taken."""
    from hpoc.commands import status

    plan = sharded_plan(tmp_path, shards=2, num_samples=4)
    plan["search"]["options"]["points_to_evaluate"] = [{"lr": 0.01, "hidden": 8}, {"lr": 0.02, "hidden": 16}]
    s, _ = searcher(plan, 0)  # shard 0 queues the points
    assert status.gather(plan, None)["journal"]["trials"] == 0
    s.suggest("a")
    assert status.gather(plan, None)["journal"] == {"trials": 1, "complete": 0, "per_shard": {"0": 1, "1": 0}}


POINTS = [{"lr": 0.01, "hidden": 8}, {"lr": 0.02, "hidden": 16}]


def _point_runs(rows, points=POINTS):
    """How often each point ran as a budget trial (not extra)."""
    return [sum(1 for r in rows if not r["extra"] and r["state"] != "WAITING"
                and {k: r["params"].get(k) for k in p} == p) for p in points]


def test_points_run_when_another_shard_asks_before_shard_0_starts(tmp_path):
    """Shard 0 alone queued the `points_to_evaluate`, when it started: a shard that asked
    first took budget trials ahead of them, and the last points ranked past the budget
    (failed as extra, never run) - the user's baselines silently dropped. Shards 1 and 2
    race here; shard 0 starts only once shard 1 has asked."""
    plan = sharded_plan(tmp_path, shards=3, num_samples=3)
    plan["search"]["options"]["points_to_evaluate"] = POINTS
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(json.dumps(plan))
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0")
    go = tmp_path / "asked"
    args = {0: [str(go)], 1: ["", str(go)], 2: []}
    procs = [subprocess.Popen([sys.executable, "-c", ASKER, str(plan_file), str(k), str(TESTS), *args[k]],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for k in range(3)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    ran = [json.loads(o[0].strip().splitlines()[-1]) for o in outs]
    assert sum(len(r) for r in ran) == 3

    from hpoc.runtime.shards import journal_trials

    rows = journal_trials(plan)
    assert _point_runs(rows) == [1, 1], rows  # each point, once
    counted = [r for r in rows if not r["extra"] and r["state"] != "WAITING"]
    assert len(counted) == 3 and all(r["state"] == "COMPLETE" for r in counted), rows


def test_points_queued_twice_by_racing_shards_run_once(tmp_path):
    """Every shard queues the points before it asks; Optuna's `skip_if_exists` checks and
    then adds, two journal operations, so two shards starting together may both queue
    them. A second copy is failed when a shard pops it (marked extra), never run, and
    takes no budget."""
    import optuna

    from hpoc.runtime.shards import journal_storage, journal_trials

    plan = sharded_plan(tmp_path, shards=2, num_samples=3)
    plan["search"]["options"]["points_to_evaluate"] = POINTS
    a, _ = searcher(plan, 0)
    b, _ = searcher(plan, 1)
    first = a.suggest("a0")  # shard 0 queues the points, pops the first
    study = optuna.load_study(study_name=plan["study"]["name"], storage=journal_storage(plan))
    for point in POINTS:  # shard 1 checked before they were there, and queued them too
        study.enqueue_trial(point)
    a.on_trial_complete("a0", {"val_accuracy": 0.5, "training_iteration": 1})
    got = [first]
    for i in range(4):
        for s, name in ((b, f"b{i}"), (a, f"a{i + 1}")):
            cfg = s.suggest(name)
            if cfg != s.FINISHED:
                got.append(cfg)
                s.on_trial_complete(name, {"val_accuracy": 0.5, "training_iteration": 1})
    assert len(got) == 3
    rows = journal_trials(plan)
    assert _point_runs(rows) == [1, 1], rows
    copies = [r["state"] for r in rows if r["extra"] == "duplicate point"]
    assert len(copies) == 2 and set(copies) <= {"FAIL", "WAITING"}, rows  # failed when popped
    assert len([r for r in rows if not r["extra"] and r["state"] != "WAITING"]) == 3


def test_a_popped_second_copy_of_a_point_is_no_orphan_to_run(tmp_path):
    """A shard killed after popping a second copy of a point, before failing it, left it
    RUNNING with its shard's mark: the shard's next run took it for an orphan and ran the
    point again."""
    import optuna

    from hpoc.runtime.shards import SHARD_ATTR, journal_storage, journal_trials

    plan = sharded_plan(tmp_path, shards=2, num_samples=2)
    plan["search"]["options"]["points_to_evaluate"] = POINTS[:1]
    a, _ = searcher(plan, 0)
    assert {k: a.suggest("a")[k] for k in POINTS[0]} == POINTS[0]
    a.on_trial_complete("a", {"val_accuracy": 0.5, "training_iteration": 1})
    study = optuna.load_study(study_name=plan["study"]["name"], storage=journal_storage(plan))
    study.enqueue_trial(POINTS[0])      # a racing shard's copy...
    study.ask().set_user_attr(SHARD_ATTR, 0)  # ...popped by shard 0, killed right then
    again, _ = searcher(plan, 0)
    b = again.suggest("b")
    assert b != again.FINISHED and {k: b[k] for k in POINTS[0]} != POINTS[0], b
    assert again.suggest("c") == again.FINISHED
    assert _point_runs(journal_trials(plan), POINTS[:1]) == [1]


class _CountedKey(frozenset):
    """A point's key that counts how often it is compared."""
    compared = 0

    def __eq__(self, other):
        type(self).compared += 1
        return frozenset.__eq__(self, other)

    __hash__ = frozenset.__hash__


def test_the_budget_check_of_each_ask_compares_no_trial_with_every_point():
    # each Optuna ask of a sharded study runs it: 2,000 trials and 200 points must not
    # cost a comparison of every trial with every point (400,000 a trial asked)
    from types import SimpleNamespace

    from hpoc.runtime.shards import budget_passes

    state = SimpleNamespace(name="COMPLETE")
    trials = [SimpleNamespace(number=i, state=state, user_attrs={}, system_attrs={}) for i in range(2000)]
    points = [_CountedKey({("lr", i)}) for i in range(200)]
    _CountedKey.compared = 0
    assert budget_passes(trials, 1999, points, 2500)
    assert not budget_passes(trials, 1999, points, 2000)  # 1,999 others: no slot left beside the points
    assert _CountedKey.compared < 1000
