"""Warm worker groups: multi-worker trials without starting a Ray Train run per trial.

With `resources.reuse_workers = true` (the default under PBT/PB2), a multi-worker trial's Tune trainable reserves its
driver bundle plus one bundle per worker (one placement group, so Tune still counts and
schedules whole trials), and Tune reuses the trainable process for the next trial with the
same resources. The first trial in that process starts `workers` PoolWorker actors in the
placement group's bundles; they join a torch.distributed group (NCCL on GPU, Gloo on CPU)
and import the study's code. Every later trial in that process borrows the same warm
group: no new processes, no imports, no rendezvous, and the data already fetched (and on
the device) stays. Each trial gets a fresh trainer - model, optimizer, loss, batches - and
nothing else it could have changed survives it (pool_worker.TrialScope).

The trainable relays rank 0's reports to Tune (`tune.report`, with the checkpoint files
staged on shared storage under the trial's `train/<trial id>/` directory) and hands Tune's
decision back; resuming works as for one-worker trials (Tune's latest checkpoint). A
failed rank poisons the group: its actors are killed and the next trial starts a new one.
Ray's own Train V2 path (trial.py) stays the default.
"""

from __future__ import annotations

import re
import shutil
import sys
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

from hpoc.runtime.crash import note_rank
from hpoc.runtime.pool_worker import PoolWorker

SETTLE_S = 300.0  # how long to wait for ranks to unwind after rank 0 (or the previous trial)


def enabled(plan: dict[str, Any]) -> bool:
    """Whether multi-worker trials run on warm groups (`reuse_workers`, which the compiler
    makes the default under PBT/PB2: those clone the checkpoints Tune holds, and a Ray
    Train run keeps its own to itself)."""
    res = plan["resources"]
    return int(res["workers"]) > 1 and bool(res.get("reuse_workers"))


def backend(plan: dict[str, Any]) -> str:
    return "nccl" if (plan["resources"]["gpus_per_worker"] or 0) > 0 else "gloo"


def signature(plan: dict[str, Any]) -> tuple:
    """What a warm group is good for: trials with the same shape, code and strategy."""
    res = plan["resources"]
    return (int(res["workers"]), float(res["cpus_per_worker"]), float(res["gpus_per_worker"] or 0),
            res["strategy"], backend(plan), plan["source"]["workdir"])


def worker_bundle(plan: dict[str, Any]) -> dict[str, float]:
    res = plan["resources"]
    bundle = {"CPU": float(res["cpus_per_worker"])}
    if res["gpus_per_worker"]:
        bundle["GPU"] = float(res["gpus_per_worker"])
    return bundle


def placement(plan: dict[str, Any], driver_cpu: float) -> Any:
    """Tune resources of a pooled trial: its driver plus every worker, reserved together."""
    from ray import tune

    return tune.PlacementGroupFactory(
        [{"CPU": driver_cpu}] + [worker_bundle(plan)] * int(plan["resources"]["workers"]),
        strategy="PACK")


@dataclass
class WarmGroup:
    """`workers` actors in one process group, and the trial running on them (if any)."""

    key: tuple
    workers: list[Any]
    pids: list[int]
    running: list[Any] = field(default_factory=list)

    @classmethod
    def start(cls, plan: dict[str, Any], crash_dir: str | None = None) -> "WarmGroup":
        """Start the group for the trial whose directory is `crash_dir`: a rank that dies
        while it starts (importing the study's code) leaves its crash there, and is named."""
        import ray
        from ray.util import get_current_placement_group
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        res = plan["resources"]
        n = int(res["workers"])
        actor = ray.remote(PoolWorker)
        pg = get_current_placement_group()
        workers = []
        for rank in range(n):
            opts: dict[str, Any] = {"num_cpus": float(res["cpus_per_worker"]),
                                    "num_gpus": float(res["gpus_per_worker"] or 0),
                                    "max_concurrency": 3, "max_restarts": 0}
            if pg is not None and len(pg.bundle_specs) > n:
                opts["scheduling_strategy"] = PlacementGroupSchedulingStrategy(
                    pg, placement_group_bundle_index=rank + 1)
            workers.append(actor.options(**opts).remote(rank, n))
        group = cls(signature(plan), workers, [])
        try:
            where = _gather(group, [w.where.remote() for w in workers])
            local, visible = _local_ranks([w["node"] for w in where], [w["gpus"] for w in where])
            targets = [step["target"] for step in plan["pipeline"].values() if step]
            group.pids = _gather(group, [
                w.join.remote(where[0]["ip"], where[0]["port"], backend(plan), lr, lw,
                              plan["source"]["workdir"], targets, gpus, float(res["gpus_per_worker"] or 0),
                              crash_dir)
                for w, (lr, lw), gpus in zip(workers, local, visible)])
        except BaseException:
            group.close()
            raise
        return group

    def settle(self, timeout: float = SETTLE_S) -> bool:
        """Wait for the previous trial's workers to unwind; False if they did not."""
        import ray

        if not self.running:
            return True
        done, pending = ray.wait(self.running, num_returns=len(self.running), timeout=timeout)
        self.running = []
        if pending:
            return False
        try:
            ray.get(done)
        except Exception:
            return False
        return True

    def alive(self, timeout: float = 30.0) -> bool:
        """Whether every rank still answers: one killed while the group waited for the next
        trial (the OOM killer, a SIGTERM) would fail that trial for a death before it."""
        import ray

        refs = [w.ping.remote() for w in self.workers]
        for rank, ref in enumerate(refs):
            try:
                ray.get(ref, timeout=timeout)
            except Exception:  # noqa: BLE001 - dead, or not answering: either way not lent
                print(f"hpoc: rank {rank} of this process's warm group died between trials (or does "
                      "not answer); this trial starts a new group", file=sys.stderr, flush=True)
                return False
        return True

    def close(self) -> None:
        import ray

        for w in self.workers:
            try:
                ray.kill(w, no_restart=True)
            except Exception:
                pass
        self.workers, self.running = [], []


