"""What a reader of the report's plots sees: labels that do not overlap, legends beside the
data rather than over it, the best-so-far line above the dots. Hand-made studies, no Ray."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from hpoc.results import rank
from hpoc.results import plots as P
from hpoc.results.model import Metric, Results, Shard, Trial

SPACE = {"params": [
    {"name": "optimizer.lr", "domain": "loguniform", "args": {"lower": 1e-4, "upper": 0.1},
     "condition": None},
    {"name": "dropout", "domain": "uniform", "args": {"lower": 0.0, "upper": 0.5},
     "condition": None},
    {"name": "batch_size", "domain": "choice", "args": {"categories": [32, 64, 128]},
     "condition": None}]}


def study(n: int = 400) -> Results:
    """n trials spread over lr's three decades; every tenth failed, a third stopped early."""
    rng = random.Random(0)
    trials = []
    for i in range(n):
        config = {"optimizer": {"lr": 10 ** rng.uniform(-4, -1)}, "dropout": rng.uniform(0, 0.5),
                  "batch_size": rng.choice([32, 64, 128])}
        epochs = 2 if i % 10 == 9 else (3 if i % 3 == 0 else 6)
        history = [{"training_iteration": e, "timestamp": 1000 + 10 * i + e,
                    "time_total_s": float(e), "val_loss": rng.uniform(0.02, 0.6) / e}
                   for e in range(1, epochs + 1)]
        status = "ERROR" if i % 10 == 9 else "TERMINATED"
        trials.append(Trial(f"8f3a2_{i:05d}", status, config, history, started_at=1000.0 + 10 * i,
                            ended_at=1000.0 + 10 * i + epochs))
    return Results("s", Path("/x"), [Metric("val_loss", "min")], trials, [],
                   plan={"space": SPACE, "trials": {"stop": {"training_iteration": 6}}})


def two_objectives() -> Results:
    """study()'s trials, each also reporting an accuracy that trades off against its loss."""
    from dataclasses import replace

    results = study()
    rng = random.Random(2)
    for trial in results.trials:
        for report in trial.history:
            report["val_accuracy"] = 1 - report["val_loss"] * rng.uniform(0.5, 1.5)
    return replace(results, metrics=[Metric("val_loss", "min"), Metric("val_accuracy", "max")],
                   _names=None)


def drawn(fig):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return canvas.get_renderer()


def x_label_boxes(results: Results, param: str) -> list:
    """The boxes of the tick labels shown under `param`'s panel, left to right."""
    fig = P.objective_vs_params_figure(results, rank(results))
    renderer = drawn(fig)
    (ax,) = [a for a in fig.axes if a.get_xlabel().startswith(param)]
    lo, hi = ax.get_xlim()
    return sorted((t.get_window_extent(renderer) for t, x in zip(ax.get_xticklabels(), ax.get_xticks())
                   if t.get_text() and t.get_visible() and lo <= x <= hi), key=lambda b: b.x0)


def test_log_axis_tick_labels_do_not_overlap():
    boxes = x_label_boxes(study(), "optimizer.lr")
    assert len(boxes) >= 3  # the axis is still read: a label per decade at least
    assert all(a.x1 < b.x0 for a, b in zip(boxes, boxes[1:])), [(b.x0, b.x1) for b in boxes]


@pytest.mark.parametrize("build", [P.objective_vs_params_figure, P.best_so_far_figure,
                                   P.pareto_figure, P.timeline_figure])
def test_legends_sit_beside_the_data_not_over_it(build):
    results = two_objectives()
    fig = build(results, rank(results))
    renderer = drawn(fig)
    legends = list(fig.legends) + [a.get_legend() for a in fig.axes if a.get_legend()]
    assert legends
    plots = [a.get_window_extent(renderer) for a in fig.axes if a.get_visible()]
    for legend in legends:
        box = legend.get_window_extent(renderer)
        assert not any(box.overlaps(p) for p in plots), legend.get_texts()[0].get_text()


def test_best_so_far_line_is_drawn_above_the_trials_dots():
    results = study()
    fig = P.best_so_far_figure(results, rank(results))
    for ax in fig.axes:
        (line,) = [ln for ln in ax.get_lines()]
        assert all(line.get_zorder() > c.get_zorder() for c in ax.collections)


def test_best_so_far_line_has_a_colour_no_trial_dot_has():
    """It was the blue of completed trials: among thousands of them, not to be found."""
    from matplotlib.colors import to_hex

    results = study()
    fig = P.best_so_far_figure(results, rank(results))
    for ax in fig.axes:
        (line,) = ax.get_lines()
        dots = {to_hex(c) for coll in ax.collections for c in coll.get_facecolors()}
        assert to_hex(line.get_color()) not in dots


