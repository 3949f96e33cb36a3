"""Population-based schedulers (PBT): trials take over each other's checkpoints with new
hyperparameters, and the trainer must train with those, not with the donor's."""

from __future__ import annotations

import io
import json
import re
import textwrap
from pathlib import Path

import pytest
import torch

from hpoc.compiler import compile_source
from hpoc.runtime.study import EXIT_OK, RunOptions, run_study
from hpoc.runtime.trainer import _apply_optimizer_settings, _optimizer_settings
from runtime_plans import write_toy

LR_TRAINER = textwrap.dedent('''
    from toy import ToyTrainer


    class LrTrainer(ToyTrainer):
        """Reports the learning rate its optimizer really used in each epoch."""

        def train_epoch(self, epoch):
            metrics = super().train_epoch(epoch)
            metrics["lr_used"] = self.optimizer.param_groups[0]["lr"]
            metrics["momentum_used"] = self.optimizer.param_groups[0]["momentum"]
            return metrics
''')

SPEC = '''study "pop"
pipeline {
  getter   = toy:ToyGetter
  splitter = toy:ToySplitter
  trainer  = lr_trainer:LrTrainer
}
space {
  lr         = loguniform(1e-3, 3e-1)
  momentum   = uniform(0.1, 0.9)
  optimizer  = "sgd"
  epochs     = 6
  batch_size = 32
}
objective maximize val_accuracy
trials { num_samples = 4 }
search random { seed = 3 }
scheduler pbt {
  perturbation_interval = 2
  quantile_fraction     = 0.5
  synch                 = true   # all four reach each perturbation: an exploit is certain
  hyperparam_mutations { lr = loguniform(1e-3, 3e-1), momentum = [0.2, 0.5, 0.8] }
}
resources { cpus_per_worker = 0.5 }
checkpoint { keep = 4 }
storage { path = "results", name = "pop" }
'''


def _study(tmp_path: Path, spec: str) -> dict:
    """The plan of `spec` on the toy study, with the LrTrainer beside it."""
    workdir = write_toy(tmp_path / "study")
    (workdir / "lr_trainer.py").write_text(LR_TRAINER, encoding="utf-8")
    plan = compile_source(spec, "study.hpo", str(workdir))
    plan["storage"]["path"] = str(tmp_path / "results")
    return plan


def _run(plan: dict, num_cpus: int = 2) -> tuple[int, str]:
    progress, out = io.StringIO(), io.StringIO()
    code = run_study(plan, RunOptions(local=True, num_cpus=num_cpus, progress=progress, out=out))
    return code, progress.getvalue() + out.getvalue()