def _local_ranks(nodes: list[str], gpus: list[list[str]] | None = None
                 ) -> tuple[list[tuple[int, int]], list[list[str] | None]]:
    """(local rank, local world size) of each rank from the nodes the ranks run on, and the
    GPUs each should see. With one GPU per worker, a worker sees its node's workers' GPUs
    and its local rank is the index of its own; otherwise ranks count in order per node."""
    gpus = gpus or [[] for _ in nodes]
    by_node: dict[str, list[int]] = {}
    for rank, node in enumerate(nodes):
        by_node.setdefault(node, []).append(rank)
    ranks: list[tuple[int, int]] = [(0, 1)] * len(nodes)
    visible: list[list[str] | None] = [None] * len(nodes)
    for node, members in by_node.items():
        own = [gpus[r] for r in members]
        if all(len(g) == 1 for g in own) and len({g[0] for g in own}) == len(own):
            union = sorted((g[0] for g in own), key=lambda x: (len(x), x))
            for r, g in zip(members, own):
                ranks[r], visible[r] = (union.index(g[0]), len(members)), union
        else:
            for i, r in enumerate(members):
                ranks[r] = (i, len(members))
    return ranks, visible


# The warm group of this process (a Tune trainable that Tune reuses across trials).
_group: WarmGroup | None = None


def borrow(plan: dict[str, Any], crash_dir: str | None = None) -> WarmGroup:
    """This process's warm group for `plan`, started on first use or after a failure (for
    the trial whose directory is `crash_dir`, WarmGroup.start)."""
    global _group
    if _group is not None and (_group.key != signature(plan) or not _group.settle() or not _group.alive()):
        discard()
    if _group is None:
        _group = WarmGroup.start(plan, crash_dir)
    return _group


def discard(group: WarmGroup | None = None) -> None:
    """Close `group` (by default this process's warm group); the next trial starts anew."""
    global _group
    group = group or _group
    if group is None:
        return
    if group is _group:
        _group = None
    group.close()


def run_trial(group: WarmGroup, payload: dict[str, Any],
              on_report: Callable[[dict[str, Any], str | None], None]) -> str:
    """Run one trial on `group`; `on_report(metrics, checkpoint_dir)` sees each report and
    may raise (Tune's SystemExit when the trial should stop). "done" or "stopped"."""
    import ray

    token = payload["token"] = payload.get("token") or uuid.uuid4().hex
    group.running = [w.run_trial.remote(payload) for w in group.workers]
    head = group.workers[0]
    waiting = list(group.running)
    event_ref = head.next_event.remote(token)
    answered = False
    try:
        while True:
            ready, _ = ray.wait([event_ref] + waiting, num_returns=1)
            if ready[0] != event_ref:  # a rank returned (or failed) before rank 0 said so
                waiting.remove(ready[0])
                _raise_failures(group, ready)
                continue
            event = ray.get(event_ref)
            if event.get("end"):
                answered = True
                return _finish(group)
            checkpoint = event["checkpoint"]
            try:
                on_report(event["metrics"], checkpoint)
            finally:
                if checkpoint:
                    shutil.rmtree(checkpoint, ignore_errors=True)
            head.decide.remote(token, True)
            event_ref = head.next_event.remote(token)
    finally:
        if not answered and group.workers:
            # Tune stopped the trial (or the trainable failed): the workers leave `report()`
            # together; the next trial waits for that in `borrow()`.
            head.decide.remote(token, False)


