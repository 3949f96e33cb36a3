"""Shell injection: values from a spec never run as shell code in the SLURM job script.

Every string field that reaches job.sbatch gets payloads such as `$(touch F)`, backticks,
quotes, `;`, `&&`, `|`, globs and `$VAR`s. The spec is compiled with `hpoc compile`, then
the real job.sbatch runs under bash with stub `srun`, `scontrol`, `apptainer` and `python`
commands on PATH and a faked SLURM environment (job 4242 on node1). Checked:

* no payload ran: no `PWNED*` file appears anywhere;
* each value reached its consumer verbatim, as one word: `#SBATCH` values parse back
  (shlex) to the value, the driver sees `slurm.env` values unchanged, the interpreter,
  container image, bind paths, plan path and working directory arrive as single argv
  entries / as $PWD;
* values that would break a line (newline, CR, NUL) and names with a fixed syntax (study
  name, env names, interface, mem, time) are refused at compile time with a located error.

`slurm.setup` lines are the one exception, by design: they are the site's own shell code
(`module load ...`, `source venv/bin/activate`) and run as written - tested too.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from fuzz_harness import assert_located, run_cli

# {P} is replaced by the directory where injected commands would leave their files.
PAYLOADS = [
    "$(touch {P}/PWNED_subst)",
    "`touch {P}/PWNED_backtick`",
    "x; touch {P}/PWNED_semicolon",
    "x' ; touch {P}/PWNED_squote ; '",
    'x" ; touch {P}/PWNED_dquote ; "',
    "x && touch {P}/PWNED_and #",
    "x | tee {P}/PWNED_pipe",
    "x\\'; touch {P}/PWNED_backslash; #",
    "$((1+1)) ${HOME} $PATH ~ {P}/*",
    "x > {P}/PWNED_redirect",
]
# For `python` (a command name: no `/`), injected commands write into the working directory.
# `python` must be one word (a command line is refused, see REFUSED): redirections need none.
NAME_PAYLOADS = ["python3;>PWNED_py1", "$(>PWNED_py2)", "`>PWNED_py3`",
                 "py';>PWNED_py4;'", 'py"&&>PWNED_py5"', "py*"]

STUB = r'''#!/bin/bash
# Records every call (argv NUL-separated), then behaves just enough like the real thing.
log="$STUB_LOG/calls"
# background steps (head, workers) log at the same time as the foreground: one writer at a time
exec 9>>"$log.lock"; flock 9
{ printf '%s\0' "$(basename -- "$0")" "$@"; printf '\n'; } >>"$log"
flock -u 9; exec 9>&-
me=$(basename -- "$0")
case "$me" in
  scontrol)
    [[ $1 == show && $2 == hostnames ]] && echo node1
    exit 0 ;;
  srun)  # a Ray node's step runs until the teardown stops it; it says it started (wait-head)
    for a in "$@"; do [[ $a == head ]] && : >"$STUB_LOG/head.started"; done
    for a in "$@"; do [[ $a == hpoc.runtime.node ]] && exec sleep 300; done
    exit 0 ;;
  apptainer|singularity)
    shift  # exec
    while [[ $1 == --* ]]; do [[ $1 == --bind ]] && shift; shift; done
    shift 2  # image, interpreter
    exec "$STUB_DIR/python" "$@" ;;
esac
# the interpreter: python -m MODULE ...
[[ $1 == -m ]] || exit 0
case "$2" in
  hpoc.runtime.cluster)
    if [[ $3 == init ]]; then mkdir -p -m 700 "$4" && echo secret-token >"$4/token" && chmod 600 "$4/token"
    else  # like the real wait-head: answers once the head step has started
      for _ in {1..300}; do [[ -e $STUB_LOG/head.started ]] && break; sleep 0.1; done
      echo 127.0.0.1:6379
    fi ;;
  hpoc.runtime.preflight) echo "hpoc: cluster ready nodes=1 cpus=1 gpus=0 seconds=0.1" ;;
  hpoc.runtime)
    env -0 >"$STUB_LOG/driver.env"
    printf '%s' "$PWD" >"$STUB_LOG/driver.pwd"
    printf '%s\0' "$@" >"$STUB_LOG/driver.argv" ;;
esac
exit 0
'''


def quote_hpo(value: str) -> str:
    return json.dumps(value)  # .hpo strings take JSON escapes


def spec_text(value: str, name_value: str, *, container: bool, store: str = "/tmp/hpoc-inj") -> str:
    q = quote_hpo(value)
    # sbatch reads `\` in #SBATCH lines: refused there (REFUSED); a `*` in a partition is
    # sinfo's default mark pasted, refused too
    sq = quote_hpo(value.replace("\\", "").replace("*", ""))
    image = quote_hpo("/img/" + value)
    lines = [
        'study "inj"',
        "pipeline { trainer = trainer:T }",
        # `$NAME` in a storage path expands at compile time (documented), so no `$` here
        f"storage {{ path = {quote_hpo(store + '/' + value.replace('$', '_'))} }}",
        "slurm {",
        f"  partition = {sq}",
        f"  account = {sq}",
        f"  qos = {sq}",
        f"  constraint = {sq}",
        # written verbatim (`--comment` is hpoc's), quoted as its check asks: sbatch splits words
        f"  extra = [{quote_hpo('--mail-user=' + shlex.quote(value))}]",
        f"  env = {{ INJ = {q}, OTHER = \"plain\" }}",
        f"  python = {quote_hpo(name_value)}",
    ]
    if container:
        lines.append(f"  container = {{ image = {image}, runtime = apptainer }}")
    return "\n".join(lines + ["}", ""])


@pytest.fixture
def stubs(tmp_path: Path) -> Path:
    folder = tmp_path / "stubs"
    folder.mkdir()
    stub = folder / "python"
    stub.write_text(STUB)
    stub.chmod(0o755)
    for name in ("srun", "scontrol", "apptainer", "python3"):
        (folder / name).symlink_to(stub)
    return folder


def run_job(script: Path, stubs: Path, log: Path, cwd: Path) -> subprocess.CompletedProcess:
    log.mkdir(exist_ok=True)
    # short: the script refuses a job directory that leaves Ray's unix socket paths no room
    jobtmp = tempfile.mkdtemp(prefix="hj", dir="/tmp")
    env = {"PATH": f"{stubs}:/usr/bin:/bin", "HOME": str(cwd), "STUB_LOG": str(log), "STUB_DIR": str(stubs),
           "SLURM_JOB_ID": "4242", "SLURMD_NODENAME": "node1", "SLURM_JOB_NODELIST": "node1",
           "HPOC_TMP": jobtmp, "LANG": "C.UTF-8"}
    try:
        return subprocess.run(["bash", str(script)], cwd=cwd, env=env, capture_output=True, text=True, timeout=60)
    finally:
        shutil.rmtree(jobtmp, ignore_errors=True)


def calls(log: Path) -> list[list[str]]:
    text = (log / "calls").read_text() if (log / "calls").exists() else ""
    return [rec.split("\0")[:-1] for rec in text.split("\0\n") if rec]


def sbatch_values(script: str, flag: str) -> list[str]:
    out = []
    for line in script.splitlines():
        if line.startswith(f"#SBATCH --{flag}="):
            out.append(" ".join(shlex.split(line[len(f"#SBATCH --{flag}="):])))
    return out


def compile_spec(tmp_path: Path, text: str, dirname: str) -> tuple[Path, dict, str]:
    workdir = tmp_path / dirname
    workdir.mkdir()
    spec = workdir / "study.hpo"
    spec.write_text(text, encoding="utf-8")
    build = workdir / "build $(touch PWNED_build)"
    code, out, err = run_cli(["compile", str(spec), "-o", str(build)])
    assert code == 0, err
    plan = json.loads((build / "plan.json").read_text())
    return build / "job.sbatch", plan, (build / "job.sbatch").read_text()


def pwned(root: Path) -> list[str]:
    """Files an injected `touch`, `tee` or `>` would have made (directories named after a
    payload, such as a storage path, are not evidence)."""
    return [str(p) for p in root.rglob("PWNED*") if p.is_file() and re.fullmatch(r"PWNED_\w+", p.name)]


@pytest.mark.parametrize("container", [False, True], ids=["bare", "container"])
@pytest.mark.parametrize("index", range(len(PAYLOADS)))
def test_payloads_in_every_field_stay_inert(index: int, container: bool, tmp_path: Path, stubs: Path) -> None:
    target = tmp_path / "target"
    target.mkdir()
    value = PAYLOADS[index].replace("{P}", str(target))
    name_value = NAME_PAYLOADS[index % len(NAME_PAYLOADS)]
    (stubs / name_value).symlink_to(stubs / "python")  # the interpreter exists under its odd name
    # the spec's own directory has a hostile name too (`cd` into it, bind it, pass it on)
    script, plan, text = compile_spec(tmp_path, spec_text(value, name_value, container=container,
                                                          store=str(tmp_path / "store")),
                                      "spec dir $(touch PWNED_wd) `touch PWNED_wd2`")
    log = tmp_path / "log"
    run = run_job(script, stubs, log, tmp_path)
    assert pwned(tmp_path) == [], (value, run.stdout, run.stderr)
    assert run.returncode == 0, run.stderr
    assert "hpoc: study driver exited with status 0" in run.stdout, run.stdout

    slurm = plan["slurm"]
    for flag in ("partition", "account", "qos", "constraint"):
        assert sbatch_values(text, flag) == [slurm[flag]], flag
    assert [ln for ln in text.splitlines() if ln.startswith("#SBATCH --mail-user")] == [f"#SBATCH {slurm['extra'][0]}"]

    driver_env = dict(kv.split("=", 1) for kv in (log / "driver.env").read_text().split("\0") if "=" in kv)
    assert driver_env["INJ"] == value and driver_env["OTHER"] == "plain"
    assert (log / "driver.pwd").read_text() == plan["source"]["workdir"]
    argv = (log / "driver.argv").read_text().split("\0")[:-1]
    assert argv[:4] == ["-m", "hpoc.runtime", str(script.parent / "plan.json"), "--shard"]

    recorded = calls(log)
    interpreters = [c for c in recorded if c[0] == name_value]
    if container:
        runs = [c for c in recorded if c[0] == "apptainer"]
        assert runs and not interpreters
        for c in runs:
            binds = [c[i + 1] for i, a in enumerate(c) if a == "--bind"]
            # run_job's HPOC_TMP first, the plan's paths after it
            assert binds[0].startswith("/tmp/hj") and binds[1:] == list(dict.fromkeys([
                plan["source"]["workdir"], str(script.parent), plan["storage"]["path"]]))
            rest = c[c.index(binds[-1]) + 1:]
            assert rest[:2] == [slurm["container"]["image"], name_value], c
    else:
        assert len(interpreters) >= 3, recorded  # cluster init, wait-head, preflight, driver
    heads = [c for c in recorded if c[0] == "srun" and "head" in c]
    assert heads and name_value in heads[0] or container


def test_setup_lines_are_the_sites_own_shell(tmp_path: Path, stubs: Path) -> None:
    """Documented: `setup` runs as written (module load, source venv) - unlike every other field."""
    marker = tmp_path / "setup-ran"
    text = spec_text("plain", "python3", container=False).replace(
        "slurm {", f"slurm {{\n  setup = [{quote_hpo(f'touch {marker} && export FROM_SETUP=$((6*7))')}]")
    script, plan, _ = compile_spec(tmp_path, text, "wd")
    log = tmp_path / "log"
    run = run_job(script, stubs, log, tmp_path)
    assert run.returncode == 0, run.stderr
    assert marker.exists()
    env = dict(kv.split("=", 1) for kv in (log / "driver.env").read_text().split("\0") if "=" in kv)
    assert env["FROM_SETUP"] == "42"


REFUSED = [
    # (section text, what the error says)
    ('study "x; touch PWNED"', "is not a valid study name"),
    ('study "$(id)"', "is not a valid study name"),
    ('storage { name = "a/../../b" }', None),
    ('slurm { env = { "A;touch PWNED" = "1" } }', "is not a valid environment variable name"),
    ('slurm { env = { "A B" = "1" } }', "is not a valid environment variable name"),
    ('slurm { interface = "eth0; touch PWNED" }', "is not a valid network interface name"),
    ('slurm { mem = "1G $(id)" }', "must be a memory size"),
    ('slurm { time = "1:00; id" }', None),
    ('slurm { extra = ["; touch PWNED"] }', None),
    ('slurm { partition = "x\\\\\'; touch PWNED; #" }', "must not contain `\\`"),
    ('slurm { python = "python3; touch PWNED" }', "must be one program, not a command line"),
]
LINE_BREAKS = ["\n", "\r", "\x00", "\u2028"]
LINE_FIELDS = ["partition", "account", "qos", "constraint", "python"]


@pytest.mark.parametrize("section, message", REFUSED, ids=[r[0][:28] for r in REFUSED])
def test_values_with_a_fixed_syntax_are_refused_located(section: str, message: str | None, tmp_path: Path) -> None:
    text = ('study "inj"\n' if not section.startswith("study") else "") + section + \
        "\npipeline { trainer = trainer:T }\n" + ("slurm { nodes = 1 }\n" if "slurm" not in section else "")
    spec = tmp_path / "study.hpo"
    spec.write_text(text)
    code, out, err = run_cli(["compile", str(spec), "-o", str(tmp_path / "build")])
    if code == 0 and section.startswith("storage"):  # a name is one path component: no `/`
        plan = json.loads((tmp_path / "build" / "plan.json").read_text())
        assert "/" not in plan["storage"]["name"]
        return
    assert_located(str(spec), code, err, section)
    if message:
        assert message in err, err
    assert not (tmp_path / "build" / "job.sbatch").exists()


@pytest.mark.parametrize("field", LINE_FIELDS + ["env", "setup", "extra", "image", "storage"])
@pytest.mark.parametrize("brk", LINE_BREAKS, ids=["LF", "CR", "NUL", "LS"])
def test_line_breaks_are_refused_located(field: str, brk: str, tmp_path: Path) -> None:
    value = quote_hpo("a" + brk + "touch PWNED")
    body = {"env": f"slurm {{ env = {{ X = {value} }} }}", "setup": f"slurm {{ setup = [{value}] }}",
            "extra": f"slurm {{ extra = [{quote_hpo('--a' + brk + 'b')}] }}",
            "image": f"slurm {{ container = {{ image = {quote_hpo('/i' + brk)}, runtime = apptainer }} }}",
            "storage": f"storage {{ path = {quote_hpo('/s' + brk)} }}\nslurm {{ nodes = 1 }}",
            }.get(field, f"slurm {{ {field} = {value} }}")
    spec = tmp_path / "study.hpo"
    spec.write_text(f'study "inj"\npipeline {{ trainer = trainer:T }}\n{body}\n', encoding="utf-8")
    code, out, err = run_cli(["compile", str(spec), "-o", str(tmp_path / "build")])
    if brk == "\u2028" and field == "python":  # the space makes it a command line: refused
        assert_located(str(spec), code, err, (field, brk))
        assert "must be one program" in err, err
        return
    if brk == "\u2028":  # not a line break for bash: allowed, and quoted like any character
        assert code == 0, err
        script = (tmp_path / "build" / "job.sbatch").read_text()
        assert subprocess.run(["bash", "-n", "-c", script]).returncode == 0
        return
    assert_located(str(spec), code, err, (field, brk))
    assert re.search(r"one line|control characters", err), err
