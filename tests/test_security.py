"""Security properties that need no cluster.

* Compiling never imports or runs the user's code: `hpoc check`, `hpoc check --json`,
  `hpoc compile`, `hpoc fmt` on a .hpo spec and on an itwinai YAML config whose modules
  write a file when imported leave no such file. Only `hpoc check --preflight` imports them,
  in a child process (so the marker appears, and hpoc's own process stays clean).
* The job directory is 0700 and the token file 0600 (`python -m hpoc.runtime.cluster init`),
  and a pre-existing directory of someone else, a symlink, or a loose mode is refused by the
  node entry point; a local run's token is 0600 in a private temp dir.
* No token in a compiled plan or script.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from fuzz_harness import run_cli

SPEC = textwrap.dedent('''
    study "noimport"
    pipeline {
      getter  = data:Getter
      trainer = trainer:Trainer
    }
    space { lr = loguniform(1e-4, 1e-1), epochs = 2 }
    objective minimize val_loss
    slurm { nodes = 1 }
''')
CONFIG = textwrap.dedent('''
    ray_training_pipeline:
      class_path: itwinai.pipeline.Pipeline
      init_args:
        steps:
          - class_path: data.Getter
          - class_path: trainer.Trainer
            init_args:
              config:
                train_loop_config:
                  lr: {type: loguniform, min: 1.0e-4, max: 1.0e-1}
                  epochs: 2
                tune_config:
                  num_samples: 2
                  search_alg: {name: random, metric: loss, mode: min}
                run_config: {storage_path: results, name: noimport-yaml}
''')
MODULE = textwrap.dedent('''
    import os, pathlib
    pathlib.Path(os.environ.get("MARKER_DIR", "."), "IMPORTED_{name}").write_text(str(os.getpid()))

    class {cls}{base}:
        def execute(self):
            return ([1], [2])
        def check(self):
            return None
''')


def write_study(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "study.hpo").write_text(SPEC)
    (folder / "config.yaml").write_text(CONFIG)
    (folder / "data.py").write_text(MODULE.replace("{name}", "data").replace("{cls}", "Getter")
                                    .replace("{base}", ""))
    (folder / "trainer.py").write_text("import hpoc\n" + MODULE.replace("{name}", "trainer")
                                       .replace("{cls}", "Trainer").replace("{base}", "(hpoc.Trainer)")
                                       + "    def checkpoint_and_report(self, e, m):\n        pass\n"
                                       + "    def create_model(self, config):\n        return object()\n")


def markers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("IMPORTED_*"))


@pytest.mark.parametrize("spec", ["study.hpo", "config.yaml"])
def test_check_and_compile_never_import_user_code(spec: str, tmp_path: Path) -> None:
    study = tmp_path / "study"
    write_study(study)
    env = dict(os.environ, MARKER_DIR=str(study))
    commands = [["check", spec], ["check", "--json", spec], ["compile", spec, "-o", "build"]]
    if spec.endswith(".hpo"):
        commands.append(["fmt", spec])
    for argv in commands:  # a fresh process each, as a user runs them
        run = subprocess.run([sys.executable, "-m", "hpoc", *argv], cwd=study, env=env,
                             capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, (argv, run.stderr)
        assert markers(study) == [], argv
    assert (study / "build" / "plan.json").exists()
    # in this process too: nothing of the spec's modules got loaded
    code, _, err = run_cli(["check", str(study / spec)])
    assert code == 0, err
    assert markers(study) == []
    assert not any(getattr(m, "__file__", "") and str(study) in str(getattr(m, "__file__", ""))
                   for m in list(sys.modules.values()))


def test_preflight_imports_in_a_child_process_only(tmp_path: Path) -> None:
    study = tmp_path / "study"
    write_study(study)
    env = dict(os.environ, MARKER_DIR=str(study))
    run = subprocess.run([sys.executable, "-m", "hpoc", "check", "--preflight", "study.hpo"], cwd=study,
                         env=env, capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stderr
    assert markers(study) == ["IMPORTED_data", "IMPORTED_trainer"]
    pids = {(study / m).read_text() for m in markers(study)}
    assert len(pids) == 1  # one child process imported both
    assert "preflight ok: trainer: `trainer:Trainer` imports" in run.stdout, run.stdout


# ---------------------------------------------------------------- tokens and job directories


def test_job_directory_is_private_and_token_is_0600(tmp_path: Path) -> None:
    job_dir = tmp_path / "hpoc-4242"
    run = subprocess.run([sys.executable, "-m", "hpoc.runtime.cluster", "init", str(job_dir)],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert stat.S_IMODE(job_dir.stat().st_mode) == 0o700
    token = job_dir / "token"
    assert stat.S_IMODE(token.stat().st_mode) == 0o600
    value = token.read_text()
    assert len(value) == 64 and int(value, 16) >= 0  # 256 random bits, hex
    assert value not in run.stdout + run.stderr
    # a second init (a requeued job) makes a new token
    subprocess.run([sys.executable, "-m", "hpoc.runtime.cluster", "init", str(job_dir)], check=True, timeout=60)
    assert token.read_text() != value


def test_node_entry_point_refuses_unsafe_job_directories(tmp_path: Path) -> None:
    from hpoc.runtime.node import NodeError, ensure_private_dir, ensure_token

    loose = tmp_path / "loose"
    loose.mkdir(mode=0o755)
    loose.chmod(0o755)
    with pytest.raises(NodeError, match="mode 0700"):
        ensure_private_dir(loose)
    link = tmp_path / "link"
    link.symlink_to(tmp_path)
    with pytest.raises(NodeError, match="not a directory owned by this user"):
        ensure_private_dir(link)
    private = tmp_path / "private"
    ensure_private_dir(private)
    (private / "token").write_text("x")
    (private / "token").chmod(0o644)
    with pytest.raises(NodeError, match="must not be readable by others"):
        ensure_token(private, {})
    # a worker on another host gets the token from the environment, writes it 0600
    fresh = tmp_path / "fresh"
    path = ensure_token(fresh, {"HPOC_RAY_TOKEN": "abc"})
    assert path.read_text() == "abc" and stat.S_IMODE(path.stat().st_mode) == 0o600


def test_node_environment_drops_the_token_variable(tmp_path: Path) -> None:
    """The token travels to a worker's step in HPOC_RAY_TOKEN; Ray itself never sees it
    there (nor RAY_AUTH_TOKEN): only the 0600 file, through RAY_AUTH_TOKEN_PATH."""
    from hpoc.runtime.node import ray_env

    env = ray_env({"HPOC_RAY_TOKEN": "secret", "RAY_AUTH_TOKEN": "stray", "PATH": "/bin"}, tmp_path / "token")
    assert "secret" not in json.dumps(env) and "stray" not in json.dumps(env)
    assert env["RAY_AUTH_MODE"] == "token" and env["RAY_AUTH_TOKEN_PATH"] == str(tmp_path / "token")


def test_compiled_plan_and_scripts_hold_no_token(tmp_path: Path) -> None:
    study = tmp_path / "study"
    write_study(study)
    code, _, err = run_cli(["compile", str(study / "study.hpo"), "-o", str(study / "build")])
    assert code == 0, err
    text = "".join(p.read_text() for p in (study / "build").iterdir() if p.is_file())
    assert "RAY_AUTH_TOKEN=" not in text and "HPOC_RAY_TOKEN=" not in text.replace("HPOC_RAY_TOKEN=$(", "")
    assert '"token"' not in (study / "build" / "plan.json").read_text()


def test_an_atomic_secret_is_private_from_creation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The submitit job hands the token to its workers with write_atomic(mode=0o600): the
    temporary file is created 0600 (a chmod afterwards would leave a window), and a token
    left by an earlier try of the job is replaced, not refused."""
    from hpoc.files import write_atomic

    created = []
    real_open = os.open
    monkeypatch.setattr(os, "open", lambda p, flags, mode=0o777: (
        flags & os.O_CREAT and created.append(mode), real_open(p, flags, mode))[1])  # files it creates
    old = os.umask(0)
    try:
        target = tmp_path / "token"
        target.write_text("old")
        target.chmod(0o644)
        write_atomic(target, "new", mode=0o600)
    finally:
        os.umask(old)
    assert created == [0o600]
    assert target.read_text() == "new" and stat.S_IMODE(target.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["token"]