def _gather(group: WarmGroup, refs: list[Any]) -> list[Any]:
    """The results of one call per rank; the first rank to fail fails the start as a rank
    fails a trial (_raise_failures: the rank whose process died is named). A rank that waits
    for a dead one (its rendezvous) is not waited for."""
    import ray

    group.running, waiting = refs, list(refs)
    while waiting:
        done, waiting = ray.wait(waiting, num_returns=1)
        _raise_failures(group, done)
    group.running = []
    return ray.get(refs)


def _finish(group: WarmGroup) -> str:
    """Rank 0 is done: its error if it failed, else the other ranks' outcome."""
    import ray

    _raise_failures(group, group.running[:1])
    done, pending = ray.wait(group.running, num_returns=len(group.running), timeout=SETTLE_S)
    _raise_failures(group, done)
    if pending:
        discard(group)
        raise RuntimeError(f"{len(pending)} worker(s) did not finish {SETTLE_S:g} s after rank 0")
    statuses = ray.get(done)
    group.running = []
    return "stopped" if "stopped" in statuses else "done"


def _raise_failures(group: WarmGroup, done: list[Any]) -> None:
    import ray

    for ref in done:
        try:
            ray.get(ref)
        except Exception as exc:
            # Other ranks may be stuck in a collective with the failed one: the group is
            # gone. The trial fails with the rank's own error (and traceback), or with the
            # death of the rank that made this one lose its peer.
            failure = _dead_peer(group, ref) if _PEER_GONE.search(str(exc)) else None
            rank, exc = failure or (_rank(group, ref), exc)
            discard(group)
            if rank is not None and isinstance(exc, ray.exceptions.RayActorError):
                note_rank(exc, rank)  # which one: crash.dead_rank
            raise exc


# A rank's error when its peer's process died (Gloo's, NCCL's)
_PEER_GONE = re.compile(r"Connection (closed|reset) by peer|DistBackendError|DistNetworkError|"
                        r"NCCL communicator was aborted|remote process exited|Broken pipe")
PEER_WAIT_S = 5.0  # how long Ray may take to see the death of the rank that caused it


def _rank(group: WarmGroup, ref: Any) -> int | None:
    return group.running.index(ref) if ref in group.running else None


def _dead_peer(group: WarmGroup, failed: Any) -> tuple[int, Exception] | None:
    """(rank, error) of another rank whose process died, when `failed`'s error is that its
    peer went away; None when none did (within PEER_WAIT_S)."""
    import ray

    waiting = [ref for ref in group.running if ref != failed]
    deadline = time.monotonic() + PEER_WAIT_S
    while waiting and time.monotonic() < deadline:
        done, waiting = ray.wait(waiting, num_returns=1, timeout=deadline - time.monotonic())
        for ref in done:
            try:
                ray.get(ref)
            except ray.exceptions.RayActorError as died:
                return group.running.index(ref), died
            except Exception:
                pass
    return None


def run_pooled_trial(plan: dict[str, Any], cfg: dict[str, Any], data_ref: list[Any], trial: Any,
                     experiment_dir: str) -> None:
    """The Tune trainable's part of a pooled multi-worker trial."""
    from hpoc.runtime.report import TuneReporter
    from hpoc.runtime.trial import train_runs_dir

    group = borrow(plan, trial.dir)
    reporter = TuneReporter()
    with reporter.latest_checkpoint() as resume_from:  # as for one-worker trials
        work = payload(plan, cfg, data_ref, trial, train_runs_dir(experiment_dir) / trial.id,
                       resume_from)
        run_trial(group, work, reporter.report)  # Tune's copy of the staged files synced too
    reporter.flush()  # the last checkpoint's sync (in a thread of its own), and what it met


def payload(plan: dict[str, Any], cfg: dict[str, Any], data_ref: list[Any], trial: Any,
            trial_dir: Any, resume_from: str | None = None) -> dict[str, Any]:
    """What every worker gets for one trial; `trial_dir` (on storage every node sees) holds
    the staged checkpoints."""
    return {"plan": plan, "config": cfg, "data_ref": data_ref, "trial": dict(trial.__dict__),
            "trial_dir": str(trial_dir), "resume_from": resume_from}


__all__ = ["WarmGroup", "borrow", "discard", "enabled", "placement", "run_trial", "run_pooled_trial"]
