"""Warm worker groups (hpoc/runtime/pool.py): trial after trial on the same processes and
process group, with nothing of one trial reaching the next."""

from __future__ import annotations

import io
import json
import textwrap
from pathlib import Path

import pytest

from hpoc.runtime import pipeline, pool
from hpoc.runtime.trainer import TrialInfo
from runtime_plans import make_plan, write_toy

pytestmark = pytest.mark.ray

LEAKY = textwrap.dedent('''
    """Trainers that look at what earlier trials in the same process left behind."""
    import os
    import random
    import sys

    import numpy as np
    import torch
    import torch.distributed as dist

    from toy import ToyTrainer

    STARTS = [0]  # module-level state


    class LeakyTrainer(ToyTrainer):
        def train(self):
            STARTS[0] += 1
            self.setup()
            one = torch.ones(1)
            dist.all_reduce(one)
            self.probe = {
                "starts": STARTS[0], "env": os.environ.get("HPOC_LEAK_PROBE", ""),
                "file_before": (self.trial_dir / f"leak_{self.strategy.rank}.txt").exists(), "cwd": os.getcwd(),
                "trial_dir": str(self.trial_dir),
                "py_rand": random.random(), "np_rand": float(np.random.rand()),
                "torch_rand": float(torch.rand(1)),
                "optimizer_state": len(self.optimizer.state),
                "weights": float(sum(p.detach().double().sum() for p in self.model.parameters())),
                "pid": os.getpid(), "group": float(one.item()), "backend": dist.get_backend(),
                "dtype": str(torch.get_default_dtype()), "grad": torch.is_grad_enabled(),
                "leaked_path": "/leaked" in sys.path,
            }
            # what a careless trial leaves behind
            os.environ["HPOC_LEAK_PROBE"] = "leaked"
            with open(self.trial_dir / f"leak_{self.strategy.rank}.txt", "w") as fh:
                fh.write("x")
            super().train()
            torch.set_default_dtype(torch.float64)
            torch.set_grad_enabled(False)
            sys.path.append("/leaked")

        def report(self, metrics, **kwargs):
            super().report({**metrics, "probe": self.probe}, **kwargs)


    class FailingRankTrainer(ToyTrainer):
        def train_epoch(self, epoch):
            if epoch == 1 and self.strategy.rank == 1:
                raise ValueError("rank 1 broke in epoch 2")
            return super().train_epoch(epoch)


    class PidTrainer(ToyTrainer):
        def report(self, metrics, **kwargs):
            super().report({**metrics, "worker_pid": os.getpid()}, **kwargs)
''')


def study(tmp_path: Path, trainer: str, args: dict | None = None, **sections):
    workdir = write_toy(tmp_path / "study")
    (workdir / "leaky.py").write_text(LEAKY, encoding="utf-8")
    return make_plan(workdir, tmp_path / "results",
                     pipeline={"trainer": {"target": trainer, "args": args or {}}},
                     resources={"workers": 2, "cpus_per_worker": 0.5, "reuse_workers": True},
                     **sections)


@pytest.fixture(scope="module")
def ray_session(tmp_path_factory):
    import os

    from hpoc.runtime import session

    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    workdir = write_toy(tmp_path_factory.mktemp("pool") / "study")
    (workdir / "leaky.py").write_text(LEAKY, encoding="utf-8")
    s = session.start_local(workdir=str(workdir), num_cpus=2)
    yield workdir
    pool.discard()
    s.close()


def run(group, plan, data_ref, tmp_path, name, seed, on_report=None, epochs=2):
    reports = []

    def collect(metrics, checkpoint):
        reports.append(metrics)
        if on_report:
            on_report(metrics, checkpoint)

    (tmp_path / name).mkdir(exist_ok=True)
    trial = TrialInfo(id=name, name=name, seed=seed, deterministic=True, dir=str(tmp_path / name))
    cfg = {"epochs": epochs, "batch_size": 32, "lr": 0.01, "hidden": 8}
    status = pool.run_trial(group, pool.payload(plan, cfg, [data_ref], trial, tmp_path / name), collect)
    return status, reports


def learned(reports):
    return [{k: v for k, v in r.items() if k not in ("perf", "probe")} for r in reports]


