"""`resources.reuse_workers`: from the spec to the plan, and what the runtime makes of it."""

from __future__ import annotations

import pytest

from hpoc.compiler import compile_source
from hpoc.errors import SpecError
from hpoc.runtime import pool

SPEC = 'study "s"\npipeline { trainer = t:T }\nresources { workers = 2, gpus_per_worker = 1%s }\n'


def test_reuse_workers_is_a_boolean_that_defaults_to_false():
    assert compile_source(SPEC % ", reuse_workers = true")["resources"]["reuse_workers"] is True
    assert compile_source(SPEC % "")["resources"]["reuse_workers"] is False
    with pytest.raises(SpecError, match="reuse_workers"):
        compile_source(SPEC % ", reuse_workers = 3")


def test_pooled_trials_reserve_driver_and_workers_as_one_placement_group():
    plan = compile_source(SPEC % ", reuse_workers = true, cpus_per_worker = 4")
    assert pool.enabled(plan) and pool.backend(plan) == "nccl"
    pgf = pool.placement(plan, 0.01)
    assert pgf.bundles == [{"CPU": 0.01}, {"CPU": 4.0, "GPU": 1.0}, {"CPU": 4.0, "GPU": 1.0}]
    one = compile_source(SPEC.replace("workers = 2", "workers = 1") % ", reuse_workers = true")
    assert not pool.enabled(one)  # one-worker trials run in the trainable itself anyway
    assert not pool.enabled(compile_source(SPEC % ""))
    # plans written before the key existed
    old = compile_source(SPEC % ", reuse_workers = true")
    del old["resources"]["reuse_workers"]
    assert not pool.enabled(old)


def test_local_ranks_count_workers_per_node_and_follow_their_gpus():
    ranks, visible = pool._local_ranks(["a", "b", "a", "a", "b"], [[]] * 5)
    assert ranks == [(0, 3), (0, 2), (1, 3), (2, 3), (1, 2)] and visible == [None] * 5
    # one GPU each: a worker sees its node's workers' GPUs and is the index of its own
    ranks, visible = pool._local_ranks(["a", "a", "b", "a"], [["3"], ["10"], ["0"], ["1"]])
    assert visible == [["1", "3", "10"], ["1", "3", "10"], ["0"], ["1", "3", "10"]]
    assert ranks == [(1, 3), (2, 3), (0, 1), (0, 3)]


def test_spec_modules_are_forgotten_but_not_installed_packages_or_hpoc(tmp_path, monkeypatch):
    import sys
    import types

    from hpoc.runtime.pool_worker import forget_modules_under

    def fake(name, path):
        module = types.ModuleType(name)
        module.__file__ = str(path)
        monkeypatch.setitem(sys.modules, name, module)

    fake("spec_data_xyz", tmp_path / "spec_data_xyz.py")
    fake("spec_pkg_xyz.sub", tmp_path / "spec_pkg_xyz" / "sub.py")
    fake("venv_lib_xyz", tmp_path / ".venv/lib/python3.11/site-packages/venv_lib_xyz/__init__.py")
    fake("hpoc.fake_xyz", tmp_path / "hpoc" / "fake_xyz.py")
    assert sorted(forget_modules_under(str(tmp_path))) == ["spec_data_xyz", "spec_pkg_xyz.sub"]
    assert "venv_lib_xyz" in sys.modules and "hpoc.fake_xyz" in sys.modules


def test_population_schedulers_run_multi_worker_trials_on_warm_groups():
    """PBT/PB2 clone the checkpoints Tune holds; a Ray Train run's stay with the run (Tune
    sees their paths only), so PBT never exploited a multi-worker trial: it only paused and
    restarted them. Warm groups hand their checkpoints to Tune."""
    pbt = "\nspace { lr = loguniform(1e-4, 1e-1) }\nobjective maximize acc\nscheduler %s\n"
    for name in ("pbt", "pb2"):
        plan = compile_source(SPEC % "" + pbt % name)
        assert plan["resources"]["reuse_workers"] is True and pool.enabled(plan), name
    assert not pool.enabled(compile_source(SPEC % "" + pbt % "asha"))
    one = compile_source(SPEC.replace("workers = 2", "workers = 1") % "" + pbt % "pbt")
    assert not pool.enabled(one)