@pytest.mark.ray
def test_pbt_trials_train_with_their_mutated_hyperparameters(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    # One perturbation (at epoch 2) makes the exploits asserted here; a second one only
    # paused and restarted all four trials again.
    spec = SPEC.replace("epochs     = 6", "epochs     = 4")
    assert "epochs     = 4" in spec
    code, text = _run(_study(tmp_path, spec))
    assert code == EXIT_OK, text
    exp = tmp_path / "results" / "pop"
    # Two of four trials are in the lower half at each perturbation: they exploit.
    exploits = [json.loads(line) for line in (exp / "pbt_global.txt").read_text().splitlines()]
    assert exploits
    summary = json.loads((exp / "summary.json").read_text())
    assert summary["num_trials"] == 4 and summary["status_counts"] == {"TERMINATED": 4}
    dirs = sorted(Path(t["path"]).name for t in summary["trials"])
    assert [d.split("_")[1] for d in dirs] == ["00000", "00001", "00002", "00003"], dirs
    changed = 0
    for trial in summary["trials"]:
        rows = [json.loads(line) for line in (Path(trial["path"]) / "result.json").read_text().splitlines()]
        epochs = [r["epoch"] for r in rows]  # an exploit goes on from the donor's epoch
        assert epochs[0] == 1 and epochs == sorted(set(epochs)) and epochs[-1] <= 4, epochs
        assert epochs[-1] == trial["metrics"]["epoch"], (epochs, trial["metrics"])  # no row lost
        for row in rows:  # every epoch trained with the config Tune recorded for it
            assert row["lr_used"] == pytest.approx(row["config"]["lr"]), row
            assert row["momentum_used"] == pytest.approx(row["config"]["momentum"]), row
            assert "__hpoc_trial" not in trial["config"]
        changed += len({r["config"]["lr"] for r in rows}) > 1
    assert changed, "no trial's learning rate was mutated"


@pytest.mark.ray
def test_pbt_exploits_multi_worker_trials(tmp_path: Path, monkeypatch) -> None:
    """Two-worker trials (`reuse_workers` left to its default, true under PBT): their
    checkpoints must reach Tune, or PBT has nothing to clone."""
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    # Two trials are a population: under `synch` the lower one exploits the upper one at
    # epoch 2 for certain, and half the worker processes of four start on these two cores.
    spec = (SPEC.replace("epochs     = 6", "epochs     = 4")
            .replace("trials { num_samples = 4 }", "trials { num_samples = 2 }")
            .replace("resources { cpus_per_worker = 0.5 }", "resources { workers = 2, cpus_per_worker = 0.5 }"))
    assert "num_samples = 2" in spec and "workers = 2" in spec
    code, text = _run(_study(tmp_path, spec))
    assert code == EXIT_OK, text
    exp = tmp_path / "results" / "pop"
    assert (exp / "pbt_global.txt").is_file(), "PBT never exploited"
    summary = json.loads((exp / "summary.json").read_text())
    assert summary["status_counts"] == {"TERMINATED": 2}
    changed = 0
    for trial in summary["trials"]:
        rows = [json.loads(line) for line in (Path(trial["path"]) / "result.json").read_text().splitlines()]
        assert [r["epoch"] for r in rows] == [1, 2, 3, 4], rows
        for row in rows:
            assert row["lr_used"] == pytest.approx(row["config"]["lr"]), row
        changed += len({r["config"]["lr"] for r in rows}) > 1
    assert changed, "no trial's learning rate was mutated"


def _sgd(lr: float, momentum: float, scheduler: bool):
    model = torch.nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5) if scheduler else None
    return opt, sched


def test_new_hyperparameters_replace_the_loaded_ones() -> None:
    donor, _ = _sgd(0.1, 0.9, scheduler=False)
    opt, _ = _sgd(0.01, 0.5, scheduler=False)
    fresh = _optimizer_settings(opt)
    opt.load_state_dict(donor.state_dict())
    assert opt.param_groups[0]["lr"] == 0.1  # what loading alone does
    _apply_optimizer_settings(opt, None, fresh)
    assert opt.param_groups[0]["lr"] == 0.01 and opt.param_groups[0]["momentum"] == 0.5


def test_without_an_lr_scheduler_a_new_learning_rate_keeps_the_donors_factor() -> None:
    """A scheduler that keeps no `initial_lr` (ReduceLROnPlateau), or lr changed by hand:
    the factor is the loaded lr over the lr the donor's optimizer was built with."""
    donor, _ = _sgd(0.1, 0.9, scheduler=False)
    donor.param_groups[0]["lr"] = 0.025
    opt, _ = _sgd(0.12, 0.5, scheduler=False)
    fresh = _optimizer_settings(opt)
    opt.load_state_dict(donor.state_dict())
    _apply_optimizer_settings(opt, None, fresh, [0.1])
    assert opt.param_groups[0]["lr"] == pytest.approx(0.03) and opt.param_groups[0]["momentum"] == 0.5
    opt.load_state_dict(donor.state_dict())
    _apply_optimizer_settings(opt, None, fresh, None)  # a checkpoint from before: as it was
    assert opt.param_groups[0]["lr"] == 0.12


def test_a_new_learning_rate_keeps_its_place_in_the_schedule() -> None:
    donor, donor_sched = _sgd(0.1, 0.9, scheduler=True)
    for _ in range(2):
        donor.step()
        donor_sched.step()  # 0.1 -> 0.025: a quarter of the base
    opt, sched = _sgd(0.04, 0.9, scheduler=True)
    fresh = _optimizer_settings(opt)
    opt.load_state_dict(donor.state_dict())
    sched.load_state_dict(donor_sched.state_dict())
    _apply_optimizer_settings(opt, sched, fresh)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.01)
    assert sched.base_lrs == [0.04]
    opt.step()
    sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.005)  # the schedule goes on from there


