"""What runs inside a trial: the Tune function trainable and the Ray Train worker loop.

One-worker trials run the trainer directly in the Tune trial process (no Train worker
group: about 18x less start-up per trial). Trials with more workers follow Ray Train V2's
pattern: the Tune trial builds a `TorchTrainer` with a deterministic run name under the
experiment directory - so a retried or requeued trial finds its Train run and checkpoints
again - and `TuneReportCallback` forwards rank 0's reports to Tune.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

from hpoc.runtime import output, pipeline, report
from hpoc.runtime.space import trial_config
from hpoc.runtime.strategy import Strategy


def train_runs_dir(experiment_dir: str | os.PathLike) -> Path:
    return Path(experiment_dir) / "train"


def make_strategy(plan: dict[str, Any], trainer: Any, *, distributed: bool) -> Strategy:
    from hpoc.runtime.gpus import device_problem

    res, training = plan["resources"], plan["training"]
    kind = res["strategy"] if (distributed or res["strategy"] == "deepspeed") else "single"
    strategy = Strategy.create(kind, precision=training["precision"], compile=training["compile"],
                               deepspeed=res.get("deepspeed"),
                               grad_accumulation_steps=getattr(trainer, "grad_accumulation_steps", 1),
                               channels_last=getattr(trainer, "channels_last", "auto"),
                               find_unused_parameters=unused_parameters(res, trainer))
    problem = device_problem(float(res["gpus_per_worker"] or 0), strategy.device())
    if problem:  # a node's: a retry may run where the GPUs work
        raise RuntimeError(problem)
    return strategy


def unused_parameters(resources: dict[str, Any], trainer: Any) -> bool:
    """DDP's `find_unused_parameters`: the spec's when it says, else the trainer's attribute."""
    said = resources.get("find_unused_parameters")  # absent in plans from before the key
    return bool(getattr(trainer, "find_unused_parameters", False) if said is None else said)


def build_trainer(plan: dict[str, Any]) -> Any:
    step = plan["pipeline"]["trainer"]
    return pipeline.build("trainer", step, plan["source"]["workdir"])


def run_trainer(plan: dict[str, Any], config: dict[str, Any], data: Any, reporter: Any,
                trial: Any, *, distributed: bool) -> Any:
    """Build the plan's trainer in this process and train it for one trial."""
    trainer = build_trainer(plan)
    strategy = make_strategy(plan, trainer, distributed=distributed)
    trainer.bind(config=config, strategy=strategy, reporter=reporter, plan=plan, trial=trial,
                 data=data)
    execute(trainer)
    return trainer


def execute(trainer: Any) -> None:
    """`trainer.execute()` in a trial process, where a KeyboardInterrupt is the trainer's own
    (a Ctrl-C handler re-raising it, a library): Ray's processes block SIGINT (Ctrl-C stops
    the driver, which stops the trials) and Ray does not interrupt an actor's running task.
    Ray would report it as "TaskCancelledError: Task ... was cancelled"."""
    try:
        trainer.execute()
    except KeyboardInterrupt as exc:
        from hpoc.runtime.summary import raised_at

        raise RuntimeError(
            f"the trainer raised KeyboardInterrupt itself{raised_at(exc)}; nothing stopped the trial "
            "(Ctrl-C reaches the driver only)\n"
            "  help: raise another exception there to fail the trial, or return from the training loop "
            "to end it") from exc


def _limit_threads(cpus: float) -> None:
    import torch

    torch.set_num_threads(max(1, int(cpus)))


def trial_storage_dir(ctx: Any, experiment_dir: str) -> str:
    """The trial's directory in the experiment directory, beside its result.json and
    checkpoints (Tune's `get_trial_dir()` is a local staging folder); created now."""
    try:
        path = Path(ctx.get_storage().trial_fs_path)
    except Exception:  # noqa: BLE001 - no storage context: the name tuner.trial_dirname gives
        name = ctx.get_trial_name()
        path = Path("trial_" + name[1:] if name.startswith("t") else name)
    if not path.is_absolute():
        path = Path(experiment_dir) / path.name
    path.mkdir(parents=True, exist_ok=True)
    return str(path)


def tune_trial(config: dict[str, Any], plan: dict[str, Any], data_ref: list[Any],
               experiment_dir: str, shard: int, parent_run_id: str | None = None,
               run: str | None = None) -> None:
    """The Tune function trainable of every trial (see `tuner.make_trainable`); `run` is
    the driver's token for this `hpoc run` (retry.py)."""
    from ray import tune

    from hpoc.runtime import retry
    from hpoc.runtime.trainer import TrainerError, TrialInfo

    # Tune made its temporary per-trial folder the working directory; trials run in the
    # spec's directory instead, and write their own files to `trial.dir` on storage.
    pipeline.adopt_workdir(plan["source"]["workdir"])
    ctx = tune.get_context()
    trial = TrialInfo.for_trial(ctx.get_trial_id(), ctx.get_trial_name(),
                                plan["training"]["seed"], shard, parent_run_id,
                                directory=trial_storage_dir(ctx, experiment_dir),
                                shards=plan["shards"]["count"] if plan["search"]["algorithm"] in ("random", "grid")
                                else None)
    failed = retry.recorded(trial.dir, run)
    if failed is not None:  # a retry of a deterministic failure: the same error, now
        raise TrainerError(failed)
    try:
        with output.kept(trial.dir):
            _run_trial(plan, config, data_ref, trial, experiment_dir)
    except BaseException as exc:
        error = retry.deterministic(exc)
        if error is not None:
            retry.record(trial.dir, run, error)
        raise


