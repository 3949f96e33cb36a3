"""The CLI in a login node's odd environments: stdout a closed pipe."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from hpo_util import EXAMPLES
from hpoc.errors import run_reporting


def _hpoc(argv: list[str], **kw: object) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "hpoc", *argv], capture_output="stdout" not in kw,
                          timeout=120, **kw)  # type: ignore[call-overload]


@pytest.mark.parametrize("argv", [["check", str(EXAMPLES["digits"])], ["fmt", str(EXAMPLES["digits"])]])
def test_a_reader_that_went_away_ends_the_command_quietly(argv: list[str]) -> None:
    """`hpoc check s.hpo | head -0`: no `error:: Broken pipe`, no exit 2, no noise at exit."""
    read, write = os.pipe()
    os.close(read)  # the reader is gone before hpoc writes a byte
    try:
        run = _hpoc(argv, stdout=write, stderr=subprocess.PIPE)
    finally:
        os.close(write)
    assert run.returncode == 0, run.stderr
    assert run.stderr == b""


def test_run_reporting_lets_a_broken_pipe_through() -> None:
    def body() -> int:
        raise BrokenPipeError(32, "Broken pipe")

    with pytest.raises(BrokenPipeError):
        run_reporting(body)
