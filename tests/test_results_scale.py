"""Studies of thousands of trials: what `hpoc results/status/report` read and draw grows with
the trials once, not with trials x reports or trials x shards (benchmarks/big_study.py times it)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import hpoc.runtime.space as space_module
from hpoc.results import load, rank
from hpoc.results import plots as P
from hpoc.results.model import Metric, Results, Trial

from results_dirs import trial_dir


def test_a_trials_config_repeated_on_every_report_is_cleaned_once(tmp_path, monkeypatch):
    """Ray repeats the config on every result.json line: cleaning it per line made loading a
    20-epoch study 20 times the work of its trials."""
    config = {"lr": 0.1, "depth": 3}
    trial_dir(tmp_path / "exp", "aaaaa_00000", config,
              [{"val_loss": 1 / e, "config": config} for e in range(1, 21)])
    calls = []
    real = space_module.trial_config
    monkeypatch.setattr(space_module, "trial_config", lambda *a: calls.append(a) or real(*a))
    space = {"params": [{"name": "lr", "domain": "uniform", "args": {}, "condition": None},
                        {"name": "depth", "domain": "choice", "args": {}, "condition": None}],
             "constants": {}}
    from hpoc.results.load import _read_trial_dir

    trial = _read_trial_dir(next((tmp_path / "exp").iterdir()), 0, {}, space)
    assert len(trial.history) == 20 and trial.config == config
    assert trial.config_at(19) == config
    assert len(calls) <= 2  # the reports' config once, params.json at most once more


def _study(n: int, shards: int = 1) -> Results:
    trials = []
    for i in range(n):
        history = [{"training_iteration": 1, "timestamp": 1010 + i, "time_this_iter_s": 10.0,
                    "val_loss": 1 / (i + 1)}]
        trials.append(Trial(f"t{i:05d}", "ERROR" if i % 7 == 0 else "TERMINATED", {"lr": i},
                            history=history, shard=i % shards))
    from hpoc.results.model import Shard

    return Results("s", Path("."), [Metric("val_loss", "min")], trials,
                   [Shard(k, Path(f"shard-{k}"), True, n // shards, 1.0) for k in range(shards)])


def test_a_timeline_of_thousands_of_trials_is_a_few_artists():
    """A bar patch per trial took most of a 5,000-trial report's time to lay out and draw."""
    ax = P.timeline_figure(_study(2000), rank(_study(2000))).axes[0]
    assert len(ax.patches) + len(ax.collections) <= 3
    bars = sum(len(c.get_paths()) for c in ax.collections)
    assert bars == 2000


def test_the_shard_legend_of_hundreds_of_shards_stays_short():
    """200 shards made a 200-entry legend covering the plot."""
    results = _study(1000, shards=200)
    fig = P.timeline_figure(results, rank(results))
    ax = fig.axes[0]
    assert sum(len(legend.get_texts()) for legend in fig.legends) <= 12
    assert "200 shards" in ax.get_title() + ax.get_ylabel()


def _big_dir(tmp_path: Path, n: int) -> Path:
    from results_dirs import summary

    exp = tmp_path / "exp"
    for i in range(n):
        trial_dir(exp, f"aaaaa_{i:05d}", {"lr": i}, [{"val_loss": 1 / (i + 1)}],
                  error="RuntimeError: boom" if i % 10 == 9 else None)
    summary(exp, "s", [{"trial_id": f"aaaaa_{i:05d}",
                        "status": "ERROR" if i % 10 == 9 else "TERMINATED"} for i in range(n)])
    return exp


