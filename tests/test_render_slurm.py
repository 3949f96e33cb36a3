"""SLURM script rendering: golden files, shell hygiene, quoting, validation, scale."""

from __future__ import annotations

import difflib
import os
import re
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from hpoc.compiler import tables as T
from hpoc.compiler.render import RenderError, render_all
from slurm_plans import FULL_SITE, plan

GOLDEN = Path(__file__).parent / "golden" / "slurm"
PLAN_PATH = "/p/project/hpo/build/plan.json"

# Every variant the tests render: name -> (plan, preflight_only).
VARIANTS = {
    "basic": (plan(), False),
    "full-site": (plan(**FULL_SITE), False),
    "gpu-resume": (plan(slurm={"nodes": 1, "gpus_per_node": 4, "cpus_per_node": 24, "mem": None,
                               "partition": "gpu", "time": "02:00:00", "time_s": 7200},
                        resume={"enabled": True, "retry_errored": True, "grace_s": 120}), False),
    "singularity-array": (plan(slurm={"container": {"image": "/img/x.sif", "runtime": "singularity"},
                                      "cpus_per_node": None, "mem": None, "time": None, "time_s": None},
                               shards={"count": 3, "parallel": 5}), False),
    "preflight-only": (plan(**FULL_SITE), True),
    # LUMI-style `--gpus-per-node`, and a whole-node partition that takes no GPU option
    "gpus-per-node": (plan(slurm={"gpus_per_node": 8, "gpu_type": "mi250", "gpu_request": "per_node",
                                  "cpus_per_node": 56, "extra": ["--exclusive"]}), False),
    "gpus-none": (plan(slurm={"gpus_per_node": 8, "gpu_request": "none", "partition": "standard-g",
                              "extra": ["--exclusive"]}), False),
}


@pytest.fixture(scope="session")
def shellcheck() -> str:
    path = shutil.which("shellcheck")
    if path is None and os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["apt-get", "install", "-y", "-qq", "shellcheck"], capture_output=True, check=False)
        path = shutil.which("shellcheck")
    if path is None:
        pytest.fail("shellcheck is required for the script tests: apt-get install shellcheck", pytrace=False)
    return path


def rendered(name: str) -> dict[str, str]:
    p, preflight_only = VARIANTS[name]
    return render_all(p, plan_path=PLAN_PATH, preflight_only=preflight_only)


def sbatch_flags(script: str) -> list[str]:
    """The #SBATCH options as sbatch reads them (it honours shell-style quotes)."""
    flags = []
    for line in script.splitlines():
        if line.startswith("#SBATCH "):
            flags += shlex.split(line[len("#SBATCH "):])
    return flags


# ---- golden files and shell hygiene --------------------------------------------------


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_scripts_match_golden_files(name, update_golden):
    for filename, text in rendered(name).items():
        path = GOLDEN / name / filename
        if update_golden or not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            continue
        expected = path.read_text()
        if text != expected:
            diff = "\n".join(difflib.unified_diff(expected.splitlines(), text.splitlines(),
                                                  str(path), "rendered", lineterm=""))
            pytest.fail(f"{path} differs from the rendered script:\n{diff}\n"
                        "accept the change with: pytest tests/test_render_slurm.py --update-golden")


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_scripts_pass_bash_n_and_shellcheck(name, shellcheck, tmp_path):
    for filename, text in rendered(name).items():
        path = tmp_path / filename
        path.write_text(text)
        syntax = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
        assert syntax.returncode == 0, syntax.stderr
        check = subprocess.run([shellcheck, "--severity=style", str(path)], capture_output=True, text=True)
        assert check.returncode == 0 and not check.stdout.strip(), f"{name}/{filename}:\n{check.stdout}"


def test_shellcheck_skips_the_users_setup_lines_and_only_those(shellcheck, tmp_path):
    """Site lines such as `export X=$(whoami)` (SC2155) are the site's business; hpoc's own
    lines around them stay checked."""
    setup = ["export X=$(whoami)", "cd $HOME", "A=`date`", "source ~/site.sh", "read line"]
    script = render_all(plan(slurm={"setup": setup}), plan_path=PLAN_PATH)["job.sbatch"]
    block = script[script.index("# shellcheck disable=all\n{\n"):script.index("\n}\ntrap - EXIT\nset -u")]
    assert block.splitlines()[2:] == [f"    {line}" for line in setup]  # the directive covers these alone
    path = tmp_path / "job.sbatch"
    for text, clean in ((script, True), (script.replace("\nset -u\n", "\nset -u\necho $hpoc_probe\n"), False)):
        path.write_text(text)
        check = subprocess.run([shellcheck, "--severity=style", str(path)], capture_output=True, text=True)
        assert (check.returncode == 0) == clean, check.stdout


@pytest.mark.parametrize("setup", [["# module load PyTorch"], [""], ["  ", "# later"]])
def test_setup_of_comments_or_blank_lines_alone_is_a_valid_script(tmp_path, setup):
    """`setup = ["# module load PyTorch"]` (a line commented out) left the `{ }` group that
    holds the setup lines with no command: bash refused the whole job script."""
    for name, text in render_all(plan(slurm={"setup": setup}), plan_path=PLAN_PATH).items():
        check = subprocess.run(["bash", "-n"], input=text, capture_output=True, text=True)
        assert check.returncode == 0, (name, check.stderr)


@pytest.mark.parametrize("line, code, at", [
    ("hpoc_no_such_module load Stages/2025", 127, "hpoc_no_such_module load Stages/2025"),
    ("source /nonexistent/venv/bin/activate", 1, "source /nonexistent/venv/bin/activate"),
    ("hpoc_fails() { false; }; hpoc_fails", 1, "false")])
def test_a_failing_setup_line_stops_the_job_and_is_named(tmp_path, line, code, at):
    """bash's own words ("line 35: module: command not found", or nothing at all for a
    function that fails) did not say that the spec's setup stopped the job."""
    setup = ["echo first", "if false; then echo no; fi", "true || false", line, "echo never"]
    script = tmp_path / "job.sbatch"
    p = plan(slurm={"setup": setup}, source={"file": "s.hpo", "format": "hpo", "sha256": "0" * 64,
                                             "workdir": str(tmp_path)})
    script.write_text(render_all(p, plan_path=PLAN_PATH)["job.sbatch"])
    run = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=60,
                         env={"PATH": os.environ["PATH"], "SLURM_JOB_ID": "77"})
    assert run.returncode == code and run.stdout == "first\n", run.stderr
    assert f"hpoc: slurm.setup failed (exit {code}) at: {at}\n" in run.stderr