PLATEAU_TRAINER = textwrap.dedent('''
    import torch
    from toy import ToyTrainer


    class PlateauTrainer(ToyTrainer):
        """Halves its learning rate after every epoch (a plateau that never improves)."""

        def create_lr_scheduler(self, optimizer, config):
            return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=0, threshold=10.0)

        def train_epoch(self, epoch):
            metrics = super().train_epoch(epoch)
            metrics["lr_used"] = self.optimizer.param_groups[0]["lr"]
            return metrics
''')


def test_reduce_lr_on_plateau_keeps_its_reductions_through_an_exploit(tmp_path: Path) -> None:
    """The default loop called ReduceLROnPlateau's `step()` without the loss it watches
    (TypeError). And an exploit put the new lr in as it was: the donor's reductions were
    dropped (0.0125 became 0.12, not 0.015) while the plateau's state stayed the donor's."""
    import shutil

    from hpoc.runtime import pipeline

    workdir = write_toy(tmp_path / "study")
    (workdir / "plateau.py").write_text(PLATEAU_TRAINER, encoding="utf-8")
    data = (torch.randn(96, 8), torch.randint(0, 3, (96,))), (torch.randn(32, 8), torch.randint(0, 3, (32,)))
    trainer = pipeline.import_target("plateau:PlateauTrainer", str(workdir))
    donor = trainer().run_local({"lr": 0.1, "epochs": 3, "batch_size": 32}, data, directory=tmp_path / "donor")
    assert [r["lr_used"] for r in donor] == pytest.approx([0.1, 0.05, 0.025])  # then 0.0125
    own = tmp_path / "exploiting"
    shutil.copytree(tmp_path / "donor" / "checkpoint_000002", own / "checkpoint_000000")
    rows = trainer().run_local({"lr": 0.12, "epochs": 5, "batch_size": 32}, data, directory=own)  # PBT's 1.2
    assert [r["epoch"] for r in rows] == [4, 5]
    assert [r["lr_used"] for r in rows] == pytest.approx([0.015, 0.0075])


class _RestartingTrial:
    """What Ray's loggers look at when a trial with a checkpoint starts again."""

    def __init__(self, staging: Path, storage: Path) -> None:
        import pyarrow.fs

        self.trial_id, self.status, self.config = "abcde_00000", "PENDING", {"lr": 0.1}
        self.checkpoint, self.max_failures = object(), 0
        self.local_path, self.path = str(staging), str(storage)
        self.storage = type("S", (), {"trial_fs_path": str(storage),
                                      "storage_filesystem": pyarrow.fs.LocalFileSystem()})()

    def init_local_path(self) -> None:
        Path(self.local_path).mkdir(parents=True, exist_ok=True)


@pytest.mark.ray
def test_a_paused_trial_keeps_the_reports_made_since_the_last_save(tmp_path: Path) -> None:
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

    from hpoc.runtime.watch import _make_events

    staging, storage = tmp_path / "staging", tmp_path / "storage"
    staging.mkdir()
    storage.mkdir()
    rows = "".join(json.dumps({"training_iteration": i, "val_loss": 1.0 / i}) + "\n" for i in (1, 2))
    (staging / "result.json").write_text(rows)
    (storage / "result.json").write_text("")  # Tune saved the experiment before any report
    trial = _RestartingTrial(staging, storage)
    # PBT (synch) pauses the trial after epoch 2 and starts it again before the next save:
    # hpoc's callbacks run before Ray's loggers, which copy the storage's file back.
    _make_events().on_trial_start(0, [trial], trial)
    JsonLoggerCallback().on_trial_start(0, [trial], trial)
    CSVLoggerCallback().on_trial_start(0, [trial], trial)
    assert (staging / "result.json").read_text() == rows
    assert (storage / "result.json").read_text() == rows


