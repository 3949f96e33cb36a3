"""`hpoc run` / `python -m hpoc.runtime` argument handling (no Ray started)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hpoc.cli import main
from hpoc.commands.run import load_plan
from hpoc.errors import HpocError
from hpoc.plan import dumps
from hpoc.runtime.__main__ import main as runtime_main
from hpoc.runtime.study import experiment_dir
from runtime_plans import make_plan

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_run_takes_a_spec_a_plan_file_or_a_build_directory(tmp_path):
    from_spec = load_plan(str(EXAMPLES / "digits" / "study.hpo"))
    build = tmp_path / "build"
    build.mkdir()
    (build / "plan.json").write_text(dumps(from_spec))
    # the same study from every entry point: same hash, so runs resume across them
    assert load_plan(str(build / "plan.json")) == from_spec
    assert load_plan(str(build)) == from_spec
    with pytest.raises(HpocError, match="no such file"):
        load_plan(str(tmp_path / "missing.hpo"))


def test_a_broken_spec_is_reported_like_hpoc_check_does(tmp_path, capsys):
    spec = tmp_path / "study.hpo"
    spec.write_text('study "x"\nspace { lr = loguniform(1e-3) }\n')
    assert main(["run", str(spec), "--local"]) == 2
    err = capsys.readouterr().err
    assert "study.hpo:" in err and "Traceback" not in err


def test_experiment_directories_per_shard(tmp_path):
    plan = make_plan(tmp_path, tmp_path / "res")
    assert experiment_dir(plan, 0) == tmp_path / "res" / "toy"
    sharded = make_plan(tmp_path, tmp_path / "res", shards={"count": 3, "parallel": 3})
    assert experiment_dir(sharded, 2) == tmp_path / "res" / "toy" / "shard-2"


def test_runtime_entry_point_refuses_bad_plans_and_shards(tmp_path, capsys):
    bad = tmp_path / "plan.json"
    bad.write_text('{"plan_version": 99}')
    assert runtime_main([str(bad)]) == 2
    assert "plan_version 99 is not supported" in capsys.readouterr().err
    good = tmp_path / "good.json"
    good.write_text(dumps(make_plan(tmp_path, tmp_path / "res")))
    assert runtime_main([str(good), "--shard", "3", "--local"]) == 2
    assert "shard 3 does not exist: the study has 1 shard(s)" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["-2", "0", "two"])
def test_cpus_must_be_a_positive_count(value, capsys):
    """Ray would fail with 'Resource quantities must be nonnegative' (or take 0 as all)."""
    with pytest.raises(SystemExit) as info:
        main(["run", "study.hpo", "--local", "--cpus", value])
    assert info.value.code == 2
    assert "argument --cpus:" in capsys.readouterr().err
