"""What `hpoc --version` says: enough for a bug report to name the code that ran.

The package version alone is the same for every commit of a checkout installed with
`pip install -e`; there the commit (and whether the tree has changes) says which code it is.
Not in plan.json: the plan does not record the compiler's version, and stays the same
from one commit to the next that compiles it alike.
"""

from __future__ import annotations

import platform
import subprocess
from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent  # the checkout, for an editable install


def describe(root: Path = _ROOT) -> str:
    """`hpoc 0.1.0 (git 1a2b3c4d5e6f, with changes; Python 3.11.9)`: the commit only where
    hpoc runs from a git checkout of its own (not a site-packages inside another repository)."""
    from hpoc import __version__

    commit = _commit(root)
    return f"hpoc {__version__} ({f'git {commit}; ' if commit else ''}Python {platform.python_version()})"


def _commit(root: Path) -> str | None:
    if not (root / ".git").exists() or not (root / "hpoc").is_dir():
        return None
    try:
        run = subprocess.run(["git", "-C", str(root), "describe", "--always", "--dirty=+", "--abbrev=12",
                              "--exclude", "*"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):  # no git here, or a file system that hangs
        return None
    said = run.stdout.strip()
    if run.returncode != 0 or not said:
        return None
    return said[:-1] + ", with changes" if said.endswith("+") else said
