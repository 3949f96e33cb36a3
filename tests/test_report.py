"""`hpoc report`: plots and the self-contained HTML, checked in a real headless browser."""

from __future__ import annotations

import base64
import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from hpoc.cli import main
from hpoc.results import load, rank
from hpoc.results import plots as P

from results_fixtures import study_data

pytestmark = pytest.mark.ray


@pytest.fixture(scope="session")
def data(tmp_path_factory):
    return study_data(tmp_path_factory)


@pytest.fixture(scope="module")
def report(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "report.html"
    assert main(["report", str(data.build_sharded), "-o", str(out)]) == 0
    return out


def read_png(data: bytes) -> np.ndarray:
    import io

    from matplotlib.image import imread

    return imread(io.BytesIO(data), format="png")


# ------------------------------------------------------------------ files

def test_report_writes_html_and_pngs_beside_it(report, capsys):
    html_text = report.read_text(encoding="utf-8")
    images = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html_text)
    names = [p[0] for p in P.PLOTS]
    assert len(images) == len(names)
    for name, encoded in zip(names, images):
        png = report.with_name(f"report-{name}.png")
        assert png.read_bytes() == base64.b64decode(encoded)
        pixels = read_png(png.read_bytes())
        assert pixels.shape[0] > 200 and pixels.shape[1] > 400
        assert pixels[..., :3].std() > 0.05, f"{png.name} looks blank"


def test_report_has_no_external_resource(report):
    text = report.read_text(encoding="utf-8")
    refs = re.findall(r'(?:src|href|action)\s*=\s*["\']([^"\']*)', text, flags=re.I)
    assert refs and all(r.startswith("data:") or r.startswith("#") for r in refs), refs
    assert not re.search(r"url\s*\(|@import|<link|<iframe|<object|<embed", text, flags=re.I)
    assert "http://" not in text and "https://" not in text
    assert "Content-Security-Policy" in text and "default-src 'none'" in text


def test_report_content(report, data):
    text = report.read_text(encoding="utf-8")
    results = load(data.build_sharded)
    best = rank(results).best
    assert "hpoc report: fmnist-sharded" in text
    assert f"best trial: {best.trial_id} (shard {best.shard})" in text
    assert html.escape(json.dumps(best.config, indent=2, sort_keys=True)) in text
    assert text.count("<tr") == len(results.trials) + 1
    assert "RuntimeError: loss diverged (nan) at epoch 3" in text
    assert '<tr class="best">' in text


def test_report_cli_errors_are_clear(tmp_path, capsys):
    assert main(["report", str(tmp_path / "missing"), "-o", str(tmp_path / "r.html")]) == 2
    err = capsys.readouterr().err
    assert "no such file or directory" in err and "Traceback" not in err
    assert not (tmp_path / "r.html").exists()


def test_report_respects_filters(data, tmp_path, capsys):
    out = tmp_path / "top.html"
    assert main(["report", str(data.build_single), "-o", str(out), "--top", "3",
                 "--no-png"]) == 0
    text = out.read_text(encoding="utf-8")
    assert text.count("<tr") == 3 + 1
    assert list(tmp_path.glob("*.png")) == []


# ------------------------------------------------------------------ plots

@pytest.fixture(scope="module")
def single(data):
    results = load(data.build_single)
    return results, rank(results)


def test_learning_curves_mark_stopped_and_failed_trials(single):
    results, ranking = single
    fig = P.learning_curves_figure(results, ranking)
    ax = fig.axes[0]
    assert ax.get_title() == "val_loss (lower is better)"
    assert ax.get_xlabel() == "epoch (training iteration)" and ax.get_ylabel() == "val_loss"
    def points(marker):
        return [p for ln in ax.get_lines() if ln.get_marker() == marker
                for p in zip(ln.get_xdata(), ln.get_ydata())]

    drawn = [t for t in results.trials if t.value("val_loss") is not None]
    stopped = [t for t in drawn if t.stopped_early]
    failed = [t for t in drawn if t.status == "ERROR"]
    assert stopped and failed
    assert sorted(points("x")) == sorted((t.epochs, t.value("val_loss")) for t in stopped)
    assert sorted(points("X")) == sorted((t.epochs, t.value("val_loss")) for t in failed)
    assert points("*") == [(ranking.best.epochs, ranking.value(ranking.best))]
    # Stopped trials end early on the x axis.
    assert max(x for x, _ in points("x")) < results.max_epochs
    # Every other trial is one line of the collection; failed ones dashed.
    (lines,) = ax.collections
    assert len(lines.get_segments()) == len(drawn) - 1
    legend = [t.get_text() for lg in fig.legends for t in lg.get_texts()]  # beside the panels
    assert "stopped early by scheduler" in legend


