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


def test_local_ranks_count_workers_per_node():
    assert pool._local_ranks(["a", "b", "a", "a", "b"]) == [(0, 3), (0, 2), (1, 3), (2, 3), (1, 2)]