def test_trials_on_a_warm_group_start_clean_and_match_a_fresh_group(ray_session, tmp_path):
    import ray

    plan = make_plan(ray_session, tmp_path / "results",
                     pipeline={"trainer": {"target": "leaky:LeakyTrainer", "args": {}}},
                     resources={"workers": 2, "cpus_per_worker": 0.5, "reuse_workers": True})
    data_ref = ray.put(pipeline.load_data(plan))
    group = pool.WarmGroup.start(plan)
    try:
        a = run(group, plan, data_ref, tmp_path, "a", seed=7)
        b = run(group, plan, data_ref, tmp_path, "b", seed=7)
        c = run(group, plan, data_ref, tmp_path, "c", seed=8)
    finally:
        group.close()
    fresh = pool.WarmGroup.start(plan)
    try:
        d = run(fresh, plan, data_ref, tmp_path, "d", seed=7)
    finally:
        fresh.close()

    assert [s for s, _ in (a, b, c, d)] == ["done"] * 4
    pa, pb, pc, pd = (r[0]["probe"] for _, r in (a, b, c, d))
    assert pa["pid"] == pb["pid"] == pc["pid"] in group.pids  # the same warm processes
    assert pd["pid"] != pa["pid"]
    for probe in (pa, pb, pc, pd):
        assert probe["starts"] == 1           # the spec's modules were imported afresh
        assert probe["env"] == ""             # environment restored
        assert not probe["file_before"]       # no earlier trial wrote into its directory
        assert probe["cwd"] == str(ray_session)  # and runs in the study's
        assert probe["optimizer_state"] == 0  # new optimizer
        assert probe["group"] == 2.0 and probe["backend"] == "gloo"
        assert probe["dtype"] == "torch.float32" and probe["grad"] and not probe["leaked_path"]
    assert len({p["trial_dir"] for p in (pa, pb, pc, pd)}) == 4  # each trial has its own directory
    # same seed, warm or fresh group: same RNG streams, same initial weights, same training
    keys = ("py_rand", "np_rand", "torch_rand", "weights")
    assert [pa[k] for k in keys] == [pb[k] for k in keys] == [pd[k] for k in keys]
    assert all(pc[k] != pa[k] for k in keys)
    assert learned(a[1]) == learned(b[1]) == learned(d[1])
    assert learned(c[1]) != learned(a[1])
    assert [r["epoch"] for r in a[1]] == [1, 2]


def test_a_stopped_trial_leaves_the_group_ready_and_a_failed_rank_replaces_it(ray_session, tmp_path):
    import ray

    plan = make_plan(ray_session, tmp_path / "results",
                     pipeline={"trainer": {"target": "leaky:PidTrainer", "args": {}}},
                     resources={"workers": 2, "cpus_per_worker": 0.5, "reuse_workers": True})
    data_ref = ray.put(pipeline.load_data(plan))
    group = pool.borrow(plan)
    pids = list(group.pids)

    def stop(metrics, checkpoint):  # what tune.report does when the scheduler stops a trial
        assert checkpoint and (Path(checkpoint) / "state.pt").exists()
        raise SystemExit(0)

    with pytest.raises(SystemExit):
        run(group, plan, data_ref, tmp_path, "stopped", seed=1, on_report=stop, epochs=3)
    assert pool.borrow(plan) is group  # unwound cleanly: still warm
    status, reports = run(group, plan, data_ref, tmp_path, "next", seed=1, epochs=3)
    assert status == "done" and [r["epoch"] for r in reports] == [1, 2, 3]
    assert reports[0]["worker_pid"] == pids[0]

    failing = dict(plan, pipeline=dict(plan["pipeline"], trainer={"target": "leaky:FailingRankTrainer",
                                                                  "args": {}}))
    with pytest.raises(Exception, match="rank 1 broke in epoch 2"):
        run(group, failing, data_ref, tmp_path, "broken", seed=1)
    assert group.workers == []  # killed: the other rank may be stuck in a collective
    replacement = pool.borrow(plan)
    assert replacement is not group and not set(replacement.pids) & set(pids)
    status, reports = run(replacement, plan, data_ref, tmp_path, "after", seed=1)
    assert status == "done" and len(reports) == 2


def test_a_rank_whose_owner_dies_leaves_no_crash_file_and_a_kill_still_does(ray_session, tmp_path):
    """When a rank's owner (the trial's trainable) dies, as at the end of an experiment, Ray's
    raylet SIGTERMs the rank: it wrote "was terminated by SIGTERM" into the trial's
    rank-<k>.crash. Only a SIGTERM without Ray's hangup (a `kill`) writes one now."""
    import os
    import signal
    import time

    import ray

    from hpoc.runtime.pool_worker import PoolWorker, raylet_socket

    class Rank(PoolWorker):
        def hold(self, directory):
            from hpoc.runtime import output

            with output.rank_crash(directory, self.rank):  # a trial running on the rank
                time.sleep(120)

        def facts(self):
            from hpoc.runtime.rank_term import connection_to

            return os.getpid(), connection_to(raylet_socket()) is not None

    @ray.remote(num_cpus=0)
    class Owner:
        def start(self, rank, directory):
            self.rank = ray.remote(Rank).options(num_cpus=0, max_concurrency=3).remote(rank, 2)
            self.held = self.rank.hold.remote(directory)
            return ray.get(self.rank.facts.remote()) + (os.getpid(),)

    def gone(pid):
        for _ in range(300):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return True
            time.sleep(0.1)
        return False

    owners = [Owner.remote() for _ in range(2)]
    (rank0, found, owner0), (rank1, _, _) = ray.get([o.start.remote(k, str(tmp_path)) for k, o in enumerate(owners)])
    assert found  # the rank knows its connection to the raylet
    for k in (0, 1):
        for _ in range(300):
            if (tmp_path / f"rank-{k}.crash").exists():  # its trial runs
                break
            time.sleep(0.1)
    os.kill(owner0, signal.SIGKILL)  # the owner dies: Ray ends the rank it owns
    os.kill(rank1, signal.SIGTERM)   # a `kill`
    assert gone(rank0) and gone(rank1)
    left = tmp_path / "rank-0.crash"  # removed; or empty where Ray's own exit came first (as after a SIGKILL)
    assert not left.exists() or left.read_text() == ""
    assert (tmp_path / "rank-1.crash").read_text().startswith("hpoc: was terminated by SIGTERM")
    for owner in owners:
        ray.kill(owner)
