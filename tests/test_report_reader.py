"""The report as its reader meets it: an extended study said in the header, a big study's
table cut to its best rows, statuses told apart without colour. Hand-made studies, no Ray."""

from __future__ import annotations

import html
import re
from pathlib import Path

import pytest

from hpoc.cli import main
from hpoc.results import html as H
from hpoc.results import palette, rank
from hpoc.results import plots as P
from hpoc.results.model import Metric, Results, Trial

from results_dirs import TINY_SPEC as SPEC
from results_dirs import summary, trial_dir


def test_the_header_of_an_extended_study_says_so_in_the_words_of_results(tmp_path, capsys):
    """status says `extended`, results says its added trials have not run; the report's
    header said nothing, as if its table were the whole study."""
    from hpoc.compiler import compile_path
    from hpoc.plan import plan_hash
    from hpoc.runtime import marker

    spec = tmp_path / "study.hpo"
    spec.write_text(SPEC)
    exp = tmp_path / "results" / "tiny"
    for i, acc in enumerate((0.5, 0.7, 0.6)):
        trial_dir(exp, f"aaaaa_0000{i}", {"lr": 0.1 / 10 ** i, "epochs": 2}, [{"val_accuracy": acc}] * 2)
    summary(exp, "tiny", [{"trial_id": f"aaaaa_0000{i}", "status": "TERMINATED"} for i in range(3)],
            metric="val_accuracy", mode="max")
    plan = compile_path(spec).plan
    marker.write(exp, marker.fingerprint(plan, plan_hash(plan)), 0)
    out = tmp_path / "r.html"
    assert main(["report", str(spec), "-o", str(out), "--no-png"]) == 0
    assert "is extended" not in out.read_text(encoding="utf-8")
    spec.write_text(SPEC + "trials { num_samples = 2 }\n")
    capsys.readouterr()
    assert main(["results", str(spec)]) == 0
    (said,) = [line for line in capsys.readouterr().err.splitlines() if "extended" in line]
    words = said.removeprefix("hpoc results: ")
    assert main(["report", str(spec), "-o", str(out), "--no-png"]) == 0
    assert f"hpoc report: {words}" in capsys.readouterr().err
    page = out.read_text(encoding="utf-8")
    header = page[page.index("<h1>"):page.index('<div class="cards">')]
    assert html.escape(words.replace("`", "")) in re.sub(r"</?code>", "", header), header


def study(n: int) -> Results:
    """n trials, ranked by val_loss: every tenth failed, a third stopped early."""
    trials = []
    for i in range(n):
        epochs = 2 if i % 3 == 0 else 6
        trials.append(Trial(f"aaaaa_{i:05d}", "ERROR" if i % 10 == 9 else "TERMINATED",
                            {"lr": 0.001 * (i + 1)},
                            [{"training_iteration": e, "val_loss": 1 / (i + 1) + 1 / e}
                             for e in range(1, epochs + 1)],
                            stopped_early=epochs < 6 and i % 10 != 9))
    return Results("s", Path("/x"), [Metric("val_loss", "min")], trials, [], max_epochs=6)


def table_of(page: str) -> tuple[list[str], str]:
    """The trial ids of the visible table's rows, and the rest of the trials section."""
    section = page[page.index("<h2>Trials"):].partition("<h2>Errors")[0]
    visible, _, rest = section.partition("</table>")
    return re.findall(r"<td>(aaaaa_\d+)</td>", visible), rest


def test_a_big_studys_table_shows_its_best_rows_and_says_how_many():
    results = study(2000)
    ranking = rank(results)
    page = H.render(results, ranking, [])
    ids, rest = table_of(page)
    assert ids == [t.trial_id for t in ranking.trials[:H.TABLE_ROWS]]
    assert f"{H.TABLE_ROWS} of 2000 trials shown" in page
    # The next ones folded; the rest only counted, by status: 2,000 rows made a 2 MB page.
    folded = re.findall(r"<td>(aaaaa_\d+)</td>", rest)
    assert folded == [t.trial_id for t in ranking.trials[H.TABLE_ROWS:H.TABLE_ROWS + H.FOLDED_ROWS]]
    assert "<details" in rest[:rest.index("aaaaa_")]
    left = ranking.trials[H.TABLE_ROWS + H.FOLDED_ROWS:]
    errors = sum(t.status == "ERROR" for t in left)
    said = re.sub(r"<[^>]+>", "", rest)
    assert f"{len(left)} more not listed" in said
    assert re.search(rf"\b{errors} {'error' if errors == 1 else 'errors'}[,;]", said), said
    assert "hpoc results" in rest and "--all" in rest


