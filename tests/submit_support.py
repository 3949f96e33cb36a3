"""Tiny real studies (scikit-learn digits) and SLURM helpers for the submit/shards/resume tests."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DIGITS = REPO / "examples" / "digits"

SLOW_TRAINER = '''

class SlowDigits(DigitsTrainer):
    """Sleeps per epoch, so that a job can be interrupted while its trials are busy."""

    def train_epoch(self, epoch):
        import time
        time.sleep(float(self.args.get("sleep", 0.0)))
        return super().train_epoch(epoch)
'''


def write_study(folder: Path, name: str, *, nodes: int = 1, cpus: int = 1, num_samples: int = 3,
                max_concurrent: int = 1, epochs: int = 2, sleep: float = 0.0, search: str = "optuna",
                shards: int = 1, parallel: int = 1, grace: str = "30s", scheduler: str = "",
                slurm: bool = True, time_limit: str = "00:10:00") -> Path:
    """A digits study in `folder` (spec, data.py, trainer.py); returns the spec path."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(DIGITS / "data.py", folder / "data.py")
    (folder / "trainer.py").write_text((DIGITS / "trainer.py").read_text() + SLOW_TRAINER)
    search_block = ("search optuna {\n  sampler = tpe\n  seed    = 0\n}" if search == "optuna"
                    else f"search {search} {{\n  seed = 0\n}}")
    array = f"\n  array {{ shards = {shards}, parallel = {parallel} }}" if shards > 1 else ""
    slurm_block = f'''
slurm {{
  nodes         = {nodes}
  cpus_per_node = {cpus}
  mem           = 1G
  time          = {time_limit}
  python        = "{sys.executable}"{array}
}}''' if slurm else ""
    spec = folder / "study.hpo"
    spec.write_text(f'''study "{name}"

pipeline {{
  getter   = data:DigitsGetter
  splitter = data:DigitsSplitter(train_proportion = 0.8, validation_proportion = 0.2)
  trainer  = trainer:SlowDigits(sleep = {sleep})
}}

space {{
  lr         = loguniform(1e-3, 3e-2)
  batch_size = 64
  hidden     = choice(8, 16)
  epochs     = {epochs}
}}

objective maximize val_accuracy

trials {{
  num_samples    = {num_samples}
  max_concurrent = {max_concurrent}
}}

{search_block}
{scheduler}
resources {{
  workers         = 1
  cpus_per_worker = 1
}}

resume {{
  grace = {grace}
}}

storage {{
  path = "results"
}}
{slurm_block}
''')
    return spec


# ---------------------------------------------------------------- results on disk


def reports(exp: Path) -> dict[str, list[dict[str, Any]]]:
    """trial directory name -> its result.json rows (epoch, pid, timestamp, ...)."""
    out = {}
    for path in sorted(exp.glob("trial_*/result.json")):
        rows = []
        for line in path.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except ValueError:
                pass
        out[path.parent.name] = rows
    return out


def summary(exp: Path) -> dict[str, Any]:
    return json.loads((exp / "summary.json").read_text())


# ---------------------------------------------------------------- SLURM


def scontrol(job_id: str) -> dict[str, str]:
    run = subprocess.run(["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True,
                         timeout=30)
    if run.returncode != 0 or not run.stdout.strip():
        return {}
    return dict(re.findall(r"(\w+)=(\S*)", run.stdout.splitlines()[0]))


def squeue_ids() -> set[str]:
    run = subprocess.run(["squeue", "-h", "-r", "-o", "%i"], capture_output=True, text=True, timeout=30)
    return set(run.stdout.split())


DONE = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED",
        "BOOT_FAIL", "DEADLINE"}


def wait_for(predicate, timeout: float, what: str, logs: Path | None = None, poll: float = 0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"{what}: not within {timeout} s\n{log_tail(logs) if logs else ''}")


def wait_done(job_ids: list[str], timeout: float, logs: Path | None = None) -> list[dict[str, str]]:
    def done():
        records = [scontrol(j) for j in job_ids]
        return records if all(r.get("JobState") in DONE for r in records) else None

    try:
        return wait_for(done, timeout, f"jobs {job_ids} to end", logs, poll=1.0)
    except AssertionError:
        subprocess.run(["scancel", *job_ids], capture_output=True)
        raise


def log_tail(folder: Path, chars: int = 3000) -> str:
    parts = []
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.suffix in (".out", ".err", ".log"):
            parts.append(f"==== {path}\n{path.read_text(errors='replace')[-chars:]}")
    return "\n".join(parts)


def ray_processes(job_id: str) -> list[str]:
    """Processes of a job's Ray nodes (their temp dirs are under /tmp/hpoc-<job id>)."""
    raw = job_id.split("_")[0]
    out = subprocess.run(["pgrep", "-af", f"/tmp/hpoc-{raw}"], capture_output=True, text=True).stdout
    return [ln for ln in out.splitlines() if "pgrep" not in ln]


def hpoc(*args: str, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0")
    return subprocess.run([sys.executable, "-m", "hpoc", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)



def fake_squeue(monkeypatch, bin_dir: Path, rows: list[str], fails: str | None = None) -> None:
    """An `squeue` on PATH that prints `rows` (`%i|%T|%M|%N|%r|%K|%o`, what
    hpoc.submit.queue asks for) whatever it is asked (each call's arguments are appended to
    `bin_dir/asked`), or, given `fails`, says that and exits 1 (a controller that does not
    answer); `sbatch` and `srun` that fail (no job can be submitted by mistake)."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    (bin_dir / "rows").write_text("".join(r + "\n" for r in rows))
    answer = f"echo '{fails}' >&2; exit 1" if fails else f"exec /bin/cat '{bin_dir / 'rows'}'"
    (bin_dir / "squeue").write_text(f"#!/bin/sh\necho \"$@\" >>'{bin_dir / 'asked'}'\n{answer}\n")
    (bin_dir / "squeue").chmod(0o755)
    for name in ("sbatch", "srun"):  # present (submitit looks), but they submit nothing
        (bin_dir / name).write_text("#!/bin/sh\necho 'not in this test' >&2\nexit 1\n")
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
