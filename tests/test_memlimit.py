"""The memory a trial may use is the tightest of the machine's and the job's memory cgroup
(runtime/memlimit.py): a job of `--mem=8G` on a 512 GB node passed the data check against
the node's memory, and its trials were killed by the cgroup's OOM killer mid-study. Fake
cgroup trees stand in for /proc/self/cgroup and /sys/fs/cgroup."""

from __future__ import annotations

import os

import pytest

from hpoc.runtime import memlimit
from hpoc.runtime.memlimit import Room, cgroup_bound

GIB = 2**30
JOB = "/system.slice/slurmstepd.scope/job_42"


def tree(tmp_path, proc_line: str, files: dict[str, str]) -> tuple[str, str]:
    proc = tmp_path / "cgroup"
    proc.write_text(proc_line + "\n")
    root = tmp_path / "sys"
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text + "\n")
    return str(proc), str(root)


def v2(tmp_path, levels: dict[str, tuple[str, int, int]]) -> tuple[str, str]:
    """levels: path -> (memory.max, memory.current, inactive_file)."""
    files = {}
    for path, (limit, current, inactive) in levels.items():
        files[f"{path.strip('/')}/memory.max"] = limit
        files[f"{path.strip('/')}/memory.current"] = str(current)
        files[f"{path.strip('/')}/memory.stat"] = f"anon 1\ninactive_file {inactive}\nactive_file 0\nshmem 7"
    return tree(tmp_path, f"0::{JOB}/step_batch/user/task_0", files)


def test_v2_the_jobs_limit_up_the_path_binds_less_its_usage_but_not_its_page_cache(tmp_path) -> None:
    proc, root = v2(tmp_path, {JOB: (str(8 * GIB), 3 * GIB, GIB),  # 2 GiB used, 1 GiB droppable cache
                               f"{JOB}/step_batch": ("max", GIB, 0)})
    assert cgroup_bound(proc, root) == (6 * GIB, 8 * GIB)


def test_v2_the_tightest_of_nested_limits_binds(tmp_path) -> None:
    proc, root = v2(tmp_path, {JOB: (str(8 * GIB), 5 * GIB, 0),  # 3 GiB left
                               f"{JOB}/step_batch": (str(4 * GIB), 0, 0),  # 4 GiB left: looser
                               f"{JOB}/step_batch/user/task_0": ("max", 0, 0)})
    assert cgroup_bound(proc, root) == (3 * GIB, 8 * GIB)
    proc, root = v2(tmp_path, {JOB: (str(8 * GIB), 0, 0), f"{JOB}/step_batch": (str(4 * GIB), GIB, 0)})
    assert cgroup_bound(proc, root) == (3 * GIB, 4 * GIB)


def test_v2_max_everywhere_is_no_limit(tmp_path) -> None:
    proc, root = v2(tmp_path, {JOB: ("max", 5 * GIB, 0), f"{JOB}/step_batch": ("max", 0, 0)})
    assert cgroup_bound(proc, root) is None


def test_a_containers_own_root_limit_counts(tmp_path) -> None:
    """Inside a container (its own cgroup namespace) the path is `/`, the limit at the root."""
    proc, root = tree(tmp_path, "0::/", {"memory.max": str(2 * GIB), "memory.current": str(GIB)})
    assert cgroup_bound(proc, root) == (GIB, 2 * GIB)


def test_v1_limit_and_its_unlimited_sentinel(tmp_path) -> None:
    base = "memory/slurm/uid_1000/job_42"
    proc, root = tree(tmp_path, "4:memory:/slurm/uid_1000/job_42/step_0\n3:cpu,cpuacct:/slurm",
                      {f"{base}/memory.limit_in_bytes": str(8 * GIB),
                       f"{base}/memory.usage_in_bytes": str(3 * GIB),
                       f"{base}/memory.stat": f"cache 5\ntotal_inactive_file {GIB}",
                       f"{base}/step_0/memory.limit_in_bytes": "9223372036854771712",
                       f"{base}/step_0/memory.usage_in_bytes": str(GIB),
                       "memory/memory.limit_in_bytes": "9223372036854771712",
                       "memory/memory.usage_in_bytes": str(100 * GIB)})
    assert cgroup_bound(proc, root) == (6 * GIB, 8 * GIB)


def test_unreadable_or_odd_files_are_no_finding_never_an_error(tmp_path) -> None:
    assert cgroup_bound(str(tmp_path / "none"), str(tmp_path)) is None
    proc, root = tree(tmp_path, f"0::{JOB}", {f"{JOB.strip('/')}/memory.max": str(GIB)})  # no memory.current
    assert cgroup_bound(proc, root) is None
    proc, root = tree(tmp_path, f"0::{JOB}", {f"{JOB.strip('/')}/memory.max": "garbage",
                                             f"{JOB.strip('/')}/memory.current": "1"})
    assert cgroup_bound(proc, root) is None
    limit = tmp_path / "sys" / JOB.strip("/") / "memory.max"
    limit.write_text(str(GIB))
    if os.geteuid() != 0:  # root reads a file of mode 000
        limit.chmod(0)
        assert cgroup_bound(proc, root) is None
        limit.chmod(0o644)
    assert cgroup_bound(proc, root) == (GIB - 1, GIB)