def test_a_rank_that_lost_its_peer_fails_the_trial_with_the_peers_death(monkeypatch):
    """Rank 0's "Connection closed by peer" (Gloo) could come back before Ray saw rank 1's
    process die: the trial's error was the symptom, and no rank was named."""
    import ray
    from ray.exceptions import ActorDiedError

    from hpoc.runtime import crash, pool

    errors = {"r0": RuntimeError("[gloo/transport/tcp/pair.cc:561] Connection closed by peer [127.0.0.1]:2465"),
              "r1": ActorDiedError()}

    def get(ref):
        raise errors[ref]

    monkeypatch.setattr(ray, "get", get)
    monkeypatch.setattr(ray, "wait", lambda refs, num_returns, timeout: (refs[:1], refs[1:]))
    monkeypatch.setattr(ray, "kill", lambda *a, **k: None)
    group = pool.WarmGroup(key=(), workers=["w0", "w1"], pids=[], running=["r0", "r1"])
    with pytest.raises(ActorDiedError) as info:
        pool._raise_failures(group, ["r0"])
    assert crash.dead_rank("\n".join([str(info.value), *info.value.__notes__])) == 1
    assert group.workers == []  # the group is gone


def test_a_dead_rank_fails_its_trial_on_python_3_10_too(monkeypatch):
    """Exception notes came with Python 3.11 (hpoc runs on 3.10): naming the rank raised an
    AttributeError in place of the rank's death, and the broken group was never discarded."""
    import ray
    from ray.exceptions import ActorDiedError

    from hpoc.runtime import pool

    class NoNotes(ActorDiedError):  # as on Python 3.10: BaseException has no add_note
        @property
        def add_note(self):
            raise AttributeError("add_note")

    def get(ref):
        raise NoNotes()

    monkeypatch.setattr(ray, "get", get)
    monkeypatch.setattr(ray, "kill", lambda *a, **k: None)
    group = pool.WarmGroup(key=(), workers=["w0", "w1"], pids=[], running=["r0", "r1"])
    with pytest.raises(NoNotes):
        pool._raise_failures(group, ["r1"])
    assert group.workers == []  # the group is gone


def test_a_warm_group_whose_rank_died_between_trials_is_not_lent_to_the_next_trial(monkeypatch, capsys):
    """A rank killed while its group waited for the next trial (the OOM killer, a SIGTERM):
    the next trial was run on the broken group, and failed for a death before it began."""
    import ray
    from ray.exceptions import ActorDiedError

    class Rank:
        def __init__(self, dead):
            self.ping = type("M", (), {"remote": staticmethod(lambda: "dead" if dead else "ok")})

    def get(ref, timeout=None):
        if ref == "dead" or "dead" in (ref if isinstance(ref, list) else []):
            raise ActorDiedError()
        return None

    plan = compile_source(SPEC % ", reuse_workers = true")
    killed, new = [], pool.WarmGroup(key=pool.signature(plan), workers=[], pids=[])
    monkeypatch.setattr(ray, "get", get)
    monkeypatch.setattr(ray, "kill", lambda w, **k: killed.append(w))
    monkeypatch.setattr(pool.WarmGroup, "start", classmethod(lambda cls, plan, crash_dir=None: new))
    ranks = [Rank(False), Rank(True)]
    monkeypatch.setattr(pool, "_group", pool.WarmGroup(key=pool.signature(plan), workers=ranks, pids=[]))
    assert pool.borrow(plan) is new and killed == ranks
    assert "rank 1 of this process's warm group died between trials" in capsys.readouterr().err
    # a group whose ranks all answer is lent again
    kept = pool.WarmGroup(key=pool.signature(plan), workers=[Rank(False), Rank(False)], pids=[])
    monkeypatch.setattr(pool, "_group", kept)
    assert pool.borrow(plan) is kept
