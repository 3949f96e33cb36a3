"""A trial whose latest checkpoint is cut short or corrupt falls back to the one before it
(or, with none readable, starts over) with a log line, and the study goes on.

Without Ray: `Trainer.run_local` on a directory whose newest checkpoint is truncated.
With Ray Tune (local): a trial truncates its own newest checkpoint(s) on the storage right
after writing them, then crashes once; Tune retries it (failure.max_retries) and the
retried trial resumes from the newest readable checkpoint.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from hpoc.plan import dumps
from runtime_plans import make_plan, write_toy

CORRUPTING = textwrap.dedent('''
    import glob, json, os, time
    from toy import ToyTrainer

    class CorruptOnceTrainer(ToyTrainer):
        """After reporting epoch `corrupt_after`, cuts the newest `corrupt[trial index]`
        checkpoints of this trial short (as a full disk would) and crashes - once per trial."""

        def report(self, metrics, *, epoch=None, **kwargs):
            super().report(metrics, epoch=epoch, **kwargs)
            marker = os.path.join(self.args["marker_dir"], self.trial.id)
            if epoch is None or epoch + 1 != self.args["corrupt_after"] or os.path.exists(marker):
                return
            open(marker, "w").close()
            pattern = os.path.join(self.args["experiment_dir"], f"*{self.trial.id}*", "checkpoint_*", "state.pt")
            # Wait until Tune's driver has logged this epoch (so it holds this checkpoint as
            # the trial's latest): a crash racing the report would make Tune drop the result.
            results = os.path.join(self.args["experiment_dir"], f"*{self.trial.id}*", "result.json")
            deadline = time.time() + 120
            while time.time() < deadline:
                logged = [json.loads(ln)["epoch"] for f in glob.glob(results) for ln in open(f) if ln.strip()]
                if epoch + 1 in logged:
                    break
                time.sleep(0.2)
            for path in sorted(glob.glob(pattern))[-self.args["corrupt"][self.trial.index]:]:
                with open(path, "rb") as fh:
                    data = fh.read()
                with open(path, "wb") as fh:
                    fh.write(data[: len(data) // 3])
            raise RuntimeError("node lost right after a checkpoint was written")
''')


def _toy(tmp_path: Path):
    """The toy trainer class and its data split (module imported from a fresh copy)."""
    sys.path.insert(0, str(write_toy(tmp_path / "code")))
    try:
        from toy import ToyGetter, ToySplitter, ToyTrainer
    finally:
        sys.path.pop(0)
    return ToyTrainer, ToySplitter().execute(ToyGetter().execute())


def test_run_local_skips_a_truncated_checkpoint(tmp_path: Path) -> None:
    """The restore logic alone: checkpoints 1..3 exist, the newest is cut short."""
    import torch

    ToyTrainer, data = _toy(tmp_path)
    out = tmp_path / "run"
    config = {"epochs": 3, "batch_size": 32, "lr": 0.01, "hidden": 8}
    first = ToyTrainer().run_local(config, data, directory=out, keep=3)
    assert [r["epoch"] for r in first] == [1, 2, 3]
    newest = sorted(out.glob("checkpoint_*"))[-1] / "state.pt"
    newest.write_bytes(newest.read_bytes()[:100])
    again = ToyTrainer().run_local(dict(config, epochs=5), data, directory=out, keep=3)
    assert [r["epoch"] for r in again] == [3, 4, 5]  # resumed after epoch 2, not 3, not 0
    log = (out / "hpoc-checkpoints.log").read_text()
    assert "is unreadable" in log and "resuming from the earlier checkpoint" in log and "(epoch 2)" in log
    # every checkpoint unreadable: start over, and say so
    for state in out.glob("checkpoint_*/state.pt"):
        state.write_bytes(b"garbage")
    over = ToyTrainer().run_local(dict(config, epochs=2), data, directory=out, keep=3)
    assert [r["epoch"] for r in over] == [1, 2]
    assert "no readable checkpoint; the trial starts over from epoch 0" in (out / "hpoc-checkpoints.log").read_text()
    assert torch.load(sorted(out.glob("checkpoint_*"))[-1] / "state.pt", weights_only=False)["epoch"] == 2


def test_a_trial_resumes_from_the_newest_checkpoint_its_recorded_results_name(tmp_path: Path, monkeypatch) -> None:
    """A stop or kill right after a report: Tune's saved state names checkpoint 0 (epoch 1),
    the trial's result.json already records epoch 2 with checkpoint 1, and checkpoint 2
    (epoch 3) was saved but its result never recorded. The trial goes on after epoch 2:
    nothing recorded is redone, nothing unrecorded is skipped. A checkpoint from another
    trial's directory (PBT) is taken as it is."""
    from ray import tune

    from hpoc.runtime import report

    ToyTrainer, data = _toy(tmp_path)
    out = tmp_path / "trial_00000_abc"
    config = {"epochs": 3, "batch_size": 32, "lr": 0.01, "hidden": 8}
    ToyTrainer().run_local(config, data, directory=out, keep=3)
    saved = sorted(out.glob("checkpoint_*"))
    assert [p.name for p in saved] == ["checkpoint_000000", "checkpoint_000001", "checkpoint_000002"]
    rows = [{"epoch": 1, "checkpoint_dir_name": "checkpoint_000000"},
            {"epoch": 2, "checkpoint_dir_name": "checkpoint_000001"}]
    (out / "result.json").write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"epoch": 3, "checkp')

    class Context:  # Tune's view inside a trial: its directory (the name is what counts)
        def __init__(self, name: str) -> None:
            self.name = name

        def get_trial_dir(self) -> str:
            return f"/tmp/ray/session/artifacts/{self.name}"

    # Tune's reporter, as in a trial, with the stale checkpoint of the saved state
    monkeypatch.setattr(report.LocalReporter, "latest_checkpoint", report.TuneReporter.latest_checkpoint)
    monkeypatch.setattr(tune, "get_checkpoint", lambda: tune.Checkpoint.from_directory(str(saved[0])))
    monkeypatch.setattr(tune, "get_context", lambda: Context(out.name))
    again = ToyTrainer().run_local(dict(config, epochs=5), data, directory=out, keep=10)
    assert [r["epoch"] for r in again] == [3, 4, 5]
    assert "the newest its recorded results name" in (out / "hpoc-checkpoints.log").read_text()

    monkeypatch.setattr(tune, "get_context", lambda: Context("trial_00001_other"))
    other = ToyTrainer().run_local(dict(config, epochs=3), data, directory=tmp_path / "elsewhere", keep=3)
    assert [r["epoch"] for r in other] == [2, 3]  # the donor's checkpoint it was given: epoch 1