def test_the_best_trials_curve_stands_out_among_hundreds():
    """Past a dozen trials the lines took the next colour of a gradient each: the best one's
    was its neighbours' colour, one line of hundreds."""
    results = study()
    ranking = rank(results)
    fig = P.learning_curves_figure(results, ranking)
    ax = fig.axes[0]
    (best,) = [ln for ln in ax.get_lines() if ln.get_linestyle() == "-"]
    (others,) = ax.collections
    from matplotlib.colors import to_rgb

    b = to_rgb(best.get_color())
    nearest = min(sum((x - y) ** 2 for x, y in zip(b, c[:3])) ** 0.5
                  for c in others.get_colors())
    assert nearest > 0.3


def test_learning_curves_legend_sits_beside_the_curves():
    results = study()
    fig = P.learning_curves_figure(results, rank(results))
    renderer = drawn(fig)
    (legend,) = fig.legends
    assert "error (trial failed)" in [t.get_text() for t in legend.get_texts()]
    box = legend.get_window_extent(renderer)
    assert not any(box.overlaps(a.get_window_extent(renderer)) for a in fig.axes
                   if a.get_visible())


def test_no_plot_text_is_too_small_to_read_on_a_projector():
    """The parallel coordinates' values and a timeline of 21 to 60 rows were 7 pt: read off
    a projected report from the back of a room, a blur."""
    from matplotlib.text import Text

    results = study(40)  # a timeline naming its rows, more than 20 of them
    small = {(name, t.get_text(), t.get_fontsize())
             for name, _, _, fig in P.figures(results, rank(results))
             for t in fig.findobj(Text) if t.get_visible() and t.get_text()
             and t.get_fontsize() < 8}
    assert not small, sorted(small)[:5]


LONG = ["model.encoder.attention.num_heads", "model.encoder.attention.dropout_rate",
        "optimizer.learning_rate", "optimizer.weight_decay", "data.augmentation.random_crop_scale",
        "model.decoder.hidden_size", "scheduler.warmup_steps", "batch_size", "label_smoothing",
        "model.encoder.num_layers"]


def many_long_params() -> Results:
    rng = random.Random(1)
    trials = []
    for i in range(30):
        config = {name: rng.uniform(1, 100) for name in LONG}  # flat keys, dots and all
        trials.append(Trial(f"{i:05d}", "TERMINATED", config,
                            [{"training_iteration": 1, "val_loss": rng.uniform(0.1, 1)}]))
    space = {"params": [{"name": n, "domain": "uniform", "args": {}, "condition": None}
                        for n in LONG]}
    return Results("s", Path("/x"), [Metric("val_loss", "min")], trials, [],
                   plan={"space": space})


def test_parallel_coordinates_of_many_long_names_fit_the_page_legibly():
    """Ten parameters made a 21-inch figure the page shrank to half (its text to 4 pt), and
    names of thirty characters ran into each other."""
    results = many_long_params()
    fig = P.parallel_coordinates_figure(results, rank(results))
    assert fig.get_figwidth() <= P.PAGE_WIDTH_IN
    renderer = drawn(fig)
    ax = fig.axes[0]
    boxes = sorted((t.get_window_extent(renderer) for t in ax.get_xticklabels()),
                   key=lambda b: b.x0)
    assert len(boxes) == len(LONG) + 1
    assert all(a.x1 < b.x0 for a, b in zip(boxes, boxes[1:]))


@pytest.mark.parametrize("make", [study, many_long_params])
def test_no_figure_is_wider_than_the_reports_column(make):
    """A wider one is shrunk to fit, its text with it."""
    results = make()
    widths = {name: fig.get_figwidth() for name, _, _, fig in P.figures(results, rank(results))}
    assert all(w <= P.PAGE_WIDTH_IN for w in widths.values()), widths


def test_a_legend_under_a_narrow_figure_stays_inside_it():
    """The Pareto front's three entries in one row ran past its right edge."""
    results = two_objectives()
    fig = P.pareto_figure(results, rank(results))
    renderer = drawn(fig)
    (legend,) = fig.legends
    box, page = legend.get_window_extent(renderer), fig.bbox
    assert page.x0 <= box.x0 and box.x1 <= page.x1