def test_the_bound_that_applies_is_named(tmp_path, monkeypatch) -> None:
    proc, root = v2(tmp_path, {JOB: (str(8 * GIB), 5 * GIB, 0)})
    monkeypatch.setattr(memlimit, "_host_available", lambda: 500 * GIB)
    monkeypatch.setenv("SLURM_JOB_ID", "42")
    room = memlimit.room(proc, root)
    assert room == Room(3 * GIB, 8 * GIB)
    assert room.phrase() == "the 3.0 GiB left of the job's memory limit of 8.0 GiB (SLURM --mem / cgroup)"
    assert "slurm.mem" in room.more()
    # the machine has less left than the job may use: the machine binds
    monkeypatch.setattr(memlimit, "_host_available", lambda: 2 * GIB)
    assert memlimit.room(proc, root) == Room(2 * GIB)
    assert Room(2 * GIB).phrase() == "the 2.0 GiB this machine has available"
    monkeypatch.setattr(memlimit, "_host_available", lambda: None)
    assert memlimit.room(proc, root) == Room(3 * GIB, 8 * GIB)
    assert memlimit.room(str(tmp_path / "none"), root) is None


def test_data_over_the_jobs_limit_is_refused_naming_it(tmp_path, monkeypatch) -> None:
    """On a node of 512 GB, a job of --mem=8G: one trial's copies of 10 GiB are refused,
    the message names the job's limit and how to raise it."""
    from hpoc.runtime import datamem

    monkeypatch.setenv("SLURM_JOB_ID", "42")
    plan = {"resources": {"workers": 1}, "pipeline": {}}
    monkeypatch.setattr(datamem, "data_step", lambda plan: "getter `g:G`")
    said = datamem.too_big(plan, (10 * GIB, 10 * GIB), Room(7 * GIB, 8 * GIB))
    assert said is not None and "more than the 7.0 GiB left of the job's memory limit of 8.0 GiB" in said, said
    assert said.endswith("ask the job for more memory (`slurm.mem`, or --mem of salloc/srun)"), said
    assert datamem.too_big(plan, (10 * GIB, 10 * GIB), Room(500 * GIB)) is None


@pytest.mark.parametrize("n, said", [(512, "512 bytes"), (1536, "1.5 KiB"), (8 * GIB, "8.0 GiB"),
                                     (12 * 2**20 + 2**19, "12.5 MiB")])
def test_sizes_are_said_in_binary_units_as_slurm_reads_mem(n, said) -> None:
    from hpoc.sizes import size

    assert size(n) == said


def test_trials_at_once_by_the_nodes_cpus_and_gpus() -> None:
    from hpoc.runtime.session import trials_at_once

    def plan(workers, cpw, gpw):
        return {"resources": {"workers": workers, "cpus_per_worker": cpw, "gpus_per_worker": gpw}}

    node = [{"Alive": True, "Resources": {"CPU": 4.0, "GPU": 1.0}}]
    assert trials_at_once(plan(1, 1, 0), node) == 4
    assert trials_at_once(plan(1, 1, 0.5), node) == 2
    assert trials_at_once(plan(2, 1, 0), node) == 1  # 2 workers and their driver's 0.01 CPU: 2.01
    assert trials_at_once(plan(1, 1, 0), node + [{"Alive": False, "Resources": {"CPU": 8.0}}]) == 4


def test_more_trials_at_once_than_their_copies_fit_is_a_warning_naming_how_many_fit(monkeypatch) -> None:
    """8 CPUs run 8 one-CPU trials at once; their 3 GiB copies fit 2 in the job's 8 GiB:
    the others' processes are OOM-killed. Said with the setting that caps them (not a
    refusal: 2 at once fit)."""
    import io

    import ray

    from hpoc.runtime import datamem, study

    monkeypatch.setattr(ray, "nodes", lambda: [{"Alive": True, "Resources": {"CPU": 8.0}}])
    monkeypatch.setenv("SLURM_JOB_ID", "42")
    plan = {"resources": {"workers": 1, "cpus_per_worker": 1, "gpus_per_worker": 0},
            "trials": {"num_samples": 20, "max_concurrent": None}, "search": {"algorithm": "optuna"},
            "shards": {"count": 1}}
    room = Room(7 * GIB, 8 * GIB)
    out = io.StringIO()
    study._warn_concurrent(plan, 3 * GIB, room, out, 20)
    assert out.getvalue() == (
        "[hpoc] warning: 8 trials run at once here, but their copies of the data (3.0 GiB each) fit 2 in "
        "the 7.0 GiB left of the job's memory limit of 8.0 GiB (SLURM --mem / cgroup): the others would "
        "be killed by the OOM killer mid-study; set `max_concurrent = 2` (fewer may fit: a trial's model "
        "and batches take memory too)\n")
    # a YAML config's words
    out = io.StringIO()
    study._warn_concurrent({**plan, "source": {"words": {"max_concurrent": "max_concurrent_trials"}}}, 3 * GIB, room,
                           out, 20)
    assert "set `max_concurrent_trials: 2`" in out.getvalue(), out.getvalue()
    # capped already, few trials, or room for all: nothing said
    for quiet, left in (({**plan, "trials": {"num_samples": 20, "max_concurrent": 2}}, 20),
                        ({**plan, "trials": {"num_samples": 2, "max_concurrent": None}}, 2)):
        out = io.StringIO()
        study._warn_concurrent(quiet, 3 * GIB, room, out, left)
        assert out.getvalue() == ""
    study._warn_concurrent(plan, 3 * GIB, Room(30 * GIB), out, 20)
    assert out.getvalue() == ""