def _epochs(trial_dir: Path) -> list[int]:
    rows = [json.loads(ln) for ln in (trial_dir / "result.json").read_text().splitlines() if ln.strip()]
    return [r["epoch"] for r in rows]


@pytest.mark.ray
@pytest.mark.slow
def test_tune_retries_a_trial_from_its_last_readable_checkpoint(tmp_path: Path) -> None:
    workdir = write_toy(tmp_path / "study")
    (workdir / "corrupting.py").write_text(CORRUPTING)
    markers = tmp_path / "markers"
    markers.mkdir()
    storage = tmp_path / "results"
    # trial 0 loses its newest checkpoint (falls back one), trial 1 both kept ones (starts over)
    plan = make_plan(
        workdir, storage, study={"name": "ckpt"},
        pipeline={"getter": {"target": "toy:ToyGetter", "args": {}},
                  "splitter": {"target": "toy:ToySplitter", "args": {}},
                  "trainer": {"target": "corrupting:CorruptOnceTrainer",
                              "args": {"marker_dir": str(markers), "corrupt_after": 3, "corrupt": [1, 2],
                                       "experiment_dir": str(storage / "toy")}}},
        space={"constants": {"epochs": 4, "batch_size": 32}},
        trials={"num_samples": 2, "max_concurrent": 2},
        failure={"max_retries": 1}, checkpoint={"every": 1, "keep": 2})
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(RAY_USAGE_STATS_ENABLED="0", HOME=str(tmp_path))
    path = tmp_path / "plan.json"
    path.write_text(dumps(plan))
    run = subprocess.run([sys.executable, "-m", "hpoc.runtime", str(path), "--local", "--cpus", "2"],
                         capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-4000:]
    assert run.stderr.count("failed; retrying from its last checkpoint (retry 1)") == 2, run.stderr[-3000:]
    summary = json.loads((storage / "toy" / "summary.json").read_text())
    assert summary["status_counts"] == {"TERMINATED": 2}
    for trial in summary["trials"]:
        assert trial["epochs"] == 4
        trial_dir = Path(trial["path"])
        log = (trial_dir / "hpoc-checkpoints.log").read_text()
        if trial_dir.name.startswith("trial_00000_"):
            assert _epochs(trial_dir) == [1, 2, 3, 3, 4]  # epoch 3 redone from epoch 2's checkpoint
            assert log.count("is unreadable") == 1 and "resuming from the earlier checkpoint" in log
        else:
            assert _epochs(trial_dir) == [1, 2, 3, 1, 2, 3, 4]
            assert log.count("is unreadable") == 2 and "starts over from epoch 0" in log