@pytest.mark.ray
def test_a_restored_run_keeps_the_config_an_exploit_gave(tmp_path: Path) -> None:
    """Tune rebuilds a restored trial's config from its unresolved one (the sample_from
    placeholders of space.fixed_trials): an exploited trial went back to its first config."""
    import copy as _copy

    from ray.tune.experiment import Trial
    from ray.tune.impl.placeholder import create_resolvers_map, inject_placeholders

    from hpoc.runtime import space as sp
    from hpoc.runtime.search import make_scheduler, make_searcher

    plan = compile_source(SPEC.replace("lr_trainer:LrTrainer", "toy:ToyTrainer"), "study.hpo",
                          str(write_toy(tmp_path / "study")))
    _, param_space, _ = make_searcher(plan)
    resolvers = create_resolvers_map()
    unresolved = inject_placeholders(_copy.deepcopy(param_space), resolvers)
    assert resolvers  # the placeholders Tune resolves again on restore

    def trial(index: int) -> Trial:  # as BasicVariantGenerator makes them
        from ray.tune import PlacementGroupFactory

        t = Trial("__fake", stub=True, trial_id=f"t{index}",
                  config={**unresolved, sp.TRIAL_KEY: index},
                  placement_group_factory=PlacementGroupFactory([{"CPU": 1}]))
        t.resolve_config_placeholders(resolvers)
        t.set_status(Trial.PAUSED)
        return t

    weak, strong = trial(0), trial(1)
    first = dict(weak.config)
    pbt = make_scheduler(plan)
    pbt._log_config = False  # pbt_policy files need a storage
    controller = type("C", (), {"search_alg": None})()
    for t, score in ((weak, 0.1), (strong, 0.9)):
        pbt.on_trial_add(controller, t)
        pbt._trial_state[t].last_score = score
    from ray.train import Checkpoint

    saved = tmp_path / "trial_1" / "checkpoint_000002"
    saved.mkdir(parents=True)
    pbt._trial_state[strong].last_checkpoint = Checkpoint(str(saved))  # there is one to clone
    pbt._exploit(controller, weak, strong)  # synch: paused trials are not paused again
    exploited = dict(weak.config)
    assert exploited[sp.TRIAL_KEY] == 1 and exploited != first

    # What a restored run does: the trial comes back from the saved experiment state, and
    # TuneController.add_trial rebuilds its config, then hands it to the scheduler.
    restored = Trial.__new__(Trial)
    restored.__dict__.update(json.loads(weak.get_json_state()[0]))
    restored.run_metadata = weak.run_metadata  # saved beside the state
    restored.resolve_config_placeholders(resolvers)
    assert restored.config == first  # Tune's rebuild: the config before the exploit
    make_scheduler(plan).on_trial_add(controller, restored)
    assert restored.config == exploited


@pytest.mark.ray
def test_a_restored_run_without_a_seed_keeps_the_configs_its_trials_trained_with(tmp_path: Path) -> None:
    """Tune rebuilds restored trials' configs with the restoring run's placeholders: without
    `search { seed }` its sampler draws with a new seed, and every restored trial (not only
    exploited ones) resumed its checkpoint with a config it had never trained with."""
    import copy as _copy

    from ray.tune import PlacementGroupFactory
    from ray.tune.experiment import Trial
    from ray.tune.impl.placeholder import create_resolvers_map, inject_placeholders

    from hpoc.runtime import space as sp
    from hpoc.runtime.search import make_scheduler, make_searcher

    plan = compile_source(SPEC.replace("lr_trainer:LrTrainer", "toy:ToyTrainer").replace("search random { seed = 3 }\n", ""),
                          "study.hpo", str(write_toy(tmp_path / "study")))
    assert not (plan["search"]["options"] or {}).get("seed")

    def resolvers_and_unresolved():  # what each run (first, restoring) hands Tune
        _, param_space, _ = make_searcher(plan)
        resolvers = create_resolvers_map()
        return resolvers, inject_placeholders(_copy.deepcopy(param_space), resolvers)

    first_run, restoring_run = resolvers_and_unresolved(), resolvers_and_unresolved()
    resolvers, unresolved = first_run
    trial = Trial("__fake", stub=True, trial_id="t0", config={**unresolved, sp.TRIAL_KEY: 0},
                  placement_group_factory=PlacementGroupFactory([{"CPU": 1}]))
    trial.resolve_config_placeholders(resolvers)  # TuneController.add_trial, then the scheduler
    controller = type("C", (), {"search_alg": None})()
    make_scheduler(plan).on_trial_add(controller, trial)
    trained = dict(trial.config)

    restored = Trial.__new__(Trial)
    restored.__dict__.update(json.loads(trial.get_json_state()[0]))
    restored.run_metadata = trial.run_metadata
    restored.resolve_config_placeholders(restoring_run[0])
    assert restored.config != trained  # the new seed's draw (what Tune alone resumed with)
    make_scheduler(plan).on_trial_add(controller, restored)
    assert restored.config == trained