def test_a_sharded_studys_plots_name_the_best_trials_shard():
    """Every shard numbers its trials from 00000: "best trial 8f3a2_00004" named one of
    two hundred trials of that id."""
    from dataclasses import replace

    results = two_objectives()
    for i, trial in enumerate(results.trials):
        trial.shard, trial.trial_id = i % 2, f"8f3a2_{i // 2:05d}"
    results = replace(results, shards=[Shard(k, Path(f"/x/shard-{k}"), True, 200) for k in (0, 1)])
    assert results.sharded
    ranking = rank(results)
    best = ranking.best
    said = f"best trial {best.trial_id} (shard {best.shard})"
    curves = P.learning_curves_figure(results, ranking)
    assert said in [t.get_text() for lg in curves.legends for t in lg.get_texts()]
    pareto = P.pareto_figure(results, ranking)
    assert any(t.get_text().startswith(said) for lg in pareto.legends for t in lg.get_texts())


def test_the_pareto_front_is_not_drawn_in_the_error_colour():
    """Vermillion marks a failed trial everywhere else in the report; the front was vermillion."""
    from matplotlib.colors import same_color

    from hpoc.results.palette import ERROR

    results = two_objectives()
    fig = P.pareto_figure(results, rank(results))
    (front,) = [line for line in fig.axes[0].lines if line.get_label().startswith("Pareto front")]
    assert not same_color(front.get_color(), ERROR)
    (legend,) = fig.legends  # three entries: one column, not two and one
    assert legend._ncols in (1, 3)


def narrow_lr(n: int = 6) -> Results:
    """A loguniform lr whose trials all fell within one decade (0.0011 to 0.0034)."""
    space = {"params": [{"name": "lr", "domain": "loguniform",
                         "args": {"lower": 1e-4, "upper": 0.1}, "condition": None}]}
    trials = [Trial(f"aaaaa_{i:05d}", "TERMINATED", {"lr": 0.0011 + 0.0023 * i / (n - 1)},
                    [{"training_iteration": 1, "val_loss": 1.0 + i / 10}]) for i in range(n)]
    return Results("s", Path("/x"), [Metric("val_loss", "min")], trials, [], plan={"space": space})


def test_log_axis_within_one_decade_has_readable_labels():
    """matplotlib falls back to a linear tick every 0.00025 there: 0.0015, 0.00175, 0.002, ...
    ran into each other."""
    boxes = x_label_boxes(narrow_lr(), "lr")
    assert len(boxes) >= 2  # the axis is still read
    assert all(a.x1 < b.x0 for a, b in zip(boxes, boxes[1:])), [(b.x0, b.x1) for b in boxes]


def test_log_axis_over_two_decades_of_small_values_has_readable_labels():
    """lr from 1.1e-05 to 0.0011 (a loguniform(1e-5, 1e-1) study's trials): 1-2-5 labels ran
    `5e-05` into `0.0001` and `0.0005` into `0.001`."""
    space = {"params": [{"name": "lr", "domain": "loguniform",
                         "args": {"lower": 1e-5, "upper": 0.1}, "condition": None}]}
    lrs = [1.138e-05, 3.77e-05, 0.000213, 0.000347, 0.00038, 0.000622, 0.001115]
    trials = [Trial(f"aaaaa_{i:05d}", "TERMINATED", {"lr": lr},
                    [{"training_iteration": 1, "val_loss": 1.0 + i / 10}]) for i, lr in enumerate(lrs)]
    results = Results("s", Path("/x"), [Metric("val_loss", "min")], trials, [], plan={"space": space})
    boxes = x_label_boxes(results, "lr")
    assert len(boxes) >= 3  # the axis is still read: a label per decade at least
    assert all(a.x1 < b.x0 for a, b in zip(boxes, boxes[1:])), [(b.x0, b.x1) for b in boxes]


def test_the_title_of_one_parameters_panel_fits_its_figure():
    """One hyperparameter makes a third of the page wide figure: its title was cut at both ends."""
    results = narrow_lr()
    fig = P.objective_vs_params_figure(results, rank(results))
    renderer = drawn(fig)
    box = fig._suptitle.get_window_extent(renderer)
    assert fig.bbox.x0 <= box.x0 and box.x1 <= fig.bbox.x1, (box, fig.bbox)


def test_parallel_coordinates_of_dozens_of_parameters_stay_legible():
    """35 hyperparameters made 36 axes 30 px apart: their names and values ran together."""
    names = [f"p{i}" for i in range(35)]
    rng = random.Random(3)
    trials = [Trial(f"{i:05d}", "TERMINATED", {n: rng.uniform(0, 1) for n in names},
                    [{"training_iteration": 1, "val_loss": rng.uniform(0.1, 1)}]) for i in range(8)]
    space = {"params": [{"name": n, "domain": "uniform", "args": {}, "condition": None} for n in names]}
    results = Results("s", Path("/x"), [Metric("val_loss", "min")], trials, [], plan={"space": space})
    fig = P.parallel_coordinates_figure(results, rank(results))
    renderer = drawn(fig)
    ax = fig.axes[0]
    names_ = sorted((t.get_window_extent(renderer) for t in ax.get_xticklabels()), key=lambda b: b.x0)
    assert all(a.x1 < b.x0 for a, b in zip(names_, names_[1:]))
    for y in (0.0, 1.0):  # the values written at the foot and the head of each axis
        row = sorted((t.get_window_extent(renderer) for t in ax.texts
                      if t.get_visible() and t.get_position()[1] == y), key=lambda b: b.x0)
        assert all(a.x1 < b.x0 for a, b in zip(row, row[1:])), y
    assert "of 35" in ax.get_title()  # says it shows only some of them