@pytest.mark.parametrize("launcher", ["job.sbatch", "hpoc submit"])
def test_the_job_asks_slurm_for_its_killwait_once_for_every_ray_node(tmp_path, launcher):
    """The Ray nodes gave Ray's SIGTERM handler 10 s whatever the site: with KillWait = 5,
    SLURM's SIGKILL came first and the job directory (token included) stayed in /tmp. The
    batch node asks `scontrol show config` once and exports it to the steps."""
    from hpoc.submit.params import setup_lines

    if launcher == "job.sbatch":
        text = render_all(plan(), plan_path=PLAN_PATH)["job.sbatch"]
    else:
        text = "\n".join(setup_lines(plan()))
    start = text.index("[[ -n ${HPOC_KILL_WAIT:-} ]]")
    lines = text[start:text.index("export HPOC_KILL_WAIT", start)] + "export HPOC_KILL_WAIT"
    fake = tmp_path / "scontrol"
    env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"}
    env.pop("HPOC_KILL_WAIT", None)

    def run(scontrol: str, **extra: str) -> str:
        fake.write_text(f"#!/bin/bash\necho \"$*\" >>{tmp_path}/asked\n{scontrol}\n")
        fake.chmod(0o755)
        script = f"set -eo pipefail\nset -u\n{lines}\nbash -c 'echo \"step sees [$HPOC_KILL_WAIT]\"'\n"
        return subprocess.run(["bash", "-c", script], env={**env, **extra}, capture_output=True, text=True,
                              check=True).stdout

    assert run('printf "JobRequeue              = 1\\nKillWait                = 5 sec\\n"') == "step sees [5]\n"
    assert (tmp_path / "asked").read_text() == "show config\n"
    assert run("echo 'slurm_load_ctl_conf error' >&2; exit 1") == "step sees []\n"  # the nodes' default
    assert run("exit 1", HPOC_KILL_WAIT="12") == "step sees [12]\n"  # set by the user: kept, not asked
    assert len((tmp_path / "asked").read_text().splitlines()) == 2


def test_setup_lines_run_in_the_specs_directory_wherever_sbatch_ran(tmp_path):
    """`source .venv/bin/activate` (docs/language.md's example) ran in sbatch's working
    directory: submitted from the build directory, it failed."""
    study = tmp_path / "study"
    study.mkdir()
    (study / "marker.txt").write_text("in the spec's directory\n")
    p = plan(slurm={"setup": ["cat marker.txt", "exit 7"]},
             source={"file": "s.hpo", "format": "hpo", "sha256": "0" * 64, "workdir": str(study)})
    script = tmp_path / "job.sbatch"
    script.write_text(render_all(p, plan_path=PLAN_PATH)["job.sbatch"])
    run = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=60, cwd=tmp_path,
                         env={"PATH": os.environ["PATH"], "SLURM_JOB_ID": "77"})
    assert run.returncode == 7 and run.stdout == "in the spec's directory\n", run.stderr


def test_scripts_explain_themselves_section_by_section():
    script = rendered("full-site")["job.sbatch"]
    sections = ["# ---- 1. setup", "# ---- 2. private job directory", "# ---- teardown", "# ---- signals",
                "# ---- 3. Ray head", "# ---- 4. Ray workers", "# ---- 5. preflight", "# ---- 6. the study"]
    positions = [script.index(s) for s in sections]
    assert positions == sorted(positions[:2]) + sorted(positions[2:4]) + sorted(positions[4:])
    assert "What the job does, in order:" in script
    comment_lines = [ln for ln in script.splitlines() if ln.lstrip().startswith("#") and not ln.startswith("#SBATCH")]
    assert len(comment_lines) >= 40


# ---- what the scripts contain --------------------------------------------------------


def test_sbatch_header_carries_every_slurm_setting():
    flags = sbatch_flags(rendered("full-site")["job.sbatch"])
    assert flags == [
        "--job-name=resnet-sweep", "--nodes=4", "--ntasks-per-node=1", "--cpus-per-task=32",
        "--gres=gpu:4", "--mem=256G", "--partition=booster", "--account=hpo-proj", "--qos=normal",
        "--time=1-00:00:00", "--constraint=gpu&ib",
        "--output=/p/project/hpo/build/resnet-sweep-%A_%a.out",
        "--error=/p/project/hpo/build/resnet-sweep-%A_%a.err",
        "--array=0-3%2", "--signal=B:USR2@300", "--requeue",
        "--open-mode=append",  # a requeued job keeps the log of the run before it
        "--exclusive", "--mail-type=END",
    ]


def test_optional_settings_are_left_out_when_unset():
    flags = sbatch_flags(rendered("singularity-array")["job.sbatch"])
    names = {f.split("=")[0] for f in flags}
    assert not names & {"--cpus-per-task", "--gres", "--mem", "--partition", "--account", "--qos",
                        "--time", "--constraint", "--signal", "--requeue", "--open-mode"}
    assert "--array=0-2%3" in flags  # parallel is capped by the number of shards
    assert "--output=/p/project/hpo/build/fashion-mnist-%A_%a.out" in flags
    single = sbatch_flags(rendered("basic")["job.sbatch"])
    assert not [f for f in single if f.startswith("--array")]
    assert "--output=/p/project/hpo/build/fashion-mnist-%j.out" in single


def test_preflight_script_has_no_driver_and_no_requeue():
    files = rendered("full-site")
    pre = files["preflight.sbatch"]
    assert "-m hpoc.runtime.preflight" in pre and "-m hpoc.runtime \"$hpoc_plan\"" not in pre
    assert "--signal" not in pre and "--requeue" not in pre and "hpoc_on_usr2" not in pre
    assert "--job-name=resnet-sweep-preflight" in sbatch_flags(pre)
    job = files["job.sbatch"]
    assert '-m hpoc.runtime "$hpoc_plan" --shard "$hpoc_shard"' in job
    assert "hpoc_shard=${SLURM_ARRAY_TASK_ID:-0}" in job
    assert job.index("-m hpoc.runtime.preflight") < job.index('-m hpoc.runtime "$hpoc_plan"')


def test_preflight_only_renders_just_the_preflight_job():
    files = rendered("preflight-only")
    assert list(files) == ["job.sbatch"]
    assert files["job.sbatch"] == rendered("full-site")["preflight.sbatch"]


def test_no_slurm_block_means_no_scripts():
    assert render_all(plan(slurm=None), plan_path=PLAN_PATH) == {}


def test_ray_nodes_start_through_the_shared_entry_point_one_step_per_node():
    script = rendered("full-site")["job.sbatch"]
    srun = script[script.index("    srun --nodes=1"):script.index('"$@" 2>>')]
    for part in ("--ntasks=1", '-w "$node"', "--overlap", "--cpus-per-task=32", "--gres=gpu:4",
                 '"${hpoc_py[@]}" -m hpoc.runtime.node "$role"', "--interface ib0"):
        assert part in srun, part
    assert 'hpoc_start_node head "$hpoc_head"' in script
    assert 'hpoc_start_node worker "$hpoc_node" --address "$RAY_ADDRESS"' in script
    assert "export RAY_ADDRESS" in script
    assert re.search(r"\bray stop\b", script.replace("Never `ray stop`", "")) is None
    assert "sleep 10" not in script and "sleep 5" not in script


