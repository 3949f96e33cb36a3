"""How the table, the exports and the report's plots show the values a space can hold: a
`choice` with `null` among its values, strings beyond ASCII. Hand-made studies, no Ray."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from hpoc.results import export, load, rank, table
from hpoc.results import plots as P
from hpoc.results.model import Metric, Results, Trial

SPACE = {"params": [
    {"name": "act", "domain": "choice", "args": {"categories": ["relu", "tanh", None]},
     "condition": None},
    {"name": "opt", "domain": "choice", "args": {"categories": ["adam", "sgd"]}, "condition": None},
    {"name": "momentum", "domain": "uniform", "args": {"lower": 0.5, "upper": 0.9},
     "condition": {"parent": "opt", "values": ["sgd"]}}]}


def null_study() -> Results:
    """Trials 0 and 1 have `act = null` (trial 0 is the best); only trial 2 has momentum."""
    configs = [{"act": None, "opt": "adam"}, {"act": None, "opt": "adam"},
               {"act": "relu", "opt": "sgd", "momentum": 0.7}, {"act": "tanh", "opt": "adam"}]
    trials = [Trial(f"aaaaa_{i:05d}", "TERMINATED", config,
                    [{"training_iteration": 1, "val_loss": 0.1 + i / 10}])
              for i, config in enumerate(configs)]
    return Results("s", Path("/x"), [Metric("val_loss", "min")], trials, [],
                   plan={"space": SPACE})


def test_a_null_value_is_shown_as_null_not_as_a_parameter_the_trial_lacks():
    results = null_study()
    header, body = table.rows(results, rank(results))
    act, momentum = header.index("act"), header.index("momentum")
    assert [row[act] for row in body] == ["null", "null", "relu", "tanh"]
    assert [row[momentum] for row in body] == ["-", "-", "0.7", "-"]


def test_the_csv_tells_a_null_value_from_a_parameter_the_trial_lacks():
    results = null_study()
    rows = list(csv.DictReader(io.StringIO(export.to_csv(results, rank(results)))))
    assert [r["config/act"] for r in rows] == ["null", "null", "relu", "tanh"]
    assert [r["config/momentum"] for r in rows] == ["", "", "0.7", ""]


def test_trials_whose_value_is_null_have_their_dots_and_the_best_its_star():
    """`act = choice(relu, tanh, null)`: the trials with null had no dot (the best one's star
    was missing from the panel), as if they lacked the parameter."""
    results = null_study()
    ranking = rank(results)
    fig = P.objective_vs_params_figure(results, ranking)
    (ax,) = [a for a in fig.axes if a.get_xlabel() == "act"]
    dots = [c for c in ax.collections if c.get_label() != "best"]
    assert sum(len(c.get_offsets()) for c in dots) == 4
    (star,) = [c for c in ax.collections if c.get_label() == "best"]
    assert round(star.get_offsets()[0][0]) == 2  # the null category's place on the axis
    assert [t.get_text() for t in ax.get_xticklabels()] == ["relu", "tanh", "null"]


def test_parallel_coordinates_put_a_null_value_on_its_category_not_below_the_axis():
    results = null_study()
    fig = P.parallel_coordinates_figure(results, rank(results))
    ax = fig.axes[0]
    texts = [t.get_text() for t in ax.texts]
    (lines,) = ax.collections
    act = [seg[0][1] for seg in lines.get_segments()]  # each line's point on the first axis
    assert min(act) == 0.0 and max(act) == 1.0 and P.ABSENT not in act
    assert "null" in texts and texts.count("(absent)") == 1  # momentum's, not act's


def test_the_best_config_shows_text_as_written_not_as_json_escapes(tmp_path, capsys):
    """`choice("α", "βeta ü")`: the best block's JSON and `hpoc status` showed "\\u03b1"."""
    from hpoc.cli import main

    from results_dirs import summary, trial_dir

    exp = tmp_path / "s"
    trial_dir(exp, "aaaaa_00000", {"lr": 0.1, "name": "βeta ü"}, [{"val_loss": 0.5}])
    summary(exp, "s", [{"trial_id": "aaaaa_00000", "status": "TERMINATED"}])
    results = load(exp)
    text = table.render_best(results, rank(results))
    assert '"name": "βeta ü"' in text and "\\u" not in text
    assert main(["status", str(exp)]) == 0
    out = capsys.readouterr().out
    assert '"name": "βeta ü"' in out and "\\u" not in out


def test_the_runs_own_last_lines_show_the_best_config_as_written():
    from hpoc.runtime.summary import describe_best

    best = {"trial_id": "aaaaa_00000", "epochs": 1, "config": {"name": "βeta ü"},
            "metrics": {"val_loss": 0.5}}
    text = describe_best({"study": "s", "shard": 0, "num_trials": 1, "wall_s": 1.0,
                          "status_counts": {"TERMINATED": 1}, "best": best,
                          "metrics": [{"name": "val_loss", "mode": "min"}]})
    assert '"name": "βeta ü"' in text


