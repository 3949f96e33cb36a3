"""Checks on the login node before anything is submitted: `hpoc check --preflight SPEC`.

What a job would otherwise find out on the compute nodes, after queueing and bringing up
its Ray cluster:

* the pipeline targets import (getter, splitter, trainer), in a *separate* Python process
  with the spec's directory first on sys.path - `hpoc check` itself never imports user
  code, and an import that hangs or crashes the interpreter cannot take hpoc with it;
* the dataset is there, when the getter says how to tell: a getter may define `check()`,
  called on an instance built with the plan's arguments, which raises (or returns a
  message) when its data is missing;
* the storage path is writable (a file is created and removed in it, or in its nearest
  existing parent) and has at least HPOC_MIN_FREE_GB (default 1) GiB free, free inodes and
  a user and group quota (`lfs quota`, `quota`, `mmlsquota`; on Lustre the project one too)
  with room for the study's files;
* the search algorithm's library (and the optuna sampler's) is installed;
* the compute nodes' interpreter: a `slurm.python` path imports hpoc and Ray (exists, when
  `slurm.setup` has to run first), a container image exists, a file a setup line sources
  (`source env/bin/activate`) exists;
* with a `slurm` block and `sbatch` here: the site accepts the job as written
  (`sbatch --test-only` of the job script: partition, account, qos, CPUs, memory, GPUs and
  time limit against what the partition's nodes have; nothing is submitted).

Each problem is one line `preflight: error: ...` (a warning `preflight: warning: ...`); `report(plan)` prints them and returns the
exit status (0 fine, 2 problems). `storage_problem(path)` is shared with the study driver,
which checks the storage again on the compute node before Ray starts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from hpoc.site.partition import Sinfo

IMPORT_TIMEOUT_S = float(os.environ.get("HPOC_PREFLIGHT_TIMEOUT", "120"))
MIN_FREE_GB = 1.0  # on the login node; HPOC_MIN_FREE_GB changes it (free_gb_needed)
# a busy Lustre answers a stat and a small write within seconds; one that does not within a
# minute is hung (or recovering, which takes minutes): storage_problem refuses it
STORAGE_TIMEOUT_S = 60.0


def free_gb_needed(default: float) -> float:
    """HPOC_MIN_FREE_GB where it is a number (0: no limit), else `default`: read at each
    check, so that the run's own check on the compute node honours it too."""
    try:
        return max(0.0, float(os.environ["HPOC_MIN_FREE_GB"]))
    except (KeyError, ValueError):
        return default


@dataclass(frozen=True)
class Finding:
    ok: bool
    what: str       # "trainer", "getter", "data", "storage", "search"
    message: str
    warning: bool = False  # ok, but said even with -q (a misspelt hook)


# ---------------------------------------------------------------- storage


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def storage_problem(path: str | os.PathLike[str], min_free_gb: float | None = None) -> str | None:
    """Why results cannot be written under `path`, or None. Creates nothing that stays.

    Its stat, test write and statvfs run in a daemon thread, left behind after
    STORAGE_TIMEOUT_S: on a hung Lustre or NFS they sit in D state, where no signal ends
    them, and the start waited with them until the job's time limit. A storage that does
    not answer is refused, not passed over: the lock, Ray's state and every trial's results
    are written there next, and the first of those writes would block the same way, silent."""
    said: list[str | None] = []
    failed: list[BaseException] = []

    def ask() -> None:
        try:
            said.append(_storage_problem(path, min_free_gb))
        except BaseException as exc:  # noqa: BLE001 - raised again in the caller's thread
            failed.append(exc)

    thread = threading.Thread(target=ask, daemon=True, name="hpoc-storage")
    thread.start()
    thread.join(STORAGE_TIMEOUT_S)
    if failed:
        raise failed[0]
    if said:
        return said[0]
    return (f"the storage at {path} does not answer within {STORAGE_TIMEOUT_S:g} s; is its file system "
            f"hung? Run again once `ls {path}` answers, or set `storage.path` to another file system")