def test_gpu_type_reaches_the_header_and_every_step():
    """`--gres=gpu:a100:4` where a site needs typed GPUs; plans from before `gpu_type` render gpu:N."""
    p = plan(**FULL_SITE)
    p["slurm"]["gpu_type"] = "a100"
    for script in render_all(p, plan_path=PLAN_PATH).values():
        assert "--gres=gpu:a100:4" in sbatch_flags(script)
        assert "        --gres=gpu:a100:4 \\\n" in script  # the srun step of each Ray node
    assert "gpu_type" not in plan()["slurm"] and "--gres=gpu:4" in sbatch_flags(rendered("full-site")["job.sbatch"])
    for kind, gpus, expected in (("a:1", 4, "slurm.gpu_type: is not a GPU type"),
                                 ("a100", 0, "slurm.gpu_type: needs GPUs")):
        with pytest.raises(RenderError, match=expected):
            render_all(plan(slurm={"gpu_type": kind, "gpus_per_node": gpus}), plan_path=PLAN_PATH)


def test_gpu_request_chooses_the_gpu_option_of_the_job_and_its_steps():
    """per_node: `--gpus-per-node` for the job and each Ray node's step (never `--gres` beside
    it); none: no GPU option at all, and each Ray node is told the plan's GPU count."""
    for script in rendered("gpus-per-node").values():
        assert "--gpus-per-node=mi250:8" in sbatch_flags(script) and "--gres=" not in script
        assert "        --gpus-per-node=mi250:8 \\\n" in script  # the srun step of each Ray node
        assert "        --gpus " not in script  # Ray counts the step's GPUs (SLURM_GPUS_ON_NODE)
    for script in rendered("gpus-none").values():
        assert not [f for f in sbatch_flags(script) if f.startswith(("--gres", "--gpus"))]
        assert "--gres" not in script and "--gpus-per-node=" not in script
        assert "        --gpus 8 \\\n" in script  # to hpoc.runtime.node, for both roles
        assert "--gpus-per-node 8" in script  # the preflight still expects them all
    assert "        --gpus " not in rendered("full-site")["job.sbatch"]
    with pytest.raises(RenderError, match="slurm.gpu_request: must be one of gres, per_node, none"):
        render_all(plan(slurm={"gpu_request": "all"}), plan_path=PLAN_PATH)
    with pytest.raises(RenderError, match="slurm.gpu_type: needs a GPU request"):
        render_all(plan(slurm={"gpus_per_node": 2, "gpu_type": "a100", "gpu_request": "none"}), plan_path=PLAN_PATH)


def test_every_srun_step_gets_the_script_s_environment():
    """`#SBATCH --export=NONE` (or a site's SLURM_EXPORT_ENV=NONE) reaches srun through
    SLURM_EXPORT_ENV: without --export=ALL the workers would start without the token."""
    for script in rendered("full-site").values():
        step = re.compile(r'\s*(hpoc_shielded (--quiet )?(--timeout "\$rm_wait" )?)?srun ')
        sruns = [line for line in script.splitlines() if step.match(line)]
        assert len(sruns) == 2 and all("--export=ALL" in line for line in sruns), sruns


def test_security_settings_in_the_script():
    script = rendered("full-site")["job.sbatch"]
    assert "export RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH=\"$hpoc_job_dir/token\"" in script
    assert "unset RAY_AUTH_TOKEN" in script
    assert "~/.ray" not in script and "auth_token" not in script
    # the token only ever travels in the environment, never as an argument
    assert '"$HPOC_RAY_TOKEN"' not in script and "$HPOC_RAY_TOKEN " not in script
    assert "HPOC_RAY_TOKEN=$(<\"$RAY_AUTH_TOKEN_PATH\")" in script
    assert "set -x" not in script


def test_site_settings_container_and_interface():
    script = rendered("full-site")["job.sbatch"]
    assert "export NCCL_SOCKET_IFNAME=ib0 GLOO_SOCKET_IFNAME=ib0" in script
    assert ("hpoc_py=(apptainer exec \"${hpoc_gpu_flag[@]}\" \"${hpoc_tmp_bind[@]}\" --bind '/p/project/hpo/my study' "
            "--bind /p/project/hpo/build --bind /p/scratch/hpo/ray_results '/p/images/torch ray.sif' python3)") in script
    assert "    module load Stages/2025 Python\n    source /p/project/hpo/venv/bin/activate\n" in script
    assert script.index("module load") < script.index("set -u") < script.index("export NCCL_DEBUG=WARN")
    assert "cd '/p/project/hpo/my study'" in script
    sing = rendered("singularity-array")["job.sbatch"]
    assert "hpoc_py=(singularity exec" in sing and "/img/x.sif" in sing
    plain = rendered("basic")["job.sbatch"]
    assert "apptainer" not in plain and "NCCL_SOCKET_IFNAME" not in plain and "--interface" not in plain


def test_env_sets_the_nccl_interfaces_itself_and_interface_keeps_ray_s():
    """LUMI: NCCL over all four Slingshot NICs, Ray's node address on one of them."""
    p = plan(slurm={"interface": "hsn0", "env": {"NCCL_SOCKET_IFNAME": "hsn0,hsn1,hsn2,hsn3"}})
    script = render_all(p, plan_path=PLAN_PATH)["job.sbatch"]
    assert "export NCCL_SOCKET_IFNAME=hsn0,hsn1,hsn2,hsn3\n" in script
    assert "export GLOO_SOCKET_IFNAME=hsn0\n" in script and "NCCL_SOCKET_IFNAME=hsn0 " not in script
    assert "--interface hsn0" in script


def test_walltime_signal_handler_asks_the_driver_to_checkpoint_then_requeues():
    script = rendered("gpu-resume")["job.sbatch"]
    assert "--signal=B:USR2@120" in sbatch_flags(script) and "--requeue" in sbatch_flags(script)
    handler = script[script.index("hpoc_on_usr2() {"):script.index("trap hpoc_on_usr2 USR2")]
    assert 'kill -USR2 "$hpoc_driver"' in handler
    assert "hpoc_wait_pids 110 " in handler  # grace minus the teardown margin
    assert 'scontrol requeue "$hpoc_job_ref"' in handler
    assert "trap hpoc_teardown EXIT" in script
    assert ("hpoc_on_term='[[ -n $hpoc_term_at ]] || { hpoc_stop_said=1 hpoc_term_at=$SECONDS; echo \"hpoc: terminated "
            "(SIGTERM)\" >&2\n    hpoc_lost_nodes; exit 143; }'\nhpoc_traps_back\n") in script
    plain = rendered("basic")["job.sbatch"]
    assert "USR2@" not in plain and "--requeue" not in plain and "hpoc_on_usr2" not in plain
    # resume off: not requeued after a node failure either (SLURM's JobRequeue=1 default would)
    assert "--no-requeue" in sbatch_flags(plain) and "--no-requeue" not in sbatch_flags(script)
    assert "resume is off in the study" in plain
    own = render_all(plan(resume={"enabled": False}, slurm={"extra": ["--requeue"]}), plan_path="/b/plan.json")
    assert "--no-requeue" not in sbatch_flags(own["job.sbatch"])  # the site's own choice


# ---- quoting ---------------------------------------------------------------------------

HOSTILE = "x'; touch /tmp/hpoc-pwned; echo \"$(id)\" `id` $HOME \\ *"
SBATCH_HOSTILE = HOSTILE.replace("\\", "")  # sbatch reads `\\` in #SBATCH lines: refused there