@pytest.mark.ray
def test_a_local_study_whose_trials_at_once_do_not_fit_warns_and_runs(tmp_path, monkeypatch) -> None:
    """Through Ray: 2 CPU slots run 2 trials at once; memory for one trial's copies only.
    The study is not refused (one at a time fits): it warns once, naming how many fit."""
    import io

    from hpoc.runtime import datamem
    from hpoc.runtime.study import EXIT_OK, RunOptions, run_study
    from runtime_plans import make_plan, write_toy

    monkeypatch.setenv("RAY_memory_monitor_refresh_ms", "0")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    plan = make_plan(write_toy(tmp_path / "study"), tmp_path / "results",
                     trials={"num_samples": 2, "max_concurrent": None},
                     space={"constants": {"epochs": 1, "batch_size": 32}})
    monkeypatch.setattr(datamem, "sizes", lambda data: (1000, 1000))  # one trial's copies: 1000 bytes
    monkeypatch.setattr(datamem, "available_memory", lambda: Room(1500))
    progress = io.StringIO()
    code = run_study(plan, RunOptions(local=True, num_cpus=2, progress=progress, out=io.StringIO()))
    said = progress.getvalue()
    assert code == EXIT_OK, said
    assert said.count("[hpoc] warning: 2 trials run at once here, but their copies of the data") == 1, said
    assert "fit 1 in the " in said and "set `max_concurrent = 1`" in said, said


