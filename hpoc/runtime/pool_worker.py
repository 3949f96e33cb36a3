"""One process of a warm worker group (see pool.py): runs trial after trial.

A `PoolWorker` is a Ray actor that joins a torch.distributed group once and then runs each
trial it is given with a fresh trainer. What a trial may leave behind is undone by
`TrialScope`: the spec's own modules are imported afresh (their module-level state starts
over), RNGs are seeded by the trainer, the working directory is the spec's (as for every
trial; a trainer's own files go to `trainer.trial_dir`), and environment variables,
`sys.path`, warning filters and torch's global settings (global module hooks too) are put
back afterwards.
Kept on purpose: the process, the imports of libraries, the process group and the data.

Rank 0 hands each epoch's report to the trial's Tune trainable (`next_event`) and waits
for its decision (`decide`): continue, or stop because the scheduler or a stop criterion
ended the trial. The decision is broadcast, so every rank leaves `report()` the same way
- like Ray Tune's own `SystemExit(0)` - and the group stays usable.
"""

from __future__ import annotations

import contextlib
import gc
import os
import queue
import shutil
import sys
import warnings
from pathlib import Path
from typing import Any, Iterator

from hpoc.runtime import output, pipeline, report, visible


class TrialStopped(SystemExit):
    """Raised in `report()` on every rank when the trial should end (a normal end)."""

    def __init__(self) -> None:
        super().__init__(0)


def _torch_settings() -> dict[str, Any]:
    import torch

    out = {"dtype": torch.get_default_dtype(), "grad": torch.is_grad_enabled(),
           "threads": torch.get_num_threads(),
           "deterministic": torch.are_deterministic_algorithms_enabled(),
           "matmul": torch.get_float32_matmul_precision(),
           "anomaly": (torch.is_anomaly_enabled(), torch.is_anomaly_check_nan_enabled()),
           "device": torch.get_default_device(), "hooks": _global_hooks(),
           "warnings": list(warnings.filters)}
    if torch.backends.cudnn.is_available():
        out["cudnn"] = (torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic)
    return out


def _global_hooks() -> dict[str, Any]:
    """The hooks that `torch.nn.modules.module.register_module_*_hook` adds to every module
    of the process (a trial's would run in the next trial's models)."""
    from torch.nn.modules import module

    return {name: dict(value) if isinstance(value, dict) else value
            for name, value in vars(module).items() if name.startswith("_global_")}


def _set_torch_settings(s: dict[str, Any]) -> None:
    import torch

    torch.set_default_dtype(s["dtype"])
    torch.set_grad_enabled(s["grad"])
    torch.set_num_threads(s["threads"])
    torch.use_deterministic_algorithms(s["deterministic"])
    torch.set_float32_matmul_precision(s["matmul"])
    torch.autograd.set_detect_anomaly(*s["anomaly"])
    if torch.get_default_device() != s["device"]:  # (a device context slows every tensor made)
        torch.set_default_device(None if s["device"].type == "cpu" else s["device"])
    warnings.filters[:] = s["warnings"]
    from torch.nn.modules import module

    for name, value in s["hooks"].items():
        now = getattr(module, name)
        if isinstance(now, dict):  # in place: the hooks' handles hold these dicts
            now.clear()
            now.update(value)
        else:
            setattr(module, name, value)
    if "cudnn" in s:
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = s["cudnn"]


def forget_modules_under(directory: str) -> list[str]:
    """Drop modules loaded from `directory` (the spec's code) so the next import runs their
    top level again; returns their names. Installed packages (a virtualenv inside the
    study's directory) and hpoc itself are never dropped."""
    root = os.path.abspath(directory) + os.sep
    names = []
    for name, mod in list(sys.modules.items()):
        path = os.path.abspath(getattr(mod, "__file__", None) or "/")
        if path.startswith(root) and name.split(".")[0] != "hpoc" and \
                not any(part in ("site-packages", "dist-packages") for part in Path(path).parts):
            names.append(name)
    for name in names:
        del sys.modules[name]
    return names


