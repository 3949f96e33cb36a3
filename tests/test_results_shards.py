"""A job-array study's experiment directory read without its plan (`hpoc results results/s`,
`hpoc status results/s`): what the runs recorded in their shards' plan markers says which
shards the study has and which plan each ran. Hand-made directories, no Ray."""

from __future__ import annotations

import json
from pathlib import Path

from hpoc.cli import main
from hpoc.plan import dumps

from results_dirs import summary, trial_dir
from results_fixtures import make_plan


def sharded_run(storage: Path, shards: int, ran: list[int], plans: dict[int, dict] | None = None) -> Path:
    """The experiment directory of a `shards`-shard study of which the shards `ran` ran to
    their end, each recording its plan (`plans[k]`, else the study's) in its marker."""
    from hpoc.plan import plan_hash
    from hpoc.runtime import marker

    plan = make_plan(storage, "arr", shards=shards)
    root = storage / "arr"
    for k in ran:
        exp = root / f"shard-{k}"
        ran_plan = (plans or {}).get(k, plan)
        marker.write(exp, marker.fingerprint(ran_plan, plan_hash(ran_plan)), k)
        trial_dir(exp, "aaaaa_00000", {"batch_size": 32, "optimizer": {"name": "adam", "lr": 0.01},
                                       "dropout": 0.1 * (k + 1), "epochs": 6},
                  [{"val_loss": 0.5 - k / 10}] * 6)
        summary(exp, "arr", [{"trial_id": "aaaaa_00000", "status": "TERMINATED"}], shard=k,
                plan_hash=plan_hash(ran_plan))
    return root


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([*map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def test_a_shard_that_never_started_is_said_without_the_plan(tmp_path, capsys):
    """Shards 0 and 1 of 3 ran: `hpoc status results/arr` said the study `finished` with the
    two shards it found, as if the third did not exist."""
    root = sharded_run(tmp_path / "results", 3, ran=[0, 1])
    code, out, err = run(capsys, "status", root, "--json")
    doc = json.loads(out)
    assert code == 0, err
    assert [s["state"] for s in doc["shards"]] == ["finished", "finished", "not started"]
    assert doc["state"] == "interrupted"
    code, out, err = run(capsys, "results", root)
    assert code == 0, err
    assert "across 2 of 3 shards" in out, out
    assert "shard 2:" in err and "not started" in err, err


def test_shards_that_ran_different_plans_are_said_without_the_plan(tmp_path, capsys):
    """Shard 1 ran after the spec's space changed: read from the experiment directory, the
    two searches' trials were ranked as one study's, without a word."""
    other = make_plan(tmp_path / "results", "arr", shards=2)
    other["space"]["params"][3]["args"]["upper"] = 0.9  # dropout = uniform(0, 0.9)
    other = json.loads(dumps({k: v for k, v in other.items() if k != "content_hash"}))
    root = sharded_run(tmp_path / "results", 2, ran=[0, 1], plans={1: other})
    code, out, err = run(capsys, "results", root)
    assert code == 0, err
    assert "shard 1 ran another plan than shard 0 (the plans differ in `space`)" in err, err
    code, out, err = run(capsys, "status", root)
    assert code == 0, err
    assert "warning: " in out and "shard 1 ran another plan than shard 0" in out, out


def test_shards_of_one_plan_are_not_said_to_differ(tmp_path, capsys):
    root = sharded_run(tmp_path / "results", 2, ran=[0, 1])
    code, out, err = run(capsys, "results", root)
    assert code == 0 and "another plan" not in err, err


def test_results_of_a_run_killed_before_its_first_trial_say_so(tmp_path, capsys):
    """Its plan marker says hpoc ran there: "or this is not an hpoc/Ray Tune experiment
    directory" sent the reader looking for another one."""
    from hpoc.plan import plan_hash
    from hpoc.runtime import marker

    plan = make_plan(tmp_path / "results", "arr")
    exp = tmp_path / "results" / "arr"
    marker.write(exp, marker.fingerprint(plan, plan_hash(plan)), 0)
    code, out, err = run(capsys, "results", exp)
    assert code == 2
    assert "a run began there but stopped before its first trial" in err, err
    assert "not an hpoc/Ray Tune experiment directory" not in err, err


def _ran(tmp_path: Path, change, shard: int) -> dict:
    """The study's plan as shard `shard`'s run had it: `change` made to it."""
    plan = make_plan(tmp_path / "results", "arr", shards=2)
    change(plan)
    return json.loads(dumps({k: v for k, v in plan.items() if k != "content_hash"}))


def _moved(plan: dict) -> None:  # the project ran at /old before an `mv` to where it is
    plan["source"]["workdir"], plan["storage"]["path"] = "/old/project", "/old/project/results"


def _more_trials(plan: dict) -> None:  # `num_samples` raised: the study extended
    plan["trials"]["num_samples"] = 20


def _time_budget(plan: dict) -> None:
    plan["trials"]["time_budget_s"] = 3600


def _walltime(plan: dict) -> None:  # a longer `slurm.time` for the array's resumed tasks
    plan["slurm"] = {"time": "48:00:00"}


def test_shards_whose_plans_differ_in_what_changes_no_trial_are_not_said_to_differ(tmp_path, capsys):
    """Shard 0 ran before the project was moved (its paths the old ones), or one shard ran
    after the study was extended: each read `ran another plan (the plans differ in `source`,
    `storage`)`, of one search, whichever shard it was."""
    for change in (_moved, _more_trials, _time_budget, _walltime):
        for shard in (0, 1):
            base = tmp_path / f"{change.__name__}-{shard}"
            root = sharded_run(base / "results", 2, ran=[0, 1], plans={shard: _ran(base, change, shard)})
            code, out, err = run(capsys, "results", root)
            assert code == 0 and "another plan" not in err, (change.__name__, shard, err)
