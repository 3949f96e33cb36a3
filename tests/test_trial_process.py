"""What a trial process does before and around the trainer (hpoc/runtime/trial.py,
pool_worker.py), tested without starting Ray."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from hpoc.runtime import pipeline, report, trial
from hpoc.runtime.trainer import Trainer, TrialInfo
from runtime_plans import make_plan, write_toy


@pytest.fixture
def elsewhere(tmp_path, monkeypatch):
    """The process starts in another directory (as Ray's workers do); torch's thread count
    and the report mode are put back afterwards."""
    here = tmp_path / "elsewhere"
    here.mkdir()
    monkeypatch.chdir(here)
    threads = torch.get_num_threads()
    yield here
    torch.set_num_threads(threads)
    report.set_mode("local")


def _fake_tune(monkeypatch, trial_fs_path):
    import ray.tune

    def storage():
        if trial_fs_path is None:
            raise RuntimeError("no storage context")
        return SimpleNamespace(trial_fs_path=trial_fs_path)

    ctx = SimpleNamespace(get_trial_id=lambda: "ab12", get_trial_name=lambda: "t00003_ab12",
                          get_storage=storage)
    monkeypatch.setattr(ray.tune, "get_context", lambda: ctx)
    return ctx


def test_every_trial_runs_in_the_study_directory_and_knows_its_own_directory(tmp_path, elsewhere,
                                                                            monkeypatch):
    from hpoc.runtime.pool_worker import TrialScope

    workdir = write_toy(tmp_path / "study")
    (workdir / "widths.json").write_text("[8]")
    (workdir / "reader.py").write_text(  # reads a relative file when imported
        "import json\nfrom toy import ToyTrainer\nWIDTHS = json.load(open('widths.json'))\n"
        "class ReadingTrainer(ToyTrainer):\n    pass\n")
    plan = make_plan(workdir, tmp_path / "results",
                     pipeline={"trainer": {"target": "reader:ReadingTrainer", "args": {}}})
    exp = tmp_path / "results" / "toy"
    seen = []
    monkeypatch.setattr(trial, "run_trainer", lambda plan, cfg, data, reporter, info, **kw:
                        seen.append((os.getcwd(), info)))

    pipeline.check_imports(plan)  # the driver imports the trainer's module there too
    assert os.getcwd() == str(elsewhere)

    # a one-worker trial (in Tune's trial process)
    _fake_tune(monkeypatch, str(exp / "trial_00003_ab12"))
    trial.tune_trial({"lr": 0.01, "hidden": 8}, plan, [None], str(exp), 0)
    cwd, info = seen[-1]
    assert cwd == str(workdir)
    assert info.dir == str(exp / "trial_00003_ab12") and Path(info.dir).is_dir()
    # the same directory when Ray gives no storage context
    assert trial.trial_storage_dir(_fake_tune(monkeypatch, None), str(exp)) == info.dir

    # a Ray Train worker of a multi-worker trial
    os.chdir(elsewhere)
    trial.train_worker({"plan": plan, "config": {}, "data_ref": [None], "trial": dict(info.__dict__)})
    assert seen[-1] == (str(workdir), info)

    # a warm pool worker
    os.chdir(elsewhere)
    with TrialScope(str(workdir)):
        assert os.getcwd() == str(workdir)
    assert os.getcwd() == str(elsewhere)

    # and the trainer sees its own directory
    trainer = Trainer()
    trainer.bind(config={}, strategy=None, reporter=None, trial=info)
    assert trainer.trial_dir == Path(info.dir)
    trainer.bind(config={}, strategy=None, reporter=None, trial=TrialInfo())
    assert trainer.trial_dir is None