@contextlib.contextmanager
def TrialScope(workdir: str) -> Iterator[None]:
    """Run one trial in the spec's directory `workdir`, with the spec's modules fresh;
    restore the process after."""
    env, path, here = dict(os.environ), list(sys.path), os.getcwd()
    settings = _torch_settings()
    forget_modules_under(workdir)
    pipeline.adopt_workdir(workdir)
    try:
        yield
    finally:
        os.chdir(here)
        os.environ.clear()
        os.environ.update(env)
        sys.path[:] = path
        _set_torch_settings(settings)
        forget_modules_under(workdir)
        import torch

        if torch.cuda.is_initialized():
            gc.collect()  # cycles that still hold device memory; a full pass costs ~0.1-0.4 s
            torch.cuda.empty_cache()
        else:
            gc.collect(0)


def _release(trainer: Any) -> None:
    """Drop the trial's model, optimizer and batches now (device memory goes back by
    reference counting, without waiting for a full garbage collection)."""
    strategy = getattr(trainer, "strategy", None)
    for owner in (trainer, strategy):
        for name in ("model", "optimizer", "lr_scheduler", "loss", "engine", "train_data",
                     "validation_data", "test_data", "train_dataloader", "validation_dataloader",
                     "test_dataloader", "_batches", "tracker", "reporter", "scaler"):
            if owner is not None and name in vars(owner):
                setattr(owner, name, None)


class PoolReporter(report.Reporter):
    """Reports of one trial: checkpoint files are staged on shared storage, rank 0 passes
    metrics and the staged directory to the trainable and waits for its decision."""

    def __init__(self, worker: "PoolWorker", token: str, stage_root: Path, resume_from: str | None) -> None:
        self.worker, self.token = worker, token
        self.stage_root, self.resume_from = stage_root, resume_from
        self.count = 0

    @contextlib.contextmanager
    def latest_checkpoint(self) -> Iterator[str | None]:
        yield self.resume_from

    def report(self, metrics: dict[str, Any], checkpoint_dir: str | None = None) -> None:
        import torch.distributed as dist

        self.count += 1
        staged = self.stage_root / f"report_{self.count:06d}"
        if checkpoint_dir:  # this rank's files (rank 0; every rank under DeepSpeed)
            shutil.copytree(checkpoint_dir, staged, dirs_exist_ok=True)
        world = dist.get_world_size() if dist.is_initialized() else 1
        if world > 1:
            dist.barrier()  # every rank's files are in place before rank 0 hands them over
        go: list[Any] = [None]
        if self.worker.rank == 0:
            self.worker.events.put({"token": self.token, "metrics": metrics,
                                    "checkpoint": str(staged) if checkpoint_dir else None})
            go[0] = self.worker.wait_decision(self.token)
        if world > 1:
            dist.broadcast_object_list(go, src=0)
        if not go[0]:
            raise TrialStopped()


def raylet_socket() -> str | None:
    """The path of the raylet's socket this Ray worker is connected to; None outside Ray."""
    with contextlib.suppress(Exception):
        import ray

        return ray._private.worker.global_worker.node.raylet_socket_name
    return None


