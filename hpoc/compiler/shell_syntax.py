"""`slurm.setup` lines as bash parses them. The job script runs them inside one `{ ... }`
group, so a line that leaves a quote, an `if` or a brace open makes the whole script a syntax
error, which bash reports only when the job starts, after the queue. `bash -n` parses
without running anything; where there is no bash to ask, nothing is reported."""

from __future__ import annotations

import os
import re
import shutil
import subprocess


def setup_syntax_error(lines: list[str]) -> tuple[int | None, str] | None:
    """(index of the line bash stops at, or None for the group's end; bash's words), or None."""
    bash = shutil.which("bash")
    if bash is None or not any(line.strip() and not line.strip().startswith("#") for line in lines):
        return None  # comment-only setup: the script adds a command itself (setup.j2)
    group = "{\n" + "".join(f"    {line}\n" for line in lines) + "}\n"  # as setup.j2 writes it
    try:  # a clean environment: no BASH_ENV to source, bash's messages in English
        run = subprocess.run([bash, "--norc", "--noprofile", "-n"], input=group, capture_output=True,
                             text=True, timeout=10, env={"PATH": os.environ.get("PATH", ""), "LC_ALL": "C"})
    except (OSError, subprocess.SubprocessError):
        return None
    found = re.search(r"line (\d+): (.+)", run.stderr)
    if run.returncode == 0 or found is None:
        return None
    index = int(found[1]) - 2  # line 1 is the `{`
    return (index if 0 <= index < len(lines) else None), found[2].strip()