def test_pbt_keeps_the_latest_checkpoints_not_the_best(tmp_path: Path) -> None:
    """An exploiting trial loads the donor's latest checkpoint once it gets a CPU; keeping
    the best ones deleted a latest one that scored worse meanwhile (the trial errored with
    "Could not recover from checkpoint as it does not exist on storage anymore")."""
    workdir = write_toy(tmp_path / "study")
    plan = compile_source(SPEC.replace("checkpoint { keep = 4 }\n", ""), "study.hpo", str(workdir))
    assert plan["checkpoint"]["keep"] == 4 and plan["checkpoint"]["score_attribute"] is None
    chosen = compile_source(SPEC.replace("checkpoint { keep = 4 }", "checkpoint { score_attribute = val_accuracy }"),
                            "study.hpo", str(workdir))
    assert chosen["checkpoint"]["score_attribute"] == "val_accuracy"  # the user's choice stands
    asha = compile_source(SPEC.split("scheduler pbt")[0] + "scheduler asha { max_t = 6 }\n"
                          + SPEC.split("resources {")[1].join(["resources {", ""]), "study.hpo", str(workdir))
    assert asha["checkpoint"]["score_attribute"] == "val_accuracy"


def test_an_interrupted_synchronous_population_is_not_resumed_to_hang(tmp_path: Path, monkeypatch,
                                                                     capsys) -> None:
    """Restored synch PBT trials, each at its own epoch, waited for one another forever
    ("0 running | 4 pending" for good): the run says so and stops instead."""
    from hpoc.runtime import study

    plan = _study(tmp_path, SPEC)
    monkeypatch.setattr(study, "prior_run", lambda *a, **k: "restore")
    code, text = _run(plan, num_cpus=1)
    text += capsys.readouterr().err
    assert code == study.EXIT_SPEC, text
    assert "synch = true" in text and "--fresh" in text and "Traceback" not in text
    assert not (tmp_path / "results" / "pop" / ".hpoc-run.json").exists()  # the lock is let go


def test_pbt_mutates_choices_and_conditional_parameters_of_the_space():
    """Default mutations of a space with a `choice` and a conditional parameter: PBT
    multiplied the category by 1.2 and the inactive parameter's None (TypeError: the run
    ended with an internal error at the first exploit)."""
    import random

    from ray.tune.schedulers.pbt import _explore

    from hpoc.runtime import search, space as sp

    spec = SPEC.replace('''  lr         = loguniform(1e-3, 3e-1)
  momentum   = uniform(0.1, 0.9)
  optimizer  = "sgd"''', '''  optimizer {
    name     = choice("sgd", "adam")
    lr       = loguniform(1e-3, 1e-1)
    momentum = uniform(0.1, 0.9) if name == "sgd"
  }''').replace("hyperparam_mutations { lr = loguniform(1e-3, 3e-1), momentum = [0.2, 0.5, 0.8] }", "")
    plan = compile_source(spec, "study.hpo", "/tmp")
    pbt = search.make_scheduler(plan)
    assert pbt._hyperparam_mutations["optimizer.name"] == ["sgd", "adam"]
    _, param_space, n = search.make_searcher(plan)
    picks = {k: v for k, v in param_space.items() if k != sp.TRIAL_KEY}
    configs = [{k: v.func(type("Spec", (), {"config": {sp.TRIAL_KEY: i}})()) for k, v in picks.items()}
               for i in range(n)]
    adam = [c for c in configs if c["optimizer.name"] == "adam"]
    assert adam and all(isinstance(c["optimizer.momentum"], float) for c in configs), configs
    assert "momentum" not in sp.trial_config(adam[0], plan["space"])["optimizer"]  # still inactive
    random.seed(0)
    for config in configs * 5:
        new, _ = _explore(config, pbt._hyperparam_mutations, 0.25, [1.2, 0.8], None)
        assert new["optimizer.name"] in ("sgd", "adam")
        if new["optimizer.name"] == "sgd":
            assert isinstance(sp.trial_config(new, plan["space"])["optimizer"]["momentum"], float)


