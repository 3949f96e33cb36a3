"""Ray Tune's `result.json` (one JSON line per report) as hpoc reads it back: one reader
(`hpoc.files.read_json_lines`) for the run summary, `hpoc results`, the resume replay and
checkpoint recovery. A trial killed mid-write leaves its last line cut short."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from hpoc.files import read_json_lines
from hpoc.results.load import _read_results
from hpoc.runtime import report, resume, summary

ROWS = [{"trial_id": "t1", "training_iteration": i, "loss": 1 / i,
         "checkpoint_dir_name": f"checkpoint_00000{i - 1}", "config": {"lr": 0.1}}
        for i in (1, 2)]
# The third report, cut short by a kill in the middle of a character (after a power cut
# a file system may also leave garbage bytes there).
CUT = json.dumps({"trial_id": "t1", "training_iteration": 3, "note": "\u00e9t\u00e9"},
                 ensure_ascii=False).encode()[:-3] + b"\xff"


def _result_file(trial_dir: Path) -> Path:
    trial_dir.mkdir(parents=True, exist_ok=True)
    file = trial_dir / "result.json"
    file.write_bytes(b"".join(json.dumps(r).encode() + b"\n" for r in ROWS) + b"\n[1, 2]\n" + CUT)
    for row in ROWS:
        (trial_dir / row["checkpoint_dir_name"]).mkdir(exist_ok=True)
    return file


def test_whole_objects_are_kept_and_a_line_cut_short_is_skipped(tmp_path: Path) -> None:
    file = _result_file(tmp_path / "trial")
    assert read_json_lines(file) == ROWS  # the blank line and the list are no reports either
    assert read_json_lines(tmp_path / "missing.json") == []
    assert read_json_lines(tmp_path) == []  # a directory: unreadable, no reports


@pytest.mark.parametrize("reader", ["summary", "results", "resume", "checkpoint"])
def test_every_reader_takes_the_reports_before_the_cut(tmp_path: Path, reader: str) -> None:
    """The run summary and checkpoint recovery raised UnicodeDecodeError on such a file."""
    trial_dir = tmp_path / "trial_t1"
    _result_file(trial_dir)
    if reader == "summary":  # a trial Tune handed another trial's last result (PBT)
        trial = SimpleNamespace(trial_id="t1", last_result={"trial_id": "donor"}, path=str(trial_dir))
        assert summary.own_last_result(trial) == ROWS[-1]
    elif reader == "results":
        rows, configs = _read_results(trial_dir / "result.json")
        assert [r["training_iteration"] for r in rows] == [1, 2] and configs == [{"lr": 0.1}] * 2
        assert all("config" not in r for r in rows)
    elif reader == "resume":
        assert resume.trial_history(SimpleNamespace(path=str(trial_dir))) == ROWS
    else:
        latest = str(trial_dir / "checkpoint_000000")
        assert report.recorded_checkpoint(latest, trial_dir.name) == str(trial_dir / "checkpoint_000001")


def test_a_json_file_of_one_object_reads_as_it_or_none(tmp_path):
    """One reader for the runtime's small JSON files (the plan marker, summary.json, a trial's
    retry and time-limit records): anything but a whole object reads as none."""
    from hpoc.files import read_json_object

    path = tmp_path / "x.json"
    assert read_json_object(path) is None  # missing
    for text in ('{"a": 1', "[1, 2]", "null"):
        path.write_text(text, encoding="utf-8")
        assert read_json_object(path) is None, text
    path.write_bytes(b'{"a": "\xff"}')
    assert read_json_object(path) is None  # not UTF-8
    path.write_text('{"a": 1}', encoding="utf-8")
    assert read_json_object(path) == {"a": 1} and read_json_object(str(path)) == {"a": 1}
