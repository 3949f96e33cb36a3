"""What a job would find out too late is caught earlier, with one clear line each.

On the login node, `hpoc check --preflight SPEC` reports (all at once, exit 2): a trainer
that does not import, raises, hangs or kills the interpreter on import; a getter whose
`check()` says the data is missing; a storage path that is not writable, not a directory or
full; a search library that is not installed. On the compute node, the driver
(`python -m hpoc.runtime PLAN`) checks imports, data and storage before Ray starts and
exits 2 with `error: ...` - never a traceback, and no Ray started.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from fuzz_harness import ROOT, run_cli

MISSING_SEARCH = next((alg for alg, mod in (("hyperopt", "hyperopt"), ("hebo", "hebo"), ("nevergrad", "nevergrad"),
                                            ("bayesopt", "bayes_opt")) if importlib.util.find_spec(mod) is None), None)

GOOD_DATA = textwrap.dedent('''
    import os
    class Getter:
        def __init__(self, root="data"):
            self.root = root
        def execute(self):
            return ([1], [2])
        def check(self):
            if not os.path.isdir(self.root):
                raise FileNotFoundError(f"{os.path.abspath(self.root)} is missing; fetch it with `hpoc data fetch`")
''')
OK = "import hpoc\nclass Trainer(hpoc.Trainer):\n    def create_model(self, config):\n        return Net()\n"
TRAINERS = {
    "ok": OK,
    # `Base = hpoc.Trainer` hides the class's hooks from `hpoc check`'s look at its source
    "no-model": "import hpoc\nBase = hpoc.Trainer\nclass Trainer(Base):\n    pass\n",
    "raises": "import json\nraise RuntimeError('CUDA driver not found')\n" + OK,
    "missing-dep": "import torch_not_installed_anywhere\n" + OK,
    "syntax": "class Trainer(:\n    pass\n",
    "hangs": "import time\ntime.sleep(600)\n" + OK,
    "kills": "import os\nos._exit(7)\n" + OK,
    # `Base = object` hides that it subclasses nothing from the check (which refuses `class Trainer:`)
    "bare": "Base = object\nclass Trainer(Base):\n    pass\n",
    "hook": "import hpoc\nBase = hpoc.Trainer\nclass Trainer(Base):\n    def create_model(self):\n        pass\n",
    "typo": "import hpoc\nclass Trainer(hpoc.Trainer):\n    def create_lr_schedular(self, optimizer, config):\n"
            "        pass\n    def create_model(self, config):\n        return Net()\n",
    # `import *` hides what the module defines from the compiler's look at its source.
    "no-class": "from json import *\nclass Other: pass\n",
}


def study(folder: Path, *, trainer: str = "ok", storage: str = "results", search: str = "random",
          data_root: str = "data") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "data.py").write_text(GOOD_DATA)
    (folder / "trainer.py").write_text(TRAINERS[trainer])
    (folder / data_root).mkdir(exist_ok=True) if data_root == "data" else None
    spec = folder / "study.hpo"
    spec.write_text(textwrap.dedent(f'''
        study "pf"
        pipeline {{
          getter  = data:Getter(root = {json.dumps(data_root)})
          trainer = trainer:Trainer
        }}
        space {{ lr = loguniform(1e-4, 1e-1), epochs = 1 }}
        objective minimize val_loss
        search {search}
        storage {{ path = {json.dumps(storage)} }}
    '''))
    return spec


def preflight(spec: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hpoc", "check", "--preflight", "-q", str(spec)],
                          capture_output=True, text=True, timeout=300, env=dict(os.environ, **env))


def errors(run: subprocess.CompletedProcess) -> list[str]:
    return [ln for ln in run.stderr.splitlines() if ln.startswith("preflight: error: ")]


def test_a_good_study_passes(tmp_path: Path) -> None:
    run = preflight(study(tmp_path))
    assert run.returncode == 0, run.stderr
    assert errors(run) == [] and "Traceback" not in run.stderr


@pytest.mark.parametrize("trainer, expected", [
    ("raises", "importing `trainer` failed: RuntimeError: CUDA driver not found"),
    ("missing-dep", "importing `trainer` failed: No module named 'torch_not_installed_anywhere'"),
    ("syntax", "syntax error in"),
    ("no-class", "has no `Trainer`"),
    ("bare", "is a class that does not subclass `hpoc.Trainer`"),
    ("hook", "`create_model(self)` (%s:4) must be `create_model(self, config)`: hpoc calls this hook so"),
    ("no-model", "trainer `trainer:Trainer` defines no model: implement `create_model(self, config)`"),
    ("kills", "importing the pipeline killed the Python process (exit 7)"),
])
def test_trainer_problems_are_one_line_each(trainer: str, expected: str, tmp_path: Path) -> None:
    run = preflight(study(tmp_path, trainer=trainer))
    assert run.returncode == 2, run.stderr
    assert "Traceback" not in run.stderr
    (line,) = [ln for ln in errors(run) if "trainer" in ln]
    assert expected.replace("%s", str(tmp_path / "trainer.py")) in line, run.stderr


def test_a_misspelt_hook_is_a_warning_on_the_login_node_too(tmp_path: Path) -> None:
    run = preflight(study(tmp_path, trainer="typo"))
    assert run.returncode == 0 and errors(run) == [], run.stderr
    assert (f"preflight: warning: trainer: `create_lr_schedular` ({tmp_path / 'trainer.py'}:3) is not a hook hpoc calls "
            "(did you mean `create_lr_scheduler`?)") in run.stderr, run.stderr


def test_an_import_that_hangs_is_cut_off(tmp_path: Path) -> None:
    start = time.monotonic()
    run = preflight(study(tmp_path, trainer="hangs"), HPOC_PREFLIGHT_TIMEOUT="4")
    assert time.monotonic() - start < 60
    assert run.returncode == 2
    assert any("importing the pipeline took more than 4 s" in ln for ln in errors(run)), run.stderr


def test_everything_wrong_is_reported_at_once(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    spec = study(tmp_path / "s", trainer="raises", storage=str(blocker / "results"),
                 search=MISSING_SEARCH or "random", data_root="nowhere")
    run = preflight(spec)
    assert run.returncode == 2
    found = errors(run)
    kinds = [ln.split(":")[2].strip() for ln in found]
    assert sorted(kinds) == sorted(["trainer", "data", "storage"] + (["search"] if MISSING_SEARCH else [])), found
    text = "\n".join(found)
    assert "nowhere is missing; fetch it" in text
    assert f"{blocker} exists and is not a directory" in text
    if MISSING_SEARCH:
        assert f"search algorithm `{MISSING_SEARCH}` needs the Python package" in text and "pip install" in text


def test_unwritable_and_full_storage(tmp_path: Path) -> None:
    from hpoc.runtime.login_preflight import storage_problem

    assert storage_problem(tmp_path / "new" / "deep") is None
    assert not (tmp_path / "new").exists()  # the check leaves nothing behind
    assert "is not writable" in storage_problem("/proc/hpoc-results")
    full = storage_problem(tmp_path, min_free_gb=1e9)
    assert "GiB free, less than 1e+09 GiB" in full
    run = preflight(study(tmp_path / "s"), HPOC_MIN_FREE_GB="1000000000")
    assert run.returncode == 2 and any("GiB free" in ln for ln in errors(run)), run.stderr


def test_the_fashion_mnist_example_checks_its_data(tmp_path: Path) -> None:
    import shutil

    from runtime_plans import write_fashion

    study_dir = tmp_path / "fashion"
    shutil.copytree(ROOT / "examples" / "fashion_mnist", study_dir)
    run = preflight(study_dir / "study.hpo")
    assert run.returncode == 2
    (line,) = [ln for ln in errors(run) if ": data: " in ln]
    assert "Fashion-MNIST is not in" in line and "hpoc data fetch fashion-mnist --root" in line, line
    raw = write_fashion(study_dir / "data" / "fashion-mnist")
    run = preflight(study_dir / "study.hpo")
    assert [ln for ln in errors(run) if ": data: " in ln] == [], run.stderr
    # A file cut short (an interrupted copy): torchvision would fail in a reshape.
    labels = raw / "t10k-labels-idx1-ubyte"
    labels.write_bytes(labels.read_bytes()[:20])
    run = preflight(study_dir / "study.hpo")
    (line,) = [ln for ln in errors(run) if ": data: " in ln]
    assert f"Fashion-MNIST is damaged: {labels} is cut short (20 bytes; its header says 48)" in line, line
    assert "fetch it again on a login node" in line


# ---------------------------------------------------------------- on the compute node


def compiled(spec: Path) -> Path:
    code, _, err = run_cli(["compile", str(spec), "-o", str(spec.parent / "build")])
    assert code == 0, err
    return spec.parent / "build" / "plan.json"


@pytest.mark.parametrize("fault, expected", [
    ("trainer", "trainer `trainer:Trainer`: importing `trainer` failed: RuntimeError: CUDA driver not found"),
    ("hook", "`create_model(self)` ("),  # every trial and its retries would fail in a TypeError
    ("storage", "is not writable"),
    ("data", "nowhere is missing; fetch it"),
])
def test_the_driver_stops_before_ray_with_one_clear_error(fault: str, expected: str, tmp_path: Path) -> None:
    from runtime_plans import write_toy

    folder = tmp_path / "s"
    write_toy(folder)
    spec = study(folder, trainer={"trainer": "raises", "hook": "hook"}.get(fault, "ok"),
                 storage="/proc/hpoc-results" if fault == "storage" else "results",
                 data_root="nowhere" if fault == "data" else "data")
    if fault == "data":  # the getter really loads its data at run time: make it fail like a missing dataset
        (folder / "data.py").write_text(GOOD_DATA.replace("return ([1], [2])", "self.check(); return ([1], [2])"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(RAY_USAGE_STATS_ENABLED="0", HOME=str(tmp_path))
    # `python -m hpoc.runtime PLAN --local`, with ray.init booby-trapped: starting Ray fails loudly
    driver = ("import runpy, sys, ray\n"
              "def trap(*a, **k):\n    raise SystemExit('RAY WAS STARTED')\n"
              "ray.init = trap\n"
              "sys.argv = ['hpoc.runtime', sys.argv[1], '--local', '--cpus', '1']\n"
              "runpy.run_module('hpoc.runtime', run_name='__main__', alter_sys=True)\n")
    start = time.monotonic()
    run = subprocess.run([sys.executable, "-c", driver, str(compiled(spec))],
                         capture_output=True, text=True, timeout=300, env=env, cwd=folder)
    took = time.monotonic() - start
    assert run.returncode == 2, run.stderr
    assert "Traceback" not in run.stderr and expected in run.stderr, run.stderr
    said = [line for line in run.stderr.splitlines() if not line.startswith("[hpoc] loading data: ")]
    assert said[0].startswith("error: "), run.stderr  # the error first, after the progress line
    assert "RAY WAS STARTED" not in run.stderr
    assert took < 120


def test_the_site_is_asked_whether_it_would_take_the_job(tmp_path: Path, monkeypatch) -> None:
    """A partition whose nodes have fewer CPUs than `cpus_per_node`: sbatch refuses the job
    only when it is submitted; `--preflight` asks `sbatch --test-only` first."""
    from hpoc.runtime.login_preflight import check_sbatch
    from slurm_plans import plan

    fake = tmp_path / "sbatch"
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    refuse = ("sbatch: warning: can't honor --ntasks-per-node set to 1\n"  # no reason: not said
              "sbatch: error: CPU count per node can not be satisfied\n"
              "sbatch: error: Batch job submission failed: Requested node configuration is not available")
    fake.write_text(f'#!/bin/sh\necho "$1" >"$0.args"; cp "$2" "$0.script"\necho "{refuse}" >&2\nexit 1\n')
    fake.chmod(0o755)
    # a site that refuses such a job at submission too (not the machine's own SLURM)
    (tmp_path / "scontrol").write_text('#!/bin/sh\necho "EnforcePartLimits       = ALL"\n')
    (tmp_path / "scontrol").chmod(0o755)
    (found,) = check_sbatch(plan(slurm={"cpus_per_node": 64}))
    assert not found.ok and found.message.startswith(
        "sbatch would refuse the job: CPU count per node can not be satisfied; Batch job submission failed: "
        "Requested node configuration is not available; check `slurm.cpus_per_node = 64`, `slurm.nodes = 2`, "
        "`slurm.mem = 1G` in study.hpo")
    assert Path(f"{fake}.args").read_text() == "--test-only\n"  # nothing is submitted
    assert "#SBATCH --cpus-per-task=64\n" in Path(f"{fake}.script").read_text()
    fake.write_text('#!/bin/sh\necho "sbatch: Job 42 to start at 2026-11-29T02:39:44 using 2 processors" >&2\n')
    (found,) = check_sbatch(plan())
    assert found.ok and found.message == "sbatch accepts the job (Job 42 to start at 2026-11-29T02:39:44 using 2 processors)"
    assert check_sbatch(plan(slurm=None)) == []  # no SLURM block: nothing to ask
    with_fake = os.environ["PATH"]
    monkeypatch.setenv("PATH", str(tmp_path / "none"))  # no SLURM commands here: said, not skipped
    (found,) = check_sbatch(plan())
    assert found.ok and found.message == "not asked: no `sbatch` on PATH here (run --preflight on the login node)"
    monkeypatch.setenv("PATH", with_fake)
    # sbatch installed but no cluster to ask (no configuration here): not a problem of the job
    fake.write_text('#!/bin/sh\necho "sbatch: fatal: Could not establish a configuration source" >&2\nexit 1\n')
    (found,) = check_sbatch(plan())
    assert found.ok and found.message.startswith("not asked: sbatch cannot reach a SLURM controller here")
    # ...but a fatal word about the job's own options is a refusal (as sbatch 23 says it)
    fake.write_text('#!/bin/sh\necho "sbatch: fatal: --mem, --mem-per-cpu, and --mem-per-gpu are mutually '
                    'exclusive." >&2\nexit 1\n')
    (found,) = check_sbatch(plan(slurm={"extra": ["--mem-per-cpu=1G"]}))
    assert not found.ok and found.message.startswith(
        "sbatch would refuse the job: --mem, --mem-per-cpu, and --mem-per-gpu are mutually exclusive.")


def test_cpus_per_node_above_every_node_says_the_job_pends_where_sbatch_takes_it(tmp_path, monkeypatch):
    """`sbatch --test-only` refuses a `cpus_per_node` above every node's CPUs, and preflight
    said "sbatch would refuse the job"; where the site does not enforce partition limits at
    submission (EnforcePartLimits=NO, SLURM's default) sbatch takes it and it pends for ever."""
    from hpoc.runtime.login_preflight import check_sbatch
    from slurm_plans import plan

    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    refuse = "sbatch: error: Batch job submission failed: Requested node configuration is not available"
    for name, text in (("sbatch", f'echo "{refuse}" >&2; exit 1'),
                       ("sinfo", 'printf "debug*|infinite|3|1-infinite|2\n"'),
                       ("scontrol", 'echo "EnforcePartLimits       = NO"')):
        (tmp_path / name).write_text(f"#!/bin/sh\n{text}\n")
        (tmp_path / name).chmod(0o755)
    slurm = {"partition": None, "cpus_per_node": 8, "nodes": 1}
    (found,) = check_sbatch(plan(slurm=slurm))
    assert not found.ok and "would refuse" not in found.message, found.message
    assert found.message.startswith(
        "sbatch takes the job (the site does not enforce partition limits at submission: EnforcePartLimits=NO), "
        "but it would never start: `slurm.cpus_per_node = 8` is more than any node of partition `debug` "
        "(2 CPUs) has"), found.message
    assert "PartitionConfig" in found.message and "lower `cpus_per_node` to 2 or fewer in study.hpo" in found.message
    (tmp_path / "sinfo").write_text("#!/bin/sh\nexit 1\n")  # the partitions unsaid: sbatch's words
    (found,) = check_sbatch(plan(slurm=slurm))
    assert found.message.startswith("sbatch takes the job (the site does not enforce partition limits at "
                                    "submission: EnforcePartLimits=NO), but no node fits it (Batch job submission "
                                    "failed: Requested node configuration is not available): it would never "
                                    "start; check `slurm.nodes = 1`, `slurm.cpus_per_node = 8`"), found.message
    (tmp_path / "sinfo").write_text('#!/bin/sh\nprintf "debug*|infinite|3|1-infinite|2\\n"\n')
    for said in ('echo "EnforcePartLimits       = ALL"', "exit 1"):  # refused at submission, or cannot tell
        (tmp_path / "scontrol").write_text(f"#!/bin/sh\n{said}\n")
        (found,) = check_sbatch(plan(slurm=slurm))  # as sbatch said
        assert not found.ok and found.message.startswith("sbatch would refuse the job: "), found.message


def test_a_refusal_names_the_sbatch_variable_that_sbatch_read_instead_of_the_spec(tmp_path, monkeypatch):
    """SBATCH_MEM_PER_NODE in the shell is what sbatch asked for: the check named `slurm.mem`."""
    from hpoc.runtime.login_preflight import check_sbatch
    from slurm_plans import plan

    fake = tmp_path / "sbatch"
    fake.write_text('#!/bin/sh\necho "sbatch: error: Batch job submission failed: Requested node configuration '
                    'is not available" >&2\nexit 1\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    monkeypatch.setenv("SBATCH_MEM_PER_NODE", "900000")
    (found,) = check_sbatch(plan(slurm={"cpus_per_node": 2}))
    assert not found.ok and "; check `SBATCH_MEM_PER_NODE=900000` in this shell (sbatch reads it over " \
        "`slurm.mem = 1G` in study.hpo), `slurm.nodes = 2`, `slurm.cpus_per_node = 2` in study.hpo with" in found.message


@pytest.mark.parametrize("refuse, slurm, named", [
    ("sbatch: error: invalid partition specified: gpu-time-limit\nallocation failure: Invalid partition name specified",
     {"partition": "gpu-time-limit"}, '`slurm.partition = "gpu-time-limit"`'),
    ("allocation failure: Invalid feature specification", {"constraint": "bigmem"},
     '`slurm.constraint = "bigmem"`'),
    ("sbatch: error: Batch job submission failed: Invalid account or account/partition combination specified",
     {"account": "proj1"}, '`slurm.account = "proj1"`'),
    ("allocation failure: Requested node configuration is not available", {"nodes": 5, "cpus_per_node": 8},
     "`slurm.nodes = 5`, `slurm.cpus_per_node = 8`, `slurm.mem = 1G`"),
    # sbatch's refusal of an `extra` option named nothing: "compare the `slurm` block"
    ("allocation failure: Requested reservation is invalid", {"extra": ["--exclusive", "--reservation=maint"]},
     '`slurm.extra` "--reservation=maint"'),
    ("allocation failure: Invalid license specification", {"extra": ["--licenses=scratch:1"]},
     '`slurm.extra` "--licenses=scratch:1"'),
    ("allocation failure: Requested node configuration is not available",
     {"mem": None, "extra": ["--mem-per-cpu=64G"]},
     '`slurm.nodes = 2`, `slurm.cpus_per_node = 1`, `slurm.extra` "--mem-per-cpu=64G"'),
    # a CPU study's node-local disk: the default `gpu_request = gres` asks for nothing
    ("allocation failure: Invalid generic resource (gres) specification",
     {"gpus_per_node": 0, "gpu_request": "gres", "extra": ["--gres=nvme:100"]}, '`slurm.extra` "--gres=nvme:100"'),
    ("allocation failure: Invalid generic resource (gres) specification",
     {"gpus_per_node": 4, "gpu_request": "per_node", "extra": ["--gres=nvme:100"]},
     '`slurm.gpus_per_node = 4`, `slurm.gpu_request = per_node`, `slurm.extra` "--gres=nvme:100"')])
def test_a_refusal_names_the_setting_it_is_about(tmp_path: Path, monkeypatch, refuse, slurm, named) -> None:
    """sbatch's words ("Invalid feature specification") named no setting of the spec."""
    from hpoc.runtime.login_preflight import check_sbatch
    from slurm_plans import plan

    fake = tmp_path / "sbatch"
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    fake.write_text(f'#!/bin/sh\nprintf "%s\\n" "{refuse}" >&2\nexit 1\n')
    fake.chmod(0o755)
    # a site that refuses such a job at submission too (not the machine's own SLURM)
    (tmp_path / "scontrol").write_text('#!/bin/sh\necho "EnforcePartLimits       = ALL"\n')
    (tmp_path / "scontrol").chmod(0o755)
    (found,) = check_sbatch(plan(slurm=slurm))
    assert not found.ok and f"; check {named} in study.hpo with what the site offers (`sinfo" in found.message, \
        found.message


def test_a_refusal_of_what_the_spec_leaves_to_the_site_says_to_set_it(tmp_path: Path, monkeypatch) -> None:
    """JUWELS refuses a job without an account ("You must specify an account"): the help
    listed the `slurm` block's settings to compare, of which the spec sets none."""
    from hpoc.runtime.login_preflight import check_sbatch
    from slurm_plans import plan

    fake = tmp_path / "sbatch"
    fake.write_text('#!/bin/sh\necho "sbatch: error: You must specify an account (--account)" >&2\n'
                    'echo "sbatch: error: Batch job submission failed: Invalid account or account/partition '
                    'combination specified" >&2\nexit 1\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    (found,) = check_sbatch(plan(slurm={"account": None, "partition": "booster"}))
    assert not found.ok and found.message.endswith(
        "; check `slurm.partition = \"booster\"` in study.hpo with what the site offers "
        "(`sinfo -o '%P %c %m %G %f %l'`); set `slurm.account` in study.hpo: the spec leaves it to the site "
        "(`sacctmgr show assoc user=$USER format=account,partition,qos` lists yours)"), found.message
    # a site that wants a time limit given: "missing or exceeds some limit"
    fake.write_text('#!/bin/sh\necho "sbatch: error: Batch job submission failed: Requested time limit is invalid '
                    '(missing or exceeds some limit)" >&2\nexit 1\n')
    (found,) = check_sbatch(plan(slurm={"time": None, "time_s": None}))
    assert found.message.endswith("; set `slurm.time` in study.hpo: the spec leaves it to the site "
                                  "(`sinfo -o '%P %l'` shows each partition's time limit)"), found.message
    fake.write_text('#!/bin/sh\necho "sbatch: error: You must specify an account (--account)" >&2\n'
                    'echo "sbatch: error: Batch job submission failed: Invalid account or account/partition '
                    'combination specified" >&2\nexit 1\n')
    (found,) = check_sbatch(plan(slurm={"account": None, "partition": None}))
    assert found.message.endswith("; set `slurm.partition`, `slurm.account` in study.hpo: the spec leaves them "
                                  "to the site (`sacctmgr show assoc user=$USER format=account,partition,qos` "
                                  "lists yours)"), found.message


def test_a_refused_job_array_names_the_shards(tmp_path: Path, monkeypatch) -> None:
    """A site whose MaxArraySize is below `shards`: sbatch's "Invalid job array specification"
    was met with "compare the spec's `slurm` block (partition, account, …)", no word of the array."""
    from hpoc.runtime.login_preflight import check_sbatch
    from slurm_plans import plan

    fake = tmp_path / "sbatch"
    fake.write_text('#!/bin/sh\necho "sbatch: error: Batch job submission failed: Invalid job array '
                    'specification" >&2\nexit 1\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    (found,) = check_sbatch(plan(shards={"count": 2000, "parallel": 50}))
    assert not found.ok and found.message.endswith(
        "; check `slurm.array { shards = 2000, parallel = 50 }` in study.hpo with the site's limits "
        "(`scontrol show config | grep -E 'MaxArraySize|MaxJobCount'`)"), found.message


def torch_build_has_gpu() -> bool:
    import torch

    return bool(torch.version.cuda or getattr(torch.version, "hip", None))


def test_a_setup_line_that_sources_a_missing_file_is_found_before_the_queue(tmp_path: Path) -> None:
    """`source env/bin/activate` in `slurm.setup` of an environment that is not there (a typo,
    made elsewhere) passed the preflight, then failed the job on the node after the queue."""
    from hpoc.runtime.login_preflight import check_setup
    from slurm_plans import plan

    source = {"file": "s.hpo", "format": "hpo", "sha256": "0" * 64, "workdir": str(tmp_path)}
    (tmp_path / "env" / "bin").mkdir(parents=True)
    (tmp_path / "env" / "bin" / "activate").write_text("")
    setup = ["module load Stages/2025", "source env/bin/activate", f". {tmp_path}/envs/x/bin/activate",
             "source $PROJECT/env/bin/activate", "source ~/nowhere-$USER/bin/activate"]
    (found,) = check_setup(plan(source=source, slurm={"setup": setup}))
    assert not found.ok and found.message == (
        f"slurm.setup line `. {tmp_path}/envs/x/bin/activate` reads {tmp_path}/envs/x/bin/activate, which "
        "does not exist here; correct the path (the nodes run the line in the spec's directory)"), found.message
    assert check_setup(plan(source=source, slurm={"setup": setup[:2]})) == []  # it is there; modules unjudged
    assert check_setup(plan(source=source, slurm=None)) == []


def test_the_nodes_interpreter_is_tried_before_the_queue(tmp_path: Path) -> None:
    """A `slurm.python` without hpoc or Ray, or a container image that is not there, was
    found only on the compute node, after the job had waited in the queue."""
    from hpoc.runtime.login_preflight import check_interpreter
    from slurm_plans import plan

    source = {"file": "s.hpo", "format": "hpo", "sha256": "0" * 64, "workdir": str(tmp_path)}
    bare = tmp_path / "bare-python"
    bare.write_text("#!/bin/sh\necho \"ModuleNotFoundError: No module named 'hpoc'\" >&2\nexit 1\n")
    bare.chmod(0o755)
    (found,) = check_interpreter(plan(source=source, slurm={"python": str(bare), "setup": []}))
    assert not found.ok and found.message == (
        f"slurm.python {bare} cannot run hpoc (ModuleNotFoundError: No module named 'hpoc'); "
        "set it to the python of the environment hpoc is installed in")
    (found,) = check_interpreter(plan(source=source, slurm={"python": "env/bin/python", "setup": []}))
    assert not found.ok and found.message.startswith("slurm.python env/bin/python does not exist here")
    (found,) = check_interpreter(plan(source=source, slurm={"python": sys.executable, "setup": []}))
    assert found.ok, found.message
    # It runs with the spec's `env`, as the job does (a PYTHONPATH set there, say).
    env_python = tmp_path / "env-python"
    env_python.write_text('#!/bin/sh\n[ "$HPOC_SITE_X" = "a b" ] && exit 0\necho "ImportError: no X" >&2; exit 1\n')
    env_python.chmod(0o755)
    (found,) = check_interpreter(plan(source=source, slurm={"python": str(env_python), "setup": [],
                                                            "env": {"HPOC_SITE_X": "a b"}}))
    assert found.ok, found.message
    # Trials given GPUs, and a torch built without CUDA there: every trial would train on the CPU.
    cpu_torch = tmp_path / "cpu-python"
    cpu_torch.write_text('#!/bin/sh\necho "@@hpoc-torch-build@@cpu 2.5.1+cpu"\n')
    cpu_torch.chmod(0o755)
    gpu_plan = plan(source=source, slurm={"python": str(cpu_torch), "setup": []}, resources={"gpus_per_worker": 1})
    (found,) = check_interpreter(gpu_plan)
    assert not found.ok and found.message.startswith(
        f"slurm.python {cpu_torch}'s torch (2.5.1+cpu) is built without CUDA, and `gpus_per_worker = 1` gives "
        "the trials GPUs; help: install a CUDA (or ROCm) build of torch"), found.message
    (found,) = check_interpreter(plan(source=source, slurm={"python": str(cpu_torch), "setup": []}))
    assert found.ok, found.message  # CPU trials: its torch is fine
    (found,) = check_interpreter(plan(source=source, slurm={"python": sys.executable, "setup": []},
                                      resources={"gpus_per_worker": 1}))
    assert found.ok == bool(torch_build_has_gpu()), found.message
    # After `module load ...` it may well start: only its existence is checked.
    (found,) = check_interpreter(plan(source=source, slurm={"python": str(bare), "setup": ["module load X"]}))
    assert found.ok and "imports not tried" in found.message
    assert check_interpreter(plan(source=source, slurm={"python": "python3"})) == []  # the nodes' PATH
    image = {"image": "img/torch.sif", "runtime": "apptainer"}
    (found,) = check_interpreter(plan(source=source, slurm={"container": image}))
    assert not found.ok and found.message == "slurm.container.image img/torch.sif does not exist here"
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "torch.sif").write_bytes(b"")
    (found,) = check_interpreter(plan(source=source, slurm={"container": image}))
    assert found.ok


def test_a_time_above_the_partitions_limit_is_an_error_though_sbatch_takes_the_job(tmp_path: Path,
                                                                                    monkeypatch) -> None:
    """Where the site does not enforce partition limits at submission (EnforcePartLimits=NO,
    SLURM's default), `sbatch --test-only` takes a job whose `time` is above the partition's
    MaxTime, and preflight said "sbatch accepts the job": submitted, it pends for ever
    (PartitionTimeLimit)."""
    from hpoc.runtime.login_preflight import check_sbatch
    from slurm_plans import plan

    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    for name, text in (("sbatch", 'echo "sbatch: Job 42 to start at 2026-11-29T13:29:54 using 1 processors '
                                  'on nodes node1 in partition short" >&2'),
                       # rows by node state, as sinfo splits them
                       ("sinfo", 'printf "debug*|infinite|2|1-infinite\\nshort|10:00|1|1-infinite\\n'
                                 'short|10:00|2|1-infinite\\n"')):
        (tmp_path / name).write_text(f"#!/bin/sh\n{text}\n")
        (tmp_path / name).chmod(0o755)
    (found,) = check_sbatch(plan(slurm={"partition": "short", "time": "00:30:00", "time_s": 1800}))
    assert not found.ok and found.message == (
        "sbatch takes the job, but it would never start: `slurm.time = 00:30:00` is above the time limit "
        "of partition `short` (10:00), and this site queues such jobs for ever (PartitionTimeLimit); "
        "lower `time` to 10:00 or less in study.hpo, or choose a partition that allows it "
        "(`sinfo -o '%P %c %m %G %f %l'`)")
    (found,) = check_sbatch(plan(slurm={"partition": "short", "time": "00:10:00", "time_s": 600, "nodes": 3}))
    assert found.ok, found.message  # at the limits: fine
    (found,) = check_sbatch(plan(slurm={"partition": "short,debug", "nodes": 4}))
    assert not found.ok and "`slurm.nodes = 4` is more than partitions `short` (3), `debug` (2) give one job, " \
        "and this site queues such jobs for ever (PartitionConfig); lower `nodes` to 3 or fewer" in found.message
    # above a MaxNodes squeue's reason is PartitionNodeLimit; above the partition's count without
    # one (`1-infinite`), PartitionConfig, as squeue then says
    (tmp_path / "sinfo").write_text('#!/bin/sh\nprintf "short|10:00|3|1-2\\n"\n')
    (found,) = check_sbatch(plan(slurm={"partition": "short", "nodes": 4}))
    assert not found.ok and "(PartitionNodeLimit); lower `nodes` to 2 or fewer" in found.message, found.message
    # a MaxNodes above the node count, the job above both: slurmctld checks MaxNodes first
    (tmp_path / "sinfo").write_text('#!/bin/sh\nprintf "short|10:00|3|1-4\\n"\n')
    (found,) = check_sbatch(plan(slurm={"partition": "short", "nodes": 5}))
    assert not found.ok and "(PartitionNodeLimit); lower `nodes` to 3 or fewer" in found.message, found.message
    (found,) = check_sbatch(plan(slurm={"partition": None, "time": "3-00:00:00", "time_s": 3 * 86400}))
    assert found.ok, found.message  # the default partition (`debug*`) has no time limit
    monkeypatch.setenv("SBATCH_PARTITION", "debug")  # the job goes there, whatever the spec says
    (found,) = check_sbatch(plan(slurm={"partition": "short", "time": "00:30:00", "time_s": 1800}))
    assert found.ok, found.message
    monkeypatch.setenv("SBATCH_PARTITION", "short")  # the spec's own: the job is the spec's still
    (found,) = check_sbatch(plan(slurm={"partition": "short", "time": "00:30:00", "time_s": 1800}))
    assert not found.ok and "PartitionTimeLimit" in found.message, found.message


def test_more_cpus_per_node_than_the_partitions_nodes_have_is_said_though_sbatch_takes_the_job(
        tmp_path: Path, monkeypatch) -> None:
    """`cpus_per_node = 8` on a partition of 2-CPU nodes: where the site does not enforce
    partition limits at submission, sbatch takes the job and it pends for ever
    (PartitionConfig); `hpoc submit` said nothing of it."""
    from hpoc.site.partition import never_fits
    from slurm_plans import plan

    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    (tmp_path / "sinfo").write_text('#!/bin/sh\nprintf "debug*|infinite|2|1-infinite|2\\n'
                                    'debug*|infinite|1|1-infinite|4\\nbig|infinite|2|1-infinite|2+\\n"\n')
    (tmp_path / "sinfo").chmod(0o755)
    assert never_fits(plan(slurm={"partition": "debug", "cpus_per_node": 8})) == [(
        "`slurm.cpus_per_node = 8` is more than any node of partition `debug` (4 CPUs) has, and this site "
        "queues such jobs for ever (PartitionConfig)", "lower `cpus_per_node` to 4 or fewer in study.hpo")]
    assert never_fits(plan(slurm={"partition": "debug", "cpus_per_node": 4})) == []  # its biggest node fits
    assert never_fits(plan(slurm={"partition": "big", "cpus_per_node": 8})) == []  # `2+`: some have more


def test_an_sbatch_variable_that_overrides_the_spec_is_a_preflight_warning(monkeypatch) -> None:
    """`sbatch --test-only` ran with SBATCH_ACCOUNT from the shell over the spec's account, so it
    checked another job than the spec's, and said nothing of it."""
    from hpoc.runtime.login_preflight import check_sbatch_env
    from slurm_plans import plan

    monkeypatch.setenv("SBATCH_ACCOUNT", "proj-b")
    (found,) = check_sbatch_env(plan(slurm={"account": "proj-a"}))
    assert found.ok and found.warning and found.message.startswith(
        '`slurm.account = "proj-a"` is overridden by SBATCH_ACCOUNT=proj-b in this shell: sbatch reads')
    assert check_sbatch_env(plan(slurm={"account": "proj-b"})) == []
    assert check_sbatch_env(plan(slurm=None)) == []


def test_the_itwinai_example_checks_its_data(tmp_path: Path) -> None:
    import shutil

    from itwinai_data import write_fashion_mnist

    study_dir = tmp_path / "itwinai"
    shutil.copytree(ROOT / "examples" / "itwinai", study_dir)
    run = preflight(study_dir / "config.yaml")
    (line,) = [ln for ln in errors(run) if ": data: " in ln]
    assert "FashionMNIST is not in" in line and "hpoc data fetch fashion-mnist --root" in line, line
    raw = write_fashion_mnist(study_dir / "data", n_train=8, n_test=2)
    run = preflight(study_dir / "config.yaml")
    assert [ln for ln in errors(run) if ": data: " in ln] == [], run.stderr
    labels = raw / "t10k-labels-idx1-ubyte"
    labels.write_bytes(labels.read_bytes()[:6])
    (line,) = [ln for ln in errors(preflight(study_dir / "config.yaml")) if ": data: " in ln]
    assert f"{labels} is cut short" in line and "hpoc data fetch fashion-mnist" in line, line


def test_exclusive_nodes_with_more_cpus_than_ray_uses_are_said(tmp_path: Path, monkeypatch) -> None:
    """With `--exclusive` the job holds whole nodes, yet Ray starts with `cpus_per_node` of
    each: the rest sat idle without a word."""
    from hpoc.runtime.login_preflight import check_exclusive
    from slurm_plans import plan

    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    (tmp_path / "sinfo").write_text('#!/bin/sh\nprintf "cpu*|infinite|2|1-infinite|128\\n'
                                    'cpu|infinite|1|1-infinite|64+\\n"\n')  # rows by node state
    (tmp_path / "sinfo").chmod(0o755)
    (found,) = check_exclusive(plan(slurm={"cpus_per_node": 8, "extra": ["--exclusive"]}))
    assert found.ok and found.warning and found.message == (
        "`--exclusive` in `slurm.extra` gives the job whole nodes of 64 CPUs or more, but Ray uses only "
        "`cpus_per_node = 8` of each; set `cpus_per_node = 64` in study.hpo to use them, or drop "
        "`--exclusive` to leave them to other jobs")
    assert check_exclusive(plan(slurm={"cpus_per_node": 64, "extra": ["--exclusive"]})) == []
    assert check_exclusive(plan(slurm={"cpus_per_node": 8, "extra": ["--exclusive=user"]})) == []
    assert check_exclusive(plan(slurm={"cpus_per_node": 8, "extra": []})) == []


def test_exclusive_nodes_are_those_of_the_partition_the_shell_picks(tmp_path: Path, monkeypatch) -> None:
    """sbatch takes SBATCH_PARTITION over the spec's partition; the warning looked at the
    spec's nodes only."""
    from hpoc.runtime.login_preflight import check_exclusive
    from slurm_plans import plan

    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    (tmp_path / "sinfo").write_text('#!/bin/sh\nprintf "cpu*|infinite|2|1-infinite|128\\n'
                                    'small|infinite|2|1-infinite|8\\n"\n')
    (tmp_path / "sinfo").chmod(0o755)
    exclusive = {"cpus_per_node": 8, "extra": ["--exclusive"]}
    monkeypatch.setenv("SBATCH_PARTITION", "small")
    assert check_exclusive(plan(slurm={**exclusive, "partition": None})) == []
    monkeypatch.setenv("SBATCH_PARTITION", "cpu")
    (found,) = check_exclusive(plan(slurm={**exclusive, "partition": "small"}))
    assert found.warning and found.message.startswith(
        "`--exclusive` in `slurm.extra` gives the job whole nodes of partition `cpu` (SBATCH_PARTITION in "
        "this shell) of 128 CPUs or more, but Ray uses only `cpus_per_node = 8` of each"), found.message


def test_the_preflight_asks_sinfo_once(tmp_path: Path, monkeypatch) -> None:
    """The never-fits check and the `--exclusive` warning each ran sinfo: one answer serves both."""
    from hpoc.runtime.login_preflight import run_checks
    from slurm_plans import plan

    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    for name, text in (("sbatch", 'echo "sbatch: Job 42 to start at 2026-11-29T13:29:54 using 1 processors '
                                  'on nodes node1 in partition cpu" >&2'),
                       ("sinfo", f'echo asked >>"{tmp_path}/sinfo.calls"\nprintf "cpu*|infinite|2|1-infinite|128\\n"')):
        (tmp_path / name).write_text(f"#!/bin/sh\n{text}\n")
        (tmp_path / name).chmod(0o755)
    found = run_checks(plan(slurm={"cpus_per_node": 8, "extra": ["--exclusive"]}))
    assert any(f.warning and "`--exclusive`" in f.message for f in found), found
    assert (tmp_path / "sinfo.calls").read_text() == "asked\n"


# LUMI-G-like nodes as `scontrol -o show node` writes them: 64 cores of 2 hardware threads,
# 8 cores kept for the system (CoreSpecCount): sinfo says 128 CPUs, a job may use 112.
_LUMI_NODE = ("NodeName={name} Arch=x86_64 CoresPerSocket=64 CPUAlloc=0 {cpus} CPULoad=0.01 "
              "AvailableFeatures=AMD_EPYC_7A53 Gres=gpu:mi250:8 NodeAddr={name} Sockets=1 Boards=1 "
              "State=IDLE ThreadsPerCore=2 TmpDisk=0 Weight=1 Owner=N/A Partitions=standard-g,small-g "
              "{spec} RealMemory=491520")


def _fake_lumi(tmp_path: Path, monkeypatch, cpus: str, spec: str, scontrol_rc: int = 0) -> None:
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    monkeypatch.delenv("SBATCH_HINT", raising=False)
    monkeypatch.delenv("SLURM_HINT", raising=False)
    (tmp_path / "sinfo").write_text('#!/bin/sh\nprintf "standard-g*|2-00:00:00|2|1-1024|128|nid[005000-005001]\\n'
                                    'small-g|3-00:00:00|1|1-4|128|nid005002\\n"\n')
    lines = "\\n".join(_LUMI_NODE.format(name=n, cpus=cpus, spec=spec) for n in ("nid005000", "nid005001"))
    body = f'printf "{lines}\\n"' if scontrol_rc == 0 else 'echo "slurm_load_node error: Unable to contact slurm controller" >&2'
    (tmp_path / "scontrol").write_text(f'#!/bin/sh\necho "$*" >>"$0.args"\n{body}\nexit {scontrol_rc}\n')
    for name in ("sinfo", "scontrol"):
        (tmp_path / name).chmod(0o755)


@pytest.mark.parametrize("cpus, spec", [
    ("CPUEfctv=112 CPUTot=128", "CoreSpecCount=8 CPUSpecList=0-7,64-71"),  # SLURM 22.05 and later
    ("CPUTot=128", "CoreSpecCount=8 CPUSpecList=0-7,64-71"),  # older: no CPUEfctv
    ("CPUTot=128", "CoreSpecCount=8"),
])
def test_cpus_a_site_keeps_for_the_system_are_not_offered_to_the_job(tmp_path: Path, monkeypatch, cpus, spec) -> None:
    """sinfo counts the cores a site reserves (CoreSpecCount): `--exclusive` advice said
    `cpus_per_node = 128` on nodes where a job may have 112, and a `cpus_per_node = 120` that
    pends for ever passed the never-fits check."""
    from hpoc.runtime.login_preflight import check_exclusive
    from hpoc.site.partition import never_fits
    from slurm_plans import plan

    _fake_lumi(tmp_path, monkeypatch, cpus, spec)
    (found,) = check_exclusive(plan(slurm={"cpus_per_node": 8, "extra": ["--exclusive"], "partition": "standard-g"}))
    assert "whole nodes of 112 CPUs (2 hardware threads a core) or more" in found.message, found.message
    assert "set `cpus_per_node = 112`" in found.message, found.message
    assert never_fits(plan(slurm={"partition": "standard-g", "cpus_per_node": 120})) == [(
        "`slurm.cpus_per_node = 120` is more than any node of partition `standard-g` (112 CPUs) has, and this site "
        "queues such jobs for ever (PartitionConfig)", "lower `cpus_per_node` to 112 or fewer in study.hpo")]
    assert never_fits(plan(slurm={"partition": "standard-g", "cpus_per_node": 112})) == []
    asked = set((tmp_path / "scontrol.args").read_text().splitlines())  # the partition's nodes only
    assert asked == {"-o show node nid[005000-005001]"}, asked


@pytest.mark.parametrize("one_thread", [["--hint=nomultithread"], ["--threads-per-core=1"], "SBATCH_HINT"])
def test_one_thread_a_core_halves_the_cpus_a_job_may_ask_for(tmp_path: Path, monkeypatch, one_thread) -> None:
    """With `--hint=nomultithread` a task's CPUs are cores: `cpus_per_node = 112` on 56 usable
    cores never starts, and the `--exclusive` advice must say 56."""
    from hpoc.runtime.login_preflight import check_exclusive
    from hpoc.site.partition import never_fits
    from slurm_plans import plan

    _fake_lumi(tmp_path, monkeypatch, "CPUEfctv=112 CPUTot=128", "CoreSpecCount=8")
    extra = one_thread if isinstance(one_thread, list) else []
    if one_thread == "SBATCH_HINT":
        monkeypatch.setenv("SBATCH_HINT", "nomultithread")
    (found,) = check_exclusive(plan(slurm={"cpus_per_node": 8, "extra": ["--exclusive", *extra]}))
    assert "whole nodes of 56 CPUs (cores: one thread each) or more" in found.message, found.message
    assert "set `cpus_per_node = 56`" in found.message, found.message
    (misfit,) = never_fits(plan(slurm={"cpus_per_node": 112, "extra": extra}))
    assert "`standard-g` (56 CPUs)" in misfit[0] and misfit[1].startswith("lower `cpus_per_node` to 56 or fewer")


def test_sinfos_cpus_stand_when_scontrol_does_not_answer(tmp_path: Path, monkeypatch) -> None:
    from hpoc.runtime.login_preflight import check_exclusive
    from slurm_plans import plan

    _fake_lumi(tmp_path, monkeypatch, "CPUEfctv=112 CPUTot=128", "CoreSpecCount=8", scontrol_rc=1)
    (found,) = check_exclusive(plan(slurm={"cpus_per_node": 8, "extra": ["--exclusive"]}))
    assert "whole nodes of 128 CPUs or more" in found.message, found.message


def test_setup_lines_the_node_runs_fine_pass_the_sourced_file_check(tmp_path: Path) -> None:
    """`source env/bin/activate;module load x` read `env/bin/activate;module` as the file, and
    `source site.sh || true` (a file the line allows to be missing) and `source <(cmd)` were refused."""
    from hpoc.runtime.login_preflight import check_setup
    from slurm_plans import plan

    source = {"file": "s.hpo", "format": "hpo", "sha256": "0" * 64, "workdir": str(tmp_path)}
    (tmp_path / "env" / "bin").mkdir(parents=True)
    (tmp_path / "env" / "bin" / "activate").write_text("")
    fine = ["source env/bin/activate;module load x", "source env/bin/activate&&module load y",
            "source site.sh 2>/dev/null || true", "[ -f site.sh ] && source site.sh",
            "cd sub; source rel.sh", "[ -d w ] && cd w; source rel.sh", "source <(conda shell.bash hook)"]
    assert check_setup(plan(source=source, slurm={"setup": fine})) == []
    (found,) = check_setup(plan(source=source, slurm={"setup": ["module purge; source nowhere/activate"]}))
    assert not found.ok and "reads nowhere/activate," in found.message, found.message