def _storage_problem(path: str | os.PathLike[str], min_free_gb: float | None) -> str | None:
    target = Path(path)
    base = _nearest_existing(target)
    if not base.is_dir():
        return f"storage path {target}: {base} exists and is not a directory"
    try:
        fd, probe = tempfile.mkstemp(prefix=".hpoc-write-test-", dir=base)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        where = "" if base == target else f" (its nearest existing parent {base})"
        return f"storage path {target}{where} is not writable: {exc.strerror or exc}"
    need = free_gb_needed(MIN_FREE_GB if min_free_gb is None else min_free_gb)
    try:
        st = os.statvfs(base)
    except OSError:
        return None
    free_gb = st.f_bavail * st.f_frsize / 2**30
    if free_gb < need:
        return (f"storage path {target} has {free_gb:.2f} GiB free, less than {need:g} GiB "
                "(checkpoints and results go there; set HPOC_MIN_FREE_GB to change the limit)")
    return None


# ---------------------------------------------------------------- imports and data (child)

MARKER = "@@hpoc-preflight@@"  # before the child's findings, after whatever user code printed
# import_target puts the spec's directory first on sys.path; the child runs in that directory.
_CHILD = r'''
import json, sys
plan = json.loads(sys.stdin.read())
workdir = plan["source"]["workdir"]
from hpoc.runtime.pipeline import PipelineError, build, import_target, require_trainer_class
out = []
for role in ("getter", "splitter", "trainer"):
    step = plan["pipeline"].get(role)
    if not step:
        continue
    try:
        obj = import_target(step["target"], workdir, role)
        if role == "trainer":
            require_trainer_class(obj, step["target"], plan)
        out.append([True, role, f"`{step['target']}` imports"])
        if role == "trainer":  # what `hpoc run` warns of as it starts
            from hpoc.runtime.hooks import trainer_warnings
            out += [["warning", role, line] for line in trainer_warnings(obj, plan)]
    except PipelineError as exc:
        out.append([False, role, str(exc)])
        continue
    except BaseException as exc:
        out.append([False, role, f"`{step['target']}`: {type(exc).__name__}: {exc}"])
        continue
    if role != "getter":
        continue
    try:
        getter = build(role, step, workdir)
    except BaseException as exc:
        out.append([False, "data", str(exc)])
        continue
    check = getattr(getter, "check", None)
    if not callable(check):
        out.append([True, "data", f"`{step['target']}` has no check(); the data is not verified here"])
        continue
    try:
        problem = check()
    except BaseException as exc:
        problem = f"{type(exc).__name__}: {exc}" if not isinstance(exc, (FileNotFoundError, OSError)) else str(exc)
    if problem:
        out.append([False, "data", f"`{step['target']}`: {problem}"])
    else:
        out.append([True, "data", f"`{step['target']}`: data present"])
sys.stdout.write("\n" + sys.argv[1] + json.dumps(out) + "\n")
'''


def check_pipeline(plan: dict[str, Any], timeout: float = IMPORT_TIMEOUT_S) -> list[Finding]:
    """Import the pipeline targets (and run the getter's check) in a child Python."""
    workdir = plan["source"]["workdir"]
    if not os.path.isdir(workdir):
        return [Finding(False, "trainer", f"the spec's directory {workdir} does not exist here")]
    env = dict(os.environ, PYTHONUNBUFFERED="1", RAY_USAGE_STATS_ENABLED="0")
    try:
        run = subprocess.run([sys.executable, "-c", _CHILD, MARKER], input=json.dumps(plan),
                             capture_output=True, text=True, timeout=timeout, cwd=workdir, env=env)
    except subprocess.TimeoutExpired:
        return [Finding(False, "trainer", f"importing the pipeline took more than {timeout:g} s "
                                          "(does a module do heavy work, or wait for the network, on import?)")]
    marker = run.stdout.rfind(MARKER)
    if marker < 0:
        tail = (run.stderr.strip().splitlines() or ["no output"])[-1]
        return [Finding(False, "trainer", f"importing the pipeline killed the Python process "
                                          f"(exit {run.returncode}): {tail}")]
    rows = json.loads(run.stdout[marker + len(MARKER):])
    return [Finding(bool(ok), what, message, warning=ok == "warning") for ok, what, message in rows]


