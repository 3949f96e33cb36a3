"""Studies of thousands of trials: what `hpoc results/status/report` read and draw grows with
the trials once, not with trials x reports or trials x shards (benchmarks/big_study.py times it)."""

from __future__ import annotations

import json
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
