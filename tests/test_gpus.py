"""Trials given GPUs that torch cannot use (hpoc/runtime/gpus.py): said, not trained on CPUs."""

from __future__ import annotations

import io

import pytest
import torch

from hpoc.runtime import gpus
from hpoc.runtime.study import EXIT_SPEC, RunOptions, run_study
from hpoc.runtime.summary import error_help, error_line
from hpoc.runtime.trial import make_strategy
from runtime_plans import make_plan, write_toy


@pytest.fixture
def cpu_only_torch(monkeypatch):
    monkeypatch.setattr(torch.version, "cuda", None)
    monkeypatch.setattr(torch.version, "hip", None, raising=False)


def test_a_study_with_gpus_and_a_cpu_only_torch_stops_before_ray(tmp_path, cpu_only_torch, capsys, monkeypatch):
    """SLURM and Ray count the job's GPUs, not torch's: every trial held its GPU and trained
    on the CPU, many times slower, and nothing said so."""
    import ray

    monkeypatch.setattr(ray, "init", lambda *a, **k: pytest.fail("Ray started"))
    plan = make_plan(write_toy(tmp_path / "study"), tmp_path / "results", trials={"num_samples": 1},
                     resources={"gpus_per_worker": 1})
    code = run_study(plan, RunOptions(local=True, num_cpus=1, num_gpus=1, progress=io.StringIO(),
                                      out=io.StringIO()))
    assert code == EXIT_SPEC
    err = capsys.readouterr().err
    assert f"`gpus_per_worker = 1` reserves GPUs for each worker, but this torch ({torch.__version__}," in err
    assert "is built without CUDA" in err and "help: install a CUDA (or ROCm) build of torch" in err


def test_a_trial_whose_node_shows_torch_no_gpu_fails_saying_so(tmp_path, monkeypatch):
    """A node whose driver is missing, or a job whose GPUs SLURM did not hand to the step."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    plan = make_plan(write_toy(tmp_path / "study"), tmp_path / "results", resources={"gpus_per_worker": 1})
    with pytest.raises(RuntimeError) as info:
        make_strategy(plan, object(), distributed=False)
    text = f"RuntimeError: {info.value}"
    assert error_line(text).startswith("RuntimeError: `gpus_per_worker = 1` reserves GPUs for each worker, "
                                       "but torch on ")
    assert "sees none (CUDA_VISIBLE_DEVICES='', torch.cuda.device_count() = " in error_line(text)
    assert error_help(text).startswith("check the node's GPU driver")
    # without GPUs to use, nothing to say
    assert make_strategy(make_plan(tmp_path / "study", tmp_path / "results"), object(), distributed=False)
    assert gpus.build_problem(0) is None and gpus.device_problem(0, torch.device("cpu")) is None