# ---------------------------------------------------------------- libraries


def check_search(plan: dict[str, Any]) -> list[Finding]:
    from hpoc.runtime.search import SearchError, require_search

    try:
        what = require_search(plan)
    except SearchError as exc:
        return [Finding(False, "search", str(exc).replace("\n  help:", "; help:"))]
    return [Finding(True, "search", f"`{what}` is installed")]


# ---------------------------------------------------------------- SLURM


def check_sbatch_env(plan: dict[str, Any]) -> list[Finding]:
    """SBATCH_* variables of this shell that override the spec's settings (sbatch reads them
    over the job script's lines, `--test-only` too)."""
    from hpoc.site import sbatch_env

    if plan.get("slurm") is None:
        return []
    return [Finding(True, "slurm", sbatch_env.advice(line), warning=True) for line in sbatch_env.overrides(plan)]


def check_sbatch(plan: dict[str, Any], timeout: float = 60, sinfo: Sinfo | None = None) -> list[Finding]:
    """`sbatch --test-only` of the job script: sbatch refuses there what it would refuse at
    submission (a node too small for `cpus_per_node`, an unknown account), and a job that
    could never start is refused rather than left pending forever."""
    import shutil

    from hpoc.compiler import refusal
    from hpoc.compiler.render import RenderError, render_all

    if plan.get("slurm") is None:
        return []
    if shutil.which("sbatch") is None:  # a laptop, or a shell without the site's SLURM module
        return [Finding(True, "slurm", "not asked: no `sbatch` on PATH here (run --preflight on the login node)")]
    with tempfile.TemporaryDirectory(prefix="hpoc-preflight-") as tmp:
        script = Path(tmp, "job.sbatch")
        try:
            script.write_text(render_all(plan, plan_path=os.path.join(tmp, "plan.json"))["job.sbatch"])
        except RenderError as exc:
            return [Finding(False, "slurm", "; ".join(exc.problems))]
        try:
            run = subprocess.run(["sbatch", "--test-only", str(script)], capture_output=True, text=True,
                                 timeout=timeout)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return [Finding(False, "slurm", f"sbatch --test-only did not answer: {exc}")]
    said = [line.strip() for line in (run.stderr + run.stdout).splitlines() if line.strip()]
    if run.returncode != 0 and refusal.unreachable("\n".join(said)):
        return [Finding(True, "slurm", f"not asked: sbatch cannot reach a SLURM controller here ({said[-1]})")]
    from hpoc.site.partition import enforces_part_limits, never_fits
    from hpoc.site.sbatch_env import what_to_check

    # --test-only refuses a job no node fits, which sbatch itself takes where the site does not
    # enforce partition limits at submission: it pends for ever there
    taken = run.returncode != 0 and refusal.no_node(run.stderr + run.stdout) and enforces_part_limits(timeout) is False
    if taken and (never := never_fits(plan, timeout, sinfo)):
        return [Finding(False, "slurm", "sbatch takes the job (the site does not enforce partition limits at "
                        "submission: EnforcePartLimits=NO), but it would never start: " + "; ".join(
                            f"{why}; {change}, or choose a partition that allows it (`{refusal.SINFO}`)"
                            for why, change in never))]
    if run.returncode != 0:
        why = "; ".join(refusal.reasons(run.stderr + run.stdout)) or f"exit {run.returncode}"
        if taken:
            return [Finding(False, "slurm", f"sbatch takes the job (the site does not enforce partition limits at "
                                            f"submission: EnforcePartLimits=NO), but no node fits it ({why}): it "
                                            f"would never start; {what_to_check(why, plan)}")]
        return [Finding(False, "slurm", f"sbatch would refuse the job: {why}; {what_to_check(why, plan)}")]
    if never := never_fits(plan, timeout, sinfo):  # sbatch --test-only takes a `time` above the limit
        return [Finding(False, "slurm", "sbatch takes the job, but it would never start: " + "; ".join(
            f"{why}; {change}, or choose a partition that allows it (`{refusal.SINFO}`)" for why, change in never))]
    return [Finding(True, "slurm", "sbatch accepts the job (" + (said[-1].removeprefix("sbatch: ") if said
                                                               else "--test-only") + ")")]


