"""`slurm.setup` lines as bash parses them. The job script runs them inside one `{ ... }`
group, so a line that leaves a quote, an `if` or a brace open makes the whole script a syntax
error, which bash reports only when the job starts, after the queue. `bash -n` parses
without running anything; where there is no bash to ask (or one older than 4, as macOS's),
nothing is reported."""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess


HERE_DOC = "here-document wanting "  # then its delimiter: setup_syntax_error's words for one
_CLEAN = {"LC_ALL": "C"}  # with PATH: no BASH_ENV to source, bash's messages in English


@functools.lru_cache(maxsize=4)
def _bash_version(bash: str) -> int:
    """`bash`'s major version, 0 when it does not say."""
    try:
        run = subprocess.run([bash, "--norc", "--noprofile", "-c", "echo ${BASH_VERSINFO[0]}"],
                             capture_output=True, text=True, timeout=10,
                             env={"PATH": os.environ.get("PATH", ""), **_CLEAN})
    except (OSError, subprocess.SubprocessError):
        return 0
    return int(run.stdout.strip()) if run.stdout.strip().isdigit() else 0


def setup_syntax_error(lines: list[str]) -> tuple[int | None, str] | None:
    """(index of the line bash stops at, or None for the group's end; bash's words), or None."""
    bash = shutil.which("bash")
    if bash is None or not any(line.strip() and not line.strip().startswith("#") for line in lines):
        return None  # comment-only setup: the script adds a command itself (setup.j2)
    if _bash_version(bash) < 4:  # macOS's 3.2 refuses `|&`, `;&`, which the cluster's bash runs
        return None
    group = "{\n" + "".join(f"    {line}\n" for line in lines) + "}\n"  # as setup.j2 writes it
    try:
        run = subprocess.run([bash, "--norc", "--noprofile", "-n"], input=group, capture_output=True,
                             text=True, timeout=10, env={"PATH": os.environ.get("PATH", ""), **_CLEAN})
    except (OSError, subprocess.SubprocessError):
        return None
    found = re.search(r"line (\d+): (.+)", run.stderr)
    if run.returncode == 0 or found is None:
        return None
    # its end indented by the job script, never found: said at the line that starts it
    doc = re.search(r"here-document at line (\d+) delimited by end-of-file \(wanted `(.*)'\)", run.stderr)
    if doc is not None:
        index = int(doc[1]) - 2
        return (index if 0 <= index < len(lines) else None), f"{HERE_DOC}{doc[2]}"
    index = int(found[1]) - 2  # line 1 is the `{`
    return (index if 0 <= index < len(lines) else None), found[2].strip()