class PoolWorker:
    """The actor class (pool.py wraps it with `ray.remote`)."""

    def __init__(self, rank: int, world_size: int) -> None:
        from hpoc.runtime.rank_term import heed_sigterm

        self.rank, self.world_size = rank, world_size
        heed_sigterm(raylet_socket())  # its trials run in other threads: Ray's own handler never runs
        self.events: queue.Queue = queue.Queue()
        self.decisions: queue.Queue = queue.Queue()

    # ------------------------------------------------------------ the group

    def where(self) -> dict[str, Any]:
        import ray

        ctx = ray.get_runtime_context()
        return {"node": ctx.get_node_id(), "ip": ray.util.get_node_ip_address(),
                "pid": os.getpid(), "port": report.free_port("") if self.rank == 0 else None,
                "gpus": [str(g) for g in ray.get_gpu_ids()]}

    def ping(self) -> None:
        """Answers while the process lives (WarmGroup.alive)."""

    def join(self, master: str, port: int, backend: str, local_rank: int, local_world: int,
             workdir: str, targets: list[str], visible_gpus: list[str] | None = None,
             gpus: float = 1, crash_dir: str | None = None) -> int:
        """Join the process group and import what trials will need; returns the pid. A crash
        meanwhile goes to `crash_dir`'s rank-<k>.crash (the trial that started the group).

        With GPUs, every worker sees all GPUs of its node's workers (as Ray Train does, so
        NCCL can use peer-to-peer links) and `local_rank` is the index of its own one."""
        os.environ.update({"MASTER_ADDR": master, "MASTER_PORT": str(port), "RANK": str(self.rank),
                           "WORLD_SIZE": str(self.world_size), "LOCAL_RANK": str(local_rank),
                           "LOCAL_WORLD_SIZE": str(local_world)})
        if visible_gpus:
            visible.share(visible_gpus)  # before CUDA (or HIP) starts
        with output.rank_crash(crash_dir, self.rank):
            self._join(master, port, backend, local_rank, workdir, targets, gpus)
        return os.getpid()

    def _join(self, master: str, port: int, backend: str, local_rank: int, workdir: str,
              targets: list[str], gpus: float) -> None:
        from datetime import timedelta

        import torch
        import torch.distributed as dist

        if backend == "nccl":
            from hpoc.runtime.gpus import device_problem

            problem = device_problem(gpus)
            if problem:  # torch's own words: "Found no NVIDIA driver on your system"
                raise RuntimeError(problem)
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend, init_method=f"tcp://{master}:{port}", rank=self.rank,
                                world_size=self.world_size, timeout=timedelta(minutes=30))
        pipeline.adopt_workdir(workdir)  # the spec's modules' top level runs there too
        import torch.nn.parallel  # noqa: F401  (DDP, on the first trial's path)

        import hpoc.runtime.trial  # noqa: F401

        for target in targets:  # libraries (torch, torchvision, ...) stay imported
            pipeline.import_target(target, workdir)
        forget_modules_under(workdir)

    # ------------------------------------------------------------ one trial

    def run_trial(self, payload: dict[str, Any]) -> str:
        """Train one trial; "done", or "stopped" when the trainable said stop."""
        import torch
        import torch.distributed as dist

        from hpoc.runtime.trainer import TrialInfo
        from hpoc.runtime.trial import build_trainer, execute, make_strategy

        plan, token = payload["plan"], payload["token"]
        self._drain()
        report.set_mode("pool")
        workdir = plan["source"]["workdir"]
        trial_dir = Path(payload["trial_dir"])
        with output.rank_crash(payload["trial"].get("dir"), self.rank), TrialScope(workdir):
            torch.set_num_threads(max(1, int(plan["resources"]["cpus_per_worker"])))
            check = torch.ones(1, device=self._device())
            dist.all_reduce(check)  # the group answers, and every rank starts together
            if int(check.item()) != self.world_size:
                raise RuntimeError(f"process group check failed: {check.item()} != {self.world_size}")
            data = pipeline.fetch(payload["data_ref"][0])
            reporter = PoolReporter(self, token, trial_dir / "staging", payload.get("resume_from"))
            trainer = build_trainer(plan)
            try:
                strategy = make_strategy(plan, trainer, distributed=True)
                trainer.bind(config=payload["config"], strategy=strategy, reporter=reporter, plan=plan,
                             trial=TrialInfo(**payload["trial"]), data=data)
                execute(trainer)
            except SystemExit as exc:
                if exc.code not in (0, None):
                    raise RuntimeError(f"the trial called sys.exit({exc.code!r})") from None
                return "stopped"
            finally:
                _release(trainer)
                if self.rank == 0:
                    self.events.put({"token": token, "end": True})
        return "done"

    def _device(self) -> Any:
        """This rank's device, made current in the calling thread (CUDA's current device is
        per thread, and Ray runs actor methods in a thread pool)."""
        import torch
        import torch.distributed as dist

        if dist.get_backend() != "nccl":
            return torch.device("cpu")
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        return torch.device("cuda", torch.cuda.current_device())

    def _drain(self) -> None:
        """Forget what an earlier trial left unread (a stopped trial's last report)."""
        for q in (self.events, self.decisions):
            while not q.empty():
                q.get_nowait()

    def next_event(self, token: str) -> dict[str, Any]:
        """The next report of trial `token` on rank 0, or its end (`{"end": True}`)."""
        while True:
            event = self.events.get()
            if event["token"] == token:
                return event

    def decide(self, token: str, go: bool) -> None:
        self.decisions.put((token, bool(go)))

    def wait_decision(self, token: str) -> bool:
        while True:
            got, go = self.decisions.get()
            if got == token:
                return go