def check_exclusive(plan: dict[str, Any], sinfo: Sinfo | None = None) -> list[Finding]:
    """A node `--exclusive` holds whole, of which Ray uses only `cpus_per_node`."""
    from hpoc.site.partition import idle_cpus

    said = idle_cpus(plan, sinfo=sinfo) if plan.get("slurm") else None
    return [Finding(True, "slurm", said, warning=True)] if said else []


# ---------------------------------------------------------------- the nodes' interpreter


def check_interpreter(plan: dict[str, Any], timeout: float = IMPORT_TIMEOUT_S) -> list[Finding]:
    """The container image, or a `slurm.python` given as a path, as the job will use it:
    without this the job finds out on the node, after the queue. A bare `python3` is left
    alone: which one it is depends on the nodes' PATH after `slurm.setup`."""
    slurm = plan.get("slurm")
    if not slurm:
        return []
    workdir = plan["source"]["workdir"]
    container = slurm.get("container")
    if container:
        image = container["image"]
        if "://" in image:  # docker://, oras://: pulled on the node
            return []
        if os.path.exists(os.path.join(workdir, image)):
            return [Finding(True, "python", f"container image {image} exists")]
        return [Finding(False, "python", f"slurm.container.image {image} does not exist here")]
    python = slurm.get("python") or "python3"
    if "/" not in python:
        return []
    path = os.path.join(workdir, python)
    if not os.path.exists(path):
        return [Finding(False, "python", f"slurm.python {python} does not exist here; set it to the "
                                         "python of the environment hpoc is installed in")]
    if slurm.get("setup"):  # module loads may be what lets it start: not judged without them
        return [Finding(True, "python", f"{python} exists (imports not tried: slurm.setup runs first)")]
    env = dict(os.environ, **{k: str(v) for k, v in (slurm.get("env") or {}).items()})  # as the job exports
    gpus = float(plan["resources"].get("gpus_per_worker") or 0)
    code = "import hpoc.runtime, ray" + (_TORCH_BUILD if gpus else "")
    try:
        run = subprocess.run([path, "-c", code], capture_output=True, text=True,
                             timeout=timeout, cwd=workdir, env=env)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return [Finding(False, "python", f"slurm.python {python} does not run: {exc}")]
    if run.returncode != 0:
        said = (run.stderr.strip().splitlines() or [f"exit {run.returncode}"])[-1]
        return [Finding(False, "python", f"slurm.python {python} cannot run hpoc ({said}); set it to the "
                                         "python of the environment hpoc is installed in")]
    said = [ln[len(_BUILD_MARK):] for ln in run.stdout.splitlines() if ln.startswith(_BUILD_MARK)]
    if gpus and said and said[-1].startswith("cpu "):
        from hpoc.runtime.gpus import HELP

        return [Finding(False, "python", f"slurm.python {python}'s torch ({said[-1][4:]}) is built without "
                                         f"CUDA, and `gpus_per_worker = {gpus:g}` gives the trials GPUs; "
                                         f"help: {HELP}")]
    return [Finding(True, "python", f"{python} imports hpoc and Ray")]


def check_setup(plan: dict[str, Any]) -> list[Finding]:
    """A `slurm.setup` line that sources a file (`source env/bin/activate`) not there: the
    job would stop at that line on the node, after the queue. Paths with `$VARS` or after
    a `cd` are the nodes' to resolve; `module load` cannot be asked from here; a source the
    line guards (`[ -f x ] && . x`, `source x || true`) may fail."""
    workdir, moved, found = plan["source"]["workdir"], False, []
    for line in (plan.get("slurm") or {}).get("setup") or []:
        for words, certain in _commands(line):
            if words[0] in ("cd", "pushd"):
                moved = True  # relative paths after it are not the spec directory's
            if not certain or len(words) < 2 or words[0] not in ("source", "."):
                continue
            if any(c in words[1] for c in "$`*?[<("):  # the nodes' expansion, `<(cmd)`
                continue
            path = os.path.expanduser(words[1])
            if not os.path.isabs(path) and moved:
                continue
            if not os.path.exists(os.path.join(workdir, path)):
                found.append(Finding(False, "setup", f"slurm.setup line `{line}` reads {words[1]}, which does "
                                                     "not exist here; correct the path (the nodes run the line "
                                                     "in the spec's directory)"))
    return found