def test_every_plan_value_reaches_the_shell_quoted():
    hostile = plan(
        study={"name": "s" + SBATCH_HOSTILE},
        source={"file": "s.hpo", "format": "hpo", "sha256": "0" * 64, "workdir": "/w/" + HOSTILE},
        storage={"path": "/st/" + HOSTILE, "name": "x"},
        slurm={"partition": "p" + SBATCH_HOSTILE, "account": "a" + SBATCH_HOSTILE, "qos": "q" + SBATCH_HOSTILE,
               "constraint": "c" + SBATCH_HOSTILE, "env": {"EVIL": HOSTILE},
               "container": {"image": "/i/" + HOSTILE, "runtime": "apptainer"},
               "python": "/py/" + HOSTILE},
    )
    script = render_all(hostile, plan_path="/b/" + SBATCH_HOSTILE + "/plan.json")["job.sbatch"]
    flags = sbatch_flags(script)
    for flag in ("--partition=p", "--account=a", "--qos=q", "--constraint=c"):
        assert f"{flag}{SBATCH_HOSTILE}" in flags
    assert f"--job-name=s{SBATCH_HOSTILE}" in flags
    # Outside #SBATCH lines, the raw value only ever appears inside its quoted form.
    body = "\n".join(ln for ln in script.splitlines() if not ln.startswith("#"))
    quoted = [shlex.quote(h)[1:-1] for h in (HOSTILE, SBATCH_HOSTILE)]  # the inside of '...'
    assert body.count("touch /tmp/hpoc-pwned") == sum(body.count(q) for q in quoted)
    env_line = next(ln for ln in script.splitlines() if ln.startswith("export EVIL="))
    out = subprocess.run(["bash", "-c", f'{env_line}; printf %s "$EVIL"'], capture_output=True, text=True)
    assert out.stdout == HOSTILE
    assert not Path("/tmp/hpoc-pwned").exists()


@pytest.mark.parametrize(("section", "change", "expected"), [
    ("slurm", {"extra": ["-x"]}, "slurm.extra[0]: must be a long option"),
    ("slurm", {"extra": ["--comment=a\nrm -rf /"]}, "slurm.extra[0]: must be a single line"),
    ("slurm", {"env": {"1BAD": "x"}}, "slurm.env.1BAD: is not a valid environment variable name"),
    ("slurm", {"partition": "gpu\n#SBATCH --qos=high"}, "slurm.partition: must be a single line"),
    ("slurm", {"mem": "lots"}, "slurm.mem: must be a number"),
    ("slurm", {"time": "2h"}, "slurm.time: must be a SLURM time"),
    ("slurm", {"nodes": 0}, "slurm.nodes: must be an integer >= 1"),
    ("slurm", {"interface": "ib0; reboot"}, "slurm.interface: is not a network interface name"),
    ("slurm", {"container": {"image": "/x.sif", "runtime": "docker"}}, "slurm.container.runtime: must be one of"),
    ("resume", {"enabled": True, "grace_s": 600}, "resume.grace_s: must be below the time limit"),
    ("shards", {"count": 0}, "shards.count: must be an integer >= 1"),
])
def test_invalid_settings_are_refused_with_their_plan_path(section, change, expected):
    with pytest.raises(RenderError) as info:
        render_all(plan(**{section: change}), plan_path=PLAN_PATH)
    assert expected in str(info.value)


def test_a_percent_in_the_build_directory_stays_a_percent_in_the_log_paths():
    """sbatch expands `%j`, `%x`, `%u`... in --output/--error; `%%` is its literal `%`."""
    files = render_all(plan(shards={"count": 2, "parallel": 1}), plan_path="/p/run%x 100%/plan.json")
    for name, stem in (("job.sbatch", "fashion-mnist"), ("preflight.sbatch", "fashion-mnist-preflight")):
        flags = sbatch_flags(files[name])
        assert f"--output=/p/run%%x 100%%/{stem}-%A_%a.out" in flags
        assert f"--error=/p/run%%x 100%%/{stem}-%A_%a.err" in flags
    assert "hpoc_log_dir='/p/run%x 100%/logs'/" in files["job.sbatch"]  # not an sbatch pattern


def test_a_percent_in_the_build_directory_stays_a_percent_in_the_ray_node_logs(tmp_path):
    """srun reads `%x` in --output as the job name too: the head's step could not open
    `.../run%x/logs/77/ray-node1.log` and the job failed before Ray started."""
    build = tmp_path / "run%x 100%"
    (build / "logs" / "77").mkdir(parents=True)
    script = render_all(plan(), plan_path=f"{build}/plan.json")["job.sbatch"]
    start = script.index("hpoc_start_node() {")
    function = script[start:script.index("\n}\n", start) + 3]
    log_dir = next(line for line in script.splitlines() if line.startswith("hpoc_log_dir="))
    test = tmp_path / "t.sh"
    test.write_text(f"srun() {{ printf '%s\\n' \"$@\" | grep -- --output; }}\nSLURM_JOB_ID=77\n"
                    f"hpoc_py=(python3)\nhpoc_job_dir={tmp_path}\nhpoc_steps=()\n{log_dir}\n{function}"
                    "hpoc_start_node head node1\nwait\n")
    run = subprocess.run(["bash", str(test)], capture_output=True, text=True, timeout=30)
    assert run.stdout == f"--output={tmp_path}/run%%x 100%%/logs/77/ray-node1.log\n", run.stdout + run.stderr


def test_backslashes_are_refused_where_sbatch_would_drop_them():
    """sbatch unescapes `\\` in #SBATCH lines even inside single quotes (`'a\\b'` reads `ab`)."""
    p = plan(study={"name": "s\\x"}, slurm={"partition": "p\\x", "constraint": "c\\x"})
    with pytest.raises(RenderError) as info:
        render_all(p, plan_path="/b\\x/plan.json")
    assert [problem.split(":")[0] for problem in info.value.problems] == [
        "slurm.partition", "slurm.constraint", "study.name", "plan_path"]
    assert "must not contain `\\`: sbatch drops it from #SBATCH lines" in info.value.problems[0]
    # elsewhere a backslash is quoted like any character
    render_all(plan(source={"file": "s.hpo", "format": "hpo", "sha256": "0" * 64, "workdir": "/w\\x"},
                    slurm={"env": {"A": "\\"}}), plan_path=PLAN_PATH)


def test_container_paths_that_bind_would_split_are_refused():
    """`--bind /p/run:1,2` would bind /p/run to `1` and `2` as a second source."""
    p = plan(slurm={"container": {"image": "/x.sif", "runtime": "apptainer"}},
             storage={"path": "/p/scratch/run:1,2", "name": "x"})
    with pytest.raises(RenderError, match=r"slurm.container: cannot bind '/p/scratch/run:1,2': it must not contain `,` or `:`, which apptainer reads"):
        render_all(p, plan_path=PLAN_PATH)
    render_all(plan(storage={"path": "/p/scratch/run:1,2", "name": "x"}), plan_path=PLAN_PATH)  # no container


def test_a_bind_problem_is_reported_with_the_others():
    p = plan(slurm={"partition": "p\\x", "container": {"image": "/x.sif", "runtime": "apptainer"}},
             storage={"path": "/p/run:1", "name": "x"})
    with pytest.raises(RenderError) as info:
        render_all(p, plan_path=PLAN_PATH)
    assert [problem.split(":")[0] for problem in info.value.problems] == ["slurm.partition", "slurm.container"]