def test_the_table_of_a_big_study_shows_the_best_rows_and_says_how_to_see_the_rest(
        tmp_path, capsys):
    """5,000 trials printed 5,000 table rows: the best trial's block and the errors scrolled
    far away from the ranking's head."""
    from hpoc.cli import main

    exp = _big_dir(tmp_path, 300)
    assert main(["results", str(exp)]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if re.match(r"\s*\d+\s+aaaaa_", line)]
    assert len(rows) == 50
    assert "aaaaa_00298" in rows[0]  # the best first (00299 failed)
    assert "250 more trials not shown" in out and "--all" in out
    assert "30 trials (" in out  # the errors block still groups every failed trial
    assert main(["results", str(exp), "--all"]) == 0
    out = capsys.readouterr().out
    assert sum(bool(re.match(r"\s*\d+\s+aaaaa_", line)) for line in out.splitlines()) == 300
    assert "not shown" not in out
    assert main(["results", str(exp), "--top", "120"]) == 0
    assert "not shown" not in capsys.readouterr().out


def test_loading_looks_for_ray_state_in_experiments_not_in_each_trial(tmp_path, monkeypatch):
    """Ray saves experiment_state-*.json beside its trial directories: searching each trial's
    own directory for it was half of `hpoc status` on a study of thousands of trials (and a
    directory listing per trial is slow on a parallel file system)."""
    import importlib

    load_module = importlib.import_module("hpoc.results.load")  # `hpoc.results.load` is a function

    exp = _big_dir(tmp_path, 40)
    (exp / "experiment_state-2024.json").write_text(json.dumps({"trial_data": []}))
    looked: list[Path] = []
    real = load_module.newest_state
    monkeypatch.setattr(load_module, "newest_state", lambda p: looked.append(Path(p)) or real(p))
    assert len(load(exp).trials) == 40
    assert not [p for p in looked if p.name.startswith("trainable_")]


def test_a_report_shows_a_traceback_many_trials_share_once(tmp_path, capsys):
    """500 trials failing the same way put 500 copies of Ray's traceback (kilobytes each)
    into the report: megabytes of the same text."""
    from hpoc.cli import main
    from results_dirs import summary

    exp = tmp_path / "exp"
    frames = "".join(f'  File "/site/ray/tune/x{i}.py", line {i}, in step\n' for i in range(60))
    for i in range(40):
        trial_dir(exp, f"aaaaa_{i:05d}", {"lr": i}, [{"val_loss": 1.0}],
                  error=frames + "RuntimeError: loss diverged (nan)")
    summary(exp, "s", [{"trial_id": f"aaaaa_{i:05d}", "status": "ERROR"} for i in range(40)])
    out = tmp_path / "r.html"
    assert main(["report", str(exp), "-o", str(out), "--no-png"]) == 0
    text = out.read_text(encoding="utf-8")
    assert "<h2>Errors (40)</h2>" in text
    assert text.count("x59.py") == 1
    assert "40 trials" in text and "aaaaa_00039" in text


def test_the_pareto_front_compares_a_trial_with_the_front_not_with_every_trial(monkeypatch):
    """Two objectives that trade off put hundreds of a 5,000-trial study on the front, and
    comparing every trial with every other took seconds, three times per report."""
    import importlib
    import random

    rank_module = importlib.import_module("hpoc.results.rank")  # `hpoc.results.rank` is a function

    rng = random.Random(0)
    trials = []
    for i in range(400):
        loss = rng.random()
        trials.append(Trial(f"t{i:03d}", "TERMINATED", {}, history=[
            {"training_iteration": 1, "val_loss": loss, "latency": 1 - loss + rng.random() * 0.05}]))
    results = Results("s", Path("."), [Metric("val_loss", "min"), Metric("latency", "min")],
                      trials, [])
    calls = []
    real = rank_module._beats
    monkeypatch.setattr(rank_module, "_beats", lambda a, b: calls.append(1) or real(a, b))
    front = rank_module.pareto_front(results)
    values = {t.trial_id: (t.last["val_loss"], t.last["latency"]) for t in trials}
    expected = [t for t in trials if not any(
        o[0] <= values[t.trial_id][0] and o[1] <= values[t.trial_id][1] and o != values[t.trial_id]
        for o in values.values())]
    assert front == expected and 10 < len(front) < 400
    assert len(calls) <= len(trials) * len(front)
    assert len(calls) < len(trials) ** 2 / 4