def test_objective_vs_params_uses_log_axis_for_log_domains(single):
    results, ranking = single
    fig = P.objective_vs_params_figure(results, ranking)
    axes = {ax.get_xlabel(): ax for ax in fig.axes if ax.get_visible()}
    assert axes["optimizer.lr (log scale)"].get_xscale() == "log"
    assert axes["dropout"].get_xscale() == "linear"
    ticks = [t.get_text() for t in axes["batch_size"].get_xticklabels()]
    assert ticks == ["32", "64", "128"]  # categories in the plan's order
    assert all(ax.get_ylabel() == "val_loss (last)" for ax in axes.values())


def test_parallel_coordinates_is_coloured_by_objective(single):
    results, ranking = single
    fig = P.parallel_coordinates_figure(results, ranking)
    ax, bar = fig.axes
    assert [t.get_text() for t in ax.get_xticklabels()] == [
        "batch_size", "optimizer.name", "optimizer.lr (log)", "dropout", "val_loss"]
    assert bar.get_ylabel() == "val_loss (lower is better)"
    scored = [t for t in results.trials if ranking.value(t) is not None]
    (lines,) = ax.collections
    assert len(lines.get_segments()) == len(scored)
    assert all(len(seg) == 5 for seg in lines.get_segments())  # 4 parameters + objective
    # Coloured by the objective; the best trial is drawn last (on top) in the brightest colour.
    colours = [tuple(c) for c in lines.get_colors()]
    assert len(set(colours)) > 1
    best_y = lines.get_segments()[-1][-1][1]
    assert best_y == pytest.approx(0.0)  # objective axis: 0 = lowest val_loss


def test_best_so_far_never_gets_worse(single):
    results, ranking = single
    fig = P.best_so_far_figure(results, ranking)
    ax_time, ax_count = fig.axes
    assert "time since study start" in ax_time.get_xlabel()
    assert ax_count.get_xlabel() == "trials finished"
    for ax in (ax_time, ax_count):
        step = ax.get_lines()[0].get_ydata()
        assert all(b <= a for a, b in zip(step, step[1:]))
    assert ax_count.get_lines()[0].get_ydata()[-1] == pytest.approx(ranking.value(ranking.best))


def test_shard_plot_shows_which_shard_ran_what(data):
    results = load(data.build_sharded)
    fig = P.timeline_figure(results, rank(results))
    ax = fig.axes[0]
    assert "shard" in ax.get_title().lower()
    (legend,) = fig.legends  # under the plot, not over its bars
    legend = [t.get_text() for t in legend.get_texts()]
    per_shard = {s.index: s.num_trials for s in results.shards}
    assert f"shard 0 ({per_shard[0]} trials)" in legend
    assert f"shard 1 ({per_shard[1]} trials)" in legend
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert sum(lbl.startswith("s1 ") for lbl in labels) == per_shard[1]


# ------------------------------------------------------------------ real browser

PROBE = """<script>
window.__errors = [];
window.addEventListener("error", function (e) {
  __errors.push("error: " + (e.message || (e.target && (e.target.src || e.target.href))));
}, true);
document.addEventListener("securitypolicyviolation", function (e) {
  __errors.push("csp: " + e.blockedURI);
});
window.addEventListener("load", function () {
  var imgs = Array.prototype.slice.call(document.images);
  var th = document.querySelectorAll("table.sortable th")[1];
  th.click();
  var ids = Array.prototype.map.call(document.querySelectorAll("table.sortable tbody tr"),
                                     function (r) { return r.cells[1].textContent; });
  var m = document.createElement("pre");
  m.id = "hpoc-probe";
  m.textContent = JSON.stringify({
    images: imgs.length,
    decoded: imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length,
    errors: __errors, title: document.title, sorted_ids: ids});
  document.body.appendChild(m);
});
</script>"""


