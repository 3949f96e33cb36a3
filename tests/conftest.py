"""Shared pytest options. `--update-golden` rewrites expected files under tests/golden/."""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile

import pytest

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
# hpoc's per-user cache (hpoc/cache.py) of this session's own: tests do not write into the
# developer's ~/.cache, nor read what another checkout left there.
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="hpoc-test-cache-")
atexit.register(shutil.rmtree, os.environ["XDG_CACHE_HOME"], ignore_errors=True)
# Torch's cache of compiled extensions follows XDG_CACHE_HOME too: DeepSpeed compiled its C++
# op (the CPU shared-memory allreduce, built whenever it starts on CPU) again in every session,
# about 50 s of CPU. That cache is kept with the virtual environment instead.
if os.access(sys.prefix, os.W_OK):
    os.environ.setdefault("TORCH_EXTENSIONS_DIR", os.path.join(sys.prefix, "torch_extensions"))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden",
        action="store_true",
        default=False,
        help="rewrite golden files under tests/golden/ from the current output",
    )


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-golden"))


# ---- SLURM: tests marked `slurm` need a cluster (scripts/local-slurm.sh up). They skip
# when there is none, except under HPOC_REQUIRE_SLURM=1 (CI), where they fail instead.
_slurm_state: list[str | None] = []


@pytest.fixture
def cancel_afterwards():
    """A list to put SLURM job ids in; whatever is still queued or running at the end is cancelled."""
    ids: list[str] = []
    yield ids
    if ids:
        subprocess.run(["scancel", *ids], capture_output=True)


def slurm_problem() -> str | None:
    """Why SLURM cannot be used here, or None when it can."""
    if _slurm_state:
        return _slurm_state[0]
    import shutil
    import subprocess
    from pathlib import Path

    local = Path(os.environ.get("HPOC_SLURM_STATE", "/tmp/hpoc-slurm"), "slurm.conf")
    if "SLURM_CONF" not in os.environ and local.exists():
        os.environ["SLURM_CONF"] = str(local)  # the local cluster of scripts/local-slurm.sh
    problem = None
    if not shutil.which("sbatch"):
        problem = "no SLURM here (sbatch not found); start one with `scripts/local-slurm.sh up`"
    else:
        try:
            run = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=20)
            if run.returncode != 0:
                problem = f"SLURM does not answer (sinfo: {run.stderr.strip()}); run `scripts/local-slurm.sh up`"
        except subprocess.TimeoutExpired:
            problem = "SLURM does not answer (sinfo timed out); run `scripts/local-slurm.sh up`"
    _slurm_state.append(problem)
    return problem


def pytest_runtest_setup(item: pytest.Item) -> None:
    # ---- stress: long runs, only under `make stress` (-m stress) or HPOC_STRESS=1
    if item.get_closest_marker("stress") is not None and os.environ.get("HPOC_STRESS") != "1" \
            and "stress" not in (item.config.getoption("markexpr", "") or ""):
        pytest.skip("stress test: run `make stress` (or set HPOC_STRESS=1)")
    if item.get_closest_marker("slurm") is None:
        return
    problem = slurm_problem()
    if problem is None:
        return
    if os.environ.get("HPOC_REQUIRE_SLURM") == "1":
        pytest.fail(f"HPOC_REQUIRE_SLURM=1 but {problem}", pytrace=False)
    pytest.skip(problem)


def _drop_study_imports():
    """A test that imports a study's steps (`pipeline.import_target`) puts the study's
    directory on sys.path and its `data`/`trainer` in sys.modules; a later test's `hpoc
    check` then took that `data` for one installed on this Python (a fresh CLI process never
    would). Drop the study directories added to sys.path meanwhile, and the modules imported
    from anywhere no longer on it."""
    import sys

    path, modules = list(sys.path), set(sys.modules)
    yield
    installed = (os.path.join(sys.prefix, ""), os.path.join(sys.base_prefix, ""))  # ray adds its thirdparty_files
    sys.path[:] = [p for p in sys.path if not p or p in path or os.path.abspath(p).startswith(installed)]
    dirs = {os.path.abspath(p or ".") for p in sys.path}
    for name in set(sys.modules) - modules:
        if name.partition(".")[0] == "hpoc":  # an editable install: found by its own finder
            continue
        top = sys.modules.get(name.partition(".")[0])
        file = getattr(top, "__file__", None)
        if not file:
            continue
        where = os.path.dirname(os.path.abspath(file))  # trainer.py's dir; a package's parent:
        if os.path.basename(file) == "__init__.py":
            where = os.path.dirname(where)
        if where not in dirs:  # importable no more, from here
            sys.modules.pop(name, None)


# Each test, and each test module (whose module-scoped fixtures import studies too).
_study_imports_stay_in_their_test = pytest.fixture(autouse=True)(_drop_study_imports)
_study_imports_stay_in_their_module = pytest.fixture(autouse=True, scope="module")(_drop_study_imports)
