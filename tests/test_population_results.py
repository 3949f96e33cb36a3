"""What the user sees of a PBT/PB2 study: a trial's config changes while it runs (an exploit
copies another trial's config and checkpoint), and hpoc's internal `__hpoc_trial` key rides
in every config Ray records. Hand-made directories as Ray leaves them (no Ray needed)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from types import SimpleNamespace

from hpoc.cli import main
from hpoc.runtime import summary as summary_mod
from hpoc.runtime.progress import counts

from results_fixtures import make_plan, write_plan

# `momentum` (if optimizer.name == "sgd" in a spec) is inactive: PBT configs still carry a
# value for it (space.SpaceSamplerCore.full_config), which only the plan can tell apart.
A = {"__hpoc_trial": 0, "batch_size": 32, "optimizer.name": "adam", "optimizer.lr": 0.01,
     "dropout": 0.1, "optimizer.momentum": 0.9}
B = {**A, "__hpoc_trial": 1, "optimizer.lr": 0.05, "dropout": 0.3}
B_EXPLOITS_A = {**A, "optimizer.lr": 0.02}     # B took A's checkpoint at epoch 2, lr perturbed
NEVER_TRAINED = {**A, "optimizer.lr": 0.0001}  # an exploit after B's last epoch


def _trial(exp: Path, trial_id: str, reports: list[tuple[float, dict]], params: dict) -> Path:
    path = exp / f"trial_{trial_id.split('_')[1]}_{trial_id}"
    path.mkdir(parents=True)
    (path / "params.json").write_text(json.dumps(params))  # Ray rewrites it on each exploit
    rows = [{"training_iteration": i, "epoch": i, "trial_id": trial_id, "timestamp": 1000 + i,
             "time_total_s": float(i), "done": i == len(reports), "val_loss": loss, "config": cfg}
            for i, (loss, cfg) in enumerate(reports, 1)]
    (path / "result.json").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _pbt_study(tmp_path: Path) -> Path:
    exp = tmp_path / "results" / "pop"
    _trial(exp, "aaaaa_00000", [(0.9, A), (0.5, A), (0.4, A), (0.35, A)], A)
    # B: bad first, then trains from A's checkpoint with lr 0.02 and becomes the best at its
    # epoch 3 (0.2), ends at 0.3; exploited again after its last epoch (params.json says so).
    _trial(exp, "aaaaa_00001", [(1.5, B), (1.2, B), (0.2, B_EXPLOITS_A), (0.3, B_EXPLOITS_A)],
           NEVER_TRAINED)
    return exp


def _results(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["results", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_the_best_config_is_the_one_its_reports_were_trained_with(tmp_path, capsys) -> None:
    exp = _pbt_study(tmp_path)  # no summary.json: the driver was killed
    code, out, err = _results(capsys, str(exp), "--sort", "val_loss")
    assert code == 0, err
    assert "__hpoc_trial" not in out  # the internal key
    best = out[out.index("best trial:"):]
    assert "aaaaa_00001" in best.splitlines()[0]
    config = best[best.index("config (JSON):"):]
    assert '"lr": 0.02' in config and "0.0001" not in best and "0.05" not in config
    assert "epochs 1-2: dropout=0.3, optimizer.lr=0.05" in best
    assert "epochs 3-4: dropout=0.1, optimizer.lr=0.02" in best

    code, out, _ = _results(capsys, str(exp), "--sort", "val_loss", "--json")
    data = json.loads(out)
    assert "__hpoc_trial" not in out
    assert data["best"]["config"]["optimizer"]["lr"] == 0.02
    # No plan (an experiment directory): the inactive parameter's value is shown as recorded.
    assert data["best"]["config"]["optimizer"]["momentum"] == 0.9
    assert [s["from_epoch"] for s in data["best"]["config_schedule"]] == [1, 3]
    assert "config_schedule" not in data["trials"][1]  # A's config never changed

    code, out, _ = _results(capsys, str(exp), "--sort", "val_loss", "--csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert not any("__hpoc" in k for k in rows[0])
    assert rows[0]["config/optimizer.lr"] == "0.02"


def test_scope_best_shows_the_config_of_the_best_report(tmp_path, capsys) -> None:
    exp = _pbt_study(tmp_path)
    (exp / "trial_00001_aaaaa_00001" / "result.json").write_text("".join(
        json.dumps({"training_iteration": i, "trial_id": "aaaaa_00001", "val_loss": loss,
                    "config": cfg}) + "\n"
        for i, (loss, cfg) in enumerate([(0.1, B), (1.2, B), (0.2, B_EXPLOITS_A)], 1)))
    code, out, err = _results(capsys, str(exp), "--sort", "val_loss", "--scope", "best")
    assert code == 0, err
    best = out[out.index("best trial:"):]
    assert "the one epoch 1 was trained with" in best and '"lr": 0.05' in best


def test_a_plan_and_a_summary_do_not_bring_back_a_config_never_trained(tmp_path, capsys) -> None:
    exp = _pbt_study(tmp_path)
    plan = make_plan(tmp_path / "results", "pop")
    plan["space"]["params"].append({"name": "optimizer.momentum", "domain": "uniform",
                                    "args": {"lower": 0.5, "upper": 0.99},
                                    "condition": {"param": "optimizer.name", "values": ["sgd"]}})
    build = write_plan(tmp_path / "build", plan)
    # The driver's summary.json took the trial's final config (Ray's) before the fix.
    entry = {"trial_id": "aaaaa_00001", "status": "TERMINATED", "metrics": {"val_loss": 0.3},
             "config": {"optimizer": {"lr": 0.0001}, "epochs": 6}, "epochs": 4, "error": None}
    (exp / "summary.json").write_text(json.dumps({
        "study": "pop", "shard": 0, "metrics": [{"name": "val_loss", "mode": "min"}],
        "trials": [entry], "num_trials": 2, "status_counts": {}, "best": None,
        "wall_s": 1.0, "interrupted": False}))
    code, out, err = _results(capsys, str(build), "--json")
    assert code == 0, err
    best = json.loads(out)["best"]
    assert best["trial_id"] == "aaaaa_00001"
    assert best["config"] == {"batch_size": 32, "dropout": 0.1, "epochs": 6,
                              "optimizer": {"lr": 0.02, "name": "adam"}}  # momentum: inactive


def test_without_a_plan_only_the_internal_key_is_left_out() -> None:
    """A None value is a value (`choice(null, ...)`); PBT configs carry no None placeholders."""
    from hpoc.results.load import clean_config

    assert clean_config({"__hpoc_trial": 3, "warmup": None, "optimizer.lr": 0.1}, None) == \
        {"warmup": None, "optimizer": {"lr": 0.1}}


def _ray_trial(path: Path, trial_id: str, last_result: dict, config: dict):
    return SimpleNamespace(trial_id=trial_id, status="TERMINATED", config=config,
                           last_result=last_result, path=str(path), error_file=None)


def test_the_run_summary_keeps_each_trials_own_metrics_and_config(tmp_path) -> None:
    exp = _pbt_study(tmp_path)
    plan = make_plan(tmp_path / "results", "pop")
    # An exploit after B's last epoch: Tune hands B the donor A's last result and a new config.
    donor_result = {"trial_id": "aaaaa_00000", "val_loss": 0.35, "training_iteration": 4,
                    "config": A}
    b = _ray_trial(exp / "trial_00001_aaaaa_00001", "aaaaa_00001", donor_result, NEVER_TRAINED)
    a = _ray_trial(exp / "trial_00000_aaaaa_00000", "aaaaa_00000", donor_result, A)
    entry = summary_mod.trial_entry(b, plan["space"])
    assert entry["metrics"]["val_loss"] == 0.3 and entry["config"]["optimizer"]["lr"] == 0.02
    assert "__hpoc_trial" not in json.dumps(entry)
    built = summary_mod.build(plan, 0, [a, b], wall_s=1, interrupted=False,
                              experiment_dir=exp, plan_hash="sha256:x")
    assert (built["best"]["trial_id"], built["best"]["metrics"]["val_loss"]) == ("aaaaa_00001", 0.3)
    assert built["trials"][0]["metrics"]["val_loss"] == 0.35
    # The live progress line does not credit B with A's value (B has not reported since).
    got = counts([a, b], "val_loss", "min")
    assert got["best_trial"] == "aaaaa_00000"


def test_reports_made_again_after_going_back_to_a_checkpoint_replace_the_old_ones(tmp_path, capsys) -> None:
    """A trial resumed from an older checkpoint (hard kill, restored PBT trial) appends the
    iterations it trains again: they replace the earlier ones (no curve going backwards)."""
    exp = tmp_path / "results" / "again"
    _trial(exp, "bbbbb_00000", [(0.9, A), (0.5, A), (0.1, A), (0.05, A)], A)
    file = exp / "trial_00000_bbbbb_00000" / "result.json"
    with file.open("a") as fh:  # back to the checkpoint of iteration 1
        for i, loss in ((2, 0.6), (3, 0.4)):
            fh.write(json.dumps({"training_iteration": i, "trial_id": "bbbbb_00000",
                                 "val_loss": loss, "config": B_EXPLOITS_A}) + "\n")
    code, out, err = _results(capsys, str(exp), "--sort", "val_loss", "--scope", "best",
                              "--json", "--history")
    assert code == 0, err
    trial = json.loads(out)["trials"][0]
    assert [r["training_iteration"] for r in trial["history"]] == [1, 2, 3]
    assert trial["epochs"] == 3 and trial["score"] == 0.4  # not the superseded 0.05


def test_a_map_valued_parameter_changed_by_an_exploit_is_listed_whole(tmp_path, capsys) -> None:
    """The best trial's config schedule split a `choice` of maps into keys no parameter has
    (`optimizer.betas.b1=0.9`), unlike the table and the key = value lines."""
    storage = tmp_path / "results"
    plan = make_plan(storage, "pop")
    plan["space"]["params"].append({"name": "optimizer.betas", "domain": "choice", "condition": None,
                                    "args": {"categories": [{"b1": 0.9, "b2": 0.999}, {"b1": 0.8, "b2": 0.999}]}})
    write_plan(tmp_path / "build", plan)
    a = {**A, "optimizer.betas": {"b1": 0.9, "b2": 0.999}}
    b = {**B, "optimizer.betas": {"b1": 0.8, "b2": 0.999}}
    b_exploits = {**a, "optimizer.lr": 0.02}
    _trial(storage / "pop", "aaaaa_00000", [(0.9, a), (0.5, a)], a)
    _trial(storage / "pop", "aaaaa_00001", [(1.5, b), (0.2, b_exploits)], b_exploits)
    code, out, err = _results(capsys, str(tmp_path / "build"), "--sort", "val_loss")
    assert code == 0, err
    best = out[out.index("best trial:"):]
    assert 'epoch 1: dropout=0.3, optimizer.betas={"b1": 0.8, "b2": 0.999}, optimizer.lr=0.05' in best, best
    assert "betas.b1" not in best


def test_the_reports_plots_place_a_trial_by_the_config_of_its_ranked_report(tmp_path) -> None:
    """`--scope best` ranks trial B by its epoch 1 (lr 0.05): the report's panels drew that
    value at the lr of its last config (0.02), which the table and best block do not show."""
    from hpoc.results import load, rank
    from hpoc.results import plots as P

    exp = _pbt_study(tmp_path)
    (exp / "trial_00001_aaaaa_00001" / "result.json").write_text("".join(
        json.dumps({"training_iteration": i, "trial_id": "aaaaa_00001", "val_loss": loss,
                    "config": cfg}) + "\n"
        for i, (loss, cfg) in enumerate([(0.1, B), (1.2, B), (0.2, B_EXPLOITS_A)], 1)))
    results = load(exp)
    ranking = rank(results, sort="val_loss", scope="best")
    fig = P.objective_vs_params_figure(results, ranking)
    (ax,) = [a for a in fig.axes if a.get_xlabel().startswith("optimizer.lr")]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0.01", "0.05"]  # two values: categories
    fig = P.parallel_coordinates_figure(results, ranking)
    texts = {t.get_text() for t in fig.axes[0].texts}
    assert "0.05" in texts and "0.02" not in texts  # the lr axis's ends: A's 0.01, B's 0.05