def test_the_summary_gives_the_config_a_trials_last_result_was_trained_with():
    """An exploit at a trial's last epoch gives it a new config it never trains with; its
    metrics are those of the config in its last result."""
    from types import SimpleNamespace

    from hpoc.runtime.summary import trial_entry

    space = {"params": [{"name": "lr", "domain": "uniform", "args": {"lower": 0, "upper": 1},
                         "condition": None}], "constants": {"epochs": 6}}
    trial = SimpleNamespace(trial_id="t", status="TERMINATED", config={"lr": 0.9},
                            last_result={"val_accuracy": 0.5, "epoch": 6, "config": {"lr": 0.1}},
                            path=None, local_path=None, error_file=None, error_msg=None)
    assert trial_entry(trial, space)["config"] == {"epochs": 6, "lr": 0.1}


def test_a_trial_at_its_last_epoch_is_not_exploited(tmp_path: Path, monkeypatch) -> None:
    """An exploit after a trial's last epoch gave it a config it never trained and restarted
    it for nothing (`hpoc results` then said "stopped early")."""
    from types import SimpleNamespace

    from ray.train import Checkpoint
    from ray.tune import schedulers as S

    from hpoc.runtime.search import make_scheduler

    class Trial(SimpleNamespace):
        __hash__ = object.__hash__

    cloned = []
    monkeypatch.setattr(S.PopulationBasedTraining, "_exploit", lambda self, ctl, trial, donor: cloned.append(trial))
    saved = tmp_path / "trial_1" / "checkpoint_000004"
    saved.mkdir(parents=True)
    plan = _study(tmp_path, SPEC)
    for spec, final in ((SPEC, 6), (SPEC.replace("epochs     = 6", "epochs     = choice(3, 8)"), None)):
        plan = compile_source(spec, "study.hpo", plan["source"]["workdir"])
        pbt = make_scheduler(plan)
        assert pbt.hpoc_epochs == final
        for epochs, epoch, exploited in ((6, 4, True), (6, 6, False), (8, 6, True), (3, 3, False)):
            if final is not None and epochs != final:
                continue
            trial = Trial(trial_id="t0", config={"lr": 0.1, "epochs": epochs} if final is None else {"lr": 0.1},
                          path=str(tmp_path / "trial_0"))
            donor = Trial(trial_id="t1", checkpoint=None)
            pbt._trial_state = {
                trial: SimpleNamespace(last_result={"epoch": epoch, "config": trial.config}),
                donor: SimpleNamespace(last_checkpoint=Checkpoint(str(saved))),
            }
            cloned.clear()
            pbt._exploit(None, trial, donor)
            assert (cloned == [trial]) == exploited, (spec, epochs, epoch)