_SEPARATORS = (";", "&&", "||", "|", "&")


def _commands(line: str) -> list[tuple[list[str], bool]]:
    """A setup line's commands, split at `;`/`&&` unspaced too (`source x;module load y`),
    each with whether it runs whatever came before it and its failure ends the job: the
    first and those after `;` (not after `&&`), none followed by `||`."""
    import shlex

    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split, lexer.commenters = True, "#"
    try:
        tokens = list(lexer)
    except ValueError:
        return []
    commands: list[tuple[list[str], bool]] = []
    words: list[str] = []
    before: str | None = None
    for token in [*tokens, ";"]:
        if token not in _SEPARATORS:
            words.append(token)
            continue
        if words:
            commands.append((words, before in (None, ";") and token != "||"))
        words, before = [], token
    return commands


# What the job's python says of its torch when the trials get GPUs: "cpu VERSION" for a build
# without CUDA or ROCm (gpus.build_problem, which the driver asks again before Ray)
_BUILD_MARK = "@@hpoc-torch-build@@"
_TORCH_BUILD = ("\nimport torch\nprint(" + repr(_BUILD_MARK) + " + ('gpu ' if torch.version.cuda or "
                "getattr(torch.version, 'hip', None) else 'cpu ') + torch.__version__)")


# ---------------------------------------------------------------- all of it


def check_storage(plan: dict[str, Any]) -> list[Finding]:
    """Writable with HPOC_MIN_FREE_GB free, then room for the study's files and the user's
    quota (quota.py)."""
    from hpoc.runtime import quota

    problem = storage_problem(plan["storage"]["path"])
    if problem is None:
        problem, tight = quota.check(plan, free_gb_needed(MIN_FREE_GB))
    else:
        tight = []
    return ([Finding(problem is None, "storage", problem or f"{plan['storage']['path']} is writable")]
            + [Finding(True, "storage", w, warning=True) for w in tight])


def run_checks(plan: dict[str, Any]) -> list[Finding]:
    found = check_pipeline(plan)
    found += check_storage(plan)
    found += check_search(plan)
    found += check_interpreter(plan)
    found += check_setup(plan)
    found += check_sbatch_env(plan)
    from hpoc.site.partition import Sinfo

    sinfo = Sinfo()  # asked once, by the first check that needs it
    found += check_sbatch(plan, sinfo=sinfo)
    found += check_exclusive(plan, sinfo)
    if plan.get("loggers"):
        from hpoc.runtime.tracking import missing_libraries, unreachable_server

        problem = missing_libraries(plan)
        kinds = ", ".join(lg["kind"] for lg in plan["loggers"])
        found.append(Finding(problem is None, "loggers",
                             (problem or "").replace("\n  help:", "; help:") or f"{kinds} installed"))
        # a warning here: the compute nodes, where the driver asks again, may see another network
        silent = unreachable_server(plan)
        if silent:
            found.append(Finding(True, "loggers", silent.replace("\n  help:", "; help:"), warning=True))
    return found


def report(plan: dict[str, Any], out: TextIO | None = None, quiet: bool = False) -> int:
    out = out or sys.stdout
    findings = run_checks(plan)
    for f in findings:
        if not f.ok:
            print(f"preflight: error: {f.what}: {f.message}", file=sys.stderr)
        elif f.warning:
            print(f"preflight: warning: {f.what}: {f.message}", file=sys.stderr)
        elif not quiet:
            print(f"  preflight ok: {f.what}: {f.message}", file=out)
    bad = sum(not f.ok for f in findings)
    if bad:
        print(f"preflight: {bad} problem(s) found before submitting", file=sys.stderr)
        return 2
    return 0