def _run_trial(plan: dict[str, Any], config: dict[str, Any], data_ref: list[Any], trial: Any,
               experiment_dir: str) -> None:
    cfg = trial_config(config, plan["space"])
    res = plan["resources"]
    if res["workers"] == 1:
        from hpoc.runtime import oom
        from hpoc.runtime.pool_worker import TrialScope

        oom.record(trial.dir)  # should this process die, the driver reads the count on (oom.py)
        try:
            report.set_mode("tune")
            # Tune reuses this process for the next trial: what this one changes is undone
            with TrialScope(plan["source"]["workdir"]):
                _limit_threads(res["cpus_per_worker"])
                data = pipeline.fetch(data_ref[0])
                run_trainer(plan, cfg, data, report.TuneReporter(), trial, distributed=False)
        finally:  # the process lives on: no death for the driver to read, and one inode less a trial
            oom.forget(trial.dir)
        return
    from hpoc.runtime import oom, pool

    kills = oom.kills()
    try:
        if pool.enabled(plan):  # a warm worker group instead of a Train run (pool.py)
            pool.run_pooled_trial(plan, cfg, data_ref, trial, experiment_dir)
        else:
            _fit_train_run(plan, cfg, data_ref, trial, experiment_dir)
    except BaseException as exc:
        output.drop_empty_rank_crashes(trial.dir, int(res["workers"]))
        oom.note_kill(exc, kills)  # a rank SIGKILLed for memory: say so
        raise


# How often a Train run's controller collects its workers' reports (Ray's default: 2 s).
# Tune decides on a report only once it has it, and the workers train on meanwhile: a trial
# Tune stopped or paused had trained up to 2 s more, a whole epoch when epochs are short
# (a worker's next report waits for the previous one to be collected).
POLL_S = 0.2


def _fit_train_run(plan: dict[str, Any], cfg: dict[str, Any], data_ref: list[Any], trial: Any,
                   experiment_dir: str) -> None:
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig
    from ray.tune.integration.ray_train import TuneReportCallback

    # Ray passes it on to the run's controller (a setting of the user's own stays)
    os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", str(POLL_S))
    res, ckpt = plan["resources"], plan["checkpoint"]
    use_gpu = (res["gpus_per_worker"] or 0) > 0
    per_worker: dict[str, float] = {"CPU": res["cpus_per_worker"]}
    if use_gpu:
        per_worker["GPU"] = res["gpus_per_worker"]
    trainer = train_run_class()(
        train_worker,
        train_loop_config={"plan": plan, "config": cfg, "data_ref": data_ref,
                           "trial": trial.__dict__},
        scaling_config=ScalingConfig(num_workers=res["workers"], use_gpu=use_gpu,
                                     resources_per_worker=per_worker),
        torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
        run_config=RunConfig(
            # Same name and storage on every attempt: Train V2 resumes the run and
            # `ray.train.get_checkpoint()` hands the workers its latest checkpoint.
            name=trial.id,
            storage_path=str(train_runs_dir(experiment_dir)),
            callbacks=[TuneReportCallback()],
            failure_config=FailureConfig(max_failures=0),  # Tune retries the whole trial
            checkpoint_config=CheckpointConfig(
                num_to_keep=ckpt["keep"], checkpoint_score_attribute=ckpt["score_attribute"],
                checkpoint_score_order=ckpt["score_order"] or "max"),
        ),
    )
    trainer.fit()


@functools.lru_cache(maxsize=1)
def train_run_class() -> type:
    """Ray's TorchTrainer without Train's placement-group cleaner: a detached actor per run
    that asks Ray's dashboard (not started here) whether the run's controller is alive. It
    could never act, and one was left behind by every trial Tune ended early (a process,
    and a share of the head node that runs out). The driver frees what a trial Tune ended
    left reserved instead (orphans.py). On AMD nodes its workers see the GPUs Train
    shares them in HIP_VISIBLE_DEVICES too (ShareAmdGpus)."""
    import ray
    from ray.train.torch import TorchTrainer
    from ray.train.v2._internal.callbacks.accelerators import AcceleratorSetupCallback
    from ray.train.v2._internal.callbacks.placement_group_callback import PlacementGroupCleanerCallback
    from ray.train.v2._internal.execution.callback import WorkerGroupCallback

    from hpoc.runtime import visible

    class ShareAmdGpus(WorkerGroupCallback):
        """After Train shared its workers' GPUs in CUDA_VISIBLE_DEVICES: the same in HIP's
        (AMD nodes only), before Train makes a worker's GPU current."""

        def before_init_train_context(self, workers: list) -> dict:
            ray.get([w.execute_async(visible.hip_follows_cuda) for w in workers])
            return {}

    class TrainRun(TorchTrainer):
        def _create_default_callbacks(self) -> list:
            callbacks = []
            for c in super()._create_default_callbacks():
                if not isinstance(c, PlacementGroupCleanerCallback):
                    callbacks.append(c)
                if isinstance(c, AcceleratorSetupCallback) and self.scaling_config.use_gpu:
                    callbacks.append(ShareAmdGpus())
            return callbacks

    return TrainRun


def train_worker(loop_config: dict[str, Any]) -> None:
    """The loop of each Ray Train worker of a multi-worker trial."""
    import torch.distributed as dist

    from hpoc.runtime.trainer import TrialInfo

    report.set_mode("train")
    plan, trial = loop_config["plan"], TrialInfo(**loop_config["trial"])
    pipeline.adopt_workdir(plan["source"]["workdir"])
    _limit_threads(plan["resources"]["cpus_per_worker"])
    rank = dist.get_rank() if dist.is_initialized() else 0  # Train set the group up before
    with output.rank_crash(trial.dir, rank):
        data = pipeline.fetch(loop_config["data_ref"][0])
        run_trainer(plan, loop_config["config"], data, report.TrainReporter(), trial, distributed=True)