def test_all_problems_are_reported_at_once_and_the_error_pickles():
    import pickle

    with pytest.raises(RenderError) as info:
        render_all(plan(slurm={"mem": "x", "time": "y", "extra": ["z"]}), plan_path="relative/plan.json")
    assert len(info.value.problems) == 4
    again = pickle.loads(pickle.dumps(info.value))
    assert again.problems == info.value.problems


# ---- scale, determinism, purity -----------------------------------------------------------


def test_a_64_node_16_shard_script_is_no_longer_than_a_2_node_one():
    big = render_all(plan(slurm={"nodes": 64}, shards={"count": 16, "parallel": 4}), plan_path=PLAN_PATH)["job.sbatch"]
    small = render_all(plan(slurm={"nodes": 2}, shards={"count": 2, "parallel": 2}), plan_path=PLAN_PATH)["job.sbatch"]
    assert "--nodes=64" in sbatch_flags(big) and "--array=0-15%4" in sbatch_flags(big)
    assert len(big.splitlines()) == len(small.splitlines())
    changed = [(a, b) for a, b in zip(small.splitlines(), big.splitlines()) if a != b]
    assert {b for _, b in changed} <= {"#SBATCH --nodes=64", "#SBATCH --array=0-15%4", "hpoc_nodes_wanted=64",
                                       '    "$hpoc_shard" 16 /p/project/hpo/build/fashion-mnist"-$hpoc_job_ref.err"'
                                       " /p/project/hpo/build"} | {
        ln for _, ln in changed if ln.startswith("# Edit the spec")}
    assert 'mapfile -t hpoc_nodes < <(scontrol show hostnames "$SLURM_JOB_NODELIST")' in big
    assert 'for hpoc_node in "${hpoc_nodes[@]}"; do' in big
    steps = re.compile(r'^\s*(hpoc_shielded (--quiet )?(--timeout "\$rm_wait" )?)?srun ', re.M)
    assert len(steps.findall(big)) == len(steps.findall(small)) == 2  # the per-node step, the cleanup


def test_rendering_is_deterministic_and_independent_of_the_environment(tmp_path, monkeypatch):
    p = plan(**FULL_SITE)
    first = render_all(p, plan_path=PLAN_PATH)
    reordered = dict(p, slurm=dict(p["slurm"], env=dict(reversed(list(p["slurm"]["env"].items())))))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    monkeypatch.setenv("HOME", "/elsewhere")
    assert render_all(reordered, plan_path=PLAN_PATH) == first
    assert list(tmp_path.iterdir()) == []  # nothing written


# ---- where the job directory goes (the script run up to `cluster init`) ----------------


