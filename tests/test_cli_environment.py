"""The CLI in a login node's odd environments: stdout a closed pipe or closed, a locale that
cannot encode hpoc's `→ × …`."""

from __future__ import annotations

import io
import os
import subprocess
import sys

import pytest

from hpo_util import EXAMPLES
from hpoc.console import setup_streams
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


def test_a_closed_stdout_is_no_internal_error() -> None:
    run = subprocess.run(["sh", "-c", 'exec "$@" >&-', "sh", sys.executable, "-m", "hpoc", "fmt",
                          str(EXAMPLES["digits"])], capture_output=False, stderr=subprocess.PIPE,
                         timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stderr == b""


@pytest.mark.parametrize("encoding", ["ascii", "latin-1"])
def test_a_non_utf8_locale_gets_utf8_data_on_a_pipe(encoding: str) -> None:
    env = dict(os.environ, PYTHONIOENCODING=encoding)
    for argv in (["check", str(EXAMPLES["digits"])], ["fmt", str(EXAMPLES["digits"])]):
        run = _hpoc(argv, env=env)
        assert run.returncode == 0, run.stderr
        assert "×".encode() in run.stdout  # `1 worker × 1 CPU`; the spec's `8×8` unchanged


class _Terminal(io.BytesIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("tty", [True, False])
def test_setup_streams_escapes_on_a_terminal_and_writes_utf8_elsewhere(
        tty: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    raw = _Terminal() if tty else io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding="ascii")
    monkeypatch.setattr(sys, "stdout", stream)
    setup_streams()
    print("1 worker × 1 CPU → done")
    stream.flush()
    expected = "1 worker \\xd7 1 CPU \\u2192 done\n" if tty else "1 worker × 1 CPU → done\n"
    assert raw.getvalue() == expected.encode()


def test_a_closed_stderr_keeps_errors_out_of_stdout_and_the_run_going(tmp_path) -> None:
    """`hpoc fmt bad.hpo > out 2>&-`: the error must not land in the data on stdout; a run's
    progress lines, which go to stderr, must not crash it (it fails on the spec: exit 2)."""
    bad = tmp_path / "bad.hpo"
    bad.write_text('study "x"\nspace {\n')
    fmt = subprocess.run(["sh", "-c", 'exec "$@" 2>&-', "sh", sys.executable, "-m", "hpoc", "fmt",
                          str(bad)], capture_output=False, stdout=subprocess.PIPE, timeout=120)
    assert fmt.returncode == 2 and b"error" not in fmt.stdout
    spec = tmp_path / "study.hpo"
    spec.write_text(EXAMPLES["digits"].read_text().replace("data:Digits", "nosuchmodule:Digits"))
    run = subprocess.run(["sh", "-c", 'exec "$@" 2>&-', "sh", sys.executable, "-m", "hpoc", "run",
                          str(spec), "--local"], capture_output=False, stdout=subprocess.PIPE,
                         timeout=120, env={k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"})
    assert run.returncode == 2, run.stdout
    assert b"internal error" not in run.stdout