@pytest.mark.ray
def test_pbt_trials_train_on_the_declared_grid(tmp_path: Path, monkeypatch) -> None:
    """PBT multiplied a quantised value by 1.2 or 0.8 (`ratio` 0.3 became 0.36000000000000004,
    `hidden` 16 became 19) or resampled it as 0.30000000000000004: every config a trial
    trains with must be one the space declares. (`units` is no layer's size: PBT cannot
    copy weights across a change of shape.)"""
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    spec = (SPEC.replace("epochs     = 6", "epochs     = 4")  # one perturbation, at epoch 2
            .replace("  batch_size = 32\n", "  batch_size = 32\n  units = qrandint(8, 32, 8)\n"
                         "  ratio = quniform(0.1, 0.9, 0.1)\n")
            .replace("  hyperparam_mutations { lr = loguniform(1e-3, 3e-1), momentum = [0.2, 0.5, 0.8] }\n", ""))
    code, text = _run(_study(tmp_path, spec))
    assert code == EXIT_OK, text
    summary = json.loads((tmp_path / "results" / "pop" / "summary.json").read_text())
    configs = [json.loads(line)["config"] for trial in summary["trials"]
               for line in (Path(trial["path"]) / "result.json").read_text().splitlines()]
    assert len({(c["units"], c["ratio"]) for c in configs}) > 4, "nothing was mutated"  # 4 drawn
    for c in configs:
        assert type(c["units"]) is int and c["units"] in (8, 16, 24, 32), c
        assert c["ratio"] in (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9), c
        assert 1e-3 <= c["lr"] <= 3e-1 and 0.1 <= c["momentum"] <= 0.9, c


def _exploit_locally(tmp_path: Path, donor_config: dict, config: dict, strategy=lambda: None) -> list[dict]:
    """What an exploit does, without Ray: a trial of `config` restores the checkpoint the
    donor, of `donor_config`, saved at its second epoch (each trial under a `strategy()`)."""
    import shutil

    from hpoc.runtime import pipeline

    workdir = write_toy(tmp_path / "study")
    data = (torch.randn(96, 8), torch.randint(0, 3, (96,))), (torch.randn(32, 8), torch.randint(0, 3, (32,)))
    trainer = pipeline.import_target("toy:ToyTrainer", str(workdir))
    trainer().run_local({**donor_config, "epochs": 2, "batch_size": 32}, data, directory=tmp_path / "donor",
                        strategy=strategy())
    own = tmp_path / "exploiting"
    shutil.copytree(tmp_path / "donor" / "checkpoint_000001", own / "checkpoint_000000")
    return trainer().run_local({**config, "epochs": 4, "batch_size": 32}, data, directory=own, strategy=strategy())


def test_an_exploit_whose_weights_do_not_fit_the_mutated_model_fails_the_trial(tmp_path: Path) -> None:
    """PBT mutated `hidden`: the donor's weights did not fit the trial's model, the load
    read as an unreadable checkpoint and the trial silently started over (epochs 1, 2, 1,
    2, 3, 4) under PBT's clock: not PBT. It fails, saying which change PBT cannot make."""
    from hpoc.runtime.trainer import TrainerError

    with pytest.raises(TrainerError) as failed:
        _exploit_locally(tmp_path, {"lr": 0.1, "hidden": 8}, {"lr": 0.12, "hidden": 16})
    message = str(failed.value)
    assert "exploit (epochs 2 → 4, hidden 8 → 16, lr 0.1 → 0.12)" in message, message
    assert "size mismatch" in message and "hyperparam_mutations" in message, message