@pytest.fixture
def short_dir():
    """A directory with a short path (under /tmp) for TMPDIR and HPOC_TMP."""
    path = Path(tempfile.mkdtemp(prefix="h", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def run_to_init(tmp_path: Path, env: dict[str, str], container: bool = False,
                before: int = 0, imports: bool = True, name: str = "job.sbatch") -> tuple[int, str, str]:
    """Run the job script until `python -m hpoc.runtime.cluster init JOB_DIR`, which a stub
    records (with a container: the stub runtime's whole command line) and fails:
    (exit status, the recorded command line, stderr)."""
    stub = tmp_path / "bin" / ("apptainer" if container else "python3")
    stub.parent.mkdir(exist_ok=True)
    # The shard check before Ray (--before-ray) finds work to do; `cluster init` fails.
    # It records whether the claim's holder is the job script (the stub's parent).
    # `python -c 'import ...'` succeeds, or fails as a python without hpoc does.
    probe = "exit 0" if imports else "echo \"ModuleNotFoundError: No module named 'hpoc'\" >&2; exit 1"
    stub.write_text(f'#!/bin/sh\ncase "$*" in *--before-ray*)\n'
                    f'  [ "${{*##*--before-ray --claim }}" = "$PPID" ] && echo claimed-for-the-script >"$0.before"\n'
                    f'  exit {before};;\n*"-c import "*) {probe};; esac\n'
                    f'echo "$@" >"$0.args"\nexit 3\n')
    stub.chmod(0o755)
    args = Path(f"{stub}.args")
    args.unlink(missing_ok=True)
    slurm = {"nodes": 2, "python": "python3",
             "container": {"image": "/i.sif", "runtime": "apptainer"} if container else None}
    p = plan(source={"file": "s.hpo", "format": "hpo", "sha256": "0" * 64, "workdir": str(tmp_path)},
             storage={"path": str(tmp_path / "results"), "name": "s"}, slurm=slurm)
    script = tmp_path / name
    script.write_text(render_all(p, plan_path=str(tmp_path / "plan.json"))[name])
    base = {"PATH": f"{stub.parent}:{os.environ['PATH']}", "SLURM_JOB_ID": "77"}
    run = subprocess.run(["bash", str(script)], env={**base, **env}, capture_output=True, text=True,
                         timeout=60)
    return run.returncode, args.read_text().strip() if args.exists() else "", run.stderr


def job_dirs(tmp_path: Path, env: dict[str, str]) -> tuple[str, str]:
    """The job directory the script picks and the one the submitit launcher's Python picks
    (hpoc.runtime.node.job_dir), each as the path or `refused: <its words>`."""
    from hpoc.runtime.node import NodeError, job_dir, job_dir_name

    code, args, err = run_to_init(tmp_path, env)
    script = args.split(".cluster init ", 1)[1] if code == 3 else f"refused: {err.strip().splitlines()[-1]}"
    env = {"SLURM_JOB_ID": "77", **env}
    try:
        runtime = str(job_dir(env, job_dir_name(env)))
    except NodeError as exc:
        runtime = f"refused: hpoc: {exc}"
    return script, runtime


def job_dir_of(tmp_path: Path, **env: str) -> str:
    """The job directory the script picks; the submitit launcher picks the same."""
    script, runtime = job_dirs(tmp_path, env)
    assert script == runtime
    assert not script.startswith("refused"), script
    return script


@pytest.mark.parametrize("restarts, suffix", [(None, ""), ("0", ""), ("2", "-r2")])
def test_a_requeued_job_gets_a_fresh_node_directory(tmp_path, short_dir, restarts, suffix):
    # After a crash, worker nodes may still hold the previous run's directory and token;
    # a requeued run (SLURM_RESTART_COUNT > 0) must not pick them up.
    env = {"HPOC_TMP": str(short_dir)}
    if restarts is not None:
        env["SLURM_RESTART_COUNT"] = restarts
    assert job_dir_of(tmp_path, **env) == f"{short_dir}/hpoc-77" + suffix


def test_the_job_directory_goes_to_the_jobs_own_tmpdir(tmp_path, short_dir):
    """A TMPDIR named after the job (a site's prolog makes one on every node) is used; one
    without the job id may be the submitting shell's (SLURM creates that on every node and
    never removes it, and it may be on a shared file system): /tmp then, as is SLURM's
    TMPDIR when the site sets none. HPOC_TMP wins over all."""
    own = short_dir / "job77"
    for path in (own, short_dir / "mine", short_dir / "job770", short_dir / "a70_3"):
        path.mkdir()
    assert job_dir_of(tmp_path) == "/tmp/hpoc-77"
    assert job_dir_of(tmp_path, TMPDIR="/tmp") == "/tmp/hpoc-77"
    assert job_dir_of(tmp_path, TMPDIR=str(own)) == f"{own}/hpoc-77"
    assert job_dir_of(tmp_path, TMPDIR=f"{own}/", SLURM_RESTART_COUNT="1") == f"{own}/hpoc-77-r1"
    assert job_dir_of(tmp_path, TMPDIR=str(own), HPOC_TMP=str(short_dir)) == f"{short_dir}/hpoc-77"
    for other in ("mine", "job770", "job77x"):  # not the job's, or missing
        assert job_dir_of(tmp_path, TMPDIR=str(short_dir / other)) == "/tmp/hpoc-77"
    own.chmod(0o500)
    if os.access(own, os.W_OK):  # root writes anyway
        own.chmod(0o700)
    else:
        assert job_dir_of(tmp_path, TMPDIR=str(own)) == "/tmp/hpoc-77"
        own.chmod(0o700)
    array = {"SLURM_ARRAY_JOB_ID": "70", "SLURM_ARRAY_TASK_ID": "3", "TMPDIR": str(short_dir / "a70_3")}
    assert job_dir_of(tmp_path, **array) == f"{short_dir}/a70_3/hpoc-77"


@pytest.mark.parametrize("slashes", ["/", "//", "///"])
def test_trailing_slashes_count_alike_in_the_script_and_the_runtime(tmp_path, short_dir, slashes):
    """`HPOC_TMP=/x//` or `TMPDIR=/x//` names /x: the job directory is /x/hpoc-77 in both,
    measured against Ray's socket limit as such, so at the limit both take or refuse it."""
    room = T.JOB_DIR_MAX - len(f"{short_dir}/77/hpoc-77")
    for extra in (0, 1):  # at the limit, one past it
        base = short_dir / ("x" * (room + extra) + "77")
        base.mkdir()
        for key in ("HPOC_TMP", "TMPDIR"):
            script, runtime = job_dirs(tmp_path, {key: f"{base}{slashes}"})
            assert script == runtime
            fits = {"HPOC_TMP": f"{base}/hpoc-77", "TMPDIR": f"{base}/hpoc-77"}[key]
            assert (script == fits) == (extra == 0), script


@pytest.mark.parametrize("env, where", [
    ({"TMPDIR": ""}, "/tmp/hpoc-77"),
    ({"TMPDIR": "job77"}, "/tmp/hpoc-77"),  # relative: each node's own working directory
    ({"TMPDIR": "job77", "HPOC_TMP": ""}, "/tmp/hpoc-77"),
    ({"HPOC_TMP": "/"}, "/hpoc-77"),
    ({"HPOC_TMP": "{dir}/a b"}, "{dir}/a b/hpoc-77"),
    ({"TMPDIR": "{dir}/job 77"}, "{dir}/job 77/hpoc-77"),
    ({"HPOC_TMP": "{dir}", "SLURM_RESTART_COUNT": "3"}, "{dir}/hpoc-77-r3"),
    ({"HPOC_TMP": "{dir}", "SLURM_RESTART_COUNT": ""}, "{dir}/hpoc-77"),
    ({"TMPDIR": "{dir}/a70_3", "SLURM_ARRAY_JOB_ID": "70", "SLURM_ARRAY_TASK_ID": "3"},
     "{dir}/a70_3/hpoc-77"),  # the task's own TMPDIR; the directory is named after SLURM_JOB_ID
    ({"TMPDIR": "{dir}/a70_4", "SLURM_ARRAY_JOB_ID": "70", "SLURM_ARRAY_TASK_ID": "3"}, "/tmp/hpoc-77"),
])
def test_the_script_and_the_runtime_pick_the_same_job_directory(tmp_path, short_dir, monkeypatch, env, where):
    monkeypatch.chdir(tmp_path)  # the script's working directory, for relative paths
    for name in ("job77", "a b", "job 77", "a70_3", "a70_4"):
        (tmp_path / name).mkdir(exist_ok=True)
        (short_dir / name).mkdir(exist_ok=True)
    env = {key: value.format(dir=short_dir) for key, value in env.items()}
    if "HPOC_TMP" in env and env["HPOC_TMP"] == "/" and not os.access("/", os.W_OK):
        where = "refused: hpoc: HPOC_TMP=/ is not a writable directory"
    assert job_dirs(tmp_path, env) == (where.format(dir=short_dir),) * 2


def test_the_submitit_job_names_a_requeued_run_as_the_script_does(tmp_path, short_dir, monkeypatch):
    from types import SimpleNamespace

    from hpoc.submit.job import _paths

    monkeypatch.setenv("SLURM_JOB_ID", "77")
    monkeypatch.setenv("SLURM_RESTART_COUNT", "2")
    monkeypatch.setenv("HPOC_TMP", str(short_dir))
    env = SimpleNamespace(job_id="77", paths=SimpleNamespace(folder=str(tmp_path / "logs")))
    assert _paths(env)[1] == short_dir / "hpoc-77-r2"
    assert job_dir_of(tmp_path, HPOC_TMP=str(short_dir), SLURM_RESTART_COUNT="2") == str(short_dir / "hpoc-77-r2")


def test_a_tmpdir_too_long_for_rays_sockets_is_passed_over_and_a_long_hpoc_tmp_refused(tmp_path, short_dir,
                                                                                       capsys):
    from hpoc.runtime.node import NodeError, check_socket_room, job_dir

    fits = short_dir / ("x" * (T.JOB_DIR_MAX - len(f"{short_dir}/77/hpoc-77")) + "77")
    longer = short_dir / ("x" * (T.JOB_DIR_MAX - len(f"{short_dir}/77/hpoc-77") + 1) + "77")
    for path in (fits, longer):
        path.mkdir()
    assert len(f"{fits}/hpoc-77") == T.JOB_DIR_MAX
    check_socket_room(Path(f"{fits}/hpoc-77") / "n00")  # the node entry point's own check
    with pytest.raises(NodeError):
        check_socket_room(Path(f"{longer}/hpoc-77") / "n00")
    assert job_dir_of(tmp_path, TMPDIR=str(fits)) == f"{fits}/hpoc-77"
    code, args, err = run_to_init(tmp_path, {"TMPDIR": str(longer)})
    assert args.endswith(" /tmp/hpoc-77")
    passed_over = f"hpoc: TMPDIR={longer} is too long for Ray's unix socket paths; the job directory goes to /tmp"
    assert passed_over in err
    assert str(job_dir({"SLURM_JOB_ID": "77", "TMPDIR": str(longer)}, "hpoc-77")) == "/tmp/hpoc-77"
    assert capsys.readouterr().err == passed_over + "\n"  # the submitit job's log says so too
    code, args, err = run_to_init(tmp_path, {"HPOC_TMP": str(longer)})
    assert code == 2 and not args
    assert f"hpoc: HPOC_TMP={longer} is too long" in err and f"at most {len(str(fits))} bytes" in err
    # The submitit launcher's rule (hpoc.runtime.node.job_dir) is the script's, word for word.
    assert str(job_dir({"HPOC_TMP": str(fits)}, "hpoc-77")) == f"{fits}/hpoc-77"
    with pytest.raises(NodeError) as refused:
        job_dir({"HPOC_TMP": str(longer)}, "hpoc-77")
    assert f"hpoc: {refused.value}\n" in err, err
    code, args, err = run_to_init(tmp_path, {"HPOC_TMP": str(short_dir / "missing")})
    assert code == 2 and "is not a writable directory" in err
    with pytest.raises(NodeError) as refused:
        job_dir({"HPOC_TMP": str(short_dir / "missing")}, "hpoc-77")
    assert f"hpoc: {refused.value}\n" in err, err
    # a relative one is each node's working directory: refused by both, word for word
    code, args, err = run_to_init(tmp_path, {"HPOC_TMP": "."})
    assert code == 2 and not args and "hpoc: HPOC_TMP=. must be an absolute path" in err, err
    with pytest.raises(NodeError) as refused:
        job_dir({"HPOC_TMP": "."}, "hpoc-77")
    assert f"hpoc: {refused.value}\n" in err, err


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="runs the script as nobody")
def test_an_hpoc_tmp_the_user_cannot_enter_is_refused_by_the_script_as_by_the_runtime(short_dir):
    """Write permission without search (mode 0600): mkdir under it fails, so the script says
    so at once, in hpoc.runtime.node.hpoc_tmp's words (tests/test_run_dir.py), and a TMPDIR
    like it is passed over. Root enters anything: the script runs as nobody."""
    short_dir.chmod(0o755)
    stub = short_dir / "bin" / "python3"
    stub.parent.mkdir()
    stub.write_text('#!/bin/sh\ncase "$*" in *--before-ray*|*"-c import "*) exit 0;; esac\necho "$@"\nexit 3\n')
    stub.chmod(0o755)
    p = plan(source={"file": "s.hpo", "format": "hpo", "sha256": "0" * 64, "workdir": str(short_dir)},
             storage={"path": str(short_dir / "results"), "name": "s"}, slurm={"nodes": 2, "python": "python3"})
    script = short_dir / "job.sbatch"
    script.write_text(render_all(p, plan_path=str(short_dir / "plan.json"))["job.sbatch"])
    closed = short_dir / "job77"
    closed.mkdir(mode=0o600)
    for path in (short_dir, closed):
        os.chown(path, 65534, 65534)

    def run(**env: str) -> subprocess.CompletedProcess:
        return subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "bash", str(script)],
                              env={"PATH": f"{stub.parent}:/usr/bin:/bin", "SLURM_JOB_ID": "77", **env},
                              cwd=short_dir, capture_output=True, text=True, timeout=60)

    refused = run(HPOC_TMP=str(closed))
    assert refused.returncode == 2, refused.stdout
    assert refused.stderr.strip().splitlines()[-1] == f"hpoc: HPOC_TMP={closed} is not a writable directory"
    passed_over = run(TMPDIR=str(closed))
    assert passed_over.returncode == 3 and passed_over.stdout.endswith("cluster init /tmp/hpoc-77\n")