def test_best_so_far_counts_the_trials_that_finished_without_a_value():
    """Two trials that diverged (NaN) finished before the first with a value: it was drawn as
    the first trial finished, as if the search had found it at once."""
    values = [float("nan"), float("nan"), 0.5, 0.3]
    trials = [Trial(f"aaaaa_{i:05d}", "TERMINATED", {"lr": 0.01 * (i + 1)},
                    [{"training_iteration": 1, "timestamp": 1000 + 10 * i, "val_loss": v}],
                    started_at=995.0 + 10 * i, ended_at=1000.0 + 10 * i)
              for i, v in enumerate(values)]
    results = Results("s", Path("/x"), [Metric("val_loss", "min")], trials, [])
    fig = P.best_so_far_figure(results, rank(results))
    _, ax_count = fig.axes
    step = ax_count.get_lines()[0]
    assert list(step.get_xdata()) == [3, 4] and list(step.get_ydata()) == [0.5, 0.3]
    assert ax_count.get_xlim()[1] >= 4


def test_learning_curves_of_one_epoch_each_show_every_trial():
    """`epochs = 1` and more trials than the legend names: each curve a single point, drawn
    as a line without a marker, so only the best trial's star showed; the axis read 0.945,
    0.960, ... for epoch 1."""
    from dataclasses import replace

    from matplotlib.collections import PathCollection

    rng = random.Random(4)
    trials = [Trial(f"aaaaa_{i:05d}", "TERMINATED", {"lr": 10 ** rng.uniform(-4, -1)},
                    [{"training_iteration": 1, "timestamp": 1000 + i, "val_loss": rng.uniform(0.1, 1)}])
              for i in range(20)]
    for max_epochs in (None, 1):
        results = replace(Results("s", Path("/x"), [Metric("val_loss", "min")], trials, []),
                          max_epochs=max_epochs)
        fig = P.learning_curves_figure(results, rank(results))
        drawn(fig)
        ax = fig.axes[0]
        points = {(x, y) for line in ax.get_lines() if line.get_marker() not in ("None", "", None)
                  for x, y in zip(line.get_xdata(), line.get_ydata())}
        points |= {tuple(p) for c in ax.collections if isinstance(c, PathCollection)
                   for p in c.get_offsets()}
        assert len(points) == len(trials), (max_epochs, len(points))
        lo, hi = ax.get_xlim()
        ticks = [x for x in ax.get_xticks() if lo <= x <= hi]
        assert ticks == [1.0], (max_epochs, ticks)


def test_long_parameter_names_under_neighbouring_panels_do_not_run_together():
    """`a_group_with_a_long_name.warmup_fraction_of_the_first_epoch` and its neighbours: the
    x-axis names, wider than their panels, ran into each other."""
    names = [f"regulariser_group_number_{i}.warmup_fraction_of_the_first_epoch_{i}" for i in range(3)]
    space = {"params": [{"name": n, "domain": "uniform", "args": {"lower": 0, "upper": 1},
                         "condition": None} for n in names]}
    trials = [Trial(f"aaaaa_{i:05d}", "TERMINATED",
                    {f"regulariser_group_number_{k}": {f"warmup_fraction_of_the_first_epoch_{k}": i / 5}
                     for k in range(3)},
                    [{"training_iteration": 1, "val_loss": 1.0 + i / 10}]) for i in range(5)]
    results = Results("s", Path("/x"), [Metric("val_loss", "min")], trials, [], plan={"space": space})
    fig = P.objective_vs_params_figure(results, rank(results))
    renderer = drawn(fig)
    boxes = sorted((ax.xaxis.label.get_window_extent(renderer) for ax in fig.axes if ax.get_visible()),
                   key=lambda b: b.x0)
    assert len(boxes) == 3
    assert all(a.x1 < b.x0 for a, b in zip(boxes, boxes[1:])), [(b.x0, b.x1) for b in boxes]
    assert all(fig.bbox.x0 <= b.x0 and b.x1 <= fig.bbox.x1 for b in boxes)
