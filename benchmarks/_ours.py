"""hpoc's side of the benchmarks: the Fashion-MNIST example study, compiled for real.

`study_text(...)` is examples/fashion_mnist/study.hpo reduced to what a benchmark varies;
`compile_plan(text)` runs it through the compiler (plan.json as `hpoc compile` writes it,
workdir = the example's directory, so `data:`/`trainer:` resolve to the example's own
getter, splitter and `FashionTrainer`). `bound_trainer(plan, config)` builds the trainer
the way a one-worker trial does (`hpoc.runtime.trial`): pipeline data, plan strategy,
reporter - ready for `setup()` / `train_epoch()` / `execute()`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "fashion_mnist"


def study_text(root: str | Path, *, name: str = "bench", epochs: int = 1, batch_size: Any = 128,
               learning_rate: Any = 1e-3, num_samples: int = 1, max_concurrent: int | None = None,
               workers: int = 1, cpus_per_worker: float = 1, gpus_per_worker: float = 0,
               compile: bool = False, precision: str = "auto", seed: int | None = 0,
               scheduler: str = "", search: str = "search random { seed = 0 }",
               storage: str | Path = "/tmp/hpoc-bench", checkpoint_every: int = 1,
               extra: str = "") -> str:
    def lit(v: Any) -> str:
        return json.dumps(v) if isinstance(v, (str, bool)) or v is None else str(v)

    concurrent = f", max_concurrent = {max_concurrent}" if max_concurrent else ""
    return f"""
study "{name}"
pipeline {{
  getter   = data:FashionMNISTGetter(root = {json.dumps(str(root))})
  splitter = data:FashionMNISTSplitter(train_proportion = 0.9, validation_proportion = 0.1)
  trainer  = trainer:FashionTrainer
}}
space {{
  batch_size    = {batch_size}
  learning_rate = {learning_rate}
  epochs        = {epochs}
}}
objective minimize val_loss
trials {{ num_samples = {num_samples}{concurrent} }}
{search}
{scheduler}
resources {{
  workers = {workers}, cpus_per_worker = {cpus_per_worker}, gpus_per_worker = {gpus_per_worker}
}}
training {{ precision = {precision}, compile = {lit(compile)}, seed = {lit(seed)} }}
checkpoint {{ every = {checkpoint_every} }}
storage {{ path = {json.dumps(str(storage))}, name = "{name}" }}
{extra}
"""


def compile_plan(text: str) -> dict[str, Any]:
    from hpoc.compiler import compile_source
    from hpoc.plan import content_hash

    plan = compile_source(text, "study.hpo", workdir=str(EXAMPLE))
    plan["content_hash"] = content_hash(plan)
    return plan


def bound_trainer(plan: dict[str, Any], config: dict[str, Any], directory: str | Path,
                  data: Any = None, seed: int = 0) -> Any:
    """The plan's trainer bound as in a one-worker trial (LocalReporter instead of Tune)."""
    from hpoc.runtime import pipeline
    from hpoc.runtime.report import LocalReporter
    from hpoc.runtime.trainer import TrialInfo
    from hpoc.runtime.trial import build_trainer, make_strategy

    if data is None:
        data = pipeline.load_data(plan)
    trainer = build_trainer(plan)
    strategy = make_strategy(plan, trainer, distributed=False)
    trainer.bind(config=config, strategy=strategy, reporter=LocalReporter(directory), plan=plan,
                 trial=TrialInfo(seed=seed, deterministic=plan["training"]["seed"] is not None),
                 data=data)
    return trainer


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    import os
    import platform

    import torch

    info: dict[str, Any] = {"python": platform.python_version(), "torch": torch.__version__,
                            "cpus": len(os.sched_getaffinity(0)), "torch_threads": torch.get_num_threads()}
    try:
        info["load_avg_1m"] = round(os.getloadavg()[0], 2)
    except OSError:
        pass
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def emit(result: dict[str, Any], out: str | None) -> None:
    """Print the final JSON line; with `out` (a directory or a .jsonl file) append it there."""
    import os

    line = json.dumps(result, sort_keys=True)
    print(line, flush=True)
    if not out:
        return
    path = Path(out)
    if path.suffix != ".jsonl":
        path.mkdir(parents=True, exist_ok=True)
        path = path / f"{result['benchmark']}.jsonl"
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(line + "\n")
    if os.environ.get("HPOC_BENCH_VERBOSE"):
        print(f"appended to {path}", flush=True)


def median(values: list[float]) -> float:
    import statistics

    return statistics.median(values) if values else float("nan")


def run_hpoc(text: str, workdir: str | Path = EXAMPLE, *, num_cpus: int | None = None,
             num_gpus: int | None = None) -> tuple[float, list[list[dict[str, Any]]], dict[str, Any]]:
    """Compile `text` and run it with `hpoc.runtime.run_study` on a local Ray; returns
    (wall seconds, every trial's reports in order, summary.json)."""
    import io
    import time

    from hpoc.compiler import compile_source
    from hpoc.plan import content_hash
    from hpoc.runtime.study import RunOptions, experiment_dir, run_study

    plan = compile_source(text, "study.hpo", workdir=str(workdir))
    plan["content_hash"] = content_hash(plan)
    progress = io.StringIO()
    started = time.monotonic()
    code = run_study(plan, RunOptions(local=True, num_cpus=num_cpus, num_gpus=num_gpus,
                                      progress=progress, out=io.StringIO()))
    wall = time.monotonic() - started
    if code != 0:
        raise SystemExit(f"hpoc study failed ({code}):\n{progress.getvalue()}")
    summary = json.loads((experiment_dir(plan, 0) / "summary.json").read_text())
    reports = []
    for trial in summary["trials"]:
        lines = (Path(trial["path"]) / "result.json").read_text().splitlines()
        reports.append([json.loads(line) for line in lines if line.strip()])
    return wall, reports, summary