def chromium() -> str:
    exe = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")
                if shutil.which(n)), None)
    if exe is None:
        if os.environ.get("HPOC_REQUIRE_BROWSER") == "1":
            pytest.fail("HPOC_REQUIRE_BROWSER=1 but no chromium on PATH")
        pytest.skip("chromium not installed (apt-get install chromium); the report is only "
                    "checked in a browser where one is available (HPOC_REQUIRE_BROWSER=1 "
                    "makes this a failure)")
    return exe


def run_browser(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [chromium(), "--headless", "--no-sandbox", "--disable-gpu",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--no-first-run", "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'profile'}",
           *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def test_report_loads_in_headless_browser(report, tmp_path):
    text = report.read_text(encoding="utf-8")
    probed = tmp_path / "probed.html"
    head_end = text.index("</title>")  # after the CSP meta: the probe obeys the same policy
    probed.write_text(text[:head_end] + "</title>" + PROBE + text[head_end + 8:],
                      encoding="utf-8")
    proc = run_browser(tmp_path, "--virtual-time-budget=10000", "--dump-dom",
                       probed.as_uri())
    match = re.search(r'<pre id="hpoc-probe">(.*?)</pre>', proc.stdout, flags=re.S)
    assert match, f"probe did not run; chromium said:\n{proc.stderr[-2000:]}"
    probe = json.loads(html.unescape(match.group(1)))
    assert probe["errors"] == []
    assert probe["title"] == "hpoc report: fmnist-sharded"
    assert probe["images"] == len(P.PLOTS) and probe["decoded"] == probe["images"]
    assert probe["sorted_ids"] == sorted(probe["sorted_ids"])  # the header click sorted it


def test_report_screenshot_is_not_blank(report, tmp_path):
    shot = tmp_path / "shot.png"
    proc = run_browser(tmp_path, "--window-size=1280,2400", f"--screenshot={shot}",
                       "--virtual-time-budget=10000", report.as_uri())
    assert shot.is_file(), proc.stderr[-2000:]
    pixels = read_png(shot.read_bytes())[..., :3]
    ink = pixels.min(axis=-1) < 0.9  # anything darker than the near-white page and figures
    assert ink.mean() > 0.02, "the page looks empty"
    colours = np.unique((pixels.reshape(-1, 3) * 255).astype(np.uint8), axis=0)
    assert len(colours) > 200, "no plot seems to be drawn"


def test_report_of_a_crashed_study(data, tmp_path, capsys):
    """Running trials, a trial with no report at all, no summary.json: still a full report."""
    out = tmp_path / "partial.html"
    assert main(["report", str(data.build_partial), "-o", str(out)]) == 0
    err = capsys.readouterr().err
    assert "no summary.json" in err
    text = out.read_text(encoding="utf-8")
    assert text.count("data:image/png;base64,") == len(P.PLOTS)
    assert "no summary.json" in text  # the warning is in the page too
    assert 'class="s-running"' in text


def test_report_without_any_metric_says_so():
    from hpoc.results import html as H
    from hpoc.results.model import Results, Trial

    results = Results("empty", Path("/x"), [], [Trial("a", "PENDING", {"lr": 0.1})], [])
    ranking = rank(results)
    assert P.make_plots(results, ranking) == []
    text = H.render(results, ranking, [])
    assert "No plot: no trial has reported a metric yet." in text
    assert "<td>a</td>" in text


def test_best_star_sits_on_the_best_trials_own_jittered_dot():
    from hpoc.results.model import Metric, Results, Trial

    space = {"params": [{"name": "hidden", "domain": "choice",
                         "args": {"categories": [32, 64]}, "condition": None}]}
    trials = [Trial(f"t{i}", "TERMINATED", {"hidden": h},
                    [{"training_iteration": 1, "val_loss": loss}])
              for i, (h, loss) in enumerate([(32, 0.5), (64, 0.2), (32, 0.4), (64, 0.3)])]
    results = Results("s", Path("/x"), [Metric("val_loss", "min")], trials, [],
                      plan={"space": space})
    ranking = rank(results)
    (ax,) = [a for a in P.objective_vs_params_figure(results, ranking).axes if a.get_visible()]
    dots = [tuple(p) for c in ax.collections if c.get_label() != "best"
            for p in c.get_offsets()]
    (star,) = [tuple(c.get_offsets()[0]) for c in ax.collections if c.get_label() == "best"]
    assert star[1] == 0.2 and star != (1.0, 0.2)  # jittered, not at the category itself
    assert star in dots


def test_objective_vs_params_says_what_a_diverged_trial_leaves_out():
    """A trial whose objective is inf (or NaN) has no dot: the only trial with `momentum`
    left its panel an empty 0-1 axis, as if no trial had the parameter, and nothing said a
    trial was missing from every panel."""
    from hpoc.results.model import Metric, Results, Trial

    space = {"params": [
        {"name": "lr", "domain": "uniform", "args": {"lower": 0.0, "upper": 1.0}, "condition": None},
        {"name": "momentum", "domain": "uniform", "args": {"lower": 0.5, "upper": 0.9}, "condition": None}]}
    trials = [Trial("t0", "TERMINATED", {"lr": 0.1}, [{"training_iteration": 1, "val_loss": 0.5}]),
              Trial("t1", "TERMINATED", {"lr": 0.2}, [{"training_iteration": 1, "val_loss": 0.4}]),
              Trial("t2", "TERMINATED", {"lr": 0.3, "momentum": 0.6},
                    [{"training_iteration": 1, "val_loss": float("inf")}])]
    results = Results("s", Path("/x"), [Metric("val_loss", "min")], trials, [],
                      plan={"space": space})
    fig = P.objective_vs_params_figure(results, rank(results))
    assert "1 trial with a NaN or infinite val_loss not shown" in fig._suptitle.get_text().replace("\n", " ")
    lr, momentum = [a for a in fig.axes if a.get_visible()][:2]
    assert [t.get_text() for t in lr.texts] == []
    assert [t.get_text() for t in momentum.texts] == ["no trial with a finite val_loss has it"]


def test_a_learning_curve_panel_without_a_finite_value_says_so():
    """Every trial reported its objective as NaN: its panel was an empty -0.04..0.04 axis."""
    from hpoc.results.model import Metric, Results, Trial

    trials = [Trial(f"t{i}", "TERMINATED", {"lr": 0.1},
                    [{"training_iteration": e, "val_acc": float("nan"), "loss": 0.5 / e}
                     for e in (1, 2)]) for i in range(2)]
    results = Results("s", Path("/x"), [Metric("val_acc", "max")], trials, [])
    acc, loss = P.learning_curves_figure(results, rank(results)).axes[:2]
    assert (acc.get_title(), loss.get_title()) == ("val_acc (higher is better)", "loss")
    assert [t.get_text() for t in acc.texts] == ["no finite value reported (NaN or inf)"]
    assert list(loss.texts) == []


def test_report_labels_a_trial_that_reported_nothing(tmp_path, capsys):
    from results_dirs import summary, trial_dir

    exp = tmp_path / "exp"
    trial_dir(exp, "aaaaa_00000", {"lr": 0.1}, [{"val_loss": 0.5}])
    trial_dir(exp, "aaaaa_00001", {"lr": 0.01}, [])
    summary(exp, "s", [{"trial_id": t, "status": "TERMINATED"} for t in ("aaaaa_00000", "aaaaa_00001")])
    out = tmp_path / "r.html"
    assert main(["report", str(exp), "-o", str(out), "--no-png"]) == 0
    text = out.read_text(encoding="utf-8")
    assert '<td class="s-no-reports">no reports</td>' in text
    assert '<b>1</b><span class="s-no-reports">no reports</span>' in text


def test_report_before_the_first_report(tmp_path, capsys):
    from results_dirs import trial_dir
    from results_fixtures import make_plan, write_plan

    storage = tmp_path / "storage"
    trial_dir(storage / "slow", "aaaaa_00000", {"batch_size": 32}, [], done=False)
    write_plan(tmp_path / "build", make_plan(storage, "slow"))
    out = tmp_path / "r.html"
    assert main(["report", str(tmp_path / "build"), "-o", str(out)]) == 0
    assert "no trial has reported the objective" in capsys.readouterr().err
    assert "No plot: no trial has reported a metric yet." in out.read_text(encoding="utf-8")


def test_parallel_coordinates_put_an_absent_conditional_parameter_below_its_axis(tmp_path):
    """A trial without `momentum` (adam) must not cross the momentum axis at a value."""
    from results_dirs import summary, trial_dir

    exp = tmp_path / "results" / "cond"
    trial_dir(exp, "ggggg_00000", {"opt": "sgd", "momentum": 0.5, "lr": 0.1}, [{"val_loss": 0.5}])
    trial_dir(exp, "ggggg_00001", {"opt": "sgd", "momentum": 0.9, "lr": 0.2}, [{"val_loss": 0.4}])
    trial_dir(exp, "ggggg_00002", {"opt": "sgd", "momentum": 0.7, "lr": 0.3}, [{"val_loss": 0.3}])
    trial_dir(exp, "ggggg_00003", {"opt": "adam", "lr": 0.4}, [{"val_loss": 0.6}])
    trial_dir(exp, "ggggg_00004", {"opt": "adam", "lr": 0.5}, [{"val_loss": 0.2}])
    summary(exp, "cond", [])  # objective: min val_loss
    results = load(exp)
    fig = P.parallel_coordinates_figure(results, rank(results))
    ax = fig.axes[0]
    names = [t.get_text() for t in ax.get_xticklabels()]
    x = names.index("momentum")
    lines = ax.collections[0].get_segments()
    assert len(lines) == 5 and all(len(line) == len(names) for line in lines)
    at_axis = sorted(float(line[x][1]) for line in lines)
    assert at_axis[0] == at_axis[1] < 0 <= at_axis[2]  # the two adam trials, below the axis
    assert "(absent)" in [t.get_text() for t in ax.texts]


def test_best_so_far_counts_whole_trials_for_a_one_trial_study(tmp_path):
    from results_dirs import summary, trial_dir

    exp = tmp_path / "results" / "one"
    trial_dir(exp, "hhhhh_00000", {"lr": 0.1}, [{"val_loss": 0.5}, {"val_loss": 0.4}])
    summary(exp, "one", [])
    results = load(exp)
    fig = P.best_so_far_figure(results, rank(results))
    fig.canvas.draw()
    ticks = [t for t in fig.axes[1].get_xticks() if 0.5 <= t <= 1.5]
    assert ticks == [1.0]


def test_every_status_has_its_own_colour():
    """Dots and bars are told apart by colour (and shape): a time-limit trial must not look paused."""
    labels = ("completed", "stopped early", "time limit", "time budget", "no reports", "error",
              "running", "paused", "pending")
    assert set(P.STATUS_COLORS) == set(labels)
    assert len(set(P.STATUS_COLORS.values())) == len(labels)


def test_learning_curves_legend_no_failed_line_when_no_failed_trial_reported(tmp_path):
    """A trial that failed before its first report draws no dashed line to explain."""
    from results_dirs import summary, trial_dir

    exp = tmp_path / "results" / "early"
    trial_dir(exp, "jjjjj_00000", {"lr": 0.1}, [{"val_loss": 0.5}, {"val_loss": 0.4}])
    trial_dir(exp, "jjjjj_00001", {"lr": 0.2}, [], error="RuntimeError: boom")
    summary(exp, "early", [])
    results = load(exp)
    fig = P.learning_curves_figure(results, rank(results))
    texts = [t.get_text() for legend in fig.legends for t in legend.get_texts()]
    assert "best trial jjjjj_00000" in texts and "error (trial failed)" not in texts


def test_best_so_far_line_does_not_start_before_the_trial_did():
    """Reports stamped in whole seconds, Ray's start and end exact: the line follows the latter."""
    from hpoc.results.model import Metric, Results, Trial

    reports = [{"training_iteration": 1, "timestamp": 1000, "time_total_s": 0.2, "val_loss": 0.5},
               {"training_iteration": 2, "timestamp": 1000, "time_total_s": 0.4, "val_loss": 0.3}]
    trial = Trial("a", "TERMINATED", {"lr": 0.1}, history=reports, started_at=1000.5,
                  ended_at=1000.9)
    results = Results("s", Path("."), [Metric("val_loss", "min")], [trial], [])
    fig = P.best_so_far_figure(results, rank(results))
    xs = [float(x) for x in fig.axes[0].lines[0].get_xdata()]
    assert xs == pytest.approx([0.2, 0.4])  # seconds after the study began, the end at 0.4


def test_timeline_shows_the_trials_that_never_reported():
    """The table lists a trial that failed before its first report and one that never
    started; the timeline left both out, as if the study had had one trial."""
    from hpoc.results.model import Metric, Results, Trial

    reports = [{"training_iteration": 1, "timestamp": 1010, "time_total_s": 10.0, "val_loss": 0.5}]
    trials = [Trial("ran", "TERMINATED", {}, history=reports, started_at=1000.0, ended_at=1010.0),
              Trial("failed", "ERROR", {}, error="RuntimeError: boom", started_at=1004.0),
              Trial("waits", "PENDING", {})]
    results = Results("s", Path("."), [Metric("val_loss", "min")], trials, [])
    ax = P.timeline_figure(results, rank(results)).axes[0]
    rows = [t.get_text() for t in ax.get_yticklabels()]
    assert sorted(rows) == ["failed", "ran", "waits"]
    from matplotlib.collections import PathCollection

    (mark,) = [c for c in ax.collections if isinstance(c, PathCollection)]  # where the failed trial began
    assert tuple(map(float, mark.get_offsets()[0])) == (4.0, rows.index("failed"))
    assert "never started" in [t.get_text().strip() for t in ax.texts]


def test_a_trial_that_failed_before_reporting_keeps_its_start_from_ray_state(tmp_path):
    from results_dirs import summary, trial_dir

    exp = tmp_path / "exp"
    trial_dir(exp, "aaaaa_00000", {"lr": 0.1}, [], error="RuntimeError: boom")
    state = {"trial_id": "aaaaa_00000", "status": "ERROR", "config": {"lr": 0.1},
             "relative_logdir": "trainable_aaaaa_00000_0_lr=0.1"}
    (exp / "experiment_state-2024.json").write_text(json.dumps(
        {"trial_data": [[json.dumps(state), json.dumps({"start_time": 1234.5})]]}))
    summary(exp, "s", [{"trial_id": "aaaaa_00000", "status": "ERROR"}])
    (trial,) = load(exp).trials
    assert trial.started_at == 1234.5 and trial.start_ts is None


def test_a_selection_narrows_the_plots_as_it_does_the_table():
    """`hpoc report --top 2` showed 2 rows and plots of every trial."""
    from hpoc.results.model import Metric, Results, Trial

    trials = [Trial(f"t{i}", "TERMINATED", {"lr": 10.0 ** -i, "depth": i % 2},
                    [{"training_iteration": 1, "timestamp": 1000 + i, "val_loss": 1.0 - i / 10},
                     {"training_iteration": 2, "timestamp": 1001 + i, "val_loss": 0.9 - i / 10}],
                    started_at=999.0 + i, ended_at=1001.0 + i)
              for i in range(5)]
    results = Results("s", Path("."), [Metric("val_loss", "min")], trials, [])
    figures = {name: (caption, fig) for name, _, caption, fig in P.figures(results, rank(results, top=2))}
    marks, named = figures["learning-curves"][1].legends  # then one entry per line drawn
    assert sorted(t.get_text() for t in named.get_texts()) == ["t3", "t4"]
    parallel = figures["parallel-coordinates"][1].axes[0]
    assert len(parallel.collections[0].get_segments()) == 2
    timeline = figures["timeline"][1].axes[0]
    assert sorted(t.get_text() for t in timeline.get_yticklabels()) == ["t3", "t4"]
    assert figures["timeline"][0].endswith("Shows the 2 trials selected, of 5.")
    # How the search went is the whole study's: said, not narrowed.
    assert "all 5 trials" in figures["best-so-far"][0]


def test_the_learning_curves_caption_names_the_star_only_when_the_best_trial_is_drawn():
    """`--status error` leaves the best trial out: the caption still pointed at its gold star."""
    from hpoc.results.model import Metric, Results, Trial

    trials = [Trial(f"t{i}", "ERROR" if i == 0 else "TERMINATED", {"lr": 10.0 ** -i},
                    [{"training_iteration": 1, "timestamp": 1000 + i, "val_loss": 1.0 - i / 10}],
                    started_at=999.0 + i, ended_at=1001.0 + i)
              for i in range(3)]
    results = Results("s", Path("."), [Metric("val_loss", "min")], trials, [])

    def caption(ranking):
        return next(c for name, _, c, _ in P.figures(results, ranking) if name == "learning-curves")

    assert "The gold star is the best trial." in caption(rank(results))
    assert "The gold star is the best trial." in caption(rank(results, top=1))
    left_out = caption(rank(results, statuses=["error"]))
    assert "gold star" not in left_out
    assert "The best trial, t2, is not among them." in left_out


def test_a_selection_of_no_trial_is_a_report_that_says_so(tmp_path, capsys):
    """`--status completed` of a study whose trials all failed: a traceback from the timeline."""
    from results_dirs import summary, trial_dir

    exp = tmp_path / "exp"
    trial_dir(exp, "aaaaa_00000", {"lr": 0.1}, [{"val_loss": 0.5}], error="ValueError: bad")
    trial_dir(exp, "aaaaa_00001", {"lr": 0.01}, [], error="ValueError: bad")
    summary(exp, "s", [{"trial_id": t, "status": "ERROR"} for t in ("aaaaa_00000", "aaaaa_00001")])
    out = tmp_path / "r.html"
    assert main(["report", str(exp), "-o", str(out), "--no-png", "--status", "completed"]) == 0
    text = out.read_text(encoding="utf-8")
    assert "Trials (0 of 2)" in text
    assert "Best so far." in text  # the whole study's, and said so
    assert "not only the 0 selected" in text


def test_the_errors_of_a_report_are_those_of_its_selection(tmp_path):
    """`hpoc results --top 1` lists the errors of the trials it shows; the report listed all."""
    from results_dirs import summary, trial_dir

    exp = tmp_path / "exp"
    trial_dir(exp, "aaaaa_00000", {"lr": 0.1}, [{"val_loss": 0.5}])
    trial_dir(exp, "aaaaa_00001", {"lr": 0.01}, [], error="ValueError: bad")
    summary(exp, "s", [{"trial_id": "aaaaa_00000", "status": "TERMINATED"},
                       {"trial_id": "aaaaa_00001", "status": "ERROR"}])
    out = tmp_path / "r.html"
    assert main(["report", str(exp), "-o", str(out), "--no-png", "--top", "1"]) == 0
    assert "ValueError: bad" not in out.read_text(encoding="utf-8")
    assert main(["report", str(exp), "-o", str(out), "--no-png", "--status", "error"]) == 0
    assert "<h2>Errors (1)</h2>" in out.read_text(encoding="utf-8")


def test_a_timeline_of_one_instant_has_no_negative_time():
    from hpoc.results.model import Metric, Results, Trial

    trials = [Trial("a", "ERROR", {}, history=[{"training_iteration": 1, "timestamp": 1000, "val_loss": 1.0}]),
              Trial("b", "ERROR", {})]
    results = Results("s", Path("."), [Metric("val_loss", "min")], trials, [])
    ax = P.timeline_figure(results, rank(results)).axes[0]
    assert ax.get_xlim()[0] == 0.0
    (bars,) = ax.collections
    (bar,) = bars.get_paths()
    assert bar.get_extents().width > 0


def test_a_plot_the_report_no_longer_has_leaves_no_png_of_an_earlier_one(tmp_path, capsys):
    """`--top 1` has no parallel coordinates: the full report's PNG stayed beside it, as if its."""
    from results_dirs import summary, trial_dir

    exp = tmp_path / "exp"
    for i in range(3):
        trial_dir(exp, f"aaaaa_0000{i}", {"lr": 0.1 / (i + 1), "depth": i}, [{"val_loss": 0.5 - i / 10}])
    summary(exp, "s", [{"trial_id": f"aaaaa_0000{i}", "status": "TERMINATED"} for i in range(3)])
    out = tmp_path / "r.html"
    assert main(["report", str(exp), "-o", str(out)]) == 0
    assert (tmp_path / "r-parallel-coordinates.png").is_file()
    (tmp_path / "r-notes.png").write_bytes(b"mine")  # not a plot's name: left alone
    capsys.readouterr()
    assert main(["report", str(exp), "-o", str(out), "--top", "1"]) == 0
    assert ", 1 trial)" in capsys.readouterr().out
    assert not (tmp_path / "r-parallel-coordinates.png").exists()
    assert (tmp_path / "r-notes.png").is_file() and (tmp_path / "r-timeline.png").is_file()
