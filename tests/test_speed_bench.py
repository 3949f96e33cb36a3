"""The benchmarks' arithmetic on made-up reports (no timing here: the figures themselves
come from running the benchmarks, see docs/performance.md)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from _ours import emit  # noqa: E402
from packed_trials import aggregate  # noqa: E402
from trainer_throughput import total_for  # noqa: E402
from trial_overhead import overheads  # noqa: E402


def epoch(n, start, end, images=1000, mem=None):
    perf = {"train_start": start, "train_end": end, "train_s": end - start,
            "train_images": images, "images_per_s": images / (end - start)}
    if mem is not None:
        perf["max_memory_mb"] = mem
    return {"epoch": n, "perf": perf}


def test_packed_aggregate_counts_epochs_after_the_first_over_their_common_window():
    a = [epoch(1, 0.0, 5.0, mem=900.0), epoch(2, 5.0, 7.0, mem=1000.0), epoch(3, 7.0, 9.0, mem=1000.0)]
    b = [epoch(1, 1.0, 6.0, mem=800.0), epoch(2, 6.0, 8.0, mem=850.0), epoch(3, 8.0, 10.0, mem=850.0)]
    got = aggregate([a, b])
    assert got["window_s"] == 5.0 and got["images"] == 4000  # epochs 2-3 of both, 5.0 s .. 10.0 s
    assert got["images_per_s"] == 800.0
    assert got["trial_images_per_s"] == [500.0, 500.0]
    assert got["max_memory_mb_per_trial"] == [1000.0, 850.0]


def test_overhead_is_start_to_start_minus_the_earlier_trials_training():
    def trial(start, works):
        reports, t = [], start
        for w in works:
            reports.append(epoch(len(reports) + 1, t, t + w))
            t += w + 0.5  # validation, report, checkpoint: overhead inside the trial
        return reports

    trials = [trial(10.0, [1.0, 1.0]), trial(0.0, [1.0, 1.0]), trial(20.0, [2.0, 2.0])]  # any order
    got = overheads(trials)
    assert got["overheads_s"] == [8.0, 8.0]  # (10 - 0 - 2), (20 - 10 - 2)
    assert got["work_s"] == 2.0
    naive = [[{"work_start": 0.0, "work_end": 1.0}], [{"work_start": 31.0, "work_end": 32.0}]]
    assert overheads(naive)["overheads_s"] == [30.0]


def test_training_set_sizes_give_whole_batches_after_the_90_percent_split():
    for images in (256, 512, 12800, 53760):
        n = total_for(images)
        assert int(round(0.9 * n)) == images


def test_results_are_printed_and_appended_as_json_lines(tmp_path, capsys):
    emit({"benchmark": "x", "ratio": 2.5}, str(tmp_path / "out"))
    emit({"benchmark": "x", "ratio": 3.0}, str(tmp_path / "out"))
    lines = (tmp_path / "out" / "x.jsonl").read_text().splitlines()
    assert [json.loads(line)["ratio"] for line in lines] == [2.5, 3.0]
    assert json.loads(capsys.readouterr().out.splitlines()[-1]) == {"benchmark": "x", "ratio": 3.0}


@pytest.mark.parametrize("script", ["trainer_throughput", "packed_trials", "trial_overhead", "study_e2e",
                                    "data_checks", "shared_views", "batch_logging", "float64_tensors"])
def test_every_benchmark_documents_itself_and_takes_an_output_directory(script, monkeypatch, capsys):
    import importlib

    module = importlib.import_module(script)
    monkeypatch.setattr(sys, "argv", [script, "--help"])
    with pytest.raises(SystemExit) as done:
        module.main()
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert "--out" in out and module.__doc__.splitlines()[0] in " ".join(out.split())


def test_the_data_checks_benchmark_compares_against_a_copy_and_reads_no_lazy_sample(tmp_path, monkeypatch, capsys):
    import data_checks

    monkeypatch.setattr(sys, "argv", ["data_checks", "--rows", "4000", "--cols", "8", "--reps", "1",
                                      "--dir", str(tmp_path), "--out", str(tmp_path)])
    data_checks.main()
    (line,) = (tmp_path / "data_checks.jsonl").read_text().splitlines()
    result = json.loads(line)
    assert {"check_s", "copy_s", "ratio"} <= set(result["f32"]) and {"check_s", "copy_s", "ratio"} <= set(result["f64"])
    assert result["lazy"]["getitem_calls"] == 0


def test_the_shared_views_benchmark_halves_a_split_of_tensor_views_and_copies_no_array_per_trial(tmp_path, monkeypatch):
    import shared_views

    monkeypatch.setattr(sys, "argv", ["shared_views", "--rows", "40000", "--cols", "16", "--pickle-only",
                                      "--out", str(tmp_path)])
    shared_views.main()
    (line,) = (tmp_path / "shared_views.jsonl").read_text().splitlines()
    result = json.loads(line)
    assert 0.45 <= result["torch"]["pickled_ratio"] <= 0.55  # a 90/10 split pickled its storage twice
    assert result["memmap"]["inband_ratio"] == 0.0  # in band: each trial's private copy
    assert result["numpy_cols"]["pickled_mb_compacted"][0] == 0.0 < result["numpy_cols"]["pickled_mb_given"][0]


def test_the_batch_logging_benchmark_prints_both_ratios_against_the_epoch_arm(tmp_path, monkeypatch, capsys):
    import batch_logging

    monkeypatch.setattr(sys, "argv", ["batch_logging", "--reps", "1", "--epochs", "1", "--batch", "128",
                                      "--out", str(tmp_path)])
    batch_logging.main()
    (line,) = (tmp_path / "batch_logging.jsonl").read_text().splitlines()
    result = json.loads(line)
    assert result["ratio_mlflow"] > 0 and result["ratio_tb"] > 0 and result["steps_per_epoch"] == 12
    assert result["call_us_mlflow"] > 0 and result["call_us_tb"] > 0
