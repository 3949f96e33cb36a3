"""The line said before a first DeepSpeed trial that builds DeepSpeed's C++ ops."""

from __future__ import annotations

import json
import os
import sys

import pytest

from hpoc.runtime.deepspeed_ops import build_line


def _plan(tmp_path, gpus: int = 0, config: dict | None = None) -> dict:
    path = None
    if config is not None:
        path = tmp_path / "ds.json"
        path.write_text(json.dumps(config))
    return {"resources": {"strategy": "deepspeed", "gpus_per_worker": gpus,
                          "deepspeed": {"config_file": str(path) if path else None}}}


@pytest.fixture
def cache(tmp_path, monkeypatch):
    root = tmp_path / "extensions"
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(root))
    return root


def _build(root, op: str) -> None:
    (root / op).mkdir(parents=True)
    (root / op / f"{op}.so").write_bytes(b"")


def test_the_first_cpu_trials_op_build_is_said_until_it_is_built(tmp_path, cache):
    """The first DeepSpeed trial on CPU sat "running" for minutes, building its op unsaid."""
    line = build_line(_plan(tmp_path))
    assert line == ("[hpoc] the first DeepSpeed trial builds DeepSpeed's `deepspeed_shm_comm` op with a C++ "
                    f"compiler before it trains, first time only (~2-3 min; kept in {cache})")
    _build(cache, "deepspeed_shm_comm")
    assert build_line(_plan(tmp_path)) is None


def test_a_config_files_adam_names_the_op_it_builds(tmp_path, cache):
    offload = {"optimizer": {"type": "AdamW", "params": {"lr": 0.001}},
               "zero_optimization": {"stage": 2, "offload_optimizer": {"device": "cpu"}}}
    assert "`cpu_adam` op with" in build_line(_plan(tmp_path, gpus=1, config=offload))
    _build(cache, "cpu_adam")
    assert build_line(_plan(tmp_path, gpus=1, config=offload)) is None
    fused = {"optimizer": {"type": "Adam", "params": {"lr": 0.001}}}
    assert "`deepspeed_shm_comm` and `fused_adam` ops with" in build_line(_plan(tmp_path, config=fused))
    # nothing built: torch's Adam, an SGD, the trainer's optimizer on a GPU, or no DeepSpeed at all
    for config in ({"optimizer": {"type": "Adam", "params": {"torch_adam": True}}},
                   {"optimizer": {"type": "SGD", "params": {"lr": 0.1}}}, {}):
        assert build_line(_plan(tmp_path, gpus=1, config=config)) is None
    assert build_line({"resources": {"strategy": "ddp", "gpus_per_worker": 0, "deepspeed": None}}) is None


@pytest.mark.parametrize("abiflags", ["", "t"])
def test_the_cache_is_torchs_own(monkeypatch, tmp_path, abiflags):
    """Where torch's `load` builds: else an op built there would still be said (a free-threaded
    Python's, `py313t_cu130`, was said to build in every run)."""
    from torch.utils.cpp_extension import _get_build_directory

    from hpoc.runtime.deepspeed_ops import cache_dir

    monkeypatch.setattr(sys, "abiflags", abiflags, raising=False)
    monkeypatch.delenv("TORCH_EXTENSIONS_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache_dir() == os.path.dirname(_get_build_directory("x", verbose=False))


def _installed(tmp_path, monkeypatch, accelerator: str, ops: dict) -> None:
    """A DeepSpeed installed with prebuilt ops (DS_BUILD_OPS=1) for `accelerator`."""
    import importlib.machinery
    import importlib.util

    package = tmp_path / "site" / "deepspeed"
    (package / "ops" / "adam").mkdir(parents=True)
    (package / "__init__.py").write_text("raise ImportError('the driver must not import deepspeed')\n")
    (package / "git_version_info_installed.py").write_text(
        f"version='0.19.8'\ninstalled_ops={ops!r}\naccelerator_name={accelerator!r}\n")
    for op, built in ops.items():
        if built:
            (package / "ops" / "adam" / f"{op}_op.cpython-311-x86_64-linux-gnu.so").write_bytes(b"")
    spec = importlib.machinery.ModuleSpec("deepspeed", None, is_package=True)
    spec.submodule_search_locations = [str(package)]
    find = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: spec if name == "deepspeed" else find(name, *a))


def test_an_op_prebuilt_for_the_trials_accelerator_is_not_said(tmp_path, monkeypatch, cache):
    """DeepSpeed loads an op its install built only for the accelerator it was built for
    (`installed_ops`, `accelerator_name`), and builds it again elsewhere: a GPU node's
    DS_BUILD_OPS=1 install still builds the CPU trials' fused_adam, which went unsaid."""
    adam = {"optimizer": {"type": "Adam", "params": {"lr": 0.001}}}
    _installed(tmp_path, monkeypatch, "cuda", {"fused_adam": True, "cpu_adam": True, "deepspeed_shm_comm": False})
    assert build_line(_plan(tmp_path, gpus=1, config=adam)) is None
    assert "`deepspeed_shm_comm` and `fused_adam` ops with" in build_line(_plan(tmp_path, config=adam))


def test_an_op_the_install_lists_as_not_built_is_said(tmp_path, monkeypatch, cache):
    adam = {"optimizer": {"type": "Adam", "params": {"lr": 0.001}}}
    _installed(tmp_path, monkeypatch, "cpu", {"fused_adam": True, "deepspeed_shm_comm": True})
    assert build_line(_plan(tmp_path, config=adam)) is None
    _installed(tmp_path / "other", monkeypatch, "cpu", {"fused_adam": False, "deepspeed_shm_comm": True})
    assert "`fused_adam` op with" in build_line(_plan(tmp_path, config=adam))


@pytest.mark.parametrize("torch_adam", [True, 1, "true"])
def test_torch_adam_as_deepspeed_reads_it_builds_nothing(tmp_path, cache, torch_adam):
    """DeepSpeed takes torch's Adam for any true value of `torch_adam` (`if torch_adam:`)."""
    config = {"optimizer": {"type": "AdamW", "params": {"lr": 0.001, "torch_adam": torch_adam}}}
    assert build_line(_plan(tmp_path, gpus=1, config=config)) is None