@pytest.mark.parametrize("locale", ["C", "C.UTF-8"])
def test_a_tmpdir_is_measured_in_bytes_as_a_unix_socket_path_is(tmp_path, short_dir, locale):
    """A TMPDIR of non-ASCII letters that fits Ray's socket paths in characters but not in
    bytes is passed over by the script, whatever the job's locale, and by the node entry point."""
    from hpoc.runtime.node import NodeError, check_socket_room

    room = T.JOB_DIR_MAX - len(f"{short_dir}/77/hpoc-77")
    wide = short_dir / ("\u00e9" * room + "77")  # é: two bytes in UTF-8
    wide.mkdir()
    assert len(f"{wide}/hpoc-77") == T.JOB_DIR_MAX < len(os.fsencode(f"{wide}/hpoc-77"))
    assert job_dir_of(tmp_path, TMPDIR=str(wide), LANG=locale) == "/tmp/hpoc-77"
    with pytest.raises(NodeError):
        check_socket_room(Path(f"{wide}/hpoc-77") / "n00")


def test_a_container_binds_the_job_directorys_base_unless_it_is_tmp(tmp_path, short_dir):
    own = short_dir / "job77"
    own.mkdir()
    code, args, err = run_to_init(tmp_path, {"TMPDIR": str(own)}, container=True)
    assert code == 3 and f"--bind {own} " in args and args.endswith(f"init {own}/hpoc-77"), err
    code, args, err = run_to_init(tmp_path, {}, container=True)
    assert code == 3 and "--bind /tmp " not in args and args.endswith("init /tmp/hpoc-77"), err



def test_the_scripts_job_directory_limit_is_the_node_entry_points():
    from hpoc.runtime import node

    assert T.JOB_DIR_MAX == node.JOB_DIR_MAX


@pytest.mark.parametrize("answer, code, said", [
    (3, 0, None), (4, 2, None), (5, 1, None), (7, 2, None),  # 7: storage not writable
    (1, 3, "check before Ray failed (exit 1); starting anyway"),  # a crash of the check: go on
    (2, 3, "check before Ray failed (exit 2); starting anyway")])
def test_the_job_acts_on_the_answer_before_ray_and_goes_past_a_crash(tmp_path, short_dir, answer, code, said):
    """3 done, 4 busy, 5 done but failed, 7 storage; anything else is no answer (an older hpoc on the
    nodes, a crash) and the job goes on to `cluster init` (which the stub fails with 3)."""
    got, args, err = run_to_init(tmp_path, {"HPOC_TMP": str(short_dir)}, before=answer)
    assert got == code, err
    assert (tmp_path / "bin" / "python3.before").read_text() == "claimed-for-the-script\n"
    assert ("cluster init" in args) == (code == 3)
    if said:
        assert said in err, err


def test_a_python_on_the_nodes_without_hpoc_ends_the_job_naming_the_setting(tmp_path, short_dir):
    """`python -m hpoc.runtime` cannot even start: the job says which setting to fix rather
    than going on to fail at each later step with Python's own words."""
    got, args, err = run_to_init(tmp_path, {"HPOC_TMP": str(short_dir), "SLURMD_NODENAME": "node7"},
                                 before=1, imports=False)
    assert got == 2 and not args, err
    assert ("hpoc: error: python3 on node7 cannot run hpoc (ModuleNotFoundError: No module named 'hpoc'): "
            "set slurm.python") in err, err
    assert "starting anyway" not in err
    # In a container, the runtime or the image is as likely the cause as the python in it.
    got, args, err = run_to_init(tmp_path, {"HPOC_TMP": str(short_dir), "SLURMD_NODENAME": "node7"},
                                 container=True, before=1, imports=False)
    assert got == 2 and not args, err
    assert ("hpoc: error: python3 in /i.sif on node7 cannot run hpoc (ModuleNotFoundError: No module named "
            "'hpoc'): make `apptainer` available in slurm.setup") in err, err