def test_a_small_studys_table_is_whole_and_unfolded():
    results = study(12)
    page = H.render(results, rank(results), [])
    ids, rest = table_of(page)
    assert len(ids) == 12 and "aaaaa_" not in rest and "shown" not in page


def test_a_table_of_a_few_more_than_its_rows_folds_them_all():
    results = study(30)
    ranking = rank(results)
    ids, rest = table_of(H.render(results, ranking, []))
    assert len(ids) == H.TABLE_ROWS
    assert len(re.findall(r"<td>(aaaaa_\d+)</td>", rest)) == 30 - H.TABLE_ROWS
    assert "not listed" not in rest


def test_statuses_are_okabe_ito_colours_each_with_its_own_shape():
    safe = set(palette.OKABE_ITO.values()) | set(palette.GREYS)
    assert set(P.STATUS_COLORS.values()) <= safe
    assert len(set(P.STATUS_COLORS.values())) == len(P.STATUS_COLORS)
    assert len(set(palette.STATUS_MARKERS.values())) == len(P.STATUS_COLORS)
    assert len(set(palette.STATUS_GLYPHS.values())) == len(P.STATUS_COLORS)


def test_the_html_marks_each_status_with_its_plot_colour_and_shape():
    results = study(12)
    page = H.render(results, rank(results), [])
    for label in ("completed", "stopped early", "error"):
        colour, _, glyph = palette.STATUS_STYLE[label]
        css = palette.css_class(label)
        assert re.search(rf'\.{css}::before {{ content: "{glyph}[^"]*"; color: {colour}; }}', page)
        assert f'<td class="{css}">{label}</td>' in page  # the word stays the cell's text
        assert f'<span class="{css}">' in page  # the summary cards carry it too


def test_plots_tell_statuses_apart_by_shape_not_colour_only():
    results = study(30)
    ranking = rank(results)
    for fig in (P.objective_vs_params_figure(results, ranking), P.best_so_far_figure(
            _timed(results), ranking)):
        handles = list(fig.legends[-1].legend_handles)
        labels = [t.get_text().removeprefix("trial ") for t in fig.legends[-1].get_texts()]
        shapes = {label: _marker(h) for h, label in zip(handles, labels) if label in palette.STATUS_STYLE}
        assert set(shapes) >= {"completed", "stopped early", "error"}, labels
        assert len(set(shapes.values())) == len(shapes), shapes


def _timed(results: Results) -> Results:
    for i, trial in enumerate(results.trials):
        trial.started_at, trial.ended_at = 1000.0 + i, 1000.5 + i
        for report in trial.history:
            report["timestamp"] = 1000 + i
    return results


def _marker(handle) -> str:
    from matplotlib.collections import PathCollection

    if isinstance(handle, PathCollection):  # a scatter's legend entry: compare its path
        return str(handle.get_paths()[0].vertices.round(3).tolist())
    from matplotlib.markers import MarkerStyle

    return str(MarkerStyle(handle.get_marker()).get_path().vertices.round(3).tolist())


def test_the_timeline_tells_an_error_bar_apart_by_its_hatch_in_the_legend_too():
    results = _timed(study(12))
    fig = P.timeline_figure(results, rank(results))
    hatches = {t.get_text(): h.get_hatch() for h, t in zip(fig.legends[-1].legend_handles,
                                                          fig.legends[-1].get_texts())}
    assert hatches["error"] and not hatches["completed"]