def test_a_local_rays_object_store_fits_the_jobs_memory_limit(monkeypatch) -> None:
    """`salloc --mem=2G` on a node of 512 GB: the store was 20% of the host's memory, capped
    at 2 GiB, the whole job's limit. Now a fifth of what the job's limit leaves."""
    from hpoc.runtime import session

    monkeypatch.setattr(memlimit, "_host_available", lambda: 500 * GIB)
    monkeypatch.setattr(memlimit, "cgroup_bound", lambda *a: (GIB + GIB // 2, 2 * GIB))
    assert session.local_object_store() == int(1.5 * GIB * 0.2)
    monkeypatch.setattr(memlimit, "cgroup_bound", lambda *a: None)
    assert session.local_object_store() == session.LOCAL_OBJECT_STORE_CAP
    monkeypatch.setattr(memlimit, "cgroup_bound", lambda *a: (10 * 2**20, 2 * GIB))
    assert session.local_object_store() == 100 * 2**20


def test_a_shards_trials_at_once_are_its_own_not_the_studys(tmp_path, monkeypatch) -> None:
    """A job array of 32 shards over 64 trials: each array task runs 2. A shard warned that
    64 trials' copies ran at once on its 8 CPUs (and named `max_concurrent = 2` where 2 run)."""
    import io

    import ray

    from hpoc.runtime import datamem, study
    from hpoc.runtime.watch import STATE

    monkeypatch.setattr(ray, "nodes", lambda: [{"Alive": True, "Resources": {"CPU": 8.0}}])
    STATE.__init__()  # a fresh run
    plan = {"resources": {"workers": 1, "cpus_per_worker": 1, "gpus_per_worker": 0},
            "trials": {"num_samples": 64, "max_concurrent": None}, "search": {"algorithm": "hyperopt"},
            "shards": {"count": 32}}

    def left(plan, shard):
        return study._trials_left(plan, study.RunOptions(shard=shard))

    out = io.StringIO()
    study._warn_concurrent(plan, 3 * GIB, Room(7 * GIB), out, left(plan, 5))
    assert out.getvalue() == ""  # 2 trials here, 2 copies fit
    plan["shards"]["count"] = 4  # 16 trials a shard: 8 at once on 8 CPUs
    study._warn_concurrent(plan, 3 * GIB, Room(7 * GIB), out, left(plan, 3))
    assert out.getvalue().startswith("[hpoc] warning: 8 trials run at once here"), out.getvalue()
    # Optuna's shards share one budget: a fast shard may take all of it
    out = io.StringIO()
    shared = {**plan, "shards": {"count": 32}, "search": {"algorithm": "optuna"},
              "storage": {"path": str(tmp_path), "name": "toy"}}  # no journal there yet
    study._warn_concurrent(shared, 3 * GIB, Room(7 * GIB), out, left(shared, 5))
    assert out.getvalue().startswith("[hpoc] warning: 8 trials run at once here"), out.getvalue()


def test_a_multi_node_jobs_data_is_checked_against_one_nodes_limit(monkeypatch) -> None:
    """A two-node job of --mem=8G: one worker's 10 GiB of tensors lands on some node and
    cannot fit even an empty one; the study started, and its trials were OOM-killed. The
    driver cannot see the other node's usage, so only what cannot fit an empty node is
    refused: 4 workers on 2 nodes put 2 copies on one of them at least."""
    from hpoc.runtime import datamem, study

    for name in ("SLURM_MEM_PER_CPU", "SLURM_JOB_CPUS_PER_NODE", "SLURM_CPUS_ON_NODE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SLURM_JOB_ID", "42")
    monkeypatch.setenv("SLURM_JOB_NUM_NODES", "2")
    monkeypatch.setenv("SLURM_MEM_PER_NODE", "8192")  # MiB, as SLURM says it
    monkeypatch.setattr(datamem, "data_step", lambda plan: "getter `g:G`")
    monkeypatch.setattr(datamem, "available_memory", lambda: pytest.fail("this node's room is not the bound"))
    plan = {"resources": {"workers": 1}, "pipeline": {}, "slurm": {"mem": None, "nodes": 2}}
    opts, data = study.RunOptions(local=False), object()  # its sizes are given
    monkeypatch.setattr(datamem, "sizes", lambda data: (10 * GIB, 10 * GIB))
    with pytest.raises(study.StudyError) as err:
        study._require_memory(plan, data, opts)
    said = str(err.value)
    assert ("10.0 GiB on one of the job's 2 nodes at least, more than the job's memory limit of 8.0 GiB "
            "per node (SLURM --mem / --mem-per-cpu / --mem-per-gpu)") in said, said
    assert "slurm.mem" in said, said
    # 4 workers of 3 GiB each: 2 on a node at least, 6 GiB: fits an empty node, not refused
    plan["resources"]["workers"] = 4
    monkeypatch.setattr(datamem, "sizes", lambda data: (3 * GIB, 3 * GIB))
    assert study._require_memory(plan, data, opts) == (Room(8 * GIB, 8 * GIB, nodes=2), 3 * GIB)
    monkeypatch.setattr(datamem, "sizes", lambda data: (5 * GIB, 5 * GIB))
    with pytest.raises(study.StudyError, match="10.0 GiB on one of the job's 2 nodes at least"):
        study._require_memory(plan, data, opts)
    # --mem=0 (all of each node's memory): not known from here, no finding
    monkeypatch.setenv("SLURM_MEM_PER_NODE", "0")
    assert study._require_memory(plan, data, opts) == (None, 0)


def test_a_nodes_limit_is_read_as_slurm_says_it() -> None:
    def limit(env, mem=None):
        return memlimit.node_limit({"slurm": {"mem": mem, "cpus_per_node": 4}}, env)

    assert limit({"SLURM_JOB_ID": "1", "SLURM_MEM_PER_NODE": "8192"}) == 8 * GIB
    assert limit({"SLURM_JOB_ID": "1", "SLURM_MEM_PER_NODE": "0"}) is None  # all of a node's
    # --mem-per-cpu: times the most CPUs a node of the job has (a worker may land there)
    assert limit({"SLURM_JOB_ID": "1", "SLURM_MEM_PER_CPU": "2048", "SLURM_JOB_CPUS_PER_NODE": "4(x2),8"}) == 16 * GIB
    assert limit({"SLURM_JOB_ID": "1", "SLURM_MEM_PER_CPU": "1024", "SLURM_CPUS_ON_NODE": "6"}) == 6 * GIB
    assert limit({"SLURM_JOB_ID": "1", "SLURM_MEM_PER_CPU": "1024"}) == 4 * GIB  # the plan's cpus_per_node
    # neither said (a driver started with --export=NONE): the plan's `slurm.mem`, as sbatch reads it
    assert limit({"SLURM_JOB_ID": "1"}, "16G") == 16 * GIB
    assert limit({"SLURM_JOB_ID": "1"}, "512") == 512 * 2**20
    assert limit({"SLURM_JOB_ID": "1"}) is None
    assert limit({}, "16G") is None  # not in a job: the plan's job is not where this runs


def test_a_nodes_limit_per_gpu_and_a_lower_case_unit_are_read_as_slurm_reads_them() -> None:
    """`--mem-per-gpu` jobs went unchecked (SLURM_MEM_PER_GPU not read), and `mem = "8g"`,
    which the renderer passes to sbatch as SLURM reads it, was no limit here."""
    def limit(env, mem=None, gpus=None):
        return memlimit.node_limit({"slurm": {"mem": mem, "cpus_per_node": 4, "gpus_per_node": gpus}}, env)

    job = {"SLURM_JOB_ID": "1", "SLURM_MEM_PER_GPU": "10240"}
    # times the GPUs a node of the job has: --gpus-per-node (typed or not), else this node's
    assert limit({**job, "SLURM_GPUS_PER_NODE": "4"}) == 40 * GIB
    assert limit({**job, "SLURM_GPUS_PER_NODE": "a100:2"}) == 20 * GIB
    assert limit({**job, "SLURM_GPUS_ON_NODE": "3"}) == 30 * GIB
    assert limit(job, gpus=2) == 20 * GIB  # the plan's gpus_per_node
    assert limit(job) is None  # no GPU count known
    # the plan's mem in any case, with an optional B, K rounded up to MiB
    assert limit({"SLURM_JOB_ID": "1"}, "8g") == 8 * GIB
    assert limit({"SLURM_JOB_ID": "1"}, "8GB") == 8 * GIB
    assert limit({"SLURM_JOB_ID": "1"}, "1t") == 1024 * GIB
    assert limit({"SLURM_JOB_ID": "1"}, "1025k") == 2 * 2**20
    assert limit({"SLURM_JOB_ID": "1"}, "8x") is None


def test_the_page_cache_on_the_active_list_is_room_too(tmp_path) -> None:
    """A getter that read its files twice (a checksum, then the load) leaves their pages
    on the active list: the kernel drops those too before it OOM-kills (the host's
    "available" counts them). Only `inactive_file` was taken off the usage: a job of 8 GiB
    holding 2 GiB of its own and 5 GiB of active page cache had 1 GiB "left", and data that
    fits was refused. Shared memory (Ray's object store) is on the anon lists: still used."""
    proc, root = tree(tmp_path, f"0::{JOB}/step_batch", {
        f"{JOB.strip('/')}/memory.max": str(8 * GIB),
        f"{JOB.strip('/')}/memory.current": str(7 * GIB),
        f"{JOB.strip('/')}/memory.stat": f"anon {GIB}\nfile {6 * GIB}\nactive_file {5 * GIB}\n"
                                         f"inactive_file 0\nshmem {GIB}"})
    assert cgroup_bound(proc, root) == (6 * GIB, 8 * GIB)
    base = "memory/slurm/uid_1000/job_42"
    (tmp_path / "v1").mkdir()
    proc, root = tree(tmp_path / "v1", "4:memory:/slurm/uid_1000/job_42", {
        f"{base}/memory.limit_in_bytes": str(8 * GIB),
        f"{base}/memory.usage_in_bytes": str(7 * GIB),
        f"{base}/memory.stat": f"active_file 3\ninactive_file 4\ntotal_active_file {4 * GIB}\n"
                               f"total_inactive_file {GIB}"})
    assert cgroup_bound(proc, root) == (6 * GIB, 8 * GIB)


def test_fractional_gpus_hold_as_many_trials_as_ray_places() -> None:
    """0.2 of a GPU each: Ray places 5 trials on one GPU (it counts in ten-thousandths),
    but `1 // 0.2` is 4.0 in floating point: 4 were said to run at once, and the data of 5
    whose copies fit 4 was not warned of."""
    from hpoc.runtime.session import trials_at_once

    def plan(workers, gpw):
        return {"resources": {"workers": workers, "cpus_per_worker": 1, "gpus_per_worker": gpw}}

    node = [{"Alive": True, "Resources": {"CPU": 16.0, "GPU": 1.0}}]
    assert trials_at_once(plan(1, 0.2), node) == 5
    assert trials_at_once(plan(1, 0.1), node) == 10
    assert trials_at_once(plan(5, 0.2), [{"Alive": True, "Resources": {"CPU": 16.0, "GPU": 2.0}}]) == 2


def test_fractional_gpus_a_trials_workers_fit_on_are_not_refused() -> None:
    """5 workers of 0.2 GPU on one GPU: Ray places them; the capacity check counted
    `1 // 0.2` = 4 and refused the study (exit 2) as needing more GPUs."""
    from hpoc.runtime.session import SessionError, check_capacity

    plan = {"resources": {"workers": 5, "cpus_per_worker": 1, "gpus_per_worker": 0.2}}
    check_capacity(plan, [{"Alive": True, "Resources": {"CPU": 8.0, "GPU": 1.0}}], "this machine")
    with pytest.raises(SessionError, match="needs 6 worker"):  # 6 of them do not fit
        check_capacity({"resources": {**plan["resources"], "workers": 6}},
                       [{"Alive": True, "Resources": {"CPU": 8.0, "GPU": 1.0}}], "this machine")


def test_a_resumed_or_retried_run_counts_the_trials_it_has_left(tmp_path, monkeypatch) -> None:
    """A resumed study with 62 of its 64 trials ended runs 2, a retry of its one errored
    trial runs 1: both warned "8 trials run at once here" on 8 CPUs (the shard's 64 counted)
    and told `max_concurrent = 2` where 2 fit. Counted from Ray's saved state, read once."""
    import io
    import json

    import ray

    from hpoc.plan import plan_hash
    from hpoc.runtime import marker, study
    from hpoc.runtime.shards import experiment_dir
    from hpoc.runtime.watch import STATE
    from runtime_plans import make_plan, saved_state

    monkeypatch.setattr(ray, "nodes", lambda: [{"Alive": True, "Resources": {"CPU": 8.0}}])
    monkeypatch.setattr(study, "refuse_synch_population", lambda plan, exp: None)

    def warned(plan, statuses, summary=False, retry=None, fresh=False) -> str:
        exp = experiment_dir(plan, 0)
        saved_state(exp, statuses)
        fp = marker.fingerprint(plan, plan_hash(plan))
        marker.write(exp, fp, 0)
        if summary:  # the run ended
            (exp / "summary.json").write_text(json.dumps(
                {"study": "toy", "plan_hash": plan_hash(plan), "interrupted": False, "trials": [],
                 "num_trials": len(statuses), "status_counts": {}, "best": None, "wall_s": 1.0}))
        STATE.__init__()
        opts = study.RunOptions(retry_errored=retry, fresh=fresh)
        study._prior(plan, opts, exp, fp, io.StringIO())
        out = io.StringIO()
        study._warn_concurrent(plan, 3 * GIB, Room(7 * GIB), out, study._trials_left(plan, opts))
        return out.getvalue()

    plan = make_plan(tmp_path, tmp_path / "results", trials={"num_samples": 64, "max_concurrent": None})
    assert warned(plan, ["TERMINATED"] * 62 + ["RUNNING", "PENDING"]) == ""  # 2 left, 2 fit
    # its errored trials retried as it resumes (resume.retry_errored): 2 left and 2 errored
    said = warned(plan, ["TERMINATED"] * 60 + ["ERROR"] * 2 + ["PAUSED", "PENDING"])
    assert said.startswith("[hpoc] warning: 4 trials run at once here") and "fit 2" in said, said
    plan["resume"]["retry_errored"] = False  # they stay errored
    assert warned(plan, ["TERMINATED"] * 60 + ["ERROR"] * 2 + ["PAUSED", "PENDING"]) == ""
    # --retry-errored of a finished run: its errored trials alone
    assert warned(plan, ["TERMINATED"] * 63 + ["ERROR"], summary=True, retry="scratch") == ""
    said = warned(plan, ["TERMINATED"] * 61 + ["ERROR"] * 3, summary=True, retry="scratch")
    assert said.startswith("[hpoc] warning: 3 trials run at once here"), said
    # a fresh run (--fresh moves the earlier one aside) runs all of the shard's
    said = warned(plan, ["TERMINATED"] * 62 + ["RUNNING", "PENDING"], fresh=True)
    assert said.startswith("[hpoc] warning: 8 trials run at once here"), said


def test_hebos_own_cap_bounds_the_trials_said_to_run_at_once(monkeypatch) -> None:
    """Ray's HEBOSearch runs 8 trials at once unless told otherwise (`trials.max_concurrent`,
    which Tune hands to it). On 16 CPUs it was said that 16 trials' copies ran at once where
    10 fit: a false warning of OOM kills."""
    import io

    import ray

    from hpoc.runtime import study
    from hpoc.runtime.watch import STATE

    monkeypatch.setattr(ray, "nodes", lambda: [{"Alive": True, "Resources": {"CPU": 16.0}}])
    STATE.__init__()
    plan = {"resources": {"workers": 1, "cpus_per_worker": 1, "gpus_per_worker": 0},
            "trials": {"num_samples": 64, "max_concurrent": None}, "search": {"algorithm": "hebo"},
            "shards": {"count": 1}}
    out = io.StringIO()
    study._warn_concurrent(plan, 3 * GIB, Room(31 * GIB), out, 64)  # 10 fit, 8 run
    assert out.getvalue() == ""
    study._warn_concurrent(plan, 3 * GIB, Room(13 * GIB), out, 64)  # 4 fit
    assert out.getvalue().startswith("[hpoc] warning: 8 trials run at once here"), out.getvalue()
    assert "set `max_concurrent = 4`" in out.getvalue(), out.getvalue()
    out = io.StringIO()  # the study's cap replaces HEBO's own
    study._warn_concurrent({**plan, "trials": {"num_samples": 64, "max_concurrent": 12}}, 3 * GIB,
                           Room(31 * GIB), out, 64)
    assert out.getvalue().startswith("[hpoc] warning: 12 trials run at once here"), out.getvalue()
    # a resumed run restores its errored trials beside the 8 HEBO lets run: they count
    out = io.StringIO()
    STATE.mode, STATE.errored = "restore", {"e1", "e2", "e3"}
    study._warn_concurrent(plan, 3 * GIB, Room(31 * GIB), out, 64, restored=3)
    assert out.getvalue().startswith("[hpoc] warning: 11 trials run at once here"), out.getvalue()
    out = io.StringIO()  # the study's cap holds them too (resume.py)
    study._warn_concurrent({**plan, "trials": {"num_samples": 64, "max_concurrent": 12}}, 3 * GIB,
                           Room(31 * GIB), out, 64, restored=3)
    assert out.getvalue().startswith("[hpoc] warning: 12 trials run at once here"), out.getvalue()
    STATE.__init__()


def test_a_shard_under_a_shared_optuna_budget_counts_the_trials_the_budget_leaves(tmp_path, monkeypatch) -> None:
    """4 shards share 16 Optuna trials. A shard that started after the others had taken 15
    of them runs one trial at most, yet it was said that 8 trials' copies ran at once on its
    8 CPUs where 2 fit (the whole budget counted): a false warning. The journal says what
    is left; the shard's own running trials there (resumed, or asked before it was killed)
    run too."""
    import io

    import optuna
    import ray

    from hpoc.runtime import shards, study
    from hpoc.runtime.watch import STATE
    from runtime_plans import make_plan

    monkeypatch.setattr(ray, "nodes", lambda: [{"Alive": True, "Resources": {"CPU": 8.0}}])
    STATE.__init__()
    plan = make_plan(tmp_path, tmp_path / "results", trials={"num_samples": 16, "max_concurrent": None},
                     search={"algorithm": "optuna", "options": {}}, shards={"count": 4, "parallel": 4})

    def said(shard: int = 3, room: Room = Room(7 * GIB)) -> str:  # 2 copies fit
        out = io.StringIO()
        left = study._trials_left(plan, study.RunOptions(shard=shard))
        study._warn_concurrent(plan, 3 * GIB, room, out, left, shard)
        return out.getvalue()

    assert said().startswith("[hpoc] warning: 8 trials run at once here")  # no journal yet: it may take 8
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    ot = optuna.create_study(study_name="toy", storage=shards.journal_storage(plan), direction="maximize")
    TS = optuna.trial.TrialState

    def add(n, shard, state, **attrs):
        for _ in range(n):
            ot.add_trial(optuna.trial.create_trial(
                state=state, value=0.5 if state == TS.COMPLETE else None,
                user_attrs={shards.SHARD_ATTR: shard, **attrs}))

    add(11, 0, TS.COMPLETE)
    add(3, 1, TS.FAIL, **{shards.EXTRA_ATTR: "over budget"})  # extra trials take no budget
    assert said().startswith("[hpoc] warning: 5 trials run at once here"), said()
    add(3, 1, TS.COMPLETE)
    assert said() == ""  # 2 left, 2 fit
    add(2, 3, TS.RUNNING)  # shard 3's own, asked before it was killed: it runs them again
    assert said() == ""
    assert said(room=Room(5 * GIB)).startswith("[hpoc] warning: 2 trials run at once here")  # 1 fits
    assert said(2, Room(5 * GIB)) == ""  # shard 2 has none of its own and no budget left


def test_a_multi_node_job_whose_nodes_cannot_hold_their_trials_copies_warns(monkeypatch) -> None:
    """A job of 2 nodes of 8 CPUs under --mem=8G runs 16 one-CPU trials at once, each
    copying 3 GiB of tensors: however Ray places them, a node gets 8 of them, 24 GiB, where
    2 fit. Nothing was said (only a local or one-node run was counted), and the trials were
    OOM-killed. Only a certain overflow is said: where an even spread fits, Ray may still
    put more on one node, which is not known from here."""
    import io

    import ray

    from hpoc.runtime import datamem, study
    from hpoc.runtime.watch import STATE

    for name in ("SLURM_MEM_PER_CPU", "SLURM_MEM_PER_GPU"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SLURM_JOB_ID", "42")
    monkeypatch.setenv("SLURM_JOB_NUM_NODES", "2")
    monkeypatch.setenv("SLURM_MEM_PER_NODE", "8192")
    monkeypatch.setattr(datamem, "sizes", lambda data: (3 * GIB, 3 * GIB))
    nodes = [{"Alive": True, "Resources": {"CPU": 8.0}}, {"Alive": True, "Resources": {"CPU": 8.0}}]
    monkeypatch.setattr(ray, "nodes", lambda: nodes)
    STATE.__init__()
    plan = {"resources": {"workers": 1, "cpus_per_worker": 1, "gpus_per_worker": 0}, "pipeline": {},
            "trials": {"num_samples": 64, "max_concurrent": None}, "search": {"algorithm": "random"},
            "shards": {"count": 1}, "slurm": {"mem": None, "nodes": 2}}

    def said(plan, left=64) -> str:
        room, tensors = study._require_memory(plan, object(), study.RunOptions(local=False))
        assert room is not None
        out = io.StringIO()
        study._warn_concurrent(plan, tensors, room, out, left)
        return out.getvalue()

    assert said(plan) == (
        "[hpoc] warning: 16 trials run at once on the job's 2 nodes, but their copies of the data "
        "(3.0 GiB each) fit 2 a node in the job's memory limit of 8.0 GiB per node (SLURM --mem / "
        "--mem-per-cpu / --mem-per-gpu): however Ray places them, a node gets 8 or more, and those over "
        "2 would be killed by the OOM killer mid-study; set `max_concurrent = 4` (they fit if Ray spreads "
        "them evenly; fewer may fit: a trial's model and batches take memory too)\n")
    # 4 at once: 2 a node if spread evenly, which fits: not said (Ray may pack them; not known)
    capped = {**plan, "trials": {"num_samples": 64, "max_concurrent": 4}}
    assert said(capped) == ""
    assert said(plan, left=5).startswith("[hpoc] warning: 5 trials run at once on the job's 2 nodes")
    # unequal nodes: 12 and 4 CPUs hold 16 trials only as 12 and 4
    nodes[:] = [{"Alive": True, "Resources": {"CPU": 12.0}}, {"Alive": True, "Resources": {"CPU": 4.0}},
                {"Alive": False, "Resources": {"CPU": 64.0}}]
    assert "a node gets 12 or more" in said(plan), said(plan)
    # two-worker trials: their workers' copies, one a worker
    nodes[:] = [{"Alive": True, "Resources": {"CPU": 8.0}}, {"Alive": True, "Resources": {"CPU": 8.0}}]
    two = {**plan, "resources": {"workers": 2, "cpus_per_worker": 1, "gpus_per_worker": 0}}
    text = said(two)
    assert text.startswith("[hpoc] warning: 7 trials run at once on the job's 2 nodes, but their workers' "
                           "copies of the data (3.0 GiB each, one a worker) fit 2 a node"), text
    assert "a node gets 7 or more" in text and "`max_concurrent = 2`" in text, text


def _hebo_warned(tmp_path, monkeypatch, statuses, points=0, retry_errored=True) -> str:
    """What a HEBO study without `max_concurrent`, resumed from `statuses` (None: a fresh
    run), warns on 16 CPUs where 10 trials' copies (3 GiB each) fit."""
    import io

    import ray

    from hpoc.plan import plan_hash
    from hpoc.runtime import marker, study
    from hpoc.runtime.shards import experiment_dir
    from hpoc.runtime.watch import STATE
    from runtime_plans import make_plan, saved_state

    monkeypatch.setattr(ray, "nodes", lambda: [{"Alive": True, "Resources": {"CPU": 16.0}}])
    monkeypatch.setattr(study, "refuse_synch_population", lambda plan, exp: None)
    options = {"points_to_evaluate": [{"lr": 0.001 * (i + 1)} for i in range(points)]} if points else {}
    plan = make_plan(tmp_path, tmp_path / "results", trials={"num_samples": 64, "max_concurrent": None},
                     search={"algorithm": "hebo", "options": options})
    plan["resume"]["retry_errored"] = retry_errored
    exp = experiment_dir(plan, 0)
    fp = marker.fingerprint(plan, plan_hash(plan))
    if statuses is not None:
        saved_state(exp, statuses)
        marker.write(exp, fp, 0)
    STATE.__init__()
    opts = study.RunOptions()
    study._prior(plan, opts, exp, fp, io.StringIO())
    out = io.StringIO()
    study._warn_concurrent(plan, 3 * GIB, Room(31 * GIB), out, study._trials_left(plan, opts),
                           restored=study._errored_rerun(plan, opts))
    STATE.__init__()
    return out.getvalue()


def test_a_resumed_run_counts_errored_trials_beside_hebos_cap_only_when_it_retries_them(
        tmp_path, monkeypatch) -> None:
    """A resumed HEBO study whose 3 errored trials stay errored (`resume.retry_errored =
    false`) runs 8 trials at once, HEBO's cap: it was warned that 11 ran where 10 fit."""
    statuses = ["TERMINATED"] * 40 + ["ERROR"] * 3 + ["RUNNING", "PENDING"]
    assert _hebo_warned(tmp_path, monkeypatch, statuses, retry_errored=False) == ""
    said = _hebo_warned(tmp_path, monkeypatch, statuses, retry_errored=True)  # Tune restarts them beside HEBO's 8
    assert said.startswith("[hpoc] warning: 11 trials run at once here"), said


def test_hebos_points_to_evaluate_run_at_once_beyond_its_own_cap(tmp_path, monkeypatch) -> None:
    """Ray's HEBOSearch hands out its `points_to_evaluate` before its cap of 8 applies: 12
    points on 16 CPUs run 12 trials at once where 10 trials' copies fit, and nothing was said."""
    said = _hebo_warned(tmp_path, monkeypatch, None, points=12)
    assert said.startswith("[hpoc] warning: 12 trials run at once here"), said
    assert "set `max_concurrent = 10`" in said, said
    # resumed after 6 of them ended: the points left (6) run within HEBO's 8
    statuses = ["TERMINATED"] * 6 + ["RUNNING"] * 6
    assert _hebo_warned(tmp_path, monkeypatch, statuses, points=12) == ""