@pytest.mark.ray
@pytest.mark.slow
def test_a_resumed_trial_whose_checkpoint_is_gone_resumes_from_one_left(tmp_path: Path) -> None:
    """A driver killed (SIGKILL) mid-trial left a saved state naming checkpoint_000003; the
    trial had gone on to 4 and 5, and `checkpoint.keep` deleted 3. Ray failed every attempt
    to restore the trial ("does not exist on storage anymore"), and it errored. Here: a
    graceful stop, then the checkpoint its saved state names removed."""
    import signal
    import time

    workdir = write_toy(tmp_path / "study")
    storage = tmp_path / "results"
    plan = make_plan(workdir, storage, trials={"num_samples": 1, "max_concurrent": 1},
                     space={"constants": {"epochs": 4, "batch_size": 32}},
                     pipeline={"trainer": {"target": "toy:SlowTrainer", "args": {"sleep": 1.0}}},
                     failure={"max_retries": 1}, checkpoint={"every": 1, "keep": 2})
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(RAY_USAGE_STATS_ENABLED="0", RAY_memory_monitor_refresh_ms="0", HOME=str(tmp_path))
    path = tmp_path / "plan.json"
    path.write_text(dumps(plan))
    cmd = [sys.executable, "-m", "hpoc.runtime", str(path), "--local", "--cpus", "2"]
    proc = subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 180
        while not list((storage / "toy").glob("trial_*/checkpoint_000001")):
            assert time.monotonic() < deadline and proc.poll() is None, "no second checkpoint"
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)  # the state is saved on the way out
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 75, err[-3000:]
    (trial_dir,) = (storage / "toy").glob("trial_*")
    newest = _saved_checkpoint(storage / "toy")
    for f in newest.iterdir():  # what `keep` did to it in the part of the run that was lost
        f.unlink()
    newest.rmdir()
    named = [json.loads(ln).get("checkpoint_dir_name") for ln in (trial_dir / "result.json").open()]
    left = sorted(n for n in named if n and (trial_dir / n).is_dir())
    run = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-4000:]
    gone = f"its checkpoint {newest.name} is gone from the storage"
    assert (f"{gone}: it resumes from {left[-1]}" if left else
            f"{gone} and no other with a known report is left: it starts over") in run.stderr, run.stderr
    (trial,) = json.loads((storage / "toy" / "summary.json").read_text())["trials"]
    assert (trial["status"], trial["epochs"], trial["error"]) == ("TERMINATED", 4, None), run.stderr[-3000:]


def _saved_checkpoint(exp: Path) -> Path:
    """The checkpoint Ray's newest saved state names as the (only) trial's latest."""
    from ray.tune.trainable.metadata import _TrainingRunMetadata

    state = json.loads(sorted(exp.glob("experiment_state-*.json"))[-1].read_text())
    ((_, meta),) = state["trial_data"]
    result = _TrainingRunMetadata.from_json_state(meta).checkpoint_manager.latest_checkpoint_result
    return Path(result.checkpoint.path)