def test_the_best_row_is_marked_by_a_word_not_only_its_background():
    results = study(12)
    page = H.render(results, rank(results), [])
    # the trial column (the second) of the best row; a pseudo-element: not the id's text
    assert re.search(r'tr\.best td:nth-child\(2\)::after \{ content: "[^"]*best"', page)
    assert re.search(r'<tr class="best"><td class=num>1</td><td>aaaaa_\d+</td>', page)
    assert "\x00" not in page  # a CSS escape Python read as octal wrote a NUL


def test_a_sharded_timeline_too_long_to_name_its_rows_names_its_shards():
    """Past 60 rows the shards were told apart by colour only (ten colours that repeat)."""
    from dataclasses import replace

    from hpoc.results.model import Shard

    results = _timed(study(90))
    for i, trial in enumerate(results.trials):
        trial.shard = i % 3
    results = replace(results, shards=[Shard(k, Path(f"shard-{k}"), True, 30) for k in range(3)])
    ax = P.timeline_figure(results, rank(results)).axes[0]
    ticks = dict(zip([t.get_text() for t in ax.get_yticklabels()], ax.get_yticks()))
    assert list(ticks) == ["shard 0", "shard 1", "shard 2"]
    assert ticks["shard 0"] < ticks["shard 1"] < ticks["shard 2"]  # each at its rows' middle
    assert ticks["shard 1"] == (30 + 59) / 2


def test_a_pareto_front_with_trials_tied_on_both_plotted_objectives_is_drawn():
    """Two trials of the front alike on every objective (the same accuracy of a small
    validation set and the same model size) made the report fail comparing the trials."""
    values = [(0.9861, 10.0), (0.9861, 10.0), (0.8, 20.0)]
    trials = [Trial(f"aaaaa_{i:05d}", "TERMINATED", {"lr": 0.01 * (i + 1)},
                    [{"training_iteration": 1, "acc": a, "size": s}])
              for i, (a, s) in enumerate(values)]
    metrics = [Metric("acc", "max"), Metric("size", "max")]
    results = Results("s", Path("/x"), metrics, trials, [])
    fig = P.pareto_figure(results, rank(results))
    (front,) = [line for line in fig.axes[0].get_lines() if line.get_label().startswith("Pareto")]
    assert len(front.get_xdata()) == 3


@pytest.mark.parametrize("given", ["existing", "new/"])
def test_an_output_directory_gets_the_report_inside_it(tmp_path, capsys, given):
    """`-o reports` (an existing directory) failed with "Is a directory"; `-o new/` wrote a
    file named `new`."""
    exp = tmp_path / "exp"
    trial_dir(exp, "aaaaa_00000", {"lr": 0.1}, [{"val_loss": 0.5}])
    summary(exp, "s", [])
    (tmp_path / "existing").mkdir()
    assert main(["report", str(exp), "-o", f"{tmp_path}/{given}", "--no-png"]) == 0
    assert (tmp_path / given.rstrip("/") / "report.html").is_file()


def test_a_resumed_studys_wall_time_is_said_to_be_its_last_runs():
    """A study of two runs a day apart: the card said `wall time 0h 05m`, its last run's, as
    if the whole study had taken five minutes."""
    from hpoc.results.model import Shard

    trials = [Trial(f"aaaaa_{i:05d}", "TERMINATED", {"lr": 0.1},
                    [{"training_iteration": 1, "timestamp": t, "time_this_iter_s": 60.0, "val_loss": 0.5}])
              for i, t in enumerate((1_000_000.0, 1_086_400.0))]
    results = Results("s", Path("/x"), [Metric("val_loss", "min")], trials,
                      [Shard(0, Path("/x"), True, 2, wall_s=300.0)])
    cards = H._cards(results, rank(results))
    assert "wall time (last run)" in cards and "first trial to last report" in cards, cards
    one = Results("s", Path("/x"), [Metric("val_loss", "min")], trials[:1],
                  [Shard(0, Path("/x"), True, 1, wall_s=300.0)])
    assert "wall time<" in H._cards(one, rank(one))  # one run: as before
