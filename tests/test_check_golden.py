"""Whole reports of `hpoc check` for bad specs, compared with tests/golden/errors/*.txt."""

from __future__ import annotations

import difflib
import os
from pathlib import Path

import pytest

from hpoc.cli import main

GOLDEN = Path(__file__).parent / "golden" / "errors"


@pytest.mark.parametrize("case", sorted(p.stem for p in GOLDEN.glob("*.hpo")))
def test_check_report_matches_golden(case: str, update_golden: bool, capsys: pytest.CaptureFixture[str],
                                     monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.chdir(GOLDEN)
    code = main(["check", f"{case}.hpo"])
    out = capsys.readouterr()
    got = f"exit {code}\n--- stdout\n{out.out}--- stderr\n{out.err}"
    golden = GOLDEN / f"{case}.txt"
    if update_golden:
        golden.write_text(got, encoding="utf-8")
    expected = golden.read_text(encoding="utf-8") if golden.exists() else ""
    if got != expected:
        diff = "".join(difflib.unified_diff(expected.splitlines(True), got.splitlines(True), str(golden), "got"))
        pytest.fail(f"report for {case} changed:\n{diff}\naccept with: pytest {os.path.relpath(__file__)} --update-golden")
