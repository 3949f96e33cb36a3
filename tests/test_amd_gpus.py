"""AMD GPUs (LUMI: MI250X, ROCm torch): SLURM hides the job's other GPUs with
ROCR_VISIBLE_DEVICES, Ray assigns them with HIP_VISIBLE_DEVICES. No AMD GPU here: the
environment is faked."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from hpoc.runtime import node, visible

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def short_tmp():
    path = Path(tempfile.mkdtemp(prefix="hpt", dir="/tmp"))  # pytest's tmp_path is too long for sockets
    yield path
    shutil.rmtree(path, ignore_errors=True)


FAKE_AMDSMI = """
class AmdSmiInitFlags: INIT_AMD_GPUS = 2
class AmdSmiMemoryType: VRAM = 0
class AmdSmiLibraryException(Exception): pass
def amdsmi_init(flags=None): pass
def amdsmi_get_processor_handles(): return ["gcd0", "gcd1"]
def amdsmi_shut_down(): pass
def amdsmi_get_gpu_id(handle): return 0x7408
"""


def _python(code: str, env: dict[str, str], path: str = "") -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.endswith("_VISIBLE_DEVICES")}
    return subprocess.run([sys.executable, "-c", code], env=clean | env | {"PYTHONPATH": f"{ROOT}{path}"},
                          capture_output=True, text=True, timeout=120)


def test_ray_loads_and_takes_the_gpus_slurm_gave_a_lumi_step(tmp_path):
    """SLURM sets ROCR_VISIBLE_DEVICES on LUMI; where AMD SMI finds the GPUs (here a fake
    `amdsmi`), Ray raised "Please use HIP_VISIBLE_DEVICES instead of ROCR_VISIBLE_DEVICES"
    at `import ray`: no Ray node, driver or local run started. hpoc's runtime gives HIP the
    same GPUs (HIP numbers ROCR's from 0)."""
    (tmp_path / "amdsmi.py").write_text(FAKE_AMDSMI)
    code = ("import hpoc.runtime, os, ray\n"
            "print(ray._private.utils.get_visible_accelerator_ids()['GPU'], os.environ.get('HIP_VISIBLE_DEVICES'))")
    done = _python(code, {"ROCR_VISIBLE_DEVICES": "2,5"}, f":{tmp_path}")
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split("\n")[0] == "['0', '1'] 0,1"  # ROCR's GPUs 2 and 5, as HIP's 0 and 1
    # Without AMD SMI Ray hands out CUDA_VISIBLE_DEVICES (HIP reads it too): a HIP of all
    # the node's GPUs would override it, so none is set
    done = _python(code, {"ROCR_VISIBLE_DEVICES": "2,5"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split("\n")[0] == "None None"
    # HIP set by the user (or by Ray for a worker) stays as it is
    assert visible.hip_for_rocr({"ROCR_VISIBLE_DEVICES": "0,1,2", "HIP_VISIBLE_DEVICES": "1"}) is None
    assert visible.hip_for_rocr({"CUDA_VISIBLE_DEVICES": "0"}) is None  # NVIDIA: nothing changes
    # HIP read CUDA_VISIBLE_DEVICES (`hpoc submit --cluster local` sets it): the same GPUs
    assert visible.hip_for_rocr({"ROCR_VISIBLE_DEVICES": "0,1,2,3", "CUDA_VISIBLE_DEVICES": "1,2"}) == "1,2"


def test_a_node_counts_the_amd_gpus_slurm_left_it():
    assert node.allocation({"ROCR_VISIBLE_DEVICES": "0,1,2,3,4,5,6,7"})["gpus"] == 8
    assert node.allocation({"ROCR_VISIBLE_DEVICES": "0,1,2,3", "HIP_VISIBLE_DEVICES": "1"})["gpus"] == 1
    assert node.allocation({"CUDA_VISIBLE_DEVICES": "0,1", "ROCR_VISIBLE_DEVICES": "0"})["gpus"] == 2


def _join_alone(tmp: str, out) -> None:
    """A pooled worker's join in a process of its own: the test process may hold a group
    an earlier test made (a one-worker DeepSpeed trial keeps its private one)."""
    import torch.distributed as dist

    from hpoc.runtime.pool_worker import PoolWorker
    from hpoc.runtime.report import free_port

    for name in ("MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE",
                 "CUDA_VISIBLE_DEVICES"):
        os.environ.pop(name, None)
    os.environ["ROCR_VISIBLE_DEVICES"] = "0,1,2,3,4,5,6,7"
    os.environ["HIP_VISIBLE_DEVICES"] = "5"  # what Ray gave this worker
    os.chdir(tmp)  # join enters the study's directory
    PoolWorker(0, 1).join("127.0.0.1", free_port(""), "gloo", 1, 2, tmp, [], ["4", "5"])
    dist.destroy_process_group()
    out.put((os.environ["HIP_VISIBLE_DEVICES"], os.environ["CUDA_VISIBLE_DEVICES"]))


def test_a_warm_groups_workers_see_their_nodes_amd_gpus_not_only_their_own(monkeypatch, tmp_path):
    """Ray put each pooled worker's own GPU in HIP_VISIBLE_DEVICES, which wins over
    CUDA_VISIBLE_DEVICES under ROCm: the worker of local rank 1 saw one GPU and failed in
    `torch.cuda.set_device(1)` ("invalid device ordinal"). It sees its node's workers' GPUs,
    as on NVIDIA nodes."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    child = ctx.Process(target=_join_alone, args=(str(tmp_path), out))
    child.start()
    child.join(120)
    assert child.exitcode == 0
    assert out.get(timeout=5) == ("4,5", "4,5")
    monkeypatch.delenv("HIP_VISIBLE_DEVICES", raising=False)  # NVIDIA: Ray set CUDA_VISIBLE_DEVICES only
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    visible.share(["0", "3"])
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "0,3" and "HIP_VISIBLE_DEVICES" not in os.environ


def test_a_train_runs_workers_on_amd_nodes_see_the_gpus_train_shared(monkeypatch, tmp_path):
    """Ray Train shares a node's workers' GPUs in CUDA_VISIBLE_DEVICES and gives torch the
    worker's index in it (`cuda:1`), while Ray left HIP_VISIBLE_DEVICES, which wins under
    ROCm, at the worker's own GPU: local rank 1 failed with "invalid device ordinal"
    (ray-project/ray#49260) before the trainer ran. A callback right after Train's
    gives HIP the shared list."""
    import ray
    from ray.train import RunConfig, ScalingConfig
    from ray.train.v2._internal.callbacks.accelerators import AcceleratorSetupCallback

    from hpoc.runtime.trial import train_run_class

    run = train_run_class()(lambda config: None, scaling_config=ScalingConfig(num_workers=2, use_gpu=True),
                            run_config=RunConfig(name="t", storage_path=str(tmp_path)))
    callbacks = run._create_default_callbacks()
    after = callbacks[next(i for i, c in enumerate(callbacks) if isinstance(c, AcceleratorSetupCallback)) + 1]

    class Worker:  # runs here what the callback sends a worker
        def execute_async(self, fn):
            return fn()

    monkeypatch.setattr(ray, "get", lambda refs: refs)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")  # what Train shared
    monkeypatch.setenv("HIP_VISIBLE_DEVICES", "3")  # what Ray gave the worker
    assert after.before_init_train_context([Worker()]) == {}
    assert os.environ["HIP_VISIBLE_DEVICES"] == "2,3"
    monkeypatch.delenv("HIP_VISIBLE_DEVICES")  # NVIDIA: nothing to follow
    after.before_init_train_context([Worker()])
    assert "HIP_VISIBLE_DEVICES" not in os.environ


def test_a_cuda_torch_on_an_amd_node_is_named_as_the_reason_trials_see_no_gpu(monkeypatch, tmp_path):
    """`pip install torch` gives a CUDA build; on LUMI's AMD nodes it sees no GPU, and the
    trial's error sent the user to `nvidia-smi` and CUDA_VISIBLE_DEVICES."""
    import torch

    from hpoc.runtime import gpus

    dev = tmp_path / "dev"
    (dev / "dri").mkdir(parents=True)
    (dev / "kfd").touch()
    (dev / "dri" / "renderD128").touch()
    monkeypatch.setattr(node, "DEV", dev)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.version, "cuda", "12.4")
    monkeypatch.setattr(torch.version, "hip", None)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setenv("ROCR_VISIBLE_DEVICES", "0")
    monkeypatch.setenv("HIP_VISIBLE_DEVICES", "0")
    said = gpus.device_problem(1)
    assert "is built for CUDA and " in said and "'s GPUs are AMD" in said
    assert "help: install a ROCm build of torch" in said and "nvidia-smi" not in said
    monkeypatch.setattr(torch.version, "hip", "6.2")  # a ROCm build that sees none: the node's doing
    said = gpus.device_problem(1)
    assert "sees none (HIP_VISIBLE_DEVICES='0', ROCR_VISIBLE_DEVICES='0', torch.cuda.device_count() = " in said
    assert "`rocm-smi` there" in said
    # the job's cgroup denies the devices (amd_gpus counts none): the node's GPUs are AMD still
    real_open = os.open
    monkeypatch.setattr(os, "open", lambda path, flags, *a, **k: (
        _deny(path) if Path(path).parent in (dev, dev / "dri") else real_open(path, flags, *a, **k)))
    assert node.amd_gpus() == 0 and "`rocm-smi` there" in gpus.device_problem(1)


def _deny(path) -> None:
    import errno

    raise PermissionError(errno.EPERM, os.strerror(errno.EPERM), str(path))


def test_miopens_databases_go_to_the_nodes_job_directory_on_amd_nodes(short_tmp, monkeypatch):
    """MIOpen (ROCm's cuDNN) keeps its kernel databases in SQLite files under $HOME: on LUMI
    a Lustre home that every trial of every node locks at once (slow first epochs, "database
    is locked"), or a read-only one in a container. Each Ray node's trials use a directory
    in its private job directory instead; the user's own setting stays; NVIDIA nodes get none."""
    dev = short_tmp / "dev"
    dev.mkdir()
    monkeypatch.setattr(node, "DEV", dev)
    args = argparse.Namespace(role="head", job_dir=str(short_tmp / "hpoc-61"), address=None, job_id=61,
                              node_name=None, interface="lo", gpus=None)
    base = {"SLURMD_NODENAME": "nid005000", "SLURM_CPUS_PER_TASK": "2", node.TOKEN_ENV: "tok"}
    _, env = node.prepare(args, base | {"ROCR_VISIBLE_DEVICES": "0,1", "HIP_VISIBLE_DEVICES": "0,1"})
    miopen = short_tmp / "hpoc-61" / "miopen"
    assert env["MIOPEN_USER_DB_PATH"] == env["MIOPEN_CUSTOM_CACHE_DIR"] == str(miopen) and miopen.is_dir()
    (dev / "kfd").touch()  # gpu_request = none: SLURM set no ROCR_VISIBLE_DEVICES
    env = node.ray_env(base | {"MIOPEN_USER_DB_PATH": "/scratch/me/miopen"}, short_tmp / "hpoc-61" / "token")
    assert env["MIOPEN_USER_DB_PATH"] == "/scratch/me/miopen" and env["MIOPEN_CUSTOM_CACHE_DIR"] == str(miopen)
    (dev / "kfd").unlink()
    env = node.ray_env(base | {"CUDA_VISIBLE_DEVICES": "0"}, short_tmp / "hpoc-61" / "token")
    assert "MIOPEN_USER_DB_PATH" not in env and "MIOPEN_CUSTOM_CACHE_DIR" not in env


def test_local_jobs_on_an_amd_machine_keep_its_gpus(monkeypatch, tmp_path):
    """`hpoc submit --cluster local` on an AMD node (an interactive LUMI allocation): no
    CUDA_VISIBLE_DEVICES, no nvidia-smi, so hpoc found no GPU and submitit gave the job
    CUDA_VISIBLE_DEVICES='' (which HIP reads too): its trials saw none."""
    from hpoc.submit import params as P

    assert P.local_gpus({"ROCR_VISIBLE_DEVICES": "4,5,6,7"}) == [0, 1, 2, 3]  # HIP numbers ROCR's from 0
    assert P.local_gpus({"ROCR_VISIBLE_DEVICES": "4,5,6,7", "HIP_VISIBLE_DEVICES": "1,3"}) == [1, 3]
    dev = tmp_path / "dev"
    (dev / "dri").mkdir(parents=True)
    for k in range(2):
        (dev / "dri" / f"renderD{128 + k}").touch()
    monkeypatch.setattr(node, "DEV", dev)
    monkeypatch.setattr("shutil.which", lambda name: None)  # no nvidia-smi
    assert P.local_gpus({}) == []  # render nodes without /dev/kfd: a display adapter
    (dev / "kfd").touch()
    assert P.local_gpus({}) == [0, 1]


def test_a_local_run_on_an_amd_node_keeps_miopens_databases_in_its_temp_dir(monkeypatch, short_tmp):
    """`hpoc run` in an interactive LUMI allocation: its trials' MIOpen databases went to the
    shared $HOME as a job's did."""
    import ray

    from hpoc.runtime import session as S

    dev = short_tmp / "dev"
    dev.mkdir()
    (dev / "kfd").touch()
    monkeypatch.setattr(node, "DEV", dev)
    monkeypatch.setenv("HPOC_TMP", str(short_tmp))
    for name in node.MIOPEN_VARS:
        monkeypatch.delenv(name, raising=False)
    seen: dict[str, str] = {}
    monkeypatch.setattr(ray, "init", lambda **kw: seen.update(os.environ))  # what Ray's workers would inherit
    run = S.start_local(workdir=None, num_cpus=1, num_gpus=0)
    try:
        assert seen["MIOPEN_USER_DB_PATH"] == seen["MIOPEN_CUSTOM_CACHE_DIR"] == os.path.join(run.temp_dir, "miopen")
        assert os.path.isdir(seen["MIOPEN_USER_DB_PATH"])
    finally:
        run.close()
    assert "MIOPEN_USER_DB_PATH" not in os.environ  # the run's own, undone at its end


def test_a_cluster_short_of_gpus_names_amds_variable_too(monkeypatch):
    """The cluster check sent LUMI users to CUDA_VISIBLE_DEVICES, which SLURM does not set there."""
    from hpoc.runtime import preflight

    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", "/j/token")
    monkeypatch.setattr(preflight, "wait_for_nodes", lambda *a: [("nid005000", {"CPU": 56.0, "GPU": 0.0})])
    with pytest.raises(preflight.NotReady) as info:
        preflight.check("10.0.0.1:1", 1, cpus_per_node=56, gpus_per_node=8)
    assert "expected 8 GPUs (8 per node), Ray sees 0" in str(info.value)
    assert "CUDA_VISIBLE_DEVICES (ROCR_VISIBLE_DEVICES on AMD nodes)" in str(info.value)


RAY_TASKS = """
import hpoc.runtime, os, ray, time
ray.init(num_cpus=2, num_gpus=2, include_dashboard=False)
@ray.remote(num_gpus=1)
def seen():
    time.sleep(1)  # both at once: one GPU each
    return os.environ.get("HIP_VISIBLE_DEVICES"), os.environ.get("CUDA_VISIBLE_DEVICES")
print(sorted(ray.get([seen.remote(), seen.remote()])))
"""


@pytest.mark.ray
def test_two_one_gpu_trials_on_a_lumi_step_get_a_gpu_each(tmp_path):
    """What Ray hands each trial agrees with what HIP reads: with AMD SMI, HIP_VISIBLE_DEVICES
    of one GPU each; without, CUDA_VISIBLE_DEVICES of one each and no HIP_VISIBLE_DEVICES of
    the node's GPUs that would override it (every trial on the first GPU)."""
    (tmp_path / "amdsmi.py").write_text(FAKE_AMDSMI)
    env = {"ROCR_VISIBLE_DEVICES": "4,5", "RAY_USAGE_STATS_ENABLED": "0"}
    done = _python(RAY_TASKS, env, f":{tmp_path}")
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[('0', None), ('1', None)]"
    done = _python(RAY_TASKS, env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[(None, '0'), (None, '1')]"


def test_the_amd_gpus_counted_are_those_the_job_may_open(monkeypatch, tmp_path):
    """The node check (gpu_devices) opened AMD's devices to leave out those the job's cgroup
    denies, but amd_gpus, which `hpoc submit --cluster local` counts its GPUs with, still
    counted every render node: in a job that asked SLURM for no GPU (no ROCR_VISIBLE_DEVICES,
    every device denied) it gave Ray all the node's GPUs, and the trials failed in HIP or
    ran on the CPU. Both count the devices that open now."""
    from fake_dev import amd_node

    from hpoc.submit.params import local_gpus

    dev, denied = amd_node(tmp_path, monkeypatch, gpus=4)
    denied.update({dev / "dri" / "renderD130", dev / "dri" / "renderD131"})
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None)  # no nvidia-smi
    assert node.amd_gpus() == node.gpu_devices() == 2
    assert local_gpus({}) == [0, 1]
    denied.add(dev / "kfd")  # the job asked for no GPU: none of them
    assert node.amd_gpus() == node.gpu_devices() == 0 and local_gpus({}) == []
    denied.clear()
    (dev / "kfd").unlink()  # Intel's render nodes: no AMD GPU, the node's devices as before
    assert node.amd_gpus() == 0 and node.gpu_devices() == 4
    (dev / "kfd").touch()
    (dev / "nvidia0").touch()  # NVIDIA's count as before
    assert node.gpu_devices() == 1