def test_trials_that_reported_but_never_the_objective_are_counted_as_not_shown():
    """A trainer that reported val_accuracy but not the objective in some trials: those had
    no dot and no word, where NaN ones are counted in the title."""
    results = null_study()
    results.trials[1].history = [{"training_iteration": 1, "val_accuracy": 0.5}]
    results.trials[2].history = [{"training_iteration": 1, "val_loss": float("nan")}]
    results._names = None
    fig = P.objective_vs_params_figure(results, rank(results))
    title = fig._suptitle.get_text().replace("\n", " ")
    assert "1 trial with a NaN or infinite val_loss and 1 that never reported it not shown" in title, title


def test_best_so_far_of_a_study_whose_every_trial_failed_says_there_is_none():
    """Every trial failed: the plot's legend named a `best so far` line it did not draw."""
    results = null_study()
    for t in results.trials:
        t.status, t.started_at, t.ended_at = "ERROR", 1000.0, 1010.0
        t.history[0]["timestamp"] = 1005
    fig = P.best_so_far_figure(results, rank(results))
    (legend,) = fig.legends
    assert "best so far" not in [t.get_text() for t in legend.get_texts()]
    notes = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert notes and all("no trial without an error" in n for n in notes), notes


def test_a_number_column_with_null_values_stays_right_aligned():
    """`hidden = choice(32, 64, null)`: its `null` cells made the column text, left-aligned."""
    results = null_study()
    for t, hidden in zip(results.trials, (None, 128, 64, None)):
        t.config["hidden"] = hidden
    results.plan["space"] = {"params": SPACE["params"] + [
        {"name": "hidden", "domain": "choice", "args": {"categories": [64, 128, None]}, "condition": None}]}
    lines = table.render_table(results, rank(results)).splitlines()
    start = lines[0].index("hidden")  # the last column: its cells end where the header ends
    assert [line[start:] for line in lines[2:]] == ["  null", "   128", "    64", "  null"], lines


def _letters(i: int) -> str:
    return "".join(chr(97 + int(d)) for d in str(i))  # 10 -> "ba": a name without digits


def failed_study(n: int) -> Results:
    """n failed trials: most ran out of memory, each asking for another size; some say a
    message of their own."""
    trials = []
    for i in range(n):
        error = (f"RuntimeError: CUDA out of memory. Tried to allocate {20 + i}.00 MiB (GPU 0)"
                 if i % 10 else f"ValueError: bad shard file part-{i:04d}.tar of {_letters(i)}")
        trials.append(Trial(f"aaaaa_{i:05d}", "ERROR", {"lr": 0.1}, [{"training_iteration": 1, "val_loss": 1.0}],
                            error=error))
    return Results("s", Path("/x"), [Metric("val_loss", "min")], trials, [])


def test_errors_alike_but_for_their_numbers_share_a_line_and_the_list_is_short():
    """500 trials out of memory, each for another size, and 50 other errors: the errors block
    printed 500 lines after the table, the best trial's block scrolled out of sight."""
    results = failed_study(500)
    text = table.render(results, rank(results), limit=50)
    errors = text[text.index("errors:\n"):].split("\n\n")[0].splitlines()[1:]
    assert errors[0] == ("  450 trials (aaaaa_00001, aaaaa_00002, aaaaa_00003, …), alike but for numbers or ids: "
                         "RuntimeError: CUDA out of memory. Tried to allocate 21.00 MiB (GPU 0)")
    assert len(errors) == 1 + table.ERROR_LINES
    assert errors[-1].startswith("  … 41 more errors (of 41 trials): --all lists them")
    text = table.render(results, rank(results), limit=None)
    assert len(text[text.index("errors:\n"):].split("\n\n")[0].splitlines()) == 1 + 1 + 50  # --all


def test_the_reports_errors_group_alike_errors_and_stay_short():
    from hpoc.results import html

    results = failed_study(500)
    page = html._errors(rank(results), "results/s")
    assert page.count("<details>") == html.ERROR_ENTRIES
    assert "450 trials, alike but for numbers or ids: RuntimeError: CUDA out of memory." in page
    assert "31 more errors (of 31 trials)" in page and "hpoc results results/s --all" in page


def test_processes_that_exited_with_other_codes_are_other_errors():
    """Three trials killed by the OOM killer (exit code 137) and one whose Python exited 1:
    one line, `alike but for numbers`, showed code 137 and hid the other failure."""
    codes = [137, 137, 1, 137]
    trials = [Trial(f"aaaaa_{i:05d}", "ERROR", {"lr": 0.1}, [{"training_iteration": 1, "val_loss": 1.0}],
                    error=f"the trial's process exited with code {code}") for i, code in enumerate(codes)]
    results = Results("s", Path("/x"), [Metric("val_loss", "min")], trials, [])
    lines = table.render_errors(rank(results)).splitlines()[1:]
    assert lines == ["  3 trials (aaaaa_00000, aaaaa_00001, aaaaa_00003): the trial's process exited with code 137",
                     "  aaaaa_00002: the trial's process exited with code 1"], lines