def test_a_front_of_hundreds_of_trials_prints_its_head(tmp_path, capsys):
    """The table's 50 rows were followed by every trial of the Pareto front, hundreds of lines."""
    from hpoc.cli import main
    from results_dirs import summary

    exp = tmp_path / "exp"
    for i in range(120):  # a trade-off: every trial is on the front
        trial_dir(exp, f"aaaaa_{i:05d}", {"lr": i}, [{"val_loss": i / 100, "latency": 2 - i / 100}])
    summary(exp, "s", [{"trial_id": f"aaaaa_{i:05d}", "status": "TERMINATED"} for i in range(120)])
    (exp / "summary.json").write_text((exp / "summary.json").read_text().replace(
        '"metrics": [{"name": "val_loss", "mode": "min"}]',
        '"metrics": [{"name": "val_loss", "mode": "min"}, {"name": "latency", "mode": "min"}]'))
    assert main(["results", str(exp)]) == 0
    out = capsys.readouterr().out
    front = out[out.index("Pareto front"):]
    assert sum(line.startswith("  aaaaa_") for line in front.splitlines()) == 50
    assert "… 70 more (--all lists them" in front
    assert main(["results", str(exp), "--all"]) == 0
    front = capsys.readouterr().out.split("Pareto front", 1)[1]
    assert sum(line.startswith("  aaaaa_") for line in front.splitlines()) == 120


def test_params_json_is_not_read_when_the_reports_carry_the_config(tmp_path, monkeypatch):
    """Ray's reports repeat the config, which wins over params.json: reading params.json
    too was one more file per trial (thousands, on a parallel file system)."""
    import importlib

    load_module = importlib.import_module("hpoc.results.load")
    config = {"lr": 0.1}
    trial_dir(tmp_path / "exp", "aaaaa_00000", config, [{"val_loss": 0.5, "config": config}])
    trial_dir(tmp_path / "exp", "aaaaa_00001", config, [{"val_loss": 0.5}])  # an old Ray's
    read = []
    real = load_module._read_json
    monkeypatch.setattr(load_module, "_read_json", lambda f: read.append(f.parent.name) or real(f))
    trials = load(tmp_path / "exp").trials
    assert [t.config for t in trials] == [config, config]
    assert read == ["trainable_aaaaa_00001_1_lr=0.1"]


def test_a_failed_trials_outline_does_not_paint_over_its_neighbours_rows():
    """Thousands of rows are a fraction of a point each: the failed bars' 1.2 pt red outline
    covered the rows around them, and a study with 1 in 7 failed looked all red."""
    results = _study(2000)
    fig = P.timeline_figure(results, rank(results))
    ax = fig.axes[0]
    row_pt = ax.get_position().height * fig.get_figheight() * 72 / 2000
    (failed,) = [c for c in ax.collections if c.get_label() == "error"]
    assert not failed.get_hatch()  # a row of a fraction of a point has no room for one
    assert max(failed.get_linewidths()) <= row_pt


def test_status_of_hundreds_of_shards_reads_the_trials_once_not_once_per_shard(tmp_path, monkeypatch):
    """Each shard's row filtered the whole study's trials: 200 shards read them 200 times."""
    import hpoc.results
    from hpoc.commands import status

    study = _study(2000, shards=200)
    passes = []

    class Trials(list):
        def __iter__(self):
            passes.append(1)
            return super().__iter__()

    study.trials = Trials(study.trials)
    monkeypatch.setattr(hpoc.results, "load", lambda exp: study)
    got = status.gather_dir(tmp_path)
    assert len(got["shards"]) == 200 and got["totals"]["done"] + got["totals"]["errored"] == 2000
    assert [s["trials"] for s in got["shards"]] == [10] * 200
    assert len(passes) <= 2, len(passes)  # grouped by shard, and the best of all