def _deepspeed_exploits(_rank, port, out):
    import os

    import torch.distributed as dist

    from hpoc.runtime.strategy import Strategy
    from hpoc.runtime.trainer import TrainerError

    for key in ("LOCAL_RANK", "RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        os.environ.pop(key, None)
    dist.init_process_group("gloo", rank=0, world_size=1, init_method=f"tcp://127.0.0.1:{port}")
    said = {}
    for stage in (2, 3):
        try:
            _exploit_locally(Path(out) / f"zero{stage}", {"lr": 0.1, "hidden": 8}, {"lr": 0.12, "hidden": 16},
                             lambda: Strategy.create("deepspeed", deepspeed={"zero_stage": stage}))
        except TrainerError as exc:
            said[stage] = str(exc)
    torch.save(said, Path(out) / "said.pt")


@pytest.mark.slow  # four DeepSpeed engines
def test_an_exploit_whose_weights_do_not_fit_fails_the_trial_under_deepspeed_too(tmp_path: Path) -> None:
    """DeepSpeed's load failed (ZeRO-2: torch's size mismatch; ZeRO-3: "The size of tensor a
    (...) must match"), which read as an unreadable checkpoint: the trial started over."""
    pytest.importorskip("deepspeed")
    import torch.multiprocessing as mp

    from hpoc.runtime.report import free_port

    mp.spawn(_deepspeed_exploits, args=(free_port(), str(tmp_path)), nprocs=1, join=True)
    said = torch.load(tmp_path / "said.pt")
    assert set(said) == {2, 3}, said
    for message in said.values():
        assert "exploit (epochs 2 → 4, hidden 8 → 16, lr 0.1 → 0.12)" in message, message
        assert "torch: size mismatch for 0.weight" in message and "hyperparam_mutations" in message, message


def test_an_exploit_that_keeps_the_models_shape_goes_on_from_the_donors_epoch(tmp_path: Path) -> None:
    rows = _exploit_locally(tmp_path, {"lr": 0.1, "hidden": 8}, {"lr": 0.12, "hidden": 8})
    assert [r["epoch"] for r in rows] == [3, 4]


@pytest.mark.ray
def test_pbt_says_once_that_an_exploit_cannot_copy_weights_across_a_change_of_shape(tmp_path: Path,
                                                                                   monkeypatch) -> None:
    """The exploiting trial of a mutated `hidden` started over from epoch 1 without a word
    (its epochs came out as 1, 2, 1, 2, 3, 4). It fails with the reason, said once."""
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    spec = (SPEC.replace("epochs     = 6", "epochs     = 4")
            .replace("trials { num_samples = 4 }", "trials { num_samples = 2 }")
            .replace("  batch_size = 32\n", "  batch_size = 32\n  hidden = choice(8, 12)\n")
            .replace("hyperparam_mutations { lr = loguniform(1e-3, 3e-1), momentum = [0.2, 0.5, 0.8] }",
                     "hyperparam_mutations { lr = loguniform(1e-3, 3e-1), hidden = [16] }"))
    assert "hidden = [16]" in spec and "num_samples = 2" in spec
    _, text = _run(_study(tmp_path, spec))  # it ends: the other trial no longer waits for it
    summary = json.loads((tmp_path / "results" / "pop" / "summary.json").read_text())
    assert summary["status_counts"] == {"ERROR": 1, "TERMINATED": 1}, summary["status_counts"]
    failed = next(t for t in summary["trials"] if t["status"] == "ERROR")
    assert re.search("hidden (8|12) → 16", json.dumps(failed, ensure_ascii=False)), failed
    rows = [json.loads(line) for line in (Path(failed["path"]) / "result.json").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2], rows  # not trained again from scratch
    assert len(re.findall(r"cannot copy weights across this exploit \(hidden (8|12) → 16, lr ", text)) == 1, text


def test_a_trials_own_checkpoint_that_no_longer_fits_its_model_is_skipped(tmp_path: Path) -> None:
    """Not an exploit (the config is the trial's own): the model's code changed between
    runs. Skipped as before, with a line that says why, and the trial starts over."""
    from hpoc.runtime import pipeline

    workdir = write_toy(tmp_path / "study")
    (workdir / "wider.py").write_text("from torch import nn\nfrom toy import ToyTrainer\n\n\nclass Wider(ToyTrainer):\n"
                                      "    def create_model(self, config):\n"
                                      "        return nn.Sequential(nn.Linear(8, 24), nn.ReLU(), nn.Linear(24, 3))\n")
    data = (torch.randn(96, 8), torch.randint(0, 3, (96,))), (torch.randn(32, 8), torch.randint(0, 3, (32,)))
    config = {"lr": 0.1, "hidden": 8, "epochs": 3, "batch_size": 32}
    pipeline.import_target("toy:ToyTrainer", str(workdir))().run_local({**config, "epochs": 3}, data,
                                                                         directory=tmp_path / "t", keep=1)
    (tmp_path / "t" / "result.jsonl").unlink()
    rows = pipeline.import_target("wider:Wider", str(workdir))().run_local(config, data, directory=tmp_path / "t")
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert "does not fit the model (Missing key(s)" in (tmp_path / "t" / "hpoc-checkpoints.log").read_text()