def test_the_preflight_job_checks_the_nodes_python_as_the_job_does(tmp_path, short_dir):
    """The preflight is what a user runs first: one that brought Ray up with a python the
    job then refuses (or failed later on Python's own words) cost a queue wait."""
    env = {"HPOC_TMP": str(short_dir), "SLURMD_NODENAME": "node7"}
    got, args, err = run_to_init(tmp_path, env, imports=False, name="preflight.sbatch")
    assert got == 2 and not args, err
    assert ("hpoc: error: python3 on node7 cannot run hpoc (ModuleNotFoundError: No module named 'hpoc'): "
            "set slurm.python") in err, err
    got, args, err = run_to_init(tmp_path, env, name="preflight.sbatch")  # a good one goes on
    assert got == 3 and args.endswith(f"init {short_dir}/hpoc-77"), err


def test_a_slurm_python_missing_on_the_node_is_named_without_bash_s_script_line(tmp_path, short_dir):
    """`slurm.python` a path the node lacks: the why read `(/var/spool/slurmd/job00156/
    slurm_script: line 99: /opt/env/bin/python: No such file or directory)`."""
    missing = str(tmp_path / "env" / "bin" / "python")
    p = plan(source={"file": "s.hpo", "format": "hpo", "sha256": "0" * 64, "workdir": str(tmp_path)},
             storage={"path": str(tmp_path / "results"), "name": "s"}, slurm={"nodes": 1, "python": missing})
    script = tmp_path / "job.sbatch"
    script.write_text(render_all(p, plan_path=str(tmp_path / "plan.json"))["job.sbatch"])
    run = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "SLURM_JOB_ID": "77", "SLURMD_NODENAME": "node7",
                              "HPOC_TMP": str(short_dir)})
    assert run.returncode == 2, run.stderr
    assert (f"hpoc: error: {missing} on node7 cannot run hpoc ({missing}: No such file or directory): "
            "set slurm.python") in run.stderr, run.stderr


@pytest.mark.parametrize("driver_rc, requeued", [(75, True), (0, False), (1, False), (76, False),
                                                 (140, False), (143, False), (137, True), (139, True),
                                                 (None, True), ("stuck", True), ("ended", False)])
def test_the_walltime_handler_requeues_only_a_study_the_driver_left_resumable(tmp_path, driver_rc, requeued):
    """Exit 75 (stopped, resumable) requeues; a study that finished (0), failed (1: every
    trial errored, or it stopped itself), made no progress (76) or had nothing to resume
    yet (its own 128+USR2 or +TERM) is not: the requeued job only found it done. Without a
    driver's word (none started yet, or it did not stop in time) the job requeues; a driver
    that ended just before the signal says how it ended. A driver a signal killed as it
    stopped (KILL from the OOM killer, SEGV) was not requeued, though Tune's last saved
    state resumes it."""
    script = rendered("gpu-resume")["job.sbatch"]

    def function(name: str) -> str:
        start = script.index(f"{name}() {{")
        return script[start:script.index("\n}\n", start) + 3]

    (tmp_path / "scontrol").write_text('#!/bin/sh\necho "$*" >"$0.args"\n')
    (tmp_path / "scontrol").chmod(0o755)
    on_usr2 = '""' if driver_rc == "stuck" else f'"exit {driver_rc}"'
    ended = "bash -c 'exit 1' &\nhpoc_driver=$!\nsleep 0.5\n"  # ended just before the signal
    driver = ended if driver_rc == "ended" else "" if driver_rc is None else (
        f"bash -c 'trap {on_usr2} USR2; touch {tmp_path}/ready; while :; do sleep 0.1 & wait $!; done' &\n"
        f"hpoc_driver=$! fake=$!\n"
        f"until [ -e {tmp_path}/ready ]; do sleep 0.05; done\n")
    stuck = "hpoc_wait_pids() { return 1; }\n" if driver_rc == "stuck" else ""
    test = tmp_path / "t.sh"
    test.write_text(f"PATH={tmp_path}:$PATH\nhpoc_job_ref=77\nhpoc_driver='' hpoc_watch='' hpoc_term_at='' fake=''\n"
                    # the fake driver and hpoc_shielded's watch sleep (the teardown's to end)
                    + "trap 'kill -KILL $fake $hpoc_watch 2>/dev/null' EXIT\n"
                    + function("hpoc_shielded") + function("hpoc_traps_back") + function("hpoc_watched")
                    + function("hpoc_wait_pids") + stuck
                    + function("hpoc_on_usr2") + driver + "hpoc_on_usr2\n")
    run = subprocess.run(["bash", str(test)], capture_output=True, text=True, timeout=30)
    assert run.returncode == (driver_rc if isinstance(driver_rc, int) else 1), run.stdout + run.stderr
    assert (tmp_path / "scontrol.args").exists() == requeued, run.stdout + run.stderr
    assert ("requeueing job 77" in run.stdout) == requeued, run.stdout


@pytest.mark.parametrize("kill_wait", [None, "", "5", "08", "15", "30", "120", "x", "7.5"])
def test_the_teardowns_waits_are_the_runtimes_share_of_killwait(kill_wait):
    """The teardown waited 20 s for the driver (3 s once the head is gone) and 60 s for the
    Ray nodes whatever SLURM's KillWait: under 5 s its SIGKILL came first and the job
    directory stayed. The script's waits are node_stop.stop_waits' (hpoc submit's)."""
    from hpoc.runtime.node_stop import stop_waits

    script = rendered("gpu-resume")["job.sbatch"]
    start = script.index("# ---- teardown")
    lines = script[start:script.index("hpoc_shielded() {", start)]
    env = {"PATH": os.environ["PATH"]}
    if kill_wait is not None:
        env["HPOC_KILL_WAIT"] = kill_wait
    run = subprocess.run(["bash", "-c", "set -eo pipefail\nset -u\n" + lines
                          + 'echo "$hpoc_driver_wait $hpoc_head_down_wait $hpoc_nodes_wait"'],
                         capture_output=True, text=True, env=env, timeout=30)
    assert run.returncode == 0, run.stderr
    assert tuple(map(int, run.stdout.split())) == stop_waits(kill_wait)


def test_the_job_output_says_where_the_trials_progress_goes_and_how_to_follow(tmp_path):
    """The .out said "running shard 0 of 2" and nothing more: the trials' progress is in the
    .err, and a user tailing the .out was not told so, nor how to follow the study."""
    build = tmp_path / "my build"
    script = render_all(plan(shards={"count": 2, "parallel": 2}),
                        plan_path=str(build / "plan.json"))["job.sbatch"]
    lines = script.splitlines()
    (at,) = [i for i, ln in enumerate(lines) if "running shard" in ln]
    said = subprocess.run(["bash", "-c", "hpoc_shard=1 hpoc_job_ref=514_1\n" + "\n".join(lines[at:at + 2])],
                          capture_output=True, text=True, check=True).stdout
    study = plan()["study"]["name"]
    pasted = str(build).replace(" ", "\\ ")  # as bash's printf %q quotes it
    assert said == (f"hpoc: running shard 1 of 2: the trials' progress goes to {pasted}/{study}-514_1.err; "
                    f"follow the study with: hpoc status {pasted}\n")
